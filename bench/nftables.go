package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/berth-project/berth/bench/load"
	"github.com/berth-project/berth/bench/report"
)

// The nftables data path is measured by a child bench process in a network
// namespace of its own (unshare --net): --proxy-mode=nftables writes its
// DNAT rules into the firewall of the namespace it runs in, and the bench
// must not touch the host's. The child runs a berth server, the backend
// pod and the client in that namespace and measures direct and Service
// side by side, as the parent does for the other paths.

const (
	tNFTDirect  = "direct to the pod IP (nftables run)"
	tNFTService = "Service ClusterIP, --proxy-mode=nftables"
)

// dpResult is one target's measurements as the child hands them over.
type dpResult struct {
	Name     string          `json:"name"`
	Rates    []float64       `json:"rates"`
	KA       []time.Duration `json:"keepAlive"`
	NC       []time.Duration `json:"newConn"`
	KAErr    int             `json:"keepAliveErrors"`
	NCErr    int             `json:"newConnErrors"`
	BulkErr  string          `json:"bulkError,omitempty"`
	FirstErr string          `json:"firstError,omitempty"`
}

func toResult(t *dpTarget) dpResult {
	d := dpResult{Name: t.name, Rates: t.rates, KA: t.ka, NC: t.nc, KAErr: t.kaErr, NCErr: t.ncErr}
	if t.bulkErr != nil {
		d.BulkErr = t.bulkErr.Error()
	}
	if t.firstErr != nil {
		d.FirstErr = t.firstErr.Error()
	}
	return d
}

func (d dpResult) target() *dpTarget {
	t := &dpTarget{name: d.Name, rates: d.Rates, ka: d.KA, nc: d.NC, kaErr: d.KAErr, ncErr: d.NCErr}
	if d.BulkErr != "" {
		t.bulkErr = errors.New(d.BulkErr)
	}
	if d.FirstErr != "" {
		t.firstErr = errors.New(d.FirstErr)
	}
	return t
}

// nftResult is what the nftables run gave: both targets, or why it was
// skipped (skip) or failed (err).
type nftResult struct {
	direct, svc *dpTarget
	skip        string
	err         error
}

// nftablesRun runs the child and returns its direct and Service targets.
func (r *runner) nftablesRun(ctx context.Context) nftResult {
	if os.Geteuid() != 0 {
		return nftResult{skip: "needs root: the run creates a network namespace for the nftables rules"}
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nftResult{skip: "needs unshare(1) from util-linux to create a network namespace"}
	}
	direct, svc, err := r.runNFTablesChild(ctx, unshare)
	return nftResult{direct: direct, svc: svc, err: err}
}

func (r *runner) runNFTablesChild(ctx context.Context, unshare string) (direct, svc *dpTarget, err error) {
	out := filepath.Join(r.env.Dir, "nftables-run.json")
	args := []string{"--net", "--", r.bench, "-nftables-child", out, "-child-agent=" + strconv.FormatBool(r.agentOK), "-berth", r.env.Berth, "-out", r.env.Dir}
	if r.smoke {
		args = append(args, "-smoke")
	}
	p, err := r.env.Procs.Start("nftables-run", exec.Command(unshare, args...))
	if err != nil {
		return nil, nil, err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Kill9()
		<-p.Done()
		return nil, nil, errors.New("the data path's time budget ran out during the nftables run")
	}
	if err := p.Err(); err != nil {
		return nil, nil, fmt.Errorf("the child run failed (%v): %s", err, lastLines(p.Tail(5), 3))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, nil, fmt.Errorf("no results: %w", err)
	}
	var res []dpResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, nil, fmt.Errorf("unreadable results: %w", err)
	}
	if len(res) != 2 {
		return nil, nil, fmt.Errorf("%d results, want 2", len(res))
	}
	return res[0].target(), res[1].target(), nil
}

