package proxy

import (
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

// LabelServiceProxyName marks a Service (and its slices) as handled by some
// other proxy; kube-proxy, and so berth, leaves such Services alone.
const LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"

// ServicePortMap maps each service port to what a backend has applied for it.
type ServicePortMap map[ServicePortName]*ServicePortInfo

// ServicePortChange is the before and after of one service port in one
// sync; nil means absent.
type ServicePortChange struct {
	Previous, Current *ServicePortInfo
}

// UpdateServiceMapResult tells a backend what one ServicePortMap.Update did.
type UpdateServiceMapResult struct {
	// UpdatedServices lists every Service with a recorded change.
	UpdatedServices sets.Set[types.NamespacedName]
	// Changed holds exactly the service ports that were added, changed or
	// removed; the backend touches these and nothing else.
	Changed map[ServicePortName]ServicePortChange
}

// ServiceChangeTracker records uncommitted Service changes, keyed by
// namespace/name. Several changes to one Service between two syncs coalesce
// into one previous/current pair, and a pair that ends where it started is
// dropped. Safe for concurrent use.
type ServiceChangeTracker struct {
	log *slog.Logger

	mu sync.Mutex
	// items is guarded by mu.
	items map[types.NamespacedName]*serviceChange
}

type serviceChange struct {
	previous, current ServicePortMap
}

// NewServiceChangeTracker returns an empty tracker. A nil logger discards.
func NewServiceChangeTracker(log *slog.Logger) *ServiceChangeTracker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ServiceChangeTracker{log: log, items: map[types.NamespacedName]*serviceChange{}}
}

// Update records the change from previous to current (either may be nil, not
// both) and reports whether any change is pending.
func (t *ServiceChangeTracker) Update(previous, current *v1.Service) bool {
	svc := current
	if svc == nil {
		svc = previous
	}
	if svc == nil {
		return false
	}
	nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}

	t.mu.Lock()
	defer t.mu.Unlock()
	change, ok := t.items[nn]
	if !ok {
		change = &serviceChange{previous: t.portMap(previous)}
		t.items[nn] = change
	}
	change.current = t.portMap(current)
	if portMapsEqual(change.previous, change.current) {
		delete(t.items, nn)
	}
	return len(t.items) > 0
}

// Pending reports how many Services have a recorded change.
func (t *ServiceChangeTracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.items)
}

// Update applies and clears every change recorded in t, and returns which
// service ports changed.
func (sm ServicePortMap) Update(t *ServiceChangeTracker) UpdateServiceMapResult {
	t.mu.Lock()
	items := t.items
	t.items = map[types.NamespacedName]*serviceChange{}
	t.mu.Unlock()

	res := UpdateServiceMapResult{
		UpdatedServices: sets.New[types.NamespacedName](),
		Changed:         map[ServicePortName]ServicePortChange{},
	}
	for nn, change := range items {
		res.UpdatedServices.Insert(nn)
		// Diff against what was applied, not against change.previous: they
		// agree when events are consistent, and the applied map is the truth.
		for spn := range change.previous {
			if _, still := change.current[spn]; !still {
				if old, ok := sm[spn]; ok {
					res.Changed[spn] = ServicePortChange{Previous: old}
					delete(sm, spn)
				}
			}
		}
		for spn, info := range change.current {
			old := sm[spn]
			if old.Equal(info) {
				continue
			}
			res.Changed[spn] = ServicePortChange{Previous: old, Current: info}
			sm[spn] = info
		}
	}
	return res
}

// ShouldSkipService reports whether a Service gets no proxying: headless
// (clusterIP None or unset), ExternalName, or claimed by another proxy.
func ShouldSkipService(svc *v1.Service) bool {
	if svc.Spec.ClusterIP == v1.ClusterIPNone || svc.Spec.ClusterIP == "" {
		return true
	}
	if svc.Spec.Type == v1.ServiceTypeExternalName {
		return true
	}
	if _, ok := svc.Labels[LabelServiceProxyName]; ok {
		return true
	}
	return false
}

// portMap translates one Service to its service ports; nil for nil or
// skipped Services.
func (t *ServiceChangeTracker) portMap(svc *v1.Service) ServicePortMap {
	if svc == nil || ShouldSkipService(svc) {
		return nil
	}
	nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	log := t.log.With("service", nn.String())

	clusterIPs := svc.Spec.ClusterIPs
	if len(clusterIPs) == 0 {
		clusterIPs = []string{svc.Spec.ClusterIP}
	}
	cips := parseAddrs(log, "spec.clusterIPs", clusterIPs)
	if len(cips) == 0 {
		return nil
	}
	eips := parseAddrs(log, "spec.externalIPs", svc.Spec.ExternalIPs)
	var lbs []string
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP == "" {
			continue // hostname-only ingress: nothing to capture
		}
		if ing.IPMode != nil && *ing.IPMode == v1.LoadBalancerIPModeProxy {
			continue
		}
		lbs = append(lbs, ing.IP)
	}
	lbIPs := parseAddrs(log, "status.loadBalancer.ingress", lbs)

	var sticky time.Duration
	if svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
		sticky = DefaultStickyMaxAge
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && *c.ClientIP.TimeoutSeconds > 0 {
			sticky = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	withNodePort := svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer

	m := ServicePortMap{}
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		proto := sp.Protocol
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		if sp.Port <= 0 || sp.Port > 65535 {
			log.Warn("ignoring service port with invalid port number", "port", sp.Name, "number", sp.Port)
			continue
		}
		spn := ServicePortName{NamespacedName: nn, Port: sp.Name, Protocol: proto}
		info := &ServicePortInfo{
			Name:            spn,
			ClusterIPs:      cips,
			Port:            sp.Port,
			Protocol:        proto,
			ExternalIPs:     eips,
			LoadBalancerIPs: lbIPs,
			StickyMaxAge:    sticky,
		}
		if withNodePort && sp.NodePort > 0 && sp.NodePort <= 65535 {
			info.NodePort = sp.NodePort
		}
		m[spn] = info
	}
	return m
}

// parseAddrs parses, unmaps and de-duplicates IPs, logging and skipping bad
// ones: one bad externalIP must not take the whole Service down.
func parseAddrs(log *slog.Logger, field string, in []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range in {
		a, err := netip.ParseAddr(s)
		if err != nil {
			log.Warn("ignoring invalid IP", "field", field, "ip", s, "err", err)
			continue
		}
		a = a.Unmap()
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func portMapsEqual(a, b ServicePortMap) bool {
	return maps.EqualFunc(a, b, func(x, y *ServicePortInfo) bool { return x.Equal(y) })
}
