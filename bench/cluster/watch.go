package cluster

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// broadcast wakes every waiter at once: waiters take the channel and wait
// for it to close.
type broadcast struct {
	mu sync.Mutex // guards ch
	ch chan struct{}
}

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// listWatch lists, then watches from the list's resourceVersion, calling
// handle with the time each event arrived; on a closed watch it lists and
// watches again (as after a server restart) until ctx is done.
func listWatch(ctx context.Context, list func(context.Context) (string, error), watchFrom func(context.Context, string) (watch.Interface, error), handle func(watch.Event, time.Time)) {
	for ctx.Err() == nil {
		rv, err := list(ctx)
		if err != nil {
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		w, err := watchFrom(ctx, rv)
		if err != nil {
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		func() {
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-w.ResultChan():
					if !ok {
						return
					}
					if ev.Type == watch.Error {
						return
					}
					handle(ev, time.Now())
				}
			}
		}()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// PodTimes are the moments the bench first saw a pod in each state.
type PodTimes struct {
	Seen, Scheduled, Running, Ready, Deleted time.Time
}

// PodWatch records what happens to the Pods of the namespace.
type PodWatch struct {
	b broadcast

	mu    sync.Mutex // guards pods and times
	pods  map[string]*corev1.Pod
	times map[string]*PodTimes
}

// WatchPods starts a PodWatch that runs until ctx is done.
func WatchPods(ctx context.Context, c kubernetes.Interface) *PodWatch {
	pw := &PodWatch{pods: map[string]*corev1.Pod{}, times: map[string]*PodTimes{}}
	api := c.CoreV1().Pods(Namespace)
	go listWatch(ctx,
		func(ctx context.Context) (string, error) {
			l, err := api.List(ctx, metav1.ListOptions{})
			if err != nil {
				return "", err
			}
			now := time.Now()
			pw.mu.Lock()
			seen := map[string]bool{}
			for i := range l.Items {
				seen[l.Items[i].Name] = true
				pw.observe(&l.Items[i], now)
			}
			for name := range pw.pods {
				if !seen[name] {
					pw.gone(name, now)
				}
			}
			pw.mu.Unlock()
			pw.b.notify()
			return l.ResourceVersion, nil
		},
		func(ctx context.Context, rv string) (watch.Interface, error) {
			return api.Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: false})
		},
		func(ev watch.Event, at time.Time) {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				return
			}
			pw.mu.Lock()
			if ev.Type == watch.Deleted {
				pw.gone(p.Name, at)
			} else {
				pw.observe(p, at)
			}
			pw.mu.Unlock()
			pw.b.notify()
		})
	return pw
}

func (pw *PodWatch) timesOf(name string) *PodTimes {
	t := pw.times[name]
	if t == nil {
		t = &PodTimes{}
		pw.times[name] = t
	}
	return t
}

func (pw *PodWatch) observe(p *corev1.Pod, at time.Time) {
	pw.pods[p.Name] = p
	t := pw.timesOf(p.Name)
	if t.Seen.IsZero() || !t.Deleted.IsZero() {
		*t = PodTimes{Seen: at}
	}
	if t.Scheduled.IsZero() && p.Spec.NodeName != "" {
		t.Scheduled = at
	}
	if t.Running.IsZero() && p.Status.Phase == corev1.PodRunning {
		t.Running = at
	}
	if t.Ready.IsZero() && PodReady(p) {
		t.Ready = at
	}
}

func (pw *PodWatch) gone(name string, at time.Time) {
	delete(pw.pods, name)
	t := pw.timesOf(name)
	if t.Deleted.IsZero() {
		t.Deleted = at
	}
}

// Forget drops what was recorded about name, so a new pod of that name
// starts afresh.
func (pw *PodWatch) Forget(name string) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	delete(pw.times, name)
}

// Times returns what was recorded about name.
func (pw *PodWatch) Times(name string) PodTimes {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if t := pw.times[name]; t != nil {
		return *t
	}
	return PodTimes{}
}

// Pod returns the last seen state of name, or nil.
func (pw *PodWatch) Pod(name string) *corev1.Pod {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return pw.pods[name]
}

