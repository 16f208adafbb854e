package nftables

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/berth-project/berth/internal/proxy"
)

// Tx is one nf_tables transaction that moves the table from one plan to the
// next. The kernel layer sends it as a single batch, in the order of the
// fields: elements that point at chains go before the chains change, chains
// exist before rules and elements refer to them.
type Tx struct {
	// DelElements are map elements to remove (gone, or changing value).
	DelElements []Element
	// FlushChains are existing chains to empty: either to refill (their
	// rules follow in Fill) or retired (to delete in a later transaction).
	FlushChains []string
	// DelSets are affinity sets to remove (gone, or changing timeout).
	DelSets []string
	// AddSets are affinity sets to create.
	AddSets []Set
	// AddChains are regular chains to create.
	AddChains []string
	// Fill are chains (new, or flushed above) and the rules to append.
	Fill []Chain
	// AddElements are map elements to add.
	AddElements []Element
	// DelChains are empty, unreferenced chains to delete; the proxier puts
	// retired chains here a while after they were flushed, because kernels
	// before 6.2 may still count a just-deleted map element's reference.
	DelChains []string
}

// Empty reports whether the transaction changes nothing.
func (tx *Tx) Empty() bool {
	return len(tx.DelElements) == 0 && len(tx.FlushChains) == 0 && len(tx.DelSets) == 0 &&
		len(tx.AddSets) == 0 && len(tx.AddChains) == 0 && len(tx.Fill) == 0 &&
		len(tx.AddElements) == 0 && len(tx.DelChains) == 0
}

// PortInput is one service port and its endpoints; a nil Info removes the
// service port.
type PortInput struct {
	Info      *proxy.ServicePortInfo
	Endpoints []proxy.Endpoint
}

// Change is what one Planner.Update decided.
type Change struct {
	Tx Tx
	// Retired are the chains the transaction flushes because no plan uses
	// them any more; delete them later (see Tx.DelChains).
	Retired []string
	// StaleUDP are UDP endpoints that stopped being DNAT targets: the
	// conntrack entries that still send a client's datagrams there must go.
	StaleUDP []netip.AddrPort
}

// slot is a key of one of the dispatch maps together with its no-endpoint
// twin: a destination goes to a chain or to reject, never both.
type slot struct {
	nodePort bool
	key      ElementKey
}

func slotOf(e Element) slot {
	return slot{nodePort: e.Set == MapServiceNodePorts || e.Set == MapNoEndpointNodePorts, key: e.Key}
}

// Planner keeps the plan of every service port and turns changes into
// transactions. It is pure (no kernel) and not safe for concurrent use; the
// proxier calls it under its sync lock.
type Planner struct {
	base  Ruleset
	ports map[proxy.ServicePortName]*PortPlan
	// wants records which service ports ask for each slot, and with what.
	wants map[slot]map[proxy.ServicePortName]Element
	// owner is the element each slot holds in the table.
	owner map[slot]ownedElement
}

type ownedElement struct {
	by   proxy.ServicePortName
	elem Element
}

// NewPlanner returns a Planner with no service ports.
func NewPlanner(opts PlanOptions) *Planner {
	return &Planner{
		base:  BaseRuleset(opts),
		ports: map[proxy.ServicePortName]*PortPlan{},
		wants: map[slot]map[proxy.ServicePortName]Element{},
		owner: map[slot]ownedElement{},
	}
}

