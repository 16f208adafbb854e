package agnhost

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startNetexec(t *testing.T, env map[string]string, args ...string) *instance {
	t.Helper()
	o := startOpts{env: env, wait: []string{"udp", "http"}}
	for _, a := range args {
		if a == "--udp-port=-1" {
			o.wait = []string{"http"}
		}
	}
	full := append([]string{"netexec", "--http-port=0", "--udp-port=0"}, args...)
	return start(t, o, full...)
}

func TestNetexecEndpoints(t *testing.T) {
	n := startNetexec(t, map[string]string{EnvHostname: "pod-a"})
	_, port, _ := net.SplitHostPort(n.addr(t, "http"))

	tests := []struct {
		path     string
		header   http.Header
		code     int
		body     string // exact, unless prefix is set
		prefix   string
		location string
	}{
		{path: "/", prefix: "NOW: 20"},
		{path: "/no/such/path", prefix: "NOW: 20"},
		{path: "/hostname", body: "pod-a"},
		{path: "/hostName", body: "pod-a"},
		{path: "/echo?msg=hello%20world", body: "hello world"},
		{path: "/echo?msg=teapot&code=418", code: 418, body: "teapot"},
		{path: "/echo?msg=x&code=abc", body: "argument 'code' must be an integer or empty, got \"abc\"\n"},
		{path: "/echo?msg=x&code=5000", code: 400, prefix: "argument 'code' must be an HTTP status code"},
		{path: "/echo", body: ""},
		{path: "/serverport", body: port},
		{path: "/header?key=X-Test", header: http.Header{"X-Test": {"v1"}}, body: "v1"},
		{path: "/header?key=X-Missing", body: ""},
		{path: "/healthz", body: ""},
		{path: "/readyz", body: "ok"},
		{path: "/redirect?location=/echo%3Fmsg%3Dfoobar&code=307", code: 307, location: "/echo?msg=foobar", prefix: "<a href="},
		{path: "/redirect?location=/hostname", code: 302, location: "/hostname", prefix: "<a href="},
		{path: "/redirect?location=/x&code=x", body: "argument 'code' must be an integer or empty, got \"x\"\n"},
		{path: "/shell?cmd=echo%20hi", body: `{"output":"hi\n"}`},
		{path: "/shell?shellCommand=echo%20out%3B%20exit%203", body: `{"error":"exit status 3","output":"out\n"}`},
		{path: "/shell?cmd=", body: `{}`},
		{path: "/exit?code=abc", body: "argument 'code' must be an integer [0-127] or empty, got \"abc\"\n"},
		{path: "/exit?timeout=forever", body: "argument 'timeout' must be a valid golang duration or empty, got \"forever\"\n"},
		{path: "/exit?wait=soon", body: "argument 'wait' must be a valid golang duration or empty, got \"soon\"\n"},
		{path: "/upload", body: `{"error":"Unable to upload file."}`},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			got := get(t, n.url(t, tc.path), tc.header)
			wantCode := tc.code
			if wantCode == 0 {
				wantCode = http.StatusOK
			}
			if got.code != wantCode {
				t.Errorf("status %d, want %d (body %q)", got.code, wantCode, got.body)
			}
			if tc.prefix != "" {
				if !strings.HasPrefix(got.body, tc.prefix) {
					t.Errorf("body %q, want prefix %q", got.body, tc.prefix)
				}
			} else if got.body != tc.body {
				t.Errorf("body %q, want %q", got.body, tc.body)
			}
			if tc.location != "" {
				if loc := got.header.Get("Location"); loc != tc.location {
					t.Errorf("Location %q, want %q", loc, tc.location)
				}
			}
		})
	}

	// The whole header, as JSON, when no key is given.
	got := get(t, n.url(t, "/header"), http.Header{"X-Test": {"a", "b"}})
	var hdr map[string][]string
	if err := json.Unmarshal([]byte(got.body), &hdr); err != nil {
		t.Fatalf("/header body %q: %v", got.body, err)
	}
	if fmt.Sprint(hdr["X-Test"]) != "[a b]" {
		t.Errorf("/header X-Test = %v, want [a b] (all: %v)", hdr["X-Test"], hdr)
	}

	// Upstream log lines.
	mustContain(t, n.stderr.String(), "Started UDP server on port 127.0.0.1 0", "Started HTTP server on port 0", "GET /hostname")
}

