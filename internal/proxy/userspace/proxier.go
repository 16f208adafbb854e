package userspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"

	"github.com/berth-project/berth/internal/proxy"
	"github.com/berth-project/berth/internal/proxy/vip"
)

// Defaults for zero Config fields.
const (
	DefaultSyncPeriod      = 30 * time.Second
	DefaultUDPIdleTimeout  = 30 * time.Second
	DefaultDialTimeout     = time.Second
	DefaultMaxDialAttempts = 3

	// retryInterval is how soon a sync that could not bind a listener or
	// ensure an address tries that service port again.
	retryInterval = time.Second

	// recheckChunk is how many service ports one sync re-checks during the
	// periodic pass over all of them.
	recheckChunk = 256
)

// Config configures a Proxier. Client is required; every other field has a
// default.
type Config struct {
	// Client reaches the Kubernetes API; the proxier watches Services and
	// discovery.k8s.io/v1 EndpointSlices through it.
	Client kubernetes.Interface
	// NodeName marks endpoints on this node as local.
	NodeName string
	// NodePortAddresses are the IPs node ports listen on; ["127.0.0.1"] if
	// empty. "0.0.0.0" or "::" listen on every address.
	NodePortAddresses []string
	// Addresses makes service IPs bindable; vip.Loopback{} if nil, which
	// accepts only 127.0.0.0/8 and ::1.
	Addresses proxy.AddressManager
	// Registerer receives the proxy's metrics; a private registry if nil,
	// so nothing is ever registered globally.
	Registerer prometheus.Registerer
	// Logger receives structured logs; slog.Default() if nil.
	Logger *slog.Logger
	// MinSyncPeriod is the least time between two syncs. Zero lets every
	// change be applied as soon as the previous sync ends, so a change is
	// routable within milliseconds; changes arriving during a sync coalesce.
	MinSyncPeriod time.Duration
	// SyncPeriod is the most time between two syncs (the periodic run that
	// retries failed binds and expires idle affinity); DefaultSyncPeriod if 0.
	SyncPeriod time.Duration
	// UDPIdleTimeout ends a UDP session with no traffic either way for this
	// long; DefaultUDPIdleTimeout if 0.
	UDPIdleTimeout time.Duration
	// DialTimeout bounds one attempt to connect to a TCP endpoint;
	// DefaultDialTimeout if 0.
	DialTimeout time.Duration
	// MaxDialAttempts bounds how many endpoints one client connection tries
	// before it is closed; DefaultMaxDialAttempts if 0.
	MaxDialAttempts int
}

// Proxier is the userspace Service proxy: for every service port with a
// usable endpoint it listens on each of the port's addresses (cluster IPs,
// node ports, external IPs, load-balancer ingress IPs) and forwards each new
// connection, or UDP session, to one endpoint. Build it with New and start
// it with Run.
type Proxier struct {
	cfg       Config
	log       *slog.Logger
	addrs     proxy.AddressManager
	metrics   *metrics
	nodeAddrs []netip.Addr

	// Changes records what the informers deliver and runs the syncs
	// (it provides proxy.Provider's handler methods, Sync and SyncLoop).
	*proxy.Changes

	started atomic.Bool

	// runCtx is Run's context; set before the first sync, read by the data
	// path to bound dials and to close connections on shutdown.
	runCtx context.Context
	// wg counts listener, connection and UDP session goroutines.
	wg sync.WaitGroup

	syncMu sync.Mutex
	// Fields below are guarded by syncMu.
	svcMap   proxy.ServicePortMap
	epMap    proxy.EndpointsMap
	ports    map[proxy.ServicePortName]*servicePort
	retry    sets.Set[proxy.ServicePortName]
	lastFull time.Time
	// recheck holds the service ports the periodic re-check has yet to
	// visit; each sync takes at most recheckChunk of them.
	recheck      []proxy.ServicePortName
	recheckChunk int
	stopped      bool

	stateMu sync.Mutex
	// Fields below are guarded by stateMu.
	status     map[string]PortStatus
	generation uint64
	synced     chan struct{} // closed and replaced after every sync
	ready      chan struct{}
	readyDone  bool
}

var _ proxy.Provider = (*Proxier)(nil)

// servicePort is the live state of one service port. Guarded by the
// proxier's syncMu except lb, which has its own lock, and name and log,
// which never change.
type servicePort struct {
	name proxy.ServicePortName
	log  *slog.Logger
	lb   *balancer

	endpoints []netip.AddrPort // usable, in balancer order
	known     []netip.AddrPort // every endpoint listed, for metric cleanup
	ensured   []netip.Addr     // service IPs ensured for this port
	listeners map[netip.AddrPort]listener
	opens     uint64
	failures  int // consecutive syncs that could not finish this port
}

