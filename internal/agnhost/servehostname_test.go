package agnhost

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestServeHostnameHTTP(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		wantClose bool
	}{
		{args: nil},
		{args: []string{"--close"}, wantClose: true},
		{args: []string{"--http=true", "--close=false"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			s := start(t, startOpts{env: map[string]string{EnvHostname: "pod-s"}, wait: []string{"http"}},
				append([]string{"serve-hostname", "--port=0"}, tc.args...)...)
			for _, path := range []string{"/", "/any/path"} {
				resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + s.addr(t, "http") + path)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(body) != "pod-s" {
					t.Errorf("GET %s = %q, want pod-s", path, body)
				}
				if resp.Close != tc.wantClose {
					t.Errorf("Connection: close = %v, want %v", resp.Close, tc.wantClose)
				}
			}
			if err := s.stop(t); err != nil {
				t.Fatalf("stop: %v", err)
			}
			s.assertReleased(t)
			mustContain(t, s.stderr.String(), "Serving on port 0.", "HTTP request from 127.0.0.1:")
		})
	}
}

func TestServeHostnameTCPAndUDP(t *testing.T) {
	s := start(t, startOpts{env: map[string]string{EnvHostname: "pod-raw"}, wait: []string{"tcp"}},
		"serve-hostname", "--port=0", "--http=false", "--tcp")
	for range 3 {
		conn, err := net.Dial("tcp", s.addr(t, "tcp"))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(conn) // the server closes after writing
		conn.Close()
		if err != nil || string(got) != "pod-raw" {
			t.Errorf("tcp = %q, %v; want pod-raw", got, err)
		}
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
	s.assertReleased(t)

	u := start(t, startOpts{env: map[string]string{EnvHostname: "pod-raw"}, wait: []string{"udp"}},
		"serve-hostname", "--port=0", "--http=false", "--udp")
	for _, msg := range []string{"x", "anything at all, longer than sixteen bytes"} {
		if got, _ := udpAsk(t, u.addr(t, "udp"), msg); got != "pod-raw" {
			t.Errorf("udp %q = %q", msg, got)
		}
	}
	if err := u.stop(t); err != nil {
		t.Fatal(err)
	}
	u.assertReleased(t)

	// Both at once, on one port.
	_, port, _ := net.SplitHostPort(freePort(t))
	b := start(t, startOpts{env: map[string]string{EnvHostname: "pod-both"}, wait: []string{"tcp", "udp"}},
		"serve-hostname", "--port="+port, "--http=false", "--tcp", "--udp")
	if got, _ := udpAsk(t, "127.0.0.1:"+port, "?"); got != "pod-both" {
		t.Errorf("udp = %q", got)
	}
	conn, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(conn)
	conn.Close()
	if string(got) != "pod-both" {
		t.Errorf("tcp = %q", got)
	}
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestServeHostnameErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--tcp"}, "Can't server TCP/UDP mode and HTTP mode at the same time"},
		{[]string{"--udp", "--http"}, "Can't server TCP/UDP mode and HTTP mode at the same time"},
		{[]string{"--port=x"}, "invalid argument \"x\" for \"--port\""},
		{[]string{"--nope"}, "unknown flag: --nope"},
		{[]string{"--http=false", "--tcp", "--port=70000"}, "listen tcp"},
	}
	for _, tc := range tests {
		rt := newRuntime(&syncBuffer{}, &syncBuffer{}, func(k string) string {
			if k == EnvBindAddress {
				return "127.0.0.1"
			}
			return ""
		})
		err := run(t.Context(), append([]string{"serve-hostname"}, tc.args...), rt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}
