package apiserver_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-project/berth/internal/apiserver"
	"github.com/berth-project/berth/internal/pki"
)

func TestAuthentication(t *testing.T) {
	e := newAPI(t)
	anon := e.httpClient(nil, nil)
	r := e.requestWith(anon, "GET", "/api/v1/namespaces/default/pods", nil, nil)
	wantStatus(t, r, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
	r = e.requestWith(anon, "GET", "/version", nil, nil)
	wantStatus(t, r, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")

	// A certificate from another CA, even with the admin's name, is refused.
	other, err := pki.Ensure(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	r = e.requestWith(e.httpClient(other.AdminCert, other.AdminKey), "GET", "/api/v1/namespaces", nil, nil)
	wantStatus(t, r, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")

	// A certificate of the right CA but without client-auth usage (the
	// server's own) is refused too.
	servingCert, servingKey := pemOf(t, e.bundle.Serving)
	r = e.requestWith(e.httpClient(servingCert, servingKey), "GET", "/api/v1/namespaces", nil, nil)
	wantStatus(t, r, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")

	// Any client certificate the CA issued works.
	cert, key, err := e.bundle.IssueClient("system:node:n1", []string{"system:nodes"})
	if err != nil {
		t.Fatal(err)
	}
	r = e.requestWith(e.httpClient(cert, key), "GET", "/api/v1/namespaces", nil, nil)
	if r.code != http.StatusOK {
		t.Fatalf("issued client cert: %d %s", r.code, r.body)
	}
	if r = e.request("GET", "/api/v1/namespaces", nil, nil); r.code != http.StatusOK {
		t.Fatalf("admin: %d %s", r.code, r.body)
	}
}

func TestHealthEndpoints(t *testing.T) {
	e := newAPI(t)
	for _, p := range []string{"/healthz", "/livez", "/readyz"} {
		r := e.request("GET", p, nil, nil)
		if r.code != 200 || string(r.body) != "ok" {
			t.Errorf("%s: %d %q", p, r.code, r.body)
		}
	}
	r := e.request("GET", "/readyz?verbose", nil, nil)
	if r.code != 200 || !strings.Contains(string(r.body), "[+]etcd ok") {
		t.Errorf("/readyz?verbose: %d %q", r.code, r.body)
	}
}

func TestRequestBodyLimit(t *testing.T) {
	e := newAPI(t, func(c *apiserver.Config) { c.MaxRequestBytes = 64 << 10 })
	big := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"big","annotations":{"a":%q}},"spec":{"containers":[{"name":"c","image":"x"}]}}`,
		strings.Repeat("x", 100<<10))
	// With a Content-Length the server refuses before reading.
	r := e.request("POST", "/api/v1/namespaces/default/pods", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(big))
	wantStatus(t, r, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge, "limit is 65536")
	// Chunked, with no length, it stops reading at the limit.
	r = e.request("POST", "/api/v1/namespaces/default/pods", http.Header{"Content-Type": {"application/json"}}, io.MultiReader(strings.NewReader(big)))
	wantStatus(t, r, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge, "limit is 65536")
	// Patches are bounded the same way.
	e.createPod("default", "small")
	r = e.request("PATCH", "/api/v1/namespaces/default/pods/small", http.Header{"Content-Type": {"application/merge-patch+json"}},
		io.MultiReader(strings.NewReader(`{"metadata":{"annotations":{"a":"`+strings.Repeat("y", 100<<10)+`"}}}`)))
	wantStatus(t, r, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge, "limit")
	// Under the limit is fine.
	e.createPod("default", "fits")
}

func TestBadRequestBodies(t *testing.T) {
	e := newAPI(t)
	const path = "/api/v1/namespaces/default/pods"
	tests := []struct {
		name, contentType, body, msg string
	}{
		{"malformed JSON", "application/json", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"`, "the body of the request was in an unknown format"},
		{"JSON array", "application/json", `[1,2,3]`, ""},
		{"JSON of the wrong type", "application/json", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":5}}`, ""},
		{"malformed YAML", "application/yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [x\n", ""},
		{"YAML that is a string", "application/yaml", "just words", ""},
		{"wrong kind", "application/json", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"},"spec":{"ports":[{"port":80}]}}`,
			"the kind in the data (Service) does not match the expected kind (Pod)"},
		{"wrong kind in YAML", "application/yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n", "does not match the expected kind (Pod)"},
		{"wrong API version", "application/json", `{"apiVersion":"apps/v1","kind":"Pod","metadata":{"name":"x"}}`, ""},
		{"unknown kind", "application/json", `{"apiVersion":"v1","kind":"Potato","metadata":{"name":"x"}}`, ""},
		{"empty body", "application/json", ``, "the request body is empty"},
		{"whitespace body", "application/json", "  \n", "the request body is empty"},
		{"garbage protobuf", "application/vnd.kubernetes.protobuf", "\x00\x01\x02garbage", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.request("POST", path, http.Header{"Content-Type": {tt.contentType}}, strings.NewReader(tt.body))
			wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, tt.msg)
		})
	}
	// The same checks apply to PUT.
	e.createPod("default", "web")
	r := e.request("PUT", path+"/web", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(`{"kind":"Pod","apiVersion":"v1","metadata":`))
	wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
	r = e.request("PUT", path+"/web", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"}}`))
	wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "does not match the expected kind")
	// Bad DeleteOptions.
	r = e.request("DELETE", path+"/web", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(`{"kind":"DeleteOptions"`))
	wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "DeleteOptions")
	r = e.request("DELETE", path+"/web?gracePeriodSeconds=soon", nil, nil)
	wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "gracePeriodSeconds")
	// Bad query parameters.
	for _, q := range []string{"labelSelector=a%20in%20(", "fieldSelector=a%3D%3D%3Db", "limit=-1", "limit=many", "resourceVersion=x&resourceVersionMatch=Exact", "dryRun=Some"} {
		if q == "dryRun=Some" {
			r = e.request("POST", path+"?"+q, http.Header{"Content-Type": {"application/json"}}, strings.NewReader(fmt.Sprintf(podJSON, "dry")))
		} else {
			r = e.request("GET", path+"?"+q, nil, nil)
		}
		wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
	}
	r = e.request("GET", path+"?fieldSelector=spec.bogus%3Dx", nil, nil)
	wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "field label not supported: spec.bogus")
}

