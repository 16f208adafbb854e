package replicaset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
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
)

const (
	// DefaultBurstReplicas caps the Pods one sync creates or deletes
	// (upstream's --concurrent-... burst of 500).
	DefaultBurstReplicas = 500

	// slowStartInitialBatchSize is the first batch of creates; batches
	// double while they succeed, so a failing template (quota, admission)
	// costs one failed request, not hundreds.
	slowStartInitialBatchSize = 1

	// statusUpdateRetries is how often a conflicting status write is retried
	// on a fresh GET before the sync is requeued.
	statusUpdateRetries = 1

	eventComponent = "replicaset-controller"
)

// controllerKind is what this controller's ownerReferences name.
var controllerKind = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")

// Config configures a Controller.
type Config struct {
	// Client talks to the Kubernetes API (berth's own server or a real one).
	Client kubernetes.Interface
	// BurstReplicas caps creates or deletes per sync; 0 means
	// DefaultBurstReplicas.
	BurstReplicas int
	// Logger receives the controller's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Controller keeps the Pods of every ReplicaSet at spec.replicas.
type Controller struct {
	client  kubernetes.Interface
	logger  *slog.Logger
	klogger klog.Logger

	rsInformer  cache.SharedIndexInformer
	podInformer cache.SharedIndexInformer
	rsLister    appslisters.ReplicaSetLister
	podLister   corelisters.PodLister

	expectations *expectations
	events       *eventRecorder
	burst        int
	now          func() metav1.Time

	// queue holds namespace/name keys of ReplicaSets. It lives as long as
	// the Controller: Run shuts it down, so Run may be called once.
	queue   workqueue.TypedRateLimitingInterface[string]
	running atomic.Bool
}

// New builds a Controller on the ReplicaSet and Pod informers of factory.
// Call it before factory.Start so that the factory starts those informers;
// nothing runs until Run.
func New(cfg Config, factory informers.SharedInformerFactory) (*Controller, error) {
	if cfg.Client == nil {
		return nil, errors.New("replicaset controller: Config.Client is nil")
	}
	if factory == nil {
		return nil, errors.New("replicaset controller: informer factory is nil")
	}
	if cfg.BurstReplicas < 0 {
		return nil, fmt.Errorf("replicaset controller: negative BurstReplicas %d", cfg.BurstReplicas)
	}
	burst := cfg.BurstReplicas
	if burst == 0 {
		burst = DefaultBurstReplicas
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("controller", "replicaset")
	rss := factory.Apps().V1().ReplicaSets()
	pods := factory.Core().V1().Pods()
	return &Controller{
		client:       cfg.Client,
		logger:       logger,
		klogger:      logr.FromSlogHandler(logger.Handler()),
		rsInformer:   rss.Informer(),
		podInformer:  pods.Informer(),
		rsLister:     rss.Lister(),
		podLister:    pods.Lister(),
		expectations: newExpectations(nil),
		events:       &eventRecorder{},
		burst:        burst,
		now:          metav1.Now,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "replicaset"},
		),
	}, nil
}

// Run syncs ReplicaSets with workers parallel workers until ctx is done,
// then stops every goroutine it started and returns nil. It may be called
// once.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if workers < 1 {
		return fmt.Errorf("replicaset controller: workers must be at least 1, got %d", workers)
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("replicaset controller: Run called twice")
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
			return fmt.Errorf("replicaset controller: add %s event handler: %w", name, err)
		}
		regs = append(regs, added{inf, reg})
		synced = append(synced, reg.HasSynced)
		return nil
	}
	if err := add("replicaset", c.rsInformer, cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addRS,
		UpdateFunc: c.updateRS,
		DeleteFunc: c.deleteRS,
	}); err != nil {
		return nil, remove, err
	}
	if err := add("pod", c.podInformer, cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addPod,
		UpdateFunc: c.updatePod,
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
	err := c.syncReplicaSet(ctx, key)
	if err == nil {
		c.queue.Forget(key)
		return true
	}
	// Like upstream, retry without a limit: the back-off tops out at 1000s
	// and a ReplicaSet must converge once the API accepts our writes again.
	if apierrors.IsConflict(err) {
		c.logger.Debug("sync conflicted, retrying", "replicaset", key, "err", err)
	} else {
		c.logger.Info("sync failed, retrying", "replicaset", key, "err", err)
	}
	c.queue.AddRateLimited(key)
	return true
}

