// Package replicaset is the registry strategy for apps/v1 ReplicaSets.
package replicaset

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/berth-project/berth/internal/registry"
	"github.com/berth-project/berth/internal/registry/workload"
)

// Kind returns the registry Kind for replicasets.
func Kind() *registry.Kind {
	return &registry.Kind{
		GroupVersionKind: appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
		Resource:         "replicasets", Singular: "replicaset", ShortNames: []string{"rs"}, Categories: []string{"all"},
		Namespaced:   true,
		New:          func() runtime.Object { return &appsv1.ReplicaSet{} },
		NewList:      func() runtime.Object { return &appsv1.ReplicaSetList{} },
		Strategy:     strategy{},
		Subresources: []string{"scale"},
	}
}

type strategy struct{}

func (strategy) NameFunc() metavalidation.ValidateNameFunc { return metavalidation.NameIsDNSSubdomain }

func (strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	rs := obj.(*appsv1.ReplicaSet)
	rs.Status = appsv1.ReplicaSetStatus{}
	defaults(rs)
}

func (strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	rs, o := obj.(*appsv1.ReplicaSet), old.(*appsv1.ReplicaSet)
	rs.Status = o.Status
	defaults(rs)
}

func defaults(rs *appsv1.ReplicaSet) {
	if rs.Spec.Replicas == nil {
		one := int32(1)
		rs.Spec.Replicas = &one
	}
	workload.DefaultTemplate(&rs.Spec.Template)
}

func (strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return validate(obj.(*appsv1.ReplicaSet))
}

func (strategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	rs, o := obj.(*appsv1.ReplicaSet), old.(*appsv1.ReplicaSet)
	errs := validate(rs)
	if !equality.Semantic.DeepEqual(rs.Spec.Selector, o.Spec.Selector) {
		errs = append(errs, field.Invalid(field.NewPath("spec", "selector"), rs.Spec.Selector, "field is immutable"))
	}
	return errs
}

func validate(rs *appsv1.ReplicaSet) field.ErrorList {
	sp := field.NewPath("spec")
	errs := workload.ValidateReplicas(rs.Spec.Replicas, sp.Child("replicas"))
	errs = append(errs, workload.ValidateSelectorAndTemplate(rs.Spec.Selector, &rs.Spec.Template, sp)...)
	if rs.Spec.MinReadySeconds < 0 {
		errs = append(errs, field.Invalid(sp.Child("minReadySeconds"), rs.Spec.MinReadySeconds, "must be greater than or equal to 0"))
	}
	return errs
}

func (strategy) PrepareForStatusUpdate(_ context.Context, obj, old runtime.Object) {
	rs, o := obj.(*appsv1.ReplicaSet), old.(*appsv1.ReplicaSet)
	rs.Spec = o.Spec
	rs.Labels, rs.Annotations = o.Labels, o.Annotations
}

func (strategy) ValidateStatusUpdate(_ context.Context, obj, _ runtime.Object) field.ErrorList {
	rs := obj.(*appsv1.ReplicaSet)
	var errs field.ErrorList
	sp := field.NewPath("status")
	for name, v := range map[string]int32{"replicas": rs.Status.Replicas, "readyReplicas": rs.Status.ReadyReplicas, "availableReplicas": rs.Status.AvailableReplicas, "fullyLabeledReplicas": rs.Status.FullyLabeledReplicas} {
		if v < 0 {
			errs = append(errs, field.Invalid(sp.Child(name), v, "must be greater than or equal to 0"))
		}
	}
	return errs
}

func (strategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: "Name must be unique within a namespace."},
		{Name: "Desired", Type: "integer", Description: "Replicas is the number of desired replicas."},
		{Name: "Current", Type: "integer", Description: "Replicas is the most recently observed number of replicas."},
		{Name: "Ready", Type: "integer", Description: "The number of ready replicas for this replica set."},
		{Name: "Age", Type: "string", Description: "CreationTimestamp is a timestamp representing the server time when this object was created."},
		{Name: "Containers", Type: "string", Priority: 1, Description: "Names of each container in the template."},
		{Name: "Images", Type: "string", Priority: 1, Description: "Images referenced by each container in the template."},
		{Name: "Selector", Type: "string", Priority: 1, Description: "Selector is a label query over pods that should match the replica count."},
	}
}

func (strategy) Row(obj runtime.Object, now time.Time) []interface{} {
	rs := obj.(*appsv1.ReplicaSet)
	want := int64(0)
	if rs.Spec.Replicas != nil {
		want = int64(*rs.Spec.Replicas)
	}
	names, images := workload.Containers(&rs.Spec.Template)
	return []interface{}{rs.Name, want, int64(rs.Status.Replicas), int64(rs.Status.ReadyReplicas), registry.Age(rs.CreationTimestamp, now), names, images, workload.Selector(rs.Spec.Selector)}
}
