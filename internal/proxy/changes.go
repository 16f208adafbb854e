package proxy

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// Changes is the half of a Provider that every backend shares: its handler
// methods record Service and EndpointSlice changes in the two trackers and,
// once both initial lists have been delivered, ask Runner for a sync. A
// backend embeds it and reads the trackers in its sync function.
type Changes struct {
	Services  *ServiceChangeTracker
	Endpoints *EndpointsChangeTracker
	Runner    *Runner

	servicesSynced atomic.Bool
	slicesSynced   atomic.Bool
}

// NewChanges returns Changes whose Runner runs sync at most once per
// minInterval and at least once per maxInterval (see NewRunner). nodeName
// is the node whose endpoints count as local.
func NewChanges(nodeName string, log *slog.Logger, sync func(), minInterval, maxInterval time.Duration) (*Changes, error) {
	r, err := NewRunner(sync, minInterval, maxInterval)
	if err != nil {
		return nil, err
	}
	return &Changes{
		Services:  NewServiceChangeTracker(log),
		Endpoints: NewEndpointsChangeTracker(nodeName, log),
		Runner:    r,
	}, nil
}

// Initialized reports whether both initial lists have been delivered; a
// backend applies nothing before.
func (c *Changes) Initialized() bool { return c.servicesSynced.Load() && c.slicesSynced.Load() }

// Sync asks for recorded changes to be applied soon; it does not wait.
func (c *Changes) Sync() { c.Runner.Run() }

// SyncLoop applies recorded changes, rate-limited, until ctx is done.
func (c *Changes) SyncLoop(ctx context.Context) { c.Runner.Loop(ctx) }

// OnServiceAdd records a new Service.
func (c *Changes) OnServiceAdd(svc *v1.Service) { c.OnServiceUpdate(nil, svc) }

// OnServiceUpdate records a changed Service.
func (c *Changes) OnServiceUpdate(oldSvc, svc *v1.Service) {
	if c.Services.Update(oldSvc, svc) && c.Initialized() {
		c.Runner.Run()
	}
}

// OnServiceDelete records a removed Service.
func (c *Changes) OnServiceDelete(svc *v1.Service) { c.OnServiceUpdate(svc, nil) }

// OnServicesSynced marks the initial Service list as delivered.
func (c *Changes) OnServicesSynced() {
	c.servicesSynced.Store(true)
	c.Runner.Run()
}

// OnEndpointSliceAdd records a new EndpointSlice.
func (c *Changes) OnEndpointSliceAdd(slice *discovery.EndpointSlice) {
	if c.Endpoints.EndpointSliceUpdate(slice, false) && c.Initialized() {
		c.Runner.Run()
	}
}

// OnEndpointSliceUpdate records a changed EndpointSlice.
func (c *Changes) OnEndpointSliceUpdate(_, slice *discovery.EndpointSlice) {
	c.OnEndpointSliceAdd(slice)
}

// OnEndpointSliceDelete records a removed EndpointSlice.
func (c *Changes) OnEndpointSliceDelete(slice *discovery.EndpointSlice) {
	if c.Endpoints.EndpointSliceUpdate(slice, true) && c.Initialized() {
		c.Runner.Run()
	}
}

// OnEndpointSlicesSynced marks the initial EndpointSlice list as delivered.
func (c *Changes) OnEndpointSlicesSynced() {
	c.slicesSynced.Store(true)
	c.Runner.Run()
}

// WaitFor blocks until cond holds for a backend's applied state, checking
// once now and once after every sync, or until ctx is done. snapshot
// returns the state and a channel closed at the next sync, read together.
func WaitFor[S any](ctx context.Context, snapshot func() (S, <-chan struct{}), cond func(S) bool) error {
	for {
		st, next := snapshot()
		if cond(st) {
			return nil
		}
		select {
		case <-next:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
