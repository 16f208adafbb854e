package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
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
	// ReasonScheduled is the Event reason for a bound Pod, as upstream.
	ReasonScheduled = "Scheduled"
	// ReasonFailedScheduling is the Event reason when no Node fits, as upstream.
	ReasonFailedScheduling = "FailedScheduling"

	// Back-off between tries for a Pod that did not fit. Node changes retry
	// at once; the back-off is the fallback for changes no event announces.
	initialBackoff = time.Second
	maxBackoff     = time.Minute
)

// Config configures a Controller.
type Config struct {
	// Client talks to the Kubernetes API.
	Client kubernetes.Interface
	// Logger receives the scheduler's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Controller is the scheduler: it binds unscheduled Pods to Nodes.
type Controller struct {
	client  kubernetes.Interface
	logger  *slog.Logger
	klogger klog.Logger

	podInformer  cache.SharedIndexInformer
	nodeInformer cache.SharedIndexInformer
	podLister    corelisters.PodLister
	nodeLister   corelisters.NodeLister

	events *eventRecorder

	mu sync.Mutex
	// assumed maps the key of a Pod this scheduler bound to its Node until
	// the informer shows the binding. Counting these keeps a burst of Pods
	// from all landing on the Node that looked emptiest. Protected by mu.
	assumed map[string]string
	// waiting holds keys of Pods that fit nowhere; a Node change retries
	// them. Protected by mu.
	waiting map[string]struct{}

	// queue holds namespace/name keys of Pods to schedule; created by Run.
	queue workqueue.TypedRateLimitingInterface[string]

	running atomic.Bool
}

// New builds a Controller on the Pod and Node informers of factory. Call it
// before factory.Start; nothing runs until Run.
func New(cfg Config, factory informers.SharedInformerFactory) (*Controller, error) {
	if cfg.Client == nil {
		return nil, errors.New("scheduler: Config.Client is nil")
	}
	if factory == nil {
		return nil, errors.New("scheduler: informer factory is nil")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("controller", "scheduler")
	pods := factory.Core().V1().Pods()
	nodes := factory.Core().V1().Nodes()
	return &Controller{
		client:       cfg.Client,
		logger:       logger,
		klogger:      logr.FromSlogHandler(logger.Handler()),
		podInformer:  pods.Informer(),
		nodeInformer: nodes.Informer(),
		podLister:    pods.Lister(),
		nodeLister:   nodes.Lister(),
		events:       &eventRecorder{},
		assumed:      map[string]string{},
		waiting:      map[string]struct{}{},
	}, nil
}

// Run schedules with workers parallel workers until ctx is done, then stops
// every goroutine it started and returns nil. One worker spreads Pods most
// evenly; more only help when binding is slow.
func (s *Controller) Run(ctx context.Context, workers int) error {
	if workers < 1 {
		return fmt.Errorf("scheduler: workers must be at least 1, got %d", workers)
	}
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("scheduler: already running")
	}
	defer s.running.Store(false)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
	broadcaster.StartEventWatcher(func(e *v1.Event) {
		s.logger.Debug("event", "pod", e.InvolvedObject.Namespace+"/"+e.InvolvedObject.Name, "reason", e.Reason, "message", e.Message)
	})
	s.events.set(broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: v1.DefaultSchedulerName}))
	defer func() {
		s.events.set(nil)
		broadcaster.Shutdown()
	}()

	s.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](initialBackoff, maxBackoff),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "scheduler"},
	)
	podReg, err := s.podInformer.AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.onPodAdd,
		UpdateFunc: s.onPodUpdate,
		DeleteFunc: s.onPodDelete,
	}, cache.HandlerOptions{Logger: &s.klogger})
	if err != nil {
		s.queue.ShutDown()
		return fmt.Errorf("scheduler: add pod event handler: %w", err)
	}
	defer func() { _ = s.podInformer.RemoveEventHandler(podReg) }()
	nodeReg, err := s.nodeInformer.AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.retryWaiting() },
		UpdateFunc: s.onNodeUpdate,
	}, cache.HandlerOptions{Logger: &s.klogger})
	if err != nil {
		s.queue.ShutDown()
		return fmt.Errorf("scheduler: add node event handler: %w", err)
	}
	defer func() { _ = s.nodeInformer.RemoveEventHandler(nodeReg) }()

	s.logger.Info("starting scheduler", "workers", workers)
	defer s.logger.Info("stopped scheduler")
	if !cache.WaitForCacheSync(ctx.Done(), podReg.HasSynced, nodeReg.HasSynced) {
		s.queue.ShutDown()
		return nil
	}

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for s.processNextItem(ctx) {
			}
		})
	}
	<-ctx.Done()
	s.queue.ShutDown()
	wg.Wait()
	return nil
}

