package pod

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"
)

// Field paths the node agent can resolve for env valueFrom.fieldRef, as the
// kubelet accepts them.
var supportedFieldRefs = []string{
	"metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations",
	"spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
}

// ValidateSpec checks a pod spec with Kubernetes' rules and messages for the
// fields berth acts on.
func ValidateSpec(s *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(p.Child("containers"), ""))
	}
	names := sets.New[string]()
	errs = append(errs, validateContainers(s.InitContainers, p.Child("initContainers"), names, true)...)
	errs = append(errs, validateContainers(s.Containers, p.Child("containers"), names, false)...)
	switch s.RestartPolicy {
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	case "":
		errs = append(errs, field.Required(p.Child("restartPolicy"), ""))
	default:
		errs = append(errs, field.NotSupported(p.Child("restartPolicy"), s.RestartPolicy, []string{"Always", "Never", "OnFailure"}))
	}
	if g := s.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		errs = append(errs, field.Invalid(p.Child("terminationGracePeriodSeconds"), *g, "must be greater than or equal to 0"))
	}
	if d := s.ActiveDeadlineSeconds; d != nil && *d <= 0 {
		errs = append(errs, field.Invalid(p.Child("activeDeadlineSeconds"), *d, "must be greater than 0"))
	}
	if s.NodeName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.NodeName) {
			errs = append(errs, field.Invalid(p.Child("nodeName"), s.NodeName, msg))
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(s.NodeSelector, p.Child("nodeSelector"))...)
	if s.Hostname != "" {
		for _, msg := range validation.IsDNS1123Label(s.Hostname) {
			errs = append(errs, field.Invalid(p.Child("hostname"), s.Hostname, msg))
		}
	}
	if sc := s.SecurityContext; sc != nil {
		errs = append(errs, validateID(sc.RunAsUser, p.Child("securityContext", "runAsUser"))...)
		errs = append(errs, validateID(sc.RunAsGroup, p.Child("securityContext", "runAsGroup"))...)
	}
	return errs
}