// syncReplicaSet brings one ReplicaSet's Pods and status up to date. It
// creates or deletes only when the expectations of its previous actions
// have been met, so it acts on a cache that has seen its own writes.
func (c *Controller) syncReplicaSet(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("split replicaset key %q: %w", key, err)
	}
	rs, err := c.rsLister.ReplicaSets(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		c.expectations.Delete(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get replicaset %s from cache: %w", key, err)
	}

	needsSync := c.expectations.Satisfied(key)
	selector, err := selectorOf(rs)
	if err != nil {
		// Validation should have refused it; nothing to do until it changes.
		c.logger.Error("invalid selector, not syncing", "replicaset", key, "err", err)
		return nil
	}

	// All Pods, not just the selected ones: Pods we own that stopped
	// matching must be seen to be released.
	all, err := c.podLister.Pods(namespace).List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list pods for replicaset %s: %w", key, err)
	}
	pods, err := c.claimPods(ctx, rs, selector, filterActivePods(all))
	if err != nil {
		return err
	}

	var manageErr error
	if needsSync && rs.DeletionTimestamp == nil {
		manageErr = c.manageReplicas(ctx, pods, rs)
	}
	rs = rs.DeepCopy()
	status := calculateStatus(rs, pods, manageErr, c.now())
	updated, err := c.updateStatus(ctx, rs, status)
	if err != nil {
		return errors.Join(manageErr, err)
	}
	// Availability after minReadySeconds is a matter of time, not of an
	// event: look again then.
	want := replicasOf(updated)
	if manageErr == nil && updated.Spec.MinReadySeconds > 0 &&
		updated.Status.ReadyReplicas == want && updated.Status.AvailableReplicas != want {
		c.queue.AddAfter(key, time.Duration(updated.Spec.MinReadySeconds)*time.Second)
	}
	return manageErr
}

// selectorOf refuses selectors that select every Pod: adopting a whole
// namespace is never what a ReplicaSet means (validation forbids it too).
func selectorOf(rs *appsv1.ReplicaSet) (labels.Selector, error) {
	if rs.Spec.Selector == nil || (len(rs.Spec.Selector.MatchLabels) == 0 && len(rs.Spec.Selector.MatchExpressions) == 0) {
		return nil, errors.New("empty selector")
	}
	return metav1.LabelSelectorAsSelector(rs.Spec.Selector)
}

// claimPods returns the Pods rs controls after adopting matching orphans and
// releasing Pods that stopped matching.
func (c *Controller) claimPods(ctx context.Context, rs *appsv1.ReplicaSet, selector labels.Selector, pods []*v1.Pod) ([]*v1.Pod, error) {
	m := NewRefManager(rs, controllerKind, RecheckDeletion(rs, func(ctx context.Context) (metav1.Object, error) {
		return c.client.AppsV1().ReplicaSets(rs.Namespace).Get(ctx, rs.Name, metav1.GetOptions{})
	}))
	var claimed []*v1.Pod
	var errs []error
	for _, p := range pods {
		ok, err := m.Claim(ctx, p, selector.Matches(labels.Set(p.Labels)),
			func(ctx context.Context) error { return c.patchPodRefs(ctx, p, AdoptPatch(rs, controllerKind, p.UID)) },
			func(ctx context.Context) error {
				err := c.patchPodRefs(ctx, p, ReleasePatch(rs.UID, p.UID))
				// Invalid means the Pod has no such reference any more or
				// was replaced (uid mismatch): released either way.
				if apierrors.IsInvalid(err) {
					return nil
				}
				return err
			})
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			claimed = append(claimed, p)
		}
	}
	return claimed, errors.Join(errs...)
}

