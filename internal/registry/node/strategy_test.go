package node

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNodeRow(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ready := func(s corev1.ConditionStatus) []corev1.NodeCondition {
		return []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}, {Type: corev1.NodeReady, Status: s}}
	}
	tests := []struct {
		name   string
		node   corev1.Node
		status string
		roles  string
	}{
		{"ready", corev1.Node{Status: corev1.NodeStatus{Conditions: ready(corev1.ConditionTrue)}}, "Ready", "<none>"},
		{"not ready", corev1.Node{Status: corev1.NodeStatus{Conditions: ready(corev1.ConditionFalse)}}, "NotReady", "<none>"},
		// kubectl prints NotReady for a Ready condition of Unknown (a lost node).
		{"ready unknown", corev1.Node{Status: corev1.NodeStatus{Conditions: ready(corev1.ConditionUnknown)}}, "NotReady", "<none>"},
		{"no ready condition", corev1.Node{}, "Unknown", "<none>"},
		{"cordoned", corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}, Status: corev1.NodeStatus{Conditions: ready(corev1.ConditionTrue)}}, "Ready,SchedulingDisabled", "<none>"},
		{"cordoned, no condition", corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}}, "Unknown,SchedulingDisabled", "<none>"},
		{"roles", corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{
			"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "x", "kubernetes.io/role": "edge",
		}}}, "Unknown", "control-plane,edge,worker"},
		{"the same role twice is shown once", corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{
			"node-role.kubernetes.io/master": "", "kubernetes.io/role": "master",
		}}}, "Unknown", "master"},
	}
	st := strategy{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.node
			n.Name = "n1"
			n.CreationTimestamp = metav1.NewTime(now.Add(-10 * 24 * time.Hour))
			row := st.Row(&n, now)
			if len(row) != len(st.Columns()) {
				t.Fatalf("%d cells, %d columns", len(row), len(st.Columns()))
			}
			if row[1] != tt.status || row[2] != tt.roles {
				t.Errorf("STATUS %q ROLES %q, want %q %q", row[1], row[2], tt.status, tt.roles)
			}
		})
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", CreationTimestamp: metav1.NewTime(now.Add(-10 * 24 * time.Hour))},
		Status: corev1.NodeStatus{
			Conditions: ready(corev1.ConditionTrue),
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "n1"}, {Type: corev1.NodeInternalIP, Address: "192.168.1.5"}},
			NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.32.4-berth", OSImage: "Debian GNU/Linux 12", KernelVersion: "6.1.0"},
		}}
	want := []interface{}{"n1", "Ready", "<none>", "10d", "v1.32.4-berth", "192.168.1.5", "<none>", "Debian GNU/Linux 12", "6.1.0", "<unknown>"}
	row := st.Row(n, now)
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %d (%s) = %q, want %q", i, st.Columns()[i].Name, row[i], want[i])
		}
	}
}
