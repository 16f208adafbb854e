package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const testNode = "node-1"

var cidrSeq atomic.Int32

// harness runs an Agent against a fake API with a real runtime and
// loopback networking in a temp dir.
type harness struct {
	t       *testing.T
	client  *fake.Clientset
	dir     string
	mark    string
	cidr    string
	ca      *x509.CertPool
	caCert  *x509.Certificate
	caKey   *ecdsa.PrivateKey
	caPEM   []byte
	mu      sync.Mutex
	updates []corev1.Pod // every status written, in order
	agent   *Agent
	cancel  context.CancelFunc
	done    chan error
	modify  func(*Config)
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir, err := os.MkdirTemp(testRoot, "t-")
	if err != nil {
		t.Fatal(err)
	}
	// A /24 of its own per test (and per test binary), so no two pods of
	// concurrent tests share an address.
	n := cidrSeq.Add(1)
	h := &harness{
		t: t, dir: dir, mark: dir,
		cidr:   fmt.Sprintf("127.%d.%d.0/24", 100+os.Getpid()%100, n%250),
		client: fake.NewClientset(),
	}
	h.makeCA()
	h.client.PrependReactor("update", "pods", func(action k8stesting.Action) (bool, k8sruntime.Object, error) {
		if ua, ok := action.(k8stesting.UpdateAction); ok && ua.GetSubresource() == "status" {
			p := ua.GetObject().(*corev1.Pod)
			h.mu.Lock()
			h.updates = append(h.updates, *p.DeepCopy())
			h.mu.Unlock()
		}
		return false, nil, nil
	})
	h.client.PrependReactor("delete", "pods", h.gracefulDelete)
	t.Cleanup(func() {
		h.stop()
		// Kill whatever a failed test left running.
		for _, p := range markedProcs(h.mark) {
			killPID(p)
		}
		if left := waitNoLeftovers(h.mark, 10*time.Second); len(left) > 0 {
			t.Errorf("processes left behind: %v", left)
		}
	})
	return h
}

// gracefulDelete makes the fake API delete pods as the real one does: a
// bound, unfinished pod gets a deletionTimestamp and grace period, and is
// only removed by a delete with grace 0 (the agent's confirmation).
func (h *harness) gracefulDelete(action k8stesting.Action) (bool, k8sruntime.Object, error) {
	da := action.(k8stesting.DeleteActionImpl)
	gvr := corev1.SchemeGroupVersion.WithResource("pods")
	obj, err := h.client.Tracker().Get(gvr, da.Namespace, da.Name)
	if err != nil {
		return true, nil, err
	}
	pod := obj.(*corev1.Pod).DeepCopy()
	opts := da.DeleteOptions
	if p := opts.Preconditions; p != nil && p.UID != nil && *p.UID != pod.UID {
		return true, nil, apierrors.NewConflict(gvr.GroupResource(), pod.Name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, pod.UID))
	}
	grace := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if opts.GracePeriodSeconds != nil {
		grace = *opts.GracePeriodSeconds
	}
	if grace == 0 || pod.Spec.NodeName == "" || terminalPhase(pod.Status.Phase) {
		return false, nil, nil // really delete
	}
	deadline := metav1.NewTime(time.Now().Add(time.Duration(grace) * time.Second))
	if pod.DeletionTimestamp == nil || deadline.Before(pod.DeletionTimestamp) {
		pod.DeletionTimestamp, pod.DeletionGracePeriodSeconds = &deadline, &grace
		if err := h.client.Tracker().Update(gvr, pod, pod.Namespace); err != nil {
			return true, nil, err
		}
	}
	return true, pod, nil
}

func (h *harness) makeCA() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		h.t.Fatal(err)
	}
	h.caCert, _ = x509.ParseCertificate(der)
	h.caKey = key
	h.ca = x509.NewCertPool()
	h.ca.AddCert(h.caCert)
	h.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// clientCert returns a client certificate signed by the harness CA.
