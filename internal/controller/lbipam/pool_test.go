package lbipam

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
)

func TestParsePool(t *testing.T) {
	tests := []struct {
		spec    string
		size    uint64
		in, out []string
		wantErr bool
	}{
		{spec: "192.0.2.0/30", size: 2, in: []string{"192.0.2.1", "192.0.2.2"}, out: []string{"192.0.2.0", "192.0.2.3"}},
		{spec: "192.0.2.8/31", size: 2, in: []string{"192.0.2.8", "192.0.2.9"}},
		{spec: "192.0.2.7/32", size: 1, in: []string{"192.0.2.7"}, out: []string{"192.0.2.6", "192.0.2.8"}},
		{spec: "192.0.2.10-192.0.2.20", size: 11, in: []string{"192.0.2.10", "192.0.2.20"}, out: []string{"192.0.2.9", "192.0.2.21"}},
		{spec: " 192.0.2.10 - 192.0.2.10 , 198.51.100.0/29 ", size: 7, in: []string{"192.0.2.10", "198.51.100.6"}, out: []string{"198.51.100.7", "::1"}},
		{spec: "192.0.2.0/24,", size: 254},
		{spec: "", wantErr: true},
		{spec: " , ", wantErr: true},
		{spec: "banana", wantErr: true},
		{spec: "192.0.2.0/33", wantErr: true},
		{spec: "192.0.2.1/24", wantErr: true},    // host bits set
		{spec: "fd00::/120", wantErr: true},      // IPv6
		{spec: "fd00::1-fd00::5", wantErr: true}, // IPv6
		{spec: "192.0.2.9-192.0.2.1", wantErr: true},
		{spec: "192.0.2.1-", wantErr: true},
		{spec: "192.0.2.0/28,192.0.2.5-192.0.2.30", wantErr: true}, // overlap
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			p, err := ParsePool(tt.spec)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParsePool(%q) = %v, want error", tt.spec, p.ranges)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePool(%q): %v", tt.spec, err)
			}
			if p.Size() != tt.size {
				t.Errorf("Size = %d, want %d", p.Size(), tt.size)
			}
			for _, s := range tt.in {
				if !p.Contains(netip.MustParseAddr(s)) {
					t.Errorf("%s not in pool", s)
				}
			}
			for _, s := range tt.out {
				if p.Contains(netip.MustParseAddr(s)) {
					t.Errorf("%s in pool", s)
				}
			}
		})
	}
}

func mustPool(t *testing.T, spec string) *Pool {
	t.Helper()
	p, err := ParsePool(spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAllocator(t *testing.T) {
	a := newAllocator(mustPool(t, "192.0.2.1-192.0.2.2,192.0.2.10/32"))
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }

	if got, err := a.next("ns/a"); err != nil || got != ip("192.0.2.1") {
		t.Fatalf("next(a) = %v, %v", got, err)
	}
	if got, _ := a.next("ns/a"); got != ip("192.0.2.1") {
		t.Errorf("next(a) again = %v, want the same address", got)
	}
	if err := a.claim("ns/b", ip("192.0.2.1")); err == nil {
		t.Error("claim of a held address succeeded")
	} else if iu := (*inUseError)(nil); !errors.As(err, &iu) || iu.holder != "ns/a" {
		t.Errorf("claim error = %v, want in use by ns/a", err)
	}
	if err := a.claim("ns/b", ip("192.0.2.5")); !errors.Is(err, errNotInPool) {
		t.Errorf("claim outside pool: %v", err)
	}
	if err := a.claim("ns/b", ip("192.0.2.10")); err != nil {
		t.Fatalf("claim free address: %v", err)
	}
	if got, _ := a.next("ns/c"); got != ip("192.0.2.2") {
		t.Errorf("next(c) = %v, want 192.0.2.2", got)
	}
	if _, err := a.next("ns/d"); !errors.Is(err, errExhausted) {
		t.Errorf("next on a full pool: %v", err)
	}
	// Moving b to another address frees its old one.
	if _, ok := a.release("ns/c"); !ok {
		t.Fatal("release(c) found nothing")
	}
	if err := a.claim("ns/b", ip("192.0.2.2")); err != nil {
		t.Fatalf("move b: %v", err)
	}
	if got, _ := a.next("ns/d"); got != ip("192.0.2.10") {
		t.Errorf("next(d) = %v, want b's old 192.0.2.10", got)
	}
	if _, ok := a.release("ns/nobody"); ok {
		t.Error("release of unknown key reported an address")
	}
}

// TestAllocatorConcurrent: many Services at once never share an address.
func TestAllocatorConcurrent(t *testing.T) {
	a := newAllocator(mustPool(t, "10.0.0.0/26")) // 62 addresses
	const n = 100
	got := make([]netip.Addr, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ip, err := a.next(fmt.Sprintf("ns/svc-%d", i))
			if err == nil {
				got[i] = ip
			}
		})
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for _, ip := range got {
		if !ip.IsValid() {
			continue
		}
		if seen[ip] {
			t.Fatalf("%s handed out twice", ip)
		}
		seen[ip] = true
	}
	if len(seen) != 62 {
		t.Errorf("%d addresses handed out, want all 62", len(seen))
	}
}
