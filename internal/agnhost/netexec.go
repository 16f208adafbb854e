package agnhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	netutils "k8s.io/utils/net"
)

// netexecFlags are upstream netexec's flags, with its defaults.
type netexecFlags struct {
	httpPort           int
	udpPort            int
	sctpPort           int
	certFile           string
	keyFile            string
	httpOverride       string
	udpListenAddresses string
	delayShutdown      int
}

// shutdownTimeout bounds the graceful HTTP shutdown after ctx is cancelled;
// upstream exits at once, berth lets in-flight requests finish first.
const shutdownTimeout = 5 * time.Second

// exitRequest is what /exit and /shutdown ask of the main loop.
type exitRequest struct {
	code int
	// timeout is how long to wait for connections to close; 0 exits at once.
	timeout time.Duration
}

// netexec is one running `agnhost netexec`.
type netexec struct {
	rt    *runtime
	flags netexecFlags
	// httpPort is the bound HTTP port (the flag's value unless it was 0).
	httpPort int

	// udpReady is upstream's serverReady: true once the UDP (or, upstream,
	// SCTP) server listens, false again when one exits.
	udpReady atomic.Bool
	// terminating is closed when ctx is cancelled: /readyz then answers 503
	// while --delay-shutdown runs, as upstream does after SIGTERM.
	terminating chan struct{}
	// stopping is closed when the main loop starts shutting down, so that
	// handlers blocked in /exit give up.
	stopping chan struct{}
	exitCh   chan exitRequest
}

func runNetexec(ctx context.Context, args []string, rt *runtime) error {
	var f netexecFlags
	fs := newFlagSet("netexec", rt)
	fs.IntVar(&f.httpPort, "http-port", 8080, "HTTP Listen Port")
	fs.StringVar(&f.certFile, "tls-cert-file", "",
		"File containing an x509 certificate for HTTPS. (CA cert, if any, concatenated after server cert)")
	fs.StringVar(&f.keyFile, "tls-private-key-file", "", "File containing an x509 private key matching --tls-cert-file")
	fs.IntVar(&f.udpPort, "udp-port", 8081, "UDP Listen Port")
	fs.IntVar(&f.sctpPort, "sctp-port", -1, "SCTP Listen Port (not supported by berth: ignored)")
	fs.StringVar(&f.httpOverride, "http-override", "",
		"Override the HTTP handler to always respond as if it were a GET with this path & params")
	fs.StringVar(&f.udpListenAddresses, "udp-listen-addresses", "",
		"A comma separated list of ip addresses the udp servers listen from")
	fs.IntVar(&f.delayShutdown, "delay-shutdown", 0, "Number of seconds to delay shutdown when receiving SIGTERM.")
	if err := parseFlags(fs, args); err != nil {
		if err == errHelp {
			return nil
		}
		return err
	}
	if f.delayShutdown < 0 {
		return fmt.Errorf("agnhost netexec: --delay-shutdown must not be negative, got %d", f.delayShutdown)
	}
	n := &netexec{
		rt:          rt,
		flags:       f,
		terminating: make(chan struct{}),
		stopping:    make(chan struct{}),
		exitCh:      make(chan exitRequest),
	}
	if err := n.run(ctx); err != nil {
		var exit *ExitError
		if errors.As(err, &exit) {
			return err
		}
		return fmt.Errorf("agnhost netexec: %w", err)
	}
	return nil
}

