package forward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/spdystream"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/streaming/pkg/httpstream"
	streamspdy "k8s.io/streaming/pkg/httpstream/spdy"
)

// portForwardProtocol is the subprotocol of the pods/portforward stream
// pairs, as the kubelet and kubectl speak it.
const portForwardProtocol = "portforward.k8s.io"

const (
	// dialTimeout bounds one SPDY upgrade of pods/portforward.
	dialTimeout = 30 * time.Second
	// pingPeriod keeps idle pod connections alive through proxies and load
	// balancers, as client-go's SPDY round tripper does.
	pingPeriod = 5 * time.Second
	// errorStreamGrace is how long to wait for the pod side's verdict on a
	// stream pair after the data has stopped flowing.
	errorStreamGrace = 2 * time.Second
)

// podDialer opens one multiplexed port-forward connection to a pod. The
// caller owns the returned connection and closes it.
type podDialer interface {
	Dial(ctx context.Context, namespace, pod string) (httpstream.Connection, error)
}

// spdyDialer upgrades POST .../pods/NAME/portforward to SPDY with the
// credentials of a rest.Config.
type spdyDialer struct {
	config *rest.Config
	core   rest.Interface
}

func newSPDYDialer(config *rest.Config) (*spdyDialer, error) {
	core, err := corev1client.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("build a client for pods/portforward: %w", err)
	}
	return &spdyDialer{config: config, core: core.RESTClient()}, nil
}

func (d *spdyDialer) Dial(ctx context.Context, namespace, pod string) (httpstream.Connection, error) {
	u := d.core.Post().Namespace(namespace).Resource("pods").Name(pod).SubResource("portforward").URL()
	tlsConfig, err := rest.TLSConfigFor(d.config)
	if err != nil {
		return nil, fmt.Errorf("TLS config for pods/portforward: %w", err)
	}
	// A SPDY round tripper serves exactly one upgrade, so each dial gets its own.
	upgrader, err := streamspdy.NewRoundTripperWithConfig(streamspdy.RoundTripperConfig{
		TLS:        tlsConfig,
		Proxier:    d.config.Proxy,
		PingPeriod: pingPeriod,
	})
	if err != nil {
		return nil, fmt.Errorf("SPDY round tripper: %w", err)
	}
	rt, err := rest.HTTPWrappersForConfig(d.config, upgrader)
	if err != nil {
		return nil, fmt.Errorf("credentials for pods/portforward: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("portforward request: %w", err)
	}
	req.Header.Add(httpstream.HeaderProtocolVersion, portForwardProtocol)
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", u.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// Read the Status ourselves: the upgrader would keep only its message,
		// and the code is what tells bad credentials from a vanished pod.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, upgradeError(resp.StatusCode, body, pod)
	}
	conn, err := upgrader.NewConnection(resp)
	if err != nil {
		return nil, fmt.Errorf("SPDY upgrade of %s: %w", u.Path, err)
	}
	if got := resp.Header.Get(httpstream.HeaderProtocolVersion); got != portForwardProtocol {
		conn.Close()
		return nil, fmt.Errorf("the API server answered pods/portforward with protocol %q, want %q", got, portForwardProtocol)
	}
	return conn, nil
}

// upgradeError turns a refused upgrade into an API StatusError, so that
// apierrors.IsForbidden and friends work on it.
func upgradeError(code int, body []byte, pod string) error {
	var status metav1.Status
	if err := json.Unmarshal(body, &status); err == nil && status.Kind == "Status" {
		if status.Code == 0 {
			status.Code = int32(code)
		}
		return &apierrors.StatusError{ErrStatus: status}
	}
	return apierrors.NewGenericServerResponse(code, "POST", schema.GroupResource{Resource: "pods/portforward"}, pod, strings.TrimSpace(string(body)), 0, false)
}

// pool keeps one port-forward connection per pod and opens a fresh stream
// pair on it for each client connection, as the protocol allows.
type pool struct {
	dialer podDialer
	log    *slog.Logger
	done   chan struct{}
	wg     sync.WaitGroup // monitor goroutines

	mu     sync.Mutex
	conns  map[string]*podConn // guarded by mu; by namespace/pod
	keep   map[string]bool     // guarded by mu; nil keeps every pod
	closed bool                // guarded by mu
}