// listener is one open socket of a service port.
type listener interface {
	// endpointsChanged tells the listener the usable endpoints; UDP drops
	// sessions to endpoints that left.
	endpointsChanged(usable []netip.AddrPort)
	// close stops accepting; established TCP connections keep draining.
	close()
}

// New validates cfg and returns a Proxier that does nothing until Run.
func New(cfg Config) (*Proxier, error) {
	if cfg.Client == nil {
		return nil, errors.New("userspace proxy config: Client is required")
	}
	if cfg.MinSyncPeriod < 0 || cfg.SyncPeriod < 0 || cfg.UDPIdleTimeout < 0 || cfg.DialTimeout < 0 || cfg.MaxDialAttempts < 0 {
		return nil, errors.New("userspace proxy config: durations and MaxDialAttempts must not be negative")
	}
	if cfg.SyncPeriod == 0 {
		cfg.SyncPeriod = DefaultSyncPeriod
	}
	if cfg.SyncPeriod < cfg.MinSyncPeriod {
		return nil, fmt.Errorf("userspace proxy config: SyncPeriod %v is below MinSyncPeriod %v", cfg.SyncPeriod, cfg.MinSyncPeriod)
	}
	if cfg.UDPIdleTimeout == 0 {
		cfg.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MaxDialAttempts == 0 {
		cfg.MaxDialAttempts = DefaultMaxDialAttempts
	}
	if len(cfg.NodePortAddresses) == 0 {
		cfg.NodePortAddresses = []string{"127.0.0.1"}
	}
	var nodeAddrs []netip.Addr
	for _, s := range cfg.NodePortAddresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("userspace proxy config: node port address %q is not an IP address: %w", s, err)
		}
		if a = a.Unmap(); !slices.Contains(nodeAddrs, a) {
			nodeAddrs = append(nodeAddrs, a)
		}
	}
	if cfg.Addresses == nil {
		cfg.Addresses = vip.Loopback{}
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Proxier{
		cfg:       cfg,
		log:       cfg.Logger,
		addrs:     cfg.Addresses,
		metrics:   m,
		nodeAddrs: nodeAddrs,
		svcMap:    proxy.ServicePortMap{},
		epMap:     proxy.EndpointsMap{},
		ports:     map[proxy.ServicePortName]*servicePort{},
		retry:     sets.New[proxy.ServicePortName](),
		status:    map[string]PortStatus{},
		synced:    make(chan struct{}),
		ready:     make(chan struct{}),
		runCtx:    context.Background(),

		recheckChunk: recheckChunk,
	}
	p.Changes, err = proxy.NewChanges(cfg.NodeName, cfg.Logger, p.syncProxyRules, cfg.MinSyncPeriod, cfg.SyncPeriod)
	if err != nil {
		return nil, fmt.Errorf("userspace proxy config: %w", err)
	}
	return p, nil
}

// Run watches the API and proxies until ctx is done, then closes every
// listener and connection, releases every service address and returns once
// all its goroutines have ended. It returns an error only if the watch could
// not be set up. Run may be called once.
func (p *Proxier) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("userspace proxy: Run called more than once")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.runCtx = ctx

	errc := make(chan error, 1)
	var loops sync.WaitGroup
	loops.Go(func() {
		if err := proxy.RunInformers(ctx, p.cfg.Client, p, 0, p.log); err != nil {
			errc <- fmt.Errorf("userspace proxy: %w", err)
			cancel()
		}
	})
	loops.Go(func() { p.SyncLoop(ctx) })
	<-ctx.Done()
	loops.Wait()
	p.shutdown()
	p.wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// syncProxyRules applies the recorded changes. It touches only the service
