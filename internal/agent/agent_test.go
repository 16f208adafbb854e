package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-project/berth/internal/agent/logs"
	"github.com/berth-project/berth/internal/agent/server"
)

// readLog reads a container's current log through the agent API backend.
func readLog(t *testing.T, a *Agent, p *corev1.Pod, container string, previous bool) string {
	t.Helper()
	lf, err := a.ContainerLog(context.Background(), server.ContainerRef{PodRef: server.PodRef{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID)}, Container: container}, previous)
	if err != nil {
		t.Fatalf("ContainerLog: %v", err)
	}
	var buf bytes.Buffer
	if err := logs.ReadLogs(context.Background(), lf.Path, logs.Options{}, &buf); err != nil {
		t.Fatalf("ReadLogs: %v", err)
	}
	return buf.String()
}

func TestPodRunsAndBecomesReady(t *testing.T) {
	h := newHarness(t)
	a := h.start()
	c := sh("app", `echo "pod=$POD_NAME ns=$POD_NS ip=$POD_IP host=$HOST_IP node=$NODE app=$APP hostname=$HOSTNAME bind=$BERTH_BIND_ADDRESS greeting=$(GREETING) keep=\$$(GREETING) cwd=$(pwd)"; exec sleep 1000`)
	c.Args = nil
	c.Command = []string{"/bin/sh", "-c", c.Command[2] /* expanded by the agent */}
	c.WorkingDir = "/tmp"
	c.Env = []corev1.EnvVar{
		{Name: "GREETING", Value: "hello"},
		fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NS", "metadata.namespace"),
		fieldEnv("POD_IP", "status.podIP"), fieldEnv("HOST_IP", "status.hostIP"),
		fieldEnv("NODE", "spec.nodeName"), fieldEnv("APP", "metadata.labels['app']"),
	}
	p := h.create(pod("web", c))

	p = h.waitPod("web", "Running and Ready", 20*time.Second, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && isReady(p)
	})
	cs := containerStatusOf(p, "app")
	if cs.State.Running == nil || !cs.Ready || cs.RestartCount != 0 || !strings.HasPrefix(cs.ContainerID, "berth://") || cs.Started == nil || !*cs.Started {
		t.Fatalf("container status %+v", cs)
	}
	if !strings.HasPrefix(p.Status.PodIP, strings.TrimSuffix(h.cidr, "0/24")) || p.Status.HostIP != "127.0.0.1" || len(p.Status.PodIPs) != 1 || len(p.Status.HostIPs) != 1 {
		t.Fatalf("pod IP %q host IP %q (cidr %s)", p.Status.PodIP, p.Status.HostIP, h.cidr)
	}
	h.waitFor("log line", 10*time.Second, func() bool { return strings.Contains(readLog(t, a, p, "app", false), "pod=") })
	want := "pod=web ns=default ip=" + p.Status.PodIP + " host=127.0.0.1 node=node-1 app=web hostname=web bind=" + p.Status.PodIP + " greeting=hello keep=$(GREETING) cwd=/tmp\n"
	if got := readLog(t, a, p, "app", false); got != want {
		t.Fatalf("log:\n got %q\nwant %q", got, want)
	}
	h.waitEvent(p, "Created", "spec.containers{app}: Created container: app", 5*time.Second)
	h.waitEvent(p, "Started", "spec.containers{app}: Started container app", 5*time.Second)

	node, err := h.client.CoreV1().Nodes().Get(context.Background(), testNode, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.Annotations[EndpointAnnotation] != a.Endpoint() || !strings.HasPrefix(a.Endpoint(), "https://127.0.0.1:") {
		t.Errorf("endpoint annotation %q, agent %q", node.Annotations[EndpointAnnotation], a.Endpoint())
	}
	ready := false
	for _, c := range node.Status.Conditions {
		ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
	}
	if !ready || node.Status.DaemonEndpoints.KubeletEndpoint.Port == 0 || node.Status.NodeInfo.KubeletVersion == "" ||
		!strings.HasPrefix(node.Status.NodeInfo.ContainerRuntimeVersion, "berth://") || node.Status.Allocatable.Pods().Value() != 110 {
		t.Errorf("node status %+v", node.Status)
	}
	if len(node.Status.Addresses) != 2 || node.Status.Addresses[0].Address != "127.0.0.1" {
		t.Errorf("node addresses %+v", node.Status.Addresses)
	}

	// The node Lease, renewed on every heartbeat (1s here).
	lease, err := h.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(context.Background(), testNode, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("node lease: %v", err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != testNode || lease.Spec.RenewTime == nil ||
		lease.Spec.LeaseDurationSeconds == nil || *lease.Spec.LeaseDurationSeconds != 40 ||
		len(lease.OwnerReferences) != 1 || lease.OwnerReferences[0].UID != node.UID || lease.OwnerReferences[0].Kind != "Node" {
		t.Fatalf("node lease %+v", lease)
	}
	first := lease.Spec.RenewTime.Time
	h.waitFor("lease renewed", 5*time.Second, func() bool {
		l, err := h.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(context.Background(), testNode, metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(first)
	})
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// pidOf returns the pid of the container's current attempt.
func pidOf(t *testing.T, a *Agent, p *corev1.Pod, container string) int {
	t.Helper()
	cs := containerStatusOf(p, container)
	st, err := a.rt.State(strings.TrimPrefix(cs.ContainerID, ContainerIDScheme))
	if err != nil {
		t.Fatal(err)
	}
	return st.PID
}

func TestKilledContainerIsRestarted(t *testing.T) {
	h := newHarness(t)
	a := h.start()
	p := h.create(pod("victim", sh("app", "echo started; exec sleep 1000")))
	p = h.waitPod("victim", "Ready", 20*time.Second, isReady)
	pid := pidOf(t, a, p, "app")
	syscall.Kill(pid, syscall.SIGKILL)
	p = h.waitPod("victim", "restarted", 20*time.Second, func(p *corev1.Pod) bool {
		cs := containerStatusOf(p, "app")
		return cs.RestartCount == 1 && cs.State.Running != nil && isReady(p)
	})
	cs := containerStatusOf(p, "app")
	lt := cs.LastTerminationState.Terminated
	if lt == nil || lt.ExitCode != 137 || lt.Reason != "Error" || lt.ContainerID == cs.ContainerID {
		t.Fatalf("last state %+v", cs.LastTerminationState)
	}
	if newPID := pidOf(t, a, p, "app"); newPID == pid {
		t.Fatal("same pid after restart")
	}
	if got := readLog(t, a, p, "app", true); got != "started\n" {
		t.Fatalf("previous log %q", got)
	}
}

func TestLivenessFailureRestarts(t *testing.T) {
	h := newHarness(t)
	h.start()
	dir := t.TempDir()
	// Healthy until the flag file goes away.
	flag := filepath.Join(dir, "healthy")
	os.WriteFile(flag, nil, 0o644)
	c := sh("app", "exec sleep 1000")
	c.LivenessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "test -f " + flag + " || { echo sick; exit 1; }"}}},
		PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 2,
	}
	p := h.create(pod("live", c))
	h.waitPod("live", "Ready", 20*time.Second, isReady)
	os.Remove(flag)
	p = h.waitPod("live", "restarted by liveness", 30*time.Second, func(p *corev1.Pod) bool {
		return containerStatusOf(p, "app").RestartCount >= 1
	})
	h.waitEvent(p, "Unhealthy", "spec.containers{app}: Liveness probe failed: sick", 5*time.Second)
	h.waitEvent(p, "Killing", "Container app failed liveness probe, will be restarted", 5*time.Second)
	os.WriteFile(flag, nil, 0o644)
	h.waitPod("live", "running again", 20*time.Second, func(p *corev1.Pod) bool {
		return containerStatusOf(p, "app").State.Running != nil && isReady(p)
	})
}

