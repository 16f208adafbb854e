package forward

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestResolveServicePort(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("web"), Protocol: corev1.ProtocolTCP},
			{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443)},
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		}},
	}
	unnamed := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "one", Namespace: "default"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 8080}}},
	}
	tests := []struct {
		name     string
		svc      *corev1.Service
		remote   intstr.IntOrString
		wantName string
		wantPort int32
		wantErr  string
	}{
		{name: "by number", svc: svc, remote: intstr.FromInt32(80), wantName: "http", wantPort: 80},
		{name: "by name", svc: svc, remote: intstr.FromString("https"), wantName: "https", wantPort: 443},
		{name: "number is the service port, not the target port", svc: svc, remote: intstr.FromInt32(8443),
			wantErr: `service default/web has no port "8443"; it has 80/TCP (http), 443/TCP (https), 53/UDP (dns)`},
		{name: "unknown name lists the ports", svc: svc, remote: intstr.FromString("grpc"), wantErr: `has no port "grpc"; it has 80/TCP (http)`},
		{name: "UDP is refused", svc: svc, remote: intstr.FromString("dns"), wantErr: "TCP only"},
		{name: "unnamed single port", svc: unnamed, remote: intstr.FromInt32(8080), wantName: "", wantPort: 8080},
		{name: "service without ports", svc: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "ns"}}, remote: intstr.FromInt32(80),
			wantErr: `service ns/x has no port "80"; it has no ports`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveServicePort(tt.svc, tt.remote)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Name != tt.wantName || got.Port != tt.wantPort {
				t.Fatalf("got %q %d, %v; want %q %d", got.Name, got.Port, err, tt.wantName, tt.wantPort)
			}
		})
	}
}

func TestResolveContainerPort(t *testing.T) {
	spec := &corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "proxy", Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 15000}}}},
		Containers: []corev1.Container{
			{Name: "main", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
			{Name: "metrics", Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9100}}},
		},
	}
	tests := []struct {
		name    string
		remote  intstr.IntOrString
		want    int32
		wantErr string
	}{
		{name: "number as is", remote: intstr.FromInt32(1234), want: 1234},
		{name: "name in first container", remote: intstr.FromString("http"), want: 8080},
		{name: "name in second container", remote: intstr.FromString("metrics"), want: 9100},
		{name: "name in a sidecar", remote: intstr.FromString("admin"), want: 15000},
		{name: "UDP name does not count", remote: intstr.FromString("dns"), wantErr: `no container port named "dns"`},
		{name: "unknown name lists ports", remote: intstr.FromString("grpc"), wantErr: "it has 15000 (admin), 53 (dns), 8080 (http), 9100 (metrics)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveContainerPort(spec, tt.remote, "pod default/a")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	if _, err := resolveContainerPort(&corev1.PodSpec{}, intstr.FromString("http"), "pod default/a"); err == nil || !strings.Contains(err.Error(), "no declared ports") {
		t.Fatalf("pod without ports: error = %v", err)
	}
}
