package forward

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// backend is a stand-in for a container: it answers "NAME:LINE\n" to each
// line-terminated request and closes. Each backend listens on its own
// loopback address, as each pod has its own IP.
type backend struct {
	name string
	ln   net.Listener
	hits atomic.Int64
	wg   sync.WaitGroup
}

func startBackend(t *testing.T, name, ip string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	b := &backend{name: name, ln: ln}
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				b.hits.Add(1)
				fmt.Fprintf(c, "%s:%s", b.name, line)
			})
		}
	})
	t.Cleanup(b.close)
	return b
}

func (b *backend) close() {
	_ = b.ln.Close()
	b.wg.Wait()
}

// pfServer serves POST /api/v1/namespaces/NS/pods/NAME/portforward with the
// kubelet's own server side of the protocol, dialing the backends.
type pfServer struct {
	srv *httptest.Server

	mu       sync.Mutex
	ports    map[string]map[int32]string // pod -> container port -> backend address
	dials    map[string]int              // upgrades per pod
	conns    []net.Conn                  // every TCP connection accepted
	refuse   map[string]int              // pod -> HTTP code to refuse its upgrade with
	deadAddr string                      // an address where nothing listens
}

func startPFServer(t *testing.T) *pfServer {
	t.Helper()
	s := &pfServer{ports: map[string]map[int32]string{}, dials: map[string]int{}, refuse: map[string]int{}}
	// An address that is certainly closed: bind, note, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.deadAddr = ln.Addr().String()
	_ = ln.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/namespaces/{ns}/pods/{pod}/portforward", func(w http.ResponseWriter, r *http.Request) {
		pod := r.PathValue("pod")
		s.mu.Lock()
		s.dials[pod]++
		code := s.refuse[pod]
		s.mu.Unlock()
		if code != 0 {
			writeStatus(w, code, pod)
			return
		}
		portforward.ServePortForward(w, r, s, pod, "", nil, 10*time.Minute, 30*time.Second, portforward.SupportedProtocols)
	})
	s.srv = httptest.NewUnstartedServer(mux)
	s.srv.Listener = &trackingListener{Listener: s.srv.Listener, s: s}
	s.srv.Start()
	t.Cleanup(func() {
		s.killConnections()
		s.srv.Close()
	})
	return s
}

func writeStatus(w http.ResponseWriter, code int, pod string) {
	reason := metav1.StatusReasonForbidden
	msg := fmt.Sprintf("pods %q is forbidden: User \"test\" cannot create resource \"pods/portforward\"", pod)
	if code == http.StatusUnauthorized {
		reason, msg = metav1.StatusReasonUnauthorized, "Unauthorized"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: msg, Reason: reason, Code: int32(code),
	})
}

// PortForward is the container side: dial the backend that plays this pod's port.
func (s *pfServer) PortForward(ctx context.Context, pod, _ string, port int32, stream io.ReadWriteCloser) error {
	s.mu.Lock()
	addr, ok := s.ports[pod][port]
	if !ok {
		addr = s.deadAddr
	}
	s.mu.Unlock()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(c, stream)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(stream, c)
	_ = stream.Close()
	<-done
	return nil
}

func (s *pfServer) setPort(pod string, port int32, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ports[pod] == nil {
		s.ports[pod] = map[int32]string{}
	}
	s.ports[pod][port] = addr
}

func (s *pfServer) dialsTo(pod string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dials[pod]
}

