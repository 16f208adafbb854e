package network

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// InNetNS runs fn on an OS thread that has joined the network namespace at
// nsPath, and returns fn's error. nsPath "" runs fn directly.
//
// Sockets created by fn stay in that namespace after InNetNS returns, and a
// process started by fn (exec.Cmd.Start) is born in it, so this is how the
// runtime starts a pod's processes and how tests listen or dial "inside" a
// pod. fn must not start goroutines that expect to be in the namespace:
// only the calling goroutine's thread is switched.
//
// The thread is moved back and unlocked afterwards; if that fails it stays
// locked and is destroyed by the Go runtime, so no other goroutine ever
// runs in the pod namespace. Note that SysProcAttr.Pdeathsig fires when the
// starting thread exits, which only happens in that failure case.
func InNetNS(nsPath string, fn func() error) error {
	if nsPath == "" {
		return fn()
	}
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer target.Close()

	errc := make(chan error, 1)
	// A fresh goroutine so the caller's own thread lock state never mixes
	// with ours.
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return // still locked: the thread is discarded
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", nsPath, err)
			return
		}
		ferr := runRecover(fn)
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w", nsPath, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func runRecover(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in network namespace: %v", r)
		}
	}()
	return fn()
}

// setupNetNS makes (or repairs) the pod's namespace, veth pair, address
// and routes. Every step is idempotent so adoption after a restart and a
// retry after a partial failure take the same path.
func (n *Network) setupNetNS(ctx context.Context, uid string, ip netip.Addr) error {
	host, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer host.Close()
	br, err := n.ensureHost(host)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	nsPath := netnsPath(uid)
	if err := ensureNetNS(nsPath); err != nil {
		return err
	}
	podNS, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer podNS.Close()
	var pod *netlink.Handle
	// A handle made on a thread inside the namespace talks to that
	// namespace for its whole life, from any goroutine.
	if err := InNetNS(nsPath, func() error {
		var err error
		pod, err = netlink.NewHandle()
		return err
	}); err != nil {
		return fmt.Errorf("open netlink in %s: %w", nsPath, err)
	}
	defer pod.Close()
	if err := ctx.Err(); err != nil {
		return err
	}

	lo, err := pod.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", nsPath, err)
	}
	if err := pod.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up in %s: %w", nsPath, err)
	}

	vethName := hostVethName(uid)
	hostEnd, eth0, err := ensureVeth(host, pod, podNS, vethName, podMAC(ip))
	if err != nil {
		return fmt.Errorf("veth %s: %w", vethName, err)
	}
	if hostEnd.Attrs().MasterIndex != br.Attrs().Index {
		if err := host.LinkSetMasterByIndex(hostEnd, br.Attrs().Index); err != nil {
			return fmt.Errorf("attach %s to bridge %s: %w", vethName, n.bridge, err)
		}
	}
	if err := host.LinkSetUp(hostEnd); err != nil {
		return fmt.Errorf("set %s up: %w", vethName, err)
	}
	// Hairpin lets a packet leave and re-enter the same bridge port, which
	// a pod needs to reach itself through a Service IP.
	if err := host.LinkSetHairpin(hostEnd, true); err != nil {
		return fmt.Errorf("set hairpin on %s: %w", vethName, err)
	}

	want := &net.IPNet{IP: toIP(ip), Mask: net.CIDRMask(n.prefix.Bits(), 32)}
	addrs, err := listAddrs(pod, eth0)
	if err != nil {
		return fmt.Errorf("list addresses of %s in %s: %w", podIfName, nsPath, err)
	}
	for _, a := range addrs {
		if !a.IPNet.IP.Equal(want.IP) || !bytes.Equal(a.IPNet.Mask, want.Mask) {
			if err := pod.AddrDel(eth0, &a); err != nil {
				return fmt.Errorf("remove stale address %s from %s in %s: %w", a.IPNet, podIfName, nsPath, err)
			}
		}
	}
	if err := pod.AddrReplace(eth0, &netlink.Addr{IPNet: want}); err != nil {
		return fmt.Errorf("add %s to %s in %s: %w", want, podIfName, nsPath, err)
	}
	if err := pod.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("set %s up in %s: %w", podIfName, nsPath, err)
	}
	def := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: toIP(n.gateway), Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
	if err := pod.RouteReplace(def); err != nil {
		return fmt.Errorf("add default route via %s in %s: %w", n.gateway, nsPath, err)
	}
	return nil
}

