package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-project/berth/internal/agent/runtime"
)

// podLeftovers lists what the agent still holds for a pod: containers,
// network attachments and the log directory.
func podLeftovers(t *testing.T, a *Agent, p *corev1.Pod) []string {
	t.Helper()
	var out []string
	states, err := a.rt.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range states {
		if st.Spec.PodUID == string(p.UID) {
			out = append(out, "container "+st.ID)
		}
	}
	atts, err := a.net.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, att := range atts {
		if att.PodUID == string(p.UID) {
			out = append(out, "network "+att.IP.String())
		}
	}
	if _, err := os.Stat(a.podLogDir(p.Namespace, p.Name, p.UID)); err == nil {
		out = append(out, "logs")
	}
	return out
}

func TestGracefulDeletion(t *testing.T) {
	h := newHarness(t)
	a := h.start()
	dir := t.TempDir()
	c := sh("app", `trap 'echo term > `+dir+`/termed; exit 0' TERM; echo up; while true; do sleep 0.1; done`)
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
		Command: []string{"/bin/sh", "-c", "echo $HOSTNAME > " + dir + "/prestop"},
	}}}
	p := h.create(pod("graceful", c))
	p = h.waitPod("graceful", "Ready", 20*time.Second, isReady)
	pid := pidOf(t, a, p, "app")

	start := time.Now()
	h.delete("graceful")
	// Not ready at once, while the process still runs.
	h.waitFor("a status with Ready=False while terminating", 5*time.Second, func() bool {
		for _, u := range h.statusUpdates(p.UID) {
			if u.DeletionTimestamp != nil && !isReady(&u) {
				return true
			}
		}
		return false
	})
	h.waitFor("pod removed from the API", 10*time.Second, func() bool {
		_, err := h.get("graceful")
		return err != nil
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("deletion took %v, more than the 5s grace period", d)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "prestop")); err != nil || string(b) != "graceful\n" {
		t.Errorf("preStop hook: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "termed")); err != nil || string(b) != "term\n" {
		t.Errorf("SIGTERM did not reach the process: %q %v", b, err)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("process %d still alive", pid)
	}
	h.waitFor("cleanup", 5*time.Second, func() bool { return len(podLeftovers(t, a, p)) == 0 })
	h.waitEvent(p, "Killing", "spec.containers{app}: Stopping container app", 5*time.Second)
	// The last status written says how it ended.
	ups := h.statusUpdates(p.UID)
	last := ups[len(ups)-1]
	if last.Status.Phase != corev1.PodSucceeded {
		t.Errorf("final status: %s", describeStatus(&last))
	}
}

