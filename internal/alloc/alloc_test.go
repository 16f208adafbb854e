package alloc

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/storage"
	"github.com/berth-project/berth/internal/storage/etcd"
)

func TestParseIPRange(t *testing.T) {
	tests := []struct {
		cidr       string
		wantErr    string
		size       int64
		first      string // Value(0)
		last       string // Value(size-1)
		firstHost  string
		staticSize int64
		str        string
	}{
		{cidr: "10.96.0.0/12", size: 1<<20 - 3, first: "10.96.0.2", last: "10.111.255.254", firstHost: "10.96.0.1", staticSize: 256, str: "10.96.0.0/12"},
		{cidr: "10.0.0.0/24", size: 253, first: "10.0.0.2", last: "10.0.0.254", firstHost: "10.0.0.1", staticSize: 16, str: "10.0.0.0/24"},
		{cidr: "192.168.1.8/29", size: 5, first: "192.168.1.10", last: "192.168.1.14", firstHost: "192.168.1.9", staticSize: 5, str: "192.168.1.8/29"},
		{cidr: "10.0.0.0/8", size: 1<<24 - 3, first: "10.0.0.2", last: "10.255.255.254", firstHost: "10.0.0.1", staticSize: 256, str: "10.0.0.0/8"},
		// A host address with a prefix is masked to its network, as
		// Kubernetes does with --service-cluster-ip-range.
		{cidr: "10.96.7.9/16", size: 1<<16 - 3, first: "10.96.0.2", last: "10.96.255.254", firstHost: "10.96.0.1", staticSize: 256, str: "10.96.0.0/16"},
		{cidr: "10.0.0.0/20", size: 1<<12 - 3, first: "10.0.0.2", last: "10.0.15.254", firstHost: "10.0.0.1", staticSize: 255, str: "10.0.0.0/20"},
		{cidr: "10.0.0.0/30", wantErr: "between /8 and /29"},
		{cidr: "10.0.0.0/32", wantErr: "between /8 and /29"},
		{cidr: "10.0.0.0/7", wantErr: "between /8 and /29"},
		{cidr: "fd00::/112", wantErr: "only IPv4"},
		{cidr: "10.96.0.0", wantErr: "not a CIDR"},
		{cidr: "", wantErr: "not a CIDR"},
		{cidr: "banana/12", wantErr: "not a CIDR"},
		{cidr: "10.96.0.0/99", wantErr: "not a CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.cidr, func(t *testing.T) {
			r, err := ParseIPRange(tt.cidr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseIPRange(%q) = %v, %v; want error containing %q", tt.cidr, r, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Size() != tt.size {
				t.Errorf("Size() = %d, want %d", r.Size(), tt.size)
			}
			if got := r.Value(0); got != tt.first {
				t.Errorf("Value(0) = %s, want %s", got, tt.first)
			}
			if got := r.Value(r.Size() - 1); got != tt.last {
				t.Errorf("Value(size-1) = %s, want %s", got, tt.last)
			}
			if got := r.FirstHost(); got != tt.firstHost {
				t.Errorf("FirstHost() = %s, want %s", got, tt.firstHost)
			}
			if got := r.StaticSize(); got != tt.staticSize {
				t.Errorf("StaticSize() = %d, want %d", got, tt.staticSize)
			}
			if r.String() != tt.str {
				t.Errorf("String() = %s, want %s", r.String(), tt.str)
			}
			// Offsets and values are inverse over the whole range.
			for _, off := range []int64{0, 1, r.Size() / 2, r.Size() - 1} {
				v := r.Value(off)
				got, ok := r.Offset(v)
				if !ok || got != off {
					t.Errorf("Offset(Value(%d)=%s) = %d, %v", off, v, got, ok)
				}
				if !r.Contains(v) {
					t.Errorf("Contains(%s) = false", v)
				}
			}
		})
	}
}

