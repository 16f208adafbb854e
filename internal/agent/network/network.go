package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/berth-project/berth/internal/agent/network/ipam"
)

// Modes accepted by ResolveMode and Config.Mode.
const (
	ModeAuto     = "auto"
	ModeNetNS    = "netns"
	ModeLoopback = "loopback"
)

// Defaults used when the corresponding Config field is empty.
const (
	DefaultPodCIDR      = "10.244.0.0/16"
	DefaultLoopbackCIDR = "127.244.0.0/16"
	DefaultBridgeName   = "berth0"
)

// NetNSDir is where pod namespaces are bind-mounted; it is the directory
// iproute2 uses, so `ip netns list` and `ip netns exec` see berth's pods.
const NetNSDir = "/run/netns"

const (
	netnsPrefix  = "berth-"
	vethPrefix   = "vb-"
	keyLen       = 12
	podIfName    = "eth0"
	maxIfNameLen = 15 // IFNAMSIZ - 1
)

var loopbackNet = netip.MustParsePrefix("127.0.0.0/8")

// Config configures a Network.
type Config struct {
	// Mode is netns, loopback or auto (see ResolveMode).
	Mode string
	// PodCIDR is the IPv4 range pod addresses come from. Empty means
	// DefaultPodCIDR in netns mode and DefaultLoopbackCIDR in loopback
	// mode. In loopback mode it must lie inside 127.0.0.0/8; in netns mode
	// it must not.
	PodCIDR string
	// BridgeName is the host bridge in netns mode (DefaultBridgeName if
	// empty). Ignored in loopback mode.
	BridgeName string
	// StateDir holds the IPAM state (StateDir/<mode>/); required.
	StateDir string
	// Logger receives setup and teardown events; slog.Default() if nil.
	Logger *slog.Logger
}

// Attachment is a pod's network identity.
type Attachment struct {
	PodUID string
	// Pod is "namespace/name" as given to Setup; informational.
	Pod string
	// IP is the pod's address; processes of the pod bind it (loopback) or
	// own it on eth0 (netns).
	IP net.IP
	// NetNSPath is the bind-mounted namespace to run the pod's processes
	// in (see InNetNS); "" in loopback mode.
	NetNSPath string
	// HostIP is how the pod reaches the node: the bridge gateway in netns
	// mode, 127.0.0.1 in loopback mode.
	HostIP net.IP
}

// Network sets up and tears down pod network identities. It is safe for
// concurrent use; Setup and Teardown are serialized.
type Network struct {
	mode    string
	prefix  netip.Prefix
	gateway netip.Addr // first address of prefix
	hostIP  netip.Addr
	bridge  string
	log     *slog.Logger

	mu   sync.Mutex // serializes Setup and Teardown
	ipam *ipam.Allocator
}

// ResolveMode turns the --pod-network flag value into a concrete mode:
// auto (or "") picks netns when running as root on Linux and loopback
// otherwise.
func ResolveMode(flag string) (string, error) {
	return resolveMode(flag, runtime.GOOS, os.Geteuid())
}

func resolveMode(flag, goos string, euid int) (string, error) {
	switch flag {
	case "", ModeAuto:
		if goos == "linux" && euid == 0 {
			return ModeNetNS, nil
		}
		return ModeLoopback, nil
	case ModeNetNS:
		if goos != "linux" {
			return "", fmt.Errorf("pod network mode %q needs Linux (this is %s); use %q", ModeNetNS, goos, ModeLoopback)
		}
		return ModeNetNS, nil
	case ModeLoopback:
		return ModeLoopback, nil
	}
	return "", fmt.Errorf("unknown pod network mode %q: want %s, %s or %s", flag, ModeAuto, ModeNetNS, ModeLoopback)
}

