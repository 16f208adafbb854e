package probe

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// WorkerConfig configures one probe of one running container.
type WorkerConfig struct {
	Kind   Kind
	Probe  *corev1.Probe
	Target Target
	Prober *Prober
	// StartedAt is when the container started; initialDelaySeconds counts
	// from it.
	StartedAt time.Time
	// Initial is the state before the first attempt (see NewTracker).
	Initial Result
	// Gate, when set, is asked before each attempt, which is skipped while
	// it returns false: liveness and readiness wait for the startup probe.
	Gate func() bool
	// Report is called from the worker's goroutine after every attempt.
	Report func(Report)
}

// Report is what a worker says after an attempt.
type Report struct {
	Kind    Kind
	Attempt Result // this attempt
	Output  string // its output or failure message
	State   Result // the probe's state after it
	Changed bool   // whether State changed with this attempt
}

// Run probes until ctx ends. A liveness or startup probe stops once it
// reaches Failure (the container is about to be restarted), and a startup
// probe stops once it reaches Success (it never runs again for this
// container).
//
// Until a readiness or startup probe has first succeeded, a failed attempt
// is looked at again after a short delay (fastRetry: 5 ms, 100 ms for exec)
// instead of a whole period, for at most one period, and such quick
// attempts do not count towards failureThreshold. The kubelet waits a whole period after a first
// failed attempt, so a container that starts listening a few milliseconds
// after it starts is Ready only a period later; berth makes it Ready
// within milliseconds of serving, with the same failure budget.
func Run(ctx context.Context, cfg WorkerConfig) {
	p := cfg.Probe
	if p == nil || cfg.Prober == nil {
		return
	}
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	tr := NewTracker(p, cfg.Initial)
	fast := cfg.Kind != Liveness && cfg.Initial != Success
	var fastUntil time.Time

	// The first attempt is due initialDelaySeconds after the start, then
	// one every period.
	next := cfg.StartedAt.Add(time.Duration(max(p.InitialDelaySeconds, 0)) * time.Second)
	timer := time.NewTimer(max(time.Until(next), 0))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if cfg.Gate != nil && !cfg.Gate() {
			timer.Reset(period)
			continue
		}
		res, out := cfg.Prober.Do(ctx, &p.ProbeHandler, timeout, cfg.Target)
		if ctx.Err() != nil {
			return
		}
		if fast && res != Success {
			if fastUntil.IsZero() {
				fastUntil = time.Now().Add(period)
			}
			if d := fastRetry(&p.ProbeHandler); time.Now().Add(d).Before(fastUntil) {
				timer.Reset(d)
				continue // a quick look, not counted
			}
		}
		fast = false
		timer.Reset(period)
		state, changed := tr.Observe(res)
		if cfg.Report != nil {
			cfg.Report(Report{Kind: cfg.Kind, Attempt: res, Output: out, State: state, Changed: changed})
		}
		switch {
		case cfg.Kind != Readiness && state == Failure:
			return
		case cfg.Kind == Startup && state == Success:
			return
		}
	}
}

// fastRetry is how soon a probe that has not yet succeeded looks again:
// network probes are cheap (a connect to the pod's address, refused at once
// while nothing listens), an exec probe starts a process.
func fastRetry(h *corev1.ProbeHandler) time.Duration {
	if h.Exec != nil {
		return 100 * time.Millisecond
	}
	return 5 * time.Millisecond
}