func TestIPRangeOffsetsAndReserved(t *testing.T) {
	r, err := ParseIPRange("10.96.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip       string
		offset   int64
		ok       bool
		contains bool
	}{
		{"10.96.0.0", 0, false, true},   // network address
		{"10.96.0.1", 0, false, true},   // first host: the API server's own Service
		{"10.96.0.2", 0, true, true},    // first allocatable
		{"10.96.0.100", 98, true, true}, // middle
		{"10.96.0.254", 252, true, true},
		{"10.96.0.255", 0, false, true}, // broadcast
		{"10.96.1.0", 0, false, false},
		{"10.95.255.255", 0, false, false},
		{"::ffff:10.96.0.5", 0, false, false}, // IPv4-mapped IPv6 is not IPv4
		{"fd00::1", 0, false, false},
		{"", 0, false, false},
		{"10.96.0", 0, false, false},
		{"10.96.0.256", 0, false, false},
		{" 10.96.0.5", 0, false, false},
	}
	for _, tt := range tests {
		off, ok := r.Offset(tt.ip)
		if ok != tt.ok || (ok && off != tt.offset) {
			t.Errorf("Offset(%q) = %d, %v; want %d, %v", tt.ip, off, ok, tt.offset, tt.ok)
		}
		if got := r.Contains(tt.ip); got != tt.contains {
			t.Errorf("Contains(%q) = %v, want %v", tt.ip, got, tt.contains)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in        string
		base, max int
		wantErr   bool
	}{
		{in: "30000-32767", base: 30000, max: 32767},
		{in: " 30000 - 32767 ", base: 30000, max: 32767},
		{in: "1-65535", base: 1, max: 65535},
		{in: "8080-8080", base: 8080, max: 8080},
		{in: "30000", wantErr: true},
		{in: "", wantErr: true},
		{in: "-", wantErr: true},
		{in: "0-100", wantErr: true},
		{in: "100-65536", wantErr: true},
		{in: "32767-30000", wantErr: true},
		{in: "a-b", wantErr: true},
		{in: "30000-32767-1", wantErr: true},
		{in: "-5-10", wantErr: true},
		{in: "30000-99999999999999999999", wantErr: true},
	}
	for _, tt := range tests {
		r, err := ParsePortRange(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParsePortRange(%q) = %+v, want an error", tt.in, r)
			} else if !strings.Contains(err.Error(), "is not like 30000-32767") {
				t.Errorf("ParsePortRange(%q) error %q does not say what is expected", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePortRange(%q): %v", tt.in, err)
			continue
		}
		if r.Base != tt.base || r.Max != tt.max {
			t.Errorf("ParsePortRange(%q) = %d-%d, want %d-%d", tt.in, r.Base, r.Max, tt.base, tt.max)
		}
		if r.Size() != int64(tt.max-tt.base+1) {
			t.Errorf("ParsePortRange(%q).Size() = %d", tt.in, r.Size())
		}
	}
}

func TestPortRangeOffsets(t *testing.T) {
	r, err := ParsePortRange("30000-32767")
	if err != nil {
		t.Fatal(err)
	}
	if r.Size() != 2768 || r.String() != "30000-32767" {
		t.Fatalf("size %d string %s", r.Size(), r.String())
	}
	tests := []struct {
		v   string
		off int64
		ok  bool
	}{
		{"30000", 0, true}, {"30001", 1, true}, {"32767", 2767, true},
		{"29999", 0, false}, {"32768", 0, false}, {"", 0, false}, {"http", 0, false}, {"-1", 0, false}, {"3e4", 0, false},
	}
	for _, tt := range tests {
		off, ok := r.Offset(tt.v)
		if ok != tt.ok || (ok && off != tt.off) {
			t.Errorf("Offset(%q) = %d, %v; want %d, %v", tt.v, off, ok, tt.off, tt.ok)
		}
		if ok && r.Value(off) != tt.v {
			t.Errorf("Value(%d) = %s, want %s", off, r.Value(off), tt.v)
		}
	}
}

// memStore is a tiny in-memory storage.Interface: the seam the allocator
// writes through. Watch is not used by the allocator.
type memStore struct {
	mu  sync.Mutex // guards rev and kvs
	rev int64
	kvs map[string]storage.KeyValue
	// creates counts Create calls, to see how many probes an allocation took.
	creates int
}

func newMemStore() *memStore { return &memStore{kvs: map[string]storage.KeyValue{}} }

func (m *memStore) Get(_ context.Context, key string) (storage.KeyValue, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	kv, ok := m.kvs[key]
	if !ok {
		return storage.KeyValue{}, storage.ErrNotFound
	}
	return kv, nil
}

func (m *memStore) List(_ context.Context, prefix string, opts storage.ListOptions) (storage.ListResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.kvs {
		if strings.HasPrefix(k, prefix) && k >= opts.StartKey {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	res := storage.ListResult{Revision: m.rev}
	for i, k := range keys {
		if opts.Limit > 0 && int64(i) == opts.Limit {
			res.More, res.Remaining = true, int64(len(keys)-i)
			break
		}
		res.Items = append(res.Items, m.kvs[k])
	}
	return res, nil
}

func (m *memStore) Create(_ context.Context, key string, value []byte, _ time.Duration) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.creates++
	if _, ok := m.kvs[key]; ok {
		return 0, storage.ErrExists
	}
	m.rev++
	m.kvs[key] = storage.KeyValue{Key: key, Value: append([]byte(nil), value...), Revision: m.rev}
	return m.rev, nil
}

func (m *memStore) Update(_ context.Context, key string, value []byte, expected int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	kv, ok := m.kvs[key]
	if !ok {
		return 0, storage.ErrNotFound
	}
	if kv.Revision != expected {
		return 0, storage.ErrConflict
	}
	m.rev++
	m.kvs[key] = storage.KeyValue{Key: key, Value: append([]byte(nil), value...), Revision: m.rev}
	return m.rev, nil
}

func (m *memStore) Delete(_ context.Context, key string, expected int64) (storage.KeyValue, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	kv, ok := m.kvs[key]
	if !ok {
		return storage.KeyValue{}, 0, storage.ErrNotFound
	}
	if expected > 0 && kv.Revision != expected {
		return storage.KeyValue{}, 0, storage.ErrConflict
	}
	m.rev++
	delete(m.kvs, key)
	return kv, m.rev, nil
}

func (m *memStore) Watch(context.Context, string, int64, time.Duration) <-chan storage.Event {
	ch := make(chan storage.Event)
	close(ch)
	return ch
}

func (m *memStore) Revision(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev, nil
}

func (m *memStore) createCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.creates
}

func TestAllocatorAllocate(t *testing.T) {
	ctx := context.Background()
	ports, _ := ParsePortRange("30000-30009")
	a := New(newMemStore(), "/alloc/ports/", ports, 0)
	if a.Prefix() != "/alloc/ports/" || a.Range() != Range(ports) {
		t.Fatalf("prefix %q range %v", a.Prefix(), a.Range())
	}
	steps := []struct {
		op, value, owner string
		want             error
	}{
		{"allocate", "30000", "a", nil},
		{"allocate", "30000", "a", nil}, // the owner claiming what it holds again
		{"allocate", "30000", "b", ErrAllocated},
		{"allocate", "29999", "b", ErrNotInRange},
		{"allocate", "30010", "b", ErrNotInRange},
		{"allocate", "not-a-port", "b", ErrNotInRange},
		{"release", "30000", "b", nil}, // not b's: nothing happens
		{"allocate", "30000", "b", ErrAllocated},
		{"release", "30000", "a", nil},
		{"allocate", "30000", "b", nil},
		{"release", "30000", "", nil}, // "" releases whoever holds it
		{"allocate", "30000", "c", nil},
		{"release", "30005", "c", nil}, // releasing what nobody holds is fine
	}
	for i, s := range steps {
		var err error
		switch s.op {
		case "allocate":
			err = a.Allocate(ctx, s.value, s.owner)
		case "release":
			err = a.Release(ctx, s.value, s.owner)
		}
		if !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Fatalf("step %d %s(%s, %s) = %v, want %v", i, s.op, s.value, s.owner, err, s.want)
		}
	}
	used, err := a.Used(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(used) != 1 || used["30000"] != "c" {
		t.Fatalf("Used() = %v, want 30000 held by c", used)
	}
}

func TestAllocateNextNeverRepeatsUntilFull(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		rng    Range
		static int64
	}{
		{"ports", &PortRange{Base: 30000, Max: 30049}, 0},
		{"ips/29", mustIPRange(t, "10.0.0.0/29"), 0},
		{"ips/26 with static band", mustIPRange(t, "10.0.0.0/26"), 16},
		{"static band is the whole range", &PortRange{Base: 1000, Max: 1009}, 10},
		{"static band larger than the range", &PortRange{Base: 1000, Max: 1004}, 50},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := New(newMemStore(), "/alloc/x", tt.rng, tt.static)
			seen := map[string]bool{}
			for i := int64(0); i < tt.rng.Size(); i++ {
				v, err := a.AllocateNext(ctx, fmt.Sprintf("owner-%d", i))
				if err != nil {
					t.Fatalf("allocation %d of %d: %v", i+1, tt.rng.Size(), err)
				}
				if _, ok := tt.rng.Offset(v); !ok {
					t.Fatalf("allocated %s, outside %s", v, tt.rng)
				}
				if seen[v] {
					t.Fatalf("allocated %s twice", v)
				}
				seen[v] = true
			}
			if v, err := a.AllocateNext(ctx, "one-too-many"); !errors.Is(err, ErrFull) {
				t.Fatalf("allocation beyond the range = %q, %v; want ErrFull", v, err)
			}
			// A released value is handed out again, and it is the only one.
			victim := tt.rng.Value(tt.rng.Size() / 2)
			if err := a.Release(ctx, victim, ""); err != nil {
				t.Fatal(err)
			}
			v, err := a.AllocateNext(ctx, "again")
			if err != nil || v != victim {
				t.Fatalf("after releasing %s got %q, %v", victim, v, err)
			}
			used, _ := a.Used(ctx)
			if int64(len(used)) != tt.rng.Size() || used[victim] != "again" {
				t.Fatalf("Used() has %d entries, %s held by %q", len(used), victim, used[victim])
			}
		})
	}
}