func TestNotFound(t *testing.T) {
	e := newAPI(t)
	for _, p := range []string{
		"/api/v1/foos", "/api/v1/namespaces/default/foos", "/api/v1/namespaces/default/foos/bar", "/apis/nope/v1/things",
		"/apis/discovery.k8s.io/v1/namespaces/default/widgets", "/api/v2/namespaces/default/pods", "/nonsense", "/api/v1/namespaces/default/pods/x/nosuchsub",
		"/api/v1/nodes/n1/status/extra", "/api/v1/namespaces/default/nodes", "/api/v1/pods/x",
	} {
		r := e.request("GET", p, nil, nil)
		wantStatus(t, r, http.StatusNotFound, metav1.StatusReasonNotFound, "")
	}
	r := e.request("GET", "/api/v1/namespaces/default/pods/ghost", nil, nil)
	st := wantStatus(t, r, http.StatusNotFound, metav1.StatusReasonNotFound, `pods "ghost" not found`)
	if st.Details == nil || st.Details.Name != "ghost" || st.Details.Kind != "pods" {
		t.Errorf("details %+v", st.Details)
	}
	r = e.request("GET", "/api/v1/namespaces/ghost", nil, nil)
	wantStatus(t, r, http.StatusNotFound, metav1.StatusReasonNotFound, `namespaces "ghost" not found`)
	r = e.request("POST", "/api/v1/namespaces/ghost/pods", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(fmt.Sprintf(podJSON, "p")))
	wantStatus(t, r, http.StatusNotFound, metav1.StatusReasonNotFound, `namespaces "ghost" not found`)
}