func TestKillAfterGracePeriod(t *testing.T) {
	h := newHarness(t)
	a := h.start()
	p := pod("stubborn", sh("app", `trap '' TERM; echo up; while true; do sleep 0.1; done`))
	grace := int64(1)
	p.Spec.TerminationGracePeriodSeconds = &grace
	p = h.create(p)
	p = h.waitPod("stubborn", "Ready", 20*time.Second, isReady)
	pid := pidOf(t, a, p, "app")
	start := time.Now()
	h.delete("stubborn")
	h.waitFor("pod removed from the API", 15*time.Second, func() bool {
		_, err := h.get("stubborn")
		return err != nil
	})
	// SIGTERM is ignored: SIGKILL comes after the grace period (at least
	// the kubelet's two seconds).
	if d := time.Since(start); d < 1900*time.Millisecond || d > 8*time.Second {
		t.Errorf("pod gone after %v", d)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("process %d still alive", pid)
	}
	ups := h.statusUpdates(p.UID)
	last := ups[len(ups)-1]
	if cs := containerStatusOf(&last, "app"); last.Status.Phase != corev1.PodFailed || cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 137 {
		t.Errorf("final status: %s", describeStatus(&last))
	}
	if left := podLeftovers(t, a, p); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestAdoptionAfterRestart(t *testing.T) {
	h := newHarness(t)
	a := h.start()
	c := sh("app", "echo up; exec sleep 1000")
	// A readiness probe that takes a while: right after the restart its
	// state is unknown, and the pod must stay Ready meanwhile.
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "sleep 1.5"}}},
		PeriodSeconds: 2, TimeoutSeconds: 5, SuccessThreshold: 1, FailureThreshold: 3,
	}
	p := h.create(pod("adopt", c))
	p = h.waitPod("adopt", "Ready", 20*time.Second, isReady)
	pid := pidOf(t, a, p, "app")
	id := containerStatusOf(p, "app").ContainerID

	h.stop()
	if syscall.Kill(pid, 0) != nil {
		t.Fatal("stopping the agent stopped the container")
	}
	before := len(h.statusUpdates(p.UID))
	a = h.start()
	time.Sleep(3 * time.Second) // adoption, a probe period and then some
	p, _ = h.get("adopt")
	cs := containerStatusOf(p, "app")
	if cs.ContainerID != id || cs.RestartCount != 0 || cs.State.Running == nil || !isReady(p) {
		t.Fatalf("after adoption: %s (id %s, was %s)", describeStatus(p), cs.ContainerID, id)
	}
	if got := pidOf(t, a, p, "app"); got != pid {
		t.Fatalf("pid %d after adoption, was %d", got, pid)
	}
	for _, u := range h.statusUpdates(p.UID)[before:] {
		if !isReady(&u) {
			t.Fatalf("the adopting agent reported the pod not ready: %s", describeStatus(&u))
		}
	}
	if n := len(h.events(p, "Started")); n != 1 {
		t.Errorf("%d Started events, want 1", n)
	}
	// The adopted container is still supervised: kill it and it restarts.
	syscall.Kill(pid, syscall.SIGKILL)
	h.waitPod("adopt", "restart of the adopted container", 20*time.Second, func(p *corev1.Pod) bool {
		cs := containerStatusOf(p, "app")
		return cs.RestartCount == 1 && cs.State.Running != nil
	})
	h.delete("adopt")
	h.waitFor("pod removed", 15*time.Second, func() bool { _, err := h.get("adopt"); return err != nil })
}

func TestOrphansAreRemovedAtStart(t *testing.T) {
	h := newHarness(t)
	a := h.start()
	p := h.create(pod("keep", sh("app", "exec sleep 1000")))
	h.waitPod("keep", "Ready", 20*time.Second, isReady)
	h.stop()

	// Leave a container and an address for a pod the API never heard of,
	// as if it had been force-deleted while the agent was down.
	orphanUID := types.UID("0badc0de-0000-4000-8000-000000000001")
	st, err := a.rt.Start(context.Background(), runtime.ContainerSpec{
		ID: string(orphanUID) + "_app_0", PodUID: string(orphanUID), PodNamespace: "default", PodName: "ghost", ContainerName: "app",
		Argv: []string{"/bin/sh", "-c", "exec sleep 1000"}, Env: []string{"BERTH_AGENT_TEST=" + h.mark},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := h.config()
	a2, err := New(cfg) // a throwaway agent only to reach its network
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a2.net.Setup(context.Background(), string(orphanUID), "default", "ghost"); err != nil {
		t.Fatal(err)
	}
	a2.net.Close()
	os.MkdirAll(a.podLogDir("default", "ghost", orphanUID), 0o755)

	a = h.start()
	ghost := &corev1.Pod{}
	ghost.UID, ghost.Namespace, ghost.Name = orphanUID, "default", "ghost"
	h.waitFor("orphan removed", 15*time.Second, func() bool { return len(podLeftovers(t, a, ghost)) == 0 })
	if syscall.Kill(st.PID, 0) == nil {
		t.Errorf("orphaned process %d still alive", st.PID)
	}
	if left := podLeftovers(t, a, p); len(left) != 3 || !strings.HasPrefix(left[0], "container ") {
		t.Errorf("the live pod lost its state: %v", left)
	}
}

func TestInitContainersRunInOrder(t *testing.T) {
	h := newHarness(t)
	a := h.start()
	dir := t.TempDir()
	p := pod("init", sh("app", "cat "+dir+"/order; exec sleep 1000"))
	p.Spec.InitContainers = []corev1.Container{
		{Name: "first", Image: "busybox", Command: []string{"/bin/sh", "-c", "sleep 0.3; echo first >> " + dir + "/order"}},
		{Name: "second", Image: "busybox", Command: []string{"/bin/sh", "-c", "echo second >> " + dir + "/order"}},
	}
	p = h.create(p)
	sawInit := false
	p = h.waitPod("init", "Running", 20*time.Second, func(p *corev1.Pod) bool {
		if p.Status.Phase == corev1.PodPending && len(p.Status.InitContainerStatuses) == 2 && p.Status.InitContainerStatuses[0].State.Running != nil {
			sawInit = true
		}
		return p.Status.Phase == corev1.PodRunning && isReady(p)
	})
	if !sawInit {
		t.Log("did not catch the first init container running (it is short)")
	}
	for _, cs := range p.Status.InitContainerStatuses {
		if cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed" || !cs.Ready {
			t.Errorf("init container %s: %+v", cs.Name, cs.State)
		}
	}
	h.waitFor("log", 5*time.Second, func() bool { return readLog(t, a, p, "app", false) == "first\nsecond\n" })
}

func TestInitContainerFailureWithNeverFailsThePod(t *testing.T) {
	h := newHarness(t)
	h.start()
	p := pod("initfail", sh("app", "exec sleep 1000"))
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "busybox", Command: []string{"/bin/sh", "-c", "exit 3"}}}
	h.create(p)
	p = h.waitPod("initfail", "Failed", 20*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if w := containerStatusOf(p, "app").State.Waiting; w == nil || w.Reason != reasonPodInitializing {
		t.Errorf("app never started, want PodInitializing: %s", describeStatus(p))
	}
}