// errUnschedulable marks a sync that found no Node; the Pod is retried
// with back-off and on Node changes.
var errUnschedulable = errors.New("no node fits")

func (s *Controller) processNextItem(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	err := s.schedule(ctx, key)
	switch {
	case err == nil:
		s.queue.Forget(key)
	case errors.Is(err, errUnschedulable):
		s.queue.AddRateLimited(key)
	default:
		// Never dropped: an unbound Pod never runs.
		s.logger.Info("scheduling failed, retrying", "pod", key, "err", err)
		s.queue.AddRateLimited(key)
	}
	return true
}

// responsible reports whether pod waits for this scheduler.
func responsible(pod *v1.Pod) bool {
	if pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil || terminal(pod) {
		return false
	}
	return pod.Spec.SchedulerName == "" || pod.Spec.SchedulerName == v1.DefaultSchedulerName
}

func podKey(pod *v1.Pod) string { return pod.Namespace + "/" + pod.Name }

func (s *Controller) onPodAdd(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	if pod.Spec.NodeName != "" {
		s.forget(podKey(pod), false)
		return
	}
	if responsible(pod) {
		s.queue.Add(podKey(pod))
	}
}

func (s *Controller) onPodUpdate(oldObj, curObj any) {
	old, ok1 := oldObj.(*v1.Pod)
	cur, ok2 := curObj.(*v1.Pod)
	if !ok1 || !ok2 {
		return
	}
	key := podKey(cur)
	if cur.Spec.NodeName != "" {
		s.forget(key, false)
		// A Pod that finished frees its place on the Node.
		if !terminal(old) && terminal(cur) {
			s.retryWaiting()
		}
		return
	}
	// Status-only updates, our own PodScheduled condition among them, change
	// nothing about where the Pod fits; spec and label changes may (a
	// scheduling gate removed, say).
	if responsible(cur) && (!equality.Semantic.DeepEqual(old.Spec, cur.Spec) || !maps.Equal(old.Labels, cur.Labels)) {
		s.queue.Add(key)
	}
}

func (s *Controller) onPodDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	s.forget(podKey(pod), true)
	if pod.Spec.NodeName != "" {
		s.retryWaiting()
	}
}

func (s *Controller) onNodeUpdate(oldObj, curObj any) {
	old, ok1 := oldObj.(*v1.Node)
	cur, ok2 := curObj.(*v1.Node)
	if !ok1 || !ok2 {
		return
	}
	// Heartbeats change conditions' timestamps all the time; only what the
	// fit checks read matters.
	if nodeReady(old) != nodeReady(cur) || old.Spec.Unschedulable != cur.Spec.Unschedulable ||
		!maps.Equal(old.Labels, cur.Labels) || !equality.Semantic.DeepEqual(old.Spec.Taints, cur.Spec.Taints) ||
		!old.Status.Allocatable.Pods().Equal(*cur.Status.Allocatable.Pods()) {
		s.retryWaiting()
	}
}

// forget drops what the scheduler remembers about a Pod: its assumed Node
// once the informer shows it bound (or it is gone), and, if gone, its wait.
func (s *Controller) forget(key string, gone bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.assumed, key)
	if gone {
		delete(s.waiting, key)
	}
}

