package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/klog/v2"
)

// klogOutput collects what the Kubernetes libraries log: client-go reports
// a failed port-forward connection through klog. klog's logger may only be
// set before anything logs.
var klogOutput syncBuffer

func TestMain(m *testing.M) {
	klog.SetSlogLogger(slog.New(slog.NewTextHandler(&klogOutput, nil)))
	os.Exit(m.Run())
}

// testCA is a CA with a client certificate it signed.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool
	certPEM []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// client returns PEM cert and key of a client certificate signed by ca.
func (ca *testCA) client(t *testing.T, name string) ([]byte, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

type fakeBackend struct {
	mu       sync.Mutex
	logPath  string
	execs    [][]string
	echoAddr string
}

func (b *fakeBackend) ContainerLog(_ context.Context, c ContainerRef, previous bool) (LogFile, error) {
	if c.Name != "web" {
		return LogFile{}, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, c.Name)
	}
	if c.Container == "waiting" {
		return LogFile{}, apierrors.NewBadRequest(`container "waiting" in pod "web" is waiting to start: ContainerCreating`)
	}
	done := make(chan struct{})
	close(done)
	return LogFile{Path: b.logPath, Exited: done}, nil
}

func (b *fakeBackend) Exec(_ context.Context, c ContainerRef, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	b.mu.Lock()
	b.execs = append(b.execs, cmd)
	b.mu.Unlock()
	switch cmd[0] {
	case "echo":
		fmt.Fprintln(stdout, strings.Join(cmd[1:], " "))
		fmt.Fprintln(stderr, "to stderr")
		return 0, nil
	case "cat":
		io.Copy(stdout, stdin)
		return 0, nil
	case "fail":
		return 3, nil
	}
	return -1, errors.New(`exec: "` + cmd[0] + `": executable file not found`)
}

func (b *fakeBackend) PortForward(ctx context.Context, p PodRef, port int32, stream io.ReadWriteCloser) error {
	if port != 80 {
		return fmt.Errorf("failed to connect to 127.0.0.1:%d: connection refused", port)
	}
	conn, err := net.Dial("tcp", b.echoAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(conn, stream); done <- struct{}{} }()
	go func() { io.Copy(stream, conn); done <- struct{}{} }()
	<-done
	return nil
}

