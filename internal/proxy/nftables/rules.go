package nftables

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
)

// This file holds the plain-data model of an nftables table that the
// planner produces and the kernel layer executes. It covers exactly the
// statements the proxy needs, so the kernel layer can translate each one to
// netlink expressions and tests can trace packets through a plan without a
// kernel. Every expression prints itself in nft syntax, so a plan reads like
// `nft list table`.

// Expr is one match or statement of a rule. The concrete types below are the
// whole vocabulary; the kernel layer rejects anything else.
type Expr interface {
	fmt.Stringer
	expr()
}

// SourceIn matches packets whose IPv4 source address is in Prefix
// ("ip saddr 127.0.0.0/8"; a /32 matches one address).
type SourceIn struct{ Prefix netip.Prefix }

// SourceInSet matches packets whose source address is in the named set
// ("ip saddr @set").
type SourceInSet struct{ Set string }

// DestInSet matches packets whose destination address is in the named set
// ("ip daddr @set").
type DestInSet struct{ Set string }

// DestLocal matches packets addressed to any address of this host
// ("fib daddr type local").
type DestLocal struct{}

// CTStateNew matches the first packet of a connection ("ct state new").
type CTStateNew struct{}

// L4Proto matches the transport protocol ("meta l4proto tcp").
type L4Proto struct{ Proto v1.Protocol }

// OutLoopback matches packets leaving through a loopback device
// ("meta oiftype loopback").
type OutLoopback struct{}

// MarkClear matches packets whose mark has none of Mark's bits set
// ("meta mark & 0x4000 == 0").
type MarkClear struct{ Mark uint32 }

// MarkOr sets Mark's bits in the packet mark ("meta mark set meta mark | 0x4000").
type MarkOr struct{ Mark uint32 }

// MarkXor flips Mark's bits in the packet mark ("meta mark set meta mark ^ 0x4000").
type MarkXor struct{ Mark uint32 }

// UpdateSourceSet adds the packet's source address to the named set, or
// refreshes its timeout ("update @set { ip saddr }").
type UpdateSourceSet struct{ Set string }

// DNAT rewrites the destination to To ("dnat to 10.244.0.5:8080").
type DNAT struct{ To netip.AddrPort }

// Masquerade rewrites the source to the outgoing interface's address with
// a random source port ("masquerade fully-random").
type Masquerade struct{}

// Reject refuses the packet: a TCP reset when TCPReset, otherwise an ICMP
// port-unreachable.
type Reject struct{ TCPReset bool }

// DispatchMap looks the packet up in a verdict map and follows the verdict
// it finds; no match continues with the next rule. Keyed by destination
// address, protocol and port ("ip daddr . meta l4proto . th dport vmap
// @map"), or, with NodePorts, by protocol and port only.
type DispatchMap struct {
	Map       string
	NodePorts bool
}

// RandomPick jumps to one of Chains chosen uniformly at random per new
// connection ("numgen random mod 3 vmap { 0 : goto a, 1 : goto b, ... }").
type RandomPick struct{ Chains []string }

// Verdict ends a rule: jump (come back after), goto (do not come back),
// return, or accept.
type Verdict struct {
	Kind  VerdictKind
	Chain string
}

// VerdictKind says what a Verdict does.
type VerdictKind int

// The verdicts the proxy uses.
const (
	Jump VerdictKind = iota + 1
	Goto
	Return
	Accept
)

func (SourceIn) expr()        {}
func (SourceInSet) expr()     {}
func (DestInSet) expr()       {}
func (DestLocal) expr()       {}
func (CTStateNew) expr()      {}
func (L4Proto) expr()         {}
func (OutLoopback) expr()     {}
func (MarkClear) expr()       {}
func (MarkOr) expr()          {}
func (MarkXor) expr()         {}
func (UpdateSourceSet) expr() {}
func (DNAT) expr()            {}
func (Masquerade) expr()      {}
func (Reject) expr()          {}
func (DispatchMap) expr()     {}
func (RandomPick) expr()      {}
func (Verdict) expr()         {}

