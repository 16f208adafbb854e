package nftables

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/berth-project/berth/internal/proxy"
)

// Names of the fixed objects of the table, after kube-proxy's nftables
// mode. Per-service objects carry one of the prefixes below and always
// contain a "/", which no fixed name does.
const (
	chainNATPrerouting  = "nat-prerouting"
	chainNATOutput      = "nat-output"
	chainNATPostrouting = "nat-postrouting"
	chainFilterInput    = "filter-input"
	chainFilterForward  = "filter-forward"
	chainFilterOutput   = "filter-output"

	// ChainServices dispatches new connections by destination.
	ChainServices = "services"
	// ChainEndpointsCheck rejects new connections to service ports without
	// endpoints; it runs in filter hooks before DNAT, since reject is not
	// allowed in prerouting.
	ChainEndpointsCheck = "endpoints-check"
	// ChainReject sends a TCP reset or an ICMP port-unreachable.
	ChainReject = "reject-chain"
	// ChainMarkMasq marks a packet for masquerading in postrouting.
	ChainMarkMasq = "mark-for-masquerade"
	// ChainMasquerading masquerades marked packets.
	ChainMasquerading = "masquerading"

	// MapServiceIPs maps cluster, external and load-balancer IP . proto .
	// port to the service port's chain.
	MapServiceIPs = "service-ips"
	// MapServiceNodePorts maps proto . node port to the external chain.
	MapServiceNodePorts = "service-nodeports"
	// MapNoEndpointServices maps the addresses of service ports without
	// endpoints to the reject chain.
	MapNoEndpointServices = "no-endpoint-services"
	// MapNoEndpointNodePorts does the same for node ports.
	MapNoEndpointNodePorts = "no-endpoint-nodeports"
	// SetNodePortIPs holds the addresses node ports answer on.
	SetNodePortIPs = "nodeport-ips"

	prefixService  = "service-"
	prefixExternal = "external-"
	prefixEndpoint = "endpoint-"
	prefixAffinity = "affinity-"
)

// MasqueradeMark is the packet-mark bit that asks for masquerading, the
// same bit kube-proxy uses (1<<14).
const MasqueradeMark uint32 = 0x4000

// DefaultTableName is the table the proxy owns.
const DefaultTableName = "berth"

// Priorities: DNAT at the standard dstnat priority; the no-endpoint filter
// just before it so that it sees the original destination; masquerading at
// srcnat.
const (
	priorityDNAT   int32 = -100
	priorityFilter int32 = priorityDNAT - 10
	prioritySNAT   int32 = 100
)

var loopbackNet = netip.MustParsePrefix("127.0.0.0/8")

// PlanOptions are the node-wide inputs to a plan.
type PlanOptions struct {
	// Table names the table; DefaultTableName if empty.
	Table string
	// NodePortAddresses are the IPv4 addresses node ports answer on.
	NodePortAddresses []netip.Addr
	// AllNodeAddresses makes node ports answer on every local address
	// (NodePortAddresses then does not matter), loopback included.
	AllNodeAddresses bool
}

// PortPlan is what one service port adds to the table. Elements are the
// map entries it asks for; when two service ports ask for the same key, the
// Planner gives it to one.
type PortPlan struct {
	Chains   []Chain
	Sets     []Set
	Elements []Element
	// Endpoints are the DNAT targets, in the order RandomPick uses.
	Endpoints []netip.AddrPort
}

