package endpoints

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
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
	"k8s.io/klog/v2"

	"github.com/berth-project/berth/internal/controller/endpointslice"
)

const (
	// maxRetries bounds how often a failing Service is requeued (5ms
	// doubling: about 80s of tries in all), as upstream.
	maxRetries = 15

	eventComponent = "endpoint-controller"
)

// Config configures a Controller.
type Config struct {
	// Client talks to the Kubernetes API.
	Client kubernetes.Interface
	// Logger receives the controller's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Controller mirrors managed EndpointSlices into core/v1 Endpoints.
type Controller struct {
	client  kubernetes.Interface
	logger  *slog.Logger
	klogger klog.Logger

	serviceInformer   cache.SharedIndexInformer
	sliceInformer     cache.SharedIndexInformer
	endpointsInformer cache.SharedIndexInformer

	serviceLister   corelisters.ServiceLister
	sliceLister     discoverylisters.EndpointSliceLister
	endpointsLister corelisters.EndpointsLister

	events *eventRecorder

	// queue holds namespace/name keys of Services (and so of Endpoints, which
	// share the name). Created by Run before the handlers that fill it.
	queue workqueue.TypedRateLimitingInterface[string]

	running atomic.Bool
}

// New builds a Controller on the Service, EndpointSlice and Endpoints
// informers of factory. Call it before factory.Start; nothing runs until Run.
func New(cfg Config, factory informers.SharedInformerFactory) (*Controller, error) {
	if cfg.Client == nil {
		return nil, errors.New("endpoints controller: Config.Client is nil")
	}
	if factory == nil {
		return nil, errors.New("endpoints controller: informer factory is nil")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("controller", "endpoints")
	services := factory.Core().V1().Services()
	slices := factory.Discovery().V1().EndpointSlices()
	eps := factory.Core().V1().Endpoints()
	return &Controller{
		client:            cfg.Client,
		logger:            logger,
		klogger:           logr.FromSlogHandler(logger.Handler()),
		serviceInformer:   services.Informer(),
		sliceInformer:     slices.Informer(),
		endpointsInformer: eps.Informer(),
		serviceLister:     services.Lister(),
		sliceLister:       slices.Lister(),
		endpointsLister:   eps.Lister(),
		events:            &eventRecorder{},
	}, nil
}

// Run mirrors with workers parallel workers until ctx is done, then stops
// every goroutine it started and returns nil.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if workers < 1 {
		return fmt.Errorf("endpoints controller: workers must be at least 1, got %d", workers)
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("endpoints controller: already running")
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

	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "endpoint"},
	)
	remove, synced, err := c.addEventHandlers()
	defer remove()
	if err != nil {
		c.queue.ShutDown()
		return err
	}

	c.logger.Info("starting controller", "workers", workers)
	defer c.logger.Info("stopped controller")
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		c.queue.ShutDown()
		return nil
	}

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

func (c *Controller) addEventHandlers() (remove func(), synced []cache.InformerSynced, err error) {
	type added struct {
		informer cache.SharedIndexInformer
		reg      cache.ResourceEventHandlerRegistration
	}
	var regs []added
	remove = func() {
		for _, a := range regs {
			_ = a.informer.RemoveEventHandler(a.reg)
		}
	}
	add := func(name string, inf cache.SharedIndexInformer, h cache.ResourceEventHandler) error {
		reg, err := inf.AddEventHandlerWithOptions(h, cache.HandlerOptions{Logger: &c.klogger})
		if err != nil {
			return fmt.Errorf("endpoints controller: add %s event handler: %w", name, err)
		}
		regs = append(regs, added{inf, reg})
		synced = append(synced, reg.HasSynced)
		return nil
	}
	byKey := cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueObject,
		UpdateFunc: func(_, cur any) { c.enqueueObject(cur) },
		DeleteFunc: c.enqueueObject,
	}
	if err := add("service", c.serviceInformer, byKey); err != nil {
		return remove, nil, err
	}
	// Endpoints events bring back objects somebody deleted or edited, and at
	// start they queue leftovers whose Service went while berth was down. Our
	// own writes come back here too; the sync then finds nothing to do.
	if err := add("endpoints", c.endpointsInformer, byKey); err != nil {
		return remove, nil, err
	}
	if err := add("endpointslice", c.sliceInformer, cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueForSlice,
		UpdateFunc: func(old, cur any) {
			c.enqueueForSlice(old)
			c.enqueueForSlice(cur)
		},
		DeleteFunc: c.enqueueForSlice,
	}); err != nil {
		return remove, nil, err
	}
	return remove, synced, nil
}