// podMAC derives eth0's MAC from the pod IP (as ovn-kubernetes does), so
// a rebuilt veth or a reused address keeps the MAC that neighbours have
// cached; a random one would black-hole traffic until their ARP entries
// expire.
func podMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x02, 0x62, b[0], b[1], b[2], b[3]}
}

// ensureHost makes the bridge exist, be up and carry the gateway address,
// and turns on IPv4 forwarding, all in berth's own namespace.
func (n *Network) ensureHost(h *netlink.Handle) (netlink.Link, error) {
	br, err := h.LinkByName(n.bridge)
	if isLinkNotFound(err) {
		// A fixed MAC (locally administered, derived from the gateway)
		// keeps the bridge address from changing as ports come and go,
		// which would leave stale gateway ARP entries in pods.
		// Same scheme as podMAC; the gateway is never a pod address.
		err = h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.bridge, HardwareAddr: podMAC(n.gateway)}})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", n.bridge, err)
		}
		if err == nil {
			n.log.Info("created pod bridge", "bridge", n.bridge, "gateway", n.gateway)
		}
		br, err = h.LinkByName(n.bridge)
	}
	if err != nil {
		return nil, fmt.Errorf("find bridge %s: %w", n.bridge, err)
	}
	if br.Type() != "bridge" {
		return nil, fmt.Errorf("link %s exists but is a %s, not a bridge", n.bridge, br.Type())
	}
	gw := &net.IPNet{IP: toIP(n.gateway), Mask: net.CIDRMask(n.prefix.Bits(), 32)}
	if err := h.AddrReplace(br, &netlink.Addr{IPNet: gw}); err != nil {
		return nil, fmt.Errorf("add gateway %s to bridge %s: %w", gw, n.bridge, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("set bridge %s up: %w", n.bridge, err)
	}
	was, err := enableIPForward()
	if err != nil {
		return nil, err
	}
	if was != "" {
		// A host setting berth changes: say so (berth cleanup leaves it).
		n.log.Info("enabled IPv4 forwarding for the pod network", "sysctl", "net.ipv4.ip_forward", "was", was)
	}
	return br, nil
}

// enableIPForward writes the sysctl of the namespace this goroutine's thread
// is in, which is always berth's own (see InNetNS). It returns the value it
// replaced, or "" if forwarding was on already.
func enableIPForward() (was string, err error) {
	cur, err := os.ReadFile(ipForwardPath)
	was = strings.TrimSpace(string(cur))
	if err == nil && was == "1" {
		return "", nil
	}
	if err := os.WriteFile(ipForwardPath, []byte("1\n"), 0o644); err != nil {
		return "", fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	return cmp.Or(was, "unknown"), nil
}

// ensureVeth returns the host end and the pod's eth0 of a veth pair,
// creating the pair directly across the two namespaces (the peer is born in
// the pod namespace as eth0, so it never clashes with a host eth0). A
// half-present or mismatched pair is deleted and recreated.
func ensureVeth(host, pod *netlink.Handle, podNS netns.NsHandle, name string, mac net.HardwareAddr) (netlink.Link, netlink.Link, error) {
	hostEnd, herr := host.LinkByName(name)
	if herr != nil && !isLinkNotFound(herr) {
		return nil, nil, herr
	}
	eth0, perr := pod.LinkByName(podIfName)
	if perr != nil && !isLinkNotFound(perr) {
		return nil, nil, perr
	}
	if herr == nil && perr == nil && hostEnd.Type() == "veth" && eth0.Type() == "veth" &&
		eth0.Attrs().ParentIndex == hostEnd.Attrs().Index {
		return hostEnd, eth0, nil
	}
	if herr == nil {
		if err := host.LinkDel(hostEnd); err != nil && !isLinkNotFound(err) {
			return nil, nil, fmt.Errorf("delete stale host end: %w", err)
		}
	}
	if perr == nil {
		if err := pod.LinkDel(eth0); err != nil && !isLinkNotFound(err) {
			return nil, nil, fmt.Errorf("delete stale %s: %w", podIfName, err)
		}
	}
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: name},
		PeerName:         podIfName,
		PeerNamespace:    netlink.NsFd(int(podNS)),
		PeerHardwareAddr: mac,
	}
	if err := host.LinkAdd(veth); err != nil {
		return nil, nil, fmt.Errorf("create pair: %w", err)
	}
	hostEnd, err := host.LinkByName(name)
	if err != nil {
		return nil, nil, err
	}
	eth0, err = pod.LinkByName(podIfName)
	if err != nil {
		return nil, nil, err
	}
	return hostEnd, eth0, nil
}

