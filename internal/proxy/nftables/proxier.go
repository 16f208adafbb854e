package nftables

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"

	"github.com/berth-project/berth/internal/proxy"
)

// Defaults for zero Config fields.
const (
	DefaultSyncPeriod = 30 * time.Second

	// retireDelay is how long a chain no plan uses stays (flushed) before
	// it is deleted: kernels before 6.2 may still count a reference from
	// a map element deleted in the previous transaction.
	retireDelay = time.Second
	// retryInterval is the first back-off after a failed transaction.
	retryInterval = time.Second
)

// Config configures a Proxier. Client is required; every other field has a
// default.
type Config struct {
	// Client reaches the Kubernetes API; the proxier watches Services and
	// discovery.k8s.io/v1 EndpointSlices through it.
	Client kubernetes.Interface
	// NodeName marks endpoints on this node as local (kept for parity with
	// the userspace backend; traffic policies Local are not implemented).
	NodeName string
	// NodePortAddresses are the IPv4 addresses node ports answer on;
	// ["127.0.0.1"] if empty. "0.0.0.0" means every local address. IPv6
	// entries are ignored with a warning (this backend is IPv4 only).
	NodePortAddresses []string
	// Logger receives structured logs; slog.Default() if nil.
	Logger *slog.Logger
	// MinSyncPeriod is the least time between two syncs; zero applies a
	// change as soon as the previous sync ends.
	MinSyncPeriod time.Duration
	// SyncPeriod is the most time between two syncs; the periodic sync
	// checks that the table is still there and rebuilds it if not.
	// DefaultSyncPeriod if 0.
	SyncPeriod time.Duration
	// TableName is the nftables table (family ip) the proxier owns and
	// deletes on exit; DefaultTableName ("berth") if empty.
	TableName string
}

// kernel is what the proxier needs from nf_tables; kernel_linux.go has the
// real one, tests a recording fake.
type kernel interface {
	// Replace atomically swaps the table for rs.
	Replace(rs *Ruleset) error
	// Apply sends tx as one transaction.
	Apply(tx *Tx) error
	// TableExists reports whether the table is there.
	TableExists() (bool, error)
	// DeleteTable removes the table; a missing one is not an error.
	DeleteTable() error
}

// Proxier is the nftables Service proxy. It records Service and
// EndpointSlice changes in the shared trackers and, in each sync, plans the
// changed service ports and applies the difference to its table in one
// transaction. Build it with New and start it with Run.
type Proxier struct {
	cfg          Config
	log          *slog.Logger
	kern         kernel
	clearUDP     func([]netip.AddrPort) (uint, error)
	setSysctl    func(path, value string) (string, error)
	needLocalnet bool

	// Changes records what the informers deliver and runs the syncs
	// (it provides proxy.Provider's handler methods, Sync and SyncLoop).
	*proxy.Changes

	started atomic.Bool

	syncMu sync.Mutex
	// Fields below are guarded by syncMu.
	svcMap      proxy.ServicePortMap
	epMap       proxy.EndpointsMap
	planner     *Planner
	needReplace bool                 // the kernel may not match the plan
	retired     map[string]time.Time // flushed chains awaiting deletion
	staleUDP    []netip.AddrPort     // conntrack entries still to clear
	lastCheck   time.Time
	failures    int
	stopped     bool

	stateMu sync.Mutex
	// Fields below are guarded by stateMu.
	status       map[string]PortStatus
	generation   uint64
	transactions uint64
	replacements uint64
	lastErr      string
	synced       chan struct{} // closed and replaced after every sync
	ready        chan struct{}
	readyDone    bool
}

var _ proxy.Provider = (*Proxier)(nil)

// New validates cfg, checks that nf_tables is reachable (root or
// CAP_NET_ADMIN, a kernel with nf_tables) and returns a Proxier that
// changes nothing until Run.
func New(cfg Config) (*Proxier, error) {
	opts, needLocalnet, err := parseConfig(&cfg)
	if err != nil {
		return nil, err
	}
	k, err := openKernel(opts.Table)
	if err != nil {
		if isPermission(err) {
			return nil, fmt.Errorf("nftables proxy needs root (CAP_NET_ADMIN): %w", err)
		}
		return nil, fmt.Errorf("nftables proxy: nf_tables is not usable (a kernel with nf_tables and root are needed): %w", err)
	}
	return newProxier(cfg, opts, needLocalnet, k, clearUDPConntrack, setSysctl)
}

