package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-project/berth/bench/cluster"
	"github.com/berth-project/berth/bench/load"
	"github.com/berth-project/berth/bench/proc"
	"github.com/berth-project/berth/bench/report"
)

// pods measures create → Ready against the time the same program takes to
// start listening when started directly.
func (r *runner) pods(ctx context.Context, sec *report.Section) error {
	sec.Describe("The peer is the program's own start: `berth agnhost netexec --http-port=3000` started directly by the bench (with BERTH_BIND_ADDRESS, as the agent gives it), from the exec to its first accepted TCP connection (polled every 200 µs), %d times. Then %d Pods running the same agnhost netexec are created one after another, each timed from the create call to the moment the bench's watch sees Ready=True: first with an HTTP readinessProbe (GET /readyz, periodSeconds 1), so Ready means serving, then with no probe (Ready when the container runs). Finally %d Pods are created at once (no probe). \"Beyond the process's own start\" is the create → Ready p50 minus the direct start p50.", r.sz.procStarts, r.sz.podsSeq, r.sz.podsBurst)
	base, err := r.directStarts(ctx, r.sz.procStarts)
	if err != nil {
		return fmt.Errorf("direct start of agnhost: %w", err)
	}
	s, err := r.startServer(ctx, "pods")
	if err != nil {
		return err
	}
	pw := cluster.WatchPods(ctx, s.Client)
	pods := s.Client.CoreV1().Pods(cluster.Namespace)
	type phase struct {
		total, sched, run, ready []time.Duration
	}
	sequential := func(prefix string, probe cluster.ProbeKind, n int) (phase, error) {
		var ph phase
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("%s-%d", prefix, i)
			t0 := time.Now()
			if _, err := pods.Create(ctx, cluster.AgnhostPod(name, map[string]string{"app": prefix}, 3000, probe), metav1.CreateOptions{}); err != nil {
				return ph, fmt.Errorf("create pod %s: %w", name, err)
			}
			wctx, cancel := context.WithTimeout(ctx, r.sz.readyTimeout)
			at, err := pw.WaitReady(wctx, name)
			cancel()
			if err != nil {
				return ph, err
			}
			t := pw.Times(name)
			ph.total = append(ph.total, at.Sub(t0))
			ph.sched = append(ph.sched, t.Scheduled.Sub(t0))
			ph.run = append(ph.run, t.Running.Sub(t0))
			ph.ready = append(ph.ready, at.Sub(t.Running))
		}
		return ph, nil
	}
	probed, err := sequential("probed", cluster.HTTPProbe, r.sz.podsSeq)
	if err != nil {
		return err
	}
	if err := cluster.DeleteAllPods(ctx, s.Client); err != nil {
		return err
	}
	plain, err := sequential("plain", cluster.NoProbe, r.sz.podsSeq)
	if err != nil {
		return err
	}
	if err := cluster.DeleteAllPods(ctx, s.Client); err != nil {
		return err
	}
	// Burst: all at once.
	t0 := time.Now()
	var names []string
	for i := 0; i < r.sz.podsBurst; i++ {
		name := fmt.Sprintf("burst-%d", i)
		names = append(names, name)
		if _, err := pods.Create(ctx, cluster.AgnhostPod(name, map[string]string{"app": "burst"}, 3000, cluster.NoProbe), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create pod %s: %w", name, err)
		}
	}
	created := time.Since(t0)
	wctx, cancel := context.WithTimeout(ctx, 3*r.sz.readyTimeout)
	err = pw.WaitAllReady(wctx, names...)
	cancel()
	if err != nil {
		return err
	}
	var burst []time.Duration
	var last time.Time
	for _, n := range names {
		at := pw.Times(n).Ready
		burst = append(burst, at.Sub(t0))
		if at.After(last) {
			last = at
		}
	}
	burstMem, _ := proc.ReadMem(s.Pid())

	bs := load.Summarize(base)
	ps, ns, bu := load.Summarize(probed.total), load.Summarize(plain.total), load.Summarize(burst)
	sec.Add("process's own start (exec → listening), p50", report.Millis(bs.P50)).Note = fmt.Sprintf("p99 %s, n=%d", ms(bs.P99), bs.N)
	sec.Add("create → Ready, readinessProbe, p50", report.Millis(ps.P50)).WithPeer("own start", report.Millis(bs.P50))
	sec.Add("create → Ready, readinessProbe, p99", report.Millis(ps.P99)).WithPeer("own start", report.Millis(bs.P99))
	sec.Add("create → Ready, no probe, p50", report.Millis(ns.P50)).WithPeer("own start", report.Millis(bs.P50))
	sec.Add("create → Ready, no probe, p99", report.Millis(ns.P99)).WithPeer("own start", report.Millis(bs.P99))
	beyond := ps.P50 - bs.P50
	row := sec.Add("create → Ready beyond the process's own start (p50)", report.Millis(beyond))
	row.Check("< 50 ms", beyond < 50*time.Millisecond, ms(beyond-50*time.Millisecond), explain("pods-ready"))
	row.Note = "with the readinessProbe (Ready means serving)"
	sec.Add("create → Ready beyond the process's own start (p50), no probe", report.Millis(ns.P50-bs.P50)).Note = "Ready when the process runs, maybe before it listens"
	sec.Add(fmt.Sprintf("burst of %d: all Ready", r.sz.podsBurst), report.Millis(last.Sub(t0))).Note = fmt.Sprintf("creates took %s; per pod p50 %s, p99 %s", ms(created), ms(bu.P50), ms(bu.P99))
	sec.Notef("Where the time goes, p50 of each step (readinessProbe run): create → scheduled %s, → Running %s, Running → Ready %s. Without probe: → scheduled %s, → Running %s, Running → Ready %s.",
		ms(load.Percentile(probed.sched, 0.5)), ms(load.Percentile(probed.run, 0.5)), ms(load.Percentile(probed.ready, 0.5)),
		ms(load.Percentile(plain.sched, 0.5)), ms(load.Percentile(plain.run, 0.5)), ms(load.Percentile(plain.ready, 0.5)))
	sec.Notef("berth server with %d pods running: %s.", r.sz.podsBurst, burstMem)
	img := r.date + "-pods-ready.png"
	if err := report.LatencyChart(filepath.Join(r.out, img), []report.Panel{{Title: "create → Ready", Series: []report.Series{
		{Name: "own start (direct exec)", Samples: base}, {Name: "pod, readinessProbe", Samples: probed.total}, {Name: "pod, no probe", Samples: plain.total}, {Name: "pod, burst", Samples: burst},
	}}}); err == nil {
		sec.Images = append(sec.Images, report.Image{Path: img, Alt: "create to Ready distributions"})
	}
	return nil
}

// directStarts starts agnhost netexec n times directly and times each from
// the exec to its first accepted connection.
func (r *runner) directStarts(ctx context.Context, n int) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < n; i++ {
		ip := "127.243.201.1"
		port, err := cluster.FreePort()
		if err != nil {
			return nil, err
		}
		addr := ip + ":" + strconv.Itoa(port)
		cmd := exec.Command(r.env.Berth, "agnhost", "netexec", "--http-port="+strconv.Itoa(port))
		cmd.Env = append(os.Environ(), "BERTH_BIND_ADDRESS="+ip, "HOSTNAME=direct")
		p, err := r.env.Procs.Start("agnhost-direct", cmd)
		if err != nil {
			return nil, err
		}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		at, err := proc.WaitListening(wctx, addr, 200*time.Microsecond)
		cancel()
		p.Stop(syscall.SIGTERM, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("%w\n%s", err, p.Tail(5))
		}
		out = append(out, at.Sub(p.Started))
	}
	return out, nil
}