func (e SourceIn) String() string {
	if e.Prefix.IsSingleIP() {
		return "ip saddr " + e.Prefix.Addr().String()
	}
	return "ip saddr " + e.Prefix.String()
}
func (e SourceInSet) String() string { return "ip saddr @" + e.Set }
func (e DestInSet) String() string   { return "ip daddr @" + e.Set }
func (DestLocal) String() string     { return "fib daddr type local" }
func (CTStateNew) String() string    { return "ct state new" }
func (e L4Proto) String() string     { return "meta l4proto " + protoName(e.Proto) }
func (OutLoopback) String() string   { return "meta oiftype loopback" }
func (e MarkClear) String() string   { return fmt.Sprintf("meta mark & %#x == 0", e.Mark) }
func (e MarkOr) String() string      { return fmt.Sprintf("meta mark set meta mark | %#x", e.Mark) }
func (e MarkXor) String() string     { return fmt.Sprintf("meta mark set meta mark ^ %#x", e.Mark) }
func (e UpdateSourceSet) String() string {
	return "update @" + e.Set + " { ip saddr }"
}
func (e DNAT) String() string     { return "dnat to " + e.To.String() }
func (Masquerade) String() string { return "masquerade fully-random" }
func (e Reject) String() string {
	if e.TCPReset {
		return "reject with tcp reset"
	}
	return "reject with icmp port-unreachable"
}
func (e DispatchMap) String() string {
	if e.NodePorts {
		return "meta l4proto . th dport vmap @" + e.Map
	}
	return "ip daddr . meta l4proto . th dport vmap @" + e.Map
}
func (e RandomPick) String() string {
	parts := make([]string, len(e.Chains))
	for i, c := range e.Chains {
		parts[i] = strconv.Itoa(i) + " : goto " + c
	}
	return fmt.Sprintf("numgen random mod %d vmap { %s }", len(e.Chains), strings.Join(parts, ", "))
}
func (e Verdict) String() string {
	switch e.Kind {
	case Jump:
		return "jump " + e.Chain
	case Goto:
		return "goto " + e.Chain
	case Return:
		return "return"
	case Accept:
		return "accept"
	}
	return fmt.Sprintf("verdict(%d)", int(e.Kind))
}

// Rule is one rule: its expressions in order, all matches before the
// statements, and an optional comment.
type Rule struct {
	Exprs   []Expr
	Comment string
}

// String renders the rule in nft syntax.
func (r Rule) String() string {
	parts := make([]string, 0, len(r.Exprs)+1)
	for _, e := range r.Exprs {
		parts = append(parts, e.String())
	}
	if r.Comment != "" {
		parts = append(parts, strconv.Quote(r.Comment))
	}
	return strings.Join(parts, " ")
}

// Hook is a netfilter hook a base chain attaches to.
type Hook int

// The hooks the proxy uses.
const (
	Prerouting Hook = iota + 1
	Input
	Forward
	Output
	Postrouting
)

func (h Hook) String() string {
	switch h {
	case Prerouting:
		return "prerouting"
	case Input:
		return "input"
	case Forward:
		return "forward"
	case Output:
		return "output"
	case Postrouting:
		return "postrouting"
	}
	return fmt.Sprintf("hook(%d)", int(h))
}

// BaseChain says how a chain attaches to a hook.
type BaseChain struct {
	// Type is "nat" or "filter".
	Type     string
	Hook     Hook
	Priority int32
}

// Chain is a named list of rules; Base is nil for a regular chain, which
// only runs when a rule jumps to it.
type Chain struct {
	Name  string
	Base  *BaseChain
	Rules []Rule
}

// KeyType is the key of a set or map.
type KeyType int

// The keys the proxy uses.
const (
	// KeyAddr is an IPv4 address.
	KeyAddr KeyType = iota + 1
	// KeyAddrProtoPort is "ipv4_addr . inet_proto . inet_service".
	KeyAddrProtoPort
	// KeyProtoPort is "inet_proto . inet_service".
	KeyProtoPort
)

func (k KeyType) String() string {
	switch k {
	case KeyAddr:
		return "ipv4_addr"
	case KeyAddrProtoPort:
		return "ipv4_addr . inet_proto . inet_service"
	case KeyProtoPort:
		return "inet_proto . inet_service"
	}
	return fmt.Sprintf("key(%d)", int(k))
}

