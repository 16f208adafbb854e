package main

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berth-project/berth/bench/cluster"
	"github.com/berth-project/berth/bench/report"
)

// deployments times `kubectl rollout restart` of a Deployment and counts
// failed requests through its Service meanwhile.
func (r *runner) deployments(ctx context.Context, sec *report.Section) error {
	n := r.sz.deployReplicas
	sec.Describe("Deployment web has %d replicas of agnhost netexec (HTTP readinessProbe, periodSeconds 1; the default rolling update, 25%% max surge and unavailable), behind Service web. Under load (the two request streams, %d requests/s each, through the ClusterIP) the bench runs `kubectl rollout restart deployment/web` and then `kubectl rollout status deployment/web`; rollout time is from the restart command to status returning.", n, r.sz.loadRate)
	s, err := r.startServer(ctx, "deployments")
	if err != nil {
		return err
	}
	labels := map[string]string{"app": "web"}
	pod := cluster.AgnhostPod("unused", labels, 3000, cluster.HTTPProbe)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: cluster.Namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(n)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod.Spec},
		},
	}
	if _, err := s.Client.AppsV1().Deployments(cluster.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create deployment: %w", err)
	}
	svc, err := cluster.CreateService(ctx, s.Client, "web", labels, cluster.ServicePort("http", 80, 3000))
	if err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := s.Kubectl(ctx, "rollout", "status", "deployment/web", "--timeout=3m"); err != nil {
		return fmt.Errorf("initial rollout: %w", err)
	}
	first := time.Since(t0)
	addr := svc.Spec.ClusterIP + ":80"
	if err := waitListening(ctx, addr, 30*time.Second); err != nil {
		return err
	}
	sleep(ctx, 2*time.Second)
	lr := startLoad(ctx, "http://"+addr+"/hostname", r.sz.loadRate, 6*time.Minute)
	sleep(ctx, time.Second)
	t1 := time.Now()
	if _, err := s.Kubectl(ctx, "rollout", "restart", "deployment/web"); err != nil {
		lr.stop()
		return err
	}
	_, err = s.Kubectl(ctx, "rollout", "status", "deployment/web", "--timeout=5m")
	rollout := time.Since(t1)
	sleep(ctx, 2*time.Second)
	res, lerr := lr.stop()
	if err != nil {
		return fmt.Errorf("rollout status: %w", err)
	}
	if lerr != nil {
		return lerr
	}
	sec.Add(fmt.Sprintf("rollout restart of %d replicas (restart → status done)", n), report.Millis(rollout))
	sec.Add(fmt.Sprintf("first rollout of %d replicas (create → status done)", n), report.Millis(first))
	lossRows(sec, "failed requests during the rollout", res, "deployments")
	sec.Notef("Answers by pod: %s.", hostsString(res))
	return nil
}