// retryWaiting queues every Pod that fit nowhere, because the cluster changed.
func (s *Controller) retryWaiting() {
	s.mu.Lock()
	keys := make([]string, 0, len(s.waiting))
	for k := range s.waiting {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	for _, k := range keys {
		s.queue.Add(k)
	}
}

// podsPerNode counts the non-terminated Pods bound to each Node, including
// Pods bound here that the informer has not shown as bound yet.
func (s *Controller) podsPerNode() (map[string]int, error) {
	pods, err := s.podLister.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	counts := map[string]int{}
	for _, p := range pods {
		if p.Spec.NodeName != "" && !terminal(p) {
			counts[p.Spec.NodeName]++
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, node := range s.assumed {
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		if p, err := s.podLister.Pods(ns).Get(name); err == nil && p.Spec.NodeName != "" {
			continue // the informer caught up; counted above
		}
		counts[node]++
	}
	return counts, nil
}

// schedule finds a Node for one Pod and binds the Pod to it.
func (s *Controller) schedule(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("split pod key %q: %w", key, err)
	}
	pod, err := s.podLister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		s.forget(key, true)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get pod %s from cache: %w", key, err)
	}
	if !responsible(pod) {
		s.forget(key, true)
		return nil
	}
	s.mu.Lock()
	_, bound := s.assumed[key]
	s.mu.Unlock()
	if bound {
		return nil // bound already; the informer has yet to show it
	}
	if len(pod.Spec.SchedulingGates) > 0 {
		// The Pod's owner holds it back; removing the gates is a spec update,
		// which requeues it.
		return s.setScheduledFalse(ctx, pod, v1.PodReasonSchedulingGated, "Scheduling is blocked due to non-empty scheduling gates")
	}

	nodes, err := s.nodeLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	counts, err := s.podsPerNode()
	if err != nil {
		return err
	}
	node, why := pickNode(pod, nodes, counts)
	if node == "" {
		s.mu.Lock()
		s.waiting[key] = struct{}{}
		s.mu.Unlock()
		s.logger.Info("no node fits pod", "pod", key, "reason", why)
		s.events.Event(pod, v1.EventTypeWarning, ReasonFailedScheduling, why)
		if err := s.setScheduledFalse(ctx, pod, v1.PodReasonUnschedulable, why); err != nil {
			return err
		}
		return errUnschedulable
	}

	err = s.client.CoreV1().Pods(ns).Bind(ctx, &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: pod.UID},
		Target:     v1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	switch {
	case err == nil:
	case apierrors.IsNotFound(err):
		s.forget(key, true)
		return nil
	case apierrors.IsConflict(err):
		// Bound already, by somebody else or by us before a restart.
		s.logger.Info("pod already bound", "pod", key, "err", err)
		s.forget(key, true)
		return nil
	default:
		s.events.Eventf(pod, v1.EventTypeWarning, ReasonFailedScheduling, "Binding rejected: %v", err)
		return fmt.Errorf("bind pod %s to node %s: %w", key, node, err)
	}
	s.mu.Lock()
	s.assumed[key] = node
	delete(s.waiting, key)
	s.mu.Unlock()
	s.logger.Info("bound pod", "pod", key, "node", node)
	s.events.Eventf(pod, v1.EventTypeNormal, ReasonScheduled, "Successfully assigned %s/%s to %s", ns, name, node)
	return nil
}

// setScheduledFalse records on the Pod why it is not scheduled, as the
// PodScheduled condition that kubectl get shows as Pending's reason. It
// writes only when the condition changes.
func (s *Controller) setScheduledFalse(ctx context.Context, pod *v1.Pod, reason, message string) error {
	want := v1.PodCondition{
		Type:               v1.PodScheduled,
		Status:             v1.ConditionFalse,
		Reason:             reason,
		Message:            message,
		LastTransitionTime: metav1.Now(),
	}
	upd := pod.DeepCopy()
	found := false
	for i := range upd.Status.Conditions {
		c := &upd.Status.Conditions[i]
		if c.Type != v1.PodScheduled {
			continue
		}
		found = true
		if c.Status == want.Status && c.Reason == want.Reason && c.Message == want.Message {
			return nil
		}
		if c.Status == want.Status {
			want.LastTransitionTime = c.LastTransitionTime
		}
		*c = want
	}
	if !found {
		upd.Status.Conditions = append(upd.Status.Conditions, want)
	}
	if _, err := s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("set PodScheduled condition of pod %s: %w", podKey(pod), err)
	}
	return nil
}
