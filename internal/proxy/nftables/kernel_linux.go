//go:build linux

package nftables

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"

	nft "github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
)

// socketBuffer bounds the netlink socket's send and receive buffers. A
// whole batch goes out in one sendmsg, which fails with EMSGSIZE beyond the
// send buffer, and the kernel answers it with one acknowledgement (for rules
// also an echo) per message, which fail with ENOBUFS beyond the receive
// buffer; the defaults (about 200 KiB) hold a few hundred service ports. The
// limits cost nothing until used. nft raises its send buffer the same way.
const socketBuffer = 64 << 20

// netlinkKernel programs one nf_tables table over netlink. Every call uses
// a connection of its own, so a batch that fails to translate is dropped
// with its connection and never half-sent. Calls must not overlap (the
// proxier's sync lock serializes them).
type netlinkKernel struct {
	table *nft.Table
}

// openKernel checks that nf_tables answers (it lists the IPv4 tables, which
// changes nothing) and returns a kernel for the named table.
func openKernel(table string) (*netlinkKernel, error) {
	k := &netlinkKernel{table: &nft.Table{Name: table, Family: nft.TableFamilyIPv4}}
	if _, err := k.TableExists(); err != nil {
		return nil, err
	}
	return k, nil
}

// conn returns a fresh connection; its socket opens on first use and
// closes after each call.
func (k *netlinkKernel) conn() (*nft.Conn, error) {
	c, err := nft.New(nft.WithSockOptions(func(c *mdnetlink.Conn) error {
		// Without CAP_NET_ADMIN the forced sizes are refused; the ordinary
		// ones (capped by net.core.[rw]mem_max) still help.
		if err := setBufferForce(c, unix.SO_RCVBUFFORCE, socketBuffer); err != nil {
			if err := c.SetReadBuffer(socketBuffer); err != nil {
				return err
			}
		}
		if err := setBufferForce(c, unix.SO_SNDBUFFORCE, socketBuffer); err != nil {
			return c.SetWriteBuffer(socketBuffer)
		}
		return nil
	}))
	if err != nil {
		return nil, fmt.Errorf("nf_tables netlink connection: %w", err)
	}
	return c, nil
}

func setBufferForce(c *mdnetlink.Conn, opt, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, n)
	}); err != nil {
		return err
	}
	return serr
}

// TableExists reports whether the table is in the kernel.
func (k *netlinkKernel) TableExists() (bool, error) {
	c, err := k.conn()
	if err != nil {
		return false, err
	}
	tables, err := c.ListTablesOfFamily(nft.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("list nf_tables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == k.table.Name {
			return true, nil
		}
	}
	return false, nil
}

// DeleteTable removes the table and everything in it; a missing table is
// not an error ("add" first makes sure the delete has something to delete,
// in the same batch).
func (k *netlinkKernel) DeleteTable() error {
	c, err := k.conn()
	if err != nil {
		return err
	}
	c.AddTable(k.table)
	c.DelTable(k.table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table ip %s: %w", k.table.Name, err)
	}
	return nil
}

// CleanupLeftovers deletes the table (DefaultTableName if empty) that an
// nftables-mode run left behind, because it crashed or the node now runs
// another proxy mode; a leftover table would keep sending service traffic
// to stale endpoints ahead of any other proxy. It reports whether there was
// a table. Without CAP_NET_ADMIN it fails with an error that matches
// os.ErrPermission, which a caller in another mode may ignore (such a
// process could not have made the table either).
func CleanupLeftovers(table string) (bool, error) {
	if table == "" {
		table = DefaultTableName
	}
	if !validObjectName(table) {
		return false, fmt.Errorf("clean up nftables table: invalid table name %q", table)
	}
	k := &netlinkKernel{table: &nft.Table{Name: table, Family: nft.TableFamilyIPv4}}
	exists, err := k.TableExists()
	if err != nil || !exists {
		return false, err
	}
	if err := k.DeleteTable(); err != nil {
		return false, err
	}
	return true, nil
}

// Replace swaps whatever table of that name exists (none, a leftover of a
// crashed run, a table someone edited) for rs, atomically: add, delete and
// build it again in one batch, so packets see the old table or the new one.
func (k *netlinkKernel) Replace(rs *Ruleset) error {
	b, err := k.batch()
	if err != nil {
		return err
	}
	b.c.AddTable(k.table)
	b.c.DelTable(k.table)
	b.c.AddTable(k.table)
	// Sets, then chains, then rules, then elements: verdict elements and
	// rules name chains and sets that must already be in the batch.
	for _, s := range rs.Sets {
		b.addSet(s, nil)
	}
	for _, c := range rs.Chains {
		b.addChain(c)
	}
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			b.addRule(c.Name, r)
		}
	}
	b.addAllElements(rs.Elements)
	return b.flush("replace table")
}

