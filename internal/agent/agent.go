package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/berth-project/berth/internal/agent/network"
	"github.com/berth-project/berth/internal/agent/podspec"
	"github.com/berth-project/berth/internal/agent/probe"
	"github.com/berth-project/berth/internal/agent/runtime"
	"github.com/berth-project/berth/internal/agent/server"
)

// EndpointAnnotation on the Node holds the agent API's base URL,
// https://<address>:<port>, for the API server to relay logs, exec and
// port-forward to.
const EndpointAnnotation = "berth.dev/agent-endpoint"

// ShimSubcommand is the hidden berth subcommand that must call
// runtime.ShimMain with the arguments after it.
const ShimSubcommand = "__shim"

// Defaults for Config.
const (
	DefaultPort              = 10250
	DefaultLogMaxBytes       = 10 << 20
	DefaultLogMaxFiles       = 5
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultMaxPods           = 110
	housekeepingInterval     = time.Minute
	statusMinInterval        = 200 * time.Millisecond
	finishedMemory           = 5 * time.Minute
)

// Config configures an Agent.
type Config struct {
	// Client talks to the API server; required.
	Client kubernetes.Interface
	// NodeName is the Node this agent registers and runs Pods for; required.
	NodeName string
	// StateDir holds the agent's state: container logs in logs/, and, when
	// New creates them, the runtime's containers/ and the network's
	// network/. It must survive restarts for adoption to work. Required,
	// absolute.
	StateDir string

	// Runtime runs the containers; nil creates one in StateDir/containers
	// that re-executes BerthPath with ShimSubcommand.
	Runtime *runtime.Runtime
	// Network gives Pods their addresses; nil creates one in
	// StateDir/network with NetworkMode, PodCIDR and BridgeName.
	Network     *network.Network
	NetworkMode string
	PodCIDR     string
	BridgeName  string

	// BerthPath is the absolute path of the berth binary (the shim and the
	// built-in images run it); "" means os.Executable().
	BerthPath string
	// NodeIP is the node's InternalIP and the Pods' hostIP; nil means the
	// network's host address (127.0.0.1 in loopback mode, the bridge
	// gateway in netns mode).
	NodeIP net.IP

	// BindAddress and Port are where the agent API listens ("" means
	// 127.0.0.1; Port 0 picks a free port, which is then advertised).
	BindAddress string
	Port        int
	// ServingCert is the agent API's certificate; nil makes a self-signed
	// one.
	ServingCert *tls.Certificate
	// ClientCAs verifies the client certificates of agent API requests (the
	// cluster CA, whose admin certificate the API server presents);
	// required.
	ClientCAs *x509.CertPool

	// LogMaxBytes and LogMaxFiles rotate container logs (defaults 10 MiB,
	// 5 files).
	LogMaxBytes int64
	LogMaxFiles int
	// BackOffBase and BackOffMax shape the crash-loop back-off (defaults
	// 10s and 5m, the kubelet's).
	BackOffBase time.Duration
	BackOffMax  time.Duration
	// HeartbeatInterval is how often the Node's conditions are refreshed
	// (default 10s).
	HeartbeatInterval time.Duration
	// MaxPods is the Node's pods capacity (default 110).
	MaxPods int
	// ProcessEnv is what every container's environment starts from; nil
	// means PATH and HOME from the agent's own environment.
	ProcessEnv []string

	Logger *slog.Logger
}