func (c *Controller) patchPodRefs(ctx context.Context, p *v1.Pod, patch []byte) error {
	_, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("patch ownerReferences of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// manageReplicas creates or deletes Pods so that pods (active, claimed)
// count spec.replicas, at most burst at a time.
func (c *Controller) manageReplicas(ctx context.Context, pods []*v1.Pod, rs *appsv1.ReplicaSet) error {
	key := rs.Namespace + "/" + rs.Name
	diff := len(pods) - int(replicasOf(rs))
	switch {
	case diff < 0:
		n := min(-diff, c.burst)
		// Expect all before the first create: the informer may report a
		// creation before the create call returns.
		c.expectations.ExpectCreations(key, n)
		c.logger.Debug("too few replicas", "replicaset", key, "need", replicasOf(rs), "creating", n)
		ok, err := slowStartBatch(n, slowStartInitialBatchSize, func() error {
			err := c.createPod(ctx, rs)
			if err != nil && apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
				return nil // every create fails now; the namespace goes anyway
			}
			return err
		})
		// Creates never attempted will not be observed.
		for range n - ok {
			c.expectations.CreationObserved(key)
		}
		return err
	case diff > 0:
		n := min(diff, c.burst)
		c.logger.Debug("too many replicas", "replicaset", key, "need", replicasOf(rs), "deleting", n)
		victims := podsToDelete(pods, c.relatedPods(rs), n, c.now())
		podKeys := make([]string, len(victims))
		for i, p := range victims {
			podKeys[i] = p.Namespace + "/" + p.Name
		}
		c.expectations.ExpectDeletions(key, podKeys)
		errCh := make(chan error, len(victims))
		var wg sync.WaitGroup
		for i, p := range victims {
			wg.Go(func() {
				if err := c.deletePodOf(ctx, rs, p); err != nil {
					// The informer will not report this deletion.
					c.expectations.DeletionObserved(key, podKeys[i])
					if !apierrors.IsNotFound(err) {
						errCh <- err
					}
				}
			})
		}
		wg.Wait()
		close(errCh)
		// The errors are likely all the same: report the first.
		return <-errCh
	}
	return nil
}

// slowStartBatch calls fn count times in batches that start at initial and
// double while every call of a batch succeeds; after a failing batch it
// stops. It returns how many calls succeeded and the first error.
func slowStartBatch(count, initial int, fn func() error) (int, error) {
	remaining, successes := count, 0
	for batch := min(remaining, initial); batch > 0; batch = min(2*batch, remaining) {
		errCh := make(chan error, batch)
		var wg sync.WaitGroup
		for range batch {
			wg.Go(func() {
				if err := fn(); err != nil {
					errCh <- err
				}
			})
		}
		wg.Wait()
		successes += batch - len(errCh)
		if len(errCh) > 0 {
			return successes, <-errCh
		}
		remaining -= batch
	}
	return successes, nil
}

// relatedPods are the Pods of every ReplicaSet with the same controller as
// rs (the ReplicaSets of one Deployment), used to rank Pods by how many of
// their siblings share a node.
func (c *Controller) relatedPods(rs *appsv1.ReplicaSet) []*v1.Pod {
	ref := metav1.GetControllerOfNoCopy(rs)
	if ref == nil {
		return nil
	}
	all, err := c.rsLister.ReplicaSets(rs.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	seen := map[types.UID]bool{}
	var out []*v1.Pod
	for _, other := range all {
		if r := metav1.GetControllerOfNoCopy(other); r == nil || r.UID != ref.UID {
			continue
		}
		sel, err := selectorOf(other)
		if err != nil {
			continue
		}
		pods, err := c.podLister.Pods(other.Namespace).List(sel)
		if err != nil {
			continue
		}
		for _, p := range pods {
			if !seen[p.UID] {
				seen[p.UID] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// podFromTemplate is the Pod rs creates: the template's labels,
// annotations, finalizers and spec, a name generated from rs's, and a
// controller reference that blocks rs's foreground deletion.
func podFromTemplate(rs *appsv1.ReplicaSet) *v1.Pod {
	t := rs.Spec.Template.DeepCopy()
	prefix := rs.Name + "-"
	if len(metavalidation.NameIsDNSSubdomain(prefix, true)) != 0 {
		prefix = rs.Name
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    prefix,
			Namespace:       rs.Namespace,
			Labels:          t.Labels,
			Annotations:     t.Annotations,
			Finalizers:      t.Finalizers,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, controllerKind)},
		},
		Spec: t.Spec,
	}
}

func (c *Controller) createPod(ctx context.Context, rs *appsv1.ReplicaSet) error {
	pod := podFromTemplate(rs)
	if len(pod.Labels) == 0 {
		return fmt.Errorf("create pod for replicaset %s/%s: template has no labels", rs.Namespace, rs.Name)
	}
	created, err := c.client.CoreV1().Pods(rs.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		if !apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
			c.events.Eventf(rs, v1.EventTypeWarning, ReasonFailedCreate, "Error creating: %v", err)
		}
		return fmt.Errorf("create pod for replicaset %s/%s: %w", rs.Namespace, rs.Name, err)
	}
	c.logger.Debug("created pod", "replicaset", rs.Namespace+"/"+rs.Name, "pod", created.Name)
	c.events.Eventf(rs, v1.EventTypeNormal, ReasonSuccessfulCreate, "Created pod: %v", created.Name)
	return nil
}

func (c *Controller) deletePodOf(ctx context.Context, rs *appsv1.ReplicaSet, p *v1.Pod) error {
	err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			c.events.Eventf(rs, v1.EventTypeWarning, ReasonFailedDelete, "Error deleting: %v", err)
		}
		return fmt.Errorf("delete pod %s/%s of replicaset %s: %w", p.Namespace, p.Name, rs.Name, err)
	}
	c.logger.Debug("deleted pod", "replicaset", rs.Namespace+"/"+rs.Name, "pod", p.Name)
	c.events.Eventf(rs, v1.EventTypeNormal, ReasonSuccessfulDelete, "Deleted pod: %v", p.Name)
	return nil
}

