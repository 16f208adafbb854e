package apiserver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/restmapper"
)

func pemEncode(t *testing.T, c tls.Certificate) ([]byte, []byte) {
	t.Helper()
	key, ok := c.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("serving key is %T", c.PrivateKey)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

const protobufType = "application/vnd.kubernetes.protobuf"

func TestProtobufRequestAndResponse(t *testing.T) {
	e := newAPI(t)
	ser := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)
	in := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "proto", Labels: map[string]string{"wire": "protobuf"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}},
	}
	var body bytes.Buffer
	if err := ser.Encode(in, &body); err != nil {
		t.Fatal(err)
	}
	r := e.request("POST", "/api/v1/namespaces/default/pods", http.Header{"Content-Type": {protobufType}, "Accept": {protobufType + ", application/json"}}, &body)
	if r.code != http.StatusCreated {
		t.Fatalf("protobuf create: %d %s", r.code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != protobufType {
		t.Fatalf("response Content-Type %q, want protobuf", ct)
	}
	obj, err := runtime.Decode(ser, r.body)
	if err != nil {
		t.Fatalf("decode protobuf response: %v", err)
	}
	out, ok := obj.(*corev1.Pod)
	if !ok || out.Name != "proto" || out.Labels["wire"] != "protobuf" || out.UID == "" || out.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		t.Fatalf("protobuf response %T %+v", obj, obj)
	}
	// Lists come back as protobuf too; Tables, which have no protobuf form,
	// as JSON.
	r = e.request("GET", "/api/v1/namespaces/default/pods", http.Header{"Accept": {protobufType}}, nil)
	if r.code != 200 || r.header.Get("Content-Type") != protobufType {
		t.Fatalf("protobuf list: %d %q", r.code, r.header.Get("Content-Type"))
	}
	if obj, err = runtime.Decode(ser, r.body); err != nil || len(obj.(*corev1.PodList).Items) != 1 {
		t.Fatalf("protobuf list decode: %v %v", obj, err)
	}
	r = e.request("GET", "/api/v1/namespaces/default/pods", http.Header{"Accept": {protobufType + ";as=Table;v=v1;g=meta.k8s.io, application/json;as=Table;v=v1;g=meta.k8s.io"}}, nil)
	if r.code != 200 || !strings.Contains(string(r.body), `"kind":"Table"`) {
		t.Fatalf("table with protobuf first: %d %s", r.code, r.body)
	}
	// Errors are Status objects a protobuf client can read too.
	r = e.request("GET", "/api/v1/namespaces/default/pods/ghost", http.Header{"Accept": {protobufType}}, nil)
	if r.code != 404 {
		t.Fatalf("missing pod: %d", r.code)
	}
}

