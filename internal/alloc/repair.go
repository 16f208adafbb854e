package alloc

import (
	"context"
	"log/slog"
	"time"
)

// Repair frees allocations whose owner no longer exists: a crash between
// allocating and storing a Service, or between deleting a Service and
// releasing its addresses, leaves such keys behind. Like Kubernetes' repair
// loop it waits for a leak to be seen twice before freeing it, so an
// allocation whose Service is being created right now is left alone.
type Repair struct {
	Allocators []*Allocator
	// Owners returns the owner strings of everything that exists now.
	Owners   func(ctx context.Context) (map[string]bool, error)
	Interval time.Duration
	Logger   *slog.Logger

	suspects map[string]bool // allocator prefix + value seen leaked once
}

// Run repairs every Interval until ctx is done.
func (r *Repair) Run(ctx context.Context) {
	if r.Interval <= 0 {
		r.Interval = 3 * time.Minute
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.Once(ctx); err != nil && ctx.Err() == nil {
			r.Logger.Warn("allocation repair", "err", err)
		}
	}
}

// Once runs one repair pass.
func (r *Repair) Once(ctx context.Context) error {
	owners, err := r.Owners(ctx)
	if err != nil {
		return err
	}
	next := map[string]bool{}
	for _, a := range r.Allocators {
		used, err := a.Used(ctx)
		if err != nil {
			return err
		}
		for value, owner := range used {
			if owners[owner] {
				continue
			}
			key := a.Prefix() + value
			if r.suspects[key] {
				if err := a.Release(ctx, value, owner); err != nil {
					return err
				}
				r.Logger.Info("released leaked allocation", "value", value, "owner", owner)
				continue
			}
			next[key] = true
		}
	}
	r.suspects = next
	return nil
}
