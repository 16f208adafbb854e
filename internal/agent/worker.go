package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-project/berth/internal/agent/network"
	"github.com/berth-project/berth/internal/agent/podspec"
	"github.com/berth-project/berth/internal/agent/probe"
	"github.com/berth-project/berth/internal/agent/runtime"
)

// podWorker owns one Pod's containers and network for the Pod's life on
// this node. Its goroutine (run) does all the work in sync passes, woken by
// Pod updates, container exits, probe results and timers; the goroutines it
// starts (exit watchers, probes, container stoppers) only observe and kick
// it. Fields without a lock are the run goroutine's alone.
type podWorker struct {
	a         *Agent
	uid       types.UID
	namespace string
	name      string
	log       *slog.Logger
	kick      chan struct{}

	mu   sync.Mutex // guards pod, gone and view
	pod  *corev1.Pod
	gone bool // the Pod was removed from the API
	view workerView

	ctx    context.Context // the run's context, for the goroutines it starts
	cancel context.CancelFunc
	wg     sync.WaitGroup

	ctrs         map[string]*ctr
	adoptPending bool // adopted running containers still need watchers and probes
	att          *network.Attachment
	releasedIP   string // the address a finished Pod had; it keeps showing it
	netBackOff   backOff
	netFailed    time.Time
	netErr       string

	reported   *corev1.PodStatus // what was last written to the API
	pushedPod  *corev1.Pod       // the API's answer to it
	lastPush   time.Time
	pushFailed bool

	finished    bool // terminal phase reached; nothing restarts
	terminating bool
	killStart   time.Time
	killGrace   time.Duration
	drained     bool      // the endpoint drain before stopping is over
	drainedAt   time.Time // when the pod's endpoints were first seen not ready
	cleanedUp   bool
	deleteTries int
}

// workerView is what the worker shares with the agent API: the last status
// it computed, the container attempts it knows and the network.
type workerView struct {
	status   *corev1.PodStatus
	attempts map[string]runtime.State // by runtime container ID
	att      *network.Attachment
}

// ctr is one container (init or regular) of the Pod.
type ctr struct {
	spec  *corev1.Container
	init  bool
	index int

	cur, prev *runtime.State // latest attempt and the one before it

	waiting      *waiting
	startFailed  time.Time // when the last start failed (no attempt was made)
	backoff      backOff
	backOffFor   time.Time // the failure the last BackOff event was about
	lastFailMsg  string    // the last Failed event, so it is not repeated
	probes       *probeSet
	stopping     *stopper
	waitCancel   context.CancelFunc
	postStartErr bool
}

func (c *ctr) running() bool { return c.cur != nil && c.cur.Running }

// started reports whether the running attempt passed its startup probe.
func (c *ctr) started() bool {
	if c.probes == nil {
		return false
	}
	_, started := c.probes.state()
	return started
}

func (c *ctr) fieldPath() string {
	if c.init {
		return fmt.Sprintf("spec.initContainers{%s}", c.spec.Name)
	}
	return fmt.Sprintf("spec.containers{%s}", c.spec.Name)
}

func (c *ctr) specPath() string {
	if c.init {
		return fmt.Sprintf("spec.initContainers[%d]", c.index)
	}
	return fmt.Sprintf("spec.containers[%d]", c.index)
}

func newPodWorker(a *Agent, pod *corev1.Pod, adopted []runtime.State) *podWorker {
	w := &podWorker{
		a: a, uid: pod.UID, namespace: pod.Namespace, name: pod.Name,
		log:        a.log.With("pod", pod.Namespace+"/"+pod.Name, "podUID", string(pod.UID)),
		kick:       make(chan struct{}, 1),
		pod:        pod,
		ctrs:       map[string]*ctr{},
		netBackOff: newBackOff(a.cfg.BackOffBase, a.cfg.BackOffMax),
	}
	w.refreshSpecs(pod)
	w.adoptStates(adopted)
	w.adoptPending = len(adopted) > 0
	return w
}