// TestNetexecClientIP checks /clientip returns the client's "ip:port".
func TestNetexecClientIP(t *testing.T) {
	n := startNetexec(t, nil)
	conn, err := net.Dial("tcp", n.addr(t, "http"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /clientip HTTP/1.0\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := conn.LocalAddr().String(); string(body) != want {
		t.Errorf("/clientip = %q, want %q", body, want)
	}
}

func TestNetexecHostnameFallback(t *testing.T) {
	want, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	n := startNetexec(t, map[string]string{EnvHostname: ""})
	if got := get(t, n.url(t, "/hostname"), nil); got.body != want {
		t.Errorf("/hostname = %q, want os.Hostname() %q", got.body, want)
	}
	if got, _ := udpAsk(t, n.addr(t, "udp"), "hostname"); got != want {
		t.Errorf("udp hostname = %q, want %q", got, want)
	}
}

func TestNetexecUDP(t *testing.T) {
	n := startNetexec(t, map[string]string{EnvHostname: "pod-udp"})
	udp := n.addr(t, "udp")
	_, port, _ := net.SplitHostPort(udp)

	tests := []struct{ msg, want string }{
		{"hostname", "pod-udp"},
		{"  HostName\n", "pod-udp"},
		{"echo Hello World", "hello world"}, // upstream lower-cases
		{"serverport", port},
	}
	for _, tc := range tests {
		if got, _ := udpAsk(t, udp, tc.msg); got != tc.want {
			t.Errorf("udp %q = %q, want %q", tc.msg, got, tc.want)
		}
	}
	if got, local := udpAsk(t, udp, "clientip"); got != local {
		t.Errorf("udp clientip = %q, want %q", got, local)
	}

	// Unknown commands get no reply: the first reply on this socket must be
	// the one for the command sent after them.
	conn, err := net.Dial("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, msg := range []string{"bogus", "echo", "   ", "hostname"} {
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	k, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:k]); got != "pod-udp" {
		t.Errorf("first reply after unknown commands = %q, want the hostname", got)
	}
	mustContain(t, n.stderr.String(), "Unknown UDP command received from")
}

func TestNetexecDial(t *testing.T) {
	n := startNetexec(t, map[string]string{EnvHostname: "pod-d"})
	host, httpPort, _ := net.SplitHostPort(n.addr(t, "http"))
	_, udpPort, _ := net.SplitHostPort(n.addr(t, "udp"))
	_, closedPort, _ := net.SplitHostPort(freePort(t))

	type result struct {
		Responses []string `json:"responses"`
		Errors    []string `json:"errors"`
	}
	tests := []struct {
		name          string
		query         string
		responses     []string
		errors        int
		errorContains string
	}{
		{name: "http", query: "protocol=http&port=" + httpPort + "&request=hostname&tries=2", responses: []string{"pod-d", "pod-d"}},
		{name: "http default protocol", query: "port=" + httpPort + "&request=echo%3Fmsg%3Dhi", responses: []string{"hi"}},
		{name: "udp", query: "protocol=udp&port=" + udpPort + "&request=hostname&tries=3", responses: []string{"pod-d", "pod-d", "pod-d"}},
		{name: "udp echo", query: "protocol=UDP&port=" + udpPort + "&request=echo%20Hi", responses: []string{"hi"}},
		{name: "http refused", query: "protocol=http&port=" + closedPort + "&request=hostname", errors: 1, errorContains: "connection refused"},
		{name: "udp refused", query: "protocol=udp&port=" + closedPort + "&request=hostname&tries=2", errors: 2, errorContains: "reading from udp connection failed"},
		{name: "zero tries", query: "port=" + httpPort + "&request=hostname&tries=0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := get(t, n.url(t, "/dial?host="+host+"&"+tc.query), nil)
			if got.code != http.StatusOK {
				t.Fatalf("status %d, body %q", got.code, got.body)
			}
			var r result
			if err := json.Unmarshal([]byte(got.body), &r); err != nil {
				t.Fatalf("body %q: %v", got.body, err)
			}
			if fmt.Sprint(r.Responses) != fmt.Sprint(tc.responses) {
				t.Errorf("responses %q, want %q (body %s)", r.Responses, tc.responses, got.body)
			}
			if len(r.Errors) != tc.errors {
				t.Errorf("errors %q, want %d", r.Errors, tc.errors)
			}
			for _, e := range r.Errors {
				if !strings.Contains(e, tc.errorContains) {
					t.Errorf("error %q does not contain %q", e, tc.errorContains)
				}
			}
		})
	}

	bad := []struct{ query, body string }{
		{"port=" + httpPort, "request parameter not specified. <nil>\n"},
		{"port=" + httpPort + "&request=hostname&tries=x", "tries parameter is invalid. strconv.Atoi: parsing \"x\": invalid syntax\n"},
		{"port=" + httpPort + "&request=hostname&protocol=tcp", "unsupported protocol. tcp\n"},
		{"port=" + httpPort + "&request=hostname&protocol=sctp", "unsupported protocol. sctp (berth's agnhost has no SCTP)\n"},
		{"port=notaport&request=hostname", ""},
	}
	for _, tc := range bad {
		got := get(t, n.url(t, "/dial?host="+host+"&"+tc.query), nil)
		if got.code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400 (body %q)", tc.query, got.code, got.body)
		}
		if tc.body != "" && got.body != tc.body {
			t.Errorf("%s: body %q, want %q", tc.query, got.body, tc.body)
		}
	}
	if got := get(t, n.url(t, "/dial?host="+host+"&port=notaport&request=hostname"), nil); !strings.HasPrefix(got.body, "host and/or port param are invalid.") {
		t.Errorf("bad port body %q", got.body)
	}
}

