package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// inNetNSEnv marks a test binary that runs inside a network namespace its
// parent test created.
const inNetNSEnv = "BERTH_E2E_IN_NETNS"

// runInNewNetNS re-runs the calling test inside a fresh network namespace,
// so that the Kubernetes-style private ranges it uses (10.96.0.0/12 for
// Services, 10.244.0.0/16 for Pods) exist only there and no traffic leaves
// it. It returns true in the inner run, where the test body goes on; in the
// outer run it waits for the inner one and returns false.
func runInNewNetNS(t *testing.T) bool {
	t.Helper()
	if os.Getenv(inNetNSEnv) == "1" {
		out, err := exec.Command("ip", "-o", "link", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("ip link: %v %s", err, out)
		}
		if strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || !strings.Contains(string(out), " lo:") {
			t.Fatalf("refusing to run: this is not a fresh network namespace:\n%s", out)
		}
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set lo up: %v %s", err, out)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace for the netns pod network")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1) from util-linux to create a network namespace")
	}
	args := []string{"--net", "--", os.Args[0], "-test.run", "^" + t.Name() + "$", "-test.v", "-test.count=1"}
	if d, ok := t.Deadline(); ok {
		_ = d
		args = append(args, "-test.timeout=20m")
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), inNetNSEnv+"=1", "BERTH_BIN="+berthBin, "BERTH_ETCD_BIN="+etcdBin)
	out, err := cmd.CombinedOutput()
	t.Logf("inner run in a new network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("inner run failed: %v", err)
	}
	if strings.Contains(string(out), "--- SKIP") {
		t.Skip("inner run skipped")
	}
	return false
}
