package load

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestStreamCountsAnswersAndFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "pod-1\n") })}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	for _, ka := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		res, err := Stream{Name: "s", URL: "http://" + l.Addr().String() + "/hostname", Rate: 100, KeepAlive: ka}.Run(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if res.Sent < 10 || res.OK != res.Sent || res.Failed != 0 || res.Hosts["pod-1"] != res.OK {
			t.Errorf("keepalive=%v: %+v", ka, res)
		}
	}
	// Nothing listens: every request fails with a refusal.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := dead.Addr().String()
	dead.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res, err := Stream{Name: "dead", URL: "http://" + addr + "/", Rate: 100}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed == 0 || res.OK != 0 || res.Errors["connection refused"] != int(res.Failed) {
		t.Errorf("dead target: %+v", res)
	}
	if _, _, any := res.FailureWindow(); !any {
		t.Error("FailureWindow found no failures")
	}
}

func TestStreamNeedsDeadline(t *testing.T) {
	if _, err := (Stream{Rate: 1, URL: "http://127.0.0.1:1/"}).Run(context.Background()); err == nil {
		t.Fatal("a stream without deadline ran")
	}
}