// updateStatus writes status unless nothing changed, retrying once on a
// fresh copy; it returns the ReplicaSet as last written or read.
func (c *Controller) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet, status appsv1.ReplicaSetStatus) (*appsv1.ReplicaSet, error) {
	if statusUnchanged(rs, status) {
		return rs, nil
	}
	// The generation acted on, not whatever a retry's GET returns.
	status.ObservedGeneration = rs.Generation
	client := c.client.AppsV1().ReplicaSets(rs.Namespace)
	var lastErr error
	for i := 0; ; i++ {
		rs.Status = status
		updated, err := client.UpdateStatus(ctx, rs, metav1.UpdateOptions{})
		if err == nil {
			return updated, nil
		}
		lastErr = err
		if i >= statusUpdateRetries {
			break
		}
		fresh, err := client.Get(ctx, rs.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get replicaset %s/%s to retry status update: %w", rs.Namespace, rs.Name, err)
		}
		rs = fresh
	}
	return nil, fmt.Errorf("update status of replicaset %s/%s: %w", rs.Namespace, rs.Name, lastErr)
}

func (c *Controller) enqueue(rs *appsv1.ReplicaSet) {
	c.queue.Add(rs.Namespace + "/" + rs.Name)
}

func (c *Controller) addRS(obj any) {
	if rs, ok := obj.(*appsv1.ReplicaSet); ok {
		c.enqueue(rs)
	}
}

func (c *Controller) updateRS(oldObj, curObj any) {
	old, ok1 := oldObj.(*appsv1.ReplicaSet)
	cur, ok2 := curObj.(*appsv1.ReplicaSet)
	if !ok1 || !ok2 {
		return
	}
	// A delete and re-create under one name can arrive as an update.
	if old.UID != cur.UID {
		c.deleteRS(cache.DeletedFinalStateUnknown{Key: old.Namespace + "/" + old.Name, Obj: old})
	}
	// Every update syncs, not only spec changes: a resync then retries
	// ReplicaSets whose creates failed before.
	c.enqueue(cur)
}

