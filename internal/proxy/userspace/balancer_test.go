package userspace

import (
	"net/netip"
	"testing"
	"time"
)

func aps(ss ...string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range ss {
		out = append(out, netip.MustParseAddrPort(s))
	}
	return out
}

// TestBalancer drives one balancer through a script of steps and checks
// which endpoint every pick returns.
func TestBalancer(t *testing.T) {
	const (
		a = "127.0.1.1:80"
		b = "127.0.1.2:80"
		c = "127.0.1.3:80"
	)
	type step struct {
		update  []netip.AddrPort // installed with sticky when non-nil
		clear   bool             // install an empty set
		sticky  time.Duration
		advance time.Duration
		client  string
		tried   []netip.AddrPort
		want    string // "" means no endpoint
		sweep   bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "empty",
			steps: []step{
				{client: "127.0.0.2"},
			},
		},
		{
			name: "round robin over three",
			steps: []step{
				{update: aps(a, b, c), client: "127.0.0.2", want: a},
				{client: "127.0.0.2", want: b},
				{client: "127.0.0.3", want: c},
				{client: "127.0.0.2", want: a},
			},
		},
		{
			name: "same set keeps position; new set restarts",
			steps: []step{
				{update: aps(a, b), client: "127.0.0.2", want: a},
				{update: aps(a, b), client: "127.0.0.2", want: b},
				{update: aps(a, c), client: "127.0.0.2", want: a},
				{clear: true, client: "127.0.0.2"},
			},
		},
		{
			name: "tried endpoints are skipped",
			steps: []step{
				{update: aps(a, b, c), client: "127.0.0.2", tried: aps(a), want: b},
				{client: "127.0.0.2", tried: aps(a, b, c)},
			},
		},
		{
			name: "session affinity sticks, per client",
			steps: []step{
				{update: aps(a, b, c), sticky: time.Minute, client: "127.0.0.2", want: a},
				{client: "127.0.0.2", want: a},
				{client: "127.0.0.3", want: b},
				{client: "127.0.0.2", want: a},
				{client: "127.0.0.3", want: b},
			},
		},
		{
			name: "affinity expires after the timeout since last use",
			steps: []step{
				{update: aps(a, b), sticky: time.Minute, client: "127.0.0.2", want: a},
				{advance: 59 * time.Second, client: "127.0.0.2", want: a},
				{advance: 59 * time.Second, client: "127.0.0.2", want: a},
				{advance: 61 * time.Second, client: "127.0.0.2", want: b},
			},
		},
		{
			name: "affinity moves off a failed endpoint",
			steps: []step{
				{update: aps(a, b), sticky: time.Minute, client: "127.0.0.2", want: a},
				{client: "127.0.0.2", tried: aps(a), want: b},
				{client: "127.0.0.2", want: b},
			},
		},
		{
			name: "affinity to a removed endpoint is dropped",
			steps: []step{
				{update: aps(a, b), sticky: time.Minute, client: "127.0.0.2", want: a},
				{update: aps(b, c), sticky: time.Minute, client: "127.0.0.2", want: b},
				{client: "127.0.0.2", want: b},
			},
		},
		{
			name: "turning affinity off forgets it",
			steps: []step{
				{update: aps(a, b), sticky: time.Minute, client: "127.0.0.2", want: a},
				{update: aps(a, b), sticky: 0, client: "127.0.0.2", want: b},
				{client: "127.0.0.2", want: a},
			},
		},
		{
			name: "sweep drops expired entries only",
			steps: []step{
				{update: aps(a, b, c), sticky: time.Minute, client: "127.0.0.2", want: a},
				{advance: 30 * time.Second, client: "127.0.0.3", want: b},
				{advance: 45 * time.Second, sweep: true, client: "127.0.0.3", want: b},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			lb := newBalancer(func() time.Time { return now })
			for i, s := range tt.steps {
				now = now.Add(s.advance)
				if s.update != nil || s.clear {
					lb.update(s.update, s.sticky)
				}
				if s.sweep {
					lb.sweep()
					if n := len(lb.sticky); n != 1 {
						t.Fatalf("step %d: %d affinity entries after sweep, want 1", i, n)
					}
				}
				got, ok := lb.pick(netip.MustParseAddr(s.client), s.tried)
				gotS := ""
				if ok {
					gotS = got.String()
				}
				if gotS != s.want {
					t.Fatalf("step %d: pick = %q, want %q", i, gotS, s.want)
				}
			}
		})
	}
}
