// Package node is the registry strategy for core/v1 Nodes.
package node

import (
	"context"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/berth-project/berth/internal/registry"
)

// Kind returns the registry Kind for nodes.
func Kind() *registry.Kind {
	return &registry.Kind{
		GroupVersionKind: corev1.SchemeGroupVersion.WithKind("Node"),
		Resource:         "nodes", Singular: "node", ShortNames: []string{"no"},
		New:          func() runtime.Object { return &corev1.Node{} },
		NewList:      func() runtime.Object { return &corev1.NodeList{} },
		Strategy:     strategy{},
		Subresources: []string{"proxy"},
	}
}

type strategy struct{}

func (strategy) NameFunc() metavalidation.ValidateNameFunc { return metavalidation.NameIsDNSSubdomain }

func (strategy) PrepareForCreate(context.Context, runtime.Object) {}

func (strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	obj.(*corev1.Node).Status = old.(*corev1.Node).Status
}

func (strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return validate(obj.(*corev1.Node))
}

func (strategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	n, o := obj.(*corev1.Node), old.(*corev1.Node)
	errs := validate(n)
	if o.Spec.PodCIDR != "" && n.Spec.PodCIDR != o.Spec.PodCIDR {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "podCIDR"), "node updates may not change podCIDR except from \"\" to valid"))
	}
	return errs
}

func validate(n *corev1.Node) field.ErrorList {
	var errs field.ErrorList
	for i, t := range n.Spec.Taints {
		p := field.NewPath("spec", "taints").Index(i)
		if t.Key == "" {
			errs = append(errs, field.Required(p.Child("key"), ""))
		}
		switch t.Effect {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			errs = append(errs, field.NotSupported(p.Child("effect"), t.Effect, []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}))
		}
	}
	return errs
}

func (strategy) PrepareForStatusUpdate(_ context.Context, obj, old runtime.Object) {
	obj.(*corev1.Node).Spec = old.(*corev1.Node).Spec
}

func (strategy) ValidateStatusUpdate(context.Context, runtime.Object, runtime.Object) field.ErrorList {
	return nil
}

func (strategy) SelectableFields(obj runtime.Object) fields.Set {
	n := obj.(*corev1.Node)
	unsched := "false"
	if n.Spec.Unschedulable {
		unsched = "true"
	}
	return fields.Set{"spec.unschedulable": unsched}
}

func (strategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: "Name must be unique within a namespace."},
		{Name: "Status", Type: "string", Description: "The status of the node"},
		{Name: "Roles", Type: "string", Description: "The roles of the node"},
		{Name: "Age", Type: "string", Description: "CreationTimestamp is a timestamp representing the server time when this object was created."},
		{Name: "Version", Type: "string", Description: "Kubelet Version reported by the node."},
		{Name: "Internal-IP", Type: "string", Priority: 1, Description: "List of addresses reachable to the node."},
		{Name: "External-IP", Type: "string", Priority: 1, Description: "List of addresses reachable to the node."},
		{Name: "OS-Image", Type: "string", Priority: 1, Description: "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."},
		{Name: "Kernel-Version", Type: "string", Priority: 1, Description: "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."},
		{Name: "Container-Runtime", Type: "string", Priority: 1, Description: "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."},
	}
}

func (strategy) Row(obj runtime.Object, now time.Time) []interface{} {
	n := obj.(*corev1.Node)
	return []interface{}{n.Name, Status(n), roles(n), registry.Age(n.CreationTimestamp, now), n.Status.NodeInfo.KubeletVersion,
		address(n, corev1.NodeInternalIP), address(n, corev1.NodeExternalIP), orNone(n.Status.NodeInfo.OSImage),
		orNone(n.Status.NodeInfo.KernelVersion), orNone(n.Status.NodeInfo.ContainerRuntimeVersion)}
}

// Status is the STATUS column: Ready, NotReady or Unknown, then
// SchedulingDisabled when cordoned.
func Status(n *corev1.Node) string {
	s := "Unknown"
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			// As kubectl: any Ready status but True (False or Unknown) is NotReady.
			if c.Status == corev1.ConditionTrue {
				s = "Ready"
			} else {
				s = "NotReady"
			}
		}
	}
	if n.Spec.Unschedulable {
		s += ",SchedulingDisabled"
	}
	return s
}

func roles(n *corev1.Node) string {
	var rs []string
	seen := map[string]bool{} // kubectl shows a role named twice once
	for k, v := range n.Labels {
		r := ""
		switch {
		case strings.HasPrefix(k, "node-role.kubernetes.io/"):
			r = strings.TrimPrefix(k, "node-role.kubernetes.io/")
		case k == "kubernetes.io/role":
			r = v
		}
		if r != "" && !seen[r] {
			seen[r] = true
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return "<none>"
	}
	sort.Strings(rs)
	return strings.Join(rs, ",")
}

func address(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}

func orNone(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}
