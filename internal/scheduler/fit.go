package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Reasons a Node does not fit, worded as kube-scheduler words them so that
// FailedScheduling messages read the same.
const (
	reasonNotReady      = "node(s) were not ready"
	reasonUnschedulable = "node(s) were unschedulable"
	reasonSelector      = "node(s) didn't match Pod's node affinity/selector"
	reasonTooManyPods   = "Too many pods"

	// msgNoNodes is kube-scheduler's message when there are no Nodes at all.
	msgNoNodes = "no nodes available to schedule pods"
)

// unschedulableTaint is what kube-scheduler treats spec.unschedulable as: a
// Pod tolerating it may still go to a cordoned Node.
var unschedulableTaint = v1.Taint{Key: v1.TaintNodeUnschedulable, Effect: v1.TaintEffectNoSchedule}

// pickNode chooses the Node for pod: among those that fit, the one running
// the fewest non-terminated Pods (podsOnNode), ties broken by name. When none
// fits it returns "" and a message saying why, per Node.
func pickNode(pod *v1.Pod, nodes []*v1.Node, podsOnNode map[string]int) (string, string) {
	if len(nodes) == 0 {
		return "", msgNoNodes
	}
	var best string
	reasons := map[string]int{}
	for _, n := range nodes {
		if r := misfit(pod, n, podsOnNode[n.Name]); r != "" {
			reasons[r]++
			continue
		}
		if best == "" || podsOnNode[n.Name] < podsOnNode[best] ||
			(podsOnNode[n.Name] == podsOnNode[best] && n.Name < best) {
			best = n.Name
		}
	}
	if best != "" {
		return best, ""
	}
	parts := make([]string, 0, len(reasons))
	for _, r := range slices.Sorted(maps.Keys(reasons)) {
		parts = append(parts, fmt.Sprintf("%d %s", reasons[r], r))
	}
	return "", fmt.Sprintf("0/%d nodes are available: %s.", len(nodes), strings.Join(parts, ", "))
}

// misfit returns why pod cannot run on node, or "" if it can. Checks run in
// kube-scheduler's filter order, and the first failure is the reason.
func misfit(pod *v1.Pod, node *v1.Node, running int) string {
	if !nodeReady(node) {
		return reasonNotReady
	}
	if node.Spec.Unschedulable && !tolerates(pod.Spec.Tolerations, &unschedulableTaint) {
		return reasonUnschedulable
	}
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect == v1.TaintEffectPreferNoSchedule {
			continue // a preference, not a filter
		}
		if !tolerates(pod.Spec.Tolerations, t) {
			return fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.Key, t.Value)
		}
	}
	if len(pod.Spec.NodeSelector) > 0 && !labels.SelectorFromSet(pod.Spec.NodeSelector).Matches(labels.Set(node.Labels)) {
		return reasonSelector
	}
	if max, ok := node.Status.Allocatable[v1.ResourcePods]; ok && int64(running) >= max.Value() {
		return reasonTooManyPods
	}
	return ""
}

func nodeReady(node *v1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func tolerates(tolerations []v1.Toleration, taint *v1.Taint) bool {
	for i := range tolerations {
		// Numeric comparison operators are alpha upstream; off, as there.
		if tolerations[i].ToleratesTaint(logr.Discard(), taint, false) {
			return true
		}
	}
	return false
}

// terminal reports whether a Pod has finished for good.
func terminal(pod *v1.Pod) bool {
	return pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed
}
