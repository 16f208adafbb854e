// Package pod is the registry strategy for core/v1 Pods: defaulting and
// validation as Kubernetes does them, graceful deletion, the status and
// binding subresources, and kubectl's columns.
package pod

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/berth-project/berth/internal/registry"
)

// DefaultTerminationGracePeriod is Kubernetes' default, in seconds.
const DefaultTerminationGracePeriod int64 = 30

// Kind returns the registry Kind for pods.
func Kind() *registry.Kind {
	return &registry.Kind{
		GroupVersionKind: corev1.SchemeGroupVersion.WithKind("Pod"),
		Resource:         "pods", Singular: "pod", ShortNames: []string{"po"}, Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.Pod{} },
		NewList:    func() runtime.Object { return &corev1.PodList{} },
		Strategy:   strategy{}, ReturnDeletedObject: true,
		Subresources: []string{"binding", "log", "exec", "portforward", "attach"},
	}
}

type strategy struct{}

func (strategy) NameFunc() metavalidation.ValidateNameFunc { return metavalidation.NameIsDNSSubdomain }

func (strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	p := obj.(*corev1.Pod)
	Default(p)
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: qosClass(p)}
}

func (strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	p, o := obj.(*corev1.Pod), old.(*corev1.Pod)
	Default(p)
	p.Status = o.Status
}

func (strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	p := obj.(*corev1.Pod)
	return ValidateSpec(&p.Spec, field.NewPath("spec"))
}

// ValidateUpdate allows what Kubernetes allows on a running pod: images,
// activeDeadlineSeconds, added tolerations and metadata.
func (strategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	p, o := obj.(*corev1.Pod), old.(*corev1.Pod)
	errs := ValidateSpec(&p.Spec, field.NewPath("spec"))
	if len(errs) > 0 {
		return errs
	}
	a := p.Spec.DeepCopy()
	b := o.Spec.DeepCopy()
	if len(a.Containers) == len(b.Containers) {
		for i := range a.Containers {
			a.Containers[i].Image = b.Containers[i].Image
		}
	}
	if len(a.InitContainers) == len(b.InitContainers) {
		for i := range a.InitContainers {
			a.InitContainers[i].Image = b.InitContainers[i].Image
		}
	}
	a.ActiveDeadlineSeconds = b.ActiveDeadlineSeconds
	if len(a.Tolerations) >= len(b.Tolerations) {
		a.Tolerations = b.Tolerations
	}
	if b.TerminationGracePeriodSeconds != nil && a.TerminationGracePeriodSeconds != nil && *b.TerminationGracePeriodSeconds < 0 {
		a.TerminationGracePeriodSeconds = b.TerminationGracePeriodSeconds
	}
	if !equality.Semantic.DeepEqual(a, b) {
		return field.ErrorList{field.Forbidden(field.NewPath("spec"),
			"pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")}
	}
	return nil
}

func (strategy) PrepareForStatusUpdate(_ context.Context, obj, old runtime.Object) {
	p, o := obj.(*corev1.Pod), old.(*corev1.Pod)
	p.Spec = o.Spec
	p.OwnerReferences = o.OwnerReferences
}

func (strategy) ValidateStatusUpdate(_ context.Context, obj, _ runtime.Object) field.ErrorList {
	p := obj.(*corev1.Pod)
	var errs field.ErrorList
	sp := field.NewPath("status")
	switch p.Status.Phase {
	case corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown:
	default:
		errs = append(errs, field.NotSupported(sp.Child("phase"), p.Status.Phase, []string{"Pending", "Running", "Succeeded", "Failed", "Unknown"}))
	}
	errs = append(errs, validateIPs(p.Status.PodIP, p.Status.PodIPs, sp)...)
	return errs
}

// PrepareForSubresourceUpdate serves pods/binding: the only way to set
// spec.nodeName, once.
func (strategy) PrepareForSubresourceUpdate(_ context.Context, sub string, obj, old runtime.Object) field.ErrorList {
	if sub != "binding" {
		return field.ErrorList{field.NotSupported(field.NewPath("subresource"), sub, []string{"status", "binding"})}
	}
	p, o := obj.(*corev1.Pod), old.(*corev1.Pod)
	node := p.Spec.NodeName
	*p = *o.DeepCopy()
	if o.Spec.NodeName != "" {
		return field.ErrorList{field.Forbidden(field.NewPath("spec", "nodeName"), fmt.Sprintf("pod %s is already assigned to node %q", o.Name, o.Spec.NodeName))}
	}
	if o.DeletionTimestamp != nil {
		return field.ErrorList{field.Forbidden(field.NewPath("metadata", "deletionTimestamp"), fmt.Sprintf("pod %s is being deleted, cannot be assigned to a host", o.Name))}
	}
	p.Spec.NodeName = node
	setCondition(&p.Status, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()})
	return nil
}

func setCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			if st.Conditions[i].Status != c.Status {
				st.Conditions[i] = c
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// GracePeriod implements graceful deletion as Kubernetes does for pods: the
// pod's terminationGracePeriodSeconds unless the request says otherwise; at
// once when it never reached a node or has already finished.
func (strategy) GracePeriod(obj runtime.Object, opts *metav1.DeleteOptions) (int64, bool) {
	p := obj.(*corev1.Pod)
	grace := DefaultTerminationGracePeriod
	if p.Spec.TerminationGracePeriodSeconds != nil {
		grace = *p.Spec.TerminationGracePeriodSeconds
	}
	if opts.GracePeriodSeconds != nil {
		grace = *opts.GracePeriodSeconds
	}
	if grace < 0 {
		grace = 1
	}
	if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return 0, true
	}
	return grace, true
}

func (strategy) SelectableFields(obj runtime.Object) fields.Set {
	p := obj.(*corev1.Pod)
	hostNetwork := "false"
	if p.Spec.HostNetwork {
		hostNetwork = "true"
	}
	return fields.Set{
		"spec.nodeName":            p.Spec.NodeName,
		"spec.restartPolicy":       string(p.Spec.RestartPolicy),
		"spec.schedulerName":       p.Spec.SchedulerName,
		"spec.serviceAccountName":  p.Spec.ServiceAccountName,
		"spec.hostNetwork":         hostNetwork,
		"status.phase":             string(p.Status.Phase),
		"status.podIP":             p.Status.PodIP,
		"status.nominatedNodeName": p.Status.NominatedNodeName,
	}
}

func qosClass(p *corev1.Pod) corev1.PodQOSClass {
	requests, limits := false, false
	guaranteed := len(p.Spec.Containers) > 0
	for _, c := range p.Spec.Containers {
		if len(c.Resources.Requests) > 0 {
			requests = true
		}
		if len(c.Resources.Limits) > 0 {
			limits = true
		}
		cpu, mem := c.Resources.Limits[corev1.ResourceCPU], c.Resources.Limits[corev1.ResourceMemory]
		if cpu.IsZero() || mem.IsZero() {
			guaranteed = false
		}
		for name, req := range c.Resources.Requests {
			if lim, ok := c.Resources.Limits[name]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
			}
		}
	}
	switch {
	case !requests && !limits:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

// imageTag returns the tag of an image reference ("" when none).
func imageTag(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		return "digest"
	}
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[colon+1:]
	}
	return ""
}