// Agent is a running node agent.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	client kubernetes.Interface
	rt     *runtime.Runtime
	net    *network.Network
	ownNet bool
	// ownRT is the runtime New made (nil when one was given), closed
	// when Run ends.
	ownRT      *runtime.Runtime
	nodeIP     net.IP
	logDir     string
	prober     *probe.Prober
	resolver   podspec.Resolver
	root       bool
	uid        int64
	processEnv []string

	recorder record.EventRecorder
	lister   corelisters.PodLister
	services corelisters.ServiceLister // every namespace's, for service links
	svcSync  cache.InformerSynced
	// lease is the node Lease as last written, and leaseFailed says the
	// last renewal failed (and was logged). Used by the heartbeat goroutine
	// only, and before it by registerNode.
	lease       *coordinationv1.Lease
	leaseFailed bool
	endpoint    string // advertised agent API URL

	mu       sync.Mutex // guards workers, finished, adopt, runCtx, stopping
	workers  map[types.UID]*podWorker
	finished map[types.UID]time.Time // pods whose worker is done, so late events do not revive it
	adopt    map[types.UID][]runtime.State
	runCtx   context.Context
	stopping bool
	workerWG sync.WaitGroup

	slices sliceCache // EndpointSlices, for draining terminating pods
}

// New checks cfg and prepares an Agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Client == nil {
		return nil, errors.New("agent: no API client")
	}
	if cfg.NodeName == "" {
		return nil, errors.New("agent: no node name")
	}
	if errs := validation.IsDNS1123Subdomain(cfg.NodeName); len(errs) > 0 {
		return nil, fmt.Errorf("agent: node name %q: %s", cfg.NodeName, strings.Join(errs, "; "))
	}
	if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("agent: state dir %q must be an absolute path", cfg.StateDir)
	}
	if cfg.ClientCAs == nil {
		return nil, errors.New("agent: no client CA to authenticate the API server with")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("agent: port %d is not between 0 and 65535", cfg.Port)
	}
	if cfg.BindAddress == "" {
		cfg.BindAddress = "127.0.0.1"
	}
	if net.ParseIP(cfg.BindAddress) == nil {
		return nil, fmt.Errorf("agent: bind address %q is not an IP address", cfg.BindAddress)
	}
	if cfg.LogMaxBytes == 0 {
		cfg.LogMaxBytes = DefaultLogMaxBytes
	}
	if cfg.LogMaxFiles == 0 {
		cfg.LogMaxFiles = DefaultLogMaxFiles
	}
	if cfg.LogMaxBytes < 0 || cfg.LogMaxFiles < 2 {
		return nil, fmt.Errorf("agent: container log rotation needs a positive size and at least 2 files (got %d bytes, %d files)", cfg.LogMaxBytes, cfg.LogMaxFiles)
	}
	if cfg.BackOffBase == 0 {
		cfg.BackOffBase = DefaultBackOffBase
	}
	if cfg.BackOffMax == 0 {
		cfg.BackOffMax = DefaultBackOffMax
	}
	if cfg.BackOffBase < 0 || cfg.BackOffMax < cfg.BackOffBase {
		return nil, fmt.Errorf("agent: back-off base %s and max %s: want 0 < base <= max", cfg.BackOffBase, cfg.BackOffMax)
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.MaxPods == 0 {
		cfg.MaxPods = DefaultMaxPods
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BerthPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("agent: find the berth binary: %w", err)
		}
		cfg.BerthPath = exe
	}
	if !filepath.IsAbs(cfg.BerthPath) {
		return nil, fmt.Errorf("agent: berth path %q is not absolute", cfg.BerthPath)
	}
	if cfg.ProcessEnv == nil {
		for _, k := range []string{"PATH", "HOME"} {
			if v := os.Getenv(k); v != "" {
				cfg.ProcessEnv = append(cfg.ProcessEnv, k+"="+v)
			}
		}
	}
	log := cfg.Logger.With("node", cfg.NodeName)
	a := &Agent{
		cfg: cfg, log: log, client: cfg.Client,
		rt: cfg.Runtime, net: cfg.Network,
		logDir:     filepath.Join(cfg.StateDir, "logs"),
		prober:     probe.NewProber(),
		resolver:   apiResolver{cfg.Client},
		root:       os.Geteuid() == 0,
		uid:        int64(os.Geteuid()),
		processEnv: cfg.ProcessEnv,
		workers:    map[types.UID]*podWorker{},
		finished:   map[types.UID]time.Time{},
	}
	if err := os.MkdirAll(a.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("agent: create log dir: %w", err)
	}
	if a.rt == nil {
		rt, err := runtime.New(runtime.Config{
			StateDir: filepath.Join(cfg.StateDir, "containers"),
			ShimPath: cfg.BerthPath, ShimArgs: []string{ShimSubcommand},
			Logger: log,
			// A pod start then skips the shim's own start-up.
			Prestart: true,
		})
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		a.rt, a.ownRT = rt, rt
	}
	if a.net == nil {
		n, err := network.New(network.Config{
			Mode: cfg.NetworkMode, PodCIDR: cfg.PodCIDR, BridgeName: cfg.BridgeName,
			StateDir: filepath.Join(cfg.StateDir, "network"), Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		a.net, a.ownNet = n, true
	}
	a.nodeIP = cfg.NodeIP
	if a.nodeIP == nil {
		a.nodeIP = a.net.HostIP()
	}
	return a, nil
}

// Run registers the node, serves the agent API and runs the node's Pods
// until ctx ends. Stopping leaves the Pods' processes running for the next
// Agent to adopt. It returns an error if it cannot start (the port is
// taken, the node cannot be registered before ctx ends) or the API server
// fails.
func (a *Agent) Run(ctx context.Context) error {
	if a.ownNet {
		defer a.net.Close()
	}
	if a.ownRT != nil {
		a.ownRT.Warm()
		defer a.ownRT.Close()
	}
	defer a.prober.Close()
	addr := net.JoinHostPort(a.cfg.BindAddress, strconv.Itoa(a.cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("agent API: listen on %s: %w (pick another --agent-port, or 0 for any)", addr, err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	host := a.cfg.BindAddress
	if ip := net.ParseIP(host); ip.IsUnspecified() {
		host = a.nodeIP.String()
	}
	a.mu.Lock()
	a.endpoint = "https://" + net.JoinHostPort(host, strconv.Itoa(port))
	a.mu.Unlock()

	cert := a.cfg.ServingCert
	if cert == nil {
		hostname, _ := os.Hostname()
		c, err := server.SelfSigned("berth-agent@"+a.cfg.NodeName, []string{host, a.nodeIP.String(), "127.0.0.1", "localhost", hostname, a.cfg.NodeName})
		if err != nil {
			return err
		}
		cert = &c
	}
	srv, err := server.New(server.Config{Backend: a, Certificate: *cert, ClientCAs: a.cfg.ClientCAs, Logger: a.log})
	if err != nil {
		return err
	}

	states, err := a.rt.List()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	adopt := map[types.UID][]runtime.State{}
	for _, st := range states {
		adopt[types.UID(st.Spec.PodUID)] = append(adopt[types.UID(st.Spec.PodUID)], st)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	a.adopt, a.runCtx, a.stopping = adopt, ctx, false
	a.mu.Unlock()

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	a.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: a.cfg.NodeName})

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	srvErr := make(chan error, 1)
	wg.Go(func() {
		if err := srv.Serve(ctx, ln); err != nil {
			srvErr <- err
			cancel()
		}
	})

	if err := a.registerNode(ctx, port); err != nil {
		return err
	}
	a.log.Info("node agent started", "endpoint", a.endpoint, "network", a.net.Mode(), "nodeIP", a.nodeIP, "adopting", len(states))
	wg.Go(func() { a.heartbeat(ctx, port) })

	factory := informers.NewSharedInformerFactoryWithOptions(a.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName).String()
		}))
	pods := factory.Core().V1().Pods()
	a.lister = pods.Lister()
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.podChanged(obj) },
		UpdateFunc: func(_, obj any) { a.podChanged(obj) },
		DeleteFunc: a.podDeleted,
	}); err != nil {
		return fmt.Errorf("agent: watch pods: %w", err)
	}
	// Service links are part of a container's environment: like the
	// kubelet, start no container before the Services were read once.
	svcFactory := informers.NewSharedInformerFactory(a.client, 0)
	services := svcFactory.Core().V1().Services()
	a.services, a.svcSync = services.Lister(), services.Informer().HasSynced
	factory.Start(ctx.Done())
	svcFactory.Start(ctx.Done())
	defer factory.Shutdown()
	defer svcFactory.Shutdown()
	defer a.stopWorkers()
	defer cancel() // workers stop on ctx, so cancel first
	if !cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced, services.Informer().HasSynced) {
		return a.runResult(ctx, srvErr)
	}
	a.housekeep(ctx)
	wg.Go(func() {
		t := time.NewTicker(housekeepingInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.housekeep(ctx)
			}
		}
	})
	<-ctx.Done()
	return a.runResult(ctx, srvErr)
}

