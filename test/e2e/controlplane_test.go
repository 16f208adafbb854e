package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// A pod no node agent runs: it stays Pending (berth's scheduler needs a
// Ready node, and the test server runs none), so the test sees API behaviour only.
const apiOnlyPods = `apiVersion: v1
kind: Pod
metadata:
  name: foo
  labels: {type: demo, app: foo}
spec:
  nodeSelector: {berth.test/no-such-node: "true"}
  containers:
  - name: web
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: ["netexec", "--http-port=3000"]
    ports: [{name: http, containerPort: 3000}]
---
apiVersion: v1
kind: Pod
metadata:
  name: bar
  labels: {type: demo, app: bar}
spec:
  nodeSelector: {berth.test/no-such-node: "true"}
  containers:
  - name: web
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: ["netexec", "--http-port=3000"]
`

func TestKubectlControlPlane(t *testing.T) {
	s := startServer(t, "--disable", "agent,proxy")
	kubectlScenario(t, s)
}

func TestKubectlControlPlaneExternalEtcd(t *testing.T) {
	url := startEtcd(t)
	s := startServer(t, "--etcd-servers", url, "--disable", "agent,proxy")
	kubectlScenario(t, s)
	// The objects are in the external etcd: a second server on a fresh
	// data dir, pointed at the same etcd, sees them.
	s2 := startServer(t, "--etcd-servers", url, "--disable", "agent,proxy")
	out := s2.mustKubectl("get", "svc", "demo", "-o", "jsonpath={.spec.clusterIP}")
	if out == "" {
		t.Fatalf("second server on the same etcd does not see service demo")
	}
}

