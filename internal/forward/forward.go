package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options configures Run.
type Options struct {
	// Client reads Services, EndpointSlices, Deployments and Pods. Required.
	Client kubernetes.Interface
	// Config is used for the pods/portforward subresource (an SPDY upgrade,
	// which needs a real HTTP connection even when Client is a fake). Required.
	Config *rest.Config
	// ConfigSource names where the credentials came from, for error
	// messages, such as `context "berth" in /root/.kube/config`.
	ConfigSource string
	// Namespace of the targets; "" means "default".
	Namespace string
	// Targets to forward, as ParseArgs returns them. Required.
	Targets []TargetSpec
	// Addresses to listen on: IPs, or "localhost" for 127.0.0.1 and ::1.
	// Empty means 127.0.0.1.
	Addresses []string
	// Wait is how long a new connection waits for a ready endpoint before it
	// is refused; 0 refuses at once.
	Wait time.Duration
	// Out receives the "Forwarding from" lines, one per listener (kubectl
	// prints them on stdout). nil discards them.
	Out io.Writer
	// Console shows the status lines; nil writes plain status logs to stderr.
	Console *Console
	// Logger receives events; nil logs as text to Console.
	Logger *slog.Logger
	// StatusInterval is how often status lines are refreshed: default 1s on
	// a terminal, 5s otherwise (and then only lines that changed are written).
	StatusInterval time.Duration
	// Ready, if set, is called once every listener is bound.
	Ready func([]Listening)

	// retryBase is the first back-off step while the API server is
	// unreachable (tests shorten it).
	retryBase time.Duration
	// dialer replaces the SPDY dialer (tests).
	dialer podDialer
}

// Listening is one bound local address.
type Listening struct {
	Target string // svc/web
	Local  string // 127.0.0.1:8080
	Remote string // 80, or http
}

// Run forwards the targets' ports until ctx is done, then closes listeners,
// connections and watches and returns nil. It returns an error, before or
// soon after binding, when a target does not exist, a port does not, the
// credentials are rejected or a port cannot be bound. An unreachable API
// server is retried with back-off until ctx is done.
func Run(ctx context.Context, opts Options) error {
	f, err := newForwarder(opts)
	if err != nil {
		return err
	}
	return f.run(ctx)
}

// forwarder is one `berth forward` invocation.
type forwarder struct {
	opts    Options
	log     *slog.Logger
	console *Console
	dialer  podDialer
	addrs   []listenAddr
	targets []*target
}

type listenAddr struct {
	ip       string
	optional bool // "localhost" tolerates a missing IPv6 loopback, as kubectl does
}

