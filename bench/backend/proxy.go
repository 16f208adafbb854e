package backend

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
)

// ProxyConfig is a minimal TCP proxy: the smallest Go program that does
// what a userspace Service proxy does per connection (accept, dial,
// copy both ways with half-close), as a peer that separates the cost of
// Go's copy path from the cost of berth's own code.
type ProxyConfig struct {
	// Routes maps listen addresses to the address each forwards to.
	Routes map[string]string
	// Buffered copies through a 32 KiB buffer with read and write instead
	// of io.Copy between two TCP connections (which splices).
	Buffered bool
	Logger   *slog.Logger
}

// RunProxy serves until ctx is done.
func RunProxy(ctx context.Context, cfg ProxyConfig) error {
	if len(cfg.Routes) == 0 {
		return errors.New("proxy: no routes")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for listen, to := range cfg.Routes {
		l, err := net.Listen("tcp", listen)
		if err != nil {
			return fmt.Errorf("proxy: listen on %s: %w", listen, err)
		}
		stop := context.AfterFunc(ctx, func() { _ = l.Close() })
		defer stop()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					proxyConn(ctx, c.(*net.TCPConn), to, cfg.Buffered)
				}()
			}
		}()
	}
	cfg.Logger.Info("proxy serving", "routes", cfg.Routes, "buffered", cfg.Buffered)
	<-ctx.Done()
	return nil
}

func proxyConn(ctx context.Context, c *net.TCPConn, to string, buffered bool) {
	defer c.Close()
	var d net.Dialer
	u, err := d.DialContext(ctx, "tcp", to)
	if err != nil {
		return
	}
	up := u.(*net.TCPConn)
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close(); _ = up.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src *net.TCPConn) {
		defer wg.Done()
		if buffered {
			buf := make([]byte, 32<<10)
			_, _ = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
		} else {
			_, _ = io.Copy(dst, src)
		}
		_ = dst.CloseWrite()
	}
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
}

// ProxyMain is `bench miniproxy -route LISTEN=TO[,LISTEN=TO] [-buffered]`.
func ProxyMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("miniproxy", flag.ContinueOnError)
	routes := fs.String("route", "", "comma-separated LISTEN=TO pairs (required)")
	buffered := fs.Bool("buffered", false, "copy through a buffer instead of splice")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := ProxyConfig{Routes: map[string]string{}, Buffered: *buffered, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	for _, r := range strings.Split(*routes, ",") {
		if r == "" {
			continue
		}
		l, t, ok := strings.Cut(r, "=")
		if !ok || l == "" || t == "" {
			return fmt.Errorf("miniproxy: bad -route entry %q (want LISTEN=TO)", r)
		}
		cfg.Routes[l] = t
	}
	return RunProxy(ctx, cfg)
}
