package nftables

import (
	"context"
	"maps"

	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/berth-project/berth/internal/proxy"
)

// Status is a point-in-time view of what the proxier has applied to the
// kernel: what a new connection arriving now would meet. It exists for
// readiness checks, tests and benchmarks, which wait on it instead of
// sleeping.
type Status struct {
	// Generation counts syncs (and the final cleanup); it grows by one per
	// sync, whether or not the sync had anything to send.
	Generation uint64
	// Transactions counts batches sent to the kernel, Replacements those
	// that rebuilt the whole table. A sync with nothing to do sends none.
	Transactions uint64
	Replacements uint64
	// LastError is the error of the last sync, "" if it worked.
	LastError string
	// Ports is keyed by service port ("namespace/name" or
	// "namespace/name:port") and lists the ports in the table.
	Ports map[string]PortStatus
}

// PortStatus is the applied state of one service port.
type PortStatus struct {
	// Endpoints are the "ip:port" DNAT targets new connections spread over.
	Endpoints []string
	// Destinations are the captured "ip:port/PROTOCOL" and
	// "nodeport:N/PROTOCOL", sorted.
	Destinations []string
	// Rejecting is true when the port has no usable endpoint and its
	// destinations are rejected (TCP reset, ICMP port unreachable).
	Rejecting bool
}

// Status returns a copy of the applied state.
func (p *Proxier) Status() Status {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	return p.statusLocked()
}

func (p *Proxier) statusLocked() Status {
	return Status{
		Generation:   p.generation,
		Transactions: p.transactions,
		Replacements: p.replacements,
		LastError:    p.lastErr,
		Ports:        maps.Clone(p.status),
	}
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

// Ready is closed after the first successful sync that followed the initial
// Service and EndpointSlice lists: from then on the kernel serves what the
// API held when the proxier started.
func (p *Proxier) Ready() <-chan struct{} { return p.ready }

// publish refreshes the status of the touched service ports (all of them
// after a replacement) and wakes waiters. Called with syncMu held.
func (p *Proxier) publish(touched sets.Set[proxy.ServicePortName], sent, replaced bool, err error) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	if sent {
		p.transactions++
	}
	if replaced {
		p.replacements++
		clear(p.status)
	}
	if err != nil {
		p.lastErr = err.Error()
	} else {
		p.lastErr = ""
		for spn := range touched {
			key := spn.String()
			st, ok := p.planner.State(spn)
			if !ok {
				delete(p.status, key)
				continue
			}
			ps := PortStatus{Destinations: st.Destinations, Rejecting: st.Rejecting}
			for _, ep := range st.Endpoints {
				ps.Endpoints = append(ps.Endpoints, ep.String())
			}
			p.status[key] = ps
		}
	}
	p.generation++
	close(p.synced)
	p.synced = make(chan struct{})
	if err == nil && !p.readyDone {
		p.readyDone = true
		close(p.ready)
	}
}