func newForwarder(opts Options) (*forwarder, error) {
	if opts.Client == nil {
		return nil, errors.New("forward: Options.Client is required")
	}
	if opts.Config == nil && opts.dialer == nil {
		return nil, errors.New("forward: Options.Config is required")
	}
	if len(opts.Targets) == 0 {
		return nil, errors.New("forward: no targets")
	}
	if opts.Namespace == "" {
		opts.Namespace = metav1.NamespaceDefault
	}
	if opts.Wait < 0 {
		return nil, fmt.Errorf("invalid --wait %s: must not be negative", opts.Wait)
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.retryBase <= 0 {
		opts.retryBase = 500 * time.Millisecond
	}
	f := &forwarder{opts: opts, console: opts.Console, dialer: opts.dialer}
	if f.console == nil {
		f.console = NewConsole(os.Stderr, ConsoleConfig{})
	}
	if f.opts.StatusInterval <= 0 {
		f.opts.StatusInterval = 5 * time.Second
		if f.console.TTY() {
			f.opts.StatusInterval = time.Second
		}
	}
	f.log = opts.Logger
	if f.log == nil {
		f.log = slog.New(slog.NewTextHandler(f.console, nil))
	}
	addrs, err := parseAddresses(opts.Addresses)
	if err != nil {
		return nil, err
	}
	f.addrs = addrs
	if f.dialer == nil {
		d, err := newSPDYDialer(opts.Config)
		if err != nil {
			return nil, err
		}
		f.dialer = d
	}
	for _, spec := range opts.Targets {
		if len(spec.Ports) == 0 {
			return nil, fmt.Errorf("%s has no ports", spec)
		}
		f.targets = append(f.targets, newTarget(f, spec))
	}
	return f, nil
}

func parseAddresses(in []string) ([]listenAddr, error) {
	if len(in) == 0 {
		return []listenAddr{{ip: "127.0.0.1"}}, nil
	}
	var out []listenAddr
	seen := map[string]bool{}
	add := func(a listenAddr) {
		if !seen[a.ip] {
			seen[a.ip] = true
			out = append(out, a)
		}
	}
	for _, a := range in {
		if a == "localhost" {
			add(listenAddr{ip: "127.0.0.1"})
			add(listenAddr{ip: "::1", optional: true})
			continue
		}
		ip := net.ParseIP(a)
		if ip == nil {
			return nil, fmt.Errorf("invalid --address %q: must be an IP address or localhost", a)
		}
		add(listenAddr{ip: ip.String()})
	}
	return out, nil
}

func (f *forwarder) run(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	statusDone := make(chan struct{})
	statusExited := make(chan struct{})
	go func() {
		defer close(statusExited)
		f.statusLoop(statusDone)
	}()

	var work sync.WaitGroup // watches, accept loops and client connections
	err := f.serve(ctx, &work)
	if parent.Err() != nil {
		err = nil // interrupted: a clean stop, whatever was under way
	}
	cancel()
	work.Wait()
	for _, t := range f.targets {
		t.pool.close()
	}
	close(statusDone)
	<-statusExited
	return err
}

// serve resolves the targets, binds their ports and serves until ctx ends.
func (f *forwarder) serve(ctx context.Context, work *sync.WaitGroup) error {
	for _, t := range f.targets {
		if err := t.resolve(ctx); err != nil {
			return err
		}
	}
	var listeners []net.Listener
	defer func() {
		for _, ln := range listeners {
			_ = ln.Close()
		}
	}()
	var bound []Listening
	for _, t := range f.targets {
		var shown []string
		for pi := range t.ports {
			lns, err := f.listen(t, pi)
			listeners = append(listeners, lns...)
			if err != nil {
				return err
			}
			for _, ln := range lns {
				l := Listening{Target: t.spec.String(), Local: ln.Addr().String(), Remote: t.spec.Ports[pi].Remote.String()}
				bound = append(bound, l)
				shown = append(shown, l.Local+"->"+l.Remote)
				f.console.printAbove(f.opts.Out, fmt.Appendf(nil, "Forwarding from %s -> %s:%s\n", l.Local, l.Target, l.Remote))
			}
		}
		t.setListen(strings.Join(shown, ","))
	}
	for _, t := range f.targets {
		work.Go(func() { t.watch(ctx) })
	}
	for _, ln := range listeners {
		work.Go(func() { f.accept(ctx, ln, work) })
	}
	if f.opts.Ready != nil {
		f.opts.Ready(bound)
	}
	<-ctx.Done()
	f.log.Info("stopping: closing listeners, connections and watches")
	return nil
}

// listen binds target port pi on every address. A free port picked for the
// first address is reused for the others, so that one number works for all.
func (f *forwarder) listen(t *target, pi int) ([]net.Listener, error) {
	local := t.ports[pi].local
	var lns []net.Listener
	for _, a := range f.addrs {
		addr := net.JoinHostPort(a.ip, strconv.Itoa(int(local)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if a.optional {
				f.log.Debug("skipping optional listen address", "address", addr, "err", err)
				continue
			}
			var op *net.OpError
			if errors.As(err, &op) && op.Err != nil {
				err = op.Err // "bind: address already in use"; the address is said already
			}
			return lns, fmt.Errorf("listen on %s for %s %s: %w (choose another LOCAL port, or :%s for a free one)", addr, t.spec, t.spec.Ports[pi].Arg, err, t.spec.Ports[pi].Remote.String())
		}
		ln = &portListener{Listener: ln, target: t, pi: pi}
		lns = append(lns, ln)
		if local == 0 {
			_, p, _ := net.SplitHostPort(ln.Addr().String())
			n, _ := strconv.Atoi(p)
			local = uint16(n)
		}
	}
	return lns, nil
}

// portListener remembers which target port a listener serves.
type portListener struct {
	net.Listener
	target *target
	pi     int
}

func (f *forwarder) accept(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) {
	pl := ln.(*portListener)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			f.log.Warn("accept failed", "address", ln.Addr().String(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		wg.Go(func() { pl.target.serve(ctx, conn, pl.pi) })
	}
}

// statusLoop refreshes the status lines until done is closed, then shows
// them one last time.
func (f *forwarder) statusLoop(done <-chan struct{}) {
	tick := time.NewTicker(f.opts.StatusInterval)
	defer tick.Stop()
	last := make([]statusSnapshot, len(f.targets))
	show := func() {
		var lines []string
		for i, t := range f.targets {
			s := t.snapshot()
			if s.Listen == "" && s.APIErr == "" {
				// Still resolving: nothing to say yet, and a mistyped name
				// should print its error alone.
				continue
			}
			if f.console.TTY() {
				lines = append(lines, statusLine(s, 0))
				continue
			}
			if s != last[i] {
				logStatus(f.log, s)
				last[i] = s
			}
		}
		f.console.setStatus(lines)
	}
	show()
	for {
		select {
		case <-tick.C:
			show()
		case <-done:
			show()
			f.console.release()
			return
		}
	}
}

// boundPort is one target port after resolution.
type boundPort struct {
	// local is the port to listen on; 0 picks a free one.
	local uint16
}
