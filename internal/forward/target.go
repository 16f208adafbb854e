package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// maxRetry caps the back-off while the API server is unreachable.
const maxRetry = 30 * time.Second

// target is one TARGET with its ports: what it resolved to, its endpoint
// watch, its pod connections and its counters.
type target struct {
	f     *forwarder
	spec  TargetSpec
	ns    string
	log   *slog.Logger
	set   *endpointSet
	pool  *pool
	stats stats

	// Set by resolve, read-only afterwards.
	ports []boundPort
	src   *source
	rr    []roundRobin // one turn order per port

	mu     sync.Mutex
	listen string   // guarded by mu: bound addresses, for the status line
	shown  []string // guarded by mu: ready endpoint keys last logged
}

func newTarget(f *forwarder, spec TargetSpec) *target {
	log := f.log.With("target", spec.String())
	return &target{
		f:    f,
		spec: spec,
		ns:   f.opts.Namespace,
		log:  log,
		set:  newEndpointSet(),
		pool: newPool(f.dialer, log),
		rr:   make([]roundRobin, len(spec.Ports)),
	}
}

// apiCallError marks an error as the API server's answer (or the lack of
// one) to a read, to be retried or explained.
type apiCallError struct {
	err      error
	resource string // "services", or "endpointslices" for the list that the watch will do
	get      bool   // a get of the object the TARGET names
}

func (e *apiCallError) Error() string { return e.err.Error() }
func (e *apiCallError) Unwrap() error { return e.err }

// resolve reads the object the TARGET names and checks its ports, retrying
// with back-off while the API server cannot be reached.
func (t *target) resolve(ctx context.Context) error {
	delay := t.f.opts.retryBase
	for {
		err := t.resolveOnce(ctx)
		if err == nil {
			t.reportAPI(nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ae *apiCallError
		if !errors.As(err, &ae) {
			return err
		}
		if permanent(ae.err) {
			return t.explain(ae)
		}
		t.stats.setAPIErr(fmt.Sprintf("%s (next try in %s)", shortError(ae.err), delay.Round(time.Millisecond)))
		t.log.Warn("API server unreachable, retrying", "err", shortError(ae.err), "retry_in", delay)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
		delay = min(delay*2, maxRetry)
	}
}

func (t *target) explain(ae *apiCallError) error {
	if ae.get {
		return describeGetError(ae.err, t.spec.Kind, t.spec.Name, t.ns, t.f.opts.ConfigSource)
	}
	if cerr := credentialsError(ae.err, "list", ae.resource, t.ns, t.f.opts.ConfigSource); cerr != nil {
		return cerr
	}
	if apierrors.IsNotFound(ae.err) {
		return fmt.Errorf("the API server does not serve %s (404: %s), which %s needs", ae.resource, statusMessage(ae.err), t.spec)
	}
	return fmt.Errorf("list %s in namespace %q for %s: %w", ae.resource, t.ns, t.spec, ae.err)
}

func (t *target) resolveOnce(ctx context.Context) error {
	client := t.f.opts.Client
	name := t.spec.Name
	ports := make([]boundPort, len(t.spec.Ports))
	var src *source
	switch t.spec.Kind {
	case KindService:
		svc, err := client.CoreV1().Services(t.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return &apiCallError{err: err, resource: "services", get: true}
		}
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			return fmt.Errorf("service %s/%s is of type ExternalName (it points at %s), so it has no pods to forward to", t.ns, name, svc.Spec.ExternalName)
		}
		names := make([]string, len(ports))
		for i, p := range t.spec.Ports {
			sp, err := resolveServicePort(svc, p.Remote)
			if err != nil {
				return err
			}
			names[i] = sp.Name
			ports[i] = boundPort{local: p.Local}
			if p.SameLocal {
				ports[i].local = uint16(sp.Port)
			}
		}
		if len(svc.Spec.Selector) == 0 {
			t.log.Warn("service has no selector: only EndpointSlice endpoints that point at pods can be used", "service", t.ns+"/"+name)
		}
		src = serviceSource(client, t.ns, name, names)
		if _, err := src.list(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return &apiCallError{err: err, resource: "endpointslices"}
		}
	case KindDeployment:
		d, err := client.AppsV1().Deployments(t.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return &apiCallError{err: err, resource: "deployments", get: true}
		}
		sel, err := deploymentSelector(d)
		if err != nil {
			return err
		}
		remotes := make([]intstr.IntOrString, len(ports))
		for i, p := range t.spec.Ports {
			n, err := resolveContainerPort(&d.Spec.Template.Spec, p.Remote, fmt.Sprintf("the pod template of deployment %s/%s", t.ns, name))
			if err != nil {
				return err
			}
			remotes[i] = p.Remote
			ports[i] = boundPort{local: p.Local}
			if p.SameLocal {
				ports[i].local = uint16(n)
			}
		}
		src = podsSource(client, t.ns, sel, remotes)
		if _, err := src.list(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return &apiCallError{err: err, resource: "pods"}
		}
	case KindPod:
		pod, err := client.CoreV1().Pods(t.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return &apiCallError{err: err, resource: "pods", get: true}
		}
		remotes := make([]intstr.IntOrString, len(ports))
		for i, p := range t.spec.Ports {
			n, err := resolveContainerPort(&pod.Spec, p.Remote, fmt.Sprintf("pod %s/%s", t.ns, name))
			if err != nil {
				return err
			}
			remotes[i] = p.Remote
			ports[i] = boundPort{local: p.Local}
			if p.SameLocal {
				ports[i].local = uint16(n)
			}
		}
		if pod.Status.Phase != corev1.PodRunning {
			t.log.Info("pod is not running yet; connections wait for it", "pod", t.ns+"/"+name, "phase", pod.Status.Phase, "wait", t.f.opts.Wait)
		}
		src = podSource(client, t.ns, name, remotes)
	default:
		return fmt.Errorf("unknown target kind %q", t.spec.Kind)
	}
	t.ports, t.src = ports, src
	return nil
}

// reportAPI records whether the last API call worked, for the status line,
// and logs when that changes.
func (t *target) reportAPI(err error) {
	if err != nil && (errors.Is(err, context.Canceled) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err)) {
		// Shutdown, or the normal end of a watch that the informer resumes.
		return
	}
	if err == nil {
		if t.stats.setAPIErr("") != "" {
			t.log.Info("API server reachable again")
		}
		return
	}
	msg := shortError(err)
	if cerr := credentialsError(err, "watch", t.src.resourceName(), t.ns, t.f.opts.ConfigSource); cerr != nil {
		msg = cerr.Error()
	}
	if t.stats.setAPIErr(msg) == "" {
		// Log the fall, not every retry: the status line shows the latest.
		t.log.Warn("watch failed, retrying with back-off", "err", msg)
	}
}

