package endpoints

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/berth-project/berth/internal/controller/endpointslice"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type fixture struct {
	t       *testing.T
	client  *fake.Clientset
	factory informers.SharedInformerFactory
	c       *Controller
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(Config{Client: client, Logger: quiet()}, factory)
	if err != nil {
		t.Fatal(err)
	}
	c.events.set(record.NewFakeRecorder(10))
	return &fixture{t: t, client: client, factory: factory, c: c}
}

// seed puts objects in the informer stores and in the fake API.
func (f *fixture) seed(objs ...runtime.Object) {
	f.t.Helper()
	for _, obj := range objs {
		var err error
		switch o := obj.(type) {
		case *v1.Service:
			err = f.factory.Core().V1().Services().Informer().GetStore().Add(o)
		case *discovery.EndpointSlice:
			err = f.factory.Discovery().V1().EndpointSlices().Informer().GetStore().Add(o)
		case *v1.Endpoints:
			err = f.factory.Core().V1().Endpoints().Informer().GetStore().Add(o)
		}
		if err != nil {
			f.t.Fatal(err)
		}
		if err := f.client.Tracker().Add(obj); err != nil {
			f.t.Fatal(err)
		}
	}
	f.client.ClearActions()
}

func (f *fixture) sync(name string) {
	f.t.Helper()
	if err := f.c.syncService(context.Background(), testNS+"/"+name); err != nil {
		f.t.Fatalf("syncService: %v", err)
	}
}

func (f *fixture) get(name string) (*v1.Endpoints, error) {
	return f.client.CoreV1().Endpoints(testNS).Get(context.Background(), name, metav1.GetOptions{})
}

func TestSyncCreatesThenLeavesAlone(t *testing.T) {
	f := newFixture(t)
	svc := svcSpec("demo")
	f.seed(svc, slice("demo-1", svc, discovery.AddressTypeIPv4, []int32{8080},
		endpoint("10.0.0.1", "a"), endpoint("10.0.0.2", "b", unready)))
	f.sync("demo")

	ep, err := f.get("demo")
	if err != nil {
		t.Fatalf("endpoints not created: %v", err)
	}
	if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || len(ep.Subsets[0].NotReadyAddresses) != 1 {
		t.Fatalf("subsets = %+v", ep.Subsets)
	}
	a := ep.Subsets[0].Addresses[0]
	if a.IP != "10.0.0.1" || a.TargetRef == nil || a.TargetRef.Name != "a" || a.NodeName == nil || *a.NodeName != "node-1" {
		t.Errorf("address = %+v", a)
	}
	if ep.Labels[LabelManagedBy] != ControllerName {
		t.Errorf("labels = %v", ep.Labels)
	}

	// With the object in the cache, a resync writes nothing.
	if err := f.factory.Core().V1().Endpoints().Informer().GetStore().Add(ep); err != nil {
		t.Fatal(err)
	}
	f.client.ClearActions()
	f.sync("demo")
	if a := f.client.Actions(); len(a) != 0 {
		t.Errorf("idle resync made API calls: %v", a)
	}
}

func TestSyncSkipsServicesWithoutSelector(t *testing.T) {
	f := newFixture(t)
	svc := svcSpec("manual", func(s *v1.Service) { s.Spec.Selector = nil })
	user := &v1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: "manual", Namespace: testNS},
		Subsets:    []v1.EndpointSubset{{Addresses: []v1.EndpointAddress{{IP: "127.0.0.1"}}}},
	}
	f.seed(svc, user)
	f.sync("manual")
	if a := f.client.Actions(); len(a) != 0 {
		t.Errorf("want no API calls, got %v", a)
	}
}

func TestSyncServiceGone(t *testing.T) {
	tests := []struct {
		name        string
		labels      map[string]string
		wantDeleted bool
	}{
		{"ours is deleted", map[string]string{LabelManagedBy: ControllerName}, true},
		{"hand-made is kept", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.seed(&v1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "gone", Namespace: testNS, Labels: tt.labels}})
			f.sync("gone")
			_, err := f.get("gone")
			if deleted := apierrors.IsNotFound(err); deleted != tt.wantDeleted {
				t.Errorf("deleted = %v (err %v), want %v", deleted, err, tt.wantDeleted)
			}
		})
	}
}

