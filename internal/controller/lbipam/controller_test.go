package lbipam

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

const ns = "default"

type fixture struct {
	t      *testing.T
	client *fake.Clientset
}

// start runs a controller on pool over a fake API holding objs.
func start(t *testing.T, pool string, workers int, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(Config{Client: client, Pool: mustPool(t, pool), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, factory)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, workers) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		factory.Shutdown()
	})
	return &fixture{t: t, client: client}
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func lbService(name string, age int, mutate ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Minute))},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeLoadBalancer,
			Selector:   map[string]string{"app": name},
			ClusterIP:  "10.96.0.10",
			IPFamilies: []v1.IPFamily{v1.IPv4Protocol},
			Ports:      []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func withStatus(ip string) func(*v1.Service) {
	return func(s *v1.Service) {
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: ip}}
	}
}

func requesting(ip string) func(*v1.Service) {
	return func(s *v1.Service) { s.Spec.LoadBalancerIP = ip }
}

func (f *fixture) create(svc *v1.Service) {
	f.t.Helper()
	if _, err := f.client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) delete(name string) {
	f.t.Helper()
	if err := f.client.CoreV1().Services(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// ip returns the ingress IPs of a Service, comma-joined ("" for pending).
func (f *fixture) ip(name string) string {
	f.t.Helper()
	svc, err := f.client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return "<" + err.Error() + ">"
	}
	var ips []string
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		ips = append(ips, ing.IP)
	}
	return strings.Join(ips, ",")
}

// hasEvent reports whether an Event with reason was recorded for Service name.
func (f *fixture) hasEvent(name, reason string) bool {
	list, err := f.client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return false
	}
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name && e.Reason == reason {
			return true
		}
	}
	return false
}

func (f *fixture) eventually(what string, cond func() bool) {
	f.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 15*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		f.t.Fatalf("timed out waiting for %s", what)
	}
}

// statusUpdates counts UpdateStatus calls per Service.
func (f *fixture) statusUpdates() map[string]int {
	n := map[string]int{}
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "update" && a.GetResource().Resource == "services" && a.GetSubresource() == "status" {
			n[a.(k8stesting.UpdateAction).GetObject().(*v1.Service).Name]++
		}
	}
	return n
}

