package endpointslice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	esreconciler "k8s.io/endpointslice"
	esutil "k8s.io/endpointslice/util"
	"k8s.io/klog/v2"
)

const (
	// ControllerName is the value of the endpointslice.kubernetes.io/managed-by
	// label on the slices this controller owns. It is upstream's value, so
	// kube-proxy, CoreDNS and kubectl treat berth's slices as the usual ones.
	ControllerName = "endpointslice-controller.k8s.io"

	// DefaultMaxEndpointsPerSlice is kube-controller-manager's default for
	// --max-endpoints-per-slice.
	DefaultMaxEndpointsPerSlice = 100

	// maxEndpointsPerSliceLimit is the API's own limit on endpoints in a slice.
	maxEndpointsPerSliceLimit = 1000

	// maxRetries bounds how often a failing Service is requeued; with the
	// back-off below (1s doubling to 1000s) that is roughly an hour of tries.
	maxRetries = 15

	// sliceChangeMinSyncDelay batches the resyncs that changes to our slices
	// by somebody else trigger, as upstream does.
	sliceChangeMinSyncDelay = time.Second

	// staleRetriesBeforeVerify is how many times a sync waits for a slice
	// cache that looks stale before it asks the API (see verifyStale).
	staleRetriesBeforeVerify = 2

	defaultSyncBackOff = time.Second
	maxSyncBackOff     = 1000 * time.Second

	eventComponent = "endpoint-slice-controller"
)

// Config configures a Controller.
type Config struct {
	// Client talks to the Kubernetes API (berth's own server or a real one).
	Client kubernetes.Interface
	// MaxEndpointsPerSlice caps the endpoints in one slice; 0 means
	// DefaultMaxEndpointsPerSlice. At most 1000.
	MaxEndpointsPerSlice int32
	// BatchPeriod delays the syncs that Pod changes trigger so that a burst
	// of Pod changes results in one write; 0 syncs at once.
	BatchPeriod time.Duration
	// Logger receives the controller's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Controller maintains the EndpointSlices of Services that have a selector.
type Controller struct {
	client  kubernetes.Interface
	logger  *slog.Logger
	klogger klog.Logger

	serviceInformer cache.SharedIndexInformer
	podInformer     cache.SharedIndexInformer
	sliceInformer   cache.SharedIndexInformer
	nodeInformer    cache.SharedIndexInformer

	serviceLister corelisters.ServiceLister
	podLister     corelisters.PodLister
	sliceLister   discoverylisters.EndpointSliceLister

	// tracker remembers the generation of every slice this controller wrote,
	// so that the informer echoing our own writes does not cause a resync and
	// a sync on a cache that has not yet seen our writes is retried instead.
	tracker      *esutil.EndpointSliceTracker
	triggerTimes *esutil.TriggerTimeTracker
	reconciler   *esreconciler.Reconciler
	events       *eventRecorder

	batchPeriod time.Duration

	// queue holds namespace/name keys of Services to sync. Run creates it
	// before it registers the event handlers that fill it, and shuts it down
	// before it returns.
	queue workqueue.TypedRateLimitingInterface[string]

	// waiting holds the Services whose last sync found the slice cache
	// behind this controller's own writes. A slice event for one of them
	// queues it at once, since the cache may just have caught up, instead
	// of after the retry back-off (a second, as upstream), which would hold
	// a pod's readiness back from the proxies for that long.
	waitingMu sync.Mutex
	waiting   map[string]bool

	running atomic.Bool
}

// New builds a Controller on the Service, Pod, Node and EndpointSlice
// informers of factory. Call it before factory.Start, so that the factory
// starts those informers; nothing runs until Run.
func New(cfg Config, factory informers.SharedInformerFactory) (*Controller, error) {
	if cfg.Client == nil {
		return nil, errors.New("endpointslice controller: Config.Client is nil")
	}
	if factory == nil {
		return nil, errors.New("endpointslice controller: informer factory is nil")
	}
	maxPerSlice := cfg.MaxEndpointsPerSlice
	if maxPerSlice == 0 {
		maxPerSlice = DefaultMaxEndpointsPerSlice
	}
	if maxPerSlice < 1 || maxPerSlice > maxEndpointsPerSliceLimit {
		return nil, fmt.Errorf("endpointslice controller: MaxEndpointsPerSlice %d out of range 1..%d", cfg.MaxEndpointsPerSlice, maxEndpointsPerSliceLimit)
	}
	if cfg.BatchPeriod < 0 {
		return nil, fmt.Errorf("endpointslice controller: negative BatchPeriod %v", cfg.BatchPeriod)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("controller", "endpointslice")

	services := factory.Core().V1().Services()
	pods := factory.Core().V1().Pods()
	nodes := factory.Core().V1().Nodes()
	slices := factory.Discovery().V1().EndpointSlices()
	// Slices by namespace/service-name, so a sync reads its Service's slices
	// without going over every slice in the namespace (quadratic at startup
	// with thousands of Services).
	if err := slices.Informer().AddIndexers(cache.Indexers{serviceIndex: sliceServiceKey}); err != nil {
		return nil, fmt.Errorf("endpointslice controller: add index: %w", err)
	}

	c := &Controller{
		client:          cfg.Client,
		logger:          logger,
		klogger:         logr.FromSlogHandler(logger.Handler()),
		serviceInformer: services.Informer(),
		podInformer:     pods.Informer(),
		sliceInformer:   slices.Informer(),
		nodeInformer:    nodes.Informer(),
		serviceLister:   services.Lister(),
		podLister:       pods.Lister(),
		sliceLister:     slices.Lister(),
		tracker:         esutil.NewEndpointSliceTracker(),
		triggerTimes:    esutil.NewTriggerTimeTracker(),
		events:          &eventRecorder{},
		batchPeriod:     cfg.BatchPeriod,
	}
	// No topology cache: berth is one node, so topology hints would only add
	// work; the trafficDistribution field is still honoured by the reconciler.
	c.reconciler = esreconciler.NewReconciler(cfg.Client, nodes.Lister(), maxPerSlice, c.tracker, nil, c.events, ControllerName)
	return c, nil
}

// Run syncs EndpointSlices with workers parallel workers until ctx is done,
// then stops every goroutine it started and returns nil.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if workers < 1 {
		return fmt.Errorf("endpointslice controller: workers must be at least 1, got %d", workers)
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("endpointslice controller: already running")
	}
	defer c.running.Store(false)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	broadcaster.StartEventWatcher(func(e *v1.Event) {
		c.logger.Debug("event", "object", e.InvolvedObject.Namespace+"/"+e.InvolvedObject.Name, "reason", e.Reason, "message", e.Message)
	})
	c.events.set(broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: eventComponent}))
	defer func() {
		c.events.set(nil)
		broadcaster.Shutdown()
	}()

	c.queue = newQueue()
	handlers, err := c.addEventHandlers()
	defer handlers.remove()
	if err != nil {
		c.queue.ShutDown()
		return err
	}

	c.logger.Info("starting controller", "workers", workers)
	defer c.logger.Info("stopped controller")
	if !cache.WaitForCacheSync(ctx.Done(), handlers.synced...) {
		c.queue.ShutDown()
		return nil
	}
	c.enqueueOrphanedSlices()

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

