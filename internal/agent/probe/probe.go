package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/berth-project/berth/internal/version"
)

// Result is the outcome of a probe attempt, or a probe's state.
type Result int

// Results. Unknown means the attempt could not be made (a bad port, an
// unsupported action); it never moves a probe's state.
const (
	Unknown Result = iota
	Success
	Failure
)

func (r Result) String() string {
	switch r {
	case Success:
		return "Success"
	case Failure:
		return "Failure"
	}
	return "Unknown"
}

// Kind is which probe of a container this is; its value is how the kubelet
// names it in events ("Liveness probe failed: ...").
type Kind string

// The probes of a container.
const (
	Liveness  Kind = "Liveness"
	Readiness Kind = "Readiness"
	Startup   Kind = "Startup"
)

// maxOutput bounds what an attempt keeps of a response body or command
// output, as the kubelet does (10 KiB).
const maxOutput = 10 * 1024

// Execer runs a command next to the probed container: in its network
// namespace, with its environment, user and working directory.
type Execer interface {
	// Exec runs argv with stdout and stderr written to out and returns its
	// exit code. When ctx ends first the command is killed and the error
	// wraps ctx.Err().
	Exec(ctx context.Context, argv []string, out io.Writer) (int, error)
}

// Target is the container a probe or lifecycle handler acts on.
type Target struct {
	// PodIP is the host of httpGet and tcpSocket actions without a host.
	PodIP string
	// Ports are the container's ports, for named ports.
	Ports []corev1.ContainerPort
	// Exec runs exec actions; nil makes them Unknown.
	Exec Execer
}

// Prober performs single attempts. It is safe for concurrent use.
type Prober struct {
	transport *http.Transport
	userAgent string
}

// NewProber returns a Prober. Its HTTP client never uses a proxy, keeps no
// connections alive between attempts and does not verify certificates, as
// the kubelet's does.
func NewProber() *Prober {
	minor := "0"
	if parts := strings.Split(strings.TrimPrefix(version.KubernetesAPI, "v"), "."); len(parts) >= 2 {
		minor = parts[0] + "." + parts[1]
	}
	return &Prober{
		transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // probes do not verify, as in Kubernetes
			DialContext:       (&net.Dialer{}).DialContext,
		},
		userAgent: "kube-probe/" + minor,
	}
}

// Close releases idle resources.
func (p *Prober) Close() { p.transport.CloseIdleConnections() }

// Do runs one attempt of handler against t, bounded by timeout, and returns
// the result and what the probe said: the failure message, or the response
// body or command output on success.
func (p *Prober) Do(ctx context.Context, h *corev1.ProbeHandler, timeout time.Duration, t Target) (Result, string) {
	if timeout <= 0 {
		timeout = time.Second
	}
	switch {
	case h == nil:
		return Unknown, "probe has no handler"
	case h.Exec != nil:
		return p.exec(ctx, h.Exec.Command, timeout, t)
	case h.HTTPGet != nil:
		return p.httpGet(ctx, h.HTTPGet, timeout, t)
	case h.TCPSocket != nil:
		return p.tcp(ctx, h.TCPSocket, timeout, t)
	case h.GRPC != nil:
		return Unknown, "gRPC probes are not supported by berth; use httpGet, tcpSocket or exec"
	}
	return Unknown, "probe has no handler"
}

// ResolvePort returns the number of port, looking a named port up among
// ports.
func ResolvePort(port intstr.IntOrString, ports []corev1.ContainerPort) (int, error) {
	if port.Type == intstr.String {
		if n, err := strconv.Atoi(port.StrVal); err == nil {
			return checkPort(n)
		}
		for _, p := range ports {
			if p.Name == port.StrVal {
				return checkPort(int(p.ContainerPort))
			}
		}
		return 0, fmt.Errorf("port %q is not a port of the container", port.StrVal)
	}
	return checkPort(port.IntValue())
}

func checkPort(n int) (int, error) {
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("invalid port number %d", n)
	}
	return n, nil
}

func (p *Prober) httpGet(ctx context.Context, a *corev1.HTTPGetAction, timeout time.Duration, t Target) (Result, string) {
	port, err := ResolvePort(a.Port, t.Ports)
	if err != nil {
		return Unknown, err.Error()
	}
	host := a.Host
	if host == "" {
		host = t.PodIP
	}
	scheme := strings.ToLower(string(a.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := a.Path
	if path == "" {
		path = "/"
	} else if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + path)
	if err != nil {
		return Unknown, fmt.Sprintf("bad probe URL: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Unknown, err.Error()
	}
	for _, h := range a.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", p.userAgent)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "*/*")
	}
	client := &http.Client{
		Transport: p.transport,
		Timeout:   timeout,
		// Follow redirects within the same host only; a redirect elsewhere
		// counts as the 3xx it is (a success), as in Kubernetes.
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if r.URL.Hostname() != via[0].URL.Hostname() {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return Failure, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxOutput))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return Success, string(body)
	}
	return Failure, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

func (p *Prober) tcp(ctx context.Context, a *corev1.TCPSocketAction, timeout time.Duration, t Target) (Result, string) {
	port, err := ResolvePort(a.Port, t.Ports)
	if err != nil {
		return Unknown, err.Error()
	}
	host := a.Host
	if host == "" {
		host = t.PodIP
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return Failure, err.Error()
	}
	conn.Close()
	return Success, ""
}

func (p *Prober) exec(ctx context.Context, argv []string, timeout time.Duration, t Target) (Result, string) {
	if len(argv) == 0 {
		return Unknown, "exec probe has no command"
	}
	if t.Exec == nil {
		return Unknown, "exec probes cannot run for this container"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &limitedBuffer{max: maxOutput}
	code, err := t.Exec.Exec(ctx, argv, out)
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		return Failure, fmt.Sprintf("command %q timed out after %s", strings.Join(argv, " "), timeout)
	case err != nil && ctx.Err() != nil:
		return Unknown, err.Error()
	case err != nil:
		return Failure, err.Error()
	case code != 0:
		msg := out.String()
		if msg == "" {
			msg = fmt.Sprintf("command %q exited with %d", strings.Join(argv, " "), code)
		}
		return Failure, msg
	}
	return Success, out.String()
}

// limitedBuffer keeps the first max bytes written to it and accepts the
// rest, so a chatty command never blocks on its output.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