// Apply sends tx as one batch.
func (k *netlinkKernel) Apply(tx *Tx) error {
	b, err := k.batch()
	if err != nil {
		return err
	}
	b.delElements(tx.DelElements)
	for _, name := range tx.FlushChains {
		b.c.FlushChain(&nft.Chain{Table: k.table, Name: name})
	}
	for _, name := range tx.DelSets {
		b.c.DelSet(&nft.Set{Table: k.table, Name: name})
	}
	for _, s := range tx.AddSets {
		b.addSet(s, nil)
	}
	for _, name := range tx.AddChains {
		b.addChain(Chain{Name: name})
	}
	for _, c := range tx.Fill {
		for _, r := range c.Rules {
			b.addRule(c.Name, r)
		}
	}
	b.addAllElements(tx.AddElements)
	for _, name := range tx.DelChains {
		b.c.DelChain(&nft.Chain{Table: k.table, Name: name})
	}
	return b.flush("update table")
}

// batch collects one transaction's messages on its own connection, and
// the first translation error.
type batch struct {
	k    *netlinkKernel
	c    *nft.Conn
	err  error
	sets map[string]KeyType // key types of sets created in this batch
}

func (k *netlinkKernel) batch() (*batch, error) {
	c, err := k.conn()
	if err != nil {
		return nil, err
	}
	return &batch{k: k, c: c, sets: map[string]KeyType{}}, nil
}

func (b *batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *batch) flush(what string) error {
	if b.err != nil {
		// The connection and its queued messages are dropped unsent.
		return fmt.Errorf("%s ip %s: %w", what, b.k.table.Name, b.err)
	}
	if err := b.c.Flush(); err != nil {
		return fmt.Errorf("%s ip %s: %w", what, b.k.table.Name, err)
	}
	return nil
}

func (b *batch) nftSet(name string) *nft.Set {
	s := &nft.Set{Table: b.k.table, Name: name}
	if kt, ok := b.sets[name]; ok {
		s.KeyType = keyDatatype(kt)
	}
	return s
}

func (b *batch) addSet(s Set, elems []Element) {
	ns := &nft.Set{
		Table:   b.k.table,
		Name:    s.Name,
		KeyType: keyDatatype(s.Key),
		Comment: s.Comment,
	}
	if s.Key != KeyAddr {
		ns.Concatenation = true
	}
	if s.Verdicts {
		ns.IsMap = true
		ns.DataType = nft.TypeVerdict
	}
	if s.Timeout > 0 {
		ns.HasTimeout = true
		ns.Timeout = s.Timeout
		ns.Dynamic = true
		// The default an nft-created dynamic set gets; the kernel stops
		// adding beyond it rather than growing without bound.
		ns.Size = 65535
	}
	b.sets[s.Name] = s.Key
	vals, err := b.elements(s.Key, elems)
	if err != nil {
		b.fail(err)
		return
	}
	if err := b.c.AddSet(ns, vals); err != nil {
		b.fail(fmt.Errorf("add set %s: %w", s.Name, err))
	}
}

// elementsPerMessage bounds one element-list message: the list is one
// netlink attribute, whose length field has 16 bits, and an element with
// its verdict chain and comment takes up to a few hundred bytes.
const elementsPerMessage = 64

// bySet groups elements by set, keeping the sets' first-seen order, in
// chunks of at most elementsPerMessage.
func bySet(elems []Element) [][]Element {
	groups := map[string][]Element{}
	var order []string
	for _, e := range elems {
		if _, ok := groups[e.Set]; !ok {
			order = append(order, e.Set)
		}
		groups[e.Set] = append(groups[e.Set], e)
	}
	var out [][]Element
	for _, set := range order {
		for chunk := range slices.Chunk(groups[set], elementsPerMessage) {
			out = append(out, chunk)
		}
	}
	return out
}

// addAllElements adds elements set by set, several per message.
func (b *batch) addAllElements(elems []Element) {
	for _, chunk := range bySet(elems) {
		b.addElements(chunk[0].Set, chunk)
	}
}