// New validates cfg and opens the IPAM state. It changes nothing on the
// host: the bridge and namespaces are made by Setup. Close it to release
// the state directory.
func New(cfg Config) (*Network, error) {
	mode, err := ResolveMode(cfg.Mode)
	if err != nil {
		return nil, err
	}
	if cfg.StateDir == "" {
		return nil, errors.New("pod network: state directory is required")
	}
	cidr := cfg.PodCIDR
	if cidr == "" {
		cidr = DefaultPodCIDR
		if mode == ModeLoopback {
			cidr = DefaultLoopbackCIDR
		}
	}
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("pod network: pod CIDR %q: %w", cidr, err)
	}
	if err := ipam.ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("pod network: pod CIDR: %w", err)
	}
	switch {
	case mode == ModeLoopback && !loopbackNet.Contains(prefix.Addr()):
		return nil, fmt.Errorf("pod network: loopback mode needs a pod CIDR inside %s, got %s (default %s)", loopbackNet, prefix, DefaultLoopbackCIDR)
	case mode == ModeNetNS && prefix.Overlaps(loopbackNet):
		return nil, fmt.Errorf("pod network: netns mode cannot use loopback pod CIDR %s (default %s)", prefix, DefaultPodCIDR)
	}

	n := &Network{
		mode:    mode,
		prefix:  prefix,
		gateway: prefix.Addr().Next(),
		log:     cfg.Logger,
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	reserved := []netip.Addr{n.gateway}
	if mode == ModeNetNS {
		n.hostIP = n.gateway
		n.bridge = cfg.BridgeName
		if n.bridge == "" {
			n.bridge = DefaultBridgeName
		}
		if err := validateIfName(n.bridge); err != nil {
			return nil, fmt.Errorf("pod network: bridge name: %w", err)
		}
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("pod network: mode %q needs root (running as uid %d); use %q", ModeNetNS, os.Geteuid(), ModeLoopback)
		}
	} else {
		// The first address is reserved in loopback mode too so a pod's
		// address looks the same in both modes (.2 is the first pod).
		n.hostIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		reserved = append(reserved, n.hostIP)
	}
	ic := ipam.Config{
		Dir:      filepath.Join(cfg.StateDir, mode),
		Prefix:   prefix,
		Reserved: reserved,
	}
	if mode == ModeLoopback {
		// 127.x addresses are shared by everything on the host: skip those
		// another berth's pods (or anyone else) already listen on.
		ic.InUse = boundLoopbackAddrs
	}
	a, err := ipam.New(ic)
	if err != nil {
		return nil, fmt.Errorf("pod network: %w", err)
	}
	n.ipam = a
	return n, nil
}

// Mode returns the resolved mode, netns or loopback.
func (n *Network) Mode() string { return n.mode }

// HostIP returns the address pods use to reach the node.
func (n *Network) HostIP() net.IP { return toIP(n.hostIP) }

// PodCIDR returns the range pod addresses come from.
func (n *Network) PodCIDR() netip.Prefix { return n.prefix }

// Close releases the IPAM state directory. It leaves all pods' networking
// in place, so a new Network over the same StateDir adopts them.
func (n *Network) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ipam.Close()
}

