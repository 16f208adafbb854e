package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/berth-project/berth/internal/storage"
)

// NamespaceChecker says whether new objects may be created in a namespace.
type NamespaceChecker interface {
	// CheckCreate returns NotFound when ns does not exist and Forbidden when
	// it is terminating.
	CheckCreate(ctx context.Context, ns string) error
}

// Store serves one Kind on top of a storage.Interface.
type Store struct {
	Kind       *Kind
	storage    storage.Interface
	prefix     string
	namespaces NamespaceChecker
	log        *slog.Logger
	now        func() time.Time
}

// StoreConfig configures NewStore.
type StoreConfig struct {
	Kind    *Kind
	Storage storage.Interface
	// Prefix is the storage key prefix under which all of berth's objects
	// live, e.g. "/berth/registry".
	Prefix     string
	Namespaces NamespaceChecker
	Logger     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewStore returns the store for one kind.
func NewStore(cfg StoreConfig) *Store {
	group := cfg.Kind.GroupVersionKind.Group
	if group == "" {
		group = "core"
	}
	s := &Store{
		Kind:       cfg.Kind,
		storage:    cfg.Storage,
		prefix:     strings.TrimSuffix(cfg.Prefix, "/") + "/" + group + "/" + cfg.Kind.Resource + "/",
		namespaces: cfg.Namespaces,
		log:        cfg.Logger,
		now:        cfg.Now,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

func (s *Store) key(ns, name string) string {
	if s.Kind.Namespaced {
		return s.prefix + ns + "/" + name
	}
	return s.prefix + name
}

func (s *Store) listPrefix(ns string) string {
	if s.Kind.Namespaced && ns != "" {
		return s.prefix + ns + "/"
	}
	return s.prefix
}

func (s *Store) notFound(name string) error {
	return apierrors.NewNotFound(s.Kind.GroupResource(), name)
}

func (s *Store) internal(err error) error {
	// A request that ran out of its time is a 504 Timeout, as the Kubernetes
	// API server's timeout filter answers it, not a 500.
	if errors.Is(err, context.DeadlineExceeded) {
		return apierrors.NewTimeoutError("request did not complete within requested timeout - context deadline exceeded", 0)
	}
	return apierrors.NewInternalError(err)
}

// CreateOptions are the options of a create that the store honours.
type CreateOptions struct {
	DryRun bool
}

// Create stores a new object in namespace ns (ignored for cluster-scoped kinds).
func (s *Store) Create(ctx context.Context, ns string, obj runtime.Object, opts CreateOptions) (runtime.Object, error) {
	m, err := metaOf(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if s.Kind.Namespaced {
		if m.GetNamespace() != "" && m.GetNamespace() != ns {
			return nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
		m.SetNamespace(ns)
	} else {
		m.SetNamespace("")
	}
	if m.GetResourceVersion() != "" {
		return nil, apierrors.NewBadRequest("resourceVersion should not be set on objects to be created")
	}
	// The namespace is checked before defaulting and validation, as
	// Kubernetes' NamespaceLifecycle admission does.
	if s.Kind.Namespaced && s.namespaces != nil {
		if err := s.namespaces.CheckCreate(ctx, ns); err != nil {
			return nil, retargetNamespaceError(err, s.Kind.GroupResource(), m.GetName(), ns)
		}
	}
	generated := m.GetName() == "" && m.GetGenerateName() != ""
	if generated {
		m.SetName(generateName(m.GetGenerateName()))
	}
	m.SetUID(uuid.NewUUID())
	m.SetCreationTimestamp(metav1.NewTime(s.now().Truncate(time.Second)))
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	m.SetGeneration(1)
	m.SetManagedFields(nil)
	m.SetSelfLink("")
	s.Kind.Strategy.PrepareForCreate(ctx, obj)

	errs := s.validateMeta(m)
	errs = append(errs, s.Kind.Strategy.Validate(ctx, obj)...)
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(s.Kind.GroupVersionKind.GroupKind(), m.GetName(), errs)
	}
	var rollback func()
	if a, ok := s.Kind.Strategy.(Allocator); ok && !opts.DryRun {
		if rollback, err = a.Allocate(ctx, obj, nil); err != nil {
			return nil, err
		}
	}
	data, err := s.Kind.encode(obj)
	if err != nil {
		if rollback != nil {
			rollback()
		}
		return nil, s.internal(err)
	}
	if opts.DryRun {
		return obj, nil
	}
	for attempt := 0; ; attempt++ {
		rev, err := s.storage.Create(ctx, s.key(ns, m.GetName()), data, s.Kind.TTL)
		// Kubernetes makes 8 attempts in all (maxNameGenerationCreateAttempts).
		if errors.Is(err, storage.ErrExists) && generated && attempt < 7 {
			m.SetName(generateName(m.GetGenerateName()))
			// Allocations are recorded under the object's name (a Service's
			// owner is namespace/name/uid): claim them again for the new
			// name, or they would leak when the object is deleted.
			if rollback != nil {
				rollback()
				if rollback, err = s.Kind.Strategy.(Allocator).Allocate(ctx, obj, nil); err != nil {
					return nil, err
				}
			}
			if data, err = s.Kind.encode(obj); err != nil {
				if rollback != nil {
					rollback()
				}
				return nil, s.internal(err)
			}
			continue
		}
		if err != nil {
			if rollback != nil {
				rollback()
			}
			if errors.Is(err, storage.ErrExists) {
				return nil, apierrors.NewAlreadyExists(s.Kind.GroupResource(), m.GetName())
			}
			return nil, s.internal(err)
		}
		return s.Kind.decode(data, rev)
	}
}

func (s *Store) validateMeta(m metav1.Object) field.ErrorList {
	nameFn := path.ValidatePathSegmentName
	if v, ok := s.Kind.Strategy.(interface {
		NameFunc() metavalidation.ValidateNameFunc
	}); ok {
		nameFn = v.NameFunc()
	}
	return metavalidation.ValidateObjectMetaAccessor(m, s.Kind.Namespaced, nameFn, field.NewPath("metadata"))
}

// Get returns the object ns/name.
func (s *Store) Get(ctx context.Context, ns, name string) (runtime.Object, error) {
	kv, err := s.storage.Get(ctx, s.key(ns, name))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, s.notFound(name)
	}
	if err != nil {
		return nil, s.internal(err)
	}
	obj, err := s.Kind.decode(kv.Value, kv.Revision)
	if err != nil {
		return nil, s.internal(err)
	}
	return obj, nil
}

// UpdateOptions are the options of an update that the store honours.
type UpdateOptions struct {
	// Subresource is "" for the main resource, or "status" (or another
	// subresource the strategy knows).
	Subresource string
	DryRun      bool
}

// MutateFunc turns the current object into the wanted one. It gets a copy it
// may change and return.
type MutateFunc func(current runtime.Object) (runtime.Object, error)

// Update replaces ns/name with obj (PUT). A resourceVersion in obj is a
// precondition; without one the update is unconditional.
func (s *Store) Update(ctx context.Context, ns, name string, obj runtime.Object, opts UpdateOptions) (runtime.Object, bool, error) {
	m, err := metaOf(obj)
	if err != nil {
		return nil, false, apierrors.NewBadRequest(err.Error())
	}
	if m.GetName() != name {
		return nil, false, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), name))
	}
	if s.Kind.Namespaced {
		if m.GetNamespace() != "" && m.GetNamespace() != ns {
			return nil, false, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
		m.SetNamespace(ns)
	}
	created := false
	out, err := s.update(ctx, ns, name, opts, func(runtime.Object) (runtime.Object, error) {
		return obj.DeepCopyObject(), nil
	}, func() (runtime.Object, error) {
		if !s.Kind.AllowCreateOnUpdate || opts.Subresource != "" {
			return nil, s.notFound(name)
		}
		created = true
		c := obj.DeepCopyObject()
		cm, _ := metaOf(c)
		cm.SetResourceVersion("")
		return s.Create(ctx, ns, c, CreateOptions{DryRun: opts.DryRun})
	})
	return out, created, err
}

// GuaranteedUpdate applies mutate to the current object, retrying on
// conflicts unless the mutated object names a resourceVersion (PATCH).
func (s *Store) GuaranteedUpdate(ctx context.Context, ns, name string, opts UpdateOptions, mutate MutateFunc) (runtime.Object, error) {
	return s.update(ctx, ns, name, opts, mutate, func() (runtime.Object, error) { return nil, s.notFound(name) })
}

func (s *Store) update(ctx context.Context, ns, name string, opts UpdateOptions, mutate MutateFunc, missing func() (runtime.Object, error)) (runtime.Object, error) {
	key := s.key(ns, name)
	for attempt := 0; attempt < 64; attempt++ {
		kv, err := s.storage.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return missing()
		}
		if err != nil {
			return nil, s.internal(err)
		}
		cur, err := s.Kind.decode(kv.Value, kv.Revision)
		if err != nil {
			return nil, s.internal(err)
		}
		obj, err := mutate(cur.DeepCopyObject())
		if err != nil {
			return nil, err
		}
		m, err := metaOf(obj)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		curMeta, _ := metaOf(cur)
		precondition := m.GetResourceVersion() != ""
		if precondition && m.GetResourceVersion() != curMeta.GetResourceVersion() {
			return nil, s.conflict(name)
		}
		if m.GetUID() != "" && m.GetUID() != curMeta.GetUID() {
			return nil, apierrors.NewConflict(s.Kind.GroupResource(), name,
				fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", m.GetUID(), curMeta.GetUID()))
		}
		if m.GetName() != name {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), name))
		}
		if errs := s.prepareUpdate(ctx, obj, cur, opts.Subresource); len(errs) > 0 {
			return nil, apierrors.NewInvalid(s.Kind.GroupVersionKind.GroupKind(), name, errs)
		}
		data, err := s.Kind.encode(obj)
		if err != nil {
			return nil, s.internal(err)
		}
		if bytes.Equal(data, kv.Value) {
			return cur, nil // nothing changed: no write, same resourceVersion
		}
		if opts.DryRun {
			m.SetResourceVersion(curMeta.GetResourceVersion())
			return obj, nil
		}
		if s.readyToRemove(obj) {
			if _, _, err := s.storage.Delete(ctx, key, kv.Revision); err != nil {
				if errors.Is(err, storage.ErrConflict) && !precondition {
					continue
				}
				if errors.Is(err, storage.ErrConflict) {
					return nil, s.conflict(name)
				}
				if errors.Is(err, storage.ErrNotFound) {
					return nil, s.notFound(name)
				}
				return nil, s.internal(err)
			}
			if a, ok := s.Kind.Strategy.(Allocator); ok {
				a.Release(ctx, cur)
			}
			return obj, nil
		}
		var rollback func()
		alloc, hasAlloc := s.Kind.Strategy.(Allocator)
		if hasAlloc {
			if rollback, err = alloc.Allocate(ctx, obj, cur); err != nil {
				return nil, err
			}
			if data, err = s.Kind.encode(obj); err != nil {
				rollback()
				return nil, s.internal(err)
			}
		}
		rev, err := s.storage.Update(ctx, key, data, kv.Revision)
		if err != nil {
			if rollback != nil {
				rollback()
			}
			switch {
			case errors.Is(err, storage.ErrConflict) && !precondition:
				continue
			case errors.Is(err, storage.ErrConflict):
				return nil, s.conflict(name)
			case errors.Is(err, storage.ErrNotFound):
				return missing()
			}
			return nil, s.internal(err)
		}
		if hasAlloc {
			alloc.Commit(ctx, obj, cur)
		}
		return s.Kind.decode(data, rev)
	}
	return nil, apierrors.NewConflict(s.Kind.GroupResource(), name, errors.New("too many concurrent updates; try again"))
}