func TestRestartPolicyNever(t *testing.T) {
	h := newHarness(t)
	a := h.start()
	ok := pod("done", sh("app", "echo finished"))
	ok.Spec.RestartPolicy = corev1.RestartPolicyNever
	ok = h.create(ok)
	bad := pod("broken", sh("app", "echo failing; exit 2"))
	bad.Spec.RestartPolicy = corev1.RestartPolicyNever
	bad = h.create(bad)
	p := h.waitPod("done", "Succeeded", 20*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if cs := containerStatusOf(p, "app"); cs.State.Terminated == nil || cs.State.Terminated.Reason != "Completed" || cs.RestartCount != 0 {
		t.Errorf("status %s", describeStatus(p))
	}
	h.waitPod("broken", "Failed", 20*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	// The address is released, the logs stay.
	h.waitFor("network released", 5*time.Second, func() bool {
		l := podLeftovers(t, a, ok)
		return len(l) == 2 && !strings.HasPrefix(l[1], "network")
	})
	if got := readLog(t, a, p, "app", false); got != "finished\n" {
		t.Errorf("log %q", got)
	}
	if p.Status.PodIP == "" {
		t.Error("a finished pod keeps showing its IP")
	}
	// Deleting a finished pod is immediate and cleans up.
	h.delete("done")
	h.waitFor("cleanup", 10*time.Second, func() bool { return len(podLeftovers(t, a, ok)) == 0 })
}

// TestServiceLinks: containers get the kubelet's service-link variables
// for the Services that exist when they start, in their env and in $(VAR)
// references of their command.
func TestServiceLinks(t *testing.T) {
	h := newHarness(t)
	for _, s := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "demo"}, Spec: corev1.ServiceSpec{ClusterIP: "127.96.0.10", Ports: []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "elsewhere", Name: "db"}, Spec: corev1.ServiceSpec{ClusterIP: "127.96.0.11", Ports: []corev1.ServicePort{{Port: 5432, Protocol: corev1.ProtocolTCP}}}},
	} {
		if _, err := h.client.CoreV1().Services(s.Namespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	a := h.start()
	p := pod("links", sh("app", `echo "$(DEMO_SERVICE_HOST) $DEMO_SERVICE_PORT_HTTP $DEMO_PORT_8080_TCP db=${DB_SERVICE_HOST:-none}"`))
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	p = h.create(p)
	h.waitPod("links", "Succeeded", 20*time.Second, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if got, want := readLog(t, a, p, "app", false), "127.96.0.10 8080 tcp://127.96.0.10:8080 db=none\n"; got != want {
		t.Errorf("log %q, want %q", got, want)
	}
}
