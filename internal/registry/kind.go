package registry

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Strategy is what every kind supplies. Methods must not keep obj.
type Strategy interface {
	// PrepareForCreate defaults obj and clears what clients may not set on
	// create (usually status).
	PrepareForCreate(ctx context.Context, obj runtime.Object)
	// PrepareForUpdate carries over from old what the main resource may not
	// change (usually status).
	PrepareForUpdate(ctx context.Context, obj, old runtime.Object)
	// Validate checks a new object; metadata is checked by the store.
	Validate(ctx context.Context, obj runtime.Object) field.ErrorList
	// ValidateUpdate checks an update; immutable metadata is checked by the store.
	ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList
}

// StatusStrategy is implemented by kinds with a status subresource.
type StatusStrategy interface {
	// PrepareForStatusUpdate carries over everything but status from old.
	PrepareForStatusUpdate(ctx context.Context, obj, old runtime.Object)
	ValidateStatusUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList
}

// AttrsStrategy gives the fields a kind can be selected by, beyond
// metadata.name and metadata.namespace, which every kind has.
type AttrsStrategy interface {
	SelectableFields(obj runtime.Object) fields.Set
}

// TableStrategy gives a kind's server-side table columns, as kubectl prints them.
type TableStrategy interface {
	Columns() []metav1.TableColumnDefinition
	// Row returns the cells of one object, in Columns order.
	Row(obj runtime.Object, now time.Time) []interface{}
}

// GracefulStrategy is implemented by kinds whose deletion waits for someone
// (the node agent for pods) to confirm.
type GracefulStrategy interface {
	// GracePeriod returns the grace period for deleting obj and whether the
	// deletion is graceful at all (false: remove at once).
	GracePeriod(obj runtime.Object, opts *metav1.DeleteOptions) (int64, bool)
}

// Allocator is implemented by kinds that hold resources outside the object
// (cluster IPs, node ports). Allocate runs before an object is written and
// returns a rollback to call if the write fails; Release runs after removal.
type Allocator interface {
	Allocate(ctx context.Context, obj, old runtime.Object) (rollback func(), err error)
	Release(ctx context.Context, obj runtime.Object)
	// Commit runs after a successful update with the old object, to release
	// what the update gave up.
	Commit(ctx context.Context, obj, old runtime.Object)
}

// Kind describes one resource the registry serves.
type Kind struct {
	GroupVersionKind schema.GroupVersionKind
	// Resource is the plural, lower-case name in URLs ("pods").
	Resource   string
	Singular   string
	ShortNames []string
	Categories []string
	Namespaced bool
	New        func() runtime.Object
	NewList    func() runtime.Object
	Strategy   Strategy
	// TTL, when set, makes objects expire (Events).
	TTL time.Duration
	// AllowCreateOnUpdate lets PUT create a missing object (Endpoints, Events).
	AllowCreateOnUpdate bool
	// ReturnDeletedObject makes DELETE answer with the object instead of a
	// Status, as Kubernetes does for some kinds.
	ReturnDeletedObject bool
	// Subresources beyond status that the API server serves for this kind,
	// e.g. "binding", "log", "exec", "portforward", "scale".
	Subresources []string
}

// GroupResource returns the kind's group and resource, for errors.
func (k *Kind) GroupResource() schema.GroupResource {
	return schema.GroupResource{Group: k.GroupVersionKind.Group, Resource: k.Resource}
}

// HasStatus says whether the kind has a status subresource.
func (k *Kind) HasStatus() bool {
	_, ok := k.Strategy.(StatusStrategy)
	return ok
}

// Attrs returns the labels and selectable fields of obj.
func (k *Kind) Attrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	m, err := metaOf(obj)
	if err != nil {
		return nil, nil, err
	}
	fs := fields.Set{"metadata.name": m.GetName()}
	if k.Namespaced {
		fs["metadata.namespace"] = m.GetNamespace()
	}
	if a, ok := k.Strategy.(AttrsStrategy); ok {
		for f, v := range a.SelectableFields(obj) {
			fs[f] = v
		}
	}
	return labels.Set(m.GetLabels()), fs, nil
}