// RemoveBridge deletes the host bridge of netns mode if no pod's veth is
// on it (berth cleanup, once every pod network is torn down); it reports
// whether it did. In loopback mode there is nothing to remove.
func (n *Network) RemoveBridge() (bool, error) {
	if n.mode != ModeNetNS {
		return false, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.removeBridge()
}

// Setup gives the pod its network identity, or returns (and repairs) the
// one it already has. podNamespace and podName are recorded for logs and
// List. On failure nothing new is left behind.
func (n *Network) Setup(ctx context.Context, podUID, podNamespace, podName string) (Attachment, error) {
	pod := podNamespace + "/" + podName
	if err := validateUID(podUID); err != nil {
		return Attachment{}, fmt.Errorf("set up network for pod %s: %w", pod, err)
	}
	if err := ctx.Err(); err != nil {
		return Attachment{}, fmt.Errorf("set up network for pod %s: %w", pod, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()

	al, found, err := n.ipam.Lookup(podUID)
	if err != nil {
		return Attachment{}, fmt.Errorf("set up network for pod %s: %w", pod, err)
	}
	if found && !n.ipam.Usable(al.IP) {
		// Left by an older configuration (another CIDR): start over.
		n.log.Info("pod address outside the pod CIDR, reallocating", "pod", pod, "uid", podUID, "ip", al.IP, "cidr", n.prefix)
		if err := n.teardownLocked(podUID); err != nil {
			return Attachment{}, fmt.Errorf("set up network for pod %s: %w", pod, err)
		}
		found = false
	}
	created := false
	if !found {
		if err := n.checkKeyCollision(podUID); err != nil {
			return Attachment{}, fmt.Errorf("set up network for pod %s: %w", pod, err)
		}
		al, created, err = n.ipam.Allocate(podUID, pod)
		if err != nil {
			return Attachment{}, fmt.Errorf("set up network for pod %s: %w", pod, err)
		}
	}
	att := n.attachment(al)
	if n.mode == ModeNetNS {
		if err := n.setupNetNS(ctx, podUID, al.IP); err != nil {
			if created {
				// Only undo what this call made: an adopted pod may be
				// running, and the agent will retry Setup.
				if terr := n.teardownLocked(podUID); terr != nil {
					n.log.Error("roll back failed pod network setup", "pod", pod, "uid", podUID, "err", terr)
				}
			}
			return Attachment{}, fmt.Errorf("set up network for pod %s (%s): %w", pod, al.IP, err)
		}
	}
	n.log.Info("pod network ready", "pod", pod, "uid", podUID, "ip", al.IP, "netns", att.NetNSPath, "adopted", !created)
	return att, nil
}

// Teardown removes the pod's veth and namespace and releases its address.
// It is idempotent: tearing down an unknown or already torn-down pod is
// not an error. The address is released last, so a pod whose teardown
// failed still shows in List and can be retried. The pod's processes
// should be stopped first: a namespace lives on while processes use it.
func (n *Network) Teardown(ctx context.Context, podUID string) error {
	if err := validateUID(podUID); err != nil {
		return fmt.Errorf("tear down network of pod %s: %w", podUID, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("tear down network of pod %s: %w", podUID, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	al, found, err := n.ipam.Lookup(podUID)
	if err != nil {
		return fmt.Errorf("tear down network of pod %s: %w", podUID, err)
	}
	if err := n.teardownLocked(podUID); err != nil {
		return err
	}
	if found {
		n.log.Info("pod network removed", "pod", al.Note, "uid", podUID, "ip", al.IP)
	}
	return nil
}

func (n *Network) teardownLocked(podUID string) error {
	if n.mode == ModeNetNS {
		if err := n.teardownNetNS(podUID); err != nil {
			return fmt.Errorf("tear down network of pod %s: %w", podUID, err)
		}
	}
	if err := n.ipam.Release(podUID); err != nil {
		return fmt.Errorf("tear down network of pod %s: %w", podUID, err)
	}
	return nil
}

// List returns every attachment recorded in the state directory, sorted by
// IP, including ones whose pods no longer exist (for orphan cleanup).
func (n *Network) List() ([]Attachment, error) {
	als, err := n.ipam.List()
	if err != nil {
		return nil, fmt.Errorf("list pod networks: %w", err)
	}
	out := make([]Attachment, 0, len(als))
	for _, al := range als {
		if al.Owner == "" {
			continue // an unreadable record cannot be torn down by UID
		}
		out = append(out, n.attachment(al))
	}
	return out, nil
}

func (n *Network) attachment(al ipam.Allocation) Attachment {
	a := Attachment{PodUID: al.Owner, Pod: al.Note, IP: toIP(al.IP), HostIP: toIP(n.hostIP)}
	if n.mode == ModeNetNS {
		a.NetNSPath = netnsPath(al.Owner)
	}
	return a
}

// checkKeyCollision refuses a pod whose derived names would clash with
// another pod's, since both would share one namespace and veth.
func (n *Network) checkKeyCollision(podUID string) error {
	if n.mode != ModeNetNS {
		return nil
	}
	als, err := n.ipam.List()
	if err != nil {
		return err
	}
	k := podKey(podUID)
	for _, al := range als {
		if al.Owner != podUID && al.Owner != "" && podKey(al.Owner) == k {
			return fmt.Errorf("pod UID %q maps to the same network name %q as pod UID %q", podUID, netnsPrefix+k, al.Owner)
		}
	}
	return nil
}

// podKey derives a short, stable, name-safe key from a pod UID.
func podKey(uid string) string {
	s := strings.ToLower(strings.ReplaceAll(uid, "-", ""))
	if len(s) >= keyLen && isLowerAlnum(s[:keyLen]) {
		return s[:keyLen]
	}
	sum := sha256.Sum256([]byte(uid))
	return hex.EncodeToString(sum[:])[:keyLen]
}

func isLowerAlnum(s string) bool {
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func netnsPath(uid string) string { return filepath.Join(NetNSDir, netnsPrefix+podKey(uid)) }

func hostVethName(uid string) string { return vethPrefix + podKey(uid) }

func validateUID(uid string) error {
	if uid == "" {
		return errors.New("pod UID is required")
	}
	if len(uid) > 256 {
		return fmt.Errorf("pod UID is %d bytes long (at most 256)", len(uid))
	}
	for _, c := range uid {
		if c <= ' ' || c == 0x7f || c == '/' {
			return fmt.Errorf("pod UID %q contains a space, control character or '/'", uid)
		}
	}
	return nil
}

func validateIfName(name string) error {
	if name == "" || len(name) > maxIfNameLen {
		return fmt.Errorf("interface name %q must be 1 to %d bytes", name, maxIfNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("interface name %q is not allowed", name)
	}
	for _, c := range name {
		if c <= ' ' || c == 0x7f || c == '/' || c == ':' || c > 0x7e {
			return fmt.Errorf("interface name %q contains a space, '/', ':' or a non-printable character", name)
		}
	}
	return nil
}

func toIP(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil
	}
	return net.IP(a.AsSlice())
}
