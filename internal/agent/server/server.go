package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodRef names a pod; UID, when not empty, must match the pod's UID (the
// API server sends it so that a request never reaches a newer pod of the
// same name).
type PodRef struct {
	Namespace, Name, UID string
}

func (p PodRef) String() string { return p.Namespace + "/" + p.Name }

// ContainerRef names a container of a pod.
type ContainerRef struct {
	PodRef
	Container string
}

// LogFile is where a container attempt's log is.
type LogFile struct {
	// Path is the log file (rotated files sit next to it).
	Path string
	// Exited is closed once the attempt writing Path has exited, so that a
	// follow ends; nil never closes (a follow then ends with the request).
	Exited <-chan struct{}
}

// Backend resolves requests to the agent's pods. Errors that are
// apimachinery StatusErrors (NotFound, BadRequest, ...) reach the client
// with their code and message; others become 500s. Methods are called
// concurrently.
type Backend interface {
	// ContainerLog returns the log of the container's current attempt, or
	// with previous of the one before, choosing as the kubelet does from the
	// container's status.
	ContainerLog(ctx context.Context, c ContainerRef, previous bool) (LogFile, error)
	// Exec runs cmd in the running container and returns its exit code.
	// stdin, stdout and stderr may each be nil.
	Exec(ctx context.Context, c ContainerRef, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
	// PortForward connects stream to port of the pod until either side
	// closes. A connection that cannot be made is an error, which the
	// client sees for that connection only.
	PortForward(ctx context.Context, p PodRef, port int32, stream io.ReadWriteCloser) error
}

// Defaults for Config, the kubelet's.
const (
	DefaultStreamIdleTimeout     = 4 * time.Hour
	DefaultStreamCreationTimeout = 30 * time.Second
)

// Config configures a Server.
type Config struct {
	Backend Backend
	// Certificate is the serving certificate; see SelfSigned.
	Certificate tls.Certificate
	// ClientCAs verifies client certificates; required.
	ClientCAs *x509.CertPool
	// StreamIdleTimeout closes an exec or port-forward connection idle this
	// long; StreamCreationTimeout bounds the stream handshake. Zero means
	// the defaults.
	StreamIdleTimeout     time.Duration
	StreamCreationTimeout time.Duration
	Logger                *slog.Logger
}

// Server serves the agent API.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New checks cfg and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("agent server: no backend")
	}
	if cfg.ClientCAs == nil {
		return nil, errors.New("agent server: no client CA to verify the API server's certificate with")
	}
	if len(cfg.Certificate.Certificate) == 0 {
		return nil, errors.New("agent server: no serving certificate")
	}
	if cfg.StreamIdleTimeout == 0 {
		cfg.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if cfg.StreamCreationTimeout == 0 {
		cfg.StreamCreationTimeout = DefaultStreamCreationTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	s.mux.Handle("GET /containerLogs/{namespace}/{pod}/{container}", s.authenticated(s.serveLogs))
	s.mux.Handle("/exec/{namespace}/{pod}/{container}", s.authenticated(s.serveExec))
	s.mux.Handle("/portForward/{namespace}/{pod}", s.authenticated(s.servePortForward))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, apierrors.NewNotFound(schemaResource("path"), r.URL.Path))
	})
	return s, nil
}

// Handler returns the routes. It expects TLS requests (r.TLS) carrying the
// client certificate, as Serve provides.
func (s *Server) Handler() http.Handler { return s.mux }

// TLSConfig is the server's TLS configuration: the serving certificate, and
// client certificates requested but verified per request so that a missing
// or foreign one gets a 401 rather than a failed handshake. HTTP/2 is off:
// exec and port-forward hijack HTTP/1.1 connections.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{s.cfg.Certificate},
		ClientAuth:   tls.RequestClientCert,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
}

// Serve serves HTTPS on ln until ctx ends, then closes ln and every
// connection (streams included) and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.mux,
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	select {
	case err := <-errc:
		return fmt.Errorf("agent API on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	// Streams are hijacked and long-lived; the agent is stopping, so close
	// rather than drain.
	err := srv.Close()
	<-errc
	if err != nil {
		return fmt.Errorf("stop agent API: %w", err)
	}
	return nil
}

// authenticated admits requests whose client certificate the cluster CA
// signed.
func (s *Server) authenticated(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.verify(r); err != nil {
			s.log.Debug("rejected agent API request", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
			writeError(w, apierrors.NewUnauthorized(err.Error()))
			return
		}
		next(w, r)
	})
}

func (s *Server) verify(r *http.Request) error {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return errors.New("a client certificate signed by the cluster CA is required")
	}
	certs := r.TLS.PeerCertificates
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         s.cfg.ClientCAs,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return fmt.Errorf("client certificate %q is not valid for this node: %v", certs[0].Subject.CommonName, err)
	}
	return nil
}

// writeError writes err as a metav1.Status.
func writeError(w http.ResponseWriter, err error) {
	var st metav1.Status
	if se, ok := err.(apierrors.APIStatus); ok || errors.As(err, &se) {
		st = se.Status()
	} else {
		st = apierrors.NewInternalError(err).Status()
	}
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(int(st.Code))
	json.NewEncoder(w).Encode(&st)
}

func podRef(r *http.Request) PodRef {
	return PodRef{Namespace: r.PathValue("namespace"), Name: r.PathValue("pod"), UID: r.URL.Query().Get("podUID")}
}
