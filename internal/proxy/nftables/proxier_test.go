package nftables

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// fakeKernel records what the proxier sends and can be told to fail.
type fakeKernel struct {
	mu       sync.Mutex
	table    *Ruleset // nil: no table
	replaces int
	applies  []Tx
	deleted  int
	failNext int // fail this many Replace/Apply calls
	cleared  []netip.AddrPort
}

var errInjected = errors.New("injected netlink failure")

func (k *fakeKernel) Replace(rs *Ruleset) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failNext > 0 {
		k.failNext--
		return errInjected
	}
	cp := *rs
	k.table = &cp
	k.replaces++
	return nil
}

func (k *fakeKernel) Apply(tx *Tx) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failNext > 0 {
		k.failNext--
		return errInjected
	}
	if k.table == nil {
		return errors.New("no such table")
	}
	k.applies = append(k.applies, *tx)
	return nil
}

func (k *fakeKernel) TableExists() (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.table != nil, nil
}

func (k *fakeKernel) DeleteTable() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.table = nil
	k.deleted++
	return nil
}

func (k *fakeKernel) clearUDP(eps []netip.AddrPort) (uint, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cleared = append(k.cleared, eps...)
	return uint(len(eps)), nil
}

func (k *fakeKernel) snapshot() (replaces int, applies []Tx, deleted int, hasTable bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.replaces, slices.Clone(k.applies), k.deleted, k.table != nil
}

type fakeSysctl struct {
	mu     sync.Mutex
	values map[string]string
	writes []string
}

func (s *fakeSysctl) set(path, value string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.values[path]
	if prev != value {
		s.values[path] = value
		s.writes = append(s.writes, value)
	}
	return prev, nil
}

type fakeEnv struct {
	apiObjects
	p      *Proxier
	k      *fakeKernel
	sysctl *fakeSysctl
	cancel context.CancelFunc
	done   chan error
}

// newFakeEnv runs a Proxier on a fake clientset and a fake kernel.
func newFakeEnv(t *testing.T, mut func(*Config)) *fakeEnv {
	t.Helper()
	client := fake.NewClientset()
	cfg := Config{Client: client, NodeName: "node-a", Logger: testLogger(t), SyncPeriod: time.Hour}
	if mut != nil {
		mut(&cfg)
	}
	opts, needLocalnet, err := parseConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{}
	sc := &fakeSysctl{values: map[string]string{routeLocalnetPath: "0"}}
	p, err := newProxier(cfg, opts, needLocalnet, k, k.clearUDP, sc.set)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &fakeEnv{apiObjects: apiObjects{t: t, ctx: ctx, client: client}, p: p, k: k, sysctl: sc, cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- p.Run(ctx) }()
	t.Cleanup(func() { e.stop() })
	select {
	case <-p.Ready():
	case <-time.After(testTimeout):
		t.Fatal("proxier never became ready")
	}
	return e
}

func (e *fakeEnv) stop() error {
	e.cancel()
	select {
	case err := <-e.done:
		e.done <- err // later calls see the same result
		return err
	case <-time.After(testTimeout):
		e.t.Fatal("Run did not return after its context ended")
	}
	return nil
}