// BaseRuleset returns the fixed part of the table: base chains, dispatch
// and no-endpoint chains, masquerading, and the empty maps.
func BaseRuleset(opts PlanOptions) Ruleset {
	table := opts.Table
	if table == "" {
		table = DefaultTableName
	}
	jump := func(chain string) Expr { return Verdict{Kind: Jump, Chain: chain} }
	base := func(name, typ string, hook Hook, prio int32, rules ...Rule) Chain {
		return Chain{Name: name, Base: &BaseChain{Type: typ, Hook: hook, Priority: prio}, Rules: rules}
	}
	newOnly := Rule{Exprs: []Expr{CTStateNew{}, jump(ChainEndpointsCheck)}}

	// Node ports: a set of addresses, or every local address.
	nodePortMatch := []Expr{DestInSet{Set: SetNodePortIPs}}
	if opts.AllNodeAddresses {
		nodePortMatch = []Expr{DestLocal{}}
	}
	services := []Rule{
		{Exprs: []Expr{DispatchMap{Map: MapServiceIPs}}},
		{Exprs: append(slices.Clone(nodePortMatch), DispatchMap{Map: MapServiceNodePorts, NodePorts: true})},
	}
	check := []Rule{
		{Exprs: []Expr{DispatchMap{Map: MapNoEndpointServices}}},
		{Exprs: append(slices.Clone(nodePortMatch), DispatchMap{Map: MapNoEndpointNodePorts, NodePorts: true})},
	}

	rs := Ruleset{
		Table: table,
		Chains: []Chain{
			base(chainNATPrerouting, "nat", Prerouting, priorityDNAT, Rule{Exprs: []Expr{jump(ChainServices)}}),
			base(chainNATOutput, "nat", Output, priorityDNAT, Rule{Exprs: []Expr{jump(ChainServices)}}),
			base(chainNATPostrouting, "nat", Postrouting, prioritySNAT, Rule{Exprs: []Expr{jump(ChainMasquerading)}}),
			base(chainFilterInput, "filter", Input, priorityFilter, newOnly),
			base(chainFilterForward, "filter", Forward, priorityFilter, newOnly),
			base(chainFilterOutput, "filter", Output, priorityFilter, newOnly),
			{Name: ChainServices, Rules: services},
			{Name: ChainEndpointsCheck, Rules: check},
			{Name: ChainReject, Rules: []Rule{
				{Exprs: []Expr{L4Proto{Proto: v1.ProtocolTCP}, Reject{TCPReset: true}}},
				{Exprs: []Expr{Reject{}}},
			}},
			{Name: ChainMarkMasq, Rules: []Rule{{Exprs: []Expr{MarkOr{Mark: MasqueradeMark}}}}},
			{Name: ChainMasquerading, Rules: []Rule{
				{Exprs: []Expr{MarkClear{Mark: MasqueradeMark}, Verdict{Kind: Return}}},
				// Clear the bit so a packet that goes through another
				// host's (or namespace's) proxy is not masqueraded twice.
				{Exprs: []Expr{MarkXor{Mark: MasqueradeMark}}},
				// Traffic that stays on lo needs no new source, and lo has
				// no address masquerade could pick (it would drop).
				{Exprs: []Expr{OutLoopback{}, Verdict{Kind: Return}}},
				{Exprs: []Expr{Masquerade{}}},
			}},
		},
		Sets: []Set{
			{Name: MapServiceIPs, Key: KeyAddrProtoPort, Verdicts: true, Comment: "ClusterIP, ExternalIP and LoadBalancer IP traffic"},
			{Name: MapServiceNodePorts, Key: KeyProtoPort, Verdicts: true, Comment: "NodePort traffic"},
			{Name: MapNoEndpointServices, Key: KeyAddrProtoPort, Verdicts: true, Comment: "service addresses without endpoints"},
			{Name: MapNoEndpointNodePorts, Key: KeyProtoPort, Verdicts: true, Comment: "node ports without endpoints"},
			{Name: SetNodePortIPs, Key: KeyAddr, Comment: "IPs that accept NodePort traffic"},
		},
	}
	if !opts.AllNodeAddresses {
		for _, a := range opts.NodePortAddresses {
			rs.Elements = append(rs.Elements, Element{Set: SetNodePortIPs, Key: ElementKey{Addr: a}})
		}
	}
	sortRuleset(&rs)
	return rs
}

// SupportedProtocol reports whether the proxy handles proto.
func SupportedProtocol(proto v1.Protocol) bool {
	switch proto {
	case v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP:
		return true
	}
	return false
}

