package replicaset

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/utils/ptr"
)

func TestRefManagerClaim(t *testing.T) {
	now := metav1.Now()
	owner := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "rs", Namespace: "default", UID: "owner"}}
	deletingOwner := owner.DeepCopy()
	deletingOwner.DeletionTimestamp = &now
	ref := func(uid types.UID) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "x", UID: uid, Controller: ptr.To(true)}}
	}
	pod := func(ns string, refs []metav1.OwnerReference, deleting bool) *v1.Pod {
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns, OwnerReferences: refs}}
		if deleting {
			p.DeletionTimestamp = &now
		}
		return p
	}
	tests := []struct {
		name        string
		owner       *appsv1.ReplicaSet
		obj         *v1.Pod
		matches     bool
		canAdoptErr error
		adoptErr    error
		want        bool
		wantAdopt   bool
		wantRelease bool
		wantErr     bool
	}{
		{name: "owned by another", owner: owner, obj: pod("default", ref("other"), false), matches: true},
		{name: "ours and matching", owner: owner, obj: pod("default", ref("owner"), false), matches: true, want: true},
		{name: "ours and matching while owner is deleted", owner: deletingOwner, obj: pod("default", ref("owner"), false), matches: true, want: true},
		{name: "ours, no longer matching", owner: owner, obj: pod("default", ref("owner"), false), wantRelease: true},
		{name: "ours, no longer matching, owner deleted", owner: deletingOwner, obj: pod("default", ref("owner"), false)},
		{name: "matching orphan", owner: owner, obj: pod("default", nil, false), matches: true, want: true, wantAdopt: true},
		{name: "orphan not matching", owner: owner, obj: pod("default", nil, false)},
		{name: "matching orphan being deleted", owner: owner, obj: pod("default", nil, true), matches: true},
		{name: "matching orphan, owner being deleted", owner: deletingOwner, obj: pod("default", nil, false), matches: true},
		{name: "matching orphan in another namespace", owner: owner, obj: pod("other", nil, false), matches: true},
		{name: "owner re-check fails", owner: owner, obj: pod("default", nil, false), matches: true, canAdoptErr: errors.New("gone"), wantErr: true},
		{name: "orphan vanished during adoption", owner: owner, obj: pod("default", nil, false), matches: true, wantAdopt: true,
			adoptErr: apierrors.NewNotFound(v1.Resource("pods"), "p")},
		{name: "adoption fails", owner: owner, obj: pod("default", nil, false), matches: true, wantAdopt: true,
			adoptErr: errors.New("boom"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var adopted, released bool
			m := NewRefManager(tt.owner, controllerKind, func(context.Context) error { return tt.canAdoptErr })
			got, err := m.Claim(context.Background(), tt.obj, tt.matches,
				func(context.Context) error { adopted = true; return tt.adoptErr },
				func(context.Context) error { released = true; return nil })
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want || adopted != tt.wantAdopt || released != tt.wantRelease {
				t.Errorf("claimed=%v adopted=%v released=%v, want %v %v %v", got, adopted, released, tt.want, tt.wantAdopt, tt.wantRelease)
			}
		})
	}
}

func TestRecheckDeletion(t *testing.T) {
	now := metav1.Now()
	owner := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "rs", Namespace: "default", UID: "a"}}
	deleted := owner.DeepCopy()
	deleted.DeletionTimestamp = &now
	replaced := owner.DeepCopy()
	replaced.UID = "b"
	for name, tc := range map[string]struct {
		fresh   metav1.Object
		err     error
		wantErr bool
	}{
		"alive":     {fresh: owner},
		"deleted":   {fresh: deleted, wantErr: true},
		"replaced":  {fresh: replaced, wantErr: true},
		"get fails": {err: errors.New("boom"), wantErr: true},
	} {
		t.Run(name, func(t *testing.T) {
			err := RecheckDeletion(owner, func(context.Context) (metav1.Object, error) { return tc.fresh, tc.err })(context.Background())
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

// TestRefPatches applies the patches as the API server does, so the
// ownerReferences come out as Kubernetes would store them.
func TestRefPatches(t *testing.T) {
	owner := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "rs", Namespace: "default", UID: "owner"}}
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "pod",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "cm", UID: "cm"}}}}
	cur, _ := json.Marshal(p)

	adopted, err := strategicpatch.StrategicMergePatch(cur, AdoptPatch(owner, controllerKind, p.UID), &v1.Pod{})
	if err != nil {
		t.Fatalf("apply adopt patch: %v", err)
	}
	var got v1.Pod
	if err := json.Unmarshal(adopted, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.OwnerReferences) != 2 {
		t.Fatalf("ownerReferences = %+v, want the ConfigMap and the ReplicaSet", got.OwnerReferences)
	}
	c := metav1.GetControllerOf(&got)
	if c == nil || c.UID != "owner" || c.Kind != "ReplicaSet" || c.APIVersion != "apps/v1" || !ptr.Deref(c.BlockOwnerDeletion, false) {
		t.Errorf("controller ref = %+v", c)
	}

	released, err := strategicpatch.StrategicMergePatch(adopted, ReleasePatch(owner.UID, p.UID), &v1.Pod{})
	if err != nil {
		t.Fatalf("apply release patch: %v", err)
	}
	got = v1.Pod{}
	if err := json.Unmarshal(released, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != "cm" {
		t.Errorf("after release ownerReferences = %+v, want only the ConfigMap", got.OwnerReferences)
	}
}
