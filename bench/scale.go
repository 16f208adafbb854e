package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/berth-project/berth/bench/backend"
	"github.com/berth-project/berth/bench/cluster"
	"github.com/berth-project/berth/bench/load"
	"github.com/berth-project/berth/bench/proc"
	"github.com/berth-project/berth/bench/report"
)

const scalePort = 9000

// idSets are the two sets of in-process identity servers every scale
// Service's endpoints point at.
type idSets struct {
	a, b []string
}

func startIDServers(ctx context.Context, n int) (idSets, error) {
	var s idSets
	for set, prefix := range []string{"a", "b"} {
		for i := 1; i <= n; i++ {
			ip := fmt.Sprintf("127.243.%d.%d", set, i)
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, scalePort))
			if err != nil {
				return s, fmt.Errorf("identity server on %s: %w", ip, err)
			}
			go backend.ServeID(ctx, l, fmt.Sprintf("%s%d", prefix, i))
			if set == 0 {
				s.a = append(s.a, ip)
			} else {
				s.b = append(s.b, ip)
			}
		}
	}
	return s, nil
}

// readID connects to addr and reads the identity line; refused says
// whether the connection was refused.
func readID(addr string, timeout time.Duration) (id string, refused bool, err error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", load.Refused(err), err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), false, err
}

