package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

// EndpointsMap maps each service port to its endpoints, sorted by address.
type EndpointsMap map[ServicePortName][]Endpoint

// UpdateEndpointsMapResult tells a backend what one EndpointsMap.Update did.
type UpdateEndpointsMapResult struct {
	// UpdatedServices lists every Service with a recorded slice change.
	UpdatedServices sets.Set[types.NamespacedName]
	// Changed holds exactly the service ports whose endpoint list differs
	// from what was applied before.
	Changed sets.Set[ServicePortName]
}

// EndpointsChangeTracker records uncommitted EndpointSlice changes. It keeps
// every slice of a Service apart (endpoints move between slices, so a
// removal from one slice must not drop an endpoint another slice still
// lists) and only computes a Service's endpoint lists when a sync applies
// it. Safe for concurrent use.
type EndpointsChangeTracker struct {
	nodeName string
	log      *slog.Logger

	mu sync.Mutex
	// byService is guarded by mu.
	byService map[types.NamespacedName]*sliceTracker
}

// sliceTracker holds a Service's slices as applied and as pending (a pending
// nil entry is a removal).
type sliceTracker struct {
	applied map[string]*sliceInfo
	pending map[string]*sliceInfo
}

// sliceInfo is the part of an EndpointSlice the proxy uses, normalized so
// reflect.DeepEqual tells real changes from resyncs and status noise.
type sliceInfo struct {
	Ports     []slicePort
	Endpoints []Endpoint
}

type slicePort struct {
	Name     string
	Protocol v1.Protocol
	Port     int32
}

// NewEndpointsChangeTracker returns an empty tracker. nodeName marks
// endpoints on this node as Local; a nil logger discards.
func NewEndpointsChangeTracker(nodeName string, log *slog.Logger) *EndpointsChangeTracker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &EndpointsChangeTracker{nodeName: nodeName, log: log, byService: map[types.NamespacedName]*sliceTracker{}}
}

