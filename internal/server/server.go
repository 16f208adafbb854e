// Package server wires berth's components into the one process `berth
// server` runs: storage (embedded or external etcd), the API server, the
// controllers, the node agent and the proxy. Every component but storage and
// the API server is a client of the API through client-go, as it would be
// against a real Kubernetes cluster.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/berth-project/berth/internal/agent/network"
	"github.com/berth-project/berth/internal/alloc"
	"github.com/berth-project/berth/internal/apiserver"
	"github.com/berth-project/berth/internal/pki"
	"github.com/berth-project/berth/internal/registry"
	"github.com/berth-project/berth/internal/registry/service"
	"github.com/berth-project/berth/internal/storage"
	"github.com/berth-project/berth/internal/storage/etcd"
	"github.com/berth-project/berth/internal/version"
)

// Config is everything `berth server` can be told.
type Config struct {
	DataDir     string
	EtcdServers []string
	// EtcdPrefix separates berth's keys from others in a shared etcd.
	EtcdPrefix  string
	BindAddress string
	SecurePort  int

	// PodNetwork is auto, netns or loopback; it also picks the default
	// address ranges (10.x in netns mode, 127.x in loopback mode).
	PodNetwork    string
	PodCIDR       string
	ServiceCIDR   string
	NodePortRange string
	// LBPool is where LoadBalancer IPs come from (CIDRs or start-end ranges).
	LBPool string
	// NodePortAddresses are the IPs NodePorts listen on.
	NodePortAddresses []string
	ProxyMode         string
	// NodeName is the name of the local node (default: the hostname).
	NodeName string
	// AgentBindAddress and AgentPort are where the node agent serves logs,
	// exec and port-forward to the API server (port 0: any free port).
	AgentBindAddress string
	AgentPort        int
	// RestartBackoffBase and RestartBackoffMax bound the agent's
	// crash-loop back-off (kubelet: 10s doubling to 5m).
	RestartBackoffBase time.Duration
	RestartBackoffMax  time.Duration

	// Disable names components not to run: controllers, scheduler, agent,
	// proxy.
	Disable []string

	// CompactionInterval is how often old revisions are compacted.
	CompactionInterval time.Duration

	Logger *slog.Logger
	// Started, when set, is called once the API server answers, with the
	// path of the admin kubeconfig.
	Started func(kubeconfig string)
}

// DefaultDataDir is /var/lib/berth for root, else $XDG_DATA_HOME/berth or
// ~/.local/share/berth.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/berth"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "berth")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "berth")
	}
	return filepath.Join(os.TempDir(), "berth")
}

func (c *Config) defaults() error {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if c.EtcdPrefix == "" {
		c.EtcdPrefix = "/berth"
	}
	if !strings.HasPrefix(c.EtcdPrefix, "/") {
		return fmt.Errorf("--etcd-prefix %q must start with /", c.EtcdPrefix)
	}
	if c.BindAddress == "" {
		c.BindAddress = "127.0.0.1"
	}
	if net.ParseIP(c.BindAddress) == nil {
		return fmt.Errorf("--bind-address %q is not an IP address", c.BindAddress)
	}
	if c.SecurePort == 0 {
		c.SecurePort = 6443
	}
	if c.SecurePort < 1 || c.SecurePort > 65535 {
		return fmt.Errorf("--secure-port %d is not between 1 and 65535", c.SecurePort)
	}
	mode, err := network.ResolveMode(c.PodNetwork)
	if err != nil {
		return fmt.Errorf("--pod-network: %w", err)
	}
	c.PodNetwork = mode
	defaults := rangeDefaults[mode]
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = defaults.serviceCIDR
	}
	if c.LBPool == "" {
		c.LBPool = defaults.lbPool
	}
	if len(c.NodePortAddresses) == 0 {
		c.NodePortAddresses = []string{"127.0.0.1"}
	}
	if c.AgentBindAddress == "" {
		c.AgentBindAddress = "127.0.0.1"
	}
	if c.AgentPort < 0 || c.AgentPort > 65535 {
		return fmt.Errorf("--agent-port %d is not between 0 and 65535", c.AgentPort)
	}
	if c.RestartBackoffBase <= 0 {
		c.RestartBackoffBase = defaultBackoffBase
	}
	if c.RestartBackoffMax <= 0 {
		c.RestartBackoffMax = defaultBackoffMax
	}
	if c.RestartBackoffMax < c.RestartBackoffBase {
		c.RestartBackoffMax = c.RestartBackoffBase
	}
	if c.ProxyMode == "" {
		c.ProxyMode = "userspace"
	}
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--node-name is required: cannot read the hostname: %w", err)
		}
		c.NodeName = strings.ToLower(h)
	}
	if c.NodePortRange == "" {
		c.NodePortRange = "30000-32767"
	}
	if c.CompactionInterval == 0 {
		c.CompactionInterval = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for _, d := range c.Disable {
		if !knownComponents[d] {
			return fmt.Errorf("--disable %q: components are controllers, scheduler, agent, proxy", d)
		}
	}
	return nil
}