func (n *netexec) run(ctx context.Context) error {
	host, err := n.rt.bindHost()
	if err != nil {
		return err
	}
	if n.flags.sctpPort != -1 {
		n.rt.log.Printf("SCTP is not supported by berth: ignoring --sctp-port=%d", n.flags.sctpPort)
	}

	var udpConns []*net.UDPConn
	closeUDP := func() {
		for _, c := range udpConns {
			c.Close()
		}
	}
	if n.flags.udpPort != -1 {
		addrs := []string{host}
		if n.flags.udpListenAddresses != "" {
			if addrs, err = parseUDPAddresses(n.flags.udpListenAddresses); err != nil {
				return err
			}
		}
		for _, a := range addrs {
			laddr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(a, strconv.Itoa(n.flags.udpPort)))
			if err != nil {
				closeUDP()
				return fmt.Errorf("failed to resolve UDP address for port %d: %w", n.flags.udpPort, err)
			}
			conn, err := net.ListenUDP("udp", laddr)
			if err != nil {
				closeUDP()
				return fmt.Errorf("failed to create listener for UDP address %v: %w", laddr, err)
			}
			udpConns = append(udpConns, conn)
			n.rt.bound("udp", conn.LocalAddr())
			n.rt.log.Printf("Started UDP server on port %s %d", a, n.flags.udpPort)
		}
	}

	httpAddr := net.JoinHostPort(host, strconv.Itoa(n.flags.httpPort))
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		closeUDP()
		return fmt.Errorf("listen tcp %s: %w", httpAddr, err)
	}
	n.httpPort = ln.Addr().(*net.TCPAddr).Port
	n.rt.bound("http", ln.Addr())

	srv := &http.Server{
		Handler:           n.handler(),
		ErrorLog:          n.rt.log,
		ReadHeaderTimeout: time.Minute,
	}
	var (
		wg    sync.WaitGroup
		fatal = make(chan error, 1+len(udpConns))
	)
	// Health is decided before the HTTP server answers anything, so that a
	// probe never sees a server that is up but not yet healthy. SCTP counts
	// as a ready server upstream; berth pretends it started so that /healthz
	// and /readyz behave as they would with it.
	if len(udpConns) > 0 || n.flags.sctpPort != -1 {
		n.udpReady.Store(true)
	}
	wg.Go(func() {
		var err error
		if n.flags.certFile != "" {
			err = srv.ServeTLS(ln, n.flags.certFile, n.flags.keyFile)
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			fatal <- fmt.Errorf("serve HTTP on %s: %w", httpAddr, err)
		}
	})
	n.rt.log.Printf("Started HTTP server on port %d", n.flags.httpPort)
	for _, conn := range udpConns {
		wg.Go(func() {
			if err := n.serveUDP(conn); err != nil {
				fatal <- err
			}
		})
	}

	// shutdown stops every server; grace > 0 lets open requests finish.
	shutdown := func(grace time.Duration) {
		close(n.stopping)
		if grace > 0 {
			sctx, cancel := context.WithTimeout(context.Background(), grace)
			err := srv.Shutdown(sctx)
			cancel()
			n.rt.log.Printf("Graceful shutdown completed with: %v", err)
		}
		srv.Close()
		closeUDP()
		wg.Wait()
	}

	select {
	case <-ctx.Done():
	case req := <-n.exitCh:
		shutdown(req.timeout)
		return &ExitError{Code: req.code}
	case err := <-fatal:
		shutdown(0)
		return err
	}

	// Terminating: report not-ready but keep serving for --delay-shutdown,
	// so that endpoints drop this Pod before it stops answering.
	close(n.terminating)
	if d := n.flags.delayShutdown; d > 0 {
		n.rt.log.Printf("Sleeping %d seconds before terminating...", d)
		t := time.NewTimer(time.Duration(d) * time.Second)
		select {
		case <-t.C:
		case req := <-n.exitCh:
			t.Stop()
			shutdown(req.timeout)
			return &ExitError{Code: req.code}
		case err := <-fatal:
			t.Stop()
			shutdown(0)
			return err
		}
	}
	shutdown(shutdownTimeout)
	return nil
}

// requestExit hands req to the main loop. It reports false when the server
// is already stopping.
func (n *netexec) requestExit(req exitRequest) bool {
	select {
	case n.exitCh <- req:
		return true
	case <-n.stopping:
		return false
	}
}

