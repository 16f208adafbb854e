package agent

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-project/berth/internal/agent/runtime"
)

// ID schemes in container statuses.
const (
	ContainerIDScheme = "berth://"
	imageIDScheme     = "berth://"
)

// Reasons and messages the kubelet uses in pod status.
const (
	reasonContainerCreating  = "ContainerCreating"
	reasonPodInitializing    = "PodInitializing"
	reasonCrashLoopBackOff   = "CrashLoopBackOff"
	reasonRunContainerError  = "RunContainerError"
	reasonCompleted          = "Completed"
	reasonError              = "Error"
	reasonStatusUnknown      = "ContainerStatusUnknown"
	reasonContainersNotReady = "ContainersNotReady"
	reasonNotInitialized     = "ContainersNotInitialized"
	reasonGatesNotReady      = "ReadinessGatesNotReady"
	reasonPodCompleted       = "PodCompleted"
	reasonPodFailed          = "PodFailed"
	messageStatusUnknown     = "The container could not be located when the pod was terminated"
)

// attempt is one run of a container as the runtime recorded it.
type attempt struct {
	ID         string // runtime container ID
	Number     int    // the container's restart count when it started
	Running    bool
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int
	Lost       bool
	Error      string
}

func attemptOf(st runtime.State) *attempt {
	return &attempt{
		ID: st.ID, Number: st.Spec.Attempt, Running: st.Running,
		StartedAt: st.StartedAt, FinishedAt: st.FinishedAt,
		ExitCode: st.ExitCode, Lost: st.Lost, Error: st.Error,
	}
}

// waiting is why a container is not running and what will happen.
type waiting struct {
	Reason, Message string
}

// containerView is what the status computation knows of one container.
type containerView struct {
	Current  *attempt // the latest attempt; nil if none ran
	Previous *attempt // the one before it
	// Waiting, when set, says the container waits to be (re)started.
	Waiting *waiting
	// Ready and Started are the readiness and startup state of Current.
	Ready, Started bool
}

// podView is everything the status computation reads besides the Pod.
type podView struct {
	Containers map[string]containerView // by name, init containers too
	PodIPs     []string
	HostIPs    []string
	// Sandbox: the Pod's network is set up (PodReadyToStartContainers).
	Sandbox bool
	// Terminating: the Pod is being stopped; nothing is ready.
	Terminating bool
	// Terminated: the Pod was stopped for good and all its containers
	// have exited (the kubelet's podIsTerminal).
	Terminated bool
	Now        time.Time
}

// kubeletConditions are the condition types the node agent owns; others
// (readiness gates, DisruptionTarget) are kept as the API has them.
var kubeletConditions = []corev1.PodConditionType{
	corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodReady,
	corev1.ContainersReady, corev1.PodScheduled,
}

