package deployment

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// apiSim makes the fake clientset behave like an API server where the
// controllers need it to: names from generateName, UIDs, resourceVersions
// (with conflicts), generation bumps on spec changes, the status
// subresource, patches, preconditions, and graceful Pod deletion (a deleted
// Pod gets a deletionTimestamp and stays until the test lets it go, as the
// node agent would).
type apiSim struct {
	client *fake.Clientset

	mu  sync.Mutex
	seq int64
	// failCreatePods makes Pod creation fail with this error (nil: succeed).
	failCreatePods error
	// podsDeleted names the Pods marked for deletion, in order.
	podsDeleted []string
}

func newAPISim(objs ...runtime.Object) *apiSim {
	s := &apiSim{client: fake.NewClientset(objs...)}
	s.client.PrependReactor("*", "*", s.react)
	return s
}

func (s *apiSim) next() string {
	s.seq++
	return fmt.Sprint(s.seq + 1000)
}

func emptyFor(resource string) runtime.Object {
	switch resource {
	case "pods":
		return &v1.Pod{}
	case "replicasets":
		return &appsv1.ReplicaSet{}
	case "deployments":
		return &appsv1.Deployment{}
	}
	return nil
}

func (s *apiSim) react(action k8stesting.Action) (bool, runtime.Object, error) {
	gvr := action.GetResource()
	if emptyFor(gvr.Resource) == nil {
		return false, nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := action.GetNamespace()
	tr := s.client.Tracker()
	// Switch on the verb: the action interfaces overlap (an update action
	// is also a CreateAction by its methods).
	switch action.GetVerb() {
	case "create":
		a := action.(k8stesting.CreateAction)
		if gvr.Resource == "pods" && s.failCreatePods != nil {
			return true, nil, s.failCreatePods
		}
		obj := a.GetObject().DeepCopyObject()
		m, _ := meta.Accessor(obj)
		if m.GetName() == "" && m.GetGenerateName() != "" {
			m.SetName(fmt.Sprintf("%s%05d", m.GetGenerateName(), s.seq+1))
		}
		if m.GetName() == "" {
			return true, nil, apierrors.NewBadRequest("name or generateName is required")
		}
		if m.GetUID() == "" {
			m.SetUID(types.UID(fmt.Sprintf("uid-%s-%d", m.GetName(), s.seq)))
		}
		m.SetResourceVersion(s.next())
		m.SetGeneration(1)
		m.SetCreationTimestamp(metav1.Now())
		if err := tr.Create(gvr, obj, ns); err != nil {
			return true, nil, err
		}
		return true, obj.DeepCopyObject(), nil
	case "update":
		a := action.(k8stesting.UpdateAction)
		return s.update(gvr, ns, a.GetObject().DeepCopyObject(), a.GetSubresource())
	case "patch":
		a := action.(k8stesting.PatchAction)
		cur, err := tr.Get(gvr, ns, a.GetName())
		if err != nil {
			return true, nil, err
		}
		js, _ := json.Marshal(cur)
		var out []byte
		switch a.GetPatchType() {
		case types.JSONPatchType:
			p, err := jsonpatch.DecodePatch(a.GetPatch())
			if err != nil {
				return true, nil, apierrors.NewBadRequest(err.Error())
			}
			out, err = p.Apply(js)
			if err != nil {
				return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: gvr.Resource}, a.GetName(), nil)
			}
		case types.MergePatchType:
			out, err = jsonpatch.MergePatch(js, a.GetPatch())
		case types.StrategicMergePatchType:
			out, err = strategicpatch.StrategicMergePatch(js, a.GetPatch(), emptyFor(gvr.Resource))
		default:
			return true, nil, fmt.Errorf("patch type %s unsupported", a.GetPatchType())
		}
		if err != nil {
			return true, nil, apierrors.NewBadRequest(err.Error())
		}
		obj := emptyFor(gvr.Resource)
		if err := json.Unmarshal(out, obj); err != nil {
			return true, nil, apierrors.NewBadRequest(err.Error())
		}
		curMeta, _ := meta.Accessor(cur)
		if m, _ := meta.Accessor(obj); m.GetUID() != curMeta.GetUID() {
			return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: gvr.Resource}, a.GetName(), nil)
		}
		return s.update(gvr, ns, obj, a.GetSubresource())
	case "delete":
		a := action.(k8stesting.DeleteAction)
		cur, err := tr.Get(gvr, ns, a.GetName())
		if err != nil {
			return true, nil, err
		}
		m, _ := meta.Accessor(cur)
		if pre := a.GetDeleteOptions().Preconditions; pre != nil {
			if pre.UID != nil && *pre.UID != m.GetUID() {
				return true, nil, apierrors.NewConflict(gvr.GroupResource(), a.GetName(), fmt.Errorf("uid precondition failed"))
			}
		}
		if gvr.Resource == "pods" {
			if m.GetDeletionTimestamp() == nil {
				now := metav1.Now()
				m.SetDeletionTimestamp(&now)
				m.SetResourceVersion(s.next())
				s.podsDeleted = append(s.podsDeleted, m.GetName())
				return true, nil, tr.Update(gvr, cur, ns)
			}
			return true, nil, nil
		}
		return true, nil, tr.Delete(gvr, ns, a.GetName())
	}
	return false, nil, nil
}

