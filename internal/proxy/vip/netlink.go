package vip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultDevice is the device Netlink puts service addresses on.
const DefaultDevice = "berth-svc0"

// NetlinkConfig configures a Netlink address manager.
type NetlinkConfig struct {
	// Device is the link to hold service addresses; DefaultDevice if empty.
	// berth owns it: addresses already on it are removed at start.
	Device string
	// Logger receives add/remove records; slog.Default() if nil.
	Logger *slog.Logger
}

// Netlink is the AddressManager for service IPs outside loopback. It keeps a
// device up in the current network namespace (a dummy link where the kernel
// has the dummy driver, else a bridge with no ports, which is just as inert)
// and adds each service IP to it as a /32 or /128 on its first Ensure and
// removes it on its last Release. Safe for concurrent use.
type Netlink struct {
	log     *slog.Logger
	handle  *netlink.Handle
	link    netlink.Link
	kind    string
	created bool

	mu sync.Mutex
	// refs counts users per address; guarded by mu.
	refs map[netip.Addr]int
}

// NewNetlink finds or creates the device, sets it up and clears addresses a
// previous run left on it.
func NewNetlink(cfg NetlinkConfig) (*Netlink, error) {
	name := cfg.Device
	if name == "" {
		name = DefaultDevice
	}
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("service address device name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	n := &Netlink{log: log.With("device", name), handle: h, refs: map[netip.Addr]int{}}
	if err := n.setupLink(name); err != nil {
		h.Close()
		return nil, err
	}
	return n, nil
}

func (n *Netlink) setupLink(name string) error {
	link, err := n.handle.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case err == nil:
		n.kind = link.Type()
	case errors.As(err, &notFound):
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		err = n.handle.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
		n.kind = "dummy"
		if errors.Is(err, unix.EOPNOTSUPP) {
			// No dummy driver in this kernel: a port-less bridge holds
			// local addresses just as well and forwards nothing.
			n.log.Info("dummy links unsupported, using a bridge with no ports for service addresses")
			err = n.handle.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
			n.kind = "bridge"
		}
		if err != nil {
			return fmt.Errorf("create %s device %s: %w", n.kind, name, err)
		}
		n.created = true
		if link, err = n.handle.LinkByName(name); err != nil {
			return fmt.Errorf("look up new device %s: %w", name, err)
		}
	default:
		return fmt.Errorf("look up device %s: %w", name, err)
	}
	n.link = link
	if err := n.handle.LinkSetUp(link); err != nil {
		return fmt.Errorf("set device %s up: %w", name, err)
	}
	stale, err := n.list()
	if err != nil {
		return err
	}
	for _, a := range stale {
		if err := n.handle.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove stale address %s from %s: %w", a.IPNet, name, err)
		}
		n.log.Info("removed stale service address", "ip", a.IP.String())
	}
	return nil
}

// Kind returns the device's link type ("dummy" or "bridge" when created here).
func (n *Netlink) Kind() string { return n.kind }

// Addresses returns the addresses currently on the device.
func (n *Netlink) Addresses() ([]netip.Addr, error) {
	as, err := n.list()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

func (n *Netlink) list() ([]netlink.Addr, error) {
	var as []netlink.Addr
	var err error
	for range 3 { // a dump can be interrupted by a concurrent change; retry
		as, err = n.handle.AddrList(n.link, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses on %s: %w", n.link.Attrs().Name, err)
	}
	// Link-local IPv6 addresses are the kernel's, not ours.
	out := as[:0]
	for _, a := range as {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// Ensure adds ip to the device on its first use and counts further uses.
func (n *Netlink) Ensure(ip netip.Addr) error {
	ip = ip.Unmap()
	if err := checkServiceIP("ensure", ip); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.refs[ip] > 0 {
		n.refs[ip]++
		return nil
	}
	if err := n.handle.AddrAdd(n.link, hostAddr(ip)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add service address %s to %s: %w", ip, n.link.Attrs().Name, err)
	}
	if err := n.waitLocal(ip); err != nil {
		return err
	}
	n.refs[ip] = 1
	n.log.Debug("added service address", "ip", ip.String())
	return nil
}

// Release drops one use of ip and removes it from the device with the last.
func (n *Netlink) Release(ip netip.Addr) error {
	ip = ip.Unmap()
	if err := checkServiceIP("release", ip); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch n.refs[ip] {
	case 0:
		return fmt.Errorf("release service address %s: not ensured", ip)
	case 1:
		if err := n.handle.AddrDel(n.link, hostAddr(ip)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove service address %s from %s: %w", ip, n.link.Attrs().Name, err)
		}
		delete(n.refs, ip)
		n.log.Debug("removed service address", "ip", ip.String())
	default:
		n.refs[ip]--
	}
	return nil
}

// Close removes every address still ensured and, if NewNetlink created the
// device, deletes it. The manager must not be used afterwards.
func (n *Netlink) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	if n.created {
		if err := n.handle.LinkDel(n.link); err != nil {
			errs = append(errs, fmt.Errorf("delete device %s: %w", n.link.Attrs().Name, err))
		}
	} else {
		for ip := range n.refs {
			if err := n.handle.AddrDel(n.link, hostAddr(ip)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("remove service address %s: %w", ip, err))
			}
		}
	}
	clear(n.refs)
	n.handle.Close()
	return errors.Join(errs...)
}

// localWait bounds how long Ensure waits for the kernel to route a new
// address locally.
const localWait = 2 * time.Second

// waitLocal returns once ip routes locally. IPv4 does that when AddrAdd
// returns; IPv6 installs the local route from a kernel work queue a moment
// later, and a client connecting before then is sent out of the device
// instead (and fails with "no route to host").
func (n *Netlink) waitLocal(ip netip.Addr) error {
	deadline := time.Now().Add(localWait)
	for {
		routes, err := n.handle.RouteGet(net.IP(ip.AsSlice()))
		if err == nil && len(routes) > 0 && routes[0].Type == unix.RTN_LOCAL {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("no local route")
			}
			return fmt.Errorf("service address %s on %s is not local after %v: %w", ip, n.link.Attrs().Name, localWait, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// hostAddr is ip as a host route. IPv6 addresses skip duplicate address
// detection so a listener can bind them at once.
func hostAddr(ip netip.Addr) *netlink.Addr {
	bits := ip.BitLen()
	a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(ip.AsSlice()), Mask: net.CIDRMask(bits, bits)}}
	if ip.Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func checkServiceIP(op string, ip netip.Addr) error {
	switch {
	case !ip.IsValid():
		return fmt.Errorf("%s service address: invalid IP", op)
	case ip.IsUnspecified(), ip.IsMulticast(), ip.IsLinkLocalUnicast():
		return fmt.Errorf("%s service address %s: not a unicast service IP", op, ip)
	}
	return nil
}
