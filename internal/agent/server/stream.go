package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"
)

// ErrTTY is what exec with a terminal answers: berth's processes have no
// terminal to attach to.
var ErrTTY = errors.New("berth cannot give kubectl exec a terminal (-t/--tty); run without -t, for example kubectl exec -i POD -- CMD")

// boolParam reads an exec option under its API name (stdin=true, as berth's
// API server relays it) or its kubelet name (input=1, as a Kubernetes API
// server sends it).
func boolParam(r *http.Request, apiName, kubeletName string) bool {
	q := r.URL.Query()
	for _, name := range []string{apiName, kubeletName} {
		if v := q.Get(name); v != "" {
			b, err := strconv.ParseBool(v)
			return err == nil && b
		}
	}
	return false
}

func (s *Server) serveExec(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		writeError(w, apierrors.NewMethodNotSupported(schemaResource("pods/exec"), r.Method))
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		writeError(w, apierrors.NewBadRequest("you must specify at least 1 command"))
		return
	}
	opts := &remotecommand.Options{
		Stdin:  boolParam(r, "stdin", "input"),
		Stdout: boolParam(r, "stdout", "output"),
		Stderr: boolParam(r, "stderr", "error"),
		TTY:    boolParam(r, "tty", "tty"),
	}
	if opts.TTY {
		opts.Stderr = false // a terminal has one output stream
	}
	if !opts.Stdin && !opts.Stdout && !opts.Stderr {
		writeError(w, apierrors.NewBadRequest("you must specify at least 1 of stdin, stdout, stderr"))
		return
	}
	ref := ContainerRef{PodRef: podRef(r), Container: r.PathValue("container")}
	remotecommand.ServeExec(w, r, &executor{s: s, ref: ref}, ref.PodRef.String(), ref.UID, ref.Container, cmd, opts,
		s.cfg.StreamIdleTimeout, s.cfg.StreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// executor adapts the Backend to the streaming library for one request.
type executor struct {
	s   *Server
	ref ContainerRef
}

func (e *executor) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, _ <-chan remotecommand.TerminalSize, _ time.Duration) error {
	if tty {
		return ErrTTY
	}
	var stdout, stderr io.Writer
	if out != nil {
		stdout = out
	}
	if errw != nil {
		stderr = errw
	}
	code, err := e.s.cfg.Backend.Exec(ctx, e.ref, cmd, in, stdout, stderr)
	// All output is written once Exec returns; closing our half lets the
	// client see the end of each stream before the exit status.
	if out != nil {
		out.Close()
	}
	if errw != nil {
		errw.Close()
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

func (s *Server) servePortForward(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		writeError(w, apierrors.NewMethodNotSupported(schemaResource("pods/portforward"), r.Method))
		return
	}
	ref := podRef(r)
	var wsOpts *portforward.V4Options
	if wsstream.IsWebSocketRequest(r) {
		o, err := portforward.NewV4Options(r)
		if err != nil {
			writeError(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		wsOpts = o
	}
	portforward.ServePortForward(w, r, &forwarder{s: s, ref: ref}, ref.String(), ref.UID, wsOpts,
		s.cfg.StreamIdleTimeout, s.cfg.StreamCreationTimeout, portforward.SupportedProtocols)
}

type forwarder struct {
	s   *Server
	ref PodRef
}

func (f *forwarder) PortForward(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	return f.s.cfg.Backend.PortForward(ctx, f.ref, port, stream)
}