// update hands the worker a newer Pod; gone says it was removed from the API.
func (w *podWorker) update(pod *corev1.Pod, gone bool) {
	w.mu.Lock()
	if gone {
		w.gone = true
	}
	if pod != nil && (w.pod == nil || !gone) {
		w.pod = pod
	}
	w.mu.Unlock()
	w.wake()
}

func (w *podWorker) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *podWorker) current() (*corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod, w.gone
}

func (w *podWorker) run(ctx context.Context) {
	w.ctx, w.cancel = context.WithCancel(ctx)
	defer func() {
		w.cancel()
		w.wg.Wait()
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, done := w.sync(w.ctx)
		if done {
			w.a.workerDone(w)
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if next <= 0 {
			next = time.Hour
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-timer.C:
		}
	}
}

// go runs f on a goroutine the worker waits for when it ends.
func (w *podWorker) goFunc(f func()) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		f()
	}()
}

// refreshSpecs matches the worker's containers to the Pod's spec.
func (w *podWorker) refreshSpecs(pod *corev1.Pod) {
	set := func(list []corev1.Container, init bool) {
		for i := range list {
			c := w.ctrs[list[i].Name]
			if c == nil {
				c = &ctr{backoff: newBackOff(w.a.cfg.BackOffBase, w.a.cfg.BackOffMax)}
				w.ctrs[list[i].Name] = c
			}
			c.spec, c.init, c.index = &list[i], init, i
		}
	}
	set(pod.Spec.InitContainers, true)
	set(pod.Spec.Containers, false)
}

// adoptStates takes over the attempts a previous agent left: the latest
// two of each container are kept, older ones removed.
func (w *podWorker) adoptStates(states []runtime.State) {
	byName := map[string][]runtime.State{}
	for _, st := range states {
		byName[st.Spec.ContainerName] = append(byName[st.Spec.ContainerName], st)
	}
	for name, list := range byName {
		slices.SortFunc(list, func(a, b runtime.State) int { return a.Spec.Attempt - b.Spec.Attempt })
		c := w.ctrs[name]
		if c == nil {
			// A container the spec no longer has (cannot happen: specs
			// are immutable); stop it with the rest at cleanup.
			continue
		}
		n := len(list)
		st := list[n-1]
		c.cur = &st
		if n > 1 {
			p := list[n-2]
			c.prev = &p
		}
		for _, old := range list[:max(n-2, 0)] {
			w.removeAttempt(old)
		}
	}
}

// startAdopted watches and probes adopted running containers, with the
// probe state the Pod's status last reported.
func (w *podWorker) startAdopted() {
	pod, _ := w.current()
	for _, c := range w.ctrs {
		if !c.running() {
			continue
		}
		w.log.Info("adopted running container", "container", c.spec.Name, "pid", c.cur.PID, "attempt", c.cur.Spec.Attempt)
		w.watchExit(c)
		ready, started := false, false
		all := append(append([]corev1.ContainerStatus{}, pod.Status.ContainerStatuses...), pod.Status.InitContainerStatuses...)
		if cs, ok := findStatus(all, c.spec.Name); ok && cs.ContainerID == ContainerIDScheme+c.cur.ID {
			ready = cs.Ready
			started = cs.Started != nil && *cs.Started
		}
		w.startProbes(c, ready, started)
	}
}

