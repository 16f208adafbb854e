package deployment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/berth-project/berth/internal/controller/replicaset"
)

const (
	// maxRetries bounds the requeues of a failing Deployment; with the
	// default back-off (5ms doubling) that is about 82s of tries, after
	// which the next change or resync tries again (upstream's value).
	maxRetries = 15

	eventComponent = "deployment-controller"
)

var controllerKind = appsv1.SchemeGroupVersion.WithKind("Deployment")

// Config configures a Controller.
type Config struct {
	// Client talks to the Kubernetes API (berth's own server or a real one).
	Client kubernetes.Interface
	// Logger receives the controller's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Controller rolls Deployments out through ReplicaSets.
type Controller struct {
	client  kubernetes.Interface
	logger  *slog.Logger
	klogger klog.Logger

	dInformer   cache.SharedIndexInformer
	rsInformer  cache.SharedIndexInformer
	podInformer cache.SharedIndexInformer
	dLister     appslisters.DeploymentLister
	rsLister    appslisters.ReplicaSetLister
	podLister   corelisters.PodLister

	events *eventRecorder
	now    func() metav1.Time

	// queue holds namespace/name keys of Deployments; Run shuts it down,
	// so Run may be called once.
	queue   workqueue.TypedRateLimitingInterface[string]
	running atomic.Bool
}

// New builds a Controller on the Deployment, ReplicaSet and Pod informers of
// factory. Call it before factory.Start; nothing runs until Run.
func New(cfg Config, factory informers.SharedInformerFactory) (*Controller, error) {
	if cfg.Client == nil {
		return nil, errors.New("deployment controller: Config.Client is nil")
	}
	if factory == nil {
		return nil, errors.New("deployment controller: informer factory is nil")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("controller", "deployment")
	ds := factory.Apps().V1().Deployments()
	rss := factory.Apps().V1().ReplicaSets()
	pods := factory.Core().V1().Pods()
	return &Controller{
		client:      cfg.Client,
		logger:      logger,
		klogger:     logr.FromSlogHandler(logger.Handler()),
		dInformer:   ds.Informer(),
		rsInformer:  rss.Informer(),
		podInformer: pods.Informer(),
		dLister:     ds.Lister(),
		rsLister:    rss.Lister(),
		podLister:   pods.Lister(),
		events:      &eventRecorder{},
		now:         metav1.Now,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "deployment"},
		),
	}, nil
}

// Run syncs Deployments with workers parallel workers until ctx is done,
// then stops every goroutine it started and returns nil. It may be called
// once.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if workers < 1 {
		return fmt.Errorf("deployment controller: workers must be at least 1, got %d", workers)
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("deployment controller: Run called twice")
	}
	defer c.queue.ShutDown()

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

	synced, remove, err := c.addEventHandlers()
	defer remove()
	if err != nil {
		return err
	}
	c.logger.Info("starting controller", "workers", workers)
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

func (c *Controller) addEventHandlers() ([]cache.InformerSynced, func(), error) {
	type added struct {
		informer cache.SharedIndexInformer
		reg      cache.ResourceEventHandlerRegistration
	}
	var regs []added
	var synced []cache.InformerSynced
	remove := func() {
		for _, a := range regs {
			_ = a.informer.RemoveEventHandler(a.reg)
		}
	}
	add := func(name string, inf cache.SharedIndexInformer, h cache.ResourceEventHandler) error {
		reg, err := inf.AddEventHandlerWithOptions(h, cache.HandlerOptions{Logger: &c.klogger})
		if err != nil {
			return fmt.Errorf("deployment controller: add %s event handler: %w", name, err)
		}
		regs = append(regs, added{inf, reg})
		synced = append(synced, reg.HasSynced)
		return nil
	}
	if err := add("deployment", c.dInformer, cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueObj,
		UpdateFunc: func(_, cur any) { c.enqueueObj(cur) },
		DeleteFunc: c.enqueueObj,
	}); err != nil {
		return nil, remove, err
	}
	if err := add("replicaset", c.rsInformer, cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addReplicaSet,
		UpdateFunc: c.updateReplicaSet,
		DeleteFunc: c.deleteReplicaSet,
	}); err != nil {
		return nil, remove, err
	}
	if err := add("pod", c.podInformer, cache.ResourceEventHandlerFuncs{
		DeleteFunc: c.deletePod,
	}); err != nil {
		return nil, remove, err
	}
	return synced, remove, nil
}

func (c *Controller) processNextItem(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	err := c.syncDeployment(ctx, key)
	switch {
	case err == nil:
		c.queue.Forget(key)
	case c.queue.NumRequeues(key) < maxRetries:
		if apierrors.IsConflict(err) {
			c.logger.Debug("sync conflicted, retrying", "deployment", key, "err", err)
		} else {
			c.logger.Info("sync failed, retrying", "deployment", key, "err", err)
		}
		c.queue.AddRateLimited(key)
	default:
		c.logger.Error("sync failed, retry budget exhausted, dropping deployment", "deployment", key, "err", err)
		c.queue.Forget(key)
	}
	return true
}

