package deployment

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
)

// scaleStep is one ReplicaSet resize a rollout step decided on.
type scaleStep struct {
	rs       *appsv1.ReplicaSet
	replicas int32
}

// planNewReplicaSet is the size the new ReplicaSet may have now: down to
// spec.replicas if above it, else up as far as maxSurge allows.
func planNewReplicaSet(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (int32, error) {
	switch cur := rsReplicas(newRS); {
	case cur == replicasOf(d):
		return cur, nil
	case cur > replicasOf(d):
		return replicasOf(d), nil
	}
	return newRSNewReplicas(d, all, newRS)
}

// planOldReplicaSets decides how far the active old ReplicaSets may shrink,
// oldest first, without the Deployment dropping below spec.replicas minus
// maxUnavailable available replicas (upstream's reconcileOldReplicaSets):
//
//   - at most all - minAvailable - (unavailable replicas of the new
//     ReplicaSet) may go, so new Pods that are not up yet do not make room;
//   - within that, unhealthy (not available) old replicas go first: they
//     cost no availability;
//   - then available old replicas, as far as available - minAvailable.
//
// The result has one step per ReplicaSet that changes, with its final size.
func planOldReplicaSets(d *appsv1.Deployment, all, oldActive []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) []scaleStep {
	if replicaCount(oldActive) == 0 {
		return nil
	}
	minAvailable := replicasOf(d) - maxUnavailable(d)
	var newUnavailable int32
	if newRS != nil {
		newUnavailable = rsReplicas(newRS) - availableAfterScale(newRS)
	}
	maxScaledDown := replicaCount(all) - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return nil
	}

	olds := append([]*appsv1.ReplicaSet(nil), oldActive...)
	olderFirst(olds)
	sizes := make([]int32, len(olds))
	for i, rs := range olds {
		sizes[i] = rsReplicas(rs)
	}

	var cleaned int32
	for i, rs := range olds {
		if cleaned >= maxScaledDown {
			break
		}
		unhealthy := sizes[i] - availableAfterScale(rs)
		if sizes[i] == 0 || unhealthy <= 0 {
			continue
		}
		down := min(maxScaledDown-cleaned, unhealthy)
		sizes[i] -= down
		cleaned += down
	}

	// Availability as the ReplicaSets report it: removing unhealthy replicas
	// above did not change it.
	var available int32
	for _, rs := range olds {
		available += availableAfterScale(rs)
	}
	if newRS != nil {
		available += availableAfterScale(newRS)
	}
	if available > minAvailable {
		toScale := available - minAvailable
		var scaled int32
		for i := range olds {
			if scaled >= toScale {
				break
			}
			if sizes[i] == 0 {
				continue
			}
			down := min(sizes[i], toScale-scaled)
			sizes[i] -= down
			scaled += down
		}
	}

	var steps []scaleStep
	for i, rs := range olds {
		if sizes[i] != rsReplicas(rs) {
			steps = append(steps, scaleStep{rs, sizes[i]})
		}
	}
	return steps
}

// availableAfterScale is how many of rs's replicas are available once its
// controller has acted on its size: its status's count, but no more than
// spec.replicas. Right after a scale-down the status still counts the Pods
// being removed; upstream takes that count as it is, so a sync in that
// window could scale old ReplicaSets down by more than availability allows
// (TestRollingUpdateKeepsAvailability caught it once in ~100 runs).
func availableAfterScale(rs *appsv1.ReplicaSet) int32 {
	return min(rs.Status.AvailableReplicas, rsReplicas(rs))
}

// rolloutRolling takes one step of a rolling update: scale the new
// ReplicaSet up if surge allows, else scale old ones down if availability
// allows, else (rollout complete) clean up old revisions; then status.
func (c *Controller) rolloutRolling(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, oldRSs, err := c.getAllReplicaSetsAndSyncRevision(ctx, d, rsList, true)
	if err != nil {
		return err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), oldRSs...), newRS)

	target, err := planNewReplicaSet(d, all, newRS)
	if err != nil {
		return err
	}
	if target != rsReplicas(newRS) {
		scaled, _, err := c.scaleReplicaSetAndRecordEvent(ctx, newRS, target, d)
		if err != nil {
			return err
		}
		if scaled {
			return c.syncRolloutStatus(ctx, all, newRS, d)
		}
	}

	scaledDown := false
	for _, step := range planOldReplicaSets(d, all, activeReplicaSets(oldRSs), newRS) {
		scaled, _, err := c.scaleReplicaSetAndRecordEvent(ctx, step.rs, step.replicas, d)
		if err != nil {
			return err
		}
		scaledDown = scaledDown || scaled
	}
	if scaledDown {
		return c.syncRolloutStatus(ctx, all, newRS, d)
	}

	if deploymentComplete(d, &d.Status) {
		if err := c.cleanupDeployment(ctx, oldRSs, d); err != nil {
			return err
		}
	}
	return c.syncRolloutStatus(ctx, all, newRS, d)
}
