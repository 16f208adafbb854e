// Package alloc hands out Service cluster IPs and node ports from ranges,
// recording each allocation as its own key in storage so that nothing is given
// out twice, across restarts and across API servers sharing one etcd. A repair
// loop (internal/controller/allocrepair) frees allocations whose Service is gone.
package alloc

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/storage"
)

// Errors the Service strategy turns into field errors.
var (
	ErrAllocated  = errors.New("provided IP is already allocated")
	ErrNotInRange = errors.New("provided IP is not in the valid range")
	ErrFull       = errors.New("range is full")
)

// Range is a contiguous set of values numbered 0..Size-1.
type Range interface {
	Size() int64
	// Offset returns the index of value, or false when it is outside.
	Offset(value string) (int64, bool)
	Value(offset int64) string
	String() string
}

// Allocator records allocations of one Range under a storage prefix.
type Allocator struct {
	store  storage.Interface
	prefix string
	rng    Range
	// staticSize is the lower part of the range kept for requested values,
	// which dynamic allocation tries last (as Kubernetes does since 1.26).
	staticSize int64
	errAlloc   error
	errRange   error
}

// New returns an allocator over rng that keeps its keys under prefix.
func New(store storage.Interface, prefix string, rng Range, staticSize int64) *Allocator {
	return &Allocator{store: store, prefix: strings.TrimSuffix(prefix, "/") + "/", rng: rng, staticSize: staticSize,
		errAlloc: ErrAllocated, errRange: ErrNotInRange}
}

// Range returns the allocator's range.
func (a *Allocator) Range() Range { return a.rng }

// Prefix returns the storage prefix of the allocator's keys.
func (a *Allocator) Prefix() string { return a.prefix }

func (a *Allocator) key(value string) string { return a.prefix + value }

// Allocate claims value for owner. It returns ErrNotInRange or ErrAllocated
// (an owner claiming what it already holds succeeds).
func (a *Allocator) Allocate(ctx context.Context, value, owner string) error {
	if _, ok := a.rng.Offset(value); !ok {
		return a.errRange
	}
	_, err := a.store.Create(ctx, a.key(value), []byte(owner), 0)
	if errors.Is(err, storage.ErrExists) {
		kv, gerr := a.store.Get(ctx, a.key(value))
		if gerr == nil && string(kv.Value) == owner {
			return nil
		}
		return a.errAlloc
	}
	if err != nil {
		return fmt.Errorf("allocate %s: %w", value, err)
	}
	return nil
}

// AllocateNext claims a free value for owner: a random start in the dynamic
// part of the range, then a scan; ErrFull when nothing is left.
func (a *Allocator) AllocateNext(ctx context.Context, owner string) (string, error) {
	size := a.rng.Size()
	if size <= 0 {
		return "", ErrFull
	}
	dynStart, dynSize := a.staticSize, size-a.staticSize
	if dynSize <= 0 {
		dynStart, dynSize = 0, size
	}
	// A few random probes find a free value at once in a sparse range.
	for i := 0; i < 8; i++ {
		v := a.rng.Value(dynStart + randInt(dynSize))
		if err := a.create(ctx, v, owner); err == nil {
			return v, nil
		} else if !errors.Is(err, storage.ErrExists) {
			return "", err
		}
	}
	used, err := a.Used(ctx)
	if err != nil {
		return "", err
	}
	start := randInt(dynSize)
	order := []struct{ from, n int64 }{{dynStart, dynSize}, {0, dynStart}}
	for _, part := range order {
		for i := int64(0); i < part.n; i++ {
			off := part.from + (start+i)%part.n
			v := a.rng.Value(off)
			if _, taken := used[v]; taken {
				continue
			}
			if err := a.create(ctx, v, owner); err == nil {
				return v, nil
			} else if !errors.Is(err, storage.ErrExists) {
				return "", err
			}
		}
	}
	return "", ErrFull
}

func (a *Allocator) create(ctx context.Context, value, owner string) error {
	_, err := a.store.Create(ctx, a.key(value), []byte(owner), 0)
	return err
}