func newQueue() workqueue.TypedRateLimitingInterface[string] {
	// Like upstream: a slow per-item back-off (1s, not the default 5ms)
	// because one sync can mean many slice writes, plus an overall bucket so
	// retries never flood the API server.
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedMaxOfRateLimiter(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](defaultSyncBackOff, maxSyncBackOff),
			&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
		),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "endpoint_slice"},
	)
}

// registrations are the event handlers Run added, removed again when it ends.
type registrations struct {
	remove func()
	synced []cache.InformerSynced
}

func (c *Controller) addEventHandlers() (registrations, error) {
	type added struct {
		informer cache.SharedIndexInformer
		reg      cache.ResourceEventHandlerRegistration
	}
	var regs []added
	r := registrations{remove: func() {
		for _, a := range regs {
			_ = a.informer.RemoveEventHandler(a.reg)
		}
	}}
	add := func(name string, inf cache.SharedIndexInformer, h cache.ResourceEventHandler) error {
		reg, err := inf.AddEventHandlerWithOptions(h, cache.HandlerOptions{Logger: &c.klogger})
		if err != nil {
			return fmt.Errorf("endpointslice controller: add %s event handler: %w", name, err)
		}
		regs = append(regs, added{inf, reg})
		r.synced = append(r.synced, reg.HasSynced)
		return nil
	}
	if err := add("service", c.serviceInformer, cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueService,
		UpdateFunc: func(_, cur any) { c.enqueueService(cur) },
		DeleteFunc: c.enqueueService,
	}); err != nil {
		return r, err
	}
	if err := add("pod", c.podInformer, cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onPodChange(nil, obj) },
		UpdateFunc: c.onPodChange,
		DeleteFunc: func(obj any) { c.onPodChange(obj, nil) },
	}); err != nil {
		return r, err
	}
	if err := add("endpointslice", c.sliceInformer, cache.ResourceEventHandlerFuncs{
		AddFunc:    c.onSliceAdd,
		UpdateFunc: c.onSliceUpdate,
		DeleteFunc: c.onSliceDelete,
	}); err != nil {
		return r, err
	}
	// The node informer has no handler (no topology hints), but the
	// reconciler reads nodes, so wait for its cache too.
	r.synced = append(r.synced, c.nodeInformer.HasSynced)
	return r, nil
}

