package network

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestResolveMode(t *testing.T) {
	tests := []struct {
		flag, goos string
		euid       int
		want       string
		wantErr    string
	}{
		{"auto", "linux", 0, ModeNetNS, ""},
		{"", "linux", 0, ModeNetNS, ""},
		{"auto", "linux", 1000, ModeLoopback, ""},
		{"auto", "darwin", 0, ModeLoopback, ""},
		{"netns", "linux", 1000, ModeNetNS, ""}, // New reports the missing root
		{"netns", "darwin", 0, "", "needs Linux"},
		{"loopback", "linux", 0, ModeLoopback, ""},
		{"loopback", "darwin", 501, ModeLoopback, ""},
		{"bridge", "linux", 0, "", `unknown pod network mode "bridge"`},
		{"NetNS", "linux", 0, "", "unknown pod network mode"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/%d", tt.flag, tt.goos, tt.euid), func(t *testing.T) {
			got, err := resolveMode(tt.flag, tt.goos, tt.euid)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestNewValidation(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no state dir", Config{Mode: ModeLoopback}, "state directory is required"},
		{"bad mode", Config{Mode: "host", StateDir: dir}, "unknown pod network mode"},
		{"garbage cidr", Config{Mode: ModeLoopback, StateDir: dir, PodCIDR: "127.244.0.0"}, `pod CIDR "127.244.0.0"`},
		{"ipv6 cidr", Config{Mode: ModeLoopback, StateDir: dir, PodCIDR: "::1/128"}, "not IPv4"},
		{"host bits", Config{Mode: ModeLoopback, StateDir: dir, PodCIDR: "127.244.0.9/16"}, "did you mean 127.244.0.0/16"},
		{"too small", Config{Mode: ModeLoopback, StateDir: dir, PodCIDR: "127.244.0.0/31"}, "too small"},
		{"too large", Config{Mode: ModeLoopback, StateDir: dir, PodCIDR: "0.0.0.0/0"}, "too large"},
		{"loopback outside 127/8", Config{Mode: ModeLoopback, StateDir: dir, PodCIDR: "10.244.0.0/16"}, "inside 127.0.0.0/8"},
		{"netns with loopback cidr", Config{Mode: ModeNetNS, StateDir: dir, PodCIDR: "127.244.0.0/16"}, "cannot use loopback pod CIDR"},
		{"netns cidr covering 127/8", Config{Mode: ModeNetNS, StateDir: dir, PodCIDR: "96.0.0.0/3"}, "too large"},
		{"netns bridge name too long", Config{Mode: ModeNetNS, StateDir: dir, BridgeName: "a-very-long-bridge"}, "1 to 15 bytes"},
		{"netns bridge name with slash", Config{Mode: ModeNetNS, StateDir: dir, BridgeName: "br/0"}, "contains"},
		{"netns bridge name with space", Config{Mode: ModeNetNS, StateDir: dir, BridgeName: "br 0"}, "contains"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = quietLogger()
			n, err := New(tt.cfg)
			if err == nil {
				n.Close()
				t.Fatalf("New succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestPodKeyAndNames(t *testing.T) {
	tests := []struct {
		uid, key string
	}{
		{"3f2a9c1e-5b7d-4e6f-9a8b-1c2d3e4f5a6b", "3f2a9c1e5b7d"},
		{"3F2A9C1E-5B7D-4E6F-9A8B-1C2D3E4F5A6B", "3f2a9c1e5b7d"},
		{"abcdefghijklmnop", "abcdefghijkl"},
	}
	for _, tt := range tests {
		if got := podKey(tt.uid); got != tt.key {
			t.Errorf("podKey(%q) = %q, want %q", tt.uid, got, tt.key)
		}
	}
	// Short or odd UIDs fall back to a hash: stable, 12 hex characters,
	// different for different UIDs.
	for _, uid := range []string{"x", "pod_with_underscores", "ünïcode-uid-value"} {
		k := podKey(uid)
		if len(k) != keyLen || !isLowerAlnum(k) || k != podKey(uid) {
			t.Errorf("podKey(%q) = %q, want 12 stable lowercase alphanumerics", uid, k)
		}
	}
	if podKey("x") == podKey("y") {
		t.Error("different short UIDs share a key")
	}
	uid := "3f2a9c1e-5b7d-4e6f-9a8b-1c2d3e4f5a6b"
	if got := hostVethName(uid); got != "vb-3f2a9c1e5b7d" || len(got) > maxIfNameLen {
		t.Errorf("hostVethName = %q", got)
	}
	if got := netnsPath(uid); got != "/run/netns/berth-3f2a9c1e5b7d" {
		t.Errorf("netnsPath = %q", got)
	}
}

func newLoopback(t *testing.T, dir string) *Network {
	t.Helper()
	// A range of its own: other berths on this host (whose pods' sockets
	// the allocator skips) use the default 127.244.0.0/16.
	n, err := New(Config{Mode: ModeLoopback, PodCIDR: testLoopbackCIDR, StateDir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

const testLoopbackCIDR = "127.231.0.0/16"

func TestSetupBadInput(t *testing.T) {
	n := newLoopback(t, t.TempDir())
	ctx := context.Background()
	for _, uid := range []string{"", "a b", "a/b", "a\nb", strings.Repeat("u", 300)} {
		if _, err := n.Setup(ctx, uid, "default", "p"); err == nil {
			t.Errorf("Setup(%q) succeeded", uid)
		}
		if err := n.Teardown(ctx, uid); err == nil {
			t.Errorf("Teardown(%q) succeeded", uid)
		}
	}
	if _, err := n.Setup(ctx, "uid", "default", "bad\nname"); err == nil {
		t.Error("Setup with a line break in the pod name succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := n.Setup(cancelled, "uid", "default", "p"); err == nil {
		t.Error("Setup with a cancelled context succeeded")
	}
	if l, _ := n.List(); len(l) != 0 {
		t.Errorf("failed setups left attachments: %v", l)
	}
}

// TestLoopbackEndToEnd runs two "replicas" on the same port, each bound to
// its own 127.244.x address, and checks a client reaches each one.
func TestLoopbackEndToEnd(t *testing.T) {
	dir := t.TempDir()
	n := newLoopback(t, dir)
	ctx := context.Background()
	if n.Mode() != ModeLoopback || !n.HostIP().Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("mode %q host IP %s", n.Mode(), n.HostIP())
	}
	uids := []string{"0a1b2c3d-0000-4000-8000-000000000001", "0a1b2c3d-0000-4000-8000-000000000002"}
	var atts []Attachment
	for i, uid := range uids {
		att, err := n.Setup(ctx, uid, "default", fmt.Sprintf("web-%d", i))
		if err != nil {
			t.Fatalf("Setup: %v", err)
		}
		atts = append(atts, att)
	}
	if atts[0].IP.String() != "127.231.0.2" || atts[1].IP.String() != "127.231.0.3" {
		t.Fatalf("pod IPs %s %s, want 127.231.0.2 and 127.231.0.3", atts[0].IP, atts[1].IP)
	}
	if atts[0].NetNSPath != "" || !atts[0].HostIP.Equal(net.IPv4(127, 0, 0, 1)) || atts[0].Pod != "default/web-0" {
		t.Fatalf("attachment %+v", atts[0])
	}

	// Find a port free on the first address, then bind the same port on
	// the second: the point of per-pod addresses.
	ln0, err := net.Listen("tcp", net.JoinHostPort(atts[0].IP.String(), "0"))
	if err != nil {
		t.Fatalf("listen on pod 0 address (is 127.0.0.0/8 routed to lo?): %v", err)
	}
	port := strconv.Itoa(ln0.Addr().(*net.TCPAddr).Port)
	ln1, err := net.Listen("tcp", net.JoinHostPort(atts[1].IP.String(), port))
	if err != nil {
		ln0.Close()
		t.Fatalf("listen on pod 1 address, same port: %v", err)
	}
	for i, ln := range []net.Listener{ln0, ln1} {
		t.Cleanup(func() { ln.Close() })
		go serveName(ln, fmt.Sprintf("web-%d", i))
	}
	for i, att := range atts {
		got, err := askName(ctx, "", net.JoinHostPort(att.IP.String(), port))
		if err != nil {
			t.Fatalf("dial pod %d: %v", i, err)
		}
		if want := fmt.Sprintf("web-%d", i); got != want {
			t.Fatalf("pod %d answered %q, want %q", i, got, want)
		}
	}

	// Adoption: the same pod gets the same attachment, also after a
	// restart (new Network over the same state directory).
	again, err := n.Setup(ctx, uids[0], "default", "web-0")
	if err != nil || !again.IP.Equal(atts[0].IP) {
		t.Fatalf("re-Setup = %+v, %v", again, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n2 := newLoopback(t, dir)
	list, err := n2.List()
	if err != nil || len(list) != 2 || list[0].PodUID != uids[0] || list[1].PodUID != uids[1] || list[1].Pod != "default/web-1" {
		t.Fatalf("List after restart = %+v, %v", list, err)
	}
	adopted, err := n2.Setup(ctx, uids[1], "default", "web-1")
	if err != nil || !adopted.IP.Equal(atts[1].IP) {
		t.Fatalf("Setup after restart = %+v, %v; want IP %s", adopted, err, atts[1].IP)
	}
	third, err := n2.Setup(ctx, "0a1b2c3d-0000-4000-8000-000000000003", "default", "web-2")
	if err != nil || third.IP.String() != "127.231.0.4" {
		t.Fatalf("third pod = %+v, %v; want 127.231.0.4", third, err)
	}

	for _, uid := range append(uids, third.PodUID) {
		if err := n2.Teardown(ctx, uid); err != nil {
			t.Fatalf("Teardown: %v", err)
		}
		if err := n2.Teardown(ctx, uid); err != nil {
			t.Fatalf("second Teardown: %v", err)
		}
	}
	if list, err := n2.List(); err != nil || len(list) != 0 {
		t.Fatalf("List after teardown = %v, %v", list, err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, ModeLoopback))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "127.") {
			t.Errorf("allocation file %s left after teardown", e.Name())
		}
	}
}

// serveName answers every connection with name and the peer address, one
// line each, until ln is closed.
func serveName(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "%s\n%s\n", name, c.RemoteAddr())
		}()
	}
}

// askName dials addr (from inside nsPath if set) and returns the first
// line the server sent.
func askName(ctx context.Context, nsPath, addr string) (string, error) {
	name, _, err := askNameAndPeer(ctx, nsPath, addr)
	return name, err
}

func askNameAndPeer(ctx context.Context, nsPath, addr string) (name, peer string, err error) {
	var c net.Conn
	err = InNetNS(nsPath, func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	name, err = r.ReadString('\n')
	if err != nil {
		return "", "", fmt.Errorf("read from %s: %w", addr, err)
	}
	peer, err = r.ReadString('\n')
	if err != nil {
		return "", "", fmt.Errorf("read from %s: %w", addr, err)
	}
	return strings.TrimSpace(name), strings.TrimSpace(peer), nil
}