// EndpointSliceUpdate records slice as added or updated, or as removed when
// remove is true, and reports whether this call changed what is pending.
// Slices of unsupported address types (FQDN) or without the
// kubernetes.io/service-name label are ignored.
func (t *EndpointsChangeTracker) EndpointSliceUpdate(slice *discovery.EndpointSlice, remove bool) bool {
	if slice == nil {
		return false
	}
	if slice.AddressType != discovery.AddressTypeIPv4 && slice.AddressType != discovery.AddressTypeIPv6 {
		return false
	}
	nn, err := sliceServiceName(slice)
	if err != nil {
		t.log.Warn("ignoring EndpointSlice", "endpointslice", slice.Namespace+"/"+slice.Name, "err", err)
		return false
	}
	var info *sliceInfo
	if !remove {
		info = t.newSliceInfo(nn, slice)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.byService[nn]
	if !ok {
		st = &sliceTracker{applied: map[string]*sliceInfo{}, pending: map[string]*sliceInfo{}}
		t.byService[nn] = st
	}
	cur, pending := st.pending[slice.Name]
	if !pending {
		var applied bool
		cur, applied = st.applied[slice.Name]
		if !applied && info == nil {
			return false // removing a slice that was never seen
		}
	}
	if reflect.DeepEqual(cur, info) {
		return false
	}
	st.pending[slice.Name] = info
	return true
}

// Update applies and clears every change recorded in t, and returns which
// service ports' endpoint lists changed.
func (em EndpointsMap) Update(t *EndpointsChangeTracker) UpdateEndpointsMapResult {
	res := UpdateEndpointsMapResult{
		UpdatedServices: sets.New[types.NamespacedName](),
		Changed:         sets.New[ServicePortName](),
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for nn, st := range t.byService {
		if len(st.pending) == 0 {
			continue
		}
		res.UpdatedServices.Insert(nn)
		previous := endpointsFor(nn, st.applied)
		for name, info := range st.pending {
			if info == nil {
				delete(st.applied, name)
			} else {
				st.applied[name] = info
			}
		}
		clear(st.pending)
		if len(st.applied) == 0 {
			delete(t.byService, nn)
		}
		current := endpointsFor(nn, st.applied)
		for spn := range previous {
			if _, ok := current[spn]; !ok {
				delete(em, spn)
				res.Changed.Insert(spn)
			}
		}
		for spn, eps := range current {
			if slices.Equal(em[spn], eps) {
				continue
			}
			em[spn] = eps
			res.Changed.Insert(spn)
		}
	}
	return res
}

// endpointsFor merges a Service's slices into per-port endpoint lists. Slice
// ports are matched to Service ports by name and protocol: a slice already
// carries each pod's resolved target port.
func endpointsFor(nn types.NamespacedName, slicesByName map[string]*sliceInfo) EndpointsMap {
	byPort := map[ServicePortName]map[netip.AddrPort]Endpoint{}
	for _, si := range slicesByName {
		for _, p := range si.Ports {
			spn := ServicePortName{NamespacedName: nn, Port: p.Name, Protocol: p.Protocol}
			set := byPort[spn]
			if set == nil {
				set = map[netip.AddrPort]Endpoint{}
				byPort[spn] = set
			}
			for _, ep := range si.Endpoints {
				ep.Addr = netip.AddrPortFrom(ep.Addr.Addr(), uint16(p.Port))
				// The same address can sit in two slices while it moves;
				// keep the more usable record.
				if old, ok := set[ep.Addr]; !ok || rank(ep) > rank(old) {
					set[ep.Addr] = ep
				}
			}
		}
	}
	out := EndpointsMap{}
	for spn, set := range byPort {
		if len(set) == 0 {
			continue
		}
		eps := make([]Endpoint, 0, len(set))
		for _, ep := range set {
			eps = append(eps, ep)
		}
		slices.SortFunc(eps, compareEndpoints)
		out[spn] = eps
	}
	return out
}

func rank(ep Endpoint) int {
	switch {
	case ep.Ready:
		return 2
	case ep.Serving && ep.Terminating:
		return 1
	}
	return 0
}

func (t *EndpointsChangeTracker) newSliceInfo(nn types.NamespacedName, slice *discovery.EndpointSlice) *sliceInfo {
	log := t.log.With("service", nn.String(), "endpointslice", slice.Name)
	info := &sliceInfo{}
	for _, p := range slice.Ports {
		// A nil name is the unnamed port, as the API server defaults it.
		var name string
		if p.Name != nil {
			name = *p.Name
		}
		proto := v1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
			log.Warn("ignoring EndpointSlice port without a valid number", "port", name)
			continue
		}
		info.Ports = append(info.Ports, slicePort{Name: name, Protocol: proto, Port: *p.Port})
	}
	slices.SortFunc(info.Ports, func(a, b slicePort) int {
		if a.Name != b.Name {
			if a.Name < b.Name {
				return -1
			}
			return 1
		}
		return int(a.Port) - int(b.Port)
	})
	for _, e := range slice.Endpoints {
		if len(e.Addresses) == 0 {
			continue
		}
		// Only the first address counts, as upstream: the rest are reserved.
		a, err := netip.ParseAddr(e.Addresses[0])
		if err != nil {
			log.Warn("ignoring endpoint with invalid address", "endpoint", e.Addresses[0], "err", err)
			continue
		}
		ep := Endpoint{
			Addr:        netip.AddrPortFrom(a.Unmap(), 0),
			Ready:       e.Conditions.Ready == nil || *e.Conditions.Ready,
			Serving:     e.Conditions.Serving == nil || *e.Conditions.Serving,
			Terminating: e.Conditions.Terminating != nil && *e.Conditions.Terminating,
		}
		if e.NodeName != nil {
			ep.NodeName = *e.NodeName
			ep.Local = t.nodeName != "" && ep.NodeName == t.nodeName
		}
		info.Endpoints = append(info.Endpoints, ep)
	}
	slices.SortFunc(info.Endpoints, compareEndpoints)
	return info
}

func sliceServiceName(slice *discovery.EndpointSlice) (types.NamespacedName, error) {
	if slice.Namespace == "" || slice.Name == "" {
		return types.NamespacedName{}, errors.New("EndpointSlice has no namespace or name")
	}
	svc := slice.Labels[discovery.LabelServiceName]
	if svc == "" {
		return types.NamespacedName{}, fmt.Errorf("EndpointSlice %s/%s has no %s label", slice.Namespace, slice.Name, discovery.LabelServiceName)
	}
	return types.NamespacedName{Namespace: slice.Namespace, Name: svc}, nil
}
