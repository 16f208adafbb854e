package forward

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// permanent reports whether retrying err cannot help: the API server answered
// with a definite 4xx (not found, bad credentials, forbidden, invalid), or its
// TLS certificate is not trusted. Network errors, timeouts, throttling and
// 5xx are worth retrying: the server may be starting or restarting.
func permanent(err error) bool {
	if err == nil {
		return false
	}
	if badTLS(err) {
		return true
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	code := status.Status().Code
	return code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
}

func badTLS(err error) bool {
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknownAuthority) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &verify)
}

// credentialsError turns a 401/403/TLS failure into the one-line message
// that says what to fix, or returns nil for any other error.
// verb and resource name the request, such as "get" and "services".
func credentialsError(err error, verb, resource, namespace, source string) error {
	where := ""
	if source != "" {
		where = " (" + source + ")"
	}
	switch {
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server rejected the kubeconfig's credentials%s with 401 Unauthorized: renew the token or client certificate of this context, or pick another with --context/--kubeconfig", where)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("the kubeconfig's credentials%s were rejected with 403 Forbidden for %s %s in namespace %q (%s): berth forward needs get/list/watch on services, endpointslices, pods and deployments and create on pods/portforward",
			where, verb, resource, namespace, statusMessage(err))
	case badTLS(err):
		return fmt.Errorf("cannot trust the API server's TLS certificate%s: %s; check certificate-authority-data and server in the kubeconfig", where, shortError(err))
	}
	return nil
}

// describeGetError explains why reading the object a TARGET names failed.
func describeGetError(err error, kind Kind, name, namespace, source string) error {
	if cerr := credentialsError(err, "get", kind.resource(), namespace, source); cerr != nil {
		return cerr
	}
	if apierrors.IsNotFound(err) {
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			if d := status.Status().Details; d != nil && d.Name == name {
				return fmt.Errorf("%s %q not found in namespace %q: check the name with kubectl get %s -n %s, or pass -n", kind.resource(), name, namespace, kind.resource(), namespace)
			}
		}
		// A 404 that does not name the object means the server does not
		// serve this resource at all.
		return fmt.Errorf("the API server does not serve %s (404: %s): is the kubeconfig pointing at a Kubernetes API server?", kind.resource(), statusMessage(err))
	}
	return fmt.Errorf("get %s %s/%s: %w", kind.resource(), namespace, name, err)
}

func statusMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Message != "" {
		return status.Status().Message
	}
	return err.Error()
}

// shortError drops the request URL that client-go puts in front of a
// transport error: "dial tcp 127.0.0.1:6443: connect: connection refused"
// says it all, and fits on a status line.
func shortError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err.Error()
	}
	return err.Error()
}
