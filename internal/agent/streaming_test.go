package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"

	"github.com/berth-project/berth/internal/agent/server"
)

// agnhostPod runs the built-in agnhost netexec with a readiness probe.
func agnhostPod(name string) *corev1.Pod {
	p := pod(name, corev1.Container{
		Name: "netexec", Image: "registry.k8s.io/e2e-test-images/agnhost:2.53",
		Args:  []string{"netexec", "--http-port=8080"},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}},
			PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
		},
	})
	return p
}

// apiConfig is how the API server reaches the agent: its admin client
// certificate, and the agent's self-signed certificate unverified.
func (h *harness) apiConfig(a *Agent) *rest.Config {
	cert, key := h.clientCert()
	return &rest.Config{Host: a.Endpoint(), TLSClientConfig: rest.TLSClientConfig{Insecure: true, CertData: cert, KeyData: key}}
}

func TestAgnhostReadinessExecAndPortForward(t *testing.T) {
	h := newHarness(t)
	a := h.start()
	p := h.create(agnhostPod("netexec"))
	p = h.waitPod("netexec", "Ready via its HTTP readiness probe", 30*time.Second, isReady)
	cfg := h.apiConfig(a)

	// kubectl exec, as the API server relays it.
	exec := func(cmd []string, stdin io.Reader) (string, string, error) {
		u, _ := url.Parse(a.Endpoint() + "/exec/default/netexec/netexec")
		q := url.Values{"command": cmd, "stdout": {"true"}, "stderr": {"true"}, "podUID": {string(p.UID)}}
		if stdin != nil {
			q.Set("stdin", "true")
		}
		u.RawQuery = q.Encode()
		ex, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
		if err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: &out, Stderr: &errb})
		return out.String(), errb.String(), err
	}
	out, _, err := exec([]string{"/bin/sh", "-c", "echo $HOSTNAME $BERTH_BIND_ADDRESS; echo oops >&2"}, nil)
	if err != nil || out != "netexec "+p.Status.PodIP+"\n" {
		t.Fatalf("exec: %q %v", out, err)
	}
	out, _, err = exec([]string{"cat"}, strings.NewReader("from stdin\n"))
	if err != nil || out != "from stdin\n" {
		t.Fatalf("exec with stdin: %q %v", out, err)
	}
	_, _, err = exec([]string{"/bin/sh", "-c", "exit 7"}, nil)
	var exit interface{ ExitStatus() int }
	if !errors.As(err, &exit) || exit.ExitStatus() != 7 {
		t.Fatalf("exit code: %v", err)
	}

	// kubectl port-forward to the pod's port 8080.
	tr, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(a.Endpoint() + "/portForward/default/netexec?podUID=" + string(p.UID))
	dialer := spdy.NewDialer(up, &http.Client{Transport: tr}, "POST", u)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddressesWithContext(ctx, dialer, []string{"127.0.0.1"}, []string{"0:8080"}, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port-forward: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("port-forward not ready")
	}
	ports, _ := pf.GetPorts()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/hostname", ports[0].Local))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "netexec" {
		t.Fatalf("GET /hostname through port-forward: %q", body)
	}
	cancel()
	<-done

	// kubectl logs through the agent API.
	hc := &http.Client{}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hc.Transport = rt
	resp, err = hc.Get(a.Endpoint() + "/containerLogs/default/netexec/netexec?tailLines=50&podUID=" + string(p.UID))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Started HTTP server on port 8080") {
		t.Fatalf("logs: %d %q", resp.StatusCode, body)
	}
}

func TestReadinessProbeFailureMakesUnready(t *testing.T) {
	h := newHarness(t)
	h.start()
	dir := t.TempDir()
	c := sh("app", "exec sleep 1000")
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "test -f " + dir + "/ready"}}},
		PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 1,
	}
	p := h.create(pod("gate", c))
	h.waitPod("gate", "Running but not ready", 20*time.Second, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && !isReady(p) && containerStatusOf(p, "app").State.Running != nil
	})
	writeFile(t, dir+"/ready")
	h.waitPod("gate", "Ready", 10*time.Second, isReady)
	removeFile(t, dir+"/ready")
	p = h.waitPod("gate", "unready again", 10*time.Second, func(p *corev1.Pod) bool { return !isReady(p) })
	if containerStatusOf(p, "app").RestartCount != 0 {
		t.Error("a readiness failure must not restart the container")
	}
	h.waitEvent(p, "Unhealthy", "Readiness probe failed", 5*time.Second)
}

func TestStartupProbeGatesLiveness(t *testing.T) {
	h := newHarness(t)
	h.start()
	dir := t.TempDir()
	c := sh("app", "sleep 1.5; touch "+dir+"/started; exec sleep 1000")
	c.StartupProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", dir + "/started"}}},
		PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 10,
	}
	// Would kill the container at once if it ran before startup passed.
	c.LivenessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", dir + "/started"}}},
		PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 1,
	}
	h.create(pod("slow", c))
	p := h.waitPod("slow", "started and ready", 20*time.Second, func(p *corev1.Pod) bool {
		cs := containerStatusOf(p, "app")
		return isReady(p) && cs.Started != nil && *cs.Started
	})
	if n := containerStatusOf(p, "app").RestartCount; n != 0 {
		t.Fatalf("restarted %d times: liveness ran before the startup probe passed", n)
	}
}

func TestLogAndExecErrors(t *testing.T) {
	h := newHarness(t)
	a := h.start()
	p := h.create(pod("nocmd", corev1.Container{Name: "web", Image: "nginx"}))
	h.waitPod("nocmd", "CommandRequired", 20*time.Second, func(p *corev1.Pod) bool {
		w := containerStatusOf(p, "web").State.Waiting
		return w != nil && w.Reason == "CommandRequired"
	})
	ref := server.ContainerRef{PodRef: server.PodRef{Namespace: "default", Name: "nocmd", UID: string(p.UID)}, Container: "web"}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"logs of a waiting container", func() error { _, err := a.ContainerLog(context.Background(), ref, false); return err }(),
			`container "web" in pod "nocmd" is waiting to start: CommandRequired`},
		{"previous logs", func() error { _, err := a.ContainerLog(context.Background(), ref, true); return err }(),
			`previous terminated container "web" in pod "nocmd" not found`},
		{"unknown container", func() error {
			r := ref
			r.Container = "other"
			_, err := a.ContainerLog(context.Background(), r, false)
			return err
		}(), "container other is not valid for pod nocmd"},
		{"exec", func() error { _, err := a.Exec(context.Background(), ref, []string{"true"}, nil, nil, nil); return err }(),
			"container web is not running"},
		{"other pod UID", func() error {
			r := ref
			r.UID = "something-else"
			_, err := a.ContainerLog(context.Background(), r, false)
			return err
		}(), `pods "nocmd" not found`},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, tt.err, tt.want)
		}
		if tt.err != nil && !apierrors.IsBadRequest(tt.err) && !apierrors.IsNotFound(tt.err) {
			t.Errorf("%s: %v is not a Status error", tt.name, tt.err)
		}
	}
}
