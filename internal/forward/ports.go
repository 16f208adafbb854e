package forward

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// resolveServicePort finds the port of svc that remote names, by number or
// by name. Port-forwarding carries TCP only.
func resolveServicePort(svc *corev1.Service, remote intstr.IntOrString) (corev1.ServicePort, error) {
	for _, p := range svc.Spec.Ports {
		match := (remote.Type == intstr.Int && p.Port == remote.IntVal) ||
			(remote.Type == intstr.String && p.Name == remote.StrVal)
		if !match {
			continue
		}
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			return corev1.ServicePort{}, fmt.Errorf("port %s of service %s/%s is %s; port-forwarding carries TCP only", remote.String(), svc.Namespace, svc.Name, p.Protocol)
		}
		return p, nil
	}
	return corev1.ServicePort{}, fmt.Errorf("service %s/%s has no port %q; it has %s", svc.Namespace, svc.Name, remote.String(), describeServicePorts(svc.Spec.Ports))
}

func describeServicePorts(ports []corev1.ServicePort) string {
	if len(ports) == 0 {
		return "no ports"
	}
	var out []string
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		s := fmt.Sprintf("%d/%s", p.Port, proto)
		if p.Name != "" {
			s += " (" + p.Name + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// podPort returns the port number on pod that remote names, or 0 when a
// named port is not declared by any of its containers.
func podPort(pod *corev1.Pod, remote intstr.IntOrString) int32 {
	if remote.Type == intstr.Int {
		return remote.IntVal
	}
	n, _ := namedContainerPort(&pod.Spec, remote.StrVal)
	return n
}

// namedContainerPort looks a TCP port name up in the containers of spec,
// sidecars (init containers) included.
func namedContainerPort(spec *corev1.PodSpec, name string) (int32, bool) {
	for _, list := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for _, c := range list {
			for _, p := range c.Ports {
				if p.Name == name && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
					return p.ContainerPort, true
				}
			}
		}
	}
	return 0, false
}

// resolveContainerPort checks a REMOTE against a pod spec: a number is taken
// as it is (as kubectl does, a pod may listen on ports it does not declare),
// a name must be declared.
func resolveContainerPort(spec *corev1.PodSpec, remote intstr.IntOrString, what string) (int32, error) {
	if remote.Type == intstr.Int {
		return remote.IntVal, nil
	}
	if n, ok := namedContainerPort(spec, remote.StrVal); ok {
		return n, nil
	}
	return 0, fmt.Errorf("%s has no container port named %q; it has %s", what, remote.StrVal, describeContainerPorts(spec))
}

func describeContainerPorts(spec *corev1.PodSpec) string {
	var out []string
	for _, list := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for _, c := range list {
			for _, p := range c.Ports {
				s := fmt.Sprintf("%d", p.ContainerPort)
				if p.Name != "" {
					s += " (" + p.Name + ")"
				}
				out = append(out, s)
			}
		}
	}
	if len(out) == 0 {
		return "no declared ports (use a port number)"
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
