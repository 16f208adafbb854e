package deployment

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/berth-project/berth/internal/controller/replicaset"
)

const testNS = "default"

// cluster runs the Deployment and ReplicaSet controllers on one simulated
// API server, with a node agent loop that makes new Pods ready and removes
// terminating ones, checking an invariant before each of its steps.
type cluster struct {
	t   *testing.T
	sim *apiSim
	ctx context.Context

	mu        sync.Mutex
	violation string // first broken invariant, protected by mu
}

func startCluster(t *testing.T, invariant func(pods []v1.Pod) string) *cluster {
	t.Helper()
	sim := newAPISim()
	factory := informers.NewSharedInformerFactory(sim.client, 0)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	dc, err := New(Config{Client: sim.client, Logger: logger}, factory)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := replicaset.New(replicaset.Config{Client: sim.client, Logger: logger}, factory)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{t: t, sim: sim, ctx: ctx}
	factory.Start(ctx.Done())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() { errs <- dc.Run(ctx, 2) })
	wg.Go(func() { errs <- rc.Run(ctx, 2) })
	wg.Go(func() { c.nodeAgent(invariant) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		}
		factory.Shutdown()
		if v := c.broken(); v != "" {
			t.Errorf("invariant broken: %s", v)
		}
	})
	return c
}

// podSummary names each Pod with its template hash, readiness and whether
// it is terminating, for a failure message.
func podSummary(pods []v1.Pod) string {
	var b strings.Builder
	for i := range pods {
		p := &pods[i]
		fmt.Fprintf(&b, "%s(%s ready=%t terminating=%t) ", p.Name, p.Labels[appsv1.DefaultDeploymentUniqueLabelKey], isReady(p), p.DeletionTimestamp != nil)
	}
	return b.String()
}

func (c *cluster) broken() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.violation
}

// nodeAgent: each round first checks the invariant on what the controllers
// did, then removes terminating Pods and makes one pending Pod ready (so
// readiness comes one Pod at a time, as slowly starting servers would).
func (c *cluster) nodeAgent(invariant func([]v1.Pod) string) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		list, err := c.sim.client.CoreV1().Pods(testNS).List(c.ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		if invariant != nil {
			if v := invariant(list.Items); v != "" {
				c.mu.Lock()
				if c.violation == "" {
					c.violation = v
				}
				c.mu.Unlock()
			}
		}
		readied := false
		for i := range list.Items {
			p := &list.Items[i]
			switch {
			case p.DeletionTimestamp != nil:
				_ = c.sim.removePod(p.Namespace, p.Name)
			case !readied && len(p.Status.Conditions) == 0:
				_, _ = c.sim.setPodReady(p, true, time.Now().Add(-time.Second))
				readied = true
			}
		}
	}
}

func (c *cluster) eventually(what string, cond func() bool) {
	c.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 20*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		c.t.Fatalf("timed out waiting for %s", what)
	}
}

func (c *cluster) deployment(name string) *appsv1.Deployment {
	c.t.Helper()
	d, err := c.sim.client.AppsV1().Deployments(testNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

func (c *cluster) replicaSets() []appsv1.ReplicaSet {
	c.t.Helper()
	list, err := c.sim.client.AppsV1().ReplicaSets(testNS).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return list.Items
}

func (c *cluster) rsWithImage(image string) *appsv1.ReplicaSet {
	for _, rs := range c.replicaSets() {
		if rs.Spec.Template.Spec.Containers[0].Image == image {
			return &rs
		}
	}
	return nil
}

// rolledOut is kubectl rollout status's test for success.
func rolledOut(d *appsv1.Deployment) bool {
	if d.Generation > d.Status.ObservedGeneration {
		return false
	}
	if c := getCondition(d.Status, appsv1.DeploymentProgressing); c != nil && c.Reason == ReasonProgressDeadlineExceeded {
		return false
	}
	want := replicasOf(d)
	return d.Status.UpdatedReplicas >= want && d.Status.Replicas <= d.Status.UpdatedReplicas && d.Status.AvailableReplicas >= d.Status.UpdatedReplicas
}

func (c *cluster) waitRolledOut(name string, image string) {
	c.t.Helper()
	c.eventually("rollout of "+image, func() bool {
		d := c.deployment(name)
		rs := c.rsWithImage(image)
		return rolledOut(d) && rs != nil && rs.Status.AvailableReplicas == replicasOf(d) &&
			getCondition(d.Status, appsv1.DeploymentProgressing) != nil &&
			getCondition(d.Status, appsv1.DeploymentProgressing).Reason == ReasonNewReplicaSetAvailable
	})
}

func (c *cluster) setImage(name, image string) {
	c.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		d := c.deployment(name)
		d.Spec.Template.Spec.Containers[0].Image = image
		_, err := c.sim.client.AppsV1().Deployments(testNS).Update(ctx, d, metav1.UpdateOptions{})
		return err == nil, nil
	})
	if err != nil {
		c.t.Fatalf("set image %s: %v", image, err)
	}
}