func (s *Store) conflict(name string) error {
	return apierrors.NewConflict(s.Kind.GroupResource(), name,
		errors.New("the object has been modified; please apply your changes to the latest version and try again"))
}

// prepareUpdate carries system metadata over from old, runs the strategy for
// the main resource or a subresource, and validates.
func (s *Store) prepareUpdate(ctx context.Context, obj, old runtime.Object, sub string) field.ErrorList {
	m, _ := metaOf(obj)
	om, _ := metaOf(old)
	m.SetNamespace(om.GetNamespace())
	m.SetUID(om.GetUID())
	m.SetCreationTimestamp(om.GetCreationTimestamp())
	m.SetDeletionTimestamp(om.GetDeletionTimestamp())
	m.SetDeletionGracePeriodSeconds(om.GetDeletionGracePeriodSeconds())
	m.SetGeneration(om.GetGeneration())
	m.SetManagedFields(nil)
	m.SetSelfLink("")
	m.SetResourceVersion(om.GetResourceVersion())

	var errs field.ErrorList
	switch sub {
	case "":
		s.Kind.Strategy.PrepareForUpdate(ctx, obj, old)
		if specChanged(obj, old) {
			m.SetGeneration(om.GetGeneration() + 1)
		}
		errs = append(errs, s.Kind.Strategy.ValidateUpdate(ctx, obj, old)...)
	case "status":
		st, ok := s.Kind.Strategy.(StatusStrategy)
		if !ok {
			return field.ErrorList{field.NotSupported(field.NewPath("subresource"), sub, []string{""})}
		}
		st.PrepareForStatusUpdate(ctx, obj, old)
		errs = append(errs, st.ValidateStatusUpdate(ctx, obj, old)...)
	default:
		sr, ok := s.Kind.Strategy.(SubresourceStrategy)
		if !ok {
			return field.ErrorList{field.NotSupported(field.NewPath("subresource"), sub, []string{"", "status"})}
		}
		errs = append(errs, sr.PrepareForSubresourceUpdate(ctx, sub, obj, old)...)
	}
	errs = append(errs, metavalidation.ValidateObjectMetaAccessorUpdate(m, om, field.NewPath("metadata"))...)
	errs = append(errs, s.validateMeta(m)...)
	if om.GetDeletionTimestamp() != nil {
		errs = append(errs, metavalidation.ValidateNoNewFinalizers(m.GetFinalizers(), om.GetFinalizers(), field.NewPath("metadata", "finalizers"))...)
	}
	return errs
}

