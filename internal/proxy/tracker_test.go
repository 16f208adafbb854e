package proxy

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

var web = types.NamespacedName{Namespace: "default", Name: "web"}

func spn(port string, proto v1.Protocol) ServicePortName {
	return ServicePortName{NamespacedName: web, Port: port, Protocol: proto}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func service(mut func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeClusterIP,
			ClusterIP:  "127.96.0.10",
			ClusterIPs: []string{"127.96.0.10"},
			Ports:      []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	if mut != nil {
		mut(s)
	}
	return s
}

func TestServicePortMapping(t *testing.T) {
	tests := []struct {
		name string
		svc  *v1.Service
		want ServicePortMap
	}{
		{
			name: "cluster IP",
			svc:  service(nil),
			want: ServicePortMap{spn("http", v1.ProtocolTCP): {
				Name: spn("http", v1.ProtocolTCP), ClusterIPs: addrs("127.96.0.10"), Port: 80, Protocol: v1.ProtocolTCP,
			}},
		},
		{
			name: "headless is skipped",
			svc: service(func(s *v1.Service) {
				s.Spec.ClusterIP, s.Spec.ClusterIPs = v1.ClusterIPNone, []string{v1.ClusterIPNone}
			}),
		},
		{
			name: "ExternalName is skipped",
			svc: service(func(s *v1.Service) {
				s.Spec.Type, s.Spec.ExternalName = v1.ServiceTypeExternalName, "example.org"
			}),
		},
		{
			name: "claimed by another proxy is skipped",
			svc:  service(func(s *v1.Service) { s.Labels = map[string]string{LabelServiceProxyName: "other"} }),
		},
		{
			name: "ClusterIP type ignores a node port",
			svc:  service(func(s *v1.Service) { s.Spec.Ports[0].NodePort = 30080 }),
			want: ServicePortMap{spn("http", v1.ProtocolTCP): {
				Name: spn("http", v1.ProtocolTCP), ClusterIPs: addrs("127.96.0.10"), Port: 80, Protocol: v1.ProtocolTCP,
			}},
		},
		{
			name: "load balancer with node port, external IPs and ingress",
			svc: service(func(s *v1.Service) {
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				s.Spec.Ports[0].NodePort = 30080
				s.Spec.ExternalIPs = []string{"127.97.0.1", "bogus", "127.97.0.1"}
				s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{
					{IP: "127.98.0.1"},
					{Hostname: "lb.example.org"},
					{IP: "127.98.0.2", IPMode: ptr.To(v1.LoadBalancerIPModeProxy)},
					{IP: "127.98.0.3", IPMode: ptr.To(v1.LoadBalancerIPModeVIP)},
				}
			}),
			want: ServicePortMap{spn("http", v1.ProtocolTCP): {
				Name: spn("http", v1.ProtocolTCP), ClusterIPs: addrs("127.96.0.10"), Port: 80, Protocol: v1.ProtocolTCP,
				NodePort: 30080, ExternalIPs: addrs("127.97.0.1"), LoadBalancerIPs: addrs("127.98.0.1", "127.98.0.3"),
			}},
		},
		{
			name: "session affinity defaults to 3h; protocol defaults to TCP; two ports",
			svc: service(func(s *v1.Service) {
				s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
				s.Spec.Ports = []v1.ServicePort{{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP}, {Name: "dns-tcp", Port: 53}}
			}),
			want: ServicePortMap{
				spn("dns", v1.ProtocolUDP):     {Name: spn("dns", v1.ProtocolUDP), ClusterIPs: addrs("127.96.0.10"), Port: 53, Protocol: v1.ProtocolUDP, StickyMaxAge: 3 * time.Hour},
				spn("dns-tcp", v1.ProtocolTCP): {Name: spn("dns-tcp", v1.ProtocolTCP), ClusterIPs: addrs("127.96.0.10"), Port: 53, Protocol: v1.ProtocolTCP, StickyMaxAge: 3 * time.Hour},
			},
		},
		{
			name: "session affinity timeout",
			svc: service(func(s *v1.Service) {
				s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
			}),
			want: ServicePortMap{spn("http", v1.ProtocolTCP): {
				Name: spn("http", v1.ProtocolTCP), ClusterIPs: addrs("127.96.0.10"), Port: 80, Protocol: v1.ProtocolTCP, StickyMaxAge: time.Minute,
			}},
		},
		{
			name: "dual stack; clusterIPs wins over clusterIP",
			svc: service(func(s *v1.Service) {
				s.Spec.ClusterIPs = []string{"127.96.0.10", "::1"}
			}),
			want: ServicePortMap{spn("http", v1.ProtocolTCP): {
				Name: spn("http", v1.ProtocolTCP), ClusterIPs: addrs("127.96.0.10", "::1"), Port: 80, Protocol: v1.ProtocolTCP,
			}},
		},
		{
			name: "unparsable cluster IP is skipped",
			svc:  service(func(s *v1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "nope", nil }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewServiceChangeTracker(nil)
			tr.Update(nil, tt.svc)
			sm := ServicePortMap{}
			res := sm.Update(tr)
			if !portMapsEqual(sm, tt.want) {
				t.Fatalf("service ports:\n got %+v\nwant %+v", dump(sm), dump(tt.want))
			}
			if len(res.Changed) != len(tt.want) {
				t.Fatalf("changed %d ports, want %d", len(res.Changed), len(tt.want))
			}
		})
	}
}

func dump(sm ServicePortMap) map[string]ServicePortInfo {
	out := map[string]ServicePortInfo{}
	for k, v := range sm {
		out[k.String()+"/"+string(k.Protocol)] = *v
	}
	return out
}

func TestServiceChangeTrackerCoalesces(t *testing.T) {
	tr := NewServiceChangeTracker(nil)
	sm := ServicePortMap{}
	a := service(nil)
	tr.Update(nil, a)
	sm.Update(tr)

	// Two updates that end where they started leave nothing to do.
	b := service(func(s *v1.Service) { s.Spec.Ports[0].Port = 81 })
	if !tr.Update(a, b) {
		t.Fatal("a real change must be pending")
	}
	if tr.Update(b, a) {
		t.Fatal("a change undone before the sync must not be pending")
	}
	if res := sm.Update(tr); len(res.Changed) != 0 {
		t.Fatalf("changed = %v, want none", res.Changed)
	}

	// Rename a port, then delete: the result says exactly what happened.
	c := service(func(s *v1.Service) { s.Spec.Ports[0].Name = "web" })
	tr.Update(a, c)
	res := sm.Update(tr)
	if len(res.Changed) != 2 || res.Changed[spn("http", v1.ProtocolTCP)].Current != nil || res.Changed[spn("web", v1.ProtocolTCP)].Previous != nil {
		t.Fatalf("rename: changed = %+v", res.Changed)
	}
	tr.Update(c, nil)
	res = sm.Update(tr)
	if len(sm) != 0 || len(res.Changed) != 1 || res.Changed[spn("web", v1.ProtocolTCP)].Current != nil {
		t.Fatalf("delete: map %v, changed %+v", sm, res.Changed)
	}
	if !res.UpdatedServices.Has(web) {
		t.Fatal("deleted service missing from UpdatedServices")
	}
}

type ep struct {
	ip                          string
	ready, serving, terminating *bool
	node                        string
}

func slice(name string, ports []discovery.EndpointPort, eps ...ep) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discovery.LabelServiceName: "web"}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       ports,
	}
	for _, e := range eps {
		de := discovery.Endpoint{Addresses: []string{e.ip}, Conditions: discovery.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}}
		if e.node != "" {
			de.NodeName = ptr.To(e.node)
		}
		s.Endpoints = append(s.Endpoints, de)
	}
	return s
}

