package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
)

func svcTarget(ports ...string) TargetSpec {
	t := TargetSpec{Kind: KindService, Name: "web"}
	for _, p := range ports {
		ps, err := ParsePort(p)
		if err != nil {
			panic(err)
		}
		t.Ports = append(t.Ports, ps)
	}
	return t
}

// TestServiceFollowsEndpoints walks one Service through the life of its
// pods: traffic spreads over two, a terminating and then removed endpoint
// gets nothing (without a single failed request on the way), a new one gets
// its share, and an API server connection cut is survived.
func TestServiceFollowsEndpoints(t *testing.T) {
	h := newHarness(t, webService(), webSlice("a", "b"))
	h.start(Options{Targets: []TargetSpec{svcTarget(":80")}, Wait: 5 * time.Second})
	h.waitReady(0, "a", "b")
	addr := h.addr(0)
	if !strings.Contains(h.out.String(), "Forwarding from "+addr+" -> svc/web:80") {
		t.Errorf("stdout = %q, want a Forwarding line for %s", h.out.String(), addr)
	}

	t.Run("spread over two endpoints", func(t *testing.T) {
		got := requests(t, addr, 20)
		if got["a"] != 10 || got["b"] != 10 {
			t.Fatalf("answers per pod = %v, want 10 each (round robin)", got)
		}
		// One port-forward connection per pod, reused by every request.
		if a, b := h.pf.dialsTo("a"), h.pf.dialsTo("b"); a != 1 || b != 1 {
			t.Fatalf("portforward upgrades per pod = a:%d b:%d, want 1 each", a, b)
		}
	})

	t.Run("endpoint removal has zero failures", func(t *testing.T) {
		// Keep requests flowing while pod a goes terminating and leaves
		// the slice, as in a rolling update.
		var failures atomic.Int64
		var sent atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 2; w++ {
			wg.Go(func() {
				for i := 0; i < 500; i++ {
					select {
					case <-stop:
						return
					default:
					}
					sent.Add(1)
					if ans, err := request(addr); err != nil || !strings.HasSuffix(ans, ":hello") {
						failures.Add(1)
						t.Errorf("request during removal: %q, %v", ans, err)
					}
				}
			})
		}
		time.Sleep(50 * time.Millisecond)
		h.updateSlice(webSlice("a~", "b"))
		h.waitReady(0, "b")
		time.Sleep(50 * time.Millisecond)
		h.updateSlice(webSlice("b"))
		time.Sleep(50 * time.Millisecond)
		close(stop)
		wg.Wait()
		if failures.Load() != 0 || sent.Load() == 0 {
			t.Fatalf("%d of %d requests failed during the removal", failures.Load(), sent.Load())
		}
		// The pod's process exits after its grace period.
		h.backends["a"].close()
		before := h.backends["a"].hits.Load()
		got := requests(t, addr, 20)
		if got["b"] != 20 || h.backends["a"].hits.Load() != before {
			t.Fatalf("after removal answers = %v, want all 20 from b", got)
		}
		// The pool let go of pod a's connection.
		deadline := time.Now().Add(5 * time.Second)
		for h.f.targets[0].pool.size() != 1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := h.f.targets[0].pool.size(); n != 1 {
			t.Fatalf("pool holds %d pod connections, want 1 (b)", n)
		}
	})

	t.Run("new endpoint gets traffic", func(t *testing.T) {
		h.updateSlice(webSlice("b", "c"))
		h.waitReady(0, "b", "c")
		got := requests(t, addr, 20)
		if got["b"] != 10 || got["c"] != 10 {
			t.Fatalf("answers = %v, want 10 from b and 10 from c", got)
		}
	})

	t.Run("API server connection cut is survived", func(t *testing.T) {
		dials := h.pf.dialsTo("b") + h.pf.dialsTo("c")
		h.pf.killConnections()
		got := requests(t, addr, 10)
		if got["b"]+got["c"] != 10 {
			t.Fatalf("answers = %v", got)
		}
		if after := h.pf.dialsTo("b") + h.pf.dialsTo("c"); after <= dials {
			t.Fatalf("no new portforward upgrade after the cut (%d before, %d after)", dials, after)
		}
	})

	t.Run("status", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for h.f.targets[0].stats.open.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // the last connection's handler is finishing
		}
		s := h.f.targets[0].snapshot()
		if s.Ready != 2 || s.Conns < 60 || s.Failed != 0 || s.Open != 0 {
			t.Fatalf("status = %+v", s)
		}
		if !strings.Contains(h.logs.String(), "msg=status target=svc/web") {
			t.Fatalf("no plain status line in the log:\n%s", h.logs)
		}
	})
}

