package probe

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestTracker(t *testing.T) {
	S, F, U := Success, Failure, Unknown
	tests := []struct {
		name             string
		success, failure int32
		initial          Result
		attempts         []Result
		states           []Result // state after each attempt
		changes          []bool
	}{
		{
			name: "readiness defaults: first success makes ready, three failures unready", success: 0, failure: 0, initial: F,
			attempts: []Result{S, F, F, S, F, F, F},
			states:   []Result{S, S, S, S, S, S, F},
			changes:  []bool{true, false, false, false, false, false, true},
		},
		{
			name: "success threshold 3", success: 3, failure: 1, initial: F,
			attempts: []Result{S, S, F, S, S, S},
			states:   []Result{F, F, F, F, F, S},
			changes:  []bool{false, false, false, false, false, true},
		},
		{
			name: "liveness: consecutive failures only", success: 1, failure: 2, initial: S,
			attempts: []Result{F, S, F, F},
			states:   []Result{S, S, S, F},
			changes:  []bool{false, false, false, true},
		},
		{
			name: "unknown attempts neither count nor break a run", success: 1, failure: 2, initial: S,
			attempts: []Result{F, U, F},
			states:   []Result{S, S, F},
			changes:  []bool{false, false, true},
		},
		{
			name: "startup from unknown", success: 1, failure: 3, initial: U,
			attempts: []Result{F, F, S},
			states:   []Result{U, U, S},
			changes:  []bool{false, false, true},
		},
		{
			name: "startup fails", success: 1, failure: 2, initial: U,
			attempts: []Result{F, F},
			states:   []Result{U, F},
			changes:  []bool{false, true},
		},
		{
			name: "adopted ready container keeps ready through one failure", success: 1, failure: 3, initial: S,
			attempts: []Result{F, S},
			states:   []Result{S, S},
			changes:  []bool{false, false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(&corev1.Probe{SuccessThreshold: tt.success, FailureThreshold: tt.failure}, tt.initial)
			for i, a := range tt.attempts {
				st, ch := tr.Observe(a)
				if st != tt.states[i] || ch != tt.changes[i] {
					t.Fatalf("attempt %d (%v): state %v changed %v, want %v %v", i, a, st, ch, tt.states[i], tt.changes[i])
				}
			}
		})
	}
}

func TestTrackerReset(t *testing.T) {
	tr := NewTracker(&corev1.Probe{FailureThreshold: 2}, Success)
	tr.Observe(Failure)
	tr.Reset()
	if st, _ := tr.Observe(Failure); st != Success {
		t.Fatalf("after Reset one failure changed the state to %v", st)
	}
}
