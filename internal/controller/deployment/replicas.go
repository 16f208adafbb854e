package deployment

import (
	"fmt"
	"math"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// defaultFencepost is apps/v1's default for maxSurge and maxUnavailable.
var defaultFencepost = intstr.FromString("25%")

func replicasOf(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func rsReplicas(rs *appsv1.ReplicaSet) int32 {
	if rs == nil {
		return 0
	}
	if rs.Spec.Replicas == nil {
		return 1
	}
	return *rs.Spec.Replicas
}

func isRollingUpdate(d *appsv1.Deployment) bool {
	return d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType
}

// ResolveFenceposts turns maxSurge and maxUnavailable into replica counts
// for desired replicas: percentages round surge up and unavailability down,
// a nil value is 0, and when both come out 0 unavailability becomes 1 (so a
// rollout can proceed even when surge is impossible, e.g. by quota).
func ResolveFenceposts(maxSurge, maxUnavailable *intstr.IntOrString, desired int32) (int32, int32, error) {
	zero := intstr.FromInt32(0)
	surge, err := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(maxSurge, zero), int(desired), true)
	if err != nil {
		return 0, 0, fmt.Errorf("maxSurge: %w", err)
	}
	unavailable, err := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(maxUnavailable, zero), int(desired), false)
	if err != nil {
		return 0, 0, fmt.Errorf("maxUnavailable: %w", err)
	}
	if surge < 0 || unavailable < 0 {
		return 0, 0, fmt.Errorf("maxSurge %d and maxUnavailable %d must not be negative", surge, unavailable)
	}
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return int32(surge), int32(unavailable), nil
}

// fenceposts resolves d's rolling-update parameters; they are 0 for
// Recreate. Unset values take apps/v1's 25% default.
func fenceposts(d *appsv1.Deployment) (surge, unavailable int32, err error) {
	if !isRollingUpdate(d) {
		return 0, 0, nil
	}
	s, u := &defaultFencepost, &defaultFencepost
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		if ru.MaxSurge != nil {
			s = ru.MaxSurge
		}
		if ru.MaxUnavailable != nil {
			u = ru.MaxUnavailable
		}
	}
	return ResolveFenceposts(s, u, replicasOf(d))
}

// maxSurge is how many replicas above spec.replicas a rollout may run.
// Invalid values (refused by validation) count as 0.
func maxSurge(d *appsv1.Deployment) int32 {
	s, _, err := fenceposts(d)
	if err != nil {
		return 0
	}
	return s
}

// maxUnavailable is how many replicas below spec.replicas may be
// unavailable during a rollout, at most spec.replicas.
func maxUnavailable(d *appsv1.Deployment) int32 {
	if !isRollingUpdate(d) || replicasOf(d) == 0 {
		return 0
	}
	_, u, err := fenceposts(d)
	if err != nil {
		return 0
	}
	return min(u, replicasOf(d))
}

// newRSNewReplicas is how far the new ReplicaSet may scale up now: for a
// rolling update, to the surge limit over all ReplicaSets but never past
// spec.replicas; for Recreate, straight to spec.replicas.
func newRSNewReplicas(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (int32, error) {
	switch d.Spec.Strategy.Type {
	case appsv1.RollingUpdateDeploymentStrategyType:
		surge, _, err := fenceposts(d)
		if err != nil {
			return 0, err
		}
		current := runningAtMost(all)
		maxTotal := replicasOf(d) + surge
		if current >= maxTotal {
			return rsReplicas(newRS), nil
		}
		up := min(maxTotal-current, replicasOf(d)-rsReplicas(newRS))
		return rsReplicas(newRS) + up, nil
	case appsv1.RecreateDeploymentStrategyType:
		return replicasOf(d), nil
	}
	return 0, fmt.Errorf("deployment strategy %q is not supported", d.Spec.Strategy.Type)
}

// isSaturated is true when rs runs exactly spec.replicas, all available,
// and was last scaled for this spec.replicas.
func isSaturated(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	if rs == nil {
		return false
	}
	desired, ok := intAnnotation(rs, DesiredReplicasAnnotation)
	return ok && rsReplicas(rs) == replicasOf(d) && desired == replicasOf(d) && rs.Status.AvailableReplicas == replicasOf(d)
}

// replicaSetProportion is how many of toAdd replicas (negative: to remove)
// rs gets when a Deployment is scaled in the middle of a rollout: its share
// of the new size in proportion to its share of the old, never more than
// what is left to hand out.
func replicaSetProportion(rs *appsv1.ReplicaSet, d *appsv1.Deployment, toAdd, added int32) int32 {
	if rs == nil || rsReplicas(rs) == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	fraction := replicaSetFraction(rs, d)
	allowed := toAdd - added
	if toAdd > 0 {
		return min(fraction, allowed)
	}
	return max(fraction, allowed)
}

func replicaSetFraction(rs *appsv1.ReplicaSet, d *appsv1.Deployment) int32 {
	if replicasOf(d) == 0 {
		return -rsReplicas(rs)
	}
	newMax := replicasOf(d) + maxSurge(d)
	oldMax, ok := intAnnotation(rs, MaxReplicasAnnotation)
	if !ok || oldMax == 0 {
		// Annotation lost: fall back to the Deployment's current size.
		oldMax = d.Status.Replicas
		if oldMax == 0 {
			return 0
		}
	}
	size := float64(rsReplicas(rs)) * float64(newMax) / float64(oldMax)
	return roundToInt32(size) - rsReplicas(rs)
}

// roundToInt32 rounds half away from zero, as upstream's integer helper.
func roundToInt32(f float64) int32 {
	return int32(math.Round(f))
}

func replicaCount(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += rsReplicas(rs)
		}
	}
	return n
}