func (b *batch) addElements(set string, elems []Element) {
	kt, ok := b.sets[set]
	if !ok {
		kt, ok = fixedSetKey(set)
	}
	if !ok {
		b.fail(fmt.Errorf("add elements to %s: unknown set", set))
		return
	}
	vals, err := b.elements(kt, elems)
	if err != nil {
		b.fail(err)
		return
	}
	s := b.nftSet(set)
	s.KeyType = keyDatatype(kt)
	if err := b.c.SetAddElements(s, vals); err != nil {
		b.fail(fmt.Errorf("add elements to %s: %w", set, err))
	}
}

// delElements removes elements of the fixed maps, several per message.
func (b *batch) delElements(elems []Element) {
	for _, chunk := range bySet(elems) {
		set := chunk[0].Set
		kt, ok := fixedSetKey(set)
		if !ok {
			b.fail(fmt.Errorf("delete elements of %s: unknown set", set))
			return
		}
		var keys []nft.SetElement
		for _, e := range chunk {
			key, err := encodeKey(kt, e.Key)
			if err != nil {
				b.fail(err)
				return
			}
			keys = append(keys, nft.SetElement{Key: key})
		}
		s := b.nftSet(set)
		s.KeyType = keyDatatype(kt)
		if err := b.c.SetDeleteElements(s, keys); err != nil {
			b.fail(fmt.Errorf("delete elements of %s: %w", set, err))
		}
	}
}

func (b *batch) elements(kt KeyType, elems []Element) ([]nft.SetElement, error) {
	var out []nft.SetElement
	for _, e := range elems {
		key, err := encodeKey(kt, e.Key)
		if err != nil {
			return nil, err
		}
		se := nft.SetElement{Key: key, Comment: e.Comment}
		if e.Verdict != nil {
			v, err := verdictExpr(*e.Verdict)
			if err != nil {
				return nil, fmt.Errorf("element %s: %w", e, err)
			}
			se.VerdictData = v
		}
		out = append(out, se)
	}
	return out, nil
}

func (b *batch) addChain(c Chain) {
	nc := &nft.Chain{Table: b.k.table, Name: c.Name}
	if c.Base != nil {
		switch c.Base.Type {
		case "nat":
			nc.Type = nft.ChainTypeNAT
		case "filter":
			nc.Type = nft.ChainTypeFilter
		default:
			b.fail(fmt.Errorf("chain %s: unknown chain type %q", c.Name, c.Base.Type))
			return
		}
		hook, ok := hookNum(c.Base.Hook)
		if !ok {
			b.fail(fmt.Errorf("chain %s: unknown hook %v", c.Name, c.Base.Hook))
			return
		}
		nc.Hooknum = nft.ChainHookRef(hook)
		nc.Priority = nft.ChainPriorityRef(nft.ChainPriority(c.Base.Priority))
	}
	b.c.AddChain(nc)
}

func hookNum(h Hook) (nft.ChainHook, bool) {
	switch h {
	case Prerouting:
		return *nft.ChainHookPrerouting, true
	case Input:
		return *nft.ChainHookInput, true
	case Forward:
		return *nft.ChainHookForward, true
	case Output:
		return *nft.ChainHookOutput, true
	case Postrouting:
		return *nft.ChainHookPostrouting, true
	}
	return 0, false
}

func (b *batch) addRule(chain string, r Rule) {
	var exprs []expr.Any
	for _, e := range r.Exprs {
		x, err := b.translate(e)
		if err != nil {
			b.fail(fmt.Errorf("chain %s rule %q: %w", chain, r, err))
			return
		}
		exprs = append(exprs, x...)
	}
	rule := &nft.Rule{Table: b.k.table, Chain: &nft.Chain{Table: b.k.table, Name: chain}, Exprs: exprs}
	if r.Comment != "" {
		rule.UserData = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
	}
	b.c.AddRule(rule)
}

// icmpPortUnreachable is ICMP destination-unreachable code 3.
const icmpPortUnreachable = 3

// Registers: NFT_REG_1 (16 bytes) overlaps NFT_REG32_00..03, so a
// concatenated key loaded into REG32_00, _01, _02 is looked up from REG_1.
const (
	reg1     = unix.NFT_REG_1
	reg2     = unix.NFT_REG_2
	reg32_01 = unix.NFT_REG32_01
	reg32_02 = unix.NFT_REG32_02
)

