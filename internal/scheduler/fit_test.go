package scheduler

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

type nodeOpt func(*v1.Node)

func labelled(k, v string) nodeOpt {
	return func(n *v1.Node) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
	}
}

func cordoned(n *v1.Node) { n.Spec.Unschedulable = true }

func notReadyNode(n *v1.Node) {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == v1.NodeReady {
			n.Status.Conditions[i].Status = v1.ConditionFalse
		}
	}
}

func noConditions(n *v1.Node) { n.Status.Conditions = nil }

func tainted(key, value string, effect v1.TaintEffect) nodeOpt {
	return func(n *v1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: key, Value: value, Effect: effect})
	}
}

func maxPods(n int64) nodeOpt {
	return func(node *v1.Node) {
		node.Status.Allocatable = v1.ResourceList{v1.ResourcePods: *resource.NewQuantity(n, resource.DecimalSI)}
	}
}

func readyNode(name string, opts ...nodeOpt) *v1.Node {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: v1.NodeStatus{Conditions: []v1.NodeCondition{
			{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse},
			{Type: v1.NodeReady, Status: v1.ConditionTrue},
		}},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

type podOpt func(*v1.Pod)

func selecting(k, v string) podOpt {
	return func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{k: v} }
}

func tolerating(key string, effect v1.TaintEffect) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, v1.Toleration{Key: key, Operator: v1.TolerationOpExists, Effect: effect})
	}
}

func pendingPod(name string, opts ...podOpt) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app"}}},
		Status:     v1.PodStatus{Phase: v1.PodPending},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func TestPickNode(t *testing.T) {
	tests := []struct {
		name     string
		pod      *v1.Pod
		nodes    []*v1.Node
		running  map[string]int
		want     string
		wantWhy  string
		checkWhy bool
	}{
		{
			name:    "fewest pods wins",
			pod:     pendingPod("p"),
			nodes:   []*v1.Node{readyNode("a"), readyNode("b"), readyNode("c")},
			running: map[string]int{"a": 2, "b": 1, "c": 3},
			want:    "b",
		},
		{
			name:    "ties broken by name",
			pod:     pendingPod("p"),
			nodes:   []*v1.Node{readyNode("c"), readyNode("b"), readyNode("a")},
			running: map[string]int{"a": 1, "b": 0, "c": 0},
			want:    "b",
		},
		{
			name:    "nodeSelector narrows the choice",
			pod:     pendingPod("p", selecting("disk", "ssd")),
			nodes:   []*v1.Node{readyNode("a"), readyNode("b", labelled("disk", "ssd")), readyNode("c", labelled("disk", "hdd"))},
			running: map[string]int{"b": 5},
			want:    "b",
		},
		{
			name:    "cordoned node skipped",
			pod:     pendingPod("p"),
			nodes:   []*v1.Node{readyNode("a", cordoned), readyNode("b")},
			running: map[string]int{"b": 9},
			want:    "b",
		},
		{
			name:    "cordoned node allowed when the pod tolerates it",
			pod:     pendingPod("p", tolerating(v1.TaintNodeUnschedulable, v1.TaintEffectNoSchedule)),
			nodes:   []*v1.Node{readyNode("a", cordoned), readyNode("b")},
			running: map[string]int{"b": 1},
			want:    "a",
		},
		{
			name:    "not ready and condition-less nodes skipped",
			pod:     pendingPod("p"),
			nodes:   []*v1.Node{readyNode("a", notReadyNode), readyNode("b", noConditions), readyNode("c")},
			running: map[string]int{"c": 4},
			want:    "c",
		},
		{
			name:    "NoSchedule taint needs a toleration, PreferNoSchedule does not",
			pod:     pendingPod("p"),
			nodes:   []*v1.Node{readyNode("a", tainted("dedicated", "gpu", v1.TaintEffectNoSchedule)), readyNode("b", tainted("soft", "", v1.TaintEffectPreferNoSchedule))},
			running: map[string]int{"b": 3},
			want:    "b",
		},
		{
			name:    "tolerated taint",
			pod:     pendingPod("p", tolerating("dedicated", "")),
			nodes:   []*v1.Node{readyNode("a", tainted("dedicated", "gpu", v1.TaintEffectNoExecute)), readyNode("b")},
			running: map[string]int{"b": 3},
			want:    "a",
		},
		{
			name:    "full node skipped",
			pod:     pendingPod("p"),
			nodes:   []*v1.Node{readyNode("a", maxPods(2)), readyNode("b", maxPods(10))},
			running: map[string]int{"a": 2, "b": 7},
			want:    "b",
		},
		{
			name:     "no nodes",
			pod:      pendingPod("p"),
			want:     "",
			wantWhy:  "no nodes available to schedule pods",
			checkWhy: true,
		},
		{
			name: "nothing fits: reasons counted and sorted",
			pod:  pendingPod("p", selecting("disk", "ssd")),
			nodes: []*v1.Node{
				readyNode("a", cordoned), readyNode("b", cordoned), readyNode("c"),
				readyNode("d", notReadyNode), readyNode("e", labelled("disk", "ssd"), tainted("k", "v", v1.TaintEffectNoSchedule)),
			},
			want:     "",
			wantWhy:  "0/5 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {k: v}, 1 node(s) were not ready, 2 node(s) were unschedulable.",
			checkWhy: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := pickNode(tt.pod, tt.nodes, tt.running)
			if got != tt.want {
				t.Errorf("node = %q (%s), want %q", got, why, tt.want)
			}
			if tt.checkWhy && why != tt.wantWhy {
				t.Errorf("why = %q\n want %q", why, tt.wantWhy)
			}
		})
	}
}

func TestResponsible(t *testing.T) {
	now := metav1.Now()
	tests := []struct {
		name string
		pod  *v1.Pod
		want bool
	}{
		{"default, unset name", pendingPod("p"), true},
		{"default-scheduler", pendingPod("p", func(p *v1.Pod) { p.Spec.SchedulerName = v1.DefaultSchedulerName }), true},
		{"other scheduler", pendingPod("p", func(p *v1.Pod) { p.Spec.SchedulerName = "my-scheduler" }), false},
		{"bound", pendingPod("p", func(p *v1.Pod) { p.Spec.NodeName = "n" }), false},
		{"deleting", pendingPod("p", func(p *v1.Pod) { p.DeletionTimestamp = &now }), false},
		{"failed", pendingPod("p", func(p *v1.Pod) { p.Status.Phase = v1.PodFailed }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := responsible(tt.pod); got != tt.want {
				t.Errorf("responsible = %v, want %v", got, tt.want)
			}
		})
	}
}