// ports whose Service or endpoints changed (plus ports a previous sync could
// not finish, and, once per SyncPeriod, all of them): for each it computes
// the wanted addresses and listeners and closes, releases, ensures and opens
// only the difference.
func (p *Proxier) syncProxyRules() {
	if !p.Initialized() {
		return
	}
	start := time.Now()
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	if p.stopped {
		return
	}
	svcRes := p.svcMap.Update(p.Services)
	epRes := p.epMap.Update(p.Endpoints)

	touched := p.retry
	p.retry = sets.New[proxy.ServicePortName]()
	for spn := range svcRes.Changed {
		touched.Insert(spn)
	}
	touched = touched.Union(epRes.Changed)
	// Once per SyncPeriod the sync also re-checks every service port (the
	// diff is cheap when nothing drifted) and expires idle affinity. At
	// 10,000 Services one pass takes a few hundred milliseconds, so it goes
	// recheckChunk ports per sync, syncs following each other at once: a
	// change waits for one chunk, not for the whole pass.
	if p.lastFull.IsZero() {
		p.lastFull = start // the first sync applies every service port anyway
	}
	if len(p.recheck) == 0 && time.Since(p.lastFull) >= p.cfg.SyncPeriod {
		p.lastFull = time.Now()
		for spn := range p.svcMap {
			p.recheck = append(p.recheck, spn)
		}
		for spn := range p.ports {
			if _, ok := p.svcMap[spn]; !ok {
				p.recheck = append(p.recheck, spn)
			}
		}
	}
	if len(p.recheck) > 0 {
		n := min(len(p.recheck), p.recheckChunk)
		for _, spn := range p.recheck[:n] {
			touched.Insert(spn)
			if sp := p.ports[spn]; sp != nil {
				sp.lb.sweep()
			}
		}
		p.recheck = p.recheck[n:]
		if len(p.recheck) > 0 {
			p.Runner.Run()
		} else {
			p.recheck = nil
		}
	}

	// Close and release before opening and ensuring anywhere, so an address
	// or port moving from one service port to another in the same sync is
	// free when its new owner binds it.
	wants := make(map[proxy.ServicePortName]want, len(touched))
	for spn := range touched {
		w := p.want(spn)
		wants[spn] = w
		p.shrink(spn, w)
	}
	for spn, w := range wants {
		if w.info == nil {
			continue
		}
		if _, changed := svcRes.Changed[spn]; changed && w.info.Protocol != v1.ProtocolTCP && w.info.Protocol != v1.ProtocolUDP {
			p.log.Warn("userspace proxy does not support this protocol; service port not proxied", "service", spn.String(), "protocol", string(w.info.Protocol))
		}
		p.grow(spn, w)
	}
	// Retry failed ports soon, backing off per port up to the periodic
	// sync, so a permanent error (an address the AddressManager cannot
	// provide, a port another process holds) does not spin.
	var retryIn time.Duration
	for spn := range wants {
		sp := p.ports[spn]
		if sp == nil || sp.failures == 0 {
			continue
		}
		p.retry.Insert(spn)
		d := min(retryInterval<<min(sp.failures-1, 10), p.cfg.SyncPeriod)
		if retryIn == 0 || d < retryIn {
			retryIn = d
		}
	}
	if retryIn > 0 {
		p.Runner.RetryAfter(retryIn)
	}
	p.publish(touched)
	elapsed := time.Since(start)
	p.metrics.syncDuration.Observe(elapsed.Seconds())
	p.metrics.syncs.Inc()
	if touched.Len() > 0 {
		p.log.Debug("proxy sync applied", "servicePorts", touched.Len(), "duration", elapsed)
	}
}

// want is the state one service port should have after a sync.
type want struct {
	info      *proxy.ServicePortInfo // nil: the service port is gone
	endpoints []netip.AddrPort       // usable endpoints
	known     []netip.AddrPort       // every listed endpoint
	ips       []netip.Addr           // service IPs to ensure
	listen    []netip.AddrPort       // sockets to have open
}

func (p *Proxier) want(spn proxy.ServicePortName) want {
	info := p.svcMap[spn]
	all := p.epMap[spn]
	w := want{info: info}
	for _, ep := range all {
		w.known = append(w.known, ep.Addr)
	}
	for _, ep := range proxy.UsableEndpoints(all) {
		w.endpoints = append(w.endpoints, ep.Addr)
	}
	if info == nil || (info.Protocol != v1.ProtocolTCP && info.Protocol != v1.ProtocolUDP) {
		return w
	}
	addIP := func(ip netip.Addr) {
		if !slices.Contains(w.ips, ip) {
			w.ips = append(w.ips, ip)
		}
	}
	for _, ip := range info.ClusterIPs {
		addIP(ip)
	}
	for _, ip := range info.ExternalIPs {
		addIP(ip)
	}
	for _, ip := range info.LoadBalancerIPs {
		addIP(ip)
	}
	// With no usable endpoint the port has no socket at all, so the kernel
	// refuses TCP clients at once (RST) and answers UDP with port
	// unreachable, as kube-proxy's REJECT rules do. The addresses stay, so
	// the refusal comes from this host rather than from wherever the
	// default route leads.
	if len(w.endpoints) == 0 {
		return w
	}
	addListen := func(ap netip.AddrPort) {
		if !slices.Contains(w.listen, ap) {
			w.listen = append(w.listen, ap)
		}
	}
	for _, ip := range w.ips {
		addListen(netip.AddrPortFrom(ip, uint16(info.Port)))
	}
	if info.NodePort > 0 {
		for _, ip := range p.nodeAddrs {
			addListen(netip.AddrPortFrom(ip, uint16(info.NodePort)))
		}
	}
	return w
}