// rangeDefaults are the documented address ranges per pod network mode: the
// Kubernetes-style private ranges with network namespaces, and 127.x ranges
// (which need no interface and never leave the machine) without.
var rangeDefaults = map[string]struct{ serviceCIDR, lbPool string }{
	network.ModeNetNS:    {serviceCIDR: "10.96.0.0/12", lbPool: "10.250.0.0/24"},
	network.ModeLoopback: {serviceCIDR: "127.96.0.0/16", lbPool: "127.250.0.0/24"},
}

var knownComponents = map[string]bool{"controllers": true, "scheduler": true, "agent": true, "proxy": true}

func (c *Config) enabled(component string) bool {
	for _, d := range c.Disable {
		if d == component {
			return false
		}
	}
	return true
}

// Run starts everything and blocks until ctx is done or a component fails.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	log := cfg.Logger
	start := time.Now()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w (choose another with --data-dir)", cfg.DataDir, err)
	}

	store, closeStore, err := openStorage(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := newGroup(ctx, log)
	g.Go("etcd-compactor", func(ctx context.Context) error {
		store.RunCompactor(ctx, cfg.CompactionInterval)
		return nil
	})

	ipRange, err := alloc.ParseIPRange(cfg.ServiceCIDR)
	if err != nil {
		return fmt.Errorf("--service-cidr: %w", err)
	}
	portRange, err := alloc.ParsePortRange(cfg.NodePortRange)
	if err != nil {
		return fmt.Errorf("--service-node-port-range: %w", err)
	}
	allocPrefix := cfg.EtcdPrefix + "/allocations"
	svcCfg := service.Config{
		ClusterIPs:     alloc.New(store, allocPrefix+"/serviceips/"+strings.ReplaceAll(ipRange.String(), "/", "_"), ipRange, ipRange.StaticSize()),
		ClusterIPRange: ipRange,
		NodePorts:      alloc.New(store, allocPrefix+"/servicenodeports", portRange, 0),
		Logger:         log,
	}
	reg, err := registry.New(registry.Config{Storage: store, Prefix: cfg.EtcdPrefix + "/registry", Kinds: kinds(svcCfg), Logger: log})
	if err != nil {
		return err
	}
	if err := ensureNamespaces(ctx, reg); err != nil {
		return err
	}
	services := reg.Store(corev1.SchemeGroupVersion.WithResource("services").GroupResource())
	repair := &alloc.Repair{
		Allocators: []*alloc.Allocator{svcCfg.ClusterIPs, svcCfg.NodePorts},
		Owners:     func(ctx context.Context) (map[string]bool, error) { return serviceOwners(ctx, services) },
		Logger:     log,
	}
	g.Go("allocation-repair", func(ctx context.Context) error { repair.Run(ctx); return nil })

	hostname, _ := os.Hostname()
	hosts := []string{"localhost", "127.0.0.1", cfg.BindAddress, hostname}
	bundle, err := pki.Ensure(filepath.Join(cfg.DataDir, "pki"), hosts)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	adminPair, err := tls.X509KeyPair(bundle.AdminCert, bundle.AdminKey)
	if err != nil {
		return fmt.Errorf("admin credentials: %w", err)
	}
	nodes := reg.Store(corev1.SchemeGroupVersion.WithResource("nodes").GroupResource())
	addr := net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.SecurePort))
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	api, err := apiserver.New(apiserver.Config{
		Metrics:   promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}),
		Nodes:     newNodeConnector(nodes, adminPair),
		Registry:  reg,
		Serving:   bundle.Serving,
		ClientCAs: bundle.ClientPool(),
		Address:   addr,
		Ready: func(ctx context.Context) error {
			_, err := store.Revision(ctx)
			return err
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another berth server running? pick another --secure-port)", addr, err)
	}
	g.Go("apiserver", func(ctx context.Context) error { return api.Serve(ctx, ln, nil) })

	loopHost := cfg.BindAddress
	if ip := net.ParseIP(loopHost); ip.IsUnspecified() {
		loopHost = "127.0.0.1"
	}
	server := "https://" + net.JoinHostPort(loopHost, strconv.Itoa(cfg.SecurePort))
	kubeconfig := filepath.Join(cfg.DataDir, "kubeconfig")
	if err := bundle.WriteKubeconfig(kubeconfig, server, "berth"); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	restCfg := &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: bundle.CAPEM, CertData: bundle.AdminCert, KeyData: bundle.AdminKey,
		},
		UserAgent: "berth-server/" + version.Berth,
		QPS:       200, Burst: 400,
	}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("build loopback client: %w", err)
	}
	if err := waitReady(ctx, client); err != nil {
		return err
	}
	log.Info("berth API server ready", "address", addr, "kubeconfig", kubeconfig, "startup", time.Since(start).Round(time.Millisecond).String())
	if cfg.Started != nil {
		cfg.Started(kubeconfig)
	}
	fail := func(err error) error {
		cancel()
		_ = g.Wait()
		return err
	}
	if cfg.enabled("controllers") {
		if err := startControllers(g, cfg, client, restCfg, log); err != nil {
			return fail(err)
		}
	}
	if cfg.enabled("agent") {
		if err := startAgent(g, cfg, client, bundle); err != nil {
			return fail(err)
		}
	}
	if cfg.enabled("proxy") {
		if err := startProxy(g, cfg, client, metrics, log); err != nil {
			return fail(err)
		}
	}
	return g.Wait()
}

