package agent

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// push writes status to pods/status when it differs from what was last
// written. Writes are at least statusMinInterval apart unless force; the
// returned time is when to call again for a write that was held back or
// failed (zero: nothing pending). It writes on the newest copy of the Pod
// it knows and, on a conflict, on a fresh one, keeping the conditions the
// agent does not own.
func (w *podWorker) push(ctx context.Context, pod *corev1.Pod, status corev1.PodStatus, force bool) time.Time {
	old := pod.Status
	if w.reported != nil {
		old = *w.reported
	}
	if !w.pushFailed && sameStatus(old, status) {
		return time.Time{}
	}
	// Readiness and phase changes are what Services and rollouts wait on:
	// they go out at once; only other churn waits for statusMinInterval.
	if !force && !readyOrPhaseChanged(old, status) {
		if next := w.lastPush.Add(statusMinInterval); time.Now().Before(next) {
			return next
		}
	}
	base := pod
	if w.pushedPod != nil && newerRV(w.pushedPod.ResourceVersion, pod.ResourceVersion) {
		base = w.pushedPod
	}
	obj := base.DeepCopy()
	obj.Status = status
	pods := w.a.client.CoreV1().Pods(pod.Namespace)
	for try := 0; ; try++ {
		updated, err := pods.UpdateStatus(ctx, obj, metav1.UpdateOptions{})
		if err == nil {
			w.reported, w.pushedPod, w.lastPush, w.pushFailed = &status, updated, time.Now(), false
			return time.Time{}
		}
		if apierrors.IsNotFound(err) || ctx.Err() != nil {
			w.pushFailed = false
			return time.Time{}
		}
		if apierrors.IsConflict(err) && try < 3 {
			fresh, gerr := pods.Get(ctx, pod.Name, metav1.GetOptions{})
			if gerr == nil && fresh.UID != pod.UID {
				return time.Time{} // a new Pod of the same name
			}
			if gerr == nil {
				obj = fresh.DeepCopy()
				obj.Status = withForeignConditions(status, fresh.Status.Conditions)
				continue
			}
			err = gerr
		}
		w.log.Warn("update pod status", "err", err)
		w.pushFailed = true
		return time.Now().Add(time.Second)
	}
}

// withForeignConditions replaces the conditions the agent does not own in
// s with those of the API's latest status.
func withForeignConditions(s corev1.PodStatus, api []corev1.PodCondition) corev1.PodStatus {
	var conds []corev1.PodCondition
	for _, c := range api {
		if !isKubeletCondition(c.Type) {
			conds = append(conds, c)
		}
	}
	for _, c := range s.Conditions {
		if isKubeletCondition(c.Type) {
			conds = append(conds, c)
		}
	}
	s.Conditions = conds
	return s
}

func isKubeletCondition(t corev1.PodConditionType) bool {
	for _, k := range kubeletConditions {
		if k == t {
			return true
		}
	}
	return false
}

// sameStatus compares statuses as the API stores them (times in seconds).
func sameStatus(a, b corev1.PodStatus) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// newerRV reports whether resource version a is newer than b, for API
// servers (like berth's and Kubernetes') whose versions are integers.
func newerRV(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil && x > y
}

// confirmDeletion deletes the stopped Pod for good (grace 0, only this
// UID), which removes it from the API.
func (w *podWorker) confirmDeletion(ctx context.Context, pod *corev1.Pod) (time.Duration, bool) {
	zero := int64(0)
	uid := pod.UID
	err := w.a.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	switch {
	case err == nil, apierrors.IsNotFound(err), apierrors.IsConflict(err):
		w.log.Info("pod stopped and deleted")
		return 0, true
	case ctx.Err() != nil:
		return 0, false
	}
	w.deleteTries++
	w.log.Warn("confirm pod deletion", "err", err, "tries", w.deleteTries)
	return min(time.Duration(w.deleteTries)*time.Second, 30*time.Second), false
}

// event records an event about the Pod, or about container c of it.
func (w *podWorker) event(c *ctr, etype, reason, format string, args ...any) {
	fp := ""
	if c != nil {
		fp = c.fieldPath()
	}
	w.eventAt(fp, etype, reason, format, args...)
}

// eventAt records an event about the Pod's field fieldPath ("" for the Pod).
// It is safe for concurrent use.
func (w *podWorker) eventAt(fieldPath, etype, reason, format string, args ...any) {
	if w.a.recorder == nil {
		return
	}
	ref := &corev1.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: w.namespace, Name: w.name, UID: w.uid, FieldPath: fieldPath,
	}
	w.a.recorder.Eventf(ref, etype, reason, format, args...)
}

// readyOrPhaseChanged says whether the phase or the Ready condition differs.
func readyOrPhaseChanged(old, cur corev1.PodStatus) bool {
	if old.Phase != cur.Phase {
		return true
	}
	ready := func(st corev1.PodStatus) corev1.ConditionStatus {
		for _, c := range st.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status
			}
		}
		return ""
	}
	return ready(old) != ready(cur)
}
