package podspec

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceLinks is the environment the kubelet gives every container of pod
// for Services (the "service links"): for each Service with a cluster IP in
// the Pod's namespace, when spec.enableServiceLinks is not false, and for
// the default namespace's "kubernetes" Service always:
//
//	NAME_SERVICE_HOST=10.96.0.10  NAME_SERVICE_PORT=80  NAME_SERVICE_PORT_HTTP=80
//	NAME_PORT=tcp://10.96.0.10:80  NAME_PORT_80_TCP=tcp://10.96.0.10:80
//	NAME_PORT_80_TCP_PROTO=tcp  NAME_PORT_80_TCP_PORT=80  NAME_PORT_80_TCP_ADDR=10.96.0.10
//
// where NAME is the Service's name upper-cased with '-' as '_'. Headless
// Services and Services without a cluster IP yet are left out.
func ServiceLinks(pod *corev1.Pod, services []*corev1.Service) map[string]string {
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	byName := map[string]*corev1.Service{}
	for _, s := range services {
		if ip := s.Spec.ClusterIP; ip == "" || ip == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 {
			continue
		}
		switch {
		case s.Namespace == metav1.NamespaceDefault && s.Name == "kubernetes":
			if _, taken := byName[s.Name]; !taken {
				byName[s.Name] = s
			}
		case s.Namespace == pod.Namespace && links:
			byName[s.Name] = s // the Pod's own namespace wins a name clash
		}
	}
	env := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		for k, v := range serviceVars(byName[name]) {
			env[k] = v
		}
	}
	return env
}

func serviceVars(s *corev1.Service) map[string]string {
	prefix := envName(s.Name)
	ip := s.Spec.ClusterIP
	vars := map[string]string{
		prefix + "_SERVICE_HOST": ip,
		prefix + "_SERVICE_PORT": strconv.Itoa(int(s.Spec.Ports[0].Port)),
	}
	for i, p := range s.Spec.Ports {
		if p.Name != "" {
			vars[prefix+"_SERVICE_PORT_"+envName(p.Name)] = strconv.Itoa(int(p.Port))
		}
		proto := corev1.ProtocolTCP
		if p.Protocol != "" {
			proto = p.Protocol
		}
		lower := strings.ToLower(string(proto))
		url := fmt.Sprintf("%s://%s", lower, net.JoinHostPort(ip, strconv.Itoa(int(p.Port))))
		if i == 0 {
			vars[prefix+"_PORT"] = url
		}
		pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(string(proto)))
		vars[pp] = url
		vars[pp+"_PROTO"] = lower
		vars[pp+"_PORT"] = strconv.Itoa(int(p.Port))
		vars[pp+"_ADDR"] = ip
	}
	return vars
}

// envName is a Service or port name as the kubelet spells it in a variable.
func envName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