// PlanPort returns the chains, sets and map elements of one service port.
// It is pure: the same inputs give the same plan. Only IPv4 addresses and
// endpoints are used, only usable endpoints (proxy.UsableEndpoints: ready,
// else serving and terminating) get traffic, and a port without any gets
// reject entries instead of chains. An unsupported protocol yields an empty
// plan.
func PlanPort(info *proxy.ServicePortInfo, eps []proxy.Endpoint) PortPlan {
	var plan PortPlan
	if info == nil || !SupportedProtocol(info.Protocol) {
		return plan
	}
	proto := info.Protocol
	comment := info.Name.String()
	nameBase := portNameBase(info.Name, proto)

	var usable []netip.AddrPort
	for _, ep := range proxy.UsableEndpoints(eps) {
		if a := ep.Addr; a.Addr().Is4() && a.Port() != 0 && !slices.Contains(usable, a) {
			usable = append(usable, a)
		}
	}
	plan.Endpoints = usable

	// Destinations, each once: a cluster IP repeated as an external IP is
	// still internal traffic.
	type dest struct {
		addr     netip.Addr
		external bool
	}
	var dests []dest
	add := func(a netip.Addr, external bool) {
		if !a.Is4() || slices.ContainsFunc(dests, func(d dest) bool { return d.addr == a }) {
			return
		}
		dests = append(dests, dest{a, external})
	}
	for _, a := range info.ClusterIPs {
		add(a, false)
	}
	for _, a := range info.ExternalIPs {
		add(a, true)
	}
	for _, a := range info.LoadBalancerIPs {
		add(a, true)
	}
	port := uint16(info.Port)
	nodePort := uint16(info.NodePort)
	if len(dests) == 0 && nodePort == 0 {
		return plan
	}

	if len(usable) == 0 {
		reject := &Verdict{Kind: Goto, Chain: ChainReject}
		for _, d := range dests {
			plan.Elements = append(plan.Elements, Element{Set: MapNoEndpointServices,
				Key: ElementKey{Addr: d.addr, Proto: proto, Port: port}, Verdict: reject, Comment: comment})
		}
		if nodePort != 0 {
			plan.Elements = append(plan.Elements, Element{Set: MapNoEndpointNodePorts,
				Key: ElementKey{Proto: proto, Port: nodePort}, Verdict: reject, Comment: comment})
		}
		return plan
	}

	svcChain := prefixService + nameBase
	extChain := prefixExternal + nameBase
	sticky := info.StickyMaxAge > 0
	epChains := make([]string, len(usable))
	affinity := make([]string, len(usable))
	for i, ep := range usable {
		epBase := hashName(fmt.Sprintf("%s/%s/%s/%s__%s/%d", info.Name.Namespace, info.Name.Name, protoName(proto), info.Name.Port, ep.Addr(), ep.Port()))
		epChains[i] = prefixEndpoint + epBase
		affinity[i] = prefixAffinity + epBase
	}

	// The service port's chain: loopback clients must be masqueraded, or
	// a DNAT to a non-loopback endpoint leaves a 127.x source that the
	// endpoint cannot answer; then affinity; then a random endpoint.
	svc := Chain{Name: svcChain}
	svc.Rules = append(svc.Rules, Rule{Exprs: []Expr{SourceIn{Prefix: loopbackNet}, Verdict{Kind: Jump, Chain: ChainMarkMasq}}})
	if sticky {
		for i := range usable {
			svc.Rules = append(svc.Rules, Rule{Exprs: []Expr{SourceInSet{Set: affinity[i]}, Verdict{Kind: Goto, Chain: epChains[i]}}})
		}
	}
	if len(epChains) == 1 {
		svc.Rules = append(svc.Rules, Rule{Exprs: []Expr{Verdict{Kind: Goto, Chain: epChains[0]}}})
	} else {
		svc.Rules = append(svc.Rules, Rule{Exprs: []Expr{RandomPick{Chains: slices.Clone(epChains)}}})
	}
	plan.Chains = append(plan.Chains, svc)

	hasExternal := nodePort != 0 || slices.ContainsFunc(dests, func(d dest) bool { return d.external })
	if hasExternal {
		// External traffic may come from anywhere and the endpoint may
		// answer it directly, so it is always masqueraded (the
		// externalTrafficPolicy: Cluster behaviour).
		plan.Chains = append(plan.Chains, Chain{Name: extChain, Rules: []Rule{
			{Exprs: []Expr{Verdict{Kind: Jump, Chain: ChainMarkMasq}}},
			{Exprs: []Expr{Verdict{Kind: Goto, Chain: svcChain}}},
		}})
	}

	for i, ep := range usable {
		c := Chain{Name: epChains[i]}
		// Hairpin: an endpoint reaching itself through the service would
		// get its own address as source and answer itself directly.
		c.Rules = append(c.Rules, Rule{Exprs: []Expr{SourceIn{Prefix: netip.PrefixFrom(ep.Addr(), 32)}, Verdict{Kind: Jump, Chain: ChainMarkMasq}}})
		if sticky {
			c.Rules = append(c.Rules, Rule{Exprs: []Expr{UpdateSourceSet{Set: affinity[i]}}})
			plan.Sets = append(plan.Sets, Set{Name: affinity[i], Key: KeyAddr, Timeout: info.StickyMaxAge, Comment: comment})
		}
		c.Rules = append(c.Rules, Rule{Exprs: []Expr{L4Proto{Proto: proto}, DNAT{To: ep}}})
		plan.Chains = append(plan.Chains, c)
	}

	for _, d := range dests {
		target := svcChain
		if d.external {
			target = extChain
		}
		plan.Elements = append(plan.Elements, Element{Set: MapServiceIPs,
			Key: ElementKey{Addr: d.addr, Proto: proto, Port: port}, Verdict: &Verdict{Kind: Goto, Chain: target}, Comment: comment})
	}
	if nodePort != 0 {
		plan.Elements = append(plan.Elements, Element{Set: MapServiceNodePorts,
			Key: ElementKey{Proto: proto, Port: nodePort}, Verdict: &Verdict{Kind: Goto, Chain: extChain}, Comment: comment})
	}
	return plan
}

