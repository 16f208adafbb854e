package replicaset

import (
	"errors"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestCalculateStatus(t *testing.T) {
	now := metav1.Now()
	rs := func(replicas, minReady int32, conds ...appsv1.ReplicaSetCondition) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "rs", Namespace: "default"},
			Spec: appsv1.ReplicaSetSpec{
				Replicas: ptr.To(replicas), MinReadySeconds: minReady,
				Template: v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x", "extra": "y"}}},
			},
			Status: appsv1.ReplicaSetStatus{Conditions: conds},
		}
	}
	pod := func(full, ready bool, since time.Duration) *v1.Pod {
		l := map[string]string{"app": "x"}
		if full {
			l["extra"] = "y"
		}
		p := rankPod("p", "n", v1.PodRunning, ready, 0, metav1.NewTime(now.Add(-since)), now, nil)
		p.Labels = l
		return p
	}
	failure := appsv1.ReplicaSetCondition{Type: appsv1.ReplicaSetReplicaFailure, Status: v1.ConditionTrue, Reason: ReasonFailedCreate}

	tests := []struct {
		name                             string
		rs                               *appsv1.ReplicaSet
		pods                             []*v1.Pod
		err                              error
		replicas, full, ready, available int32
		wantFailure                      string
	}{
		{name: "nothing", rs: rs(0, 0)},
		{name: "fully labelled and ready", rs: rs(2, 0), pods: []*v1.Pod{pod(true, true, 0), pod(true, true, 0)}, replicas: 2, full: 2, ready: 2, available: 2},
		{name: "partly labelled", rs: rs(2, 0), pods: []*v1.Pod{pod(true, true, 0), pod(false, false, 0)}, replicas: 2, full: 1, ready: 1, available: 1},
		{name: "ready but not yet available", rs: rs(2, 10), pods: []*v1.Pod{pod(true, true, 20*time.Second), pod(true, true, 5*time.Second)}, replicas: 2, full: 2, ready: 2, available: 1},
		{name: "create failed", rs: rs(3, 0), pods: []*v1.Pod{pod(true, true, 0)}, err: errors.New("quota"), replicas: 1, full: 1, ready: 1, available: 1, wantFailure: ReasonFailedCreate},
		{name: "delete failed", rs: rs(0, 0), pods: []*v1.Pod{pod(true, false, 0)}, err: errors.New("boom"), replicas: 1, full: 1, wantFailure: ReasonFailedDelete},
		{name: "failure cleared", rs: rs(1, 0, failure), pods: []*v1.Pod{pod(true, true, 0)}, replicas: 1, full: 1, ready: 1, available: 1},
		{name: "failure kept", rs: rs(2, 0, failure), pods: []*v1.Pod{pod(true, true, 0)}, err: errors.New("quota"), replicas: 1, full: 1, ready: 1, available: 1, wantFailure: ReasonFailedCreate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := calculateStatus(tt.rs, tt.pods, tt.err, now)
			if st.Replicas != tt.replicas || st.FullyLabeledReplicas != tt.full || st.ReadyReplicas != tt.ready || st.AvailableReplicas != tt.available {
				t.Errorf("status = %d/%d/%d/%d, want %d/%d/%d/%d", st.Replicas, st.FullyLabeledReplicas, st.ReadyReplicas, st.AvailableReplicas,
					tt.replicas, tt.full, tt.ready, tt.available)
			}
			c := getCondition(st, appsv1.ReplicaSetReplicaFailure)
			switch {
			case tt.wantFailure == "" && c != nil:
				t.Errorf("unexpected ReplicaFailure %+v", c)
			case tt.wantFailure != "" && (c == nil || c.Reason != tt.wantFailure || c.Status != v1.ConditionTrue):
				t.Errorf("ReplicaFailure = %+v, want reason %s", c, tt.wantFailure)
			}
		})
	}
}
