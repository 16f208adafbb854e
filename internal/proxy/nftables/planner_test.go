package nftables

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/berth-project/berth/internal/proxy"
)

// txSummary renders a transaction compactly: chain names shortened to
// their kind and readable tail, so expectations stay legible.
func txSummary(tx Tx) []string {
	short := func(name string) string {
		for _, p := range []string{prefixService, prefixExternal, prefixEndpoint, prefixAffinity} {
			if strings.HasPrefix(name, p) {
				rest := strings.TrimPrefix(name, p)
				if i := strings.Index(rest, "-"); i >= 0 {
					rest = rest[i+1:]
				}
				return strings.TrimSuffix(p, "-") + ":" + rest
			}
		}
		return name
	}
	var out []string
	for _, e := range tx.DelElements {
		out = append(out, "del-element "+e.Set+" "+keyString(e.Key))
	}
	for _, c := range tx.FlushChains {
		out = append(out, "flush "+short(c))
	}
	for _, s := range tx.DelSets {
		out = append(out, "del-set "+short(s))
	}
	for _, s := range tx.AddSets {
		out = append(out, "add-set "+short(s.Name)+" "+s.Timeout.String())
	}
	for _, c := range tx.AddChains {
		out = append(out, "add "+short(c))
	}
	for _, c := range tx.Fill {
		out = append(out, "fill "+short(c.Name))
	}
	for _, e := range tx.AddElements {
		v := ""
		if e.Verdict != nil {
			v = " -> " + short(e.Verdict.Chain)
		}
		out = append(out, "add-element "+e.Set+" "+keyString(e.Key)+v)
	}
	for _, c := range tx.DelChains {
		out = append(out, "del "+short(c))
	}
	return out
}

func keyString(k ElementKey) string {
	if !k.Addr.IsValid() {
		return protoName(k.Proto) + "." + strconv.Itoa(int(k.Port))
	}
	return netip.AddrPortFrom(k.Addr, k.Port).String()
}

