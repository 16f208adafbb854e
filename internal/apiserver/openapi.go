package apiserver

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/berth-project/berth/internal/registry"
	"github.com/berth-project/berth/internal/version"
)

// openAPI serves /openapi/v3: an index and one document per group version.
// The schemas are derived from the Go types by reflection (field names,
// types and the patch-strategy tags kubectl's apply needs); they carry no
// descriptions. The operations name their kind and accept fieldValidation,
// which is how kubectl learns that the server validates fields itself.
type openAPI struct {
	reg  *registry.Registry
	once sync.Once
	docs map[string][]byte // "api/v1" → document
	hash map[string]string
}

func newOpenAPI(reg *registry.Registry) *openAPI { return &openAPI{reg: reg} }

func (o *openAPI) build() {
	o.docs, o.hash = map[string][]byte{}, map[string]string{}
	byGV := map[schema.GroupVersion][]*registry.Kind{}
	for _, st := range o.reg.Stores() {
		gv := st.Kind.GroupVersionKind.GroupVersion()
		byGV[gv] = append(byGV[gv], st.Kind)
	}
	for gv, kinds := range byGV {
		key := "apis/" + gv.Group + "/" + gv.Version
		if gv.Group == "" {
			key = "api/" + gv.Version
		}
		data, err := json.Marshal(document(gv, kinds))
		if err != nil {
			continue
		}
		sum := sha512.Sum512(data)
		o.docs[key] = data
		o.hash[key] = strings.ToUpper(hex.EncodeToString(sum[:]))[:32]
	}
}

func (o *openAPI) serve(w http.ResponseWriter, r *http.Request, p string) {
	o.once.Do(o.build)
	switch {
	case p == "/openapi/v3":
		paths := map[string]map[string]string{}
		keys := make([]string, 0, len(o.docs))
		for k := range o.docs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			paths[k] = map[string]string{"serverRelativeURL": "/openapi/v3/" + k + "?hash=" + o.hash[k]}
		}
		writeObject(w, r, negotiated{}, http.StatusOK, map[string]interface{}{"paths": paths})
	case strings.HasPrefix(p, "/openapi/v3/"):
		key := strings.TrimPrefix(p, "/openapi/v3/")
		data, ok := o.docs[key]
		if !ok {
			writeStatus(w, statusFor(http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("no OpenAPI document for %s", key)))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Etag", `"`+o.hash[key]+`"`)
		if r.URL.Query().Get("hash") != "" {
			w.Header().Set("Cache-Control", "public, immutable")
		}
		_, _ = w.Write(data)
	default:
		writeStatus(w, statusFor(http.StatusNotFound, metav1.StatusReasonNotFound,
			"berth serves OpenAPI v3 only (/openapi/v3)"))
	}
}

type schemaGen struct {
	defs map[string]interface{}
}

