package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestPodsLoopback runs the node agent checks with a 127.x address per pod.
func TestPodsLoopback(t *testing.T) {
	s := startServer(t, "--pod-network", "loopback", "--restart-backoff-base", "1s")
	podScenario(t, s, "loopback")
}

// TestPodsNetNS runs them with a network namespace per pod, inside a network
// namespace the test creates.
func TestPodsNetNS(t *testing.T) {
	if !runInNewNetNS(t) {
		return
	}
	s := startServer(t, "--pod-network", "netns", "--restart-backoff-base", "1s")
	podScenario(t, s, "netns")
}

func getPod(t *testing.T, s *server, name string) *corev1.Pod {
	t.Helper()
	out := s.mustKubectl("get", "pod", name, "-o", "json")
	var p corev1.Pod
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("decode pod %s: %v", name, err)
	}
	return &p
}

// containerPID finds the PID of the pod's process from the agent's state:
// the process that has the pod's name in HOSTNAME.
func containerPID(t *testing.T, podName string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(cmdline), "__shim") {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if kv == "HOSTNAME="+podName {
				return pid
			}
		}
	}
	return 0
}

func podScenario(t *testing.T, s *server, mode string) {
	// The node, with the Lease the agent renews (made at registration).
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _, _ = s.kubectl("describe", "node")
		if strings.Contains(out, "HolderIdentity:") || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{"Lease:", "HolderIdentity:", "RenewTime:", "KubeletReady"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe node: missing %q in:\n%s", want, out)
		}
	}

	// The seed pods answer on their own IPs with their own names.
	s.mustKubectl("apply", "-f", filepath.Join(examplesDir(), "pods.yaml"), "-f", filepath.Join(examplesDir(), "process-pod.yaml"))
	waitPodsReady(t, s, "foo", "bar")
	out = s.mustKubectl("get", "pods")
	for _, n := range []string{"foo", "bar"} {
		line := lineWith(out, n)
		if !strings.Contains(line, "1/1") || !strings.Contains(line, "Running") {
			t.Errorf("kubectl get pods: %q", line)
		}
		p := getPod(t, s, n)
		if p.Status.PodIP == "" || p.Status.HostIP == "" || len(p.Status.PodIPs) == 0 {
			t.Fatalf("pod %s: podIP %q hostIP %q podIPs %v", n, p.Status.PodIP, p.Status.HostIP, p.Status.PodIPs)
		}
		if mode == "loopback" && !strings.HasPrefix(p.Status.PodIP, "127.") {
			t.Errorf("loopback mode pod IP %s", p.Status.PodIP)
		}
		if mode == "netns" && !strings.HasPrefix(p.Status.PodIP, "10.244.") {
			t.Errorf("netns mode pod IP %s", p.Status.PodIP)
		}
		if got := getHostname(t, net.JoinHostPort(p.Status.PodIP, "3000")); got != n {
			t.Errorf("GET %s:3000/hostname = %q, want %q", p.Status.PodIP, got, n)
		}
	}
	// An ordinary program becomes Ready through its tcpSocket probe.
	if _, err := exec.LookPath("python3"); err == nil {
		waitPodsReady(t, s, "py")
	}

	t.Run("Kill9Restarts", func(t *testing.T) {
		pid := containerPID(t, "foo")
		if pid == 0 {
			t.Fatal("no process for pod foo")
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "foo to restart", func() (bool, string) {
			p := getPod(t, s, "foo")
			if len(p.Status.ContainerStatuses) == 0 {
				return false, "no status"
			}
			cs := p.Status.ContainerStatuses[0]
			return cs.RestartCount == 1 && cs.Ready && cs.LastTerminationState.Terminated != nil, fmt.Sprintf("%+v", cs)
		})
		if line := lineWith(s.mustKubectl("get", "pods"), "foo"); !strings.Contains(line, "1 (") {
			t.Errorf("RESTARTS column after kill -9: %q", line)
		}
	})

	t.Run("LivenessRestarts", func(t *testing.T) {
		s.mustKubectl("apply", "-f", writeFile(t, "live.yaml", `apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  containers:
  - name: web
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: ["netexec", "--http-port=3100"]
    livenessProbe:
      tcpSocket: {port: 3199}
      periodSeconds: 1
      failureThreshold: 2
`))
		eventually(t, 60*time.Second, "the failing liveness probe to restart live", func() (bool, string) {
			p := getPod(t, s, "live")
			return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].RestartCount >= 1, fmt.Sprintf("%+v", p.Status.ContainerStatuses)
		})
		if out := s.mustKubectl("describe", "pod", "live"); !strings.Contains(out, "Liveness probe failed") || !strings.Contains(out, "Unhealthy") {
			t.Errorf("describe pod live lacks the Unhealthy event:\n%s", out)
		}
	})

	t.Run("CrashLoopBackOff", func(t *testing.T) {
		s.mustKubectl("apply", "-f", writeFile(t, "crash.yaml", `apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "exit 1"]
`))
		var starts []time.Time
		eventually(t, 90*time.Second, "crash to reach CrashLoopBackOff with growing delays", func() (bool, string) {
			p := getPod(t, s, "crash")
			if len(p.Status.ContainerStatuses) == 0 {
				return false, "no status"
			}
			cs := p.Status.ContainerStatuses[0]
			if t0 := cs.LastTerminationState.Terminated; t0 != nil && (len(starts) == 0 || !starts[len(starts)-1].Equal(t0.StartedAt.Time)) {
				starts = append(starts, t0.StartedAt.Time)
			}
			waiting := cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff"
			return waiting && cs.RestartCount >= 3 && len(starts) >= 3, fmt.Sprintf("restarts=%d state=%+v starts=%v", cs.RestartCount, cs.State, starts)
		})
		if line := lineWith(s.mustKubectl("get", "pods"), "crash"); !strings.Contains(line, "CrashLoopBackOff") && !strings.Contains(line, "Error") {
			t.Errorf("kubectl get pods: %q", line)
		}
		gaps := []time.Duration{}
		for i := 1; i < len(starts); i++ {
			gaps = append(gaps, starts[i].Sub(starts[i-1]))
		}
		t.Logf("gaps between crash restarts: %v", gaps)
		if len(gaps) >= 2 && gaps[len(gaps)-1] < gaps[0] {
			t.Errorf("back-off delays do not grow: %v", gaps)
		}
	})

	t.Run("UnknownImageWithoutCommand", func(t *testing.T) {
		s.mustKubectl("apply", "-f", writeFile(t, "nginx.yaml", `apiVersion: v1
kind: Pod
metadata: {name: nginx}
spec:
  containers:
  - name: web
    image: nginx:1.27
`))
		eventually(t, 30*time.Second, "a waiting reason for nginx", func() (bool, string) {
			p := getPod(t, s, "nginx")
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Waiting == nil {
				return false, fmt.Sprintf("%+v", p.Status)
			}
			w := p.Status.ContainerStatuses[0].State.Waiting
			return w.Reason != "" && w.Reason != "ContainerCreating" && strings.Contains(w.Message, "command"), fmt.Sprintf("%+v", w)
		})
		reason := getPod(t, s, "nginx").Status.ContainerStatuses[0].State.Waiting.Reason
		if line := lineWith(s.mustKubectl("get", "pods"), "nginx"); !strings.Contains(line, reason) {
			t.Errorf("kubectl get pods does not show %s: %q", reason, line)
		}
		if out := s.mustKubectl("describe", "pod", "nginx"); !strings.Contains(out, reason) {
			t.Errorf("kubectl describe pod nginx does not show %s", reason)
		}
	})

	t.Run("DeleteIsGraceful", func(t *testing.T) {
		mark := filepath.Join(t.TempDir(), "got-term")
		s.mustKubectl("apply", "-f", writeFile(t, "term.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: term}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "trap 'echo term > %s; exit 0' TERM; while true; do sleep 0.1; done"]
`, mark)))
		waitPodsReady(t, s, "term")
		p := getPod(t, s, "term")
		pid := containerPID(t, "term")
		start := time.Now()
		s.mustKubectl("delete", "pod", "term", "--wait=true", "--timeout=30s")
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("delete took %s, longer than the grace period", d)
		}
		if b, err := os.ReadFile(mark); err != nil || strings.TrimSpace(string(b)) != "term" {
			t.Errorf("the process did not record SIGTERM: %v %q", err, b)
		}
		if pid != 0 {
			if err := syscall.Kill(pid, 0); err == nil {
				t.Errorf("process %d of the deleted pod is still alive", pid)
			}
		}
		if containerPID(t, "term") != 0 {
			t.Errorf("a process of the deleted pod remains")
		}
		if mode == "netns" {
			key := strings.ReplaceAll(string(p.UID), "-", "")[:12]
			if _, err := os.Stat("/run/netns/berth-" + key); err == nil {
				t.Errorf("the pod's network namespace remains")
			}
			if out, _ := exec.Command("ip", "link", "show", "vb-"+key).CombinedOutput(); !strings.Contains(string(out), "does not exist") {
				t.Errorf("the pod's veth remains: %s", out)
			}
		}
	})

	t.Run("ServerRestartKeepsPods", func(t *testing.T) {
		pid := containerPID(t, "bar")
		if pid == 0 {
			t.Fatal("no process for bar")
		}
		s.Restart()
		time.Sleep(2 * time.Second)
		waitPodsReady(t, s, "bar")
		if got := containerPID(t, "bar"); got != pid {
			t.Fatalf("bar's process changed across a server restart: %d -> %d", pid, got)
		}
		p := getPod(t, s, "bar")
		if p.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("bar restarted: %+v", p.Status.ContainerStatuses[0])
		}
	})

	t.Run("LogsAndExec", func(t *testing.T) {
		s.mustKubectl("apply", "-f", writeFile(t, "talk.yaml", `apiVersion: v1
kind: Pod
metadata: {name: talk}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "for i in 1 2 3; do echo line-$i; done; echo to-stderr >&2; sleep 0.2; echo last-line; exec sleep 3600"]
`))
		waitPodsReady(t, s, "talk")
		eventually(t, 10*time.Second, "kubectl logs", func() (bool, string) {
			out, errOut, _ := s.kubectl("logs", "talk")
			return strings.Contains(out, "line-1") && strings.Contains(out, "last-line") && strings.Contains(out, "to-stderr"), out + errOut
		})
		if out := s.mustKubectl("logs", "talk", "--tail=1"); strings.TrimSpace(out) != "last-line" {
			t.Errorf("logs --tail=1: %q", out)
		}
		if out := s.mustKubectl("logs", "talk", "--timestamps", "-c", "c"); !strings.Contains(out, "Z line-1") {
			t.Errorf("logs --timestamps: %q", out)
		}
		if out := s.mustKubectl("exec", "talk", "--", "sh", "-c", "echo exec-ok $HOSTNAME"); strings.TrimSpace(out) != "exec-ok talk" {
			t.Errorf("exec: %q", out)
		}
		if _, _, err := s.kubectl("exec", "talk", "--", "sh", "-c", "exit 3"); err == nil {
			t.Errorf("exec of a failing command succeeded")
		}
		if _, errOut, err := s.kubectl("logs", "crash", "--previous"); err != nil {
			t.Errorf("logs --previous: %v %s", err, errOut)
		}
	})
}

func lineWith(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return l
		}
	}
	return ""
}
