package backend

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/berth-project/berth/bench/load"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func freeAddr(t *testing.T) string {
	l := listen(t)
	defer l.Close()
	return l.Addr().String()
}

func TestBackendHTTPAndBulk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	httpAddr, bulkAddr := freeAddr(t), freeAddr(t)
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() { done <- Run(runCtx, Config{HTTPAddr: httpAddr, BulkAddr: bulkAddr, Name: "pod-a"}) }()
	if _, err := waitListening(ctx, httpAddr); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, want string }{{"/hostname", "pod-a"}, {"/echo?msg=hi", "hi"}, {"/readyz", "ok"}} {
		status, body, err := load.GetOnce(ctx, httpAddr, tt.path, 2*time.Second)
		if err != nil || status != 200 || string(body) != tt.want {
			t.Errorf("GET %s = %d %q %v, want 200 %q", tt.path, status, body, err, tt.want)
		}
	}
	ka := load.LatencyKeepAlive(ctx, httpAddr, "/echo?msg=x", 50, 5*time.Second)
	if len(ka.Samples) != 50 || ka.Errors != 0 {
		t.Errorf("keep-alive: %d samples, %d errors (%v)", len(ka.Samples), ka.Errors, ka.FirstErr)
	}
	nc := load.LatencyNewConn(ctx, httpAddr, "/echo?msg=x", 20, 5*time.Second)
	if len(nc.Samples) != 20 || nc.Errors != 0 {
		t.Errorf("new connection: %d samples, %d errors (%v)", len(nc.Samples), nc.Errors, nc.FirstErr)
	}
	for _, n := range []int64{1, 1 << 20, 3<<20 + 17} {
		r, err := load.Bulk(ctx, bulkAddr, n, 5*time.Second)
		if err != nil || r.Bytes != n || r.Truncated {
			t.Errorf("Bulk(%d) = %+v, %v", n, r, err)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestHoldIdle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	httpAddr := freeAddr(t)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = Run(runCtx, Config{HTTPAddr: httpAddr, Name: "x"}) }()
	if _, err := waitListening(ctx, httpAddr); err != nil {
		t.Fatal(err)
	}
	called := false
	r := load.HoldIdle(ctx, httpAddr, 50, 8, 10*time.Millisecond, func() { called = true })
	if r.Opened != 50 || r.Verified != 50 || r.Failed() != 0 || !called {
		t.Errorf("HoldIdle = %+v, during called %v", r, called)
	}
	// A closed port: every dial fails and is counted.
	r = load.HoldIdle(ctx, freeAddr(t), 5, 2, 0, nil)
	if r.Opened != 0 || r.Failed() != 5 || r.DialErrors["connection refused"] != 5 {
		t.Errorf("HoldIdle to a closed port = %+v", r)
	}
}

func TestServeID(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := listen(t)
	go ServeID(ctx, l, "b7")
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "b7" {
		t.Fatalf("ServeID answered %q, %v", line, err)
	}
}

func TestMainRejectsBadArgs(t *testing.T) {
	for _, args := range [][]string{{}, {"-http", "127.0.0.1:0", "extra"}, {"-nope"}} {
		if err := Main(context.Background(), args); err == nil {
			t.Errorf("Main(%q) succeeded", args)
		}
	}
}

func waitListening(ctx context.Context, addr string) (time.Time, error) {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return time.Now(), nil
		}
		if ctx.Err() != nil {
			return time.Time{}, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	httpAddr, bulkAddr := freeAddr(t), freeAddr(t)
	go func() { _ = Run(ctx, Config{HTTPAddr: httpAddr, BulkAddr: bulkAddr, Name: "behind"}) }()
	if _, err := waitListening(ctx, httpAddr); err != nil {
		t.Fatal(err)
	}
	for _, buffered := range []bool{false, true} {
		ph, pb := freeAddr(t), freeAddr(t)
		pctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- RunProxy(pctx, ProxyConfig{Routes: map[string]string{ph: httpAddr, pb: bulkAddr}, Buffered: buffered})
		}()
		if _, err := waitListening(ctx, ph); err != nil {
			t.Fatal(err)
		}
		if _, err := waitListening(ctx, pb); err != nil {
			t.Fatal(err)
		}
		status, body, err := load.GetOnce(ctx, ph, "/hostname", 2*time.Second)
		if err != nil || status != 200 || string(body) != "behind" {
			t.Errorf("buffered=%v: GET through the proxy = %d %q %v", buffered, status, body, err)
		}
		if r, err := load.Bulk(ctx, pb, 5<<20, 5*time.Second); err != nil || r.Bytes != 5<<20 {
			t.Errorf("buffered=%v: bulk through the proxy = %+v %v", buffered, r, err)
		}
		stop()
		if err := <-done; err != nil {
			t.Errorf("RunProxy: %v", err)
		}
	}
	if err := ProxyMain(ctx, []string{"-route", "nonsense"}); err == nil {
		t.Error("a bad route was accepted")
	}
	if err := RunProxy(ctx, ProxyConfig{}); err == nil {
		t.Error("a proxy without routes ran")
	}
}