// Release frees value if owner holds it ("" releases whoever holds it).
func (a *Allocator) Release(ctx context.Context, value, owner string) error {
	kv, err := a.store.Get(ctx, a.key(value))
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release %s: %w", value, err)
	}
	if owner != "" && string(kv.Value) != owner {
		return nil
	}
	if _, _, err := a.store.Delete(ctx, a.key(value), kv.Revision); err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrConflict) {
		return fmt.Errorf("release %s: %w", value, err)
	}
	return nil
}

// Used returns every allocated value with its owner.
func (a *Allocator) Used(ctx context.Context) (map[string]string, error) {
	res, err := a.store.List(ctx, a.prefix, storage.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list allocations: %w", err)
	}
	out := make(map[string]string, len(res.Items))
	for _, kv := range res.Items {
		out[strings.TrimPrefix(kv.Key, a.prefix)] = string(kv.Value)
	}
	return out, nil
}

func randInt(n int64) int64 {
	if n <= 1 {
		return 0
	}
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		return 0
	}
	return v.Int64()
}

// IPRange is an IPv4 CIDR without its network and broadcast addresses and
// without the first host address, which Kubernetes keeps for the API server's
// own Service.
type IPRange struct {
	prefix netip.Prefix
	first  uint32
	size   int64
}

// ParseIPRange parses an IPv4 CIDR such as 10.96.0.0/12.
func ParseIPRange(cidr string) (*IPRange, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("service CIDR %q is not a CIDR like 10.96.0.0/12: %w", cidr, err)
	}
	p = p.Masked()
	if !p.Addr().Is4() {
		return nil, fmt.Errorf("service CIDR %q: only IPv4 is supported", cidr)
	}
	bits := 32 - p.Bits()
	if bits < 3 || bits > 24 {
		return nil, fmt.Errorf("service CIDR %q: the prefix length must be between /8 and /29", cidr)
	}
	base := ipToUint(p.Addr())
	return &IPRange{prefix: p, first: base + 2, size: int64(1)<<bits - 3}, nil
}

func (r *IPRange) Size() int64    { return r.size }
func (r *IPRange) String() string { return r.prefix.String() }

// Contains says whether ip is inside the CIDR (including the reserved ends).
func (r *IPRange) Contains(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && r.prefix.Contains(a)
}

func (r *IPRange) Offset(value string) (int64, bool) {
	a, err := netip.ParseAddr(value)
	if err != nil || !a.Is4() || !r.prefix.Contains(a) {
		return 0, false
	}
	off := int64(ipToUint(a)) - int64(r.first)
	if off < 0 || off >= r.size {
		return 0, false
	}
	return off, true
}

func (r *IPRange) Value(offset int64) string { return uintToIP(r.first + uint32(offset)).String() }

// FirstHost returns the first host address, reserved for the API server's
// Service as in Kubernetes.
func (r *IPRange) FirstHost() string { return uintToIP(r.first - 1).String() }

// StaticSize is the size of the lower band Kubernetes reserves for requested
// IPs: min(max(16, size/16), 256).
func (r *IPRange) StaticSize() int64 {
	s := r.size / 16
	if s < 16 {
		s = 16
	}
	if s > 256 {
		s = 256
	}
	if s > r.size {
		s = r.size
	}
	return s
}

func ipToUint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func uintToIP(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// PortRange is an inclusive range of ports such as 30000-32767.
type PortRange struct {
	Base, Max int
}

// ParsePortRange parses "30000-32767".
func ParsePortRange(s string) (*PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return nil, fmt.Errorf("port range %q is not like 30000-32767", s)
	}
	return &PortRange{Base: a, Max: b}, nil
}

func (r *PortRange) Size() int64    { return int64(r.Max - r.Base + 1) }
func (r *PortRange) String() string { return fmt.Sprintf("%d-%d", r.Base, r.Max) }
func (r *PortRange) Offset(value string) (int64, bool) {
	p, err := strconv.Atoi(value)
	if err != nil || p < r.Base || p > r.Max {
		return 0, false
	}
	return int64(p - r.Base), true
}
func (r *PortRange) Value(offset int64) string { return strconv.Itoa(r.Base + int(offset)) }
