package nftables

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

// This file traces packets through a planned Ruleset the way netfilter
// would, so planning tests assert where a new connection ends up rather
// than what the rules say.

// packet is the first packet of a new connection.
type packet struct {
	// fromPod: arrives from another interface (prerouting); otherwise a
	// local process sends it (output).
	fromPod bool
	src     netip.Addr
	dst     netip.AddrPort
	proto   v1.Protocol
	// local are the host's addresses, for "fib daddr type local".
	local []netip.Addr
	// affinity holds the source addresses each affinity set already has.
	affinity map[string][]netip.Addr
}

// outcome is one way the packet can leave the table.
type outcome struct {
	dnat     netip.AddrPort // zero: not translated
	masq     bool           // source rewritten in postrouting
	reject   bool
	tcpReset bool
	// remembered lists the affinity sets the packet's source was added to.
	remembered []string
}

func (o outcome) String() string {
	switch {
	case o.reject && o.tcpReset:
		return "reject(tcp-reset)"
	case o.reject:
		return "reject(icmp)"
	}
	s := "accept"
	if o.dnat.IsValid() {
		s = "dnat " + o.dnat.String()
	}
	if o.masq {
		s += " masq"
	}
	if len(o.remembered) > 0 {
		s += " remember " + strings.Join(o.remembered, ",")
	}
	return s
}

type traceState struct {
	daddr      netip.AddrPort
	mark       uint32
	dnat       netip.AddrPort
	remembered []string
	// oifLoopback is set before postrouting: the packet leaves on lo.
	oifLoopback bool
}

// verdict of running a chain.
type traceResult int

const (
	resContinue traceResult = iota // fell off the end or returned
	resAccept                      // terminal accept (nat statement, accept)
	resDrop                        // rejected
)

type branch struct {
	st     traceState
	res    traceResult
	reject outcome
}

// tracer walks one packet through rs.
type tracer struct {
	t   *testing.T
	rs  *Ruleset
	pkt packet
}

// trace returns every way pkt can go, de-duplicated and sorted.
func trace(t *testing.T, rs *Ruleset, pkt packet) []outcome {
	t.Helper()
	tr := &tracer{t: t, rs: rs, pkt: pkt}
	st := traceState{daddr: pkt.dst}
	var hooks []string
	if pkt.fromPod {
		// prerouting nat, then (after routing) filter forward/input,
		// which see the translated destination, then postrouting.
		hooks = []string{chainNATPrerouting, chainFilterForward}
	} else {
		// output: filter at -110 sees the original destination first.
		hooks = []string{chainFilterOutput, chainNATOutput}
	}
	branches := []branch{{st: st}}
	for _, hook := range hooks {
		var next []branch
		for _, b := range branches {
			if b.res == resDrop {
				next = append(next, b)
				continue
			}
			b.res = resContinue
			next = append(next, tr.run(hook, b.st, 0)...)
		}
		branches = next
	}
	var out []outcome
	for _, b := range branches {
		if b.res == resDrop {
			out = append(out, b.reject)
			continue
		}
		st := b.st
		dst := st.daddr.Addr()
		st.oifLoopback = dst.IsLoopback() || (!pkt.fromPod && slices.Contains(pkt.local, dst))
		post := tr.run(chainNATPostrouting, st, 0)
		for _, p := range post {
			o := outcome{dnat: p.st.dnat, remembered: p.st.remembered, masq: p.res == resAccept && p.st.mark == masqDone}
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b outcome) int { return strings.Compare(a.String(), b.String()) })
	return slices.CompactFunc(out, func(a, b outcome) bool { return a.String() == b.String() })
}

// masqDone marks a state that reached the masquerade statement.
const masqDone = 0xfffffff0

func (tr *tracer) run(name string, st traceState, depth int) []branch {
	if depth > 16 {
		tr.t.Fatalf("trace: chain loop at %s", name)
	}
	c := tr.rs.Chain(name)
	if c == nil {
		tr.t.Fatalf("trace: no chain %q in\n%s", name, tr.rs)
	}
	return tr.rules(c.Rules, st, depth)
}

// rules runs rules from the first; each branch ends with a result.
func (tr *tracer) rules(rules []Rule, st traceState, depth int) []branch {
	if len(rules) == 0 {
		return []branch{{st: st, res: resContinue}}
	}
	var out []branch
	for _, b := range tr.exprs(rules[0].Exprs, st, depth) {
		switch b.res {
		case resContinue:
			if b.returned {
				out = append(out, branch{st: b.st, res: resContinue})
				continue
			}
			out = append(out, tr.rules(rules[1:], b.st, depth)...)
		default:
			out = append(out, b.branch)
		}
	}
	return out
}