// Update re-plans the given service ports and returns the transaction from
// the previous plan to the new one. Service ports not named keep their
// plan and are not touched, so a sync that changes one Service flushes and
// refills only that Service's chains. A key two service ports ask for goes
// to one with endpoints, else to the one whose name sorts first; the other
// gets it when the first lets go.
func (p *Planner) Update(changes map[proxy.ServicePortName]PortInput) Change {
	var ch Change
	touched := map[slot]bool{}
	names := make([]proxy.ServicePortName, 0, len(changes))
	for spn := range changes {
		names = append(names, spn)
	}
	slices.SortFunc(names, compareSPN)

	for _, spn := range names {
		in := changes[spn]
		old := p.ports[spn]
		var next *PortPlan
		if in.Info != nil {
			// A port that captures nothing (unsupported protocol, IPv6
			// only) has no plan at all.
			if plan := PlanPort(in.Info, in.Endpoints); len(plan.Elements) > 0 {
				next = &plan
			}
		}
		p.diffPort(&ch, old, next)
		if old != nil {
			for _, e := range old.Elements {
				s := slotOf(e)
				delete(p.wants[s], spn)
				if len(p.wants[s]) == 0 {
					delete(p.wants, s)
				}
				touched[s] = true
			}
			if spn.Protocol == v1.ProtocolUDP {
				for _, ep := range old.Endpoints {
					if next == nil || !slices.Contains(next.Endpoints, ep) {
						ch.StaleUDP = append(ch.StaleUDP, ep)
					}
				}
			}
		}
		if next != nil {
			for _, e := range next.Elements {
				s := slotOf(e)
				if p.wants[s] == nil {
					p.wants[s] = map[proxy.ServicePortName]Element{}
				}
				p.wants[s][spn] = e
				touched[s] = true
			}
			p.ports[spn] = next
		} else {
			delete(p.ports, spn)
		}
	}

	for s := range touched {
		cur, had := p.owner[s]
		win, ok := p.winner(s)
		switch {
		case ok && had && cur.by == win.by && reflect.DeepEqual(cur.elem, win.elem):
			continue
		case had:
			ch.Tx.DelElements = append(ch.Tx.DelElements, cur.elem)
			delete(p.owner, s)
		}
		if ok {
			ch.Tx.AddElements = append(ch.Tx.AddElements, win.elem)
			p.owner[s] = win
		}
	}
	sortTx(&ch.Tx)
	slices.Sort(ch.Retired)
	slices.SortFunc(ch.StaleUDP, netip.AddrPort.Compare)
	return ch
}

// diffPort adds to ch what moving one service port from old to next takes
// for its chains and sets (elements are resolved across ports by Update).
func (p *Planner) diffPort(ch *Change, old, next *PortPlan) {
	oldChains := map[string]*Chain{}
	oldSets := map[string]Set{}
	if old != nil {
		for i := range old.Chains {
			oldChains[old.Chains[i].Name] = &old.Chains[i]
		}
		for _, s := range old.Sets {
			oldSets[s.Name] = s
		}
	}
	// An affinity set whose timeout changes is deleted and created again,
	// since a set's timeout cannot be changed; every chain that refers to
	// it must then be flushed and refilled in the same transaction.
	replaced := map[string]bool{}
	if next != nil {
		for _, s := range next.Sets {
			prev, had := oldSets[s.Name]
			switch {
			case !had:
				ch.Tx.AddSets = append(ch.Tx.AddSets, s)
			case prev != s:
				ch.Tx.DelSets = append(ch.Tx.DelSets, s.Name)
				ch.Tx.AddSets = append(ch.Tx.AddSets, s)
				replaced[s.Name] = true
			}
			delete(oldSets, s.Name)
		}
		for _, c := range next.Chains {
			prev, had := oldChains[c.Name]
			switch {
			case !had:
				ch.Tx.AddChains = append(ch.Tx.AddChains, c.Name)
				ch.Tx.Fill = append(ch.Tx.Fill, c)
			case !reflect.DeepEqual(prev.Rules, c.Rules) || refersTo(c, replaced):
				ch.Tx.FlushChains = append(ch.Tx.FlushChains, c.Name)
				ch.Tx.Fill = append(ch.Tx.Fill, c)
			}
			delete(oldChains, c.Name)
		}
	}
	for name := range oldChains {
		ch.Tx.FlushChains = append(ch.Tx.FlushChains, name)
		ch.Retired = append(ch.Retired, name)
	}
	for name := range oldSets {
		ch.Tx.DelSets = append(ch.Tx.DelSets, name)
	}
}