// runningAtMost is how many Pods the ReplicaSets may be running: each one's
// spec.replicas, or its status's count while that is higher. Upstream
// counts spec.replicas only, so right after an old ReplicaSet is scaled
// down, before its controller removed the Pod, the new one could already
// take the freed slot and the rollout run one Pod past maxSurge.
func runningAtMost(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += max(rsReplicas(rs), rs.Status.Replicas)
		}
	}
	return n
}

func actualCount(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += rs.Status.Replicas
		}
	}
	return n
}

func readyCount(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += rs.Status.ReadyReplicas
		}
	}
	return n
}

func availableCount(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += rs.Status.AvailableReplicas
		}
	}
	return n
}

// activeReplicaSets are those with replicas wanted (nil-safe).
func activeReplicaSets(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range rss {
		if rs != nil && rsReplicas(rs) > 0 {
			out = append(out, rs)
		}
	}
	return out
}

// olderFirst orders by creation time, then name.
func olderFirst(rss []*appsv1.ReplicaSet) {
	sort.SliceStable(rss, func(i, j int) bool { return createdBefore(rss[i], rss[j]) })
}

func createdBefore(a, b *appsv1.ReplicaSet) bool {
	if a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.Name < b.Name
	}
	return a.CreationTimestamp.Before(&b.CreationTimestamp)
}

// findNewReplicaSet is the oldest ReplicaSet whose template is d's.
func findNewReplicaSet(d *appsv1.Deployment, rss []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	sorted := append([]*appsv1.ReplicaSet(nil), rss...)
	olderFirst(sorted)
	for _, rs := range sorted {
		if equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			return rs
		}
	}
	return nil
}

// findOldReplicaSets returns every ReplicaSet but the new one.
func findOldReplicaSets(d *appsv1.Deployment, rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	newRS := findNewReplicaSet(d, rss)
	var old []*appsv1.ReplicaSet
	for _, rs := range rss {
		if newRS != nil && rs.UID == newRS.UID {
			continue
		}
		old = append(old, rs)
	}
	return old
}

// findActiveOrLatest is the only active ReplicaSet, or the newest when none
// is active; nil when several are active.
func findActiveOrLatest(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if newRS == nil && len(old) == 0 {
		return nil
	}
	sorted := append([]*appsv1.ReplicaSet(nil), old...)
	sort.SliceStable(sorted, func(i, j int) bool { return createdBefore(sorted[j], sorted[i]) })
	active := activeReplicaSets(append(append([]*appsv1.ReplicaSet(nil), sorted...), newRS))
	switch len(active) {
	case 0:
		if newRS != nil {
			return newRS
		}
		return sorted[0]
	case 1:
		return active[0]
	}
	return nil
}

// bySizeNewer: larger first, then newer first (scaling up prefers new).
func bySizeNewer(rss []*appsv1.ReplicaSet) {
	sort.SliceStable(rss, func(i, j int) bool {
		if rsReplicas(rss[i]) == rsReplicas(rss[j]) {
			return createdBefore(rss[j], rss[i])
		}
		return rsReplicas(rss[i]) > rsReplicas(rss[j])
	})
}

// bySizeOlder: larger first, then older first (scaling down prefers old).
func bySizeOlder(rss []*appsv1.ReplicaSet) {
	sort.SliceStable(rss, func(i, j int) bool {
		if rsReplicas(rss[i]) == rsReplicas(rss[j]) {
			return createdBefore(rss[i], rss[j])
		}
		return rsReplicas(rss[i]) > rsReplicas(rss[j])
	})
}

// byRevision: lower revision first, then older first.
func byRevision(rss []*appsv1.ReplicaSet) {
	sort.SliceStable(rss, func(i, j int) bool {
		ri, _ := revision(rss[i])
		rj, _ := revision(rss[j])
		if ri == rj {
			return createdBefore(rss[i], rss[j])
		}
		return ri < rj
	})
}