func (c *Controller) deleteRS(obj any) {
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
	key := rs.Namespace + "/" + rs.Name
	c.expectations.Delete(key)
	c.queue.Add(key)
}

// resolveControllerRef returns the ReplicaSet ref names, if it still is
// that one (same UID) and of our kind.
func (c *Controller) resolveControllerRef(namespace string, ref *metav1.OwnerReference) *appsv1.ReplicaSet {
	if ref.Kind != controllerKind.Kind {
		return nil
	}
	rs, err := c.rsLister.ReplicaSets(namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return nil
	}
	return rs
}

// matchingReplicaSets are the ReplicaSets whose selector selects p, for
// orphans that one of them may adopt.
func (c *Controller) matchingReplicaSets(p *v1.Pod) []*appsv1.ReplicaSet {
	all, err := c.rsLister.ReplicaSets(p.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []*appsv1.ReplicaSet
	for _, rs := range all {
		sel, err := selectorOf(rs)
		if err == nil && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, rs)
		}
	}
	if len(out) > 1 {
		c.logger.Warn("more than one replicaset selects pod", "pod", p.Namespace+"/"+p.Name, "count", len(out))
	}
	return out
}

func (c *Controller) addPod(obj any) {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	if p.DeletionTimestamp != nil {
		// Seen first while already terminating (e.g. after a restart): it
		// is no creation we wait for.
		c.deletePod(p)
		return
	}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		if rs := c.resolveControllerRef(p.Namespace, ref); rs != nil {
			c.expectations.CreationObserved(rs.Namespace + "/" + rs.Name)
			c.enqueue(rs)
		}
		return
	}
	// An orphan: let every matching ReplicaSet consider adopting it.
	for _, rs := range c.matchingReplicaSets(p) {
		c.enqueue(rs)
	}
}

func (c *Controller) updatePod(oldObj, curObj any) {
	old, ok1 := oldObj.(*v1.Pod)
	cur, ok2 := curObj.(*v1.Pod)
	if !ok1 || !ok2 || cur.ResourceVersion == old.ResourceVersion {
		return // periodic resync: nothing changed
	}
	labelsChanged := !reflect.DeepEqual(cur.Labels, old.Labels)
	if cur.DeletionTimestamp != nil {
		// Graceful deletion: count the Pod as gone now, so a replacement
		// starts while it terminates.
		c.deletePod(cur)
		if labelsChanged {
			c.deletePod(old)
		}
		return
	}
	curRef, oldRef := metav1.GetControllerOfNoCopy(cur), metav1.GetControllerOfNoCopy(old)
	refChanged := !reflect.DeepEqual(curRef, oldRef)
	if refChanged && oldRef != nil {
		if rs := c.resolveControllerRef(old.Namespace, oldRef); rs != nil {
			c.enqueue(rs)
		}
	}
	if curRef != nil {
		rs := c.resolveControllerRef(cur.Namespace, curRef)
		if rs == nil {
			return
		}
		c.enqueue(rs)
		// Becoming available is minReadySeconds after becoming ready;
		// nothing else will tell us (+1s against clock skew, as upstream).
		if !isPodReady(old) && isPodReady(cur) && rs.Spec.MinReadySeconds > 0 {
			c.queue.AddAfter(rs.Namespace+"/"+rs.Name, time.Duration(rs.Spec.MinReadySeconds)*time.Second+time.Second)
		}
		return
	}
	if labelsChanged || refChanged {
		for _, rs := range c.matchingReplicaSets(cur) {
			c.enqueue(rs)
		}
	}
}

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
	if ref == nil {
		return // nobody waits for an orphan
	}
	rs := c.resolveControllerRef(p.Namespace, ref)
	if rs == nil {
		return
	}
	key := rs.Namespace + "/" + rs.Name
	c.expectations.DeletionObserved(key, p.Namespace+"/"+p.Name)
	c.queue.Add(key)
}