// SubresourceStrategy is implemented by kinds with subresources beyond status
// that update the object (for example a namespace's finalize).
type SubresourceStrategy interface {
	PrepareForSubresourceUpdate(ctx context.Context, sub string, obj, old runtime.Object) field.ErrorList
}

// specChanged says whether anything but metadata and status differs, which is
// what bumps metadata.generation in Kubernetes.
func specChanged(obj, old runtime.Object) bool {
	a := reflect.ValueOf(obj).Elem()
	b := reflect.ValueOf(old).Elem()
	for i := 0; i < a.NumField(); i++ {
		switch a.Type().Field(i).Name {
		case "TypeMeta", "ObjectMeta", "Status":
			continue
		}
		if !equality.Semantic.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			return true
		}
	}
	return false
}

// FinalizerStrategy lets a kind hold deletion on more than metadata.finalizers
// (a namespace's spec.finalizers) and mark an object as going.
type FinalizerStrategy interface {
	// PendingFinalizers says whether obj may not be removed yet.
	PendingFinalizers(obj runtime.Object) bool
	// BeginDelete marks obj as being deleted (for example phase Terminating).
	BeginDelete(obj runtime.Object)
}

func (s *Store) hasFinalizers(obj runtime.Object) bool {
	m, _ := metaOf(obj)
	if len(m.GetFinalizers()) > 0 {
		return true
	}
	if f, ok := s.Kind.Strategy.(FinalizerStrategy); ok {
		return f.PendingFinalizers(obj)
	}
	return false
}