func TestProxierSyncsIncrementally(t *testing.T) {
	e := newFakeEnv(t, nil)
	if r, a, _, has := e.k.snapshot(); r != 1 || len(a) != 0 || !has {
		t.Fatalf("after start: %d replaces, %d applies, table %v; want the first sync to replace the table", r, len(a), has)
	}

	e.createService(service("web", "10.96.0.10", []v1.ServicePort{port("http", v1.ProtocolTCP, 80)}))
	e.createService(service("other", "10.96.0.11", []v1.ServicePort{port("http", v1.ProtocolTCP, 80)}))
	waitStatus(t, e.p, "both services rejecting", func(s Status) bool {
		return hasEndpoints("default/web:http")(s) && hasEndpoints("default/other:http")(s)
	})
	e.applySlice(slice("web", "web-1", "http", v1.ProtocolTCP, 8080, readyEPs("10.244.0.2", "10.244.0.3")...))
	e.applySlice(slice("other", "other-1", "http", v1.ProtocolTCP, 8080, readyEPs("10.244.0.9")...))
	waitStatus(t, e.p, "endpoints", func(s Status) bool {
		return hasEndpoints("default/web:http", "10.244.0.2:8080", "10.244.0.3:8080")(s) && hasEndpoints("default/other:http", "10.244.0.9:8080")(s)
	})

	// One more endpoint for web: one transaction that names only web's
	// objects.
	_, before, _, _ := e.k.snapshot()
	e.applySlice(slice("web", "web-1", "http", v1.ProtocolTCP, 8080, readyEPs("10.244.0.2", "10.244.0.3", "10.244.0.4")...))
	st := waitStatus(t, e.p, "third endpoint", hasEndpoints("default/web:http", "10.244.0.2:8080", "10.244.0.3:8080", "10.244.0.4:8080"))
	_, after, _, _ := e.k.snapshot()
	if len(after) != len(before)+1 {
		t.Fatalf("applies %d -> %d, want exactly one more", len(before), len(after))
	}
	for _, line := range txSummary(after[len(after)-1]) {
		if !strings.Contains(line, "default/web/") {
			t.Errorf("transaction for web touches %q", line)
		}
	}
	if got := st.Ports["default/web:http"].Destinations; !slices.Equal(got, []string{"10.96.0.10:80/TCP"}) {
		t.Errorf("destinations %q", got)
	}

	// Nothing changed: a sync sends nothing.
	tx := st.Transactions
	gen := st.Generation
	e.p.Sync()
	st = waitStatus(t, e.p, "another sync", func(s Status) bool { return s.Generation > gen })
	if st.Transactions != tx {
		t.Errorf("a sync without changes sent %d transactions", st.Transactions-tx)
	}
	// Nor does a Service update that changes nothing the proxy uses.
	svc, _ := e.client.CoreV1().Services("default").Get(e.ctx, "web", metaGet)
	svc.Labels = map[string]string{"touched": "yes"}
	e.updateService(svc)
	e.p.Sync()
	gen = st.Generation
	st = waitStatus(t, e.p, "sync after a no-op update", func(s Status) bool { return s.Generation > gen })
	if st.Transactions != tx {
		t.Errorf("a label change sent %d transactions", st.Transactions-tx)
	}
}

