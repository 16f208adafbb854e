package userspace

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func TestNewValidatesConfig(t *testing.T) {
	client := fake.NewClientset()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no client", Config{}},
		{"node port address is a CIDR", Config{Client: client, NodePortAddresses: []string{"127.0.0.0/8"}}},
		{"node port address is junk", Config{Client: client, NodePortAddresses: []string{"localhost"}}},
		{"negative duration", Config{Client: client, DialTimeout: -time.Second}},
		{"negative attempts", Config{Client: client, MaxDialAttempts: -1}},
		{"sync period below minimum", Config{Client: client, MinSyncPeriod: time.Minute, SyncPeriod: time.Second}},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil {
			t.Errorf("%s: New succeeded, want error", tt.name)
		}
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Client: client, Registerer: reg}); err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := New(Config{Client: client, Registerer: reg}); err == nil {
		t.Error("second proxier on the same registry: want a registration error")
	}
}

func TestRoundRobin(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d backends", n), func(t *testing.T) {
			e := newEnv(t, nil)
			backends := startTCPBackends(t, n)
			cip := freshIP(96)
			e.createService("web", cip)
			var eps []epSpec
			var want []string
			for _, b := range backends {
				eps = append(eps, ready(b.name))
				want = append(want, b.addr.String())
			}
			e.createSlice(e.sliceObj("web", "web-1", slicePort("http", backends[0].port(), v1.ProtocolTCP), eps...))
			ps := e.waitEndpoints("default/web:http", want...)

			// Connections go through the endpoints in order, twice around.
			for round := range 2 {
				for i, ep := range ps.Endpoints {
					got := hello(t, clusterAddr(cip, 80))
					if wantName, _, _ := strings.Cut(ep, ":"); got != wantName {
						t.Fatalf("round %d connection %d reached %s, want %s", round, i, got, wantName)
					}
				}
			}
			for _, b := range backends {
				if got := b.accepted.Load(); got != 2 {
					t.Errorf("backend %s got %d connections, want 2", b.name, got)
				}
			}
		})
	}
}

func TestEndpointAddedRemovedNotReady(t *testing.T) {
	e := newEnv(t, nil)
	bs := startTCPBackends(t, 2)
	a, b := bs[0], bs[1]
	cip := freshIP(96)
	addr := clusterAddr(cip, 80)
	e.createService("web", cip)
	s := e.sliceObj("web", "web-1", slicePort("http", a.port(), v1.ProtocolTCP), ready(a.name))
	e.createSlice(s)
	ps := e.waitEndpoints("default/web:http", a.addr.String())
	if got := hello(t, addr); got != a.name {
		t.Fatalf("reached %s, want %s", got, a.name)
	}

	// Added: both get traffic; the listener stays the one already open.
	s = e.sliceObj("web", "web-1", slicePort("http", a.port(), v1.ProtocolTCP), ready(a.name), ready(b.name))
	e.updateSlice(s)
	ps2 := e.waitEndpoints("default/web:http", a.addr.String(), b.addr.String())
	if ps2.Opens != ps.Opens {
		t.Errorf("adding an endpoint reopened the listener (opens %d -> %d)", ps.Opens, ps2.Opens)
	}
	seen := map[string]int{}
	for range 4 {
		seen[hello(t, addr)]++
	}
	if seen[a.name] != 2 || seen[b.name] != 2 {
		t.Fatalf("spread over two endpoints = %v, want 2 each", seen)
	}

	// Not ready: no new connection reaches it.
	s = e.sliceObj("web", "web-1", slicePort("http", a.port(), v1.ProtocolTCP), epSpec{ip: a.name, ready: ptr.To(false), serving: ptr.To(false)}, ready(b.name))
	e.updateSlice(s)
	e.waitEndpoints("default/web:http", b.addr.String())
	for range 3 {
		if got := hello(t, addr); got != b.name {
			t.Fatalf("reached %s, want only %s", got, b.name)
		}
	}

	// Removed, leaving only the not-ready one: refused.
	s = e.sliceObj("web", "web-1", slicePort("http", a.port(), v1.ProtocolTCP), epSpec{ip: a.name, ready: ptr.To(false), serving: ptr.To(false)})
	e.updateSlice(s)
	e.waitEndpoints("default/web:http")
	assertRefused(t, addr)

	// Ready again: served again.
	e.updateSlice(e.sliceObj("web", "web-1", slicePort("http", a.port(), v1.ProtocolTCP), ready(a.name)))
	e.waitEndpoints("default/web:http", a.addr.String())
	if got := hello(t, addr); got != a.name {
		t.Fatalf("reached %s, want %s", got, a.name)
	}
}

