package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-project/berth/bench/cluster"
	"github.com/berth-project/berth/bench/load"
	"github.com/berth-project/berth/bench/report"
)

// probeResult is what one probe of a Service address saw.
type probeResult int

const (
	probeAnswered probeResult = iota // the wanted pod answered
	probeOther                       // something else answered
	probeRefused                     // no listener: the proxy has no endpoint
	probeFailed                      // accepted, then no answer (endpoint gone)
)

func probeHostname(ctx context.Context, addr, want string) probeResult {
	status, body, err := load.GetOnce(ctx, addr, "/hostname", 500*time.Millisecond)
	switch {
	case err == nil && status == 200 && strings.TrimSpace(string(body)) == want:
		return probeAnswered
	case err == nil:
		return probeOther
	case load.Refused(err):
		return probeRefused
	default:
		return probeFailed
	}
}

// pollUntil probes every interval until cond holds for a probe and returns
// the time of that probe.
func pollUntil(ctx context.Context, interval time.Duration, probe func() bool) (time.Time, error) {
	for {
		if probe() {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// convergence measures, through a Service with one pod at a time, how long
// a pod takes from Ready to routable and from deleted to unrouted.
func (r *runner) convergence(ctx context.Context, sec *report.Section) error {
	n := r.sz.convCycles
	sec.Describe("Service conv selects app=conv; %d times in a row the bench creates one agnhost Pod (HTTP readinessProbe, periodSeconds 1), waits until it is routable, deletes it and waits until it is unrouted: %d changes in all. Routable = `GET /hostname` on the ClusterIP answers this pod's name; unrouted = the ClusterIP refuses the connection (the proxy closes its listener when a service port has no usable endpoint). The Service address is probed every millisecond. Ready and endpoint times are when the bench's own watches (Pods, EndpointSlices) saw them, so they trail the API by about the same delay the proxy's watch has.", n, 2*n)
	s, err := r.startServer(ctx, "convergence")
	if err != nil {
		return err
	}
	svc, err := cluster.CreateService(ctx, s.Client, "conv", map[string]string{"app": "conv"}, cluster.ServicePort("http", 80, 3000))
	if err != nil {
		return err
	}
	addr := svc.Spec.ClusterIP + ":80"
	pw := cluster.WatchPods(ctx, s.Client)
	sw := cluster.WatchSlices(ctx, s.Client)
	pods := s.Client.CoreV1().Pods(cluster.Namespace)
	var readyToRoute, sliceToRoute, deleteToUnroute, sliceToUnroute, readyAfterCreate []time.Duration
	early := 0
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("conv-%d", i)
		t0 := time.Now()
		if _, err := pods.Create(ctx, cluster.AgnhostPod(name, map[string]string{"app": "conv"}, 3000, cluster.HTTPProbe), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		cctx, cancel := context.WithTimeout(ctx, r.sz.readyTimeout)
		routed, err := pollUntil(cctx, time.Millisecond, func() bool { return probeHostname(cctx, addr, name) == probeAnswered })
		if err != nil {
			cancel()
			return fmt.Errorf("%s never answered through the Service: %w (pod: %+v)", name, err, pw.Times(name))
		}
		ready, err := pw.WaitReady(cctx, name)
		if err != nil {
			cancel()
			return err
		}
		ip := pw.Pod(name).Status.PodIP
		sliceReady, err := sw.WaitFor(cctx, "conv", t0, "endpoint "+ip+" ready", func(eps map[string]cluster.EndpointState) bool { return eps[ip].Ready })
		cancel()
		if err != nil {
			return err
		}
		if routed.Before(ready) {
			early++
		}
		readyAfterCreate = append(readyAfterCreate, ready.Sub(t0))
		readyToRoute = append(readyToRoute, nonNeg(routed.Sub(ready)))
		sliceToRoute = append(sliceToRoute, nonNeg(routed.Sub(sliceReady)))

		t1 := time.Now()
		if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		dctx, cancel := context.WithTimeout(ctx, r.sz.readyTimeout)
		unrouted, err := pollUntil(dctx, time.Millisecond, func() bool { return probeHostname(dctx, addr, name) == probeRefused })
		if err != nil {
			cancel()
			return fmt.Errorf("the Service kept a listener after %s was deleted: %w", name, err)
		}
		sliceGone, err := sw.WaitFor(dctx, "conv", t1, "endpoint "+ip+" unusable", func(eps map[string]cluster.EndpointState) bool {
			e, ok := eps[ip]
			return !ok || !(e.Ready || e.Serving)
		})
		if err == nil {
			_, err = pw.WaitGone(dctx, name)
		}
		cancel()
		if err != nil {
			return err
		}
		deleteToUnroute = append(deleteToUnroute, unrouted.Sub(t1))
		sliceToUnroute = append(sliceToUnroute, nonNeg(unrouted.Sub(sliceGone)))
		pw.Forget(name)
	}
	rr, sr, du, su := load.Summarize(readyToRoute), load.Summarize(sliceToRoute), load.Summarize(deleteToUnroute), load.Summarize(sliceToUnroute)
	sec.Add("pod Ready → routable (p50)", report.Millis(rr.P50))
	sec.Add("pod Ready → routable (p99)", report.Millis(rr.P99)).Check("< 100 ms", rr.P99 < 100*time.Millisecond, ms(rr.P99-100*time.Millisecond), explain("converge-route"))
	sec.Add("endpoint ready in its EndpointSlice → routable (p50 / p99)", report.Millis(sr.P50)).Text = ms(sr.P50) + " / " + ms(sr.P99)
	sec.Add("pod delete call → unrouted (p50 / p99)", report.Millis(du.P50)).Text = ms(du.P50) + " / " + ms(du.P99)
	sec.Add("endpoint removed → unrouted (p50)", report.Millis(su.P50))
	sec.Add("endpoint removed → unrouted (p99)", report.Millis(su.P99)).Check("< 100 ms", su.P99 < 100*time.Millisecond, ms(su.P99-100*time.Millisecond), explain("converge-unroute"))
	sec.Add("create → Ready (p50), for reference", report.Millis(load.Percentile(readyAfterCreate, 0.5)))
	sec.Notef("\"endpoint removed\" is the first EndpointSlice state, as the bench's watch saw it, in which the deleted pod's address is gone or neither ready nor serving. The delete → unrouted time also holds the pod's graceful stop: while it terminates and still serves it stays the Service's only (serving, terminating) endpoint, as kube-proxy does.")
	if early > 0 {
		sec.Notef("In %d of %d cycles the Service answered before the bench's watch saw the pod Ready (the watch event trails the write); those count as 0.", early, n)
	}
	img := r.date + "-convergence.png"
	if err := report.LatencyChart(filepath.Join(r.out, img), []report.Panel{{Title: "convergence through the Service", Series: []report.Series{
		{Name: "Ready → routable", Samples: readyToRoute}, {Name: "endpoint removed → unrouted", Samples: sliceToUnroute}, {Name: "delete call → unrouted", Samples: deleteToUnroute},
	}}}); err == nil {
		sec.Images = append(sec.Images, report.Image{Path: img, Alt: "convergence distributions"})
	}
	return nil
}

func nonNeg(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}
