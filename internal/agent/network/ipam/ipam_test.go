package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func mustNew(t *testing.T, dir, prefix string, reserved ...string) *Allocator {
	t.Helper()
	cfg := Config{Dir: dir, Prefix: netip.MustParsePrefix(prefix)}
	for _, r := range reserved {
		cfg.Reserved = append(cfg.Reserved, netip.MustParseAddr(r))
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestNewValidation(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no dir", Config{Prefix: netip.MustParsePrefix("10.0.0.0/24")}, "state directory is required"},
		{"zero prefix", Config{Dir: dir}, "not a valid CIDR"},
		{"ipv6", Config{Dir: dir, Prefix: netip.MustParsePrefix("fd00::/64")}, "not IPv4"},
		{"host bits", Config{Dir: dir, Prefix: netip.MustParsePrefix("10.0.0.5/24")}, "did you mean 10.0.0.0/24"},
		{"too small /31", Config{Dir: dir, Prefix: netip.MustParsePrefix("10.0.0.0/31")}, "too small"},
		{"too small /32", Config{Dir: dir, Prefix: netip.MustParsePrefix("10.0.0.1/32")}, "too small"},
		{"too large", Config{Dir: dir, Prefix: netip.MustParsePrefix("10.0.0.0/7")}, "too large"},
		{"file as dir", Config{Dir: filepath.Join(writeFile(t, dir, "f", "x"), "sub"), Prefix: netip.MustParsePrefix("10.0.0.0/24")}, "create state directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.cfg)
			if err == nil {
				a.Close()
				t.Fatalf("New succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAllocationOrderAndExhaustion(t *testing.T) {
	tests := []struct {
		name     string
		prefix   string
		reserved []string
		want     []string // in allocation order, then exhaustion
	}{
		{"/29 with gateway", "10.244.0.0/29", []string{"10.244.0.1"},
			[]string{"10.244.0.2", "10.244.0.3", "10.244.0.4", "10.244.0.5", "10.244.0.6"}},
		{"/30 one pod", "10.244.0.0/30", []string{"10.244.0.1"},
			[]string{"10.244.0.2"}},
		{"/29 ending at .255 never hands out .255", "10.244.0.248/29", []string{"10.244.0.249"},
			[]string{"10.244.0.250", "10.244.0.251", "10.244.0.252", "10.244.0.253", "10.244.0.254"}},
		{"/29 starting at .0 of a larger block skips .0", "10.244.1.0/29", []string{"10.244.1.1"},
			[]string{"10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5", "10.244.1.6"}},
		{"loopback skips 127.0.0.1", "127.0.0.0/29", []string{"127.0.0.1"},
			[]string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}},
		{"extra reserved in the middle", "10.244.0.0/29", []string{"10.244.0.1", "10.244.0.4"},
			[]string{"10.244.0.2", "10.244.0.3", "10.244.0.5", "10.244.0.6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustNew(t, t.TempDir(), tt.prefix, tt.reserved...)
			for i, want := range tt.want {
				al, created, err := a.Allocate(fmt.Sprintf("pod-%d", i), "ns/p")
				if err != nil {
					t.Fatalf("allocation %d: %v", i, err)
				}
				if !created || al.IP.String() != want {
					t.Fatalf("allocation %d = %s (created %v), want new %s", i, al.IP, created, want)
				}
			}
			_, _, err := a.Allocate("one-too-many", "")
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("after %d allocations: err = %v, want ErrExhausted", len(tt.want), err)
			}
		})
	}
}

func TestNeverHandsOutUnusable(t *testing.T) {
	// A /23 crosses a .255/.0 boundary in the middle. Checking Usable for
	// every address covers the whole range without 500 disk writes.
	a := mustNew(t, t.TempDir(), "10.244.0.0/23", "10.244.0.1")
	usable := 0
	for ip := netip.MustParseAddr("10.244.0.0"); a.prefix.Contains(ip); ip = ip.Next() {
		if a.Usable(ip) {
			usable++
		}
	}
	// 512 - network - broadcast - gateway - 10.244.0.255 - 10.244.1.0.
	if usable != 507 {
		t.Fatalf("%d usable addresses, want 507", usable)
	}
	for _, bad := range []string{"10.244.0.0", "10.244.0.1", "10.244.0.255", "10.244.1.0", "10.244.1.255", "10.244.2.1", "127.0.0.1"} {
		if a.Usable(netip.MustParseAddr(bad)) {
			t.Errorf("%s is usable", bad)
		}
	}

	// And the allocator really steps over the boundary: start the
	// round-robin just before it.
	dir := t.TempDir()
	writeFile(t, dir, lastReservedFile, "10.244.0.252\n")
	b := mustNew(t, dir, "10.244.0.0/23", "10.244.0.1")
	for _, want := range []string{"10.244.0.253", "10.244.0.254", "10.244.1.1", "10.244.1.2"} {
		al, _, err := b.Allocate("pod-"+want, "")
		if err != nil || al.IP.String() != want {
			t.Fatalf("got %v, %v; want %s", al.IP, err, want)
		}
	}
	// The end of the prefix wraps to the start, skipping the broadcast,
	// network and gateway addresses.
	dir = t.TempDir()
	writeFile(t, dir, lastReservedFile, "10.244.1.253\n")
	c := mustNew(t, dir, "10.244.0.0/23", "10.244.0.1")
	for _, want := range []string{"10.244.1.254", "10.244.0.2"} {
		al, _, err := c.Allocate("pod-"+want, "")
		if err != nil || al.IP.String() != want {
			t.Fatalf("got %v, %v; want %s", al.IP, err, want)
		}
	}
}

func TestIdempotentPerOwner(t *testing.T) {
	a := mustNew(t, t.TempDir(), "10.244.0.0/24", "10.244.0.1")
	first, created, err := a.Allocate("uid-a", "default/a")
	if err != nil || !created {
		t.Fatalf("first allocate: %v created=%v", err, created)
	}
	again, created, err := a.Allocate("uid-a", "ignored/other")
	if err != nil || created || again != first {
		t.Fatalf("second allocate = %+v created=%v err=%v, want %+v not created", again, created, err, first)
	}
	got, ok, err := a.Lookup("uid-a")
	if err != nil || !ok || got != first {
		t.Fatalf("Lookup = %+v %v %v", got, ok, err)
	}
	if _, ok, _ := a.Lookup("uid-b"); ok {
		t.Fatal("Lookup of unknown owner found something")
	}
}

func TestReleaseAndRoundRobin(t *testing.T) {
	a := mustNew(t, t.TempDir(), "10.244.0.0/29", "10.244.0.1")
	for _, uid := range []string{"a", "b", "c"} { // .2 .3 .4
		if _, _, err := a.Allocate(uid, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Release("b"); err != nil {
		t.Fatal(err)
	}
	if err := a.Release("b"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if err := a.Release("never-allocated"); err != nil {
		t.Fatalf("release unknown: %v", err)
	}
	// Round-robin: the freed .3 is reused only after .5 and .6.
	steps := []struct{ uid, want string }{{"d", "10.244.0.5"}, {"e", "10.244.0.6"}, {"f", "10.244.0.3"}}
	for _, s := range steps {
		al, _, err := a.Allocate(s.uid, "")
		if err != nil {
			t.Fatal(err)
		}
		if al.IP.String() != s.want {
			t.Fatalf("%s got %s, want %s", s.uid, al.IP, s.want)
		}
	}
	if _, _, err := a.Allocate("g", ""); !errors.Is(err, ErrExhausted) {
		t.Fatalf("want exhaustion, got %v", err)
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	a := mustNew(t, dir, "10.244.0.0/24", "10.244.0.1")
	for _, uid := range []string{"a", "b", "c"} {
		if _, _, err := a.Allocate(uid, "default/"+uid); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Release("a"); err != nil {
		t.Fatal(err)
	}
	// A second allocator over the same directory is refused while the
	// first holds it.
	if b, err := New(Config{Dir: dir, Prefix: netip.MustParsePrefix("10.244.0.0/24")}); err == nil {
		b.Close()
		t.Fatal("second allocator on a locked directory succeeded")
	} else if !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("unexpected error: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Allocate("x", ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("allocate after close: %v", err)
	}
	// A crash leftover must not count as an allocation.
	writeFile(t, dir, tmpPrefix+"deadbeef", "junk\n")

	b := mustNew(t, dir, "10.244.0.0/24", "10.244.0.1")
	list, err := b.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []Allocation{
		{IP: netip.MustParseAddr("10.244.0.3"), Owner: "b", Note: "default/b"},
		{IP: netip.MustParseAddr("10.244.0.4"), Owner: "c", Note: "default/c"},
	}
	if fmt.Sprint(list) != fmt.Sprint(want) {
		t.Fatalf("List after restart = %v, want %v", list, want)
	}
	if al, created, err := b.Allocate("b", ""); err != nil || created || al.IP.String() != "10.244.0.3" {
		t.Fatalf("adopt b = %v %v %v", al, created, err)
	}
	// The round-robin position survived the restart: next is .5, not .2.
	if al, _, err := b.Allocate("d", ""); err != nil || al.IP.String() != "10.244.0.5" {
		t.Fatalf("next after restart = %v %v, want 10.244.0.5", al, err)
	}
	if _, err := os.Stat(filepath.Join(dir, tmpPrefix+"deadbeef")); !os.IsNotExist(err) {
		t.Fatalf("temp leftover not removed: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "10.244.0.5"))
	if err != nil || string(got) != "d\n\n" {
		t.Fatalf("record file = %q %v", got, err)
	}
}

func TestForeignAndOutOfRangeFiles(t *testing.T) {
	dir := t.TempDir()
	// A host-local style record ("\r\n") and one from an older, different
	// prefix; plus unrelated files that must be ignored.
	writeFile(t, dir, "10.244.0.2", "uid-old\r\neth0\r\n")
	writeFile(t, dir, "10.99.0.7", "uid-stale\n")
	writeFile(t, dir, "README", "not an address\n")
	writeFile(t, dir, "fd00::5", "v6\n")
	a := mustNew(t, dir, "10.244.0.0/24", "10.244.0.1")
	list, err := a.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].IP.String() != "10.99.0.7" || list[0].Owner != "uid-stale" ||
		list[1].IP.String() != "10.244.0.2" || list[1].Owner != "uid-old" || list[1].Note != "eth0" {
		t.Fatalf("List = %v", list)
	}
	if al, _, err := a.Allocate("new", ""); err != nil || al.IP.String() != "10.244.0.3" {
		t.Fatalf("allocate = %v %v, want 10.244.0.3", al, err)
	}
	if err := a.Release("uid-stale"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "10.99.0.7")); !os.IsNotExist(err) {
		t.Fatalf("stale record not removed: %v", err)
	}
}

func TestBadOwner(t *testing.T) {
	a := mustNew(t, t.TempDir(), "10.244.0.0/24")
	for _, owner := range []string{"", "a\nb", "a\rb", "a\x00b"} {
		if _, _, err := a.Allocate(owner, ""); err == nil {
			t.Errorf("Allocate(%q) succeeded", owner)
		}
	}
	if _, _, err := a.Allocate("ok", "bad\nnote"); err == nil {
		t.Error("Allocate with a multi-line note succeeded")
	}
	if err := a.Release(""); err == nil {
		t.Error("Release(\"\") succeeded")
	}
}

func TestConcurrentAllocate(t *testing.T) {
	a := mustNew(t, t.TempDir(), "10.244.0.0/24", "10.244.0.1")
	const n = 50
	var wg sync.WaitGroup
	ips := make([]netip.Addr, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			al, _, err := a.Allocate(fmt.Sprintf("pod-%d", i), "")
			ips[i], errs[i] = al.IP, err
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if seen[ips[i]] {
			t.Fatalf("%s handed out twice", ips[i])
		}
		seen[ips[i]] = true
	}
}
