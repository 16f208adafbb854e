package probe

import corev1 "k8s.io/api/core/v1"

// Tracker turns attempt results into a probe's state: the state becomes
// Success after successThreshold consecutive successes and Failure after
// failureThreshold consecutive failures, and Unknown attempts are ignored,
// as in the kubelet's probe worker. It is not safe for concurrent use.
type Tracker struct {
	successThreshold int32
	failureThreshold int32
	state            Result
	last             Result
	run              int32
}

// NewTracker returns a Tracker for p starting in state initial. Kubernetes
// starts readiness at Failure, liveness at Success and startup at Unknown;
// an agent adopting a running container starts from what it last reported.
func NewTracker(p *corev1.Probe, initial Result) *Tracker {
	t := &Tracker{successThreshold: 1, failureThreshold: 3, state: initial}
	if p != nil {
		if p.SuccessThreshold > 0 {
			t.successThreshold = p.SuccessThreshold
		}
		if p.FailureThreshold > 0 {
			t.failureThreshold = p.FailureThreshold
		}
	}
	return t
}

// State returns the current state.
func (t *Tracker) State() Result { return t.state }

// Observe records an attempt and returns the state and whether it changed.
func (t *Tracker) Observe(r Result) (Result, bool) {
	if r != Success && r != Failure {
		return t.state, false
	}
	if r == t.last {
		t.run++
	} else {
		t.last, t.run = r, 1
	}
	if (r == Failure && t.run < t.failureThreshold) || (r == Success && t.run < t.successThreshold) {
		return t.state, false
	}
	changed := t.state != r
	t.state = r
	return t.state, changed
}

// Reset forgets the attempts seen so far, keeping the state; the kubelet
// does this after a liveness or startup failure so that the next container
// gets a fresh count.
func (t *Tracker) Reset() { t.last, t.run = Unknown, 0 }
