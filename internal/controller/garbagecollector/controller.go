package garbagecollector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/lru"
)

// absentOwnerCacheSize bounds the UIDs remembered as confirmed gone.
const absentOwnerCacheSize = 10000

// Resource is one kind of object the collector watches, as owner and as
// dependent.
type Resource struct {
	schema.GroupVersionResource
	// Kind is what ownerReferences call it.
	Kind string
	// Namespaced is false for cluster-scoped resources.
	Namespaced bool
}

// DefaultResources are the kinds berth serves that own or are owned:
// Deployment -> ReplicaSet -> Pod.
func DefaultResources() []Resource {
	return []Resource{
		{GroupVersionResource: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, Kind: "Deployment", Namespaced: true},
		{GroupVersionResource: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}, Kind: "ReplicaSet", Namespaced: true},
		{GroupVersionResource: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Kind: "Pod", Namespaced: true},
	}
}

// Config configures a Controller.
type Config struct {
	// Metadata reads, patches and deletes the watched objects.
	Metadata metadata.Interface
	// Resources lists what to watch; nil means DefaultResources. Every one
	// must be served (and listable and watchable), or Run never syncs.
	Resources []Resource
	// Logger receives the controller's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Controller is the garbage collector.
type Controller struct {
	md        metadata.Interface
	logger    *slog.Logger
	klogger   klog.Logger
	resources []Resource
	informers []cache.SharedIndexInformer
	byKind    map[schema.GroupKind]int

	graph  *graph
	absent *lru.Cache // owner UIDs confirmed gone by a live GET

	// queue holds objects to look at; Run shuts it down, so Run may be
	// called once.
	queue   workqueue.TypedRateLimitingInterface[objectRef]
	running atomic.Bool
}

// New builds a Controller on metadata informers of factory, one per
// resource. Call it before factory.Start; nothing runs until Run.
func New(cfg Config, factory metadatainformer.SharedInformerFactory) (*Controller, error) {
	if cfg.Metadata == nil {
		return nil, errors.New("garbage collector: Config.Metadata is nil")
	}
	if factory == nil {
		return nil, errors.New("garbage collector: informer factory is nil")
	}
	resources := cfg.Resources
	if resources == nil {
		resources = DefaultResources()
	}
	if len(resources) == 0 {
		return nil, errors.New("garbage collector: no resources to watch")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("controller", "garbagecollector")
	c := &Controller{
		md:        cfg.Metadata,
		logger:    logger,
		klogger:   logr.FromSlogHandler(logger.Handler()),
		resources: resources,
		byKind:    map[schema.GroupKind]int{},
		graph:     newGraph(),
		absent:    lru.New(absentOwnerCacheSize),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[objectRef](),
			workqueue.TypedRateLimitingQueueConfig[objectRef]{Name: "garbagecollector"},
		),
	}
	for i, r := range resources {
		if r.Resource == "" || r.Version == "" || r.Kind == "" {
			return nil, fmt.Errorf("garbage collector: resource %d (%v, kind %q) needs version, resource and kind", i, r.GroupVersionResource, r.Kind)
		}
		gk := schema.GroupKind{Group: r.Group, Kind: r.Kind}
		if _, dup := c.byKind[gk]; dup {
			return nil, fmt.Errorf("garbage collector: kind %s listed twice", gk)
		}
		c.byKind[gk] = i
		c.informers = append(c.informers, factory.ForResource(r.GroupVersionResource).Informer())
	}
	return c, nil
}

// Run collects garbage with workers parallel workers until ctx is done,
// then stops every goroutine it started and returns nil. It may be called
// once.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if workers < 1 {
		return fmt.Errorf("garbage collector: workers must be at least 1, got %d", workers)
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("garbage collector: Run called twice")
	}
	defer c.queue.ShutDown()

	var synced []cache.InformerSynced
	for i, inf := range c.informers {
		reg, err := inf.AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.observe(i, obj) },
			UpdateFunc: func(_, obj any) { c.observe(i, obj) },
			DeleteFunc: func(obj any) { c.observeDelete(obj) },
		}, cache.HandlerOptions{Logger: &c.klogger})
		if err != nil {
			return fmt.Errorf("garbage collector: add %s event handler: %w", c.resources[i].GroupVersionResource, err)
		}
		defer func() { _ = inf.RemoveEventHandler(reg) }()
		synced = append(synced, reg.HasSynced)
	}
	c.logger.Info("starting controller", "workers", workers, "resources", len(c.resources))
	defer c.logger.Info("stopped controller")
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
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