// parseUDPAddresses parses --udp-listen-addresses: IPs, deduplicated and
// sorted as upstream does.
func parseUDPAddresses(s string) ([]string, error) {
	set := map[string]bool{}
	for _, a := range strings.Split(s, ",") {
		if netutils.ParseIPSloppy(a) == nil {
			return nil, fmt.Errorf("parseAddress: invalid address %s", a)
		}
		set[a] = true
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out, nil
}

// handler is upstream's route table, wrapped by --http-override.
func (n *netexec) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", n.root)
	mux.HandleFunc("/clientip", n.clientIP)
	mux.HandleFunc("/serverport", n.serverPort)
	mux.HandleFunc("/header", n.header)
	mux.HandleFunc("/dial", n.dial)
	mux.HandleFunc("/echo", n.echo)
	mux.HandleFunc("/exit", n.exit)
	mux.HandleFunc("/healthz", n.healthz)
	mux.HandleFunc("/readyz", n.readyz)
	mux.HandleFunc("/hostname", n.hostnameHandler("/hostname"))
	mux.HandleFunc("/redirect", n.redirect)
	mux.HandleFunc("/shell", n.shell)
	mux.HandleFunc("/upload", n.upload)
	// older handlers
	mux.HandleFunc("/hostName", n.hostnameHandler("/hostName"))
	mux.HandleFunc("/shutdown", n.shutdown)
	if n.flags.httpOverride == "" {
		return mux
	}
	override := n.flags.httpOverride
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// As upstream: a fresh GET, so the client's address and headers are
		// not carried over.
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, override, nil)
		if err != nil {
			http.Error(w, fmt.Sprintf("override request failed: %v", err), http.StatusInternalServerError)
			return
		}
		mux.ServeHTTP(w, req)
	})
}

func (n *netexec) root(w http.ResponseWriter, r *http.Request) {
	n.rt.log.Printf("GET /")
	fmt.Fprintf(w, "NOW: %v", time.Now())
}

// statusCode parses an optional "code" parameter. Upstream hands any integer
// to WriteHeader, which panics outside 100-999 and drops the connection;
// berth answers 400 instead.
func statusCode(w http.ResponseWriter, s string) (int, bool) {
	code, err := strconv.Atoi(s)
	if err != nil {
		fmt.Fprintf(w, "argument 'code' must be an integer or empty, got %q\n", s)
		return 0, false
	}
	if code < 100 || code > 999 {
		http.Error(w, fmt.Sprintf("argument 'code' must be an HTTP status code [100-999], got %d", code), http.StatusBadRequest)
		return 0, false
	}
	return code, true
}

func (n *netexec) echo(w http.ResponseWriter, r *http.Request) {
	msg := r.FormValue("msg")
	codeString := r.FormValue("code")
	n.rt.log.Printf("GET /echo?msg=%s&code=%s", msg, codeString)
	if codeString != "" {
		code, ok := statusCode(w, codeString)
		if !ok {
			return
		}
		w.WriteHeader(code)
	}
	fmt.Fprint(w, msg)
}

func (n *netexec) clientIP(w http.ResponseWriter, r *http.Request) {
	n.rt.log.Printf("GET /clientip")
	fmt.Fprint(w, r.RemoteAddr)
}

func (n *netexec) serverPort(w http.ResponseWriter, r *http.Request) {
	n.rt.log.Printf("GET /serverport")
	fmt.Fprint(w, n.httpPort)
}

func (n *netexec) header(w http.ResponseWriter, r *http.Request) {
	key := r.FormValue("key")
	if key != "" {
		n.rt.log.Printf("GET /header?key=%s", key)
		fmt.Fprint(w, r.Header.Get(key))
		return
	}
	n.rt.log.Printf("GET /header")
	data, err := json.Marshal(r.Header)
	if err != nil {
		fmt.Fprintf(w, "error marshalling header, err: %v", err)
		return
	}
	w.Write(data)
}

func (n *netexec) exit(w http.ResponseWriter, r *http.Request) {
	waitString := r.FormValue("wait")
	timeoutString := r.FormValue("timeout")
	codeString := r.FormValue("code")
	n.rt.log.Printf("GET /exit?code=%s&timeout=%s&wait=%s", codeString, timeoutString, waitString)
	timeout, err := time.ParseDuration(timeoutString)
	if err != nil && timeoutString != "" {
		fmt.Fprintf(w, "argument 'timeout' must be a valid golang duration or empty, got %q\n", timeoutString)
		return
	}
	wait, err := time.ParseDuration(waitString)
	if err != nil && waitString != "" {
		fmt.Fprintf(w, "argument 'wait' must be a valid golang duration or empty, got %q\n", waitString)
		return
	}
	code, err := strconv.Atoi(codeString)
	if err != nil && codeString != "" {
		fmt.Fprintf(w, "argument 'code' must be an integer [0-127] or empty, got %q\n", codeString)
		return
	}
	n.rt.log.Printf("Will begin shutdown in %s, allowing %s for connections to close, then will exit with %d", wait, timeout, code)
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-n.stopping:
			t.Stop()
			return
		}
	}
	if timeout <= 0 {
		n.exitNow(code)
		return
	}
	n.requestExit(exitRequest{code: code, timeout: timeout})
}

