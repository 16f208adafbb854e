package agnhost

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// runServeHostname is upstream's `agnhost serve-hostname`: it answers every
// HTTP request, TCP connection or UDP datagram on --port with the hostname.
//
// Upstream lingers 60 s after SIGTERM ("Awaiting pod deletion") until the
// kubelet kills it; berth stops as soon as ctx is cancelled instead, so a
// Pod deletion does not always wait out its whole grace period.
func runServeHostname(ctx context.Context, args []string, rt *runtime) error {
	fs := newFlagSet("serve-hostname", rt)
	doTCP := fs.Bool("tcp", false, "Serve raw over TCP.")
	doUDP := fs.Bool("udp", false, "Serve raw over UDP.")
	doHTTP := fs.Bool("http", true, "Serve HTTP.")
	doClose := fs.Bool("close", false, "Close connection per each HTTP request.")
	port := fs.Int("port", 9376, "Port number.")
	if err := parseFlags(fs, args); err != nil {
		if err == errHelp {
			return nil
		}
		return err
	}
	if *doHTTP && (*doTCP || *doUDP) {
		// Upstream's wording, so the log line matches.
		return errors.New("agnhost serve-hostname: Can't server TCP/UDP mode and HTTP mode at the same time")
	}
	hostname, err := rt.hostname()
	if err != nil {
		return fmt.Errorf("agnhost serve-hostname: %w", err)
	}
	host, err := rt.bindHost()
	if err != nil {
		return fmt.Errorf("agnhost serve-hostname: %w", err)
	}
	addr := net.JoinHostPort(host, strconv.Itoa(*port))

	var (
		closers []func()
		serves  []func() error
	)
	stopAll := func() {
		for _, c := range closers {
			c()
		}
	}
	if *doTCP {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			stopAll()
			return fmt.Errorf("agnhost serve-hostname: listen tcp %s: %w", addr, err)
		}
		rt.bound("tcp", ln.Addr())
		closers = append(closers, func() { ln.Close() })
		serves = append(serves, func() error { return serveHostnameTCP(ln, hostname, rt) })
	}
	if *doUDP {
		conn, err := net.ListenPacket("udp", addr)
		if err != nil {
			stopAll()
			return fmt.Errorf("agnhost serve-hostname: listen udp %s: %w", addr, err)
		}
		rt.bound("udp", conn.LocalAddr())
		closers = append(closers, func() { conn.Close() })
		serves = append(serves, func() error { return serveHostnameUDP(conn, hostname, rt) })
	}
	if *doHTTP {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			stopAll()
			return fmt.Errorf("agnhost serve-hostname: listen tcp %s: %w", addr, err)
		}
		rt.bound("http", ln.Addr())
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rt.log.Printf("HTTP request from %s", r.RemoteAddr)
				if *doClose {
					w.Header().Add("Connection", "close")
				}
				fmt.Fprint(w, hostname)
			}),
			ErrorLog:          rt.log,
			ReadHeaderTimeout: time.Minute,
		}
		closers = append(closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if srv.Shutdown(sctx) != nil {
				srv.Close()
			}
		})
		serves = append(serves, func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	rt.log.Printf("Serving on port %d.\n", *port)

	var (
		wg    sync.WaitGroup
		fatal = make(chan error, len(serves))
	)
	for _, serve := range serves {
		wg.Go(func() {
			if err := serve(); err != nil {
				fatal <- err
			}
		})
	}
	var result error
	select {
	case <-ctx.Done():
		rt.log.Printf("Shutting down: %v.\n", context.Cause(ctx))
	case err := <-fatal:
		result = fmt.Errorf("agnhost serve-hostname: %w", err)
	}
	stopAll()
	wg.Wait()
	return result
}

// serveHostnameTCP writes the hostname to each connection and closes it.
// It returns nil once ln is closed.
func serveHostnameTCP(ln net.Listener, hostname string, rt *runtime) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		rt.log.Printf("TCP request from %s", conn.RemoteAddr())
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		conn.Write([]byte(hostname))
		conn.Close()
	}
}

// serveHostnameUDP answers every datagram with the hostname. It returns nil
// once conn is closed.
func serveHostnameUDP(conn net.PacketConn, hostname string, rt *runtime) error {
	// Upstream reads into 16 bytes: the request's content does not matter.
	var buf [16]byte
	for {
		_, from, err := conn.ReadFrom(buf[:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read udp: %w", err)
		}
		rt.log.Printf("UDP request from %s", from)
		if _, err := conn.WriteTo([]byte(hostname), from); err != nil {
			rt.log.Printf("Error writing to UDP client %s: %v", from, err)
		}
	}
}