// watch follows the target's endpoints until ctx ends.
func (t *target) watch(ctx context.Context) {
	runWatch(ctx, t.src, t.set, t.reportAPI, t.onUpdate, t.log)
}

// onUpdate closes connections to pods that left, and logs the change.
func (t *target) onUpdate(v endpointView) {
	keys := map[string]bool{}
	var names []string
	for _, ep := range v.Ready {
		keys[ep.key()] = true
		names = append(names, ep.Pod)
	}
	t.pool.retain(keys)
	sort.Strings(names)
	t.mu.Lock()
	changed := strings.Join(names, ",") != strings.Join(t.shown, ",") || t.shown == nil
	t.shown = append([]string{}, names...)
	t.mu.Unlock()
	if changed {
		t.log.Info("endpoints changed", "ready", len(v.Ready), "endpoints", v.Total, "pods", strings.Join(names, ","))
	}
}

// serve forwards one client connection, or refuses it. When the pod side
// refuses the connection before answering anything (its process has just
// stopped listening, as during a rollout), the connection moves to another
// ready endpoint, replaying what the client already sent, so the client
// never sees a pod that is going away.
func (t *target) serve(ctx context.Context, conn net.Conn, pi int) {
	defer conn.Close()
	t.stats.total.Add(1)
	t.stats.open.Add(1)
	defer t.stats.open.Add(-1)

	tried := map[string]bool{}
	var sent []byte
	clientDone := false
	var err error
	var ep endpoint
	for {
		var tun *tunnel
		tun, ep, err = t.connect(ctx, pi, tried)
		if err != nil {
			break
		}
		var moved *movedError
		err = tun.splice(ctx, conn, sent, clientDone)
		if !errors.As(err, &moved) {
			break
		}
		tried[ep.key()] = true
		sent, clientDone = moved.sent, moved.clientDone
		t.log.Debug("pod refused before answering; moving the connection", "pod", ep.key(), "err", moved.pod)
		if !t.hasOther(pi, tried) {
			err = moved.pod
			break
		}
	}
	if err == nil || ctx.Err() != nil {
		return
	}
	t.stats.failed.Add(1)
	var pe *podError
	if errors.As(err, &pe) {
		err = fmt.Errorf("pod %s port %d: %w", ep.key(), ep.Ports[pi], err)
		t.stats.setLastErr(err)
		t.log.Warn("connection failed on the pod side", "pod", ep.key(), "port", ep.Ports[pi], "err", err)
		return
	}
	t.stats.setLastErr(err)
	t.log.Warn("refused connection", "client", conn.RemoteAddr().String(), "port", t.spec.Ports[pi].Arg, "err", err)
}

// hasOther says whether a ready endpoint not in tried is left for port pi.
func (t *target) hasOther(pi int, tried map[string]bool) bool {
	view, gone, _, _ := t.set.snapshot()
	return gone == "" && len(candidates(view.Ready, pi, tried)) > 0
}

