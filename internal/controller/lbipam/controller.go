package lbipam

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

const (
	// ReasonAllocationFailed is the Event reason when a Service gets no
	// address; MetalLB uses the same.
	ReasonAllocationFailed = "AllocationFailed"
	// ReasonIPAllocated is the Event reason when a Service gets its address.
	ReasonIPAllocated = "IPAllocated"

	eventComponent = "berth-lb-ipam"
)

// Config configures a Controller.
type Config struct {
	// Client talks to the Kubernetes API.
	Client kubernetes.Interface
	// Pool holds the addresses to hand out; see ParsePool.
	Pool *Pool
	// LoadBalancerClass, if set, is a spec.loadBalancerClass this controller
	// serves besides Services that name no class. Services naming any other
	// class belong to another implementation and are left alone.
	LoadBalancerClass string
	// Logger receives the controller's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Controller allocates LoadBalancer addresses and writes them to Service
// status.
type Controller struct {
	client  kubernetes.Interface
	logger  *slog.Logger
	klogger klog.Logger
	pool    *Pool
	class   string

	serviceInformer cache.SharedIndexInformer
	serviceLister   corelisters.ServiceLister

	alloc  *allocator
	events *eventRecorder

	// pending holds keys of Services that wait for an address; they are
	// retried whenever an address is released.
	pendingMu sync.Mutex
	pending   map[string]struct{} // protected by pendingMu

	// queue holds namespace/name keys of Services; created by Run.
	queue workqueue.TypedRateLimitingInterface[string]

	running atomic.Bool
}

// New builds a Controller on the Service informer of factory. Call it
// before factory.Start; nothing runs until Run.
func New(cfg Config, factory informers.SharedInformerFactory) (*Controller, error) {
	if cfg.Client == nil {
		return nil, errors.New("lb ipam: Config.Client is nil")
	}
	if cfg.Pool == nil || len(cfg.Pool.ranges) == 0 {
		return nil, errors.New("lb ipam: Config.Pool is empty; parse one with ParsePool")
	}
	if factory == nil {
		return nil, errors.New("lb ipam: informer factory is nil")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("controller", "lbipam")
	services := factory.Core().V1().Services()
	return &Controller{
		client:          cfg.Client,
		logger:          logger,
		klogger:         logr.FromSlogHandler(logger.Handler()),
		pool:            cfg.Pool,
		class:           cfg.LoadBalancerClass,
		serviceInformer: services.Informer(),
		serviceLister:   services.Lister(),
		alloc:           newAllocator(cfg.Pool),
		events:          &eventRecorder{},
		pending:         map[string]struct{}{},
	}, nil
}

// Run allocates with workers parallel workers until ctx is done, then stops
// every goroutine it started and returns nil. Before the first allocation it
// takes over the addresses already published in Service status.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if workers < 1 {
		return fmt.Errorf("lb ipam: workers must be at least 1, got %d", workers)
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("lb ipam: already running")
	}
	defer c.running.Store(false)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	broadcaster.StartEventWatcher(func(e *v1.Event) {
		c.logger.Debug("event", "service", e.InvolvedObject.Namespace+"/"+e.InvolvedObject.Name, "reason", e.Reason, "message", e.Message)
	})
	c.events.set(broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: eventComponent}))
	defer func() {
		c.events.set(nil)
		broadcaster.Shutdown()
	}()

	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "lbipam"},
	)
	reg, err := c.serviceInformer.AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, cur any) { c.enqueue(cur) },
		DeleteFunc: c.enqueue,
	}, cache.HandlerOptions{Logger: &c.klogger})
	if err != nil {
		c.queue.ShutDown()
		return fmt.Errorf("lb ipam: add service event handler: %w", err)
	}
	defer func() { _ = c.serviceInformer.RemoveEventHandler(reg) }()

	c.logger.Info("starting controller", "workers", workers, "pool", c.pool.String(), "size", c.pool.Size())
	defer c.logger.Info("stopped controller")
	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		c.queue.ShutDown()
		return nil
	}
	// Workers start only after this, so no new allocation can take an
	// address that an existing Service already shows.
	c.rebuild()

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c.processNextItem(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return nil
}