// sync does one pass: observe, act, report. It returns when it wants to
// run again (0: only when woken) and whether the worker is finished.
func (w *podWorker) sync(ctx context.Context) (time.Duration, bool) {
	pod, gone := w.current()
	now := time.Now()
	w.refreshSpecs(pod)
	w.observe()

	if gone || pod.DeletionTimestamp != nil {
		return w.syncTerminating(ctx, pod, gone)
	}

	var wake time.Time
	earliest := func(t time.Time) { wake = earlier(wake, t) }
	if terminalPhase(pod.Status.Phase) || (w.reported != nil && terminalPhase(w.reported.Phase)) {
		w.finished = true // also after a restart: a finished Pod gets no new network
	}
	if !w.finished {
		if w.ensureNetwork(ctx, pod, now) {
			if w.adoptPending {
				w.adoptPending = false
				w.startAdopted()
			}
			earliest(w.syncContainers(ctx, pod, now))
		} else {
			until, _, _ := w.netBackOff.wait(w.netFailed, now)
			earliest(until)
		}
	}
	status := w.status(pod, false)
	if terminalPhase(status.Phase) {
		hadNet := w.att != nil
		earliest(w.finish(ctx, pod))
		if hadNet && w.att == nil {
			status = w.status(pod, false)
		}
	}
	earliest(w.push(ctx, pod, status, false))
	if wake.IsZero() {
		return 0, false
	}
	return max(time.Until(wake), time.Millisecond), false
}

func (w *podWorker) anyRunning() bool {
	for _, c := range w.ctrs {
		if c.running() {
			return true
		}
	}
	return false
}

func terminalPhase(p corev1.PodPhase) bool {
	return p == corev1.PodSucceeded || p == corev1.PodFailed
}

// observe refreshes the state of running containers from the runtime.
func (w *podWorker) observe() {
	for _, c := range w.ctrs {
		if !c.running() {
			continue
		}
		st, err := w.a.rt.State(c.cur.ID)
		if errors.Is(err, runtime.ErrNotFound) {
			// Someone removed its state: all that is known is that it is gone.
			st = *c.cur
			st.Running, st.Lost, st.ExitCode, st.FinishedAt = false, true, runtime.LostExitCode, time.Now()
			st.Error = "the container's state disappeared"
		} else if err != nil {
			w.log.Warn("read container state", "container", c.spec.Name, "err", err)
			continue
		}
		c.cur = &st
		if !st.Running {
			w.containerExited(c)
		}
	}
}

func (w *podWorker) containerExited(c *ctr) {
	w.log.Info("container exited", "container", c.spec.Name, "exitCode", c.cur.ExitCode, "signal", c.cur.Signal, "attempt", c.cur.Spec.Attempt)
	if c.probes != nil {
		c.probes.stop()
		c.probes = nil
	}
	if c.waitCancel != nil {
		c.waitCancel()
		c.waitCancel = nil
	}
	c.stopping = nil // its goroutine ends by itself now
}

// watchExit kicks the worker when the container's current attempt exits.
func (w *podWorker) watchExit(c *ctr) {
	ctx, cancel := context.WithCancel(w.ctx)
	c.waitCancel = cancel
	id := c.cur.ID
	w.goFunc(func() {
		if _, err := w.a.rt.Wait(ctx, id); err == nil || !errors.Is(err, context.Canceled) {
			w.wake()
		}
	})
}

// ensureNetwork gives the Pod its network identity, retrying with back-off.
func (w *podWorker) ensureNetwork(ctx context.Context, pod *corev1.Pod, now time.Time) bool {
	if w.att != nil {
		return true
	}
	if !w.netFailed.IsZero() {
		if _, _, blocked := w.netBackOff.wait(w.netFailed, now); blocked {
			return false
		}
		w.netBackOff.restarted(w.netFailed, now)
	}
	att, err := w.a.net.Setup(ctx, string(pod.UID), pod.Namespace, pod.Name)
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		w.netFailed = time.Now()
		msg := fmt.Sprintf("Failed to create pod sandbox: %v", err)
		if msg != w.netErr {
			w.event(nil, corev1.EventTypeWarning, "FailedCreatePodSandBox", "%s", msg)
			w.netErr = msg
		}
		w.log.Error("set up pod network", "err", err)
		return false
	}
	w.att, w.netFailed, w.netErr = &att, time.Time{}, ""
	return true
}

