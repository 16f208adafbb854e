package registry

import (
	"encoding/json"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// IncludeObject says what a table row embeds, as the includeObject parameter.
type IncludeObject string

// The includeObject values Kubernetes accepts.
const (
	IncludeNone     IncludeObject = "None"
	IncludeMetadata IncludeObject = "Metadata"
	IncludeObjectV  IncludeObject = "Object"
)

// defaultColumns is what kinds without their own columns print.
var defaultColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "Name must be unique within a namespace."},
	{Name: "Created At", Type: "date", Description: "CreationTimestamp is a timestamp representing the server time when this object was created."},
}

// Table converts one object or a list of this kind into a meta.k8s.io Table.
func (k *Kind) Table(obj runtime.Object, include IncludeObject, noHeaders bool, now time.Time) (*metav1.Table, error) {
	var objs []runtime.Object
	table := &metav1.Table{}
	if meta.IsListType(obj) {
		var err error
		if objs, err = meta.ExtractList(obj); err != nil {
			return nil, err
		}
		if lm, err := meta.ListAccessor(obj); err == nil {
			table.ResourceVersion = lm.GetResourceVersion()
			table.Continue = lm.GetContinue()
			table.RemainingItemCount = lm.GetRemainingItemCount()
		}
	} else {
		objs = []runtime.Object{obj}
		if m, err := meta.Accessor(obj); err == nil {
			table.ResourceVersion = m.GetResourceVersion()
		}
	}
	ts, custom := k.Strategy.(TableStrategy)
	if !noHeaders {
		if custom {
			table.ColumnDefinitions = ts.Columns()
		} else {
			table.ColumnDefinitions = defaultColumns
		}
	}
	table.Rows = make([]metav1.TableRow, 0, len(objs))
	for _, o := range objs {
		var cells []interface{}
		if custom {
			cells = ts.Row(o, now)
		} else {
			m, _ := meta.Accessor(o)
			cells = []interface{}{m.GetName(), m.GetCreationTimestamp().UTC().Format(time.RFC3339)}
		}
		row := metav1.TableRow{Cells: cells}
		switch include {
		case IncludeObjectV:
			o.GetObjectKind().SetGroupVersionKind(k.GroupVersionKind)
			raw, err := json.Marshal(o)
			if err != nil {
				return nil, err
			}
			row.Object = runtime.RawExtension{Raw: raw}
		case IncludeNone:
		default:
			if om := ObjectMetaCopy(o); om != nil {
				pom := &metav1.PartialObjectMetadata{ObjectMeta: *om}
				pom.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("PartialObjectMetadata"))
				raw, err := json.Marshal(pom)
				if err != nil {
					return nil, err
				}
				row.Object = runtime.RawExtension{Raw: raw}
			}
		}
		table.Rows = append(table.Rows, row)
	}
	table.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("Table"))
	return table, nil
}

// ObjectMetaCopy returns a copy of obj's ObjectMeta (for
// PartialObjectMetadata), or nil when obj has none.
func ObjectMetaCopy(obj runtime.Object) *metav1.ObjectMeta {
	if a, ok := obj.(metav1.ObjectMetaAccessor); ok {
		if om, ok := a.GetObjectMeta().(*metav1.ObjectMeta); ok {
			return om.DeepCopy()
		}
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil
	}
	return metaCopy(m)
}

func metaCopy(m metav1.Object) *metav1.ObjectMeta {
	if om, ok := m.(*metav1.ObjectMeta); ok {
		return om.DeepCopy()
	}
	return &metav1.ObjectMeta{
		Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(), ResourceVersion: m.GetResourceVersion(),
		Generation: m.GetGeneration(), CreationTimestamp: m.GetCreationTimestamp(), DeletionTimestamp: m.GetDeletionTimestamp(),
		Labels: m.GetLabels(), Annotations: m.GetAnnotations(), OwnerReferences: m.GetOwnerReferences(), Finalizers: m.GetFinalizers(),
	}
}

// Age formats the time since t as kubectl's AGE column does.
func Age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}
