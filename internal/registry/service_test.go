package registry_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-project/berth/internal/alloc"
	"github.com/berth-project/berth/internal/registry"
	"github.com/berth-project/berth/internal/storage"
)

func clusterIP(ip string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.ClusterIP = ip }
}

func nodePort(ports ...int32) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports = nil
		for i, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "p" + strconv.Itoa(i), Port: int32(80 + i), NodePort: p})
		}
	}
}

func (e *env) used(a *alloc.Allocator) map[string]string {
	e.t.Helper()
	u, err := a.Used(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func TestServiceClusterIPAllocation(t *testing.T) {
	e := newEnv(t)
	s := e.createService("default", newService("auto"))
	if _, ok := e.ipRange.Offset(s.Spec.ClusterIP); !ok {
		t.Fatalf("allocated %q, outside %s", s.Spec.ClusterIP, e.ipRange)
	}
	if len(s.Spec.ClusterIPs) != 1 || s.Spec.ClusterIPs[0] != s.Spec.ClusterIP {
		t.Errorf("clusterIPs %v, clusterIP %s", s.Spec.ClusterIPs, s.Spec.ClusterIP)
	}
	if s.Spec.Type != corev1.ServiceTypeClusterIP || s.Spec.IPFamilies[0] != corev1.IPv4Protocol || *s.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack ||
		s.Spec.SessionAffinity != corev1.ServiceAffinityNone || s.Spec.Ports[0].TargetPort.IntValue() != 80 || s.Spec.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("defaults missing: %+v", s.Spec)
	}
	if owner := e.used(e.clusterIPs)[s.Spec.ClusterIP]; owner != "default/auto/"+string(s.UID) {
		t.Errorf("allocation of %s is owned by %q", s.Spec.ClusterIP, owner)
	}

	req := e.createService("default", newService("requested", clusterIP("10.96.0.50")))
	if req.Spec.ClusterIP != "10.96.0.50" || req.Spec.ClusterIPs[0] != "10.96.0.50" {
		t.Fatalf("requested 10.96.0.50, got %s %v", req.Spec.ClusterIP, req.Spec.ClusterIPs)
	}

	_, err := e.services.Create(e.ctx, "default", newService("taken", clusterIP("10.96.0.50")), registry.CreateOptions{})
	st := wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "provided IP is already allocated")
	if !hasCause(st, "spec.clusterIPs", "failed to allocate IP 10.96.0.50: provided IP is already allocated") {
		t.Errorf("causes %+v", st.Details.Causes)
	}
	for _, ip := range []string{"10.97.0.5", "10.96.0.0", "10.96.0.1", "10.96.0.255"} {
		_, err = e.services.Create(e.ctx, "default", newService("outside", clusterIP(ip)), registry.CreateOptions{})
		st = wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "provided IP is not in the valid range")
		if !hasCause(st, "spec.clusterIPs", "The range of valid IPs is 10.96.0.0/24") {
			t.Errorf("%s: causes %+v", ip, st.Details.Causes)
		}
	}
	_, err = e.services.Create(e.ctx, "default", newService("garbage", clusterIP("not-an-ip")), registry.CreateOptions{})
	wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "must be a valid IP address")

	headless := e.createService("default", newService("headless", clusterIP(corev1.ClusterIPNone)))
	if headless.Spec.ClusterIP != "None" || len(headless.Spec.ClusterIPs) != 1 || headless.Spec.ClusterIPs[0] != "None" {
		t.Errorf("headless: %s %v", headless.Spec.ClusterIP, headless.Spec.ClusterIPs)
	}
	ext := e.createService("default", newService("ext", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeExternalName
		s.Spec.ExternalName = "example.com"
		s.Spec.Selector = nil
	}))
	if ext.Spec.ClusterIP != "" {
		t.Errorf("ExternalName service got cluster IP %q", ext.Spec.ClusterIP)
	}
	if n := len(e.used(e.clusterIPs)); n != 2 {
		t.Errorf("%d cluster IPs held, want 2 (auto, requested): %v", n, e.used(e.clusterIPs))
	}

	// Dry run allocates nothing.
	before := len(e.used(e.clusterIPs))
	if _, err := e.services.Create(e.ctx, "default", newService("dry"), registry.CreateOptions{DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if after := len(e.used(e.clusterIPs)); after != before {
		t.Errorf("dry-run create changed allocations %d→%d", before, after)
	}
}

func TestServiceNodePortAllocation(t *testing.T) {
	e := newEnv(t)
	s := e.createService("default", newService("auto", nodePort(0, 0)))
	ports := map[int32]bool{}
	for _, p := range s.Spec.Ports {
		if p.NodePort < 30000 || p.NodePort > 30099 {
			t.Fatalf("node port %d outside 30000-30099", p.NodePort)
		}
		ports[p.NodePort] = true
	}
	if len(ports) != 2 {
		t.Fatalf("node ports %v are not distinct", s.Spec.Ports)
	}
	if s.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster {
		t.Errorf("externalTrafficPolicy %q", s.Spec.ExternalTrafficPolicy)
	}
	req := e.createService("default", newService("requested", nodePort(30080)))
	if req.Spec.Ports[0].NodePort != 30080 {
		t.Fatalf("requested 30080, got %d", req.Spec.Ports[0].NodePort)
	}
	_, err := e.services.Create(e.ctx, "default", newService("taken", nodePort(30080)), registry.CreateOptions{})
	st := wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "provided port is already allocated")
	if !hasCause(st, "spec.ports[0].nodePort", "provided port is already allocated") {
		t.Errorf("causes %+v", st.Details.Causes)
	}
	_, err = e.services.Create(e.ctx, "default", newService("outside", nodePort(0, 40000)), registry.CreateOptions{})
	st = wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "provided port is not in the valid range")
	if !hasCause(st, "spec.ports[1].nodePort", "The range of valid ports is 30000-30099") {
		t.Errorf("causes %+v", st.Details.Causes)
	}
	// The failed creates gave back what they had claimed on the way: the
	// cluster IPs and the auto-assigned port of "outside".
	if n := len(e.used(e.clusterIPs)); n != 2 {
		t.Errorf("%d cluster IPs held after failed creates, want 2", n)
	}
	if n := len(e.used(e.nodePorts)); n != 3 {
		t.Errorf("%d node ports held after failed creates, want 3: %v", n, e.used(e.nodePorts))
	}
	// The same port twice in one service is refused by validation.
	_, err = e.services.Create(e.ctx, "default", newService("twice", nodePort(30090, 30090)), registry.CreateOptions{})
	wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "Duplicate value")
	// A node port on a ClusterIP service is refused.
	_, err = e.services.Create(e.ctx, "default", newService("cip", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30091 }), registry.CreateOptions{})
	wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "may not be used when `type` is 'ClusterIP'")

	lb := e.createService("default", newService("lb", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer }))
	if lb.Spec.Ports[0].NodePort == 0 || lb.Spec.AllocateLoadBalancerNodePorts == nil || !*lb.Spec.AllocateLoadBalancerNodePorts {
		t.Errorf("LoadBalancer service: node port %d allocate %v", lb.Spec.Ports[0].NodePort, lb.Spec.AllocateLoadBalancerNodePorts)
	}
}

