package replicaset

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func rankPod(name, node string, phase v1.PodPhase, ready bool, restarts int32, readySince, created metav1.Time, annotations map[string]string) *v1.Pod {
	status := v1.ConditionFalse
	if ready {
		status = v1.ConditionTrue
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: created, Annotations: annotations},
		Spec:       v1.PodSpec{NodeName: node},
		Status: v1.PodStatus{
			Phase:             phase,
			Conditions:        []v1.PodCondition{{Type: v1.PodReady, Status: status, LastTransitionTime: readySince}},
			ContainerStatuses: []v1.ContainerStatus{{RestartCount: restarts}},
		},
	}
}

// TestPodsForDeletionOrder mirrors upstream's
// TestSortingActivePodsWithRanks (with PodDeletionCost and
// LogarithmicScaleDown on, their defaults).
func TestPodsForDeletionOrder(t *testing.T) {
	now := metav1.Now()
	month := metav1.NewTime(now.AddDate(0, -1, 0))
	h2 := metav1.NewTime(now.Add(-2 * time.Hour))
	h5 := metav1.NewTime(now.Add(-5 * time.Hour))
	h8 := metav1.NewTime(now.Add(-8 * time.Hour))
	zero := metav1.Time{}
	var (
		unscheduled       = rankPod("unscheduled", "", v1.PodPending, false, 0, zero, zero, nil)
		pending           = rankPod("pending", "node", v1.PodPending, false, 0, zero, zero, nil)
		unknown           = rankPod("unknown-phase", "node", v1.PodUnknown, false, 0, zero, zero, nil)
		notReady          = rankPod("not-ready", "node", v1.PodRunning, false, 0, zero, zero, nil)
		readyNoTransition = rankPod("ready-no-last-transition-time", "node", v1.PodRunning, true, 0, zero, zero, nil)
		readyNow          = rankPod("ready-now", "node", v1.PodRunning, true, 0, now, now, nil)
		readyThen         = rankPod("ready-then", "node", v1.PodRunning, true, 0, month, month, nil)
		readyHighRestarts = rankPod("ready-high-restarts", "node", v1.PodRunning, true, 9001, now, now, nil)
		readyCreatedThen  = rankPod("ready-now-created-then", "node", v1.PodRunning, true, 0, now, month, nil)
		lowCost           = rankPod("low-deletion-cost", "node", v1.PodRunning, true, 0, now, month, map[string]string{PodDeletionCostAnnotation: "10"})
		highCost          = rankPod("high-deletion-cost", "node", v1.PodRunning, true, 0, now, month, map[string]string{PodDeletionCostAnnotation: "100"})
		badCost           = rankPod("bad-deletion-cost", "node", v1.PodRunning, true, 0, now, month, map[string]string{PodDeletionCostAnnotation: "x"})
		unscheduled5h     = rankPod("unscheduled-5-hours", "", v1.PodPending, false, 0, h5, h5, nil)
		unscheduled8h     = rankPod("unscheduled-8-hours", "", v1.PodPending, false, 0, h8, h8, nil)
		ready2h           = rankPod("ready-2-hours", "", v1.PodRunning, true, 0, h2, month, nil)
		ready5h           = rankPod("ready-5-hours", "", v1.PodRunning, true, 0, h5, month, nil)
		ready8h           = rankPod("ready-8-hours", "", v1.PodRunning, true, 0, h8, month, nil)
	)
	type ranked struct {
		pod  *v1.Pod
		rank int
	}
	less := func(a, b ranked) bool {
		return podsForDeletion{pods: []*v1.Pod{a.pod, b.pod}, rank: []int{a.rank, b.rank}, now: now}.Less(0, 1)
	}

	equal := []struct{ a, b *v1.Pod }{
		{unscheduled, unscheduled},
		{pending, pending},
		{unknown, unknown},
		{notReady, notReady},
		{readyNoTransition, readyNoTransition},
		{readyNow, readyNow},
		{readyThen, readyThen},
		{readyHighRestarts, readyHighRestarts},
		{readyCreatedThen, readyCreatedThen},
		{unscheduled5h, unscheduled8h}, // same log2 bucket
		{ready5h, ready8h},             // same log2 bucket
		{badCost, readyCreatedThen},    // a malformed cost counts as 0
	}
	for _, tt := range equal {
		t.Run(fmt.Sprintf("%s=%s", tt.a.Name, tt.b.Name), func(t *testing.T) {
			if less(ranked{tt.a, 1}, ranked{tt.b, 1}) || less(ranked{tt.b, 1}, ranked{tt.a, 1}) {
				t.Errorf("want neither before the other")
			}
		})
	}

	ordered := []struct{ first, second ranked }{
		{ranked{unscheduled, 1}, ranked{pending, 2}},
		{ranked{unscheduled, 2}, ranked{pending, 1}},
		{ranked{pending, 1}, ranked{unknown, 2}},
		{ranked{unknown, 1}, ranked{notReady, 2}},
		{ranked{notReady, 1}, ranked{readyNoTransition, 1}},
		{ranked{readyNoTransition, 2}, ranked{readyNoTransition, 1}},
		{ranked{readyNow, 2}, ranked{readyNoTransition, 1}},
		{ranked{readyNow, 2}, ranked{readyNow, 1}},
		{ranked{readyNow, 1}, ranked{readyThen, 1}},
		{ranked{readyHighRestarts, 1}, ranked{readyNow, 1}},
		{ranked{readyNow, 1}, ranked{readyCreatedThen, 1}},
		{ranked{lowCost, 2}, ranked{highCost, 1}},
		{ranked{ready2h, 1}, ranked{ready5h, 1}},
	}
	for _, tt := range ordered {
		t.Run(fmt.Sprintf("%s(%d)<%s(%d)", tt.first.pod.Name, tt.first.rank, tt.second.pod.Name, tt.second.rank), func(t *testing.T) {
			if !less(tt.first, tt.second) {
				t.Errorf("want %s before %s", tt.first.pod.Name, tt.second.pod.Name)
			}
			if less(tt.second, tt.first) {
				t.Errorf("want %s not before %s", tt.second.pod.Name, tt.first.pod.Name)
			}
		})
	}
}

