package apiserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/berth-project/berth/internal/alloc"
	"github.com/berth-project/berth/internal/apiserver"
	"github.com/berth-project/berth/internal/pki"
	"github.com/berth-project/berth/internal/registry"
	"github.com/berth-project/berth/internal/registry/endpoints"
	"github.com/berth-project/berth/internal/registry/endpointslice"
	"github.com/berth-project/berth/internal/registry/event"
	"github.com/berth-project/berth/internal/registry/namespace"
	"github.com/berth-project/berth/internal/registry/node"
	"github.com/berth-project/berth/internal/registry/pod"
	"github.com/berth-project/berth/internal/registry/service"
	"github.com/berth-project/berth/internal/storage/etcd"
)

// The embedded etcd is started on first use, so that the fuzz workers, which
// run this binary too, do not each start one.
var (
	etcdOnce  sync.Once
	etcdErr   error
	etcdDir   string
	testEtcd  *etcd.Embedded
	testStore *etcd.Store
	envSeq    atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if testEtcd != nil {
		testEtcd.Close()
	}
	if etcdDir != "" {
		_ = os.RemoveAll(etcdDir)
	}
	os.Exit(code)
}

func sharedStore(t *testing.T) *etcd.Store {
	t.Helper()
	etcdOnce.Do(func() {
		etcdDir, etcdErr = os.MkdirTemp("", "berth-apiserver-test-")
		if etcdErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		testEtcd, etcdErr = etcd.StartEmbedded(ctx, etcd.EmbeddedConfig{Dir: etcdDir})
		if etcdErr == nil {
			testStore = etcd.New(testEtcd.Client(), slog.New(slog.DiscardHandler))
		}
	})
	if etcdErr != nil {
		t.Fatalf("embedded etcd: %v", etcdErr)
	}
	return testStore
}

// logRecorder keeps the messages the server logs, to catch recovered panics.
type logRecorder struct {
	mu   sync.Mutex // guards msgs
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.msgs = append(l.msgs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) panics() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.msgs {
		if strings.Contains(m, "panic") {
			out = append(out, m)
		}
	}
	return out
}

// apiEnv is a real API server over TLS on 127.0.0.1 with berth's kinds.
type apiEnv struct {
	t      *testing.T
	ctx    context.Context
	url    string
	bundle *pki.Bundle
	client *http.Client // authenticated as the admin
	rest   *rest.Config
	reg    *registry.Registry
	logs   *logRecorder
}

type apiOption func(*apiserver.Config)

