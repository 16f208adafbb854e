package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// group runs components until the first fails or ctx ends, then stops all.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger
	wg     sync.WaitGroup
	once   sync.Once
	err    error // set once, guarded by once
}

func newGroup(ctx context.Context, log *slog.Logger) *group {
	ctx, cancel := context.WithCancel(ctx)
	return &group{ctx: ctx, cancel: cancel, log: log}
}

// Go runs fn as the component name. A component that returns an error while
// the group is running stops the whole server.
func (g *group) Go(name string, fn func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := fn(g.ctx)
		if err != nil && g.ctx.Err() == nil {
			g.once.Do(func() { g.err = fmt.Errorf("%s: %w", name, err) })
			g.log.Error("component failed", "component", name, "err", err)
			g.cancel()
		}
	}()
}

// Wait blocks until every component has returned.
func (g *group) Wait() error {
	<-g.ctx.Done()
	g.wg.Wait()
	return g.err
}
