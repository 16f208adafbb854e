package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-project/berth/internal/registry"
	"github.com/berth-project/berth/internal/version"
)

// Config configures the API server.
type Config struct {
	Registry *registry.Registry
	// Serving is the server's certificate; ClientCAs verifies client
	// certificates. Every request needs a valid client certificate.
	Serving   tls.Certificate
	ClientCAs *x509.CertPool
	// Address is host:port to listen on.
	Address string
	// MaxRequestBytes caps request bodies (413 beyond); Kubernetes uses 3 MiB.
	MaxRequestBytes int64
	// RequestTimeout bounds non-streaming requests (504 beyond).
	RequestTimeout time.Duration
	// MinWatchTimeout: watches end after a random time in [min, 2*min)
	// unless the client asks for timeoutSeconds.
	MinWatchTimeout time.Duration
	// MaxWatchesPerClient caps concurrent watches of one user from one
	// address (429 beyond).
	MaxWatchesPerClient int
	// Nodes finds node agents for pods/log, pods/exec and pods/portforward;
	// nil answers those with 503.
	Nodes NodeConnector
	// Metrics serves /metrics (Prometheus); nil answers 404.
	Metrics http.Handler
	// Ready reports whether storage answers, for /readyz.
	Ready  func(ctx context.Context) error
	Logger *slog.Logger
	// Now is the clock for table ages; nil means time.Now.
	Now func() time.Time
}

// Server is berth's API server.
type Server struct {
	cfg      Config
	registry *registry.Registry
	log      *slog.Logger
	now      func() time.Time
	watches  *watchLimiter
	handler  http.Handler
	openapi  *openAPI
}

// New builds the server; Run serves it.
func New(cfg Config) (*Server, error) {
	if cfg.Registry == nil {
		return nil, errors.New("apiserver: no registry")
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 3 << 20
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 60 * time.Second
	}
	if cfg.MinWatchTimeout <= 0 {
		cfg.MinWatchTimeout = 30 * time.Minute
	}
	if cfg.MaxWatchesPerClient <= 0 {
		cfg.MaxWatchesPerClient = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, registry: cfg.Registry, log: cfg.Logger, now: cfg.Now,
		watches: newWatchLimiter(cfg.MaxWatchesPerClient)}
	if s.now == nil {
		s.now = time.Now
	}
	s.openapi = newOpenAPI(cfg.Registry)
	s.handler = s.withRecovery(s.withAuthentication(s.withLimits(http.HandlerFunc(s.route))))
	return s, nil
}

// Handler returns the full HTTP handler (authentication included), for tests.
func (s *Server) Handler() http.Handler { return s.handler }

// Run listens on cfg.Address with TLS until ctx is done. ready is closed once
// the listener is bound.
func (s *Server) Run(ctx context.Context, ready chan<- struct{}) error {
	ln, err := net.Listen("tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another berth server running? pick another --secure-port)", s.cfg.Address, err)
	}
	return s.Serve(ctx, ln, ready)
}

// Serve serves on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener, ready chan<- struct{}) error {
	srv := &http.Server{
		Handler: s.handler,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{s.cfg.Serving},
			// Client certificates are checked per request, so that a bad one
			// gets a 401 Status instead of a failed handshake.
			ClientAuth: tls.RequestClientCert,
			NextProtos: []string{"h2", "http/1.1"},
		},
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	tlsLn := tls.NewListener(ln, srv.TLSConfig)
	if ready != nil {
		close(ready)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tlsLn) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve API: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	_ = srv.Close()
	return nil
}

func (s *Server) withRecovery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeError(w, apierrors.NewInternalError(fmt.Errorf("internal error serving %s %s", r.Method, r.URL.Path)))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type userKey struct{}

// User is the authenticated identity of a request.
type User struct {
	Name   string
	Groups []string
}