// parseConfig fills defaults and validates cfg.
func parseConfig(cfg *Config) (PlanOptions, bool, error) {
	var opts PlanOptions
	if cfg.Client == nil {
		return opts, false, errors.New("nftables proxy config: Client is required")
	}
	if cfg.MinSyncPeriod < 0 || cfg.SyncPeriod < 0 {
		return opts, false, errors.New("nftables proxy config: sync periods must not be negative")
	}
	if cfg.SyncPeriod == 0 {
		cfg.SyncPeriod = DefaultSyncPeriod
	}
	if cfg.SyncPeriod < cfg.MinSyncPeriod {
		return opts, false, fmt.Errorf("nftables proxy config: SyncPeriod %v is below MinSyncPeriod %v", cfg.SyncPeriod, cfg.MinSyncPeriod)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TableName == "" {
		cfg.TableName = DefaultTableName
	}
	if !validObjectName(cfg.TableName) {
		return opts, false, fmt.Errorf("nftables proxy config: table name %q: want 1-%d of [A-Za-z0-9_-], starting with a letter", cfg.TableName, maxTableName)
	}
	opts.Table = cfg.TableName
	if len(cfg.NodePortAddresses) == 0 {
		cfg.NodePortAddresses = []string{"127.0.0.1"}
	}
	needLocalnet := false
	for _, s := range cfg.NodePortAddresses {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return opts, false, fmt.Errorf("nftables proxy config: node port address %q is not an IP address: %w", s, err)
		}
		a = a.Unmap()
		if !a.Is4() {
			cfg.Logger.Warn("nftables proxy is IPv4 only; ignoring node port address", "address", s)
			continue
		}
		if a.IsUnspecified() {
			opts.AllNodeAddresses = true
			needLocalnet = true
			continue
		}
		if a.IsLoopback() {
			needLocalnet = true
		}
		if !slices.Contains(opts.NodePortAddresses, a) {
			opts.NodePortAddresses = append(opts.NodePortAddresses, a)
		}
	}
	return opts, needLocalnet, nil
}

const maxTableName = 64

func validObjectName(s string) bool {
	if s == "" || len(s) > maxTableName {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '_' || r == '-'):
		default:
			return false
		}
	}
	return true
}

func newProxier(cfg Config, opts PlanOptions, needLocalnet bool, k kernel,
	clearUDP func([]netip.AddrPort) (uint, error), sysctl func(string, string) (string, error)) (*Proxier, error) {
	p := &Proxier{
		cfg:          cfg,
		log:          cfg.Logger,
		kern:         k,
		clearUDP:     clearUDP,
		setSysctl:    sysctl,
		needLocalnet: needLocalnet,
		svcMap:       proxy.ServicePortMap{},
		epMap:        proxy.EndpointsMap{},
		planner:      NewPlanner(opts),
		needReplace:  true, // the first sync replaces whatever a previous run left
		retired:      map[string]time.Time{},
		status:       map[string]PortStatus{},
		synced:       make(chan struct{}),
		ready:        make(chan struct{}),
	}
	var err error
	p.Changes, err = proxy.NewChanges(cfg.NodeName, cfg.Logger, p.syncProxyRules, cfg.MinSyncPeriod, cfg.SyncPeriod)
	if err != nil {
		return nil, fmt.Errorf("nftables proxy config: %w", err)
	}
	return p, nil
}

