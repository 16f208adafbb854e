package forward

import (
	"bytes"
	"strings"
	"testing"
)

func TestStatusLine(t *testing.T) {
	base := statusSnapshot{Target: "svc/web", Listen: "127.0.0.1:8080->80", Synced: true, Ready: 2, Total: 3, Open: 1, Conns: 37, Failed: 2}
	tests := []struct {
		name  string
		mod   func(*statusSnapshot)
		width int
		want  string
	}{
		{name: "healthy", want: "svc/web 127.0.0.1:8080->80  ready 2/3  open 1  total 37  failed 2"},
		{name: "not synced", mod: func(s *statusSnapshot) { s.Synced = false }, want: "svc/web 127.0.0.1:8080->80  ready ?  open 1  total 37  failed 2"},
		{name: "waiting and none ready", mod: func(s *statusSnapshot) { s.Ready, s.Waiting = 0, 4 },
			want: "svc/web 127.0.0.1:8080->80  ready 0/3  open 1  total 37  failed 2  waiting 4  | no ready endpoint"},
		{name: "API unreachable", mod: func(s *statusSnapshot) { s.APIErr = "connection refused" },
			want: "svc/web 127.0.0.1:8080->80  ready 2/3  open 1  total 37  failed 2  | API server unreachable, retrying: connection refused"},
		{name: "gone pod", mod: func(s *statusSnapshot) { s.Target, s.Ready, s.Gone = "pod/a", 0, "pod default/a no longer exists" },
			want: "pod/a 127.0.0.1:8080->80  ready 0/3  open 1  total 37  failed 2  | pod default/a no longer exists"},
		{name: "last error", mod: func(s *statusSnapshot) { s.LastErr = "pod default/a port 80: connection refused" },
			want: "svc/web 127.0.0.1:8080->80  ready 2/3  open 1  total 37  failed 2  | last error: pod default/a port 80: connection refused"},
		{name: "cut to width", width: 20, want: "svc/web 127.0.0.1:8…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			if tt.mod != nil {
				tt.mod(&s)
			}
			if got := statusLine(s, tt.width); got != tt.want {
				t.Fatalf("statusLine =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestStatusAttrs(t *testing.T) {
	s := statusSnapshot{Target: "svc/web", Listen: "127.0.0.1:8080->80", Synced: true, Ready: 1, Total: 2, Conns: 5, Failed: 1, LastErr: "x", APIErr: "down"}
	got := statusAttrs(s)
	want := []any{"target", "svc/web", "listen", "127.0.0.1:8080->80", "ready", 1, "endpoints", 2, "open", int64(0), "total", int64(5), "failed", int64(1),
		"api", "unreachable, retrying: down", "last_error", "x"}
	if len(got) != len(want) {
		t.Fatalf("statusAttrs = %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("statusAttrs[%d] = %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
}

func TestConsoleTTY(t *testing.T) {
	var buf bytes.Buffer
	c := NewConsole(&buf, ConsoleConfig{TTY: true, Width: 11})
	c.setStatus([]string{"one", "two-is-long-line"})
	if got, want := buf.String(), "one\ntwo-is-lo…\n"; got != want {
		t.Fatalf("first paint = %q, want %q", got, want)
	}
	buf.Reset()
	if _, err := c.Write([]byte("log line\n")); err != nil {
		t.Fatal(err)
	}
	// Lift the two status lines, write the log line, paint them again.
	if got, want := buf.String(), "\r\x1b[2A\x1b[Jlog line\none\ntwo-is-lo…\n"; got != want {
		t.Fatalf("log write = %q, want %q", got, want)
	}
	buf.Reset()
	c.setStatus([]string{"three"})
	if got, want := buf.String(), "\r\x1b[2A\x1b[Jthree\n"; got != want {
		t.Fatalf("repaint = %q, want %q", got, want)
	}
	buf.Reset()
	var out bytes.Buffer
	c.printAbove(&out, []byte("Forwarding from x\n"))
	if got, want := buf.String(), "\r\x1b[1A\x1b[Jthree\n"; got != want || out.String() != "Forwarding from x\n" {
		t.Fatalf("printAbove: stderr %q, stdout %q", got, out.String())
	}
	buf.Reset()
	c.release()
	_, _ = c.Write([]byte("after\n"))
	if got := buf.String(); got != "after\n" {
		t.Fatalf("after release = %q, want the status left alone", got)
	}
}

func TestConsolePlain(t *testing.T) {
	var buf bytes.Buffer
	c := NewConsole(&buf, ConsoleConfig{})
	c.setStatus([]string{"ignored"})
	_, _ = c.Write([]byte("log line\n"))
	if got := buf.String(); got != "log line\n" || strings.Contains(got, "\x1b") {
		t.Fatalf("plain console wrote %q", got)
	}
}