func (s *apiSim) update(gvr schema.GroupVersionResource, ns string, obj runtime.Object, sub string) (bool, runtime.Object, error) {
	tr := s.client.Tracker()
	m, _ := meta.Accessor(obj)
	cur, err := tr.Get(gvr, ns, m.GetName())
	if err != nil {
		return true, nil, err
	}
	cm, _ := meta.Accessor(cur)
	if rv := m.GetResourceVersion(); rv != "" && rv != cm.GetResourceVersion() {
		return true, nil, apierrors.NewConflict(gvr.GroupResource(), m.GetName(), fmt.Errorf("the object has been modified"))
	}
	switch o := obj.(type) {
	case *v1.Pod:
		c := cur.(*v1.Pod)
		if sub == "status" {
			st := o.Status
			o = c.DeepCopy()
			o.Status = st
		} else {
			o.Status = c.Status
		}
		obj = o
	case *appsv1.ReplicaSet:
		c := cur.(*appsv1.ReplicaSet)
		if sub == "status" {
			st := o.Status
			o = c.DeepCopy()
			o.Status = st
		} else {
			o.Status = c.Status
			o.Generation = c.Generation
			if !equality.Semantic.DeepEqual(o.Spec, c.Spec) {
				o.Generation++
			}
		}
		obj = o
	case *appsv1.Deployment:
		c := cur.(*appsv1.Deployment)
		if sub == "status" {
			st := o.Status
			o = c.DeepCopy()
			o.Status = st
		} else {
			o.Status = c.Status
			o.Generation = c.Generation
			if !equality.Semantic.DeepEqual(o.Spec, c.Spec) {
				o.Generation++
			}
		}
		obj = o
	}
	m, _ = meta.Accessor(obj)
	m.SetResourceVersion(s.next())
	if err := tr.Update(gvr, obj, ns); err != nil {
		return true, nil, err
	}
	return true, obj.DeepCopyObject(), nil
}

// removePod finishes a graceful deletion, as the node agent does.
func (s *apiSim) removePod(ns, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client.Tracker().Delete(v1.SchemeGroupVersion.WithResource("pods"), ns, name)
}

// setPodReady marks a Pod running and ready (since the given time) through
// the status subresource, as the node agent would.
func (s *apiSim) setPodReady(p *v1.Pod, ready bool, since time.Time) (*v1.Pod, error) {
	p = p.DeepCopy()
	status := v1.ConditionFalse
	if ready {
		status = v1.ConditionTrue
	}
	p.Status.Phase = v1.PodRunning
	p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: status, LastTransitionTime: metav1.NewTime(since)}}
	_, obj, err := s.react(k8stesting.NewUpdateSubresourceAction(v1.SchemeGroupVersion.WithResource("pods"), "status", p.Namespace, p))
	if err != nil {
		return nil, err
	}
	return obj.(*v1.Pod), nil
}
