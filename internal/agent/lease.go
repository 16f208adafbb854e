package agent

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// leaseDurationSeconds is the kubelet's default --node-lease-duration-seconds.
const leaseDurationSeconds = 40

// renewLease renews the node's Lease in kube-node-lease on every heartbeat,
// creating it (owned by node) if it is missing, as kubelets do; `kubectl
// describe node` shows it. A failure is logged once, then at debug level,
// so an API server without leases does not flood the log.
func (a *Agent) renewLease(ctx context.Context, node *corev1.Node) {
	err := a.writeLease(ctx, node)
	switch {
	case err == nil:
		a.leaseFailed = false
	case ctx.Err() != nil:
	case !a.leaseFailed:
		a.leaseFailed = true
		a.log.Warn("renew node lease", "err", err)
	default:
		a.log.Debug("renew node lease", "err", err)
	}
}

// writeLease updates the Lease the agent last wrote, as the kubelet does;
// only when it has none, or that write fails, does it read the Lease again.
func (a *Agent) writeLease(ctx context.Context, node *corev1.Node) error {
	leases := a.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	if a.lease != nil {
		l := a.lease.DeepCopy()
		a.fillLease(l, node)
		if l, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err == nil {
			a.lease = l
			return nil
		}
		a.lease = nil
	}
	l, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: corev1.NamespaceNodeLease}}
		a.fillLease(l, node)
		l, err = leases.Create(ctx, l, metav1.CreateOptions{})
	case err == nil:
		a.fillLease(l, node)
		l, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		return err
	}
	a.lease = l
	return nil
}

// fillLease makes l the node's Lease renewed now, owned by node.
func (a *Agent) fillLease(l *coordinationv1.Lease, node *corev1.Node) {
	now := metav1.NewMicroTime(time.Now())
	l.Spec.HolderIdentity = ptr.To(a.cfg.NodeName)
	l.Spec.LeaseDurationSeconds = ptr.To[int32](leaseDurationSeconds)
	l.Spec.RenewTime = &now
	if !ownedBy(l.OwnerReferences, node.UID) {
		// New, or a Lease of an earlier Node object of this name.
		l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
	}
}

func ownedBy(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.UID == uid {
			return true
		}
	}
	return false
}