func TestTerminatingServingFallback(t *testing.T) {
	e := newEnv(t, nil)
	bs := startTCPBackends(t, 3)
	serving, notServing, fresh := bs[0], bs[1], bs[2]
	cip := freshIP(96)
	addr := clusterAddr(cip, 80)
	e.createService("web", cip)
	terminating := func(ip string, isServing bool) epSpec {
		return epSpec{ip: ip, ready: ptr.To(false), serving: ptr.To(isServing), terminating: ptr.To(true)}
	}
	ports := slicePort("http", serving.port(), v1.ProtocolTCP)
	e.createSlice(e.sliceObj("web", "web-1", ports, terminating(serving.name, true), terminating(notServing.name, false)))
	e.waitEndpoints("default/web:http", serving.addr.String())
	for range 3 {
		if got := hello(t, addr); got != serving.name {
			t.Fatalf("with no ready endpoint, reached %s, want the serving terminating %s", got, serving.name)
		}
	}
	// A ready endpoint appears: terminating ones get nothing new.
	e.updateSlice(e.sliceObj("web", "web-1", ports, terminating(serving.name, true), terminating(notServing.name, false), ready(fresh.name)))
	e.waitEndpoints("default/web:http", fresh.addr.String())
	for range 3 {
		if got := hello(t, addr); got != fresh.name {
			t.Fatalf("reached %s, want the ready %s", got, fresh.name)
		}
	}
}

func TestNoEndpointsRefused(t *testing.T) {
	e := newEnv(t, nil)
	cip := freshIP(96)
	e.createService("web", cip, withPorts(
		v1.ServicePort{Name: "http", Port: 80, Protocol: v1.ProtocolTCP},
		v1.ServicePort{Name: "dns", Port: 1053, Protocol: v1.ProtocolUDP},
	))
	e.waitEndpoints("default/web:http")
	e.waitEndpoints("default/web:dns")
	assertRefused(t, clusterAddr(cip, 80))

	// Only unready endpoints: still refused.
	bs := startTCPBackends(t, 1)
	e.createSlice(e.sliceObj("web", "web-1", slicePort("http", bs[0].port(), v1.ProtocolTCP), epSpec{ip: bs[0].name, ready: ptr.To(false)}))
	// Slice events arrive in order: once a later slice is applied, so is this one.
	e.createService("sentinel", freshIP(96))
	e.createSlice(e.sliceObj("sentinel", "sentinel-1", slicePort("http", bs[0].port(), v1.ProtocolTCP), ready(bs[0].name)))
	e.waitEndpoints("default/sentinel:http", bs[0].addr.String())
	e.waitEndpoints("default/web:http")
	assertRefused(t, clusterAddr(cip, 80))

	// UDP without endpoints: the kernel answers port unreachable, which a
	// connected socket reports as connection refused.
	c, err := net.Dial("udp", clusterAddr(cip, 1053))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("q"))
	_, err = c.Read(make([]byte, 16))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("UDP to a port with no endpoints: %v, want connection refused", err)
	}
}

