//go:build linux

package nftables

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// envParentNetns tells a re-executed test binary that it runs in a network
// namespace its parent created, and names the parent's namespace so the
// child can refuse to run if that ever failed.
const envParentNetns = "BERTH_NFT_TEST_PARENT_NETNS"

// inNetns runs the calling test (named by name) in a brand-new network
// namespace. Called in the outer process it re-executes the test binary
// with CLONE_NEWNET, relays its output and returns false: the caller
// returns at once. Called in that child it checks the namespace is fresh
// (only lo, not the parent's) and returns true: the caller does the work,
// which can then never touch the host's ruleset, interfaces or sysctls.
func inNetns(t *testing.T, name, flag string) bool {
	t.Helper()
	if insideTestNetns(t) {
		return true
	}
	var out strings.Builder
	runInNewNetns(t, name, flag, &out)
	t.Logf("run in a private network namespace:\n%s", out.String())
	if !strings.Contains(out.String(), "--- PASS: "+name) {
		t.Fatalf("%s did not run to a pass in the new namespace", name)
	}
	return false
}

// insideTestNetns reports whether this process is the re-executed child,
// and fails if its namespace is not the fresh one it should be.
func insideTestNetns(tb testing.TB) bool {
	tb.Helper()
	parent := os.Getenv(envParentNetns)
	if parent == "" {
		return false
	}
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		tb.Fatalf("read own network namespace: %v", err)
	}
	if self == parent {
		tb.Fatalf("refusing to run: still in the parent's network namespace %s", self)
	}
	links, err := netlink.LinkList()
	if err != nil {
		tb.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		tb.Fatalf("refusing to run: expected a fresh network namespace with only lo, found %d links", len(links))
	}
	return true
}

// runInNewNetns re-executes the test binary for one test or benchmark
// (flag "-test.run" or "-test.bench") in a new network namespace, which
// dies with the child, and copies the child's output to out. It skips when
// not root and fails when the child fails.
func runInNewNetns(tb testing.TB, name, flag string, out io.Writer) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: programs nftables inside a new network namespace")
	}
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		tb.Fatalf("read own network namespace: %v", err)
	}
	args := []string{flag + "=^" + name + "$", "-test.v", "-test.count=1"}
	if flag == "-test.bench" {
		benchtime := "-test.benchtime=3x"
		for _, a := range os.Args[1:] {
			if strings.HasPrefix(a, "-test.benchtime=") {
				benchtime = a
			}
		}
		args = append(args, "-test.run=^$", benchtime)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), envParentNetns+"="+self)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		tb.Logf("child output:\n%s", out)
		tb.Fatalf("%s in a new network namespace: %v", name, err)
	}
}