func (h *harness) clientCert() ([]byte, []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "berth-admin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, h.caCert, key.Public(), h.caKey)
	if err != nil {
		h.t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func (h *harness) config() Config {
	exe, err := os.Executable()
	if err != nil {
		h.t.Fatal(err)
	}
	cfg := Config{
		Client: h.client, NodeName: testNode, StateDir: filepath.Join(h.dir, "state"),
		NetworkMode: "loopback", PodCIDR: h.cidr,
		BerthPath: exe, ClientCAs: h.ca, Port: 0,
		BackOffBase: time.Second, BackOffMax: 4 * time.Second,
		HeartbeatInterval: time.Second,
		ProcessEnv:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "BERTH_AGENT_TEST=" + h.mark},
		Logger:            slog.New(slog.NewTextHandler(h.t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if h.modify != nil {
		h.modify(&cfg)
	}
	return cfg
}

// start runs a new Agent over the harness's state.
func (h *harness) start() *Agent {
	h.t.Helper()
	a, err := New(h.config())
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.agent, h.cancel, h.done = a, cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
	h.waitFor("agent endpoint", 10*time.Second, func() bool { return a.Endpoint() != "" })
	return a
}

// stop ends the Agent's Run, leaving its pods running.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Error("Run did not return after cancel")
	}
	h.cancel = nil
}

func (h *harness) waitFor(what string, d time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pod makes a pod bound to the test node with one container.
func pod(name string, c corev1.Container) *corev1.Pod {
	grace := int64(5)
	if c.Image == "" {
		c.Image = "busybox"
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: uuid.NewUUID(), Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName: testNode, RestartPolicy: corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: &grace, ServiceAccountName: "default",
			Containers: []corev1.Container{c},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
}

func sh(name, script string) corev1.Container {
	return corev1.Container{Name: name, Command: []string{"/bin/sh", "-c", script}}
}

func (h *harness) create(p *corev1.Pod) *corev1.Pod {
	h.t.Helper()
	out, err := h.client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) get(name string) (*corev1.Pod, error) {
	return h.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
}

// waitPod waits until cond holds for the pod and returns it.
func (h *harness) waitPod(name, what string, d time.Duration, cond func(*corev1.Pod) bool) *corev1.Pod {
	h.t.Helper()
	var last *corev1.Pod
	deadline := time.Now().Add(d)
	for {
		p, err := h.get(name)
		if err == nil {
			last = p
			if cond(p) {
				return p
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for pod %s: %s; last status: %s", d, name, what, describeStatus(last))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func describeStatus(p *corev1.Pod) string {
	if p == nil {
		return "<none>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s", p.Status.Phase)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s", c.Type, c.Status)
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, " [%s ready=%v restarts=%d", cs.Name, cs.Ready, cs.RestartCount)
		switch {
		case cs.State.Running != nil:
			b.WriteString(" running")
		case cs.State.Waiting != nil:
			fmt.Fprintf(&b, " waiting %s: %s", cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			fmt.Fprintf(&b, " terminated %d %s", cs.State.Terminated.ExitCode, cs.State.Terminated.Reason)
		}
		b.WriteString("]")
	}
	return b.String()
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func containerStatusOf(p *corev1.Pod, name string) corev1.ContainerStatus {
	cs, _ := findStatus(append(append([]corev1.ContainerStatus{}, p.Status.ContainerStatuses...), p.Status.InitContainerStatuses...), name)
	return cs
}

// events returns the messages of the pod's events with reason, as
// "fieldPath: message".
func (h *harness) events(p *corev1.Pod, reason string) []string {
	list, err := h.client.CoreV1().Events(p.Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.UID == p.UID && e.Reason == reason {
			out = append(out, e.InvolvedObject.FieldPath+": "+e.Message)
		}
	}
	return out
}

func (h *harness) waitEvent(p *corev1.Pod, reason, contains string, d time.Duration) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("event %s %q", reason, contains), d, func() bool {
		for _, e := range h.events(p, reason) {
			if strings.Contains(e, contains) {
				return true
			}
		}
		return false
	})
}

// delete deletes the pod as kubectl delete does (graceful).
func (h *harness) delete(name string) {
	h.t.Helper()
	if err := h.client.CoreV1().Pods("default").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// statusUpdates returns the statuses written for pod uid.
func (h *harness) statusUpdates(uid types.UID) []corev1.Pod {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []corev1.Pod
	for _, p := range h.updates {
		if p.UID == uid {
			out = append(out, p)
		}
	}
	return out
}

func killPID(pid int) { syscall.Kill(pid, syscall.SIGKILL) }

func writeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
