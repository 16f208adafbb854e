package nftables

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

const testTimeout = 20 * time.Second

var metaGet = metav1.GetOptions{}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// service builds a Service; mutate adjusts it.
func service(name, clusterIP string, ports []v1.ServicePort, mutate ...func(*v1.Service)) *v1.Service {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	svc.Spec = v1.ServiceSpec{ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Type: v1.ServiceTypeClusterIP, Ports: ports}
	for _, m := range mutate {
		m(svc)
	}
	return svc
}

func port(name string, proto v1.Protocol, p int32) v1.ServicePort {
	return v1.ServicePort{Name: name, Protocol: proto, Port: p}
}

func nodePortSvc(nodePort int32) func(*v1.Service) {
	return func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeNodePort
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = nodePort + int32(i)
		}
	}
}

func stickySvc(seconds int32) func(*v1.Service) {
	return func(s *v1.Service) {
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To(seconds)}}
	}
}

// endpoint is one slice endpoint; cond is "ready", "terminating" (serving
// and terminating) or "dead" (neither ready nor serving).
type endpoint struct {
	ip   string
	cond string
}

// slice builds an EndpointSlice of service with one port.
func slice(service, name, portName string, proto v1.Protocol, portNum int32, eps ...endpoint) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discovery.LabelServiceName: service}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To(portName), Protocol: ptr.To(proto), Port: ptr.To(portNum)}},
	}
	for _, ep := range eps {
		e := discovery.Endpoint{Addresses: []string{ep.ip}}
		switch ep.cond {
		case "terminating":
			e.Conditions = discovery.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
		case "dead":
			e.Conditions = discovery.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false)}
		default:
			e.Conditions = discovery.EndpointConditions{Ready: ptr.To(true)}
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	return s
}

func readyEPs(ips ...string) []endpoint {
	var out []endpoint
	for _, ip := range ips {
		out = append(out, endpoint{ip: ip, cond: "ready"})
	}
	return out
}

// apiObjects writes Services and EndpointSlices through a clientset.
type apiObjects struct {
	t      testing.TB
	ctx    context.Context
	client kubernetes.Interface
}

func (a apiObjects) createService(svc *v1.Service) {
	a.t.Helper()
	if _, err := a.client.CoreV1().Services(svc.Namespace).Create(a.ctx, svc, metav1.CreateOptions{}); err != nil {
		a.t.Fatalf("create service %s: %v", svc.Name, err)
	}
}

func (a apiObjects) updateService(svc *v1.Service) {
	a.t.Helper()
	if _, err := a.client.CoreV1().Services(svc.Namespace).Update(a.ctx, svc, metav1.UpdateOptions{}); err != nil {
		a.t.Fatalf("update service %s: %v", svc.Name, err)
	}
}

func (a apiObjects) deleteService(name string) {
	a.t.Helper()
	if err := a.client.CoreV1().Services("default").Delete(a.ctx, name, metav1.DeleteOptions{}); err != nil {
		a.t.Fatalf("delete service %s: %v", name, err)
	}
}

func (a apiObjects) applySlice(s *discovery.EndpointSlice) {
	a.t.Helper()
	c := a.client.DiscoveryV1().EndpointSlices(s.Namespace)
	if _, err := c.Create(a.ctx, s, metav1.CreateOptions{}); err == nil {
		return
	}
	if _, err := c.Update(a.ctx, s, metav1.UpdateOptions{}); err != nil {
		a.t.Fatalf("apply slice %s: %v", s.Name, err)
	}
}

func (a apiObjects) deleteSlice(name string) {
	a.t.Helper()
	if err := a.client.DiscoveryV1().EndpointSlices("default").Delete(a.ctx, name, metav1.DeleteOptions{}); err != nil {
		a.t.Fatalf("delete slice %s: %v", name, err)
	}
}

// waitStatus waits until cond holds for p's status.
func waitStatus(t testing.TB, p *Proxier, what string, cond func(Status) bool) Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var last Status
	err := p.WaitFor(ctx, func(s Status) bool { last = s; return cond(s) })
	if err != nil {
		t.Fatalf("waiting for %s: %v; status %+v", what, err, last)
	}
	return last
}

// hasEndpoints is a status condition: key's DNAT targets are exactly want.
func hasEndpoints(key string, want ...string) func(Status) bool {
	return func(s Status) bool {
		ps, ok := s.Ports[key]
		if !ok {
			return false
		}
		if len(want) == 0 {
			return ps.Rejecting
		}
		return fmt.Sprint(ps.Endpoints) == fmt.Sprint(want)
	}
}