func port(name string, p int32, proto v1.Protocol) discovery.EndpointPort {
	return discovery.EndpointPort{Name: ptr.To(name), Port: ptr.To(p), Protocol: ptr.To(proto)}
}

func TestEndpointsMapping(t *testing.T) {
	T, F := ptr.To(true), ptr.To(false)
	httpPorts := []discovery.EndpointPort{port("http", 8080, v1.ProtocolTCP)}
	tests := []struct {
		name   string
		slices []*discovery.EndpointSlice
		want   map[ServicePortName][]string // "ip:port ready/serving/terminating"
	}{
		{
			name:   "nil conditions count as ready and serving",
			slices: []*discovery.EndpointSlice{slice("a", httpPorts, ep{ip: "127.0.1.2"}, ep{ip: "127.0.1.1"})},
			want:   map[ServicePortName][]string{spn("http", v1.ProtocolTCP): {"127.0.1.1:8080 RS-", "127.0.1.2:8080 RS-"}},
		},
		{
			name: "named ports map to their own target ports",
			slices: []*discovery.EndpointSlice{slice("a",
				[]discovery.EndpointPort{port("http", 8080, v1.ProtocolTCP), port("metrics", 9090, v1.ProtocolTCP), port("dns", 5353, v1.ProtocolUDP)},
				ep{ip: "127.0.1.1"})},
			want: map[ServicePortName][]string{
				spn("http", v1.ProtocolTCP):    {"127.0.1.1:8080 RS-"},
				spn("metrics", v1.ProtocolTCP): {"127.0.1.1:9090 RS-"},
				spn("dns", v1.ProtocolUDP):     {"127.0.1.1:5353 RS-"},
			},
		},
		{
			name: "slices merge; per-slice ports; duplicate keeps the ready record",
			slices: []*discovery.EndpointSlice{
				slice("a", httpPorts, ep{ip: "127.0.1.1"}, ep{ip: "127.0.1.3", ready: F, serving: F}),
				slice("b", []discovery.EndpointPort{port("http", 8081, v1.ProtocolTCP)}, ep{ip: "127.0.1.2"}),
				slice("c", httpPorts, ep{ip: "127.0.1.3"}),
			},
			want: map[ServicePortName][]string{spn("http", v1.ProtocolTCP): {"127.0.1.1:8080 RS-", "127.0.1.2:8081 RS-", "127.0.1.3:8080 RS-"}},
		},
		{
			name: "conditions are kept",
			slices: []*discovery.EndpointSlice{slice("a", httpPorts,
				ep{ip: "127.0.1.1", ready: F, serving: T, terminating: T},
				ep{ip: "127.0.1.2", ready: F, serving: F, terminating: F})},
			want: map[ServicePortName][]string{spn("http", v1.ProtocolTCP): {"127.0.1.1:8080 -ST", "127.0.1.2:8080 ---"}},
		},
		{
			name: "unnamed port, nil name",
			slices: []*discovery.EndpointSlice{slice("a",
				[]discovery.EndpointPort{{Port: ptr.To[int32](8080)}}, ep{ip: "127.0.1.1"})},
			want: map[ServicePortName][]string{spn("", v1.ProtocolTCP): {"127.0.1.1:8080 RS-"}},
		},
		{
			name: "ports without numbers and bad addresses are ignored",
			slices: []*discovery.EndpointSlice{slice("a",
				[]discovery.EndpointPort{{Name: ptr.To("http")}, port("ok", 1, v1.ProtocolTCP)}, ep{ip: "not-an-ip"}, ep{ip: "127.0.1.1"})},
			want: map[ServicePortName][]string{spn("ok", v1.ProtocolTCP): {"127.0.1.1:1 RS-"}},
		},
		{
			name: "FQDN slices and slices without a service label are ignored",
			slices: []*discovery.EndpointSlice{
				func() *discovery.EndpointSlice {
					s := slice("a", httpPorts, ep{ip: "127.0.1.1"})
					s.AddressType = discovery.AddressTypeFQDN
					return s
				}(),
				func() *discovery.EndpointSlice {
					s := slice("b", httpPorts, ep{ip: "127.0.1.1"})
					s.Labels = nil
					return s
				}(),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewEndpointsChangeTracker("node-a", nil)
			for _, s := range tt.slices {
				tr.EndpointSliceUpdate(s, false)
			}
			em := EndpointsMap{}
			res := em.Update(tr)
			got := map[ServicePortName][]string{}
			for k, eps := range em {
				for _, e := range eps {
					got[k] = append(got[k], e.String()+" "+flags(e))
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("endpoints = %v, want %v", got, tt.want)
			}
			for k, w := range tt.want {
				if !slices.Equal(got[k], w) {
					t.Errorf("%s: endpoints = %v, want %v", k, got[k], w)
				}
				if !res.Changed.Has(k) {
					t.Errorf("%s missing from Changed", k)
				}
			}
		})
	}
}

func flags(e Endpoint) string {
	b := []byte("---")
	if e.Ready {
		b[0] = 'R'
	}
	if e.Serving {
		b[1] = 'S'
	}
	if e.Terminating {
		b[2] = 'T'
	}
	return string(b)
}

func TestEndpointsChangeTrackerIncremental(t *testing.T) {
	tr := NewEndpointsChangeTracker("node-a", nil)
	em := EndpointsMap{}
	httpPorts := []discovery.EndpointPort{port("http", 8080, v1.ProtocolTCP), port("admin", 9000, v1.ProtocolTCP)}
	a := slice("a", httpPorts, ep{ip: "127.0.1.1", node: "node-a"})
	tr.EndpointSliceUpdate(a, false)
	em.Update(tr)
	if !em[spn("http", v1.ProtocolTCP)][0].Local {
		t.Fatal("endpoint on this node must be Local")
	}

	// The same slice again (an informer resync) records nothing.
	if tr.EndpointSliceUpdate(a.DeepCopy(), false) {
		t.Fatal("unchanged slice must not be pending")
	}
	// Moving the endpoint to a new slice, then dropping the old one, in
	// either order, within one sync, changes nothing.
	b := slice("b", httpPorts, ep{ip: "127.0.1.1", node: "node-a"})
	tr.EndpointSliceUpdate(b, false)
	tr.EndpointSliceUpdate(a, true)
	if res := em.Update(tr); res.Changed.Len() != 0 {
		t.Fatalf("endpoint moved between slices: changed = %v, want none", res.Changed)
	}
	// A change to one port only reports that port.
	b2 := slice("b", []discovery.EndpointPort{port("http", 8080, v1.ProtocolTCP), port("admin", 9001, v1.ProtocolTCP)}, ep{ip: "127.0.1.1", node: "node-a"})
	tr.EndpointSliceUpdate(b2, false)
	res := em.Update(tr)
	if res.Changed.Len() != 1 || !res.Changed.Has(spn("admin", v1.ProtocolTCP)) {
		t.Fatalf("changed = %v, want only admin", res.Changed)
	}
	// Removing a slice never seen is a no-op; removing the last one empties.
	if tr.EndpointSliceUpdate(slice("zzz", httpPorts), true) {
		t.Fatal("removing an unknown slice must not be pending")
	}
	tr.EndpointSliceUpdate(b2, true)
	res = em.Update(tr)
	if len(em) != 0 || res.Changed.Len() != 2 {
		t.Fatalf("after removing the last slice: map %v, changed %v", em, res.Changed)
	}
}

func TestUsableEndpoints(t *testing.T) {
	mk := func(ip string, ready, serving, terminating bool) Endpoint {
		return Endpoint{Addr: netip.MustParseAddrPort(ip + ":80"), Ready: ready, Serving: serving, Terminating: terminating}
	}
	tests := []struct {
		name string
		in   []Endpoint
		want []string
	}{
		{"none", nil, nil},
		{"ready only", []Endpoint{mk("127.0.1.1", true, true, false), mk("127.0.1.2", false, false, false)}, []string{"127.0.1.1:80"}},
		{"ready wins over terminating", []Endpoint{mk("127.0.1.1", false, true, true), mk("127.0.1.2", true, true, false)}, []string{"127.0.1.2:80"}},
		{"fallback to serving terminating", []Endpoint{mk("127.0.1.1", false, true, true), mk("127.0.1.2", false, false, true), mk("127.0.1.3", false, false, false)}, []string{"127.0.1.1:80"}},
		{"not ready, not terminating: nothing", []Endpoint{mk("127.0.1.1", false, true, false)}, nil},
	}
	for _, tt := range tests {
		var got []string
		for _, e := range UsableEndpoints(tt.in) {
			got = append(got, e.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: usable = %v, want %v", tt.name, got, tt.want)
		}
	}
}
