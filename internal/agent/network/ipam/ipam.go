package ipam

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

const (
	lastReservedFile = "last_reserved_ip"
	lockFile         = "lock"
	tmpPrefix        = ".tmp-"

	// MinPrefixBits and MaxPrefixBits bound the prefix length: /8 keeps a
	// full scan of the range at 16M in-memory steps; /30 is the smallest
	// prefix with one usable address besides a gateway.
	MinPrefixBits = 8
	MaxPrefixBits = 30
)

// ErrExhausted is returned (wrapped) by Allocate when every usable address
// of the prefix is taken.
var ErrExhausted = errors.New("no free address left")

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("ipam allocator is closed")

// Config says where state lives and which addresses may be handed out.
type Config struct {
	// Dir holds one file per allocated address; created if missing.
	Dir string
	// Prefix is the IPv4 range to allocate from, with no host bits set.
	Prefix netip.Prefix
	// Reserved addresses are never handed out (e.g. the gateway).
	Reserved []netip.Addr
	// InUse, when set, is asked before an address is handed out; an address
	// it reports in use by someone else (another berth on the same host, in
	// loopback mode) is skipped. Called with the allocator's lock held.
	InUse func() map[netip.Addr]bool
}

// Allocation is one address and who holds it.
type Allocation struct {
	IP netip.Addr
	// Owner is the pod UID the address was allocated to.
	Owner string
	// Note is free-form text stored with the allocation (namespace/name).
	Note string
}

// Allocator hands out addresses from one prefix. It is safe for concurrent
// use. It holds an exclusive flock on Config.Dir until Close, so its
// in-memory index is the truth and disk is only written through.
type Allocator struct {
	dir      string
	prefix   netip.Prefix
	reserved map[netip.Addr]bool
	inUse    func() map[netip.Addr]bool

	mu     sync.Mutex
	lock   *os.File                  // guarded by mu; nil after Close
	byIP   map[netip.Addr]Allocation // guarded by mu
	byUID  map[string]netip.Addr     // guarded by mu; first address of each owner
	last   netip.Addr                // guarded by mu; invalid if none yet
	closed bool                      // guarded by mu
}

// New validates cfg, takes the directory lock and loads existing
// allocations. Allocations outside cfg.Prefix (left by an older
// configuration) are kept, listed and releasable, but never handed out.
func New(cfg Config) (*Allocator, error) {
	if cfg.Dir == "" {
		return nil, errors.New("ipam: state directory is required")
	}
	if err := ValidatePrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("ipam: create state directory: %w", err)
	}
	lock, err := lockDir(filepath.Join(cfg.Dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("ipam: state directory %s: %w", cfg.Dir, err)
	}
	a := &Allocator{
		dir:      cfg.Dir,
		prefix:   cfg.Prefix,
		reserved: map[netip.Addr]bool{},
		lock:     lock,
		byIP:     map[netip.Addr]Allocation{},
		byUID:    map[string]netip.Addr{},
	}
	for _, r := range cfg.Reserved {
		a.reserved[r.Unmap()] = true
	}
	a.inUse = cfg.InUse
	if err := a.load(); err != nil {
		_ = unlockDir(lock)
		return nil, fmt.Errorf("ipam: load %s: %w", cfg.Dir, err)
	}
	return a, nil
}

// ValidatePrefix reports whether p can be allocated from: IPv4, no host
// bits set, between /MinPrefixBits and /MaxPrefixBits.
func ValidatePrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return errors.New("prefix is not a valid CIDR")
	case !p.Addr().Is4():
		return fmt.Errorf("prefix %s is not IPv4 (only IPv4 is supported)", p)
	case p.Masked() != p:
		return fmt.Errorf("prefix %s has host bits set (did you mean %s?)", p, p.Masked())
	case p.Bits() < MinPrefixBits:
		return fmt.Errorf("prefix %s is too large (at most /%d)", p, MinPrefixBits)
	case p.Bits() > MaxPrefixBits:
		return fmt.Errorf("prefix %s is too small (at least /%d is needed for a gateway and one pod)", p, MaxPrefixBits)
	}
	return nil
}

func (a *Allocator) load() error {
	entries, err := os.ReadDir(a.dir)
	if err != nil {
		return err
	}
	// ReadDir sorts by name, so duplicate owners resolve deterministically.
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			// Left by a crash between writing and linking: never visible
			// as an allocation, safe to drop.
			_ = os.Remove(filepath.Join(a.dir, name))
			continue
		case name == lastReservedFile:
			b, err := os.ReadFile(filepath.Join(a.dir, name))
			if err != nil {
				return err
			}
			if ip, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil && ip.Is4() {
				a.last = ip
			}
			continue
		}
		ip, err := netip.ParseAddr(name)
		if err != nil || !ip.Is4() || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.dir, name))
		if err != nil {
			return err
		}
		owner, note := parseRecord(string(b))
		a.byIP[ip] = Allocation{IP: ip, Owner: owner, Note: note}
		if _, dup := a.byUID[owner]; !dup && owner != "" {
			a.byUID[owner] = ip
		}
	}
	return nil
}

// parseRecord accepts "\r\n" too, as host-local writes it.
func parseRecord(s string) (owner, note string) {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	owner = strings.TrimSpace(lines[0])
	if len(lines) > 1 {
		note = strings.TrimSpace(lines[1])
	}
	return owner, note
}