func TestPlannerUpdates(t *testing.T) {
	tcp, udp := v1.ProtocolTCP, v1.ProtocolUDP
	web := svcPort("web", tcp, "10.96.0.10", 80)
	webNP := svcPort("web", tcp, "10.96.0.10", 80, withNodePort(30080))
	other := svcPort("other", tcp, "10.96.0.11", 80)
	sticky := func(d time.Duration) *proxy.ServicePortInfo {
		return svcPort("web", tcp, "10.96.0.10", 80, withSticky(d))
	}
	dns := svcPort("dns", udp, "10.96.0.53", 53)

	type step struct {
		name    string
		changes []PortInput
		want    []string
		retired []string
		stale   []string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "add, repeat, grow, shrink, empty, delete",
			steps: []step{
				{name: "add", changes: []PortInput{{Info: web, Endpoints: ready("10.244.0.2:80")}}, want: []string{
					"add endpoint:default/web/tcp/p__10.244.0.2/80",
					"add service:default/web/tcp/p",
					"fill endpoint:default/web/tcp/p__10.244.0.2/80",
					"fill service:default/web/tcp/p",
					"add-element service-ips 10.96.0.10:80 -> service:default/web/tcp/p",
				}},
				{name: "same again changes nothing", changes: []PortInput{{Info: web, Endpoints: ready("10.244.0.2:80")}}},
				{name: "second endpoint refills only the service chain", changes: []PortInput{{Info: web, Endpoints: ready("10.244.0.2:80", "10.244.0.3:80")}}, want: []string{
					"flush service:default/web/tcp/p",
					"add endpoint:default/web/tcp/p__10.244.0.3/80",
					"fill endpoint:default/web/tcp/p__10.244.0.3/80",
					"fill service:default/web/tcp/p",
				}},
				{name: "endpoint leaves: its chain is retired", changes: []PortInput{{Info: web, Endpoints: ready("10.244.0.3:80")}}, want: []string{
					"flush endpoint:default/web/tcp/p__10.244.0.2/80",
					"flush service:default/web/tcp/p",
					"fill service:default/web/tcp/p",
				}, retired: []string{"endpoint:default/web/tcp/p__10.244.0.2/80"}},
				{name: "no endpoints: element moves to the reject map", changes: []PortInput{{Info: web}}, want: []string{
					"del-element service-ips 10.96.0.10:80",
					"flush endpoint:default/web/tcp/p__10.244.0.3/80",
					"flush service:default/web/tcp/p",
					"add-element no-endpoint-services 10.96.0.10:80 -> reject-chain",
				}, retired: []string{"endpoint:default/web/tcp/p__10.244.0.3/80", "service:default/web/tcp/p"}},
				{name: "deleted", changes: []PortInput{{Info: nil}}, want: []string{
					"del-element no-endpoint-services 10.96.0.10:80",
				}},
			},
		},
		{
			name: "a change to one service leaves the other alone",
			steps: []step{
				{name: "both", changes: []PortInput{{Info: web, Endpoints: ready("10.244.0.2:80")}, {Info: other, Endpoints: ready("10.244.0.5:80")}}},
				{name: "other changes", changes: []PortInput{{Info: other, Endpoints: ready("10.244.0.6:80")}}, want: []string{
					"flush endpoint:default/other/tcp/p__10.244.0.5/80",
					"flush service:default/other/tcp/p",
					"add endpoint:default/other/tcp/p__10.244.0.6/80",
					"fill endpoint:default/other/tcp/p__10.244.0.6/80",
					"fill service:default/other/tcp/p",
				}, retired: []string{"endpoint:default/other/tcp/p__10.244.0.5/80"}},
			},
		},
		{
			name: "node port added and removed",
			steps: []step{
				{name: "plain", changes: []PortInput{{Info: web, Endpoints: ready("10.244.0.2:80")}}},
				{name: "node port", changes: []PortInput{{Info: webNP, Endpoints: ready("10.244.0.2:80")}}, want: []string{
					"add external:default/web/tcp/p",
					"fill external:default/web/tcp/p",
					"add-element service-nodeports tcp.30080 -> external:default/web/tcp/p",
				}},
				{name: "back", changes: []PortInput{{Info: web, Endpoints: ready("10.244.0.2:80")}}, want: []string{
					"del-element service-nodeports tcp.30080",
					"flush external:default/web/tcp/p",
				}, retired: []string{"external:default/web/tcp/p"}},
			},
		},
		{
			name: "affinity on, timeout change, off",
			steps: []step{
				{name: "plain", changes: []PortInput{{Info: web, Endpoints: ready("10.244.0.2:80")}}},
				{name: "sticky", changes: []PortInput{{Info: sticky(time.Minute), Endpoints: ready("10.244.0.2:80")}}, want: []string{
					"flush endpoint:default/web/tcp/p__10.244.0.2/80",
					"flush service:default/web/tcp/p",
					"add-set affinity:default/web/tcp/p__10.244.0.2/80 1m0s",
					"fill endpoint:default/web/tcp/p__10.244.0.2/80",
					"fill service:default/web/tcp/p",
				}},
				// The rules do not change, but they refer to a set that is
				// deleted and made again, so they are refilled.
				{name: "new timeout replaces the set", changes: []PortInput{{Info: sticky(2 * time.Minute), Endpoints: ready("10.244.0.2:80")}}, want: []string{
					"flush endpoint:default/web/tcp/p__10.244.0.2/80",
					"flush service:default/web/tcp/p",
					"del-set affinity:default/web/tcp/p__10.244.0.2/80",
					"add-set affinity:default/web/tcp/p__10.244.0.2/80 2m0s",
					"fill endpoint:default/web/tcp/p__10.244.0.2/80",
					"fill service:default/web/tcp/p",
				}},
				{name: "off", changes: []PortInput{{Info: web, Endpoints: ready("10.244.0.2:80")}}, want: []string{
					"flush endpoint:default/web/tcp/p__10.244.0.2/80",
					"flush service:default/web/tcp/p",
					"del-set affinity:default/web/tcp/p__10.244.0.2/80",
					"fill endpoint:default/web/tcp/p__10.244.0.2/80",
					"fill service:default/web/tcp/p",
				}},
			},
		},
		{
			name: "UDP endpoints that leave are reported for conntrack",
			steps: []step{
				{name: "two", changes: []PortInput{{Info: dns, Endpoints: ready("10.244.0.2:53", "10.244.0.3:53")}}},
				{name: "one leaves", changes: []PortInput{{Info: dns, Endpoints: ready("10.244.0.3:53")}},
					want: []string{
						"flush endpoint:default/dns/udp/p__10.244.0.2/53",
						"flush service:default/dns/udp/p",
						"fill service:default/dns/udp/p",
					},
					retired: []string{"endpoint:default/dns/udp/p__10.244.0.2/53"}, stale: []string{"10.244.0.2:53"}},
				{name: "service goes", changes: []PortInput{{Info: nil}},
					want: []string{
						"del-element service-ips 10.96.0.53:53",
						"flush endpoint:default/dns/udp/p__10.244.0.3/53",
						"flush service:default/dns/udp/p",
					},
					retired: []string{"endpoint:default/dns/udp/p__10.244.0.3/53", "service:default/dns/udp/p"}, stale: []string{"10.244.0.3:53"}},
			},
		},
		{
			name: "a contested external IP passes to the other service when the owner lets go",
			steps: []step{
				{name: "both claim", changes: []PortInput{
					{Info: svcPort("a", tcp, "10.96.0.10", 80, withExternal("203.0.113.5")), Endpoints: ready("10.244.0.2:80")},
					{Info: svcPort("b", tcp, "10.96.0.11", 80, withExternal("203.0.113.5")), Endpoints: ready("10.244.0.3:80")},
				}},
				{name: "a drops it", changes: []PortInput{
					{Info: svcPort("a", tcp, "10.96.0.10", 80), Endpoints: ready("10.244.0.2:80")},
				}, want: []string{
					"del-element service-ips 203.0.113.5:80",
					"flush external:default/a/tcp/p",
					"add-element service-ips 203.0.113.5:80 -> external:default/b/tcp/p",
				}, retired: []string{"external:default/a/tcp/p"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := NewPlanner(defOpts)
			for i, st := range tt.steps {
				changes := map[proxy.ServicePortName]PortInput{}
				for _, in := range st.changes {
					name := in.Info
					if name == nil {
						// A deletion: name the only service of the previous step.
						for spn := range pl.ports {
							changes[spn] = in
						}
						continue
					}
					changes[name.Name] = in
				}
				ch := pl.Update(changes)
				if i == 0 && st.want == nil {
					continue // setup step
				}
				if got := txSummary(ch.Tx); !slices.Equal(got, st.want) {
					t.Errorf("step %q: transaction\n got %q\nwant %q", st.name, got, st.want)
				}
				if got := txSummary(Tx{DelChains: ch.Retired}); !slices.Equal(got, prefixAll("del ", st.retired)) {
					t.Errorf("step %q: retired %q, want %q", st.name, got, st.retired)
				}
				var stale []string
				for _, ep := range ch.StaleUDP {
					stale = append(stale, ep.String())
				}
				if !slices.Equal(stale, st.stale) {
					t.Errorf("step %q: stale UDP %q, want %q", st.name, stale, st.stale)
				}
				if st.want == nil && !ch.Tx.Empty() {
					t.Errorf("step %q: want an empty transaction, got %q", st.name, txSummary(ch.Tx))
				}
			}
		})
	}
}

func prefixAll(p string, in []string) []string {
	var out []string
	for _, s := range in {
		out = append(out, p+s)
	}
	return out
}

// TestPlannerMatchesFreshPlan checks that any sequence of updates ends in
// the same ruleset as planning the final state from scratch.
func TestPlannerMatchesFreshPlan(t *testing.T) {
	tcp := v1.ProtocolTCP
	states := [][]PortInput{
		{{Info: svcPort("a", tcp, "10.96.0.10", 80, withNodePort(30001)), Endpoints: ready("10.244.0.2:80", "10.244.0.3:80")}},
		{{Info: svcPort("a", tcp, "10.96.0.10", 80, withSticky(time.Minute)), Endpoints: ready("10.244.0.3:80")},
			{Info: svcPort("b", tcp, "10.96.0.11", 80, withExternal("203.0.113.5")), Endpoints: nil}},
		{{Info: svcPort("b", tcp, "10.96.0.11", 80, withExternal("203.0.113.5")), Endpoints: ready("10.244.0.9:80")},
			{Info: svcPort("c", tcp, "10.96.0.12", 80, withExternal("203.0.113.5")), Endpoints: ready("10.244.0.8:80")}},
	}
	pl := NewPlanner(defOpts)
	var prev []PortInput
	for i, state := range states {
		changes := map[proxy.ServicePortName]PortInput{}
		for _, in := range prev {
			changes[in.Info.Name] = PortInput{} // removed unless present again
		}
		for _, in := range state {
			changes[in.Info.Name] = in
		}
		pl.Update(changes)
		got := pl.Ruleset()
		want := planned(defOpts, state...)
		if got.String() != want.String() {
			t.Fatalf("state %d: incremental ruleset differs from a fresh plan:\n%s\nwant\n%s", i, got.String(), want.String())
		}
		prev = state
	}
}

func TestPlannerState(t *testing.T) {
	pl := NewPlanner(defOpts)
	web := svcPort("web", v1.ProtocolTCP, "10.96.0.10", 80, withNodePort(30080))
	pl.Update(map[proxy.ServicePortName]PortInput{web.Name: {Info: web, Endpoints: ready("10.244.0.2:80")}})
	st, ok := pl.State(web.Name)
	if !ok || st.Rejecting || !slices.Equal(st.Destinations, []string{"10.96.0.10:80/TCP", "nodeport:30080/TCP"}) ||
		len(st.Endpoints) != 1 || st.Endpoints[0] != mustAddrPort("10.244.0.2:80") {
		t.Fatalf("state %+v %v", st, ok)
	}
	pl.Update(map[proxy.ServicePortName]PortInput{web.Name: {Info: web}})
	if st, _ := pl.State(web.Name); !st.Rejecting || len(st.Endpoints) != 0 {
		t.Fatalf("without endpoints: %+v", st)
	}
	pl.Update(map[proxy.ServicePortName]PortInput{web.Name: {}})
	if _, ok := pl.State(web.Name); ok {
		t.Fatal("deleted port still has a state")
	}
}
