package apiserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/client-go/tools/portforward"
)

// spdyTunnelProtocol is what kubectl (1.31+) asks for first when it
// port-forwards: SPDY frames carried in WebSocket binary messages.
const spdyTunnelProtocol = "SPDY/3.1+portforward.k8s.io"

// wantsSPDYTunnel says whether r asks for the WebSocket tunnel of
// port-forward.
func wantsSPDYTunnel(r *http.Request) bool {
	if !isWebSocketTunnel(r) {
		return false
	}
	for _, p := range gwebsocket.Subprotocols(r) {
		if p == spdyTunnelProtocol {
			return true
		}
	}
	return false
}

// serveSPDYTunnel relays kubectl's SPDY-over-WebSocket port-forward to the
// agent, which speaks plain SPDY as a kubelet does: it opens the SPDY
// upgrade to the agent first (so an agent error reaches kubectl as an HTTP
// error it falls back on), then accepts the WebSocket and copies bytes both
// ways. The SPDY session itself runs end to end between kubectl and the agent.
func (s *Server) serveSPDYTunnel(w http.ResponseWriter, r *http.Request, loc *url.URL, transport http.RoundTripper) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	backend, err := dialSPDYUpgrade(ctx, loc, transport)
	cancel()
	if err != nil {
		writeError(w, err)
		return
	}
	up := gwebsocket.Upgrader{
		Subprotocols:    []string{spdyTunnelProtocol},
		CheckOrigin:     func(*http.Request) bool { return true }, // authenticated by client certificate
		ReadBufferSize:  32 << 10,
		WriteBufferSize: 32 << 10,
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		_ = backend.Close()
		s.log.Debug("port-forward websocket upgrade failed", "err", err)
		return // Upgrade has answered the client
	}
	client := portforward.NewTunnelingConnection("apiserver", ws)
	var once sync.Once
	closeBoth := func() { once.Do(func() { _ = client.Close(); _ = backend.Close() }) }
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(backend, client); closeBoth(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, backend); closeBoth(); done <- struct{}{} }()
	select {
	case <-done:
	case <-r.Context().Done():
		closeBoth()
	}
	closeBoth()
}

// dialSPDYUpgrade opens loc and upgrades it to SPDY for port-forward, as
// kubectl would, and returns the upgraded connection.
func dialSPDYUpgrade(ctx context.Context, loc *url.URL, transport http.RoundTripper) (net.Conn, error) {
	conn, err := proxy.DialURL(ctx, loc, transport)
	if err != nil {
		return nil, fmt.Errorf("dial the node agent: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	req := &http.Request{Method: http.MethodPost, URL: loc, Host: loc.Host, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	req.Header.Set("X-Stream-Protocol-Version", "portforward.k8s.io")
	if err := req.Write(conn); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("send the upgrade to the node agent: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("read the node agent's upgrade answer: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_ = conn.Close()
		return nil, agentError(resp.StatusCode, body)
	}
	_ = conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// bufferedConn keeps bytes the HTTP reader read past the upgrade answer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// agentError turns an agent's refusal into an API error with its message.
func agentError(code int, body []byte) error {
	msg := strings.TrimSpace(string(body))
	if st := decodeStatus(body); st != nil {
		return st
	}
	return fmt.Errorf("the node agent answered %d: %s", code, msg)
}