func (a *Agent) runResult(ctx context.Context, srvErr <-chan error) error {
	select {
	case err := <-srvErr:
		return err
	default:
	}
	a.log.Info("node agent stopping; pods keep running", "err", context.Cause(ctx))
	return nil
}

// Endpoint returns the agent API's advertised base URL once Run has
// started listening, or "".
func (a *Agent) Endpoint() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.endpoint
}

// stopWorkers ends every pod worker without touching its containers.
func (a *Agent) stopWorkers() {
	a.mu.Lock()
	a.stopping = true
	a.mu.Unlock()
	a.workerWG.Wait()
}

func (a *Agent) podChanged(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != a.cfg.NodeName {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopping || a.runCtx == nil {
		return
	}
	if _, done := a.finished[pod.UID]; done {
		return
	}
	w := a.workers[pod.UID]
	if w == nil {
		w = newPodWorker(a, pod, a.adopt[pod.UID])
		delete(a.adopt, pod.UID)
		a.workers[pod.UID] = w
		a.workerWG.Add(1)
		go func() {
			defer a.workerWG.Done()
			w.run(a.runCtx)
		}()
	}
	w.update(pod, false)
}

func (a *Agent) podDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	a.mu.Lock()
	w := a.workers[pod.UID]
	a.mu.Unlock()
	if w != nil {
		w.update(pod, true)
	}
}