// syncContainers starts what should run: the init containers in order,
// then the containers; restarts with back-off; stops what failed its
// liveness or startup probe. It returns when a back-off ends.
func (w *podWorker) syncContainers(ctx context.Context, pod *corev1.Pod, now time.Time) time.Time {
	var wake time.Time
	for _, c := range w.ctrs {
		if !c.running() || c.stopping != nil || c.probes == nil {
			continue
		}
		if kind, failed := c.probes.failed(); failed {
			grace := w.gracePeriod(pod)
			if p := probeOf(c.spec, kind); p != nil && p.TerminationGracePeriodSeconds != nil {
				grace = time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
			}
			w.stop(c, grace, fmt.Sprintf("Container %s failed %s probe, will be restarted", c.spec.Name, strings.ToLower(string(kind))))
		}
	}

	initialized := false
	for _, c := range w.ctrs {
		if !c.init && c.cur != nil {
			initialized = true // a container has run, so the Pod was initialized
		}
	}
	for i := range pod.Spec.InitContainers {
		c := w.ctrs[pod.Spec.InitContainers[i].Name]
		restartable := isRestartable(c.spec)
		if initialized && !restartable {
			continue // init containers run once; only sidecars are kept running
		}
		if c.running() || c.stopping != nil {
			if initialized || (restartable && c.started()) {
				continue
			}
			return wake // wait for it to complete (or, for a sidecar, to start)
		}
		if c.cur != nil && !restartable {
			if c.cur.ExitCode == 0 && !c.cur.Lost {
				continue // completed
			}
			if pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
				c.waiting = nil
				return wake // failed for good: so does the Pod
			}
		}
		wake = earlier(wake, w.start(ctx, pod, c, now))
		if initialized || (restartable && c.running() && c.started()) {
			continue
		}
		return wake
	}
	for i := range pod.Spec.Containers {
		c := w.ctrs[pod.Spec.Containers[i].Name]
		if c.running() || c.stopping != nil {
			continue
		}
		if c.cur != nil && !shouldRestart(pod.Spec.RestartPolicy, c.cur) {
			c.waiting = nil
			continue
		}
		wake = earlier(wake, w.start(ctx, pod, c, now))
	}
	return wake
}

// earlier returns the earlier of two times, a zero time meaning none.
func earlier(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func shouldRestart(policy corev1.RestartPolicy, a *runtime.State) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return a.ExitCode != 0 || a.Lost
	}
	return true
}

