package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

type fixture struct {
	t      *testing.T
	client *fake.Clientset
}

var podsGVR = v1.SchemeGroupVersion.WithResource("pods")

// start runs a scheduler over a fake API holding objs. The fake has no
// binding subresource, so a reactor does what the API server's binding
// endpoint does: set spec.nodeName (only if unset) and PodScheduled=True.
func start(t *testing.T, workers int, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	client.PrependReactor("create", "pods", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "binding" {
			return false, nil, nil
		}
		b := action.(k8stesting.CreateAction).GetObject().(*v1.Binding)
		obj, err := client.Tracker().Get(podsGVR, b.Namespace, b.Name)
		if err != nil {
			return true, nil, err
		}
		pod := obj.(*v1.Pod).DeepCopy()
		if pod.Spec.NodeName != "" {
			return true, nil, apierrors.NewConflict(podsGVR.GroupResource(), b.Name,
				fmt.Errorf("pod %s is already assigned to node %q", b.Name, pod.Spec.NodeName))
		}
		pod.Spec.NodeName = b.Target.Name
		pod.Status.Conditions = append(pod.Status.Conditions[:0:0], v1.PodCondition{Type: v1.PodScheduled, Status: v1.ConditionTrue})
		return true, b, client.Tracker().Update(podsGVR, pod, b.Namespace)
	})
	factory := informers.NewSharedInformerFactory(client, 0)
	s, err := New(Config{Client: client, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, factory)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, workers) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		factory.Shutdown()
	})
	return &fixture{t: t, client: client}
}

func (f *fixture) createPod(p *v1.Pod) {
	f.t.Helper()
	if _, err := f.client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) createNode(n *v1.Node) {
	f.t.Helper()
	if _, err := f.client.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) pod(name string) *v1.Pod {
	f.t.Helper()
	p, err := f.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fixture) nodeOf(name string) string { return f.pod(name).Spec.NodeName }

// event returns the message of the first Event with reason about a Pod.
func (f *fixture) event(pod, reason string) (string, bool) {
	list, err := f.client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return "", false
	}
	for _, e := range list.Items {
		if e.InvolvedObject.Name == pod && e.Reason == reason {
			return e.Message, true
		}
	}
	return "", false
}

func (f *fixture) bindings() int {
	n := 0
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "create" && a.GetSubresource() == "binding" {
			n++
		}
	}
	return n
}

func (f *fixture) eventually(what string, cond func() bool) {
	f.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 15*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		f.t.Fatalf("timed out waiting for %s", what)
	}
}

func boundPod(name, node string) *v1.Pod {
	p := pendingPod(name)
	p.Spec.NodeName = node
	p.Status.Phase = v1.PodRunning
	return p
}

// TestSpreadsByPodCount binds a burst of Pods; counting the Pods it bound
// but has not yet seen bound keeps them from piling onto one Node.
func TestSpreadsByPodCount(t *testing.T) {
	finished := boundPod("done", "node-a")
	finished.Status.Phase = v1.PodSucceeded // terminated: does not count
	f := start(t, 1,
		readyNode("node-a"), readyNode("node-b"), readyNode("node-cordoned", cordoned),
		boundPod("old-1", "node-a"), boundPod("old-2", "node-a"), finished,
	)
	for i := range 6 {
		f.createPod(pendingPod(fmt.Sprintf("new-%d", i)))
	}
	f.eventually("all pods bound", func() bool {
		for i := range 6 {
			if f.nodeOf(fmt.Sprintf("new-%d", i)) == "" {
				return false
			}
		}
		return true
	})
	counts := map[string]int{}
	for i := range 6 {
		counts[f.nodeOf(fmt.Sprintf("new-%d", i))]++
	}
	// node-a starts with 2 running Pods; fewest-first with ties by name ends
	// at 4 and 4, whatever the order the Pods were handled in.
	if counts["node-a"] != 2 || counts["node-b"] != 4 || counts["node-cordoned"] != 0 {
		t.Errorf("new pods per node = %v, want node-a 2, node-b 4", counts)
	}
	msg, ok := f.event("new-0", ReasonScheduled)
	if !ok || msg != "Successfully assigned default/new-0 to "+f.nodeOf("new-0") {
		t.Errorf("Scheduled event = %q, %v", msg, ok)
	}
	if n := f.bindings(); n != 6 {
		t.Errorf("%d bindings, want 6", n)
	}
}

