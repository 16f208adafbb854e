package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Conn is one HTTP/1.1 client connection: the smallest client that can
// talk to agnhost-style servers, so the client's own cost is the same tiny
// constant for every target.
type Conn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
}

// Dial connects to addr (host:port) within timeout.
func Dial(ctx context.Context, addr string, timeout time.Duration) (*Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Conn{c: c, r: bufio.NewReaderSize(c, 16<<10)}, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// NetConn is the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.c }

// Get sends GET path and reads the whole response; closeAfter asks the
// server to close the connection after it. The deadline bounds the exchange.
func (c *Conn) Get(path string, closeAfter bool, deadline time.Time) (status int, body []byte, err error) {
	if err := c.c.SetDeadline(deadline); err != nil {
		return 0, nil, err
	}
	c.buf = append(c.buf[:0], "GET "...)
	c.buf = append(c.buf, path...)
	c.buf = append(c.buf, " HTTP/1.1\r\nHost: bench\r\nUser-Agent: berth-bench\r\n"...)
	if closeAfter {
		c.buf = append(c.buf, "Connection: close\r\n"...)
	}
	c.buf = append(c.buf, "\r\n"...)
	if _, err := c.c.Write(c.buf); err != nil {
		return 0, nil, err
	}
	return c.readResponse()
}

func (c *Conn) readResponse() (int, []byte, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	// HTTP/1.1 200 OK
	f := bytes.Fields(line)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/")) {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	length, chunked := -1, false
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, fmt.Errorf("read headers: %w", err)
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch strings.ToLower(string(k)) {
		case "content-length":
			if length, err = strconv.Atoi(string(v)); err != nil {
				return 0, nil, fmt.Errorf("bad Content-Length %q", v)
			}
		case "transfer-encoding":
			chunked = bytes.EqualFold(v, []byte("chunked"))
		}
	}
	switch {
	case chunked:
		body, err := readChunked(c.r)
		return status, body, err
	case length >= 0:
		body := make([]byte, length)
		_, err := io.ReadFull(c.r, body)
		return status, body, err
	default:
		body, err := io.ReadAll(c.r)
		return status, body, err
	}
}

func readChunked(r *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("read chunk size: %w", err)
		}
		size, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(line, ";", 2)[0]), 16, 64)
		if err != nil || size < 0 || size > 64<<20 {
			return nil, fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			_, err := r.ReadString('\n')
			return body, err
		}
		chunk := make([]byte, size+2)
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, err
		}
		body = append(body, chunk[:size]...)
	}
}

// GetOnce dials addr, sends one GET path with Connection: close, and returns
// the status and body.
func GetOnce(ctx context.Context, addr, path string, timeout time.Duration) (int, []byte, error) {
	c, err := Dial(ctx, addr, timeout)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	return c.Get(path, true, time.Now().Add(timeout))
}

// ErrorKind names err in a few words, for counting failures by cause.
func ErrorKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "closed before a response (EOF)"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "cancelled"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// Refused says whether err is a refused connection (the proxy's answer
// when a service has no endpoint).
func Refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
