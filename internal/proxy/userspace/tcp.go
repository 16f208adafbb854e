package userspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// tcpListener accepts connections on one address of a service port.
type tcpListener struct {
	p    *Proxier
	sp   *servicePort
	ln   *net.TCPListener
	addr string
	done chan struct{}
}

func (p *Proxier) listenTCP(sp *servicePort, ap netip.AddrPort) (listener, error) {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return nil, err
	}
	l := &tcpListener{p: p, sp: sp, ln: ln, addr: listenString(ap, sp.name.Protocol), done: make(chan struct{})}
	p.wg.Add(1)
	go l.serve()
	return l, nil
}

func (l *tcpListener) endpointsChanged([]netip.AddrPort) {
	// Nothing to do: new connections ask the balancer, and established ones
	// drain on the endpoint they have.
}

func (l *tcpListener) close() {
	close(l.done)
	l.ln.Close()
}

func (l *tcpListener) serve() {
	defer l.p.wg.Done()
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off instead of
			// spinning, and let the kernel queue meanwhile.
			l.sp.log.Warn("accept service connection", "listen", l.addr, "err", err)
			select {
			case <-l.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		l.p.wg.Add(1)
		go l.p.proxyTCP(l.sp, c)
	}
}

// proxyTCP connects client to an endpoint and copies both ways until both
// directions have ended. Both sides stay *net.TCPConn so io.Copy moves the
// bulk of the bytes with splice(2) inside the kernel.
//
// An endpoint that resets the connection before it has sent a byte (its
// process was killed, or it closed its listener with this connection still
// in the accept queue, as a pod does on SIGTERM a moment before its endpoint
// is removed) gets the same treatment as one whose dial fails: the client
// moves to the next endpoint, with what it sent so far replayed (up to
// maxReplay bytes). A clean close without an answer is passed on as it is:
// for a one-way protocol that is the normal end, and replaying would deliver
// twice.
func (p *Proxier) proxyTCP(sp *servicePort, client *net.TCPConn) {
	defer p.wg.Done()
	ctx := p.runCtx
	stopClient := context.AfterFunc(ctx, func() { client.Close() })
	defer stopClient()

	clientIP := netip.Addr{}
	if ta, ok := client.RemoteAddr().(*net.TCPAddr); ok {
		clientIP = ta.AddrPort().Addr().Unmap()
	}
	var tried []netip.AddrPort
	var sent []byte
	clientDone := false
	for {
		backend, ep, bm, err := p.dialEndpoint(ctx, sp, clientIP, tried)
		if err != nil {
			if ctx.Err() == nil {
				sp.log.Warn("no endpoint reachable; closing client connection", "client", clientIP.String(), "err", err)
			}
			client.Close()
			return
		}
		tried = append(tried, ep)
		canMove := len(tried) < p.cfg.MaxDialAttempts
		moved, again := p.relay(ctx, sp, client, backend, bm, sent, clientDone, canMove)
		if moved {
			sp.log.Debug("endpoint reset the connection before answering; moving the client", "endpoint", ep.String())
			bm.dialFailures.Inc()
			sent, clientDone = again.sent, again.done
			continue
		}
		sp.log.Debug("service connection ended", "endpoint", ep.String())
		return
	}
}

// maxReplay bounds what relay keeps of the client's bytes to replay them to
// another endpoint.
const maxReplay = 64 << 10

// firstReadSize is the buffer of the reads done by hand before the endpoint
// answers; an idle connection holds two, so they are small.
const firstReadSize = 4 << 10

// replay is what the client sent before the endpoint answered.
type replay struct {
	sent []byte
	done bool // the client had closed its side
}

// relay copies between client and backend. It returns moved when backend
// reset the connection before answering and the client can go on to another
// endpoint (then client is left open and backend closed), with what to
// replay there.
func (p *Proxier) relay(ctx context.Context, sp *servicePort, client, backend *net.TCPConn, bm backendMetrics, sent []byte, clientDone, canMove bool) (bool, replay) {
	stopBackend := context.AfterFunc(ctx, func() { backend.Close() })
	defer stopBackend()
	bm.connections.Inc()
	bm.active.Inc()
	defer bm.active.Dec()

	rec := &recorder{buf: append([]byte(nil), sent...), done: clientDone}
	toEndpoint := make(chan error, 1)
	go func() { // joined below before relay returns
		toEndpoint <- p.copyToEndpoint(backend, client, rec, bm)
	}()

	// The first answer is read by hand, to see whether there is one.
	buf := make([]byte, firstReadSize)
	n, err := backend.Read(buf)
	if n == 0 && err != nil && !errors.Is(err, io.EOF) && canMove && ctx.Err() == nil {
		// Stop reading the client without closing it, then look at what
		// it sent: all of it must still be in hand to move on.
		backend.Close()
		_ = client.SetReadDeadline(time.Now())
		cerr := <-toEndpoint
		_ = client.SetReadDeadline(time.Time{})
		if ok, r := rec.replayable(); ok && (cerr == nil || errors.Is(cerr, os.ErrDeadlineExceeded) || isBackendError(cerr)) {
			return true, r
		}
		client.Close()
		return false, replay{}
	}
	rec.answered()
	if n > 0 {
		if _, werr := client.Write(buf[:n]); werr != nil {
			err = werr
		}
		bm.toClient.Add(float64(n))
	}
	if err == nil {
		var m int64
		m, err = io.Copy(client, backend)
		bm.toClient.Add(float64(m))
	}
	halfClose(client, backend, err)
	<-toEndpoint
	client.Close()
	backend.Close()
	return false, replay{}
}

