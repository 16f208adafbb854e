package garbagecollector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/metadata/metadatainformer"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

var (
	deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	replicasets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	pods        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
)

// apiSim gives the fake metadata client Kubernetes' deletion semantics:
// propagationPolicy Foreground and Orphan add their finalizer, an object
// with finalizers only gets a deletionTimestamp, it goes when the last
// finalizer is removed, and Pods are deleted gracefully (they stay, with a
// deletionTimestamp, until the test lets them go). Preconditions and JSON
// patches (with test operations) are honoured.
type apiSim struct {
	client *fake.FakeMetadataClient
	mu     sync.Mutex
	seq    int
	gets   map[string]int // live GETs per name, to check owners are verified
}

func newSim(t *testing.T) *apiSim {
	scheme := fake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	s := &apiSim{client: fake.NewSimpleMetadataClient(scheme), gets: map[string]int{}}
	s.client.PrependReactor("*", "*", s.react)
	return s
}

func kindOf(gvr schema.GroupVersionResource) (string, string) {
	switch gvr.Resource {
	case "deployments":
		return "apps/v1", "Deployment"
	case "replicasets":
		return "apps/v1", "ReplicaSet"
	}
	return "v1", "Pod"
}

func (s *apiSim) add(t *testing.T, gvr schema.GroupVersionResource, name string, owners ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	av, k := kindOf(gvr)
	obj := &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: av, Kind: k},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name),
			ResourceVersion: fmt.Sprint(s.seq), OwnerReferences: owners},
	}
	if err := s.client.Tracker().Create(gvr, obj, "default"); err != nil {
		t.Fatal(err)
	}
	return obj
}

func ownedBy(obj *metav1.PartialObjectMetadata, block bool) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: obj.APIVersion, Kind: obj.Kind, Name: obj.Name, UID: obj.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(block)}
}

func (s *apiSim) get(gvr schema.GroupVersionResource, name string) (*metav1.PartialObjectMetadata, error) {
	o, err := s.client.Tracker().Get(gvr, "default", name)
	if err != nil {
		return nil, err
	}
	return o.(*metav1.PartialObjectMetadata).DeepCopy(), nil
}

func (s *apiSim) store(gvr schema.GroupVersionResource, obj *metav1.PartialObjectMetadata) error {
	s.seq++
	obj.ResourceVersion = fmt.Sprint(s.seq)
	if obj.DeletionTimestamp != nil && len(obj.Finalizers) == 0 && gvr.Resource != "pods" {
		return s.client.Tracker().Delete(gvr, "default", obj.Name)
	}
	return s.client.Tracker().Update(gvr, obj, "default")
}

func (s *apiSim) react(action k8stesting.Action) (bool, runtime.Object, error) {
	gvr := action.GetResource()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch action.GetVerb() {
	case "get":
		s.gets[action.(k8stesting.GetAction).GetName()]++
		return false, nil, nil
	case "delete":
		a := action.(k8stesting.DeleteAction)
		cur, err := s.get(gvr, a.GetName())
		if err != nil {
			return true, nil, err
		}
		opts := a.GetDeleteOptions()
		if p := opts.Preconditions; p != nil {
			if (p.UID != nil && *p.UID != cur.UID) || (p.ResourceVersion != nil && *p.ResourceVersion != cur.ResourceVersion) {
				return true, nil, apierrors.NewConflict(gvr.GroupResource(), a.GetName(), fmt.Errorf("precondition failed"))
			}
		}
		policy := metav1.DeletePropagationBackground
		if opts.PropagationPolicy != nil {
			policy = *opts.PropagationPolicy
		}
		switch policy {
		case metav1.DeletePropagationForeground:
			if !slices.Contains(cur.Finalizers, metav1.FinalizerDeleteDependents) {
				cur.Finalizers = append(cur.Finalizers, metav1.FinalizerDeleteDependents)
			}
		case metav1.DeletePropagationOrphan:
			if !slices.Contains(cur.Finalizers, metav1.FinalizerOrphanDependents) {
				cur.Finalizers = append(cur.Finalizers, metav1.FinalizerOrphanDependents)
			}
		}
		if len(cur.Finalizers) == 0 && gvr.Resource != "pods" {
			return true, nil, s.client.Tracker().Delete(gvr, "default", cur.Name)
		}
		if cur.DeletionTimestamp == nil {
			now := metav1.Now()
			cur.DeletionTimestamp = &now
		}
		return true, nil, s.store(gvr, cur)
	case "patch":
		a := action.(k8stesting.PatchAction)
		if a.GetPatchType() != types.JSONPatchType {
			return true, nil, fmt.Errorf("sim: unexpected patch type %s", a.GetPatchType())
		}
		cur, err := s.get(gvr, a.GetName())
		if err != nil {
			return true, nil, err
		}
		p, err := jsonpatch.DecodePatch(a.GetPatch())
		if err != nil {
			return true, nil, apierrors.NewBadRequest(err.Error())
		}
		js, _ := json.Marshal(cur)
		out, err := p.Apply(js)
		if err != nil {
			return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: gvr.Resource}, a.GetName(), nil)
		}
		var obj metav1.PartialObjectMetadata
		if err := json.Unmarshal(out, &obj); err != nil {
			return true, nil, err
		}
		return true, obj.DeepCopy(), s.store(gvr, &obj)
	}
	return false, nil, nil
}

