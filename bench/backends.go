package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-project/berth/bench/cluster"
	"github.com/berth-project/berth/bench/load"
	"github.com/berth-project/berth/bench/proc"
)

// backendPorts are the bench backend's ports and its Service's.
const (
	backendHTTPPort = 3000
	backendBulkPort = 3001
	serviceHTTPPort = 80
	serviceBulkPort = 81
)

// simulatedIPs hands out 127.243.200.x addresses for backends the bench
// starts itself (outside the pod CIDR the bench gives its servers, 127.246.0.0/16).
var simulatedIPs = 0

// backendSvc is a Service in front of one bench backend.
type backendSvc struct {
	Name      string
	ClusterIP string
	// Pod is the backend's name (what /hostname answers), IP its address.
	Pod, IP   string
	Simulated bool
	// Proc is the directly started backend when Simulated.
	Proc *proc.Proc
}

func (b backendSvc) DirectHTTP() string {
	return net.JoinHostPort(b.IP, strconv.Itoa(backendHTTPPort))
}
func (b backendSvc) DirectBulk() string {
	return net.JoinHostPort(b.IP, strconv.Itoa(backendBulkPort))
}
func (b backendSvc) ServiceHTTP() string {
	return net.JoinHostPort(b.ClusterIP, strconv.Itoa(serviceHTTPPort))
}
func (b backendSvc) ServiceBulk() string {
	return net.JoinHostPort(b.ClusterIP, strconv.Itoa(serviceBulkPort))
}

// describe says in a sentence what the backend is.
func (b backendSvc) describe() string {
	if b.Simulated {
		return fmt.Sprintf("the bench's own backend (`bench backend`: Go net/http for /echo and a bulk streamer) started directly at %s, behind a selector-less Service whose EndpointSlice the bench writes (no node agent to run it as a Pod)", b.IP)
	}
	return fmt.Sprintf("the bench's own backend (`bench backend`: Go net/http for /echo and a bulk streamer) run as Pod %s (a local process at pod IP %s) behind a Service selecting it", b.Pod, b.IP)
}

// startBackend puts one bench backend behind Service name: a Pod when the
// agent works, else a process the bench starts, with the EndpointSlice
// written by the bench. It waits until the Service answers with it.
func (r *runner) startBackend(ctx context.Context, s *cluster.Server, name string) (backendSvc, error) {
	b := backendSvc{Name: name, Pod: name + "-backend"}
	ports := []corev1.ServicePort{cluster.ServicePort("http", serviceHTTPPort, backendHTTPPort), cluster.ServicePort("bulk", serviceBulkPort, backendBulkPort)}
	labels := map[string]string{"app": name}
	if r.agentOK {
		svc, err := cluster.CreateService(ctx, s.Client, name, labels, ports...)
		if err != nil {
			return b, err
		}
		b.ClusterIP = svc.Spec.ClusterIP
		pw := cluster.WatchPods(ctx, s.Client)
		if _, err := s.Client.CoreV1().Pods(cluster.Namespace).Create(ctx, cluster.BackendPod(b.Pod, r.bench, labels, backendHTTPPort, backendBulkPort), metav1.CreateOptions{}); err != nil {
			return b, fmt.Errorf("create backend pod: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, r.sz.readyTimeout)
		_, err = pw.WaitReady(wctx, b.Pod)
		cancel()
		if err != nil {
			return b, err
		}
		b.IP = pw.Pod(b.Pod).Status.PodIP
	} else {
		simulatedIPs++
		b.IP = fmt.Sprintf("127.243.200.%d", simulatedIPs)
		b.Simulated = true
		cmd := exec.Command(r.bench, "backend", "-http", b.DirectHTTP(), "-bulk", b.DirectBulk(), "-name", b.Pod)
		p, err := r.env.Procs.Start(b.Pod, cmd)
		if err != nil {
			return b, err
		}
		b.Proc = p
		svc, err := cluster.CreateService(ctx, s.Client, name, nil, ports...)
		if err != nil {
			return b, err
		}
		b.ClusterIP = svc.Spec.ClusterIP
		slice := cluster.EndpointSlice(name, name+"-bench", []string{b.IP}, cluster.SlicePort("http", backendHTTPPort), cluster.SlicePort("bulk", backendBulkPort))
		if err := cluster.PutEndpointSlice(ctx, s.Client, slice); err != nil {
			return b, err
		}
	}
	if err := waitAnswer(ctx, b.ServiceHTTP(), b.Pod, r.sz.readyTimeout); err != nil {
		return b, fmt.Errorf("service %s: %w", name, err)
	}
	return b, nil
}

// waitAnswer polls GET /hostname on addr until it answers want.
func waitAnswer(ctx context.Context, addr, want string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		status, body, err := load.GetOnce(ctx, addr, "/hostname", time.Second)
		got := strings.TrimSpace(string(body))
		if err == nil && status == 200 && got == want {
			return nil
		}
		last = fmt.Sprintf("%d %q %v", status, got, err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer %q within %s (last: %s)", addr, want, timeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitListening waits until addr accepts connections.
func waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := proc.WaitListening(ctx, addr, 10*time.Millisecond)
	return err
}

// haproxy returns the haproxy binary, installing Debian's package when
// root and missing; or why there is none.
func (r *runner) haproxy(ctx context.Context) (path, why string) {
	if r.smoke {
		return "", "skipped in smoke (HAProxy runs in the full run only; smoke must not need it or root)"
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, ""
	}
	if os.Geteuid() != 0 {
		return "", "HAProxy is not installed and the bench is not root to install it (apt-get install haproxy)"
	}
	r.log.Info("installing HAProxy with apt-get")
	install := func() error {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ictx, "apt-get", "install", "-y", "-q", "haproxy")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, lastLines(string(out), 3))
		}
		return nil
	}
	if err := install(); err != nil {
		uctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		_ = exec.CommandContext(uctx, "apt-get", "update", "-q").Run()
		cancel()
		if err := install(); err != nil {
			return "", "apt-get install haproxy failed: " + err.Error()
		}
	}
	p, err := exec.LookPath("haproxy")
	if err != nil {
		return "", "haproxy not found after apt-get install"
	}
	r.rep.Notes = append(r.rep.Notes, "HAProxy was installed by the bench from Debian's package (apt-get install haproxy).")
	return p, ""
}

// startHAProxy runs HAProxy in TCP mode: each listen address forwards to
// its backend.
func (r *runner) startHAProxy(ctx context.Context, bin string, routes map[string]string) (*proc.Proc, error) {
	var b strings.Builder
	b.WriteString("global\n  maxconn 9000\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 5m\n  timeout server 5m\n\n")
	i := 0
	for listen, backend := range routes {
		fmt.Fprintf(&b, "listen r%d\n  bind %s\n  server s %s\n\n", i, listen, backend)
		i++
	}
	cfg := r.env.Dir + "/haproxy.cfg"
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write haproxy config: %w", err)
	}
	p, err := r.env.Procs.Start("haproxy", exec.Command(bin, "-db", "-f", cfg))
	if err != nil {
		return nil, err
	}
	for listen := range routes {
		if err := waitListening(ctx, listen, 10*time.Second); err != nil {
			return nil, fmt.Errorf("haproxy: %w\n%s", err, p.Tail(10))
		}
	}
	return p, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

func freeLocal() (string, error) {
	p, err := cluster.FreePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}