// exitNow ends the process at once, as upstream's os.Exit in a handler: the
// client gets no response.
func (n *netexec) exitNow(code int) {
	if n.requestExit(exitRequest{code: code}) {
		panic(http.ErrAbortHandler)
	}
}

func (n *netexec) shutdown(w http.ResponseWriter, r *http.Request) {
	n.rt.log.Printf("GET /shutdown")
	n.exitNow(0)
}

func (n *netexec) hostnameHandler(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n.rt.log.Printf("GET %s", path)
		h, err := n.rt.hostname()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, h)
	}
}

// healthz is 200 while the UDP server runs. Like upstream, with
// --udp-port=-1 (and no SCTP) it never becomes healthy.
func (n *netexec) healthz(w http.ResponseWriter, r *http.Request) {
	n.rt.log.Printf("GET /healthz")
	if n.udpReady.Load() {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusPreconditionFailed)
}

// readyz is healthz that turns 503 once termination began.
func (n *netexec) readyz(w http.ResponseWriter, r *http.Request) {
	n.rt.log.Printf("GET /readyz")
	select {
	case <-n.terminating:
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "shutting down")
		return
	default:
	}
	if n.udpReady.Load() {
		io.WriteString(w, "ok")
		return
	}
	w.WriteHeader(http.StatusPreconditionFailed)
}

func (n *netexec) redirect(w http.ResponseWriter, r *http.Request) {
	location := r.FormValue("location")
	codeString := r.FormValue("code")
	n.rt.log.Printf("%s /redirect?msg=%s&code=%s", r.Method, location, codeString)
	code := http.StatusFound
	if codeString != "" {
		var ok bool
		if code, ok = statusCode(w, codeString); !ok {
			return
		}
	}
	http.Redirect(w, r, location, code)
}

func (n *netexec) shell(w http.ResponseWriter, r *http.Request) {
	cmd := r.FormValue("shellCommand")
	if cmd == "" {
		cmd = r.FormValue("cmd")
	}
	n.rt.log.Printf("GET /shell?cmd=%s", cmd)
	out, err := exec.CommandContext(r.Context(), n.rt.shell, "-c", cmd).CombinedOutput()
	result := map[string]string{}
	if len(out) > 0 {
		result["output"] = string(out)
	}
	if err != nil {
		result["error"] = err.Error()
	}
	n.rt.log.Printf("Output: %s", result)
	// Upstream answers 200 whether or not the command succeeded.
	writeJSON(w, result, http.StatusOK)
}

func (n *netexec) upload(w http.ResponseWriter, r *http.Request) {
	n.rt.log.Printf("GET /upload")
	// Upstream reports these failures in the body with status 200.
	fail := func(msg string, err error) {
		n.rt.log.Printf("%s: %s", msg, err)
		writeJSON(w, map[string]string{"error": msg}, http.StatusOK)
	}
	file, _, err := r.FormFile("file")
	if err != nil {
		fail("Unable to upload file.", err)
		return
	}
	defer file.Close()
	f, err := os.CreateTemp(n.rt.uploadDir, "upload")
	if err != nil {
		fail("Unable to open file for write", err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, file); err != nil {
		fail("Unable to write file.", err)
		return
	}
	if err := os.Chmod(f.Name(), 0o700); err != nil {
		fail("Unable to chmod file.", err)
		return
	}
	n.rt.log.Printf("Wrote upload to %s", f.Name())
	writeJSON(w, map[string]string{"output": f.Name()}, http.StatusCreated)
}

func writeJSON(w http.ResponseWriter, v any, code int) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, fmt.Sprintf("response could not be serialized. %v", err), http.StatusExpectationFailed)
		return
	}
	if code != http.StatusOK {
		w.WriteHeader(code)
	}
	w.Write(data)
}
