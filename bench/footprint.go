package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/berth-project/berth/bench/cluster"
	"github.com/berth-project/berth/bench/proc"
	"github.com/berth-project/berth/bench/report"
)

const rssTarget = 80e6

// footprint measures idle RSS with no objects and with the seed demo, and
// the warm start time, with a standalone etcd as the peer.
func (r *runner) footprint(ctx context.Context, sec *report.Section) error {
	sec.Describe("Idle RSS is the server process's VmRSS (/proc/PID/status) after %s with nothing to do: first on a fresh data dir with no objects, then after `kubectl apply -f examples/pods.yaml -f examples/service.yaml` (the seed demo) with its pods Ready. Pods are separate processes and not counted. Warm start is a second (third, ...) start of `berth server` on the same data dir, SIGTERM in between, from the exec to the first /readyz answered 200 (polled every 2 ms), median of %d. The peer is a standalone etcd: its idle RSS on a fresh data dir, and its warm start to the first answered read.", r.sz.settle, r.sz.warmStarts)
	s, err := r.startServer(ctx, "footprint")
	if err != nil {
		return err
	}
	e, err := r.env.NewEtcd()
	if err != nil {
		return err
	}
	defer e.Close()
	if _, err := e.Start(ctx); err != nil {
		return err
	}
	sleep(ctx, r.sz.settle)
	idle, err := proc.ReadMem(s.Pid())
	if err != nil {
		return err
	}
	etcdIdle, err := proc.ReadMem(e.Proc.Pid())
	if err != nil {
		return err
	}
	m, _ := s.Metrics(ctx)
	missWhy := func(m proc.Mem) string {
		return fmt.Sprintf("%.0f MB of it is file-backed (pages of the %.0f MB binary that were touched), %.0f MB anonymous; %s", float64(m.File)/1e6, fileSizeMB(r.env.Berth), float64(m.Anon)/1e6, explain("footprint-rss"))
	}
	row := sec.Add("idle RSS, no objects", report.MB(float64(idle.RSS))).WithPeer("etcd alone", report.MB(float64(etcdIdle.RSS)))
	row.Check("< 80 MB", float64(idle.RSS) < rssTarget, fmt.Sprintf("%.1f MB", (float64(idle.RSS)-rssTarget)/1e6), missWhy(idle))
	sec.Notef("No objects: %s. Go runtime: heap in use %.1f MB, goroutines %.0f.", idle, m["go_memstats_heap_inuse_bytes"]/1e6, m["go_goroutines"])

	if _, err := s.Kubectl(ctx, "apply", "-f", filepath.Join(r.root, "examples", "pods.yaml"), "-f", filepath.Join(r.root, "examples", "service.yaml")); err != nil {
		return err
	}
	demo := "the seed demo"
	if r.agentOK {
		pw := cluster.WatchPods(ctx, s.Client)
		wctx, cancel := context.WithTimeout(ctx, r.sz.readyTimeout)
		err := pw.WaitAllReady(wctx, "foo", "bar")
		cancel()
		if err != nil {
			return err
		}
	} else {
		demo = "the seed demo, its pods Pending (no node agent)"
	}
	sleep(ctx, r.sz.settle)
	seed, err := proc.ReadMem(s.Pid())
	if err != nil {
		return err
	}
	m, _ = s.Metrics(ctx)
	row = sec.Add("idle RSS, seed demo", report.MB(float64(seed.RSS))).WithPeer("etcd alone", report.MB(float64(etcdIdle.RSS)))
	row.Check("< 80 MB", float64(seed.RSS) < rssTarget, fmt.Sprintf("%.1f MB", (float64(seed.RSS)-rssTarget)/1e6), missWhy(seed))
	sec.Notef("With %s: %s. Go runtime: heap in use %.1f MB, goroutines %.0f.", demo, seed, m["go_memstats_heap_inuse_bytes"]/1e6, m["go_goroutines"])

	var starts, etcdStarts []float64
	for i := 0; i < r.sz.warmStarts; i++ {
		if !s.Stop() {
			sec.Notef("Warm start %d: the server did not stop within 30 s of SIGTERM.", i+1)
		}
		t, err := s.Start(ctx)
		if err != nil {
			return fmt.Errorf("warm start %d: %w", i+1, err)
		}
		starts = append(starts, t.Ready.Seconds())
		e.Stop()
		et, err := e.Start(ctx)
		if err != nil {
			return fmt.Errorf("etcd warm start %d: %w", i+1, err)
		}
		etcdStarts = append(etcdStarts, et.Seconds())
	}
	med := time.Duration(median(starts) * float64(time.Second))
	row = sec.Add("warm start to /readyz (median)", report.Millis(med)).WithPeer("etcd alone", report.Millis(time.Duration(median(etcdStarts)*float64(time.Second))))
	row.Check("< 1 s", med < time.Second, (med - time.Second).Round(time.Millisecond).String(), "see the start-up breakdown in the notes")
	sec.Notef("Warm starts (s): %s; etcd alone: %s.", floats(starts, 3), floats(etcdStarts, 3))
	return nil
}
