package podspec

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func svc(ns, name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{ClusterIP: ip, Ports: ports},
	}
}

// The variables are the kubelet's (pkg/kubelet/envvars): see the upstream
// test TestFromServices for the same shapes.
func TestServiceLinks(t *testing.T) {
	services := []*corev1.Service{
		svc("default", "kubernetes", "10.96.0.1", corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}),
		svc("shop", "web-front", "10.96.0.10",
			corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP}),
		svc("shop", "headless", corev1.ClusterIPNone, corev1.ServicePort{Port: 80}),
		svc("shop", "pending", "", corev1.ServicePort{Port: 80}),
		svc("other", "db", "10.96.0.20", corev1.ServicePort{Port: 5432}),
	}
	kubernetes := map[string]string{
		"KUBERNETES_SERVICE_HOST":       "10.96.0.1",
		"KUBERNETES_SERVICE_PORT":       "443",
		"KUBERNETES_SERVICE_PORT_HTTPS": "443",
		"KUBERNETES_PORT":               "tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP":       "tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO": "tcp",
		"KUBERNETES_PORT_443_TCP_PORT":  "443",
		"KUBERNETES_PORT_443_TCP_ADDR":  "10.96.0.1",
	}
	web := map[string]string{
		"WEB_FRONT_SERVICE_HOST":         "10.96.0.10",
		"WEB_FRONT_SERVICE_PORT":         "80",
		"WEB_FRONT_SERVICE_PORT_HTTP":    "80",
		"WEB_FRONT_SERVICE_PORT_DNS_UDP": "53",
		"WEB_FRONT_PORT":                 "tcp://10.96.0.10:80",
		"WEB_FRONT_PORT_80_TCP":          "tcp://10.96.0.10:80",
		"WEB_FRONT_PORT_80_TCP_PROTO":    "tcp",
		"WEB_FRONT_PORT_80_TCP_PORT":     "80",
		"WEB_FRONT_PORT_80_TCP_ADDR":     "10.96.0.10",
		"WEB_FRONT_PORT_53_UDP":          "udp://10.96.0.10:53",
		"WEB_FRONT_PORT_53_UDP_PROTO":    "udp",
		"WEB_FRONT_PORT_53_UDP_PORT":     "53",
		"WEB_FRONT_PORT_53_UDP_ADDR":     "10.96.0.10",
	}
	both := maps.Clone(kubernetes)
	maps.Copy(both, web)

	pod := func(ns string, links *bool) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}, Spec: corev1.PodSpec{EnableServiceLinks: links}}
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want map[string]string
	}{
		{"own namespace and the kubernetes Service", pod("shop", nil), both},
		{"enableServiceLinks false keeps only kubernetes", pod("shop", ptr.To(false)), kubernetes},
		{"another namespace's Services are not linked", pod("empty", ptr.To(true)), kubernetes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ServiceLinks(tt.pod, services); !maps.Equal(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}

	// A Service called kubernetes in the Pod's own namespace wins.
	own := append(services, svc("shop", "kubernetes", "10.96.0.99", corev1.ServicePort{Port: 8443}))
	if got := ServiceLinks(pod("shop", nil), own)["KUBERNETES_SERVICE_HOST"]; got != "10.96.0.99" {
		t.Errorf("KUBERNETES_SERVICE_HOST = %q, want the namespace's own 10.96.0.99", got)
	}
}