// Lookup returns the address held by owner, if any.
func (a *Allocator) Lookup(owner string) (Allocation, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return Allocation{}, false, ErrClosed
	}
	ip, ok := a.byUID[owner]
	if !ok {
		return Allocation{}, false, nil
	}
	return a.byIP[ip], true, nil
}

// Allocate returns the address held by owner, or allocates, persists and
// returns the next free one. The returned bool is true when the address was
// newly allocated by this call.
func (a *Allocator) Allocate(owner, note string) (Allocation, bool, error) {
	if err := validateText("owner", owner); err != nil {
		return Allocation{}, false, err
	}
	if owner == "" {
		return Allocation{}, false, errors.New("ipam: owner is required")
	}
	if err := validateText("note", note); err != nil {
		return Allocation{}, false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return Allocation{}, false, ErrClosed
	}
	if ip, ok := a.byUID[owner]; ok {
		return a.byIP[ip], false, nil
	}

	var inUse map[netip.Addr]bool
	if a.inUse != nil {
		inUse = a.inUse()
	}
	base := addrToUint(a.prefix.Addr())
	size := uint64(1) << (32 - a.prefix.Bits())
	start := uint64(0)
	if a.last.IsValid() && a.prefix.Contains(a.last) {
		start = (uint64(addrToUint(a.last)-base) + 1) % size
	}
	for i := uint64(0); i < size; i++ {
		ip := uintToAddr(base + uint32((start+i)%size))
		if !a.usable(ip) {
			continue
		}
		if _, taken := a.byIP[ip]; taken || inUse[ip] {
			continue
		}
		created, err := a.writeRecord(ip, owner, note)
		if err != nil {
			return Allocation{}, false, fmt.Errorf("ipam: persist %s for %s: %w", ip, owner, err)
		}
		if !created {
			// Someone wrote the file behind our back (the lock should
			// prevent it); respect it and move on.
			a.byIP[ip] = Allocation{IP: ip}
			continue
		}
		al := Allocation{IP: ip, Owner: owner, Note: note}
		a.byIP[ip] = al
		a.byUID[owner] = ip
		a.last = ip
		// The last-reserved file is only a hint for where the next scan
		// starts; losing it costs reuse order, never uniqueness.
		_ = writeHint(filepath.Join(a.dir, lastReservedFile), []byte(ip.String()+"\n"))
		return al, true, nil
	}
	return Allocation{}, false, fmt.Errorf("ipam: allocate for %s in %s: %w", owner, a.prefix, ErrExhausted)
}

// Release frees every address held by owner. Releasing an owner with no
// address is not an error.
func (a *Allocator) Release(owner string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if owner == "" {
		return errors.New("ipam: owner is required")
	}
	for ip, al := range a.byIP {
		if al.Owner != owner {
			continue
		}
		if err := os.Remove(filepath.Join(a.dir, ip.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ipam: release %s of %s: %w", ip, owner, err)
		}
		delete(a.byIP, ip)
	}
	delete(a.byUID, owner)
	return nil
}

// List returns every allocation, sorted by address.
func (a *Allocator) List() ([]Allocation, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, ErrClosed
	}
	out := make([]Allocation, 0, len(a.byIP))
	for _, al := range a.byIP {
		out = append(out, al)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out, nil
}

// Prefix returns the prefix addresses are allocated from.
func (a *Allocator) Prefix() netip.Prefix { return a.prefix }

// Close releases the directory lock. It is idempotent.
func (a *Allocator) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	err := unlockDir(a.lock)
	a.lock = nil
	return err
}

// Usable reports whether ip may ever be handed out by a.
func (a *Allocator) Usable(ip netip.Addr) bool { return a.usable(ip.Unmap()) }

func (a *Allocator) usable(ip netip.Addr) bool {
	if !a.prefix.Contains(ip) || a.reserved[ip] {
		return false
	}
	v := addrToUint(ip)
	base := addrToUint(a.prefix.Addr())
	bcast := base | (^uint32(0) >> a.prefix.Bits())
	if v == base || v == bcast {
		return false
	}
	last := byte(v)
	return last != 0 && last != 255
}

// writeRecord creates the address file with its content in one step: the
// content goes to a temp file first and is then hard-linked to the final
// name, so the file never exists half-written and an existing one is never
// overwritten (link fails with EEXIST). It reports false if the address
// file already existed.
func (a *Allocator) writeRecord(ip netip.Addr, owner, note string) (bool, error) {
	tmp, err := writeTemp(a.dir, []byte(owner+"\n"+note+"\n"))
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, filepath.Join(a.dir, ip.String())); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	// No fsync: the records only need to outlive berth, not the machine.
	// A reboot ends every pod, and the agent then sets each one up again
	// (a lost or empty record is reallocated, never handed out twice while
	// its pod runs).
	return true, nil
}

func writeTemp(dir string, data []byte) (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	name := filepath.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// writeHint replaces path without waiting for the disk: it is only a hint,
// and a pod start should not pay an fsync for it.
func writeHint(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), tmpPrefix+"hint")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func validateText(what, s string) error {
	if strings.ContainsAny(s, "\r\n\x00") {
		return fmt.Errorf("ipam: %s %q must not contain line breaks or NUL", what, s)
	}
	return nil
}

func addrToUint(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func uintToAddr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
