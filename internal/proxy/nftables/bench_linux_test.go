//go:build linux

package nftables

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// benchResult caches the child's metrics: the testing package may call a
// benchmark function several times, the namespace run must happen once.
var benchResult struct {
	once    sync.Once
	metrics map[string]float64
	err     string
}

var metricRE = regexp.MustCompile(`([0-9.]+) (ns/op|direct-MB/s|nft-MB/s|nft/direct)`)

// BenchmarkNFTablesThroughput moves the same bulk TCP transfer straight to
// a sink and through the proxy's DNAT (client -> cluster IP -> sink) in
// every iteration, inside a private network namespace, and reports both
// rates and their ratio (nft/direct; 1.0 means the DNAT costs nothing).
// Each iteration moves 2 x 8 MiB; -benchtime bounds it (3x by default in
// the namespace).
func BenchmarkNFTablesThroughput(b *testing.B) {
	if os.Getenv(envParentNetns) != "" {
		runThroughput(b)
		return
	}
	benchResult.once.Do(func() {
		out := captureNetnsRun(b)
		benchResult.metrics = map[string]float64{}
		for _, line := range strings.Split(out, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "BenchmarkNFTablesThroughput") {
				continue
			}
			for _, m := range metricRE.FindAllStringSubmatch(line, -1) {
				if v, err := strconv.ParseFloat(m[1], 64); err == nil {
					benchResult.metrics[m[2]] = v
				}
			}
		}
		if len(benchResult.metrics) < 4 {
			benchResult.err = "no metrics in the namespace run:\n" + out
		}
	})
	if benchResult.err != "" {
		b.Fatal(benchResult.err)
	}
	for unit, v := range benchResult.metrics {
		b.ReportMetric(v, unit)
	}
}

// captureNetnsRun runs this benchmark in a new namespace and returns what
// it printed.
func captureNetnsRun(b *testing.B) string {
	var out strings.Builder
	runInNewNetns(b, "BenchmarkNFTablesThroughput", "-test.bench", &out)
	return out.String()
}

// benchEnv is the namespace's node, sink and proxier, set up once per
// child process (the testing package calls the benchmark once per b.N it
// tries) and left running until the process, and with it the namespace,
// ends.
var benchEnv struct {
	once     sync.Once
	sinkAddr string
}

func setupThroughput(b *testing.B) {
	if !insideTestNetns(b) {
		b.Fatal("not in the benchmark's network namespace")
	}
	setupNode(b, 0)
	sink, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		b.Fatal(err)
	}
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
	go func() { _ = p.Run(context.Background()) }()
	<-p.Ready()
	api := apiObjects{t: b, ctx: context.Background(), client: client}
	sinkPort := int32(sink.Addr().(*net.TCPAddr).Port)
	api.createService(service("bench", "10.96.0.100", []v1.ServicePort{port("http", v1.ProtocolTCP, 80)}))
	api.applySlice(slice("bench", "bench-1", "http", v1.ProtocolTCP, sinkPort, readyEPs("127.0.0.2")...))
	waitStatus(b, p, "bench service", func(s Status) bool { return len(s.Ports["default/bench:http"].Endpoints) == 1 })
	benchEnv.sinkAddr = sink.Addr().String()
}

func runThroughput(b *testing.B) {
	const size = 8 << 20
	benchEnv.once.Do(func() { setupThroughput(b) })
	if benchEnv.sinkAddr == "" {
		b.Fatal("benchmark setup failed")
	}

	chunk := make([]byte, 256<<10)
	transfer := func(addr string) time.Duration {
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Minute))
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
	var direct, nat time.Duration
	b.ResetTimer()
	for range b.N {
		direct += transfer(benchEnv.sinkAddr)
		nat += transfer("10.96.0.100:80")
	}
	b.StopTimer()
	mb := float64(size) * float64(b.N) / 1e6
	directRate, natRate := mb/direct.Seconds(), mb/nat.Seconds()
	b.ReportMetric(directRate, "direct-MB/s")
	b.ReportMetric(natRate, "nft-MB/s")
	b.ReportMetric(natRate/directRate, "nft/direct")
}
