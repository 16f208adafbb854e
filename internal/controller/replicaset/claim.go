package replicaset

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// RefManager applies upstream's ControllerRefManager rules for one owner
// (a ReplicaSet claiming Pods, a Deployment claiming ReplicaSets):
//
//   - an object controlled by someone else is never touched;
//   - an object we control that still matches is ours, even while we are
//     being deleted (keeping it takes no action);
//   - an object we control that stopped matching is released, unless we are
//     being deleted;
//   - a matching orphan that is not being deleted is adopted, unless we are
//     being deleted; before the first adoption canAdopt re-reads the owner
//     from the API server (not the cache), so an owner deleted a moment ago
//     does not adopt anything (kubernetes#42639).
//
// A RefManager serves one sync of one owner; it is not safe for concurrent
// use beyond the once-only canAdopt check.
type RefManager struct {
	owner    metav1.Object
	kind     schema.GroupVersionKind
	canAdopt func(context.Context) error

	once        sync.Once
	canAdoptErr error
}

// NewRefManager makes a RefManager for owner, whose kind is kind. canAdopt
// may be nil to allow adoption without a re-check.
func NewRefManager(owner metav1.Object, kind schema.GroupVersionKind, canAdopt func(context.Context) error) *RefManager {
	return &RefManager{owner: owner, kind: kind, canAdopt: canAdopt}
}

// Claim decides about obj. matches says whether the owner's selector selects
// it; adopt and release make the API call. It reports whether the owner
// controls obj afterwards. NotFound from adopt or release means the object is
// gone, which is no error.
func (m *RefManager) Claim(ctx context.Context, obj metav1.Object, matches bool, adopt, release func(context.Context) error) (bool, error) {
	if ref := metav1.GetControllerOfNoCopy(obj); ref != nil {
		if ref.UID != m.owner.GetUID() {
			return false, nil
		}
		if matches {
			return true, nil
		}
		if m.owner.GetDeletionTimestamp() != nil {
			return false, nil
		}
		if err := release(ctx); err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
		return false, nil
	}
	if m.owner.GetDeletionTimestamp() != nil || !matches || obj.GetDeletionTimestamp() != nil {
		return false, nil
	}
	if ns := m.owner.GetNamespace(); ns != "" && ns != obj.GetNamespace() {
		return false, nil
	}
	if err := m.checkCanAdopt(ctx); err != nil {
		return false, fmt.Errorf("can't adopt %s %s/%s: %w", m.kind.Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	if err := adopt(ctx); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

func (m *RefManager) checkCanAdopt(ctx context.Context) error {
	if m.canAdopt == nil {
		return nil
	}
	m.once.Do(func() { m.canAdoptErr = m.canAdopt(ctx) })
	return m.canAdoptErr
}

// RecheckDeletion returns a canAdopt function that reads the owner with get
// (which should bypass the cache) and refuses adoption when it has a
// deletionTimestamp or is another object of the same name.
func RecheckDeletion(owner metav1.Object, get func(context.Context) (metav1.Object, error)) func(context.Context) error {
	return func(ctx context.Context) error {
		fresh, err := get(ctx)
		if err != nil {
			return err
		}
		if fresh.GetUID() != owner.GetUID() {
			return fmt.Errorf("original %s/%s is gone: got uid %s, wanted %s", owner.GetNamespace(), owner.GetName(), fresh.GetUID(), owner.GetUID())
		}
		if fresh.GetDeletionTimestamp() != nil {
			return fmt.Errorf("%s/%s has just been deleted at %v", owner.GetNamespace(), owner.GetName(), fresh.GetDeletionTimestamp())
		}
		return nil
	}
}

type refPatch struct {
	Metadata refPatchMeta `json:"metadata"`
}

type refPatchMeta struct {
	OwnerReferences []map[string]any `json:"ownerReferences"`
	// UID makes the patch fail when the object was replaced by another of
	// the same name since we looked at it.
	UID types.UID `json:"uid"`
}

// AdoptPatch is the strategic merge patch that adds a controller reference
// to owner (controller and blockOwnerDeletion true) to the object objUID.
// ownerReferences merge by uid, so other owners are kept.
func AdoptPatch(owner metav1.Object, kind schema.GroupVersionKind, objUID types.UID) []byte {
	p := refPatch{Metadata: refPatchMeta{UID: objUID, OwnerReferences: []map[string]any{{
		"apiVersion":         kind.GroupVersion().String(),
		"kind":               kind.Kind,
		"name":               owner.GetName(),
		"uid":                owner.GetUID(),
		"controller":         true,
		"blockOwnerDeletion": true,
	}}}}
	return mustJSON(p)
}

// ReleasePatch is the strategic merge patch that removes the reference to
// ownerUID from the object objUID.
func ReleasePatch(ownerUID, objUID types.UID) []byte {
	p := refPatch{Metadata: refPatchMeta{UID: objUID, OwnerReferences: []map[string]any{{
		"$patch": "delete",
		"uid":    ownerUID,
	}}}}
	return mustJSON(p)
}

// mustJSON marshals values made of strings and bools only, for which
// json.Marshal cannot fail.
func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
