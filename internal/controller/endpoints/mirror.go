package endpoints

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/conversion"
	netutils "k8s.io/utils/net"
	"k8s.io/utils/ptr"
)

const (
	// LabelManagedBy marks Endpoints written by an endpoints controller, so
	// that one can tell them from Endpoints a user made by hand.
	LabelManagedBy = "endpoints.kubernetes.io/managed-by"
	// ControllerName is the LabelManagedBy value upstream uses; berth uses it
	// too so that either controller recognises the other's objects.
	ControllerName = "endpoint-controller"

	// maxCapacity is the most addresses one Endpoints object carries, as
	// upstream: beyond it the object is truncated and annotated.
	maxCapacity = 1000
	// truncatedValue is the value of the v1.EndpointsOverCapacity annotation
	// on a truncated object.
	truncatedValue = "truncated"
)

// ignoreRV compares API objects semantically but ignores the resourceVersion
// of object references: Pods change resourceVersion all the time without a
// change that matters to their endpoint.
var ignoreRV = conversion.EqualitiesOrDie(func(a, b v1.ObjectReference) bool {
	a.ResourceVersion, b.ResourceVersion = "", ""
	return a == b
})

// addressTypeFor picks the one address family the legacy Endpoints object
// can describe: the Service's primary family, as upstream does.
func addressTypeFor(svc *v1.Service, sl []*discovery.EndpointSlice) discovery.AddressType {
	if len(svc.Spec.IPFamilies) > 0 {
		if svc.Spec.IPFamilies[0] == v1.IPv6Protocol {
			return discovery.AddressTypeIPv6
		}
		return discovery.AddressTypeIPv4
	}
	if serviceIPSet(svc) {
		if netutils.IsIPv6String(svc.Spec.ClusterIP) {
			return discovery.AddressTypeIPv6
		}
		return discovery.AddressTypeIPv4
	}
	// Headless without families (an API server that does not default them):
	// prefer IPv4 unless only IPv6 slices have endpoints.
	for _, s := range sl {
		if s.AddressType == discovery.AddressTypeIPv4 && len(s.Endpoints) > 0 {
			return discovery.AddressTypeIPv4
		}
	}
	for _, s := range sl {
		if s.AddressType == discovery.AddressTypeIPv6 && len(s.Endpoints) > 0 {
			return discovery.AddressTypeIPv6
		}
	}
	return discovery.AddressTypeIPv4
}

func serviceIPSet(svc *v1.Service) bool {
	return svc.Spec.ClusterIP != v1.ClusterIPNone && svc.Spec.ClusterIP != ""
}

// addressState is what the mirror learns about one IP across all slices.
type addressState struct {
	addr  v1.EndpointAddress
	ready bool
	ports map[string]v1.EndpointPort // by portKey
}

func portKey(p v1.EndpointPort) string {
	return fmt.Sprintf("%s/%d/%s/%s", p.Name, p.Port, p.Protocol, ptr.Deref(p.AppProtocol, ""))
}

// subsetsFromSlices turns the managed slices of svc into Endpoints subsets:
// ready endpoints become addresses, the others notReadyAddresses; terminating
// ones are left out unless the Service publishes not-ready addresses.
// Addresses that serve the same set of ports share a subset; everything is
// sorted so that equal inputs give equal output.
func subsetsFromSlices(svc *v1.Service, sl []*discovery.EndpointSlice) []v1.EndpointSubset {
	// A Service with neither ports nor headless gets no addresses upstream:
	// there is nothing a client could connect to.
	if len(svc.Spec.Ports) == 0 && serviceIPSet(svc) {
		return nil
	}
	addressType := addressTypeFor(svc, sl)
	byIP := map[string]*addressState{}
	for _, s := range sl {
		if s.AddressType != addressType {
			continue
		}
		ports := make([]v1.EndpointPort, 0, len(s.Ports))
		for _, p := range s.Ports {
			if p.Port == nil {
				continue
			}
			ports = append(ports, v1.EndpointPort{
				Name:        ptr.Deref(p.Name, ""),
				Port:        *p.Port,
				Protocol:    ptr.Deref(p.Protocol, v1.ProtocolTCP),
				AppProtocol: p.AppProtocol,
			})
		}
		for i := range s.Endpoints {
			ep := &s.Endpoints[i]
			if len(ep.Addresses) == 0 {
				continue
			}
			if ptr.Deref(ep.Conditions.Terminating, false) && !svc.Spec.PublishNotReadyAddresses {
				continue
			}
			// The API says to read an unknown (nil) readiness as ready.
			ready := ptr.Deref(ep.Conditions.Ready, true)
			ip := ep.Addresses[0]
			st, ok := byIP[ip]
			if !ok || (ready && !st.ready) {
				addr := v1.EndpointAddress{IP: ip, Hostname: ptr.Deref(ep.Hostname, "")}
				if ep.NodeName != nil {
					addr.NodeName = ptr.To(*ep.NodeName)
				}
				if ep.TargetRef != nil {
					addr.TargetRef = ep.TargetRef.DeepCopy()
				}
				if !ok {
					st = &addressState{ports: map[string]v1.EndpointPort{}}
					byIP[ip] = st
				}
				st.addr = addr
			}
			st.ready = st.ready || ready
			for _, p := range ports {
				st.ports[portKey(p)] = p
			}
		}
	}

	bySet := map[string]*v1.EndpointSubset{}
	for _, st := range byIP {
		// Upstream lists a Pod only under the Service ports it resolves; one
		// that resolves none (a named targetPort it lacks) is not listed.
		if len(st.ports) == 0 && len(svc.Spec.Ports) > 0 {
			continue
		}
		keys := slices.Sorted(maps.Keys(st.ports))
		setKey := strings.Join(keys, ",")
		sub, ok := bySet[setKey]
		if !ok {
			sub = &v1.EndpointSubset{}
			for _, k := range keys {
				sub.Ports = append(sub.Ports, st.ports[k])
			}
			slices.SortFunc(sub.Ports, comparePorts)
			bySet[setKey] = sub
		}
		if st.ready {
			sub.Addresses = append(sub.Addresses, st.addr)
		} else {
			sub.NotReadyAddresses = append(sub.NotReadyAddresses, st.addr)
		}
	}
	out := make([]v1.EndpointSubset, 0, len(bySet))
	for _, k := range slices.Sorted(maps.Keys(bySet)) {
		sub := bySet[k]
		slices.SortFunc(sub.Addresses, compareAddresses)
		slices.SortFunc(sub.NotReadyAddresses, compareAddresses)
		out = append(out, *sub)
	}
	return out
}

