package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func splitHostPort(t *testing.T, rawURL string) (string, int) {
	t.Helper()
	u := strings.TrimPrefix(strings.TrimPrefix(rawURL, "http://"), "https://")
	h, p, err := net.SplitHostPort(u)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

func TestHTTPGet(t *testing.T) {
	var mu sync.Mutex
	var seen http.Header
	var seenHost string
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen, seenHost = r.Header.Clone(), r.Host
		mu.Unlock()
		fmt.Fprint(w, "fine")
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusInternalServerError) })
	mux.HandleFunc("/redirect-local", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/fail", http.StatusFound) })
	mux.HandleFunc("/redirect-away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusFound)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()
	host, port := splitHostPort(t, srv.URL)
	_, tlsPort := splitHostPort(t, tlsSrv.URL)

	p := NewProber()
	defer p.Close()
	target := Target{PodIP: host, Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	tests := []struct {
		name    string
		action  corev1.HTTPGetAction
		timeout time.Duration
		want    Result
		output  string
	}{
		{name: "200", action: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt32(int32(port))}, want: Success, output: "fine"},
		{name: "named port", action: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString("http")}, want: Success},
		{name: "numeric string port", action: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString(strconv.Itoa(port))}, want: Success},
		{name: "500", action: corev1.HTTPGetAction{Path: "/fail", Port: intstr.FromInt32(int32(port))}, want: Failure, output: "HTTP probe failed with statuscode: 500"},
		{name: "local redirect followed", action: corev1.HTTPGetAction{Path: "/redirect-local", Port: intstr.FromInt32(int32(port))}, want: Failure, output: "statuscode: 500"},
		{name: "redirect elsewhere is a success", action: corev1.HTTPGetAction{Path: "/redirect-away", Port: intstr.FromInt32(int32(port))}, want: Success},
		{name: "https without verification", action: corev1.HTTPGetAction{Path: "/ok", Scheme: corev1.URISchemeHTTPS, Port: intstr.FromInt32(int32(tlsPort))}, want: Success},
		{name: "timeout", action: corev1.HTTPGetAction{Path: "/slow", Port: intstr.FromInt32(int32(port))}, timeout: 200 * time.Millisecond, want: Failure, output: "Client.Timeout exceeded"},
		{name: "unknown named port", action: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString("metrics")}, want: Unknown, output: `port "metrics" is not a port of the container`},
		{name: "bad port", action: corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt32(0)}, want: Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 2 * time.Second
			}
			res, out := p.Do(context.Background(), &corev1.ProbeHandler{HTTPGet: &tt.action}, timeout, target)
			if res != tt.want || !strings.Contains(out, tt.output) {
				t.Fatalf("got %v %q, want %v containing %q", res, out, tt.want, tt.output)
			}
		})
	}

	t.Run("headers", func(t *testing.T) {
		a := corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt32(int32(port)), HTTPHeaders: []corev1.HTTPHeader{
			{Name: "Host", Value: "example.test"}, {Name: "X-Custom", Value: "1"},
		}}
		if res, out := p.Do(context.Background(), &corev1.ProbeHandler{HTTPGet: &a}, time.Second, target); res != Success {
			t.Fatalf("%v %s", res, out)
		}
		mu.Lock()
		defer mu.Unlock()
		if seenHost != "example.test" || seen.Get("X-Custom") != "1" || !strings.HasPrefix(seen.Get("User-Agent"), "kube-probe/1.") || seen.Get("Accept") != "*/*" {
			t.Fatalf("host %q headers %v", seenHost, seen)
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, closed := splitHostPort(t, "http://"+ln.Addr().String())
		ln.Close()
		a := corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(int32(closed))}
		res, out := p.Do(context.Background(), &corev1.ProbeHandler{HTTPGet: &a}, time.Second, target)
		want := fmt.Sprintf(`Get "http://127.0.0.1:%d/": dial tcp 127.0.0.1:%d: connect: connection refused`, closed, closed)
		if res != Failure || out != want {
			t.Fatalf("got %v %q, want %q", res, out, want)
		}
	})
}

func TestTCPSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	host, port := splitHostPort(t, "http://"+ln.Addr().String())
	p := NewProber()
	target := Target{PodIP: host}
	if res, out := p.Do(context.Background(), &corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}}, time.Second, target); res != Success {
		t.Fatalf("open port: %v %s", res, out)
	}
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	_, deadPort := splitHostPort(t, "http://"+dead.Addr().String())
	dead.Close()
	res, out := p.Do(context.Background(), &corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(deadPort))}}, time.Second, target)
	if res != Failure || !strings.Contains(out, "connection refused") {
		t.Fatalf("closed port: %v %q", res, out)
	}
}

type fakeExec struct {
	code   int
	output string
	block  bool
	err    error
}

func (f fakeExec) Exec(ctx context.Context, argv []string, out io.Writer) (int, error) {
	if f.block {
		<-ctx.Done()
		return -1, fmt.Errorf("exec %q: %w", argv[0], ctx.Err())
	}
	io.WriteString(out, f.output)
	return f.code, f.err
}

func TestExec(t *testing.T) {
	p := NewProber()
	tests := []struct {
		name   string
		exec   Execer
		argv   []string
		want   Result
		output string
	}{
		{name: "exit 0", exec: fakeExec{output: "ok\n"}, argv: []string{"true"}, want: Success, output: "ok\n"},
		{name: "exit 1 with output", exec: fakeExec{code: 1, output: "not ready"}, argv: []string{"check"}, want: Failure, output: "not ready"},
		{name: "exit 2 silent", exec: fakeExec{code: 2}, argv: []string{"check", "x"}, want: Failure, output: `command "check x" exited with 2`},
		{name: "timeout", exec: fakeExec{block: true}, argv: []string{"sleep", "9"}, want: Failure, output: `command "sleep 9" timed out after 1s`},
		{name: "cannot run", exec: fakeExec{err: errors.New(`exec: "nope": executable file not found`)}, argv: []string{"nope"}, want: Failure, output: "executable file not found"},
		{name: "no execer", argv: []string{"true"}, want: Unknown},
		{name: "empty command", exec: fakeExec{}, want: Unknown},
		{name: "huge output is cut", exec: fakeExec{code: 1, output: strings.Repeat("x", 3*maxOutput)}, argv: []string{"x"}, want: Failure, output: strings.Repeat("x", maxOutput)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, out := p.Do(context.Background(), &corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: tt.argv}}, time.Second, Target{Exec: tt.exec})
			if res != tt.want || !strings.Contains(out, tt.output) || len(out) > maxOutput+200 {
				t.Fatalf("got %v %q, want %v containing %q", res, out, tt.want, tt.output)
			}
		})
	}
}

func TestGRPCUnsupported(t *testing.T) {
	res, out := NewProber().Do(context.Background(), &corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000}}, time.Second, Target{})
	if res != Unknown || !strings.Contains(out, "gRPC probes are not supported") {
		t.Fatalf("%v %q", res, out)
	}
}
