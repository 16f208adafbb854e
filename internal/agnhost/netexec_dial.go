package agnhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// dialTimeout is upstream's per-try limit for /dial.
const dialTimeout = 5 * time.Second

// dial is upstream's /dial: send request to host:port over protocol, tries
// times, and report {"responses": [...], "errors": [...]}.
func (n *netexec) dial(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	host := q.Get("host")
	port := q.Get("port")
	request := q.Get("request")
	protocol := q.Get("protocol")
	tryParam := q.Get("tries")
	n.rt.log.Printf("GET /dial?host=%s&protocol=%s&port=%s&request=%s&tries=%s", host, protocol, port, request, tryParam)
	tries := 1
	if tryParam != "" {
		var err error
		if tries, err = strconv.Atoi(tryParam); err != nil {
			http.Error(w, fmt.Sprintf("tries parameter is invalid. %v", err), http.StatusBadRequest)
			return
		}
	}
	if request == "" {
		// Upstream prints its (nil) error here too.
		http.Error(w, "request parameter not specified. <nil>", http.StatusBadRequest)
		return
	}

	hostPort := net.JoinHostPort(host, port)
	var (
		addr   net.Addr
		dialer func(ctx context.Context, request string, addr net.Addr) (string, error)
		err    error
	)
	switch strings.ToLower(protocol) {
	case "", "http":
		dialer = dialHTTP
		addr, err = net.ResolveTCPAddr("tcp", hostPort)
	case "udp":
		dialer = dialUDP
		addr, err = net.ResolveUDPAddr("udp", hostPort)
	case "sctp":
		http.Error(w, "unsupported protocol. sctp (berth's agnhost has no SCTP)", http.StatusBadRequest)
		return
	default:
		http.Error(w, fmt.Sprintf("unsupported protocol. %s", protocol), http.StatusBadRequest)
		return
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("host and/or port param are invalid. %v", err), http.StatusBadRequest)
		return
	}

	errs := []string{}
	responses := []string{}
	var response string
	for i := 0; i < tries && r.Context().Err() == nil; i++ {
		response, err = dialer(r.Context(), request, addr)
		if err != nil {
			errs = append(errs, err.Error())
		} else {
			responses = append(responses, response)
		}
	}
	out := map[string][]string{}
	// As upstream: responses are reported only when the last try answered.
	if response != "" {
		out["responses"] = responses
	}
	if len(errs) > 0 {
		out["errors"] = errs
	}
	writeJSON(w, out, http.StatusOK)
}

// dialHTTP GETs http://addr/request and returns the body, whatever the status.
func dialHTTP(ctx context.Context, request string, addr net.Addr) (string, error) {
	// A fresh transport per try, as upstream: every try is a new connection,
	// so each one goes through Service load balancing again.
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: dialTimeout}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/%s", addr, request), nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	return string(body), nil
}

// dialUDP sends request in one datagram and returns the first reply.
func dialUDP(ctx context.Context, request string, addr net.Addr) (string, error) {
	conn, err := net.DialUDP("udp", nil, addr.(*net.UDPAddr))
	if err != nil {
		return "", fmt.Errorf("udp dial failed. err:%v", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(request)); err != nil {
		return "", fmt.Errorf("udp connection write failed. err:%v", err)
	}
	deadline := time.Now().Add(dialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetReadDeadline(deadline)
	buf := make([]byte, 2048)
	count, err := conn.Read(buf)
	if err != nil || count == 0 {
		return "", fmt.Errorf("reading from udp connection failed. err:'%v'", err)
	}
	return string(buf[:count]), nil
}

// serveUDP is upstream's UDP server: "hostname", "echo <msg>", "clientip"
// and "serverport", case-insensitively; anything else gets no reply. It
// returns nil once conn is closed.
func (n *netexec) serveUDP(conn *net.UDPConn) error {
	defer func() {
		n.rt.log.Printf("UDP server exited")
		n.udpReady.Store(false)
	}()
	port := conn.LocalAddr().(*net.UDPAddr).Port
	buf := make([]byte, 2048)
	for {
		count, client, err := conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("failed accepting UDP connections: %w", err)
		}
		// Upstream lower-cases the whole datagram, so echo replies are
		// lower-case too.
		text := strings.ToLower(strings.TrimSpace(string(buf[:count])))
		var reply string
		switch {
		case text == "hostname":
			n.rt.log.Println("Sending udp hostName response")
			h, err := n.rt.hostname()
			if err != nil {
				n.rt.log.Printf("Error occurred: %v", err)
				continue
			}
			reply = h
		case strings.HasPrefix(text, "echo "):
			reply = strings.SplitN(text, " ", 2)[1]
			n.rt.log.Printf("Echoing %v to UDP client %s\n", reply, client)
		case text == "clientip":
			n.rt.log.Printf("Sending clientip back to UDP client %s\n", client)
			reply = client.String()
		case text == "serverport":
			n.rt.log.Printf("Sending server port to UDP client %s\n", strconv.Itoa(port))
			reply = strconv.Itoa(port)
		default:
			if text != "" {
				n.rt.log.Printf("Unknown UDP command received from %s: %v\n", client, text)
			}
			continue
		}
		if _, err := conn.WriteToUDP([]byte(reply), client); err != nil {
			n.rt.log.Printf("Error occurred: failed to write to UDP client %s: %v", client, err)
		}
	}
}
