//go:build linux

package nftables

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	nft "github.com/google/nftables"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/berth-project/berth/internal/proxy"
)

// TestKernel drives a real Proxier against the real kernel, entirely inside
// a network namespace it creates (see inNetns): it asserts where
// connections end up, not what the rules say.
func TestKernel(t *testing.T) {
	if !inNetns(t, "TestKernel", "-test.run") {
		return
	}
	node := setupNode(t, 2)
	for _, a := range []string{"127.0.0.11:8080", "127.0.0.12:8080", "127.0.0.13:8080"} {
		startTCP(t, a)
	}
	for _, a := range []string{"127.0.0.21:5353", "127.0.0.22:5353"} {
		startUDP(t, a)
	}
	for _, p := range node.pods {
		if err := p.in(func() error {
			ln, err := net.Listen("tcp", "0.0.0.0:8080")
			if err == nil {
				serveTCP(t, ln, p.name)
			}
			return err
		}); err != nil {
			t.Fatalf("pod server: %v", err)
		}
	}

	// A table left by a crashed run must be replaced, not merged with.
	k, err := openKernel(DefaultTableName)
	if err != nil {
		t.Fatal(err)
	}
	leftover := BaseRuleset(PlanOptions{})
	leftover.Chains = append(leftover.Chains, Chain{Name: "leftover/chain"})
	if err := k.Replace(&leftover); err != nil {
		t.Fatalf("plant leftover table: %v", err)
	}

	client := fake.NewClientset()
	api := apiObjects{t: t, ctx: context.Background(), client: client}
	p, err := New(Config{
		Client: client, NodeName: "node-a", Logger: testLogger(t),
		NodePortAddresses: []string{"127.0.0.1", gatewayIP},
		SyncPeriod:        2 * time.Second,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(testTimeout):
			return errors.New("Run did not return after its context ended")
		}
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	select {
	case <-p.Ready():
	case <-time.After(testTimeout):
		t.Fatalf("proxier never became ready: %+v", p.Status())
	}
	ins := inspector{t: t}

	t.Run("leftover table replaced and route_localnet on", func(t *testing.T) {
		if slices.Contains(ins.chains(), "leftover/chain") {
			t.Error("the leftover chain survived the first sync")
		}
		if got := readSysctl(t, routeLocalnetPath); got != "1" {
			t.Errorf("route_localnet = %q, want 1 for 127.0.0.1 node ports", got)
		}
	})

	tcp, udp := v1.ProtocolTCP, v1.ProtocolUDP
	api.createService(service("rr", "10.96.0.10", []v1.ServicePort{port("http", tcp, 80)}))
	api.applySlice(slice("rr", "rr-1", "http", tcp, 8080, readyEPs("127.0.0.11", "127.0.0.12", "127.0.0.13")...))
	api.createService(service("other", "10.96.0.11", []v1.ServicePort{port("http", tcp, 80)}))
	api.applySlice(slice("other", "other-1", "http", tcp, 8080, readyEPs("127.0.0.13")...))
	waitStatus(t, p, "rr and other", func(s Status) bool {
		return hasEndpoints("default/rr:http", "127.0.0.11:8080", "127.0.0.12:8080", "127.0.0.13:8080")(s) &&
			hasEndpoints("default/other:http", "127.0.0.13:8080")(s)
	})

	t.Run("round robin over three endpoints", func(t *testing.T) {
		got := spread(t, "10.96.0.10:80", "", 60)
		if want := []string{"127.0.0.11:8080", "127.0.0.12:8080", "127.0.0.13:8080"}; !slices.Equal(keys(got), want) {
			t.Fatalf("60 connections went to %v, want all of %v", got, want)
		}
	})

	t.Run("removed endpoint gets no new connections, other services untouched", func(t *testing.T) {
		otherChain := prefixService + portNameBase(spnOf("default", "other", "http", tcp), tcp)
		before := ins.ruleHandles(otherChain)
		repl := p.Status().Replacements
		api.applySlice(slice("rr", "rr-1", "http", tcp, 8080, readyEPs("127.0.0.11", "127.0.0.13")...))
		waitStatus(t, p, "two endpoints", hasEndpoints("default/rr:http", "127.0.0.11:8080", "127.0.0.13:8080"))
		got := spread(t, "10.96.0.10:80", "", 40)
		if want := []string{"127.0.0.11:8080", "127.0.0.13:8080"}; !slices.Equal(keys(got), want) {
			t.Fatalf("connections went to %v, want only %v", got, want)
		}
		if after := ins.ruleHandles(otherChain); !slices.Equal(before, after) || len(after) == 0 {
			t.Errorf("rules of an unchanged service were rewritten: handles %v -> %v", before, after)
		}
		if r := p.Status().Replacements; r != repl {
			t.Errorf("an endpoint change rebuilt the table (%d -> %d replacements)", repl, r)
		}
		// The removed endpoint's chain is deleted a moment later, in a
		// transaction of its own, without a rebuild.
		gone := prefixEndpoint + hashName("default/rr/tcp/http__127.0.0.12/8080")
		ins.waitChainGone(gone)
		if st := p.Status(); st.Replacements != repl || st.LastError != "" {
			t.Errorf("deleting a retired chain: replacements %d -> %d, error %q", repl, st.Replacements, st.LastError)
		}
	})

	t.Run("nothing changed sends nothing", func(t *testing.T) {
		// Let a pending sync (a retired chain's deletion) land first.
		settled := p.Status()
		p.Sync()
		st := waitStatus(t, p, "a settling sync", func(s Status) bool { return s.Generation > settled.Generation })
		handles := ins.ruleHandles(chainNATOutput)
		p.Sync()
		after := waitStatus(t, p, "a sync", func(s Status) bool { return s.Generation > st.Generation })
		if after.Transactions != st.Transactions {
			t.Errorf("%d transactions for a sync with no changes", after.Transactions-st.Transactions)
		}
		if h := ins.ruleHandles(chainNATOutput); !slices.Equal(h, handles) {
			t.Errorf("base chain rewritten: %v -> %v", handles, h)
		}
	})

	t.Run("no endpoints is refused at once", func(t *testing.T) {
		api.createService(service("empty", "10.96.0.30", []v1.ServicePort{port("http", tcp, 80)}))
		api.createService(service("emptyudp", "10.96.0.31", []v1.ServicePort{port("dns", udp, 53)}))
		waitStatus(t, p, "rejecting", func(s Status) bool {
			return hasEndpoints("default/empty:http")(s) && hasEndpoints("default/emptyudp:dns")(s)
		})
		if _, err := hitTCP("10.96.0.30:80", ""); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("TCP to a service without endpoints: %v, want connection refused (a reset, not a timeout)", err)
		}
		c, err := dialUDP("10.96.0.31:53")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A local sender learns at once: the kernel fails the send of a
		// datagram netfilter rejected (EPERM) and queues the ICMP error.
		if _, err := hitUDP(c); !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("UDP to a service without endpoints: %v, want EPERM or connection refused", err)
		}
		// And a service that loses its last endpoint.
		api.deleteSlice("other-1")
		waitStatus(t, p, "other rejecting", hasEndpoints("default/other:http"))
		if _, err := hitTCP("10.96.0.11:80", ""); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("TCP after the last endpoint left: %v, want connection refused", err)
		}
	})

	t.Run("node port on 127.0.0.1 and on the node IP", func(t *testing.T) {
		api.createService(service("np", "10.96.0.20", []v1.ServicePort{port("http", tcp, 80)}, nodePortSvc(30080)))
		api.applySlice(slice("np", "np-1", "http", tcp, 8080, readyEPs("127.0.0.11", "127.0.0.12")...))
		waitStatus(t, p, "node port", hasEndpoints("default/np:http", "127.0.0.11:8080", "127.0.0.12:8080"))
		for _, addr := range []string{"127.0.0.1:30080", gatewayIP + ":30080"} {
			if got := spread(t, addr, "", 30); !slices.Equal(keys(got), []string{"127.0.0.11:8080", "127.0.0.12:8080"}) {
				t.Errorf("%s went to %v", addr, got)
			}
		}
		// A port that is no node port is left alone.
		if _, err := hitTCP("127.0.0.1:30081", ""); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("127.0.0.1:30081: %v, want the kernel's own refusal", err)
		}
	})

	t.Run("load-balancer and external IPs", func(t *testing.T) {
		svc := service("lb", "10.96.0.21", []v1.ServicePort{port("http", tcp, 80)}, nodePortSvc(30090), func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Spec.ExternalIPs = []string{"10.97.0.10"}
			s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "10.98.0.10"}}
		})
		api.createService(svc)
		api.applySlice(slice("lb", "lb-1", "http", tcp, 8080, readyEPs("127.0.0.12")...))
		waitStatus(t, p, "lb", hasEndpoints("default/lb:http", "127.0.0.12:8080"))
		for _, addr := range []string{"10.98.0.10:80", "10.97.0.10:80", "10.96.0.21:80", "127.0.0.1:30090"} {
			r, err := hitTCP(addr, "")
			if err != nil || r.server != "127.0.0.12:8080" {
				t.Errorf("%s: %v %v, want 127.0.0.12:8080", addr, r, err)
			}
		}
	})

	t.Run("session affinity", func(t *testing.T) {
		api.createService(service("sticky", "10.96.0.40", []v1.ServicePort{port("http", tcp, 80)}, stickySvc(30)))
		api.applySlice(slice("sticky", "sticky-1", "http", tcp, 8080, readyEPs("127.0.0.11", "127.0.0.12", "127.0.0.13")...))
		waitStatus(t, p, "sticky", hasEndpoints("default/sticky:http", "127.0.0.11:8080", "127.0.0.12:8080", "127.0.0.13:8080"))
		for _, src := range []string{"", "127.0.0.1"} {
			if got := spread(t, "10.96.0.40:80", src, 20); len(got) != 1 {
				t.Errorf("client %q was spread over %v; want one endpoint", src, got)
			}
		}
		spn := spnOf("default", "sticky", "http", tcp)
		elems := ins.affinityElements(spn, "127.0.0.11:8080", "127.0.0.12:8080", "127.0.0.13:8080")
		if len(elems) != 2 { // 10.244.0.1 (route source) and 127.0.0.1
			t.Fatalf("affinity sets hold %d clients, want 2: %+v", len(elems), elems)
		}
		for _, e := range elems {
			// The kernel reports an element's own timeout only when it
			// differs from the set's; what is left is its expiry.
			if e.Expires <= 0 || e.Expires > 30*time.Second {
				t.Errorf("affinity element expires in %v, want within the 30s timeout", e.Expires)
			}
		}
		ins.waitSetTimeout(spn, "127.0.0.11:8080", 30*time.Second)
		// A new timeout replaces the sets; affinity still holds.
		svc, _ := client.CoreV1().Services("default").Get(context.Background(), "sticky", metaGet)
		stickySvc(45)(svc)
		api.updateService(svc)
		ins.waitSetTimeout(spn, "127.0.0.11:8080", 45*time.Second)
		if got := spread(t, "10.96.0.40:80", "", 20); len(got) != 1 {
			t.Errorf("after the timeout change the client was spread over %v", got)
		}
		// Affinity off, then the service gone: the sets go with the rules
		// that used them.
		repl := p.Status().Replacements
		svc, _ = client.CoreV1().Services("default").Get(context.Background(), "sticky", metaGet)
		svc.Spec.SessionAffinity = v1.ServiceAffinityNone
		svc.Spec.SessionAffinityConfig = nil
		api.updateService(svc)
		ins.waitSetGone(affinityName(spn, "127.0.0.11:8080"))
		if got := spread(t, "10.96.0.40:80", "", 40); len(got) != 3 {
			t.Errorf("without affinity the client went to %v, want all three", got)
		}
		api.createService(service("sticky2", "10.96.0.41", []v1.ServicePort{port("http", tcp, 80)}, stickySvc(30)))
		api.applySlice(slice("sticky2", "sticky2-1", "http", tcp, 8080, readyEPs("127.0.0.11")...))
		waitStatus(t, p, "sticky2", hasEndpoints("default/sticky2:http", "127.0.0.11:8080"))
		spn2 := spnOf("default", "sticky2", "http", tcp)
		ins.waitSetTimeout(spn2, "127.0.0.11:8080", 30*time.Second)
		api.deleteService("sticky2")
		ins.waitSetGone(affinityName(spn2, "127.0.0.11:8080"))
		if st := p.Status(); st.Replacements != repl || st.LastError != "" {
			t.Errorf("affinity teardown: replacements %d -> %d, error %q", repl, st.Replacements, st.LastError)
		}
	})

	t.Run("UDP spreads and follows endpoint removal", func(t *testing.T) {
		api.createService(service("dns", "10.96.0.53", []v1.ServicePort{port("dns", udp, 53)}))
		api.applySlice(slice("dns", "dns-1", "dns", udp, 5353, readyEPs("127.0.0.21", "127.0.0.22")...))
		waitStatus(t, p, "dns", hasEndpoints("default/dns:dns", "127.0.0.21:5353", "127.0.0.22:5353"))
		seen := map[string]int{}
		for range 40 {
			c, err := dialUDP("10.96.0.53:53")
			if err != nil {
				t.Fatal(err)
			}
			r, err := hitUDP(c)
			c.Close()
			if err != nil {
				t.Fatalf("UDP query: %v", err)
			}
			seen[r.server]++
		}
		if want := []string{"127.0.0.21:5353", "127.0.0.22:5353"}; !slices.Equal(keys(seen), want) {
			t.Errorf("40 UDP clients went to %v, want both of %v", seen, want)
		}

		// One client socket, one endpoint; the endpoint is replaced: the
		// same socket's next datagram must reach the new one, which needs
		// the old conntrack entry gone.
		api.createService(service("udpmove", "10.96.0.54", []v1.ServicePort{port("dns", udp, 53)}))
		api.applySlice(slice("udpmove", "udpmove-1", "dns", udp, 5353, readyEPs("127.0.0.21")...))
		waitStatus(t, p, "udpmove", hasEndpoints("default/udpmove:dns", "127.0.0.21:5353"))
		c, err := dialUDP("10.96.0.54:53")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if r, err := hitUDP(c); err != nil || r.server != "127.0.0.21:5353" {
			t.Fatalf("first datagram: %v %v", r, err)
		}
		api.applySlice(slice("udpmove", "udpmove-1", "dns", udp, 5353, readyEPs("127.0.0.22")...))
		waitStatus(t, p, "udpmove moved", hasEndpoints("default/udpmove:dns", "127.0.0.22:5353"))
		if r, err := hitUDP(c); err != nil || r.server != "127.0.0.22:5353" {
			t.Fatalf("after the endpoint moved the same socket reached %v (%v), want 127.0.0.22:5353", r, err)
		}
	})

	t.Run("terminating endpoints serve only when none is ready", func(t *testing.T) {
		api.createService(service("term", "10.96.0.60", []v1.ServicePort{port("http", tcp, 80)}))
		api.applySlice(slice("term", "term-1", "http", tcp, 8080,
			endpoint{"127.0.0.12", "terminating"}, endpoint{"127.0.0.13", "dead"}))
		waitStatus(t, p, "terminating only", hasEndpoints("default/term:http", "127.0.0.12:8080"))
		if got := spread(t, "10.96.0.60:80", "", 10); !slices.Equal(keys(got), []string{"127.0.0.12:8080"}) {
			t.Errorf("went to %v, want the serving terminating endpoint", got)
		}
		api.applySlice(slice("term", "term-1", "http", tcp, 8080,
			endpoint{"127.0.0.12", "terminating"}, endpoint{"127.0.0.11", "ready"}))
		waitStatus(t, p, "ready one", hasEndpoints("default/term:http", "127.0.0.11:8080"))
		if got := spread(t, "10.96.0.60:80", "", 10); !slices.Equal(keys(got), []string{"127.0.0.11:8080"}) {
			t.Errorf("went to %v, want only the ready endpoint", got)
		}
	})

	t.Run("pods: prerouting, hairpin, pod-to-pod, loopback sources", func(t *testing.T) {
		pod0, pod1 := node.pods[0], node.pods[1]
		api.createService(service("podsvc", "10.96.0.50", []v1.ServicePort{port("http", tcp, 80)}, nodePortSvc(30100)))
		api.applySlice(slice("podsvc", "podsvc-1", "http", tcp, 8080, readyEPs(pod0.ip, pod1.ip)...))
		waitStatus(t, p, "podsvc", hasEndpoints("default/podsvc:http", pod0.ip+":8080", pod1.ip+":8080"))

		// From pod0 through the cluster IP: itself (hairpin, masqueraded
		// to the gateway) and pod1 (which sees pod0's own address).
		seen := map[string]string{}
		for range 30 {
			var r reply
			err := pod0.in(func() (err error) { r, err = hitTCP("10.96.0.50:80", ""); return err })
			if err != nil {
				t.Fatalf("pod0 -> cluster IP: %v", err)
			}
			seen[r.server] = r.peerIP()
		}
		if want := map[string]string{pod0.name: gatewayIP, pod1.name: pod0.ip}; fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Errorf("pod0 through its service reached %v (server: client IP seen), want %v", seen, want)
		}
		// From the node: its own address, a loopback source (needs
		// route_localnet and masquerade), and the node ports.
		cases := []struct{ addr, src, wantPeer string }{
			{"10.96.0.50:80", "", gatewayIP}, // the route's source: no masquerade needed
			{"10.96.0.50:80", "127.0.0.1", gatewayIP},
			{"127.0.0.1:30100", "", gatewayIP},
			{gatewayIP + ":30100", "", gatewayIP},
		}
		for _, c := range cases {
			got := map[string]string{}
			for range 30 {
				r, err := hitTCP(c.addr, c.src)
				if err != nil {
					t.Fatalf("node -> %s from %q: %v", c.addr, c.src, err)
				}
				got[r.server] = r.peerIP()
			}
			if want := map[string]string{pod0.name: c.wantPeer, pod1.name: c.wantPeer}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("node -> %s from %q reached %v, want %v", c.addr, c.src, got, want)
			}
		}
		// A pod reaching a node port, and a service without endpoints.
		if err := pod1.in(func() error { _, err := hitTCP(gatewayIP+":30100", ""); return err }); err != nil {
			t.Errorf("pod1 -> node port: %v", err)
		}
		var rerr error
		_ = pod1.in(func() error { _, rerr = hitTCP("10.96.0.30:80", ""); return nil })
		if !errors.Is(rerr, syscall.ECONNREFUSED) {
			t.Errorf("pod -> service without endpoints: %v, want connection refused", rerr)
		}
		// A pod's UDP datagram is rejected in forward: ICMP port unreachable.
		_ = pod1.in(func() error {
			c, err := dialUDP("10.96.0.31:53")
			if err != nil {
				rerr = err
				return nil
			}
			defer c.Close()
			_, rerr = hitUDP(c)
			return nil
		})
		if !errors.Is(rerr, syscall.ECONNREFUSED) {
			t.Errorf("pod UDP -> service without endpoints: %v, want connection refused", rerr)
		}
	})

	t.Run("hundreds of services, and a rebuild in one batch", func(t *testing.T) {
		const n, batch = 600, 60
		upTo := func(m int) func(Status) bool {
			return func(s Status) bool {
				for i := range m {
					if len(s.Ports[fmt.Sprintf("default/bulk-%03d:http", i)].Endpoints) != 3 {
						return false
					}
				}
				return s.LastError == ""
			}
		}
		// In batches: the fake clientset's watch channels hold only 100
		// events.
		for i := range n {
			name := fmt.Sprintf("bulk-%03d", i)
			ip := fmt.Sprintf("10.99.%d.%d", i/250, i%250+1) // 10.99.0.1 - 10.99.2.100
			api.createService(service(name, ip, []v1.ServicePort{port("http", tcp, 80)}, nodePortSvc(int32(31000+i))))
			api.applySlice(slice(name, name+"-1", "http", tcp, 8080, readyEPs("127.0.0.11", "127.0.0.12", "127.0.0.13")...))
			if (i+1)%batch == 0 || i == n-1 {
				waitStatus(t, p, "bulk services", upTo(i+1))
			}
		}
		allThere := upTo(n)
		if _, err := hitTCP("10.99.0.150:80", ""); err != nil {
			t.Errorf("bulk service: %v", err)
		}
		// Someone deletes the table: the periodic check rebuilds it, all
		// of it, in one batch.
		repl := p.Status().Replacements
		if err := k.DeleteTable(); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, p, "rebuild", func(s Status) bool { return s.Replacements > repl && allThere(s) })
		for _, addr := range []string{"10.99.2.100:80", "127.0.0.1:31599", "10.96.0.10:80"} {
			if _, err := hitTCP(addr, ""); err != nil {
				t.Errorf("after the rebuild %s: %v", addr, err)
			}
		}
		for i := range n {
			api.deleteService(fmt.Sprintf("bulk-%03d", i))
			if (i+1)%batch == 0 || i == n-1 {
				waitStatus(t, p, "bulk gone", func(s Status) bool {
					_, ok := s.Ports[fmt.Sprintf("default/bulk-%03d:http", i)]
					return !ok
				})
			}
		}
	})

	t.Run("nft lists the table", func(t *testing.T) {
		if _, err := exec.LookPath("nft"); err != nil {
			t.Skip("nft CLI not installed; inspection skipped")
		}
		out, err := exec.Command("nft", "list", "table", "ip", DefaultTableName).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list table: %v\n%s", err, out)
		}
		for _, want := range []string{"numgen random mod 3", "dnat to 127.0.0.11:8080", "masquerade fully-random", "reject with tcp reset"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("nft list table lacks %q", want)
			}
		}
		t.Logf("nft list table ip %s:\n%s", DefaultTableName, out)
	})

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ins.tableExists() {
		t.Error("table still there after Run returned")
	}
	if got := readSysctl(t, routeLocalnetPath); got != "0" {
		t.Errorf("route_localnet = %q after Run, want it restored to 0", got)
	}
	if _, err := exec.LookPath("nft"); err == nil {
		if out, err := exec.Command("nft", "list", "table", "ip", DefaultTableName).CombinedOutput(); err == nil {
			t.Errorf("nft still lists the table after Run:\n%s", out)
		}
	}
	if _, err := hitTCP("10.96.0.10:80", ""); err == nil {
		t.Error("the cluster IP still answers after Run")
	}

	// Node ports on every local address, in a table of another name.
	t.Run("node ports on 0.0.0.0 in table berthall", func(t *testing.T) {
		client2 := fake.NewClientset()
		api2 := apiObjects{t: t, ctx: context.Background(), client: client2}
		p2, err := New(Config{Client: client2, Logger: testLogger(t), NodePortAddresses: []string{"0.0.0.0"}, TableName: "berthall"})
		if err != nil {
			t.Fatal(err)
		}
		ctx2, cancel2 := context.WithCancel(context.Background())
		done2 := make(chan error, 1)
		go func() { done2 <- p2.Run(ctx2) }()
		<-p2.Ready()
		api2.createService(service("np", "10.96.0.20", []v1.ServicePort{port("http", tcp, 80)}, nodePortSvc(30200)))
		api2.applySlice(slice("np", "np-1", "http", tcp, 8080, readyEPs("127.0.0.13")...))
		waitStatus(t, p2, "np", hasEndpoints("default/np:http", "127.0.0.13:8080"))
		for _, addr := range []string{"127.0.0.1:30200", gatewayIP + ":30200", "127.0.0.77:30200"} {
			if r, err := hitTCP(addr, ""); err != nil || r.server != "127.0.0.13:8080" {
				t.Errorf("%s: %v %v", addr, r, err)
			}
		}
		cancel2()
		if err := <-done2; err != nil {
			t.Errorf("Run: %v", err)
		}
		tables, _ := ins.conn().ListTablesOfFamily(nft.TableFamilyIPv4)
		if len(tables) != 0 {
			t.Errorf("%d tables left after Run", len(tables))
		}
	})

	// CleanupLeftovers removes a table a crashed run left, once.
	if err := k.Replace(&leftover); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		removed, err := CleanupLeftovers("")
		if err != nil || removed != want {
			t.Errorf("CleanupLeftovers call %d = %v, %v; want %v", i+1, removed, err, want)
		}
	}
	if ins.tableExists() {
		t.Error("table still there after CleanupLeftovers")
	}
	if _, err := CleanupLeftovers("bad name"); err == nil {
		t.Error("CleanupLeftovers with a bad table name: want an error")
	}
}

