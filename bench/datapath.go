package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-project/berth/bench/load"
	"github.com/berth-project/berth/bench/proc"
	"github.com/berth-project/berth/bench/report"
)

// dpTarget is one way to reach the backend.
type dpTarget struct {
	name       string
	http, bulk string
	// pid is the process doing the forwarding (0 for direct), whose CPU
	// time is charged per request.
	pid int

	rates        []float64
	ka, nc       []time.Duration
	kaErr, ncErr int
	bulkErr      error
	firstErr     error
	cpuKA, cpuNC time.Duration
	cpuBulk      time.Duration
	bulkBytes    int64
}

const (
	tDirect  = "direct to the pod IP"
	tService = "Service ClusterIP"
	tHAProxy = "HAProxy (TCP mode)"
	tMini    = "minimal Go proxy (io.Copy, splice)"
	tForward = "berth forward svc/NAME"
	tKubectl = "kubectl port-forward svc/NAME"
)

// dataPath measures throughput and latency of the same backend through
// every path, interleaved in rounds so that the machine's noise falls on
// all of them alike.
func (r *runner) dataPath(ctx context.Context, sec *report.Section) error {
	s, err := r.startServer(ctx, "datapath")
	if err != nil {
		return err
	}
	b, err := r.startBackend(ctx, s, "datapath")
	if err != nil {
		return err
	}
	sec.Describe("Backend: %s. HAProxy (Debian's package) runs in TCP mode with its default tuning (no `option splice-auto`, so it copies through user space). Besides HAProxy, a second peer is the smallest Go proxy (`bench miniproxy`: accept, dial, `io.Copy` both ways, which splices, as berth's proxy does), to tell the cost of Go's copy path from that of berth's own code. Client: the bench's own load generator, one connection at a time (so latency is not queueing). Bulk: the client asks for %d MiB and reads them (a single TCP stream, time from the request to the last byte; a transfer is cut at %s and its rate taken over what arrived). Latency: `GET /echo?msg=x` with a minimal HTTP/1.1 client, timed from the request write to the last response byte on a kept-alive connection (%d requests per round), and from the dial to the last byte with a new connection per request (%d per round). %d round(s); each round runs every target in turn, in a rotating order. Then, as root, a child bench process in a network namespace of its own (unshare --net, so the DNAT rules never touch the host's firewall) starts a berth server with --proxy-mode=nftables, the same backend pod and the same client, and measures direct and Service there the same way (the \"nftables run\" rows).",
		b.describe(), r.sz.bulkBytes>>20, r.sz.bulkBudget, r.sz.kaN, r.sz.ncN, r.sz.rounds)

	targets := []*dpTarget{
		{name: tDirect, http: b.DirectHTTP(), bulk: b.DirectBulk()},
		{name: tService, http: b.ServiceHTTP(), bulk: b.ServiceBulk(), pid: s.Pid()},
	}
	skipped := map[string]string{}
	if bin, why := r.haproxy(ctx); bin == "" {
		skipped[tHAProxy] = why
	} else {
		h, err1 := freeLocal()
		k, err2 := freeLocal()
		if err1 != nil || err2 != nil {
			return fmt.Errorf("ports for haproxy: %v %v", err1, err2)
		}
		p, err := r.startHAProxy(ctx, bin, map[string]string{h: b.DirectHTTP(), k: b.DirectBulk()})
		if err != nil {
			return err
		}
		targets = append(targets, &dpTarget{name: tHAProxy, http: h, bulk: k, pid: p.Pid()})
	}
	{
		h, err1 := freeLocal()
		k, err2 := freeLocal()
		if err1 != nil || err2 != nil {
			return fmt.Errorf("ports for the minimal proxy: %v %v", err1, err2)
		}
		p, err := r.env.Procs.Start("miniproxy", newExec(r.bench, "miniproxy", "-route", h+"="+b.DirectHTTP()+","+k+"="+b.DirectBulk()))
		if err != nil {
			return err
		}
		for _, a := range []string{h, k} {
			if err := waitListening(ctx, a, 10*time.Second); err != nil {
				return fmt.Errorf("minimal proxy: %w\n%s", err, p.Tail(5))
			}
		}
		targets = append(targets, &dpTarget{name: tMini, http: h, bulk: k, pid: p.Pid()})
	}
	if !r.agentOK {
		why := "needs the node agent (port-forward reaches pods through the agent)"
		skipped[tForward], skipped[tKubectl] = why, why
	} else {
		t, err := r.startForwarder(ctx, tForward, func(h, k string) (*proc.Proc, error) {
			return s.StartForward("berth-forward", "svc/"+b.Name, port(h)+":"+fmt.Sprint(serviceHTTPPort), port(k)+":"+fmt.Sprint(serviceBulkPort))
		}, b.Pod)
		if err != nil {
			return err
		}
		targets = append(targets, t)
		t, err = r.startForwarder(ctx, tKubectl, func(h, k string) (*proc.Proc, error) {
			return s.StartKubectl("kubectl-port-forward", "port-forward", "svc/"+b.Name, port(h)+":"+fmt.Sprint(serviceHTTPPort), port(k)+":"+fmt.Sprint(serviceBulkPort))
		}, b.Pod)
		if err != nil {
			return err
		}
		targets = append(targets, t)
	}

	if err := r.measure(ctx, targets); err != nil {
		return err
	}
	nft := r.nftablesRun(ctx)

	byName := map[string]*dpTarget{}
	for _, t := range targets {
		byName[t.name] = t
	}
	direct, svc := byName[tDirect], byName[tService]
	if len(direct.rates) == 0 || len(svc.rates) == 0 || len(direct.ka) == 0 || len(svc.ka) == 0 {
		return fmt.Errorf("no measurements: direct bulk %v, service bulk %v, errors %v / %v", direct.bulkErr, svc.bulkErr, direct.firstErr, svc.firstErr)
	}
	dRate := median(direct.rates)
	for _, name := range []string{tDirect, tService, tHAProxy, tMini, tForward, tKubectl} {
		t := byName[name]
		if t == nil {
			sec.AddText("bulk throughput, "+name, "").Skip("", skipped[name])
			continue
		}
		if len(t.rates) == 0 {
			sec.AddText("bulk throughput, "+name, "failed: "+errString(t.bulkErr))
			continue
		}
		row := sec.Add("bulk throughput, "+name, report.MBps(median(t.rates)))
		if name != tDirect {
			row.WithPeer("direct", report.MBps(dRate))
		}
		row.Note = fmt.Sprintf("rounds: %s MB/s", floats(scale(t.rates, 1e-6), 0))
	}
	sRate := median(svc.rates)
	row := sec.Add("Service throughput ÷ direct", report.Value{V: 100 * sRate / dRate, Unit: report.UnitPct})
	row.Check("≥ 90%", sRate >= 0.9*dRate, fmt.Sprintf("%.1f points", 90-100*sRate/dRate), explain("throughput-direct"))
	if h := byName[tHAProxy]; h != nil && len(h.rates) > 0 {
		hRate := median(h.rates)
		row := sec.Add("Service throughput ÷ HAProxy", report.Value{V: 100 * sRate / hRate, Unit: report.UnitPct})
		row.Check("≥ 100%", sRate >= hRate, fmt.Sprintf("%.1f points", 100-100*sRate/hRate), explain("throughput-haproxy"))
	} else {
		sec.AddText("Service throughput ÷ HAProxy", "").Skip("≥ 100%", skipped[tHAProxy])
	}

	dKA, dNC := load.Summarize(direct.ka), load.Summarize(direct.nc)
	for _, mode := range []struct {
		label string
		get   func(*dpTarget) []time.Duration
		errs  func(*dpTarget) int
		base  load.Summary
	}{
		{"keep-alive", func(t *dpTarget) []time.Duration { return t.ka }, func(t *dpTarget) int { return t.kaErr }, dKA},
		{"new connection per request", func(t *dpTarget) []time.Duration { return t.nc }, func(t *dpTarget) int { return t.ncErr }, dNC},
	} {
		for _, name := range []string{tDirect, tService, tHAProxy, tMini, tForward, tKubectl} {
			t := byName[name]
			fig := fmt.Sprintf("latency p50 / p99 / p99.9, %s, %s", mode.label, name)
			if t == nil {
				sec.AddText(fig, "").Skip("", skipped[name])
				continue
			}
			sm := load.Summarize(mode.get(t))
			row := sec.Add(fig, report.Micros(sm.P50))
			row.Text = fmt.Sprintf("%s / %s / %s", us(sm.P50), us(sm.P99), us(sm.P999))
			if name != tDirect {
				row.WithPeer("direct", report.Micros(mode.base.P50))
			}
			row.Note = fmt.Sprintf("n=%d", sm.N)
			if e := mode.errs(t); e > 0 {
				row.Note += fmt.Sprintf(", %d errors (first: %v)", e, t.firstErr)
			}
		}
		sm := load.Summarize(mode.get(svc))
		added := sm.P50 - mode.base.P50
		row := sec.Add("added p50 latency, Service vs direct, "+mode.label, report.Micros(added))
		key := "latency-keepalive"
		if mode.label != "keep-alive" {
			key = "latency-newconn"
		}
		row.Check("≤ 30 µs", added <= 30*time.Microsecond, us(added-30*time.Microsecond), explain(key))
		for _, peer := range []string{tHAProxy, tMini} {
			if h := byName[peer]; h != nil {
				hs := load.Summarize(mode.get(h))
				sec.Add("added p50 latency, "+peer+" vs direct, "+mode.label, report.Micros(hs.P50-mode.base.P50)).Note = "for comparison"
			}
		}
	}
	reportNFTables(sec, nft)
	for _, t := range targets {
		if t.pid == 0 {
			continue
		}
		var parts []string
		if n := len(t.ka); n > 0 && t.cpuKA > 0 {
			parts = append(parts, fmt.Sprintf("%.1f µs per keep-alive request", float64(t.cpuKA)/float64(time.Microsecond)/float64(n)))
		}
		if n := len(t.nc); n > 0 && t.cpuNC > 0 {
			parts = append(parts, fmt.Sprintf("%.1f µs per new-connection request", float64(t.cpuNC)/float64(time.Microsecond)/float64(n)))
		}
		if t.bulkBytes > 0 {
			parts = append(parts, fmt.Sprintf("%.2f CPU-seconds per GB streamed", t.cpuBulk.Seconds()/(float64(t.bulkBytes)/1e9)))
		}
		if len(parts) > 0 {
			sec.Notef("CPU time of the forwarding process (%s; user+system, 10 ms ticks): %s.", t.name, strings.Join(parts, ", "))
		}
	}
	var ka, nc []report.Series
	chart := targets
	if nft.direct != nil {
		chart = append(chart, nft.direct, nft.svc)
	}
	for _, t := range chart {
		ka = append(ka, report.Series{Name: t.name, Samples: t.ka})
		nc = append(nc, report.Series{Name: t.name, Samples: t.nc})
	}
	img := r.date + "-datapath-latency.png"
	if err := report.LatencyChart(filepath.Join(r.out, img), []report.Panel{
		{Title: "GET /echo on a kept-alive connection", Series: ka},
		{Title: "GET /echo, new connection per request (dial included)", Series: nc},
	}); err != nil {
		sec.Notef("chart: %v", err)
	} else {
		sec.Images = append(sec.Images, report.Image{Path: img, Alt: "data path latency distributions"})
	}
	return nil
}

