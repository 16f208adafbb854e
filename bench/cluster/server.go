package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/berth-project/berth/bench/proc"
)

// Env is what every server of a run shares.
type Env struct {
	// Berth, Kubectl and Etcd are the binaries.
	Berth, Kubectl, Etcd string
	// Dir holds data dirs and logs; the run removes it.
	Dir   string
	Procs *proc.Group
	Log   *slog.Logger
	// ServerArgs are given to every berth server, before its own.
	ServerArgs []string
}

// DefaultServerArgs are the flags every benchmark server gets: address
// ranges of their own in 127.0.0.0/8 (so that other berth servers on the
// machine, with the default ranges, never collide with the bench's pods
// and services) and any free port for the node agent, when the binary
// has these flags.
func DefaultServerArgs(ctx context.Context, berth string) []string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	help, _ := exec.CommandContext(ctx, berth, "server", "--help").CombinedOutput()
	args := []string{"--pod-network", "loopback", "--pod-cidr", "127.246.0.0/16", "--service-cidr", "127.97.0.0/16", "--lb-pool", "127.251.0.0/24"}
	if bytes.Contains(help, []byte("--agent-port")) {
		args = append(args, "--agent-port", "0")
	}
	return args
}

// Server is one berth server data dir and the process serving it, if any.
type Server struct {
	env        *Env
	Name       string
	DataDir    string
	Kubeconfig string
	Port       int
	// Args are extra flags (after --data-dir, --secure-port).
	Args []string

	Proc   *proc.Proc
	Config *rest.Config
	Client kubernetes.Interface
	// http talks to /readyz and /metrics with the admin credentials.
	http     *http.Client
	cacheDir string
}

// NewServer prepares a server with a fresh data dir; Start runs it. It gets
// the Env's ServerArgs unless args set the same flags: by default the
// loopback pod network, so that every address it hands out is in
// 127.0.0.0/8.
func (e *Env) NewServer(name string, args ...string) (*Server, error) {
	var base []string
	for i := 0; i+1 < len(e.ServerArgs); i += 2 {
		if !hasFlag(args, e.ServerArgs[i]) {
			base = append(base, e.ServerArgs[i], e.ServerArgs[i+1])
		}
	}
	args = append(base, args...)
	dir, err := os.MkdirTemp(e.Dir, name+"-")
	if err != nil {
		return nil, fmt.Errorf("data dir for %s: %w", name, err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return &Server{env: e, Name: name, DataDir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig"), Port: port, Args: args, cacheDir: filepath.Join(dir, "kube-cache")}, nil
}

// StartTiming says how long a start took.
type StartTiming struct {
	// Ready is from the exec to the first /readyz that answered 200.
	Ready time.Duration
}

// Start runs berth server on the data dir and waits (up to 90s) for
// /readyz. The server's extra args can be changed between starts.
func (s *Server) Start(ctx context.Context) (StartTiming, error) {
	if s.Proc != nil && !s.Proc.Exited() {
		return StartTiming{}, fmt.Errorf("server %s is already running", s.Name)
	}
	args := append([]string{"server", "--data-dir", s.DataDir, "--secure-port", strconv.Itoa(s.Port), "--log-level", "warn"}, s.Args...)
	cmd := exec.Command(s.env.Berth, args...)
	p, err := s.env.Procs.Start(s.Name, cmd)
	if err != nil {
		return StartTiming{}, err
	}
	s.Proc = p
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	// A warm start has its credentials already: build the client before
	// the exec's clock matters. A first start waits for the kubeconfig.
	for s.http == nil {
		if err := s.loadClient(); err == nil {
			break
		}
		if err := s.waitTick(ctx, 10*time.Millisecond); err != nil {
			return StartTiming{}, err
		}
	}
	for {
		if s.readyz(ctx) == nil {
			t := StartTiming{Ready: time.Since(p.Started)}
			// Fresh clients: the old ones hold connections to the last process.
			if err := s.loadClient(); err != nil {
				return t, err
			}
			return t, nil
		}
		if err := s.waitTick(ctx, 2*time.Millisecond); err != nil {
			return StartTiming{}, err
		}
	}
}

func (s *Server) waitTick(ctx context.Context, d time.Duration) error {
	select {
	case <-s.Proc.Done():
		return fmt.Errorf("berth server %s exited during start-up: %v\n%s", s.Name, s.Proc.Err(), s.Proc.Tail(30))
	case <-ctx.Done():
		return fmt.Errorf("berth server %s not ready: %w\n%s", s.Name, ctx.Err(), s.Proc.Tail(30))
	case <-time.After(d):
		return nil
	}
}

// loadClient builds the clients from the kubeconfig. Each gets a dialer of
// its own, which keeps client-go from sharing a cached transport (and its
// dead connections) across restarts.
func (s *Server) loadClient() error {
	if _, err := os.Stat(s.Kubeconfig); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 2000, 4000
	cfg.Timeout = 60 * time.Second
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.Dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client for %s: %w", s.Name, err)
	}
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return fmt.Errorf("TLS config for %s: %w", s.Name, err)
	}
	s.Config, s.Client = cfg, client
	s.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   tlsCfg.Clone(),
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{Timeout: time.Second}).DialContext,
	}}
	return nil
}