func TestNodeSelectorAndSchedulerName(t *testing.T) {
	f := start(t, 2, readyNode("plain"), readyNode("fast", labelled("disk", "ssd")))
	f.createPod(pendingPod("wants-ssd", selecting("disk", "ssd")))
	f.createPod(pendingPod("someone-elses", func(p *v1.Pod) { p.Spec.SchedulerName = "my-scheduler" }))
	f.createPod(pendingPod("anywhere"))
	f.eventually("wants-ssd and anywhere bound", func() bool {
		return f.nodeOf("wants-ssd") != "" && f.nodeOf("anywhere") != ""
	})
	if n := f.nodeOf("wants-ssd"); n != "fast" {
		t.Errorf("wants-ssd on %q, want fast", n)
	}
	// Give the other scheduler's Pod the same chance: it must stay unbound.
	time.Sleep(200 * time.Millisecond)
	if n := f.nodeOf("someone-elses"); n != "" {
		t.Errorf("pod for another scheduler was bound to %q", n)
	}
	if _, ok := f.event("someone-elses", ReasonFailedScheduling); ok {
		t.Error("FailedScheduling event for another scheduler's pod")
	}
}

// TestNoNodesThenNode: a Pod with nowhere to go is reported unschedulable,
// then bound as soon as a fitting Node appears.
func TestNoNodesThenNode(t *testing.T) {
	f := start(t, 1)
	f.createPod(pendingPod("p"))
	f.eventually("FailedScheduling event", func() bool {
		msg, ok := f.event("p", ReasonFailedScheduling)
		return ok && msg == msgNoNodes
	})
	f.eventually("PodScheduled=False/Unschedulable", func() bool {
		for _, c := range f.pod("p").Status.Conditions {
			if c.Type == v1.PodScheduled {
				return c.Status == v1.ConditionFalse && c.Reason == v1.PodReasonUnschedulable && c.Message == msgNoNodes
			}
		}
		return false
	})

	// A Node that does not fit changes the reason, not the outcome.
	f.createNode(readyNode("cordoned", cordoned))
	want := "0/1 nodes are available: 1 node(s) were unschedulable."
	f.eventually("FailedScheduling names the cordoned node", func() bool {
		for _, c := range f.pod("p").Status.Conditions {
			if c.Type == v1.PodScheduled {
				return c.Message == want
			}
		}
		return false
	})
	if n := f.nodeOf("p"); n != "" {
		t.Fatalf("bound to %q, a cordoned node", n)
	}

	f.createNode(readyNode("node-1"))
	f.eventually("bound once a node appears", func() bool { return f.nodeOf("p") == "node-1" })
	f.eventually("Scheduled event", func() bool {
		msg, ok := f.event("p", ReasonScheduled)
		return ok && msg == "Successfully assigned default/p to node-1"
	})
}

func TestNodeBecomesReady(t *testing.T) {
	f := start(t, 1, readyNode("n", notReadyNode))
	f.createPod(pendingPod("p"))
	f.eventually("FailedScheduling event", func() bool {
		_, ok := f.event("p", ReasonFailedScheduling)
		return ok
	})
	n, err := f.client.CoreV1().Nodes().Get(context.Background(), "n", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Conditions = readyNode("n").Status.Conditions
	if _, err := f.client.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.eventually("bound once the node is ready", func() bool { return f.nodeOf("p") == "n" })
}

func TestNewValidates(t *testing.T) {
	factory := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	if _, err := New(Config{}, factory); err == nil {
		t.Error("New without client succeeded")
	}
	if _, err := New(Config{Client: fake.NewClientset()}, nil); err == nil {
		t.Error("New without factory succeeded")
	}
	s, err := New(Config{Client: fake.NewClientset()}, factory)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background(), 0); err == nil {
		t.Error("Run with 0 workers succeeded")
	}
}
