package forward

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// endpointSet is the current endpoint view of one target, shared between
// its watch (the only writer) and the connections waiting for endpoints.
type endpointSet struct {
	mu      sync.Mutex
	view    endpointView  // guarded by mu
	gone    string        // guarded by mu: non-empty when new connections must be refused at once, and why
	synced  bool          // guarded by mu
	changed chan struct{} // guarded by mu: closed and replaced on every update
}

func newEndpointSet() *endpointSet { return &endpointSet{changed: make(chan struct{})} }

func (s *endpointSet) update(v endpointView, gone string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.view, s.gone, s.synced = v, gone, true
	close(s.changed)
	s.changed = make(chan struct{})
}

// snapshot returns the current view, the refusal reason if any, and a
// channel that is closed at the next update.
func (s *endpointSet) snapshot() (endpointView, string, bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view, s.gone, s.synced, s.changed
}

// source is how a target learns its endpoints: what to list and watch, and
// how to turn the watched objects into an endpoint view.
type source struct {
	resource string // what is watched, for messages
	example  runtime.Object
	list     func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error)
	watch    func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	// compute turns the objects in the informer's store into a view, and a
	// reason to refuse connections outright (pod/NAME that is gone).
	compute func(objs []any) (endpointView, string)
}

// listWatch adapts a source to the informer, reporting each API call's
// outcome so that the status line can say when the API server is unreachable.
type listWatch struct {
	src    *source
	report func(error)
}

var _ cache.ListerWatcher = (*listWatch)(nil)
var _ cache.ListerWatcherWithContext = (*listWatch)(nil)

func (lw *listWatch) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	obj, err := lw.src.list(ctx, opts)
	lw.report(err)
	return obj, err
}

func (lw *listWatch) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := lw.src.watch(ctx, opts)
	lw.report(err)
	return w, err
}

func (lw *listWatch) List(opts metav1.ListOptions) (runtime.Object, error) {
	return lw.ListWithContext(context.Background(), opts)
}

func (lw *listWatch) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return lw.WatchWithContext(context.Background(), opts)
}

// IsWatchListSemanticsUnSupported keeps the reflector on plain list+watch,
// which every API server serves, instead of the newer streaming list.
func (lw *listWatch) IsWatchListSemanticsUnSupported() bool { return true }

// serviceSource follows the EndpointSlices of a Service.
func serviceSource(client kubernetes.Interface, namespace, name string, portNames []string) *source {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name})
	tweak := func(o *metav1.ListOptions) { o.LabelSelector = sel.String() }
	slices := client.DiscoveryV1().EndpointSlices(namespace)
	return &source{
		resource: "endpointslices",
		example:  &discoveryv1.EndpointSlice{},
		list: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return slices.List(ctx, o)
		},
		watch: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return slices.Watch(ctx, o)
		},
		compute: func(objs []any) (endpointView, string) {
			var list []*discoveryv1.EndpointSlice
			for _, o := range objs {
				// Filter again: not every server (nor client-go's fake) filters watches.
				if s, ok := o.(*discoveryv1.EndpointSlice); ok && sel.Matches(labels.Set(s.Labels)) {
					list = append(list, s)
				}
			}
			return sliceEndpoints(namespace, list, portNames), ""
		},
	}
}

// podsSource follows the pods a Deployment selects.
func podsSource(client kubernetes.Interface, namespace string, sel labels.Selector, remotes []intstr.IntOrString) *source {
	pods := client.CoreV1().Pods(namespace)
	tweak := func(o *metav1.ListOptions) { o.LabelSelector = sel.String() }
	return &source{
		resource: "pods",
		example:  &corev1.Pod{},
		list: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return pods.List(ctx, o)
		},
		watch: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return pods.Watch(ctx, o)
		},
		compute: func(objs []any) (endpointView, string) {
			var list []*corev1.Pod
			for _, o := range objs {
				if p, ok := o.(*corev1.Pod); ok && p.Namespace == namespace && sel.Matches(labels.Set(p.Labels)) {
					list = append(list, p)
				}
			}
			return podEndpoints(list, remotes, true), ""
		},
	}
}

// podSource follows one pod by name.
func podSource(client kubernetes.Interface, namespace, name string, remotes []intstr.IntOrString) *source {
	pods := client.CoreV1().Pods(namespace)
	tweak := func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	}
	return &source{
		resource: "pods",
		example:  &corev1.Pod{},
		list: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return pods.List(ctx, o)
		},
		watch: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return pods.Watch(ctx, o)
		},
		compute: func(objs []any) (endpointView, string) {
			var pod *corev1.Pod
			for _, o := range objs {
				if p, ok := o.(*corev1.Pod); ok && p.Namespace == namespace && p.Name == name {
					pod = p
				}
			}
			return singlePodView(pod, namespace, name, remotes)
		},
	}
}

// singlePodView applies the pod/NAME rules: like kubectl, the pod must be
// Running (readiness is not required); unlike a Service, a pod that is gone,
// finished or terminating will not come back, so connections are refused at
// once with a reason instead of waiting.
func singlePodView(pod *corev1.Pod, namespace, name string, remotes []intstr.IntOrString) (endpointView, string) {
	const follow = "pod/NAME follows one pod; use deploy/NAME or svc/NAME to follow its replacements"
	switch {
	case pod == nil:
		return endpointView{}, fmt.Sprintf("pod %s/%s no longer exists (%s)", namespace, name, follow)
	case pod.DeletionTimestamp != nil:
		return endpointView{Total: 1}, fmt.Sprintf("pod %s/%s is terminating (%s)", namespace, name, follow)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return endpointView{Total: 1}, fmt.Sprintf("pod %s/%s has stopped (phase %s; %s)", namespace, name, pod.Status.Phase, follow)
	}
	return podEndpoints([]*corev1.Pod{pod}, remotes, false), ""
}

// deploymentSelector returns the label selector of a Deployment's pods.
func deploymentSelector(d *appsv1.Deployment) (labels.Selector, error) {
	if d.Spec.Selector == nil {
		return nil, fmt.Errorf("deployment %s/%s has no spec.selector", d.Namespace, d.Name)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s/%s has an invalid selector: %w", d.Namespace, d.Name, err)
	}
	if sel.Empty() {
		return nil, fmt.Errorf("deployment %s/%s has an empty selector, which would select every pod", d.Namespace, d.Name)
	}
	return sel, nil
}

// runWatch keeps set up to date from src until ctx ends.
func runWatch(ctx context.Context, src *source, set *endpointSet, report func(error), onUpdate func(endpointView), log *slog.Logger) {
	inf := cache.NewSharedIndexInformerWithOptions(&listWatch{src: src, report: report}, src.example, cache.SharedIndexInformerOptions{})
	// The default handler logs every failed attempt; the status line says
	// it instead, and report logs changes only.
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) { report(err) })

	var mu sync.Mutex // serializes compute+update so an older view never overwrites a newer one
	synced := false
	refresh := func() {
		mu.Lock()
		defer mu.Unlock()
		if !synced {
			return
		}
		view, gone := src.compute(inf.GetStore().List())
		set.update(view, gone)
		onUpdate(view)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { refresh() },
		UpdateFunc: func(any, any) { refresh() },
		DeleteFunc: func(any) { refresh() },
	}); err != nil {
		log.Error("watch setup failed", "err", err)
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(ctx) })
	if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		mu.Lock()
		synced = true
		mu.Unlock()
		refresh()
	}
	wg.Wait()
}

func (s *source) resourceName() string {
	if s == nil {
		return "objects"
	}
	return s.resource
}
