package nftables

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-project/berth/internal/proxy"
)

func spnOf(ns, name, port string, proto v1.Protocol) proxy.ServicePortName {
	return proxy.ServicePortName{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}, Port: port, Protocol: proto}
}

// svcPort builds a ServicePortInfo; mutate adjusts it.
func svcPort(name string, proto v1.Protocol, clusterIP string, port int32, mutate ...func(*proxy.ServicePortInfo)) *proxy.ServicePortInfo {
	info := &proxy.ServicePortInfo{
		Name:     spnOf("default", name, "p", proto),
		Port:     port,
		Protocol: proto,
	}
	if clusterIP != "" {
		info.ClusterIPs = []netip.Addr{mustAddr(clusterIP)}
	}
	for _, m := range mutate {
		m(info)
	}
	return info
}

func ready(addrs ...string) []proxy.Endpoint {
	var out []proxy.Endpoint
	for _, a := range addrs {
		out = append(out, proxy.Endpoint{Addr: mustAddrPort(a), Ready: true, Serving: true})
	}
	return out
}

func terminating(serving bool, addrs ...string) []proxy.Endpoint {
	var out []proxy.Endpoint
	for _, a := range addrs {
		out = append(out, proxy.Endpoint{Addr: mustAddrPort(a), Serving: serving, Terminating: true})
	}
	return out
}

func withNodePort(n int32) func(*proxy.ServicePortInfo) {
	return func(i *proxy.ServicePortInfo) { i.NodePort = n }
}

func withExternal(ips ...string) func(*proxy.ServicePortInfo) {
	return func(i *proxy.ServicePortInfo) {
		for _, ip := range ips {
			i.ExternalIPs = append(i.ExternalIPs, mustAddr(ip))
		}
	}
}

func withLB(ips ...string) func(*proxy.ServicePortInfo) {
	return func(i *proxy.ServicePortInfo) {
		for _, ip := range ips {
			i.LoadBalancerIPs = append(i.LoadBalancerIPs, mustAddr(ip))
		}
	}
}

func withSticky(d time.Duration) func(*proxy.ServicePortInfo) {
	return func(i *proxy.ServicePortInfo) { i.StickyMaxAge = d }
}

// planned plans the given ports (each with its endpoints) on one planner.
func planned(opts PlanOptions, ports ...PortInput) Ruleset {
	pl := NewPlanner(opts)
	changes := map[proxy.ServicePortName]PortInput{}
	for _, in := range ports {
		changes[in.Info.Name] = in
	}
	pl.Update(changes)
	return pl.Ruleset()
}

var (
	nodeIP   = mustAddr("192.168.1.10")
	loNode   = mustAddr("127.0.0.1")
	defOpts  = PlanOptions{NodePortAddresses: []netip.Addr{loNode, nodeIP}}
	allNodes = PlanOptions{AllNodeAddresses: true}
)