func TestServiceDeleteReleasesAllocations(t *testing.T) {
	e := newEnv(t)
	s := e.createService("default", newService("web", clusterIP("10.96.0.60"), nodePort(30060, 0)))
	auto := s.Spec.Ports[1].NodePort
	if _, gone, err := e.services.Delete(e.ctx, "default", "web", nil, false); err != nil || !gone {
		t.Fatalf("delete: gone=%v err=%v", gone, err)
	}
	if u := e.used(e.clusterIPs); len(u) != 0 {
		t.Errorf("cluster IPs still held after delete: %v", u)
	}
	if u := e.used(e.nodePorts); len(u) != 0 {
		t.Errorf("node ports still held after delete: %v", u)
	}
	// Everything it held can be asked for again.
	again := e.createService("default", newService("again", clusterIP("10.96.0.60"), nodePort(30060, auto)))
	if again.Spec.ClusterIP != "10.96.0.60" || again.Spec.Ports[0].NodePort != 30060 || again.Spec.Ports[1].NodePort != auto {
		t.Fatalf("re-created service %s %v", again.Spec.ClusterIP, again.Spec.Ports)
	}
	// Deleting a namespace's worth via DeleteCollection releases too.
	if _, err := e.services.DeleteCollection(e.ctx, "default", registry.ListOptions{}, nil, false); err != nil {
		t.Fatal(err)
	}
	if u := e.used(e.clusterIPs); len(u) != 0 {
		t.Errorf("cluster IPs held after delete collection: %v", u)
	}
}

