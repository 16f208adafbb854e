package endpointslice

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

var demo = map[string]string{"app": "demo"}

func TestNewValidatesConfig(t *testing.T) {
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	tests := []struct {
		name    string
		cfg     Config
		factory informers.SharedInformerFactory
	}{
		{"nil client", Config{}, factory},
		{"nil factory", Config{Client: client}, nil},
		{"too many per slice", Config{Client: client, MaxEndpointsPerSlice: 1001}, factory},
		{"negative per slice", Config{Client: client, MaxEndpointsPerSlice: -1}, factory},
		{"negative batch", Config{Client: client, BatchPeriod: -1}, factory},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg, tt.factory); err == nil {
				t.Fatal("New succeeded, want error")
			}
		})
	}
	c, err := New(Config{Client: client}, factory)
	if err != nil {
		t.Fatalf("New with defaults: %v", err)
	}
	if err := c.Run(context.Background(), 0); err == nil {
		t.Fatal("Run with 0 workers succeeded, want error")
	}
}

// TestSyncEndpointConditions covers how Pod readiness and termination map to
// the conditions of its endpoint.
func TestSyncEndpointConditions(t *testing.T) {
	tests := []struct {
		name                            string
		opts                            []podOpt
		ready, serving, terminatingCond bool
	}{
		{"ready pod", nil, true, true, false},
		{"not ready pod", []podOpt{notReady}, false, false, false},
		{"terminating ready pod keeps serving", []podOpt{terminating}, false, true, true},
		{"terminating not ready pod", []podOpt{terminating, notReady}, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, true)
			f.seed(node("node-1"), service("demo", demo, intstr.FromInt32(8080)), pod(1, demo, tt.opts...))
			f.sync("demo")

			slices := f.slices()
			if len(slices) != 1 || len(slices[0].Endpoints) != 1 {
				t.Fatalf("want 1 slice with 1 endpoint, got %+v", slices)
			}
			c := slices[0].Endpoints[0].Conditions
			got := []any{deref(c.Ready), deref(c.Serving), deref(c.Terminating)}
			want := []any{tt.ready, tt.serving, tt.terminatingCond}
			for i, name := range []string{"ready", "serving", "terminating"} {
				if got[i] != want[i] {
					t.Errorf("%s = %v, want %v", name, got[i], want[i])
				}
			}
		})
	}
}

func TestSyncTwoReadyPods(t *testing.T) {
	f := newFixture(t, true)
	svc := service("demo", demo, intstr.FromInt32(8080))
	other := pod(3, map[string]string{"app": "other"})
	f.seed(node("node-1"), svc, pod(1, demo), pod(2, demo), other)
	f.sync("demo")

	slices := f.slices()
	if len(slices) != 1 {
		t.Fatalf("want 1 slice, got %d", len(slices))
	}
	s := slices[0]
	if s.Labels[discovery.LabelServiceName] != "demo" || s.Labels[discovery.LabelManagedBy] != ControllerName {
		t.Errorf("labels = %v", s.Labels)
	}
	if s.AddressType != discovery.AddressTypeIPv4 {
		t.Errorf("addressType = %s", s.AddressType)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != svc.UID || !ptr.Deref(s.OwnerReferences[0].Controller, false) {
		t.Errorf("ownerReferences = %+v, want controller ref to service", s.OwnerReferences)
	}
	if len(s.Ports) != 1 || deref(s.Ports[0].Port) != int32(8080) || deref(s.Ports[0].Name) != "http" || deref(s.Ports[0].Protocol) != v1.ProtocolTCP {
		t.Errorf("ports = %+v", s.Ports)
	}
	got := map[string]string{}
	for _, ep := range s.Endpoints {
		if !deref(ep.Conditions.Ready).(bool) {
			t.Errorf("endpoint %v not ready", ep.Addresses)
		}
		if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" || deref(ep.NodeName) != "node-1" {
			t.Errorf("endpoint %v: targetRef %+v nodeName %v", ep.Addresses, ep.TargetRef, deref(ep.NodeName))
		}
		got[ep.Addresses[0]] = ep.TargetRef.Name
	}
	want := map[string]string{"10.244.0.2": "pod-001", "10.244.0.3": "pod-002"}
	if len(got) != len(want) || got["10.244.0.2"] != want["10.244.0.2"] || got["10.244.0.3"] != want["10.244.0.3"] {
		t.Errorf("endpoints = %v, want %v", got, want)
	}
	if s.Annotations[v1.EndpointsLastChangeTriggerTime] == "" {
		t.Error("missing last-change-trigger-time annotation")
	}

	// A second sync with nothing changed must write nothing.
	before := len(f.client.Actions())
	f.sync("demo")
	if n := len(f.client.Actions()) - before; n != 0 {
		t.Errorf("idle resync made %d API calls: %v", n, f.client.Actions()[before:])
	}
}