func toNode(resource int, obj any) (*node, bool) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, false
	}
	return &node{
		ref:        objectRef{resource: resource, namespace: m.GetNamespace(), name: m.GetName(), uid: m.GetUID()},
		owners:     m.GetOwnerReferences(),
		deleting:   m.GetDeletionTimestamp() != nil,
		finalizers: m.GetFinalizers(),
	}, true
}

// observe records an add or update and queues what it may make collectable.
func (c *Controller) observe(resource int, obj any) {
	n, ok := toNode(resource, obj)
	if !ok {
		return
	}
	old := c.graph.upsert(n)
	ownersChanged := old == nil || !slices.EqualFunc(old.owners, n.owners, func(a, b metav1.OwnerReference) bool {
		return a.UID == b.UID && ptrBool(a.BlockOwnerDeletion) == ptrBool(b.BlockOwnerDeletion)
	})
	stateChanged := old == nil || old.deleting != n.deleting || !slices.Equal(old.finalizers, n.finalizers)
	if ownersChanged && len(n.owners) > 0 {
		c.queue.Add(n.ref)
	}
	if ownersChanged && old != nil {
		// An owner that lost a blocking dependent may now finish.
		for _, o := range old.owners {
			c.enqueueUID(o.UID)
		}
	}
	if stateChanged && n.deleting && (n.hasFinalizer(metav1.FinalizerOrphanDependents) || n.hasFinalizer(metav1.FinalizerDeleteDependents)) {
		c.queue.Add(n.ref)
		if n.hasFinalizer(metav1.FinalizerDeleteDependents) {
			for _, d := range c.graph.dependentsOf(n.ref.uid) {
				c.queue.Add(d.ref)
			}
		}
	}
}

// observeDelete drops a deleted object and queues its dependents (their
// owner is gone) and its owners (one may wait for it in foreground).
func (c *Controller) observeDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	old := c.graph.remove(m.GetUID())
	for _, d := range c.graph.dependentsOf(m.GetUID()) {
		c.queue.Add(d.ref)
	}
	if old != nil {
		for _, o := range old.owners {
			c.enqueueUID(o.UID)
		}
	}
}

func (c *Controller) enqueueUID(uid types.UID) {
	if n := c.graph.get(uid); n != nil {
		c.queue.Add(n.ref)
	}
}

func ptrBool(b *bool) bool { return b != nil && *b }

func (c *Controller) processNextItem(ctx context.Context) bool {
	ref, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(ref)
	err := c.attemptToDelete(ctx, ref)
	if err == nil {
		c.queue.Forget(ref)
		return true
	}
	// Retry without a limit (the back-off tops out at 1000s): garbage left
	// behind is never collected otherwise.
	if apierrors.IsConflict(err) || apierrors.IsInvalid(err) {
		c.logger.Debug("object changed meanwhile, retrying", "object", c.describe(ref), "err", err)
	} else {
		c.logger.Info("garbage collection failed, retrying", "object", c.describe(ref), "err", err)
	}
	c.queue.AddRateLimited(ref)
	return true
}

func (c *Controller) describe(ref objectRef) string {
	r := c.resources[ref.resource]
	if ref.namespace == "" {
		return r.Resource + "/" + ref.name
	}
	return r.Resource + "/" + ref.namespace + "/" + ref.name
}

func (c *Controller) client(resource int, namespace string) metadata.ResourceInterface {
	r := c.resources[resource]
	if !r.Namespaced {
		return c.md.Resource(r.GroupVersionResource)
	}
	return c.md.Resource(r.GroupVersionResource).Namespace(namespace)
}