func (s *Server) withAuthentication(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.authenticate(r)
		if !ok {
			writeStatus(w, statusFor(http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized"))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	})
}

func (s *Server) authenticate(r *http.Request) (User, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || s.cfg.ClientCAs == nil {
		return User{}, false
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.cfg.ClientCAs, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return User{}, false
	}
	return User{Name: leaf.Subject.CommonName, Groups: leaf.Subject.Organization}, true
}

func userOf(r *http.Request) User {
	u, _ := r.Context().Value(userKey{}).(User)
	return u
}

func (s *Server) withLimits(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.cfg.MaxRequestBytes {
			writeError(w, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", s.cfg.MaxRequestBytes)))
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes)
		}
		if !longRunning(r) {
			timeout := s.cfg.RequestTimeout
			if v := r.URL.Query().Get("timeout"); v != "" {
				d, err := time.ParseDuration(v)
				if err != nil {
					writeError(w, apierrors.NewBadRequest(fmt.Sprintf("invalid timeout %q: a duration like 30s is expected", v)))
					return
				}
				// As Kubernetes: 0 (or less) means no timeout of the
				// client's own, so the server's applies.
				if d > 0 && d < timeout {
					timeout = d
				}
			}
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			defer cancel()
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

// longRunning: watches, logs that follow, and streams are not bound by the
// request timeout.
func longRunning(r *http.Request) bool {
	q := r.URL.Query()
	if q.Get("watch") == "true" || q.Get("watch") == "1" || strings.Contains(r.URL.Path, "/watch/") {
		return true
	}
	p := r.URL.Path
	for _, sub := range []string{"/exec", "/portforward", "/attach", "/proxy"} {
		if strings.HasSuffix(p, sub) || strings.Contains(p, sub+"/") {
			return true
		}
	}
	if strings.HasSuffix(p, "/log") && q.Get("follow") == "true" {
		return true
	}
	return false
}

// route dispatches non-resource paths and hands resource paths on.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case p == "/version":
		writeObject(w, r, negotiated{}, http.StatusOK, version.Kubernetes())
		return
	case p == "/healthz" || p == "/livez" || p == "/readyz" || strings.HasPrefix(p, "/healthz/") || strings.HasPrefix(p, "/livez/") || strings.HasPrefix(p, "/readyz/"):
		s.serveHealth(w, r, p)
		return
	case p == "" || p == "/":
		writeObject(w, r, negotiated{}, http.StatusOK, map[string][]string{"paths": s.rootPaths()})
		return
	case p == "/api" || p == "/apis" || p == "/api/v1" || (strings.HasPrefix(p, "/apis/") && len(splitPath(p)) <= 3):
		s.serveDiscovery(w, r, p)
		return
	case strings.HasPrefix(r.URL.Path, "/debug/pprof"):
		// As kube-apiserver's --profiling (on by default): for
		// authenticated users only, like every path here.
		servePprof(w, r)
		return
	case p == "/metrics" && s.cfg.Metrics != nil:
		s.cfg.Metrics.ServeHTTP(w, r)
		return
	case strings.HasPrefix(p, "/openapi/"):
		s.openapi.serve(w, r, p)
		return
	}
	info, ok := parseResourcePath(r)
	if !ok {
		writeStatus(w, statusFor(http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("the server could not find the requested resource (%s %s)", r.Method, r.URL.Path)))
		return
	}
	s.serveResource(w, r, info)
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request, p string) {
	name := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 2)[0]
	check := "ping"
	var err error
	if name == "readyz" && s.cfg.Ready != nil {
		check = "etcd"
		err = s.cfg.Ready(r.Context())
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "[-]%s failed: %v\n%s check failed\n", check, err, name)
		return
	}
	if r.URL.Query().Has("verbose") {
		fmt.Fprintf(w, "[+]%s ok\n%s check passed\n", check, name)
		return
	}
	fmt.Fprint(w, "ok")
}

// watchLimiter counts concurrent watches per user and remote host.
type watchLimiter struct {
	max int
	mu  sync.Mutex // guards n
	n   map[string]int
}

func newWatchLimiter(max int) *watchLimiter { return &watchLimiter{max: max, n: map[string]int{}} }

func (l *watchLimiter) acquire(r *http.Request) (func(), error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	key := userOf(r).Name + "@" + host
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key] >= l.max {
		return nil, apierrors.NewTooManyRequests(fmt.Sprintf("too many watches from %s (limit %d); close some and retry", key, l.max), 1)
	}
	l.n[key]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.n[key]--; l.n[key] <= 0 {
			delete(l.n, key)
		}
	}, nil
}