func TestFieldValidation(t *testing.T) {
	e := newAPI(t)
	const path = "/api/v1/namespaces/default/pods"
	unknown := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q},"spec":{"foo":1,"containers":[{"name":"c","image":"x","bar":true}]}}`
	r := e.request("POST", path+"?fieldValidation=Strict", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(fmt.Sprintf(unknown, "strict")))
	wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, `strict decoding error: unknown field "spec.foo", unknown field "spec.containers[0].bar"`)
	r = e.request("POST", path+"?fieldValidation=Strict", http.Header{"Content-Type": {"application/yaml"}},
		strings.NewReader("apiVersion: v1\nkind: Pod\nmetadata:\n  name: yaml-pod\n  nmae: typo\nspec:\n  containers:\n  - name: c\n    image: x\n"))
	wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, `strict decoding error: unknown field "metadata.nmae"`)
	dup := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"dup","name":"dup2"},"spec":{"containers":[{"name":"c","image":"x"}]}}`
	r = e.request("POST", path+"?fieldValidation=Strict", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(dup))
	wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, `duplicate field "metadata.name"`)

	// The default (Warn) accepts and says what it dropped, in Warning headers.
	r = e.request("POST", path, http.Header{"Content-Type": {"application/json"}}, strings.NewReader(fmt.Sprintf(unknown, "warned")))
	if r.code != http.StatusCreated {
		t.Fatalf("Warn: %d %s", r.code, r.body)
	}
	warnings := r.header.Values("Warning")
	want := []string{`299 - "unknown field \"spec.foo\""`, `299 - "unknown field \"spec.containers[0].bar\""`}
	if strings.Join(warnings, "|") != strings.Join(want, "|") {
		t.Errorf("Warning headers %q, want %q", warnings, want)
	}
	r = e.request("POST", path+"?fieldValidation=Ignore", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(fmt.Sprintf(unknown, "ignored")))
	if r.code != http.StatusCreated || len(r.header.Values("Warning")) != 0 {
		t.Fatalf("Ignore: %d warnings %q", r.code, r.header.Values("Warning"))
	}
	// Updates and patches validate fields too.
	r = e.request("PATCH", "/api/v1/namespaces/default/pods/warned?fieldValidation=Strict", http.Header{"Content-Type": {"application/merge-patch+json"}},
		strings.NewReader(`{"metadata":{"labelz":{"a":"b"}}}`))
	wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, `unknown field "metadata.labelz"`)
	r = e.request("PATCH", "/api/v1/namespaces/default/pods/warned", http.Header{"Content-Type": {"application/merge-patch+json"}},
		strings.NewReader(`{"metadata":{"labelz":{"a":"b"}}}`))
	if r.code != http.StatusOK || !strings.Contains(strings.Join(r.header.Values("Warning"), ","), `unknown field \"metadata.labelz\"`) {
		t.Fatalf("Warn patch: %d warnings %q", r.code, r.header.Values("Warning"))
	}
	r = e.request("POST", path+"?fieldValidation=Loose", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(fmt.Sprintf(podJSON, "loose")))
	wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "fieldValidation")
}

