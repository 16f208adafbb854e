package lbipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// Pool is a set of IPv4 addresses that may be handed out. It is immutable
// once parsed and safe for concurrent use.
type Pool struct {
	ranges []ipRange // sorted, disjoint
	spec   string
}

// ipRange is an inclusive range of IPv4 addresses as integers.
type ipRange struct{ first, last uint32 }

// ParsePool parses a comma-separated list of IPv4 CIDRs ("192.0.2.0/28") and
// inclusive ranges ("192.0.2.10-192.0.2.20"), the syntax of --lb-pool.
// A CIDR wider than /31 excludes its network and broadcast addresses, which
// some clients refuse to connect to; a range is taken exactly as written.
// Entries may not overlap.
func ParsePool(spec string) (*Pool, error) {
	var ranges []ipRange
	for entry := range strings.SplitSeq(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		r, err := parseEntry(entry)
		if err != nil {
			return nil, fmt.Errorf("load balancer pool %q: %w", spec, err)
		}
		ranges = append(ranges, r)
	}
	if len(ranges) == 0 {
		return nil, fmt.Errorf("load balancer pool %q: no addresses given (want CIDRs or start-end ranges, comma-separated)", spec)
	}
	slices.SortFunc(ranges, func(a, b ipRange) int { return int(int64(a.first) - int64(b.first)) })
	for i := 1; i < len(ranges); i++ {
		if ranges[i].first <= ranges[i-1].last {
			return nil, fmt.Errorf("load balancer pool %q: %s overlaps %s", spec, ranges[i-1], ranges[i])
		}
	}
	return &Pool{ranges: ranges, spec: spec}, nil
}

func parseEntry(entry string) (ipRange, error) {
	if strings.Contains(entry, "/") {
		p, err := netip.ParsePrefix(entry)
		if err != nil {
			return ipRange{}, fmt.Errorf("bad CIDR %q: %w", entry, err)
		}
		if !p.Addr().Is4() {
			return ipRange{}, fmt.Errorf("CIDR %q is not IPv4; only IPv4 pools are supported", entry)
		}
		if p.Masked() != p {
			return ipRange{}, fmt.Errorf("CIDR %q has host bits set; did you mean %s?", entry, p.Masked())
		}
		first := toUint(p.Addr())
		last := first | uint32(uint64(1)<<(32-p.Bits())-1)
		if p.Bits() < 31 {
			first, last = first+1, last-1
		}
		return ipRange{first, last}, nil
	}
	start, end, ok := strings.Cut(entry, "-")
	if !ok {
		return ipRange{}, fmt.Errorf("%q is neither a CIDR nor a start-end range", entry)
	}
	a, err := parseIPv4(strings.TrimSpace(start))
	if err != nil {
		return ipRange{}, fmt.Errorf("range %q: %w", entry, err)
	}
	b, err := parseIPv4(strings.TrimSpace(end))
	if err != nil {
		return ipRange{}, fmt.Errorf("range %q: %w", entry, err)
	}
	if toUint(b) < toUint(a) {
		return ipRange{}, fmt.Errorf("range %q ends before it starts", entry)
	}
	return ipRange{toUint(a), toUint(b)}, nil
}

func parseIPv4(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bad address %q: %w", s, err)
	}
	if !ip.Is4() {
		return netip.Addr{}, fmt.Errorf("%q is not IPv4; only IPv4 pools are supported", s)
	}
	return ip, nil
}

func toUint(ip netip.Addr) uint32 {
	b := ip.As4()
	return binary.BigEndian.Uint32(b[:])
}

func fromUint(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func (r ipRange) String() string {
	return fromUint(r.first).String() + "-" + fromUint(r.last).String()
}

// Contains reports whether ip may be handed out from this pool.
func (p *Pool) Contains(ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	v := toUint(ip)
	for _, r := range p.ranges {
		if v >= r.first && v <= r.last {
			return true
		}
	}
	return false
}

// Size is the number of addresses in the pool.
func (p *Pool) Size() uint64 {
	var n uint64
	for _, r := range p.ranges {
		n += uint64(r.last-r.first) + 1
	}
	return n
}

// String returns the pool as it was given.
func (p *Pool) String() string { return p.spec }

var (
	errNotInPool = errors.New("not in the pool")
	errExhausted = errors.New("no free address left in the pool")
)

// inUseError says an address is already allocated to another Service.
type inUseError struct{ holder string }

func (e *inUseError) Error() string { return "already allocated to service " + e.holder }

// allocator hands out pool addresses to Services, keyed by namespace/name.
// All methods are safe for concurrent use; each is atomic, which is what
// keeps two Services synced at once from getting the same address.
type allocator struct {
	pool *Pool

	mu    sync.Mutex
	owner map[netip.Addr]string // address → service key; protected by mu
	byKey map[string]netip.Addr // service key → address; protected by mu
}

func newAllocator(p *Pool) *allocator {
	return &allocator{pool: p, owner: map[netip.Addr]string{}, byKey: map[string]netip.Addr{}}
}

// get returns the address allocated to key, if any.
func (a *allocator) get(key string) (netip.Addr, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ip, ok := a.byKey[key]
	return ip, ok
}

// claim allocates the given address to key, giving up any other address key
// held. It fails if ip is outside the pool or held by another key.
func (a *allocator) claim(key string, ip netip.Addr) error {
	if !a.pool.Contains(ip) {
		return errNotInPool
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if holder, ok := a.owner[ip]; ok {
		if holder == key {
			return nil
		}
		return &inUseError{holder: holder}
	}
	if old, ok := a.byKey[key]; ok {
		delete(a.owner, old)
	}
	a.owner[ip] = key
	a.byKey[key] = ip
	return nil
}

// next allocates the lowest free address to key, or returns the one key
// already holds.
func (a *allocator) next(key string) (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip, ok := a.byKey[key]; ok {
		return ip, nil
	}
	// A linear scan: berth's pools are small and few addresses are in use,
	// so the first free one is found after len(owner) steps at most.
	for _, r := range a.pool.ranges {
		for v := uint64(r.first); v <= uint64(r.last); v++ {
			ip := fromUint(uint32(v))
			if _, used := a.owner[ip]; !used {
				a.owner[ip] = key
				a.byKey[key] = ip
				return ip, nil
			}
		}
	}
	return netip.Addr{}, errExhausted
}

// release frees the address held by key and returns it.
func (a *allocator) release(key string) (netip.Addr, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ip, ok := a.byKey[key]
	if ok {
		delete(a.byKey, key)
		delete(a.owner, ip)
	}
	return ip, ok
}
