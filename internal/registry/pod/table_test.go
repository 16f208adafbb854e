package pod

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

func running(ready bool) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: "c", Ready: ready, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(time.Hour)}}}
}

func waiting(reason string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
}

func terminated(reason string, code, signal int32) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code, Signal: signal}}
}

func lastTerminated(d time.Duration) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: ago(d)}}
}

// testPod has containers named c0.. and init containers i0.. as given.
func testPod(containers, inits int, mods ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", CreationTimestamp: ago(2 * time.Hour)}}
	for i := 0; i < containers; i++ {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "x"})
	}
	for i := 0; i < inits; i++ {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: fmt.Sprintf("i%d", i), Image: "x"})
	}
	p.Status.Phase = corev1.PodRunning
	for _, m := range mods {
		m(p)
	}
	return p
}

func TestSummarize(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name     string
		pod      *corev1.Pod
		ready    string
		reason   string
		restarts string
	}{
		{"pending, nothing reported", testPod(1, 0, func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }), "0/1", "Pending", "0"},
		{"running and ready", testPod(2, 0, func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running(true), running(true)}
		}), "2/2", "Running", "0"},
		{"running, one not ready", testPod(2, 0, func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running(true), running(false)}
		}), "1/2", "Running", "0"},
		{"crash loop with restarts", testPod(1, 0, func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c0", RestartCount: 4, State: waiting("CrashLoopBackOff"), LastTerminationState: lastTerminated(30 * time.Second)}}
		}), "0/1", "CrashLoopBackOff", "4 (30s ago)"},
		{"restarts without a last termination", testPod(1, 0, func(p *corev1.Pod) {
			cs := running(true)
			cs.RestartCount = 3
			p.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
		}), "1/1", "Running", "3"},
		{"restarts summed, newest restart shown", testPod(2, 0, func(p *corev1.Pod) {
			a, b := running(true), running(true)
			a.RestartCount, a.LastTerminationState = 2, lastTerminated(10*time.Minute)
			b.RestartCount, b.LastTerminationState = 1, lastTerminated(90*time.Second)
			p.Status.ContainerStatuses = []corev1.ContainerStatus{a, b}
		}), "2/2", "Running", "3 (90s ago)"},
		{"completed", testPod(1, 0, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodSucceeded
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c0", State: terminated("Completed", 0, 0)}}
		}), "0/1", "Completed", "0"},
		{"error exit", testPod(1, 0, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c0", State: terminated("Error", 1, 0)}}
		}), "0/1", "Error", "0"},
		{"exit code without a reason", testPod(1, 0, func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c0", State: terminated("", 137, 0)}}
		}), "0/1", "ExitCode:137", "0"},
		{"signal without a reason", testPod(1, 0, func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c0", State: terminated("", 0, 9)}}
		}), "0/1", "Signal:9", "0"},
		{"completed container with another running and ready", testPod(2, 0, func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running(true), {Name: "c1", State: terminated("Completed", 0, 0)}}
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}), "1/2", "Running", "0"},
		{"completed container with another running, pod not ready", testPod(2, 0, func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running(true), {Name: "c1", State: terminated("Completed", 0, 0)}}
		}), "1/2", "NotReady", "0"},
		{"terminating", testPod(1, 0, func(p *corev1.Pod) {
			ts := ago(0)
			p.DeletionTimestamp = &ts
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running(true)}
		}), "1/1", "Terminating", "0"},
		{"terminating but already succeeded", testPod(1, 0, func(p *corev1.Pod) {
			ts := ago(0)
			p.DeletionTimestamp = &ts
			p.Status.Phase = corev1.PodSucceeded
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c0", State: terminated("Completed", 0, 0)}}
		}), "0/1", "Completed", "0"},
		{"node lost", testPod(1, 0, func(p *corev1.Pod) {
			ts := ago(0)
			p.DeletionTimestamp = &ts
			p.Status.Reason = "NodeLost"
		}), "0/1", "Unknown", "0"},
		{"evicted", testPod(1, 0, func(p *corev1.Pod) {
			p.Status.Phase, p.Status.Reason = corev1.PodFailed, "Evicted"
		}), "0/1", "Evicted", "0"},
		{"scheduling gated", testPod(1, 0, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonSchedulingGated}}
		}), "0/1", "SchedulingGated", "0"},
		{"init container not started", testPod(1, 1, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i0", State: waiting("PodInitializing")}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c0", State: waiting("PodInitializing")}}
		}), "0/1", "Init:0/1", "0"},
		{"second of two init containers running", testPod(1, 2, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i0", State: terminated("Completed", 0, 0)}, {Name: "i1", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		}), "0/1", "Init:1/2", "0"},
		{"init container crash loop", testPod(1, 1, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i0", RestartCount: 2, State: waiting("CrashLoopBackOff"), LastTerminationState: lastTerminated(5 * time.Second)}}
		}), "0/1", "Init:CrashLoopBackOff", "2 (5s ago)"},
		{"init container failed", testPod(1, 1, func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i0", State: terminated("Error", 1, 0)}}
		}), "0/1", "Init:Error", "0"},
		{"init container exit code", testPod(1, 1, func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i0", State: terminated("", 2, 0)}}
		}), "0/1", "Init:ExitCode:2", "0"},
		{"init container signal", testPod(1, 1, func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i0", State: terminated("", 137, 9)}}
		}), "0/1", "Init:Signal:9", "0"},
		{"init container exit 0 counts as done, whatever the signal", testPod(1, 1, func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i0", State: terminated("", 0, 9)}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running(true)}
		}), "1/1", "Running", "0"},
		{"init containers done: their restarts no longer count", testPod(1, 1, func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i0", RestartCount: 3, State: terminated("Completed", 0, 0), LastTerminationState: lastTerminated(time.Hour)}}
			cs := running(true)
			cs.RestartCount, cs.LastTerminationState = 1, lastTerminated(2*time.Minute)
			p.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
		}), "1/1", "Running", "1 (2m ago)"},
		{"sidecar counts as a container", testPod(1, 1, func(p *corev1.Pod) {
			p.Spec.InitContainers[0].RestartPolicy = &always
			started := true
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i0", Ready: true, Started: &started, RestartCount: 2,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}, LastTerminationState: lastTerminated(time.Minute)}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running(true)}
		}), "2/2", "Running", "2 (60s ago)"},
		{"sidecar not started yet", testPod(1, 1, func(p *corev1.Pod) {
			p.Spec.InitContainers[0].RestartPolicy = &always
			p.Status.Phase = corev1.PodPending
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i0", State: waiting("ContainerCreating")}}
		}), "0/2", "Init:ContainerCreating", "0"},
		{"initialized condition: main containers are looked at despite a stale init status", testPod(1, 1, func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i0", State: waiting("")}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c0", State: waiting("CrashLoopBackOff")}}
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}}
		}), "0/1", "CrashLoopBackOff", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Summarize(tt.pod, now)
			if got := fmt.Sprintf("%d/%d", s.Ready, s.Total); got != tt.ready || s.Reason != tt.reason || s.Restarts != tt.restarts {
				t.Fatalf("got READY %s STATUS %s RESTARTS %s, want %s %s %s", got, s.Reason, s.Restarts, tt.ready, tt.reason, tt.restarts)
			}
		})
	}
}

