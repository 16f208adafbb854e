package proxy

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestNewRunnerRejectsBadIntervals(t *testing.T) {
	fn := func() {}
	tests := []struct {
		name     string
		fn       func()
		min, max time.Duration
	}{
		{"nil fn", nil, 0, time.Second},
		{"negative min", fn, -1, time.Second},
		{"zero max", fn, 0, 0},
		{"max below min", fn, time.Second, time.Millisecond},
	}
	for _, tt := range tests {
		if _, err := NewRunner(tt.fn, tt.min, tt.max); err == nil {
			t.Errorf("%s: want error", tt.name)
		}
	}
}

// startRunner runs r.Loop until the test ends.
func startRunner(t *testing.T, r *Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Loop(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestRunnerCoalescesRequestsDuringARun(t *testing.T) {
	release := make(chan struct{})
	runs := make(chan struct{}, 100)
	var r *Runner
	r, _ = NewRunner(func() {
		runs <- struct{}{}
		<-release
	}, 0, time.Hour)
	startRunner(t, r)

	r.Run()
	<-runs // the first run is now blocked in fn
	for range 50 {
		r.Run()
	}
	release <- struct{}{} // finish run 1
	<-runs                // the 50 requests became one run
	release <- struct{}{}
	select {
	case <-runs:
		t.Fatal("50 requests during one run caused more than one more run")
	case <-time.After(50 * time.Millisecond):
	}
}

func TestRunnerMinInterval(t *testing.T) {
	const minInterval = 30 * time.Millisecond
	var mu sync.Mutex
	var starts, ends []time.Time
	runs := make(chan struct{}, 10)
	r, _ := NewRunner(func() {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		runs <- struct{}{}
		mu.Lock()
		ends = append(ends, time.Now())
		mu.Unlock()
	}, minInterval, time.Hour)
	startRunner(t, r)
	r.Run()
	<-runs
	r.Run()
	<-runs
	mu.Lock()
	defer mu.Unlock()
	if gap := starts[1].Sub(ends[0]); gap < minInterval {
		t.Fatalf("second run started %v after the first ended, want at least %v", gap, minInterval)
	}
}

func TestRunnerPeriodicAndRetry(t *testing.T) {
	runs := make(chan struct{}, 10)
	nonBlocking := func(c chan struct{}) func() {
		return func() {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
	r, _ := NewRunner(nonBlocking(runs), 0, 20*time.Millisecond)
	startRunner(t, r)
	for range 2 { // no requests at all: the periodic run still happens
		select {
		case <-runs:
		case <-time.After(10 * time.Second):
			t.Fatal("no periodic run")
		}
	}

	retried := make(chan struct{}, 1)
	r2, _ := NewRunner(nonBlocking(retried), 0, time.Hour)
	startRunner(t, r2)
	r2.RetryAfter(10 * time.Millisecond)
	select {
	case <-retried:
	case <-time.After(10 * time.Second):
		t.Fatal("RetryAfter did not cause a run")
	}
}