// refersTo reports whether any rule of c names one of the sets.
func refersTo(c Chain, sets map[string]bool) bool {
	if len(sets) == 0 {
		return false
	}
	for _, r := range c.Rules {
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case SourceInSet:
				if sets[e.Set] {
					return true
				}
			case UpdateSourceSet:
				if sets[e.Set] {
					return true
				}
			}
		}
	}
	return false
}

// winner picks the element a slot holds: a service port with endpoints
// before one that would reject, then the one whose name sorts first.
func (p *Planner) winner(s slot) (ownedElement, bool) {
	var best ownedElement
	found := false
	for spn, e := range p.wants[s] {
		cand := ownedElement{by: spn, elem: e}
		if !found || betterOwner(cand, best) {
			best, found = cand, true
		}
	}
	return best, found
}

func betterOwner(a, b ownedElement) bool {
	if ar, br := isReject(a.elem), isReject(b.elem); ar != br {
		return br
	}
	return compareSPN(a.by, b.by) < 0
}

func isReject(e Element) bool {
	return e.Set == MapNoEndpointServices || e.Set == MapNoEndpointNodePorts
}

// Ruleset returns the whole table as planned: the fixed part, every service
// port's chains and sets, and the elements each slot holds.
func (p *Planner) Ruleset() Ruleset {
	rs := Ruleset{
		Table:    p.base.Table,
		Sets:     slices.Clone(p.base.Sets),
		Chains:   slices.Clone(p.base.Chains),
		Elements: slices.Clone(p.base.Elements),
	}
	for _, plan := range p.ports {
		rs.Chains = append(rs.Chains, plan.Chains...)
		rs.Sets = append(rs.Sets, plan.Sets...)
	}
	for _, o := range p.owner {
		rs.Elements = append(rs.Elements, o.elem)
	}
	sortRuleset(&rs)
	return rs
}

// Table is the planned table's name.
func (p *Planner) Table() string { return p.base.Table }

// PortState is what the table does for one service port.
type PortState struct {
	// Endpoints are the DNAT targets.
	Endpoints []netip.AddrPort
	// Destinations are the captured "ip:port/PROTO" and "nodeport:N/PROTO"
	// this service port holds (a key another port holds is left out).
	Destinations []string
	// Rejecting is true when the port has no usable endpoint, so its
	// destinations are rejected.
	Rejecting bool
}

// State returns the planned state of one service port; false if the
// planner has no plan for it.
func (p *Planner) State(spn proxy.ServicePortName) (PortState, bool) {
	plan, ok := p.ports[spn]
	if !ok {
		return PortState{}, false
	}
	var held []Element
	for _, e := range plan.Elements {
		if o, ok := p.owner[slotOf(e)]; ok && o.by == spn {
			held = append(held, e)
		}
	}
	return PortState{
		Endpoints:    slices.Clone(plan.Endpoints),
		Destinations: destinations(held),
		Rejecting:    len(plan.Endpoints) == 0 && len(plan.Elements) > 0,
	}, true
}

func compareSPN(a, b proxy.ServicePortName) int {
	if c := strings.Compare(a.String(), b.String()); c != 0 {
		return c
	}
	return strings.Compare(string(a.Protocol), string(b.Protocol))
}

func sortTx(tx *Tx) {
	slices.SortFunc(tx.DelElements, compareElements)
	slices.Sort(tx.FlushChains)
	slices.Sort(tx.DelSets)
	slices.SortFunc(tx.AddSets, func(a, b Set) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(tx.AddChains)
	slices.SortFunc(tx.Fill, func(a, b Chain) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(tx.AddElements, compareElements)
	slices.Sort(tx.DelChains)
}