// TestSyncNamedTargetPort resolves a named targetPort per Pod: two Pods that
// call different container ports "http" land in slices with their own port.
func TestSyncNamedTargetPort(t *testing.T) {
	f := newFixture(t, true)
	f.seed(node("node-1"), service("demo", demo, intstr.FromString("http")),
		pod(1, demo, containerPort("http", 8080)),
		pod(2, demo, containerPort("http", 9090)),
		pod(3, demo, containerPort("metrics", 9100)), // no "http": no endpoint with a port
	)
	f.sync("demo")

	byPort := map[any][]string{}
	for _, s := range f.slices() {
		var port any = "none"
		if len(s.Ports) == 1 {
			port = deref(s.Ports[0].Port)
		} else if len(s.Ports) > 1 {
			t.Fatalf("slice %s has %d ports", s.Name, len(s.Ports))
		}
		for _, ep := range s.Endpoints {
			byPort[port] = append(byPort[port], ep.TargetRef.Name)
		}
	}
	want := map[any][]string{int32(8080): {"pod-001"}, int32(9090): {"pod-002"}, "none": {"pod-003"}}
	for port, pods := range want {
		if len(byPort[port]) != 1 || byPort[port][0] != pods[0] {
			t.Errorf("port %v: endpoints %v, want %v (all: %v)", port, byPort[port], pods, byPort)
		}
	}
}

func TestSync250PodsMakesThreeSlices(t *testing.T) {
	f := newFixture(t, true)
	f.seed(node("node-1"), service("demo", demo, intstr.FromInt32(8080)))
	for i := range 250 {
		f.seed(pod(i, demo))
	}
	f.sync("demo")

	slices := f.slices()
	if len(slices) != 3 {
		t.Fatalf("want 3 slices, got %d", len(slices))
	}
	total, seen := 0, map[string]bool{}
	for _, s := range slices {
		if len(s.Endpoints) > DefaultMaxEndpointsPerSlice {
			t.Errorf("slice %s has %d endpoints", s.Name, len(s.Endpoints))
		}
		for _, ep := range s.Endpoints {
			if seen[ep.Addresses[0]] {
				t.Errorf("address %s in two slices", ep.Addresses[0])
			}
			seen[ep.Addresses[0]] = true
		}
		total += len(s.Endpoints)
	}
	if total != 250 {
		t.Errorf("total endpoints %d, want 250", total)
	}
}

// TestSyncServiceWithoutSelector keeps slices made by hand and makes none.
func TestSyncServiceWithoutSelector(t *testing.T) {
	f := newFixture(t, true)
	user := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "manual-1", Namespace: testNS,
			Labels: map[string]string{discovery.LabelServiceName: "manual", discovery.LabelManagedBy: "user"},
		},
		AddressType: discovery.AddressTypeIPv4,
		Endpoints:   []discovery.Endpoint{{Addresses: []string{"127.0.0.1"}}},
	}
	f.seed(node("node-1"), service("manual", nil, intstr.FromInt32(8080)), pod(1, demo), user)
	f.sync("manual")

	if n := len(f.client.Actions()); n != 0 {
		t.Errorf("want no API calls, got %v", f.client.Actions())
	}
	if s := f.slices(); len(s) != 1 || s[0].Name != "manual-1" {
		t.Errorf("slices = %+v, want only the user's", s)
	}
}

