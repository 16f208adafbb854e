package agent

import "time"

// Defaults of the crash-loop back-off, the kubelet's.
const (
	DefaultBackOffBase = 10 * time.Second
	DefaultBackOffMax  = 300 * time.Second
)

// backOff is the restart back-off of one container, as the kubelet keeps it
// (client-go's flowcontrol.Backoff keyed by container): the first failure
// restarts at once; after that each restart waits a delay counted from the
// failure, starting at base and doubling up to max. A container that ran
// for more than twice max since its last restart starts over at no delay.
// It is pure: the caller passes the times.
type backOff struct {
	base, max   time.Duration
	delay       time.Duration // 0: no restart recorded yet
	lastRestart time.Time
}

func newBackOff(base, max time.Duration) backOff {
	return backOff{base: base, max: max}
}

func (b *backOff) expired(failedAt time.Time) bool {
	return failedAt.Sub(b.lastRestart) > 2*b.max
}

// wait reports whether a restart after a failure at failedAt has to wait
// at now, until when, and the delay that applies.
func (b *backOff) wait(failedAt, now time.Time) (until time.Time, delay time.Duration, blocked bool) {
	if b.delay == 0 || b.expired(failedAt) {
		return time.Time{}, 0, false
	}
	until = failedAt.Add(b.delay)
	return until, b.delay, now.Before(until)
}

// restarted records a restart at now after a failure at failedAt.
func (b *backOff) restarted(failedAt, now time.Time) {
	if b.delay == 0 || b.expired(failedAt) {
		b.delay = b.base
	} else {
		b.delay = min(2*b.delay, b.max)
	}
	b.lastRestart = now
}