// Pods returns the pods now present whose labels include sel.
func (pw *PodWatch) Pods(sel map[string]string) []*corev1.Pod {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	var out []*corev1.Pod
	for _, p := range pw.pods {
		match := true
		for k, v := range sel {
			if p.Labels[k] != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// WaitFor waits until cond holds, checking after every change.
func (pw *PodWatch) WaitFor(ctx context.Context, what string, cond func(*PodWatch) bool) error {
	for {
		ch := pw.b.wait()
		if cond(pw) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-ch:
		case <-time.After(time.Second):
		}
	}
}

// WaitReady waits until pod name has been seen Ready and returns when.
func (pw *PodWatch) WaitReady(ctx context.Context, name string) (time.Time, error) {
	var at time.Time
	err := pw.WaitFor(ctx, "pod "+name+" to be Ready", func(pw *PodWatch) bool {
		at = pw.Times(name).Ready
		return !at.IsZero()
	})
	if err != nil {
		if p := pw.Pod(name); p != nil {
			err = fmt.Errorf("%w (phase %s, %s)", err, p.Status.Phase, containerStates(p))
		}
	}
	return at, err
}

// WaitGone waits until pod name has been deleted and returns when.
func (pw *PodWatch) WaitGone(ctx context.Context, name string) (time.Time, error) {
	var at time.Time
	err := pw.WaitFor(ctx, "pod "+name+" to be gone", func(pw *PodWatch) bool {
		pw.mu.Lock()
		defer pw.mu.Unlock()
		_, present := pw.pods[name]
		if t := pw.times[name]; t != nil && !present {
			at = t.Deleted
		}
		return !present && !at.IsZero()
	})
	return at, err
}

// WaitAllReady waits until every named pod is Ready.
func (pw *PodWatch) WaitAllReady(ctx context.Context, names ...string) error {
	return pw.WaitFor(ctx, fmt.Sprintf("%d pods to be Ready", len(names)), func(pw *PodWatch) bool {
		for _, n := range names {
			if pw.Times(n).Ready.IsZero() {
				return false
			}
		}
		return true
	})
}

func containerStates(p *corev1.Pod) string {
	var out string
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			out += fmt.Sprintf("%s waiting %s %s; ", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Running != nil:
			out += fmt.Sprintf("%s running ready=%v; ", cs.Name, cs.Ready)
		case cs.State.Terminated != nil:
			out += fmt.Sprintf("%s terminated %d %s; ", cs.Name, cs.State.Terminated.ExitCode, cs.State.Terminated.Reason)
		}
	}
	if out == "" {
		out = "no container status"
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			out += fmt.Sprintf("%s: %s; ", c.Type, c.Message)
		}
	}
	return out
}

// EndpointState is one endpoint address's conditions.
type EndpointState struct{ Ready, Serving, Terminating bool }

// SliceSnapshot is the endpoints of one Service at one moment.
type SliceSnapshot struct {
	At        time.Time
	Endpoints map[string]EndpointState
}

// SliceWatch records the history of each Service's endpoints.
type SliceWatch struct {
	b broadcast

	mu      sync.Mutex // guards slices and history
	slices  map[string]*discoveryv1.EndpointSlice
	history map[string][]SliceSnapshot
}

// WatchSlices starts a SliceWatch that runs until ctx is done.
func WatchSlices(ctx context.Context, c kubernetes.Interface) *SliceWatch {
	sw := &SliceWatch{slices: map[string]*discoveryv1.EndpointSlice{}, history: map[string][]SliceSnapshot{}}
	api := c.DiscoveryV1().EndpointSlices(Namespace)
	go listWatch(ctx,
		func(ctx context.Context) (string, error) {
			l, err := api.List(ctx, metav1.ListOptions{})
			if err != nil {
				return "", err
			}
			now := time.Now()
			sw.mu.Lock()
			touched := map[string]bool{}
			for name, s := range sw.slices {
				touched[s.Labels[discoveryv1.LabelServiceName]] = true
				delete(sw.slices, name)
			}
			for i := range l.Items {
				s := &l.Items[i]
				sw.slices[s.Name] = s
				touched[s.Labels[discoveryv1.LabelServiceName]] = true
			}
			for svc := range touched {
				sw.record(svc, now)
			}
			sw.mu.Unlock()
			sw.b.notify()
			return l.ResourceVersion, nil
		},
		func(ctx context.Context, rv string) (watch.Interface, error) {
			return api.Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
		},
		func(ev watch.Event, at time.Time) {
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				return
			}
			sw.mu.Lock()
			if ev.Type == watch.Deleted {
				delete(sw.slices, s.Name)
			} else {
				sw.slices[s.Name] = s
			}
			sw.record(s.Labels[discoveryv1.LabelServiceName], at)
			sw.mu.Unlock()
			sw.b.notify()
		})
	return sw
}

func (sw *SliceWatch) record(svc string, at time.Time) {
	if svc == "" {
		return
	}
	eps := map[string]EndpointState{}
	for _, s := range sw.slices {
		if s.Labels[discoveryv1.LabelServiceName] != svc {
			continue
		}
		for _, e := range s.Endpoints {
			st := EndpointState{
				Ready:       e.Conditions.Ready == nil || *e.Conditions.Ready,
				Serving:     e.Conditions.Serving == nil || *e.Conditions.Serving,
				Terminating: e.Conditions.Terminating != nil && *e.Conditions.Terminating,
			}
			for _, a := range e.Addresses {
				eps[a] = st
			}
		}
	}
	h := sw.history[svc]
	if len(h) > 0 && sameEndpoints(h[len(h)-1].Endpoints, eps) {
		return
	}
	if len(h) > 1000 {
		h = h[len(h)-500:]
	}
	sw.history[svc] = append(h, SliceSnapshot{At: at, Endpoints: eps})
}

func sameEndpoints(a, b map[string]EndpointState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// WaitFor waits for the first snapshot of svc at or after since for which
// cond holds and returns its time.
func (sw *SliceWatch) WaitFor(ctx context.Context, svc string, since time.Time, what string, cond func(map[string]EndpointState) bool) (time.Time, error) {
	for {
		ch := sw.b.wait()
		sw.mu.Lock()
		for _, s := range sw.history[svc] {
			if !s.At.Before(since) && cond(s.Endpoints) {
				sw.mu.Unlock()
				return s.At, nil
			}
		}
		sw.mu.Unlock()
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-ch:
		case <-time.After(time.Second):
		}
	}
}