func newDeployment(name string, replicas int32, strategy appsv1.DeploymentStrategy) *appsv1.Deployment {
	l := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
		Spec: appsv1.DeploymentSpec{
			Replicas:                ptr.To(replicas),
			Selector:                &metav1.LabelSelector{MatchLabels: l},
			Strategy:                strategy,
			RevisionHistoryLimit:    ptr.To(int32(10)),
			ProgressDeadlineSeconds: ptr.To(int32(600)),
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: l},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "v1"}}},
			},
		},
	}
}

func rolling(surge, unavail int32) appsv1.DeploymentStrategy {
	s, u := intstr.FromInt32(surge), intstr.FromInt32(unavail)
	return appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &s, MaxUnavailable: &u}}
}

func isReady(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func TestNewValidatesConfig(t *testing.T) {
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	if _, err := New(Config{}, factory); err == nil {
		t.Error("nil client: want error")
	}
	if _, err := New(Config{Client: client}, nil); err == nil {
		t.Error("nil factory: want error")
	}
	c, err := New(Config{Client: client}, factory)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background(), 0); err == nil {
		t.Error("0 workers: want error")
	}
}

// TestRollingUpdateKeepsAvailability rolls 3 replicas (maxSurge 1,
// maxUnavailable 0) from v1 to v2: at no point are fewer than 3 Pods ready
// and not terminating, nor more than 4 Pods not terminating.
func TestRollingUpdateKeepsAvailability(t *testing.T) {
	var armed sync.Once
	var check bool
	var mu sync.Mutex
	c := startCluster(t, func(pods []v1.Pod) string {
		mu.Lock()
		defer mu.Unlock()
		ready, live := 0, 0
		for i := range pods {
			if pods[i].DeletionTimestamp == nil {
				live++
				if isReady(&pods[i]) {
					ready++
				}
			}
		}
		if ready >= 3 {
			armed.Do(func() { check = true })
		}
		if check && ready < 3 {
			return "fewer than 3 available pods during the rollout: " + podSummary(pods)
		}
		// Terminating Pods do not count against maxSurge, as upstream.
		if live > 4 {
			return "more than 4 live pods (maxSurge 1): " + podSummary(pods)
		}
		return ""
	})
	ctx := context.Background()
	if _, err := c.sim.client.AppsV1().Deployments(testNS).Create(ctx, newDeployment("web", 3, rolling(1, 0)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitRolledOut("web", "v1")
	d := c.deployment("web")
	if d.Annotations[RevisionAnnotation] != "1" {
		t.Errorf("revision = %q, want 1", d.Annotations[RevisionAnnotation])
	}
	rs1 := c.rsWithImage("v1")
	hash := rs1.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	if hash == "" || rs1.Name != "web-"+hash || rs1.Spec.Selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] != hash ||
		rs1.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash {
		t.Errorf("replicaset %s labels %v selector %v: want pod-template-hash everywhere", rs1.Name, rs1.Labels, rs1.Spec.Selector)
	}
	if ref := metav1.GetControllerOf(rs1); ref == nil || ref.UID != d.UID || !ptr.Deref(ref.BlockOwnerDeletion, false) {
		t.Errorf("replicaset owner = %+v", ref)
	}
	if rs1.Annotations[DesiredReplicasAnnotation] != "3" || rs1.Annotations[MaxReplicasAnnotation] != "4" || rs1.Annotations[RevisionAnnotation] != "1" {
		t.Errorf("replicaset annotations = %v", rs1.Annotations)
	}
	if c := getCondition(d.Status, appsv1.DeploymentAvailable); c == nil || c.Status != v1.ConditionTrue || c.Reason != ReasonMinimumReplicasAvailable {
		t.Errorf("Available = %+v", c)
	}

	c.setImage("web", "v2")
	c.waitRolledOut("web", "v2")
	d = c.deployment("web")
	if d.Status.ObservedGeneration != d.Generation || d.Status.Replicas != 3 || d.Status.UpdatedReplicas != 3 || d.Status.UnavailableReplicas != 0 {
		t.Errorf("status = %+v", d.Status)
	}
	c.eventually("old replicaset scaled to 0", func() bool { return rsReplicas(c.rsWithImage("v1")) == 0 })
	if got := c.rsWithImage("v2").Annotations[RevisionAnnotation]; got != "2" {
		t.Errorf("new revision = %q, want 2", got)
	}
	c.eventually("deployment revision 2", func() bool { return c.deployment("web").Annotations[RevisionAnnotation] == "2" })
}

// TestRollbackByTemplate does what kubectl 1.32's `rollout undo` does: a
// JSON patch of spec.template (the old ReplicaSet's, without the hash
// label) and annotations. The old ReplicaSet becomes current again with the
// next revision.
func TestRollbackByTemplate(t *testing.T) {
	c := startCluster(t, nil)
	ctx := context.Background()
	if _, err := c.sim.client.AppsV1().Deployments(testNS).Create(ctx, newDeployment("web", 2, rolling(1, 0)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitRolledOut("web", "v1")
	c.setImage("web", "v2")
	c.waitRolledOut("web", "v2")

	old := c.rsWithImage("v1")
	tmpl := old.Spec.Template.DeepCopy()
	delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	annotations := map[string]string{}
	for k, v := range old.Annotations {
		if !skipCopyAnnotation(k) {
			annotations[k] = v
		}
	}
	patch, _ := json.Marshal([]map[string]any{
		{"op": "replace", "path": "/spec/template", "value": tmpl},
		{"op": "replace", "path": "/metadata/annotations", "value": annotations},
	})
	if _, err := c.sim.client.AppsV1().Deployments(testNS).Patch(ctx, "web", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitRolledOut("web", "v1")
	rs := c.rsWithImage("v1")
	if rs.UID != old.UID {
		t.Errorf("rollback made a new replicaset %s, want the old %s back", rs.Name, old.Name)
	}
	if rs.Annotations[RevisionAnnotation] != "3" || rs.Annotations[RevisionHistoryAnnotation] != "1" {
		t.Errorf("annotations after rollback = %v, want revision 3, history 1", rs.Annotations)
	}
	c.eventually("v2 scaled down and deployment at revision 3", func() bool {
		return rsReplicas(c.rsWithImage("v2")) == 0 && c.deployment("web").Annotations[RevisionAnnotation] == "3"
	})
	if n := len(c.replicaSets()); n != 2 {
		t.Errorf("replicasets = %d, want 2", n)
	}
}

// TestRecreate: no Pod of the new template runs while an old one exists.
func TestRecreate(t *testing.T) {
	var mu sync.Mutex
	oldHash := ""
	c := startCluster(t, func(pods []v1.Pod) string {
		mu.Lock()
		defer mu.Unlock()
		if oldHash == "" {
			return ""
		}
		var old, cur int
		for _, p := range pods {
			if p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == oldHash {
				old++
			} else {
				cur++
			}
		}
		if old > 0 && cur > 0 {
			return "new pods started while old ones existed"
		}
		return ""
	})
	ctx := context.Background()
	if _, err := c.sim.client.AppsV1().Deployments(testNS).Create(ctx, newDeployment("db", 2, appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitRolledOut("db", "v1")
	mu.Lock()
	oldHash = c.rsWithImage("v1").Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	mu.Unlock()
	c.setImage("db", "v2")
	c.waitRolledOut("db", "v2")
	if rsReplicas(c.rsWithImage("v1")) != 0 {
		t.Error("old replicaset not scaled to 0")
	}
}

func TestRevisionHistoryLimitAndScale(t *testing.T) {
	c := startCluster(t, nil)
	ctx := context.Background()
	d := newDeployment("web", 2, rolling(1, 1))
	d.Spec.RevisionHistoryLimit = ptr.To(int32(1))
	if _, err := c.sim.client.AppsV1().Deployments(testNS).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, image := range []string{"v1", "v2", "v3"} {
		if image != "v1" {
			c.setImage("web", image)
		}
		c.waitRolledOut("web", image)
	}
	c.eventually("only the current and one old replicaset left", func() bool {
		rss := c.replicaSets()
		return len(rss) == 2 && c.rsWithImage("v1") == nil
	})

	// Scale: the single active ReplicaSet takes the new size.
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		d := c.deployment("web")
		d.Spec.Replicas = ptr.To(int32(4))
		_, err := c.sim.client.AppsV1().Deployments(testNS).Update(ctx, d, metav1.UpdateOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.eventually("scaled to 4", func() bool {
		rs := c.rsWithImage("v3")
		return rsReplicas(rs) == 4 && rs.Annotations[DesiredReplicasAnnotation] == "4" && c.deployment("web").Status.AvailableReplicas == 4
	})
}

func TestPausedDeploymentDoesNotRollOut(t *testing.T) {
	c := startCluster(t, nil)
	ctx := context.Background()
	if _, err := c.sim.client.AppsV1().Deployments(testNS).Create(ctx, newDeployment("web", 1, rolling(1, 0)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitRolledOut("web", "v1")
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		d := c.deployment("web")
		d.Spec.Paused = true
		d.Spec.Template.Spec.Containers[0].Image = "v2"
		_, err := c.sim.client.AppsV1().Deployments(testNS).Update(ctx, d, metav1.UpdateOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.eventually("paused condition", func() bool {
		cond := getCondition(c.deployment("web").Status, appsv1.DeploymentProgressing)
		return cond != nil && cond.Reason == ReasonDeploymentPaused && cond.Status == v1.ConditionUnknown
	})
	time.Sleep(100 * time.Millisecond)
	if rs := c.rsWithImage("v2"); rs != nil {
		t.Errorf("paused deployment created %s", rs.Name)
	}
}
