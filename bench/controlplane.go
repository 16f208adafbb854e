package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-project/berth/bench/cluster"
	"github.com/berth-project/berth/bench/load"
	"github.com/berth-project/berth/bench/proc"
	"github.com/berth-project/berth/bench/report"
)

// controlPlane measures create and list latency through client-go, with a
// standalone etcd (the storage floor) as the peer.
func (r *runner) controlPlane(ctx context.Context, sec *report.Section) error {
	n, lists := r.sz.cpObjects, r.sz.cpLists
	sec.Describe("One client-go client (protobuf, QPS limit lifted) creates %d selector-less ClusterIP Services one after another, each timed from the call to its answer (so each includes the ClusterIP allocation, which is one more etcd write), then lists all of them %d times. The peer is a standalone etcd (the same etcd module berth embeds, as a separate process on loopback, default fsync) doing the same number of single-key puts of a JSON-encoded Service of the same shape and ranges over their prefix: the storage floor under berth's API.", n, lists)
	s, err := r.startServer(ctx, "controlplane")
	if err != nil {
		return err
	}
	svcs := s.Client.CoreV1().Services(cluster.Namespace)
	mk := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": "controlplane"}},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{cluster.ServicePort("http", 80, 8080)}}}
	}
	for i := 0; i < 10; i++ { // warm-up: connections, caches
		if _, err := svcs.Create(ctx, mk(fmt.Sprintf("warm-%d", i)), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("warm-up create: %w", err)
		}
	}
	create := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t := time.Now()
		if _, err := svcs.Create(ctx, mk(fmt.Sprintf("cp-%d", i)), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create service %d: %w", i, err)
		}
		create = append(create, time.Since(t))
	}
	list := make([]time.Duration, 0, lists)
	items := 0
	for i := 0; i < lists; i++ {
		t := time.Now()
		l, err := svcs.List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		list = append(list, time.Since(t))
		items = len(l.Items)
	}
	mem, _ := proc.ReadMem(s.Pid())

	// The peer: the same work on a bare etcd.
	e, err := r.env.NewEtcd()
	if err != nil {
		return err
	}
	defer e.Close()
	if _, err := e.Start(ctx); err != nil {
		return err
	}
	val, _ := json.Marshal(mk("cp-0000"))
	var put, rng []time.Duration
	for i := 0; i < 10; i++ {
		if _, err := e.Client.Put(ctx, fmt.Sprintf("/warm/%d", i), string(val)); err != nil {
			return fmt.Errorf("etcd warm-up put: %w", err)
		}
	}
	for i := 0; i < n; i++ {
		t := time.Now()
		if _, err := e.Client.Put(ctx, fmt.Sprintf("/registry/services/default/cp-%d", i), string(val)); err != nil {
			return fmt.Errorf("etcd put: %w", err)
		}
		put = append(put, time.Since(t))
	}
	for i := 0; i < lists; i++ {
		t := time.Now()
		if _, err := e.Client.Get(ctx, "/registry/services/default/", clientv3.WithPrefix()); err != nil {
			return fmt.Errorf("etcd range: %w", err)
		}
		rng = append(rng, time.Since(t))
	}

	cs, ps, ls, rs := load.Summarize(create), load.Summarize(put), load.Summarize(list), load.Summarize(rng)
	sec.Add("create latency p50", report.Millis(cs.P50)).WithPeer("etcd put", report.Millis(ps.P50))
	sec.Add("create latency p99", report.Millis(cs.P99)).WithPeer("etcd put", report.Millis(ps.P99))
	sec.Add(fmt.Sprintf("list latency p50 (%d Services)", items), report.Millis(ls.P50)).WithPeer("etcd range", report.Millis(rs.P50))
	sec.Add(fmt.Sprintf("list latency p99 (%d Services)", items), report.Millis(ls.P99)).WithPeer("etcd range", report.Millis(rs.P99))
	sec.Add("create throughput (sequential)", report.Count(float64(n)/sumDur(create).Seconds())).WithPeer("etcd put", report.Count(float64(n)/sumDur(put).Seconds())).Note = "objects per second, one client, one request at a time"
	sec.Notef("berth server after the creates: %s.", mem)
	if err := report.LatencyChart(filepath.Join(r.out, r.date+"-controlplane-latency.png"), []report.Panel{
		{Title: "create (berth) vs put (etcd)", Series: []report.Series{{Name: "berth create", Samples: create}, {Name: "etcd put", Samples: put}}},
	}); err != nil {
		sec.Notef("chart: %v", err)
	} else {
		sec.Images = append(sec.Images, report.Image{Path: r.date + "-controlplane-latency.png", Alt: "create latency distribution"})
	}
	return nil
}

func sumDur(d []time.Duration) time.Duration {
	var s time.Duration
	for _, v := range d {
		s += v
	}
	return s
}