// Restarted rebuilds the clients (after a restart their connections are dead).
func (s *Server) Restarted() error {
	s.http = nil
	return s.loadClient()
}

// URL is the API server's base URL.
func (s *Server) URL() string { return "https://127.0.0.1:" + strconv.Itoa(s.Port) }

func (s *Server) readyz(ctx context.Context) error {
	_, err := s.Get(ctx, "/readyz")
	return err
}

// Get fetches path from the API server with the admin credentials.
func (s *Server) Get(ctx context.Context, path string) ([]byte, error) {
	if s.http == nil {
		return nil, errors.New("no client yet")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, nil
}

// Stop stops the server with SIGTERM (SIGKILL to its group after 30s) and
// reports whether it stopped in time. Pods keep running (the agent's
// containers outlive it), as they would for a real restart.
func (s *Server) Stop() bool {
	if s.Proc == nil {
		return true
	}
	return s.Proc.Stop(syscall.SIGTERM, 30*time.Second)
}

// Kill9 kills the server process alone with SIGKILL.
func (s *Server) Kill9() {
	if s.Proc != nil {
		s.Proc.Kill9()
	}
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.Proc.Pid() }

// RSS is the server process's resident set size in bytes.
func (s *Server) RSS() (int64, error) { return proc.RSS(s.Pid()) }

// Metrics scrapes /metrics. Each metric name maps to the sum of its series.
func (s *Server) Metrics(ctx context.Context) (map[string]float64, error) {
	body, err := s.Get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	return ParseMetrics(body), nil
}

// ParseMetrics reads the Prometheus text format, summing the series of each
// name (labels are dropped).
func ParseMetrics(body []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out
}

// Kubectl runs kubectl against the server (bounded by ctx and 5 minutes).
func (s *Server) Kubectl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.env.Kubectl, s.KubectlArgs(args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// KubectlArgs prefixes args with the server's kubeconfig and cache dir.
func (s *Server) KubectlArgs(args ...string) []string {
	return append([]string{"--kubeconfig", s.Kubeconfig, "--cache-dir", s.cacheDir}, args...)
}

// StartKubectl starts a long-running kubectl (port-forward) in the run's
// process group.
func (s *Server) StartKubectl(name string, args ...string) (*proc.Proc, error) {
	return s.env.Procs.Start(name, exec.Command(s.env.Kubectl, s.KubectlArgs(args...)...))
}

// StartForward starts `berth forward` against the server.
func (s *Server) StartForward(name string, args ...string) (*proc.Proc, error) {
	return s.env.Procs.Start(name, exec.Command(s.env.Berth, append([]string{"forward", "--kubeconfig", s.Kubeconfig, "--log-level", "warn"}, args...)...))
}

// Close deletes every Pod (so the agent stops their processes), stops the
// server and removes nothing else: the run's directory goes at the end.
func (s *Server) Close(ctx context.Context) {
	if s.Proc == nil || s.Proc.Exited() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if err := DeleteAllPods(ctx, s.Client); err != nil {
		s.env.Log.Warn("delete pods before stopping the server", "server", s.Name, "err", err)
	}
	if !s.Stop() {
		s.env.Log.Warn("berth server did not stop within 30s of SIGTERM", "server", s.Name)
	}
}

// DeleteAllPods deletes the Deployments, ReplicaSets and Pods of every
// namespace (owners first, so nothing recreates the pods) and waits
// (bounded by ctx) until the pods are gone.
func DeleteAllPods(ctx context.Context, c kubernetes.Interface) error {
	if ds, err := c.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, metav1.ListOptions{}); err == nil {
		for _, d := range ds.Items {
			_ = c.AppsV1().Deployments(d.Namespace).Delete(ctx, d.Name, metav1.DeleteOptions{})
		}
	}
	if rs, err := c.AppsV1().ReplicaSets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{}); err == nil {
		for _, r := range rs.Items {
			_ = c.AppsV1().ReplicaSets(r.Namespace).Delete(ctx, r.Name, metav1.DeleteOptions{})
		}
	}
	pods, err := c.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	if len(pods.Items) == 0 {
		return nil
	}
	for _, p := range pods.Items {
		_ = c.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
	}
	for {
		pods, err := c.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err == nil && len(pods.Items) == 0 {
			return nil
		}
		if err == nil {
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil {
					_ = c.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
				}
			}
		}
		select {
		case <-ctx.Done():
			n := -1
			if pods != nil {
				n = len(pods.Items)
			}
			return fmt.Errorf("%d pods still there: %w", n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// TLSConfig is the admin client's TLS configuration.
func (s *Server) TLSConfig() (*tls.Config, error) { return rest.TLSConfigFor(s.Config) }

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}
