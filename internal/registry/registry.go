package registry

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/berth-project/berth/internal/storage"
)

// Registry holds the store of every kind berth serves.
type Registry struct {
	stores map[schema.GroupResource]*Store
	byGVK  map[schema.GroupVersionKind]*Store
}

// Config configures New.
type Config struct {
	Storage storage.Interface
	// Prefix is the key prefix in storage, e.g. "/berth/registry".
	Prefix string
	Kinds  []*Kind
	Logger *slog.Logger
}

// New builds the stores for cfg.Kinds.
func New(cfg Config) (*Registry, error) {
	r := &Registry{stores: map[schema.GroupResource]*Store{}, byGVK: map[schema.GroupVersionKind]*Store{}}
	for _, k := range cfg.Kinds {
		gr := k.GroupResource()
		if _, dup := r.stores[gr]; dup {
			return nil, fmt.Errorf("kind %s registered twice", gr)
		}
		s := NewStore(StoreConfig{Kind: k, Storage: cfg.Storage, Prefix: cfg.Prefix, Namespaces: r, Logger: cfg.Logger})
		r.stores[gr] = s
		r.byGVK[k.GroupVersionKind] = s
	}
	return r, nil
}

// Store returns the store serving gr, or nil.
func (r *Registry) Store(gr schema.GroupResource) *Store { return r.stores[gr] }

// StoreFor returns the store serving gvk, or nil.
func (r *Registry) StoreFor(gvk schema.GroupVersionKind) *Store { return r.byGVK[gvk] }

// Stores returns every store, ordered by group and resource.
func (r *Registry) Stores() []*Store {
	out := make([]*Store, 0, len(r.stores))
	for _, s := range r.stores {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Kind.GroupResource(), out[j].Kind.GroupResource()
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		return a.Resource < b.Resource
	})
	return out
}

// CheckCreate implements NamespaceChecker with the namespaces store.
func (r *Registry) CheckCreate(ctx context.Context, ns string) error {
	s := r.stores[schema.GroupResource{Resource: "namespaces"}]
	if s == nil {
		return nil
	}
	obj, err := s.Get(ctx, "", ns)
	if err != nil {
		return err
	}
	if n, ok := obj.(*corev1.Namespace); ok && (n.DeletionTimestamp != nil || n.Status.Phase == corev1.NamespaceTerminating) {
		return namespaceTerminating(schema.GroupResource{Resource: "namespaces"}, ns, ns)
	}
	return nil
}

// namespaceTerminating is the error Kubernetes' NamespaceLifecycle admission
// returns: it names the object being created and carries the
// NamespaceTerminating cause that controllers (the EndpointSlice controller
// among them) check to stop retrying.
func namespaceTerminating(gr schema.GroupResource, name, ns string) *apierrors.StatusError {
	err := apierrors.NewForbidden(gr, name, fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ns))
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
		Type:    corev1.NamespaceTerminatingCause,
		Message: fmt.Sprintf("namespace %s is being terminated", ns),
		Field:   "metadata.namespace",
	})
	return err
}

// retargetNamespaceError makes a terminating-namespace error from
// CheckCreate name the object being created, as Kubernetes does.
func retargetNamespaceError(err error, gr schema.GroupResource, name, ns string) error {
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		return namespaceTerminating(gr, name, ns)
	}
	return err
}

// DeleteCollection deletes every object in ns matching listOpts and returns
// the list of what it deleted or marked for deletion.
func (s *Store) DeleteCollection(ctx context.Context, ns string, listOpts ListOptions, opts *metav1.DeleteOptions, dryRun bool) (runtime.Object, error) {
	list, err := s.List(ctx, ns, ListOptions{Labels: listOpts.Labels, Fields: listOpts.Fields})
	if err != nil {
		return nil, err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, s.internal(err)
	}
	deleted := make([]runtime.Object, 0, len(items))
	for _, item := range items {
		m, _ := metaOf(item)
		obj, _, err := s.Delete(ctx, m.GetNamespace(), m.GetName(), opts, dryRun)
		if apierrors.IsNotFound(err) {
			continue // deleted by someone else meanwhile
		}
		if err != nil {
			return nil, err
		}
		deleted = append(deleted, obj)
	}
	if err := meta.SetList(list, deleted); err != nil {
		return nil, s.internal(err)
	}
	return list, nil
}