// TestSyncSelectorRemoved deletes the slices we made once the Service loses
// its selector, but not the user's.
func TestSyncSelectorRemoved(t *testing.T) {
	f := newFixture(t, true)
	svc := service("demo", demo, intstr.FromInt32(8080))
	f.seed(node("node-1"), svc, pod(1, demo))
	f.sync("demo")
	if len(f.slices()) != 1 {
		t.Fatal("want 1 slice after first sync")
	}
	user := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "demo-manual", Namespace: testNS,
			Labels: map[string]string{discovery.LabelServiceName: "demo"},
		},
		AddressType: discovery.AddressTypeIPv4,
	}
	f.seed(user)
	noSelector := svc.DeepCopy()
	noSelector.Spec.Selector = nil
	if err := f.factory.Core().V1().Services().Informer().GetStore().Update(noSelector); err != nil {
		t.Fatal(err)
	}
	f.sync("demo")
	if s := f.slices(); len(s) != 1 || s[0].Name != "demo-manual" {
		t.Errorf("slices = %+v, want only demo-manual", s)
	}
}

func TestSyncServiceMissingDeletesSlices(t *testing.T) {
	f := newFixture(t, true)
	svc := service("demo", demo, intstr.FromInt32(8080))
	f.seed(node("node-1"), svc, pod(1, demo))
	f.sync("demo")
	if len(f.slices()) != 1 {
		t.Fatal("want 1 slice after first sync")
	}
	if err := f.factory.Core().V1().Services().Informer().GetStore().Delete(svc); err != nil {
		t.Fatal(err)
	}
	f.sync("demo")
	if s := f.slices(); len(s) != 0 {
		t.Errorf("slices left after service deletion: %+v", s)
	}
}

// TestStaleCacheIsRetried: a sync on a slice cache that has not seen our
// last write must not act on it.
func TestStaleCacheIsRetried(t *testing.T) {
	f := newFixture(t, true)
	f.seed(node("node-1"), service("demo", demo, intstr.FromInt32(8080)), pod(1, demo))
	f.sync("demo")
	store := f.factory.Discovery().V1().EndpointSlices().Informer().GetStore()
	s := f.slices()[0]
	old := s.DeepCopy()
	old.Generation = 0 // what the cache would hold before the create reached it
	if err := store.Update(old); err != nil {
		t.Fatal(err)
	}
	err := f.c.syncService(context.Background(), testNS+"/demo")
	if _, ok := err.(*staleCacheError); !ok {
		t.Fatalf("syncService on stale cache: err = %v, want staleCacheError", err)
	}
}

// TestTrackerOutlivingDeletion: the tracker remembers a slice that nobody
// has any more (deleted between our write and our recording it). A sync
// must not wait for it forever.
func TestTrackerOutlivingDeletion(t *testing.T) {
	f := newFixture(t, true)
	svc := service("demo", demo, intstr.FromInt32(8080))
	f.seed(node("node-1"), svc, pod(1, demo))
	ghost := &discovery.EndpointSlice{ObjectMeta: metav1.ObjectMeta{
		Name: "demo-ghost", Namespace: testNS, UID: "ghost", Generation: 3,
		Labels: map[string]string{discovery.LabelServiceName: "demo", discovery.LabelManagedBy: ControllerName},
	}}
	f.c.tracker.Update(ghost)
	f.sync("demo")
	if got := endpointNames(f); got != "pod-001" {
		t.Errorf("endpoints = %q, want pod-001", got)
	}
}

// The tests below run the controller against informers, so they also cover
// the event handlers that map Pod and slice changes to Services.