// portNameBase is "HASH-namespace/name/proto/port": readable in `nft list`
// and unique (namespace, name and port names cannot contain "/").
func portNameBase(spn proxy.ServicePortName, proto v1.Protocol) string {
	return hashName(fmt.Sprintf("%s/%s/%s/%s", spn.Namespace, spn.Name, protoName(proto), spn.Port))
}

// maxNameLen keeps object names below nf_tables' 256-byte limit with room
// for the longest prefix.
const maxNameLen = 240

// hashName prefixes name with a short hash of itself, so names that differ
// only far to the right still differ at a glance and a truncated name stays
// unique.
func hashName(name string) string {
	sum := sha256.Sum256([]byte(name))
	out := base32.StdEncoding.EncodeToString(sum[:])[:8] + "-" + name
	if len(out) > maxNameLen {
		out = out[:maxNameLen-3] + "..."
	}
	return out
}

// isServiceObject tells per-service chains and sets from fixed ones.
func isServiceObject(name string) bool { return strings.Contains(name, "/") }

// destinations lists what a plan captures, "ip:port/PROTO" and
// "nodeport:PORT/PROTO", sorted.
func destinations(elems []Element) []string {
	var out []string
	for _, e := range elems {
		proto := string(e.Key.Proto)
		if e.Key.Addr.IsValid() {
			out = append(out, netip.AddrPortFrom(e.Key.Addr, e.Key.Port).String()+"/"+proto)
		} else {
			out = append(out, "nodeport:"+strconv.Itoa(int(e.Key.Port))+"/"+proto)
		}
	}
	slices.Sort(out)
	return out
}