func (c *Controller) processNextItem(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	c.handleErr(key, c.syncService(ctx, key))
	return true
}

func (c *Controller) handleErr(key string, err error) {
	if err == nil {
		c.setWaiting(key, false)
		c.queue.Forget(key)
		return
	}
	if c.queue.NumRequeues(key) < maxRetries {
		var stale *staleCacheError
		if errors.As(err, &stale) {
			c.logger.Debug("informer cache behind own writes, retrying", "service", key)
			c.setWaiting(key, true)
		} else {
			c.logger.Info("sync failed, retrying", "service", key, "err", err)
		}
		c.queue.AddRateLimited(key)
		return
	}
	c.logger.Error("sync failed, retry budget exhausted, dropping service", "service", key, "err", err)
	c.setWaiting(key, false)
	c.queue.Forget(key)
}

func (c *Controller) setWaiting(key string, on bool) {
	c.waitingMu.Lock()
	defer c.waitingMu.Unlock()
	if on {
		if c.waiting == nil {
			c.waiting = map[string]bool{}
		}
		c.waiting[key] = true
		return
	}
	delete(c.waiting, key)
}

// wakeWaiting queues the Service of s at once if its last sync waited for
// the slice cache.
func (c *Controller) wakeWaiting(s *discovery.EndpointSlice) {
	key, err := esreconciler.ServiceControllerKey(s)
	if err != nil {
		return
	}
	c.waitingMu.Lock()
	wake := c.waiting[key]
	delete(c.waiting, key)
	c.waitingMu.Unlock()
	if wake {
		c.queue.Add(key)
	}
}

// staleCacheError says the EndpointSlice cache has not yet caught up with
// writes this controller made; syncing on it would duplicate or lose slices.
type staleCacheError struct{ service string }

func (e *staleCacheError) Error() string {
	return fmt.Sprintf("endpointslice cache for service %s is older than this controller's own writes", e.service)
}

// serviceIndex indexes slices by "namespace/service-name".
const serviceIndex = "berth-service-name"

