package userspace

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// BenchmarkProxyThroughput moves the same bulk transfer straight to a
// backend and through the proxy in every iteration, on loopback, and
// reports both rates and their ratio (proxy/direct; 1.0 means the proxy
// costs nothing). Each iteration moves 2 × 8 MiB, so the run is bounded by
// -benchtime like any benchmark.
func BenchmarkProxyThroughput(b *testing.B) {
	const size = 8 << 20
	sink, err := net.Listen("tcp", net.JoinHostPort(freshIP(1), "0"))
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			go func() { // drain, then a one-byte ack so the sender knows all arrived
				defer c.Close()
				io.Copy(io.Discard, c)
				c.Write([]byte{1})
			}()
		}
	}()

	client := fake.NewClientset()
	p, err := New(Config{Client: client, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-p.Ready()

	cip := freshIP(96)
	sinkAddr := sink.Addr().(*net.TCPAddr)
	e := &env{ctx: ctx, client: client, p: p}
	if err := createBenchObjects(e, cip, sinkAddr); err != nil {
		b.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, testTimeout)
	defer wcancel()
	if err := p.WaitFor(wctx, func(s Status) bool { return len(s.Ports["default/bench:http"].Listeners) > 0 }); err != nil {
		b.Fatalf("service never became routable: %v", err)
	}

	chunk := make([]byte, 256<<10)
	transfer := func(addr string) time.Duration {
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		if ack, err := io.ReadAll(c); err != nil || len(ack) != 1 {
			b.Fatalf("ack: %v %v", ack, err)
		}
		return time.Since(start)
	}
	direct, proxied := time.Duration(0), time.Duration(0)
	svcAddr := clusterAddr(cip, 80)
	b.ResetTimer()
	for range b.N {
		direct += transfer(sink.Addr().String())
		proxied += transfer(svcAddr)
	}
	b.StopTimer()
	mb := float64(size) * float64(b.N) / 1e6
	directRate, proxyRate := mb/direct.Seconds(), mb/proxied.Seconds()
	b.ReportMetric(directRate, "direct-MB/s")
	b.ReportMetric(proxyRate, "proxy-MB/s")
	b.ReportMetric(proxyRate/directRate, "proxy/direct")
}

func createBenchObjects(e *env, cip string, sink *net.TCPAddr) error {
	svc := &v1.Service{}
	svc.Namespace, svc.Name = "default", "bench"
	svc.Spec = v1.ServiceSpec{ClusterIP: cip, ClusterIPs: []string{cip}, Type: v1.ServiceTypeClusterIP,
		Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}}}
	if _, err := e.client.CoreV1().Services("default").Create(e.ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	s := e.sliceObj("bench", "bench-1", slicePort("http", sink.Port, v1.ProtocolTCP), ready(sink.IP.String()))
	_, err := e.client.DiscoveryV1().EndpointSlices("default").Create(e.ctx, s, metav1.CreateOptions{})
	return err
}