func TestServiceGenerateNameCollisionDoesNotLeak(t *testing.T) {
	hook := &createHook{match: "/core/services/", intercept: func(n int, _ string) error {
		if n == 0 {
			return storage.ErrExists
		}
		return nil
	}}
	e := newEnv(t, withStorage(func(s storage.Interface) storage.Interface { hook.Interface = s; return hook }))
	s := newService("")
	s.GenerateName = "gen-"
	s.Spec.Selector = map[string]string{"app": "gen"}
	nodePort(0)(s)
	s = e.createService("default", s)
	if n := len(hook.keys()); n != 2 {
		t.Fatalf("%d create attempts, want 2", n)
	}
	if owner := e.used(e.clusterIPs)[s.Spec.ClusterIP]; owner != "default/"+s.Name+"/"+string(s.UID) {
		t.Errorf("cluster IP %s owned by %q, the service is %s", s.Spec.ClusterIP, owner, s.Name)
	}
	if _, _, err := e.services.Delete(e.ctx, "default", s.Name, nil, false); err != nil {
		t.Fatal(err)
	}
	if u := e.used(e.clusterIPs); len(u) != 0 {
		t.Errorf("cluster IPs leaked after delete: %v", u)
	}
	if u := e.used(e.nodePorts); len(u) != 0 {
		t.Errorf("node ports leaked after delete: %v", u)
	}
}