// document builds the OpenAPI 3 document of one group version.
func document(gv schema.GroupVersion, kinds []*registry.Kind) map[string]interface{} {
	g := &schemaGen{defs: map[string]interface{}{}}
	paths := map[string]interface{}{}
	prefix := "/apis/" + gv.Group + "/" + gv.Version
	if gv.Group == "" {
		prefix = "/api/" + gv.Version
	}
	param := func(name, in string) map[string]interface{} {
		return map[string]interface{}{"name": name, "in": in, "schema": map[string]interface{}{"type": "string", "uniqueItems": true}}
	}
	for _, k := range kinds {
		gvk := map[string]string{"group": gv.Group, "version": gv.Version, "kind": k.GroupVersionKind.Kind}
		ref := g.ref(reflect.TypeOf(k.New()).Elem())
		listRef := g.ref(reflect.TypeOf(k.NewList()).Elem())
		body := map[string]interface{}{"content": map[string]interface{}{"*/*": map[string]interface{}{"schema": ref}}}
		resp := func(r map[string]interface{}) map[string]interface{} {
			return map[string]interface{}{"200": map[string]interface{}{"description": "OK", "content": map[string]interface{}{"application/json": map[string]interface{}{"schema": r}}}}
		}
		writeParams := []interface{}{param("dryRun", "query"), param("fieldManager", "query"), param("fieldValidation", "query"), param("pretty", "query")}
		collection := prefix + "/" + k.Resource
		item := collection + "/{name}"
		pathParams := []interface{}{}
		if k.Namespaced {
			collection = prefix + "/namespaces/{namespace}/" + k.Resource
			item = collection + "/{name}"
			pathParams = append(pathParams, map[string]interface{}{"name": "namespace", "in": "path", "required": true, "schema": map[string]interface{}{"type": "string"}})
		}
		op := func(action, id string, params []interface{}, withBody bool, r map[string]interface{}) map[string]interface{} {
			o := map[string]interface{}{
				"operationId": id + k.GroupVersionKind.Kind, "x-kubernetes-action": action,
				"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": resp(r),
			}
			if withBody {
				o["requestBody"] = body
			}
			return o
		}
		paths[collection] = map[string]interface{}{
			"parameters": pathParams,
			"get":        op("list", "list", []interface{}{param("labelSelector", "query"), param("fieldSelector", "query"), param("limit", "query"), param("continue", "query"), param("watch", "query")}, false, listRef),
			"post":       op("post", "create", writeParams, true, ref),
			"delete":     op("deletecollection", "deleteCollection", []interface{}{param("labelSelector", "query")}, false, ref),
		}
		itemParams := append(append([]interface{}{}, pathParams...), map[string]interface{}{"name": "name", "in": "path", "required": true, "schema": map[string]interface{}{"type": "string"}})
		paths[item] = map[string]interface{}{
			"parameters": itemParams,
			"get":        op("get", "read", nil, false, ref),
			"put":        op("put", "replace", writeParams, true, ref),
			"patch":      op("patch", "patch", append(writeParams, param("force", "query")), true, ref),
			"delete":     op("delete", "delete", []interface{}{param("gracePeriodSeconds", "query"), param("propagationPolicy", "query")}, false, ref),
		}
		if k.HasStatus() {
			paths[item+"/status"] = map[string]interface{}{
				"parameters": itemParams,
				"get":        op("get", "read", nil, false, ref),
				"put":        op("put", "replaceStatus", writeParams, true, ref),
				"patch":      op("patch", "patchStatus", writeParams, true, ref),
			}
		}
	}
	return map[string]interface{}{
		"openapi":    "3.0.0",
		"info":       map[string]string{"title": "Kubernetes", "version": version.KubernetesAPI},
		"paths":      paths,
		"components": map[string]interface{}{"schemas": g.defs},
	}
}

var (
	timeType        = reflect.TypeOf(metav1.Time{})
	microTimeType   = reflect.TypeOf(metav1.MicroTime{})
	durationType    = reflect.TypeOf(metav1.Duration{})
	quantityType    = reflect.TypeOf(resource.Quantity{})
	intOrStringType = reflect.TypeOf(intstr.IntOrString{})
	rawType         = reflect.TypeOf(runtime.RawExtension{})
	fieldsV1Type    = reflect.TypeOf(metav1.FieldsV1{})
)

// defName turns a Go type into Kubernetes' definition name:
// k8s.io/api/core/v1.Pod → io.k8s.api.core.v1.Pod.
func defName(t reflect.Type) string {
	pkg := t.PkgPath()
	if rest, ok := strings.CutPrefix(pkg, "k8s.io/"); ok {
		pkg = "io.k8s." + strings.ReplaceAll(rest, "/", ".")
	} else {
		pkg = strings.ReplaceAll(pkg, "/", ".")
	}
	return pkg + "." + t.Name()
}

func (g *schemaGen) ref(t reflect.Type) map[string]interface{} {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.Name() == "" {
		return g.schema(t)
	}
	if s := special(t); s != nil {
		return s
	}
	name := defName(t)
	if _, done := g.defs[name]; !done {
		g.defs[name] = map[string]interface{}{} // placeholder against cycles
		g.defs[name] = g.structSchema(t)
	}
	return map[string]interface{}{"$ref": "#/components/schemas/" + name}
}

