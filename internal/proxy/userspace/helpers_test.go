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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// Every address these tests use is in 127.0.0.0/8: backends in 127.1/16,
// cluster IPs in 127.96/16, external IPs in 127.97/16, load-balancer
// ingress in 127.98/16, node addresses in 127.99/16. Each test takes fresh
// addresses, so tests never share a socket.
var addrSeq atomic.Uint32

func freshIP(second byte) string {
	n := addrSeq.Add(1)
	return fmt.Sprintf("127.%d.%d.%d", second, byte(n>>8), byte(n))
}

const testTimeout = 20 * time.Second

type env struct {
	t      *testing.T
	ctx    context.Context
	client *fake.Clientset
	p      *Proxier
	reg    *prometheus.Registry
	nodeIP string
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// newEnv starts a Proxier on a fake clientset and waits until it is ready.
func newEnv(t *testing.T, mut func(*Config)) *env {
	t.Helper()
	e := &env{t: t, client: fake.NewClientset(), reg: prometheus.NewRegistry(), nodeIP: freshIP(99)}
	cfg := Config{
		Client:            e.client,
		NodeName:          "node-a",
		NodePortAddresses: []string{e.nodeIP},
		Registerer:        e.reg,
		Logger:            testLogger(t),
		DialTimeout:       2 * time.Second,
		UDPIdleTimeout:    10 * time.Second,
	}
	if mut != nil {
		mut(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.p = p
	ctx, cancel := context.WithCancel(context.Background())
	e.ctx = ctx
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(testTimeout):
			t.Errorf("Run did not return after its context ended")
		}
	})
	select {
	case <-p.Ready():
	case <-time.After(testTimeout):
		t.Fatal("proxier never became ready")
	}
	return e
}

// waitFor waits until cond holds for the proxier's applied state.
func (e *env) waitFor(what string, cond func(Status) bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, testTimeout)
	defer cancel()
	if err := e.p.WaitFor(ctx, cond); err != nil {
		e.t.Fatalf("waiting for %s: %v; status %+v", what, err, e.p.Status())
	}
}

// waitEndpoints waits until key's usable endpoints are exactly want (and,
// with endpoints, its listeners are open; without, closed).
func (e *env) waitEndpoints(key string, want ...string) PortStatus {
	e.t.Helper()
	slices.Sort(want)
	var got PortStatus
	e.waitFor(fmt.Sprintf("%s endpoints %v", key, want), func(s Status) bool {
		ps, ok := s.Ports[key]
		got = ps
		eps := slices.Sorted(slices.Values(ps.Endpoints))
		return ok && slices.Equal(eps, want) && (len(want) == 0) == (len(ps.Listeners) == 0)
	})
	return got
}

type svcOpt func(*v1.Service)

func withPorts(ports ...v1.ServicePort) svcOpt {
	return func(s *v1.Service) { s.Spec.Ports = ports }
}

func (e *env) createService(name, clusterIP string, opts ...svcOpt) *v1.Service {
	e.t.Helper()
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeClusterIP,
			ClusterIP:  clusterIP,
			ClusterIPs: []string{clusterIP},
			Ports:      []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(svc)
	}
	out, err := e.client.CoreV1().Services("default").Create(e.ctx, svc, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create service %s: %v", name, err)
	}
	return out
}

type epSpec struct {
	ip                          string
	ready, serving, terminating *bool
}

func ready(ip string) epSpec { return epSpec{ip: ip} }

func (e *env) sliceObj(svc, name string, ports []discovery.EndpointPort, eps ...epSpec) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discovery.LabelServiceName: svc}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       ports,
	}
	for _, ep := range eps {
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{
			Addresses:  []string{ep.ip},
			Conditions: discovery.EndpointConditions{Ready: ep.ready, Serving: ep.serving, Terminating: ep.terminating},
			NodeName:   ptr.To("node-a"),
		})
	}
	return s
}

func slicePort(name string, port int, proto v1.Protocol) []discovery.EndpointPort {
	return []discovery.EndpointPort{{Name: ptr.To(name), Port: ptr.To(int32(port)), Protocol: ptr.To(proto)}}
}

func (e *env) createSlice(s *discovery.EndpointSlice) {
	e.t.Helper()
	if _, err := e.client.DiscoveryV1().EndpointSlices(s.Namespace).Create(e.ctx, s, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create EndpointSlice %s: %v", s.Name, err)
	}
}

func (e *env) updateSlice(s *discovery.EndpointSlice) {
	e.t.Helper()
	if _, err := e.client.DiscoveryV1().EndpointSlices(s.Namespace).Update(e.ctx, s, metav1.UpdateOptions{}); err != nil {
		e.t.Fatalf("update EndpointSlice %s: %v", s.Name, err)
	}
}

// tcpBackend is a hostname-and-echo server: it greets each connection with
// its name and a newline, then echoes until the client half-closes.
type tcpBackend struct {
	name     string
	addr     netip.AddrPort
	ln       net.Listener
	accepted atomic.Int64
}

// startTCPBackends starts n backends on fresh addresses sharing one port,
// as the pods behind one EndpointSlice port do.
func startTCPBackends(t *testing.T, n int) []*tcpBackend {
	t.Helper()
	var out []*tcpBackend
	port := 0
	for range n {
		ip := freshIP(1)
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
		if err != nil {
			t.Fatalf("start backend: %v", err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		b := &tcpBackend{name: ip, addr: netip.MustParseAddrPort(ln.Addr().String()), ln: ln}
		t.Cleanup(func() { ln.Close() })
		go b.serve()
		out = append(out, b)
	}
	return out
}

func startNamedTCPBackend(t *testing.T, ip, name string) *tcpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("start backend: %v", err)
	}
	b := &tcpBackend{name: name, addr: netip.MustParseAddrPort(ln.Addr().String()), ln: ln}
	t.Cleanup(func() { ln.Close() })
	go b.serve()
	return b
}

func (b *tcpBackend) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.accepted.Add(1)
		go func() {
			defer c.Close()
			if _, err := io.WriteString(c, b.name+"\n"); err != nil {
				return
			}
			io.Copy(c, c)
		}()
	}
}

func (b *tcpBackend) port() int { return int(b.addr.Port()) }

// hello connects to addr and returns the greeting of the backend it
// reached.
func hello(t *testing.T, addr string) string {
	t.Helper()
	return helloFrom(t, "", addr)
}

func helloFrom(t *testing.T, localIP, addr string) string {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read greeting via %s: %v", addr, err)
	}
	return strings.TrimSuffix(line, "\n")
}

// assertRefused checks that a TCP dial to addr is refused outright.
func assertRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s: connected, want connection refused", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
}

func clusterAddr(ip string, port int) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }

// metricValue returns the value of the series of name whose labels include
// want; 0 if there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			sum += value(m)
		}
	}
	return sum
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// eventually polls cond (for state that settles after a connection ends,
// such as metrics) up to testTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