func TestCrashLoopBackOff(t *testing.T) {
	h := newHarness(t)
	h.start()
	p := h.create(pod("crash", sh("app", "echo crashing; exit 1")))
	prefix := "back-off %s restarting failed container=app pod=crash_default(" + string(p.UID) + ")"
	seen := map[string]time.Time{}
	h.waitPod("crash", "back-off to grow to 4s", 60*time.Second, func(p *corev1.Pod) bool {
		if w := containerStatusOf(p, "app").State.Waiting; w != nil && w.Reason == reasonCrashLoopBackOff {
			if _, ok := seen[w.Message]; !ok {
				seen[w.Message] = time.Now()
			}
		}
		_, ok := seen[strings.Replace(prefix, "%s", "4s", 1)]
		return ok
	})
	for _, d := range []string{"1s", "2s", "4s"} {
		if _, ok := seen[strings.Replace(prefix, "%s", d, 1)]; !ok {
			t.Errorf("never saw %q; saw %v", strings.Replace(prefix, "%s", d, 1), seen)
		}
	}
	// The 1s back-off really waited: the 2s one is seen about 1s later. The
	// 1s message can be held back by up to statusMinInterval (it follows a
	// start that was just written) while the 2s one goes out at once, so
	// the bound leaves that much room; without a back-off it would be ~50ms.
	if t1, t2 := seen[strings.Replace(prefix, "%s", "1s", 1)], seen[strings.Replace(prefix, "%s", "2s", 1)]; !t2.After(t1.Add(time.Second - statusMinInterval - 100*time.Millisecond)) {
		t.Errorf("the 2s back-off came %v after the 1s one", t2.Sub(t1))
	}
	p, _ = h.get("crash")
	cs := containerStatusOf(p, "app")
	if cs.RestartCount < 3 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 1 || p.Status.Phase != corev1.PodRunning {
		t.Errorf("status %s", describeStatus(p))
	}
	h.waitEvent(p, "BackOff", "Back-off restarting failed container app in pod crash_default(", 5*time.Second)
}

