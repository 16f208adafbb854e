package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-project/berth/bench/cluster"
	"github.com/berth-project/berth/bench/report"
)

// sizes are the counts and durations of one mode.
type sizes struct {
	settle                   time.Duration // idle time before an RSS reading
	cpObjects, cpLists       int
	warmStarts               int
	podsSeq, procStarts      int
	podsBurst                int
	bulkBytes                int64
	bulkBudget               time.Duration
	rounds                   int
	kaN, ncN                 int
	latBudget                time.Duration
	convCycles               int
	scaleServices            int
	scaleEndpoints           int
	scaleChanges             int
	rollPods                 int
	loadRate                 int
	killOutage               time.Duration
	soak, soakSample         time.Duration
	soakChurn                time.Duration
	idleConns                int
	idleHold                 time.Duration
	deployReplicas           int
	podTimeout, readyTimeout time.Duration
}

func sizesFor(o options) sizes {
	s := sizes{
		settle: 10 * time.Second, cpObjects: 500, cpLists: 50, warmStarts: 5,
		podsSeq: 100, procStarts: 20, podsBurst: 100,
		bulkBytes: 1 << 30, bulkBudget: 5 * time.Second, rounds: 3, kaN: 5000, ncN: 1000, latBudget: 5 * time.Second,
		convCycles:    100,
		scaleServices: 10000, scaleEndpoints: 10, scaleChanges: 30,
		rollPods: 3, loadRate: 100, killOutage: 3 * time.Second,
		soak: 10 * time.Minute, soakSample: 10 * time.Second, soakChurn: 30 * time.Second,
		idleConns: 10000, idleHold: 20 * time.Second,
		deployReplicas: 10,
		podTimeout:     60 * time.Second, readyTimeout: 60 * time.Second,
	}
	if o.smoke {
		s = sizes{
			settle: 500 * time.Millisecond, cpObjects: 20, cpLists: 5, warmStarts: 2,
			podsSeq: 2, procStarts: 2, podsBurst: 3,
			bulkBytes: 16 << 20, bulkBudget: 2 * time.Second, rounds: 1, kaN: 200, ncN: 100, latBudget: 2 * time.Second,
			convCycles:    3,
			scaleServices: 20, scaleEndpoints: 10, scaleChanges: 2,
			rollPods: 2, loadRate: 50, killOutage: time.Second,
			soak: 4 * time.Second, soakSample: time.Second, soakChurn: 2 * time.Second,
			idleConns: 100, idleHold: 500 * time.Millisecond,
			deployReplicas: 2,
			podTimeout:     30 * time.Second, readyTimeout: 30 * time.Second,
		}
	}
	if o.soak > 0 {
		s.soak = o.soak
	}
	return s
}

// agentNeed says how a benchmark depends on the node agent.
type agentNeed int

const (
	agentNo       agentNeed = iota // never runs pods
	agentOptional                  // runs pods when it can, simulates them otherwise
	agentRequired                  // measures pods: skipped without the agent
)

type benchmark struct {
	name, title string
	agent       agentNeed
	// budget bounds the whole benchmark.
	budget func(sizes) time.Duration
	// targets are the (figure, target) rows reported as skipped when the
	// benchmark cannot run.
	targets [][2]string
	run     func(*runner, context.Context, *report.Section) error
}

