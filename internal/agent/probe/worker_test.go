package probe

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// scriptExec answers exec probes from a script of exit codes, then repeats
// the last one.
type scriptExec struct {
	mu    sync.Mutex
	codes []int
	calls []time.Time
}

func (s *scriptExec) Exec(_ context.Context, _ []string, _ io.Writer) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, time.Now())
	c := s.codes[0]
	if len(s.codes) > 1 {
		s.codes = s.codes[1:]
	}
	return c, nil
}

func execProbe(initialDelay, failure int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:        corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"check"}}},
		InitialDelaySeconds: initialDelay, PeriodSeconds: 1, TimeoutSeconds: 1,
		SuccessThreshold: 1, FailureThreshold: failure,
	}
}

func collect(kind Kind, p *corev1.Probe, ex Execer, initial Result, started time.Time, gate func() bool, timeout time.Duration) []Report {
	var mu sync.Mutex
	var reports []Report
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	Run(ctx, WorkerConfig{
		Kind: kind, Probe: p, Prober: NewProber(), Target: Target{Exec: ex},
		StartedAt: started, Initial: initial, Gate: gate,
		Report: func(r Report) { mu.Lock(); reports = append(reports, r); mu.Unlock() },
	})
	mu.Lock()
	defer mu.Unlock()
	return reports
}

func TestRunLivenessStopsAtFailure(t *testing.T) {
	ex := &scriptExec{codes: []int{0, 1, 1, 0}}
	start := time.Now()
	reports := collect(Liveness, execProbe(0, 2), ex, Success, start, nil, 10*time.Second)
	if len(reports) != 3 {
		t.Fatalf("got %d reports, want 3 (success, failure, failure): %+v", len(reports), reports)
	}
	last := reports[2]
	if last.State != Failure || !last.Changed || reports[1].State != Success {
		t.Fatalf("reports %+v", reports)
	}
	// Attempts are a period apart, the first at once.
	if d := ex.calls[0].Sub(start); d > 500*time.Millisecond {
		t.Errorf("first attempt after %v, want at once", d)
	}
	if d := ex.calls[2].Sub(ex.calls[1]); d < 900*time.Millisecond {
		t.Errorf("attempts %v apart, want a period of 1s", d)
	}
}

func TestRunHonoursInitialDelay(t *testing.T) {
	ex := &scriptExec{codes: []int{0}}
	start := time.Now()
	reports := collect(Startup, execProbe(2, 3), ex, Unknown, start, nil, 10*time.Second)
	if len(reports) != 1 || reports[0].State != Success {
		t.Fatalf("startup should stop after its first success: %+v", reports)
	}
	if d := ex.calls[0].Sub(start); d < 1900*time.Millisecond {
		t.Fatalf("first attempt %v after start, want initialDelaySeconds=2", d)
	}
}

func TestRunGate(t *testing.T) {
	ex := &scriptExec{codes: []int{0}}
	var open atomic.Bool
	go func() { time.Sleep(1500 * time.Millisecond); open.Store(true) }()
	reports := collect(Readiness, execProbe(0, 3), ex, Failure, time.Now(), open.Load, 3200*time.Millisecond)
	if len(reports) == 0 || len(reports) > 2 {
		t.Fatalf("want attempts only once the gate opened, got %d", len(reports))
	}
	if !reports[0].Changed || reports[0].State != Success {
		t.Fatalf("reports %+v", reports)
	}
}

// TestRunReadinessLooksAgainQuicklyUntilFirstSuccess: a container that is
// not serving at its first readiness attempt is seen Ready as soon as it
// serves, not a whole period later, and the quick failed looks do not count.
func TestRunReadinessLooksAgainQuicklyUntilFirstSuccess(t *testing.T) {
	p := execProbe(0, 3)
	p.PeriodSeconds = 10
	ex := &scriptExec{codes: []int{1, 1, 1, 0}}
	start := time.Now()
	reports := collect(Readiness, p, ex, Failure, start, nil, 2*time.Second)
	if len(reports) != 1 || reports[0].State != Success {
		t.Fatalf("reports %+v, want one counted attempt, a success", reports)
	}
	ex.mu.Lock()
	calls := append([]time.Time(nil), ex.calls...)
	ex.mu.Unlock()
	if len(calls) < 4 {
		t.Fatalf("%d attempts, want the failures and then the success", len(calls))
	}
	if d := calls[3].Sub(start); d > time.Second {
		t.Fatalf("ready after %s with a 10s period: the quick looks did not happen", d)
	}
}

// A liveness probe keeps the kubelet's timing: no quick looks.
func TestRunLivenessHasNoQuickLooks(t *testing.T) {
	p := execProbe(0, 3)
	p.PeriodSeconds = 10
	ex := &scriptExec{codes: []int{1, 0}}
	collect(Liveness, p, ex, Success, time.Now(), nil, 1500*time.Millisecond)
	ex.mu.Lock()
	n := len(ex.calls)
	ex.mu.Unlock()
	if n != 1 {
		t.Fatalf("liveness made %d attempts in 1.5s with a 10s period, want 1", n)
	}
}