// killConnections cuts every connection, as an API server restart would.
func (s *pfServer) killConnections() {
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackingListener struct {
	net.Listener
	s *pfServer
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.mu.Lock()
		l.s.conns = append(l.s.conns, c)
		l.s.mu.Unlock()
	}
	return c, err
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness runs a forwarder against a fake clientset (for the reads and
// watches) and a real HTTP server (for the SPDY port-forward part).
type harness struct {
	t        *testing.T
	client   *fake.Clientset
	pf       *pfServer
	backends map[string]*backend
	f        *forwarder
	bound    []Listening
	logs     *syncBuffer
	out      *syncBuffer
	cancel   context.CancelFunc
	done     chan error
}

// pods maps pod name to its loopback IP; each gets a backend on "port 8080".
var podIPs = map[string]string{"a": "127.0.0.2", "b": "127.0.0.3", "c": "127.0.0.4", "d": "127.0.0.5"}

func newHarness(t *testing.T, objs ...k8sruntime.Object) *harness {
	t.Helper()
	h := &harness{t: t, pf: startPFServer(t), backends: map[string]*backend{}, logs: &syncBuffer{}, out: &syncBuffer{}}
	for name, ip := range podIPs {
		b := startBackend(t, name, ip)
		h.backends[name] = b
		h.pf.setPort(name, 8080, b.ln.Addr().String())
	}
	h.client = fake.NewClientset(objs...)
	return h
}

// start runs the forwarder in the background and waits until it listens.
func (h *harness) start(opts Options) {
	h.t.Helper()
	if opts.Client == nil {
		opts.Client = h.client
	}
	opts.Config = &rest.Config{Host: h.pf.srv.URL}
	opts.Console = NewConsole(h.logs, ConsoleConfig{})
	opts.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Out = h.out
	opts.StatusInterval = 50 * time.Millisecond
	opts.retryBase = 10 * time.Millisecond
	ready := make(chan []Listening, 1)
	opts.Ready = func(l []Listening) { ready <- l }
	f, err := newForwarder(opts)
	if err != nil {
		h.t.Fatalf("newForwarder: %v", err)
	}
	h.f = f
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- f.run(ctx) }()
	select {
	case h.bound = <-ready:
	case err := <-h.done:
		h.t.Fatalf("forwarder stopped before listening: %v\nlogs:\n%s", err, h.logs)
	case <-time.After(10 * time.Second):
		h.t.Fatalf("forwarder did not listen within 10s\nlogs:\n%s", h.logs)
	}
	h.t.Cleanup(func() {
		if h.cancel != nil {
			h.stop()
		}
	})
}

// stop cancels the forwarder and checks that it returns nil promptly.
func (h *harness) stop() {
	h.t.Helper()
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		h.t.Fatalf("Run did not return within 10s of cancel\n%s", buf[:runtime.Stack(buf, true)])
	}
}

// addr is the local address of the i-th listener.
func (h *harness) addr(i int) string { return h.bound[i].Local }

// waitReady waits until target ti's watch shows exactly these ready pods and
// its informer is watching, so that the next change is seen.
func (h *harness) waitReady(ti int, pods ...string) {
	h.t.Helper()
	want := strings.Join(pods, ",")
	var got string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		view, _, synced, _ := h.f.targets[ti].set.snapshot()
		var names []string
		for _, e := range view.Ready {
			names = append(names, e.Pod)
		}
		got = strings.Join(names, ",")
		if synced && got == want && h.watching() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("ready pods = %q, want %q\nlogs:\n%s", got, want, h.logs)
}

// watching reports whether the fake has served a watch; its watches do not
// replay, so changes made before it would be lost.
func (h *harness) watching() bool {
	for _, a := range h.client.Actions() {
		if a.GetVerb() == "watch" {
			return true
		}
	}
	return false
}

func (h *harness) updateSlice(s *discoveryv1.EndpointSlice) {
	h.t.Helper()
	if _, err := h.client.DiscoveryV1().EndpointSlices(s.Namespace).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// request sends one line through addr and returns the answer, or an error
// when the connection is closed without one (a refused connection).
func request(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	if len(b) == 0 {
		return "", errors.New("closed without an answer")
	}
	return strings.TrimSpace(string(b)), nil
}

// requests sends n requests one after another and counts answers per backend.
func requests(t *testing.T, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		ans, err := request(addr)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		name, rest, _ := strings.Cut(ans, ":")
		if rest != "hello" {
			t.Fatalf("request %d: answer %q", i, ans)
		}
		got[name]++
	}
	return got
}

func webService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
				{Name: "broken", Port: 81, TargetPort: intstr.FromInt32(9999), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

// webSlice is the EndpointSlice of web with these endpoints; a pod name
// with a "-" suffix is not ready, "~" is terminating.
func webSlice(pods ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)},
			{Name: ptr.To("broken"), Port: ptr.To(int32(9999)), Protocol: ptr.To(corev1.ProtocolTCP)},
		},
	}
	for _, p := range pods {
		ready, terminating := true, false
		switch {
		case strings.HasSuffix(p, "-"):
			p, ready = strings.TrimSuffix(p, "-"), false
		case strings.HasSuffix(p, "~"):
			p, ready, terminating = strings.TrimSuffix(p, "~"), false, true
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{podIPs[p]},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready || terminating), Terminating: ptr.To(terminating)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: p},
		})
	}
	return s
}

// checkGoroutines waits for the goroutine count to fall back to base.
func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if runtime.NumGoroutine() <= base {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines left, %d before the test:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
}

func TestMain(m *testing.M) {
	// The kubelet-side server logs every refused pod port through klog.
	klog.SetSlogLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}