// Set is a named set, or with Verdicts a verdict map. A positive Timeout
// makes it a dynamic set whose elements expire that long after they were
// last added or updated (session affinity).
type Set struct {
	Name     string
	Key      KeyType
	Verdicts bool
	Timeout  time.Duration
	Comment  string
}

// ElementKey is the key of one element; which fields count depends on the
// set's KeyType.
type ElementKey struct {
	Addr  netip.Addr
	Proto v1.Protocol
	Port  uint16
}

// Element is one element of a set, or with Verdict of a verdict map.
type Element struct {
	Set     string
	Key     ElementKey
	Verdict *Verdict
	Comment string
}

// String renders the element as `nft add element` would take it.
func (e Element) String() string {
	var key string
	switch {
	case !e.Key.Addr.IsValid():
		key = protoName(e.Key.Proto) + " . " + strconv.Itoa(int(e.Key.Port))
	case e.Key.Proto == "":
		key = e.Key.Addr.String()
	default:
		key = e.Key.Addr.String() + " . " + protoName(e.Key.Proto) + " . " + strconv.Itoa(int(e.Key.Port))
	}
	if e.Verdict != nil {
		key += " : " + e.Verdict.String()
	}
	return "@" + e.Set + " { " + key + " }"
}

// Ruleset is a whole table.
type Ruleset struct {
	Table    string
	Sets     []Set
	Chains   []Chain
	Elements []Element
}

// Chain returns the named chain, or nil.
func (rs *Ruleset) Chain(name string) *Chain {
	for i := range rs.Chains {
		if rs.Chains[i].Name == name {
			return &rs.Chains[i]
		}
	}
	return nil
}

// Set returns the named set, or nil.
func (rs *Ruleset) Set(name string) *Set {
	for i := range rs.Sets {
		if rs.Sets[i].Name == name {
			return &rs.Sets[i]
		}
	}
	return nil
}

// ElementsOf returns the elements of the named set, in the ruleset's order.
func (rs *Ruleset) ElementsOf(set string) []Element {
	var out []Element
	for _, e := range rs.Elements {
		if e.Set == set {
			out = append(out, e)
		}
	}
	return out
}

// String renders the ruleset in the shape of `nft list table`, for logs,
// debugging and test failures.
func (rs *Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", rs.Table)
	for _, s := range rs.Sets {
		kind := "set"
		typ := s.Key.String()
		if s.Verdicts {
			kind, typ = "map", typ+" : verdict"
		}
		fmt.Fprintf(&b, "\t%s %s {\n\t\ttype %s\n", kind, s.Name, typ)
		if s.Timeout > 0 {
			fmt.Fprintf(&b, "\t\tflags dynamic,timeout\n\t\ttimeout %s\n", s.Timeout)
		}
		var elems []string
		for _, e := range rs.ElementsOf(s.Name) {
			str := e.String()
			elems = append(elems, strings.TrimSuffix(strings.TrimPrefix(str, "@"+s.Name+" { "), " }"))
		}
		if len(elems) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(elems, ",\n\t\t\t     "))
		}
		b.WriteString("\t}\n")
	}
	for _, c := range rs.Chains {
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		if c.Base != nil {
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %d;\n", c.Base.Type, c.Base.Hook, c.Base.Priority)
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// sortRuleset puts sets, chains and elements in a stable order.
func sortRuleset(rs *Ruleset) {
	slices.SortStableFunc(rs.Sets, func(a, b Set) int { return strings.Compare(a.Name, b.Name) })
	slices.SortStableFunc(rs.Chains, func(a, b Chain) int {
		// Base chains first, as nft lists them; then by name.
		if (a.Base == nil) != (b.Base == nil) {
			if a.Base != nil {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	slices.SortStableFunc(rs.Elements, compareElements)
}

func compareElements(a, b Element) int {
	if c := strings.Compare(a.Set, b.Set); c != 0 {
		return c
	}
	return compareKeys(a.Key, b.Key)
}

func compareKeys(a, b ElementKey) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if c := strings.Compare(string(a.Proto), string(b.Proto)); c != 0 {
		return c
	}
	return int(a.Port) - int(b.Port)
}

// protoName is the nft spelling of a protocol.
func protoName(p v1.Protocol) string { return strings.ToLower(string(p)) }
