package registry_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/berth-project/berth/internal/alloc"
	"github.com/berth-project/berth/internal/registry"
	"github.com/berth-project/berth/internal/registry/endpoints"
	"github.com/berth-project/berth/internal/registry/endpointslice"
	"github.com/berth-project/berth/internal/registry/event"
	"github.com/berth-project/berth/internal/registry/namespace"
	"github.com/berth-project/berth/internal/registry/node"
	"github.com/berth-project/berth/internal/registry/pod"
	"github.com/berth-project/berth/internal/registry/service"
	"github.com/berth-project/berth/internal/storage"
	"github.com/berth-project/berth/internal/storage/etcd"
)

// One embedded etcd serves every test in this package; each test works
// under its own key prefix, so tests do not see each other's objects.
var (
	testEtcd  *etcd.Embedded
	testStore *etcd.Store
	envSeq    atomic.Int64
)

func TestMain(m *testing.M) {
	// Bookmarks every 200ms keep the bookmark tests short. Set before any
	// watch starts, so no test races on it.
	registry.BookmarkInterval = 200 * time.Millisecond
	dir, err := os.MkdirTemp("", "berth-registry-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	e, err := etcd.StartEmbedded(ctx, etcd.EmbeddedConfig{Dir: dir})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	testEtcd = e
	testStore = etcd.New(e.Client(), slog.New(slog.DiscardHandler))
	code := m.Run()
	e.Close()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// env is a registry with berth's real kinds over the shared etcd.
type env struct {
	t          *testing.T
	ctx        context.Context
	reg        *registry.Registry
	storage    storage.Interface
	prefix     string // registry key prefix
	ipRange    *alloc.IPRange
	clusterIPs *alloc.Allocator
	nodePorts  *alloc.Allocator

	pods, services, namespaces, nodes, slices, events, endpoints *registry.Store
}

type envOption func(*envConfig)

type envConfig struct {
	wrap func(storage.Interface) storage.Interface
}

// withStorage wraps the storage the registry (not the allocators) sees.
func withStorage(wrap func(storage.Interface) storage.Interface) envOption {
	return func(c *envConfig) { c.wrap = wrap }
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	var cfg envConfig
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	base := fmt.Sprintf("/test/%d/%s", envSeq.Add(1), strings.ReplaceAll(t.Name(), "/", "_"))
	ipRange, err := alloc.ParseIPRange("10.96.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	ports, err := alloc.ParsePortRange("30000-30099")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, storage: testStore, prefix: base + "/registry", ipRange: ipRange}
	e.clusterIPs = alloc.New(testStore, base+"/allocations/serviceips", ipRange, ipRange.StaticSize())
	e.nodePorts = alloc.New(testStore, base+"/allocations/servicenodeports", ports, 0)
	svcCfg := service.Config{ClusterIPs: e.clusterIPs, ClusterIPRange: ipRange, NodePorts: e.nodePorts, Logger: slog.New(slog.DiscardHandler)}
	kinds := []*registry.Kind{
		namespace.Kind(), node.Kind(), pod.Kind(), service.Kind(svcCfg), event.Kind(), endpoints.Kind(), endpointslice.Kind(),
	}
	st := storage.Interface(testStore)
	if cfg.wrap != nil {
		st = cfg.wrap(st)
	}
	e.reg, err = registry.New(registry.Config{Storage: st, Prefix: e.prefix, Kinds: kinds, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	core := func(r string) *registry.Store { return e.reg.Store(schema.GroupResource{Resource: r}) }
	e.pods, e.services, e.namespaces, e.nodes = core("pods"), core("services"), core("namespaces"), core("nodes")
	e.events, e.endpoints = core("events"), core("endpoints")
	e.slices = e.reg.Store(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"})
	for _, ns := range []string{"default", "other"} {
		e.createNamespace(ns)
	}
	return e
}

func (e *env) createNamespace(name string) *corev1.Namespace {
	e.t.Helper()
	obj, err := e.namespaces.Create(e.ctx, "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, registry.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create namespace %s: %v", name, err)
	}
	return obj.(*corev1.Namespace)
}

func (e *env) createPod(ns string, p *corev1.Pod) *corev1.Pod {
	e.t.Helper()
	obj, err := e.pods.Create(e.ctx, ns, p, registry.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create pod %s/%s: %v", ns, p.Name, err)
	}
	return obj.(*corev1.Pod)
}

func (e *env) getPod(ns, name string) *corev1.Pod {
	e.t.Helper()
	obj, err := e.pods.Get(e.ctx, ns, name)
	if err != nil {
		e.t.Fatalf("get pod %s/%s: %v", ns, name, err)
	}
	return obj.(*corev1.Pod)
}

func (e *env) createService(ns string, s *corev1.Service) *corev1.Service {
	e.t.Helper()
	obj, err := e.services.Create(e.ctx, ns, s, registry.CreateOptions{})
	if err != nil {
		e.t.Fatalf("create service %s/%s: %v", ns, s.Name, err)
	}
	return obj.(*corev1.Service)
}

// revision is the store's current revision.
func (e *env) revision() int64 {
	e.t.Helper()
	rev, err := testStore.Revision(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return rev
}

func newPod(name string, mods ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "registry.k8s.io/e2e-test-images/agnhost:2.53", Args: []string{"netexec"},
		}}},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func withLabels(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func onNode(n string) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Spec.NodeName = n } }

func newService(name string, mods ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

// statusOf returns the Status inside an API error, failing the test when err
// is not one.
func statusOf(t *testing.T, err error) metav1.Status {
	t.Helper()
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not an API status error", err, err)
	}
	return se.Status()
}

// wantStatus checks the code, reason and (part of) the message of an error.
func wantStatus(t *testing.T, err error, code int32, reason metav1.StatusReason, msg string) metav1.Status {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %d %s %q", code, reason, msg)
	}
	st := statusOf(t, err)
	if st.Code != code || st.Reason != reason || !strings.Contains(st.Message, msg) {
		t.Fatalf("got %d %s %q, want %d %s containing %q", st.Code, st.Reason, st.Message, code, reason, msg)
	}
	return st
}

// hasCause says whether an Invalid error names field with a message containing msg.
func hasCause(st metav1.Status, fieldPath string, msg string) bool {
	if st.Details == nil {
		return false
	}
	for _, c := range st.Details.Causes {
		if c.Field == fieldPath && strings.Contains(c.Message, msg) {
			return true
		}
	}
	return false
}

func names(t *testing.T, list runtime.Object) []string {
	t.Helper()
	var out []string
	switch l := list.(type) {
	case *corev1.PodList:
		for _, p := range l.Items {
			out = append(out, p.Name)
		}
	case *corev1.ServiceList:
		for _, s := range l.Items {
			out = append(out, s.Name)
		}
	case *corev1.NamespaceList:
		for _, n := range l.Items {
			out = append(out, n.Name)
		}
	default:
		t.Fatalf("names: unexpected list %T", list)
	}
	return out
}

// createHook wraps a storage.Interface and lets a test intercept Create.
type createHook struct {
	storage.Interface
	mu        sync.Mutex // guards calls
	calls     []string
	intercept func(n int, key string) error // n counts matching calls from 0
	match     string                        // key substring the hook applies to
}

func (h *createHook) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (int64, error) {
	if strings.Contains(key, h.match) {
		h.mu.Lock()
		n := len(h.calls)
		h.calls = append(h.calls, key)
		h.mu.Unlock()
		if err := h.intercept(n, key); err != nil {
			return 0, err
		}
	}
	return h.Interface.Create(ctx, key, value, ttl)
}

func (h *createHook) keys() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}