// shrink closes listeners and releases addresses that w no longer wants,
// updates the balancer, and drops a service port that is gone.
func (p *Proxier) shrink(spn proxy.ServicePortName, w want) {
	sp := p.ports[spn]
	if sp == nil {
		return
	}
	sp.lb.update(w.endpoints, stickyTTL(w.info))
	sp.endpoints = w.endpoints
	for ap, l := range sp.listeners {
		if !slices.Contains(w.listen, ap) {
			l.close()
			delete(sp.listeners, ap)
			sp.log.Info("closed service listener", "listen", listenString(ap, sp.name.Protocol))
		}
	}
	for _, l := range sp.listeners {
		l.endpointsChanged(w.endpoints)
	}
	kept := sp.ensured[:0]
	for _, ip := range sp.ensured {
		if slices.Contains(w.ips, ip) {
			kept = append(kept, ip)
			continue
		}
		if err := p.addrs.Release(ip); err != nil {
			sp.log.Warn("release service address", "ip", ip.String(), "err", err)
		}
	}
	sp.ensured = kept
	for _, ep := range sp.known {
		if !slices.Contains(w.known, ep) || w.info == nil {
			p.metrics.forget(spn, ep.String())
		}
	}
	sp.known = w.known
	if w.info == nil {
		for _, ep := range w.known {
			p.metrics.forget(spn, ep.String())
		}
		delete(p.ports, spn)
	}
}

// grow ensures addresses and opens listeners that w wants and the service
// port lacks, counting consecutive failed attempts in the port's failures.
func (p *Proxier) grow(spn proxy.ServicePortName, w want) {
	sp := p.ports[spn]
	if sp == nil {
		sp = &servicePort{
			name:      spn,
			log:       p.log.With("service", spn.String()),
			lb:        newBalancer(nil),
			listeners: map[netip.AddrPort]listener{},
		}
		sp.lb.update(w.endpoints, stickyTTL(w.info))
		sp.endpoints = w.endpoints
		sp.known = w.known
		p.ports[spn] = sp
	}
	ok := true
	// A failure repeating every retry is logged once at error level.
	lvl := slog.LevelError
	if sp.failures > 0 {
		lvl = slog.LevelDebug
	}
	ctx := context.Background()
	for _, ip := range w.ips {
		if slices.Contains(sp.ensured, ip) {
			continue
		}
		if err := p.addrs.Ensure(ip); err != nil {
			sp.log.Log(ctx, lvl, "make service address local", "ip", ip.String(), "err", err)
			ok = false
			continue
		}
		sp.ensured = append(sp.ensured, ip)
	}
	for _, ap := range w.listen {
		if _, open := sp.listeners[ap]; open {
			continue
		}
		if slices.Contains(w.ips, ap.Addr()) && !slices.Contains(sp.ensured, ap.Addr()) {
			continue // its address is not local yet; already counted as a failure
		}
		l, err := p.listen(sp, ap)
		if err != nil {
			sp.log.Log(ctx, lvl, "open service listener", "listen", listenString(ap, spn.Protocol), "err", err)
			ok = false
			continue
		}
		sp.listeners[ap] = l
		sp.opens++
		sp.log.Info("opened service listener", "listen", listenString(ap, spn.Protocol))
	}
	if ok {
		sp.failures = 0
	} else {
		sp.failures++
	}
}

func (p *Proxier) listen(sp *servicePort, ap netip.AddrPort) (listener, error) {
	switch sp.name.Protocol {
	case v1.ProtocolTCP:
		return p.listenTCP(sp, ap)
	case v1.ProtocolUDP:
		return p.listenUDP(sp, ap)
	}
	return nil, fmt.Errorf("protocol %s not supported", sp.name.Protocol)
}

// shutdown closes every listener and releases every address; Run calls it
// after the sync loop has stopped.
func (p *Proxier) shutdown() {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	p.stopped = true
	for spn, sp := range p.ports {
		for _, l := range sp.listeners {
			l.close()
		}
		for _, ip := range sp.ensured {
			if err := p.addrs.Release(ip); err != nil {
				sp.log.Warn("release service address", "ip", ip.String(), "err", err)
			}
		}
		delete(p.ports, spn)
	}
	p.stateMu.Lock()
	clear(p.status)
	p.generation++
	close(p.synced)
	p.synced = make(chan struct{})
	p.stateMu.Unlock()
}

func stickyTTL(info *proxy.ServicePortInfo) time.Duration {
	if info == nil {
		return 0
	}
	return info.StickyMaxAge
}

func listenString(ap netip.AddrPort, proto v1.Protocol) string {
	return ap.String() + "/" + string(proto)
}
