package agent

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/berth-project/berth/internal/agent/probe"
)

// minKillWait is the least time a container gets between SIGTERM and
// SIGKILL, even when its grace period or preStop hook used everything up
// (the kubelet's minimumGracePeriodInSeconds).
const minKillWait = 2 * time.Second

// hookTimeout bounds a postStart hook, which blocks the Pod's sync.
const hookTimeout = 2 * time.Minute

// stopper stops one container attempt in the background.
type stopper struct {
	deadline chan time.Time // a shorter deadline (a second, quicker delete)
}

func (s *stopper) shorten(t time.Time) {
	select {
	case s.deadline <- t:
	default:
	}
}

// stop stops c's running attempt within grace: the preStop hook, SIGTERM to
// its process group, and SIGKILL when the time is up. message is the
// Killing event's text ("" for the usual "Stopping container x").
func (w *podWorker) stop(c *ctr, grace time.Duration, message string) {
	if c.stopping != nil || !c.running() {
		return
	}
	if message == "" {
		message = fmt.Sprintf("Stopping container %s", c.spec.Name)
	}
	w.event(c, corev1.EventTypeNormal, "Killing", "%s", message)
	s := &stopper{deadline: make(chan time.Time, 1)}
	c.stopping = s
	st := *c.cur
	name, fieldPath := c.spec.Name, c.fieldPath()
	var preStop *corev1.LifecycleHandler
	if lc := c.spec.Lifecycle; lc != nil {
		preStop = lc.PreStop
	}
	var target probe.Target
	if w.att != nil {
		target.PodIP = w.att.IP.String()
	}
	target.Ports = c.spec.Ports
	target.Exec = containerExec{rt: w.a.rt, st: st}
	deadline := time.Now().Add(max(grace, 0))
	w.goFunc(func() {
		defer w.wake()
		ctx := w.ctx
		if preStop != nil && grace > 0 {
			hctx, cancel := context.WithDeadline(ctx, deadline)
			done := make(chan error, 1)
			go func() { done <- w.runHook(hctx, preStop, target) }()
			var err error
		hook:
			for {
				select {
				case err = <-done:
					break hook
				case t := <-s.deadline:
					if t.Before(deadline) {
						deadline = t
						cancel()
					}
				}
			}
			cancel()
			if err != nil && ctx.Err() == nil {
				w.eventAt(fieldPath, corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err := w.a.rt.Signal(st.ID, syscall.SIGTERM); err != nil {
			w.log.Warn("send SIGTERM", "container", name, "err", err)
		}
		killAt := deadline
		if d := time.Now().Add(minKillWait); killAt.Before(d) {
			killAt = d
		}
		wctx, cancelWait := context.WithCancel(ctx)
		defer cancelWait()
		exited := make(chan struct{})
		go func() {
			w.a.rt.Wait(wctx, st.ID)
			close(exited)
		}()
		timer := time.NewTimer(time.Until(killAt))
		defer timer.Stop()
		for {
			select {
			case <-exited:
				return
			case <-ctx.Done():
				return
			case t := <-s.deadline:
				if d := time.Now().Add(minKillWait); t.Before(d) {
					t = d
				}
				if t.Before(killAt) {
					killAt = t
					timer.Reset(time.Until(killAt))
				}
			case <-timer.C:
				w.log.Info("grace period over, killing container", "container", name)
				if err := w.a.rt.Signal(st.ID, syscall.SIGKILL); err != nil {
					w.log.Warn("send SIGKILL", "container", name, "err", err)
				}
				select {
				case <-exited:
				case <-ctx.Done():
				}
				return
			}
		}
	})
}

// runHook runs a lifecycle handler against the container.
func (w *podWorker) runHook(ctx context.Context, h *corev1.LifecycleHandler, t probe.Target) error {
	switch {
	case h.Exec != nil:
		if len(h.Exec.Command) == 0 {
			return fmt.Errorf("exec hook has no command")
		}
		var out bytes.Buffer
		code, err := t.Exec.Exec(ctx, h.Exec.Command, &limitWriter{w: &out, n: 10 << 10})
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("command %q exited with %d: %s", strings.Join(h.Exec.Command, " "), code, strings.TrimSpace(out.String()))
		}
		return nil
	case h.HTTPGet != nil:
		timeout := time.Minute
		if d, ok := ctx.Deadline(); ok {
			timeout = time.Until(d)
		}
		res, out := w.a.prober.Do(ctx, &corev1.ProbeHandler{HTTPGet: h.HTTPGet}, timeout, t)
		if res != probe.Success {
			return fmt.Errorf("%s", out)
		}
		return nil
	case h.Sleep != nil:
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	case h.TCPSocket != nil:
		return fmt.Errorf("tcpSocket lifecycle hooks are not supported")
	}
	return fmt.Errorf("lifecycle hook has no action")
}

// postStart runs the postStart hook; if it fails the container is killed,
// as the kubelet does, and restarts by its policy.
func (w *podWorker) postStart(ctx context.Context, pod *corev1.Pod, c *ctr, h *corev1.LifecycleHandler) {
	t := probe.Target{Ports: c.spec.Ports, Exec: containerExec{rt: w.a.rt, st: *c.cur}}
	if w.att != nil {
		t.PodIP = w.att.IP.String()
	}
	hctx, cancel := context.WithTimeout(ctx, hookTimeout)
	defer cancel()
	if err := w.runHook(hctx, h, t); err != nil && ctx.Err() == nil {
		w.log.Warn("postStart hook failed", "container", c.spec.Name, "err", err)
		w.event(c, corev1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed: %v", err)
		w.stop(c, w.gracePeriod(pod), "FailedPostStartHook")
	}
}

// limitWriter keeps the first n bytes and accepts the rest.
type limitWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(l.n, len(p))
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