// podConn is one SPDY connection to one pod.
type podConn struct {
	key    string
	ready  chan struct{} // closed once conn or err is set
	conn   httpstream.Connection
	err    error
	close  sync.Once
	active int // guarded by pool.mu: stream pairs in use or being opened
	nextID int // guarded by pool.mu: the requestID of the next stream pair
}

func newPool(dialer podDialer, log *slog.Logger) *pool {
	return &pool{dialer: dialer, log: log, done: make(chan struct{}), conns: map[string]*podConn{}}
}

var errPoolClosed = errors.New("forward is shutting down")

// open returns a stream pair to port on the pod, dialing the pod's
// connection if there is none. A connection that turns out dead is replaced
// once, so that an API server restart costs no client connection.
func (p *pool) open(ctx context.Context, namespace, pod string, port int32) (*tunnel, error) {
	for attempt := 0; ; attempt++ {
		pc, fresh, err := p.get(ctx, namespace, pod)
		if err != nil {
			return nil, err
		}
		t, err := p.streams(pc, port)
		if err == nil {
			return t, nil
		}
		p.release(pc)
		var pe *podError
		if errors.As(err, &pe) {
			return nil, err
		}
		p.discard(pc)
		if fresh || attempt > 0 {
			return nil, fmt.Errorf("open a stream to pod %s port %d: %w", pc.key, port, err)
		}
		p.log.Debug("port-forward connection went stale, redialing", "pod", pc.key, "err", err)
	}
}

// get returns the live connection to a pod with a stream reservation taken
// (active++); fresh says whether this call dialed it.
func (p *pool) get(ctx context.Context, namespace, pod string) (*podConn, bool, error) {
	key := namespace + "/" + pod
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, false, errPoolClosed
	}
	if pc := p.conns[key]; pc != nil {
		pc.active++
		p.mu.Unlock()
		select {
		case <-pc.ready:
		case <-ctx.Done():
			p.release(pc)
			return nil, false, ctx.Err()
		}
		if pc.err != nil {
			p.release(pc)
			return nil, false, pc.err
		}
		return pc, false, nil
	}
	pc := &podConn{key: key, ready: make(chan struct{}), active: 1}
	p.conns[key] = pc
	p.mu.Unlock()

	conn, err := p.dialer.Dial(ctx, namespace, pod)

	p.mu.Lock()
	pc.conn, pc.err = conn, err
	if err == nil && p.closed {
		pc.err = errPoolClosed
	}
	close(pc.ready)
	if pc.err != nil {
		if p.conns[key] == pc {
			delete(p.conns, key)
		}
		pc.active--
		p.mu.Unlock()
		if conn != nil {
			pc.shut()
		}
		return nil, true, pc.err
	}
	p.wg.Add(1)
	p.mu.Unlock()
	p.log.Debug("opened port-forward connection", "pod", key)
	go p.monitor(pc)
	return pc, true, nil
}

// monitor forgets a connection as soon as it dies, so that the next client
// connection dials a new one.
func (p *pool) monitor(pc *podConn) {
	defer p.wg.Done()
	select {
	case <-pc.conn.CloseChan():
		p.log.Debug("port-forward connection closed", "pod", pc.key)
	case <-p.done:
	}
	p.discard(pc)
}

