package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSeedScenarioLoopback is the scenario berth exists for, in loopback mode.
func TestSeedScenarioLoopback(t *testing.T) {
	s := startServer(t, "--pod-network", "loopback")
	seedScenario(t, s, nil)
}

// TestSeedScenarioNetNS is the same scenario with a network namespace per
// pod and the 10.x ranges, inside a network namespace this test creates.
func TestSeedScenarioNetNS(t *testing.T) {
	if !runInNewNetNS(t) {
		return
	}
	s := startServer(t, "--pod-network", "netns")
	seedScenario(t, s, nil)
}

// TestSeedScenarioNFTables runs the scenario with the opt-in kernel proxy,
// in a network namespace this test creates (never on the host's ruleset).
func TestSeedScenarioNFTables(t *testing.T) {
	if !runInNewNetNS(t) {
		return
	}
	s := startServer(t, "--pod-network", "netns", "--proxy-mode", "nftables")
	seedScenario(t, s, func() {
		// This namespace has no default route, and a local connect() needs
		// a route before netfilter sees the packet: route the service
		// range to lo, with the bridge gateway as source so that replies
		// from pods come back (a host with a default route needs nothing).
		if out, err := exec.Command("ip", "route", "add", "10.96.0.0/12", "dev", "lo", "src", "10.244.0.1").CombinedOutput(); err != nil {
			t.Fatalf("ip route add: %v %s", err, out)
		}
	})
}

// seedScenario is the seed demo as a test. afterPods, when set, runs once
// the first pods are up (their bridge exists).
func seedScenario(t *testing.T, s *server, afterPods func()) {
	s.mustKubectl("apply", "-f", filepath.Join(examplesDir(), "pods.yaml"), "-f", filepath.Join(examplesDir(), "service.yaml"))
	waitPodsReady(t, s, "foo", "bar")
	if afterPods != nil {
		afterPods()
	}
	ip := s.mustKubectl("get", "svc", "demo", "-o", "jsonpath={.spec.clusterIP}")
	port := s.mustKubectl("get", "svc", "demo", "-o", "jsonpath={.spec.ports[0].port}")
	if ip == "" || port != "8080" {
		t.Fatalf("service demo: clusterIP %q port %q", ip, port)
	}
	addr := net.JoinHostPort(ip, port)
	eventually(t, 20*time.Second, "both pods behind "+addr, func() (bool, string) {
		seen := hostnames(t, addr, 20)
		return seen["foo"] > 0 && seen["bar"] > 0, fmt.Sprint(seen)
	})

	// kubectl port-forward ties a local port to pod foo.
	pf := startPortForward(t, s, "pod/foo", "3000")
	if got := getHostname(t, pf.addr); got != "foo" {
		t.Fatalf("port-forward to pod/foo answered %q", got)
	}

	// Replace foo with baz.
	s.mustKubectl("delete", "pod", "foo", "--wait=true")
	s.mustKubectl("apply", "-f", filepath.Join(examplesDir(), "replacement.yaml"))
	waitPodsReady(t, s, "baz")
	eventually(t, 20*time.Second, "bar and baz, and no foo, behind "+addr, func() (bool, string) {
		seen := hostnames(t, addr, 20)
		return seen["bar"] > 0 && seen["baz"] > 0 && seen["foo"] == 0 && seen[""] == 0, fmt.Sprint(seen)
	})
	if ip2 := s.mustKubectl("get", "svc", "demo", "-o", "jsonpath={.spec.clusterIP}"); ip2 != ip {
		t.Fatalf("the Service's IP changed: %s -> %s", ip, ip2)
	}

	// The pod-bound forward broke with its pod.
	if got, err := tryHostname(pf.addr); err == nil {
		t.Fatalf("port-forward to the deleted pod foo still answers: %q", got)
	}
	pf.stop()
	t.Logf("kubectl port-forward pod/foo after foo was deleted: %s", strings.TrimSpace(tail(pf.out.String(), 5)))
}

// waitPodsReady waits until each pod is Running with all containers ready.
func waitPodsReady(t *testing.T, s *server, names ...string) {
	t.Helper()
	for _, n := range names {
		eventually(t, 60*time.Second, "pod "+n+" to be Ready", func() (bool, string) {
			out, errOut, err := s.kubectl("get", "pod", n, "-o", `jsonpath={.status.phase} {.status.conditions[?(@.type=="Ready")].status}`)
			return err == nil && out == "Running True", out + errOut + "\n" + tail(s.log.String(), 10)
		})
	}
}

var httpClient = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// tryHostname asks agnhost netexec at addr for its hostname.
func tryHostname(addr string) (string, error) {
	resp, err := httpClient.Get("http://" + addr + "/hostname")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return strings.TrimSpace(string(b)), nil
}

func getHostname(t *testing.T, addr string) string {
	t.Helper()
	var last error
	for i := 0; i < 50; i++ {
		h, err := tryHostname(addr)
		if err == nil {
			return h
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET http://%s/hostname: %v", addr, last)
	return ""
}

// hostnames sends n requests (one connection each) and counts who answered;
// failures count under "".
func hostnames(t *testing.T, addr string, n int) map[string]int {
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		h, err := tryHostname(addr)
		if err != nil {
			h = ""
		}
		seen[h]++
	}
	return seen
}

type portForward struct {
	cmd  *exec.Cmd
	addr string
	out  *syncBuffer
	done chan struct{}
}

func (p *portForward) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startPortForward runs kubectl port-forward TARGET LOCAL:REMOTE on a free
// local port and waits until it says it is forwarding.
func startPortForward(t *testing.T, s *server, target string, remote ...string) *portForward {
	t.Helper()
	var ports []string
	var first int
	for i, r := range remote {
		p := freePort(t)
		if i == 0 {
			first = p
		}
		ports = append(ports, strconv.Itoa(p)+":"+r)
	}
	args := append([]string{"--kubeconfig", s.Kubeconfig, "--cache-dir", s.cacheDir, "port-forward", target}, ports...)
	pf := &portForward{cmd: exec.Command(kubectl, args...), addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(first)), out: &syncBuffer{}, done: make(chan struct{})}
	pf.cmd.Stdout, pf.cmd.Stderr = pf.out, pf.out
	if err := pf.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = pf.cmd.Wait(); close(pf.done) }()
	t.Cleanup(pf.stop)
	eventually(t, 20*time.Second, "kubectl port-forward to start", func() (bool, string) {
		return strings.Count(pf.out.String(), "Forwarding from 127.0.0.1") >= len(remote), pf.out.String()
	})
	return pf
}

// loadResult counts what a bounded request loop saw.
type loadResult struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	hosts      map[string]int
	errs       []string
}

// runLoad sends rate requests per second to addr for d (bounded in count and
// time), each on a new connection, until stop is closed or d passes.
func runLoad(ctx context.Context, addr string, rate int, d time.Duration) *loadResult {
	res := &loadResult{hosts: map[string]int{}}
	interval := time.Second / time.Duration(rate)
	total := int(d / interval)
	var wg sync.WaitGroup
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; i < total; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return res
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := tryHostname(addr)
			res.mu.Lock()
			defer res.mu.Unlock()
			if err != nil {
				res.failed.Add(1)
				if len(res.errs) < 10 {
					res.errs = append(res.errs, err.Error())
				}
				return
			}
			res.ok.Add(1)
			res.hosts[h]++
		}()
	}
	wg.Wait()
	return res
}

// readLines is a helper for scanning process output.
func readLines(r io.Reader) []string {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