func TestPatchTypes(t *testing.T) {
	e := newAPI(t)
	const path = "/api/v1/namespaces/default/pods/web"
	e.createPod("default", "web")
	patch := func(ct, body string) response {
		t.Helper()
		return e.request("PATCH", path, http.Header{"Content-Type": {ct}}, strings.NewReader(body))
	}
	get := func() corev1.Pod {
		t.Helper()
		var p corev1.Pod
		e.do("GET", path, "", "", 200).decode(t, &p)
		return p
	}

	r := patch("application/json-patch+json", `[{"op":"add","path":"/metadata/labels/json","value":"patch"}]`)
	if r.code != 200 {
		t.Fatalf("JSON patch: %d %s", r.code, r.body)
	}
	r = patch("application/merge-patch+json", `{"metadata":{"labels":{"merge":"patch","app":null}}}`)
	if r.code != 200 {
		t.Fatalf("merge patch: %d %s", r.code, r.body)
	}
	p := get()
	if p.Labels["json"] != "patch" || p.Labels["merge"] != "patch" || p.Labels["app"] != "" {
		t.Fatalf("labels after patches: %v", p.Labels)
	}
	// Strategic merge patch merges containers by name: args stay.
	r = patch("application/strategic-merge-patch+json", `{"spec":{"containers":[{"name":"web","image":"registry.k8s.io/e2e-test-images/agnhost:2.54"}]}}`)
	if r.code != 200 {
		t.Fatalf("strategic merge patch: %d %s", r.code, r.body)
	}
	p = get()
	if c := p.Spec.Containers; len(c) != 1 || c[0].Image != "registry.k8s.io/e2e-test-images/agnhost:2.54" || len(c[0].Args) != 1 {
		t.Fatalf("containers after strategic merge: %+v", c)
	}
	if p.Generation != 2 {
		t.Errorf("generation %d after an image change, want 2", p.Generation)
	}
	// The status subresource takes patches too.
	r = e.request("PATCH", path+"/status", http.Header{"Content-Type": {"application/merge-patch+json"}}, strings.NewReader(`{"status":{"phase":"Running"},"spec":{"nodeName":"sneaky"}}`))
	if r.code != 200 {
		t.Fatalf("status patch: %d %s", r.code, r.body)
	}
	if p = get(); p.Status.Phase != corev1.PodRunning || p.Spec.NodeName != "" {
		t.Fatalf("after status patch: phase %s node %q", p.Status.Phase, p.Spec.NodeName)
	}

	// Bad patches.
	wantStatus(t, patch("application/json-patch+json", `{"op":"add"}`), http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
	wantStatus(t, patch("application/json-patch+json", `[{"op":"explode","path":"/x"}]`), http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "")
	wantStatus(t, patch("application/json-patch+json", `[{"op":"test","path":"/metadata/name","value":"other"}]`), http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "")
	wantStatus(t, patch("application/json-patch+json", `[{"op":"replace","path":"/metadata/name","value":"renamed"}]`), http.StatusBadRequest, metav1.StatusReasonBadRequest, "does not match the name")
	wantStatus(t, patch("application/merge-patch+json", `{"metadata":`), http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
	wantStatus(t, patch("application/strategic-merge-patch+json", `["not","an","object"]`), http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
	wantStatus(t, patch("application/strategic-merge-patch+json", `{"spec":{"containers":"nope"}}`), http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
	wantStatus(t, patch("application/merge-patch+json", `{"spec":{"restartPolicy":"Sometimes"}}`), http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "")
	wantStatus(t, patch("text/plain", `hello`), http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType, "not supported")
	wantStatus(t, patch("application/apply-patch+yaml", "metadata:\n  labels:\n    a: b\n"), http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType, "server-side apply is not supported")
	wantStatus(t, patch("application/merge-patch+json", ``), http.StatusBadRequest, metav1.StatusReasonBadRequest, "")
	// A patch naming a stale resourceVersion is a conflict; one naming the
	// current one applies.
	cur := get()
	r = patch("application/merge-patch+json", `{"metadata":{"resourceVersion":"1","labels":{"stale":"yes"}}}`)
	wantStatus(t, r, http.StatusConflict, metav1.StatusReasonConflict, "the object has been modified")
	r = patch("application/merge-patch+json", fmt.Sprintf(`{"metadata":{"resourceVersion":%q,"labels":{"fresh":"yes"}}}`, cur.ResourceVersion))
	if r.code != 200 {
		t.Fatalf("patch with current rv: %d %s", r.code, r.body)
	}
	r = e.request("PATCH", "/api/v1/namespaces/default/pods/ghost", http.Header{"Content-Type": {"application/merge-patch+json"}}, strings.NewReader(`{}`))
	wantStatus(t, r, http.StatusNotFound, metav1.StatusReasonNotFound, `pods "ghost" not found`)
}

// watchLines reads newline-delimited watch events from a streaming response.
type watchLines struct {
	t    *testing.T
	resp *http.Response
	sc   *bufio.Scanner
	ch   chan []byte
}

func (e *apiEnv) openWatch(path string, header http.Header) (*watchLines, response) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, "GET", e.url+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	c := &http.Client{Transport: e.client.Transport} // no overall timeout: a watch streams
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return nil, response{code: resp.StatusCode, header: resp.Header, body: data}
	}
	w := &watchLines{t: e.t, resp: resp, sc: bufio.NewScanner(resp.Body), ch: make(chan []byte, 100)}
	w.sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	go func() {
		defer close(w.ch)
		for w.sc.Scan() {
			w.ch <- append([]byte(nil), w.sc.Bytes()...)
		}
	}()
	e.t.Cleanup(func() { resp.Body.Close() })
	return w, response{code: resp.StatusCode, header: resp.Header}
}

type rawEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

func (w *watchLines) next() rawEvent {
	w.t.Helper()
	select {
	case line, ok := <-w.ch:
		if !ok {
			w.t.Fatal("watch stream ended")
		}
		var ev rawEvent
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil {
			w.t.Fatalf("watch line is not one JSON event: %v: %q", err, line)
		}
		return ev
	case <-time.After(10 * time.Second):
		w.t.Fatal("no watch event within 10s")
	}
	return rawEvent{}
}

func (w *watchLines) ended(within time.Duration) bool {
	select {
	case _, ok := <-w.ch:
		return !ok
	case <-time.After(within):
		return false
	}
}

func TestWatchStreamFraming(t *testing.T) {
	e := newAPI(t)
	e.createPod("default", "before")
	var list corev1.PodList
	e.do("GET", "/api/v1/namespaces/default/pods", "", "", 200).decode(t, &list)
	w, r := e.openWatch("/api/v1/namespaces/default/pods?watch=true&resourceVersion="+list.ResourceVersion, nil)
	if w == nil {
		t.Fatalf("watch: %d %s", r.code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("watch Content-Type %q", ct)
	}
	e.createPod("default", "web")
	e.do("PATCH", "/api/v1/namespaces/default/pods/web", "application/merge-patch+json", `{"metadata":{"labels":{"v":"2"}}}`, 200)
	e.do("DELETE", "/api/v1/namespaces/default/pods/web", "", "", 200)
	for _, want := range []string{"ADDED", "MODIFIED", "DELETED"} {
		ev := w.next()
		var p corev1.Pod
		if err := json.Unmarshal(ev.Object, &p); err != nil {
			t.Fatal(err)
		}
		if ev.Type != want || p.Name != "web" || p.Kind != "Pod" || p.APIVersion != "v1" {
			t.Fatalf("got %s %s (kind %q), want %s web", ev.Type, p.Name, p.Kind, want)
		}
	}
	// The deprecated /watch/ path and a watch of one object by name.
	w2, r := e.openWatch("/api/v1/watch/namespaces/default/pods/before", nil)
	if w2 == nil {
		t.Fatalf("watch by name: %d %s", r.code, r.body)
	}
	if ev := w2.next(); ev.Type != "ADDED" || !strings.Contains(string(ev.Object), `"name":"before"`) {
		t.Fatalf("watch by name: %s %s", ev.Type, ev.Object)
	}
	// timeoutSeconds ends the stream.
	w3, _ := e.openWatch("/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=1&resourceVersion="+list.ResourceVersion, nil)
	for i := 0; i < 3; i++ {
		w3.next()
	}
	if !w3.ended(5 * time.Second) {
		t.Fatal("watch with timeoutSeconds=1 still open after 5s")
	}
	// Watch errors before the stream starts are plain Status responses.
	_, r = e.openWatch("/api/v1/namespaces/default/pods?watch=true&fieldSelector=spec.nope%3Dx", nil)
	wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "field label not supported")
	_, r = e.openWatch("/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=-4", nil)
	wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "timeoutSeconds")
}

func TestWatchGoneAfterCompaction(t *testing.T) {
	e := newAPI(t)
	p := e.createPod("default", "old")
	rv := p["metadata"].(map[string]interface{})["resourceVersion"].(string)
	for _, v := range []string{"2", "3", "4"} {
		e.do("PATCH", "/api/v1/namespaces/default/pods/old", "application/merge-patch+json", `{"metadata":{"labels":{"v":"`+v+`"}}}`, 200)
	}
	cur, err := testStore.Revision(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testEtcd.Client().Compact(e.ctx, cur); err != nil {
		t.Fatal(err)
	}
	w, r := e.openWatch("/api/v1/namespaces/default/pods?watch=true&resourceVersion="+rv, nil)
	if w == nil {
		t.Fatalf("watch: %d %s", r.code, r.body)
	}
	ev := w.next()
	var st metav1.Status
	if err := json.Unmarshal(ev.Object, &st); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "ERROR" || st.Kind != "Status" || st.Code != http.StatusGone || st.Reason != metav1.StatusReasonExpired {
		t.Fatalf("got %s %s", ev.Type, ev.Object)
	}
	if !w.ended(5 * time.Second) {
		t.Fatal("stream goes on after the ERROR event")
	}
}

func TestWatchTableEvents(t *testing.T) {
	e := newAPI(t)
	e.createPod("default", "a")
	e.createPod("default", "b")
	w, r := e.openWatch("/api/v1/namespaces/default/pods?watch=true", http.Header{"Accept": {"application/json;as=Table;v=v1;g=meta.k8s.io"}})
	if w == nil {
		t.Fatalf("table watch: %d %s", r.code, r.body)
	}
	for i, name := range []string{"a", "b"} {
		ev := w.next()
		var table metav1.Table
		if err := json.Unmarshal(ev.Object, &table); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "ADDED" || table.Kind != "Table" || len(table.Rows) != 1 || table.Rows[0].Cells[0] != name {
			t.Fatalf("event %d: %s %s", i, ev.Type, ev.Object)
		}
		if i == 0 && (len(table.ColumnDefinitions) == 0 || table.ColumnDefinitions[0].Name != "Name") {
			t.Fatalf("first table event has no column definitions: %s", ev.Object)
		}
		if i > 0 && len(table.ColumnDefinitions) != 0 {
			t.Fatalf("table event %d repeats the column definitions", i)
		}
	}
}

func TestTableNegotiation(t *testing.T) {
	e := newAPI(t)
	e.createPod("default", "web")
	e.do("POST", "/api/v1/namespaces/default/services", "application/json",
		`{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"type":"NodePort","selector":{"app":"web"},"ports":[{"port":80}]}}`, 201)
	table := func(path, accept string) metav1.Table {
		t.Helper()
		r := e.request("GET", path, http.Header{"Accept": {accept}}, nil)
		if r.code != 200 {
			t.Fatalf("GET %s as table: %d %s", path, r.code, r.body)
		}
		var tb metav1.Table
		r.decode(t, &tb)
		if tb.Kind != "Table" || tb.APIVersion != "meta.k8s.io/v1" {
			t.Fatalf("not a Table: %s", r.body)
		}
		return tb
	}
	const kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
	tb := table("/api/v1/namespaces/default/pods", kubectl)
	var cols []string
	for _, c := range tb.ColumnDefinitions {
		cols = append(cols, c.Name)
	}
	if strings.Join(cols, ",") != "Name,Ready,Status,Restarts,Age,IP,Node,Nominated Node,Readiness Gates" {
		t.Errorf("pod columns %v", cols)
	}
	if len(tb.Rows) != 1 || tb.Rows[0].Cells[0] != "web" || tb.Rows[0].Cells[1] != "0/1" || tb.Rows[0].Cells[2] != "Pending" {
		t.Fatalf("pod rows %+v", tb.Rows)
	}
	if !strings.Contains(string(tb.Rows[0].Object.Raw), `"PartialObjectMetadata"`) {
		t.Errorf("row object by default: %s", tb.Rows[0].Object.Raw)
	}
	tb = table("/api/v1/namespaces/default/pods/web?includeObject=Object", "application/json;as=Table;v=v1;g=meta.k8s.io")
	if !strings.Contains(string(tb.Rows[0].Object.Raw), `"kind":"Pod"`) {
		t.Errorf("includeObject=Object row: %s", tb.Rows[0].Object.Raw)
	}
	tb = table("/api/v1/namespaces/default/services", "application/json;as=Table;v=v1;g=meta.k8s.io")
	if ports := tb.Rows[0].Cells[4].(string); !strings.HasPrefix(ports, "80:300") || !strings.HasSuffix(ports, "/TCP") {
		t.Errorf("service PORT(S) cell %q", ports)
	}
	tb = table("/api/v1/namespaces", "application/json;as=Table;v=v1;g=meta.k8s.io")
	if len(tb.Rows) != 2 || tb.Rows[0].Cells[1] != "Active" {
		t.Errorf("namespace rows %+v", tb.Rows)
	}
	// Metadata only, as the garbage collector and kubectl's metadata client ask.
	r := e.request("GET", "/api/v1/namespaces/default/pods", http.Header{"Accept": {"application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"}}, nil)
	if r.code != 200 || !strings.Contains(string(r.body), `"kind":"PartialObjectMetadataList"`) || strings.Contains(string(r.body), `"spec"`) {
		t.Errorf("partial metadata list: %d %s", r.code, r.body)
	}
	// YAML.
	r = e.request("GET", "/api/v1/namespaces/default/pods/web", http.Header{"Accept": {"application/yaml"}}, nil)
	if r.code != 200 || r.header.Get("Content-Type") != "application/yaml" || !strings.Contains(string(r.body), "kind: Pod\n") {
		t.Errorf("yaml: %d %q %s", r.code, r.header.Get("Content-Type"), r.body)
	}
	// Nothing acceptable is a 406.
	r = e.request("GET", "/api/v1/namespaces/default/pods", http.Header{"Accept": {"application/xml"}}, nil)
	wantStatus(t, r, http.StatusNotAcceptable, metav1.StatusReasonNotAcceptable, "")
	r = e.request("GET", "/api/v1/namespaces/default/pods", http.Header{"Accept": {"application/json;as=Table;v=v9;g=meta.k8s.io"}}, nil)
	wantStatus(t, r, http.StatusNotAcceptable, metav1.StatusReasonNotAcceptable, "")
}

func TestVersion(t *testing.T) {
	e := newAPI(t)
	var v struct {
		Major, Minor, GitVersion, Platform string
	}
	e.do("GET", "/version", "", "", 200).decode(t, &v)
	if v.Major != "1" || v.Minor != "32" || !strings.HasPrefix(v.GitVersion, "v1.32.") || v.Platform == "" {
		t.Fatalf("/version %+v", v)
	}
	sv, err := e.clientset().Discovery().ServerVersion()
	if err != nil || !strings.HasPrefix(sv.GitVersion, "v1.32.") {
		t.Fatalf("client-go ServerVersion: %+v %v", sv, err)
	}
}

func TestRequestTimeout(t *testing.T) {
	e := newAPI(t)
	e.createPod("default", "web")
	// A timeout too short for any storage round trip.
	r := e.request("GET", "/api/v1/namespaces/default/pods?timeout=1ns", nil, nil)
	st := wantStatus(t, r, http.StatusGatewayTimeout, metav1.StatusReasonTimeout, "request did not complete within requested timeout")
	if st.Details == nil {
		t.Errorf("timeout status without details: %+v", st)
	}
	r = e.request("POST", "/api/v1/namespaces/default/pods?timeout=1ns", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(fmt.Sprintf(podJSON, "late")))
	wantStatus(t, r, http.StatusGatewayTimeout, metav1.StatusReasonTimeout, "")
	// A generous timeout changes nothing.
	if r = e.request("GET", "/api/v1/namespaces/default/pods?timeout=30s", nil, nil); r.code != 200 {
		t.Fatalf("timeout=30s: %d %s", r.code, r.body)
	}
	for _, bad := range []string{"soon", "5", "1y"} {
		r = e.request("GET", "/api/v1/namespaces/default/pods?timeout="+bad, nil, nil)
		wantStatus(t, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "timeout")
	}
	// 0 or less is no timeout of the client's own, as in Kubernetes.
	for _, none := range []string{"0", "0s", "-5s"} {
		if r = e.request("GET", "/api/v1/namespaces/default/pods?timeout="+none, nil, nil); r.code != 200 {
			t.Errorf("timeout=%s: %d %s", none, r.code, r.body)
		}
	}
	// Watches are not bound by the request timeout.
	w, r := e.openWatch("/api/v1/namespaces/default/pods?watch=true&timeout=1ns", nil)
	if w == nil {
		t.Fatalf("watch with timeout=1ns: %d %s", r.code, r.body)
	}
	if ev := w.next(); ev.Type != "ADDED" {
		t.Fatalf("watch event %s", ev.Type)
	}
}

func TestWatchLimitPerClient(t *testing.T) {
	e := newAPI(t, func(c *apiserver.Config) { c.MaxWatchesPerClient = 2 })
	var open []*watchLines
	for i := 0; i < 2; i++ {
		w, r := e.openWatch("/api/v1/namespaces/default/pods?watch=true", nil)
		if w == nil {
			t.Fatalf("watch %d: %d %s", i, r.code, r.body)
		}
		open = append(open, w)
	}
	_, r := e.openWatch("/api/v1/namespaces/default/services?watch=true", nil)
	st := wantStatus(t, r, http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests, "too many watches")
	if st.Details == nil || st.Details.RetryAfterSeconds <= 0 {
		t.Errorf("429 without retryAfterSeconds: %+v", st.Details)
	}
	if ra := r.header.Get("Retry-After"); ra == "" {
		t.Error("429 without a Retry-After header (client-go waits for it)")
	} else if n, err := strconv.Atoi(ra); err != nil || n <= 0 {
		t.Errorf("Retry-After %q", ra)
	}
	// Other users have their own allowance.
	cert, key, _ := e.bundle.IssueClient("someone-else", nil)
	req, _ := http.NewRequestWithContext(e.ctx, "GET", e.url+"/api/v1/namespaces/default/pods?watch=true", nil)
	resp, err := (&http.Client{Transport: e.httpClient(cert, key).Transport}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Errorf("another user's watch: %d", resp.StatusCode)
	}
	resp.Body.Close()
	// Closing a watch frees its place.
	open[0].resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w, r := e.openWatch("/api/v1/namespaces/default/pods?watch=true", nil)
		if w != nil {
			break
		}
		if r.code != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("watch after closing one: %d %s", r.code, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Plain requests are not limited.
	if r := e.request("GET", "/api/v1/namespaces/default/pods", nil, nil); r.code != 200 {
		t.Fatalf("list while at the watch limit: %d", r.code)
	}
}

func TestDeleteResponses(t *testing.T) {
	e := newAPI(t)
	e.createPod("default", "web")
	// Pods answer DELETE with the object, as Kubernetes does.
	r := e.do("DELETE", "/api/v1/namespaces/default/pods/web", "", "", 200)
	var p corev1.Pod
	r.decode(t, &p)
	if p.Kind != "Pod" || p.Name != "web" {
		t.Fatalf("DELETE answer %s", r.body)
	}
	wantStatus(t, e.request("DELETE", "/api/v1/namespaces/default/pods/web", nil, nil), http.StatusNotFound, metav1.StatusReasonNotFound, `pods "web" not found`)
	// DeleteOptions in the body and in the query.
	e.do("POST", "/api/v1/namespaces/default/pods", "application/json",
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bound"},"spec":{"nodeName":"n1","containers":[{"name":"c","image":"x"}]}}`, 201)
	r = e.do("DELETE", "/api/v1/namespaces/default/pods/bound", "application/json", `{"kind":"DeleteOptions","apiVersion":"v1","gracePeriodSeconds":7}`, 200)
	r.decode(t, &p)
	if p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 7 {
		t.Fatalf("grace from body: %v", p.DeletionGracePeriodSeconds)
	}
	e.do("DELETE", "/api/v1/namespaces/default/pods/bound?gracePeriodSeconds=0", "", "", 200)
	wantStatus(t, e.request("GET", "/api/v1/namespaces/default/pods/bound", nil, nil), http.StatusNotFound, metav1.StatusReasonNotFound, "")
	// Namespaces: protected ones are refused; others terminate.
	r = e.request("DELETE", "/api/v1/namespaces/default", nil, nil)
	wantStatus(t, r, http.StatusForbidden, metav1.StatusReasonForbidden, "this namespace may not be deleted")
	r = e.do("DELETE", "/api/v1/namespaces/other", "", "", 200)
	var ns corev1.Namespace
	r.decode(t, &ns)
	if ns.Status.Phase != corev1.NamespaceTerminating {
		t.Fatalf("deleted namespace phase %s", ns.Status.Phase)
	}
	r = e.request("POST", "/api/v1/namespaces/other/pods", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(fmt.Sprintf(podJSON, "late")))
	st := wantStatus(t, r, http.StatusForbidden, metav1.StatusReasonForbidden, "because it is being terminated")
	found := false
	if st.Details != nil {
		for _, c := range st.Details.Causes {
			found = found || c.Type == corev1.NamespaceTerminatingCause
		}
	}
	if !found {
		t.Errorf("no NamespaceTerminating cause: %+v", st.Details)
	}
	// The namespace controller's finalize removes it.
	ns.Spec.Finalizers = nil
	e.request("PUT", "/api/v1/namespaces/other/finalize", http.Header{"Content-Type": {"application/json"}}, jsonBody(ns))
	wantStatus(t, e.request("GET", "/api/v1/namespaces/other", nil, nil), http.StatusNotFound, metav1.StatusReasonNotFound, "")
}

func pemOf(t *testing.T, c tls.Certificate) ([]byte, []byte) {
	t.Helper()
	return pemEncode(t, c)
}