func TestServiceTypeChangeReleasesNodePorts(t *testing.T) {
	e := newEnv(t)
	s := e.createService("default", newService("web", nodePort(30070)))
	// kubectl edit: the type changes, the nodePort field is still there.
	s.Spec.Type = corev1.ServiceTypeClusterIP
	s.Spec.ExternalTrafficPolicy = ""
	obj, _, err := e.services.Update(e.ctx, "default", "web", s, registry.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	up := obj.(*corev1.Service)
	if up.Spec.Ports[0].NodePort != 0 {
		t.Fatalf("ClusterIP service kept node port %d", up.Spec.Ports[0].NodePort)
	}
	if u := e.used(e.nodePorts); len(u) != 0 {
		t.Fatalf("node ports held after the type change: %v", u)
	}
	e.createService("default", newService("next", nodePort(30070)))

	// Back to NodePort allocates a fresh port; adding a port keeps the old.
	up.Spec.Type = corev1.ServiceTypeNodePort
	obj, _, err = e.services.Update(e.ctx, "default", "web", up, registry.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	np := obj.(*corev1.Service)
	first := np.Spec.Ports[0].NodePort
	if first == 0 || first == 30070 {
		t.Fatalf("node port after switching back: %d", first)
	}
	np.Spec.Ports = append(np.Spec.Ports, corev1.ServicePort{Name: "extra", Port: 443})
	obj, _, err = e.services.Update(e.ctx, "default", "web", np, registry.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	np = obj.(*corev1.Service)
	if np.Spec.Ports[0].NodePort != first || np.Spec.Ports[1].NodePort == 0 {
		t.Fatalf("ports after adding one: %v", np.Spec.Ports)
	}
	// A replace that leaves the node ports out keeps them (kubectl replace).
	replace := newService("web", nodePort(0, 0))
	replace.Spec.Ports[0].Port, replace.Spec.Ports[0].Name = 80, "p0"
	replace.Spec.Ports[1].Port, replace.Spec.Ports[1].Name = 443, "extra"
	obj, _, err = e.services.Update(e.ctx, "default", "web", replace, registry.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rp := obj.(*corev1.Service)
	if rp.Spec.Ports[0].NodePort != first || rp.Spec.Ports[1].NodePort != np.Spec.Ports[1].NodePort || rp.Spec.ClusterIP != np.Spec.ClusterIP {
		t.Fatalf("replace without allocated fields: %s %v", rp.Spec.ClusterIP, rp.Spec.Ports)
	}
	// Changing a node port frees the old one. The new one is a port nothing
	// holds: the others were picked at random from the test's range of 100.
	held, free := e.used(e.nodePorts), int32(30071)
	for {
		if _, ok := held[strconv.Itoa(int(free))]; !ok {
			break
		}
		free++
	}
	rp.Spec.Ports[1].NodePort = free
	if _, _, err := e.services.Update(e.ctx, "default", "web", rp, registry.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	u := e.used(e.nodePorts)
	if _, held := u[strconv.Itoa(int(np.Spec.Ports[1].NodePort))]; held {
		t.Errorf("old node port %d still held: %v", np.Spec.Ports[1].NodePort, u)
	}
	if len(u) != 3 { // next's 30070, web's first and free
		t.Errorf("node ports held: %v", u)
	}
}

func TestServiceClusterIPImmutable(t *testing.T) {
	e := newEnv(t)
	s := e.createService("default", newService("web"))
	old := s.Spec.ClusterIP
	s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.96.0.77", []string{"10.96.0.77"}
	_, _, err := e.services.Update(e.ctx, "default", "web", s, registry.UpdateOptions{})
	st := wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "may not change once set")
	if !hasCause(st, "spec.clusterIPs[0]", "may not change once set") {
		t.Errorf("causes %+v", st.Details.Causes)
	}
	s.Spec.ClusterIP, s.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	_, _, err = e.services.Update(e.ctx, "default", "web", s, registry.UpdateOptions{})
	wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "may not change once set")
	if u := e.used(e.clusterIPs); len(u) != 1 || u[old] == "" {
		t.Errorf("allocations after refused updates: %v (service holds %s)", u, old)
	}
	// Leaving clusterIP out of an update keeps it.
	cur, _ := e.services.Get(e.ctx, "default", "web")
	c := cur.(*corev1.Service).DeepCopy()
	c.Spec.ClusterIP, c.Spec.ClusterIPs = "", nil
	c.Labels = map[string]string{"l": "v"}
	obj, _, err := e.services.Update(e.ctx, "default", "web", c, registry.UpdateOptions{})
	if err != nil || obj.(*corev1.Service).Spec.ClusterIP != old {
		t.Fatalf("update without clusterIP: %v %v", obj, err)
	}
	// Turning into an ExternalName service gives the IP back.
	x := obj.(*corev1.Service).DeepCopy()
	x.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}
	if _, _, err := e.services.Update(e.ctx, "default", "web", x, registry.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if u := e.used(e.clusterIPs); len(u) != 0 {
		t.Errorf("cluster IP held by an ExternalName service: %v", u)
	}
}

func TestServiceStatusUpdate(t *testing.T) {
	e := newEnv(t)
	s := e.createService("default", newService("lb", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer }))
	s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
	s.Spec.Type = corev1.ServiceTypeClusterIP // ignored by a status update
	obj, _, err := e.services.Update(e.ctx, "default", "lb", s, registry.UpdateOptions{Subresource: "status"})
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*corev1.Service)
	if got.Spec.Type != corev1.ServiceTypeLoadBalancer || got.Status.LoadBalancer.Ingress[0].IP != "192.0.2.10" {
		t.Fatalf("status update: type %s status %+v", got.Spec.Type, got.Status)
	}
	got.Status.LoadBalancer.Ingress[0].IP = "not-an-ip"
	_, _, err = e.services.Update(e.ctx, "default", "lb", got, registry.UpdateOptions{Subresource: "status"})
	wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "must be a valid IP address")
	// A user's create cannot set status.
	withStatus := newService("sneaky")
	withStatus.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.11"}}
	if out := e.createService("default", withStatus); len(out.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("create kept status %+v", out.Status)
	}
}

func TestServiceNameMustBeDNSLabel(t *testing.T) {
	e := newEnv(t)
	_, err := e.services.Create(e.ctx, "default", newService("has.dots"), registry.CreateOptions{})
	st := wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "is invalid")
	if !hasCause(st, "metadata.name", "DNS-1035 label") {
		t.Errorf("causes %+v", st.Details.Causes)
	}
	if !apierrors.IsInvalid(err) || len(e.used(e.clusterIPs)) != 0 {
		t.Errorf("an invalid service allocated: %v", e.used(e.clusterIPs))
	}
	if !strings.Contains(err.Error(), "has.dots") {
		t.Errorf("error does not name the service: %v", err)
	}
}