func sliceServiceKey(obj interface{}) ([]string, error) {
	s, ok := obj.(*discovery.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discovery.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// managedSlices returns the slices this controller owns for one Service,
// from the informer's index.
func (c *Controller) managedSlices(namespace, name string) ([]*discovery.EndpointSlice, error) {
	objs, err := c.sliceInformer.GetIndexer().ByIndex(serviceIndex, namespace+"/"+name)
	if err != nil {
		return nil, err
	}
	sel := managedSelector(name)
	var out []*discovery.EndpointSlice
	for _, o := range objs {
		if s, ok := o.(*discovery.EndpointSlice); ok && sel.Matches(labels.Set(s.Labels)) {
			out = append(out, s)
		}
	}
	return out, nil
}

// managedSelector selects the slices this controller owns for one Service.
func managedSelector(serviceName string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{
		discovery.LabelServiceName: serviceName,
		discovery.LabelManagedBy:   ControllerName,
	})
}

// syncService brings the slices of one Service to the state its Pods call for.
func (c *Controller) syncService(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("split service key %q: %w", key, err)
	}
	service, err := c.serviceLister.Services(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		// Upstream leaves this to the garbage collector, which deletes the
		// slices through their ownerReference to the Service. berth's API
		// server has no garbage collector, so delete them here; against a real
		// cluster the collector may win the race, and NotFound is fine.
		if err := c.deleteManagedSlices(ctx, namespace, name); err != nil {
			return err
		}
		c.forgetService(namespace, name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get service %s from cache: %w", key, err)
	}

	if service.Spec.Type == v1.ServiceTypeExternalName || service.Spec.Selector == nil {
		// Such Services get no slices from this controller: their slices are
		// made by hand through the API and must be left alone. Slices that
		// carry our managed-by label are ours from before the selector went
		// away, and would otherwise go on routing to the old Pods.
		if err := c.deleteManagedSlices(ctx, namespace, name); err != nil {
			return err
		}
		c.forgetService(namespace, name)
		return nil
	}

	pods, err := c.podLister.Pods(namespace).List(labels.Set(service.Spec.Selector).AsSelectorPreValidated())
	if err != nil {
		return fmt.Errorf("list pods for service %s: %w", key, err)
	}
	slices, err := c.managedSlices(namespace, name)
	if err != nil {
		return fmt.Errorf("list endpointslices for service %s: %w", key, err)
	}
	slices = dropPendingDeletion(slices)
	if c.tracker.StaleSlices(service, slices) {
		if slices, err = c.verifyStale(ctx, service); err != nil {
			return err
		}
	}

	// Computed even when the sync turns out to write nothing, so that the
	// tracker's idea of what it last saw stays current.
	triggerTime := c.triggerTimes.ComputeEndpointLastChangeTriggerTime(namespace, service, pods)
	if err := c.reconciler.Reconcile(c.klogger, service, pods, slices, triggerTime); err != nil {
		c.events.Eventf(service, v1.EventTypeWarning, "FailedToUpdateEndpointSlices",
			"Error updating Endpoint Slices for Service %s/%s: %v", namespace, name, err)
		return fmt.Errorf("reconcile endpointslices for service %s: %w", key, err)
	}
	return nil
}

// verifyStale is called when the slice cache looks older than our own
// writes. Usually the informer is just behind, and the sync is retried. But
// if a slice we wrote is deleted by somebody else between our write and our
// recording it, the deletion event comes first and the tracker goes on
// waiting for a slice that will never appear. So once the cache has looked
// stale for a few retries, the API decides: if even it is "behind" the
// tracker, the tracker is wrong, is reset, and the sync goes on with the
// slices the API lists.
func (c *Controller) verifyStale(ctx context.Context, service *v1.Service) ([]*discovery.EndpointSlice, error) {
	key := service.Namespace + "/" + service.Name
	if c.queue != nil && c.queue.NumRequeues(key) < staleRetriesBeforeVerify {
		return nil, &staleCacheError{service: key}
	}
	list, err := c.client.DiscoveryV1().EndpointSlices(service.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: managedSelector(service.Name).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list endpointslices of service %s from the API: %w", key, err)
	}
	live := make([]*discovery.EndpointSlice, 0, len(list.Items))
	for i := range list.Items {
		live = append(live, &list.Items[i])
	}
	live = dropPendingDeletion(live)
	if !c.tracker.StaleSlices(service, live) {
		return nil, &staleCacheError{service: key}
	}
	c.logger.Info("forgetting endpointslice writes the API no longer shows", "service", key)
	c.tracker.DeleteService(service.Namespace, service.Name)
	return live, nil
}

// deleteManagedSlices deletes the slices this controller made for a Service.
func (c *Controller) deleteManagedSlices(ctx context.Context, namespace, name string) error {
	slices, err := c.managedSlices(namespace, name)
	if err != nil {
		return fmt.Errorf("list endpointslices of service %s/%s: %w", namespace, name, err)
	}
	var errs []error
	for _, s := range dropPendingDeletion(slices) {
		c.tracker.ExpectDeletion(s)
		uid := s.UID
		err := c.client.DiscoveryV1().EndpointSlices(namespace).Delete(ctx, s.Name, metav1.DeleteOptions{
			// Only the object we saw: a slice recreated under the same name
			// in the meantime is somebody else's decision.
			Preconditions: &metav1.Preconditions{UID: &uid},
		})
		switch {
		case err == nil:
			c.logger.Debug("deleted endpointslice", "service", namespace+"/"+name, "endpointslice", s.Name)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		default:
			errs = append(errs, fmt.Errorf("delete endpointslice %s/%s of service %s: %w", namespace, s.Name, name, err))
		}
	}
	return errors.Join(errs...)
}

// forgetService drops what the trackers remember about a Service.
func (c *Controller) forgetService(namespace, name string) {
	c.triggerTimes.DeleteService(namespace, name)
	c.reconciler.DeleteService(namespace, name)
	c.tracker.DeleteService(namespace, name)
}

// enqueueOrphanedSlices queues the Services of our slices whose Service no
// longer exists, so slices left behind while berth was down are deleted.
// (Upstream needs no such pass: the garbage collector covers it.)
func (c *Controller) enqueueOrphanedSlices() {
	slices, err := c.sliceLister.List(labels.SelectorFromSet(labels.Set{discovery.LabelManagedBy: ControllerName}))
	if err != nil {
		c.logger.Error("list endpointslices for orphan check", "err", err)
		return
	}
	for _, s := range slices {
		key, err := esreconciler.ServiceControllerKey(s)
		if err != nil {
			continue
		}
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		if _, err := c.serviceLister.Services(ns).Get(name); apierrors.IsNotFound(err) {
			c.queue.Add(key)
		}
	}
}

func dropPendingDeletion(slices []*discovery.EndpointSlice) []*discovery.EndpointSlice {
	out := make([]*discovery.EndpointSlice, 0, len(slices))
	for _, s := range slices {
		if s.DeletionTimestamp == nil {
			out = append(out, s)
		}
	}
	return out
}

func (c *Controller) enqueueService(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		c.logger.Error("key for service", "err", err)
		return
	}
	c.queue.Add(key)
}