// start (re)starts c unless its back-off says to wait, and returns when to
// try again if it did not start.
func (w *podWorker) start(ctx context.Context, pod *corev1.Pod, c *ctr, now time.Time) time.Time {
	var failedAt time.Time
	if c.cur != nil && !c.cur.Running {
		failedAt = c.cur.FinishedAt
	}
	if c.startFailed.After(failedAt) {
		failedAt = c.startFailed
	}
	if !failedAt.IsZero() {
		if until, delay, blocked := c.backoff.wait(failedAt, now); blocked {
			if c.startFailed.IsZero() || c.waiting == nil {
				c.waiting = &waiting{Reason: reasonCrashLoopBackOff, Message: fmt.Sprintf(
					"back-off %s restarting failed container=%s pod=%s", delay, c.spec.Name, podspec.PodRef(pod))}
			}
			if !c.backOffFor.Equal(failedAt) && c.cur != nil && failedAt.Equal(c.cur.FinishedAt) {
				// Only a container that ran backs off; a failed start has
				// its Failed event.
				c.backOffFor = failedAt
				w.event(c, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s", c.spec.Name, podspec.PodRef(pod))
			}
			return until
		}
		c.backoff.restarted(failedAt, now)
	}

	fail := func(reason, msg string) time.Time {
		c.startFailed = time.Now()
		c.waiting = &waiting{Reason: reason, Message: msg}
		if msg != c.lastFailMsg {
			c.lastFailMsg = msg
			w.event(c, corev1.EventTypeWarning, "Failed", "Error: %s", msg)
			w.log.Warn("cannot start container", "container", c.spec.Name, "reason", reason, "err", msg)
		}
		until, _, _ := c.backoff.wait(c.startFailed, c.startFailed.Add(time.Nanosecond))
		if until.IsZero() {
			until = c.startFailed.Add(w.a.cfg.BackOffBase)
		}
		return until
	}

	proc, err := podspec.Build(ctx, pod, c.spec, c.specPath(), w.processOptions(ctx, pod))
	if err != nil {
		var pe *podspec.Error
		if errors.As(err, &pe) {
			return fail(pe.Reason, pe.Message)
		}
		return fail(podspec.ReasonCreateContainerConfigError, err.Error())
	}
	number := 0
	if c.cur != nil {
		number = c.cur.Spec.Attempt + 1
	} else if n, ok := w.reportedRestarts(pod, c.spec.Name); ok {
		number = n + 1 // state was lost: keep counting where the API left off
	}
	logPath := filepath.Join(w.a.podLogDir(pod.Namespace, pod.Name, pod.UID), c.spec.Name, strconv.Itoa(number)+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return fail(reasonRunContainerError, fmt.Sprintf("create log directory: %v", err))
	}
	spec := runtime.ContainerSpec{
		ID:     fmt.Sprintf("%s_%s_%d", pod.UID, c.spec.Name, number),
		PodUID: string(pod.UID), PodNamespace: pod.Namespace, PodName: pod.Name,
		ContainerName: c.spec.Name, Attempt: number,
		Argv: proc.Argv, Env: proc.Env, Dir: proc.Dir, UID: proc.UID, GID: proc.GID,
		NetNSPath: w.att.NetNSPath,
		LogPath:   logPath, LogMaxBytes: w.a.cfg.LogMaxBytes, LogMaxFiles: w.a.cfg.LogMaxFiles,
	}
	st, err := w.a.rt.Start(ctx, spec)
	if errors.Is(err, runtime.ErrExists) {
		// Left by an agent that died inside Start: clear it and retry once.
		if rerr := w.a.rt.Remove(spec.ID); rerr == nil {
			st, err = w.a.rt.Start(ctx, spec)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return time.Time{}
		}
		return fail(reasonRunContainerError, startMessage(c.spec.Name, spec.ID, err))
	}
	if c.prev != nil {
		w.removeAttempt(*c.prev)
	}
	c.prev, c.cur = c.cur, &st
	c.startFailed, c.waiting, c.lastFailMsg = time.Time{}, nil, ""
	w.log.Info("started container", "container", c.spec.Name, "pid", st.PID, "attempt", number, "argv", spec.Argv)
	w.event(c, corev1.EventTypeNormal, "Created", "Created container: %s", c.spec.Name)
	w.event(c, corev1.EventTypeNormal, "Started", "Started container %s", c.spec.Name)
	w.watchExit(c)
	w.startProbes(c, false, false)
	if lc := c.spec.Lifecycle; lc != nil && lc.PostStart != nil {
		w.postStart(ctx, pod, c, lc.PostStart)
	}
	return time.Time{}
}

// startMessage words a failed start for the container's status: the
// runtime's reason without its internal container ID.
func startMessage(name, id string, err error) string {
	msg := strings.TrimPrefix(err.Error(), "start container "+id+": ")
	msg = strings.TrimPrefix(msg, "start container: ")
	return fmt.Sprintf("failed to start container %q: %s", name, msg)
}

func (w *podWorker) reportedRestarts(pod *corev1.Pod, name string) (int, bool) {
	all := append(append([]corev1.ContainerStatus{}, pod.Status.ContainerStatuses...), pod.Status.InitContainerStatuses...)
	if cs, ok := findStatus(all, name); ok && cs.ContainerID != "" {
		return int(cs.RestartCount), true
	}
	return 0, false
}

func (w *podWorker) processOptions(ctx context.Context, pod *corev1.Pod) podspec.Options {
	o := podspec.Options{
		BerthPath: w.a.cfg.BerthPath,
		BaseEnv:   w.a.processEnv,
		Addresses: podspec.PodAddresses{HostIPs: []string{w.a.nodeIP.String()}},
		Root:      w.a.root,
		UID:       w.a.uid,
		Resolver:  w.a.resolver,
	}
	o.Allocatable = w.a.allocatable()
	o.ServiceEnv = w.a.serviceLinks(ctx, pod)
	if w.att != nil {
		o.Addresses.PodIPs = []string{w.att.IP.String()}
		if w.att.NetNSPath == "" {
			o.BindAddress = w.att.IP.String()
		}
	}
	return o
}

// removeAttempt deletes an old attempt's state and its log files.
func (w *podWorker) removeAttempt(st runtime.State) {
	if st.Running {
		return
	}
	if err := w.a.rt.Remove(st.ID); err != nil {
		w.log.Warn("remove old container", "container", st.Spec.ContainerName, "id", st.ID, "err", err)
	}
	if st.Spec.LogPath != "" {
		files, _ := filepath.Glob(st.Spec.LogPath + "*")
		for _, f := range files {
			os.Remove(f)
		}
	}
}

// gracePeriod is how long the Pod's containers get to stop.
func (w *podWorker) gracePeriod(pod *corev1.Pod) time.Duration {
	g := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		g = *pod.Spec.TerminationGracePeriodSeconds
	}
	if pod.DeletionGracePeriodSeconds != nil {
		g = *pod.DeletionGracePeriodSeconds
	}
	return time.Duration(max(g, 0)) * time.Second
}

