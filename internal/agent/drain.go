package agent

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// Endpoint draining. On a real cluster a pod gets SIGTERM the moment it is
// deleted, while proxies still send it new connections until its endpoint
// is removed from the EndpointSlices, so connections fail during rollouts
// unless the pod has a preStop sleep. berth's agent holds SIGTERM (and the
// preStop hook) until none of the pod's endpoints is ready in any
// EndpointSlice any more, for at most maxDrainWait (and half the grace
// period), then waits drainMargin for the proxies to apply it. A pod that
// backs no Service is not held.
const (
	maxDrainWait = 2 * time.Second
	drainMargin  = 50 * time.Millisecond
	drainPoll    = 10 * time.Millisecond
)

// sliceCache watches EndpointSlices for draining; it starts on the first pod
// deletion, so an agent that deletes nothing caches none.
type sliceCache struct {
	once   sync.Once
	lister discoverylisters.EndpointSliceLister
	synced cache.InformerSynced
}

func (a *Agent) sliceLister(ctx context.Context) (discoverylisters.EndpointSliceLister, bool) {
	a.slices.once.Do(func() {
		f := informers.NewSharedInformerFactory(a.client, 0)
		inf := f.Discovery().V1().EndpointSlices()
		a.slices.lister, a.slices.synced = inf.Lister(), inf.Informer().HasSynced
		f.Start(ctx.Done())
		go func() { <-ctx.Done(); f.Shutdown() }()
	})
	return a.slices.lister, a.slices.synced()
}

// endpointsReady says whether an EndpointSlice in the pod's namespace still
// lists one of the pod's addresses as ready. It answers true while the slice
// cache is not yet synced.
func (a *Agent) endpointsReady(ctx context.Context, pod *corev1.Pod) bool {
	l, synced := a.sliceLister(ctx)
	if !synced {
		return true
	}
	list, err := l.EndpointSlices(pod.Namespace).List(labels.Everything())
	if err != nil {
		return false
	}
	return podReadyIn(list, pod)
}

// podReadyIn says whether any slice has a ready endpoint that is pod.
func podReadyIn(list []*discoveryv1.EndpointSlice, pod *corev1.Pod) bool {
	for _, s := range list {
		for _, e := range s.Endpoints {
			if e.TargetRef == nil || e.TargetRef.UID != pod.UID {
				continue
			}
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				return true
			}
		}
	}
	return false
}

// drainWait is how long a terminating pod is held before its containers
// are stopped.
func drainWait(grace time.Duration) time.Duration {
	return min(maxDrainWait, grace/2)
}
