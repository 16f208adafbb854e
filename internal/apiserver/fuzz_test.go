package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"

	"github.com/berth-project/berth/internal/alloc"
	"github.com/berth-project/berth/internal/registry"
	"github.com/berth-project/berth/internal/registry/deployment"
	"github.com/berth-project/berth/internal/registry/endpoints"
	"github.com/berth-project/berth/internal/registry/endpointslice"
	"github.com/berth-project/berth/internal/registry/event"
	"github.com/berth-project/berth/internal/registry/namespace"
	"github.com/berth-project/berth/internal/registry/node"
	"github.com/berth-project/berth/internal/registry/pod"
	"github.com/berth-project/berth/internal/registry/replicaset"
	"github.com/berth-project/berth/internal/registry/service"
)

// fuzzKinds are the kinds internal/server serves. Allocation is not on the
// path under test, so the service allocators have no storage.
func fuzzKinds() []*registry.Kind {
	ipRange, _ := alloc.ParseIPRange("10.96.0.0/12")
	ports, _ := alloc.ParsePortRange("30000-32767")
	svc := service.Config{
		ClusterIPs:     alloc.New(nil, "/fuzz/ips", ipRange, ipRange.StaticSize()),
		ClusterIPRange: ipRange,
		NodePorts:      alloc.New(nil, "/fuzz/ports", ports, 0),
	}
	return []*registry.Kind{
		namespace.Kind(), node.Kind(), pod.Kind(), service.Kind(svc), event.Kind(), endpoints.Kind(),
		endpointslice.Kind(), deployment.Kind(), replicaset.Kind(),
	}
}

// FuzzDecodeDefaultValidate feeds arbitrary bytes along the path a create or
// update request takes: decode (JSON, YAML, protobuf) into each kind, the
// kind's defaulting, metadata and kind validation, the update and status
// strategies, field selection, the stored JSON form and the table row. None
// of it may panic; decode failures must be 400s.
func FuzzDecodeDefaultValidate(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"x"}]}}`))
	kinds := fuzzKinds()
	ctx := context.Background()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	contentTypes := []string{"application/json", "application/yaml", contentTypeProtobuf}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, kind := range kinds {
			for _, ct := range contentTypes {
				req := httptest.NewRequest(http.MethodPost, "/", nil)
				req.Header.Set("Content-Type", ct)
				obj := kind.New()
				if _, err := decodeInto(req, data, kind.GroupVersionKind, obj, fieldValidationWarn); err != nil {
					var se *apierrors.StatusError
					if !errors.As(err, &se) || se.ErrStatus.Code != http.StatusBadRequest {
						t.Fatalf("%s %s: decode error %v is not a 400 Status", kind.Resource, ct, err)
					}
					continue
				}
				m, err := meta.Accessor(obj)
				if err != nil {
					t.Fatalf("%s: decoded object has no metadata: %v", kind.Resource, err)
				}
				old := obj.DeepCopyObject()
				kind.Strategy.PrepareForCreate(ctx, obj)
				nameFn := path.ValidatePathSegmentName
				if v, ok := kind.Strategy.(interface {
					NameFunc() metavalidation.ValidateNameFunc
				}); ok {
					nameFn = v.NameFunc()
				}
				errs := metavalidation.ValidateObjectMetaAccessor(m, kind.Namespaced, nameFn, field.NewPath("metadata"))
				errs = append(errs, kind.Strategy.Validate(ctx, obj)...)
				checkErrors(t, kind, errs)

				// The update path against the object as it was sent, and the
				// status subresource.
				upd := obj.DeepCopyObject()
				kind.Strategy.PrepareForUpdate(ctx, upd, old)
				checkErrors(t, kind, kind.Strategy.ValidateUpdate(ctx, upd, old))
				if st, ok := kind.Strategy.(registry.StatusStrategy); ok {
					stObj := old.DeepCopyObject()
					st.PrepareForStatusUpdate(ctx, stObj, obj)
					checkErrors(t, kind, st.ValidateStatusUpdate(ctx, stObj, obj))
				}
				if _, _, err := kind.Attrs(obj); err != nil {
					t.Fatalf("%s: attrs: %v", kind.Resource, err)
				}

				// What is stored reads back the same.
				stored, err := json.Marshal(obj)
				if err != nil {
					t.Fatalf("%s: encode for storage: %v", kind.Resource, err)
				}
				back := kind.New()
				if err := sigsjson.UnmarshalCaseSensitivePreserveInts(stored, back); err != nil {
					t.Fatalf("%s: stored form does not decode: %v\n%s", kind.Resource, err, stored)
				}
				again, _ := json.Marshal(back)
				if !bytes.Equal(stored, again) {
					t.Fatalf("%s: stored form does not round-trip:\n%s\n%s", kind.Resource, stored, again)
				}

				table, err := kind.Table(obj, registry.IncludeObjectV, false, now)
				if err != nil {
					t.Fatalf("%s: table: %v", kind.Resource, err)
				}
				if len(table.Rows) != 1 || len(table.Rows[0].Cells) != len(table.ColumnDefinitions) {
					t.Fatalf("%s: table has %d rows, %d columns", kind.Resource, len(table.Rows), len(table.ColumnDefinitions))
				}
				if _, err := json.Marshal(table); err != nil {
					t.Fatalf("%s: table does not encode: %v", kind.Resource, err)
				}
			}
		}
	})
}

// checkErrors checks that validation errors make a well-formed 422.
func checkErrors(t *testing.T, kind *registry.Kind, errs field.ErrorList) {
	t.Helper()
	if len(errs) == 0 {
		return
	}
	for _, e := range errs {
		if e == nil {
			t.Fatalf("%s: nil validation error", kind.Resource)
		}
		if e.Field == "" {
			t.Fatalf("%s: validation error without a field: %v", kind.Resource, e)
		}
	}
	st := apierrors.NewInvalid(kind.GroupVersionKind.GroupKind(), "x", errs).ErrStatus
	if st.Code != http.StatusUnprocessableEntity || len(st.Details.Causes) == 0 {
		t.Fatalf("%s: Invalid status %+v", kind.Resource, st)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Fatalf("%s: Invalid status does not encode: %v", kind.Resource, err)
	}
}