// finish stops a Pod that reached a terminal phase and releases its
// network; its containers' state stays for kubectl logs.
func (w *podWorker) finish(ctx context.Context, pod *corev1.Pod) time.Time {
	w.finished = true
	anyRunning := false
	for _, c := range w.ctrs {
		if c.running() {
			anyRunning = true
			w.stop(c, w.gracePeriod(pod), "")
		}
		c.waiting = nil
	}
	if anyRunning || w.att == nil {
		return time.Time{}
	}
	if err := w.a.net.Teardown(ctx, string(pod.UID)); err != nil {
		w.log.Error("tear down network of finished pod", "err", err)
		return time.Now().Add(5 * time.Second)
	}
	w.releasedIP = w.att.IP.String()
	w.att = nil
	return time.Time{}
}

// syncTerminating stops a deleted Pod: Ready=False at once, then every
// container gets its preStop hook, SIGTERM and, after the grace period,
// SIGKILL; then everything is removed and the deletion confirmed.
func (w *podWorker) syncTerminating(ctx context.Context, pod *corev1.Pod, gone bool) (time.Duration, bool) {
	now := time.Now()
	grace := w.gracePeriod(pod)
	if !w.terminating {
		w.terminating, w.killStart, w.killGrace = true, now, grace
		w.log.Info("stopping pod", "gracePeriod", grace, "removed", gone)
		for _, c := range w.ctrs {
			if c.probes != nil {
				c.probes.stop()
				c.probes = nil
			}
			c.waiting = nil
		}
		if !gone {
			w.push(ctx, pod, w.status(pod, false), true)
		}
	} else if grace < w.killGrace {
		w.killGrace = grace
		for _, c := range w.ctrs {
			if c.stopping != nil {
				c.stopping.shorten(w.killStart.Add(grace))
			}
		}
	}
	if !gone && !w.drained {
		// Hold the stop until proxies no longer send this pod new
		// connections (see drain.go).
		waited := time.Since(w.killStart)
		if waited < drainWait(w.killGrace) && w.anyRunning() && w.a.endpointsReady(ctx, pod) {
			return drainPoll, false
		}
		if waited < drainWait(w.killGrace) && w.anyRunning() {
			if w.drainedAt.IsZero() {
				w.drainedAt = time.Now()
			}
			if time.Since(w.drainedAt) < drainMargin {
				return drainMargin - time.Since(w.drainedAt), false
			}
		}
		w.drained = true
	}
	anyRunning := false
	for _, c := range w.ctrs {
		if c.running() {
			anyRunning = true
			if c.stopping == nil {
				w.stop(c, time.Until(w.killStart.Add(w.killGrace)), "")
			}
		}
	}
	if anyRunning {
		if !gone {
			if d := w.push(ctx, pod, w.status(pod, false), false); !d.IsZero() {
				return time.Until(d), false
			}
		}
		return 0, false
	}

	if !w.cleanedUp {
		if !gone {
			w.push(ctx, pod, w.status(pod, true), true)
		}
		if err := w.cleanup(ctx, pod); err != nil {
			w.log.Error("clean up pod", "err", err)
			return 2 * time.Second, false
		}
		w.cleanedUp = true
	}
	if gone {
		w.log.Info("pod removed")
		return 0, true
	}
	return w.confirmDeletion(ctx, pod)
}