func isRestartable(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// computeStatus is the kubelet's generateAPIPodStatus for berth: the
// status of pod given what the agent observed (v) and the status it last
// reported (old, or the API's when it reported none).
func computeStatus(pod *corev1.Pod, old corev1.PodStatus, v podView) corev1.PodStatus {
	hasInit := len(pod.Spec.InitContainers) > 0
	s := corev1.PodStatus{
		QOSClass:  pod.Status.QOSClass,
		StartTime: old.StartTime,
	}
	if s.StartTime == nil {
		s.StartTime = pod.Status.StartTime
	}
	if s.StartTime == nil {
		t := metav1.NewTime(v.Now)
		s.StartTime = &t
	}
	for _, ip := range v.PodIPs {
		s.PodIPs = append(s.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(s.PodIPs) > 0 {
		s.PodIP = s.PodIPs[0].IP
	} else if old.PodIP != "" {
		// Torn down after the end: keep showing the address it had.
		s.PodIP, s.PodIPs = old.PodIP, old.PodIPs
	}
	for _, ip := range v.HostIPs {
		s.HostIPs = append(s.HostIPs, corev1.HostIP{IP: ip})
	}
	if len(s.HostIPs) > 0 {
		s.HostIP = s.HostIPs[0].IP
	}

	defaultWaiting := reasonContainerCreating
	if hasInit {
		defaultWaiting = reasonPodInitializing
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		s.InitContainerStatuses = append(s.InitContainerStatuses,
			containerStatus(c, v.Containers[c.Name], reasonPodInitializing, true, v.Terminating))
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		s.ContainerStatuses = append(s.ContainerStatuses,
			containerStatus(c, v.Containers[c.Name], defaultWaiting, false, v.Terminating))
	}
	// The kubelet lists regular containers by name, init containers in
	// spec order.
	slices.SortStableFunc(s.ContainerStatuses, func(a, b corev1.ContainerStatus) int { return strings.Compare(a.Name, b.Name) })

	all := append(append([]corev1.ContainerStatus{}, s.ContainerStatuses...), s.InitContainerStatuses...)
	s.Phase = podPhase(pod, all, v.Terminated)
	if s.Phase != corev1.PodFailed && s.Phase != corev1.PodSucceeded {
		switch {
		case old.Phase == corev1.PodFailed || old.Phase == corev1.PodSucceeded:
			s.Phase = old.Phase
		case pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded:
			s.Phase = pod.Status.Phase
		}
	}
	if s.Phase == old.Phase {
		s.Reason, s.Message = old.Reason, old.Message
	}

	for _, c := range pod.Status.Conditions {
		if !slices.Contains(kubeletConditions, c.Type) {
			s.Conditions = append(s.Conditions, c)
		}
	}
	initStatuses := s.InitContainerStatuses
	sandbox := corev1.PodCondition{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionFalse}
	if v.Sandbox {
		sandbox.Status = corev1.ConditionTrue
	}
	generated := []corev1.PodCondition{
		sandbox,
		initializedCondition(&pod.Spec, initStatuses, s.ContainerStatuses, s.Phase),
		readyCondition(&pod.Spec, s.Conditions, initStatuses, s.ContainerStatuses, s.Phase),
		containersReadyCondition(&pod.Spec, initStatuses, s.ContainerStatuses, s.Phase),
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
	}
	for _, c := range generated {
		c.LastTransitionTime = transitionTime(c, old.Conditions, pod.Status.Conditions, v.Now)
		s.Conditions = append(s.Conditions, c)
	}
	return s
}

// transitionTime keeps a condition's lastTransitionTime while its status
// stays the same: the first of old and api that has the condition decides.
func transitionTime(c corev1.PodCondition, old, api []corev1.PodCondition, now time.Time) metav1.Time {
	for _, list := range [][]corev1.PodCondition{old, api} {
		for _, o := range list {
			if o.Type != c.Type {
				continue
			}
			if o.Status == c.Status && !o.LastTransitionTime.IsZero() {
				return o.LastTransitionTime
			}
			return metav1.NewTime(now)
		}
	}
	return metav1.NewTime(now)
}

func containerStatus(c *corev1.Container, cv containerView, defaultWaiting string, init, terminating bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
	started := false
	cur := cv.Current
	switch {
	case cur == nil:
		w := corev1.ContainerStateWaiting{Reason: defaultWaiting}
		if cv.Waiting != nil {
			w = corev1.ContainerStateWaiting{Reason: cv.Waiting.Reason, Message: cv.Waiting.Message}
		}
		cs.State.Waiting = &w
	case cur.Running:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(cur.StartedAt)}
		started = cv.Started
		if !init || isRestartable(c) {
			cs.Ready = started && cv.Ready && !terminating
		}
		if p := cv.Previous; p != nil && !p.Running {
			cs.LastTerminationState.Terminated = terminatedState(p)
		}
	default:
		term := terminatedState(cur)
		if cv.Waiting != nil && !terminating {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: cv.Waiting.Reason, Message: cv.Waiting.Message}
			cs.LastTerminationState.Terminated = term
		} else {
			cs.State.Terminated = term
			if p := cv.Previous; p != nil && !p.Running {
				cs.LastTerminationState.Terminated = terminatedState(p)
			}
			if init && !isRestartable(c) && cur.ExitCode == 0 && !cur.Lost {
				cs.Ready = true
			}
		}
	}
	if cur != nil {
		cs.ContainerID = ContainerIDScheme + cur.ID
		cs.ImageID = imageIDScheme + c.Image
		cs.RestartCount = int32(cur.Number)
	}
	cs.Started = &started
	return cs
}

func terminatedState(a *attempt) *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{
		ExitCode:    int32(a.ExitCode),
		StartedAt:   metav1.NewTime(a.StartedAt),
		FinishedAt:  metav1.NewTime(a.FinishedAt),
		ContainerID: ContainerIDScheme + a.ID,
		Message:     a.Error,
	}
	switch {
	case a.Lost:
		t.Reason, t.Message = reasonStatusUnknown, messageStatusUnknown
	case a.ExitCode == 0:
		t.Reason = reasonCompleted
	default:
		t.Reason = reasonError
	}
	return t
}

func findStatus(list []corev1.ContainerStatus, name string) (corev1.ContainerStatus, bool) {
	for _, cs := range list {
		if cs.Name == name {
			return cs, true
		}
	}
	return corev1.ContainerStatus{}, false
}