var benchmarks = []benchmark{
	{name: "controlplane", title: "Control plane (issue 2)", agent: agentNo, budget: fixed(5 * time.Minute), run: (*runner).controlPlane},
	{name: "footprint", title: "Footprint: idle RSS and warm start (issue 2)", agent: agentOptional, budget: fixed(5 * time.Minute), run: (*runner).footprint,
		targets: [][2]string{{"idle RSS, no objects", "< 80 MB"}, {"idle RSS, seed demo", "< 80 MB"}, {"warm start to /readyz (median)", "< 1 s"}}},
	{name: "pods", title: "Pods: create → Ready (issue 3)", agent: agentRequired, budget: fixed(8 * time.Minute), run: (*runner).pods,
		targets: [][2]string{{"create → Ready beyond the process's own start (p50)", "< 50 ms"}}},
	{name: "datapath", title: "Data path (issues 4, 5, 6)", agent: agentOptional, budget: fixed(10 * time.Minute), run: (*runner).dataPath},
	{name: "convergence", title: "Convergence through the Service (issue 4)", agent: agentRequired, budget: fixed(8 * time.Minute), run: (*runner).convergence,
		targets: [][2]string{{"pod Ready → routable (p99)", "< 100 ms"}, {"endpoint removed → unrouted (p99)", "< 100 ms"}}},
	{name: "scale", title: "Scale: 10,000 Services (issue 6)", agent: agentNo, budget: fixed(12 * time.Minute), run: (*runner).scale},
	{name: "rolling", title: "Reliability: rolling replacement of every pod", agent: agentRequired, budget: fixed(4 * time.Minute), run: (*runner).rolling,
		targets: [][2]string{{"failed requests during the replacement", "0"}}},
	{name: "killserver", title: "Reliability: kill -9 of berth server under load", agent: agentRequired, budget: fixed(4 * time.Minute), run: (*runner).killServer,
		targets: [][2]string{{"objects lost across the crash", "0"}}},
	{name: "killpod", title: "Reliability: kill -9 of a pod process under load", agent: agentRequired, budget: fixed(3 * time.Minute), run: (*runner).killPod,
		targets: [][2]string{{"failed requests", "0"}}},
	{name: "soak", title: "Reliability: soak", agent: agentOptional, budget: func(s sizes) time.Duration { return s.soak + 3*time.Minute }, run: (*runner).soak},
	{name: "idleconns", title: "Reliability: concurrent idle connections through the proxy", agent: agentOptional, budget: fixed(6 * time.Minute), run: (*runner).idleConnsBench},
	{name: "deployments", title: "Deployments: rollout restart (issue 7)", agent: agentRequired, budget: fixed(6 * time.Minute), run: (*runner).deployments,
		targets: [][2]string{{"failed requests during the rollout", "0"}}},
}

var reliabilityNames = []string{"rolling", "killserver", "killpod", "soak", "idleconns"}

func fixed(d time.Duration) func(sizes) time.Duration { return func(sizes) time.Duration { return d } }

func benchmarkNames() []string {
	var out []string
	for _, b := range benchmarks {
		out = append(out, b.name)
	}
	return out
}

func benchmarkByName(name string) benchmark {
	for _, b := range benchmarks {
		if b.name == name {
			return b
		}
	}
	return benchmark{}
}

func needsEtcd(names []string) bool {
	for _, n := range names {
		if n == "controlplane" || n == "footprint" {
			return true
		}
	}
	return false
}

// runner is one run's shared state.
type runner struct {
	env   *cluster.Env
	sz    sizes
	smoke bool
	out   string
	date  string
	rep   *report.Report
	// bench is this binary, run as `bench backend` for backend pods.
	bench string
	root  string
	log   *slog.Logger

	agentOK     bool
	agentReason string

	// prof records perf profiles when -profile is set (nil otherwise).
	prof *profiler

	// servers are those of the benchmark running now, closed at its end.
	servers []*cluster.Server
}

func (r *runner) runAll(ctx context.Context, names []string) error {
	for _, name := range names {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", ctx.Err())
		}
		b := benchmarkByName(name)
		sec := r.rep.Section(b.name, b.title)
		if b.agent == agentRequired && !r.agentOK {
			sec.Skipped = "needs the node agent (" + r.agentReason + ")."
			for _, t := range b.targets {
				sec.AddText(t[0], "").Skip(t[1], "needs the node agent")
			}
			r.log.Info("skipped: needs the node agent", "benchmark", b.name)
			continue
		}
		r.log.Info("benchmark starting", "benchmark", b.name)
		start := time.Now()
		err := r.runOne(ctx, b, sec)
		sec.Duration = time.Since(start)
		if err != nil {
			sec.Error = err.Error()
			r.log.Error("benchmark failed", "benchmark", b.name, "err", firstLine(err.Error()))
		} else {
			r.log.Info("benchmark done", "benchmark", b.name, "took", sec.Duration.Round(100*time.Millisecond).String())
		}
		// Write what there is so far: an interrupted run keeps its results.
		r.rep.Duration = time.Since(r.rep.Started)
		if err := r.write(false); err != nil {
			r.log.Warn("write the report so far", "err", err)
		}
	}
	return nil
}