// attemptToDelete looks at one object, read fresh from the API server.
func (c *Controller) attemptToDelete(ctx context.Context, ref objectRef) error {
	obj, err := c.client(ref.resource, ref.namespace).Get(ctx, ref.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // gone already; its delete event does the rest
	}
	if err != nil {
		return fmt.Errorf("get %s: %w", c.describe(ref), err)
	}
	if obj.UID != ref.uid {
		return nil // another object of that name now
	}
	if obj.DeletionTimestamp != nil {
		switch {
		case slices.Contains(obj.Finalizers, metav1.FinalizerOrphanDependents):
			return c.orphanDependents(ctx, ref, obj)
		case slices.Contains(obj.Finalizers, metav1.FinalizerDeleteDependents):
			return c.deleteDependents(ctx, ref, obj)
		}
		return nil
	}
	if len(obj.OwnerReferences) == 0 {
		return nil
	}

	var solid, gone []metav1.OwnerReference
	waiting := 0
	for _, o := range obj.OwnerReferences {
		state, err := c.ownerState(ctx, ref, o)
		if err != nil {
			return err
		}
		switch state {
		case ownerSolid:
			solid = append(solid, o)
		case ownerGone:
			gone = append(gone, o)
		case ownerWaiting:
			waiting++
		}
	}
	switch {
	case len(solid) > 0:
		if len(solid) == len(obj.OwnerReferences) {
			return nil
		}
		// Another owner keeps it alive: only drop the references to owners
		// that are gone or waiting for us in foreground, or they would wait
		// forever.
		return c.setOwnerReferences(ctx, ref, obj, solid)
	case waiting > 0 && len(c.graph.dependentsOf(ref.uid)) > 0:
		// An owner is deleted in foreground and we have dependents
		// ourselves: go in foreground too, so the owner waits for them.
		c.logger.Debug("deleting in foreground for owner", "object", c.describe(ref))
		return c.deleteObject(ctx, ref, obj, metav1.DeletePropagationForeground)
	}
	policy := metav1.DeletePropagationBackground
	switch {
	case slices.Contains(obj.Finalizers, metav1.FinalizerOrphanDependents):
		policy = metav1.DeletePropagationOrphan
	case slices.Contains(obj.Finalizers, metav1.FinalizerDeleteDependents):
		policy = metav1.DeletePropagationForeground
	}
	c.logger.Info("deleting object whose owners are gone", "object", c.describe(ref), "policy", policy)
	return c.deleteObject(ctx, ref, obj, policy)
}

type ownerStatus int

const (
	ownerSolid   ownerStatus = iota // exists and is not waiting for dependents
	ownerGone                       // confirmed absent by a live GET
	ownerWaiting                    // exists, in foreground deletion
)

// ownerState classifies one ownerReference of the object ref. The cache
// may say an owner exists; only a live GET may say it is gone.
func (c *Controller) ownerState(ctx context.Context, ref objectRef, o metav1.OwnerReference) (ownerStatus, error) {
	gv, err := schema.ParseGroupVersion(o.APIVersion)
	if err != nil {
		return ownerSolid, nil // malformed: never collect on its account
	}
	idx, watched := c.byKind[schema.GroupKind{Group: gv.Group, Kind: o.Kind}]
	if !watched {
		return ownerSolid, nil // a kind we cannot check
	}
	if _, ok := c.absent.Get(o.UID); ok {
		return ownerGone, nil
	}
	if n := c.graph.get(o.UID); n != nil {
		if n.deletingDependents() {
			return ownerWaiting, nil
		}
		return ownerSolid, nil
	}
	ns := ""
	if c.resources[idx].Namespaced {
		if ref.namespace == "" {
			// A cluster-scoped object cannot be owned by a namespaced one;
			// leave it alone rather than guess.
			return ownerSolid, nil
		}
		ns = ref.namespace
	}
	owner, err := c.client(idx, ns).Get(ctx, o.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		c.absent.Add(o.UID, struct{}{})
		return ownerGone, nil
	case err != nil:
		return ownerSolid, fmt.Errorf("get owner %s %s of %s: %w", o.Kind, o.Name, c.describe(ref), err)
	case owner.UID != o.UID:
		c.absent.Add(o.UID, struct{}{})
		return ownerGone, nil
	case owner.DeletionTimestamp != nil && slices.Contains(owner.Finalizers, metav1.FinalizerDeleteDependents):
		return ownerWaiting, nil
	}
	return ownerSolid, nil
}