func TestDialFailureFailsOver(t *testing.T) {
	e := newEnv(t, nil)
	live := startTCPBackends(t, 1)[0]
	// A fresh address with nothing listening on the shared port; it sorts
	// before the live one, so round robin tries it first.
	dead := freshIP(1)
	for dead > live.name {
		dead = freshIP(1)
	}
	cip := freshIP(96)
	addr := clusterAddr(cip, 80)
	e.createService("web", cip)
	deadEP := fmt.Sprintf("%s:%d", dead, live.port())
	e.createSlice(e.sliceObj("web", "web-1", slicePort("http", live.port(), v1.ProtocolTCP), ready(live.name), ready(dead)))
	e.waitEndpoints("default/web:http", live.addr.String(), deadEP)
	for i := range 4 {
		if got := hello(t, addr); got != live.name {
			t.Fatalf("connection %d reached %s, want %s", i, got, live.name)
		}
	}
	if n := metricValue(t, e.reg, MetricDialFailures, map[string]string{"endpoint": deadEP}); n < 1 {
		t.Errorf("dial failures for %s = %v, want at least 1", deadEP, n)
	}
	if n := metricValue(t, e.reg, MetricConnections, map[string]string{"endpoint": live.addr.String()}); n != 4 {
		t.Errorf("connections to %s = %v, want 4", live.addr, n)
	}

	// Every endpoint dead: the accepted client connection is closed.
	e.updateSlice(e.sliceObj("web", "web-1", slicePort("http", live.port(), v1.ProtocolTCP), ready(dead)))
	e.waitEndpoints("default/web:http", deadEP)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes through a service with only dead endpoints", n)
	} else if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("connection hung instead of closing: %v", err)
	}
}

func TestSessionAffinity(t *testing.T) {
	e := newEnv(t, nil)
	bs := startTCPBackends(t, 3)
	cip := freshIP(96)
	addr := clusterAddr(cip, 80)
	e.createService("web", cip, func(s *v1.Service) {
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](600)}}
	})
	var eps []epSpec
	var want []string
	for _, b := range bs {
		eps = append(eps, ready(b.name))
		want = append(want, b.addr.String())
	}
	e.createSlice(e.sliceObj("web", "web-1", slicePort("http", bs[0].port(), v1.ProtocolTCP), eps...))
	e.waitEndpoints("default/web:http", want...)

	clients := []string{freshIP(2), freshIP(2), freshIP(2)}
	first := map[string]string{}
	for _, c := range clients {
		first[c] = helloFrom(t, c, addr)
	}
	for range 3 {
		for _, c := range clients {
			if got := helloFrom(t, c, addr); got != first[c] {
				t.Fatalf("client %s moved from %s to %s", c, first[c], got)
			}
		}
	}
	// Different clients still spread: three clients took three endpoints.
	distinct := map[string]bool{}
	for _, b := range first {
		distinct[b] = true
	}
	if len(distinct) != 3 {
		t.Errorf("three new clients landed on %d endpoints, want 3: %v", len(distinct), first)
	}
}

func TestDrainAfterEndpointRemoved(t *testing.T) {
	e := newEnv(t, nil)
	bs := startTCPBackends(t, 2)
	a, b := bs[0], bs[1]
	cip := freshIP(96)
	addr := clusterAddr(cip, 80)
	e.createService("web", cip)
	ports := slicePort("http", a.port(), v1.ProtocolTCP)
	e.createSlice(e.sliceObj("web", "web-1", ports, ready(a.name), ready(b.name)))
	e.waitEndpoints("default/web:http", a.addr.String(), b.addr.String())

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	r := bufio.NewReader(c)
	if line, _ := r.ReadString('\n'); line != a.name+"\n" {
		t.Fatalf("first connection reached %q, want %s", line, a.name)
	}

	e.updateSlice(e.sliceObj("web", "web-1", ports, ready(b.name)))
	e.waitEndpoints("default/web:http", b.addr.String())
	for range 3 {
		if got := hello(t, addr); got != b.name {
			t.Fatalf("new connection reached %s after %s was removed", got, a.name)
		}
	}
	// The established connection to the removed endpoint still flows both
	// ways, and half-closing it still gets the rest of the reply.
	if _, err := io.WriteString(c, "still here\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "still here\n" {
		t.Fatalf("echo over the draining connection: %q, %v", line, err)
	}
	payload := strings.Repeat("x", 256<<10)
	if _, err := io.WriteString(c, payload); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if string(rest) != payload {
		t.Fatalf("read %d bytes after half-close, want %d", len(rest), len(payload))
	}
}