func openStorage(ctx context.Context, cfg Config) (*etcd.Store, func(), error) {
	if len(cfg.EtcdServers) > 0 {
		c, err := etcd.Dial(ctx, etcd.ExternalConfig{Endpoints: cfg.EtcdServers}, cfg.Logger)
		if err != nil {
			return nil, nil, fmt.Errorf("--etcd-servers: %w", err)
		}
		return etcd.New(c, cfg.Logger), func() { _ = c.Close() }, nil
	}
	e, err := etcd.StartEmbedded(ctx, etcd.EmbeddedConfig{Dir: filepath.Join(cfg.DataDir, "etcd")})
	if err != nil {
		return nil, nil, err
	}
	return etcd.New(e.Client(), cfg.Logger), e.Close, nil
}

// serviceOwners lists the allocation owners of every Service.
func serviceOwners(ctx context.Context, services *registry.Store) (map[string]bool, error) {
	list, err := services.List(ctx, "", registry.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, s := range list.(*corev1.ServiceList).Items {
		out[service.Owner(&s)] = true
	}
	return out, nil
}

// ensureNamespaces creates the namespaces Kubernetes always has.
func ensureNamespaces(ctx context.Context, reg *registry.Registry) error {
	ns := reg.Store(corev1.SchemeGroupVersion.WithResource("namespaces").GroupResource())
	for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		_, err := ns.Create(ctx, "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, registry.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
	}
	return nil
}

func waitReady(ctx context.Context, client kubernetes.Interface) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("API server did not become ready: %w", errors.Join(err, ctx.Err()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Storage is the interface the server's parts share; re-exported for tests.
type Storage = storage.Interface