func TestPlanWhereConnectionsGo(t *testing.T) {
	tcp, udp := v1.ProtocolTCP, v1.ProtocolUDP
	local := []netip.Addr{loNode, nodeIP, mustAddr("10.244.0.1")}
	three := ready("10.244.0.2:8080", "10.244.0.3:8080", "10.244.0.4:8080")
	tests := []struct {
		name  string
		opts  PlanOptions
		ports []PortInput
		pkt   packet
		want  []string
	}{
		{
			name:  "cluster IP from a local process spreads over every endpoint",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80), Endpoints: three}},
			pkt:   packet{src: nodeIP, dst: mustAddrPort("10.96.0.10:80"), proto: tcp},
			want:  dnatTo(false, "10.244.0.2:8080", "10.244.0.3:8080", "10.244.0.4:8080"),
		},
		{
			name:  "cluster IP from a pod keeps the pod's address",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80), Endpoints: three}},
			pkt:   packet{fromPod: true, src: mustAddr("10.244.0.9"), dst: mustAddrPort("10.96.0.10:80"), proto: tcp},
			want:  dnatTo(false, "10.244.0.2:8080", "10.244.0.3:8080", "10.244.0.4:8080"),
		},
		{
			name:  "loopback client to a pod endpoint is masqueraded",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80), Endpoints: ready("10.244.0.2:8080")}},
			pkt:   packet{src: loNode, dst: mustAddrPort("10.96.0.10:80"), proto: tcp, local: local},
			want:  dnatTo(true, "10.244.0.2:8080"),
		},
		{
			name:  "loopback client to a loopback endpoint stays on lo unmasqueraded",
			ports: []PortInput{{Info: svcPort("web", tcp, "127.96.0.10", 80), Endpoints: ready("127.0.0.2:8080")}},
			pkt:   packet{src: loNode, dst: mustAddrPort("127.96.0.10:80"), proto: tcp, local: local},
			want:  dnatTo(false, "127.0.0.2:8080"),
		},
		{
			name:  "hairpin: a pod reaching itself through its service is masqueraded",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80), Endpoints: ready("10.244.0.2:8080", "10.244.0.3:8080")}},
			pkt:   packet{fromPod: true, src: mustAddr("10.244.0.2"), dst: mustAddrPort("10.96.0.10:80"), proto: tcp},
			want:  []string{"dnat 10.244.0.2:8080 masq", "dnat 10.244.0.3:8080"},
		},
		{
			name:  "UDP cluster IP",
			ports: []PortInput{{Info: svcPort("dns", udp, "10.96.0.53", 53), Endpoints: ready("10.244.0.2:5353", "10.244.0.3:5353")}},
			pkt:   packet{src: nodeIP, dst: mustAddrPort("10.96.0.53:53"), proto: udp},
			want:  dnatTo(false, "10.244.0.2:5353", "10.244.0.3:5353"),
		},
		{
			name:  "a TCP service port does not capture UDP",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80), Endpoints: three}},
			pkt:   packet{src: nodeIP, dst: mustAddrPort("10.96.0.10:80"), proto: udp},
			want:  []string{"accept"},
		},
		{
			name:  "another port of the cluster IP is not captured",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80), Endpoints: three}},
			pkt:   packet{src: nodeIP, dst: mustAddrPort("10.96.0.10:81"), proto: tcp},
			want:  []string{"accept"},
		},
		{
			name:  "SCTP is planned like TCP",
			ports: []PortInput{{Info: svcPort("sig", v1.ProtocolSCTP, "10.96.0.30", 3868), Endpoints: ready("10.244.0.2:3868")}},
			pkt:   packet{src: nodeIP, dst: mustAddrPort("10.96.0.30:3868"), proto: v1.ProtocolSCTP},
			want:  dnatTo(false, "10.244.0.2:3868"),
		},
		{
			name:  "node port on 127.0.0.1 is masqueraded",
			opts:  defOpts,
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withNodePort(30080)), Endpoints: ready("10.244.0.2:8080")}},
			pkt:   packet{src: loNode, dst: mustAddrPort("127.0.0.1:30080"), proto: tcp, local: local},
			want:  dnatTo(true, "10.244.0.2:8080"),
		},
		{
			name:  "node port on the node IP from a pod",
			opts:  defOpts,
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withNodePort(30080)), Endpoints: ready("10.244.0.2:8080")}},
			pkt:   packet{fromPod: true, src: mustAddr("10.244.0.9"), dst: mustAddrPort("192.168.1.10:30080"), proto: tcp, local: local},
			want:  dnatTo(true, "10.244.0.2:8080"),
		},
		{
			name:  "node port on an address not configured is not captured",
			opts:  defOpts,
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withNodePort(30080)), Endpoints: ready("10.244.0.2:8080")}},
			pkt:   packet{src: loNode, dst: mustAddrPort("10.244.0.1:30080"), proto: tcp, local: local},
			want:  []string{"accept"},
		},
		{
			name:  "node port with 0.0.0.0 answers on any local address",
			opts:  allNodes,
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withNodePort(30080)), Endpoints: ready("10.244.0.2:8080")}},
			pkt:   packet{src: loNode, dst: mustAddrPort("10.244.0.1:30080"), proto: tcp, local: local},
			want:  dnatTo(true, "10.244.0.2:8080"),
		},
		{
			name:  "node port with 0.0.0.0 ignores non-local addresses",
			opts:  allNodes,
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withNodePort(30080)), Endpoints: ready("10.244.0.2:8080")}},
			pkt:   packet{fromPod: true, src: mustAddr("10.244.0.9"), dst: mustAddrPort("203.0.113.7:30080"), proto: tcp, local: local},
			want:  []string{"accept"},
		},
		{
			name:  "external IP is masqueraded",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withExternal("203.0.113.5")), Endpoints: ready("10.244.0.2:8080")}},
			pkt:   packet{fromPod: true, src: mustAddr("198.51.100.1"), dst: mustAddrPort("203.0.113.5:80"), proto: tcp},
			want:  dnatTo(true, "10.244.0.2:8080"),
		},
		{
			name:  "load-balancer IP is masqueraded",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withLB("10.98.0.7")), Endpoints: ready("10.244.0.2:8080", "10.244.0.3:8080")}},
			pkt:   packet{src: nodeIP, dst: mustAddrPort("10.98.0.7:80"), proto: tcp},
			want:  dnatTo(true, "10.244.0.2:8080", "10.244.0.3:8080"),
		},
		{
			name:  "a cluster IP also listed as external IP stays internal",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withExternal("10.96.0.10")), Endpoints: ready("10.244.0.2:8080")}},
			pkt:   packet{fromPod: true, src: mustAddr("10.244.0.9"), dst: mustAddrPort("10.96.0.10:80"), proto: tcp},
			want:  dnatTo(false, "10.244.0.2:8080"),
		},
		{
			name:  "no endpoints: TCP gets a reset",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80)}},
			pkt:   packet{src: nodeIP, dst: mustAddrPort("10.96.0.10:80"), proto: tcp},
			want:  []string{"reject(tcp-reset)"},
		},
		{
			name:  "no endpoints: UDP gets port unreachable",
			ports: []PortInput{{Info: svcPort("dns", udp, "10.96.0.53", 53)}},
			pkt:   packet{src: nodeIP, dst: mustAddrPort("10.96.0.53:53"), proto: udp},
			want:  []string{"reject(icmp)"},
		},
		{
			name:  "no endpoints: a pod is rejected in forward",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80)}},
			pkt:   packet{fromPod: true, src: mustAddr("10.244.0.9"), dst: mustAddrPort("10.96.0.10:80"), proto: tcp},
			want:  []string{"reject(tcp-reset)"},
		},
		{
			name:  "no endpoints: node port, external and LB IPs are rejected too",
			opts:  defOpts,
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withNodePort(30080), withExternal("203.0.113.5"), withLB("10.98.0.7"))}},
			pkt:   packet{src: loNode, dst: mustAddrPort("127.0.0.1:30080"), proto: tcp},
			want:  []string{"reject(tcp-reset)"},
		},
		{
			name:  "no endpoints: external IP rejected",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withExternal("203.0.113.5"))}},
			pkt:   packet{fromPod: true, src: mustAddr("198.51.100.1"), dst: mustAddrPort("203.0.113.5:80"), proto: tcp},
			want:  []string{"reject(tcp-reset)"},
		},
		{
			name:  "endpoints that are not ready and not terminating are not used",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80), Endpoints: []proxy.Endpoint{{Addr: mustAddrPort("10.244.0.2:8080")}}}},
			pkt:   packet{src: nodeIP, dst: mustAddrPort("10.96.0.10:80"), proto: tcp},
			want:  []string{"reject(tcp-reset)"},
		},
		{
			name: "serving terminating endpoints are used when none is ready",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80),
				Endpoints: append(terminating(true, "10.244.0.2:8080"), terminating(false, "10.244.0.3:8080")...)}},
			pkt:  packet{src: nodeIP, dst: mustAddrPort("10.96.0.10:80"), proto: tcp},
			want: dnatTo(false, "10.244.0.2:8080"),
		},
		{
			name: "terminating endpoints are not used while one is ready",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80),
				Endpoints: append(terminating(true, "10.244.0.2:8080"), ready("10.244.0.4:8080")...)}},
			pkt:  packet{src: nodeIP, dst: mustAddrPort("10.96.0.10:80"), proto: tcp},
			want: dnatTo(false, "10.244.0.4:8080"),
		},
		{
			name:  "only terminating and not serving: rejected",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80), Endpoints: terminating(false, "10.244.0.2:8080")}},
			pkt:   packet{src: nodeIP, dst: mustAddrPort("10.96.0.10:80"), proto: tcp},
			want:  []string{"reject(tcp-reset)"},
		},
		{
			name:  "IPv6 endpoints are ignored",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80), Endpoints: ready("[fd00::2]:8080", "10.244.0.3:8080")}},
			pkt:   packet{src: nodeIP, dst: mustAddrPort("10.96.0.10:80"), proto: tcp},
			want:  dnatTo(false, "10.244.0.3:8080"),
		},
		{
			name:  "affinity: a new client may go anywhere and is remembered",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withSticky(time.Minute)), Endpoints: ready("10.244.0.2:8080", "10.244.0.3:8080")}},
			pkt:   packet{src: nodeIP, dst: mustAddrPort("10.96.0.10:80"), proto: tcp},
			want: []string{
				"dnat 10.244.0.2:8080 remember " + affinitySet("web", tcp, "10.244.0.2:8080"),
				"dnat 10.244.0.3:8080 remember " + affinitySet("web", tcp, "10.244.0.3:8080"),
			},
		},
		{
			name:  "affinity: a remembered client goes back to its endpoint",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withSticky(time.Minute)), Endpoints: ready("10.244.0.2:8080", "10.244.0.3:8080")}},
			pkt: packet{src: nodeIP, dst: mustAddrPort("10.96.0.10:80"), proto: tcp,
				affinity: map[string][]netip.Addr{affinitySet("web", tcp, "10.244.0.3:8080"): {nodeIP}}},
			want: []string{"dnat 10.244.0.3:8080 remember " + affinitySet("web", tcp, "10.244.0.3:8080")},
		},
		{
			name:  "affinity: another client is not bound by it",
			ports: []PortInput{{Info: svcPort("web", tcp, "10.96.0.10", 80, withSticky(time.Minute)), Endpoints: ready("10.244.0.2:8080", "10.244.0.3:8080")}},
			pkt: packet{src: mustAddr("10.244.0.9"), fromPod: true, dst: mustAddrPort("10.96.0.10:80"), proto: tcp,
				affinity: map[string][]netip.Addr{affinitySet("web", tcp, "10.244.0.3:8080"): {nodeIP}}},
			want: []string{
				"dnat 10.244.0.2:8080 remember " + affinitySet("web", tcp, "10.244.0.2:8080"),
				"dnat 10.244.0.3:8080 remember " + affinitySet("web", tcp, "10.244.0.3:8080"),
			},
		},
		{
			name: "two services: each address goes to its own endpoints",
			ports: []PortInput{
				{Info: svcPort("a", tcp, "10.96.0.10", 80), Endpoints: ready("10.244.0.2:8080")},
				{Info: svcPort("b", tcp, "10.96.0.11", 80), Endpoints: ready("10.244.0.3:8080")},
			},
			pkt:  packet{src: nodeIP, dst: mustAddrPort("10.96.0.11:80"), proto: tcp},
			want: dnatTo(false, "10.244.0.3:8080"),
		},
		{
			name: "two services claim one external IP:port: the first by name wins",
			ports: []PortInput{
				{Info: svcPort("b", tcp, "10.96.0.11", 80, withExternal("203.0.113.5")), Endpoints: ready("10.244.0.3:8080")},
				{Info: svcPort("a", tcp, "10.96.0.10", 80, withExternal("203.0.113.5")), Endpoints: ready("10.244.0.2:8080")},
			},
			pkt:  packet{fromPod: true, src: mustAddr("198.51.100.1"), dst: mustAddrPort("203.0.113.5:80"), proto: tcp},
			want: dnatTo(true, "10.244.0.2:8080"),
		},
		{
			name: "a claim by a service without endpoints does not shadow one with endpoints",
			ports: []PortInput{
				{Info: svcPort("a", tcp, "10.96.0.10", 80, withExternal("203.0.113.5"))},
				{Info: svcPort("b", tcp, "10.96.0.11", 80, withExternal("203.0.113.5")), Endpoints: ready("10.244.0.3:8080")},
			},
			pkt:  packet{fromPod: true, src: mustAddr("198.51.100.1"), dst: mustAddrPort("203.0.113.5:80"), proto: tcp},
			want: dnatTo(true, "10.244.0.3:8080"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := planned(tt.opts, tt.ports...)
			got := outcomes(trace(t, &rs, tt.pkt))
			if !slices.Equal(got, tt.want) {
				t.Errorf("%s:\n got %q\nwant %q\nruleset:\n%s", tt.pkt, got, tt.want, rs.String())
			}
		})
	}
}