// streams creates the error and data streams of one forwarded connection,
// with a requestID that is new on this pod connection.
func (p *pool) streams(pc *podConn, port int32) (*tunnel, error) {
	p.mu.Lock()
	id := pc.nextID
	pc.nextID++
	p.mu.Unlock()
	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(int(port)))
	headers.Set(corev1.PortForwardRequestIDHeader, strconv.Itoa(id))
	errStream, err := pc.conn.CreateStream(headers)
	if err != nil {
		return nil, fmt.Errorf("create error stream: %w", err)
	}
	// Nothing is ever written to the error stream from this side.
	_ = errStream.Close()
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := pc.conn.CreateStream(headers)
	if err != nil {
		defer pc.conn.RemoveStreams(errStream)
		if errors.Is(err, spdystream.ErrReset) {
			// The pod side refused this pair before replying (nothing
			// listens on the port, say): the connection itself is fine,
			// and the reason is on the error stream.
			msg := readPodError(errStream, errorStreamGrace)
			if msg == "" {
				msg = "the pod side reset the stream"
			}
			return nil, &podError{msg: msg}
		}
		_ = errStream.Reset()
		return nil, fmt.Errorf("create data stream: %w", err)
	}
	return &tunnel{pool: p, pc: pc, port: port, data: data, errs: errStream}, nil
}

// release gives back a stream reservation and closes the connection of a
// pod that is no longer an endpoint once its last stream is done.
func (p *pool) release(pc *podConn) {
	p.mu.Lock()
	pc.active--
	idle := pc.active == 0 && p.keep != nil && !p.keep[pc.key]
	p.mu.Unlock()
	if idle {
		p.discard(pc)
	}
}

// retain tells the pool which pods are endpoints now: connections to other
// pods are closed once idle.
func (p *pool) retain(keys map[string]bool) {
	p.mu.Lock()
	p.keep = keys
	var idle []*podConn
	for key, pc := range p.conns {
		if !keys[key] && pc.active == 0 {
			idle = append(idle, pc)
		}
	}
	p.mu.Unlock()
	for _, pc := range idle {
		p.discard(pc)
	}
}

// discard forgets pc and closes its connection.
func (p *pool) discard(pc *podConn) {
	p.mu.Lock()
	if p.conns[pc.key] == pc {
		delete(p.conns, pc.key)
	}
	p.mu.Unlock()
	pc.shut()
}

func (pc *podConn) shut() {
	pc.close.Do(func() {
		if pc.conn != nil {
			_ = pc.conn.Close()
		}
	})
}

// size is the number of pod connections open or being dialed.
func (p *pool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// close closes every pod connection and waits for the pool's goroutines.
func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	var all []*podConn
	for _, pc := range p.conns {
		all = append(all, pc)
	}
	p.conns = map[string]*podConn{}
	p.mu.Unlock()
	close(p.done)
	for _, pc := range all {
		select {
		case <-pc.ready:
			pc.shut()
		default:
			// Still dialing: get() sees closed and shuts it.
		}
	}
	p.wg.Wait()
}

// tunnel is one forwarded client connection: a data and an error stream on
// a pod connection.
type tunnel struct {
	pool *pool
	pc   *podConn
	port int32
	data httpstream.Stream
	errs httpstream.Stream
}

// podError is what the pod side reported on the error stream, such as
// nothing listening on the port.
type podError struct{ msg string }

func (e *podError) Error() string { return e.msg }

// maxReplay bounds what splice keeps of a client's bytes to replay them to
// another pod when the first one refuses before answering.
const maxReplay = 64 << 10

// movedError says that the pod refused the connection before sending a
// byte: the client is still open, and sent is everything it sent so far
// (clientDone: and then closed its side), to replay to another pod.
type movedError struct {
	pod        *podError
	sent       []byte
	clientDone bool
}

func (e *movedError) Error() string { return "moved: " + e.pod.Error() }