// An open connection keeps working when its endpoint leaves the Service;
// only new connections move.
func TestOpenConnectionOutlivesRemoval(t *testing.T) {
	h := newHarness(t, webService(), webSlice("a"))
	h.start(Options{Targets: []TargetSpec{svcTarget(":80")}, Wait: 5 * time.Second})
	h.waitReady(0, "a")
	c, err := net.Dial("tcp", h.addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The pod side is reached once the stream pair exists.
	deadline := time.Now().Add(5 * time.Second)
	for h.f.targets[0].stats.open.Load() != 1 || h.pf.dialsTo("a") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("connection did not open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	h.updateSlice(webSlice("b"))
	h.waitReady(0, "b")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "late\n")
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "a:late\n" {
		t.Fatalf("old connection answered %q, %v; want a:late", buf[:n], err)
	}
	if got := requests(t, h.addr(0), 4); got["b"] != 4 {
		t.Fatalf("new connections = %v, want all on b", got)
	}
}

func TestNoReadyEndpointWaitsThenRefuses(t *testing.T) {
	h := newHarness(t, webService(), webSlice("a-", "b~"))
	wait := 300 * time.Millisecond
	h.start(Options{Targets: []TargetSpec{svcTarget(":80")}, Wait: wait})
	h.waitReady(0)
	start := time.Now()
	ans, err := request(h.addr(0))
	if err == nil {
		t.Fatalf("request answered %q, want the connection closed", ans)
	}
	if took := time.Since(start); took < wait {
		t.Fatalf("refused after %s, want a wait of at least %s", took, wait)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "refused connection") || !strings.Contains(logs, "svc/web has no ready endpoint (0 of 2 ready, waited 300ms)") {
		t.Fatalf("log does not say why:\n%s", logs)
	}
	if s := h.f.targets[0].snapshot(); s.Failed != 1 || !strings.Contains(s.LastErr, "no ready endpoint") {
		t.Fatalf("status = %+v", s)
	}
}

func TestWaitingConnectionGetsNewEndpoint(t *testing.T) {
	h := newHarness(t, webService(), webSlice("a-"))
	h.start(Options{Targets: []TargetSpec{svcTarget(":80")}, Wait: 10 * time.Second})
	h.waitReady(0)
	type result struct {
		ans string
		err error
	}
	res := make(chan result, 1)
	go func() {
		ans, err := request(h.addr(0))
		res <- result{ans, err}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for h.f.targets[0].stats.waiting.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("connection is not waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.updateSlice(webSlice("a"))
	r := <-res
	if r.err != nil || r.ans != "a:hello" {
		t.Fatalf("waiting request = %q, %v; want a:hello", r.ans, r.err)
	}
}

// Nothing listening on the pod's port fails that connection only: the
// forward, and the pod's port-forward connection, keep serving.
func TestPodSideErrorClosesOnlyThatConnection(t *testing.T) {
	h := newHarness(t, webService(), webSlice("a"))
	h.start(Options{Targets: []TargetSpec{svcTarget(":80", ":broken")}, Wait: time.Second})
	h.waitReady(0, "a")
	good, broken := h.addr(0), h.addr(1)
	if got := requests(t, good, 2); got["a"] != 2 {
		t.Fatalf("answers = %v", got)
	}
	for i := 0; i < 3; i++ {
		if ans, err := request(broken); err == nil {
			t.Fatalf("request to the port with no listener answered %q", ans)
		}
	}
	if got := requests(t, good, 2); got["a"] != 2 {
		t.Fatalf("answers after the failure = %v", got)
	}
	if d := h.pf.dialsTo("a"); d != 1 {
		t.Fatalf("portforward upgrades to a = %d, want 1: a pod-side error must not cost the pod connection\nlogs:\n%s", d, h.logs)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.f.targets[0].stats.failed.Load() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("failed = %d, want 3\nlogs:\n%s", h.f.targets[0].stats.failed.Load(), h.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "connection failed on the pod side") || !strings.Contains(logs, "port 9999") {
		t.Fatalf("log does not name the failure:\n%s", logs)
	}
}

func TestPortforwardForbidden(t *testing.T) {
	h := newHarness(t, webService(), webSlice("a"))
	h.pf.refuse["a"] = http.StatusForbidden
	h.start(Options{Targets: []TargetSpec{svcTarget(":80")}, Wait: 5 * time.Second, ConfigSource: `context "x" in /k`})
	h.waitReady(0, "a")
	start := time.Now()
	if ans, err := request(h.addr(0)); err == nil {
		t.Fatalf("answered %q", ans)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("a credentials error must refuse at once, not wait")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(h.logs.String(), "were rejected with 403 Forbidden for create pods/portforward") {
		if time.Now().After(deadline) {
			t.Fatalf("log does not explain the 403:\n%s", h.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func labeledPod(name string, opts ...podOpt) *corev1.Pod {
	p := pod(name, opts...)
	p.Spec.Containers[0].Ports[0].Name = "http"
	return p
}

func TestDeploymentFollowsPods(t *testing.T) {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{Spec: labeledPod("template").Spec},
		},
	}
	other := pod("d")
	other.Labels = map[string]string{"app": "other"}
	h := newHarness(t, d, labeledPod("a"), labeledPod("b"), labeledPod("c", notReady), other)
	port, _ := ParsePort(":http")
	h.start(Options{Targets: []TargetSpec{{Kind: KindDeployment, Name: "web", Ports: []PortSpec{port}}}, Wait: 5 * time.Second})
	h.waitReady(0, "a", "b")
	if got := requests(t, h.addr(0), 10); got["a"] != 5 || got["b"] != 5 {
		t.Fatalf("answers = %v, want 5 from a and 5 from b", got)
	}
	// a is deleted: first terminating, then gone.
	a := labeledPod("a", deleting)
	if _, err := h.client.CoreV1().Pods("default").Update(context.Background(), a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitReady(0, "b")
	if err := h.client.CoreV1().Pods("default").Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := requests(t, h.addr(0), 6); got["b"] != 6 {
		t.Fatalf("answers = %v, want all from b", got)
	}
	// c becomes ready.
	if _, err := h.client.CoreV1().Pods("default").Update(context.Background(), labeledPod("c"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitReady(0, "b", "c")
	if got := requests(t, h.addr(0), 6); got["b"] != 3 || got["c"] != 3 {
		t.Fatalf("answers = %v, want 3 from b and 3 from c", got)
	}
}

func TestPodTargetFailsClearlyWhenPodDies(t *testing.T) {
	h := newHarness(t, pod("a"), pod("b"))
	port, _ := ParsePort(":8080")
	h.start(Options{Targets: []TargetSpec{{Kind: KindPod, Name: "a", Ports: []PortSpec{port}}}, Wait: 10 * time.Second})
	h.waitReady(0, "a")
	if got := requests(t, h.addr(0), 3); got["a"] != 3 {
		t.Fatalf("answers = %v", got)
	}
	if err := h.client.CoreV1().Pods("default").Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitReady(0)
	start := time.Now()
	if ans, err := request(h.addr(0)); err == nil {
		t.Fatalf("answered %q after the pod was deleted", ans)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("a deleted pod must be refused at once, not after --wait")
	}
	if logs := h.logs.String(); !strings.Contains(logs, "pod default/a no longer exists") || !strings.Contains(logs, "use deploy/NAME or svc/NAME") {
		t.Fatalf("log does not explain:\n%s", logs)
	}
}

func TestSeveralTargets(t *testing.T) {
	api := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "default"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 9000}}},
	}
	apiSlice := webSlice("c")
	apiSlice.Name, apiSlice.Labels["kubernetes.io/service-name"] = "api-1", "api"
	apiSlice.Ports = apiSlice.Ports[:1]
	apiSlice.Ports[0].Name = nil
	h := newHarness(t, webService(), webSlice("a"), api, apiSlice)
	web := svcTarget(":80")
	apiT := svcTarget(":9000")
	apiT.Name = "api"
	h.start(Options{Targets: []TargetSpec{web, apiT}, Wait: 5 * time.Second})
	h.waitReady(0, "a")
	h.waitReady(1, "c")
	if got := requests(t, h.addr(0), 2); got["a"] != 2 {
		t.Fatalf("web answers = %v", got)
	}
	if got := requests(t, h.addr(1), 2); got["c"] != 2 {
		t.Fatalf("api answers = %v", got)
	}
}

func TestCleanShutdown(t *testing.T) {
	base := runtime.NumGoroutine()
	// The subtest's cleanups close the API and pod stand-ins, so that only
	// what the forwarder left behind can remain when it returns.
	t.Run("run and stop", func(t *testing.T) {
		h := newHarness(t, webService(), webSlice("a", "b"))
		h.start(Options{Targets: []TargetSpec{svcTarget(":80", ":broken")}, Wait: 10 * time.Second})
		h.waitReady(0, "a", "b")
		requests(t, h.addr(0), 4)
		_, _ = request(h.addr(1))
		// One connection in the middle of an exchange, one waiting for an endpoint.
		open, err := net.Dial("tcp", h.addr(0))
		if err != nil {
			t.Fatal(err)
		}
		defer open.Close()
		deadline := time.Now().Add(5 * time.Second)
		for h.f.targets[0].stats.open.Load() != 1 {
			if time.Now().After(deadline) {
				t.Fatal("connection did not open")
			}
			time.Sleep(5 * time.Millisecond)
		}
		h.updateSlice(webSlice("a-", "b-"))
		h.waitReady(0)
		waiting, err := net.Dial("tcp", h.addr(0))
		if err != nil {
			t.Fatal(err)
		}
		defer waiting.Close()
		for h.f.targets[0].stats.waiting.Load() != 1 {
			if time.Now().After(deadline) {
				t.Fatal("connection is not waiting")
			}
			time.Sleep(5 * time.Millisecond)
		}
		h.stop()
		// Listeners are closed, and so are the client connections.
		if c, err := net.Dial("tcp", h.addr(0)); err == nil {
			c.Close()
			t.Fatal("listener still open after shutdown")
		}
		for _, c := range []net.Conn{open, waiting} {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Fatalf("client connection not closed by shutdown: %v", err)
			}
		}
		if !strings.Contains(h.logs.String(), "stopping") {
			t.Fatalf("no stop message:\n%s", h.logs)
		}
	})
	checkGoroutines(t, base)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestStartupErrors(t *testing.T) {
	gr := schema.GroupResource{Resource: "services"}
	tests := []struct {
		name    string
		objs    []k8sruntime.Object
		target  TargetSpec
		reactor k8stesting.ReactionFunc
		want    string
	}{
		{name: "unknown service", target: svcTarget(":80"),
			want: `services "web" not found in namespace "default"`},
		{name: "unknown deployment", target: TargetSpec{Kind: KindDeployment, Name: "web", Ports: svcTarget(":80").Ports},
			want: `deployments "web" not found in namespace "default"`},
		{name: "unknown pod", target: TargetSpec{Kind: KindPod, Name: "web", Ports: svcTarget(":80").Ports},
			want: `pods "web" not found in namespace "default"`},
		{name: "service lacks the port", objs: []k8sruntime.Object{webService()}, target: svcTarget("8080:8080"),
			want: `service default/web has no port "8080"; it has 80/TCP (http), 81/TCP (broken)`},
		{name: "pod lacks the named port", objs: []k8sruntime.Object{pod("web")}, target: TargetSpec{Kind: KindPod, Name: "web", Ports: svcTarget(":grpc").Ports},
			want: `pod default/web has no container port named "grpc"; it has 8080 (http)`},
		{name: "bad credentials", objs: []k8sruntime.Object{webService()}, target: svcTarget(":80"),
			reactor: func(k8stesting.Action) (bool, k8sruntime.Object, error) {
				return true, nil, apierrors.NewUnauthorized("Unauthorized")
			},
			want: "the API server rejected the kubeconfig's credentials"},
		{name: "forbidden", objs: []k8sruntime.Object{webService()}, target: svcTarget(":80"),
			reactor: func(k8stesting.Action) (bool, k8sruntime.Object, error) {
				return true, nil, apierrors.NewForbidden(gr, "web", errors.New(`User "bob" cannot get resource "services"`))
			},
			want: "were rejected with 403 Forbidden for get services"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.objs...)
			if tt.reactor != nil {
				h.client.PrependReactor("*", "*", tt.reactor)
			}
			opts := Options{Client: h.client, Config: &rest.Config{Host: h.pf.srv.URL}, Targets: []TargetSpec{tt.target},
				Console: NewConsole(h.logs, ConsoleConfig{}), retryBase: time.Millisecond}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := Run(ctx, opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run error = %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

// While the API server cannot be reached Run retries with back-off and says
// so, then carries on once it answers.
func TestUnreachableAPIServerIsRetried(t *testing.T) {
	h := newHarness(t, webService(), webSlice("a"))
	var calls atomic.Int64
	refused := errors.New(`Get "https://127.0.0.1:1/api/v1/namespaces/default/services/web": dial tcp 127.0.0.1:1: connect: connection refused`)
	h.client.PrependReactor("get", "services", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		if calls.Add(1) <= 3 {
			return true, nil, refused
		}
		return false, nil, nil
	})
	h.start(Options{Targets: []TargetSpec{svcTarget(":80")}, Wait: 5 * time.Second})
	h.waitReady(0, "a")
	if calls.Load() < 4 {
		t.Fatalf("service read %d times, want 3 failures and a success", calls.Load())
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "API server unreachable, retrying") || !strings.Contains(logs, "connection refused") {
		t.Fatalf("log does not say it retried:\n%s", logs)
	}
	if got := requests(t, h.addr(0), 2); got["a"] != 2 {
		t.Fatalf("answers = %v", got)
	}
}

func TestUnreachableAPIServerGivesUpOnlyOnCancel(t *testing.T) {
	h := newHarness(t, webService())
	h.client.PrependReactor("*", "*", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		return true, nil, errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts := Options{Client: h.client, Config: &rest.Config{Host: h.pf.srv.URL}, Targets: []TargetSpec{svcTarget(":80")},
		Console: NewConsole(h.logs, ConsoleConfig{}), StatusInterval: 20 * time.Millisecond, retryBase: time.Millisecond}
	go func() { done <- Run(ctx, opts) }()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Run gave up with %v while the API server was unreachable", err)
	default:
	}
	if logs := h.logs.String(); !strings.Contains(logs, "api=\"unreachable, retrying: dial tcp") {
		t.Fatalf("status does not say the API server is unreachable:\n%s", logs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
}

func TestListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, portStr, _ := net.SplitHostPort(busy.Addr().String())
	h := newHarness(t, webService(), webSlice("a"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = Run(ctx, Options{Client: h.client, Config: &rest.Config{Host: h.pf.srv.URL}, Targets: []TargetSpec{svcTarget(portStr + ":80")},
		Console: NewConsole(h.logs, ConsoleConfig{})})
	if err == nil || !strings.Contains(err.Error(), "listen on 127.0.0.1:"+portStr+" for svc/web") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Run = %v, want an address-in-use error", err)
	}
	if _, err := newForwarder(Options{Client: h.client, Config: &rest.Config{}, Targets: []TargetSpec{svcTarget(":80")}, Addresses: []string{"nowhere"}}); err == nil ||
		!strings.Contains(err.Error(), `invalid --address "nowhere"`) {
		t.Fatalf("bad address: %v", err)
	}
}

// TestRefusingPodIsSkippedWithoutFailure: a pod that is still listed as
// ready but has stopped listening (its process got SIGTERM a moment before
// the EndpointSlice says so, as in every rollout) costs no request: the
// connection moves to another pod with what the client already sent.
func TestRefusingPodIsSkippedWithoutFailure(t *testing.T) {
	h := newHarness(t, webService(), webSlice("a", "b"))
	h.start(Options{Targets: []TargetSpec{svcTarget(":80")}, Wait: time.Second})
	h.waitReady(0, "a", "b")
	addr := h.addr(0)
	if got := requests(t, addr, 4); got["a"] != 2 || got["b"] != 2 {
		t.Fatalf("answers before = %v", got)
	}
	h.backends["a"].close()
	got := requests(t, addr, 20)
	if got["b"] != 20 {
		t.Fatalf("answers with a refusing = %v, want all 20 from b\nlogs:\n%s", got, h.logs)
	}
	if f := h.f.targets[0].stats.failed.Load(); f != 0 {
		t.Fatalf("failed connections = %d, want 0\nlogs:\n%s", f, h.logs)
	}
}
