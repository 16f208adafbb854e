package agnhost

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server's writes and the test's
// reads at once.
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

type boundAddr struct {
	kind string
	addr net.Addr
}

// instance is one subcommand run by a test, in-process.
type instance struct {
	cancel context.CancelCauseFunc
	done   chan error
	stdout *syncBuffer
	stderr *syncBuffer
	addrs  map[string][]net.Addr
}

// startOpts configure start.
type startOpts struct {
	env       map[string]string // BERTH_BIND_ADDRESS defaults to 127.0.0.1
	uploadDir string
	ctx       context.Context
	// wait lists the listener kinds to wait for, one entry per listener.
	wait []string
}

// start runs args (subcommand first) and waits until the listeners in
// o.wait are bound; the test must end it with stop or wait.
func start(t *testing.T, o startOpts, args ...string) *instance {
	t.Helper()
	env := map[string]string{EnvBindAddress: "127.0.0.1"}
	for k, v := range o.env {
		env[k] = v
	}
	inst := &instance{
		done:   make(chan error, 1),
		stdout: &syncBuffer{},
		stderr: &syncBuffer{},
		addrs:  map[string][]net.Addr{},
	}
	bound := make(chan boundAddr, 16)
	rt := newRuntime(inst.stdout, inst.stderr, func(k string) string { return env[k] })
	rt.listening = func(kind string, addr net.Addr) { bound <- boundAddr{kind, addr} }
	if o.uploadDir != "" {
		rt.uploadDir = o.uploadDir
	}
	parent := o.ctx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancelCause(parent)
	inst.cancel = cancel
	go func() { inst.done <- run(ctx, args, rt) }()
	t.Cleanup(func() {
		cancel(nil)
		select {
		case <-inst.done:
		case <-time.After(20 * time.Second):
			t.Errorf("%v did not stop", args)
		}
	})

	want := map[string]int{}
	for _, k := range o.wait {
		want[k]++
	}
	for got := 0; got < len(o.wait); {
		select {
		case b := <-bound:
			if want[b.kind] > 0 {
				want[b.kind]--
				got++
			}
			inst.addrs[b.kind] = append(inst.addrs[b.kind], b.addr)
		case err := <-inst.done:
			inst.done <- err
			t.Fatalf("%v exited before listening: %v\nstderr:\n%s", args, err, inst.stderr)
		case <-time.After(20 * time.Second):
			t.Fatalf("%v did not listen on %v\nstderr:\n%s", args, o.wait, inst.stderr)
		}
	}
	return inst
}

func (i *instance) addr(t *testing.T, kind string) string {
	t.Helper()
	if len(i.addrs[kind]) == 0 {
		t.Fatalf("no %s listener", kind)
	}
	return i.addrs[kind][0].String()
}

func (i *instance) url(t *testing.T, path string) string {
	return "http://" + i.addr(t, "http") + path
}

// wait returns what the run returned, failing the test if it keeps running.
func (i *instance) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-i.done:
		i.done <- err // for Cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("did not return\nstderr:\n%s", i.stderr)
		return nil
	}
}

// stop cancels the run and returns its result.
func (i *instance) stop(t *testing.T) error {
	t.Helper()
	i.cancel(nil)
	return i.wait(t)
}

// assertReleased checks that every address the run bound can be bound again.
func (i *instance) assertReleased(t *testing.T) {
	t.Helper()
	for kind, addrs := range i.addrs {
		for _, a := range addrs {
			if kind == "udp" {
				c, err := net.ListenPacket("udp", a.String())
				if err != nil {
					t.Errorf("udp %s still in use: %v", a, err)
					continue
				}
				c.Close()
				continue
			}
			l, err := net.Listen("tcp", a.String())
			if err != nil {
				t.Errorf("tcp %s still in use: %v", a, err)
				continue
			}
			l.Close()
		}
	}
}

var testClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

type response struct {
	code   int
	body   string
	header http.Header
}

func get(t *testing.T, url string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return response{code: resp.StatusCode, body: string(body), header: resp.Header}
}

// udpAsk sends msg from a fresh socket and returns the reply.
func udpAsk(t *testing.T, addr, msg string) (reply, local string) {
	t.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("udp %q to %s: %v", msg, addr, err)
	}
	return string(buf[:n]), conn.LocalAddr().String()
}

// freePort returns a loopback address nothing listens on (for tcp and udp).
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func exitCodeOf(t *testing.T, err error) int {
	t.Helper()
	var exit *ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("want *ExitError, got %v", err)
	}
	return exit.Code
}

func mustContain(t *testing.T, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%q does not contain %q", s, sub)
		}
	}
}
