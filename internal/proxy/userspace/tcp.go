package userspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
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
// bytes with splice(2) inside the kernel.
func (p *Proxier) proxyTCP(sp *servicePort, client *net.TCPConn) {
	defer p.wg.Done()
	ctx := p.runCtx
	stopClient := context.AfterFunc(ctx, func() { client.Close() })
	defer stopClient()

	clientIP := netip.Addr{}
	if ta, ok := client.RemoteAddr().(*net.TCPAddr); ok {
		clientIP = ta.AddrPort().Addr().Unmap()
	}
	backend, ep, bm, err := p.dialEndpoint(ctx, sp, clientIP)
	if err != nil {
		if ctx.Err() == nil {
			sp.log.Warn("no endpoint reachable; closing client connection", "client", clientIP.String(), "err", err)
		}
		client.Close()
		return
	}
	stopBackend := context.AfterFunc(ctx, func() { backend.Close() })
	defer stopBackend()
	bm.connections.Inc()
	bm.active.Inc()
	defer bm.active.Dec()

	toEndpoint := make(chan struct{})
	go func() { // joined below before proxyTCP returns
		defer close(toEndpoint)
		n, err := io.Copy(backend, client)
		bm.toEndpoint.Add(float64(n))
		halfClose(backend, client, err)
	}()
	n, err := io.Copy(client, backend)
	bm.toClient.Add(float64(n))
	halfClose(client, backend, err)
	<-toEndpoint
	client.Close()
	backend.Close()
	sp.log.Debug("service connection ended", "endpoint", ep.String())
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

// dialEndpoint connects to an endpoint of sp, moving on to the next one
// when a dial fails, for at most MaxDialAttempts endpoints.
func (p *Proxier) dialEndpoint(ctx context.Context, sp *servicePort, client netip.Addr) (*net.TCPConn, netip.AddrPort, backendMetrics, error) {
	var tried []netip.AddrPort
	var errs []error
	d := net.Dialer{Timeout: p.cfg.DialTimeout}
	for range p.cfg.MaxDialAttempts {
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
	return nil, netip.AddrPort{}, backendMetrics{}, fmt.Errorf("%d endpoint(s) tried: %w", len(tried), errors.Join(errs...))
}