// TestNetexecDialLastTryQuirk checks upstream's quirk: "responses" is left
// out when the last try failed, even if an earlier one answered.
func TestNetexecDialLastTryQuirk(t *testing.T) {
	n := startNetexec(t, map[string]string{EnvHostname: "pod-q"})
	host, httpPort, _ := net.SplitHostPort(n.addr(t, "http"))
	// /echo with an empty msg answers with an empty body: a successful try
	// whose response is empty.
	got := get(t, n.url(t, "/dial?host="+host+"&port="+httpPort+"&request=echo%3Fmsg%3D"), nil)
	if got.body != "{}" {
		t.Errorf("body %q, want {}", got.body)
	}
}

func TestNetexecHTTPOverride(t *testing.T) {
	// Also checks that klog's flags are accepted, as upstream does.
	n := startNetexec(t, map[string]string{EnvHostname: "pod-o"},
		"--http-override=/echo?msg=fixed", "--v=4", "--logtostderr", "--vmodule=x=2")
	for _, path := range []string{"/", "/hostname", "/echo?msg=other"} {
		if got := get(t, n.url(t, path), nil); got.body != "fixed" {
			t.Errorf("GET %s = %q, want the override's answer", path, got.body)
		}
	}
	n2 := startNetexec(t, map[string]string{EnvHostname: "pod-o"}, "--http-override=/hostname")
	if got := get(t, n2.url(t, "/anything"), nil); got.body != "pod-o" {
		t.Errorf("override /hostname = %q", got.body)
	}
}

func TestNetexecUDPDisabled(t *testing.T) {
	n := startNetexec(t, nil, "--udp-port=-1")
	if len(n.addrs["udp"]) != 0 {
		t.Errorf("UDP bound with --udp-port=-1: %v", n.addrs["udp"])
	}
	// As upstream: without a UDP server netexec never reports healthy.
	for _, path := range []string{"/healthz", "/readyz"} {
		if got := get(t, n.url(t, path), nil); got.code != http.StatusPreconditionFailed {
			t.Errorf("%s status %d, want 412", path, got.code)
		}
	}
	n2 := startNetexec(t, nil, "--udp-port=-1", "--sctp-port=9999")
	if got := get(t, n2.url(t, "/healthz"), nil); got.code != http.StatusOK {
		t.Errorf("with --sctp-port /healthz status %d, want 200", got.code)
	}
	mustContain(t, n2.stderr.String(), "SCTP is not supported by berth")
}

func TestNetexecUDPListenAddresses(t *testing.T) {
	n := start(t, startOpts{wait: []string{"udp", "udp", "http"}},
		"netexec", "--http-port=0", "--udp-port=0", "--udp-listen-addresses=127.0.0.3,127.0.0.2,127.0.0.3")
	var hosts []string
	for _, a := range n.addrs["udp"] {
		hosts = append(hosts, a.(*net.UDPAddr).IP.String())
	}
	if fmt.Sprint(hosts) != "[127.0.0.2 127.0.0.3]" {
		t.Errorf("UDP bound %v, want 127.0.0.2 and 127.0.0.3 once each", hosts)
	}
	for _, a := range n.addrs["udp"] {
		if got, _ := udpAsk(t, a.String(), "echo x"); got != "x" {
			t.Errorf("echo via %s = %q", a, got)
		}
	}
}