func (c *Controller) processNextItem(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	err := c.syncService(ctx, key)
	switch {
	case err == nil:
		c.queue.Forget(key)
	case c.queue.NumRequeues(key) < maxRetries:
		c.logger.Info("sync failed, retrying", "service", key, "err", err)
		c.queue.AddRateLimited(key)
	default:
		c.logger.Error("sync failed, retry budget exhausted, dropping service", "service", key, "err", err)
		c.queue.Forget(key)
	}
	return true
}

func (c *Controller) enqueueObject(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		c.logger.Error("key for object", "err", err)
		return
	}
	c.queue.Add(key)
}

func (c *Controller) enqueueForSlice(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	s, ok := obj.(*discovery.EndpointSlice)
	if !ok || s.Labels[discovery.LabelManagedBy] != endpointslice.ControllerName {
		return
	}
	if name := s.Labels[discovery.LabelServiceName]; name != "" {
		c.queue.Add(s.Namespace + "/" + name)
	}
}

// syncService writes the Endpoints of one Service from its managed slices,
// or deletes the Endpoints we made once the Service is gone.
func (c *Controller) syncService(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("split service key %q: %w", key, err)
	}
	current, err := c.endpointsLister.Endpoints(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		current = nil
	} else if err != nil {
		return fmt.Errorf("get endpoints %s from cache: %w", key, err)
	}

	svc, err := c.serviceLister.Services(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return c.deleteOwn(ctx, current)
	}
	if err != nil {
		return fmt.Errorf("get service %s from cache: %w", key, err)
	}
	if svc.Spec.Type == v1.ServiceTypeExternalName || svc.Spec.Selector == nil {
		// Endpoints of such Services are the user's to write. Only ours, left
		// from when the Service had a selector, go.
		return c.deleteOwn(ctx, current)
	}

	slices, err := c.sliceLister.EndpointSlices(namespace).List(labels.SelectorFromSet(labels.Set{
		discovery.LabelServiceName: name,
		discovery.LabelManagedBy:   endpointslice.ControllerName,
	}))
	if err != nil {
		return fmt.Errorf("list endpointslices of service %s: %w", key, err)
	}
	live := slices[:0:0]
	for _, s := range slices {
		// Slices of an older Service of the same name linger until deleted.
		if s.DeletionTimestamp == nil && ownedBy(s, svc) {
			live = append(live, s)
		}
	}

	want := desiredEndpoints(svc, live, current)
	if want == nil {
		return nil
	}
	if current == nil {
		_, err = c.client.CoreV1().Endpoints(namespace).Create(ctx, want, metav1.CreateOptions{})
		if err != nil {
			if apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
				return nil // creates will go on failing; the namespace is going
			}
			// AlreadyExists: the cache is behind this controller's own
			// create; the retry sees it. Not worth a Warning to users.
			if !apierrors.IsAlreadyExists(err) {
				c.events.Eventf(want, v1.EventTypeWarning, "FailedToCreateEndpoint", "Failed to create endpoint for service %s: %v", key, err)
			}
			return fmt.Errorf("create endpoints %s: %w", key, err)
		}
		c.logger.Debug("created endpoints", "service", key)
		return nil
	}
	if _, err := c.client.CoreV1().Endpoints(namespace).Update(ctx, want, metav1.UpdateOptions{}); err != nil {
		if !apierrors.IsConflict(err) { // a stale cache too
			c.events.Eventf(want, v1.EventTypeWarning, "FailedToUpdateEndpoint", "Failed to update endpoint %s: %v", key, err)
		}
		return fmt.Errorf("update endpoints %s: %w", key, err)
	}
	c.logger.Debug("updated endpoints", "service", key)
	return nil
}

// ownedBy reports whether a slice belongs to this very Service object. Slices
// without owner references (made by an older berth or by hand with our label)
// count as the Service's.
func ownedBy(s *discovery.EndpointSlice, svc *v1.Service) bool {
	if len(s.OwnerReferences) == 0 {
		return true
	}
	for _, o := range s.OwnerReferences {
		if o.Kind == "Service" && o.UID == svc.UID {
			return true
		}
	}
	return false
}

// deleteOwn deletes ep if an endpoints controller made it; Endpoints made by
// hand (no managed-by label) are left alone.
func (c *Controller) deleteOwn(ctx context.Context, ep *v1.Endpoints) error {
	if ep == nil || ep.Labels[LabelManagedBy] != ControllerName || ep.DeletionTimestamp != nil {
		return nil
	}
	uid := ep.UID
	err := c.client.CoreV1().Endpoints(ep.Namespace).Delete(ctx, ep.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete endpoints %s/%s: %w", ep.Namespace, ep.Name, err)
	}
	c.logger.Debug("deleted endpoints", "service", ep.Namespace+"/"+ep.Name)
	return nil
}
