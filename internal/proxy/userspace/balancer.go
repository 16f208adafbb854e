package userspace

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// balancer picks the endpoint for each new connection of one service port:
// round robin over the usable endpoints, with optional ClientIP session
// affinity. Safe for concurrent use; pick is on the accept path, update on
// the sync path.
type balancer struct {
	now func() time.Time

	mu sync.Mutex
	// Fields below are guarded by mu.
	endpoints []netip.AddrPort
	next      int
	stickyTTL time.Duration // 0: no session affinity
	sticky    map[netip.Addr]stickyEntry
}

type stickyEntry struct {
	endpoint netip.AddrPort
	lastUsed time.Time
}

func newBalancer(now func() time.Time) *balancer {
	if now == nil {
		now = time.Now
	}
	return &balancer{now: now}
}

// update installs a new endpoint set and affinity timeout. An unchanged set
// keeps the round-robin position, so unrelated syncs do not skew the spread;
// affinity entries survive as long as their endpoint does.
func (b *balancer) update(endpoints []netip.AddrPort, stickyTTL time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !slices.Equal(b.endpoints, endpoints) {
		b.endpoints = slices.Clone(endpoints)
		b.next = 0
	}
	if stickyTTL != b.stickyTTL {
		b.stickyTTL = stickyTTL
		b.sticky = nil
	}
	if b.stickyTTL == 0 {
		b.sticky = nil
		return
	}
	for c, e := range b.sticky {
		if !slices.Contains(b.endpoints, e.endpoint) {
			delete(b.sticky, c)
		}
	}
}

// pick returns the endpoint for a new connection from client, skipping the
// endpoints in tried (the ones that already failed for this connection).
// ok is false when no untried endpoint is left.
func (b *balancer) pick(client netip.Addr, tried []netip.AddrPort) (ep netip.AddrPort, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.endpoints)
	if n == 0 {
		return netip.AddrPort{}, false
	}
	now := b.now()
	if b.stickyTTL > 0 {
		if e, found := b.sticky[client]; found {
			if now.Sub(e.lastUsed) < b.stickyTTL && !slices.Contains(tried, e.endpoint) {
				e.lastUsed = now
				b.sticky[client] = e
				return e.endpoint, true
			}
			delete(b.sticky, client)
		}
	}
	for range n {
		cand := b.endpoints[b.next]
		b.next = (b.next + 1) % n
		if slices.Contains(tried, cand) {
			continue
		}
		if b.stickyTTL > 0 {
			if b.sticky == nil {
				b.sticky = map[netip.Addr]stickyEntry{}
			}
			b.sticky[client] = stickyEntry{endpoint: cand, lastUsed: now}
		}
		return cand, true
	}
	return netip.AddrPort{}, false
}

// size returns the number of endpoints.
func (b *balancer) size() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.endpoints)
}

// sweep drops expired affinity entries so clients that never come back do
// not hold memory; the periodic sync calls it.
func (b *balancer) sweep() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	for c, e := range b.sticky {
		if now.Sub(e.lastUsed) >= b.stickyTTL {
			delete(b.sticky, c)
		}
	}
}