// measure runs every target in rounds, in a rotating order, after a
// warm-up, and records the rates, latencies and CPU time in the targets.
func (r *runner) measure(ctx context.Context, targets []*dpTarget) error {
	// Warm-up: connections, caches, the proxy's first splice pipes.
	for _, t := range targets {
		load.LatencyKeepAlive(ctx, t.http, "/echo?msg=x", 200, 2*time.Second)
		load.LatencyNewConn(ctx, t.http, "/echo?msg=x", 20, 2*time.Second)
		if _, err := load.Bulk(ctx, t.bulk, 8<<20, 2*time.Second); err != nil {
			return fmt.Errorf("warm-up bulk through %s: %w", t.name, err)
		}
	}
	for round := 0; round < r.sz.rounds; round++ {
		for i := range targets {
			t := targets[(i+round)%len(targets)]
			if ctx.Err() != nil {
				return ctx.Err()
			}
			cpu := cpuMeter(t.pid)
			res, err := load.Bulk(ctx, t.bulk, r.sz.bulkBytes, r.sz.bulkBudget)
			t.cpuBulk += cpu()
			if err != nil {
				t.bulkErr = err
			} else {
				t.rates = append(t.rates, res.BytesPerSecond())
				t.bulkBytes += res.Bytes
			}
			var prof *profiler
			if round == 0 && (t.name == tService || t.name == tMini) {
				prof = r.prof
			}
			slug := strings.Fields(t.name)[0]
			var ka, nc load.LatencyResult
			cpu = cpuMeter(t.pid)
			prof.during(ctx, "datapath-"+slug+"-keepalive", t.pid, func() {
				ka = load.LatencyKeepAlive(ctx, t.http, "/echo?msg=x", r.sz.kaN, r.sz.latBudget)
			})
			t.cpuKA += cpu()
			cpu = cpuMeter(t.pid)
			prof.during(ctx, "datapath-"+slug+"-newconn", t.pid, func() {
				nc = load.LatencyNewConn(ctx, t.http, "/echo?msg=x", r.sz.ncN, r.sz.latBudget)
			})
			t.cpuNC += cpu()
			t.ka, t.nc = append(t.ka, ka.Samples...), append(t.nc, nc.Samples...)
			t.kaErr, t.ncErr = t.kaErr+ka.Errors, t.ncErr+nc.Errors
			for _, e := range []error{ka.FirstErr, nc.FirstErr} {
				if t.firstErr == nil && e != nil {
					t.firstErr = e
				}
			}
		}
	}
	return nil
}