// Run watches the API and keeps the table in step until ctx is done, then
// deletes the table (and restores route_localnet if it changed it) and
// returns. It returns an error if the watch could not be set up or the
// table could not be deleted. Run may be called once.
func (p *Proxier) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("nftables proxy: Run called more than once")
	}
	// Node ports on 127.x reach non-loopback endpoints only if the kernel
	// routes loopback-sourced packets off lo (they are masqueraded on the
	// way out). The setting is per network namespace: this is berth's.
	restoreLocalnet := ""
	if p.needLocalnet {
		prev, err := p.setSysctl(routeLocalnetPath, "1")
		switch {
		case err != nil:
			p.log.Warn("cannot enable route_localnet; node ports on loopback addresses reach only loopback endpoints", "err", err)
		case prev != "1":
			restoreLocalnet = prev
			p.log.Info("enabled net.ipv4.conf.all.route_localnet for loopback node ports", "previous", prev)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	var loops sync.WaitGroup
	loops.Go(func() {
		if err := proxy.RunInformers(ctx, p.cfg.Client, p, 0, p.log); err != nil {
			errc <- fmt.Errorf("nftables proxy: %w", err)
			cancel()
		}
	})
	loops.Go(func() { p.SyncLoop(ctx) })
	<-ctx.Done()
	loops.Wait()

	var errs []error
	select {
	case err := <-errc:
		errs = append(errs, err)
	default:
	}
	p.syncMu.Lock()
	p.stopped = true
	p.syncMu.Unlock()
	if err := p.kern.DeleteTable(); err != nil {
		p.log.Error("delete nftables table", "table", p.cfg.TableName, "err", err)
		errs = append(errs, err)
	} else {
		p.log.Info("deleted nftables table", "table", p.cfg.TableName)
	}
	if restoreLocalnet != "" {
		if _, err := p.setSysctl(routeLocalnetPath, restoreLocalnet); err != nil {
			p.log.Warn("restore route_localnet", "err", err)
		}
	}
	p.stateMu.Lock()
	clear(p.status)
	p.generation++
	close(p.synced)
	p.synced = make(chan struct{})
	p.stateMu.Unlock()
	return errors.Join(errs...)
}

// syncProxyRules applies the recorded changes: it re-plans exactly the
// service ports whose Service or endpoints changed and sends the difference
// as one transaction (none when nothing changed). The first sync, and any
// sync after a failed one, replaces the whole table instead, so the kernel
// never stays out of step with the plan.
func (p *Proxier) syncProxyRules() {
	if !p.Initialized() {
		return
	}
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	if p.stopped {
		return
	}
	start := time.Now()
	svcRes := p.svcMap.Update(p.Services)
	epRes := p.epMap.Update(p.Endpoints)

	touched := sets.New[proxy.ServicePortName]()
	for spn, c := range svcRes.Changed {
		touched.Insert(spn)
		if c.Current != nil && !SupportedProtocol(c.Current.Protocol) {
			p.log.Warn("nftables proxy does not support this protocol; service port not proxied", "service", spn.String(), "protocol", string(c.Current.Protocol))
		}
	}
	touched = touched.Union(epRes.Changed)
	changes := make(map[proxy.ServicePortName]PortInput, touched.Len())
	for spn := range touched {
		changes[spn] = PortInput{Info: p.svcMap[spn], Endpoints: p.epMap[spn]}
	}
	ch := p.planner.Update(changes)
	for _, name := range ch.Retired {
		p.retired[name] = start
	}
	for _, name := range ch.Tx.AddChains {
		delete(p.retired, name) // back in use before it was deleted
	}
	p.staleUDP = append(p.staleUDP, ch.StaleUDP...)

	// The periodic sync checks that nobody deleted the table under us.
	if !p.needReplace && start.Sub(p.lastCheck) >= p.cfg.SyncPeriod {
		p.lastCheck = start
		exists, err := p.kern.TableExists()
		switch {
		case err != nil:
			p.log.Warn("check nftables table", "table", p.cfg.TableName, "err", err)
		case !exists:
			p.log.Warn("nftables table disappeared; rebuilding it", "table", p.cfg.TableName)
			p.needReplace = true
		}
	}

	var err error
	sent, replaced := false, false
	if p.needReplace {
		rs := p.planner.Ruleset()
		err = p.kern.Replace(&rs)
		sent, replaced = true, err == nil
		if err == nil {
			p.needReplace = false
			p.lastCheck = start
			clear(p.retired)
		}
	} else {
		tx := ch.Tx
		for name, at := range p.retired {
			if start.Sub(at) >= retireDelay {
				tx.DelChains = append(tx.DelChains, name)
			}
		}
		slices.Sort(tx.DelChains)
		if !tx.Empty() {
			err = p.kern.Apply(&tx)
			sent = true
			if err == nil {
				for _, name := range tx.DelChains {
					delete(p.retired, name)
				}
			}
		}
	}

	if err != nil {
		p.needReplace = true
		p.failures++
		lvl := slog.LevelError
		if p.failures > 1 {
			lvl = slog.LevelDebug // logged once at error level until it works again
		}
		p.log.Log(context.Background(), lvl, "nftables sync failed; the next sync rebuilds the table", "table", p.cfg.TableName, "failures", p.failures, "err", err)
		p.Runner.RetryAfter(min(retryInterval<<min(p.failures-1, 10), p.cfg.SyncPeriod))
		p.publish(nil, sent, false, err)
		return
	}
	if p.failures > 0 {
		p.log.Info("nftables sync works again", "table", p.cfg.TableName, "failures", p.failures)
	}
	p.failures = 0

	// Conntrack after the rules: a cleared UDP flow's next datagram must
	// already see the new endpoints.
	if len(p.staleUDP) > 0 {
		n, cerr := p.clearUDP(p.staleUDP)
		if cerr != nil {
			p.log.Warn("clear conntrack entries of removed UDP endpoints", "endpoints", len(p.staleUDP), "err", cerr)
		} else if n > 0 {
			p.log.Debug("cleared conntrack entries of removed UDP endpoints", "entries", n)
		}
		p.staleUDP = nil
	}
	if len(p.retired) > 0 {
		p.Runner.RetryAfter(retireDelay)
	}
	if replaced {
		// After a rebuild every port's state may have changed.
		for spn := range p.svcMap {
			touched.Insert(spn)
		}
	}
	p.publish(touched, sent, replaced, nil)
	if sent {
		p.log.Debug("nftables sync applied", "servicePorts", touched.Len(), "replaced", replaced, "duration", time.Since(start))
	}
}