func TestAllocateAndRelease(t *testing.T) {
	f := start(t, "192.0.2.10-192.0.2.11", 1)
	f.create(lbService("a", 0))
	f.create(&v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: ns}, Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP}})
	f.create(lbService("other-class", 0, func(s *v1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/other") }))
	f.eventually("a gets the first address", func() bool { return f.ip("a") == "192.0.2.10" })
	f.eventually("IPAllocated event", func() bool { return f.hasEvent("a", ReasonIPAllocated) })

	svc, err := f.client.CoreV1().Services(ns).Get(context.Background(), "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := svc.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != v1.LoadBalancerIPModeVIP {
		t.Errorf("ipMode = %v, want VIP", m)
	}

	// a stops being a LoadBalancer: its status is cleared and the address freed.
	svc.Spec.Type = v1.ServiceTypeClusterIP
	if _, err := f.client.CoreV1().Services(ns).Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.eventually("a's status cleared", func() bool { return f.ip("a") == "" })
	f.create(lbService("b", 1))
	f.eventually("b reuses a's address", func() bool { return f.ip("b") == "192.0.2.10" })

	if got := f.ip("plain") + f.ip("other-class"); got != "" {
		t.Errorf("services that are not ours got addresses: %q", got)
	}
	if n := f.statusUpdates(); n["plain"]+n["other-class"] != 0 {
		t.Errorf("status written for services that are not ours: %v", n)
	}
}

func TestRequestedIP(t *testing.T) {
	f := start(t, "192.0.2.10-192.0.2.20", 1)
	f.create(lbService("want15", 0, requesting("192.0.2.15")))
	f.eventually("requested address", func() bool { return f.ip("want15") == "192.0.2.15" })

	f.create(lbService("outside", 0, requesting("198.51.100.1")))
	f.create(lbService("bad", 0, requesting("not-an-ip")))
	f.create(lbService("taken", 0, requesting("192.0.2.15")))
	for _, name := range []string{"outside", "bad", "taken"} {
		f.eventually(name+" AllocationFailed", func() bool { return f.hasEvent(name, ReasonAllocationFailed) })
		if got := f.ip(name); got != "" {
			t.Errorf("%s got %q, want pending", name, got)
		}
	}
	// Once the holder goes, the Service waiting for that very address gets it.
	f.delete("want15")
	f.eventually("taken gets 192.0.2.15 after release", func() bool { return f.ip("taken") == "192.0.2.15" })
}

func TestExhaustedPool(t *testing.T) {
	f := start(t, "192.0.2.10/32", 1)
	f.create(lbService("first", 0))
	f.eventually("first gets the only address", func() bool { return f.ip("first") == "192.0.2.10" })
	f.create(lbService("second", 1))
	f.eventually("AllocationFailed for second", func() bool { return f.hasEvent("second", ReasonAllocationFailed) })
	if got := f.ip("second"); got != "" {
		t.Fatalf("second got %q from an exhausted pool", got)
	}
	f.delete("first")
	f.eventually("second gets the freed address", func() bool { return f.ip("second") == "192.0.2.10" })
}

// TestRestartRebuild starts the controller over Services that already show
// addresses: they keep them, nobody else gets them, and of two Services
// showing the same one the older keeps it.
func TestRestartRebuild(t *testing.T) {
	f := start(t, "192.0.2.10-192.0.2.14", 2,
		lbService("new", 0), // oldest, but shows no address: must not take one that is shown
		lbService("a", 1, withStatus("192.0.2.10")),
		lbService("b", 2, withStatus("192.0.2.11")),
		lbService("older", 3, withStatus("192.0.2.12")),
		lbService("younger", 4, withStatus("192.0.2.12")),
	)
	// younger shows an address from the start, so wait for all to differ.
	f.eventually("everyone has an address of their own", func() bool {
		seen := map[string]bool{}
		for _, n := range []string{"new", "a", "b", "older", "younger"} {
			ip := f.ip(n)
			if ip == "" || seen[ip] {
				return false
			}
			seen[ip] = true
		}
		return true
	})
	for name, want := range map[string]string{"a": "192.0.2.10", "b": "192.0.2.11", "older": "192.0.2.12"} {
		if got := f.ip(name); got != want {
			t.Errorf("%s = %s, want it to keep %s", name, got, want)
		}
	}
	got := []string{f.ip("new"), f.ip("younger")}
	sort.Strings(got)
	if got[0] != "192.0.2.13" || got[1] != "192.0.2.14" {
		t.Errorf("new, younger got %v, want 192.0.2.13 and .14", got)
	}
	if n := f.statusUpdates(); n["a"]+n["b"]+n["older"] != 0 {
		t.Errorf("status rewritten for services that kept their address: %v", n)
	}
}

// TestRace syncs many Services at once on several workers.
func TestRace(t *testing.T) {
	const n = 30
	var objs []runtime.Object
	for i := range n {
		objs = append(objs, lbService(fmt.Sprintf("svc-%02d", i), i))
	}
	// Two Services ask for the same address: exactly one may get it.
	objs = append(objs, lbService("rival-1", 0, requesting("192.0.2.200")), lbService("rival-2", 0, requesting("192.0.2.200")))
	f := start(t, "192.0.2.1-192.0.2.30,192.0.2.200/32", 4, objs...)

	f.eventually("all services have an address", func() bool {
		for i := range n {
			if f.ip(fmt.Sprintf("svc-%02d", i)) == "" {
				return false
			}
		}
		return f.ip("rival-1") != "" || f.ip("rival-2") != ""
	})
	seen := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("svc-%02d", i)
		ip := f.ip(name)
		if other, dup := seen[ip]; dup {
			t.Errorf("%s and %s both have %s", other, name, ip)
		}
		seen[ip] = name
	}
	r1, r2 := f.ip("rival-1"), f.ip("rival-2")
	if (r1 == "192.0.2.200") == (r2 == "192.0.2.200") {
		t.Errorf("rivals got %q and %q, want exactly one with 192.0.2.200", r1, r2)
	}
	loser := "rival-1"
	if r1 == "192.0.2.200" {
		loser = "rival-2"
	}
	f.eventually("AllocationFailed for the losing rival", func() bool { return f.hasEvent(loser, ReasonAllocationFailed) })
}

func TestNewValidates(t *testing.T) {
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	pool := mustPool(t, "192.0.2.1/32")
	for name, cfg := range map[string]Config{
		"nil client": {Pool: pool},
		"nil pool":   {Client: client},
		"empty pool": {Client: client, Pool: &Pool{}},
	} {
		if _, err := New(cfg, factory); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := New(Config{Client: client, Pool: pool}, nil); err == nil {
		t.Error("nil factory: New succeeded")
	}
}
