package agent

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/berth-project/berth/internal/agent/runtime"
	"github.com/berth-project/berth/internal/agnhost"
)

// testRoot holds every test's state; its path is in the environment or
// command line of every process the tests start, so TestMain can prove
// that none is left behind.
var testRoot string

func TestMain(m *testing.M) {
	// The test binary doubles as berth: the container shim and the
	// built-in agnhost image.
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case ShimSubcommand:
			os.Exit(runtime.ShimMain(os.Args[2:]))
		case "agnhost":
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			err := agnhost.Main(ctx, os.Args[2:], os.Stdout, os.Stderr)
			stop()
			os.Exit(agnhost.ExitCode(err))
		}
	}
	// Under -race every process sleeps a second at exit by default; the
	// shims are this binary.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	klog.SetOutput(discard{})
	klog.LogToStderr(false)
	root, err := os.MkdirTemp("", "berth-agent-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testRoot = root
	code := m.Run()
	if left := waitNoLeftovers(root, 15*time.Second); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: processes left behind: %v\n", left)
		for _, p := range left {
			syscall.Kill(p, syscall.SIGKILL)
		}
		code = 1
	}
	os.RemoveAll(root)
	os.Exit(code)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// markedProcs lists live processes with mark in their environment or
// command line.
func markedProcs(mark string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(env), mark) || strings.Contains(string(cmd), mark) {
			out = append(out, pid)
		}
	}
	return out
}

func waitNoLeftovers(mark string, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := markedProcs(mark)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}