func newAPI(t *testing.T, opts ...apiOption) *apiEnv {
	t.Helper()
	store := sharedStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	base := fmt.Sprintf("/apitest/%d", envSeq.Add(1))
	ipRange, _ := alloc.ParseIPRange("10.96.0.0/24")
	ports, _ := alloc.ParsePortRange("30000-30099")
	svcCfg := service.Config{
		ClusterIPs:     alloc.New(store, base+"/allocations/serviceips", ipRange, ipRange.StaticSize()),
		ClusterIPRange: ipRange,
		NodePorts:      alloc.New(store, base+"/allocations/servicenodeports", ports, 0),
		Logger:         slog.New(slog.DiscardHandler),
	}
	kinds := []*registry.Kind{namespace.Kind(), node.Kind(), pod.Kind(), service.Kind(svcCfg), event.Kind(), endpoints.Kind(), endpointslice.Kind()}
	reg, err := registry.New(registry.Config{Storage: store, Prefix: base + "/registry", Kinds: kinds, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := pki.Ensure(t.TempDir(), []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{}
	cfg := apiserver.Config{
		Registry: reg, Serving: bundle.Serving, ClientCAs: bundle.ClientPool(), Address: "127.0.0.1:0",
		Ready:  func(ctx context.Context) error { _, err := store.Revision(ctx); return err },
		Logger: slog.New(logs),
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := apiserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, ready) }()
	<-ready
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("API server did not stop")
		}
		if p := logs.panics(); len(p) > 0 {
			t.Errorf("the server recovered from panics: %v", p)
		}
	})
	e := &apiEnv{t: t, ctx: ctx, url: "https://" + ln.Addr().String(), bundle: bundle, reg: reg, logs: logs}
	e.client = e.httpClient(bundle.AdminCert, bundle.AdminKey)
	e.rest = &rest.Config{
		Host: e.url,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: bundle.CAPEM, CertData: bundle.AdminCert, KeyData: bundle.AdminKey,
		},
		QPS: 1000, Burst: 1000,
	}
	for _, ns := range []string{"default", "other"} {
		e.do("POST", "/api/v1/namespaces", "application/json", fmt.Sprintf(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":%q}}`, ns), 201)
	}
	return e
}

// httpClient trusts the server's CA and presents the given client cert (none
// when certPEM is nil).
func (e *apiEnv) httpClient(certPEM, keyPEM []byte) *http.Client {
	e.t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.bundle.CAPEM)
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if certPEM != nil {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			e.t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	tr := &http.Transport{TLSClientConfig: tc}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func (e *apiEnv) clientset() *kubernetes.Clientset {
	e.t.Helper()
	cs, err := kubernetes.NewForConfig(e.rest)
	if err != nil {
		e.t.Fatal(err)
	}
	return cs
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) status(t *testing.T) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(r.body, &st); err != nil {
		t.Fatalf("body is not a Status: %v: %s", err, r.body)
	}
	if st.Kind != "Status" || st.APIVersion != "v1" {
		t.Fatalf("body is not a v1 Status: %s", r.body)
	}
	return st
}

func (r response) decode(t *testing.T, into interface{}) {
	t.Helper()
	if err := json.Unmarshal(r.body, into); err != nil {
		t.Fatalf("decode %T: %v: %s", into, err, r.body)
	}
}

// request sends one request with the admin client.
func (e *apiEnv) request(method, path string, header http.Header, body io.Reader) response {
	e.t.Helper()
	return e.requestWith(e.client, method, path, header, body)
}

func (e *apiEnv) requestWith(c *http.Client, method, path string, header http.Header, body io.Reader) response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusGatewayTimeout && resp.StatusCode != http.StatusServiceUnavailable {
		e.t.Errorf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: data}
}

// do sends body with the given content type and checks the status code.
func (e *apiEnv) do(method, path, contentType, body string, want int) response {
	e.t.Helper()
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	resp := e.request(method, path, h, r)
	if resp.code != want {
		e.t.Fatalf("%s %s: got %d, want %d: %s", method, path, resp.code, want, resp.body)
	}
	return resp
}

// wantStatus checks a Status body's code, reason and message.
func wantStatus(t *testing.T, r response, code int, reason metav1.StatusReason, msg string) metav1.Status {
	t.Helper()
	if r.code != code {
		t.Fatalf("HTTP %d, want %d: %s", r.code, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Status served as %q", ct)
	}
	st := r.status(t)
	if int(st.Code) != code || st.Reason != reason || st.Status != metav1.StatusFailure || !strings.Contains(st.Message, msg) {
		t.Fatalf("Status %d %s %s %q, want %d %s containing %q", st.Code, st.Status, st.Reason, st.Message, code, reason, msg)
	}
	return st
}

const podJSON = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"labels":{"app":"web"}},
 "spec":{"containers":[{"name":"web","image":"registry.k8s.io/e2e-test-images/agnhost:2.53","args":["netexec"]}]}}`

func (e *apiEnv) createPod(ns, name string) map[string]interface{} {
	e.t.Helper()
	r := e.do("POST", "/api/v1/namespaces/"+ns+"/pods", "application/json", fmt.Sprintf(podJSON, name), http.StatusCreated)
	var out map[string]interface{}
	r.decode(e.t, &out)
	return out
}

func jsonBody(v interface{}) *bytes.Reader {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return bytes.NewReader(data)
}
