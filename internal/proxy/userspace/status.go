package userspace

import (
	"context"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/berth-project/berth/internal/proxy"
)

// Status is a point-in-time view of what the proxier has applied: what a
// connection arriving now would meet. It exists for readiness checks, tests
// and benchmarks, which wait on it instead of sleeping.
type Status struct {
	// Generation counts syncs; it grows by one per sync.
	Generation uint64
	// Ports is keyed by service port ("namespace/name" or
	// "namespace/name:port") and lists only proxied ports.
	Ports map[string]PortStatus
}

// PortStatus is the applied state of one service port.
type PortStatus struct {
	// Endpoints are the "ip:port" addresses new connections go to, in
	// round-robin order.
	Endpoints []string
	// Listeners are the open sockets, "ip:port/PROTOCOL", sorted.
	Listeners []string
	// Opens counts listeners opened over the port's life; a sync that leaves
	// the port alone leaves it unchanged.
	Opens uint64
}

// Status returns a copy of the applied state.
func (p *Proxier) Status() Status {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	return p.statusLocked()
}

func (p *Proxier) statusLocked() Status {
	return Status{Generation: p.generation, Ports: maps.Clone(p.status)}
}

// WaitFor blocks until cond holds for the applied state, checking once now
// and once after every sync, or until ctx is done.
func (p *Proxier) WaitFor(ctx context.Context, cond func(Status) bool) error {
	return proxy.WaitFor(ctx, func() (Status, <-chan struct{}) {
		p.stateMu.Lock()
		defer p.stateMu.Unlock()
		return p.statusLocked(), p.synced
	}, cond)
}

// Ready is closed after the first sync that followed the initial Service
// and EndpointSlice lists: from then on the proxy serves what the API held
// when it started.
func (p *Proxier) Ready() <-chan struct{} { return p.ready }

// publish refreshes the status of the touched service ports and wakes
// waiters. Called with syncMu held.
func (p *Proxier) publish(touched sets.Set[proxy.ServicePortName]) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	for spn := range touched {
		key := spn.String()
		sp := p.ports[spn]
		if sp == nil {
			delete(p.status, key)
			continue
		}
		ps := PortStatus{Opens: sp.opens}
		for _, ep := range sp.endpoints {
			ps.Endpoints = append(ps.Endpoints, ep.String())
		}
		for ap := range sp.listeners {
			ps.Listeners = append(ps.Listeners, listenString(ap, spn.Protocol))
		}
		slices.Sort(ps.Listeners)
		p.status[key] = ps
	}
	p.generation++
	close(p.synced)
	p.synced = make(chan struct{})
	if !p.readyDone {
		p.readyDone = true
		close(p.ready)
	}
}
