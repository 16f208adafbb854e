package cluster

import (
	"context"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// AgnhostImage is the e2e test image berth runs built in.
const AgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.53"

// Namespace is where the benchmarks put their objects.
const Namespace = "default"

// ProbeKind says which readinessProbe a benchmark pod gets.
type ProbeKind int

const (
	// NoProbe: Ready as soon as the container runs.
	NoProbe ProbeKind = iota
	// HTTPProbe: GET /readyz on the HTTP port, every second.
	HTTPProbe
)

// AgnhostPod is a Pod running `agnhost netexec --http-port=port`.
func AgnhostPod(name string, labels map[string]string, port int32, probe ProbeKind) *corev1.Pod {
	c := corev1.Container{
		Name: "web", Image: AgnhostImage,
		// UDP stays on (8081): netexec's /healthz and /readyz, as upstream's,
		// are 200 only once its UDP server runs.
		Args:  []string{"netexec", "--http-port=" + strconv.Itoa(int(port))},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}},
	}
	if probe == HTTPProbe {
		c.ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(port)}},
			PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1, TimeoutSeconds: 1,
		}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: ptr.To[int64](5)},
	}
}

// BackendPod is a Pod whose process is the bench's own backend (binary
// bench, subcommand backend): HTTP on httpPort and bulk on bulkPort of the
// pod IP.
func BackendPod(name, bench string, labels map[string]string, httpPort, bulkPort int32) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: labels},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{
				Name: "backend", Image: "berth-bench/backend",
				Command: []string{bench, "backend",
					"-http", "$(POD_IP):" + strconv.Itoa(int(httpPort)),
					"-bulk", "$(POD_IP):" + strconv.Itoa(int(bulkPort)),
					"-name", "$(POD_NAME)"},
				Env: []corev1.EnvVar{
					{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: httpPort}, {Name: "bulk", ContainerPort: bulkPort}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(httpPort)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// ServicePort is a TCP service port.
func ServicePort(name string, port, target int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromInt32(target), Protocol: corev1.ProtocolTCP}
}

// CreateService creates a ClusterIP Service; a nil selector makes it
// selector-less (its EndpointSlices are the caller's to write).
func CreateService(ctx context.Context, c kubernetes.Interface, name string, selector map[string]string, ports ...corev1.ServicePort) (*corev1.Service, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace},
		Spec:       corev1.ServiceSpec{Selector: selector, Ports: ports},
	}
	out, err := c.CoreV1().Services(Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create service %s: %w", name, err)
	}
	return out, nil
}

// ManagedBy is the EndpointSlice managed-by label value of slices the
// bench writes itself (the EndpointSlice controller leaves them alone).
const ManagedBy = "bench.berth.dev"

// EndpointSlice is a ready IPv4 EndpointSlice of service with one endpoint
// per address, all on the given ports.
func EndpointSlice(service, name string, addrs []string, ports ...discoveryv1.EndpointPort) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: service,
			discoveryv1.LabelManagedBy:   ManagedBy,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
		})
	}
	return s
}

// SlicePort is a TCP EndpointSlice port.
func SlicePort(name string, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}
}

// PutEndpointSlice creates the slice, or replaces its endpoints and ports
// if it exists.
func PutEndpointSlice(ctx context.Context, c kubernetes.Interface, s *discoveryv1.EndpointSlice) error {
	api := c.DiscoveryV1().EndpointSlices(s.Namespace)
	_, err := api.Create(ctx, s, metav1.CreateOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create endpointslice %s: %w", s.Name, err)
	}
	cur, err := api.Get(ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get endpointslice %s: %w", s.Name, err)
	}
	cur.Endpoints, cur.Ports = s.Endpoints, s.Ports
	if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update endpointslice %s: %w", s.Name, err)
	}
	return nil
}

// PodReady says whether the pod's Ready condition is true.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
