package forward

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestPermanent(t *testing.T) {
	gr := schema.GroupResource{Resource: "services"}
	refused := &url.Error{Op: "Get", URL: "https://127.0.0.1:6443/api", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "connection refused", err: refused, want: false},
		{name: "wrapped connection refused", err: fmt.Errorf("get: %w", refused), want: false},
		{name: "not found", err: apierrors.NewNotFound(gr, "x"), want: true},
		{name: "unauthorized", err: apierrors.NewUnauthorized("no"), want: true},
		{name: "forbidden", err: apierrors.NewForbidden(gr, "x", errors.New("rbac")), want: true},
		{name: "bad request", err: apierrors.NewBadRequest("bad"), want: true},
		{name: "too many requests", err: apierrors.NewTooManyRequests("slow down", 1), want: false},
		{name: "timeout", err: apierrors.NewTimeoutError("slow", 1), want: false},
		{name: "internal error", err: apierrors.NewInternalError(errors.New("boom")), want: false},
		{name: "service unavailable", err: apierrors.NewServiceUnavailable("starting"), want: false},
		{name: "untrusted certificate", err: &url.Error{Op: "Get", URL: "https://x", Err: x509.UnknownAuthorityError{}}, want: true},
		{name: "nil", err: nil, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := permanent(tt.err); got != tt.want {
				t.Fatalf("permanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestDescribeGetError(t *testing.T) {
	gr := schema.GroupResource{Resource: "services"}
	tests := []struct {
		name string
		err  error
		kind Kind
		want []string
	}{
		{name: "not found", err: apierrors.NewNotFound(gr, "x"), kind: KindService,
			want: []string{`services "x" not found in namespace "default"`, "kubectl get services -n default"}},
		{name: "deployment not found", err: apierrors.NewNotFound(schema.GroupResource{Group: "apps", Resource: "deployments"}, "x"), kind: KindDeployment,
			want: []string{`deployments "x" not found in namespace "default"`}},
		{name: "a 404 for the resource itself", err: apierrors.NewGenericServerResponse(404, "GET", gr, "", "", 0, false), kind: KindService,
			want: []string{"does not serve services"}},
		{name: "unauthorized", err: apierrors.NewUnauthorized("Unauthorized"), kind: KindService,
			want: []string{"rejected the kubeconfig's credentials", `context "c" in /k`, "401", "--context"}},
		{name: "forbidden", err: apierrors.NewForbidden(gr, "x", errors.New(`User "bob" cannot get resource "services"`)), kind: KindService,
			want: []string{"credentials", "were rejected", "403", `User "bob" cannot get`, "pods/portforward"}},
		{name: "other", err: errors.New("boom"), kind: KindPod, want: []string{"get pods default/x: boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describeGetError(tt.err, tt.kind, "x", "default", `context "c" in /k`).Error()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("message %q lacks %q", got, w)
				}
			}
			if strings.Contains(got, "\n") {
				t.Errorf("message %q is not one line", got)
			}
		})
	}
}

func TestUpgradeError(t *testing.T) {
	status := `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"a\" is forbidden: User \"bob\" cannot create resource \"pods/portforward\"","reason":"Forbidden","code":403}`
	tests := []struct {
		name  string
		code  int
		body  string
		check func(error) bool
		word  string
	}{
		{name: "Status body", code: 403, body: status, check: apierrors.IsForbidden, word: "cannot create"},
		{name: "plain 401", code: 401, body: "Unauthorized\n", check: apierrors.IsUnauthorized, word: "credentials"},
		{name: "plain 404", code: 404, body: "404 page not found", check: apierrors.IsNotFound, word: "could not find"},
		{name: "500", code: 500, body: "oops", check: apierrors.IsInternalError, word: "oops"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := upgradeError(tt.code, []byte(tt.body), "a")
			if !tt.check(err) || !strings.Contains(err.Error(), tt.word) {
				t.Fatalf("upgradeError = %v (%T)", err, err)
			}
		})
	}
}

func TestShortError(t *testing.T) {
	inner := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "url error", err: &url.Error{Op: "Get", URL: "https://127.0.0.1:6443/api/v1/x?watch=true", Err: inner}, want: "dial tcp: connect: connection refused"},
		{name: "wrapped url error", err: fmt.Errorf("list: %w", &url.Error{Op: "Get", URL: "https://x", Err: inner}), want: "dial tcp: connect: connection refused"},
		{name: "other", err: errors.New("boom"), want: "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shortError(tt.err); got != tt.want {
				t.Fatalf("shortError = %q, want %q", got, tt.want)
			}
		})
	}
}