// readyToRemove: an object whose deletion was requested goes once nothing
// holds it: no finalizers and no graceful period still running.
func (s *Store) readyToRemove(obj runtime.Object) bool {
	m, _ := metaOf(obj)
	if m.GetDeletionTimestamp() == nil || s.hasFinalizers(obj) {
		return false
	}
	g := m.GetDeletionGracePeriodSeconds()
	return g == nil || *g == 0
}

// Delete deletes ns/name. It returns the object and whether it is gone now
// (false: deletion is pending on a grace period or finalizers).
func (s *Store) Delete(ctx context.Context, ns, name string, opts *metav1.DeleteOptions, dryRun bool) (runtime.Object, bool, error) {
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	// As Kubernetes' delete handler: bad options (propagationPolicy with
	// orphanDependents, an unknown policy) are a 422 naming the field.
	if errs := metav1validation.ValidateDeleteOptions(opts); len(errs) > 0 {
		return nil, false, apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "DeleteOptions"}, "", errs)
	}
	key := s.key(ns, name)
	for attempt := 0; attempt < 64; attempt++ {
		kv, err := s.storage.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, false, s.notFound(name)
		}
		if err != nil {
			return nil, false, s.internal(err)
		}
		obj, err := s.Kind.decode(kv.Value, kv.Revision)
		if err != nil {
			return nil, false, s.internal(err)
		}
		m, _ := metaOf(obj)
		if p := opts.Preconditions; p != nil {
			if p.UID != nil && *p.UID != m.GetUID() {
				return nil, false, apierrors.NewConflict(s.Kind.GroupResource(), name,
					fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, m.GetUID()))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
				return nil, false, apierrors.NewConflict(s.Kind.GroupResource(), name,
					fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, m.GetResourceVersion()))
			}
		}
		if v, ok := s.Kind.Strategy.(DeleteValidator); ok {
			if err := v.ValidateDelete(obj); err != nil {
				return nil, false, err
			}
		}
		changed := s.applyPropagation(m, opts)

		grace, graceful := int64(0), false
		if g, ok := s.Kind.Strategy.(GracefulStrategy); ok {
			grace, graceful = g.GracePeriod(obj, opts)
		}
		now := s.now()
		pending := false
		if cur, g := m.GetDeletionTimestamp(), m.GetDeletionGracePeriodSeconds(); cur != nil && graceful {
			// As Kubernetes' BeforeDelete: once deletion has begun, only a
			// shorter grace period asked for by this request changes it, and
			// it counts from when the deletion began; one already at 0 is
			// finished now.
			switch {
			case g == nil || *g == 0:
				grace = 0
			case opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds < *g:
				grace = *opts.GracePeriodSeconds
			default:
				grace = *g
			}
		}
		if graceful && grace > 0 {
			pending = true
			if cur, g := m.GetDeletionTimestamp(), m.GetDeletionGracePeriodSeconds(); cur == nil {
				deadline := metav1.NewTime(now.Add(time.Duration(grace) * time.Second))
				m.SetDeletionTimestamp(&deadline)
				m.SetDeletionGracePeriodSeconds(&grace)
				changed = true
			} else if g != nil && grace < *g {
				deadline := metav1.NewTime(cur.Add(time.Duration(grace-*g) * time.Second))
				m.SetDeletionTimestamp(&deadline)
				m.SetDeletionGracePeriodSeconds(&grace)
				changed = true
			}
		} else if m.GetDeletionTimestamp() != nil || s.hasFinalizers(obj) {
			zero := int64(0)
			if m.GetDeletionTimestamp() == nil {
				t := metav1.NewTime(now)
				m.SetDeletionTimestamp(&t)
				changed = true
			}
			if g := m.GetDeletionGracePeriodSeconds(); g == nil || *g != 0 {
				m.SetDeletionGracePeriodSeconds(&zero)
				changed = true
			}
			pending = s.hasFinalizers(obj)
		}
		if pending || (changed && s.hasFinalizers(obj)) {
			if f, ok := s.Kind.Strategy.(FinalizerStrategy); ok {
				f.BeginDelete(obj)
			}
			if dryRun {
				return obj, false, nil
			}
			data, err := s.Kind.encode(obj)
			if err != nil {
				return nil, false, s.internal(err)
			}
			if bytes.Equal(data, kv.Value) {
				return obj, false, nil
			}
			rev, err := s.storage.Update(ctx, key, data, kv.Revision)
			if errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, false, s.internal(err)
			}
			out, err := s.Kind.decode(data, rev)
			return out, false, err
		}
		if dryRun {
			return obj, true, nil
		}
		_, rev, err := s.storage.Delete(ctx, key, kv.Revision)
		if errors.Is(err, storage.ErrConflict) {
			continue
		}
		if errors.Is(err, storage.ErrNotFound) {
			return nil, false, s.notFound(name)
		}
		if err != nil {
			return nil, false, s.internal(err)
		}
		if a, ok := s.Kind.Strategy.(Allocator); ok {
			a.Release(ctx, obj)
		}
		m.SetResourceVersion(formatRV(rev))
		return obj, true, nil
	}
	return nil, false, apierrors.NewConflict(s.Kind.GroupResource(), name, errors.New("too many concurrent updates; try again"))
}

