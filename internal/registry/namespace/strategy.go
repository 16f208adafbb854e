// Package namespace is the registry strategy for core/v1 Namespaces.
package namespace

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/berth-project/berth/internal/registry"
)

// FinalizerKubernetes is the spec finalizer the namespace controller removes
// once the namespace is empty.
const FinalizerKubernetes corev1.FinalizerName = "kubernetes"

// Protected namespaces may not be deleted.
var Protected = map[string]bool{"default": true, "kube-system": true, "kube-public": true, "kube-node-lease": true}

// Kind returns the registry Kind for namespaces.
func Kind() *registry.Kind {
	return &registry.Kind{
		GroupVersionKind: corev1.SchemeGroupVersion.WithKind("Namespace"),
		Resource:         "namespaces", Singular: "namespace", ShortNames: []string{"ns"},
		New:      func() runtime.Object { return &corev1.Namespace{} },
		NewList:  func() runtime.Object { return &corev1.NamespaceList{} },
		Strategy: strategy{}, ReturnDeletedObject: true,
		Subresources: []string{"finalize"},
	}
}

type strategy struct{}

func (strategy) NameFunc() metavalidation.ValidateNameFunc {
	return metavalidation.ValidateNamespaceName
}

func (strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	ns := obj.(*corev1.Namespace)
	ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
	ns.Spec.Finalizers = []corev1.FinalizerName{FinalizerKubernetes}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels[corev1.LabelMetadataName] = ns.Name
}

func (strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	ns, o := obj.(*corev1.Namespace), old.(*corev1.Namespace)
	ns.Spec.Finalizers = o.Spec.Finalizers
	ns.Status = o.Status
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels[corev1.LabelMetadataName] = ns.Name
}

func (strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return validateFinalizers(obj.(*corev1.Namespace))
}

func (strategy) ValidateUpdate(_ context.Context, obj, _ runtime.Object) field.ErrorList {
	return validateFinalizers(obj.(*corev1.Namespace))
}

func validateFinalizers(ns *corev1.Namespace) field.ErrorList {
	var errs field.ErrorList
	for i, f := range ns.Spec.Finalizers {
		errs = append(errs, metavalidation.ValidateFinalizerName(string(f), field.NewPath("spec", "finalizers").Index(i))...)
	}
	return errs
}

func (strategy) PrepareForStatusUpdate(_ context.Context, obj, old runtime.Object) {
	ns, o := obj.(*corev1.Namespace), old.(*corev1.Namespace)
	ns.Spec = o.Spec
}

func (strategy) ValidateStatusUpdate(_ context.Context, obj, _ runtime.Object) field.ErrorList {
	ns := obj.(*corev1.Namespace)
	switch ns.Status.Phase {
	case corev1.NamespaceActive, corev1.NamespaceTerminating:
		return nil
	}
	return field.ErrorList{field.NotSupported(field.NewPath("status", "phase"), ns.Status.Phase, []string{"Active", "Terminating"})}
}

// PrepareForSubresourceUpdate serves PUT namespaces/NAME/finalize, which may
// change only spec.finalizers.
func (strategy) PrepareForSubresourceUpdate(_ context.Context, sub string, obj, old runtime.Object) field.ErrorList {
	if sub != "finalize" {
		return field.ErrorList{field.NotSupported(field.NewPath("subresource"), sub, []string{"status", "finalize"})}
	}
	ns, o := obj.(*corev1.Namespace), old.(*corev1.Namespace)
	fin := ns.Spec.Finalizers
	*ns = *o.DeepCopy()
	ns.Spec.Finalizers = fin
	return validateFinalizers(ns)
}

func (strategy) PendingFinalizers(obj runtime.Object) bool {
	return len(obj.(*corev1.Namespace).Spec.Finalizers) > 0
}

func (strategy) BeginDelete(obj runtime.Object) {
	obj.(*corev1.Namespace).Status.Phase = corev1.NamespaceTerminating
}

// ValidateDelete refuses to delete the namespaces Kubernetes keeps.
func (strategy) ValidateDelete(obj runtime.Object) error {
	ns := obj.(*corev1.Namespace)
	if Protected[ns.Name] {
		return apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, ns.Name, fmt.Errorf("this namespace may not be deleted"))
	}
	return nil
}

func (strategy) SelectableFields(obj runtime.Object) fields.Set {
	return fields.Set{"status.phase": string(obj.(*corev1.Namespace).Status.Phase)}
}

func (strategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: "Name must be unique within a namespace."},
		{Name: "Status", Type: "string", Description: "The status of the namespace"},
		{Name: "Age", Type: "string", Description: "CreationTimestamp is a timestamp representing the server time when this object was created."},
	}
}

func (strategy) Row(obj runtime.Object, now time.Time) []interface{} {
	ns := obj.(*corev1.Namespace)
	return []interface{}{ns.Name, string(ns.Status.Phase), registry.Age(ns.CreationTimestamp, now)}
}