// translate turns one planned expression into netlink expressions.
func (b *batch) translate(e Expr) ([]expr.Any, error) {
	switch e := e.(type) {
	case SourceIn:
		return matchPrefix(12, e.Prefix)
	case SourceInSet:
		return []expr.Any{loadAddr(12), &expr.Lookup{SourceRegister: reg1, SetName: e.Set}}, nil
	case DestInSet:
		return []expr.Any{loadAddr(16), &expr.Lookup{SourceRegister: reg1, SetName: e.Set}}, nil
	case DestLocal:
		return []expr.Any{
			&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		}, nil
	case CTStateNew:
		return []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
		}, nil
	case L4Proto:
		p, err := protoNumber(e.Proto)
		if err != nil {
			return nil, err
		}
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}},
		}, nil
	case OutLoopback:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFTYPE, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint16(unix.ARPHRD_LOOPBACK)},
		}, nil
	case MarkClear:
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(e.Mark), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: make([]byte, 4)},
		}, nil
	case MarkOr:
		return setMark(^e.Mark, e.Mark), nil
	case MarkXor:
		return setMark(0xffffffff, e.Mark), nil
	case UpdateSourceSet:
		return []expr.Any{loadAddr(12), &expr.Dynset{SrcRegKey: reg1, SetName: e.Set, Operation: unix.NFT_DYNSET_OP_UPDATE}}, nil
	case DNAT:
		if !e.To.Addr().Is4() {
			return nil, fmt.Errorf("dnat to %s: IPv4 only", e.To)
		}
		a := e.To.Addr().As4()
		return []expr.Any{
			&expr.Immediate{Register: reg1, Data: a[:]},
			&expr.Immediate{Register: reg2, Data: binaryutil.BigEndian.PutUint16(e.To.Port())},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg2, Specified: true},
		}, nil
	case Masquerade:
		return []expr.Any{&expr.Masq{FullyRandom: true}}, nil
	case Reject:
		if e.TCPReset {
			return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}, nil
		}
		return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpPortUnreachable}}, nil
	case DispatchMap:
		if e.NodePorts {
			return []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
				loadPort(reg32_01),
				&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetName: e.Map},
			}, nil
		}
		return []expr.Any{
			loadAddr(16),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32_01},
			loadPort(reg32_02),
			&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetName: e.Map},
		}, nil
	case RandomPick:
		if len(e.Chains) == 0 {
			return nil, errors.New("numgen over no chains")
		}
		anon := &nft.Set{
			Table: b.k.table, Anonymous: true, Constant: true, IsMap: true,
			KeyType: nft.TypeInteger, DataType: nft.TypeVerdict, KeyByteOrder: binaryutil.NativeEndian,
		}
		vals := make([]nft.SetElement, len(e.Chains))
		for i, c := range e.Chains {
			vals[i] = nft.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: c}}
		}
		if err := b.c.AddSet(anon, vals); err != nil {
			return nil, fmt.Errorf("anonymous numgen map: %w", err)
		}
		return []expr.Any{
			&expr.Numgen{Register: reg1, Modulus: uint32(len(e.Chains)), Type: unix.NFT_NG_RANDOM},
			&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetID: anon.ID, SetName: anon.Name},
		}, nil
	case Verdict:
		v, err := verdictExpr(e)
		if err != nil {
			return nil, err
		}
		return []expr.Any{v}, nil
	}
	return nil, fmt.Errorf("unsupported expression %T", e)
}

func loadAddr(offset uint32) expr.Any {
	return &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}
}

func loadPort(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

func matchPrefix(offset uint32, p netip.Prefix) ([]expr.Any, error) {
	if !p.Addr().Is4() {
		return nil, fmt.Errorf("prefix %s: IPv4 only", p)
	}
	p = p.Masked()
	a := p.Addr().As4()
	out := []expr.Any{loadAddr(offset)}
	if p.Bits() < 32 {
		mask := net.CIDRMask(p.Bits(), 32)
		out = append(out, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mask, Xor: make([]byte, 4)})
	}
	return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: a[:]}), nil
}

// setMark is "meta mark set (meta mark & and) ^ xor".
func setMark(and, xor uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(and), Xor: binaryutil.NativeEndian.PutUint32(xor)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
}

func verdictExpr(v Verdict) (*expr.Verdict, error) {
	switch v.Kind {
	case Jump:
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain}, nil
	case Goto:
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: v.Chain}, nil
	case Return:
		return &expr.Verdict{Kind: expr.VerdictReturn}, nil
	case Accept:
		return &expr.Verdict{Kind: expr.VerdictAccept}, nil
	}
	return nil, fmt.Errorf("unknown verdict %d", int(v.Kind))
}

