package network

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

const (
	envInner = "BERTH_NETWORK_TEST_INNER"
	envUIDs  = "BERTH_NETWORK_TEST_UIDS"
)

// TestNetNSMode exercises netns mode for real. Because it uses 10.244/16
// and creates a bridge, the outer run re-executes this test binary in a
// brand-new network namespace (CLONE_NEWNET) and the inner run does all
// the work there; the host's interfaces, routes and sysctls are never
// touched. The pod namespaces' files live in /run/netns, so the outer run
// removes them whatever happens and checks `ip netns list` is unchanged.
func TestNetNSMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, a bridge and veth pairs")
	}
	if os.Getenv(envInner) == "1" {
		testNetNSInside(t)
		return
	}

	before := netnsList(t)
	forwardBefore := readFile(t, ipForwardPath)
	uids := []string{newUID(t), newUID(t)}
	t.Cleanup(func() {
		for _, uid := range uids {
			if err := deleteNetNS(netnsPath(uid)); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestNetNSMode$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envInner+"=1", envUIDs+"="+strings.Join(uids, ","))
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET,
		Pdeathsig:  syscall.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	t.Logf("inner run in a private network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("inner run failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestNetNSMode") {
		t.Fatal("inner run did not pass (skipped?)")
	}

	for _, uid := range uids {
		if _, err := os.Lstat(netnsPath(uid)); !os.IsNotExist(err) {
			t.Errorf("namespace file %s left behind (err %v)", netnsPath(uid), err)
		}
		if _, err := netlink.LinkByName(hostVethName(uid)); !isLinkNotFound(err) {
			t.Errorf("veth %s visible in the host namespace (err %v)", hostVethName(uid), err)
		}
	}
	if after := netnsList(t); after != before {
		t.Errorf("ip netns list changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := readFile(t, ipForwardPath); got != forwardBefore {
		t.Errorf("host ip_forward changed from %q to %q", forwardBefore, got)
	}
}

func testNetNSInside(t *testing.T) {
	// Guard the network rule: only run in an empty, private namespace.
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Fatalf("refusing to run: expected a fresh network namespace with only lo, found %d links", len(links))
	}
	uids := strings.Split(os.Getenv(envUIDs), ",")
	if len(uids) != 2 {
		uids = []string{newUID(t), newUID(t)}
	}
	ctx := context.Background()
	stateDir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	cfg := Config{Mode: ModeNetNS, StateDir: stateDir, Logger: logger}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Idempotent, and works whether or not n was closed.
		tn := n
		if nc, err := New(cfg); err == nil {
			defer nc.Close()
			tn = nc
		}
		for _, uid := range uids {
			if err := tn.Teardown(ctx, uid); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})

	var atts []Attachment
	for i, uid := range uids {
		att, err := n.Setup(ctx, uid, "default", fmt.Sprintf("web-%d", i))
		if err != nil {
			t.Fatalf("Setup pod %d: %v", i, err)
		}
		atts = append(atts, att)
	}
	gw := net.IPv4(10, 244, 0, 1)
	for i, want := range []string{"10.244.0.2", "10.244.0.3"} {
		a := atts[i]
		if a.IP.String() != want || !a.HostIP.Equal(gw) || a.NetNSPath != netnsPath(uids[i]) || a.PodUID != uids[i] {
			t.Fatalf("pod %d attachment %+v, want IP %s gateway %s", i, a, want, gw)
		}
		if !strings.HasPrefix(a.NetNSPath, "/run/netns/berth-") {
			t.Fatalf("namespace path %s", a.NetNSPath)
		}
	}
	if got := readFile(t, ipForwardPath); got != "1" {
		t.Fatalf("ip_forward = %q in berth's namespace, want 1", got)
	}
	br, err := netlink.LinkByName(DefaultBridgeName)
	if err != nil || br.Type() != "bridge" {
		t.Fatalf("bridge %s: %v", DefaultBridgeName, err)
	}
	if addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4); len(addrs) != 1 || addrs[0].IPNet.String() != "10.244.0.1/16" {
		t.Fatalf("bridge addresses %v, want 10.244.0.1/16", addrs)
	}
	veth0, err := netlink.LinkByName(hostVethName(uids[0]))
	if err != nil || veth0.Attrs().MasterIndex != br.Attrs().Index {
		t.Fatalf("host veth of pod 0: %v (master %v)", err, veth0)
	}

	// A process started inside InNetNS lives in the pod namespace.
	for i, a := range atts {
		out := runIn(t, a.NetNSPath, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		if !strings.Contains(out, a.IP.String()+"/16") {
			t.Fatalf("pod %d eth0: %q, want %s/16", i, out, a.IP)
		}
		if out := runIn(t, a.NetNSPath, "ip", "-4", "route", "show", "default"); !strings.Contains(out, "via 10.244.0.1 dev eth0") {
			t.Fatalf("pod %d default route: %q", i, out)
		}
		if out := runIn(t, a.NetNSPath, "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "link/ether 02:62:0a:f4:00:0"+fmt.Sprint(i+2)) {
			t.Fatalf("pod %d eth0 MAC not derived from its IP: %q", i, out)
		}
		if out := runIn(t, a.NetNSPath, "ip", "-o", "link", "show", "lo"); !strings.Contains(out, "UP") {
			t.Fatalf("pod %d lo not up: %q", i, out)
		}
	}

	// Both pods listen on 0.0.0.0:3000, each in its own namespace.
	for i, a := range atts {
		var ln net.Listener
		err := InNetNS(a.NetNSPath, func() error {
			var err error
			ln, err = net.Listen("tcp", "0.0.0.0:3000")
			return err
		})
		if err != nil {
			t.Fatalf("pod %d listen on 0.0.0.0:3000: %v", i, err)
		}
		t.Cleanup(func() { ln.Close() })
		go serveName(ln, fmt.Sprintf("web-%d", i))
	}
	hostLn, err := net.Listen("tcp", "10.244.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostLn.Close() })
	go serveName(hostLn, "host")

	checks := []struct {
		name, from, to, wantName, wantPeerIP string
	}{
		{"host to pod 0", "", atts[0].IP.String() + ":3000", "web-0", "10.244.0.1"},
		{"host to pod 1", "", atts[1].IP.String() + ":3000", "web-1", "10.244.0.1"},
		{"pod 0 to pod 1", atts[0].NetNSPath, atts[1].IP.String() + ":3000", "web-1", atts[0].IP.String()},
		{"pod 1 to pod 0", atts[1].NetNSPath, atts[0].IP.String() + ":3000", "web-0", atts[1].IP.String()},
		{"pod 0 to host (gateway)", atts[0].NetNSPath, hostLn.Addr().String(), "host", atts[0].IP.String()},
		{"pod 1 to its own loopback", atts[1].NetNSPath, "127.0.0.1:3000", "web-1", "127.0.0.1"},
	}
	for _, c := range checks {
		name, peer, err := askNameAndPeer(ctx, c.from, c.to)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		peerIP, _, _ := net.SplitHostPort(peer)
		if name != c.wantName || peerIP != c.wantPeerIP {
			t.Fatalf("%s: answered %q seeing peer %s, want %q from %s", c.name, name, peer, c.wantName, c.wantPeerIP)
		}
	}

	// Adoption: Setup again, and after a restart, returns the same
	// attachment without rebuilding the veth.
	again, err := n.Setup(ctx, uids[0], "default", "web-0")
	if err != nil || !again.IP.Equal(atts[0].IP) || again.NetNSPath != atts[0].NetNSPath {
		t.Fatalf("re-Setup = %+v, %v", again, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	adopted, err := n.Setup(ctx, uids[0], "default", "web-0")
	if err != nil || !adopted.IP.Equal(atts[0].IP) {
		t.Fatalf("Setup after restart = %+v, %v", adopted, err)
	}
	if v, err := netlink.LinkByName(hostVethName(uids[0])); err != nil || v.Attrs().Index != veth0.Attrs().Index {
		t.Fatalf("adoption rebuilt the veth (err %v)", err)
	}
	// Repair: a lost host veth is rebuilt with the same address, and the
	// pod's running listener is reachable again.
	if v, err := netlink.LinkByName(hostVethName(uids[1])); err != nil {
		t.Fatal(err)
	} else if err := netlink.LinkDel(v); err != nil {
		t.Fatal(err)
	}
	repaired, err := n.Setup(ctx, uids[1], "default", "web-1")
	if err != nil || !repaired.IP.Equal(atts[1].IP) {
		t.Fatalf("repair Setup = %+v, %v", repaired, err)
	}
	if name, err := askName(ctx, "", atts[1].IP.String()+":3000"); err != nil || name != "web-1" {
		t.Fatalf("after repair: %q, %v", name, err)
	}

	list, err := n.List()
	if err != nil || len(list) != 2 || list[0].PodUID != uids[0] || list[1].PodUID != uids[1] ||
		list[1].NetNSPath != atts[1].NetNSPath || list[0].Pod != "default/web-0" {
		t.Fatalf("List = %+v, %v", list, err)
	}

	// The bridge stays while a pod's veth is on it.
	if removed, err := n.RemoveBridge(); err != nil || removed {
		t.Fatalf("RemoveBridge with pods attached = %t, %v; want it kept", removed, err)
	}
	for _, uid := range uids {
		if err := n.Teardown(ctx, uid); err != nil {
			t.Fatalf("Teardown: %v", err)
		}
		if err := n.Teardown(ctx, uid); err != nil {
			t.Fatalf("second Teardown: %v", err)
		}
		if _, err := netlink.LinkByName(hostVethName(uid)); !isLinkNotFound(err) {
			t.Errorf("veth %s still there (err %v)", hostVethName(uid), err)
		}
		if _, err := os.Lstat(netnsPath(uid)); !os.IsNotExist(err) {
			t.Errorf("namespace file %s still there (err %v)", netnsPath(uid), err)
		}
	}
	if list, err := n.List(); err != nil || len(list) != 0 {
		t.Fatalf("List after teardown = %v, %v", list, err)
	}
	entries, err := os.ReadDir(filepath.Join(stateDir, ModeNetNS))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "10.") {
			t.Errorf("allocation file %s left after teardown", e.Name())
		}
	}
	if removed, err := n.RemoveBridge(); err != nil || !removed {
		t.Fatalf("RemoveBridge with no pods = %t, %v; want it removed", removed, err)
	}
	if _, err := netlink.LinkByName(DefaultBridgeName); !isLinkNotFound(err) {
		t.Errorf("bridge %s still there (err %v)", DefaultBridgeName, err)
	}
	if removed, err := n.RemoveBridge(); err != nil || removed {
		t.Errorf("second RemoveBridge = %t, %v; want nothing to do", removed, err)
	}
}

// runIn runs a command as a child born in the namespace at nsPath.
func runIn(t *testing.T, nsPath string, name string, args ...string) string {
	t.Helper()
	var out []byte
	err := InNetNS(nsPath, func() error {
		var err error
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("%s %v in %s: %v\n%s", name, args, nsPath, err, out)
	}
	return string(out)
}

func netnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	return string(out)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func newUID(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