func TestNodePortExternalIPsAndLoadBalancer(t *testing.T) {
	e := newEnv(t, nil)
	be := startTCPBackends(t, 1)[0]
	cip, eip, lbip := freshIP(96), freshIP(97), freshIP(98)
	nodePort := 30000 + int(addrSeq.Add(1)%2000)
	svc := e.createService("lb", cip, func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort = int32(nodePort)
		s.Spec.ExternalIPs = []string{eip}
	})
	svc.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: lbip}}
	if _, err := e.client.CoreV1().Services("default").UpdateStatus(e.ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.createSlice(e.sliceObj("lb", "lb-1", slicePort("http", be.port(), v1.ProtocolTCP), ready(be.name)))
	e.waitFor("four listeners", func(s Status) bool { return len(s.Ports["default/lb:http"].Listeners) == 4 })

	for _, a := range []string{clusterAddr(cip, 80), clusterAddr(e.nodeIP, nodePort), clusterAddr(eip, 80), clusterAddr(lbip, 80)} {
		if got := hello(t, a); got != be.name {
			t.Errorf("via %s reached %s, want %s", a, got, be.name)
		}
	}

	// A ClusterIP Service gets no node port, even with one in its spec.
	cip2 := freshIP(96)
	nodePort2 := nodePort + 1
	e.createService("internal", cip2, func(s *v1.Service) { s.Spec.Ports[0].NodePort = int32(nodePort2) })
	e.createSlice(e.sliceObj("internal", "internal-1", slicePort("http", be.port(), v1.ProtocolTCP), ready(be.name)))
	ps := e.waitEndpoints("default/internal:http", be.addr.String())
	if len(ps.Listeners) != 1 {
		t.Errorf("ClusterIP service listeners = %v, want only the cluster IP", ps.Listeners)
	}
	assertRefused(t, clusterAddr(e.nodeIP, nodePort2))
}

// udpBackend answers each datagram with "name|payload".
func startUDPBackends(t *testing.T, n int) []*net.UDPConn {
	t.Helper()
	var out []*net.UDPConn
	port := 0
	for range n {
		ip := freshIP(1)
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip), Port: port})
		if err != nil {
			t.Fatal(err)
		}
		port = c.LocalAddr().(*net.UDPAddr).Port
		t.Cleanup(func() { c.Close() })
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				c.WriteToUDPAddrPort([]byte(ip+"|"+string(buf[:n])), from)
			}
		}()
		out = append(out, c)
	}
	return out
}

func udpAsk(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("UDP write: %v", err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("UDP read: %v", err)
	}
	name, payload, _ := strings.Cut(string(buf[:n]), "|")
	if payload != msg {
		t.Fatalf("UDP reply payload %q, want %q", payload, msg)
	}
	return name
}

func TestUDP(t *testing.T) {
	e := newEnv(t, nil)
	bs := startUDPBackends(t, 2)
	nameOf := func(c *net.UDPConn) string { return c.LocalAddr().(*net.UDPAddr).IP.String() }
	port := bs[0].LocalAddr().(*net.UDPAddr).Port
	cip := freshIP(96)
	svcAddr := clusterAddr(cip, 1053)
	e.createService("dns", cip, withPorts(v1.ServicePort{Name: "dns", Port: 1053, Protocol: v1.ProtocolUDP}))
	e.createSlice(e.sliceObj("dns", "dns-1", slicePort("dns", port, v1.ProtocolUDP), ready(nameOf(bs[0])), ready(nameOf(bs[1]))))
	e.waitEndpoints("default/dns:dns", fmt.Sprintf("%s:%d", nameOf(bs[0]), port), fmt.Sprintf("%s:%d", nameOf(bs[1]), port))

	// Replies come from the service address: an unconnected socket sees
	// the source, and a connected one would drop anything else.
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(freshIP(2))})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := u.WriteTo([]byte("hi"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(svcAddr))); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, from, err := u.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if from.String() != svcAddr {
		t.Fatalf("reply came from %s, want the service address %s", from, svcAddr)
	}
	firstName, _, _ := strings.Cut(string(buf[:n]), "|")

	// One client address is one session: it stays on its endpoint. The
	// next client address starts the next session on the other endpoint.
	c1, err := net.Dial("udp", svcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	got1 := udpAsk(t, c1, "a")
	for _, m := range []string{"b", "c"} {
		if got := udpAsk(t, c1, m); got != got1 {
			t.Fatalf("session moved from %s to %s", got1, got)
		}
	}
	if got1 == firstName {
		t.Fatalf("second client landed on %s like the first; want round robin", got1)
	}

	// The session's endpoint leaves: the next datagram goes to the other.
	var remaining string
	for _, b := range bs {
		if nameOf(b) != got1 {
			remaining = nameOf(b)
		}
	}
	e.updateSlice(e.sliceObj("dns", "dns-1", slicePort("dns", port, v1.ProtocolUDP), ready(remaining)))
	e.waitEndpoints("default/dns:dns", fmt.Sprintf("%s:%d", remaining, port))
	if got := udpAsk(t, c1, "d"); got != remaining {
		t.Fatalf("after its endpoint left, session reached %s, want %s", got, remaining)
	}
	// The remaining endpoint served the first client's session and the
	// moved one; the removed endpoint's series are gone with it.
	remainingEP := fmt.Sprintf("%s:%d", remaining, port)
	if n := metricValue(t, e.reg, MetricConnections, map[string]string{"protocol": "UDP", "endpoint": remainingEP}); n != 2 {
		t.Errorf("UDP sessions to %s = %v, want 2", remainingEP, n)
	}
	if n := metricValue(t, e.reg, MetricConnections, map[string]string{"protocol": "UDP", "endpoint": fmt.Sprintf("%s:%d", got1, port)}); n != 0 {
		t.Errorf("removed endpoint still has session series (%v)", n)
	}
}