type exprBranch struct {
	branch
	returned bool // a return verdict or a goto'd chain fell off its end
}

// exprs evaluates one rule's expressions; a failed match continues with
// the next rule.
func (tr *tracer) exprs(exprs []Expr, st traceState, depth int) []exprBranch {
	if len(exprs) == 0 {
		return []exprBranch{{branch: branch{st: st, res: resContinue}}}
	}
	cont := func(st traceState) []exprBranch { return tr.exprs(exprs[1:], st, depth) }
	nomatch := []exprBranch{{branch: branch{st: st, res: resContinue}}}
	src := tr.pkt.src
	switch e := exprs[0].(type) {
	case SourceIn:
		if !e.Prefix.Contains(src) {
			return nomatch
		}
		return cont(st)
	case SourceInSet:
		if !slices.Contains(tr.pkt.affinity[e.Set], src) {
			return nomatch
		}
		return cont(st)
	case DestInSet:
		if !slices.ContainsFunc(tr.rs.ElementsOf(e.Set), func(el Element) bool { return el.Key.Addr == st.daddr.Addr() }) {
			return nomatch
		}
		return cont(st)
	case DestLocal:
		if !slices.Contains(tr.pkt.local, st.daddr.Addr()) && !st.daddr.Addr().IsLoopback() {
			return nomatch
		}
		return cont(st)
	case CTStateNew:
		return cont(st)
	case L4Proto:
		if e.Proto != tr.pkt.proto {
			return nomatch
		}
		return cont(st)
	case OutLoopback:
		if !st.oifLoopback {
			return nomatch
		}
		return cont(st)
	case MarkClear:
		if st.mark&e.Mark != 0 {
			return nomatch
		}
		return cont(st)
	case MarkOr:
		st.mark |= e.Mark
		return cont(st)
	case MarkXor:
		st.mark ^= e.Mark
		return cont(st)
	case UpdateSourceSet:
		st.remembered = append(slices.Clone(st.remembered), e.Set)
		return cont(st)
	case DNAT:
		st.dnat, st.daddr = e.To, e.To
		return []exprBranch{{branch: branch{st: st, res: resAccept}}}
	case Masquerade:
		st.mark = masqDone
		return []exprBranch{{branch: branch{st: st, res: resAccept}}}
	case Reject:
		return []exprBranch{{branch: branch{st: st, res: resDrop, reject: outcome{reject: true, tcpReset: e.TCPReset && tr.pkt.proto == v1.ProtocolTCP}}}}
	case DispatchMap:
		for _, el := range tr.rs.ElementsOf(e.Map) {
			k := el.Key
			if k.Proto != tr.pkt.proto || k.Port != st.daddr.Port() || (!e.NodePorts && k.Addr != st.daddr.Addr()) {
				continue
			}
			return tr.follow(*el.Verdict, st, depth)
		}
		return cont(st)
	case RandomPick:
		var out []exprBranch
		for _, c := range e.Chains {
			out = append(out, tr.follow(Verdict{Kind: Goto, Chain: c}, st, depth)...)
		}
		return out
	case Verdict:
		return tr.follow(e, st, depth)
	}
	tr.t.Fatalf("trace: unknown expression %T", exprs[0])
	return nil
}

// follow applies a verdict. A jump comes back to the calling rule's chain
// (we model that as "continue with the next rule"); a goto or return ends
// the calling chain.
func (tr *tracer) follow(v Verdict, st traceState, depth int) []exprBranch {
	switch v.Kind {
	case Accept:
		return []exprBranch{{branch: branch{st: st, res: resAccept}}}
	case Return:
		return []exprBranch{{branch: branch{st: st, res: resContinue}, returned: true}}
	case Jump, Goto:
		var out []exprBranch
		for _, b := range tr.run(v.Chain, st, depth+1) {
			eb := exprBranch{branch: b}
			if b.res == resContinue && v.Kind == Goto {
				eb.returned = true
			}
			out = append(out, eb)
		}
		return out
	}
	tr.t.Fatalf("trace: unknown verdict %v", v)
	return nil
}

// outcomes renders outcomes for comparison.
func outcomes(os []outcome) []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = o.String()
	}
	return out
}

func dnatTo(masq bool, eps ...string) []string {
	var out []string
	for _, ep := range eps {
		s := "dnat " + ep
		if masq {
			s += " masq"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func mustAddr(s string) netip.Addr         { return netip.MustParseAddr(s) }
func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func (p packet) String() string {
	from := "local"
	if p.fromPod {
		from = "pod"
	}
	return fmt.Sprintf("%s %s -> %s/%s", from, p.src, p.dst, p.proto)
}