func TestAllocateNextPrefersDynamicBand(t *testing.T) {
	ctx := context.Background()
	// 20 values, the lower 16 kept for requested values: the first 4
	// dynamic allocations come from the upper band, as in Kubernetes.
	rng := &PortRange{Base: 100, Max: 119}
	a := New(newMemStore(), "/alloc/band", rng, 16)
	for i := 0; i < 4; i++ {
		v, err := a.AllocateNext(ctx, "o")
		if err != nil {
			t.Fatal(err)
		}
		if off, _ := rng.Offset(v); off < 16 {
			t.Fatalf("allocation %d got %s from the static band while the dynamic one had room", i, v)
		}
	}
	v, err := a.AllocateNext(ctx, "o")
	if err != nil {
		t.Fatal(err)
	}
	if off, _ := rng.Offset(v); off >= 16 {
		t.Fatalf("fifth allocation got %s, the dynamic band is full", v)
	}
}

func TestAllocateNextEmptyRange(t *testing.T) {
	a := New(newMemStore(), "/alloc/empty", &PortRange{Base: 10, Max: 9}, 0)
	if _, err := a.AllocateNext(context.Background(), "o"); !errors.Is(err, ErrFull) {
		t.Fatalf("empty range: %v, want ErrFull", err)
	}
}