// connect picks a ready endpoint for target port pi, not one in tried, and
// opens a stream pair to it. Endpoints that cannot be reached, or whose port
// refuses, are added to tried; while none is left it waits, up to
// Options.Wait, for the endpoints to change, except that a refusal by a pod
// with no other endpoint left is returned at once.
func (t *target) connect(ctx context.Context, pi int, tried map[string]bool) (*tunnel, endpoint, error) {
	timer := time.NewTimer(t.f.opts.Wait)
	defer timer.Stop()
	var lastErr error
	var refused *podError
	var refusedBy endpoint
	backoff := 100 * time.Millisecond
	waiting := false
	defer func() {
		if waiting {
			t.stats.waiting.Add(-1)
		}
	}()
	for {
		view, gone, synced, changed := t.set.snapshot()
		if gone != "" {
			return nil, endpoint{}, errors.New(gone)
		}
		if c := candidates(view.Ready, pi, tried); len(c) > 0 {
			ep, _ := t.rr[pi].pick(c)
			tun, err := t.pool.open(ctx, ep.Namespace, ep.Pod, ep.Ports[pi])
			if err == nil {
				return tun, ep, nil
			}
			if ctx.Err() != nil {
				return nil, ep, ctx.Err()
			}
			if cerr := credentialsError(err, "create", "pods/portforward", ep.Namespace, t.f.opts.ConfigSource); cerr != nil {
				return nil, ep, cerr
			}
			tried[ep.key()] = true
			if errors.As(err, &refused) {
				// The pod answered: its port refused this connection.
				refusedBy = ep
				t.log.Debug("endpoint refused, trying another", "pod", ep.key(), "err", err)
				continue
			}
			lastErr = fmt.Errorf("pod %s: %w", ep.key(), err)
			t.log.Debug("endpoint unreachable, trying another", "pod", ep.key(), "err", err)
			continue
		}
		if refused != nil {
			return nil, refusedBy, refused
		}
		if !waiting {
			waiting = true
			t.stats.waiting.Add(1)
		}
		var retry <-chan time.Time
		if len(tried) > 0 {
			retry = time.After(backoff)
			backoff = min(backoff*2, 2*time.Second)
		}
		select {
		case <-ctx.Done():
			return nil, endpoint{}, ctx.Err()
		case <-changed:
		case <-retry:
			clear(tried)
		case <-timer.C:
			return nil, endpoint{}, t.noEndpoint(view, synced, lastErr, pi)
		}
	}
}

// noEndpoint says why a connection found nowhere to go within Options.Wait.
func (t *target) noEndpoint(v endpointView, synced bool, lastErr error, pi int) error {
	waited := t.f.opts.Wait.String()
	port := t.spec.Ports[pi].Remote.String()
	switch {
	case lastErr != nil:
		return fmt.Errorf("no endpoint of %s could be reached within %s: %w", t.spec, waited, lastErr)
	case !synced:
		t.stats.mu.Lock()
		apiErr := t.stats.apiErr
		t.stats.mu.Unlock()
		if apiErr == "" {
			apiErr = "no answer yet"
		}
		return fmt.Errorf("the endpoints of %s are still unknown after %s (API server: %s)", t.spec, waited, apiErr)
	case v.Total == 0 && t.spec.Kind == KindService:
		return fmt.Errorf("%s has no endpoints (waited %s): check that its selector matches running pods", t.spec, waited)
	case v.Total == 0:
		return fmt.Errorf("%s has no pods (waited %s)", t.spec, waited)
	case len(v.Ready) > 0:
		return fmt.Errorf("none of the %d ready endpoints of %s has port %s (waited %s)", len(v.Ready), t.spec, port, waited)
	}
	return fmt.Errorf("%s has no ready endpoint (0 of %d ready, waited %s)", t.spec, v.Total, waited)
}

func (t *target) setListen(s string) {
	t.mu.Lock()
	t.listen = s
	t.mu.Unlock()
}

func (t *target) snapshot() statusSnapshot {
	view, gone, synced, _ := t.set.snapshot()
	t.mu.Lock()
	listen := t.listen
	t.mu.Unlock()
	t.stats.mu.Lock()
	lastErr, apiErr := t.stats.lastErr, t.stats.apiErr
	t.stats.mu.Unlock()
	return statusSnapshot{
		Target:  t.spec.String(),
		Listen:  listen,
		Synced:  synced,
		Ready:   len(view.Ready),
		Total:   view.Total,
		Open:    t.stats.open.Load(),
		Waiting: t.stats.waiting.Load(),
		Conns:   t.stats.total.Load(),
		Failed:  t.stats.failed.Load(),
		LastErr: lastErr,
		APIErr:  apiErr,
		Gone:    gone,
	}
}
