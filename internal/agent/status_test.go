package agent

import (
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	podregistry "github.com/berth-project/berth/internal/registry/pod"
)

var (
	t0  = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	now = t0.Add(time.Minute)
)

func specPod(policy corev1.RestartPolicy, inits []string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "uid-1"},
		Spec:       corev1.PodSpec{RestartPolicy: policy, NodeName: "node"},
		Status:     corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort},
	}
	for _, n := range inits {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: n, Image: "busybox"})
	}
	for _, n := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n, Image: "busybox"})
	}
	return p
}

func running(n int) *attempt {
	return &attempt{ID: "uid-1_c_" + string(rune('0'+n)), Number: n, Running: true, StartedAt: t0}
}

func exited(n, code int) *attempt {
	return &attempt{ID: "uid-1_c_" + string(rune('0'+n)), Number: n, StartedAt: t0, FinishedAt: t0.Add(10 * time.Second), ExitCode: code}
}

func view(cs map[string]containerView) podView {
	return podView{Containers: cs, PodIPs: []string{"127.244.0.2"}, HostIPs: []string{"127.0.0.1"}, Sandbox: true, Now: now}
}

func cond(s corev1.PodStatus, t corev1.PodConditionType) corev1.PodCondition {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.PodCondition{}
}

func TestComputeStatus(t *testing.T) {
	backoff := &waiting{Reason: reasonCrashLoopBackOff, Message: "back-off 10s restarting failed container=app pod=web_default(uid-1)"}
	tests := []struct {
		name         string
		pod          *corev1.Pod
		old          *corev1.PodStatus
		view         podView
		wantPhase    corev1.PodPhase
		wantReady    corev1.ConditionStatus
		wantReadyWhy string
		wantInit     corev1.ConditionStatus
		// kubectl get pods columns, from the API server's printer
		wantColumns string // "READY STATUS RESTARTS"
		check       func(t *testing.T, s corev1.PodStatus)
	}{
		{
			name:      "nothing started yet",
			pod:       specPod(corev1.RestartPolicyAlways, nil, "app"),
			view:      podView{Containers: map[string]containerView{}, HostIPs: []string{"127.0.0.1"}, Now: now},
			wantPhase: corev1.PodPending, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonContainersNotReady, wantInit: corev1.ConditionTrue,
			wantColumns: "0/1 ContainerCreating 0",
			check: func(t *testing.T, s corev1.PodStatus) {
				if c := cond(s, corev1.PodReadyToStartContainers); c.Status != corev1.ConditionFalse {
					t.Errorf("PodReadyToStartContainers = %v", c.Status)
				}
				if s.PodIP != "" || s.HostIP != "127.0.0.1" || s.StartTime == nil {
					t.Errorf("ips %q %q start %v", s.PodIP, s.HostIP, s.StartTime)
				}
				if m := cond(s, corev1.PodReady).Message; m != "containers with unready status: [app]" {
					t.Errorf("Ready message %q", m)
				}
			},
		},
		{
			name:      "running and ready",
			pod:       specPod(corev1.RestartPolicyAlways, nil, "app"),
			view:      view(map[string]containerView{"app": {Current: running(0), Ready: true, Started: true}}),
			wantPhase: corev1.PodRunning, wantReady: corev1.ConditionTrue, wantInit: corev1.ConditionTrue,
			wantColumns: "1/1 Running 0",
			check: func(t *testing.T, s corev1.PodStatus) {
				cs := s.ContainerStatuses[0]
				if cs.ContainerID != "berth://uid-1_c_0" || cs.ImageID != "berth://busybox" || cs.Started == nil || !*cs.Started {
					t.Errorf("container status %+v", cs)
				}
				if s.PodIP != "127.244.0.2" || len(s.PodIPs) != 1 || s.HostIPs[0].IP != "127.0.0.1" {
					t.Errorf("ips %+v %+v", s.PodIPs, s.HostIPs)
				}
				if c := cond(s, corev1.PodReadyToStartContainers); c.Status != corev1.ConditionTrue {
					t.Errorf("PodReadyToStartContainers = %v", c.Status)
				}
			},
		},
		{
			name:      "running, readiness not passed yet",
			pod:       specPod(corev1.RestartPolicyAlways, nil, "app", "side"),
			view:      view(map[string]containerView{"app": {Current: running(0), Started: true}, "side": {Current: running(0), Ready: true, Started: true}}),
			wantPhase: corev1.PodRunning, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonContainersNotReady, wantInit: corev1.ConditionTrue,
			wantColumns: "1/2 Running 0",
		},
		{
			name:      "running, startup probe not passed: not ready even if readiness said so",
			pod:       specPod(corev1.RestartPolicyAlways, nil, "app"),
			view:      view(map[string]containerView{"app": {Current: running(0), Ready: true}}),
			wantPhase: corev1.PodRunning, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonContainersNotReady, wantInit: corev1.ConditionTrue,
			wantColumns: "0/1 Running 0",
		},
		{
			name:      "restarted after kill -9",
			pod:       specPod(corev1.RestartPolicyAlways, nil, "app"),
			view:      view(map[string]containerView{"app": {Current: running(1), Previous: &attempt{ID: "uid-1_c_0", StartedAt: t0, FinishedAt: now.Add(-30 * time.Second), ExitCode: 137}, Ready: true, Started: true}}),
			wantPhase: corev1.PodRunning, wantReady: corev1.ConditionTrue, wantInit: corev1.ConditionTrue,
			wantColumns: "1/1 Running 1 (30s ago)",
			check: func(t *testing.T, s corev1.PodStatus) {
				lt := s.ContainerStatuses[0].LastTerminationState.Terminated
				if lt == nil || lt.ExitCode != 137 || lt.Reason != reasonError || lt.ContainerID != "berth://uid-1_c_0" {
					t.Errorf("lastState %+v", lt)
				}
			},
		},
		{
			name:      "crash loop",
			pod:       specPod(corev1.RestartPolicyAlways, nil, "app"),
			view:      view(map[string]containerView{"app": {Current: exited(1, 1), Previous: exited(0, 1), Waiting: backoff}}),
			wantPhase: corev1.PodRunning, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonContainersNotReady, wantInit: corev1.ConditionTrue,
			wantColumns: "0/1 CrashLoopBackOff 1 (50s ago)",
			check: func(t *testing.T, s corev1.PodStatus) {
				cs := s.ContainerStatuses[0]
				if cs.State.Waiting == nil || cs.State.Waiting.Message != backoff.Message || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 1 {
					t.Errorf("container status %+v", cs)
				}
			},
		},
		{
			name:      "exited, about to restart at once",
			pod:       specPod(corev1.RestartPolicyAlways, nil, "app"),
			view:      view(map[string]containerView{"app": {Current: exited(0, 0)}}),
			wantPhase: corev1.PodRunning, wantReady: corev1.ConditionFalse, wantInit: corev1.ConditionTrue, wantReadyWhy: reasonContainersNotReady,
			wantColumns: "0/1 Completed 0",
		},
		{
			name:      "command required",
			pod:       specPod(corev1.RestartPolicyAlways, nil, "app"),
			view:      view(map[string]containerView{"app": {Waiting: &waiting{Reason: "CommandRequired", Message: "set a command"}}}),
			wantPhase: corev1.PodPending, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonContainersNotReady, wantInit: corev1.ConditionTrue,
			wantColumns: "0/1 CommandRequired 0",
		},
		{
			name:      "run container error before any attempt",
			pod:       specPod(corev1.RestartPolicyAlways, nil, "app"),
			view:      view(map[string]containerView{"app": {Waiting: &waiting{Reason: reasonRunContainerError, Message: `exec: "nope": executable file not found`}}}),
			wantPhase: corev1.PodPending, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonContainersNotReady, wantInit: corev1.ConditionTrue,
			wantColumns: "0/1 RunContainerError 0",
		},
		{
			name:      "never: success",
			pod:       specPod(corev1.RestartPolicyNever, nil, "app"),
			view:      view(map[string]containerView{"app": {Current: exited(0, 0)}}),
			wantPhase: corev1.PodSucceeded, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonPodCompleted, wantInit: corev1.ConditionTrue,
			wantColumns: "0/1 Completed 0",
			check: func(t *testing.T, s corev1.PodStatus) {
				if c := cond(s, corev1.PodInitialized); c.Reason != reasonPodCompleted {
					t.Errorf("Initialized reason %q", c.Reason)
				}
			},
		},
		{
			name:      "never: failure",
			pod:       specPod(corev1.RestartPolicyNever, nil, "app", "side"),
			view:      view(map[string]containerView{"app": {Current: exited(0, 2)}, "side": {Current: exited(0, 0)}}),
			wantPhase: corev1.PodFailed, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonPodFailed, wantInit: corev1.ConditionTrue,
			wantColumns: "0/2 Error 0",
		},
		{
			name:      "never: one still running",
			pod:       specPod(corev1.RestartPolicyNever, nil, "app", "side"),
			view:      view(map[string]containerView{"app": {Current: exited(0, 2)}, "side": {Current: running(0), Ready: true, Started: true}}),
			wantPhase: corev1.PodRunning, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonContainersNotReady, wantInit: corev1.ConditionTrue,
			wantColumns: "1/2 Error 0",
		},
		{
			name:      "on failure: failed container waits to restart",
			pod:       specPod(corev1.RestartPolicyOnFailure, nil, "app"),
			view:      view(map[string]containerView{"app": {Current: exited(0, 1), Waiting: backoff}}),
			wantPhase: corev1.PodRunning, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonContainersNotReady, wantInit: corev1.ConditionTrue,
			wantColumns: "0/1 CrashLoopBackOff 0",
		},
		{
			name:      "on failure: success ends the pod",
			pod:       specPod(corev1.RestartPolicyOnFailure, nil, "app"),
			view:      view(map[string]containerView{"app": {Current: exited(1, 0), Previous: exited(0, 1)}}),
			wantPhase: corev1.PodSucceeded, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonPodCompleted, wantInit: corev1.ConditionTrue,
			wantColumns: "0/1 Completed 1 (50s ago)",
		},
		{
			name:      "first init container running",
			pod:       specPod(corev1.RestartPolicyAlways, []string{"i1", "i2"}, "app"),
			view:      view(map[string]containerView{"i1": {Current: running(0), Started: true, Ready: true}}),
			wantPhase: corev1.PodPending, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonContainersNotReady, wantInit: corev1.ConditionFalse,
			wantColumns: "0/1 Init:0/2 0",
			check: func(t *testing.T, s corev1.PodStatus) {
				if s.InitContainerStatuses[0].Ready {
					t.Error("a running init container is not ready")
				}
				if w := s.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != reasonPodInitializing {
					t.Errorf("app waiting %+v", w)
				}
				if m := cond(s, corev1.PodInitialized).Message; m != "containers with incomplete status: [i1 i2]" {
					t.Errorf("Initialized message %q", m)
				}
			},
		},
		{
			name:      "second init container running",
			pod:       specPod(corev1.RestartPolicyAlways, []string{"i1", "i2"}, "app"),
			view:      view(map[string]containerView{"i1": {Current: exited(0, 0)}, "i2": {Current: running(0), Started: true}}),
			wantPhase: corev1.PodPending, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonContainersNotReady, wantInit: corev1.ConditionFalse,
			wantColumns: "0/1 Init:1/2 0",
		},
		{
			name:      "init container crash loop",
			pod:       specPod(corev1.RestartPolicyAlways, []string{"i1"}, "app"),
			view:      view(map[string]containerView{"i1": {Current: exited(2, 1), Waiting: backoff}}),
			wantPhase: corev1.PodPending, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonContainersNotReady, wantInit: corev1.ConditionFalse,
			wantColumns: "0/1 Init:CrashLoopBackOff 2 (50s ago)",
		},
		{
			name:      "init container failed, never restart",
			pod:       specPod(corev1.RestartPolicyNever, []string{"i1"}, "app"),
			view:      view(map[string]containerView{"i1": {Current: exited(0, 3)}}),
			wantPhase: corev1.PodFailed, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonPodFailed, wantInit: corev1.ConditionFalse,
			wantColumns: "0/1 Init:Error 0",
		},
		{
			name:      "initialized and running",
			pod:       specPod(corev1.RestartPolicyAlways, []string{"i1"}, "app"),
			view:      view(map[string]containerView{"i1": {Current: exited(0, 0)}, "app": {Current: running(0), Ready: true, Started: true}}),
			wantPhase: corev1.PodRunning, wantReady: corev1.ConditionTrue, wantInit: corev1.ConditionTrue,
			wantColumns: "1/1 Running 0",
		},
		{
			name: "sidecar init container started",
			pod: func() *corev1.Pod {
				p := specPod(corev1.RestartPolicyAlways, []string{"proxy"}, "app")
				p.Spec.InitContainers[0].RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
				return p
			}(),
			view:      view(map[string]containerView{"proxy": {Current: running(0), Ready: true, Started: true}, "app": {Current: running(0), Ready: true, Started: true}}),
			wantPhase: corev1.PodRunning, wantReady: corev1.ConditionTrue, wantInit: corev1.ConditionTrue,
			wantColumns: "2/2 Running 0", // kubectl counts sidecars
		},
		{
			name: "terminating: not ready at once",
			pod: func() *corev1.Pod {
				p := specPod(corev1.RestartPolicyAlways, nil, "app")
				p.DeletionTimestamp = &metav1.Time{Time: now}
				return p
			}(),
			view: func() podView {
				v := view(map[string]containerView{"app": {Current: running(0), Ready: true, Started: true}})
				v.Terminating = true
				return v
			}(),
			wantPhase: corev1.PodRunning, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonContainersNotReady, wantInit: corev1.ConditionTrue,
			wantColumns: "0/1 Terminating 0",
		},
		{
			name: "terminated by deletion",
			pod:  specPod(corev1.RestartPolicyAlways, nil, "app"),
			view: func() podView {
				v := view(map[string]containerView{"app": {Current: exited(0, 143), Waiting: backoff}})
				v.Terminating, v.Terminated = true, true
				return v
			}(),
			wantPhase: corev1.PodFailed, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonPodFailed, wantInit: corev1.ConditionTrue,
			wantColumns: "0/1 Error 0",
			check: func(t *testing.T, s corev1.PodStatus) {
				if s.ContainerStatuses[0].State.Terminated == nil {
					t.Errorf("a terminated pod's containers do not wait: %+v", s.ContainerStatuses[0].State)
				}
			},
		},
		{
			name:      "lost container",
			pod:       specPod(corev1.RestartPolicyNever, nil, "app"),
			view:      view(map[string]containerView{"app": {Current: &attempt{ID: "x", Lost: true, ExitCode: 137}}}),
			wantPhase: corev1.PodFailed, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonPodFailed, wantInit: corev1.ConditionTrue,
			wantColumns: "0/1 ContainerStatusUnknown 0",
			check: func(t *testing.T, s corev1.PodStatus) {
				if m := s.ContainerStatuses[0].State.Terminated.Message; m != messageStatusUnknown {
					t.Errorf("message %q", m)
				}
			},
		},
		{
			name: "readiness gate not met",
			pod: func() *corev1.Pod {
				p := specPod(corev1.RestartPolicyAlways, nil, "app")
				p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/ok"}}
				p.Status.Conditions = []corev1.PodCondition{{Type: "example.com/ok", Status: corev1.ConditionFalse}}
				return p
			}(),
			view:      view(map[string]containerView{"app": {Current: running(0), Ready: true, Started: true}}),
			wantPhase: corev1.PodRunning, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonGatesNotReady, wantInit: corev1.ConditionTrue,
			wantColumns: "1/1 Running 0",
			check: func(t *testing.T, s corev1.PodStatus) {
				if c := cond(s, corev1.ContainersReady); c.Status != corev1.ConditionTrue {
					t.Errorf("ContainersReady %v", c.Status)
				}
				if s.Conditions[0].Type != "example.com/ok" {
					t.Errorf("conditions not owned by the agent must be kept first: %+v", s.Conditions)
				}
			},
		},
		{
			name:      "a terminal phase stays",
			pod:       specPod(corev1.RestartPolicyNever, nil, "app"),
			old:       &corev1.PodStatus{Phase: corev1.PodSucceeded, Reason: "Done"},
			view:      view(map[string]containerView{"app": {Current: running(0), Ready: true, Started: true}}),
			wantPhase: corev1.PodSucceeded, wantReady: corev1.ConditionFalse, wantReadyWhy: reasonPodCompleted, wantInit: corev1.ConditionTrue,
			wantColumns: "1/1 Done 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := tt.pod.Status
			if tt.old != nil {
				old = *tt.old
			}
			s := computeStatus(tt.pod, old, tt.view)
			if s.Phase != tt.wantPhase {
				t.Errorf("phase %s, want %s", s.Phase, tt.wantPhase)
			}
			if r := cond(s, corev1.PodReady); r.Status != tt.wantReady || r.Reason != tt.wantReadyWhy {
				t.Errorf("Ready %s %q, want %s %q", r.Status, r.Reason, tt.wantReady, tt.wantReadyWhy)
			}
			if c := cond(s, corev1.PodInitialized); c.Status != tt.wantInit {
				t.Errorf("Initialized %s, want %s", c.Status, tt.wantInit)
			}
			var types []string
			for _, c := range s.Conditions {
				types = append(types, string(c.Type))
			}
			if got := strings.Join(types, ","); !strings.HasSuffix(got, "PodReadyToStartContainers,Initialized,Ready,ContainersReady,PodScheduled") {
				t.Errorf("condition order %s", got)
			}
			p := tt.pod.DeepCopy()
			p.Status = s
			sum := podregistry.Summarize(p, now)
			if got := strings.Join([]string{strconv.Itoa(sum.Ready) + "/" + strconv.Itoa(sum.Total), sum.Reason, sum.Restarts}, " "); got != tt.wantColumns {
				t.Errorf("kubectl shows %q, want %q", got, tt.wantColumns)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

func TestComputeStatusKeepsTransitionTimes(t *testing.T) {
	pod := specPod(corev1.RestartPolicyAlways, nil, "app")
	v := view(map[string]containerView{"app": {Current: running(0), Ready: true, Started: true}})
	first := computeStatus(pod, pod.Status, v)
	v.Now = now.Add(time.Hour)
	second := computeStatus(pod, first, v)
	if c := cond(second, corev1.PodReady); !c.LastTransitionTime.Equal(&metav1.Time{Time: now}) {
		t.Errorf("Ready lastTransitionTime moved: %v", c.LastTransitionTime)
	}
	v.Containers["app"] = containerView{Current: running(0), Started: true}
	third := computeStatus(pod, second, v)
	if got := cond(third, corev1.PodReady); got.Status != corev1.ConditionFalse || !got.LastTransitionTime.Equal(&metav1.Time{Time: now.Add(time.Hour)}) {
		t.Errorf("Ready after readiness failed: %+v", got)
	}
	if !second.StartTime.Equal(first.StartTime) {
		t.Errorf("startTime changed")
	}
	// The binding's PodScheduled time is kept.
	bound := metav1.NewTime(t0)
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: bound}}
	s := computeStatus(pod, pod.Status, v)
	if c := cond(s, corev1.PodScheduled); !c.LastTransitionTime.Equal(&bound) {
		t.Errorf("PodScheduled time %v", c.LastTransitionTime)
	}
}

func TestReadyOrPhaseChanged(t *testing.T) {
	ready := func(s corev1.ConditionStatus) corev1.PodStatus {
		return corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: s}}}
	}
	for _, tc := range []struct {
		name     string
		old, cur corev1.PodStatus
		want     bool
	}{
		{"became ready", ready(corev1.ConditionFalse), ready(corev1.ConditionTrue), true},
		{"same", ready(corev1.ConditionTrue), ready(corev1.ConditionTrue), false},
		{"phase", corev1.PodStatus{Phase: corev1.PodPending}, ready(corev1.ConditionFalse), true},
	} {
		if got := readyOrPhaseChanged(tc.old, tc.cur); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPodReadyIn(t *testing.T) {
	pod := &corev1.Pod{}
	pod.UID = "u1"
	tr, fa := true, false
	ep := func(uid string, ready *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}, TargetRef: &corev1.ObjectReference{UID: types.UID(uid)}, Conditions: discoveryv1.EndpointConditions{Ready: ready}}
	}
	for _, tc := range []struct {
		name string
		eps  []discoveryv1.Endpoint
		want bool
	}{
		{"ready", []discoveryv1.Endpoint{ep("u1", &tr)}, true},
		{"nil counts as ready", []discoveryv1.Endpoint{ep("u1", nil)}, true},
		{"not ready", []discoveryv1.Endpoint{ep("u1", &fa)}, false},
		{"another pod", []discoveryv1.Endpoint{ep("u2", &tr)}, false},
		{"none", nil, false},
	} {
		got := podReadyIn([]*discoveryv1.EndpointSlice{{Endpoints: tc.eps}}, pod)
		if got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDrainWait(t *testing.T) {
	if d := drainWait(30 * time.Second); d != maxDrainWait {
		t.Errorf("drainWait(30s) = %s", d)
	}
	if d := drainWait(time.Second); d != 500*time.Millisecond {
		t.Errorf("drainWait(1s) = %s", d)
	}
	if d := drainWait(0); d != 0 {
		t.Errorf("drainWait(0) = %s", d)
	}
}