func TestAllocateNextSparseRangeIsCheap(t *testing.T) {
	// In a big, nearly empty range a value is found by a random probe, not a
	// scan of the whole range.
	store := newMemStore()
	a := New(store, "/alloc/sparse", mustIPRange(t, "10.96.0.0/12"), 256)
	for i := 0; i < 50; i++ {
		if _, err := a.AllocateNext(context.Background(), "o"); err != nil {
			t.Fatal(err)
		}
	}
	if n := store.createCount(); n > 60 {
		t.Fatalf("50 allocations took %d create calls", n)
	}
}

func TestAllocatorStorageErrors(t *testing.T) {
	ctx := context.Background()
	a := New(failingStore{newMemStore()}, "/alloc/fail", &PortRange{Base: 1, Max: 10}, 0)
	if err := a.Allocate(ctx, "5", "o"); err == nil || errors.Is(err, ErrAllocated) {
		t.Fatalf("Allocate over a failing store = %v, want the storage error", err)
	}
	if _, err := a.AllocateNext(ctx, "o"); err == nil || errors.Is(err, ErrFull) {
		t.Fatalf("AllocateNext over a failing store = %v, want the storage error", err)
	}
	if err := a.Release(ctx, "5", "o"); err == nil {
		t.Fatal("Release over a failing store succeeded")
	}
	if _, err := a.Used(ctx); err == nil {
		t.Fatal("Used over a failing store succeeded")
	}
}

var errBroken = errors.New("storage is broken")

type failingStore struct{ *memStore }

func (failingStore) Get(context.Context, string) (storage.KeyValue, error) {
	return storage.KeyValue{}, errBroken
}
func (failingStore) List(context.Context, string, storage.ListOptions) (storage.ListResult, error) {
	return storage.ListResult{}, errBroken
}
func (failingStore) Create(context.Context, string, []byte, time.Duration) (int64, error) {
	return 0, errBroken
}

// TestAllocatorConcurrentOverEtcd allocates from many goroutines against a
// real embedded etcd: no value is handed out twice and the range fills up
// exactly.
func TestAllocatorConcurrentOverEtcd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := etcd.StartEmbedded(ctx, etcd.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	store := etcd.New(e.Client(), nil)
	rng := mustIPRange(t, "10.0.0.0/26") // 61 addresses
	// Two allocators over the same keys stand for two API servers.
	allocs := []*Allocator{New(store, "/alloc/ips", rng, rng.StaticSize()), New(store, "/alloc/ips", rng, rng.StaticSize())}
	var mu sync.Mutex
	got := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				owner := fmt.Sprintf("w%d-%d", w, i)
				v, err := allocs[w%2].AllocateNext(ctx, owner)
				if errors.Is(err, ErrFull) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, dup := got[v]; dup {
					errs <- fmt.Errorf("%s given to %s and %s", v, prev, owner)
				}
				got[v] = owner
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if int64(len(got)) != rng.Size() {
		t.Fatalf("allocated %d values, the range has %d", len(got), rng.Size())
	}
	used, err := allocs[0].Used(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for v, owner := range got {
		if used[v] != owner {
			t.Errorf("storage says %s is held by %q, allocation said %q", v, used[v], owner)
		}
	}
}

func mustIPRange(t *testing.T, cidr string) *IPRange {
	t.Helper()
	r, err := ParseIPRange(cidr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
