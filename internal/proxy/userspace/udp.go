package userspace

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxDatagram is the largest UDP payload (65535 minus the IPv4 and UDP headers).
const maxDatagram = 65507

// udpListener proxies one address of a UDP service port. Each client
// address gets a session: a socket connected to one endpoint, so replies
// find their way back, ended after UDPIdleTimeout without traffic. Replies
// go out of the listener's own socket, so the client sees them come from
// the service address it sent to.
type udpListener struct {
	p    *Proxier
	sp   *servicePort
	conn *net.UDPConn
	addr string

	mu sync.Mutex
	// sessions and closed are guarded by mu.
	sessions map[netip.AddrPort]*udpSession
	closed   bool
}

type udpSession struct {
	client   netip.AddrPort
	endpoint netip.AddrPort
	conn     *net.UDPConn
	bm       backendMetrics
	// lastActive is the UnixNano time of the last datagram either way.
	lastActive atomic.Int64
	endOnce    sync.Once
}

func (p *Proxier) listenUDP(sp *servicePort, ap netip.AddrPort) (listener, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, err
	}
	l := &udpListener{p: p, sp: sp, conn: conn, addr: listenString(ap, sp.name.Protocol), sessions: map[netip.AddrPort]*udpSession{}}
	p.wg.Add(1)
	go l.serve()
	return l, nil
}

// endpointsChanged ends sessions whose endpoint is no longer usable. UDP
// has no end of stream, so unlike TCP a session would otherwise keep
// sending into a gone pod; kube-proxy flushes the conntrack entries of
// removed UDP endpoints for the same reason. The client's next datagram
// starts a session with a live endpoint.
func (l *udpListener) endpointsChanged(usable []netip.AddrPort) {
	var stale []*udpSession
	l.mu.Lock()
	for _, s := range l.sessions {
		if !slices.Contains(usable, s.endpoint) {
			stale = append(stale, s)
		}
	}
	l.mu.Unlock()
	for _, s := range stale {
		l.end(s)
	}
}

func (l *udpListener) close() {
	l.conn.Close()
	l.mu.Lock()
	l.closed = true
	all := make([]*udpSession, 0, len(l.sessions))
	for _, s := range l.sessions {
		all = append(all, s)
	}
	l.mu.Unlock()
	for _, s := range all {
		l.end(s)
	}
}

func (l *udpListener) serve() {
	defer l.p.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, client, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.sp.log.Warn("read service datagram", "listen", l.addr, "err", err)
			continue
		}
		client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
		s := l.session(client)
		if s == nil {
			continue // no endpoint reachable: drop, as a lost datagram
		}
		if _, err := s.conn.Write(buf[:n]); err != nil {
			// A connected UDP socket reports an earlier ICMP port
			// unreachable here: the endpoint is gone, so is the session.
			s.bm.dialFailures.Inc()
			l.sp.log.Debug("send to endpoint failed; ending session", "endpoint", s.endpoint.String(), "err", err)
			l.end(s)
			continue
		}
		s.bm.toEndpoint.Add(float64(n))
		s.lastActive.Store(time.Now().UnixNano())
	}
}

// session returns client's session, starting one if needed; nil if no
// endpoint could be reached.
func (l *udpListener) session(client netip.AddrPort) *udpSession {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	if s := l.sessions[client]; s != nil {
		return s
	}
	var tried []netip.AddrPort
	for range l.p.cfg.MaxDialAttempts {
		ep, ok := l.sp.lb.pick(client.Addr(), tried)
		if !ok {
			return nil
		}
		tried = append(tried, ep)
		bm := l.p.metrics.backend(l.sp.name, ep.String())
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ep))
		if err != nil {
			bm.dialFailures.Inc()
			l.sp.log.Debug("open socket to endpoint failed; trying the next", "endpoint", ep.String(), "err", err)
			continue
		}
		s := &udpSession{client: client, endpoint: ep, conn: conn, bm: bm}
		s.lastActive.Store(time.Now().UnixNano())
		l.sessions[client] = s
		bm.connections.Inc()
		bm.active.Inc()
		l.p.wg.Add(1)
		go l.replies(s)
		return s
	}
	return nil
}

// replies copies the endpoint's datagrams back to the client until the
// session has been idle for UDPIdleTimeout or ends otherwise.
func (l *udpListener) replies(s *udpSession) {
	defer l.p.wg.Done()
	defer l.end(s)
	idle := l.p.cfg.UDPIdleTimeout
	buf := make([]byte, maxDatagram)
	for {
		last := time.Unix(0, s.lastActive.Load())
		if time.Since(last) >= idle {
			return
		}
		s.conn.SetReadDeadline(last.Add(idle))
		n, err := s.conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // re-checks idleness against the newest activity
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				s.bm.dialFailures.Inc()
			}
			return
		}
		if _, err := l.conn.WriteToUDPAddrPort(buf[:n], s.client); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.sp.log.Debug("send reply to client failed", "endpoint", s.endpoint.String(), "err", err)
			continue
		}
		s.bm.toClient.Add(float64(n))
		s.lastActive.Store(time.Now().UnixNano())
	}
}

func (l *udpListener) end(s *udpSession) {
	l.mu.Lock()
	if l.sessions[s.client] == s {
		delete(l.sessions, s.client)
	}
	l.mu.Unlock()
	s.endOnce.Do(func() {
		s.conn.Close()
		s.bm.active.Dec()
	})
}