func (r *runner) runOne(ctx context.Context, b benchmark, sec *report.Section) (err error) {
	ctx, cancel := context.WithTimeout(ctx, b.budget(r.sz))
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
		r.cleanup(sec)
	}()
	return b.run(r, ctx, sec)
}

// cleanup ends everything the benchmark started: pods (through the API,
// so the agent stops them), servers, other processes, leftovers.
func (r *runner) cleanup(sec *report.Section) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, s := range r.servers {
		s.Close(ctx)
	}
	left := r.env.Procs.StopAll(10 * time.Second)
	if len(left) > 0 {
		sec.Notef("After its pods were deleted and its servers stopped, %d process(es) were still running and were killed by the harness: %s.", len(left), strings.Join(trimList(left, 3), "; "))
	}
	for _, s := range r.servers {
		if err := os.RemoveAll(s.DataDir); err != nil {
			r.log.Warn("remove data dir", "dir", s.DataDir, "err", err)
		}
	}
	r.servers = nil
}

func trimList(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
}

// startServer starts a fresh berth server owned by the running benchmark.
func (r *runner) startServer(ctx context.Context, name string, args ...string) (*cluster.Server, error) {
	s, err := r.env.NewServer(name, args...)
	if err != nil {
		return nil, err
	}
	r.servers = append(r.servers, s)
	if _, err := s.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// checkAgent finds out whether the node agent runs pods: one agnhost pod
// must be Ready within the pod timeout.
func (r *runner) checkAgent(ctx context.Context) {
	r.agentReason = "not checked"
	s, err := r.startServer(ctx, "agent-check")
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, s := range r.servers {
			s.Close(cctx)
		}
		r.env.Procs.StopAll(10 * time.Second)
		r.servers = nil
	}()
	if err != nil {
		r.agentReason = "berth server did not start: " + firstLine(err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.sz.podTimeout)
	defer cancel()
	pw := cluster.WatchPods(ctx, s.Client)
	pod := cluster.AgnhostPod("agent-check", map[string]string{"app": "agent-check"}, 3000, cluster.NoProbe)
	if _, err := s.Client.CoreV1().Pods(cluster.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		r.agentReason = "cannot create a pod: " + firstLine(err.Error())
		return
	}
	// Without an agent no Node ever registers: say so after a few seconds
	// instead of waiting for the whole timeout.
	err = pw.WaitFor(ctx, "pod agent-check to be Ready", func(pw *cluster.PodWatch) bool {
		if !pw.Times(pod.Name).Ready.IsZero() {
			return true
		}
		if time.Since(pw.Times(pod.Name).Seen) > 5*time.Second && !pw.Times(pod.Name).Seen.IsZero() {
			if nodes, err := s.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil && len(nodes.Items) == 0 {
				cancel()
			}
		}
		return false
	})
	if err != nil {
		if nodes, lerr := s.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); lerr == nil && len(nodes.Items) == 0 {
			r.agentReason = "no Node registered within 5 s: the agent is not running; a test pod stayed Pending"
			r.log.Warn("the node agent does not run pods: pod-dependent benchmarks are skipped", "reason", r.agentReason)
			return
		}
	}
	if _, err := pw.WaitReady(ctx, pod.Name); err != nil {
		r.agentReason = fmt.Sprintf("a test pod was not Ready within %s: %s", r.sz.podTimeout, firstLine(err.Error()))
		r.log.Warn("the node agent does not run pods: pod-dependent benchmarks are skipped", "reason", r.agentReason)
		return
	}
	r.agentOK = true
	r.agentReason = "a test pod was Ready"
}

func (r *runner) agentNote() string {
	if r.agentOK {
		return "Node agent: working (a test agnhost pod reached Ready); pods are real local processes."
	}
	return "Node agent: **not available** (" + r.agentReason + "). Benchmarks that measure pods are skipped with \"needs the node agent\"; the data-path, idle-connection and soak benchmarks run their backend as a directly started process behind a selector-less Service whose EndpointSlice the bench writes, and say so."
}