func TestNamedPortMapping(t *testing.T) {
	e := newEnv(t, nil)
	ip := freshIP(1)
	httpB := startNamedTCPBackend(t, ip, "http-server")
	metricsB := startNamedTCPBackend(t, ip, "metrics-server")
	cip := freshIP(96)
	e.createService("web", cip, withPorts(
		v1.ServicePort{Name: "http", Port: 80, Protocol: v1.ProtocolTCP},
		v1.ServicePort{Name: "metrics", Port: 9090, Protocol: v1.ProtocolTCP},
	))
	s := e.sliceObj("web", "web-1", nil, ready(ip))
	s.Ports = append(slicePort("metrics", metricsB.port(), v1.ProtocolTCP), slicePort("http", httpB.port(), v1.ProtocolTCP)...)
	e.createSlice(s)
	e.waitEndpoints("default/web:http", httpB.addr.String())
	e.waitEndpoints("default/web:metrics", metricsB.addr.String())
	if got := hello(t, clusterAddr(cip, 80)); got != "http-server" {
		t.Errorf("port 80 reached %s, want http-server", got)
	}
	if got := hello(t, clusterAddr(cip, 9090)); got != "metrics-server" {
		t.Errorf("port 9090 reached %s, want metrics-server", got)
	}
}

func TestServiceDeletionAndSkippedServices(t *testing.T) {
	e := newEnv(t, nil)
	be := startTCPBackends(t, 1)[0]
	cip := freshIP(96)
	addr := clusterAddr(cip, 80)
	e.createService("web", cip)
	e.createSlice(e.sliceObj("web", "web-1", slicePort("http", be.port(), v1.ProtocolTCP), ready(be.name)))
	e.waitEndpoints("default/web:http", be.addr.String())
	if got := hello(t, addr); got != be.name {
		t.Fatalf("reached %s", got)
	}

	if err := e.client.CoreV1().Services("default").Delete(e.ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("service port gone", func(s Status) bool { _, ok := s.Ports["default/web:http"]; return !ok })
	assertRefused(t, addr)
	if n := metricValue(t, e.reg, MetricConnections, map[string]string{"service": "default/web"}); n != 0 {
		t.Errorf("deleted service still has connection series (%v)", n)
	}

	// Headless and ExternalName Services are not proxied. Events arrive in
	// order, so once the sentinel is applied the others have been seen.
	e.createService("headless", v1.ClusterIPNone)
	e.createService("external", freshIP(96), func(s *v1.Service) {
		s.Spec.Type, s.Spec.ExternalName = v1.ServiceTypeExternalName, "example.org"
	})
	e.createService("sentinel", freshIP(96))
	e.waitFor("sentinel", func(s Status) bool { _, ok := s.Ports["default/sentinel:http"]; return ok })
	st := e.p.Status()
	for _, k := range []string{"default/headless:http", "default/external:http"} {
		if _, ok := st.Ports[k]; ok {
			t.Errorf("%s is proxied, want skipped", k)
		}
	}
}

func TestIncrementalSync(t *testing.T) {
	e := newEnv(t, nil)
	bs := startTCPBackends(t, 3)
	ipA, ipB := freshIP(96), freshIP(96)
	ports := slicePort("http", bs[0].port(), v1.ProtocolTCP)
	e.createService("a", ipA)
	e.createService("b", ipB)
	e.createSlice(e.sliceObj("a", "a-1", ports, ready(bs[0].name)))
	e.createSlice(e.sliceObj("b", "b-1", ports, ready(bs[0].name), ready(bs[1].name)))
	e.waitEndpoints("default/a:http", bs[0].addr.String())
	psB := e.waitEndpoints("default/b:http", bs[0].addr.String(), bs[1].addr.String())
	// Advance b's round robin by one, so a reset would show.
	if got := hello(t, clusterAddr(ipB, 80)); got != bs[0].name {
		t.Fatalf("b reached %s", got)
	}

	// Churn a's endpoints; b must not be touched at all.
	for i := range 5 {
		eps := []epSpec{ready(bs[0].name)}
		if i%2 == 0 {
			eps = append(eps, ready(bs[2].name))
		}
		e.updateSlice(e.sliceObj("a", "a-1", ports, eps...))
		want := []string{bs[0].addr.String()}
		if i%2 == 0 {
			want = append(want, bs[2].addr.String())
		}
		psA := e.waitEndpoints("default/a:http", want...)
		if psA.Opens != 1 {
			t.Fatalf("a's listener reopened on an endpoint change (opens %d)", psA.Opens)
		}
	}
	if got := e.p.Status().Ports["default/b:http"]; got.Opens != psB.Opens {
		t.Fatalf("b's listener reopened by a's changes (opens %d -> %d)", psB.Opens, got.Opens)
	}
	if got := hello(t, clusterAddr(ipB, 80)); got != bs[1].name {
		t.Fatalf("b's round robin was reset by a's changes: reached %s, want %s", got, bs[1].name)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, nil)
	be := startTCPBackends(t, 1)[0]
	cip := freshIP(96)
	e.createService("web", cip)
	e.createSlice(e.sliceObj("web", "web-1", slicePort("http", be.port(), v1.ProtocolTCP), ready(be.name)))
	e.waitEndpoints("default/web:http", be.addr.String())
	labels := map[string]string{"service": "default/web", "port": "http", "protocol": "TCP", "endpoint": be.addr.String()}

	held, err := net.Dial("tcp", clusterAddr(cip, 80))
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(held)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if n := metricValue(t, e.reg, MetricActiveConnections, labels); n != 1 {
		t.Errorf("active connections with one open = %v, want 1", n)
	}
	for range 2 {
		hello(t, clusterAddr(cip, 80))
	}
	io.WriteString(held, "ping\n") // 5 bytes to the endpoint
	r.ReadString('\n')
	held.Close()

	greeting := float64(len(be.name) + 1)
	eventually(t, "connections to drain", func() bool { return metricValue(t, e.reg, MetricActiveConnections, labels) == 0 })
	eventually(t, "byte counters", func() bool {
		return metricValue(t, e.reg, MetricBytes, with(labels, "direction", ToClient)) == 3*greeting+5 &&
			metricValue(t, e.reg, MetricBytes, with(labels, "direction", ToEndpoint)) == 5
	})
	if n := metricValue(t, e.reg, MetricConnections, labels); n != 3 {
		t.Errorf("connections = %v, want 3", n)
	}
	if n := metricValue(t, e.reg, MetricDialFailures, labels); n != 0 {
		t.Errorf("dial failures = %v, want 0", n)
	}
	if n := metricValue(t, e.reg, MetricSyncs, nil); n < 1 {
		t.Errorf("syncs = %v, want at least 1", n)
	}
	if n := metricValue(t, e.reg, MetricSyncDuration, nil); n < 1 {
		t.Errorf("sync duration observations = %v, want at least 1", n)
	}
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}

func TestRunStopsEverything(t *testing.T) {
	client := fake.NewClientset()
	p, err := New(Config{Client: client, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()

	be := startTCPBackends(t, 1)[0]
	cip := freshIP(96)
	e := &env{t: t, ctx: ctx, client: client, p: p}
	e.createService("web", cip)
	e.createSlice(e.sliceObj("web", "web-1", slicePort("http", be.port(), v1.ProtocolTCP), ready(be.name)))
	e.waitEndpoints("default/web:http", be.addr.String())
	c, err := net.Dial("tcp", clusterAddr(cip, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n')

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return after cancel")
	}
	assertRefused(t, clusterAddr(cip, 80))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("established connection still open after Run returned")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("established connection not closed by shutdown")
	}
	if err := p.Run(context.Background()); err == nil {
		t.Fatal("second Run: want error")
	}
}

// countingAddrs is an AddressManager that counts users per address and can
// fail the first Ensure calls of an address.
type countingAddrs struct {
	mu        sync.Mutex
	refs      map[netip.Addr]int
	failFirst map[netip.Addr]int
	bad       []error
}

func (c *countingAddrs) Ensure(ip netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failFirst[ip] > 0 {
		c.failFirst[ip]--
		return fmt.Errorf("injected failure for %s", ip)
	}
	c.refs[ip]++
	return nil
}

func (c *countingAddrs) Release(ip netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs[ip] == 0 {
		c.bad = append(c.bad, fmt.Errorf("release of %s without ensure", ip))
		return c.bad[len(c.bad)-1]
	}
	c.refs[ip]--
	return nil
}

func (c *countingAddrs) users(ip string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refs[netip.MustParseAddr(ip)]
}

func TestAddressManagerUseAndRetry(t *testing.T) {
	cip, eip := freshIP(96), freshIP(97)
	addrs := &countingAddrs{refs: map[netip.Addr]int{}, failFirst: map[netip.Addr]int{netip.MustParseAddr(eip): 1}}
	e := newEnv(t, func(c *Config) { c.Addresses = addrs })
	be := startTCPBackends(t, 1)[0]
	e.createService("web", cip, withPorts(
		v1.ServicePort{Name: "http", Port: 80, Protocol: v1.ProtocolTCP},
		v1.ServicePort{Name: "alt", Port: 8080, Protocol: v1.ProtocolTCP},
	), func(s *v1.Service) { s.Spec.ExternalIPs = []string{eip} })

	// No endpoints yet: the addresses are already held (so clients are
	// refused by this host), one user per service port.
	e.waitEndpoints("default/web:http")
	e.waitEndpoints("default/web:alt")
	if n := addrs.users(cip); n != 2 {
		t.Fatalf("cluster IP users = %d, want 2", n)
	}

	s := e.sliceObj("web", "web-1", slicePort("http", be.port(), v1.ProtocolTCP), ready(be.name))
	s.Ports = append(s.Ports, slicePort("alt", be.port(), v1.ProtocolTCP)...)
	e.createSlice(s)
	// One Ensure of the external IP failed; the retry opens its listener.
	e.waitFor("all listeners after retry", func(s Status) bool {
		return len(s.Ports["default/web:http"].Listeners) == 2 && len(s.Ports["default/web:alt"].Listeners) == 2
	})
	if got := hello(t, clusterAddr(eip, 80)); got != be.name {
		t.Fatalf("via external IP reached %s", got)
	}
	if n := addrs.users(eip); n != 2 {
		t.Fatalf("external IP users = %d, want 2", n)
	}

	if err := e.client.CoreV1().Services("default").Delete(e.ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("service gone", func(s Status) bool { return len(s.Ports) == 0 })
	if a, b := addrs.users(cip), addrs.users(eip); a != 0 || b != 0 {
		t.Fatalf("after deletion users = %d, %d; want all released", a, b)
	}
	addrs.mu.Lock()
	defer addrs.mu.Unlock()
	if len(addrs.bad) > 0 {
		t.Fatalf("unbalanced releases: %v", addrs.bad)
	}
}

func TestAddressOutsideLoopbackIsReported(t *testing.T) {
	// The default Loopback manager cannot provide 10.x; the port is known
	// but gets no listener. No traffic is sent to that address.
	e := newEnv(t, nil)
	be := startTCPBackends(t, 1)[0]
	e.createService("web", "10.96.0.10")
	e.createSlice(e.sliceObj("web", "web-1", slicePort("http", be.port(), v1.ProtocolTCP), ready(be.name)))
	e.waitFor("endpoints recorded", func(s Status) bool { return len(s.Ports["default/web:http"].Endpoints) == 1 })
	if l := e.p.Status().Ports["default/web:http"].Listeners; len(l) != 0 {
		t.Fatalf("listeners on an address the manager refused: %v", l)
	}
}

func TestPeriodicResyncIsIdempotent(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SyncPeriod = 10 * time.Millisecond })
	be := startTCPBackends(t, 1)[0]
	cip := freshIP(96)
	e.createService("web", cip)
	e.createSlice(e.sliceObj("web", "web-1", slicePort("http", be.port(), v1.ProtocolTCP), ready(be.name)))
	ps := e.waitEndpoints("default/web:http", be.addr.String())
	gen := e.p.Status().Generation
	// With no change at all, periodic full syncs keep coming and leave the
	// open listener alone.
	e.waitFor("five periodic syncs", func(s Status) bool { return s.Generation >= gen+5 })
	if got := e.p.Status().Ports["default/web:http"]; got.Opens != ps.Opens || len(got.Listeners) != 1 {
		t.Fatalf("periodic syncs changed the port: %+v, was %+v", got, ps)
	}
	if got := hello(t, clusterAddr(cip, 80)); got != be.name {
		t.Fatalf("reached %s", got)
	}
}

// syncRecorder keeps the servicePorts count of every "proxy sync applied"
// record.
type syncRecorder struct {
	mu     sync.Mutex
	counts []int64
}

func (r *syncRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *syncRecorder) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "proxy sync applied" {
		return nil
	}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "servicePorts" {
			r.mu.Lock()
			r.counts = append(r.counts, a.Value.Int64())
			r.mu.Unlock()
		}
		return true
	})
	return nil
}
func (r *syncRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *syncRecorder) WithGroup(string) slog.Handler      { return r }