func kubectlScenario(t *testing.T, s *server) {
	pods := writeFile(t, "pods.yaml", apiOnlyPods)
	svc := filepath.Join(examplesDir(), "service.yaml")

	// apply twice: create, then an update through a strategic merge patch.
	if out := s.mustKubectl("apply", "-f", pods, "-f", svc); !strings.Contains(out, "pod/foo created") || !strings.Contains(out, "service/demo created") {
		t.Fatalf("first apply: %s", out)
	}
	changed := strings.Replace(apiOnlyPods, "app: foo}", "app: foo, tier: web}", 1)
	if out := s.mustKubectl("apply", "-f", writeFile(t, "pods2.yaml", changed)); !strings.Contains(out, "pod/foo configured") || !strings.Contains(out, "pod/bar unchanged") {
		t.Fatalf("second apply: %s", out)
	}
	if out := s.mustKubectl("get", "pod", "foo", "-o", "jsonpath={.metadata.labels.tier}"); out != "web" {
		t.Fatalf("apply update did not land: tier=%q", out)
	}
	// create -f of something that exists is AlreadyExists; of something new works.
	if _, errOut, err := s.kubectl("create", "-f", pods); err == nil || !strings.Contains(errOut, `pods "foo" already exists`) {
		t.Fatalf("create of existing pod: err=%v stderr=%s", err, errOut)
	}
	if out := s.mustKubectl("create", "-f", filepath.Join(examplesDir(), "replacement.yaml")); !strings.Contains(out, "pod/baz created") {
		t.Fatalf("create -f: %s", out)
	}

	// get in its forms.
	out := s.mustKubectl("get", "pods")
	for _, want := range []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE", "foo", "bar", "baz", "Pending", "0/1"} {
		if !strings.Contains(out, want) {
			t.Errorf("get pods: missing %q in:\n%s", want, out)
		}
	}
	out = s.mustKubectl("get", "pods", "-o", "wide")
	for _, want := range []string{"IP", "NODE", "NOMINATED NODE", "READINESS GATES"} {
		if !strings.Contains(out, want) {
			t.Errorf("get pods -o wide: missing %q in:\n%s", want, out)
		}
	}
	out = s.mustKubectl("get", "svc", "-o", "wide")
	for _, want := range []string{"TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "SELECTOR", "ClusterIP", "8080/TCP", "type=demo"} {
		if !strings.Contains(out, want) {
			t.Errorf("get svc -o wide: missing %q in:\n%s", want, out)
		}
	}
	if out := s.mustKubectl("get", "pod", "foo", "-o", "yaml"); !strings.Contains(out, "kind: Pod") || !strings.Contains(out, "resourceVersion:") || !strings.Contains(out, "uid:") {
		t.Errorf("get -o yaml:\n%s", out)
	}
	var p corev1.Pod
	if err := json.Unmarshal([]byte(s.mustKubectl("get", "pod", "foo", "-o", "json")), &p); err != nil || p.Name != "foo" || p.Spec.RestartPolicy != corev1.RestartPolicyAlways || p.CreationTimestamp.IsZero() || p.Generation != 1 {
		t.Errorf("get -o json: err=%v pod=%+v", err, p.ObjectMeta)
	}
	names := func(args ...string) string {
		return strings.TrimSpace(s.mustKubectl(append([]string{"get", "pods", "-o", "jsonpath={.items[*].metadata.name}"}, args...)...))
	}
	if got := names("-l", "app=foo"); got != "foo" {
		t.Errorf("-l app=foo: %q", got)
	}
	if got := names("-l", "app in (foo,baz)"); got != "baz foo" {
		t.Errorf("-l 'app in (foo,baz)': %q", got)
	}
	if got := names("-l", "type in (demo)"); got != "bar baz foo" {
		t.Errorf("-l 'type in (demo)': %q", got)
	}
	if got := names("--field-selector", "metadata.name=bar"); got != "bar" {
		t.Errorf("--field-selector metadata.name=bar: %q", got)
	}
	if got := names("--field-selector", "status.phase=Pending,spec.nodeName="); got != "bar baz foo" {
		t.Errorf("--field-selector status.phase=Pending: %q", got)
	}
	if _, errOut, err := s.kubectl("get", "pods", "--field-selector", "spec.bogus=1"); err == nil || !strings.Contains(errOut, "field label not supported: spec.bogus") {
		t.Errorf("unsupported field selector: err=%v %s", err, errOut)
	}

	// get -w sees an update.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch := exec.CommandContext(ctx, kubectl, "--kubeconfig", s.Kubeconfig, "--cache-dir", s.cacheDir, "get", "pod", "foo", "-w", "-o", "custom-columns=NAME:.metadata.name,MARK:.metadata.labels.mark")
	wout := &syncBuffer{}
	watch.Stdout, watch.Stderr = wout, wout
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "kubectl get -w to print the pod", func() (bool, string) {
		return strings.Contains(wout.String(), "foo"), wout.String()
	})
	s.mustKubectl("label", "pod", "foo", "mark=seen-by-watch")
	eventually(t, 15*time.Second, "kubectl get -w to print the update", func() (bool, string) {
		return strings.Contains(wout.String(), "seen-by-watch"), wout.String()
	})
	cancel()
	_ = watch.Wait()

	// label, annotate, and the three patch types.
	s.mustKubectl("label", "pod", "foo", "color=blue")
	s.mustKubectl("annotate", "pod", "foo", "note=hello")
	s.mustKubectl("patch", "pod", "foo", "--type", "merge", "-p", `{"metadata":{"labels":{"merge":"yes"}}}`)
	s.mustKubectl("patch", "pod", "foo", "-p", `{"metadata":{"labels":{"strategic":"yes"}}}`)
	s.mustKubectl("patch", "pod", "foo", "--type", "json", "-p", `[{"op":"add","path":"/metadata/labels/jsonpatch","value":"yes"}]`)
	s.mustKubectl("patch", "svc", "demo", "-p", `{"spec":{"ports":[{"name":"http","port":8080,"targetPort":3001}]}}`)
	if tp := s.mustKubectl("get", "svc", "demo", "-o", "jsonpath={.spec.ports[*].targetPort}"); tp != "3001" {
		t.Errorf("strategic patch of a list by merge key: targetPort %q", tp)
	}
	var labeled corev1.Pod
	_ = json.Unmarshal([]byte(s.mustKubectl("get", "pod", "foo", "-o", "json")), &labeled)
	for k, v := range map[string]string{"color": "blue", "merge": "yes", "strategic": "yes", "jsonpatch": "yes"} {
		if labeled.Labels[k] != v {
			t.Errorf("label %s=%q, want %q (labels %v)", k, labeled.Labels[k], v, labeled.Labels)
		}
	}
	if labeled.Annotations["note"] != "hello" {
		t.Errorf("annotation note: %v", labeled.Annotations)
	}
	// JSON patch with a failing test operation is a clean 422, nothing changes.
	if _, errOut, err := s.kubectl("patch", "pod", "foo", "--type", "json", "-p", `[{"op":"test","path":"/metadata/labels/color","value":"red"}]`); err == nil || errOut == "" {
		t.Errorf("failing json patch test op: err=%v %s", err, errOut)
	}

	// edit with KUBE_EDITOR.
	editor := writeFile(t, "editor.sh", "#!/bin/sh\nsed -i 's/color: blue/color: green/' \"$1\"\n")
	if _, errOut, err := s.kubectlEnv([]string{"KUBE_EDITOR=sh " + editor}, "", "edit", "pod", "foo"); err != nil {
		t.Fatalf("kubectl edit: %v %s", err, errOut)
	}
	if c := s.mustKubectl("get", "pod", "foo", "-o", "jsonpath={.metadata.labels.color}"); c != "green" {
		t.Errorf("after edit color=%q", c)
	}

	// describe a pod and a service.
	out = s.mustKubectl("describe", "pod", "foo")
	for _, want := range []string{"Name:", "foo", "Namespace:", "default", "Status:", "Pending", "Containers:", "web:", "registry.k8s.io/e2e-test-images/agnhost:2.53", "QoS Class:", "BestEffort"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe pod: missing %q in:\n%s", want, out)
		}
	}
	out = s.mustKubectl("describe", "svc", "demo")
	for _, want := range []string{"Name:", "demo", "Selector:", "type=demo", "Type:", "ClusterIP", "IP:", "Port:", "http  8080/TCP", "TargetPort:", "Endpoints:"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe svc: missing %q in:\n%s", want, out)
		}
	}

	// An invalid manifest gets a Kubernetes-style error naming the field; nothing is stored.
	bad := writeFile(t, "bad.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  selector: {a: b}\n  ports:\n  - port: 70000\n    targetPort: 80\n")
	_, errOut, err := s.kubectl("apply", "-f", bad)
	if err == nil || !strings.Contains(errOut, `The Service "bad" is invalid`) || !strings.Contains(errOut, "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive") {
		t.Errorf("invalid manifest: err=%v stderr=%s", err, errOut)
	}
	if _, errOut, err := s.kubectl("get", "svc", "bad"); err == nil || !strings.Contains(errOut, `services "bad" not found`) {
		t.Errorf("invalid service was stored: %v %s", err, errOut)
	}
	// Unknown fields are rejected with kubectl's default validation (Strict).
	unknown := writeFile(t, "unknown.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: unknown\nspec:\n  portz: []\n  ports: [{port: 80}]\n")
	if _, errOut, err := s.kubectl("create", "-f", unknown); err == nil || !strings.Contains(errOut, `unknown field "spec.portz"`) {
		t.Errorf("unknown field: err=%v stderr=%s", err, errOut)
	}

	// delete.
	if out := s.mustKubectl("delete", "pod", "baz"); !strings.Contains(out, `pod "baz" deleted`) {
		t.Errorf("delete: %s", out)
	}
	if _, errOut, err := s.kubectl("get", "pod", "baz"); err == nil || !strings.Contains(errOut, `pods "baz" not found`) {
		t.Errorf("after delete: %v %s", err, errOut)
	}

	// explain at least works.
	if out := s.mustKubectl("explain", "pods.spec.containers"); !strings.Contains(out, "ports") {
		t.Errorf("explain: %s", out)
	}

	// No credentials: 401.
	noCreds := writeFile(t, "nocreds", strings.Join([]string{
		"apiVersion: v1", "kind: Config", "clusters:", "- name: c", "  cluster:", "    server: https://127.0.0.1:" + itoa(s.Port), "    insecure-skip-tls-verify: true",
		"contexts:", "- name: c", "  context: {cluster: c, user: u}", "current-context: c", "users:", "- name: u", "  user: {token: not-a-berth-credential}", ""}, "\n"))
	_, errOut, err = s.kubectlEnv(nil, "", "--kubeconfig", noCreds, "get", "pods")
	if err == nil || !strings.Contains(errOut, "Unauthorized") {
		t.Errorf("no credentials: err=%v stderr=%s", err, errOut)
	}
	// A plain HTTPS request without a client certificate gets a 401 Status.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, path := range []string{"/api/v1/pods", "/version", "/healthz"} {
		resp, err := hc.Get("https://127.0.0.1:" + itoa(s.Port) + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"reason":"Unauthorized"`) {
			t.Errorf("GET %s without credentials: %d %s", path, resp.StatusCode, body)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestInformerAcrossRestart: a client-go informer lists and watches pods, sees
// add, update and delete in order, and carries on across a server restart.
func TestInformerAcrossRestart(t *testing.T) {
	s := startServer(t, "--disable", "agent,proxy")
	client := s.client()
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace("default"))
	inf := factory.Core().V1().Pods().Informer()
	var mu sync.Mutex
	var seen []string
	record := func(ev string) { mu.Lock(); seen = append(seen, ev); mu.Unlock() }
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) { record("add " + obj.(*corev1.Pod).Name) },
		UpdateFunc: func(old, cur interface{}) {
			o, c := old.(*corev1.Pod), cur.(*corev1.Pod)
			// Only the test's own changes: the scheduler also writes
			// status (PodScheduled=False) for these unschedulable pods.
			if o.Labels["v"] != c.Labels["v"] {
				record("update " + c.Name + " " + c.Labels["v"])
			}
		},
		DeleteFunc: func(obj interface{}) {
			if p, ok := obj.(*corev1.Pod); ok {
				record("delete " + p.Name)
			} else if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				record("delete " + d.Key)
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	pods := client.CoreV1().Pods("default")
	mk := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"v": "1"}},
			Spec: corev1.PodSpec{NodeSelector: map[string]string{"berth.test/no-such-node": "true"}, Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	}
	if _, err := pods.Create(ctx, mk("a"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := pods.Get(ctx, "a", metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Labels["v"] = "2"
		_, err = pods.Update(ctx, p, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"add a", "update a 2", "delete a"}
	waitSeen := func(want []string) {
		eventually(t, 20*time.Second, "informer events "+strings.Join(want, ", "), func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			return strings.Join(seen, "|") == strings.Join(want, "|"), strings.Join(seen, "|")
		})
	}
	waitSeen(want)

	s.Restart()
	if _, err := pods.Create(ctx, mk("b"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSeen(append(want, "add b"))
}

// TestPersistenceKill9 creates objects concurrently, kills the server with
// SIGKILL in the middle, restarts it, and checks that every write that was
// acknowledged is there.
func TestPersistenceKill9(t *testing.T) {
	s := startServer(t, "--disable", "agent,proxy")
	client := s.client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var acked sync.Map
	var count atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := "burst-" + itoa(w) + "-" + itoa(i)
				_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
				if err == nil {
					acked.Store(name, true)
					count.Add(1)
				}
			}
		}(w)
	}
	eventually(t, 30*time.Second, "some writes to be acknowledged", func() (bool, string) { return count.Load() > 200, "" })
	s.Kill9()
	close(stop)
	wg.Wait()
	n := count.Load()
	s.start()
	c2 := s.client()
	list, err := c2.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, ns := range list.Items {
		have[ns.Name] = true
	}
	lost := 0
	acked.Range(func(k, _ interface{}) bool {
		if !have[k.(string)] {
			lost++
		}
		return true
	})
	t.Logf("acknowledged writes before kill -9: %d; lost after restart: %d", n, lost)
	if lost > 0 {
		t.Fatalf("%d acknowledged writes were lost", lost)
	}
	// The store still works after the crash.
	if _, err := c2.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "after-crash"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.CoreV1().Namespaces().Get(context.Background(), "after-crash", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Fatal("write after restart lost")
	}
}