func comparePorts(a, b v1.EndpointPort) int {
	return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol))
}

// compareAddresses orders like upstream: by IP as a string, then Pod UID.
func compareAddresses(a, b v1.EndpointAddress) int {
	if c := cmp.Compare(a.IP, b.IP); c != 0 {
		return c
	}
	var ua, ub string
	if a.TargetRef != nil {
		ua = string(a.TargetRef.UID)
	}
	if b.TargetRef != nil {
		ub = string(b.TargetRef.UID)
	}
	return cmp.Compare(ua, ub)
}

// truncate cuts subsets down to max addresses in place and reports whether it
// cut anything. Ready addresses are kept before not-ready ones, and each
// subset keeps a share proportional to its size (rounded up, so the last
// subsets may get less), as upstream does.
func truncate(subsets []v1.EndpointSubset, max int) bool {
	ready, notReady := 0, 0
	for _, s := range subsets {
		ready += len(s.Addresses)
		notReady += len(s.NotReadyAddresses)
	}
	if ready+notReady <= max {
		return false
	}
	cutReady := ready > max
	budget, total := max-ready, notReady
	if cutReady {
		budget, total = max, ready
	}
	left := budget
	for i := range subsets {
		s := &subsets[i]
		n := len(s.NotReadyAddresses)
		if cutReady {
			n = len(s.Addresses)
		}
		share := int(math.Ceil(float64(n) / float64(total) * float64(budget)))
		share = min(share, left, n)
		if cutReady {
			s.Addresses = s.Addresses[:share]
			s.NotReadyAddresses = nil
		} else {
			s.NotReadyAddresses = s.NotReadyAddresses[:share]
		}
		left -= share
	}
	return true
}

// lastTriggerTime is the latest last-change-trigger-time among the slices:
// the time of the newest change the mirrored state reflects.
func lastTriggerTime(sl []*discovery.EndpointSlice) time.Time {
	var latest time.Time
	for _, s := range sl {
		v, ok := s.Annotations[v1.EndpointsLastChangeTriggerTime]
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err == nil && t.After(latest) {
			latest = t
		}
	}
	return latest
}

// desiredLabels are the Service's labels plus the managed-by and headless
// markers, as upstream writes them.
func desiredLabels(svc *v1.Service) map[string]string {
	l := maps.Clone(svc.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[LabelManagedBy] = ControllerName
	if serviceIPSet(svc) {
		delete(l, v1.IsHeadlessService)
	} else {
		l[v1.IsHeadlessService] = ""
	}
	return l
}

// desiredEndpoints computes the Endpoints object svc should have given its
// managed slices. current is the object in the cache, or nil. It returns nil
// when current already says the same, so nothing needs writing; the trigger
// time alone is no reason for a write, as upstream.
func desiredEndpoints(svc *v1.Service, sl []*discovery.EndpointSlice, current *v1.Endpoints) *v1.Endpoints {
	subsets := subsetsFromSlices(svc, sl)
	truncated := truncate(subsets, maxCapacity)
	labels := desiredLabels(svc)

	if current != nil {
		_, wasTruncated := current.Annotations[v1.EndpointsOverCapacity]
		if ignoreRV.DeepEqual(current.Subsets, subsets) &&
			equality.Semantic.DeepEqual(current.Labels, labels) &&
			wasTruncated == truncated {
			return nil
		}
	}

	var ep *v1.Endpoints
	if current != nil {
		ep = current.DeepCopy()
	} else {
		ep = &v1.Endpoints{}
		ep.Name, ep.Namespace = svc.Name, svc.Namespace
	}
	ep.Labels = labels
	ep.Subsets = subsets
	if ep.Annotations == nil {
		ep.Annotations = map[string]string{}
	}
	if t := lastTriggerTime(sl); !t.IsZero() {
		ep.Annotations[v1.EndpointsLastChangeTriggerTime] = t.UTC().Format(time.RFC3339Nano)
	} else {
		delete(ep.Annotations, v1.EndpointsLastChangeTriggerTime)
	}
	if truncated {
		ep.Annotations[v1.EndpointsOverCapacity] = truncatedValue
	} else {
		delete(ep.Annotations, v1.EndpointsOverCapacity)
	}
	return ep
}
