package agent

import (
	"context"
	"io"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/berth-project/berth/internal/agent/probe"
	"github.com/berth-project/berth/internal/agent/runtime"
)

// probeSet is the probe state of one running container attempt, written
// by its probe workers and read by the pod worker.
type probeSet struct {
	cancel context.CancelFunc

	mu          sync.Mutex // guards the fields below
	ready       bool
	started     bool
	liveFailed  bool
	startFailed bool
}

func (p *probeSet) stop() { p.cancel() }

func (p *probeSet) state() (ready, started bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready, p.started
}

func (p *probeSet) isStarted() bool {
	_, s := p.state()
	return s
}

// failed reports a liveness or startup failure, which restarts the container.
func (p *probeSet) failed() (probe.Kind, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.startFailed:
		return probe.Startup, true
	case p.liveFailed:
		return probe.Liveness, true
	}
	return "", false
}

// startProbes starts the probe workers of c's current attempt. ready and
// started are the state to start from when adopting a container whose
// status said so; a new container starts not ready and not started.
func (w *podWorker) startProbes(c *ctr, ready, started bool) {
	ctx, cancel := context.WithCancel(w.ctx)
	ps := &probeSet{cancel: cancel, ready: ready, started: started}
	spec := c.spec
	if spec.ReadinessProbe == nil {
		ps.ready = true
	}
	if spec.StartupProbe == nil {
		ps.started = true
	}
	c.probes = ps
	st := *c.cur
	// The probe goroutines must not touch c, which the worker owns.
	name, fieldPath := spec.Name, c.fieldPath()
	target := probe.Target{Ports: spec.Ports, Exec: containerExec{rt: w.a.rt, st: st}}
	if w.att != nil {
		target.PodIP = w.att.IP.String()
	}
	initial := func(b bool) probe.Result {
		if b {
			return probe.Success
		}
		return probe.Failure
	}
	run := func(kind probe.Kind, p *corev1.Probe, init probe.Result) {
		if p == nil {
			return
		}
		cfg := probe.WorkerConfig{
			Kind: kind, Probe: p, Target: target, Prober: w.a.prober,
			StartedAt: st.StartedAt, Initial: init,
			Report: func(r probe.Report) { w.probeReport(name, fieldPath, ps, r) },
		}
		if kind != probe.Startup {
			cfg.Gate = ps.isStarted
		}
		w.goFunc(func() { probe.Run(ctx, cfg) })
	}
	if !ps.started {
		// A startup probe never runs again once it has passed.
		run(probe.Startup, spec.StartupProbe, probe.Unknown)
	}
	run(probe.Liveness, spec.LivenessProbe, probe.Success)
	run(probe.Readiness, spec.ReadinessProbe, initial(ps.ready))
}

// probeReport records a probe attempt: an event for every failure, as the
// kubelet records them, and the new state, which wakes the worker.
func (w *podWorker) probeReport(name, fieldPath string, ps *probeSet, r probe.Report) {
	switch r.Attempt {
	case probe.Failure:
		w.eventAt(fieldPath, corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %s", r.Kind, r.Output)
	case probe.Unknown:
		w.eventAt(fieldPath, corev1.EventTypeWarning, "Unhealthy", "%s probe errored: %s", r.Kind, r.Output)
	}
	if !r.Changed {
		return
	}
	ps.mu.Lock()
	switch r.Kind {
	case probe.Readiness:
		ps.ready = r.State == probe.Success
	case probe.Startup:
		ps.started = r.State == probe.Success
		ps.startFailed = r.State == probe.Failure
	case probe.Liveness:
		ps.liveFailed = r.State == probe.Failure
	}
	ps.mu.Unlock()
	w.log.Info("probe changed", "container", name, "probe", string(r.Kind), "state", r.State.String(), "output", r.Output)
	w.wake()
}

// containerExec runs commands next to a container: its network namespace,
// environment, user and working directory.
type containerExec struct {
	rt *runtime.Runtime
	st runtime.State
}

func (e containerExec) Exec(ctx context.Context, argv []string, out io.Writer) (int, error) {
	return e.rt.Exec(ctx, runtime.ExecSpec{
		NetNSPath: e.st.Spec.NetNSPath,
		Argv:      argv,
		Env:       e.st.Spec.Env,
		Dir:       e.st.Spec.Dir,
		UID:       e.st.Spec.UID,
		GID:       e.st.Spec.GID,
		Stdout:    out,
		Stderr:    out,
	})
}
