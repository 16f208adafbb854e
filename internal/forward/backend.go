package forward

import (
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// endpoint is a pod that new client connections may be sent to.
type endpoint struct {
	Namespace string
	Pod       string
	// Ports holds, for each port of the target (in command-line order), the
	// port on this pod; 0 means this pod lacks that port.
	Ports []int32
}

func (e endpoint) key() string { return e.Namespace + "/" + e.Pod }

// endpointView is what a watch currently knows about a target.
type endpointView struct {
	// Ready are the endpoints new connections may use, sorted by key.
	Ready []endpoint
	// Total counts distinct endpoints seen, ready or not.
	Total int
	// NoPod counts endpoints that have no Pod targetRef; they cannot be
	// reached through pods/portforward and are never chosen.
	NoPod int
}

// sliceEndpoints turns a Service's EndpointSlices into endpoints for the
// Service ports named portNames (one per target port; "" is the unnamed
// port). An endpoint is chosen only when it has a Pod targetRef, is ready
// (nil means ready, as the API says) and is not terminating. A pod that
// shows up in two slices (a dual-stack Service has one per address family)
// counts once; if any copy says terminating it is terminating, since a pod
// never stops terminating.
func sliceEndpoints(namespace string, slices []*discoveryv1.EndpointSlice, portNames []string) endpointView {
	type seen struct {
		ep          endpoint
		ready       bool
		terminating bool
	}
	byKey := map[string]*seen{}
	var order []string
	view := endpointView{}
	for _, slice := range slices {
		if slice == nil {
			continue
		}
		ports := make([]int32, len(portNames))
		for i, name := range portNames {
			ports[i] = slicePort(slice, name)
		}
		for _, ep := range slice.Endpoints {
			ref := ep.TargetRef
			if ref == nil || ref.Kind != "Pod" || ref.Name == "" {
				view.NoPod++
				continue
			}
			ns := ref.Namespace
			if ns == "" {
				ns = namespace
			}
			key := ns + "/" + ref.Name
			s := byKey[key]
			if s == nil {
				s = &seen{ep: endpoint{Namespace: ns, Pod: ref.Name, Ports: make([]int32, len(portNames))}}
				byKey[key] = s
				order = append(order, key)
			}
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
			s.terminating = s.terminating || terminating
			if ready {
				s.ready = true
				for i, p := range ports {
					if s.ep.Ports[i] == 0 {
						s.ep.Ports[i] = p
					}
				}
			}
		}
	}
	view.Total = len(order)
	for _, key := range order {
		s := byKey[key]
		if s.ready && !s.terminating && anyPort(s.ep.Ports) {
			view.Ready = append(view.Ready, s.ep)
		}
	}
	sortEndpoints(view.Ready)
	return view
}

// slicePort returns the TCP port named name in slice, or 0. EndpointSlice
// ports carry the Service port's name, and their number is the target port
// as resolved for the pods in that slice, so a named targetPort that means
// different numbers on different pods arrives here already resolved.
func slicePort(slice *discoveryv1.EndpointSlice, name string) int32 {
	for _, p := range slice.Ports {
		pname := ""
		if p.Name != nil {
			pname = *p.Name
		}
		if pname != name || p.Port == nil {
			continue
		}
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		return *p.Port
	}
	return 0
}

// podEndpoints turns pods into endpoints for the given container ports (by
// number, or by name resolved on each pod). A pod is chosen when it is
// Running and not being deleted and, if requireReady, its Ready condition is
// true.
func podEndpoints(pods []*corev1.Pod, remotes []intstr.IntOrString, requireReady bool) endpointView {
	view := endpointView{}
	for _, pod := range pods {
		if pod == nil {
			continue
		}
		view.Total++
		if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
			continue
		}
		if requireReady && !podReady(pod) {
			continue
		}
		ep := endpoint{Namespace: pod.Namespace, Pod: pod.Name, Ports: make([]int32, len(remotes))}
		for i, r := range remotes {
			ep.Ports[i] = podPort(pod, r)
		}
		if anyPort(ep.Ports) {
			view.Ready = append(view.Ready, ep)
		}
	}
	sortEndpoints(view.Ready)
	return view
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func anyPort(ports []int32) bool {
	for _, p := range ports {
		if p != 0 {
			return true
		}
	}
	return false
}

func sortEndpoints(eps []endpoint) {
	sort.Slice(eps, func(i, j int) bool { return eps[i].key() < eps[j].key() })
}

// candidates returns the endpoints that have target port pi and are not in skip.
func candidates(ready []endpoint, pi int, skip map[string]bool) []endpoint {
	var out []endpoint
	for _, ep := range ready {
		if pi < len(ep.Ports) && ep.Ports[pi] != 0 && !skip[ep.key()] {
			out = append(out, ep)
		}
	}
	return out
}

// roundRobin picks endpoints in turn. It remembers the key of the last pick
// rather than an index, so that the turn order survives endpoints coming and
// going: the next pick is the first endpoint after the last one by key.
type roundRobin struct {
	mu   sync.Mutex
	last string // guarded by mu
}

// pick returns the next endpoint from cands, which must be sorted by key.
func (r *roundRobin) pick(cands []endpoint) (endpoint, bool) {
	if len(cands) == 0 {
		return endpoint{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := cands[0]
	for _, c := range cands {
		if c.key() > r.last {
			next = c
			break
		}
	}
	r.last = next.key()
	return next, true
}
