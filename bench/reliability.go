package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-project/berth/bench/cluster"
	"github.com/berth-project/berth/bench/load"
	"github.com/berth-project/berth/bench/proc"
	"github.com/berth-project/berth/bench/report"
)

// loadRun is a pair of request streams (new connection per request, and
// keep-alive) against one URL, running until stopped.
type loadRun struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	res    []load.StreamResult
	errs   []error
	mu     sync.Mutex
}

// startLoad starts the two streams at rate requests/s each; max bounds
// them in any case.
func startLoad(ctx context.Context, url string, rate int, max time.Duration) *loadRun {
	ctx, cancel := context.WithTimeout(ctx, max)
	l := &loadRun{cancel: cancel}
	for _, ka := range []bool{false, true} {
		name := "new connection per request"
		if ka {
			name = "keep-alive (Go net/http)"
		}
		st := load.Stream{Name: name, URL: url, Rate: rate, KeepAlive: ka, Timeout: 2 * time.Second}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			res, err := st.Run(ctx)
			l.mu.Lock()
			defer l.mu.Unlock()
			l.res = append(l.res, res)
			if err != nil {
				l.errs = append(l.errs, err)
			}
		}()
	}
	return l
}

// stop ends the streams and returns their results.
func (l *loadRun) stop() ([]load.StreamResult, error) {
	l.cancel()
	l.wg.Wait()
	sort.Slice(l.res, func(i, j int) bool { return l.res[i].Name > l.res[j].Name })
	if len(l.errs) > 0 {
		return l.res, l.errs[0]
	}
	return l.res, nil
}

// lossRows adds one row per stream plus a total with target 0.
func lossRows(sec *report.Section, figure string, res []load.StreamResult, whyKey string) int64 {
	var lost, sent int64
	for _, r := range res {
		lost += r.Lost()
		sent += r.Sent + r.Dropped
		row := sec.AddText(figure+", "+r.Name, fmt.Sprintf("%d of %d", r.Lost(), r.Sent+r.Dropped))
		row.Note = "errors: " + r.ErrorsString()
		if r.Dropped > 0 {
			row.Note += fmt.Sprintf("; %d not sent (64 in flight)", r.Dropped)
		}
		if first, last, any := r.FailureWindow(); any {
			row.Note += fmt.Sprintf("; failures between %s and %s after the start", first.Round(time.Millisecond), last.Round(time.Millisecond))
		}
	}
	row := sec.AddText(figure, fmt.Sprintf("%d of %d", lost, sent))
	row.Check("0", lost == 0, fmt.Sprintf("%d requests", lost), explain(whyKey))
	return lost
}

