package backend

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Config says where the backend listens and what it calls itself.
type Config struct {
	// HTTPAddr serves /echo, /hostname, /healthz and /readyz.
	HTTPAddr string
	// BulkAddr serves bulk transfers; empty means none.
	BulkAddr string
	// Name is what /hostname answers.
	Name   string
	Logger *slog.Logger
}

// MaxBulk bounds one bulk request.
const MaxBulk = 64 << 30

// Run serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if cfg.HTTPAddr == "" {
		return errors.New("backend: an HTTP address is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	hl, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("backend: listen on %s: %w", cfg.HTTPAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Query().Get("msg"))
	})
	mux.HandleFunc("/hostname", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, cfg.Name) })
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }
	mux.HandleFunc("/healthz", ok)
	mux.HandleFunc("/readyz", ok)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Minute}
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("backend: serve HTTP: %w", err)
		}
	}()
	if cfg.BulkAddr != "" {
		bl, err := net.Listen("tcp", cfg.BulkAddr)
		if err != nil {
			_ = srv.Close()
			wg.Wait()
			return fmt.Errorf("backend: listen on %s: %w", cfg.BulkAddr, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ServeBulk(ctx, bl, cfg.Logger)
		}()
	}
	cfg.Logger.Info("backend serving", "http", cfg.HTTPAddr, "bulk", cfg.BulkAddr, "name", cfg.Name)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	_ = srv.Close()
	wg.Wait()
	return runErr
}

// ServeBulk answers each connection's 8-byte big-endian count n with n
// bytes, then closes it; it closes l when ctx is done.
func ServeBulk(ctx context.Context, l net.Listener, log *slog.Logger) {
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("bulk accept", "err", err)
			}
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			closeOnDone := context.AfterFunc(ctx, func() { _ = c.Close() })
			defer closeOnDone()
			var req [8]byte
			if _, err := io.ReadFull(c, req[:]); err != nil {
				return
			}
			n := binary.BigEndian.Uint64(req[:])
			if n > MaxBulk {
				return
			}
			for n > 0 {
				k := uint64(len(buf))
				if n < k {
					k = n
				}
				if _, err := c.Write(buf[:k]); err != nil {
					return
				}
				n -= k
			}
		}()
	}
}

// ServeID writes id and a newline to every connection and closes it; it
// closes l when ctx is done.
func ServeID(ctx context.Context, l net.Listener, id string) {
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()
	msg := []byte(id + "\n")
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(msg)
		_ = c.Close()
	}
}

// Main is `bench backend`: flags -http, -bulk, -name (default $HOSTNAME).
func Main(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	var cfg Config
	fs.StringVar(&cfg.HTTPAddr, "http", "", "address for the HTTP server (required)")
	fs.StringVar(&cfg.BulkAddr, "bulk", "", "address for the bulk server")
	fs.StringVar(&cfg.Name, "name", os.Getenv("HOSTNAME"), "what /hostname answers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("backend: unexpected arguments %q", fs.Args())
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	return Run(ctx, cfg)
}