type fixture struct {
	url     string
	restCfg *rest.Config
	backend *fakeBackend
	ca      *testCA
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca := newCA(t)
	cert, err := SelfSigned("agent", []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "0.log")
	os.WriteFile(logPath, []byte(
		"2024-01-02T03:04:05.000000000Z stdout F line one\n"+
			"2024-01-02T03:04:06.000000000Z stderr F line two\n"+
			"2024-01-02T03:04:07.000000000Z stdout F line three\n"), 0o600)

	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	b := &fakeBackend{logPath: logPath, echoAddr: echo.Addr().String()}
	s, err := New(Config{Backend: b, Certificate: cert, ClientCAs: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	certPEM, keyPEM := ca.client(t, "berth-admin")
	serverPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	return &fixture{
		url:     "https://" + ln.Addr().String(),
		backend: b,
		ca:      ca,
		restCfg: &rest.Config{Host: "https://" + ln.Addr().String(), TLSClientConfig: rest.TLSClientConfig{CAData: serverPEM, CertData: certPEM, KeyData: keyPEM}},
	}
}

func (f *fixture) client(t *testing.T) *http.Client {
	t.Helper()
	tr, err := rest.TransportFor(f.restCfg)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func decodeStatus(t *testing.T, r io.Reader) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestAuthentication(t *testing.T) {
	f := newFixture(t)
	other := newCA(t)
	otherCert, otherKey := other.client(t, "intruder")
	tests := []struct {
		name       string
		cfg        rest.TLSClientConfig
		path       string
		wantStatus int
	}{
		{name: "no certificate", cfg: rest.TLSClientConfig{Insecure: true}, path: "/containerLogs/default/web/app", wantStatus: 401},
		{name: "foreign CA", cfg: rest.TLSClientConfig{Insecure: true, CertData: otherCert, KeyData: otherKey}, path: "/containerLogs/default/web/app", wantStatus: 401},
		{name: "healthz is open", cfg: rest.TLSClientConfig{Insecure: true}, path: "/healthz", wantStatus: 200},
		{name: "cluster CA", cfg: f.restCfg.TLSClientConfig, path: "/containerLogs/default/web/app", wantStatus: 200},
		{name: "unknown path", cfg: f.restCfg.TLSClientConfig, path: "/pods", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := rest.TransportFor(&rest.Config{Host: f.url, TLSClientConfig: tt.cfg})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := (&http.Client{Transport: tr}).Get(f.url + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				body, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus == 401 {
				if st := decodeStatus(t, resp.Body); st.Reason != metav1.StatusReasonUnauthorized || st.Kind != "Status" {
					t.Fatalf("status body %+v", st)
				}
			}
		})
	}
}

func TestContainerLogs(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	tests := []struct {
		query      string
		want       string
		wantStatus int
	}{
		{query: "", want: "line one\nline two\nline three\n"},
		{query: "?tailLines=1", want: "line three\n"},
		{query: "?timestamps=true&tailLines=1", want: "2024-01-02T03:04:07.000000000Z line three\n"},
		{query: "?limitBytes=5", want: "line "},
		{query: "?sinceTime=2024-01-02T03:04:06Z", want: "line two\nline three\n"},
		{query: "?follow=true&podUID=abc", want: "line one\nline two\nline three\n"},
		{query: "?stream=Stderr", want: "line two\n"},
		{query: "?tailLines=-1", wantStatus: 400},
		{query: "?sinceSeconds=0", wantStatus: 400},
		{query: "?tailLines=abc", wantStatus: 400},
	}
	for _, tt := range tests {
		resp, err := c.Get(f.url + "/containerLogs/default/web/app" + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := tt.wantStatus
		if want == 0 {
			want = 200
		}
		if resp.StatusCode != want || (want == 200 && string(body) != tt.want) {
			t.Errorf("%s: %d %q, want %d %q", tt.query, resp.StatusCode, body, want, tt.want)
		}
	}

	resp, err := c.Get(f.url + "/containerLogs/default/web/waiting")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if st := decodeStatus(t, resp.Body); resp.StatusCode != 400 || !strings.Contains(st.Message, "is waiting to start: ContainerCreating") {
		t.Fatalf("waiting container: %d %+v", resp.StatusCode, st)
	}
}

func execURL(f *fixture, cmd []string, stdin, tty bool) *url.URL {
	u, _ := url.Parse(f.url + "/exec/default/web/app")
	q := url.Values{"command": cmd, "stdout": {"true"}, "stderr": {"true"}, "podUID": {"abc"}}
	if stdin {
		q.Set("stdin", "true")
	}
	if tty {
		q.Set("tty", "true")
	}
	u.RawQuery = q.Encode()
	return u
}

func TestExec(t *testing.T) {
	f := newFixture(t)
	run := func(cmd []string, stdin io.Reader, tty bool) (string, string, error) {
		ex, err := remotecommand.NewSPDYExecutor(f.restCfg, "POST", execURL(f, cmd, stdin != nil, tty))
		if err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		opts := remotecommand.StreamOptions{Stdin: stdin, Stdout: &out, Stderr: &errb, Tty: tty}
		if tty {
			opts.Stderr = nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = ex.StreamWithContext(ctx, opts)
		return out.String(), errb.String(), err
	}
	out, errOut, err := run([]string{"echo", "hello", "world"}, nil, false)
	if err != nil || out != "hello world\n" || errOut != "to stderr\n" {
		t.Fatalf("echo: %q %q %v", out, errOut, err)
	}
	out, _, err = run([]string{"cat"}, strings.NewReader("piped\n"), false)
	if err != nil || out != "piped\n" {
		t.Fatalf("cat: %q %v", out, err)
	}
	_, _, err = run([]string{"fail"}, nil, false)
	var exit interface{ ExitStatus() int }
	if !errors.As(err, &exit) || exit.ExitStatus() != 3 || err.Error() != "command terminated with exit code 3" {
		t.Fatalf("fail: %v", err)
	}
	_, _, err = run([]string{"nope"}, nil, false)
	if err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Fatalf("missing command: %v", err)
	}
	_, _, err = run([]string{"echo"}, nil, true)
	if err == nil || !strings.Contains(err.Error(), "cannot give kubectl exec a terminal") {
		t.Fatalf("tty: %v", err)
	}

	resp, err := f.client(t).Get(f.url + "/exec/default/web/app?stdout=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("exec without command: %d", resp.StatusCode)
	}
}

func TestPortForward(t *testing.T) {
	f := newFixture(t)
	tr, up, err := spdy.RoundTripperFor(f.restCfg)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(f.url + "/portForward/default/web?podUID=abc")
	dialer := spdy.NewDialer(up, &http.Client{Transport: tr}, "POST", u)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	errOut := &klogOutput
	pf, err := portforward.NewOnAddressesWithContext(ctx, dialer, []string{"127.0.0.1"}, []string{"0:80", "0:81"}, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("ForwardPorts: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("port-forward not ready")
	}
	ports, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0].Local))
		if err != nil {
			t.Fatal(err)
		}
		msg := fmt.Sprintf("ping %d\n", i)
		conn.Write([]byte(msg))
		buf := make([]byte, len(msg))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo through port-forward: %q %v", buf, err)
		}
		conn.Close()
	}

	// A port nobody listens on: the client learns why for that connection
	// (and kubectl then ends the forward, as it does with a kubelet).
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[1].Local))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(conn)
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	want := "error forwarding port 81 to pod default/web, uid abc: failed to connect to 127.0.0.1:81"
	for !strings.Contains(errOut.String(), want) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(errOut.String(), want) {
		t.Fatalf("client saw no error for the refused port; stderr: %q", errOut.String())
	}
	cancel()
	<-done
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestNewValidates(t *testing.T) {
	cert, _ := SelfSigned("x", []string{"127.0.0.1"})
	pool := x509.NewCertPool()
	for _, cfg := range []Config{
		{Certificate: cert, ClientCAs: pool},
		{Backend: &fakeBackend{}, Certificate: cert},
		{Backend: &fakeBackend{}, ClientCAs: pool},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted an incomplete config", cfg)
		}
	}
	_ = tls.Certificate{}
}
