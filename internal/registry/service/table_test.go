package service

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestServiceRow(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	svc := func(mod func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", CreationTimestamp: metav1.NewTime(now.Add(-3 * 24 * time.Hour))},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
				Selector: map[string]string{"tier": "web", "app": "demo"},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
			},
		}
		if mod != nil {
			mod(s)
		}
		return s
	}
	tests := []struct {
		name string
		svc  *corev1.Service
		want []interface{}
	}{
		{"cluster IP", svc(nil), []interface{}{"web", "ClusterIP", "10.96.0.10", "<none>", "80/TCP", "3d", "app=demo,tier=web"}},
		{"cluster IP with external IPs", svc(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"192.0.2.1", "192.0.2.2"} }),
			[]interface{}{"web", "ClusterIP", "10.96.0.10", "192.0.2.1,192.0.2.2", "80/TCP", "3d", "app=demo,tier=web"}},
		{"node port", svc(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP})
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.Ports[1].NodePort = 30053
		}), []interface{}{"web", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,53:30053/UDP", "3d", "app=demo,tier=web"}},
		{"load balancer pending", svc(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].NodePort = 31000
		}), []interface{}{"web", "LoadBalancer", "10.96.0.10", "<pending>", "80:31000/TCP", "3d", "app=demo,tier=web"}},
		{"load balancer with ingress", svc(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.20"}, {Hostname: "lb.example.com"}, {IP: "192.0.2.10"}, {IP: "192.0.2.20"}}
		}), []interface{}{"web", "LoadBalancer", "10.96.0.10", "192.0.2.10,192.0.2.20,lb.example.com", "80/TCP", "3d", "app=demo,tier=web"}},
		{"load balancer with ingress and external IPs", svc(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ExternalIPs = []string{"198.51.100.1"}
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
		}), []interface{}{"web", "LoadBalancer", "10.96.0.10", "192.0.2.10,198.51.100.1", "80/TCP", "3d", "app=demo,tier=web"}},
		{"headless", svc(func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.Ports = "None", []string{"None"}, nil
		}), []interface{}{"web", "ClusterIP", "None", "<none>", "<none>", "3d", "app=demo,tier=web"}},
		{"external name", svc(func(s *corev1.Service) {
			s.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}
		}), []interface{}{"web", "ExternalName", "<none>", "db.example.com", "<none>", "3d", "<none>"}},
	}
	st := &strategy{}
	cols := st.Columns()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := st.Row(tt.svc, now)
			if len(row) != len(cols) {
				t.Fatalf("%d cells, %d columns", len(row), len(cols))
			}
			for i := range tt.want {
				if row[i] != tt.want[i] {
					t.Errorf("%s = %q, want %q", cols[i].Name, row[i], tt.want[i])
				}
			}
		})
	}
}