// TestMirrorFollowsPods runs the EndpointSlice controller and the mirror
// together: Pods become slices, slices become Endpoints.
func TestMirrorFollowsPods(t *testing.T) {
	client := fake.NewClientset()
	var seq atomic.Int64
	// Stand-ins for what a real API server does on create and update.
	client.PrependReactor("create", "endpointslices", func(action k8stesting.Action) (bool, runtime.Object, error) {
		s := action.(k8stesting.CreateAction).GetObject().(*discovery.EndpointSlice)
		if s.Name == "" {
			s.Name = fmt.Sprintf("%s%05d", s.GenerateName, seq.Add(1))
			s.GenerateName = ""
		}
		s.UID = types.UID("uid-" + s.Name)
		s.Generation = 1
		return false, s, nil
	})
	client.PrependReactor("update", "endpointslices", func(action k8stesting.Action) (bool, runtime.Object, error) {
		action.(k8stesting.UpdateAction).GetObject().(*discovery.EndpointSlice).Generation++
		return false, nil, nil
	})
	factory := informers.NewSharedInformerFactory(client, 0)
	slices, err := endpointslice.New(endpointslice.Config{Client: client, Logger: quiet()}, factory)
	if err != nil {
		t.Fatal(err)
	}
	mirror, err := New(Config{Client: client, Logger: quiet()}, factory)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	errs := make(chan error, 2)
	go func() { errs <- slices.Run(ctx, 1) }()
	go func() { errs <- mirror.Run(ctx, 1) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
		factory.Shutdown()
	})

	bg := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = client.CoreV1().Nodes().Create(bg, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{})
	must(err)
	svc := svcSpec("demo")
	svc.Spec.Ports[0].TargetPort = intstr.FromInt32(3000)
	// The API server stamps this; the trigger time annotation derives from it.
	svc.CreationTimestamp = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	_, err = client.CoreV1().Services(testNS).Create(bg, svc, metav1.CreateOptions{})
	must(err)
	for i, ready := range []bool{true, false} {
		status := v1.ConditionTrue
		if !ready {
			status = v1.ConditionFalse
		}
		ip := fmt.Sprintf("10.244.0.%d", i+1)
		_, err = client.CoreV1().Pods(testNS).Create(bg, &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: testNS, Labels: map[string]string{"app": "demo"}, UID: types.UID(fmt.Sprint("p", i)), ResourceVersion: "1"},
			Spec:       v1.PodSpec{NodeName: "node-1", Containers: []v1.Container{{Name: "app"}}},
			Status: v1.PodStatus{
				Phase: v1.PodRunning, PodIP: ip, PodIPs: []v1.PodIP{{IP: ip}},
				Conditions: []v1.PodCondition{{Type: v1.PodReady, Status: status}},
			},
		}, metav1.CreateOptions{})
		must(err)
	}

	defer func() {
		if t.Failed() {
			dump(t, client)
		}
	}()
	eventually(t, "endpoints with one ready and one not-ready address", func() bool {
		ep, err := client.CoreV1().Endpoints(testNS).Get(bg, "demo", metav1.GetOptions{})
		return err == nil && len(ep.Subsets) == 1 &&
			len(ep.Subsets[0].Addresses) == 1 && ep.Subsets[0].Addresses[0].IP == "10.244.0.1" &&
			len(ep.Subsets[0].NotReadyAddresses) == 1 && ep.Subsets[0].NotReadyAddresses[0].IP == "10.244.0.2" &&
			ep.Subsets[0].Ports[0].Port == 3000
	})
	// The trigger-time annotation is copied from the slices, where the
	// reconciler sets it only when its tracker knows a trigger time; that
	// depends on the order informer events arrive in, so it is checked by
	// the table tests of the mirror, not here.

	// Somebody deletes the Endpoints: it comes back.
	must(client.CoreV1().Endpoints(testNS).Delete(bg, "demo", metav1.DeleteOptions{}))
	eventually(t, "endpoints recreated", func() bool {
		_, err := client.CoreV1().Endpoints(testNS).Get(bg, "demo", metav1.GetOptions{})
		return err == nil
	})

	must(client.CoreV1().Services(testNS).Delete(bg, "demo", metav1.DeleteOptions{}))
	eventually(t, "endpoints and slices deleted with the service", func() bool {
		_, err := client.CoreV1().Endpoints(testNS).Get(bg, "demo", metav1.GetOptions{})
		list, lerr := client.DiscoveryV1().EndpointSlices(testNS).List(bg, metav1.ListOptions{})
		return apierrors.IsNotFound(err) && lerr == nil && len(list.Items) == 0
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 15*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func dump(t *testing.T, client *fake.Clientset) {
	eps, _ := client.CoreV1().Endpoints(testNS).List(context.Background(), metav1.ListOptions{})
	for _, e := range eps.Items {
		t.Logf("endpoints %s labels=%v ann=%v subsets=%+v", e.Name, e.Labels, e.Annotations, e.Subsets)
	}
	sl, _ := client.DiscoveryV1().EndpointSlices(testNS).List(context.Background(), metav1.ListOptions{})
	for _, s := range sl.Items {
		t.Logf("slice %s labels=%v owners=%v ports=%v eps=%+v", s.Name, s.Labels, s.OwnerReferences, s.Ports, s.Endpoints)
	}
}

// TestStaleCacheIsNoWarning: a sync whose cache does not show the
// Endpoints it created a moment ago gets AlreadyExists. That is retried, and
// not reported to users as a FailedToCreateEndpoint Warning.
func TestStaleCacheIsNoWarning(t *testing.T) {
	f := newFixture(t)
	rec := record.NewFakeRecorder(10)
	f.c.events.set(rec)
	svc := svcSpec("demo")
	f.seed(svc, slice("demo-1", svc, discovery.AddressTypeIPv4, []int32{8080}, endpoint("10.0.0.1", "a")))
	// In the API, not yet in the informer's store.
	if err := f.client.Tracker().Add(&v1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: testNS}}); err != nil {
		t.Fatal(err)
	}
	err := f.c.syncService(context.Background(), testNS+"/demo")
	if !apierrors.IsAlreadyExists(err) {
		t.Fatalf("sync = %v, want AlreadyExists (retried)", err)
	}
	select {
	case e := <-rec.Events:
		t.Errorf("event %q for a stale cache", e)
	default:
	}

	// Any other failure is reported.
	f.client.PrependReactor("create", "endpoints", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(v1.Resource("endpoints"), "demo", fmt.Errorf("quota"))
	})
	if err := f.c.syncService(context.Background(), testNS+"/demo"); err == nil {
		t.Fatal("sync succeeded against a forbidding API")
	}
	select {
	case e := <-rec.Events:
		if !strings.Contains(e, "FailedToCreateEndpoint") {
			t.Errorf("event %q", e)
		}
	default:
		t.Error("no FailedToCreateEndpoint event for a forbidden create")
	}
}
