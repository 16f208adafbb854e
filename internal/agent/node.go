package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-project/berth/internal/version"
)

// Node conditions as the kubelet words them.
var nodeConditions = []struct {
	typ             corev1.NodeConditionType
	status          corev1.ConditionStatus
	reason, message string
}{
	{corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"},
	{corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"},
	{corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"},
	{corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "berth agent is posting ready status"},
}

// registerNode creates or updates the Node, retrying until it succeeds or
// ctx ends.
func (a *Agent) registerNode(ctx context.Context, port int) error {
	delay := 100 * time.Millisecond
	for {
		err := a.ensureNode(ctx, port)
		if err == nil {
			a.recorder.Eventf(a.nodeRef(), corev1.EventTypeNormal, "Starting", "Starting berth agent (%s).", version.Berth)
			return nil
		}
		a.log.Warn("register node", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("register node %s: %w", a.cfg.NodeName, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// nodeRef is what node events are about; like the kubelet's, it carries
// the node name as UID.
func (a *Agent) nodeRef() *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: a.cfg.NodeName, UID: types.UID(a.cfg.NodeName)}
}

func (a *Agent) ensureNode(ctx context.Context, port int) error {
	nodes := a.client.CoreV1().Nodes()
	want := a.nodeObject(port)
	node, err := nodes.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		node, err = nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed := false
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		for k, v := range want.Labels {
			if node.Labels[k] != v {
				node.Labels[k], changed = v, true
			}
		}
		if node.Annotations == nil {
			node.Annotations = map[string]string{}
		}
		for k, v := range want.Annotations {
			if node.Annotations[k] != v {
				node.Annotations[k], changed = v, true
			}
		}
		if node.Spec.PodCIDR == "" && want.Spec.PodCIDR != "" {
			node.Spec.PodCIDR, node.Spec.PodCIDRs, changed = want.Spec.PodCIDR, want.Spec.PodCIDRs, true
		}
		if changed {
			if node, err = nodes.Update(ctx, node, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
	}
	if err != nil {
		return err
	}
	if err := a.updateNodeStatus(ctx, node, port); err != nil {
		return err
	}
	a.renewLease(ctx, node)
	return nil
}

func (a *Agent) nodeObject(port int) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: a.cfg.NodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname":  a.cfg.NodeName,
				"kubernetes.io/os":        goruntime.GOOS,
				"kubernetes.io/arch":      goruntime.GOARCH,
				"beta.kubernetes.io/os":   goruntime.GOOS,
				"beta.kubernetes.io/arch": goruntime.GOARCH,
			},
			Annotations: map[string]string{EndpointAnnotation: a.endpoint},
		},
	}
	cidr := a.net.PodCIDR().String()
	n.Spec.PodCIDR, n.Spec.PodCIDRs = cidr, []string{cidr}
	return n
}

// updateNodeStatus writes the Node's status: conditions with a fresh
// heartbeat, addresses, capacity and node info.
func (a *Agent) updateNodeStatus(ctx context.Context, node *corev1.Node, port int) error {
	now := metav1.Now()
	n := node.DeepCopy()
	var conds []corev1.NodeCondition
	for _, c := range n.Status.Conditions {
		known := false
		for _, nc := range nodeConditions {
			known = known || nc.typ == c.Type
		}
		if !known {
			conds = append(conds, c)
		}
	}
	for _, nc := range nodeConditions {
		c := corev1.NodeCondition{Type: nc.typ, Status: nc.status, Reason: nc.reason, Message: nc.message,
			LastHeartbeatTime: now, LastTransitionTime: now}
		for _, old := range n.Status.Conditions {
			if old.Type == nc.typ && old.Status == nc.status && !old.LastTransitionTime.IsZero() {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		conds = append(conds, c)
	}
	n.Status.Conditions = conds
	hostname, _ := os.Hostname()
	if hostname == "" {
		hostname = a.cfg.NodeName
	}
	n.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: a.nodeIP.String()},
		{Type: corev1.NodeHostName, Address: hostname},
	}
	n.Status.Capacity = a.capacity()
	n.Status.Allocatable = a.capacity()
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	n.Status.NodeInfo = a.nodeInfo()
	if n.Status.Phase == "" {
		n.Status.Phase = corev1.NodeRunning
	}
	_, err := a.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

// heartbeat refreshes the Node's status every HeartbeatInterval,
// re-registering it if someone deleted it.
func (a *Agent) heartbeat(ctx context.Context, port int) {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		node, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			a.log.Warn("node object was deleted; registering again")
			err = a.ensureNode(ctx, port)
		case err == nil:
			err = a.updateNodeStatus(ctx, node, port)
			a.renewLease(ctx, node)
		}
		if err != nil && ctx.Err() == nil {
			a.log.Warn("node heartbeat", "err", err)
		}
	}
}

func (a *Agent) capacity() corev1.ResourceList {
	l := corev1.ResourceList{
		corev1.ResourceCPU:  *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		corev1.ResourcePods: *resource.NewQuantity(int64(a.cfg.MaxPods), resource.DecimalSI),
	}
	if mem := memTotal(); mem > 0 {
		l[corev1.ResourceMemory] = *resource.NewQuantity(mem, resource.BinarySI)
	}
	var fs unix.Statfs_t
	if unix.Statfs(a.cfg.StateDir, &fs) == nil {
		l[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(fs.Blocks)*fs.Bsize, resource.BinarySI)
	}
	return l
}

// allocatable is what resourceFieldRef reports for a limit a container did
// not set.
func (a *Agent) allocatable() corev1.ResourceList { return a.capacity() }

// memTotal is MemTotal from /proc/meminfo in bytes, or 0.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				kb, err := strconv.ParseInt(fields[0], 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	return 0
}

func (a *Agent) nodeInfo() corev1.NodeSystemInfo {
	info := corev1.NodeSystemInfo{
		MachineID:               readTrim("/etc/machine-id"),
		SystemUUID:              readTrim("/sys/class/dmi/id/product_uuid"),
		BootID:                  readTrim("/proc/sys/kernel/random/boot_id"),
		OperatingSystem:         goruntime.GOOS,
		Architecture:            goruntime.GOARCH,
		ContainerRuntimeVersion: "berth://" + version.Berth,
		KubeletVersion:          version.KubernetesAPI,
		OSImage:                 osImage(),
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		info.KernelVersion = string(bytes.TrimRight(u.Release[:], "\x00"))
	}
	return info
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// osImage is PRETTY_NAME from os-release, as the kubelet reports it.
func osImage() string {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				if uq, err := strconv.Unquote(v); err == nil {
					return uq
				}
				return strings.Trim(v, `"'`)
			}
		}
	}
	return goruntime.GOOS
}