// onPodChange queues the Services whose endpoints a Pod change may affect:
// those selecting the Pod now and, when its labels changed, those that
// selected it before. old is nil for an add, cur is nil for a delete.
func (c *Controller) onPodChange(old, cur any) {
	// The helpers take untyped nils for "no such side".
	var key *esutil.PodProjectionKey
	switch {
	case old == nil:
		key = esutil.GetPodUpdateProjectionKey(nil, cur)
	case cur == nil:
		key = esutil.GetPodUpdateProjectionKey(old, nil)
	default:
		key = esutil.GetPodUpdateProjectionKey(old, cur)
	}
	services, err := esutil.GetServicesToUpdate(c.serviceLister, key)
	if err != nil {
		c.logger.Error("find services of pod", "err", err)
		return
	}
	for svc := range services {
		c.queue.AddAfter(svc, c.batchPeriod)
	}
}

func (c *Controller) managedByUs(s *discovery.EndpointSlice) bool {
	return c.reconciler.ManagedByController(s)
}

// onSliceAdd resyncs when a slice we manage appears that we did not write
// (or not at this generation), e.g. one created by a previous instance.
func (c *Controller) onSliceAdd(obj any) {
	s, ok := obj.(*discovery.EndpointSlice)
	if !ok {
		return
	}
	c.wakeWaiting(s)
	if c.managedByUs(s) && c.tracker.ShouldSync(s) {
		c.enqueueForSlice(s)
	}
}

func (c *Controller) onSliceUpdate(oldObj, curObj any) {
	prev, ok1 := oldObj.(*discovery.EndpointSlice)
	cur, ok2 := curObj.(*discovery.EndpointSlice)
	if !ok1 || !ok2 {
		return
	}
	c.wakeWaiting(cur)
	// Relabelling does not bump the generation, so check it by hand: both
	// the old and the new Service need a look.
	if prev.Labels[discovery.LabelServiceName] != cur.Labels[discovery.LabelServiceName] {
		c.enqueueForSlice(cur)
		c.enqueueForSlice(prev)
		return
	}
	if c.reconciler.ManagedByChanged(prev, cur) || (c.managedByUs(cur) && c.tracker.ShouldSync(cur)) {
		c.enqueueForSlice(cur)
	}
}

func (c *Controller) onSliceDelete(obj any) {
	s, ok := obj.(*discovery.EndpointSlice)
	if !ok {
		tomb, isTomb := obj.(cache.DeletedFinalStateUnknown)
		if !isTomb {
			return
		}
		if s, ok = tomb.Obj.(*discovery.EndpointSlice); !ok {
			return
		}
	}
	c.wakeWaiting(s)
	// HandleDeletion is false when we did not expect this deletion: somebody
	// else removed one of our slices, so put it back.
	if c.managedByUs(s) && c.tracker.Has(s) && !c.tracker.HandleDeletion(s) {
		c.enqueueForSlice(s)
	}
}

func (c *Controller) enqueueForSlice(s *discovery.EndpointSlice) {
	key, err := esreconciler.ServiceControllerKey(s)
	if err != nil {
		c.logger.Debug("endpointslice without service label", "endpointslice", s.Namespace+"/"+s.Name, "err", err)
		return
	}
	delay := sliceChangeMinSyncDelay
	if c.batchPeriod > delay {
		delay = c.batchPeriod
	}
	c.queue.AddAfter(key, delay)
}