// TestNetexecBindAddress checks BERTH_BIND_ADDRESS: two Pods on their own
// loopback addresses share a port.
func TestNetexecBindAddress(t *testing.T) {
	a := startNetexec(t, map[string]string{EnvBindAddress: "127.0.0.2", EnvHostname: "pod-a"})
	_, port, _ := net.SplitHostPort(a.addr(t, "http"))
	_, udpPort, _ := net.SplitHostPort(a.addr(t, "udp"))
	b := start(t, startOpts{env: map[string]string{EnvBindAddress: "127.0.0.3", EnvHostname: "pod-b"}, wait: []string{"udp", "http"}},
		"netexec", "--http-port="+port, "--udp-port="+udpPort)

	for _, tc := range []struct {
		inst *instance
		host string
		want string
	}{{a, "127.0.0.2", "pod-a"}, {b, "127.0.0.3", "pod-b"}} {
		if got := tc.inst.addr(t, "http"); got != net.JoinHostPort(tc.host, port) {
			t.Errorf("bound %s, want %s:%s", got, tc.host, port)
		}
		if got := get(t, "http://"+net.JoinHostPort(tc.host, port)+"/hostname", nil); got.body != tc.want {
			t.Errorf("%s /hostname = %q, want %q", tc.host, got.body, tc.want)
		}
		if got, _ := udpAsk(t, net.JoinHostPort(tc.host, udpPort), "hostname"); got != tc.want {
			t.Errorf("%s udp hostname = %q, want %q", tc.host, got, tc.want)
		}
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 5*time.Second); err == nil {
		c.Close()
		t.Errorf("127.0.0.1:%s accepts connections; the servers should bind only their own address", port)
	}
}

func TestNetexecExit(t *testing.T) {
	tests := []struct {
		path string
		code int
		// answered: the client gets a response (graceful exit); otherwise
		// the connection is dropped as by upstream's os.Exit.
		answered bool
	}{
		{path: "/exit?code=3", code: 3},
		{path: "/exit", code: 0},
		{path: "/exit?code=4&timeout=5s", code: 4, answered: true},
		{path: "/exit?code=5&wait=50ms&timeout=5s", code: 5, answered: true},
		{path: "/exit?code=6&wait=10ms", code: 6},
		{path: "/shutdown", code: 0},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			n := startNetexec(t, nil)
			resp, err := testClient.Get(n.url(t, tc.path))
			if tc.answered {
				if err != nil {
					t.Fatalf("GET %s: %v", tc.path, err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("status %d", resp.StatusCode)
				}
			} else if err == nil {
				resp.Body.Close()
				t.Errorf("GET %s answered %d; upstream exits before answering", tc.path, resp.StatusCode)
			}
			err = n.wait(t)
			if got := exitCodeOf(t, err); got != tc.code {
				t.Errorf("exit code %d, want %d", got, tc.code)
			}
			if got := ExitCode(err); got != tc.code {
				t.Errorf("ExitCode = %d, want %d", got, tc.code)
			}
			n.assertReleased(t)
		})
	}
}

