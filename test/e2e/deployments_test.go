package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const webDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: ["netexec", "--http-port=3000"]
        ports: [{name: http, containerPort: 3000}]
        readinessProbe:
          httpGet: {path: /readyz, port: 3000}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
`

// readyPods returns the names of the Deployment's pods that are Ready and
// not terminating.
func readyPods(t *testing.T, s *server, selector string) []string {
	t.Helper()
	out := s.mustKubectl("get", "pods", "-l", selector, "-o",
		`jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{""}{end}{range .items[*]}{.metadata.name} {.metadata.deletionTimestamp} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[1] == "True" {
			names = append(names, f[0])
		}
	}
	return names
}

func waitReplicas(t *testing.T, s *server, n int) {
	t.Helper()
	eventually(t, 90*time.Second, fmt.Sprintf("%d ready replicas", n), func() (bool, string) {
		out := s.mustKubectl("get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas} {.status.replicas} {.status.updatedReplicas}")
		pods := readyPods(t, s, "app=web")
		return out == fmt.Sprintf("%d %d %d", n, n, n) && len(pods) == n, out + " " + strings.Join(pods, ",")
	})
}

func TestDeployments(t *testing.T) {
	s := startServer(t, "--pod-network", "loopback")
	s.mustKubectl("apply", "-f", writeFile(t, "web.yaml", webDeployment))
	waitReplicas(t, s, 3)
	if out := s.mustKubectl("get", "deploy", "web"); !strings.Contains(out, "3/3") || !strings.Contains(out, "UP-TO-DATE") {
		t.Errorf("kubectl get deploy:\n%s", out)
	}
	if out := s.mustKubectl("get", "rs"); !strings.Contains(out, "DESIRED") || !strings.Contains(out, "web-") {
		t.Errorf("kubectl get rs:\n%s", out)
	}
	if out := s.mustKubectl("rollout", "status", "deploy/web", "--timeout=60s"); !strings.Contains(out, "successfully rolled out") {
		t.Errorf("rollout status: %s", out)
	}
	addr := net.JoinHostPort(s.mustKubectl("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"), "80")

	t.Run("Scale", func(t *testing.T) {
		s.mustKubectl("scale", "deploy/web", "--replicas=5")
		waitReplicas(t, s, 5)
		s.mustKubectl("scale", "deploy/web", "--replicas=2")
		waitReplicas(t, s, 2)
		s.mustKubectl("scale", "deploy/web", "--replicas=3")
		waitReplicas(t, s, 3)
	})

	t.Run("ReplacementAfterKillAndDelete", func(t *testing.T) {
		pods := readyPods(t, s, "app=web")
		pid := containerPID(t, pods[0])
		if pid == 0 {
			t.Fatal("no process for", pods[0])
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		eventually(t, 60*time.Second, pods[0]+" to be restarted", func() (bool, string) {
			out := s.mustKubectl("get", "pod", pods[0], "-o", "jsonpath={.status.containerStatuses[0].restartCount}")
			return out == "1", out
		})
		s.mustKubectl("delete", "pod", pods[1], "--wait=false")
		eventually(t, 60*time.Second, "a replacement for "+pods[1], func() (bool, string) {
			now := readyPods(t, s, "app=web")
			for _, p := range now {
				if p == pods[1] {
					return false, strings.Join(now, ",")
				}
			}
			return len(now) == 3, strings.Join(now, ",")
		})
	})

	t.Run("RolloutRestartUnderLoad", func(t *testing.T) {
		before := readyPods(t, s, "app=web")
		fwdPort := freePort(t)
		startBerthForward(t, s, "svc/web", strconv.Itoa(fwdPort)+":80")
		fwdAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(fwdPort))
		eventually(t, 20*time.Second, "berth forward to answer", func() (bool, string) {
			_, err := tryHostname(fwdAddr)
			return err == nil, fmt.Sprint(err)
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		svcLoad := make(chan *loadResult)
		fwdLoad := make(chan *loadResult)
		go func() { svcLoad <- runLoad(ctx, addr, 200, 30*time.Second) }()
		go func() { fwdLoad <- runLoad(ctx, fwdAddr, 50, 30*time.Second) }()
		time.Sleep(2 * time.Second)
		start := time.Now()
		s.mustKubectl("rollout", "restart", "deploy/web")
		if out, errOut, err := s.kubectl("rollout", "status", "deploy/web", "--timeout=90s"); err != nil {
			t.Fatalf("rollout status: %v %s %s", err, out, errOut)
		}
		t.Logf("rollout of 3 replicas took %s", time.Since(start).Round(time.Millisecond))
		rs, rf := <-svcLoad, <-fwdLoad
		t.Logf("through the Service: %d ok, %d failed, answered by %v", rs.ok.Load(), rs.failed.Load(), rs.hosts)
		t.Logf("through berth forward: %d ok, %d failed, answered by %v", rf.ok.Load(), rf.failed.Load(), rf.hosts)
		if rs.failed.Load() > 0 {
			t.Errorf("%d requests through the Service failed during the rollout: %v", rs.failed.Load(), rs.errs)
		}
		if rf.failed.Load() > 0 {
			t.Errorf("%d requests through berth forward failed during the rollout: %v", rf.failed.Load(), rf.errs)
		}
		final := hostnames(t, addr, 30)
		for _, old := range before {
			if final[old] > 0 {
				t.Errorf("old pod %s still answers after the rollout: %v", old, final)
			}
		}
	})

	t.Run("HistoryUndoSetImage", func(t *testing.T) {
		if out := s.mustKubectl("rollout", "history", "deploy/web"); !strings.Contains(out, "REVISION") || !strings.Contains(out, "2") {
			t.Errorf("rollout history:\n%s", out)
		}
		s.mustKubectl("set", "image", "deploy/web", "web=registry.k8s.io/e2e-test-images/agnhost:2.52")
		s.mustKubectl("rollout", "status", "deploy/web", "--timeout=90s")
		if img := s.mustKubectl("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); img != "registry.k8s.io/e2e-test-images/agnhost:2.52" {
			t.Fatalf("set image: %s", img)
		}
		s.mustKubectl("rollout", "undo", "deploy/web")
		s.mustKubectl("rollout", "status", "deploy/web", "--timeout=90s")
		if img := s.mustKubectl("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); img != "registry.k8s.io/e2e-test-images/agnhost:2.53" {
			t.Fatalf("rollout undo: image %s", img)
		}
		waitReplicas(t, s, 3)
		if out := s.mustKubectl("describe", "deploy", "web"); !strings.Contains(out, "RollingUpdateStrategy") || !strings.Contains(out, "NewReplicaSet") {
			t.Errorf("describe deploy:\n%s", out)
		}
	})

	t.Run("CreateDeploymentCommand", func(t *testing.T) {
		s.mustKubectl("create", "deployment", "hello", "--image=registry.k8s.io/e2e-test-images/agnhost:2.53", "--replicas=2", "--", "/agnhost", "netexec", "--http-port=3300")
		eventually(t, 60*time.Second, "deployment hello ready", func() (bool, string) {
			out := s.mustKubectl("get", "deploy", "hello", "-o", "jsonpath={.status.readyReplicas}")
			return out == "2", out
		})
		s.mustKubectl("delete", "deploy", "hello")
	})

	t.Run("CascadeOrphanThenForeground", func(t *testing.T) {
		s.mustKubectl("create", "deployment", "keep", "--image=registry.k8s.io/e2e-test-images/agnhost:2.53", "--replicas=1", "--", "/agnhost", "netexec", "--http-port=3400")
		var rs string
		eventually(t, 60*time.Second, "deployment keep ready", func() (bool, string) {
			rs = strings.TrimSpace(s.mustKubectl("get", "rs", "-l", "app=keep", "-o", "name"))
			out := s.mustKubectl("get", "deploy", "keep", "-o", "jsonpath={.status.readyReplicas}")
			return out == "1" && rs != "", out + " " + rs
		})
		s.mustKubectl("delete", "deploy", "keep", "--cascade=orphan", "--wait=true")
		// The ReplicaSet and its pod stay, released by their gone owner.
		eventually(t, 30*time.Second, "the orphaned ReplicaSet to lose its owner", func() (bool, string) {
			out, _, err := s.kubectl("get", rs, "-o", "jsonpath={.metadata.ownerReferences}")
			return err == nil && strings.TrimSpace(out) == "", out
		})
		if p := readyPods(t, s, "app=keep"); len(p) != 1 {
			t.Fatalf("orphaned pods: %v", p)
		}
		s.mustKubectl("delete", rs, "--cascade=foreground", "--wait=true", "--timeout=60s")
		eventually(t, 60*time.Second, "the ReplicaSet's pods to be gone", func() (bool, string) {
			out := s.mustKubectl("get", "pods", "-l", "app=keep", "-o", "name")
			return strings.TrimSpace(out) == "", out
		})
	})

	t.Run("DeleteLeavesNothing", func(t *testing.T) {
		pods := readyPods(t, s, "app=web")
		s.mustKubectl("delete", "deploy", "web", "--wait=true")
		eventually(t, 60*time.Second, "no replicaset or pod of web", func() (bool, string) {
			rs := s.mustKubectl("get", "rs", "-o", "name")
			p := s.mustKubectl("get", "pods", "-l", "app=web", "-o", "name")
			return strings.TrimSpace(rs) == "" && strings.TrimSpace(p) == "", rs + p
		})
		for _, p := range pods {
			if pid := containerPID(t, p); pid != 0 {
				t.Errorf("process %d of deleted pod %s remains", pid, p)
			}
		}
	})
}
