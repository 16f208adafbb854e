// Package namespace is the namespace controller: when a Namespace is being
// deleted it deletes everything in it, waits until it is gone (pods end
// gracefully), then removes the "kubernetes" finalizer so the API server
// removes the Namespace, as kube-controller-manager's namespace controller does.
package namespace

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Config configures the controller.
type Config struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	Logger  *slog.Logger
}

// Controller empties and finalizes terminating namespaces.
type Controller struct {
	client  kubernetes.Interface
	dynamic dynamic.Interface
	disc    discovery.DiscoveryInterface
	lister  corelisters.NamespaceLister
	synced  cache.InformerSynced
	queue   workqueue.TypedRateLimitingInterface[string]
	log     *slog.Logger
}

// New wires the controller to the namespace informer of factory.
func New(cfg Config, factory informers.SharedInformerFactory) (*Controller, error) {
	if cfg.Client == nil || cfg.Dynamic == nil {
		return nil, fmt.Errorf("namespace controller: Client and Dynamic are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	inf := factory.Core().V1().Namespaces()
	c := &Controller{
		client: cfg.Client, dynamic: cfg.Dynamic, disc: cfg.Client.Discovery(),
		lister: inf.Lister(), synced: inf.Informer().HasSynced, log: cfg.Logger.With("controller", "namespace"),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "namespace"}),
	}
	enqueue := func(obj interface{}) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.DeletionTimestamp != nil {
			c.queue.Add(ns.Name)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, cur interface{}) { enqueue(cur) },
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Run processes namespaces until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced) {
		return ctx.Err()
	}
	for i := 0; i < workers; i++ {
		go wait.UntilWithContext(ctx, c.worker, time.Second)
	}
	<-ctx.Done()
	return nil
}

func (c *Controller) worker(ctx context.Context) {
	for {
		name, quit := c.queue.Get()
		if quit {
			return
		}
		func() {
			defer c.queue.Done(name)
			requeue, err := c.sync(ctx, name)
			switch {
			case err != nil:
				c.log.Warn("sync namespace", "namespace", name, "err", err)
				c.queue.AddRateLimited(name)
			case requeue > 0:
				c.queue.Forget(name)
				c.queue.AddAfter(name, requeue)
			default:
				c.queue.Forget(name)
			}
		}()
	}
}

// sync empties a terminating namespace. It returns how long to wait before
// looking again when content is still going away.
func (c *Controller) sync(ctx context.Context, name string) (time.Duration, error) {
	ns, err := c.lister.Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if ns.DeletionTimestamp == nil {
		return 0, nil
	}
	resources, err := c.namespacedResources()
	if err != nil {
		return 0, err
	}
	remaining := 0
	background := metav1.DeletePropagationBackground
	for _, gvr := range resources {
		ri := c.dynamic.Resource(gvr).Namespace(name)
		list, err := ri.List(ctx, metav1.ListOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
				continue
			}
			return 0, fmt.Errorf("list %s in %s: %w", gvr.Resource, name, err)
		}
		if len(list.Items) == 0 {
			continue
		}
		remaining += len(list.Items)
		if err := ri.DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &background}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("delete %s in %s: %w", gvr.Resource, name, err)
		}
	}
	if remaining > 0 {
		c.log.Debug("namespace content still going", "namespace", name, "objects", remaining)
		return time.Second, nil
	}
	fresh, err := c.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var keep []corev1.FinalizerName
	for _, f := range fresh.Spec.Finalizers {
		if f != corev1.FinalizerKubernetes {
			keep = append(keep, f)
		}
	}
	if len(keep) == len(fresh.Spec.Finalizers) {
		return 0, nil
	}
	fresh.Spec.Finalizers = keep
	if _, err := c.client.CoreV1().Namespaces().Finalize(ctx, fresh, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("finalize namespace %s: %w", name, err)
	}
	c.log.Info("namespace deleted", "namespace", name)
	return 0, nil
}

// namespacedResources lists every namespaced resource that can be listed and
// deleted, from discovery.
func (c *Controller) namespacedResources() ([]schema.GroupVersionResource, error) {
	lists, err := c.disc.ServerPreferredNamespacedResources()
	if err != nil && len(lists) == 0 {
		return nil, fmt.Errorf("discover namespaced resources: %w", err)
	}
	var out []schema.GroupVersionResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if !r.Namespaced || containsSlash(r.Name) || !hasVerbs(r.Verbs, "list", "deletecollection") {
				continue
			}
			out = append(out, gv.WithResource(r.Name))
		}
	}
	return out, nil
}

func containsSlash(s string) bool {
	for _, r := range s {
		if r == '/' {
			return true
		}
	}
	return false
}

func hasVerbs(have metav1.Verbs, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