// withDefaults fills in apps/v1's defaults that the computations need, for
// servers (or fakes) that did not apply them.
func withDefaults(d *appsv1.Deployment) {
	if d.Spec.Replicas == nil {
		one := int32(1)
		d.Spec.Replicas = &one
	}
	if d.Spec.Strategy.Type == "" {
		d.Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
}

// syncDeployment takes one step towards the state d asks for.
func (c *Controller) syncDeployment(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("split deployment key %q: %w", key, err)
	}
	cached, err := c.dLister.Deployments(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // its ReplicaSets go through garbage collection
	}
	if err != nil {
		return fmt.Errorf("get deployment %s from cache: %w", key, err)
	}
	d := cached.DeepCopy()
	withDefaults(d)

	if d.Spec.Selector == nil || (len(d.Spec.Selector.MatchLabels) == 0 && len(d.Spec.Selector.MatchExpressions) == 0) {
		c.events.Eventf(d, v1.EventTypeWarning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.")
		if d.Status.ObservedGeneration < d.Generation {
			d.Status.ObservedGeneration = d.Generation
			if _, err := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update status of deployment %s: %w", key, err)
			}
		}
		return nil
	}
	if _, _, err := fenceposts(d); err != nil {
		c.events.Eventf(d, v1.EventTypeWarning, "InvalidStrategy", "Invalid rolling update parameters: %v", err)
		return nil // validation should have refused it; wait for a change
	}

	rsList, err := c.getReplicaSetsForDeployment(ctx, d)
	if err != nil {
		return err
	}
	podMap, err := c.getPodMapForDeployment(d, rsList)
	if err != nil {
		return err
	}

	if d.DeletionTimestamp != nil {
		newRS, old, err := c.getAllReplicaSetsAndSyncRevision(ctx, d, rsList, false)
		if err != nil {
			return err
		}
		return c.syncDeploymentStatus(ctx, append(old, newRS), newRS, d)
	}
	if err := c.checkPausedConditions(ctx, d); err != nil {
		return err
	}
	if d.Spec.Paused {
		return c.sync(ctx, d, rsList)
	}
	// Not re-entrant: finish the rollback (and clear its request) before
	// any ReplicaSet changes.
	if getRollbackTo(d) != nil {
		return c.rollback(ctx, d, rsList)
	}
	scaling, err := c.isScalingEvent(ctx, d, rsList)
	if err != nil {
		return err
	}
	if scaling {
		return c.sync(ctx, d, rsList)
	}
	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		return c.rolloutRecreate(ctx, d, rsList, podMap)
	case appsv1.RollingUpdateDeploymentStrategyType:
		return c.rolloutRolling(ctx, d, rsList)
	}
	c.events.Eventf(d, v1.EventTypeWarning, "InvalidStrategy", "Unknown deployment strategy %q", d.Spec.Strategy.Type)
	return nil
}

// getReplicaSetsForDeployment returns the ReplicaSets d controls, adopting
// matching orphans and releasing those that stopped matching.
func (c *Controller) getReplicaSetsForDeployment(ctx context.Context, d *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
	all, err := c.rsLister.ReplicaSets(d.Namespace).List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list replicasets of deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector of deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	m := replicaset.NewRefManager(d, controllerKind, replicaset.RecheckDeletion(d, func(ctx context.Context) (metav1.Object, error) {
		return c.client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
	}))
	var claimed []*appsv1.ReplicaSet
	var errs []error
	for _, rs := range all {
		ok, err := m.Claim(ctx, rs, selector.Matches(labels.Set(rs.Labels)),
			func(ctx context.Context) error {
				return c.patchReplicaSetRefs(ctx, rs, replicaset.AdoptPatch(d, controllerKind, rs.UID))
			},
			func(ctx context.Context) error {
				err := c.patchReplicaSetRefs(ctx, rs, replicaset.ReleasePatch(d.UID, rs.UID))
				if apierrors.IsInvalid(err) {
					return nil // no such reference any more, or replaced
				}
				return err
			})
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			claimed = append(claimed, rs)
		}
	}
	return claimed, errors.Join(errs...)
}

func (c *Controller) patchReplicaSetRefs(ctx context.Context, rs *appsv1.ReplicaSet, patch []byte) error {
	_, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Patch(ctx, rs.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("patch ownerReferences of replicaset %s/%s: %w", rs.Namespace, rs.Name, err)
	}
	return nil
}

