package replicaset

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
)

const testNS = "default"

var demoLabels = map[string]string{"app": "demo"}

type fixture struct {
	t       *testing.T
	sim     *apiSim
	factory informers.SharedInformerFactory
	c       *Controller
	events  *record.FakeRecorder
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	sim := newAPISim(objs...)
	factory := informers.NewSharedInformerFactory(sim.client, 0)
	c, err := New(Config{Client: sim.client, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, factory)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &fixture{t: t, sim: sim, factory: factory, c: c}
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

// direct prepares a fixture whose test seeds the caches and calls sync.
func (f *fixture) direct(objs ...runtime.Object) {
	f.events = record.NewFakeRecorder(100)
	f.c.events.set(f.events)
	f.seed(objs...)
}

// seed adds objects to the informer caches (direct mode).
func (f *fixture) seed(objs ...runtime.Object) {
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *appsv1.ReplicaSet:
			err = f.factory.Apps().V1().ReplicaSets().Informer().GetStore().Add(o)
		case *v1.Pod:
			err = f.factory.Core().V1().Pods().Informer().GetStore().Add(o)
		}
		if err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) pods() []v1.Pod {
	f.t.Helper()
	list, err := f.sim.client.CoreV1().Pods(testNS).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items
}

func activeNames(pods []v1.Pod) []string {
	var out []string
	for i := range pods {
		if isPodActive(&pods[i]) {
			out = append(out, pods[i].Name)
		}
	}
	return out
}

func (f *fixture) rs(name string) *appsv1.ReplicaSet {
	f.t.Helper()
	rs, err := f.sim.client.AppsV1().ReplicaSets(testNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return rs
}

func (f *fixture) eventually(what string, cond func() bool) {
	f.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 15*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		f.t.Fatalf("timed out waiting for %s", what)
	}
}

func (f *fixture) countActions(verb, resource string) int {
	n := 0
	for _, a := range f.sim.client.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource {
			n++
		}
	}
	return n
}

func newRS(name string, replicas int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, UID: types.UID("rs-uid-" + name), Generation: 1, ResourceVersion: "1"},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: demoLabels},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: demoLabels, Annotations: map[string]string{"note": "x"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "agnhost"}}},
			},
		},
	}
}

func TestNewValidatesConfig(t *testing.T) {
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	for name, tc := range map[string]struct {
		cfg     Config
		factory informers.SharedInformerFactory
	}{
		"nil client":     {Config{}, factory},
		"nil factory":    {Config{Client: client}, nil},
		"negative burst": {Config{Client: client, BurstReplicas: -1}, factory},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(tc.cfg, tc.factory); err == nil {
				t.Fatal("New succeeded, want error")
			}
		})
	}
	c, err := New(Config{Client: client}, factory)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background(), 0); err == nil {
		t.Fatal("Run with 0 workers succeeded, want error")
	}
}