func (r *syncRecorder) take() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.counts
	r.counts = nil
	return out
}

// The periodic re-check of every service port goes a chunk per sync, so a
// change that arrives when it is due waits for one chunk, not the pass.
func TestPeriodicRecheckGoesInChunks(t *testing.T) {
	rec := &syncRecorder{}
	e := newEnv(t, func(c *Config) { c.SyncPeriod = time.Hour; c.Logger = slog.New(rec) })
	bes := startTCPBackends(t, 2)
	const n = 4
	cips := make([]string, n)
	for i := range n {
		cips[i] = freshIP(96)
		e.createService(fmt.Sprintf("web-%d", i), cips[i])
		e.createSlice(e.sliceObj(fmt.Sprintf("web-%d", i), fmt.Sprintf("web-%d-1", i), slicePort("http", bes[0].port(), v1.ProtocolTCP), ready(bes[0].name)))
	}
	for i := range n {
		e.waitEndpoints(fmt.Sprintf("default/web-%d:http", i), bes[0].addr.String())
	}
	e.p.syncMu.Lock()
	e.p.lastFull = time.Now().Add(-2 * time.Hour)
	e.p.recheckChunk = 1
	e.p.syncMu.Unlock()
	rec.take()

	e.updateSlice(e.sliceObj("web-0", "web-0-1", slicePort("http", bes[1].port(), v1.ProtocolTCP), ready(bes[1].name)))
	var got []int64
	deadline := time.Now().Add(testTimeout)
	for len(got) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		got = append(got, rec.take()...)
	}
	// One port per sync, the first sync also applying the change: n syncs
	// of one or two ports each.
	if len(got) != n || slices.ContainsFunc(got, func(c int64) bool { return c < 1 || c > 2 }) {
		t.Fatalf("service ports per sync = %v, want %d syncs of 1 or 2 (one re-checked port each, plus the change)", got, n)
	}
	if got := hello(t, clusterAddr(cips[0], 80)); got != bes[1].name {
		t.Fatalf("reached %s, want %s", got, bes[1].name)
	}
	e.p.syncMu.Lock()
	left, last := len(e.p.recheck), e.p.lastFull
	e.p.syncMu.Unlock()
	if left != 0 || time.Since(last) > time.Minute {
		t.Errorf("after the pass: %d ports left to re-check, last pass started %v ago", left, time.Since(last))
	}
	for i := 1; i < n; i++ {
		if got := hello(t, clusterAddr(cips[i], 80)); got != bes[0].name {
			t.Errorf("web-%d reached %s after the re-check, want %s", i, got, bes[0].name)
		}
	}
}
