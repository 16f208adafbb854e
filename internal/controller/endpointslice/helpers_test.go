package endpointslice

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

const testNS = "default"

// fixture is a controller on a fake clientset. In direct mode the test seeds
// the informer stores itself and calls syncService; in running mode the
// informers and Run are started and the test acts through the client.
type fixture struct {
	t       *testing.T
	client  *fake.Clientset
	factory informers.SharedInformerFactory
	c       *Controller
	events  *record.FakeRecorder
	seq     atomic.Int64
}

func newFixture(t *testing.T, direct bool) *fixture {
	t.Helper()
	f := &fixture{t: t, client: fake.NewClientset()}
	f.factory = informers.NewSharedInformerFactory(f.client, 0)
	// Debug logs, shown only when the test fails.
	var buf safeBuf
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(buf.String())
		}
	})
	c, err := New(Config{Client: f.client, Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}, f.factory)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.c = c
	sliceStore := f.factory.Discovery().V1().EndpointSlices().Informer().GetIndexer()

	// A real API server names slices from generateName, gives them a UID and
	// bumps metadata.generation on every change; the fake does none of that.
	// In direct mode there is no informer, so the reactors also keep the
	// slice store in step with what was written, as upstream's tests do.
	f.client.PrependReactor("create", "endpointslices", func(action k8stesting.Action) (bool, runtime.Object, error) {
		s := action.(k8stesting.CreateAction).GetObject().(*discovery.EndpointSlice)
		if s.GenerateName != "" && s.Name == "" {
			s.Name = fmt.Sprintf("%s%05d", s.GenerateName, f.seq.Add(1))
			s.GenerateName = ""
		}
		if s.UID == "" {
			s.UID = types.UID("uid-" + s.Name)
		}
		s.Generation = 1
		s.ResourceVersion = strconv.FormatInt(f.seq.Add(1), 10)
		if direct {
			_ = sliceStore.Add(s.DeepCopy())
		}
		return false, s, nil
	})
	f.client.PrependReactor("update", "endpointslices", func(action k8stesting.Action) (bool, runtime.Object, error) {
		s := action.(k8stesting.UpdateAction).GetObject().(*discovery.EndpointSlice)
		s.Generation++
		s.ResourceVersion = strconv.FormatInt(f.seq.Add(1), 10)
		if direct {
			_ = sliceStore.Update(s.DeepCopy())
		}
		return false, s, nil
	})
	f.client.PrependReactor("delete", "endpointslices", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if direct {
			name := action.(k8stesting.DeleteAction).GetName()
			if obj, ok, _ := sliceStore.GetByKey(action.GetNamespace() + "/" + name); ok {
				_ = sliceStore.Delete(obj)
			}
		}
		return false, nil, nil
	})
	if direct {
		f.events = record.NewFakeRecorder(100)
		c.events.set(f.events)
	}
	return f
}

// start runs the informers and the controller until the test ends.
func (f *fixture) start() {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.factory.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- f.c.Run(ctx, 2) }()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("Run: %v", err)
		}
		f.factory.Shutdown()
	})
}

// seed adds objects straight to the informer stores (direct mode).
func (f *fixture) seed(objs ...runtime.Object) {
	f.t.Helper()
	for _, obj := range objs {
		var store cache.Store
		switch obj.(type) {
		case *v1.Service:
			store = f.factory.Core().V1().Services().Informer().GetStore()
		case *v1.Pod:
			store = f.factory.Core().V1().Pods().Informer().GetStore()
		case *v1.Node:
			store = f.factory.Core().V1().Nodes().Informer().GetStore()
		case *discovery.EndpointSlice:
			store = f.factory.Discovery().V1().EndpointSlices().Informer().GetStore()
			// Also in the API, so the controller's deletes have something to hit.
			if _, err := f.client.Tracker().Get(discovery.SchemeGroupVersion.WithResource("endpointslices"), testNS, obj.(*discovery.EndpointSlice).Name); err != nil {
				if err := f.client.Tracker().Add(obj); err != nil {
					f.t.Fatalf("add to tracker: %v", err)
				}
			}
		default:
			f.t.Fatalf("seed: unexpected %T", obj)
		}
		if err := store.Add(obj); err != nil {
			f.t.Fatalf("seed: %v", err)
		}
	}
}

func (f *fixture) sync(name string) {
	f.t.Helper()
	if err := f.c.syncService(context.Background(), testNS+"/"+name); err != nil {
		f.t.Fatalf("syncService(%s): %v", name, err)
	}
}

// slices lists the slices in the API (not the cache), sorted by name.
func (f *fixture) slices() []discovery.EndpointSlice {
	f.t.Helper()
	list, err := f.client.DiscoveryV1().EndpointSlices(testNS).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		f.t.Fatalf("list endpointslices: %v", err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items
}

// eventually polls cond until it holds or 15s pass.
func (f *fixture) eventually(what string, cond func() bool) {
	f.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 15*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		f.t.Fatalf("timed out waiting for %s", what)
	}
}

func node(name string) *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func service(name string, selector map[string]string, targetPort intstr.IntOrString) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: testNS, UID: types.UID("svc-" + name),
			CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		},
		Spec: v1.ServiceSpec{
			Selector:   selector,
			ClusterIP:  "10.96.0.10",
			IPFamilies: []v1.IPFamily{v1.IPv4Protocol},
			Ports: []v1.ServicePort{{
				Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: targetPort,
			}},
		},
	}
}

type podOpt func(*v1.Pod)

func notReady(p *v1.Pod) { p.Status.Conditions[0].Status = v1.ConditionFalse }

func terminating(p *v1.Pod) {
	ts := metav1.NewTime(time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC))
	p.DeletionTimestamp = &ts
}

func containerPort(name string, port int32) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports,
			v1.ContainerPort{Name: name, ContainerPort: port, Protocol: v1.ProtocolTCP})
	}
}

// pod makes a running Pod numbered n on node-1 with IP 10.244.x.y.
func pod(n int, labels map[string]string, opts ...podOpt) *v1.Pod {
	ip := fmt.Sprintf("10.244.%d.%d", n/250, n%250+1)
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("pod-%03d", n), Namespace: testNS, Labels: labels,
			UID: types.UID(fmt.Sprintf("pod-uid-%03d", n)), ResourceVersion: "1",
		},
		Spec: v1.PodSpec{
			NodeName:   "node-1",
			Containers: []v1.Container{{Name: "app"}},
		},
		Status: v1.PodStatus{
			Phase:  v1.PodRunning,
			PodIP:  ip,
			PodIPs: []v1.PodIP{{IP: ip}},
			Conditions: []v1.PodCondition{{
				Type: v1.PodReady, Status: v1.ConditionTrue,
				LastTransitionTime: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)),
			}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func joinSorted(s []string) string {
	sort.Strings(s)
	return strings.Join(s, ",")
}

type safeBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