func validateContainers(cs []corev1.Container, p *field.Path, names sets.Set[string], init bool) field.ErrorList {
	var errs field.ErrorList
	for i := range cs {
		c := &cs[i]
		cp := p.Index(i)
		if c.Name == "" {
			errs = append(errs, field.Required(cp.Child("name"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Label(c.Name) {
				errs = append(errs, field.Invalid(cp.Child("name"), c.Name, msg))
			}
			if names.Has(c.Name) {
				errs = append(errs, field.Duplicate(cp.Child("name"), c.Name))
			}
			names.Insert(c.Name)
		}
		if strings.TrimSpace(c.Image) == "" {
			errs = append(errs, field.Required(cp.Child("image"), ""))
		} else if strings.TrimSpace(c.Image) != c.Image {
			errs = append(errs, field.Invalid(cp.Child("image"), c.Image, "must not have leading or trailing whitespace"))
		}
		errs = append(errs, validatePorts(c.Ports, cp.Child("ports"))...)
		errs = append(errs, validateEnv(c.Env, cp.Child("env"))...)
		if init && c.RestartPolicy == nil {
			for _, probe := range []struct {
				p    *corev1.Probe
				name string
			}{{c.LivenessProbe, "livenessProbe"}, {c.ReadinessProbe, "readinessProbe"}, {c.StartupProbe, "startupProbe"}} {
				if probe.p != nil {
					errs = append(errs, field.Forbidden(cp.Child(probe.name), "may not be set for init containers without restartPolicy=Always"))
				}
			}
		} else {
			errs = append(errs, validateProbe(c.LivenessProbe, cp.Child("livenessProbe"), true)...)
			errs = append(errs, validateProbe(c.ReadinessProbe, cp.Child("readinessProbe"), false)...)
			errs = append(errs, validateProbe(c.StartupProbe, cp.Child("startupProbe"), true)...)
		}
		if c.Lifecycle != nil {
			if c.Lifecycle.PreStop != nil {
				errs = append(errs, validateHandler(c.Lifecycle.PreStop, cp.Child("lifecycle", "preStop"))...)
			}
			if c.Lifecycle.PostStart != nil {
				errs = append(errs, validateHandler(c.Lifecycle.PostStart, cp.Child("lifecycle", "postStart"))...)
			}
		}
		switch c.ImagePullPolicy {
		case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
		case "":
			errs = append(errs, field.Required(cp.Child("imagePullPolicy"), ""))
		default:
			errs = append(errs, field.NotSupported(cp.Child("imagePullPolicy"), c.ImagePullPolicy, []string{"Always", "IfNotPresent", "Never"}))
		}
		if sc := c.SecurityContext; sc != nil {
			errs = append(errs, validateID(sc.RunAsUser, cp.Child("securityContext", "runAsUser"))...)
			errs = append(errs, validateID(sc.RunAsGroup, cp.Child("securityContext", "runAsGroup"))...)
		}
	}
	return errs
}

func validateID(id *int64, p *field.Path) field.ErrorList {
	if id == nil {
		return nil
	}
	var errs field.ErrorList
	for _, msg := range validation.IsValidUserID(*id) {
		errs = append(errs, field.Invalid(p, *id, msg))
	}
	return errs
}

func validatePorts(ports []corev1.ContainerPort, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, port := range ports {
		pp := p.Index(i)
		if port.Name != "" {
			for _, msg := range validation.IsValidPortName(port.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
			}
			if names.Has(port.Name) {
				errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
			}
			names.Insert(port.Name)
		}
		if port.ContainerPort == 0 {
			errs = append(errs, field.Required(pp.Child("containerPort"), ""))
		} else {
			for _, msg := range validation.IsValidPortNum(int(port.ContainerPort)) {
				errs = append(errs, field.Invalid(pp.Child("containerPort"), port.ContainerPort, msg))
			}
		}
		if port.HostPort != 0 {
			for _, msg := range validation.IsValidPortNum(int(port.HostPort)) {
				errs = append(errs, field.Invalid(pp.Child("hostPort"), port.HostPort, msg))
			}
		}
		errs = append(errs, validateProtocol(port.Protocol, pp.Child("protocol"))...)
		if port.HostIP != "" && netutils.ParseIPSloppy(port.HostIP) == nil {
			errs = append(errs, field.Invalid(pp.Child("hostIP"), port.HostIP, "must be a valid IP address"))
		}
	}
	return errs
}

func validateProtocol(proto corev1.Protocol, p *field.Path) field.ErrorList {
	switch proto {
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return nil
	case "":
		return field.ErrorList{field.Required(p, "")}
	}
	return field.ErrorList{field.NotSupported(p, proto, []string{"SCTP", "TCP", "UDP"})}
}

func validateEnv(env []corev1.EnvVar, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, e := range env {
		ep := p.Index(i)
		if e.Name == "" {
			errs = append(errs, field.Required(ep.Child("name"), ""))
		} else {
			for _, msg := range validation.IsEnvVarName(e.Name) {
				errs = append(errs, field.Invalid(ep.Child("name"), e.Name, msg))
			}
		}
		if e.ValueFrom == nil {
			continue
		}
		vp := ep.Child("valueFrom")
		n := 0
		if e.ValueFrom.FieldRef != nil {
			n++
			errs = append(errs, validateFieldRef(e.ValueFrom.FieldRef, vp.Child("fieldRef"))...)
		}
		if e.ValueFrom.ResourceFieldRef != nil {
			n++
		}
		if e.ValueFrom.ConfigMapKeyRef != nil {
			n++
		}
		if e.ValueFrom.SecretKeyRef != nil {
			n++
		}
		if e.ValueFrom.FileKeyRef != nil {
			n++
		}
		if n == 0 {
			errs = append(errs, field.Invalid(vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
		} else if n > 1 {
			errs = append(errs, field.Invalid(vp, "", "may not have more than one field specified at a time"))
		}
		if e.Value != "" {
			errs = append(errs, field.Invalid(vp, "", "may not be specified when `value` is not empty"))
		}
	}
	return errs
}

func validateFieldRef(ref *corev1.ObjectFieldSelector, p *field.Path) field.ErrorList {
	if ref.FieldPath == "" {
		return field.ErrorList{field.Required(p.Child("fieldPath"), "")}
	}
	if ref.APIVersion != "" && ref.APIVersion != "v1" {
		return field.ErrorList{field.NotSupported(p.Child("apiVersion"), ref.APIVersion, []string{"v1"})}
	}
	path := ref.FieldPath
	for _, prefix := range []string{"metadata.labels[", "metadata.annotations["} {
		if strings.HasPrefix(path, prefix) {
			if !strings.HasSuffix(path, "]") {
				return field.ErrorList{field.Invalid(p.Child("fieldPath"), path, "error converting fieldPath: does not end with ']'")}
			}
			key := strings.Trim(path[len(prefix):len(path)-1], `'"`)
			var errs field.ErrorList
			for _, msg := range validation.IsQualifiedName(key) {
				errs = append(errs, field.Invalid(p.Child("fieldPath"), path, msg))
			}
			return errs
		}
	}
	for _, ok := range supportedFieldRefs {
		if path == ok {
			return nil
		}
	}
	return field.ErrorList{field.NotSupported(p.Child("fieldPath"), path, supportedFieldRefs)}
}

func validateProbe(pr *corev1.Probe, p *field.Path, needsOneSuccess bool) field.ErrorList {
	if pr == nil {
		return nil
	}
	var errs field.ErrorList
	errs = append(errs, validateProbeHandler(&pr.ProbeHandler, p)...)
	for _, f := range []struct {
		v    int32
		name string
		min  int32
	}{{pr.InitialDelaySeconds, "initialDelaySeconds", 0}, {pr.TimeoutSeconds, "timeoutSeconds", 0},
		{pr.PeriodSeconds, "periodSeconds", 0}, {pr.SuccessThreshold, "successThreshold", 0}, {pr.FailureThreshold, "failureThreshold", 0}} {
		if f.v < f.min {
			errs = append(errs, field.Invalid(p.Child(f.name), f.v, "must be greater than or equal to 0"))
		}
	}
	if needsOneSuccess && pr.SuccessThreshold != 1 {
		errs = append(errs, field.Invalid(p.Child("successThreshold"), pr.SuccessThreshold, "must be 1"))
	}
	return errs
}

func validateProbeHandler(h *corev1.ProbeHandler, p *field.Path) field.ErrorList {
	n := 0
	var errs field.ErrorList
	if h.Exec != nil {
		n++
		if len(h.Exec.Command) == 0 {
			errs = append(errs, field.Required(p.Child("exec", "command"), ""))
		}
	}
	if h.HTTPGet != nil {
		n++
		errs = append(errs, validateHTTPGet(h.HTTPGet, p.Child("httpGet"))...)
	}
	if h.TCPSocket != nil {
		n++
		errs = append(errs, validatePortNumOrName(h.TCPSocket.Port, p.Child("tcpSocket", "port"))...)
	}
	if h.GRPC != nil {
		n++
		errs = append(errs, field.Forbidden(p.Child("grpc"), "gRPC probes are not supported by berth; use httpGet, tcpSocket or exec"))
	}
	if n == 0 {
		errs = append(errs, field.Required(p, "must specify a handler type"))
	} else if n > 1 {
		errs = append(errs, field.Forbidden(p, "may not specify more than 1 handler type"))
	}
	return errs
}

func validateHandler(h *corev1.LifecycleHandler, p *field.Path) field.ErrorList {
	n := 0
	var errs field.ErrorList
	if h.Exec != nil {
		n++
		if len(h.Exec.Command) == 0 {
			errs = append(errs, field.Required(p.Child("exec", "command"), ""))
		}
	}
	if h.HTTPGet != nil {
		n++
		errs = append(errs, validateHTTPGet(h.HTTPGet, p.Child("httpGet"))...)
	}
	if h.TCPSocket != nil {
		n++
		errs = append(errs, validatePortNumOrName(h.TCPSocket.Port, p.Child("tcpSocket", "port"))...)
	}
	if h.Sleep != nil {
		n++
		if h.Sleep.Seconds < 0 {
			errs = append(errs, field.Invalid(p.Child("sleep", "seconds"), h.Sleep.Seconds, "must be non-negative"))
		}
	}
	if n == 0 {
		errs = append(errs, field.Required(p, "must specify a handler type"))
	} else if n > 1 {
		errs = append(errs, field.Forbidden(p, "may not specify more than 1 handler type"))
	}
	return errs
}

func validateHTTPGet(g *corev1.HTTPGetAction, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if g.Path == "" {
		errs = append(errs, field.Required(p.Child("path"), ""))
	}
	errs = append(errs, validatePortNumOrName(g.Port, p.Child("port"))...)
	if g.Scheme != corev1.URISchemeHTTP && g.Scheme != corev1.URISchemeHTTPS {
		errs = append(errs, field.NotSupported(p.Child("scheme"), g.Scheme, []string{"HTTP", "HTTPS"}))
	}
	return errs
}

func validatePortNumOrName(port intstr.IntOrString, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if port.Type == intstr.Int {
		for _, msg := range validation.IsValidPortNum(port.IntValue()) {
			errs = append(errs, field.Invalid(p, port.IntValue(), msg))
		}
	} else {
		for _, msg := range validation.IsValidPortName(port.StrVal) {
			errs = append(errs, field.Invalid(p, port.StrVal, msg))
		}
	}
	return errs
}

func validateIPs(ip string, ips []corev1.PodIP, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if ip != "" && netutils.ParseIPSloppy(ip) == nil {
		errs = append(errs, field.Invalid(p.Child("podIP"), ip, "must be a valid IP address"))
	}
	for i, x := range ips {
		if netutils.ParseIPSloppy(x.IP) == nil {
			errs = append(errs, field.Invalid(p.Child("podIPs").Index(i).Child("ip"), x.IP, "must be a valid IP address"))
		}
	}
	if len(ips) > 0 && ip != "" && ips[0].IP != ip {
		errs = append(errs, field.Invalid(p.Child("podIPs").Index(0).Child("ip"), ips[0].IP, fmt.Sprintf("must match status.podIP %q", ip)))
	}
	return errs
}