func affinitySet(name string, proto v1.Protocol, ep string) string {
	a := mustAddrPort(ep)
	return prefixAffinity + hashName("default/"+name+"/"+protoName(proto)+"/p__"+a.Addr().String()+"/"+strings.TrimPrefix(ep, a.Addr().String()+":"))
}

func TestPlanPortShape(t *testing.T) {
	tcp := v1.ProtocolTCP
	tests := []struct {
		name       string
		info       *proxy.ServicePortInfo
		eps        []proxy.Endpoint
		wantChains int // service + external + endpoints
		wantSets   []time.Duration
		wantElems  []string
	}{
		{
			name:       "nil",
			info:       nil,
			wantChains: 0,
		},
		{
			name:       "unsupported protocol has no plan",
			info:       svcPort("x", v1.Protocol("ICMP"), "10.96.0.10", 80),
			eps:        ready("10.244.0.2:80"),
			wantChains: 0,
		},
		{
			name:       "IPv6-only cluster IP has no plan",
			info:       svcPort("x", tcp, "fd00::10", 80),
			eps:        ready("[fd00::2]:80"),
			wantChains: 0,
		},
		{
			name:       "cluster IP only: service and endpoint chains, no external chain",
			info:       svcPort("x", tcp, "10.96.0.10", 80),
			eps:        ready("10.244.0.2:80", "10.244.0.3:80"),
			wantChains: 3,
			wantElems:  []string{"10.96.0.10:80/TCP"},
		},
		{
			name:       "node port adds the external chain",
			info:       svcPort("x", tcp, "10.96.0.10", 80, withNodePort(30000)),
			eps:        ready("10.244.0.2:80"),
			wantChains: 3,
			wantElems:  []string{"10.96.0.10:80/TCP", "nodeport:30000/TCP"},
		},
		{
			name:       "affinity: one timed set per endpoint",
			info:       svcPort("x", tcp, "10.96.0.10", 80, withSticky(90*time.Second)),
			eps:        ready("10.244.0.2:80", "10.244.0.3:80"),
			wantChains: 3,
			wantSets:   []time.Duration{90 * time.Second, 90 * time.Second},
			wantElems:  []string{"10.96.0.10:80/TCP"},
		},
		{
			name:       "duplicate endpoints collapse",
			info:       svcPort("x", tcp, "10.96.0.10", 80),
			eps:        append(ready("10.244.0.2:80"), ready("10.244.0.2:80")...),
			wantChains: 2,
			wantElems:  []string{"10.96.0.10:80/TCP"},
		},
		{
			name:       "no endpoints: no chains, reject elements",
			info:       svcPort("x", tcp, "10.96.0.10", 80, withNodePort(30000), withLB("10.98.0.1")),
			wantChains: 0,
			wantElems:  []string{"10.96.0.10:80/TCP", "10.98.0.1:80/TCP", "nodeport:30000/TCP"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := PlanPort(tt.info, tt.eps)
			if len(plan.Chains) != tt.wantChains {
				t.Errorf("chains = %d, want %d: %+v", len(plan.Chains), tt.wantChains, plan.Chains)
			}
			var timeouts []time.Duration
			for _, s := range plan.Sets {
				timeouts = append(timeouts, s.Timeout)
				if s.Key != KeyAddr {
					t.Errorf("affinity set %s key %v", s.Name, s.Key)
				}
			}
			if !slices.Equal(timeouts, tt.wantSets) {
				t.Errorf("set timeouts = %v, want %v", timeouts, tt.wantSets)
			}
			if got := destinations(plan.Elements); !slices.Equal(got, tt.wantElems) {
				t.Errorf("elements = %q, want %q", got, tt.wantElems)
			}
			for _, c := range plan.Chains {
				if !isServiceObject(c.Name) || len(c.Name) > maxNameLen {
					t.Errorf("chain name %q: want a per-service name of at most %d bytes", c.Name, maxNameLen)
				}
			}
		})
	}
}