func TestRunFollowsPods(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	f.start()
	mustCreate(t, f, node("node-1"))
	mustCreate(t, f, service("demo", demo, intstr.FromInt32(8080)))
	p1, p2 := pod(1, demo), pod(2, demo)
	mustCreate(t, f, p1)
	mustCreate(t, f, p2)
	f.eventually("two endpoints", func() bool { return endpointNames(f) == "pod-001,pod-002" })

	// Relabel pod-002 out of the selector.
	p2 = p2.DeepCopy()
	p2.Labels = map[string]string{"app": "elsewhere"}
	p2.ResourceVersion = "2" // the fake does not bump it; the handlers compare it
	if _, err := f.client.CoreV1().Pods(testNS).Update(ctx, p2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.eventually("pod-002 gone after relabel", func() bool { return endpointNames(f) == "pod-001" })

	// pod-001 turns not ready.
	p1 = p1.DeepCopy()
	notReady(p1)
	p1.ResourceVersion = "2"
	if _, err := f.client.CoreV1().Pods(testNS).UpdateStatus(ctx, p1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.eventually("pod-001 not ready", func() bool {
		s := f.slices()
		return len(s) == 1 && len(s[0].Endpoints) == 1 && !deref(s[0].Endpoints[0].Conditions.Ready).(bool)
	})

	// Somebody deletes our slice: it comes back.
	deleted := f.slices()[0].Name
	if err := f.client.DiscoveryV1().EndpointSlices(testNS).Delete(ctx, deleted, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.eventually("slice recreated", func() bool {
		s := f.slices()
		return len(s) == 1 && s[0].Name != deleted && endpointNames(f) == "pod-001"
	})

	// The Service goes: so do its slices (no garbage collector here).
	if err := f.client.CoreV1().Services(testNS).Delete(ctx, "demo", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.eventually("slices deleted with service", func() bool { return len(f.slices()) == 0 })
}

// TestRunDeletesOrphansAtStart: slices whose Service vanished while the
// controller was down are cleaned up when it starts.
func TestRunDeletesOrphansAtStart(t *testing.T) {
	f := newFixture(t, false)
	orphan := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "gone-abcde", Namespace: testNS, UID: "orphan",
			Labels: map[string]string{discovery.LabelServiceName: "gone", discovery.LabelManagedBy: ControllerName},
		},
		AddressType: discovery.AddressTypeIPv4,
	}
	user := orphan.DeepCopy()
	user.Name, user.UID, user.Labels[discovery.LabelManagedBy] = "gone-user", "user", "someone-else"
	mustCreate(t, f, orphan)
	mustCreate(t, f, user)
	f.start()
	f.eventually("orphan deleted", func() bool {
		s := f.slices()
		return len(s) == 1 && s[0].Name == "gone-user"
	})
}

func mustCreate(t *testing.T, f *fixture, obj any) {
	t.Helper()
	ctx := context.Background()
	var err error
	switch o := obj.(type) {
	case *v1.Node:
		_, err = f.client.CoreV1().Nodes().Create(ctx, o, metav1.CreateOptions{})
	case *v1.Service:
		_, err = f.client.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *v1.Pod:
		_, err = f.client.CoreV1().Pods(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *discovery.EndpointSlice:
		_, err = f.client.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	default:
		t.Fatalf("mustCreate: unexpected %T", obj)
	}
	if err != nil {
		t.Fatalf("create %T: %v", obj, err)
	}
}

// endpointNames lists the Pods behind all slices, sorted and comma-joined.
func endpointNames(f *fixture) string {
	var names []string
	for _, s := range f.slices() {
		for _, ep := range s.Endpoints {
			if ep.TargetRef != nil {
				names = append(names, ep.TargetRef.Name)
			}
		}
	}
	return joinSorted(names)
}

// TestStaleWaitEndsWithTheSliceEvent: a Service whose sync waited for the
// slice cache is queued again as soon as a slice of it arrives in the
// cache, not after the retry back-off.
func TestStaleWaitEndsWithTheSliceEvent(t *testing.T) {
	f := newFixture(t, true)
	f.seed(node("node-1"), service("demo", demo, intstr.FromInt32(8080)), pod(1, demo))
	f.sync("demo")
	f.c.queue = newQueue()
	defer f.c.queue.ShutDown()
	key := testNS + "/demo"
	ours := f.slices()[0].DeepCopy() // our own write: no resync of its own
	older := ours.DeepCopy()
	older.Generation = 0

	f.c.onSliceUpdate(older, ours)
	if n := f.c.queue.Len(); n != 0 {
		t.Fatalf("our own write queued the service (%d items)", n)
	}
	f.c.handleErr(key, &staleCacheError{service: key})
	if n := f.c.queue.Len(); n != 0 {
		t.Fatalf("the stale retry was queued at once (%d items), want after the back-off", n)
	}
	f.c.onSliceUpdate(older, ours)
	if n := f.c.queue.Len(); n != 1 {
		t.Fatalf("after the slice event: %d items queued, want the service at once", n)
	}
	if got, _ := f.c.queue.Get(); got != key {
		t.Errorf("queued %q, want %q", got, key)
	}
	f.c.queue.Done(key)
	// Woken once: the next echo of our own write queues nothing.
	f.c.onSliceUpdate(older, ours)
	if n := f.c.queue.Len(); n != 0 {
		t.Errorf("a second slice event queued the service again (%d items)", n)
	}
}