func TestImageWithoutCommand(t *testing.T) {
	h := newHarness(t)
	h.start()
	p := h.create(pod("nginx", corev1.Container{Name: "web", Image: "nginx:1.25"}))
	p = h.waitPod("nginx", "CommandRequired", 20*time.Second, func(p *corev1.Pod) bool {
		w := containerStatusOf(p, "web").State.Waiting
		return w != nil && w.Reason == "CommandRequired"
	})
	w := containerStatusOf(p, "web").State.Waiting
	want := `berth runs containers as local processes and cannot run image "nginx:1.25" without a command; set spec.containers[0].command, or use registry.k8s.io/e2e-test-images/agnhost`
	if w.Message != want || p.Status.Phase != corev1.PodPending {
		t.Fatalf("waiting %+v phase %s", w, p.Status.Phase)
	}
	h.waitEvent(p, "Failed", "Error: "+want, 5*time.Second)
}

func TestMissingExecutable(t *testing.T) {
	h := newHarness(t)
	h.start()
	p := h.create(pod("missing", corev1.Container{Name: "app", Command: []string{"no-such-binary-berth", "--flag"}}))
	p = h.waitPod("missing", "RunContainerError", 20*time.Second, func(p *corev1.Pod) bool {
		w := containerStatusOf(p, "app").State.Waiting
		return w != nil && w.Reason == reasonRunContainerError
	})
	w := containerStatusOf(p, "app").State.Waiting
	if !strings.Contains(w.Message, `"no-such-binary-berth"`) || !strings.Contains(w.Message, "executable file not found") {
		t.Fatalf("message %q", w.Message)
	}
	h.waitEvent(p, "Failed", "executable file not found", 5*time.Second)
}