// rebuild claims for each Service the pool address its status already
// shows. Where two Services show the same address (two allocators raced, or
// a status was edited by hand) the older Service keeps it and the newer one
// is given another when it is synced.
func (c *Controller) rebuild() {
	svcs, err := c.serviceLister.List(labels.Everything())
	if err != nil {
		c.logger.Error("list services to rebuild allocations", "err", err)
		return
	}
	slices.SortFunc(svcs, func(a, b *v1.Service) int {
		return cmp.Or(a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time),
			cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	claimed := 0
	for _, svc := range svcs {
		if !c.serves(svc) {
			continue
		}
		key := svc.Namespace + "/" + svc.Name
		for _, ip := range c.statusIPs(svc) {
			err := c.alloc.claim(key, ip)
			if err == nil {
				claimed++
				break
			}
			c.logger.Warn("address in status already taken, service will get another", "service", key, "ip", ip.String(), "err", err)
		}
	}
	c.logger.Info("rebuilt allocations from service status", "allocated", claimed)
}

func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		c.logger.Error("key for service", "err", err)
		return
	}
	c.queue.Add(key)
}

func (c *Controller) processNextItem(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.syncService(ctx, key); err != nil {
		// Never dropped: a Service left without its address is worse than
		// a retry every ~16 minutes at the back-off's cap.
		c.logger.Info("sync failed, retrying", "service", key, "err", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// serves reports whether svc is a LoadBalancer this controller answers for.
func (c *Controller) serves(svc *v1.Service) bool {
	if svc.Spec.Type != v1.ServiceTypeLoadBalancer || svc.DeletionTimestamp != nil {
		return false
	}
	return svc.Spec.LoadBalancerClass == nil || (c.class != "" && *svc.Spec.LoadBalancerClass == c.class)
}

// statusIPs returns the pool addresses in svc's status.
func (c *Controller) statusIPs(svc *v1.Service) []netip.Addr {
	var out []netip.Addr
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(ing.IP); err == nil && c.pool.Contains(ip) {
			out = append(out, ip)
		}
	}
	return out
}

// syncService gives one Service its address, or takes it back.
func (c *Controller) syncService(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("split service key %q: %w", key, err)
	}
	svc, err := c.serviceLister.Services(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		c.setPending(key, false)
		c.releaseFor(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get service %s from cache: %w", key, err)
	}

	if !c.serves(svc) {
		c.setPending(key, false)
		c.releaseFor(key)
		// A Service that stopped being a LoadBalancer must not go on showing
		// our address. One of another class keeps whatever its own
		// controller wrote.
		if svc.Spec.Type != v1.ServiceTypeLoadBalancer && svc.DeletionTimestamp == nil && len(c.statusIPs(svc)) > 0 {
			return c.writeStatus(ctx, svc, netip.Addr{})
		}
		return nil
	}

	ip, reason := c.allocate(key, svc)
	if reason != "" {
		c.setPending(key, true)
		c.logger.Info("no address for service", "service", key, "reason", reason)
		c.events.Event(svc, v1.EventTypeWarning, ReasonAllocationFailed, reason)
		// The address it showed, if any, is no longer its own.
		if len(svc.Status.LoadBalancer.Ingress) > 0 {
			return c.writeStatus(ctx, svc, netip.Addr{})
		}
		return nil
	}
	c.setPending(key, false)
	if hasOnly(svc, ip) {
		return nil
	}
	if err := c.writeStatus(ctx, svc, ip); err != nil {
		return err
	}
	c.logger.Info("assigned address", "service", key, "ip", ip.String())
	c.events.Eventf(svc, v1.EventTypeNormal, ReasonIPAllocated, "Assigned IP [%q]", ip.String())
	return nil
}

// allocate finds svc's address. On failure it returns a reason for the
// user instead.
func (c *Controller) allocate(key string, svc *v1.Service) (netip.Addr, string) {
	if fams := svc.Spec.IPFamilies; len(fams) > 0 && !slices.Contains(fams, v1.IPv4Protocol) {
		c.releaseFor(key)
		return netip.Addr{}, fmt.Sprintf("service is %s only, but the pool %s has IPv4 addresses only", fams[0], c.pool)
	}
	if req := svc.Spec.LoadBalancerIP; req != "" {
		// The address asked for, or none: a different address than the one
		// asked for would break whoever relies on it.
		ip, err := netip.ParseAddr(req)
		if err != nil || !ip.Is4() {
			c.releaseFor(key)
			return netip.Addr{}, fmt.Sprintf("spec.loadBalancerIP %q is not an IPv4 address", req)
		}
		if cur, ok := c.alloc.get(key); ok && cur != ip {
			c.releaseFor(key)
		}
		switch err := c.alloc.claim(key, ip); {
		case err == nil:
			return ip, ""
		case errors.Is(err, errNotInPool):
			return netip.Addr{}, fmt.Sprintf("requested IP %s is not in the pool %s", ip, c.pool)
		default:
			return netip.Addr{}, fmt.Sprintf("requested IP %s is %v", ip, err)
		}
	}
	if cur, ok := c.alloc.get(key); ok {
		return cur, ""
	}
	// Adopt an address the status already shows if it is still free: one we
	// wrote before the Service was last seen, e.g. across a restart.
	for _, ip := range c.statusIPs(svc) {
		if c.alloc.claim(key, ip) == nil {
			return ip, ""
		}
	}
	ip, err := c.alloc.next(key)
	if err != nil {
		return netip.Addr{}, fmt.Sprintf("no available IPs in the pool %s (%d addresses, all in use)", c.pool, c.pool.Size())
	}
	return ip, ""
}

// releaseFor frees key's address and retries the Services that wait for one.
func (c *Controller) releaseFor(key string) {
	ip, ok := c.alloc.release(key)
	if !ok {
		return
	}
	c.logger.Info("released address", "service", key, "ip", ip.String())
	c.pendingMu.Lock()
	waiting := make([]string, 0, len(c.pending))
	for k := range c.pending {
		if k != key {
			waiting = append(waiting, k)
		}
	}
	c.pendingMu.Unlock()
	for _, k := range waiting {
		c.queue.Add(k)
	}
}

func (c *Controller) setPending(key string, pending bool) {
	c.pendingMu.Lock()
	defer c.pendingMu.Unlock()
	if pending {
		c.pending[key] = struct{}{}
	} else {
		delete(c.pending, key)
	}
}

// hasOnly reports whether svc's status shows exactly ip. An unset ipMode
// counts as VIP, its documented default, so that a server that does not
// store the field causes no write loop.
func hasOnly(svc *v1.Service, ip netip.Addr) bool {
	ing := svc.Status.LoadBalancer.Ingress
	if len(ing) != 1 || ing[0].IP != ip.String() || ing[0].Hostname != "" || len(ing[0].Ports) != 0 {
		return false
	}
	return ing[0].IPMode == nil || *ing[0].IPMode == v1.LoadBalancerIPModeVIP
}

// writeStatus sets svc's load balancer status to ip, or empties it when ip is
// the zero Addr, through the status subresource.
func (c *Controller) writeStatus(ctx context.Context, svc *v1.Service, ip netip.Addr) error {
	upd := svc.DeepCopy()
	upd.Status.LoadBalancer = v1.LoadBalancerStatus{}
	if ip.IsValid() {
		mode := v1.LoadBalancerIPModeVIP
		upd.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: ip.String(), IPMode: &mode}}
	}
	if _, err := c.client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // deleted meanwhile; the delete event releases the address
		}
		return fmt.Errorf("update load balancer status of service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}