func special(t reflect.Type) map[string]interface{} {
	switch t {
	case timeType, microTimeType:
		return map[string]interface{}{"type": "string", "format": "date-time"}
	case durationType:
		return map[string]interface{}{"type": "string"}
	case quantityType:
		return map[string]interface{}{"x-kubernetes-int-or-string": true, "anyOf": []interface{}{map[string]string{"type": "integer"}, map[string]string{"type": "string"}}}
	case intOrStringType:
		return map[string]interface{}{"x-kubernetes-int-or-string": true, "format": "int-or-string", "anyOf": []interface{}{map[string]string{"type": "integer"}, map[string]string{"type": "string"}}}
	case rawType, fieldsV1Type:
		return map[string]interface{}{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
	}
	return nil
}

func (g *schemaGen) schema(t reflect.Type) map[string]interface{} {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]interface{}{"type": "string"}
	case reflect.Bool:
		return map[string]interface{}{"type": "boolean"}
	case reflect.Int32, reflect.Uint32, reflect.Int16, reflect.Uint16, reflect.Int8, reflect.Uint8:
		return map[string]interface{}{"type": "integer", "format": "int32"}
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64:
		return map[string]interface{}{"type": "integer", "format": "int64"}
	case reflect.Float32, reflect.Float64:
		return map[string]interface{}{"type": "number", "format": "double"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]interface{}{"type": "string", "format": "byte"}
		}
		return map[string]interface{}{"type": "array", "items": g.ref(t.Elem())}
	case reflect.Map:
		return map[string]interface{}{"type": "object", "additionalProperties": g.ref(t.Elem())}
	case reflect.Struct:
		if s := special(t); s != nil {
			return s
		}
		return g.ref(t)
	case reflect.Interface:
		return map[string]interface{}{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
	}
	return map[string]interface{}{}
}

func (g *schemaGen) structSchema(t reflect.Type) map[string]interface{} {
	props := map[string]interface{}{}
	g.addFields(t, props)
	out := map[string]interface{}{"type": "object", "properties": props}
	if gvks, ok := gvkOf(t); ok {
		out["x-kubernetes-group-version-kind"] = gvks
	}
	return out
}

func (g *schemaGen) addFields(t reflect.Type, props map[string]interface{}) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") || (f.Anonymous && name == "") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				g.addFields(ft, props)
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		s := g.schema(f.Type)
		if strat := f.Tag.Get("patchStrategy"); strat != "" || f.Tag.Get("patchMergeKey") != "" {
			c := map[string]interface{}{}
			for k, v := range s {
				c[k] = v
			}
			if ref, ok := c["$ref"]; ok {
				delete(c, "$ref")
				c["allOf"] = []interface{}{map[string]interface{}{"$ref": ref}}
			}
			if strat != "" {
				c["x-kubernetes-patch-strategy"] = strat
			}
			if key := f.Tag.Get("patchMergeKey"); key != "" {
				c["x-kubernetes-patch-merge-key"] = key
			}
			s = c
		} else if ref, ok := s["$ref"]; ok {
			s = map[string]interface{}{"allOf": []interface{}{map[string]interface{}{"$ref": ref}}}
		}
		props[name] = s
	}
}

// gvkOf says which group/version/kind a top-level type is, for the
// x-kubernetes-group-version-kind extension kubectl looks up.
func gvkOf(t reflect.Type) ([]map[string]string, bool) {
	obj, ok := reflect.New(t).Interface().(runtime.Object)
	if !ok {
		return nil, false
	}
	gvks, _, err := schemeObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return nil, false
	}
	var out []map[string]string
	for _, gvk := range gvks {
		if gvk.Version == "__internal" {
			continue
		}
		out = append(out, map[string]string{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind})
	}
	return out, len(out) > 0
}
