package replicaset

import (
	"math"
	"sort"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodDeletionCostAnnotation lets users rank Pods for scale-down: lower cost
// goes first. Upstream's annotation (PodDeletionCost is on by default).
const PodDeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// podPhaseOrdinal ranks phases for deletion: earlier phases of startup go
// first. Phases not listed (terminal ones never reach here) rank as Pending.
var podPhaseOrdinal = map[v1.PodPhase]int{
	v1.PodPending: 0,
	v1.PodUnknown: 1,
	v1.PodRunning: 2,
}

// isPodActive is false for Pods that finished or are being deleted: they do
// not count towards spec.replicas, so a replacement is made while a deleted
// Pod still terminates.
func isPodActive(p *v1.Pod) bool {
	return p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed && p.DeletionTimestamp == nil
}

func filterActivePods(pods []*v1.Pod) []*v1.Pod {
	out := make([]*v1.Pod, 0, len(pods))
	for _, p := range pods {
		if isPodActive(p) {
			out = append(out, p)
		}
	}
	return out
}

func podReadyCondition(p *v1.Pod) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == v1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func isPodReady(p *v1.Pod) bool {
	c := podReadyCondition(p)
	return c != nil && c.Status == v1.ConditionTrue
}

// isPodAvailable is true once the Pod has been ready for minReadySeconds.
func isPodAvailable(p *v1.Pod, minReadySeconds int32, now metav1.Time) bool {
	c := podReadyCondition(p)
	if c == nil || c.Status != v1.ConditionTrue {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	d := time.Duration(minReadySeconds) * time.Second
	return !c.LastTransitionTime.IsZero() && c.LastTransitionTime.Add(d).Before(now.Time)
}

// podReadyTime is when the Pod last became ready; zero if it is not ready.
func podReadyTime(p *v1.Pod) metav1.Time {
	if c := podReadyCondition(p); c != nil && c.Status == v1.ConditionTrue {
		return c.LastTransitionTime
	}
	return metav1.Time{}
}

// maxContainerRestarts counts the restarts of regular and sidecar containers.
func maxContainerRestarts(p *v1.Pod) int32 {
	var n int32
	for _, s := range p.Status.ContainerStatuses {
		n = max(n, s.RestartCount)
	}
	sidecar := map[string]bool{}
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			sidecar[c.Name] = true
		}
	}
	for _, s := range p.Status.InitContainerStatuses {
		if sidecar[s.Name] {
			n = max(n, s.RestartCount)
		}
	}
	return n
}

// deletionCost reads PodDeletionCostAnnotation; a missing or malformed value
// is 0, as upstream treats it.
func deletionCost(p *v1.Pod) int32 {
	v, ok := p.Annotations[PodDeletionCostAnnotation]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return int32(n)
}

// podsForDeletion orders Pods so that those preferred for deletion come first
// (upstream's ActivePodsWithRanks):
//
//  1. not scheduled before scheduled;
//  2. Pending before Unknown before Running;
//  3. not ready before ready;
//  4. lower pod-deletion-cost first;
//  5. more colocated Pods of the same owner on the Pod's node (rank) first;
//  6. of two ready Pods, the one ready for less time first (in log2 buckets
//     of the time since, ties broken by UID so scale-down is spread);
//  7. more container restarts first;
//  8. newer creation time first (log2 buckets again, UID tie-break).
type podsForDeletion struct {
	pods []*v1.Pod
	rank []int
	now  metav1.Time // zero compares exact times, without buckets
}

func (s podsForDeletion) Len() int { return len(s.pods) }

func (s podsForDeletion) Swap(i, j int) {
	s.pods[i], s.pods[j] = s.pods[j], s.pods[i]
	s.rank[i], s.rank[j] = s.rank[j], s.rank[i]
}

func (s podsForDeletion) Less(i, j int) bool {
	a, b := s.pods[i], s.pods[j]
	if a.Spec.NodeName != b.Spec.NodeName && (a.Spec.NodeName == "" || b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	if pa, pb := podPhaseOrdinal[a.Status.Phase], podPhaseOrdinal[b.Status.Phase]; pa != pb {
		return pa < pb
	}
	ra, rb := isPodReady(a), isPodReady(b)
	if ra != rb {
		return !ra
	}
	if ca, cb := deletionCost(a), deletionCost(b); ca != cb {
		return ca < cb
	}
	if s.rank[i] != s.rank[j] {
		return s.rank[i] > s.rank[j]
	}
	if ra && rb {
		ta, tb := podReadyTime(a), podReadyTime(b)
		if !ta.Equal(&tb) {
			return s.newerFirst(a, b, ta, tb)
		}
	}
	if ka, kb := maxContainerRestarts(a), maxContainerRestarts(b); ka != kb {
		return ka > kb
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return s.newerFirst(a, b, a.CreationTimestamp, b.CreationTimestamp)
	}
	return false
}

// newerFirst orders by time, newest first, with zero times before all others.
func (s podsForDeletion) newerFirst(a, b *v1.Pod, ta, tb metav1.Time) bool {
	if s.now.IsZero() || ta.IsZero() || tb.IsZero() {
		return afterOrZero(ta, tb)
	}
	d := logRank(ta, s.now) - logRank(tb, s.now)
	if d == 0 {
		return a.UID < b.UID
	}
	return d < 0
}

func afterOrZero(a, b metav1.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero()
	}
	return a.After(b.Time)
}

// logRank is the log2 bucket of how long ago t was; -1 for the future.
func logRank(t, now metav1.Time) int64 {
	d := now.Sub(t.Time)
	if d <= 0 {
		return -1
	}
	return int64(math.Log2(float64(d)))
}

// podsToDelete picks diff Pods from pods to delete. related are all Pods of
// the ReplicaSets that share this one's owner: a Pod whose node runs more of
// them is a better candidate (upstream's "doubled up" rank).
func podsToDelete(pods, related []*v1.Pod, diff int, now metav1.Time) []*v1.Pod {
	if diff >= len(pods) {
		return pods
	}
	onNode := map[string]int{}
	for _, p := range related {
		if isPodActive(p) {
			onNode[p.Spec.NodeName]++
		}
	}
	sorted := podsForDeletion{pods: append([]*v1.Pod(nil), pods...), rank: make([]int, len(pods)), now: now}
	for i, p := range sorted.pods {
		sorted.rank[i] = onNode[p.Spec.NodeName]
	}
	sort.Sort(sorted)
	return sorted.pods[:diff]
}
