package vip

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestLoopback(t *testing.T) {
	tests := []struct {
		ip      string
		wantErr bool
	}{
		{"127.0.0.1", false},
		{"127.96.0.10", false},
		{"127.255.255.254", false},
		{"::1", false},
		{"::ffff:127.1.2.3", false},
		{"10.96.0.10", true},
		{"fd00::10", true},
		{"", true},
	}
	var m Loopback
	for _, tt := range tests {
		var ip netip.Addr
		if tt.ip != "" {
			ip = netip.MustParseAddr(tt.ip)
		}
		if err := m.Ensure(ip); (err != nil) != tt.wantErr {
			t.Errorf("Ensure(%q) = %v, want error %v", tt.ip, err, tt.wantErr)
		}
		if err := m.Release(ip); (err != nil) != tt.wantErr {
			t.Errorf("Release(%q) = %v, want error %v", tt.ip, err, tt.wantErr)
		}
	}
}

// netnsEnv tells the re-executed test binary that it runs in a network
// namespace its parent created, and names the parent's namespace so the
// child can refuse to touch the host's if that ever failed.
const netnsEnv = "BERTH_VIP_TEST_PARENT_NETNS"

// TestNetlinkInNetns re-runs TestNetlink in a fresh network namespace
// (CLONE_NEWNET on the child process), so no device or address is ever
// created in the host's namespace. The namespace dies with the child.
func TestNetlinkInNetns(t *testing.T) {
	if os.Getenv(netnsEnv) != "" {
		t.Skip("already inside the test network namespace")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network device inside a new network namespace")
	}
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("read own network namespace: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNetlink$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsEnv+"="+self)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil {
		t.Fatalf("TestNetlink in a new network namespace: %v", err)
	}
	if !containsPrefix(out, "--- PASS: TestNetlink ") {
		t.Fatalf("child did not run TestNetlink to a pass")
	}
}

func TestNetlink(t *testing.T) {
	parent := os.Getenv(netnsEnv)
	if parent == "" {
		t.Skip("runs only inside the network namespace TestNetlinkInNetns creates")
	}
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if self == parent {
		t.Fatalf("refusing to run: still in the parent's network namespace %s", self)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatalf("set lo up: %v", err)
	}

	m, err := NewNetlink(NetlinkConfig{})
	if err != nil {
		t.Fatalf("NewNetlink: %v", err)
	}
	t.Logf("device %s is a %s link", DefaultDevice, m.Kind())

	v4 := netip.MustParseAddr("10.96.0.10")
	v6 := netip.MustParseAddr("fd00:96::10")
	for _, ip := range []netip.Addr{v4, v4, v6} {
		if err := m.Ensure(ip); err != nil {
			t.Fatalf("Ensure(%s): %v", ip, err)
		}
	}
	assertAddrs(t, m, v4, v6)

	// The point of the device: a listener can bind the service IP, and a
	// client in the same namespace reaches it.
	for _, ip := range []netip.Addr{v4, v6} {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 80).String())
		if err != nil {
			t.Fatalf("listen on %s: %v", ip, err)
		}
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Write([]byte("ok"))
				c.Close()
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial %s: %v", ln.Addr(), err)
		}
		buf := make([]byte, 2)
		if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
			t.Fatalf("read from %s: %q, %v", ln.Addr(), buf, err)
		}
		c.Close()
		ln.Close()
	}

	// Two users of v4: the first release keeps it, the second removes it.
	if err := m.Release(v4); err != nil {
		t.Fatal(err)
	}
	assertAddrs(t, m, v4, v6)
	if err := m.Release(v4); err != nil {
		t.Fatal(err)
	}
	assertAddrs(t, m, v6)
	if err := m.Release(v4); err == nil {
		t.Fatal("Release of an address with no users: want error")
	}
	for _, bad := range []netip.Addr{{}, netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("224.0.0.1")} {
		if err := m.Ensure(bad); err == nil {
			t.Errorf("Ensure(%v): want error", bad)
		}
	}

	// A restart finds the device with v6 still on it and clears it.
	m2, err := NewNetlink(NetlinkConfig{})
	if err != nil {
		t.Fatalf("NewNetlink on an existing device: %v", err)
	}
	assertAddrs(t, m2)
	if err := m2.Close(); err != nil {
		t.Fatalf("Close of a manager that found the device: %v", err)
	}
	if _, err := netlink.LinkByName(DefaultDevice); err != nil {
		t.Fatalf("device must survive Close of a manager that did not create it: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var notFound netlink.LinkNotFoundError
	if _, err := netlink.LinkByName(DefaultDevice); !errors.As(err, &notFound) {
		t.Fatalf("device still there after Close of the manager that created it: %v", err)
	}

	if _, err := NewNetlink(NetlinkConfig{Device: "a-name-that-is-far-too-long"}); err == nil {
		t.Fatal("NewNetlink with an over-long device name: want error")
	}
}

func assertAddrs(t *testing.T, m *Netlink, want ...netip.Addr) {
	t.Helper()
	got, err := m.Addresses()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		t.Fatalf("addresses on device = %v, want %v", got, want)
	}
}

func splitLines(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}

func containsPrefix(b []byte, p string) bool {
	for _, l := range splitLines(b) {
		if len(l) >= len(p) && l[:len(p)] == p {
			return true
		}
	}
	return false
}
