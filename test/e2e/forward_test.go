package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startBerthForward runs `berth forward` in the background and waits until it
// listens.
func startBerthForward(t *testing.T, s *server, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(berthBin, append([]string{"forward", "--kubeconfig", s.Kubeconfig}, args...)...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	eventually(t, 20*time.Second, "berth forward to listen", func() (bool, string) {
		return strings.Contains(out.String(), "Forwarding from"), out.String()
	})
	return cmd, out
}

// TestForwardSurvivesReplacement: berth forward svc/demo keeps answering
// through a replacement of foo by baz, while kubectl port-forward pod/foo
// breaks with its pod.
func TestForwardSurvivesReplacement(t *testing.T) {
	s := startServer(t, "--pod-network", "loopback")
	s.mustKubectl("apply", "-f", filepath.Join(examplesDir(), "pods.yaml"), "-f", filepath.Join(examplesDir(), "service.yaml"))
	waitPodsReady(t, s, "foo", "bar")

	port := freePort(t)
	startBerthForward(t, s, "svc/demo", strconv.Itoa(port)+":8080")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	eventually(t, 20*time.Second, "berth forward to reach both pods", func() (bool, string) {
		seen := hostnames(t, addr, 20)
		return seen["foo"] > 0 && seen["bar"] > 0, fmt.Sprint(seen)
	})
	pf := startPortForward(t, s, "pod/foo", "3000")
	if got := getHostname(t, pf.addr); got != "foo" {
		t.Fatalf("kubectl port-forward pod/foo answered %q", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *loadResult)
	go func() { done <- runLoad(ctx, addr, 100, 12*time.Second) }()
	time.Sleep(2 * time.Second)
	s.mustKubectl("apply", "-f", filepath.Join(examplesDir(), "replacement.yaml"))
	waitPodsReady(t, s, "baz")
	s.mustKubectl("delete", "pod", "foo", "--wait=false")
	res := <-done
	t.Logf("berth forward during the replacement: %d ok, %d failed, answered by %v", res.ok.Load(), res.failed.Load(), res.hosts)
	if res.failed.Load() > 0 {
		t.Errorf("%d requests through berth forward failed (baz was Ready before foo was deleted): %v", res.failed.Load(), res.errs)
	}
	after := hostnames(t, addr, 20)
	if after["bar"] == 0 || after["baz"] == 0 || after["foo"] > 0 || after[""] > 0 {
		t.Errorf("after the replacement berth forward reaches %v", after)
	}
	eventually(t, 20*time.Second, "kubectl port-forward pod/foo to fail", func() (bool, string) {
		_, err := tryHostname(pf.addr)
		return err != nil, pf.out.String()
	})
	t.Logf("kubectl port-forward pod/foo after the delete: %s", strings.TrimSpace(tail(pf.out.String(), 4)))
}

// TestKubectlPortForward covers kubectl port-forward against berth: a pod,
// a Service, two ports at once, and a port nobody listens on.
func TestKubectlPortForward(t *testing.T) {
	s := startServer(t, "--pod-network", "loopback")
	manifest := `apiVersion: v1
kind: Pod
metadata:
  name: two
  labels: {app: two}
spec:
  containers:
  - name: a
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: ["netexec", "--http-port=3000"]
  - name: b
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: ["serve-hostname", "--port=3001"]
---
apiVersion: v1
kind: Service
metadata: {name: two}
spec:
  selector: {app: two}
  ports: [{name: http, port: 8080, targetPort: 3000}]
`
	s.mustKubectl("apply", "-f", writeFile(t, "two.yaml", manifest))
	waitPodsReady(t, s, "two")

	t.Run("Pod", func(t *testing.T) {
		pf := startPortForward(t, s, "pod/two", "3000")
		if got := getHostname(t, pf.addr); got != "two" {
			t.Fatalf("answered %q", got)
		}
	})
	t.Run("Service", func(t *testing.T) {
		pf := startPortForward(t, s, "svc/two", "8080")
		if got := getHostname(t, pf.addr); got != "two" {
			t.Fatalf("answered %q", got)
		}
	})
	t.Run("TwoPorts", func(t *testing.T) {
		pf := startPortForward(t, s, "pod/two", "3000", "3001")
		if got := getHostname(t, pf.addr); got != "two" {
			t.Fatalf("3000 answered %q", got)
		}
		second := portOf(pf.out.String(), 1)
		resp, err := httpClient.Get("http://127.0.0.1:" + second + "/")
		if err != nil {
			t.Fatalf("second port: %v\n%s", err, pf.out.String())
		}
		resp.Body.Close()
	})
	t.Run("NobodyListens", func(t *testing.T) {
		pf := startPortForward(t, s, "pod/two", "3999", "3000")
		if _, err := tryHostname(pf.addr); err == nil {
			t.Fatalf("a port nobody listens on answered")
		}
		eventually(t, 10*time.Second, "kubectl's error for the refused connection", func() (bool, string) {
			out := pf.out.String()
			return strings.Contains(out, "an error occurred forwarding") && strings.Contains(out, "connection refused"), out
		})
		// kubectl (since kubernetes#103526, v1.23) closes the whole forward
		// after such an error, as it does against a real kubelet, and says
		// so; the server side is unharmed: a new forward works at once.
		select {
		case <-pf.done:
			if !strings.Contains(pf.out.String(), "lost connection to pod") {
				t.Errorf("kubectl ended without its usual message:\n%s", pf.out.String())
			}
		case <-time.After(10 * time.Second):
			// An older or newer kubectl may keep the forward: then its other
			// port must still answer.
			other := net.JoinHostPort("127.0.0.1", portOf(pf.out.String(), 1))
			if got := getHostname(t, other); got != "two" {
				t.Fatalf("after the failed connection the forward answered %q", got)
			}
		}
		again := startPortForward(t, s, "pod/two", "3000")
		if got := getHostname(t, again.addr); got != "two" {
			t.Fatalf("a new port-forward after the error answered %q", got)
		}
	})
	t.Run("BerthForwardSurvivesRefusedPort", func(t *testing.T) {
		bad, good := freePort(t), freePort(t)
		_, out := startBerthForward(t, s, "pod/two", strconv.Itoa(bad)+":3999", strconv.Itoa(good)+":3000")
		if _, err := tryHostname(net.JoinHostPort("127.0.0.1", strconv.Itoa(bad))); err == nil {
			t.Fatalf("a port nobody listens on answered")
		}
		for i := 0; i < 3; i++ {
			if got := getHostname(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(good))); got != "two" {
				t.Fatalf("berth forward after a refused connection answered %q\n%s", got, out.String())
			}
		}
	})
}

// portOf returns the local port of the i-th "Forwarding from 127.0.0.1:P" line.
func portOf(out string, i int) string {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, "Forwarding from 127.0.0.1:"); ok {
			if n == i {
				p, _, _ := strings.Cut(rest, " ")
				return p
			}
			n++
		}
	}
	return ""
}