// sweep dials every address until each has accepted once, and returns the
// time the last one did.
func sweep(ctx context.Context, addrs []string, workers int) (time.Time, error) {
	pending := append([]string(nil), addrs...)
	var last time.Time
	var mu sync.Mutex
	for len(pending) > 0 {
		if ctx.Err() != nil {
			return last, fmt.Errorf("%d of %d service addresses never accepted: %w", len(pending), len(addrs), ctx.Err())
		}
		var next []string
		var idx atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(idx.Add(1) - 1)
					if i >= len(pending) {
						return
					}
					c, err := net.DialTimeout("tcp", pending[i], 200*time.Millisecond)
					mu.Lock()
					if err == nil {
						c.Close()
						if now := time.Now(); now.After(last) {
							last = now
						}
					} else {
						next = append(next, pending[i])
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		pending = next
		if len(pending) > 0 {
			sleep(ctx, 20*time.Millisecond)
		}
	}
	return last, nil
}

// scale measures the server and proxy at 10 and at N selector-less
// Services whose EndpointSlices the bench writes.
func (r *runner) scale(ctx context.Context, sec *report.Section) error {
	n, eps, changes := r.sz.scaleServices, r.sz.scaleEndpoints, r.sz.scaleChanges
	small := min(10, n)
	label := fmt.Sprintf("%d Services", n)
	sec.Describe("Pods are simulated: %d selector-less ClusterIP Services (one TCP port), each with one EndpointSlice the bench writes with %d ready endpoints; the endpoints are %d small identity servers inside the bench (127.243.0.1-%d and 127.243.1.1-%d, port %d) that write their name and close. An endpoint change replaces every endpoint of one Service's slice with the other set; it is routable when a connection to the ClusterIP reaches the new set (probed every millisecond), timed from the update call. %d changes at %d Services, then %d at %d. Cold start: SIGTERM, start on the same data dir, time from the exec to /readyz and until every ClusterIP accepts (swept by dialing all of them). RSS is the whole `berth server` process; the proxy runs inside it, so its share is estimated by the same data dir started with `--disable proxy`.",
		n, eps, 2*eps, eps, eps, scalePort, changes, small, changes, n)
	ids, err := startIDServers(ctx, eps)
	if err != nil {
		return err
	}
	s, err := r.startServer(ctx, "scale")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	cips := map[int]string{}
	create := func(ctx context.Context, from, to int) error {
		var idx atomic.Int64
		idx.Store(int64(from))
		var wg sync.WaitGroup
		var firstErr error
		var once sync.Once
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(idx.Add(1) - 1)
					if i >= to || ctx.Err() != nil {
						return
					}
					name := fmt.Sprintf("scale-%d", i)
					svc, err := cluster.CreateService(ctx, s.Client, name, nil, corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(scalePort), Protocol: corev1.ProtocolTCP})
					if err == nil {
						err = cluster.PutEndpointSlice(ctx, s.Client, cluster.EndpointSlice(name, name+"-bench", ids.a, scaleSlicePort()))
					}
					if err != nil {
						once.Do(func() { firstErr = err })
						return
					}
					mu.Lock()
					cips[i] = svc.Spec.ClusterIP + ":80"
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return firstErr
	}
	addrs := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := make([]string, 0, len(cips))
		for _, a := range cips {
			out = append(out, a)
		}
		return out
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := create(sctx, 0, small); err != nil {
		return err
	}
	if _, err := sweep(sctx, addrs(), 4); err != nil {
		return err
	}
	target := cips[0]
	// change makes k endpoint changes and returns, per change, the time
	// to routable and the time the update call itself took.
	change := func(ctx context.Context, k int) (out, calls []time.Duration, err error) {
		useB := true
		for i := 0; i < k; i++ {
			set, prefix := ids.a, "a"
			if useB {
				set, prefix = ids.b, "b"
			}
			t0 := time.Now()
			if err := cluster.PutEndpointSlice(ctx, s.Client, cluster.EndpointSlice("scale-0", "scale-0-bench", set, scaleSlicePort())); err != nil {
				return nil, nil, err
			}
			calls = append(calls, time.Since(t0))
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			at, err := pollUntil(cctx, time.Millisecond, func() bool {
				id, _, err := readID(target, 500*time.Millisecond)
				return err == nil && strings.HasPrefix(id, prefix)
			})
			cancel()
			if err != nil {
				return nil, nil, fmt.Errorf("endpoint change %d never became routable: %w", i, err)
			}
			out = append(out, at.Sub(t0))
			useB = !useB
			sleep(ctx, 50*time.Millisecond)
		}
		return out, calls, nil
	}
	smallChanges, smallCalls, err := change(ctx, changes)
	if err != nil {
		return err
	}
	smallMem, _ := proc.ReadMem(s.Pid())

	t0 := time.Now()
	cctx, cancel2 := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel2()
	if err := create(cctx, small, n); err != nil {
		return fmt.Errorf("create %d services: %w", n, err)
	}
	created := time.Since(t0)
	allOpen, err := sweep(cctx, addrs(), 8)
	if err != nil {
		return err
	}
	warmConverge := allOpen.Sub(t0)
	sleep(ctx, r.sz.settle)
	bigMem, _ := proc.ReadMem(s.Pid())
	bigMetrics, _ := s.Metrics(ctx)
	var bigChanges, bigCalls []time.Duration
	r.prof.during(ctx, "scale-changes-at-10k", s.Pid(), func() { bigChanges, bigCalls, err = change(ctx, changes) })
	if err != nil {
		return err
	}
	afterMetrics, _ := s.Metrics(ctx)

	// Cold start on the same data dir.
	type stopTime struct {
		what  string
		took  time.Duration
		clean bool
	}
	var stops []stopTime
	stopTimed := func(what string) {
		t := time.Now()
		clean := s.Stop()
		stops = append(stops, stopTime{what, time.Since(t), clean})
	}
	stopTimed(label + " (proxy on)")
	st, err := s.Start(ctx)
	if err != nil {
		return fmt.Errorf("cold start with %d services: %w", n, err)
	}
	coldCtx, cancel3 := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel3()
	var coldOpen time.Time
	r.prof.during(ctx, "scale-cold-converge", s.Pid(), func() { coldOpen, err = sweep(coldCtx, addrs(), 8) })
	if err != nil {
		return err
	}
	cold := coldOpen.Sub(s.Proc.Started)
	sleep(ctx, r.sz.settle)
	coldMem, _ := proc.ReadMem(s.Pid())

	// The same data without the proxy.
	stopTimed(label + " after the cold start")
	s.Args = append(s.Args, "--disable", "proxy")
	if _, err := s.Start(ctx); err != nil {
		return fmt.Errorf("start with --disable proxy: %w", err)
	}
	sleep(ctx, r.sz.settle)
	noProxyMem, _ := proc.ReadMem(s.Pid())
	stopTimed(label + ", --disable proxy")

	ss, bs := load.Summarize(smallChanges), load.Summarize(bigChanges)
	sec.Add("endpoint change → routable, 10 Services (p50 / p99)", report.Millis(ss.P50)).Text = ms(ss.P50) + " / " + ms(ss.P99)
	row := sec.Add("endpoint change → routable, "+label+" (p50)", report.Millis(bs.P50)).WithPeer("10 Services", report.Millis(ss.P50))
	row.Check("≤ 2× the 10-Service figure", bs.P50 <= 2*ss.P50, fmt.Sprintf("%.2f×", ratio(bs.P50, 2*ss.P50)), explain("scale-change"))
	row = sec.Add("endpoint change → routable, "+label+" (p99)", report.Millis(bs.P99)).WithPeer("10 Services", report.Millis(ss.P99))
	row.Check("≤ 2× the 10-Service figure", bs.P99 <= 2*ss.P99, fmt.Sprintf("%.2f×", ratio(bs.P99, 2*ss.P99)), explain("scale-change"))
	for _, c := range []struct {
		label          string
		changes, calls []time.Duration
	}{{"10 Services", smallChanges, smallCalls}, {label, bigChanges, bigCalls}} {
		cs := load.Summarize(c.calls)
		slowest := slices.Index(c.changes, slices.Max(c.changes))
		sec.Add("EndpointSlice update call, "+c.label+" (p50 / p99)", report.Millis(cs.P50)).Text = ms(cs.P50) + " / " + ms(cs.P99)
		sec.Notef("Changes at %s, in order (ms to routable): %s; the slowest (#%d) spent %s in the update call and %s from its answer to routable.", c.label,
			floats(durationsMs(c.changes), 1), slowest+1, ms(c.calls[slowest]), ms(c.changes[slowest]-c.calls[slowest]))
	}
	sec.Add("server RSS, "+label+" (proxy in process)", report.MB(float64(bigMem.RSS))).WithPeer("10 Services", report.MB(float64(smallMem.RSS)))
	sec.Add("server RSS after a cold start, "+label, report.MB(float64(coldMem.RSS)))
	sec.Add("server RSS, "+label+", --disable proxy", report.MB(float64(noProxyMem.RSS)))
	sec.Add("proxy's share (cold start RSS minus --disable proxy RSS)", report.MB(float64(coldMem.RSS-noProxyMem.RSS))).Note = "an estimate: two processes, same data"
	sec.Add("cold start to /readyz, "+label, report.Millis(st.Ready))
	row = sec.Add("cold start to every ClusterIP accepting, "+label, report.Millis(cold))
	row.Note = "exec → last of the swept addresses accepted"
	sec.Add(fmt.Sprintf("create %d Services + EndpointSlices (16 clients)", n-small), report.Millis(created)).Note = fmt.Sprintf("%.0f objects/s", float64(2*(n-small))/created.Seconds())
	sec.Add("created → every ClusterIP accepting", report.Millis(warmConverge-created)).Note = "after the last create returned"
	for _, st := range stops {
		row := sec.Add("SIGTERM → exit, "+st.what, report.Millis(st.took))
		if !st.clean {
			row.Note = "did not exit within 30 s of SIGTERM: its process group was killed"
		}
	}
	if c := afterMetrics["berth_proxy_sync_duration_seconds_count"] - bigMetrics["berth_proxy_sync_duration_seconds_count"]; c > 0 {
		avg := (afterMetrics["berth_proxy_sync_duration_seconds_sum"] - bigMetrics["berth_proxy_sync_duration_seconds_sum"]) / c
		sec.Notef("Proxy syncs during the %d changes at %s: %.0f, mean %.2f ms each (berth_proxy_sync_duration_seconds).", changes, label, c, avg*1e3)
	}
	sec.Notef("At 10 Services: %s. At %s: %s. After the cold start: %s. With --disable proxy: %s.", smallMem, label, bigMem, coldMem, noProxyMem)
	sec.Notef("Go runtime at %s: goroutines %.0f, heap in use %.1f MB, open fds %.0f.", label, bigMetrics["go_goroutines"], bigMetrics["go_memstats_heap_inuse_bytes"]/1e6, bigMetrics["process_open_fds"])
	return nil
}

func scaleSlicePort() discoveryv1.EndpointPort { return cluster.SlicePort("", scalePort) }

func durationsMs(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