func TestClientGoProtobuf(t *testing.T) {
	e := newAPI(t)
	cfg := *e.rest
	cfg.ContentType = protobufType
	cfg.AcceptContentTypes = protobufType + ",application/json"
	cs, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := e.ctx
	pods := cs.CoreV1().Pods("default")
	p, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "cg", Labels: map[string]string{"app": "cg"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); !apierrors.IsBadRequest(err) && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second create: %v", err)
	}
	p.ResourceVersion = ""
	if _, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cg"}, Spec: p.Spec}, metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("duplicate create: %v", err)
	}
	w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: "app=cg"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if ev := nextEvent(t, w); ev.Type != watch.Added || ev.Object.(*corev1.Pod).Name != "cg" {
		t.Fatalf("first watch event %s %v", ev.Type, ev.Object)
	}
	got, err := pods.Get(ctx, "cg", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Status.Phase = corev1.PodRunning
	got.Status.PodIP = "10.244.0.9"
	got.Status.PodIPs = []corev1.PodIP{{IP: "10.244.0.9"}}
	if _, err := pods.UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, w); ev.Type != watch.Modified || ev.Object.(*corev1.Pod).Status.PodIP != "10.244.0.9" {
		t.Fatalf("watch after status update: %s %v", ev.Type, ev.Object)
	}
	if _, err := pods.Patch(ctx, "cg", types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"patched":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, w)
	list, err := pods.List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Running"})
	if err != nil || len(list.Items) != 1 || list.Items[0].Labels["patched"] != "yes" {
		t.Fatalf("list: %v %v", list, err)
	}
	// A stale update is the conflict client-go's retry helpers look for.
	stale := got.DeepCopy()
	stale.Labels = map[string]string{"stale": "yes"}
	if _, err := pods.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v", err)
	}
	if err := pods.Delete(ctx, "cg", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, w); ev.Type != watch.Deleted {
		t.Fatalf("watch after delete: %s", ev.Type)
	}
	if _, err := pods.Get(ctx, "cg", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
	// Services and EndpointSlices through the typed clients.
	svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "cg"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "cg"}, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil || svc.Spec.ClusterIP == "" {
		t.Fatalf("service create: %v %v", svc, err)
	}
	port := int32(80)
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "cg-1", Labels: map[string]string{discoveryv1.LabelServiceName: "cg"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.9"}}},
		Ports:       []discoveryv1.EndpointPort{{Port: &port}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// An invalid object is a 422 client-go reads with its causes.
	_, err = cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "bad"}}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("invalid service: %v", err)
	}
	// WatchList, as client-go's reflector asks for it.
	yes := true
	wl, err := cs.CoreV1().Services("default").Watch(ctx, metav1.ListOptions{SendInitialEvents: &yes, AllowWatchBookmarks: true, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
	if err != nil {
		t.Fatal(err)
	}
	defer wl.Stop()
	if ev := nextEvent(t, wl); ev.Type != watch.Added {
		t.Fatalf("watch-list first event %s", ev.Type)
	}
	ev := nextEvent(t, wl)
	bm, ok := ev.Object.(*corev1.Service)
	if ev.Type != watch.Bookmark || !ok || bm.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
		t.Fatalf("watch-list end: %s %#v", ev.Type, ev.Object)
	}
}

func nextEvent(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch closed")
		}
		if ev.Type == watch.Error {
			t.Fatalf("watch error %v", apierrors.FromObject(ev.Object))
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event in 10s")
	}
	return watch.Event{}
}

func TestDiscoveryDocuments(t *testing.T) {
	e := newAPI(t)
	var versions metav1.APIVersions
	e.do("GET", "/api", "", "", 200).decode(t, &versions)
	if versions.Kind != "APIVersions" || len(versions.Versions) != 1 || versions.Versions[0] != "v1" {
		t.Fatalf("/api %+v", versions)
	}
	var groups metav1.APIGroupList
	e.do("GET", "/apis", "", "", 200).decode(t, &groups)
	found := false
	for _, g := range groups.Groups {
		if g.Name == "discovery.k8s.io" && g.PreferredVersion.GroupVersion == "discovery.k8s.io/v1" {
			found = true
		}
	}
	if groups.Kind != "APIGroupList" || !found {
		t.Fatalf("/apis %+v", groups)
	}
	var group metav1.APIGroup
	e.do("GET", "/apis/discovery.k8s.io", "", "", 200).decode(t, &group)
	if group.Kind != "APIGroup" || group.Name != "discovery.k8s.io" {
		t.Fatalf("/apis/discovery.k8s.io %+v", group)
	}
	var core metav1.APIResourceList
	e.do("GET", "/api/v1", "", "", 200).decode(t, &core)
	res := map[string]metav1.APIResource{}
	for _, r := range core.APIResources {
		res[r.Name] = r
	}
	for _, name := range []string{"pods", "pods/status", "pods/log", "pods/exec", "pods/portforward", "pods/binding", "services", "services/status",
		"namespaces", "namespaces/finalize", "namespaces/status", "nodes", "nodes/status", "events", "endpoints"} {
		if _, ok := res[name]; !ok {
			t.Errorf("/api/v1 lacks %s", name)
		}
	}
	if p := res["pods"]; !p.Namespaced || p.Kind != "Pod" || p.SingularName != "pod" || len(p.ShortNames) == 0 || p.ShortNames[0] != "po" || len(p.Verbs) < 8 {
		t.Errorf("pods resource %+v", p)
	}
	if n := res["nodes"]; n.Namespaced {
		t.Error("nodes are namespaced in discovery")
	}
	wantStatus(t, e.request("GET", "/apis/nope", nil, nil), http.StatusNotFound, metav1.StatusReasonNotFound, "")
	wantStatus(t, e.request("GET", "/apis/discovery.k8s.io/v7", nil, nil), http.StatusNotFound, metav1.StatusReasonNotFound, "")

	// client-go's discovery and REST mapper, as kubectl uses them.
	cs := e.clientset()
	_, lists, err := cs.Discovery().ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	if len(lists) < 2 {
		t.Fatalf("%d resource lists", len(lists))
	}
	gr, err := restmapper.GetAPIGroupResources(cs.Discovery())
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(gr)
	for _, gk := range []schema.GroupKind{{Kind: "Pod"}, {Kind: "Service"}, {Group: "discovery.k8s.io", Kind: "EndpointSlice"}, {Kind: "Namespace"}} {
		m, err := mapper.RESTMapping(gk)
		if err != nil {
			t.Errorf("REST mapping of %s: %v", gk, err)
			continue
		}
		if gk.Kind == "Namespace" && m.Scope.Name() != "root" {
			t.Errorf("namespace scope %s", m.Scope.Name())
		}
	}
	if gvr, err := mapper.ResourceFor(schema.GroupVersionResource{Resource: "po"}); err == nil {
		t.Logf("short name po maps to %v", gvr) // short names are expanded by kubectl, not the mapper
	}
}