func hostsString(res []load.StreamResult) string {
	hosts := map[string]int64{}
	for _, r := range res {
		for h, n := range r.Hosts {
			hosts[h] += n
		}
	}
	var parts []string
	for h, n := range hosts {
		parts = append(parts, fmt.Sprintf("%s %d", h, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// agnhostService creates Service name selecting app=name and n agnhost pods
// (HTTP readinessProbe), waits until all are Ready and the Service answers.
func (r *runner) agnhostService(ctx context.Context, s *cluster.Server, pw *cluster.PodWatch, name string, n int) (string, []string, error) {
	svc, err := cluster.CreateService(ctx, s.Client, name, map[string]string{"app": name}, cluster.ServicePort("http", 80, 3000))
	if err != nil {
		return "", nil, err
	}
	var names []string
	for i := 0; i < n; i++ {
		pn := fmt.Sprintf("%s-%d", name, i)
		names = append(names, pn)
		if _, err := s.Client.CoreV1().Pods(cluster.Namespace).Create(ctx, cluster.AgnhostPod(pn, map[string]string{"app": name}, 3000, cluster.HTTPProbe), metav1.CreateOptions{}); err != nil {
			return "", nil, fmt.Errorf("create %s: %w", pn, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, r.sz.readyTimeout)
	defer cancel()
	if err := pw.WaitAllReady(wctx, names...); err != nil {
		return "", nil, err
	}
	addr := svc.Spec.ClusterIP + ":80"
	for _, pn := range names {
		if err := waitAnswer(wctx, addr, pn, r.sz.readyTimeout); err != nil && !strings.Contains(err.Error(), "did not answer") {
			return "", nil, err
		}
	}
	return addr, names, nil
}

// rolling replaces every pod of a Service one by one under load.
func (r *runner) rolling(ctx context.Context, sec *report.Section) error {
	n := r.sz.rollPods
	sec.Describe("Service roll has %d agnhost pods (HTTP readinessProbe). Under load (two streams of %d requests/s each through the ClusterIP, `GET /hostname`: one with a new connection per request, one keep-alive through Go's net/http client, 2 s timeout), each pod in turn gets a replacement: create the new pod, wait until it is Ready, delete the old one, wait until it is gone. A failed request is an error or a non-200 answer.", n, r.sz.loadRate)
	s, err := r.startServer(ctx, "rolling")
	if err != nil {
		return err
	}
	pw := cluster.WatchPods(ctx, s.Client)
	addr, names, err := r.agnhostService(ctx, s, pw, "roll", n)
	if err != nil {
		return err
	}
	lr := startLoad(ctx, "http://"+addr+"/hostname", r.sz.loadRate, 3*time.Minute)
	sleep(ctx, time.Second)
	pods := s.Client.CoreV1().Pods(cluster.Namespace)
	start := time.Now()
	for i, old := range names {
		nn := fmt.Sprintf("roll-new-%d", i)
		if _, err := pods.Create(ctx, cluster.AgnhostPod(nn, map[string]string{"app": "roll"}, 3000, cluster.HTTPProbe), metav1.CreateOptions{}); err != nil {
			lr.stop()
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, r.sz.readyTimeout)
		_, err := pw.WaitReady(wctx, nn)
		if err == nil {
			err = pods.Delete(wctx, old, metav1.DeleteOptions{})
		}
		if err == nil {
			_, err = pw.WaitGone(wctx, old)
		}
		cancel()
		if err != nil {
			lr.stop()
			return err
		}
	}
	took := time.Since(start)
	sleep(ctx, 2*time.Second)
	res, err := lr.stop()
	if err != nil {
		return err
	}
	lossRows(sec, "failed requests during the replacement", res, "rolling")
	sec.Add("replacement of every pod took", report.Millis(took))
	sec.Notef("Answers by pod: %s.", hostsString(res))
	return nil
}

// inventory is what the API holds, by kind, name → uid.
type inventory map[string]map[string]string

func takeInventory(ctx context.Context, s *cluster.Server) (inventory, error) {
	inv := inventory{"pods": {}, "services": {}, "endpointslices": {}, "nodes": {}, "namespaces": {}}
	pods, err := s.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, o := range pods.Items {
		inv["pods"][o.Namespace+"/"+o.Name] = string(o.UID)
	}
	svcs, err := s.Client.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, o := range svcs.Items {
		inv["services"][o.Namespace+"/"+o.Name] = string(o.UID)
	}
	slices, err := s.Client.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, o := range slices.Items {
		inv["endpointslices"][o.Namespace+"/"+o.Name] = string(o.UID)
	}
	nodes, err := s.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, o := range nodes.Items {
		inv["nodes"][o.Name] = string(o.UID)
	}
	nss, err := s.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, o := range nss.Items {
		inv["namespaces"][o.Name] = string(o.UID)
	}
	return inv, nil
}

// killServer kills berth server with SIGKILL under load and checks what
// survives.
func (r *runner) killServer(ctx context.Context, sec *report.Section) error {
	sec.Describe("Service ks has 2 agnhost pods. Load: the two request streams (%d requests/s each) through the ClusterIP, and one more stream of new connections straight to one pod's IP; meanwhile a writer creates a Service every 50 ms and remembers each create the API acknowledged. Then `kill -9` of the berth server process (its pods are separate processes), %s of outage, and a start on the same data dir. The proxy runs inside berth server, so requests through the ClusterIP are expected to fail during the outage: they are reported, not targeted. The target is that nothing the API acknowledged is lost and that state converges: every object from before the crash is there with the same UID, every acknowledged create is there, the pods are the same processes (restart counts unchanged), and the Service answers again.", r.sz.loadRate, r.sz.killOutage)
	s, err := r.startServer(ctx, "killserver")
	if err != nil {
		return err
	}
	pw := cluster.WatchPods(ctx, s.Client)
	addr, names, err := r.agnhostService(ctx, s, pw, "ks", 2)
	if err != nil {
		return err
	}
	pod0 := pw.Pod(names[0])
	direct := net.JoinHostPort(pod0.Status.PodIP, "3000")
	restartsBefore := restartCounts(pw.Pods(map[string]string{"app": "ks"}))
	lr := startLoad(ctx, "http://"+addr+"/hostname", r.sz.loadRate, 3*time.Minute)
	dctx, dcancel := context.WithTimeout(ctx, 3*time.Minute)
	defer dcancel()
	var directRes load.StreamResult
	var dwg sync.WaitGroup
	dwg.Add(1)
	go func() {
		defer dwg.Done()
		directRes, _ = load.Stream{Name: "direct to " + names[0], URL: "http://" + direct + "/hostname", Rate: r.sz.loadRate, Timeout: 2 * time.Second}.Run(dctx)
	}()
	// The writer.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var acked []string
	var writeErrs int
	var wwg sync.WaitGroup
	wwg.Add(1)
	go func() {
		defer wwg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			name := fmt.Sprintf("ks-w-%d", i)
			c, cancel := context.WithTimeout(wctx, 2*time.Second)
			_, err := cluster.CreateService(c, s.Client, name, nil, cluster.ServicePort("http", 80, 80))
			cancel()
			if err == nil {
				acked = append(acked, name)
			} else {
				writeErrs++
			}
			sleep(wctx, 50*time.Millisecond)
		}
	}()
	sleep(ctx, 2*time.Second)
	before, err := takeInventory(ctx, s)
	if err != nil {
		return err
	}
	sleep(ctx, 500*time.Millisecond)
	killedAt := time.Now()
	s.Kill9()
	sleep(ctx, r.sz.killOutage)
	alive := 0
	for _, p := range names {
		if len(proc.FindByEnv("agnhost", "HOSTNAME="+p)) > 0 {
			alive++
		}
	}
	st, err := s.Start(ctx)
	if err != nil {
		wcancel()
		wwg.Wait()
		lr.stop()
		return fmt.Errorf("restart after kill -9: %w", err)
	}
	restartedAt := s.Proc.Started
	routedAt := time.Time{}
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	routedAt, err = pollUntil(rctx, 5*time.Millisecond, func() bool {
		res := probeHostname(rctx, addr, names[0])
		return res == probeAnswered || res == probeOther
	})
	rcancel()
	if err != nil {
		sec.Notef("The Service did not answer within 60 s of the restart.")
	}
	sleep(ctx, 2*time.Second)
	wcancel()
	wwg.Wait()
	res, err := lr.stop()
	dcancel()
	dwg.Wait()
	if err != nil {
		return err
	}
	// State after the restart: give controllers a moment to converge.
	pw2 := cluster.WatchPods(ctx, s.Client)
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	_ = pw2.WaitAllReady(cctx, names...)
	ccancel()
	after, err := takeInventory(ctx, s)
	if err != nil {
		return err
	}
	lostObjects, changedUIDs := 0, 0
	var lostNames []string
	total := 0
	for kind, objs := range before {
		for name, uid := range objs {
			if kind == "services" && strings.HasPrefix(name, "default/ks-w-") {
				continue // counted through acked below
			}
			total++
			got, ok := after[kind][name]
			switch {
			case !ok:
				lostObjects++
				lostNames = append(lostNames, kind+"/"+name)
			case got != uid:
				changedUIDs++
				lostNames = append(lostNames, kind+"/"+name+" (new UID)")
			}
		}
	}
	lostWrites := 0
	for _, name := range acked {
		if _, ok := after["services"]["default/"+name]; !ok {
			lostWrites++
			lostNames = append(lostNames, "services/default/"+name+" (acknowledged)")
		}
	}
	lost := lostObjects + changedUIDs + lostWrites
	row := sec.AddText("objects lost across the crash", fmt.Sprintf("%d of %d objects + %d acknowledged creates", lost, total, len(acked)))
	row.Check("0", lost == 0, fmt.Sprintf("%d objects", lost), "lost: "+strings.Join(trimList(lostNames, 5), ", "))
	restartsAfter := restartCounts(pw2.Pods(map[string]string{"app": "ks"}))
	restarted := 0
	for name, c := range restartsBefore {
		if restartsAfter[name] != c {
			restarted++
		}
	}
	row = sec.AddText("pods restarted or replaced by the crash", fmt.Sprintf("%d of %d", restarted, len(restartsBefore)))
	row.Note = fmt.Sprintf("%d of %d pod processes were alive during the outage", alive, len(names))
	sec.Add("restart (exec) → /readyz", report.Millis(st.Ready))
	if !routedAt.IsZero() {
		sec.Add("restart (exec) → Service answers again", report.Millis(routedAt.Sub(restartedAt)))
		sec.Add("kill → Service answers again", report.Millis(routedAt.Sub(killedAt)))
	}
	for _, r := range res {
		row := sec.AddText("requests failed through the ClusterIP, "+r.Name, fmt.Sprintf("%d of %d", r.Lost(), r.Sent+r.Dropped))
		row.Note = "errors: " + r.ErrorsString() + "; expected while the process that holds the proxy is down"
	}
	row = sec.AddText("requests failed direct to a pod during the crash", fmt.Sprintf("%d of %d", directRes.Lost(), directRes.Sent+directRes.Dropped))
	row.Note = "errors: " + directRes.ErrorsString()
	sec.Notef("The writer got %d creates acknowledged and %d errors (during the outage).", len(acked), writeErrs)
	return nil
}

func restartCounts(pods []*corev1.Pod) map[string]int32 {
	out := map[string]int32{}
	for _, p := range pods {
		var n int32
		for _, cs := range p.Status.ContainerStatuses {
			n += cs.RestartCount
		}
		out[p.Name] = n
	}
	return out
}

// killPod kills one pod's process with SIGKILL under load.
func (r *runner) killPod(ctx context.Context, sec *report.Section) error {
	sec.Describe("Service kp has 3 agnhost pods (HTTP readinessProbe). Under load (the two request streams, %d requests/s each, through the ClusterIP) the bench finds the process of pod kp-1 (by its HOSTNAME) and kills it with SIGKILL; the agent restarts the container (restartPolicy Always). Target: no failed request (the proxy moves a refused dial on to the next endpoint).", r.sz.loadRate)
	s, err := r.startServer(ctx, "killpod")
	if err != nil {
		return err
	}
	pw := cluster.WatchPods(ctx, s.Client)
	addr, _, err := r.agnhostService(ctx, s, pw, "kp", 3)
	if err != nil {
		return err
	}
	pids := proc.FindByEnv("agnhost", "HOSTNAME=kp-1")
	if len(pids) == 0 {
		return fmt.Errorf("cannot find the process of pod kp-1 (no process with agnhost in its command line and HOSTNAME=kp-1)")
	}
	before := restartCounts(pw.Pods(map[string]string{"app": "kp"}))["kp-1"]
	lr := startLoad(ctx, "http://"+addr+"/hostname", r.sz.loadRate, 3*time.Minute)
	sleep(ctx, 2*time.Second)
	killed := time.Now()
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	var restartedAt, readyAgain, notReadyAt time.Time
	wctx, cancel := context.WithTimeout(ctx, r.sz.readyTimeout)
	err = pw.WaitFor(wctx, "kp-1 to restart and be Ready", func(pw *cluster.PodWatch) bool {
		p := pw.Pod("kp-1")
		if p == nil {
			return false
		}
		n := restartCounts([]*corev1.Pod{p})["kp-1"]
		ready := cluster.PodReady(p)
		if !ready && notReadyAt.IsZero() {
			notReadyAt = time.Now()
		}
		if n > before && restartedAt.IsZero() {
			restartedAt = time.Now()
		}
		if n > before && ready {
			readyAgain = time.Now()
			return true
		}
		return false
	})
	cancel()
	sleep(ctx, 2*time.Second)
	res, lerr := lr.stop()
	if err != nil {
		return err
	}
	if lerr != nil {
		return lerr
	}
	lossRows(sec, "failed requests", res, "killpod")
	if !notReadyAt.IsZero() {
		sec.Add("kill → pod seen not Ready", report.Millis(notReadyAt.Sub(killed)))
	}
	sec.Add("kill → restart seen (restartCount+1)", report.Millis(restartedAt.Sub(killed)))
	sec.Add("kill → Ready again", report.Millis(readyAgain.Sub(killed)))
	sec.Notef("Answers by pod: %s.", hostsString(res))
	return nil
}

// soak runs steady load with endpoint churn and samples the server.
func (r *runner) soak(ctx context.Context, sec *report.Section) error {
	s, err := r.startServer(ctx, "soak")
	if err != nil {
		return err
	}
	pw := cluster.WatchPods(ctx, s.Client)
	var addr string
	var churn func(ctx context.Context, i int) error
	churnWhat := ""
	if r.agentOK {
		var names []string
		addr, names, err = r.agnhostService(ctx, s, pw, "soak", 2)
		if err != nil {
			return err
		}
		live := append([]string(nil), names...)
		churnWhat = "every %s the oldest pod is replaced (new pod Ready, then the old one deleted)"
		churn = func(ctx context.Context, i int) error {
			nn := fmt.Sprintf("soak-r%d", i)
			if _, err := s.Client.CoreV1().Pods(cluster.Namespace).Create(ctx, cluster.AgnhostPod(nn, map[string]string{"app": "soak"}, 3000, cluster.HTTPProbe), metav1.CreateOptions{}); err != nil {
				return err
			}
			if _, err := pw.WaitReady(ctx, nn); err != nil {
				return err
			}
			old := live[0]
			live = append(live[1:], nn)
			if err := s.Client.CoreV1().Pods(cluster.Namespace).Delete(ctx, old, metav1.DeleteOptions{}); err != nil {
				return err
			}
			_, err := pw.WaitGone(ctx, old)
			pw.Forget(old)
			return err
		}
	} else {
		b1, err := r.startBackend(ctx, s, "soak")
		if err != nil {
			return err
		}
		// A second backend process, added to and removed from the slice.
		simulatedIPs++
		ip2 := fmt.Sprintf("127.243.200.%d", simulatedIPs)
		p2, err := r.env.Procs.Start("soak-backend-2", execBackend(r.bench, ip2, "soak-backend-2"))
		if err != nil {
			return err
		}
		_ = p2
		if err := waitListening(ctx, net.JoinHostPort(ip2, "3000"), 10*time.Second); err != nil {
			return err
		}
		addr = b1.ServiceHTTP()
		churnWhat = "every %s the EndpointSlice alternates between one and two backends"
		churn = func(ctx context.Context, i int) error {
			set := []string{b1.IP}
			if i%2 == 0 {
				set = append(set, ip2)
			}
			return cluster.PutEndpointSlice(ctx, s.Client, cluster.EndpointSlice("soak", "soak-bench", set, cluster.SlicePort("http", backendHTTPPort), cluster.SlicePort("bulk", backendBulkPort)))
		}
	}
	sec.Describe("Steady load for %s: the two request streams (%d requests/s each) through a Service with two backends, and endpoint churn: "+churnWhat+". Every %s the bench samples the server's /metrics (go_goroutines, process_open_fds, process_resident_memory_bytes). \"Flat\" compares the mean of the last quarter of the samples with the mean of the first quarter after a warm-up of the first tenth: goroutines and fds may grow by at most 10%% + 10, RSS by at most 20%%.", r.sz.soak, r.sz.loadRate, r.sz.soakChurn, r.sz.soakSample)
	type sample struct {
		at                  time.Duration
		goroutines, fds, rs float64
	}
	var samples []sample
	start := time.Now()
	lr := startLoad(ctx, "http://"+addr+"/hostname", r.sz.loadRate, r.sz.soak+time.Minute)
	nextChurn := start.Add(r.sz.soakChurn)
	churns, churnErrs := 0, 0
	for time.Since(start) < r.sz.soak && ctx.Err() == nil {
		if m, err := s.Metrics(ctx); err == nil {
			samples = append(samples, sample{time.Since(start), m["go_goroutines"], m["process_open_fds"], m["process_resident_memory_bytes"]})
		}
		deadline := time.Now().Add(r.sz.soakSample)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			if time.Now().After(nextChurn) {
				cctx, cancel := context.WithTimeout(ctx, r.sz.readyTimeout)
				if err := churn(cctx, churns); err != nil {
					churnErrs++
					sec.Notef("churn %d: %v", churns, firstLine(err.Error()))
				}
				cancel()
				churns++
				nextChurn = time.Now().Add(r.sz.soakChurn)
			}
			sleep(ctx, 50*time.Millisecond)
		}
	}
	res, err := lr.stop()
	if err != nil {
		return err
	}
	if m, err := s.Metrics(ctx); err == nil {
		samples = append(samples, sample{time.Since(start), m["go_goroutines"], m["process_open_fds"], m["process_resident_memory_bytes"]})
	}
	lossRows(sec, "failed requests during the soak", res, "soak")
	sec.AddText("endpoint changes during the soak", fmt.Sprintf("%d (%d failed)", churns, churnErrs))
	if len(samples) < 4 {
		sec.Notef("Only %d samples: too few to judge flatness.", len(samples))
		return nil
	}
	warm := len(samples) / 10
	rest := samples[warm:]
	q := max(1, len(rest)/4)
	mean := func(xs []sample, f func(sample) float64) float64 {
		var s float64
		for _, x := range xs {
			s += f(x)
		}
		return s / float64(len(xs))
	}
	for _, m := range []struct {
		name   string
		f      func(sample) float64
		unit   func(float64) report.Value
		growth func(first float64) float64
	}{
		{"goroutines", func(s sample) float64 { return s.goroutines }, report.Count, func(f float64) float64 { return f*1.1 + 10 }},
		{"open fds", func(s sample) float64 { return s.fds }, report.Count, func(f float64) float64 { return f*1.1 + 10 }},
		{"RSS", func(s sample) float64 { return s.rs }, report.MB, func(f float64) float64 { return f * 1.2 }},
	} {
		first, last := mean(rest[:q], m.f), mean(rest[len(rest)-q:], m.f)
		row := sec.Add(m.name+", end of soak", m.unit(last)).WithPeer("start (after warm-up)", m.unit(first))
		row.Check("flat", last <= m.growth(first), fmt.Sprintf("%.0f%%", 100*(last/first-1)), explain("soak-"+m.name))
	}
	img := r.date + "-soak.png"
	var xs, g, fds, rss []float64
	for _, s := range samples {
		xs = append(xs, s.at.Minutes())
		g, fds, rss = append(g, s.goroutines), append(fds, s.fds), append(rss, s.rs/1e6)
	}
	if err := report.SeriesChart(filepath.Join(r.out, img), []report.SeriesPanel{
		{Title: "goroutines", YLabel: "count", Series: []report.TimeSeries{{Name: "go_goroutines", X: xs, Y: g}}},
		{Title: "open file descriptors", YLabel: "count", Series: []report.TimeSeries{{Name: "process_open_fds", X: xs, Y: fds}}},
		{Title: "resident memory", YLabel: "MB", Series: []report.TimeSeries{{Name: "process_resident_memory_bytes", X: xs, Y: rss}}},
	}); err == nil {
		sec.Images = append(sec.Images, report.Image{Path: img, Alt: "soak time series"})
	}
	return nil
}

// idleConnsBench holds many idle connections through the proxy.
func (r *runner) idleConnsBench(ctx context.Context, sec *report.Section) error {
	n := r.sz.idleConns
	s, err := r.startServer(ctx, "idleconns")
	if err != nil {
		return err
	}
	b, err := r.startBackend(ctx, s, "idle")
	if err != nil {
		return err
	}
	soft, hard, _ := proc.NoFile(s.Pid())
	sec.Describe("The bench opens %d TCP connections to the Service ClusterIP (64 dials at a time), holds them all idle for %s, then sends one `GET /echo?msg=i` on each and checks the answer. Backend: %s. Each proxied connection costs the server process two sockets (client side and endpoint side); berth server runs with the limits it inherits (here RLIMIT_NOFILE soft %d / hard %d; Go raises its soft limit to the hard one at start). If that fails on file descriptors and the bench is root, it raises the server's and the backend's limit to 1,048,576 with prlimit(2) and tries again.", n, r.sz.idleHold, b.describe(), soft, hard)
	attempt := func(label string) load.IdleResult {
		var peakFDs int
		var kinds map[string]int
		var mem proc.Mem
		var active float64
		res := load.HoldIdle(ctx, b.ServiceHTTP(), n, 64, r.sz.idleHold, func() {
			// Let the proxy accept what the kernel already queued.
			sleep(ctx, min(time.Second, r.sz.idleHold/2))
			peakFDs, _ = proc.OpenFDs(s.Pid())
			kinds, _ = proc.FDKinds(s.Pid())
			mem, _ = proc.ReadMem(s.Pid())
			if m, err := s.Metrics(ctx); err == nil {
				active = m["berth_proxy_active_connections"]
			}
		})
		row := sec.AddText("connections held and verified, "+label, fmt.Sprintf("%d of %d", res.Verified, n))
		row.Check(fmt.Sprintf("all %d", n), res.Failed() == 0, fmt.Sprintf("%d connections", res.Failed()), explain("idleconns"))
		row.Note = fmt.Sprintf("opened %d in %s; dial errors: %s; errors after the hold: %s", res.Opened, res.OpenDuration.Round(time.Millisecond), load.CountsString(res.DialErrors), load.CountsString(res.VerifyErrors))
		if res.Opened > 0 {
			per := 0.0
			if active > 0 {
				per = float64(peakFDs) / active
			}
			sec.Notef("%s, all open: server fds %d: %d sockets, %d pipe ends, %d anon inodes, %d files; berth_proxy_active_connections %.0f (%.1f fds per proxied connection); %s.", label, peakFDs, kinds["socket"], kinds["pipe"], kinds["anon_inode"], kinds["file"], active, per, mem)
		}
		return res
	}
	res := attempt("default limits")
	if s.Proc.Exited() {
		row := sec.AddText("berth server survived the test", "no")
		row.Check("yes", false, "", "berth server exited ("+errString(s.Proc.Err())+"); last log lines: "+lastLines(s.Proc.Output(), 3))
		return nil
	}
	sec.AddText("berth server survived the test", "yes").Check("yes", true, "", "")
	if res.Failed() > 0 {
		if strings.Contains(s.Proc.Output(), "too many open files") {
			sec.Notef("The server log says \"too many open files\".")
		}
		if os.Geteuid() != 0 {
			sec.Notef("Not root: the limits cannot be raised for a second attempt.")
			return nil
		}
		pids := []int{s.Pid()}
		if b.Simulated {
			pids = append(pids, b.Proc.Pid())
		} else {
			pids = append(pids, proc.FindByEnv(b.Pod, "HOSTNAME="+b.Pod)...)
		}
		for _, pid := range pids {
			if err := proc.SetNoFile(pid, 1<<20); err != nil {
				sec.Notef("No second attempt with a higher limit: %v (raising a hard limit needs CAP_SYS_RESOURCE, which this machine's root does not have; under systemd it is LimitNOFILE=).", err)
				sec.AddText("connections held and verified, RLIMIT_NOFILE raised", "").Skip(fmt.Sprintf("all %d", n), "cannot raise RLIMIT_NOFILE here (no CAP_SYS_RESOURCE)")
				return nil
			}
		}
		sleep(ctx, 2*time.Second) // let closed connections drain
		attempt("RLIMIT_NOFILE raised to 1,048,576")
	}
	return nil
}

func execBackend(bench, ip, name string) *execCmd {
	return newExec(bench, "backend", "-http", net.JoinHostPort(ip, "3000"), "-bulk", net.JoinHostPort(ip, "3001"), "-name", name)
}