// finishPods removes the named Pods once they terminate, as the node
// agent does.
func (s *apiSim) finishPods(t *testing.T, names ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		p, err := s.get(pods, n)
		if err != nil || p.DeletionTimestamp == nil {
			t.Fatalf("pod %s not terminating (%v)", n, err)
		}
		if err := s.client.Tracker().Delete(pods, "default", n); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *apiSim) exists(gvr schema.GroupVersionResource, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.get(gvr, name)
	return err == nil
}

func (s *apiSim) meta(t *testing.T, gvr schema.GroupVersionResource, name string) *metav1.PartialObjectMetadata {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	o, err := s.get(gvr, name)
	if err != nil {
		t.Fatalf("get %s %s: %v", gvr.Resource, name, err)
	}
	return o
}

// deleteAs deletes name as a client would.
func (s *apiSim) deleteAs(t *testing.T, gvr schema.GroupVersionResource, name string, policy metav1.DeletionPropagation) {
	t.Helper()
	err := s.client.Resource(gvr).Namespace("default").Delete(context.Background(), name, metav1.DeleteOptions{PropagationPolicy: &policy})
	if err != nil {
		t.Fatalf("delete %s %s: %v", gvr.Resource, name, err)
	}
}

func start(t *testing.T, s *apiSim) {
	t.Helper()
	factory := metadatainformer.NewSharedInformerFactory(s.client, 0)
	c, err := New(Config{Metadata: s.client, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, factory)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, 2) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		factory.Shutdown()
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 15*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// tree makes Deployment web -> ReplicaSet web-1 -> Pods web-1-a, web-1-b,
// with controller references that block owner deletion.
func tree(t *testing.T, s *apiSim) {
	d := s.add(t, deployments, "web")
	rs := s.add(t, replicasets, "web-1", ownedBy(d, true))
	s.add(t, pods, "web-1-a", ownedBy(rs, true))
	s.add(t, pods, "web-1-b", ownedBy(rs, true))
}

func TestNewValidatesConfig(t *testing.T) {
	s := newSim(t)
	factory := metadatainformer.NewSharedInformerFactory(s.client, 0)
	for name, cfg := range map[string]Config{
		"nil metadata":   {},
		"no resources":   {Metadata: s.client, Resources: []Resource{}},
		"resource kind":  {Metadata: s.client, Resources: []Resource{{GroupVersionResource: pods}}},
		"duplicate kind": {Metadata: s.client, Resources: []Resource{{GroupVersionResource: pods, Kind: "Pod"}, {GroupVersionResource: pods, Kind: "Pod"}}},
	} {
		if _, err := New(cfg, factory); err == nil {
			t.Errorf("%s: New succeeded, want error", name)
		}
	}
	if _, err := New(Config{Metadata: s.client}, nil); err == nil {
		t.Error("nil factory: New succeeded, want error")
	}
}

func TestBackgroundDeletion(t *testing.T) {
	s := newSim(t)
	tree(t, s)
	start(t, s)
	// Owners present: nothing is collected.
	time.Sleep(200 * time.Millisecond)
	if !s.exists(replicasets, "web-1") || !s.exists(pods, "web-1-a") {
		t.Fatal("collected objects whose owners exist")
	}
	s.deleteAs(t, deployments, "web", metav1.DeletePropagationBackground)
	eventually(t, "replicaset collected", func() bool { return !s.exists(replicasets, "web-1") })
	eventually(t, "pods deleted gracefully", func() bool {
		return s.meta(t, pods, "web-1-a").DeletionTimestamp != nil && s.meta(t, pods, "web-1-b").DeletionTimestamp != nil
	})
}

func TestForegroundDeletion(t *testing.T) {
	s := newSim(t)
	tree(t, s)
	start(t, s)
	s.deleteAs(t, deployments, "web", metav1.DeletePropagationForeground)

	// The ReplicaSet goes in foreground too (it has dependents), its Pods
	// are deleted, and everything waits while the Pods terminate.
	eventually(t, "pods terminating", func() bool {
		return s.meta(t, pods, "web-1-a").DeletionTimestamp != nil && s.meta(t, pods, "web-1-b").DeletionTimestamp != nil
	})
	rs := s.meta(t, replicasets, "web-1")
	if rs.DeletionTimestamp == nil || !slices.Contains(rs.Finalizers, metav1.FinalizerDeleteDependents) {
		t.Errorf("replicaset = %+v, want foreground deletion", rs.ObjectMeta)
	}
	time.Sleep(200 * time.Millisecond)
	if !s.exists(deployments, "web") || !s.exists(replicasets, "web-1") {
		t.Fatal("owner went before its blocking dependents")
	}

	s.finishPods(t, "web-1-a", "web-1-b")
	eventually(t, "replicaset and deployment gone", func() bool {
		return !s.exists(replicasets, "web-1") && !s.exists(deployments, "web")
	})
}

func TestOrphanDeletion(t *testing.T) {
	s := newSim(t)
	tree(t, s)
	start(t, s)
	s.deleteAs(t, deployments, "web", metav1.DeletePropagationOrphan)
	eventually(t, "deployment gone", func() bool { return !s.exists(deployments, "web") })
	rs := s.meta(t, replicasets, "web-1")
	if len(rs.OwnerReferences) != 0 || rs.DeletionTimestamp != nil {
		t.Errorf("replicaset = %+v, want an orphan that lives", rs.ObjectMeta)
	}
	time.Sleep(200 * time.Millisecond)
	if p := s.meta(t, pods, "web-1-a"); p.DeletionTimestamp != nil || len(p.OwnerReferences) != 1 {
		t.Errorf("pod = %+v, want untouched", p.ObjectMeta)
	}
}

func TestDanglingOwnerCheckedLive(t *testing.T) {
	s := newSim(t)
	gone := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "never-was", UID: "uid-never-was"}}
	s.add(t, pods, "dangling", ownedBy(gone, true))
	// Same name, other UID: the referenced owner is gone all the same.
	s.add(t, replicasets, "replaced")
	stale := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "replaced", UID: "uid-old-replaced"}}
	s.add(t, pods, "stale-ref", ownedBy(stale, false))
	// Owned by a kind not watched, and by one that exists: kept.
	s.add(t, pods, "foreign", metav1.OwnerReference{APIVersion: "batch/v1", Kind: "Job", Name: "j", UID: "uid-job"})
	live := s.add(t, replicasets, "live")
	s.add(t, pods, "two-owners", ownedBy(gone, false), ownedBy(live, false))
	start(t, s)

	eventually(t, "dangling pods deleted", func() bool {
		return s.meta(t, pods, "dangling").DeletionTimestamp != nil && s.meta(t, pods, "stale-ref").DeletionTimestamp != nil
	})
	s.mu.Lock()
	gets := s.gets["never-was"]
	s.mu.Unlock()
	if gets == 0 {
		t.Error("owner never-was was not checked with a live GET")
	}
	eventually(t, "reference to the gone owner dropped", func() bool {
		p := s.meta(t, pods, "two-owners")
		return len(p.OwnerReferences) == 1 && p.OwnerReferences[0].UID == live.UID
	})
	if p := s.meta(t, pods, "two-owners"); p.DeletionTimestamp != nil {
		t.Error("pod with a live owner deleted")
	}
	if p := s.meta(t, pods, "foreign"); p.DeletionTimestamp != nil {
		t.Error("pod owned by an unwatched kind deleted")
	}
}
