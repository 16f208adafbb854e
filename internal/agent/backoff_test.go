package agent

import (
	"testing"
	"time"
)

func TestBackOff(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	type step struct {
		failedAt, now float64
		wantBlocked   bool
		wantDelay     time.Duration
		restart       bool // record a restart at now
	}
	tests := []struct {
		name      string
		base, max time.Duration
		steps     []step
	}{
		{
			name: "first failure restarts at once, then 10s, 20s, 40s", base: 10 * time.Second, max: 300 * time.Second,
			steps: []step{
				{failedAt: 1, now: 1, restart: true},
				{failedAt: 2, now: 2, wantBlocked: true, wantDelay: 10 * time.Second},
				{failedAt: 2, now: 11.9, wantBlocked: true, wantDelay: 10 * time.Second},
				{failedAt: 2, now: 12, wantDelay: 10 * time.Second, restart: true},
				{failedAt: 13, now: 13, wantBlocked: true, wantDelay: 20 * time.Second},
				{failedAt: 13, now: 33, wantDelay: 20 * time.Second, restart: true},
				{failedAt: 34, now: 50, wantBlocked: true, wantDelay: 40 * time.Second},
			},
		},
		{
			name: "capped at max", base: time.Second, max: 4 * time.Second,
			steps: []step{
				{failedAt: 0, now: 0, restart: true},
				{failedAt: 0.1, now: 1.1, wantDelay: time.Second, restart: true},
				{failedAt: 1.2, now: 3.2, wantDelay: 2 * time.Second, restart: true},
				{failedAt: 3.3, now: 7.3, wantDelay: 4 * time.Second, restart: true},
				{failedAt: 7.4, now: 7.5, wantBlocked: true, wantDelay: 4 * time.Second},
				{failedAt: 7.4, now: 11.4, wantDelay: 4 * time.Second, restart: true},
				{failedAt: 11.5, now: 11.5, wantBlocked: true, wantDelay: 4 * time.Second},
			},
		},
		{
			name: "a long run resets the back-off", base: time.Second, max: 4 * time.Second,
			steps: []step{
				{failedAt: 0, now: 0, restart: true},
				{failedAt: 1, now: 2, wantDelay: time.Second, restart: true},
				{failedAt: 3, now: 3, wantBlocked: true, wantDelay: 2 * time.Second},
				{failedAt: 3, now: 5, wantDelay: 2 * time.Second, restart: true},
				// Ran from 5 to 14: more than 2*max, so restart at once again.
				{failedAt: 14, now: 14, restart: true},
				{failedAt: 14.5, now: 14.5, wantBlocked: true, wantDelay: time.Second},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackOff(tt.base, tt.max)
			for i, s := range tt.steps {
				until, delay, blocked := b.wait(at(s.failedAt), at(s.now))
				if blocked != s.wantBlocked || delay != s.wantDelay {
					t.Fatalf("step %d: blocked %v delay %v, want %v %v", i, blocked, delay, s.wantBlocked, s.wantDelay)
				}
				if blocked && !until.Equal(at(s.failedAt).Add(delay)) {
					t.Fatalf("step %d: until %v", i, until)
				}
				if s.restart {
					b.restarted(at(s.failedAt), at(s.now))
				}
			}
		})
	}
}