func TestScaleUpThenDownDeletesNotReadyFirst(t *testing.T) {
	f := newFixture(t)
	f.start()
	ctx := context.Background()
	if _, err := f.sim.client.AppsV1().ReplicaSets(testNS).Create(ctx, newRS("web", 3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.eventually("3 pods", func() bool { return len(f.pods()) == 3 })
	rs := f.rs("web")
	for _, p := range f.pods() {
		if !strings.HasPrefix(p.Name, "web-") || p.Labels["app"] != "demo" || p.Annotations["note"] != "x" {
			t.Errorf("pod %s: labels %v annotations %v", p.Name, p.Labels, p.Annotations)
		}
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.UID != rs.UID || ref.Kind != "ReplicaSet" || ref.APIVersion != "apps/v1" || !ptr.Deref(ref.BlockOwnerDeletion, false) {
			t.Errorf("pod %s controller ref = %+v", p.Name, ref)
		}
	}

	// Two pods become ready; the third stays not ready and must go first.
	pods := f.pods()
	for _, p := range pods[:2] {
		if _, err := f.sim.setPodReady(&p, true, time.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.sim.setPodReady(&pods[2], false, time.Now()); err != nil {
		t.Fatal(err)
	}
	f.eventually("status 3 replicas, 2 ready", func() bool {
		st := f.rs("web").Status
		return st.Replicas == 3 && st.ReadyReplicas == 2 && st.AvailableReplicas == 2 && st.FullyLabeledReplicas == 3 && st.ObservedGeneration == 1
	})

	rs = f.rs("web")
	rs.Spec.Replicas = ptr.To(int32(2))
	if _, err := f.sim.client.AppsV1().ReplicaSets(testNS).Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.eventually("2 active pods", func() bool { return len(activeNames(f.pods())) == 2 })
	f.sim.mu.Lock()
	deleted := append([]string(nil), f.sim.podsDeleted...)
	f.sim.mu.Unlock()
	if len(deleted) != 1 || deleted[0] != pods[2].Name {
		t.Errorf("deleted %v, want the not-ready pod %s", deleted, pods[2].Name)
	}
	f.eventually("status of generation 2", func() bool {
		st := f.rs("web").Status
		return st.Replicas == 2 && st.ObservedGeneration == 2
	})
}

func TestReplacementStartsWhileOldPodTerminates(t *testing.T) {
	f := newFixture(t)
	f.start()
	ctx := context.Background()
	if _, err := f.sim.client.AppsV1().ReplicaSets(testNS).Create(ctx, newRS("web", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.eventually("2 pods", func() bool { return len(f.pods()) == 2 })
	victim := f.pods()[0].Name
	if err := f.sim.client.CoreV1().Pods(testNS).Delete(ctx, victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The terminating pod is still there (the node agent has not confirmed),
	// and a replacement already exists next to it.
	f.eventually("replacement beside the terminating pod", func() bool {
		pods := f.pods()
		return len(pods) == 3 && len(activeNames(pods)) == 2
	})
	if err := f.sim.removePod(testNS, victim); err != nil {
		t.Fatal(err)
	}
	f.eventually("2 pods after termination", func() bool { return len(f.pods()) == 2 })
	if n := len(activeNames(f.pods())); n != 2 {
		t.Errorf("active pods = %d, want 2", n)
	}
}

func TestAdoptsOrphanAndReleasesMismatch(t *testing.T) {
	orphan := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orphan", Namespace: testNS, UID: "orphan-uid", Labels: map[string]string{"app": "demo"}, ResourceVersion: "1"},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app"}}},
	}
	f := newFixture(t, orphan)
	f.start()
	ctx := context.Background()
	if _, err := f.sim.client.AppsV1().ReplicaSets(testNS).Create(ctx, newRS("web", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rsUID := f.rs("web").UID
	f.eventually("orphan adopted", func() bool {
		p, err := f.sim.client.CoreV1().Pods(testNS).Get(ctx, "orphan", metav1.GetOptions{})
		ref := metav1.GetControllerOf(p)
		return err == nil && ref != nil && ref.UID == rsUID && ptr.Deref(ref.BlockOwnerDeletion, false)
	})
	f.eventually("status counts the adopted pod", func() bool { return f.rs("web").Status.Replicas == 1 })
	if n := len(f.pods()); n != 1 {
		t.Fatalf("pods = %d, want only the adopted one", n)
	}

	// Relabelled out of the selector: released, and replaced.
	p, err := f.sim.client.CoreV1().Pods(testNS).Get(ctx, "orphan", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels = map[string]string{"app": "debug"}
	if _, err := f.sim.client.CoreV1().Pods(testNS).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.eventually("pod released and replaced", func() bool {
		pods := f.pods()
		if len(pods) != 2 {
			return false
		}
		for _, p := range pods {
			if p.Name == "orphan" && len(p.OwnerReferences) != 0 {
				return false
			}
		}
		return true
	})
}

func TestExpectationsPreventOvercreation(t *testing.T) {
	rs := newRS("web", 3)
	f := newFixture(t, rs)
	f.direct(rs)
	ctx := context.Background()
	key := testNS + "/web"

	if err := f.c.syncReplicaSet(ctx, key); err != nil {
		t.Fatal(err)
	}
	// The cache has not seen the pods yet; a second sync must not create more.
	if err := f.c.syncReplicaSet(ctx, key); err != nil {
		t.Fatal(err)
	}
	if n := f.countActions("create", "pods"); n != 3 {
		t.Fatalf("creates = %d, want 3", n)
	}
	if adds, _ := f.c.expectations.pending(key); adds != 3 {
		t.Fatalf("pending creations = %d, want 3", adds)
	}
	// The informer reports them: expectations are met, and with the pods in
	// the cache nothing more is created.
	for _, p := range f.pods() {
		f.seed(&p)
		f.c.addPod(&p)
	}
	if !f.c.expectations.Satisfied(key) {
		t.Fatal("expectations not satisfied after observing all creations")
	}
	if err := f.c.syncReplicaSet(ctx, key); err != nil {
		t.Fatal(err)
	}
	if n := f.countActions("create", "pods"); n != 3 {
		t.Fatalf("creates after observation = %d, want 3", n)
	}
	if got := f.rs("web").Status.Replicas; got != 3 {
		t.Errorf("status.replicas = %d, want 3", got)
	}
	want := 0
	for len(f.events.Events) > 0 {
		if e := <-f.events.Events; strings.Contains(e, ReasonSuccessfulCreate) {
			want++
		}
	}
	if want != 3 {
		t.Errorf("SuccessfulCreate events = %d, want 3", want)
	}
}

func TestCreateFailureSetsReplicaFailure(t *testing.T) {
	rs := newRS("web", 4)
	f := newFixture(t, rs)
	f.direct(rs)
	f.sim.failCreatePods = apierrors.NewForbidden(v1.Resource("pods"), "", errQuota{})
	err := f.c.syncReplicaSet(context.Background(), testNS+"/web")
	if err == nil {
		t.Fatal("sync succeeded, want the create error")
	}
	// Slow start: the first batch of one failed, the other three were never tried.
	if n := f.countActions("create", "pods"); n != 1 {
		t.Errorf("create attempts = %d, want 1", n)
	}
	if adds, _ := f.c.expectations.pending(testNS + "/web"); adds != 0 {
		t.Errorf("pending creations = %d, want 0 (nothing will be observed)", adds)
	}
	c := getCondition(f.rs("web").Status, appsv1.ReplicaSetReplicaFailure)
	if c == nil || c.Reason != ReasonFailedCreate || c.Status != v1.ConditionTrue {
		t.Errorf("ReplicaFailure = %+v", c)
	}
	if e := <-f.events.Events; !strings.Contains(e, ReasonFailedCreate) {
		t.Errorf("event = %q, want FailedCreate", e)
	}

	// Once creates work again the condition goes away.
	f.sim.failCreatePods = nil
	if err := f.c.syncReplicaSet(context.Background(), testNS+"/web"); err != nil {
		t.Fatal(err)
	}
	if c := getCondition(f.rs("web").Status, appsv1.ReplicaSetReplicaFailure); c != nil {
		t.Errorf("ReplicaFailure still set: %+v", c)
	}
}

func TestDeletedReplicaSetDoesNotCreate(t *testing.T) {
	rs := newRS("web", 2)
	now := metav1.Now()
	rs.DeletionTimestamp = &now
	rs.Finalizers = []string{metav1.FinalizerDeleteDependents}
	f := newFixture(t, rs)
	f.direct(rs)
	if err := f.c.syncReplicaSet(context.Background(), testNS+"/web"); err != nil {
		t.Fatal(err)
	}
	if n := f.countActions("create", "pods"); n != 0 {
		t.Errorf("creates = %d for a ReplicaSet being deleted, want 0", n)
	}
}

func TestSlowStartBatch(t *testing.T) {
	tests := []struct {
		count, failAfter int
		wantOK, wantCall int
	}{
		{count: 10, failAfter: -1, wantOK: 10, wantCall: 10},
		{count: 10, failAfter: 0, wantOK: 0, wantCall: 1}, // batch 1 fails
		{count: 10, failAfter: 3, wantOK: 3, wantCall: 7}, // batches 1,2 ok; batch 4 has 1 ok
		{count: 0, failAfter: -1, wantOK: 0, wantCall: 0},
	}
	for _, tt := range tests {
		calls := 0
		var mu = make(chan struct{}, 1)
		ok, err := slowStartBatch(tt.count, 1, func() error {
			mu <- struct{}{}
			defer func() { <-mu }()
			calls++
			if tt.failAfter >= 0 && calls > tt.failAfter {
				return errQuota{}
			}
			return nil
		})
		if ok != tt.wantOK || calls != tt.wantCall || (err != nil) != (tt.failAfter >= 0) {
			t.Errorf("count %d failAfter %d: ok=%d calls=%d err=%v, want ok=%d calls=%d", tt.count, tt.failAfter, ok, calls, err, tt.wantOK, tt.wantCall)
		}
	}
}

type errQuota struct{}

func (errQuota) Error() string { return "exceeded quota" }

// Make sure the sim's reactor really intercepts (a guard for the tests above).
var _ k8stesting.ReactionFunc = (&apiSim{}).react
