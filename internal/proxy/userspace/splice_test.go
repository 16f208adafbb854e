package userspace

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

const spliceHelperEnv = "BERTH_PROXY_SPLICE_HELPER"

// TestZeroCopySplice checks that proxied TCP bytes move with splice(2): it
// re-runs itself under strace, pushes 1 MiB each way through the proxy,
// and counts splice calls that moved data. The helper's own client and
// backend use plain read/write, so every splice in the trace is the
// proxy's.
func TestZeroCopySplice(t *testing.T) {
	if os.Getenv(spliceHelperEnv) != "" {
		spliceHelper(t)
		return
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("needs strace: traces the splice(2) calls of a proxied transfer")
	}
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-qq", "-e", "trace=splice", "-e", "signal=none", "-o", trace,
		os.Args[0], "-test.run=^TestZeroCopySplice$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), spliceHelperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper under strace: %v\n%s", err, out)
	}
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	moved := regexp.MustCompile(`(?m)splice\(.*\) = [1-9][0-9]*$`).FindAll(data, -1)
	t.Logf("%d splice calls moved data", len(moved))
	if len(moved) == 0 {
		t.Fatalf("no splice(2) call moved data; trace:\n%s", data)
	}
}

func spliceHelper(t *testing.T) {
	e := newEnv(t, nil)
	ip := freshIP(1)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 32<<10)
		for { // plain echo: no io.Copy, so no splice of its own
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	cip := freshIP(96)
	e.createService("web", cip)
	e.createSlice(e.sliceObj("web", "web-1", slicePort("http", port, v1.ProtocolTCP), ready(ip)))
	e.waitEndpoints("default/web:http", ln.Addr().String())

	c, err := net.Dial("tcp", clusterAddr(cip, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	go func() {
		for off := 0; off < len(payload); off += 32 << 10 {
			if _, err := c.Write(payload[off : off+32<<10]); err != nil {
				return
			}
		}
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := readAllPlain(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echoed %d bytes, want %d", len(got), len(payload))
	}
}

func readAllPlain(c net.Conn) ([]byte, error) {
	var out []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}