// copyToEndpoint sends what the client sent before (rec) and then what it
// sends, recording it by hand until the endpoint answers or too much was
// sent, and splicing the rest.
func (p *Proxier) copyToEndpoint(backend, client *net.TCPConn, rec *recorder, bm backendMetrics) error {
	if pending, done := rec.snapshot(); len(pending) > 0 || done {
		if len(pending) > 0 {
			if _, err := backend.Write(pending); err != nil {
				return &backendError{err}
			}
			bm.toEndpoint.Add(float64(len(pending)))
		}
		if done {
			_ = backend.CloseWrite()
			return nil
		}
	}
	buf := make([]byte, firstReadSize)
	for rec.recording() {
		n, err := client.Read(buf)
		if n > 0 {
			rec.add(buf[:n])
			if _, werr := backend.Write(buf[:n]); werr != nil {
				return &backendError{werr}
			}
			bm.toEndpoint.Add(float64(n))
		}
		if errors.Is(err, io.EOF) {
			rec.finish()
			halfClose(backend, client, nil)
			return nil
		}
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				halfClose(backend, client, err)
			}
			return err
		}
	}
	n, err := io.Copy(backend, client)
	bm.toEndpoint.Add(float64(n))
	halfClose(backend, client, err)
	return nil
}

// backendError marks a write to the endpoint that failed.
type backendError struct{ err error }

func (e *backendError) Error() string { return e.err.Error() }

func isBackendError(err error) bool {
	var be *backendError
	return errors.As(err, &be)
}

// recorder keeps the client's bytes until the endpoint answers, up to
// maxReplay; after that relay no longer needs them.
type recorder struct {
	mu       sync.Mutex
	buf      []byte
	done     bool // the client closed its side
	overflow bool
	over     bool // the endpoint answered: stop recording
}

func (r *recorder) add(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.over || r.overflow {
		return
	}
	if len(r.buf)+len(p) > maxReplay {
		r.overflow, r.buf = true, nil
		return
	}
	r.buf = append(r.buf, p...)
}

func (r *recorder) recording() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.over && !r.overflow
}

func (r *recorder) answered() {
	r.mu.Lock()
	r.over, r.buf = true, nil
	r.mu.Unlock()
}

func (r *recorder) finish() {
	r.mu.Lock()
	r.done = true
	r.mu.Unlock()
}

func (r *recorder) snapshot() ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf...), r.done
}

func (r *recorder) replayable() (bool, replay) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.overflow || r.over {
		return false, replay{}
	}
	return true, replay{sent: append([]byte(nil), r.buf...), done: r.done}
}

// halfClose ends one direction: after a clean EOF from src it forwards the
// FIN to dst, so the other direction can still finish (a client that shuts
// down writing still gets its reply); after an error it closes both sides,
// so the other direction stops too.
func halfClose(dst, src *net.TCPConn, err error) {
	if err == nil {
		if dst.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
	src.Close()
}

// dialEndpoint connects to an endpoint of sp that is not in skip, moving on
// to the next one when a dial fails, for at most MaxDialAttempts endpoints
// in all (skip included).
func (p *Proxier) dialEndpoint(ctx context.Context, sp *servicePort, client netip.Addr, skip []netip.AddrPort) (*net.TCPConn, netip.AddrPort, backendMetrics, error) {
	tried := append([]netip.AddrPort(nil), skip...)
	var errs []error
	d := net.Dialer{Timeout: p.cfg.DialTimeout}
	for len(tried) < p.cfg.MaxDialAttempts {
		ep, ok := sp.lb.pick(client, tried)
		if !ok {
			break
		}
		tried = append(tried, ep)
		bm := p.metrics.backend(sp.name, ep.String())
		c, err := d.DialContext(ctx, "tcp", ep.String())
		if err == nil {
			return c.(*net.TCPConn), ep, bm, nil
		}
		if ctx.Err() != nil {
			return nil, netip.AddrPort{}, backendMetrics{}, ctx.Err()
		}
		bm.dialFailures.Inc()
		sp.log.Debug("dial endpoint failed; trying the next", "endpoint", ep.String(), "err", err)
		errs = append(errs, err)
	}
	if len(tried) == 0 {
		return nil, netip.AddrPort{}, backendMetrics{}, errors.New("service port has no endpoints")
	}
	if len(errs) == 0 {
		return nil, netip.AddrPort{}, backendMetrics{}, fmt.Errorf("no other endpoint left after %d tried", len(tried))
	}
	return nil, netip.AddrPort{}, backendMetrics{}, fmt.Errorf("%d endpoint(s) tried: %w", len(tried), errors.Join(errs...))
}
