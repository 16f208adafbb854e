package proxy

import (
	"context"
	"net/netip"
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ServiceHandler receives Service events from an informer. Implementations
// must only record the change and return quickly: the callbacks run on the
// informer's delivery goroutine, one at a time.
type ServiceHandler interface {
	OnServiceAdd(svc *v1.Service)
	OnServiceUpdate(oldSvc, svc *v1.Service)
	OnServiceDelete(svc *v1.Service)
	// OnServicesSynced is called once, after the initial list was delivered.
	OnServicesSynced()
}

// EndpointSliceHandler receives discovery.k8s.io/v1 EndpointSlice events from
// an informer, under the same rules as ServiceHandler.
type EndpointSliceHandler interface {
	OnEndpointSliceAdd(slice *discovery.EndpointSlice)
	OnEndpointSliceUpdate(oldSlice, slice *discovery.EndpointSlice)
	OnEndpointSliceDelete(slice *discovery.EndpointSlice)
	// OnEndpointSlicesSynced is called once, after the initial list was delivered.
	OnEndpointSlicesSynced()
}

// Handler is what the informer wiring (RunInformers) feeds.
type Handler interface {
	ServiceHandler
	EndpointSliceHandler
}

// Provider is the contract of a proxy backend (userspace now, nftables
// later), after kube-proxy's pkg/proxy Provider. The handler methods record
// changes in a ServiceChangeTracker and an EndpointsChangeTracker; Sync asks
// for the recorded changes to be applied soon (it does not wait); SyncLoop
// applies them, rate-limited, until ctx is done. A backend applies nothing
// before both OnServicesSynced and OnEndpointSlicesSynced were called, so a
// partial initial view never reaches the data path.
type Provider interface {
	Handler
	Sync()
	SyncLoop(ctx context.Context)
}

// AddressManager makes a service IP (cluster IP, external IP, load-balancer
// ingress IP) local to this host so that a socket can bind it. Calls are
// counted: every successful Ensure is paired with one Release, and the
// address goes away when its last user releases it. Implementations must be
// safe for concurrent use. The proxy/vip package has two: one for 127.0.0.0/8
// (nothing to do) and one that puts /32 and /128 addresses on a device.
type AddressManager interface {
	Ensure(ip netip.Addr) error
	Release(ip netip.Addr) error
}

// ServicePortName identifies one load-balanced port of one Service. Port is
// the Service port's name ("" for a single unnamed port).
type ServicePortName struct {
	types.NamespacedName
	Port     string
	Protocol v1.Protocol
}

// String returns "namespace/name" or "namespace/name:port", as kube-proxy
// prints it; port names are unique within a Service, so this is unique too.
func (n ServicePortName) String() string {
	if n.Port == "" {
		return n.NamespacedName.String()
	}
	return n.NamespacedName.String() + ":" + n.Port
}

// DefaultStickyMaxAge is the ClientIP session affinity timeout when a Service
// does not set sessionAffinityConfig.clientIP.timeoutSeconds (the API's
// default, 3 hours).
const DefaultStickyMaxAge = 10800 * time.Second

// ServicePortInfo is what a backend needs to know about one Service port.
// Values are immutable once built; a change produces a new value.
type ServicePortInfo struct {
	Name ServicePortName
	// ClusterIPs holds spec.clusterIPs (one per IP family).
	ClusterIPs []netip.Addr
	Port       int32
	Protocol   v1.Protocol
	// NodePort is 0 unless the Service's type is NodePort or LoadBalancer
	// and a node port was allocated.
	NodePort int32
	// ExternalIPs holds spec.externalIPs.
	ExternalIPs []netip.Addr
	// LoadBalancerIPs holds status.loadBalancer.ingress[].ip, leaving out
	// ingresses with ipMode Proxy (KEP-1860: traffic reaches the node with
	// the node as destination, so the ingress IP must not be captured).
	LoadBalancerIPs []netip.Addr
	// StickyMaxAge is the ClientIP session affinity timeout; 0 means no
	// session affinity.
	StickyMaxAge time.Duration
}

// Equal reports whether a and b describe the same service port.
func (a *ServicePortInfo) Equal(b *ServicePortInfo) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Name == b.Name && a.Port == b.Port && a.Protocol == b.Protocol &&
		a.NodePort == b.NodePort && a.StickyMaxAge == b.StickyMaxAge &&
		slices.Equal(a.ClusterIPs, b.ClusterIPs) &&
		slices.Equal(a.ExternalIPs, b.ExternalIPs) &&
		slices.Equal(a.LoadBalancerIPs, b.LoadBalancerIPs)
}

// Endpoint is one backend address of a Service port, with the EndpointSlice
// conditions kube-proxy looks at.
type Endpoint struct {
	Addr netip.AddrPort
	// Ready, Serving and Terminating are the slice's conditions; a nil ready
	// or serving condition counts as true and a nil terminating as false, as
	// upstream.
	Ready       bool
	Serving     bool
	Terminating bool
	// NodeName is the slice's nodeName; Local says it equals this node's.
	NodeName string
	Local    bool
}

// String returns "ip:port".
func (e Endpoint) String() string { return e.Addr.String() }

// UsableEndpoints returns the endpoints new connections may go to: the ready
// ones, or, when none is ready, the ones that are serving and terminating
// (KEP-1669), so that a rolling update or scale-down does not black-hole
// traffic. The result is a new slice in the input's order; nil when nothing
// is usable.
func UsableEndpoints(eps []Endpoint) []Endpoint {
	var out []Endpoint
	for _, ep := range eps {
		if ep.Ready {
			out = append(out, ep)
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, ep := range eps {
		if ep.Serving && ep.Terminating {
			out = append(out, ep)
		}
	}
	return out
}

// compareEndpoints orders endpoints by address so lists diff cheaply.
func compareEndpoints(a, b Endpoint) int { return a.Addr.Compare(b.Addr) }
