package agent

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/berth-project/berth/internal/agent/server"
)

const (
	envNetNSInner = "BERTH_AGENT_NETNS_INNER"
	envNetNSUID   = "BERTH_AGENT_NETNS_UID"
)

// TestNetNSMode runs a pod in netns mode for real. Pod addresses come from
// 10.244.0.0/16 and a bridge is created, so the outer run re-executes the
// test binary in a network namespace of its own and the inner run does
// the work there; only the pod namespace's file in /run/netns is shared
// with the host, and the outer run removes it whatever happens.
func TestNetNSMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, a bridge and veth pairs")
	}
	if os.Getenv(envNetNSInner) == "1" {
		testNetNSInside(t, types.UID(os.Getenv(envNetNSUID)))
		return
	}
	uid := string(uuid.NewUUID())
	nsName := "berth-" + strings.ReplaceAll(uid, "-", "")[:12]
	t.Cleanup(func() {
		if _, err := os.Stat("/run/netns/" + nsName); err == nil {
			t.Errorf("pod namespace %s left behind", nsName)
			exec.Command("ip", "netns", "delete", nsName).Run()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestNetNSMode$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envNetNSInner+"=1", envNetNSUID+"="+uid)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	t.Logf("inner run in a private network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("inner run failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestNetNSMode") {
		t.Fatal("inner run did not pass")
	}
}

func testNetNSInside(t *testing.T, uid types.UID) {
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifaces) != 1 || ifaces[0].Name != "lo" {
		t.Fatalf("refusing to run: expected a fresh network namespace with only lo, found %d interfaces", len(ifaces))
	}
	// The fresh namespace's lo is down.
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v %s", err, out)
	}
	h := newHarness(t)
	h.modify = func(c *Config) { c.NetworkMode = "netns"; c.PodCIDR = "" }
	a := h.start()
	if a.net.Mode() != "netns" {
		t.Fatalf("mode %s", a.net.Mode())
	}
	p := agnhostPod("inns")
	p.UID = uid
	p = h.create(p)
	p = h.waitPod("inns", "Ready through the bridge", 40*time.Second, isReady)
	if !strings.HasPrefix(p.Status.PodIP, "10.244.") || p.Status.HostIP != "10.244.0.1" {
		t.Fatalf("pod IP %s host IP %s", p.Status.PodIP, p.Status.HostIP)
	}
	ref := server.ContainerRef{PodRef: server.PodRef{Namespace: "default", Name: "inns", UID: string(uid)}, Container: "netexec"}
	var out bytes.Buffer
	code, err := a.Exec(context.Background(), ref, []string{"/bin/sh", "-c", "grep -c eth0: /proc/net/dev; echo ${BERTH_BIND_ADDRESS:-unset}"}, nil, &out, &out)
	if err != nil || code != 0 || out.String() != "1\nunset\n" {
		t.Fatalf("exec in the pod's namespace: %d %v %q", code, err, out.String())
	}
	// Port-forward reaches the pod's port inside its namespace.
	client, srv := net.Pipe()
	done := make(chan error, 1)
	go func() {
		err := a.PortForward(context.Background(), ref.PodRef, 8080, srv)
		srv.Close() // as the streaming library closes the stream
		done <- err
	}()
	io.WriteString(client, "GET /hostname HTTP/1.0\r\n\r\n")
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, _ := io.ReadAll(client)
	client.Close()
	if !strings.HasSuffix(string(resp), "\r\n\r\ninns") {
		t.Fatalf("port-forward answer %q", resp)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.delete("inns")
	h.waitFor("pod removed", 20*time.Second, func() bool { _, err := h.get("inns"); return err != nil })
	h.waitFor("cleanup", 10*time.Second, func() bool { return len(podLeftovers(t, a, p)) == 0 })
	if _, err := os.Stat("/run/netns/berth-" + strings.ReplaceAll(string(uid), "-", "")[:12]); !os.IsNotExist(err) {
		t.Fatalf("pod namespace still there: %v", err)
	}
}