// podPhase is the kubelet's getPhase: statuses holds init and regular
// containers; terminal says the Pod was stopped for good.
func podPhase(pod *corev1.Pod, statuses []corev1.ContainerStatus, terminal bool) corev1.PodPhase {
	spec := &pod.Spec
	pendingInit, failedInit := 0, 0
	unknown, running, waiting, stopped, succeeded := 0, 0, 0, 0, 0
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		cs, ok := findStatus(statuses, c.Name)
		if isRestartable(c) {
			switch {
			case !ok:
				unknown++
			case cs.State.Running != nil:
				if cs.Started == nil || !*cs.Started {
					pendingInit++
				}
				running++
			case cs.State.Terminated != nil:
			case cs.State.Waiting != nil:
				if cs.LastTerminationState.Terminated == nil {
					pendingInit++
					waiting++
				}
			default:
				pendingInit++
				unknown++
			}
			continue
		}
		switch {
		case !ok:
			pendingInit++
		case cs.State.Running != nil:
			pendingInit++
		case cs.State.Terminated != nil:
			if cs.State.Terminated.ExitCode != 0 {
				failedInit++
			}
		case cs.State.Waiting != nil:
			if t := cs.LastTerminationState.Terminated; t != nil {
				if t.ExitCode != 0 {
					failedInit++
				}
			} else {
				pendingInit++
			}
		default:
			pendingInit++
		}
	}
	for i := range spec.Containers {
		cs, ok := findStatus(statuses, spec.Containers[i].Name)
		switch {
		case !ok:
			unknown++
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}
	if failedInit > 0 && spec.RestartPolicy == corev1.RestartPolicyNever {
		return corev1.PodFailed
	}
	switch {
	case pendingInit > 0 && !anyRegularStarted(spec, statuses), waiting > 0:
		return corev1.PodPending
	case running > 0 && unknown == 0:
		return corev1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		if terminal {
			if stopped == succeeded {
				return corev1.PodSucceeded
			}
			return corev1.PodFailed
		}
		if spec.RestartPolicy == corev1.RestartPolicyAlways {
			return corev1.PodRunning
		}
		if stopped == succeeded {
			return corev1.PodSucceeded
		}
		if spec.RestartPolicy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}

// anyRegularStarted reports whether a regular container has run, which
// means the Pod was initialized.
func anyRegularStarted(spec *corev1.PodSpec, statuses []corev1.ContainerStatus) bool {
	for i := range spec.Containers {
		if cs, ok := findStatus(statuses, spec.Containers[i].Name); ok {
			if cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil {
				return true
			}
		}
	}
	return false
}

func initializedCondition(spec *corev1.PodSpec, inits, regular []corev1.ContainerStatus, phase corev1.PodPhase) corev1.PodCondition {
	var incomplete []string
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		cs, _ := findStatus(inits, c.Name)
		if isRestartable(c) {
			if cs.Started == nil || !*cs.Started {
				incomplete = append(incomplete, c.Name)
			}
			continue
		}
		if !cs.Ready {
			incomplete = append(incomplete, c.Name)
		}
	}
	switch {
	case phase == corev1.PodSucceeded:
		return corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, Reason: reasonPodCompleted}
	case len(incomplete) == 0 || anyRegularStarted(spec, regular):
		return corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}
	}
	return corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionFalse, Reason: reasonNotInitialized,
		Message: fmt.Sprintf("containers with incomplete status: %v", incomplete)}
}

func containersReadyCondition(spec *corev1.PodSpec, inits, regular []corev1.ContainerStatus, phase corev1.PodPhase) corev1.PodCondition {
	switch phase {
	case corev1.PodSucceeded:
		return corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, Reason: reasonPodCompleted}
	case corev1.PodFailed:
		return corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, Reason: reasonPodFailed}
	}
	var unready []string
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		if !isRestartable(c) {
			continue
		}
		if cs, _ := findStatus(inits, c.Name); !cs.Ready {
			unready = append(unready, c.Name)
		}
	}
	for i := range spec.Containers {
		if cs, _ := findStatus(regular, spec.Containers[i].Name); !cs.Ready {
			unready = append(unready, spec.Containers[i].Name)
		}
	}
	if len(unready) > 0 {
		return corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, Reason: reasonContainersNotReady,
			Message: fmt.Sprintf("containers with unready status: %v", unready)}
	}
	return corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}
}

func readyCondition(spec *corev1.PodSpec, others []corev1.PodCondition, inits, regular []corev1.ContainerStatus, phase corev1.PodPhase) corev1.PodCondition {
	cr := containersReadyCondition(spec, inits, regular, phase)
	if cr.Status != corev1.ConditionTrue {
		return corev1.PodCondition{Type: corev1.PodReady, Status: cr.Status, Reason: cr.Reason, Message: cr.Message}
	}
	var msgs []string
	for _, g := range spec.ReadinessGates {
		var found *corev1.PodCondition
		for i := range others {
			if others[i].Type == g.ConditionType {
				found = &others[i]
			}
		}
		switch {
		case found == nil:
			msgs = append(msgs, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", g.ConditionType))
		case found.Status != corev1.ConditionTrue:
			msgs = append(msgs, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", g.ConditionType, found.Status))
		}
	}
	if len(msgs) > 0 {
		return corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: reasonGatesNotReady, Message: strings.Join(msgs, ", ")}
	}
	return corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue}
}
