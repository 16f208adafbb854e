package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// agnhostPod is a netexec pod manifest; extra is appended to metadata.labels.
func agnhostPod(name, labels string, port int, portName string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels: {%s}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: web
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: ["netexec", "--http-port=%d"]
    ports: [{name: %s, containerPort: %d}]
    readinessProbe:
      httpGet: {path: /readyz, port: %d}
      periodSeconds: 1
---
`, name, labels, port, portName, port, port)
}

func TestServiceBehaviour(t *testing.T) {
	s := startServer(t, "--pod-network", "loopback")
	// Two pods serving the same named port on different numbers: the
	// Service's named targetPort resolves per pod.
	manifest := agnhostPod("web-a", "app: web", 3000, "web") + agnhostPod("web-b", "app: web", 3001, "web") + `apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: web}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 8081, targetPort: web}]
---
apiVersion: v1
kind: Service
metadata: {name: web-sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{name: http, port: 8082, targetPort: web}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: nobody}
  ports: [{name: http, port: 8083, targetPort: 80}]
`
	s.mustKubectl("apply", "-f", writeFile(t, "svc.yaml", manifest))
	waitPodsReady(t, s, "web-a", "web-b")

	clusterIP := func(svc string) string { return s.mustKubectl("get", "svc", svc, "-o", "jsonpath={.spec.clusterIP}") }
	both := func(addr string) {
		t.Helper()
		eventually(t, 20*time.Second, "both pods behind "+addr, func() (bool, string) {
			seen := hostnames(t, addr, 20)
			return seen["web-a"] > 0 && seen["web-b"] > 0 && seen[""] == 0, fmt.Sprint(seen)
		})
	}

	t.Run("NamedTargetPortAndClusterIP", func(t *testing.T) {
		both(net.JoinHostPort(clusterIP("web-np"), "80"))
	})
	t.Run("NodePort", func(t *testing.T) {
		np := s.mustKubectl("get", "svc", "web-np", "-o", "jsonpath={.spec.ports[0].nodePort}")
		both(net.JoinHostPort("127.0.0.1", np))
	})
	t.Run("LoadBalancer", func(t *testing.T) {
		var ip string
		eventually(t, 20*time.Second, "an EXTERNAL-IP for web-lb", func() (bool, string) {
			ip = s.mustKubectl("get", "svc", "web-lb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
			return ip != "", s.mustKubectl("get", "svc", "web-lb")
		})
		if out := s.mustKubectl("get", "svc", "web-lb"); !strings.Contains(out, ip) {
			t.Errorf("kubectl get svc does not show EXTERNAL-IP %s:\n%s", ip, out)
		}
		both(net.JoinHostPort(ip, "8081"))
	})
	t.Run("SessionAffinity", func(t *testing.T) {
		addr := net.JoinHostPort(clusterIP("web-sticky"), "8082")
		eventually(t, 20*time.Second, "web-sticky to answer", func() (bool, string) {
			_, err := tryHostname(addr)
			return err == nil, fmt.Sprint(err)
		})
		seen := hostnames(t, addr, 30)
		if len(seen) != 1 || seen[""] > 0 {
			t.Fatalf("sessionAffinity ClientIP: one client reached %v", seen)
		}
	})
	t.Run("NoEndpointsRefusedAtOnce", func(t *testing.T) {
		addr := net.JoinHostPort(clusterIP("nobody"), "8083")
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("a Service without endpoints accepted a connection")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: %v, want connection refused", addr, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("refusal took %s; it should be immediate", d)
		}
	})
	t.Run("RelabelOutOfSelector", func(t *testing.T) {
		addr := net.JoinHostPort(clusterIP("web-np"), "80")
		s.mustKubectl("label", "pod", "web-b", "app=elsewhere", "--overwrite")
		eventually(t, 20*time.Second, "only web-a behind "+addr, func() (bool, string) {
			seen := hostnames(t, addr, 20)
			return seen["web-a"] == 20, fmt.Sprint(seen)
		})
		s.mustKubectl("label", "pod", "web-b", "app=web", "--overwrite")
		both(addr)
	})
	t.Run("AllPodsGoneRefused", func(t *testing.T) {
		addr := net.JoinHostPort(clusterIP("web-np"), "80")
		s.mustKubectl("delete", "pod", "web-a", "web-b", "--wait=true")
		eventually(t, 20*time.Second, addr+" to refuse connections", func() (bool, string) {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err == nil {
				c.Close()
				return false, "accepted"
			}
			return errors.Is(err, syscall.ECONNREFUSED), err.Error()
		})
	})
}

// TestZeroDowntimeReplacement replaces every pod behind a Service one at a
// time (new pod Ready, then old pod deleted) under a bounded load of 200
// requests per second, and expects no failed request.
func TestZeroDowntimeReplacement(t *testing.T) {
	s := startServer(t, "--pod-network", "loopback")
	manifest := agnhostPod("gen1-a", "app: rolling", 3000, "http") + agnhostPod("gen1-b", "app: rolling", 3000, "http") + `apiVersion: v1
kind: Service
metadata: {name: rolling}
spec:
  selector: {app: rolling}
  ports: [{name: http, port: 8080, targetPort: http}]
`
	s.mustKubectl("apply", "-f", writeFile(t, "rolling.yaml", manifest))
	waitPodsReady(t, s, "gen1-a", "gen1-b")
	addr := net.JoinHostPort(s.mustKubectl("get", "svc", "rolling", "-o", "jsonpath={.spec.clusterIP}"), "8080")
	eventually(t, 20*time.Second, "both pods behind the service", func() (bool, string) {
		seen := hostnames(t, addr, 20)
		return seen["gen1-a"] > 0 && seen["gen1-b"] > 0, fmt.Sprint(seen)
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *loadResult)
	go func() { done <- runLoad(ctx, addr, 200, 20*time.Second) }()
	for _, pair := range [][2]string{{"gen1-a", "gen2-a"}, {"gen1-b", "gen2-b"}} {
		time.Sleep(2 * time.Second)
		s.mustKubectl("apply", "-f", writeFile(t, pair[1]+".yaml", agnhostPod(pair[1], "app: rolling", 3000, "http")))
		waitPodsReady(t, s, pair[1])
		s.mustKubectl("delete", "pod", pair[0], "--wait=false")
	}
	res := <-done
	t.Logf("load during replacement: %d ok, %d failed, answered by %v", res.ok.Load(), res.failed.Load(), res.hosts)
	if res.failed.Load() > 0 {
		t.Fatalf("%d requests failed during the replacement: %v", res.failed.Load(), res.errs)
	}
	final := hostnames(t, addr, 20)
	if final["gen2-a"] == 0 || final["gen2-b"] == 0 || final["gen1-a"] > 0 || final["gen1-b"] > 0 {
		t.Fatalf("after the replacement the service is answered by %v", final)
	}
}