func TestOpenAPIV3(t *testing.T) {
	e := newAPI(t)
	var index struct {
		Paths map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	e.do("GET", "/openapi/v3", "", "", 200).decode(t, &index)
	core, ok := index.Paths["api/v1"]
	if !ok || !strings.HasPrefix(core.ServerRelativeURL, "/openapi/v3/api/v1?hash=") {
		t.Fatalf("/openapi/v3 index %+v", index)
	}
	if _, ok := index.Paths["apis/discovery.k8s.io/v1"]; !ok {
		t.Errorf("index lacks apis/discovery.k8s.io/v1: %+v", index)
	}
	r := e.do("GET", core.ServerRelativeURL, "", "", 200)
	if r.header.Get("Etag") == "" || !strings.Contains(r.header.Get("Cache-Control"), "immutable") {
		t.Errorf("headers %v", r.header)
	}
	var doc struct {
		OpenAPI    string                            `json:"openapi"`
		Paths      map[string]map[string]interface{} `json:"paths"`
		Components struct {
			Schemas map[string]map[string]interface{} `json:"schemas"`
		} `json:"components"`
	}
	r.decode(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	podSchema, ok := doc.Components.Schemas["io.k8s.api.core.v1.Pod"]
	if !ok {
		t.Fatal("no io.k8s.api.core.v1.Pod schema")
	}
	gvk, _ := json.Marshal(podSchema["x-kubernetes-group-version-kind"])
	if !strings.Contains(string(gvk), `"kind":"Pod"`) || !strings.Contains(string(gvk), `"version":"v1"`) {
		t.Errorf("Pod x-kubernetes-group-version-kind %s", gvk)
	}
	// kubectl asks the POST operation whether the server validates fields.
	post, _ := json.Marshal(doc.Paths["/api/v1/namespaces/{namespace}/pods"]["post"])
	if !strings.Contains(string(post), `"name":"fieldValidation"`) || !strings.Contains(string(post), `"x-kubernetes-group-version-kind"`) {
		t.Errorf("pod POST operation %s", post)
	}
	// Patch strategies reach the schema, for client-side apply.
	spec, _ := json.Marshal(doc.Components.Schemas["io.k8s.api.core.v1.PodSpec"])
	if !strings.Contains(string(spec), `"x-kubernetes-patch-merge-key":"name"`) {
		t.Errorf("PodSpec has no patch merge key for containers")
	}
	wantStatus(t, e.request("GET", "/openapi/v3/apis/nope/v1", nil, nil), http.StatusNotFound, metav1.StatusReasonNotFound, "")
	wantStatus(t, e.request("GET", "/openapi/v2", nil, nil), http.StatusNotFound, metav1.StatusReasonNotFound, "")

	// client-go's OpenAPI v3 client, as kubectl explain and apply use it.
	paths, err := e.clientset().Discovery().OpenAPIV3().Paths()
	if err != nil {
		t.Fatal(err)
	}
	gv, ok := paths["api/v1"]
	if !ok {
		t.Fatalf("client-go sees paths %v", paths)
	}
	data, err := gv.Schema("application/json")
	if err != nil || !bytes.Contains(data, []byte("io.k8s.api.core.v1.Service")) {
		t.Fatalf("client-go schema fetch: %v", err)
	}
}

func TestNoPanicOnOddRequests(t *testing.T) {
	e := newAPI(t)
	e.createPod("default", "web")
	odd := []struct{ method, path, ct, body string }{
		{"GET", "/api/v1/namespaces/default/pods/web/status", "", ""},
		{"PUT", "/api/v1/namespaces/default/pods/web/status", "application/json", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"}}`},
		{"POST", "/api/v1/namespaces/default/pods/web", "application/json", `{}`},
		{"POST", "/api/v1/namespaces/default/pods/web/binding", "application/json", `{"apiVersion":"v1","kind":"Binding","metadata":{"name":"web"},"target":{"name":"n1"}}`},
		{"POST", "/api/v1/namespaces/default/pods/web/binding", "application/json", `{"apiVersion":"v1","kind":"Binding","metadata":{"name":"web"},"target":{"name":"n2"}}`},
		{"POST", "/api/v1/namespaces/default/pods/web/binding", "application/json", `{"apiVersion":"v1","kind":"Binding"}`},
		{"GET", "/api/v1/namespaces/default/pods/web/log", "", ""},
		{"GET", "/api/v1/namespaces/default/pods/web/exec?command=ls", "", ""},
		{"GET", "/api/v1/namespaces/default/pods/web/attach", "", ""},
		{"GET", "/api/v1/namespaces/default/services/web/proxy", "", ""},
		{"GET", "/api/v1/namespaces/default/pods/web/scale", "", ""},
		{"PUT", "/api/v1/namespaces/default/finalize", "application/json", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"}}`},
		{"DELETE", "/api/v1/namespaces/default/pods?labelSelector=none%3Dsuch", "", ""},
		{"OPTIONS", "/api/v1/namespaces/default/pods", "", ""},
		{"TRACE", "/api/v1/namespaces/default/pods/web", "", ""},
		{"GET", "/api/v1/namespaces/default/pods?continue=" + strings.Repeat("%ff", 10), "", ""},
		{"GET", "/api/v1/namespaces/default/pods?watch=true&resourceVersion=-1", "", ""},
		{"GET", "/api/v1/namespaces/default/pods?watch=true&sendInitialEvents=true", "", ""},
		{"GET", "/api/v1/namespaces/default/pods?limit=99999999999999999999", "", ""},
		{"GET", "/api/v1/namespaces//pods", "", ""},
		{"GET", "/api/v1/namespaces/default/pods/" + strings.Repeat("a", 300), "", ""},
		{"PATCH", "/api/v1/namespaces/default/pods/web", "application/json-patch+json", `[{"op":"remove","path":"/spec"}]`},
		{"PATCH", "/api/v1/namespaces/default/pods/web", "application/json-patch+json", `[{"op":"add","path":"/metadata/labels","value":7}]`},
		{"PATCH", "/api/v1/namespaces/default/pods/web", "application/merge-patch+json", `null`},
		{"PATCH", "/api/v1/namespaces/default/pods/web", "application/strategic-merge-patch+json", `{"$patch":"delete"}`},
		{"PATCH", "/api/v1/namespaces/default/pods/web", "application/strategic-merge-patch+json", `{"spec":{"$setElementOrder/containers":[{"name":"x"}]}}`},
		{"PUT", "/api/v1/namespaces/default/pods/web", "application/yaml", "- a\n- b\n"},
		{"POST", "/api/v1/namespaces/default/services", "application/json", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"ports":[{"port":99999999999}]}}`},
		{"POST", "/api/v1/namespaces/default/services", "application/json", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"ports":null,"clusterIP":"None"}}`},
	}
	for _, o := range odd {
		h := http.Header{}
		if o.ct != "" {
			h.Set("Content-Type", o.ct)
		}
		r := e.request(o.method, o.path, h, strings.NewReader(o.body))
		if r.code >= 500 && r.code != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d %s", o.method, o.path, r.code, r.body)
		}
		if r.code >= 400 && !strings.Contains(string(r.body), `"kind":"Status"`) {
			t.Errorf("%s %s: error %d without a Status body: %s", o.method, o.path, r.code, r.body)
		}
	}
	// The pod is still readable after all that.
	var p corev1.Pod
	e.do("GET", "/api/v1/namespaces/default/pods/web", "", "", 200).decode(t, &p)
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	if _, err := e.clientset().CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
}
