package deployment

import (
	"context"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Rollback event reasons (upstream's).
const (
	ReasonRollbackDone              = "DeploymentRollback"
	ReasonRollbackRevisionNotFound  = "DeploymentRollbackRevisionNotFound"
	ReasonRollbackTemplateUnchanged = "DeploymentRollbackTemplateUnchanged"
)

// getRollbackTo reads RollbackToAnnotation; nil when absent or malformed.
//
// `kubectl rollout undo` does not use it: it patches spec.template back to
// the old ReplicaSet's (without the hash label) and its annotations, and
// the controller then finds that ReplicaSet as the new one and gives it the
// next revision. The annotation stays supported for older clients.
func getRollbackTo(d *appsv1.Deployment) *int64 {
	v, ok := d.Annotations[RollbackToAnnotation]
	if !ok || v == "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil
	}
	return &n
}

// rollback copies the template of the requested revision into d (revision
// 0: the one before the current) and clears the request.
func (c *Controller) rollback(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := c.getAllReplicaSetsAndSyncRevision(ctx, d, rsList, true)
	if err != nil {
		return err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	to := *getRollbackTo(d)
	if to == 0 {
		if to = lastRevision(all); to == 0 {
			c.events.Eventf(d, v1.EventTypeWarning, ReasonRollbackRevisionNotFound, "Unable to find last revision.")
			return c.clearRollbackTo(ctx, d)
		}
	}
	for _, rs := range all {
		if v, err := revision(rs); err != nil || v != to {
			continue
		}
		if equalIgnoreHash(&d.Spec.Template, &rs.Spec.Template) {
			c.events.Eventf(d, v1.EventTypeWarning, ReasonRollbackTemplateUnchanged,
				"The rollback revision contains the same template as current deployment %q", d.Name)
			return c.clearRollbackTo(ctx, d)
		}
		setFromReplicaSetTemplate(d, rs.Spec.Template)
		// Take the old revision's annotations too, or the current ones
		// would be copied onto the old ReplicaSet.
		setDeploymentAnnotationsTo(d, rs)
		if err := c.clearRollbackTo(ctx, d); err != nil {
			return err
		}
		c.events.Eventf(d, v1.EventTypeNormal, ReasonRollbackDone, "Rolled back deployment %q to revision %d", d.Name, to)
		return nil
	}
	c.events.Eventf(d, v1.EventTypeWarning, ReasonRollbackRevisionNotFound, "Unable to find the revision to rollback to.")
	return c.clearRollbackTo(ctx, d)
}

// setFromReplicaSetTemplate makes t (less its hash label) d's template.
func setFromReplicaSetTemplate(d *appsv1.Deployment, t v1.PodTemplateSpec) {
	t = *t.DeepCopy()
	delete(t.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	d.Spec.Template = t
}

func (c *Controller) clearRollbackTo(ctx context.Context, d *appsv1.Deployment) error {
	delete(d.Annotations, RollbackToAnnotation)
	if _, err := c.client.AppsV1().Deployments(d.Namespace).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update deployment %s/%s after rollback: %w", d.Namespace, d.Name, err)
	}
	return nil
}
