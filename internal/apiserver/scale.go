package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-project/berth/internal/registry"
)

// serveScale serves the autoscaling/v1 Scale subresource of Deployments and
// ReplicaSets (kubectl scale).
func (s *Server) serveScale(w http.ResponseWriter, r *http.Request, info requestInfo, store *registry.Store) {
	n, err := negotiate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	switch info.Verb {
	case "get":
		obj, err := store.Get(r.Context(), info.Namespace, info.Name)
		if err != nil {
			writeError(w, err)
			return
		}
		sc, err := toScale(obj)
		if err != nil {
			writeError(w, err)
			return
		}
		writeObject(w, r, n, http.StatusOK, sc)
	case "update", "patch":
		data, err := readBody(r)
		if err != nil {
			writeError(w, err)
			return
		}
		out, err := store.GuaranteedUpdate(r.Context(), info.Namespace, info.Name, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
			sc, err := toScale(cur)
			if err != nil {
				return nil, err
			}
			want := &autoscalingv1.Scale{}
			if info.Verb == "update" {
				if _, err := decodeInto(r, data, autoscalingv1.SchemeGroupVersion.WithKind("Scale"), want, fieldValidationIgnore); err != nil {
					return nil, err
				}
			} else {
				curJSON, _ := json.Marshal(sc)
				pt := types.PatchType(strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]))
				if pt == types.StrategicMergePatchType {
					pt = types.MergePatchType // Scale has no lists: the two agree
				}
				patched, err := applyPatch(store.Kind, pt, curJSON, data)
				if err != nil {
					return nil, err
				}
				if err := json.Unmarshal(patched, want); err != nil {
					return nil, apierrors.NewBadRequest(fmt.Sprintf("decode patched Scale: %v", err))
				}
			}
			if want.ResourceVersion != "" && want.ResourceVersion != sc.ResourceVersion {
				return nil, apierrors.NewConflict(store.Kind.GroupResource(), info.Name, fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
			}
			if want.Spec.Replicas < 0 {
				return nil, apierrors.NewInvalid(autoscalingv1.SchemeGroupVersion.WithKind("Scale").GroupKind(), info.Name, nil)
			}
			return setReplicas(cur, want.Spec.Replicas), nil
		})
		if err != nil {
			writeError(w, err)
			return
		}
		sc, err := toScale(out)
		if err != nil {
			writeError(w, err)
			return
		}
		writeObject(w, r, n, http.StatusOK, sc)
	default:
		writeStatus(w, statusFor(http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "scale supports get, update and patch"))
	}
}

func toScale(obj runtime.Object) (*autoscalingv1.Scale, error) {
	sc := &autoscalingv1.Scale{TypeMeta: metav1.TypeMeta{Kind: "Scale", APIVersion: "autoscaling/v1"}}
	var sel *metav1.LabelSelector
	switch o := obj.(type) {
	case *appsv1.Deployment:
		sc.ObjectMeta = metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion, CreationTimestamp: o.CreationTimestamp}
		sc.Spec.Replicas = replicas(o.Spec.Replicas)
		sc.Status.Replicas = o.Status.Replicas
		sel = o.Spec.Selector
	case *appsv1.ReplicaSet:
		sc.ObjectMeta = metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion, CreationTimestamp: o.CreationTimestamp}
		sc.Spec.Replicas = replicas(o.Spec.Replicas)
		sc.Status.Replicas = o.Status.Replicas
		sel = o.Spec.Selector
	default:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("%T has no scale subresource", obj))
	}
	if s, err := metav1.LabelSelectorAsSelector(sel); err == nil {
		sc.Status.Selector = s.String()
	}
	return sc, nil
}

func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func setReplicas(obj runtime.Object, n int32) runtime.Object {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		o.Spec.Replicas = &n
		o.ResourceVersion = ""
	case *appsv1.ReplicaSet:
		o.Spec.Replicas = &n
		o.ResourceVersion = ""
	}
	return obj
}