func TestNetexecGracefulShutdown(t *testing.T) {
	t.Run("immediate", func(t *testing.T) {
		n := startNetexec(t, nil)
		if err := n.stop(t); err != nil {
			t.Fatalf("stop: %v", err)
		}
		n.assertReleased(t)
	})
	t.Run("delay-shutdown", func(t *testing.T) {
		n := startNetexec(t, map[string]string{EnvHostname: "pod-g"}, "--delay-shutdown=3")
		n.cancel(nil)
		// While the delay runs: not ready, still healthy, still serving.
		var readyz response
		for range 100 {
			if readyz = get(t, n.url(t, "/readyz"), nil); readyz.code != http.StatusOK {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if readyz.code != http.StatusServiceUnavailable || readyz.body != "shutting down" {
			t.Errorf("/readyz during delay = %d %q, want 503 \"shutting down\"", readyz.code, readyz.body)
		}
		if got := get(t, n.url(t, "/healthz"), nil); got.code != http.StatusOK {
			t.Errorf("/healthz during delay = %d, want 200", got.code)
		}
		if got := get(t, n.url(t, "/hostname"), nil); got.body != "pod-g" {
			t.Errorf("/hostname during delay = %q", got.body)
		}
		if got, _ := udpAsk(t, n.addr(t, "udp"), "hostname"); got != "pod-g" {
			t.Errorf("udp during delay = %q", got)
		}
		if err := n.wait(t); err != nil {
			t.Fatalf("run: %v", err)
		}
		mustContain(t, n.stderr.String(), "Sleeping 3 seconds before terminating...")
		n.assertReleased(t)
	})
	t.Run("exit during delay", func(t *testing.T) {
		n := startNetexec(t, nil, "--delay-shutdown=60")
		n.cancel(nil)
		for range 100 {
			if get(t, n.url(t, "/readyz"), nil).code != http.StatusOK {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		testClient.Get(n.url(t, "/exit?code=7"))
		if got := exitCodeOf(t, n.wait(t)); got != 7 {
			t.Errorf("exit code %d, want 7", got)
		}
		n.assertReleased(t)
	})
}

func TestNetexecUpload(t *testing.T) {
	dir := t.TempDir()
	n := start(t, startOpts{uploadDir: dir, wait: []string{"udp", "http"}}, "netexec", "--http-port=0", "--udp-port=0")

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte("uploaded content"))
	mw.Close()
	resp, err := testClient.Post(n.url(t, "/upload"), mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("status %d, want 201", resp.StatusCode)
	}
	var out map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(out["output"]) != dir || !strings.HasPrefix(filepath.Base(out["output"]), "upload") {
		t.Fatalf("output %q, want a file named upload* in %s", out["output"], dir)
	}
	data, err := os.ReadFile(out["output"])
	if err != nil || string(data) != "uploaded content" {
		t.Errorf("uploaded file = %q, %v", data, err)
	}
	if st, err := os.Stat(out["output"]); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, %v; want 0700", st.Mode(), err)
	}
}

func TestNetexecTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeTestCert(t, dir)
	n := startNetexec(t, map[string]string{EnvHostname: "pod-tls"},
		"--tls-cert-file="+certFile, "--tls-private-key-file="+keyFile)

	caPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + n.addr(t, "http") + "/hostname")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "pod-tls" {
		t.Errorf("https /hostname = %q", body)
	}
}

func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestNetexecStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())

	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown flag", nil, []string{"--bogus"}, "unknown flag: --bogus"},
		{"bad int", nil, []string{"--http-port=abc"}, "invalid argument \"abc\" for \"--http-port\""},
		{"positional", nil, []string{"extra"}, "takes no positional arguments"},
		{"negative delay", nil, []string{"--delay-shutdown=-1"}, "--delay-shutdown must not be negative"},
		{"bad bind address", map[string]string{EnvBindAddress: "pod-ip"}, nil, "BERTH_BIND_ADDRESS=\"pod-ip\" is not an IP address"},
		{"bad udp address", nil, []string{"--udp-listen-addresses=1.2.3.4,nope"}, "parseAddress: invalid address nope"},
		{"port in use", nil, []string{"--http-port=" + busyPort, "--udp-port=-1"}, "address already in use"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{EnvBindAddress: "127.0.0.1"}
			for k, v := range tc.env {
				env[k] = v
			}
			rt := newRuntime(&syncBuffer{}, &syncBuffer{}, func(k string) string { return env[k] })
			err := run(t.Context(), append([]string{"netexec"}, tc.args...), rt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if ExitCode(err) != 1 {
				t.Errorf("ExitCode = %d, want 1", ExitCode(err))
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, sub := range Subcommands() {
		for _, flag := range []string{"--help", "-h"} {
			stdout := &syncBuffer{}
			rt := newRuntime(stdout, &syncBuffer{}, func(string) string { return "" })
			if err := run(t.Context(), []string{sub, flag}, rt); err != nil {
				t.Errorf("%s %s: %v", sub, flag, err)
			}
			mustContain(t, stdout.String(), "Usage:\n  agnhost "+sub)
		}
	}
}

func TestParseUDPAddresses(t *testing.T) {
	tests := []struct {
		in   string
		want string
		err  bool
	}{
		{in: "127.0.0.1", want: "[127.0.0.1]"},
		{in: "10.0.0.2,10.0.0.1,10.0.0.2", want: "[10.0.0.1 10.0.0.2]"},
		{in: "::1,127.0.0.1", want: "[127.0.0.1 ::1]"},
		{in: "010.0.0.1", want: "[010.0.0.1]"}, // ParseIPSloppy, as upstream
		{in: "1.2.3.4,", err: true},
		{in: "host", err: true},
	}
	for _, tc := range tests {
		got, err := parseUDPAddresses(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && fmt.Sprint(got) != tc.want {
			t.Errorf("%q = %v, want %s", tc.in, got, tc.want)
		}
	}
}