func TestProxierRetiresChainsLater(t *testing.T) {
	e := newFakeEnv(t, nil)
	e.createService(service("web", "10.96.0.10", []v1.ServicePort{port("http", v1.ProtocolTCP, 80)}))
	e.applySlice(slice("web", "web-1", "http", v1.ProtocolTCP, 8080, readyEPs("10.244.0.2", "10.244.0.3")...))
	waitStatus(t, e.p, "two endpoints", hasEndpoints("default/web:http", "10.244.0.2:8080", "10.244.0.3:8080"))
	e.applySlice(slice("web", "web-1", "http", v1.ProtocolTCP, 8080, readyEPs("10.244.0.3")...))
	waitStatus(t, e.p, "one endpoint", hasEndpoints("default/web:http", "10.244.0.3:8080"))

	gone := "endpoint:default/web/tcp/http__10.244.0.2/8080"
	deadline := time.Now().Add(testTimeout)
	for {
		_, applies, _, _ := e.k.snapshot()
		var flushedAt, deletedAt = -1, -1
		for i, tx := range applies {
			for _, line := range txSummary(tx) {
				switch line {
				case "flush " + gone:
					flushedAt = i
				case "del " + gone:
					deletedAt = i
				}
			}
		}
		if deletedAt >= 0 {
			if flushedAt < 0 || deletedAt <= flushedAt {
				t.Fatalf("chain deleted in transaction %d, flushed in %d: want flush first, delete in a later one", deletedAt, flushedAt)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retired chain %s never deleted; transactions %d", gone, len(applies))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestProxierRecoversFromFailures(t *testing.T) {
	e := newFakeEnv(t, nil)
	e.createService(service("web", "10.96.0.10", []v1.ServicePort{port("http", v1.ProtocolTCP, 80)}))
	e.applySlice(slice("web", "web-1", "http", v1.ProtocolTCP, 8080, readyEPs("10.244.0.2")...))
	waitStatus(t, e.p, "endpoint", hasEndpoints("default/web:http", "10.244.0.2:8080"))
	replacesBefore, _, _, _ := e.k.snapshot()

	e.k.mu.Lock()
	e.k.failNext = 1
	e.k.mu.Unlock()
	e.applySlice(slice("web", "web-1", "http", v1.ProtocolTCP, 8080, readyEPs("10.244.0.5")...))
	// The failed transaction is reported, then the retry rebuilds the
	// whole table and the status catches up.
	waitStatus(t, e.p, "error reported", func(s Status) bool { return strings.Contains(s.LastError, errInjected.Error()) })
	st := waitStatus(t, e.p, "recovery", func(s Status) bool {
		return s.LastError == "" && hasEndpoints("default/web:http", "10.244.0.5:8080")(s)
	})
	replaces, _, _, _ := e.k.snapshot()
	if replaces != replacesBefore+1 || st.Replacements != uint64(replaces) {
		t.Fatalf("replaces %d -> %d (status %d): want one rebuild after the failure", replacesBefore, replaces, st.Replacements)
	}
	e.k.mu.Lock()
	rs := e.k.table
	e.k.mu.Unlock()
	if !strings.Contains(rs.String(), "dnat to 10.244.0.5:8080") || strings.Contains(rs.String(), "10.244.0.2") {
		t.Fatalf("rebuilt table does not hold the current plan:\n%s", rs.String())
	}
}

func TestProxierRebuildsVanishedTable(t *testing.T) {
	e := newFakeEnv(t, func(c *Config) { c.SyncPeriod = 100 * time.Millisecond })
	e.createService(service("web", "10.96.0.10", []v1.ServicePort{port("http", v1.ProtocolTCP, 80)}))
	e.applySlice(slice("web", "web-1", "http", v1.ProtocolTCP, 8080, readyEPs("10.244.0.2")...))
	st := waitStatus(t, e.p, "endpoint", hasEndpoints("default/web:http", "10.244.0.2:8080"))
	e.k.mu.Lock()
	e.k.table = nil // someone ran `nft delete table ip berth`
	e.k.mu.Unlock()
	repl := st.Replacements
	waitStatus(t, e.p, "rebuild", func(s Status) bool { return s.Replacements > repl })
	if _, _, _, has := e.k.snapshot(); !has {
		t.Fatal("table not rebuilt")
	}
}

func TestProxierRunCleansUp(t *testing.T) {
	e := newFakeEnv(t, nil) // default node port address 127.0.0.1
	e.createService(service("dns", "10.96.0.53", []v1.ServicePort{port("dns", v1.ProtocolUDP, 53)}))
	e.applySlice(slice("dns", "dns-1", "dns", v1.ProtocolUDP, 5353, readyEPs("10.244.0.2", "10.244.0.3")...))
	waitStatus(t, e.p, "dns", hasEndpoints("default/dns:dns", "10.244.0.2:5353", "10.244.0.3:5353"))
	e.applySlice(slice("dns", "dns-1", "dns", v1.ProtocolUDP, 5353, readyEPs("10.244.0.3")...))
	waitStatus(t, e.p, "dns shrinks", hasEndpoints("default/dns:dns", "10.244.0.3:5353"))
	e.k.mu.Lock()
	cleared := slices.Clone(e.k.cleared)
	e.k.mu.Unlock()
	if !slices.Equal(cleared, []netip.AddrPort{mustAddrPort("10.244.0.2:5353")}) {
		t.Errorf("conntrack cleared for %v, want the removed UDP endpoint", cleared)
	}

	if err := e.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, _, deleted, has := e.k.snapshot(); deleted != 1 || has {
		t.Fatalf("after Run: deleted %d times, table present %v", deleted, has)
	}
	e.sysctl.mu.Lock()
	defer e.sysctl.mu.Unlock()
	if !slices.Equal(e.sysctl.writes, []string{"1", "0"}) {
		t.Errorf("route_localnet writes %q, want it enabled for 127.0.0.1 node ports and restored", e.sysctl.writes)
	}
	if len(e.p.Status().Ports) != 0 {
		t.Errorf("status still lists ports after Run")
	}
	if err := e.p.Run(context.Background()); err == nil {
		t.Error("second Run: want an error")
	}
}

func TestProxierNoLocalnetWithoutLoopbackNodePorts(t *testing.T) {
	e := newFakeEnv(t, func(c *Config) { c.NodePortAddresses = []string{"192.168.1.10"} })
	e.stop()
	e.sysctl.mu.Lock()
	defer e.sysctl.mu.Unlock()
	if len(e.sysctl.writes) != 0 {
		t.Errorf("route_localnet written %q without loopback node ports", e.sysctl.writes)
	}
}

func TestConfig(t *testing.T) {
	client := fake.NewClientset()
	tests := []struct {
		name         string
		cfg          Config
		wantErr      string
		wantAll      bool
		wantAddrs    []string
		wantLocalnet bool
	}{
		{name: "no client", cfg: Config{}, wantErr: "Client is required"},
		{name: "negative period", cfg: Config{Client: client, MinSyncPeriod: -1}, wantErr: "negative"},
		{name: "period below minimum", cfg: Config{Client: client, MinSyncPeriod: time.Minute, SyncPeriod: time.Second}, wantErr: "below MinSyncPeriod"},
		{name: "bad node address", cfg: Config{Client: client, NodePortAddresses: []string{"node-1"}}, wantErr: `"node-1" is not an IP address`},
		{name: "CIDR is not an address", cfg: Config{Client: client, NodePortAddresses: []string{"10.0.0.0/8"}}, wantErr: "not an IP address"},
		{name: "bad table name", cfg: Config{Client: client, TableName: "berth table"}, wantErr: "table name"},
		{name: "table name starting with a digit", cfg: Config{Client: client, TableName: "1berth"}, wantErr: "table name"},
		{name: "defaults", cfg: Config{Client: client}, wantAddrs: []string{"127.0.0.1"}, wantLocalnet: true},
		{name: "node IP only", cfg: Config{Client: client, NodePortAddresses: []string{"192.168.1.10", "192.168.1.10"}}, wantAddrs: []string{"192.168.1.10"}},
		{name: "all addresses", cfg: Config{Client: client, NodePortAddresses: []string{"0.0.0.0"}}, wantAll: true, wantLocalnet: true},
		{name: "IPv6 ignored", cfg: Config{Client: client, NodePortAddresses: []string{"::1", "127.0.0.1"}}, wantAddrs: []string{"127.0.0.1"}, wantLocalnet: true},
		{name: "mapped IPv4", cfg: Config{Client: client, NodePortAddresses: []string{"::ffff:192.168.1.10"}}, wantAddrs: []string{"192.168.1.10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Logger = testLogger(t)
			opts, localnet, err := parseConfig(&cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var addrs []string
			for _, a := range opts.NodePortAddresses {
				addrs = append(addrs, a.String())
			}
			if !slices.Equal(addrs, tt.wantAddrs) || opts.AllNodeAddresses != tt.wantAll || localnet != tt.wantLocalnet {
				t.Errorf("got addrs %v all %v localnet %v; want %v %v %v", addrs, opts.AllNodeAddresses, localnet, tt.wantAddrs, tt.wantAll, tt.wantLocalnet)
			}
			if opts.Table != DefaultTableName && cfg.TableName == "" {
				t.Errorf("table %q", opts.Table)
			}
			if cfg.SyncPeriod != DefaultSyncPeriod && tt.cfg.SyncPeriod == 0 {
				t.Errorf("sync period %v", cfg.SyncPeriod)
			}
		})
	}
}