// startForwarder starts a port-forwarding process on two free local ports
// and waits until both answer through it.
func (r *runner) startForwarder(ctx context.Context, name string, start func(httpAddr, bulkAddr string) (*proc.Proc, error), pod string) (*dpTarget, error) {
	h, err := freeLocal()
	if err != nil {
		return nil, err
	}
	k, err := freeLocal()
	if err != nil {
		return nil, err
	}
	p, err := start(h, k)
	if err != nil {
		return nil, err
	}
	if err := waitAnswer(ctx, h, pod, 30*time.Second); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", name, err, p.Tail(10))
	}
	if err := waitListening(ctx, k, 10*time.Second); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", name, err, p.Tail(10))
	}
	return &dpTarget{name: name, http: h, bulk: k, pid: p.Pid()}, nil
}

// cpuMeter returns a function giving the CPU time pid used since the call.
func cpuMeter(pid int) func() time.Duration {
	if pid == 0 {
		return func() time.Duration { return 0 }
	}
	start, err := proc.CPUTime(pid)
	return func() time.Duration {
		if err != nil {
			return 0
		}
		now, err := proc.CPUTime(pid)
		if err != nil {
			return 0
		}
		return now - start
	}
}

func port(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	return addr[i+1:]
}

func scale(xs []float64, f float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * f
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return "no result"
	}
	return firstLine(err.Error())
}