func protoNumber(p v1.Protocol) (byte, error) {
	switch p {
	case v1.ProtocolTCP:
		return unix.IPPROTO_TCP, nil
	case v1.ProtocolUDP:
		return unix.IPPROTO_UDP, nil
	case v1.ProtocolSCTP:
		return unix.IPPROTO_SCTP, nil
	}
	return 0, fmt.Errorf("unsupported protocol %q", p)
}

func keyDatatype(k KeyType) nft.SetDatatype {
	switch k {
	case KeyAddrProtoPort:
		return nft.MustConcatSetType(nft.TypeIPAddr, nft.TypeInetProto, nft.TypeInetService)
	case KeyProtoPort:
		return nft.MustConcatSetType(nft.TypeInetProto, nft.TypeInetService)
	}
	return nft.TypeIPAddr
}

// fixedSetKey knows the key types of the fixed maps, which an incremental
// batch refers to without creating.
func fixedSetKey(name string) (KeyType, bool) {
	switch name {
	case MapServiceIPs, MapNoEndpointServices:
		return KeyAddrProtoPort, true
	case MapServiceNodePorts, MapNoEndpointNodePorts:
		return KeyProtoPort, true
	case SetNodePortIPs:
		return KeyAddr, true
	}
	return 0, false
}

// encodeKey lays a key out as the kernel compares it: concatenated fields
// each padded to 4 bytes, addresses and ports in network order.
func encodeKey(k KeyType, key ElementKey) ([]byte, error) {
	addr := func() ([]byte, error) {
		if !key.Addr.Is4() {
			return nil, fmt.Errorf("element key %v: IPv4 address required", key.Addr)
		}
		a := key.Addr.As4()
		return a[:], nil
	}
	switch k {
	case KeyAddr:
		return addr()
	case KeyAddrProtoPort:
		a, err := addr()
		if err != nil {
			return nil, err
		}
		p, err := protoNumber(key.Proto)
		if err != nil {
			return nil, err
		}
		return append(a, p, 0, 0, 0, byte(key.Port>>8), byte(key.Port), 0, 0), nil
	case KeyProtoPort:
		p, err := protoNumber(key.Proto)
		if err != nil {
			return nil, err
		}
		return []byte{p, 0, 0, 0, byte(key.Port >> 8), byte(key.Port), 0, 0}, nil
	}
	return nil, fmt.Errorf("unknown key type %d", int(k))
}

// ClearUDP deletes the conntrack entries that DNAT UDP traffic to any of
// eps, so a client that keeps sending from the same port is balanced anew
// instead of talking to an endpoint that is gone (kube-proxy does the
// same). Entries a client opened to the endpoint directly stay.
func clearUDPConntrack(eps []netip.AddrPort) (uint, error) {
	if len(eps) == 0 {
		return 0, nil
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, udpEndpointFilter(eps))
	if err != nil {
		return n, fmt.Errorf("delete UDP conntrack entries: %w", err)
	}
	return n, nil
}

type udpEndpointFilter []netip.AddrPort

// MatchConntrackFlow matches UDP flows whose reply comes from one of the
// endpoints while the client sent to some other address (a service IP).
func (f udpEndpointFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	src, ok := netip.AddrFromSlice(flow.Reverse.SrcIP)
	if !ok {
		return false
	}
	reply := netip.AddrPortFrom(src.Unmap(), flow.Reverse.SrcPort)
	dst, _ := netip.AddrFromSlice(flow.Forward.DstIP)
	orig := netip.AddrPortFrom(dst.Unmap(), flow.Forward.DstPort)
	if orig == reply {
		return false
	}
	for _, ep := range f {
		if ep == reply {
			return true
		}
	}
	return false
}

// Sysctl paths the proxier sets in its own network namespace.
const routeLocalnetPath = "/proc/sys/net/ipv4/conf/all/route_localnet"

// setSysctl writes value to path and returns what was there before.
func setSysctl(path, value string) (string, error) {
	old, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	prev := strings.TrimSpace(string(old))
	if prev == value {
		return prev, nil
	}
	if err := os.WriteFile(path, []byte(value+"\n"), 0o644); err != nil {
		return prev, fmt.Errorf("write %s: %w", path, err)
	}
	return prev, nil
}

// isPermission reports whether err means "not allowed" (not root, no
// CAP_NET_ADMIN).
func isPermission(err error) bool {
	return errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EPERM)
}
