//go:build linux

package nftables

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// These fixtures run only inside the private namespace inNetns made: they
// build a small node there, shaped like berth's netns pod network.
//
//	lo                      127.0.0.1 (+ 127.0.0.x servers)
//	brtest0 (bridge)        10.244.0.1/24, the pods' gateway and "node IP"
//	  vh0 ── pod0 eth0      10.244.0.2/24, default via 10.244.0.1
//	  vh1 ── pod1 eth0      10.244.0.3/24, default via 10.244.0.1
//	route 10.96.0.0/14 dev lo src 10.244.0.1   (service, external and LB IPs)
//
// The route is the one the README recommends for a namespace without a
// default route: local clients get a real source address, and a pod's
// packet to a service IP without endpoints is routed (towards lo) rather
// than back out of the bridge, where the kernel would first send an ICMP
// redirect, which eats the ICMP rate-limit token the port-unreachable
// needs.

const (
	testBridge = "brtest0"
	gatewayIP  = "10.244.0.1"
)

type testNode struct {
	pods []*testPod
}

type testPod struct {
	name string
	ip   string
	ns   netns.NsHandle
}

func setupNode(t testing.TB, pods int) *testNode {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatalf("set lo up: %v", err)
	}
	// Pod-to-pod traffic through a service IP is routed by this
	// namespace (in on the bridge, out on the bridge).
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		t.Fatalf("enable ip_forward in the test namespace: %v", err)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: testBridge}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("add bridge: %v", err)
	}
	gw, _ := netlink.ParseAddr(gatewayIP + "/24")
	if err := netlink.AddrAdd(br, gw); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	n := &testNode{}
	for i := range pods {
		n.pods = append(n.pods, addPod(t, br, i))
	}
	_, svcNet, _ := net.ParseCIDR("10.96.0.0/14")
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: lo.Attrs().Index, Dst: svcNet, Src: net.ParseIP(gatewayIP)}); err != nil {
		t.Fatalf("route service range: %v", err)
	}
	return n
}

func addPod(t testing.TB, br *netlink.Bridge, i int) *testPod {
	t.Helper()
	p := &testPod{name: fmt.Sprintf("pod%d", i), ip: fmt.Sprintf("10.244.0.%d", i+2)}
	ns, err := newNetns()
	if err != nil {
		t.Fatalf("pod namespace: %v", err)
	}
	p.ns = ns
	t.Cleanup(func() { p.ns.Close() })

	host, peer := fmt.Sprintf("vh%d", i), fmt.Sprintf("vp%d", i)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, MasterIndex: br.Attrs().Index}, PeerName: peer}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	hostLink, err := netlink.LinkByName(host)
	if err != nil {
		t.Fatal(err)
	}
	// A pod reaching itself through a service comes back out of its own
	// bridge port, which a bridge only does in hairpin mode.
	if err := netlink.LinkSetHairpin(hostLink, true); err != nil {
		t.Fatalf("hairpin: %v", err)
	}
	if err := netlink.LinkSetUp(hostLink); err != nil {
		t.Fatal(err)
	}
	peerLink, err := netlink.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(peerLink, int(ns)); err != nil {
		t.Fatalf("move veth into the pod: %v", err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth, err := h.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetName(eth, "eth0"); err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr(p.ip + "/24")
	if err := h.AddrAdd(eth, addr); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
	if plo, err := h.LinkByName("lo"); err == nil {
		_ = h.LinkSetUp(plo)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.ParseIP(gatewayIP)}); err != nil {
		t.Fatalf("pod default route: %v", err)
	}
	return p
}

// newNetns makes a network namespace and returns a handle to it, leaving
// the calling thread where it was.
func newNetns() (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return 0, err
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		return 0, err
	}
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the new namespace: keep it locked so
		// it dies with this goroutine instead of serving others.
		ns.Close()
		return 0, fmt.Errorf("return to the test namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ns, nil
}

// in runs f with the calling goroutine's thread in the pod's namespace;
// sockets f creates stay there.
func (p *testPod) in(f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(p.ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("return from pod namespace: %w", err)) // thread stays locked
	}
	runtime.UnlockOSThread()
	return ferr
}

// serveTCP and serveUDP answer every TCP connection with "NAME PEER\n" and every
// UDP datagram with "NAME PEER", PEER being the client address it saw,
// like agnhost's netexec /hostname and /clientip.
func serveTCP(t *testing.T, ln net.Listener, name string) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
			c.Close()
		}
	}()
}

func serveUDP(t *testing.T, pc net.PacketConn, name string) {
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			fmt.Fprintf(writerTo{pc, from}, "%s %s", name, from)
		}
	}()
}

type writerTo struct {
	pc net.PacketConn
	to net.Addr
}

func (w writerTo) Write(b []byte) (int, error) { return w.pc.WriteTo(b, w.to) }

func startTCP(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	serveTCP(t, ln, addr)
}

func startUDP(t *testing.T, addr string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	serveUDP(t, pc, addr)
}

// reply is what a hostname server said: who answered and whom it saw.
type reply struct {
	server, peer string
}

func (r reply) peerIP() string {
	h, _, _ := net.SplitHostPort(r.peer)
	return h
}

const dialTimeout = 3 * time.Second

// hitTCP connects to addr (from laddr if set) and reads the server's line.
func hitTCP(addr, laddr string) (reply, error) {
	d := net.Dialer{Timeout: dialTimeout}
	if laddr != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(laddr)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return reply{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return reply{}, fmt.Errorf("read from %s: %w", addr, err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return reply{}, fmt.Errorf("odd reply %q from %s", line, addr)
	}
	return reply{f[0], f[1]}, nil
}

// hitUDP sends one datagram on c (a connected UDP socket) and reads the
// answer.
func hitUDP(c net.Conn) (reply, error) {
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := c.Write([]byte("who")); err != nil {
		return reply{}, err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return reply{}, err
	}
	f := strings.Fields(string(buf[:n]))
	if len(f) != 2 {
		return reply{}, fmt.Errorf("odd reply %q", buf[:n])
	}
	return reply{f[0], f[1]}, nil
}

func dialUDP(addr string) (net.Conn, error) { return net.DialTimeout("udp", addr, dialTimeout) }
