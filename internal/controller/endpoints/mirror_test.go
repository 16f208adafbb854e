package endpoints

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

const testNS = "default"

func svcSpec(name string, mutate ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, UID: types.UID("svc-" + name), Labels: map[string]string{"team": "a"}},
		Spec: v1.ServiceSpec{
			Selector:   map[string]string{"app": name},
			ClusterIP:  "10.96.0.10",
			IPFamilies: []v1.IPFamily{v1.IPv4Protocol},
			Ports:      []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

type epOpt func(*discovery.Endpoint)

func unready(e *discovery.Endpoint) { e.Conditions.Ready = ptr.To(false) }
func terminatingEP(e *discovery.Endpoint) {
	e.Conditions.Ready = ptr.To(false)
	e.Conditions.Terminating = ptr.To(true)
}

func endpoint(ip, podName string, opts ...epOpt) discovery.Endpoint {
	e := discovery.Endpoint{
		Addresses:  []string{ip},
		Conditions: discovery.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
		NodeName:   ptr.To("node-1"),
		TargetRef:  &v1.ObjectReference{Kind: "Pod", Namespace: testNS, Name: podName, UID: types.UID("uid-" + podName), ResourceVersion: "7"},
	}
	for _, o := range opts {
		o(&e)
	}
	return e
}

func slice(name string, svc *v1.Service, at discovery.AddressType, ports []int32, eps ...discovery.Endpoint) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: testNS, UID: types.UID("uid-" + name),
			Labels: map[string]string{discovery.LabelServiceName: svc.Name, discovery.LabelManagedBy: "endpointslice-controller.k8s.io"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: ptr.To(true),
			}},
		},
		AddressType: at,
		Endpoints:   eps,
	}
	for _, p := range ports {
		s.Ports = append(s.Ports, discovery.EndpointPort{Name: ptr.To("http"), Port: ptr.To(p), Protocol: ptr.To(v1.ProtocolTCP)})
	}
	return s
}

func addr(ip, podName string) v1.EndpointAddress {
	return v1.EndpointAddress{
		IP: ip, NodeName: ptr.To("node-1"),
		TargetRef: &v1.ObjectReference{Kind: "Pod", Namespace: testNS, Name: podName, UID: types.UID("uid-" + podName), ResourceVersion: "7"},
	}
}

func httpPort(p int32) []v1.EndpointPort {
	return []v1.EndpointPort{{Name: "http", Port: p, Protocol: v1.ProtocolTCP}}
}