func TestPlanIsDeterministic(t *testing.T) {
	info := svcPort("web", v1.ProtocolTCP, "10.96.0.10", 80, withNodePort(30080), withSticky(time.Hour), withExternal("203.0.113.5"))
	eps := ready("10.244.0.4:8080", "10.244.0.2:8080", "10.244.0.3:8080")
	a := planned(defOpts, PortInput{Info: info, Endpoints: eps})
	b := planned(defOpts, PortInput{Info: info, Endpoints: eps})
	if a.String() != b.String() {
		t.Fatalf("two plans of the same input differ:\n%s\n%s", a.String(), b.String())
	}
}

func TestBaseRulesetNodePorts(t *testing.T) {
	rs := BaseRuleset(defOpts)
	if rs.Table != DefaultTableName {
		t.Errorf("table %q", rs.Table)
	}
	var got []string
	for _, e := range rs.ElementsOf(SetNodePortIPs) {
		got = append(got, e.Key.Addr.String())
	}
	if want := []string{"127.0.0.1", "192.168.1.10"}; !slices.Equal(got, want) {
		t.Errorf("nodeport-ips = %v, want %v", got, want)
	}
	all := BaseRuleset(PlanOptions{Table: "t2", AllNodeAddresses: true, NodePortAddresses: []netip.Addr{loNode}})
	if len(all.ElementsOf(SetNodePortIPs)) != 0 || !strings.Contains(all.String(), "fib daddr type local") {
		t.Errorf("all node addresses: want fib match and no set elements:\n%s", all.String())
	}
	for _, c := range rs.Chains {
		if isServiceObject(c.Name) {
			t.Errorf("fixed chain %q looks like a per-service chain", c.Name)
		}
	}
}

func TestHashNameTruncates(t *testing.T) {
	long := strings.Repeat("a", 300)
	n1, n2 := hashName(long+"1"), hashName(long+"2")
	if len(n1) != maxNameLen || n1 == n2 {
		t.Fatalf("truncated names %d bytes, equal %v", len(n1), n1 == n2)
	}
}