// spread makes n connections to addr (from src if set) and counts which
// server answered each.
func spread(t *testing.T, addr, src string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		r, err := hitTCP(addr, src)
		if err != nil {
			t.Fatalf("connect %s from %q: %v", addr, src, err)
		}
		seen[r.server]++
	}
	return seen
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func readSysctl(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// inspector reads the table back through netlink.
type inspector struct{ t *testing.T }

var testTable = &nft.Table{Name: DefaultTableName, Family: nft.TableFamilyIPv4}

func (i inspector) conn() *nft.Conn {
	c, err := nft.New()
	if err != nil {
		i.t.Fatal(err)
	}
	return c
}

func (i inspector) tableExists() bool {
	tables, err := i.conn().ListTablesOfFamily(nft.TableFamilyIPv4)
	if err != nil {
		i.t.Fatal(err)
	}
	return slices.ContainsFunc(tables, func(t *nft.Table) bool { return t.Name == DefaultTableName })
}

func (i inspector) chains() []string {
	cs, err := i.conn().ListChainsOfTableFamily(nft.TableFamilyIPv4)
	if err != nil {
		i.t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		if c.Table.Name == DefaultTableName {
			out = append(out, c.Name)
		}
	}
	return out
}

func (i inspector) ruleHandles(chain string) []uint64 {
	rules, err := i.conn().GetRules(testTable, &nft.Chain{Name: chain, Table: testTable})
	if err != nil {
		i.t.Fatalf("rules of %s: %v", chain, err)
	}
	var out []uint64
	for _, r := range rules {
		out = append(out, r.Handle)
	}
	return out
}

func affinityName(spn proxy.ServicePortName, ep string) string {
	a := mustAddrPort(ep)
	return prefixAffinity + hashName(fmt.Sprintf("%s/%s/%s/%s__%s/%d", spn.Namespace, spn.Name, protoName(spn.Protocol), spn.Port, a.Addr(), a.Port()))
}

func (i inspector) affinityElements(spn proxy.ServicePortName, eps ...string) []nft.SetElement {
	var out []nft.SetElement
	for _, ep := range eps {
		s, err := i.conn().GetSetByName(testTable, affinityName(spn, ep))
		if err != nil {
			i.t.Fatalf("affinity set for %s: %v", ep, err)
		}
		elems, err := i.conn().GetSetElements(s)
		if err != nil {
			i.t.Fatal(err)
		}
		out = append(out, elems...)
	}
	return out
}

func (i inspector) waitChainGone(name string) {
	deadline := time.Now().Add(testTimeout)
	for slices.Contains(i.chains(), name) {
		if time.Now().After(deadline) {
			i.t.Fatalf("chain %s never deleted", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (i inspector) waitSetGone(name string) {
	deadline := time.Now().Add(testTimeout)
	for {
		if _, err := i.conn().GetSetByName(testTable, name); err != nil {
			return
		}
		if time.Now().After(deadline) {
			i.t.Fatalf("set %s never deleted", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (i inspector) waitSetTimeout(spn proxy.ServicePortName, ep string, want time.Duration) {
	deadline := time.Now().Add(testTimeout)
	for {
		s, err := i.conn().GetSetByName(testTable, affinityName(spn, ep))
		if err == nil && s.Timeout == want {
			return
		}
		if time.Now().After(deadline) {
			i.t.Fatalf("affinity set timeout never became %v (last %v, %v)", want, s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
