package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// binaries built once per test run (or taken from BERTH_BIN / BERTH_ETCD_BIN).
var (
	berthBin string
	etcdBin  string
	kubectl  = "/usr/bin/kubectl"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	berthBin, etcdBin = os.Getenv("BERTH_BIN"), os.Getenv("BERTH_ETCD_BIN")
	if berthBin == "" {
		berthBin = filepath.Join(dir, "berth")
		if out, err := exec.Command("go", "build", "-o", berthBin, "../../cmd/berth").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build berth: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	if etcdBin == "" {
		etcdBin = filepath.Join(dir, "etcd")
		if out, err := exec.Command("go", "build", "-o", etcdBin, "../tools/etcd").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build etcd: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	if k := os.Getenv("KUBECTL"); k != "" {
		kubectl = k
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe for a process writing while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// server is one `berth server` process under test.
type server struct {
	t          testing.TB
	DataDir    string
	Port       int
	Kubeconfig string
	Args       []string
	cmd        *exec.Cmd
	done       chan struct{}
	log        *syncBuffer
	cacheDir   string
}

// startServer starts berth server in a fresh data dir with extra flags. Unless
// the flags say otherwise it uses the loopback pod network, whose 127.x
// ranges keep every address the test touches on this machine.
func startServer(t testing.TB, extra ...string) *server {
	t.Helper()
	if !hasFlag(extra, "--pod-network") {
		extra = append([]string{"--pod-network", "loopback"}, extra...)
	}
	if !hasFlag(extra, "--agent-port") {
		// Tests run servers side by side: let each agent pick a free port.
		extra = append([]string{"--agent-port", "0"}, extra...)
	}
	s := &server{t: t, DataDir: t.TempDir(), Port: freePort(t), Args: extra, cacheDir: t.TempDir()}
	s.Kubeconfig = filepath.Join(s.DataDir, "kubeconfig")
	s.start()
	t.Cleanup(s.shutdown)
	return s
}

// shutdown stops the server and then removes the pods it leaves running on
// purpose (for adoption by the next start): no test leaves a process or a
// network namespace behind.
func (s *server) shutdown() {
	s.Stop()
	out, err := exec.Command(berthBin, "cleanup", "--data-dir", s.DataDir).CombinedOutput()
	if err != nil {
		s.t.Errorf("berth cleanup: %v\n%s", err, out)
	}
}

func (s *server) start() {
	s.t.Helper()
	args := append([]string{"server", "--data-dir", s.DataDir, "--secure-port", strconv.Itoa(s.Port)}, s.Args...)
	s.cmd = exec.Command(berthBin, args...)
	s.log = &syncBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start berth server: %v", err)
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	s.waitReady()
}

func (s *server) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			s.t.Fatalf("berth server exited during start-up:\n%s", s.log.String())
		default:
		}
		if _, err := os.Stat(s.Kubeconfig); err == nil {
			if c, err := s.clientOrErr(); err == nil {
				if _, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background()); err == nil {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("berth server not ready after 60s:\n%s", s.log.String())
}

// Stop sends SIGTERM and waits; the agent and pods it started are its own
// business (tests that start pods check cleanup themselves).
func (s *server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("berth server did not stop within 30s of SIGTERM")
	}
}

// Kill9 kills the server process with SIGKILL, as a crash would.
func (s *server) Kill9() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// Restart stops (SIGTERM) and starts the server again on the same data dir and port.
func (s *server) Restart() {
	s.Stop()
	s.start()
}

func (s *server) restConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 500, 1000
	return cfg, nil
}

func (s *server) clientOrErr() (kubernetes.Interface, error) {
	cfg, err := s.restConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func (s *server) client() kubernetes.Interface {
	s.t.Helper()
	c, err := s.clientOrErr()
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// kubectl runs the real kubectl against the server.
func (s *server) kubectl(args ...string) (string, string, error) {
	return s.kubectlEnv(nil, "", args...)
}

func (s *server) kubectlEnv(env []string, stdin string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", s.Kubeconfig, "--cache-dir", s.cacheDir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// mustKubectl runs kubectl and fails the test on error.
func (s *server) mustKubectl(args ...string) string {
	s.t.Helper()
	out, errOut, err := s.kubectl(args...)
	if err != nil {
		s.t.Fatalf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s\nserver log (tail):\n%s", strings.Join(args, " "), err, out, errOut, tail(s.log.String(), 40))
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// eventually polls cond every 50ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeFile writes content to a temp file and returns its path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// examplesDir is the project's examples folder.
func examplesDir() string { return filepath.Join("..", "..", "examples") }

// startEtcd starts a separate etcd process on loopback and returns its client URL.
func startEtcd(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	cmd := exec.Command(etcdBin, "--name", "e2e", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "e2e="+peer, "--log-level", "error")
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	eventually(t, 30*time.Second, "etcd to listen", func() (bool, string) {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(client, "http://"), time.Second)
		if err != nil {
			return false, err.Error() + "\n" + log.String()
		}
		c.Close()
		return true, ""
	})
	return client
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}
