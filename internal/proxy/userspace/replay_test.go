package userspace

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

// lineBackend reads one line per connection and then, per its mode, answers
// "name:line", resets the connection, or closes it cleanly without a word.
type lineBackend struct {
	name string
	mode string // answer, reset, close
	ln   *net.TCPListener
	got  atomic.Int64
}

func startLineBackend(t *testing.T, ip string, port int, name, mode string) *lineBackend {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.ParseIP(ip), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	b := &lineBackend{name: name, mode: mode, ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				b.got.Add(1)
				switch b.mode {
				case "answer":
					fmt.Fprintf(c, "%s:%s", b.name, line)
				case "reset":
					_ = c.SetLinger(0) // close with RST, as a killed process's socket
				}
			}()
		}
	}()
	return b
}

func ask(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

// TestResetBeforeAnswerMovesTheClient: an endpoint that resets connections
// before answering (a pod killed with kill -9, or one that closed its
// listener on SIGTERM with connections still queued) costs no request.
func TestResetBeforeAnswerMovesTheClient(t *testing.T) {
	e := newEnv(t, nil)
	good := startLineBackend(t, freshIP(1), 0, "good", "answer")
	port := good.ln.Addr().(*net.TCPAddr).Port
	bad := startLineBackend(t, freshIP(1), port, "bad", "reset")
	cip := freshIP(96)
	e.createService("web", cip)
	badIP := bad.ln.Addr().(*net.TCPAddr).IP.String()
	goodIP := good.ln.Addr().(*net.TCPAddr).IP.String()
	e.createSlice(e.sliceObj("web", "web-1", slicePort("http", port, v1.ProtocolTCP), ready(goodIP), ready(badIP)))
	e.waitEndpoints("default/web:http", fmt.Sprintf("%s:%d", goodIP, port), fmt.Sprintf("%s:%d", badIP, port))
	addr := clusterAddr(cip, 80)
	for i := range 10 {
		got, err := ask(addr, fmt.Sprintf("req-%d", i))
		if err != nil || got != fmt.Sprintf("good:req-%d", i) {
			t.Fatalf("request %d: %q %v, want good:req-%d", i, got, err, i)
		}
	}
	if bad.got.Load() == 0 {
		t.Fatalf("the resetting endpoint was never tried; the test proves nothing")
	}
	if good.got.Load() != 10 {
		t.Fatalf("the good endpoint got %d requests, want 10 (each exactly once)", good.got.Load())
	}
}

// TestCleanCloseWithoutAnswerIsNotReplayed: a clean close after reading is
// how a one-way protocol ends; the bytes must not be delivered twice.
func TestCleanCloseWithoutAnswerIsNotReplayed(t *testing.T) {
	e := newEnv(t, nil)
	sink := startLineBackend(t, freshIP(1), 0, "sink", "close")
	port := sink.ln.Addr().(*net.TCPAddr).Port
	other := startLineBackend(t, freshIP(1), port, "other", "answer")
	cip := freshIP(96)
	e.createService("web", cip)
	sinkIP := sink.ln.Addr().(*net.TCPAddr).IP.String()
	otherIP := other.ln.Addr().(*net.TCPAddr).IP.String()
	e.createSlice(e.sliceObj("web", "web-1", slicePort("http", port, v1.ProtocolTCP), ready(sinkIP), ready(otherIP)))
	e.waitEndpoints("default/web:http", fmt.Sprintf("%s:%d", sinkIP, port), fmt.Sprintf("%s:%d", otherIP, port))
	addr := clusterAddr(cip, 80)
	answers := 0
	for i := range 10 {
		got, err := ask(addr, "msg")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got != "" {
			answers++
		}
	}
	if s, o := sink.got.Load(), other.got.Load(); s+o != 10 || s == 0 || int(o) != answers {
		t.Fatalf("sink got %d, other got %d (answers %d): every message must be delivered exactly once", s, o, answers)
	}
}