func TestPodRow(t *testing.T) {
	st := strategy{}
	cols := st.Columns()
	p := testPod(1, 0, func(p *corev1.Pod) {
		p.Spec.NodeName = "node-1"
		p.Status.PodIP = "10.244.0.7"
		p.Status.ContainerStatuses = []corev1.ContainerStatus{running(true)}
	})
	row := st.Row(p, now)
	if len(row) != len(cols) {
		t.Fatalf("%d cells for %d columns", len(row), len(cols))
	}
	want := []interface{}{"p", "1/1", "Running", "0", "120m", "10.244.0.7", "node-1", "<none>", "<none>"}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("column %s = %v, want %v", cols[i].Name, row[i], want[i])
		}
	}
	// Readiness gates count the conditions that are true.
	p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/a"}, {ConditionType: "example.com/b"}}
	p.Status.Conditions = []corev1.PodCondition{{Type: "example.com/a", Status: corev1.ConditionTrue}, {Type: "example.com/b", Status: corev1.ConditionFalse}}
	p.Status.NominatedNodeName = "node-2"
	p.Status.PodIP = ""
	p.Spec.NodeName = ""
	row = st.Row(p, now)
	if row[5] != "<none>" || row[6] != "<none>" || row[7] != "node-2" || row[8] != "1/2" {
		t.Errorf("wide columns %v", row[5:])
	}
	// A pod without a creation time prints <unknown>.
	p.CreationTimestamp = metav1.Time{}
	if row = st.Row(p, now); row[4] != "<unknown>" {
		t.Errorf("age of a pod without creationTimestamp: %v", row[4])
	}
	for _, c := range cols {
		if c.Name == "" || c.Type == "" {
			t.Errorf("column %+v incomplete", c)
		}
	}
}