// nftablesChild is the child: in its fresh network namespace it brings up
// lo, starts berth server with --proxy-mode=nftables and the backend, and
// measures direct and Service in rounds.
func (r *runner) nftablesChild(ctx context.Context, out string) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in the new network namespace: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo in the new network namespace: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	defer r.cleanup(r.rep.Section("nftables", "nftables child"))
	s, err := r.startServer(ctx, "nftables", "--proxy-mode", "nftables")
	if err != nil {
		return err
	}
	b, err := r.startBackend(ctx, s, "nftables")
	if err != nil {
		return err
	}
	targets := []*dpTarget{
		{name: tNFTDirect, http: b.DirectHTTP(), bulk: b.DirectBulk()},
		{name: tNFTService, http: b.ServiceHTTP(), bulk: b.ServiceBulk()},
	}
	if err := r.measure(ctx, targets); err != nil {
		return err
	}
	j, err := json.Marshal([]dpResult{toResult(targets[0]), toResult(targets[1])})
	if err != nil {
		return err
	}
	return os.WriteFile(out, j, 0o644)
}

// reportNFTables adds the nftables run's rows and checks the data-path
// targets against it.
func reportNFTables(sec *report.Section, res nftResult) {
	const what = "bulk throughput and latency, Service ClusterIP with --proxy-mode=nftables"
	if res.skip != "" {
		sec.AddText(what, "").Skip("", res.skip)
		return
	}
	if res.err != nil {
		sec.AddText(what, "failed: "+firstLine(res.err.Error()))
		return
	}
	direct, svc := res.direct, res.svc
	if len(direct.rates) == 0 || len(svc.rates) == 0 {
		sec.AddText(what, fmt.Sprintf("failed: direct %s, Service %s", errString(direct.bulkErr), errString(svc.bulkErr)))
		return
	}
	dRate, sRate := median(direct.rates), median(svc.rates)
	sec.Add("bulk throughput, "+tNFTDirect, report.MBps(dRate)).Note = fmt.Sprintf("rounds: %s MB/s", floats(scale(direct.rates, 1e-6), 0))
	row := sec.Add("bulk throughput, "+tNFTService, report.MBps(sRate)).WithPeer("direct (nftables run)", report.MBps(dRate))
	row.Note = fmt.Sprintf("rounds: %s MB/s", floats(scale(svc.rates, 1e-6), 0))
	row = sec.Add("Service throughput ÷ direct, --proxy-mode=nftables", report.Value{V: 100 * sRate / dRate, Unit: report.UnitPct})
	row.Check("≥ 90%", sRate >= 0.9*dRate, fmt.Sprintf("%.1f points", 90-100*sRate/dRate), explain("nft-throughput"))
	for _, mode := range []struct {
		label, key string
		get        func(*dpTarget) []time.Duration
		errs       func(*dpTarget) int
	}{
		{"keep-alive", "nft-latency-keepalive", func(t *dpTarget) []time.Duration { return t.ka }, func(t *dpTarget) int { return t.kaErr }},
		{"new connection per request", "nft-latency-newconn", func(t *dpTarget) []time.Duration { return t.nc }, func(t *dpTarget) int { return t.ncErr }},
	} {
		if len(mode.get(direct)) == 0 || len(mode.get(svc)) == 0 {
			sec.AddText("latency, "+mode.label+", nftables run", fmt.Sprintf("failed: %s / %s", errString(direct.firstErr), errString(svc.firstErr)))
			continue
		}
		base := load.Summarize(mode.get(direct))
		for _, t := range []*dpTarget{direct, svc} {
			sm := load.Summarize(mode.get(t))
			row := sec.Add(fmt.Sprintf("latency p50 / p99 / p99.9, %s, %s", mode.label, t.name), report.Micros(sm.P50))
			row.Text = fmt.Sprintf("%s / %s / %s", us(sm.P50), us(sm.P99), us(sm.P999))
			if t == svc {
				row.WithPeer("direct (nftables run)", report.Micros(base.P50))
			}
			row.Note = fmt.Sprintf("n=%d", sm.N)
			if e := mode.errs(t); e > 0 {
				row.Note += fmt.Sprintf(", %d errors (first: %v)", e, t.firstErr)
			}
		}
		added := load.Summarize(mode.get(svc)).P50 - base.P50
		row := sec.Add("added p50 latency, Service vs direct, "+mode.label+", --proxy-mode=nftables", report.Micros(added))
		row.Check("≤ 30 µs", added <= 30*time.Microsecond, us(added-30*time.Microsecond), explain(mode.key))
	}
}