func TestPodsToDelete(t *testing.T) {
	now := metav1.Now()
	old := metav1.NewTime(now.Add(-time.Hour))
	ready := func(name string) *v1.Pod {
		return rankPod(name, "node-1", v1.PodRunning, true, 0, old, old, nil)
	}
	notReady := rankPod("not-ready", "node-1", v1.PodRunning, false, 0, old, old, nil)
	unscheduled := rankPod("unscheduled", "", v1.PodPending, false, 0, old, old, nil)
	newer := rankPod("ready-newer", "node-1", v1.PodRunning, true, 0, now, now, nil)
	a, b := ready("ready-a"), ready("ready-b")
	a.UID, b.UID = "a", "b"
	// One second apart after an hour: the same log2 bucket, so the UID decides.
	b.Status.Conditions[0].LastTransitionTime = metav1.NewTime(old.Add(time.Second))

	tests := []struct {
		name string
		pods []*v1.Pod
		diff int
		want []string
	}{
		{"all of them without sorting", []*v1.Pod{a, b}, 2, []string{"ready-a", "ready-b"}},
		{"unscheduled first", []*v1.Pod{a, unscheduled, b}, 1, []string{"unscheduled"}},
		{"then not ready", []*v1.Pod{a, notReady, unscheduled, b}, 2, []string{"unscheduled", "not-ready"}},
		{"then the newest ready", []*v1.Pod{a, newer, b}, 1, []string{"ready-newer"}},
		{"same bucket, ties broken by uid", []*v1.Pod{b, a}, 1, []string{"ready-a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := podsToDelete(tt.pods, tt.pods, tt.diff, now)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d pods, want %v", len(got), tt.want)
			}
			for i := range got {
				if got[i].Name != tt.want[i] {
					t.Errorf("pod %d = %s, want %s", i, got[i].Name, tt.want[i])
				}
			}
		})
	}
}

func TestPodsToDeletePrefersDoubledUpNodes(t *testing.T) {
	now := metav1.Now()
	old := metav1.NewTime(now.Add(-time.Hour))
	p1 := rankPod("on-busy-node", "busy", v1.PodRunning, true, 0, old, old, nil)
	p2 := rankPod("on-quiet-node", "quiet", v1.PodRunning, true, 0, old, old, nil)
	sibling := rankPod("sibling", "busy", v1.PodRunning, true, 0, old, old, nil)
	got := podsToDelete([]*v1.Pod{p2, p1}, []*v1.Pod{p1, p2, sibling}, 1, now)
	if got[0].Name != "on-busy-node" {
		t.Errorf("deleted %s, want on-busy-node", got[0].Name)
	}
}

func TestIsPodAvailable(t *testing.T) {
	now := metav1.Now()
	tests := []struct {
		name       string
		ready      bool
		since      metav1.Time
		minReady   int32
		wantAvail  bool
		wantActive bool
	}{
		{"ready, no minReadySeconds", true, now, 0, true, true},
		{"ready long enough", true, metav1.NewTime(now.Add(-11 * time.Second)), 10, true, true},
		{"ready too briefly", true, metav1.NewTime(now.Add(-9 * time.Second)), 10, false, true},
		{"ready without transition time", true, metav1.Time{}, 10, false, true},
		{"not ready", false, metav1.NewTime(now.Add(-time.Hour)), 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := rankPod("p", "n", v1.PodRunning, tt.ready, 0, tt.since, now, nil)
			if got := isPodAvailable(p, tt.minReady, now); got != tt.wantAvail {
				t.Errorf("available = %v, want %v", got, tt.wantAvail)
			}
		})
	}
	done := rankPod("done", "n", v1.PodSucceeded, false, 0, now, now, nil)
	failed := rankPod("failed", "n", v1.PodFailed, false, 0, now, now, nil)
	gone := rankPod("terminating", "n", v1.PodRunning, true, 0, now, now, nil)
	gone.DeletionTimestamp = &now
	for _, p := range []*v1.Pod{done, failed, gone} {
		if isPodActive(p) {
			t.Errorf("%s is active, want inactive", p.Name)
		}
	}
}