// workerDone forgets a worker whose Pod is gone and cleaned up.
func (a *Agent) workerDone(w *podWorker) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.workers[w.uid] == w {
		delete(a.workers, w.uid)
	}
	a.finished[w.uid] = time.Now()
}

// worker finds the worker of namespace/name, checking uid when given.
func (a *Agent) worker(ref server.PodRef) *podWorker {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.workers {
		if w.namespace == ref.Namespace && w.name == ref.Name && (ref.UID == "" || string(w.uid) == ref.UID) {
			return w
		}
	}
	return nil
}

// podLogDir is where the logs of a pod's containers go, as the kubelet lays
// them out: <ns>_<name>_<uid>/<container>/<attempt>.log.
func (a *Agent) podLogDir(namespace, name string, uid types.UID) string {
	return filepath.Join(a.logDir, namespace+"_"+name+"_"+string(uid))
}

// serviceLinks is the service-link environment of pod's containers, from
// the Services the agent has seen. Like the kubelet, it waits until the
// Services were read once: workers start on the first pod events, which can
// come before that.
func (a *Agent) serviceLinks(ctx context.Context, pod *corev1.Pod) map[string]string {
	if a.services == nil {
		return nil
	}
	if !a.svcSync() {
		err := wait.PollUntilContextCancel(ctx, 5*time.Millisecond, true, func(context.Context) (bool, error) { return a.svcSync(), nil })
		if err != nil {
			return nil
		}
	}
	// The Pod's namespace, and the default namespace's "kubernetes".
	list, err := a.services.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		a.log.Warn("list services for service links", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		return nil
	}
	if pod.Namespace != metav1.NamespaceDefault {
		if k, err := a.services.Services(metav1.NamespaceDefault).Get("kubernetes"); err == nil {
			list = append(list, k)
		}
	}
	return podspec.ServiceLinks(pod, list)
}
