package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Runner runs a function on request, at most once per minInterval and at
// least once per maxInterval, like kube-proxy's bounded-frequency runner
// (kubernetes pkg/util/async): requests that arrive while the function runs
// or too soon after it coalesce into one later run, and the periodic run is
// the safety net that retries whatever a previous run could not finish.
// Runs are serialized on the goroutine that calls Loop.
type Runner struct {
	fn          func()
	minInterval time.Duration
	maxInterval time.Duration

	kick  chan struct{}
	retry chan struct{}

	mu sync.Mutex
	// retryAt is guarded by mu; zero means no retry is requested.
	retryAt time.Time
}

// NewRunner returns a Runner for fn. minInterval may be zero (every request
// runs as soon as the previous run ends); maxInterval must be positive and
// not below minInterval.
func NewRunner(fn func(), minInterval, maxInterval time.Duration) (*Runner, error) {
	switch {
	case fn == nil:
		return nil, errors.New("runner: nil function")
	case minInterval < 0:
		return nil, fmt.Errorf("runner: negative minimum interval %v", minInterval)
	case maxInterval <= 0:
		return nil, fmt.Errorf("runner: maximum interval %v must be positive", maxInterval)
	case maxInterval < minInterval:
		return nil, fmt.Errorf("runner: maximum interval %v is below minimum interval %v", maxInterval, minInterval)
	}
	return &Runner{fn: fn, minInterval: minInterval, maxInterval: maxInterval, kick: make(chan struct{}, 1), retry: make(chan struct{}, 1)}, nil
}

// Run asks for a run as soon as the minimum interval allows. It never
// blocks; requests made before Loop starts are kept and served by it.
func (r *Runner) Run() {
	select {
	case r.kick <- struct{}{}:
	default: // a request is already queued; it covers this one
	}
}

// RetryAfter asks for a run no later than d from now (still respecting the
// minimum interval); used when a run could not apply everything.
func (r *Runner) RetryAfter(d time.Duration) {
	at := time.Now().Add(d)
	r.mu.Lock()
	if r.retryAt.IsZero() || at.Before(r.retryAt) {
		r.retryAt = at
	}
	r.mu.Unlock()
	select {
	case r.retry <- struct{}{}:
	default:
	}
}

// Loop serves run requests and the periodic run until ctx is done. It must
// be called once.
func (r *Runner) Loop(ctx context.Context) {
	timer := time.NewTimer(r.maxInterval)
	defer timer.Stop()
	var lastRun time.Time // end of the last run; zero lets the first request run at once
	deadline := time.Now().Add(r.maxInterval)

	// arm moves the next run earlier, never later: a queued early run must
	// not be pushed back by a later request.
	arm := func(at time.Time) {
		if at.Before(deadline) {
			deadline = at
			timer.Reset(time.Until(at))
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.kick:
			if earliest := lastRun.Add(r.minInterval); time.Now().Before(earliest) {
				arm(earliest)
				continue
			}
		case <-r.retry:
			r.mu.Lock()
			at := r.retryAt
			r.mu.Unlock()
			if earliest := lastRun.Add(r.minInterval); at.Before(earliest) {
				at = earliest
			}
			if time.Now().Before(at) {
				arm(at)
				continue
			}
		}
		r.mu.Lock()
		r.retryAt = time.Time{}
		r.mu.Unlock()
		r.fn()
		lastRun = time.Now()
		deadline = lastRun.Add(r.maxInterval)
		timer.Reset(r.maxInterval)
	}
}