func TestSubsetsFromSlices(t *testing.T) {
	svc := svcSpec("demo")
	v4 := discovery.AddressTypeIPv4
	tests := []struct {
		name   string
		svc    *v1.Service
		slices []*discovery.EndpointSlice
		want   []v1.EndpointSubset
	}{
		{
			name:   "no slices",
			svc:    svc,
			slices: nil,
			want:   []v1.EndpointSubset{},
		},
		{
			name: "ready and not ready, sorted by IP",
			svc:  svc,
			slices: []*discovery.EndpointSlice{slice("s1", svc, v4, []int32{8080},
				endpoint("10.0.0.3", "c"), endpoint("10.0.0.1", "a"), endpoint("10.0.0.2", "b", unready))},
			want: []v1.EndpointSubset{{
				Addresses:         []v1.EndpointAddress{addr("10.0.0.1", "a"), addr("10.0.0.3", "c")},
				NotReadyAddresses: []v1.EndpointAddress{addr("10.0.0.2", "b")},
				Ports:             httpPort(8080),
			}},
		},
		{
			name:   "terminating endpoints are left out",
			svc:    svc,
			slices: []*discovery.EndpointSlice{slice("s1", svc, v4, []int32{8080}, endpoint("10.0.0.1", "a", terminatingEP))},
			want:   []v1.EndpointSubset{},
		},
		{
			name: "terminating endpoints published with publishNotReadyAddresses",
			svc:  svcSpec("demo", func(s *v1.Service) { s.Spec.PublishNotReadyAddresses = true }),
			// With publishNotReadyAddresses the slice controller marks them ready.
			slices: []*discovery.EndpointSlice{slice("s1", svc, v4, []int32{8080},
				endpoint("10.0.0.1", "a", terminatingEP, func(e *discovery.Endpoint) { e.Conditions.Ready = ptr.To(true) }))},
			want: []v1.EndpointSubset{{Addresses: []v1.EndpointAddress{addr("10.0.0.1", "a")}, Ports: httpPort(8080)}},
		},
		{
			name: "slices with the same ports merge, different ports split",
			svc:  svc,
			slices: []*discovery.EndpointSlice{
				slice("s1", svc, v4, []int32{8080}, endpoint("10.0.0.1", "a")),
				slice("s2", svc, v4, []int32{8080}, endpoint("10.0.0.2", "b")),
				slice("s3", svc, v4, []int32{9090}, endpoint("10.0.0.3", "c")),
			},
			want: []v1.EndpointSubset{
				{Addresses: []v1.EndpointAddress{addr("10.0.0.1", "a"), addr("10.0.0.2", "b")}, Ports: httpPort(8080)},
				{Addresses: []v1.EndpointAddress{addr("10.0.0.3", "c")}, Ports: httpPort(9090)},
			},
		},
		{
			name: "only the primary family",
			svc:  svc,
			slices: []*discovery.EndpointSlice{
				slice("s1", svc, v4, []int32{8080}, endpoint("10.0.0.1", "a")),
				slice("s2", svc, discovery.AddressTypeIPv6, []int32{8080}, endpoint("fd00::1", "a")),
			},
			want: []v1.EndpointSubset{{Addresses: []v1.EndpointAddress{addr("10.0.0.1", "a")}, Ports: httpPort(8080)}},
		},
		{
			name:   "pod that resolves no service port is not listed",
			svc:    svc,
			slices: []*discovery.EndpointSlice{slice("s1", svc, v4, nil, endpoint("10.0.0.1", "a"))},
			want:   []v1.EndpointSubset{},
		},
		{
			name:   "service without ports gets nothing",
			svc:    svcSpec("demo", func(s *v1.Service) { s.Spec.Ports = nil }),
			slices: []*discovery.EndpointSlice{slice("s1", svc, v4, nil, endpoint("10.0.0.1", "a"))},
			want:   nil,
		},
		{
			name: "headless service without ports lists addresses",
			svc: svcSpec("demo", func(s *v1.Service) {
				s.Spec.Ports = nil
				s.Spec.ClusterIP = v1.ClusterIPNone
			}),
			slices: []*discovery.EndpointSlice{slice("s1", svc, v4, nil, endpoint("10.0.0.1", "a"))},
			want:   []v1.EndpointSubset{{Addresses: []v1.EndpointAddress{addr("10.0.0.1", "a")}}},
		},
		{
			name: "an address ready in one slice and not in another is ready",
			svc:  svc,
			slices: []*discovery.EndpointSlice{
				slice("s1", svc, v4, []int32{8080}, endpoint("10.0.0.1", "a", unready)),
				slice("s2", svc, v4, []int32{8080}, endpoint("10.0.0.1", "a")),
			},
			want: []v1.EndpointSubset{{Addresses: []v1.EndpointAddress{addr("10.0.0.1", "a")}, Ports: httpPort(8080)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := subsetsFromSlices(tt.svc, tt.slices)
			if !equality.Semantic.DeepEqual(got, tt.want) {
				t.Errorf("subsets:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func addrs(prefix string, n int) []v1.EndpointAddress {
	out := make([]v1.EndpointAddress, n)
	for i := range out {
		out[i] = v1.EndpointAddress{IP: fmt.Sprintf("%s.%d.%d", prefix, i/256, i%256)}
	}
	return out
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name          string
		subsets       []v1.EndpointSubset
		wantTruncated bool
		// per subset: ready, not ready kept
		want [][2]int
	}{
		{"at capacity", []v1.EndpointSubset{{Addresses: addrs("10.0", 1000)}}, false, [][2]int{{1000, 0}}},
		{"too many ready", []v1.EndpointSubset{{Addresses: addrs("10.0", 1100), NotReadyAddresses: addrs("10.1", 5)}}, true, [][2]int{{1000, 0}}},
		{"ready kept before not ready", []v1.EndpointSubset{{Addresses: addrs("10.0", 900), NotReadyAddresses: addrs("10.1", 200)}}, true, [][2]int{{900, 100}}},
		{
			"proportional across subsets",
			[]v1.EndpointSubset{{Addresses: addrs("10.0", 1500)}, {Addresses: addrs("10.1", 500)}},
			true, [][2]int{{750, 0}, {250, 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := truncate(tt.subsets, maxCapacity)
			if got != tt.wantTruncated {
				t.Errorf("truncated = %v, want %v", got, tt.wantTruncated)
			}
			total := 0
			for i, s := range tt.subsets {
				kept := [2]int{len(s.Addresses), len(s.NotReadyAddresses)}
				if kept != tt.want[i] {
					t.Errorf("subset %d kept %v, want %v", i, kept, tt.want[i])
				}
				total += kept[0] + kept[1]
			}
			if total > maxCapacity {
				t.Errorf("kept %d addresses, more than %d", total, maxCapacity)
			}
		})
	}
}

func TestDesiredEndpoints(t *testing.T) {
	svc := svcSpec("demo")
	trigger := time.Date(2026, 2, 3, 4, 5, 6, 7000, time.UTC)
	s1 := slice("s1", svc, discovery.AddressTypeIPv4, []int32{8080}, endpoint("10.0.0.1", "a"))
	s1.Annotations = map[string]string{v1.EndpointsLastChangeTriggerTime: trigger.Format(time.RFC3339Nano)}

	ep := desiredEndpoints(svc, []*discovery.EndpointSlice{s1}, nil)
	if ep == nil {
		t.Fatal("desiredEndpoints returned nil for a missing object")
	}
	if ep.Name != "demo" || ep.Namespace != testNS {
		t.Errorf("name %s/%s", ep.Namespace, ep.Name)
	}
	wantLabels := map[string]string{"team": "a", LabelManagedBy: ControllerName}
	if !equality.Semantic.DeepEqual(ep.Labels, wantLabels) {
		t.Errorf("labels = %v, want %v", ep.Labels, wantLabels)
	}
	if got := ep.Annotations[v1.EndpointsLastChangeTriggerTime]; got != trigger.Format(time.RFC3339Nano) {
		t.Errorf("trigger time annotation = %q", got)
	}
	if _, ok := ep.Annotations[v1.EndpointsOverCapacity]; ok {
		t.Error("over-capacity annotation on a small object")
	}

	// Written as is: nothing more to do, even if the pod's resourceVersion moved on.
	ep.ResourceVersion = "5"
	s1b := s1.DeepCopy()
	s1b.Endpoints[0].TargetRef.ResourceVersion = "8"
	s1b.Annotations[v1.EndpointsLastChangeTriggerTime] = trigger.Add(time.Second).Format(time.RFC3339Nano)
	if again := desiredEndpoints(svc, []*discovery.EndpointSlice{s1b}, ep); again != nil {
		t.Errorf("want no write for an unchanged object, got %+v", again)
	}

	// A label change on the Service is a change.
	relabelled := svc.DeepCopy()
	relabelled.Labels["team"] = "b"
	if again := desiredEndpoints(relabelled, []*discovery.EndpointSlice{s1}, ep); again == nil || again.ResourceVersion != "5" {
		t.Errorf("want an update of the existing object after a relabel, got %+v", again)
	}

	// Headless services carry the headless label.
	headless := svcSpec("demo", func(s *v1.Service) { s.Spec.ClusterIP = v1.ClusterIPNone })
	if h := desiredEndpoints(headless, nil, nil); h == nil || h.Labels[v1.IsHeadlessService] != "" {
		t.Errorf("headless labels = %v", h.Labels)
	} else if _, ok := h.Labels[v1.IsHeadlessService]; !ok {
		t.Error("headless label missing")
	}

	// Over capacity: truncated and annotated.
	var eps []discovery.Endpoint
	for i := range 1200 {
		eps = append(eps, endpoint(fmt.Sprintf("10.1.%d.%d", i/250, i%250), fmt.Sprintf("p%d", i)))
	}
	big := desiredEndpoints(svc, []*discovery.EndpointSlice{slice("big", svc, discovery.AddressTypeIPv4, []int32{8080}, eps...)}, nil)
	if big.Annotations[v1.EndpointsOverCapacity] != truncatedValue || len(big.Subsets[0].Addresses) != maxCapacity {
		t.Errorf("over capacity: annotation %q, %d addresses", big.Annotations[v1.EndpointsOverCapacity], len(big.Subsets[0].Addresses))
	}
}