// DeleteValidator is implemented by kinds some of whose objects may not be
// deleted (the default namespace).
type DeleteValidator interface {
	ValidateDelete(obj runtime.Object) error
}

// Finalizer names Kubernetes' garbage collector uses for the propagation
// policies that keep the owner until dependents are handled.
const (
	FinalizerOrphan     = "orphan"
	FinalizerForeground = "foregroundDeletion"
)

func (s *Store) applyPropagation(m metav1.Object, opts *metav1.DeleteOptions) bool {
	var policy metav1.DeletionPropagation
	switch {
	case opts.PropagationPolicy != nil:
		policy = *opts.PropagationPolicy
	case opts.OrphanDependents != nil && *opts.OrphanDependents:
		policy = metav1.DeletePropagationOrphan
	default:
		return false
	}
	want := ""
	switch policy {
	case metav1.DeletePropagationOrphan:
		want = FinalizerOrphan
	case metav1.DeletePropagationForeground:
		want = FinalizerForeground
	default:
		return false
	}
	if m.GetDeletionTimestamp() != nil {
		// Kubernetes lets a later delete switch an object to foreground or
		// orphan only while it still has finalizers to wait on.
		return false
	}
	for _, f := range m.GetFinalizers() {
		if f == want {
			return false
		}
	}
	m.SetFinalizers(append(m.GetFinalizers(), want))
	return true
}

// ObjectUID returns obj's UID (helper for callers building Status details).
func ObjectUID(obj runtime.Object) types.UID {
	m, err := metaOf(obj)
	if err != nil {
		return ""
	}
	return m.GetUID()
}