// getPodMapForDeployment groups d's Pods by the ReplicaSet controlling them,
// terminating and finished ones included: Recreate must see them all.
func (c *Controller) getPodMapForDeployment(d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) (map[types.UID][]*v1.Pod, error) {
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector of deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	pods, err := c.podLister.Pods(d.Namespace).List(selector)
	if err != nil {
		return nil, fmt.Errorf("list pods of deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	m := make(map[types.UID][]*v1.Pod, len(rsList))
	for _, rs := range rsList {
		m[rs.UID] = nil
	}
	for _, p := range pods {
		ref := metav1.GetControllerOfNoCopy(p)
		if ref == nil {
			continue
		}
		if _, ok := m[ref.UID]; ok {
			m[ref.UID] = append(m[ref.UID], p)
		}
	}
	return m, nil
}

func (c *Controller) enqueueObj(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		c.logger.Error("key for deployment", "err", err)
		return
	}
	c.queue.Add(key)
}

func (c *Controller) enqueue(d *appsv1.Deployment) {
	c.queue.Add(d.Namespace + "/" + d.Name)
}

// resolveControllerRef returns the Deployment ref names, if it still is
// that one.
func (c *Controller) resolveControllerRef(namespace string, ref *metav1.OwnerReference) *appsv1.Deployment {
	if ref.Kind != controllerKind.Kind {
		return nil
	}
	d, err := c.dLister.Deployments(namespace).Get(ref.Name)
	if err != nil || d.UID != ref.UID {
		return nil
	}
	return d
}

// deploymentsForReplicaSet are the Deployments selecting rs (for orphans).
func (c *Controller) deploymentsForReplicaSet(rs *appsv1.ReplicaSet) []*appsv1.Deployment {
	all, err := c.dLister.Deployments(rs.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []*appsv1.Deployment
	for _, d := range all {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() {
			continue
		}
		if sel.Matches(labels.Set(rs.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

func (c *Controller) addReplicaSet(obj any) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return
	}
	if rs.DeletionTimestamp != nil {
		c.deleteReplicaSet(rs)
		return
	}
	if ref := metav1.GetControllerOfNoCopy(rs); ref != nil {
		if d := c.resolveControllerRef(rs.Namespace, ref); d != nil {
			c.enqueue(d)
		}
		return
	}
	for _, d := range c.deploymentsForReplicaSet(rs) {
		c.enqueue(d)
	}
}

func (c *Controller) updateReplicaSet(oldObj, curObj any) {
	old, ok1 := oldObj.(*appsv1.ReplicaSet)
	cur, ok2 := curObj.(*appsv1.ReplicaSet)
	if !ok1 || !ok2 || cur.ResourceVersion == old.ResourceVersion {
		return
	}
	curRef, oldRef := metav1.GetControllerOfNoCopy(cur), metav1.GetControllerOfNoCopy(old)
	refChanged := (curRef == nil) != (oldRef == nil) || (curRef != nil && curRef.UID != oldRef.UID)
	if refChanged && oldRef != nil {
		if d := c.resolveControllerRef(old.Namespace, oldRef); d != nil {
			c.enqueue(d)
		}
	}
	if curRef != nil {
		if d := c.resolveControllerRef(cur.Namespace, curRef); d != nil {
			c.enqueue(d)
		}
		return
	}
	if refChanged || !labels.Equals(cur.Labels, old.Labels) {
		for _, d := range c.deploymentsForReplicaSet(cur) {
			c.enqueue(d)
		}
	}
}

func (c *Controller) deleteReplicaSet(obj any) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		tomb, isTomb := obj.(cache.DeletedFinalStateUnknown)
		if !isTomb {
			return
		}
		if rs, ok = tomb.Obj.(*appsv1.ReplicaSet); !ok {
			return
		}
	}
	if ref := metav1.GetControllerOfNoCopy(rs); ref != nil {
		if d := c.resolveControllerRef(rs.Namespace, ref); d != nil {
			c.enqueue(d)
		}
	}
}

// deletePod wakes a Recreate Deployment when one of its old Pods is gone:
// the new ReplicaSet may only start once none is left.
func (c *Controller) deletePod(obj any) {
	p, ok := obj.(*v1.Pod)
	if !ok {
		tomb, isTomb := obj.(cache.DeletedFinalStateUnknown)
		if !isTomb {
			return
		}
		if p, ok = tomb.Obj.(*v1.Pod); !ok {
			return
		}
	}
	ref := metav1.GetControllerOfNoCopy(p)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return
	}
	rs, err := c.rsLister.ReplicaSets(p.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return
	}
	dref := metav1.GetControllerOfNoCopy(rs)
	if dref == nil {
		return
	}
	if d := c.resolveControllerRef(rs.Namespace, dref); d != nil && d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		c.enqueue(d)
	}
}