// teardownNetNS removes the veth (its peer goes with it) and the namespace;
// missing pieces are fine.
func (n *Network) teardownNetNS(uid string) error {
	host, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer host.Close()
	name := hostVethName(uid)
	l, err := host.LinkByName(name)
	switch {
	case err == nil:
		if err := host.LinkDel(l); err != nil && !isLinkNotFound(err) {
			return fmt.Errorf("delete veth %s: %w", name, err)
		}
	case !isLinkNotFound(err):
		return fmt.Errorf("find veth %s: %w", name, err)
	}
	return deleteNetNS(netnsPath(uid))
}

// removeBridge deletes the pod bridge when no veth is attached to it any
// more. A bridge with ports is left alone: it may serve another berth's pods.
func (n *Network) removeBridge() (bool, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return false, fmt.Errorf("open netlink: %w", err)
	}
	defer h.Close()
	br, err := h.LinkByName(n.bridge)
	if isLinkNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("find bridge %s: %w", n.bridge, err)
	}
	if br.Type() != "bridge" {
		return false, nil // not ours
	}
	links, err := h.LinkList()
	if err != nil {
		return false, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			return false, nil
		}
	}
	if err := h.LinkDel(br); err != nil && !isLinkNotFound(err) {
		return false, fmt.Errorf("delete bridge %s: %w", n.bridge, err)
	}
	return true, nil
}

// ensureNetNS makes nsPath a bind mount of a network namespace. A file
// there that is not such a mount (left over after a reboot) is replaced.
func ensureNetNS(nsPath string) error {
	var st unix.Statfs_t
	err := unix.Statfs(nsPath, &st)
	switch {
	case err == nil && st.Type == unix.NSFS_MAGIC:
		return nil
	case err == nil:
		if err := os.Remove(nsPath); err != nil {
			return fmt.Errorf("remove stale namespace file %s: %w", nsPath, err)
		}
	case !errors.Is(err, unix.ENOENT):
		return fmt.Errorf("inspect %s: %w", nsPath, err)
	}
	if err := prepareNetNSDir(); err != nil {
		return err
	}
	return createNetNS(nsPath)
}

// prepareNetNSDir creates NetNSDir and, as `ip netns add` does, makes it a
// shared mount point so namespaces mounted later also appear in mount
// namespaces that were copied earlier (for example `ip netns exec`).
func prepareNetNSDir() error {
	if err := os.MkdirAll(NetNSDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NetNSDir, err)
	}
	err := unix.Mount("", NetNSDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself, then share it.
		if err := unix.Mount(NetNSDir, NetNSDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s: %w", NetNSDir, err)
		}
		err = unix.Mount("", NetNSDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", NetNSDir, err)
	}
	return nil
}

// createNetNS creates a new network namespace and bind-mounts it at nsPath.
func createNetNS(nsPath string) error {
	f, err := os.OpenFile(nsPath, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create namespace file %s: %w", nsPath, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: when this goroutine returns the runtime destroys
		// the thread, so the new namespace can never leak to other code.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		if err := unix.Mount(self, nsPath, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount namespace at %s: %w", nsPath, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(nsPath)
		return err
	}
	return nil
}

// deleteNetNS unmounts and removes nsPath; already gone is fine.
func deleteNetNS(nsPath string) error {
	err := unix.Unmount(nsPath, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount namespace %s: %w", nsPath, err)
	}
	if err := os.Remove(nsPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove namespace file %s: %w", nsPath, err)
	}
	return nil
}

// listAddrs retries interrupted dumps, which netlink reports when the
// address table changed mid-dump.
func listAddrs(h *netlink.Handle, l netlink.Link) ([]netlink.Addr, error) {
	var err error
	for range 5 {
		var addrs []netlink.Addr
		addrs, err = h.AddrList(l, netlink.FAMILY_V4)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return addrs, err
		}
	}
	return nil, err
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return err != nil && errors.As(err, &nf)
}