// splice copies between client and the pod until either side is done or ctx
// ends, then closes client. replay is written to the pod first (bytes the
// client sent to a pod that refused), and clientDone says the client had
// already closed its side. It returns the pod side's error, if it reported
// one; a *movedError when the pod refused before answering and the client
// can be moved elsewhere (then client is left open).
func (t *tunnel) splice(ctx context.Context, client net.Conn, replay []byte, clientDone bool) error {
	defer t.pool.release(t.pc)
	defer t.pc.conn.RemoveStreams(t.data, t.errs)

	errc := make(chan string, 1)
	go func() {
		msg, _ := io.ReadAll(io.LimitReader(t.errs, 64<<10))
		errc <- strings.TrimSpace(string(msg))
	}()
	var answered atomic.Bool
	remoteDone := make(chan struct{})
	go func() {
		defer close(remoteDone)
		_, _ = io.Copy(client, &firstByte{r: t.data, seen: &answered})
	}()
	rec := &recorder{buf: append([]byte(nil), replay...), limit: maxReplay, answered: &answered}
	rec.done = clientDone
	localDone := make(chan error, 1)
	go func() {
		if len(replay) > 0 {
			if _, err := t.data.Write(replay); err != nil {
				localDone <- nil
				return
			}
		}
		var err error
		if !clientDone {
			_, err = io.Copy(t.data, io.TeeReader(client, rec))
			if err == nil {
				rec.markDone()
			}
		}
		// Tell the pod this side sends no more, and keep reading its answer.
		_ = t.data.Close()
		localDone <- err
	}()

	var podMsg string
	gotMsg := false
	local := localDone
loop:
	for {
		select {
		case <-remoteDone:
			break loop
		case err := <-local:
			local = nil
			if err != nil {
				break loop
			}
		case podMsg = <-errc:
			gotMsg = true
			if podMsg != "" {
				break loop
			}
		case <-ctx.Done():
			break loop
		}
	}
	if !gotMsg && !answered.Load() && rec.replayable() && ctx.Err() == nil {
		// The pod side ended the stream without a byte: its verdict on the
		// error stream says whether it refused (then move the client) or
		// just closed.
		timer := time.NewTimer(errorStreamGrace)
		select {
		case podMsg = <-errc:
			gotMsg = true
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
	if gotMsg && podMsg != "" && !answered.Load() && rec.replayable() && ctx.Err() == nil {
		// Stop reading from the client without closing it, so that its
		// connection can go on to another pod.
		_ = client.SetReadDeadline(time.Now())
		_ = t.data.Reset()
		<-remoteDone
		if local != nil {
			<-local
		}
		_ = client.SetReadDeadline(time.Time{})
		if !answered.Load() && rec.replayable() {
			sent, done := rec.snapshot()
			return &movedError{pod: &podError{msg: podMsg}, sent: sent, clientDone: done}
		}
	}
	_ = client.Close()
	// Reset unblocks a copy stuck on the stream and drops unsent data, so
	// that the error stream can still deliver its message.
	_ = t.data.Reset()
	<-remoteDone
	if local != nil {
		<-local
	}
	if !gotMsg {
		timer := time.NewTimer(errorStreamGrace)
		select {
		case podMsg = <-errc:
		case <-timer.C:
			_ = t.errs.Reset() // unblocks the reader
			podMsg = <-errc
		case <-ctx.Done():
			_ = t.errs.Reset()
			podMsg = <-errc
		}
		timer.Stop()
	}
	if podMsg != "" {
		return &podError{msg: podMsg}
	}
	return nil
}

// firstByte notes when the pod has answered anything.
type firstByte struct {
	r    io.Reader
	seen *atomic.Bool
}

func (f *firstByte) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.seen.Store(true)
	}
	return n, err
}

// recorder keeps the client's bytes until the pod answers, up to limit.
type recorder struct {
	mu       sync.Mutex
	buf      []byte
	limit    int
	overflow bool
	done     bool
	answered *atomic.Bool
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.answered.Load() {
		return len(p), nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf)+len(p) > r.limit {
		r.overflow = true
		r.buf = nil
	} else if !r.overflow {
		r.buf = append(r.buf, p...)
	}
	return len(p), nil
}

func (r *recorder) markDone() {
	r.mu.Lock()
	r.done = true
	r.mu.Unlock()
}

func (r *recorder) replayable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.overflow
}

func (r *recorder) snapshot() ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf...), r.done
}

// readPodError reads what the pod side wrote on an error stream, giving up
// after grace.
func readPodError(s httpstream.Stream, grace time.Duration) string {
	errc := make(chan string, 1)
	go func() {
		msg, _ := io.ReadAll(io.LimitReader(s, 64<<10))
		errc <- strings.TrimSpace(string(msg))
	}()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case msg := <-errc:
		return msg
	case <-timer.C:
		_ = s.Reset() // unblocks the reader
		return <-errc
	}
}
