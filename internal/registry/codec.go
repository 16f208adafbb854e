package registry

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	sigsjson "sigs.k8s.io/json"
)

// encode serializes obj for storage: JSON with apiVersion and kind, and
// without resourceVersion, which the store's revision supplies on read.
func (k *Kind) encode(obj runtime.Object) ([]byte, error) {
	m, err := metaOf(obj)
	if err != nil {
		return nil, err
	}
	rv := m.GetResourceVersion()
	m.SetResourceVersion("")
	defer m.SetResourceVersion(rv)
	obj.GetObjectKind().SetGroupVersionKind(k.GroupVersionKind)
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", k.Resource, err)
	}
	return data, nil
}

// decode reads a stored object and stamps it with the store revision.
func (k *Kind) decode(data []byte, rev int64) (runtime.Object, error) {
	obj := k.New()
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, obj); err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", k.Resource, err)
	}
	m, err := metaOf(obj)
	if err != nil {
		return nil, err
	}
	m.SetResourceVersion(formatRV(rev))
	obj.GetObjectKind().SetGroupVersionKind(k.GroupVersionKind)
	return obj, nil
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("object %T has no metadata: %w", obj, err)
	}
	return m, nil
}