// deleteDependents runs a foreground deletion: it queues the dependents
// (each is then deleted as its owner waits for it) and removes the
// finalizer once no dependent blocks the owner any more. Dependents still
// terminating (e.g. Pods in their grace period) still block.
func (c *Controller) deleteDependents(ctx context.Context, ref objectRef, obj *metav1.PartialObjectMetadata) error {
	blocking := 0
	for _, d := range c.graph.dependentsOf(ref.uid) {
		if d.blocksOwner(ref.uid) {
			blocking++
		}
		if !d.deleting {
			c.queue.Add(d.ref)
		}
	}
	if blocking > 0 {
		return nil // their deletion events bring us back
	}
	c.logger.Debug("dependents gone, removing foregroundDeletion finalizer", "object", c.describe(ref))
	return c.removeFinalizer(ctx, ref, obj, metav1.FinalizerDeleteDependents)
}

// orphanDependents removes the references to obj from its dependents, then
// the orphan finalizer from obj.
func (c *Controller) orphanDependents(ctx context.Context, ref objectRef, obj *metav1.PartialObjectMetadata) error {
	var errs []error
	for _, d := range c.graph.dependentsOf(ref.uid) {
		dep, err := c.client(d.ref.resource, d.ref.namespace).Get(ctx, d.ref.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && dep.UID != d.ref.uid) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("get dependent %s: %w", c.describe(d.ref), err))
			continue
		}
		var kept []metav1.OwnerReference
		for _, o := range dep.OwnerReferences {
			if o.UID != ref.uid {
				kept = append(kept, o)
			}
		}
		if len(kept) == len(dep.OwnerReferences) {
			continue
		}
		if err := c.setOwnerReferences(ctx, d.ref, dep, kept); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.logger.Debug("dependents orphaned, removing orphan finalizer", "object", c.describe(ref))
	return c.removeFinalizer(ctx, ref, obj, metav1.FinalizerOrphanDependents)
}

// jsonPatchOp is one RFC 6902 operation. Every patch starts with a test of
// the resourceVersion we read, so it applies only to that version: a
// concurrent change makes it fail (and the item is retried) instead of
// being overwritten, on any server that implements JSON patch.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

func (c *Controller) patchMeta(ctx context.Context, ref objectRef, obj *metav1.PartialObjectMetadata, field string, value any) error {
	ops := []jsonPatchOp{
		{Op: "test", Path: "/metadata/resourceVersion", Value: obj.ResourceVersion},
		{Op: "replace", Path: "/metadata/" + field, Value: value},
	}
	body, err := json.Marshal(ops)
	if err != nil {
		return fmt.Errorf("encode patch for %s: %w", c.describe(ref), err)
	}
	if _, err := c.client(ref.resource, ref.namespace).Patch(ctx, ref.name, types.JSONPatchType, body, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch %s of %s: %w", field, c.describe(ref), err)
	}
	return nil
}

func (c *Controller) setOwnerReferences(ctx context.Context, ref objectRef, obj *metav1.PartialObjectMetadata, refs []metav1.OwnerReference) error {
	if refs == nil {
		refs = []metav1.OwnerReference{}
	}
	return c.patchMeta(ctx, ref, obj, "ownerReferences", refs)
}

func (c *Controller) removeFinalizer(ctx context.Context, ref objectRef, obj *metav1.PartialObjectMetadata, finalizer string) error {
	kept := []string{}
	for _, f := range obj.Finalizers {
		if f != finalizer {
			kept = append(kept, f)
		}
	}
	return c.patchMeta(ctx, ref, obj, "finalizers", kept)
}

// deleteObject deletes the version of obj we looked at, with policy for its
// own dependents.
func (c *Controller) deleteObject(ctx context.Context, ref objectRef, obj *metav1.PartialObjectMetadata, policy metav1.DeletionPropagation) error {
	uid, rv := obj.UID, obj.ResourceVersion
	err := c.client(ref.resource, ref.namespace).Delete(ctx, ref.name, metav1.DeleteOptions{
		Preconditions:     &metav1.Preconditions{UID: &uid, ResourceVersion: &rv},
		PropagationPolicy: &policy,
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s: %w", c.describe(ref), err)
	}
	return nil
}