// cleanup removes the Pod's containers, network and logs.
func (w *podWorker) cleanup(ctx context.Context, pod *corev1.Pod) error {
	var errs []error
	for _, c := range w.ctrs {
		for _, st := range []*runtime.State{c.cur, c.prev} {
			if st != nil {
				if err := w.a.rt.Remove(st.ID); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if err := w.a.net.Teardown(ctx, string(pod.UID)); err != nil {
		errs = append(errs, err)
	} else {
		w.att = nil
	}
	if err := os.RemoveAll(w.a.podLogDir(pod.Namespace, pod.Name, pod.UID)); err != nil {
		errs = append(errs, err)
	}
	w.publish(nil)
	return errors.Join(errs...)
}

// status computes the Pod's status from what the worker knows; terminated
// says the Pod has been stopped for good.
func (w *podWorker) status(pod *corev1.Pod, terminated bool) corev1.PodStatus {
	v := podView{
		Containers:  make(map[string]containerView, len(w.ctrs)),
		HostIPs:     []string{w.a.nodeIP.String()},
		Sandbox:     w.att != nil,
		Terminating: w.terminating,
		Terminated:  terminated,
		Now:         time.Now(),
	}
	if w.att != nil {
		v.PodIPs = []string{w.att.IP.String()}
	} else if w.releasedIP != "" {
		v.PodIPs = []string{w.releasedIP}
	}
	for name, c := range w.ctrs {
		cv := containerView{Waiting: c.waiting}
		if c.cur != nil {
			cv.Current = attemptOf(*c.cur)
		}
		if c.prev != nil {
			cv.Previous = attemptOf(*c.prev)
		}
		if c.probes != nil {
			cv.Ready, cv.Started = c.probes.state()
		}
		v.Containers[name] = cv
	}
	old := pod.Status
	if w.reported != nil {
		old = *w.reported
	}
	s := computeStatus(pod, old, v)
	w.publish(&s)
	return s
}

// publish shares the worker's state with the agent API.
func (w *podWorker) publish(s *corev1.PodStatus) {
	v := workerView{status: s, att: w.att, attempts: map[string]runtime.State{}}
	for _, c := range w.ctrs {
		for _, st := range []*runtime.State{c.cur, c.prev} {
			if st != nil {
				v.attempts[st.ID] = *st
			}
		}
	}
	w.mu.Lock()
	if s == nil {
		v.status = w.view.status
	}
	w.view = v
	w.mu.Unlock()
}

func (w *podWorker) snapshot() workerView {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.view
}

func probeOf(c *corev1.Container, kind probe.Kind) *corev1.Probe {
	switch kind {
	case probe.Liveness:
		return c.LivenessProbe
	case probe.Startup:
		return c.StartupProbe
	}
	return c.ReadinessProbe
}
