package registry_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/berth-project/berth/internal/registry"
)

func (e *env) watch(store *registry.Store, ns string, opts registry.ListOptions) <-chan watch.Event {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	e.t.Cleanup(cancel)
	ch, err := store.Watch(ctx, ns, opts)
	if err != nil {
		e.t.Fatalf("watch %s: %v", store.Kind.Resource, err)
	}
	return ch
}

// next returns the next event, skipping bookmarks unless keepBookmarks.
func next(t *testing.T, ch <-chan watch.Event, keepBookmarks bool) watch.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("watch channel closed")
			}
			if ev.Type == watch.Bookmark && !keepBookmarks {
				continue
			}
			return ev
		case <-timeout:
			t.Fatal("no watch event within 10s")
		}
	}
}

// quiet checks that no (non-bookmark) event arrives for a moment.
func quiet(t *testing.T, ch <-chan watch.Event) {
	t.Helper()
	timeout := time.After(300 * time.Millisecond)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("watch channel closed")
			}
			if ev.Type == watch.Bookmark {
				continue
			}
			m, _ := meta.Accessor(ev.Object)
			t.Fatalf("unexpected event %s %s", ev.Type, m.GetName())
		case <-timeout:
			return
		}
	}
}

func wantEvent(t *testing.T, ev watch.Event, typ watch.EventType, name string) *corev1.Pod {
	t.Helper()
	p, ok := ev.Object.(*corev1.Pod)
	if !ok {
		t.Fatalf("event %s carries %T, want a Pod (%v)", ev.Type, ev.Object, ev.Object)
	}
	if ev.Type != typ || p.Name != name {
		t.Fatalf("got %s %s, want %s %s", ev.Type, p.Name, typ, name)
	}
	return p
}

func TestWatchFromResourceVersion(t *testing.T) {
	e := newEnv(t)
	e.createPod("default", newPod("before"))
	list, err := e.pods.List(e.ctx, "default", registry.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rv := list.(*corev1.PodList).ResourceVersion
	ch := e.watch(e.pods, "default", registry.ListOptions{ResourceVersion: rv})

	created := e.createPod("default", newPod("web"))
	upd := created.DeepCopy()
	upd.Labels = map[string]string{"v": "2"}
	obj, _, err := e.pods.Update(e.ctx, "default", "web", upd, registry.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	updated := obj.(*corev1.Pod)
	e.createPod("other", newPod("elsewhere")) // another namespace: not seen
	obj, _, err = e.pods.Delete(e.ctx, "default", "web", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	deleted := obj.(*corev1.Pod)

	ev := wantEvent(t, next(t, ch, false), watch.Added, "web")
	if ev.ResourceVersion != created.ResourceVersion || ev.Kind != "Pod" {
		t.Errorf("ADDED rv %s kind %q, want rv %s", ev.ResourceVersion, ev.Kind, created.ResourceVersion)
	}
	ev = wantEvent(t, next(t, ch, false), watch.Modified, "web")
	if ev.ResourceVersion != updated.ResourceVersion || ev.Labels["v"] != "2" {
		t.Errorf("MODIFIED rv %s labels %v", ev.ResourceVersion, ev.Labels)
	}
	ev = wantEvent(t, next(t, ch, false), watch.Deleted, "web")
	// The deleted object is the last state, at the delete's revision.
	if ev.ResourceVersion != deleted.ResourceVersion || ev.Labels["v"] != "2" {
		t.Errorf("DELETED rv %s (delete returned %s) labels %v", ev.ResourceVersion, deleted.ResourceVersion, ev.Labels)
	}
	if mustRV(t, ev.ResourceVersion) <= mustRV(t, updated.ResourceVersion) {
		t.Errorf("DELETED rv %s not after MODIFIED rv %s", ev.ResourceVersion, updated.ResourceVersion)
	}
	quiet(t, ch)

	// A watch from an old revision replays history in order.
	replay := e.watch(e.pods, "default", registry.ListOptions{ResourceVersion: rv})
	wantEvent(t, next(t, replay, false), watch.Added, "web")
	wantEvent(t, next(t, replay, false), watch.Modified, "web")
	wantEvent(t, next(t, replay, false), watch.Deleted, "web")

	// All namespaces.
	all := e.watch(e.pods, "", registry.ListOptions{ResourceVersion: rv})
	wantEvent(t, next(t, all, false), watch.Added, "web")
	wantEvent(t, next(t, all, false), watch.Modified, "web")
	wantEvent(t, next(t, all, false), watch.Added, "elsewhere")
	wantEvent(t, next(t, all, false), watch.Deleted, "web")

	_, err = e.pods.Watch(e.ctx, "default", registry.ListOptions{ResourceVersion: "soon"})
	wantStatus(t, err, http.StatusBadRequest, metav1.StatusReasonBadRequest, `invalid resource version "soon"`)
}

func TestWatchSelectorTransitions(t *testing.T) {
	e := newEnv(t)
	rv := strconv.FormatInt(e.revision(), 10)
	ch := e.watch(e.pods, "default", registry.ListOptions{ResourceVersion: rv, Labels: mustSelector(t, "app=a")})

	p := e.createPod("default", newPod("web", withLabels("app", "b"))) // not matching: nothing
	relabel := func(app, extra string) *corev1.Pod {
		t.Helper()
		cur := e.getPod("default", "web")
		cur.Labels = map[string]string{"app": app, "extra": extra}
		obj, _, err := e.pods.Update(e.ctx, "default", "web", cur, registry.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return obj.(*corev1.Pod)
	}
	in := relabel("a", "1")  // starts matching: ADDED
	mod := relabel("a", "2") // still matching: MODIFIED
	out := relabel("b", "3") // stops matching: DELETED
	relabel("b", "4")        // still not matching: nothing
	if _, _, err := e.pods.Delete(e.ctx, "default", "web", nil, false); err != nil {
		t.Fatal(err)
	}
	_ = p

	ev := wantEvent(t, next(t, ch, false), watch.Added, "web")
	if ev.ResourceVersion != in.ResourceVersion {
		t.Errorf("ADDED rv %s want %s", ev.ResourceVersion, in.ResourceVersion)
	}
	ev = wantEvent(t, next(t, ch, false), watch.Modified, "web")
	if ev.Labels["extra"] != "2" || ev.ResourceVersion != mod.ResourceVersion {
		t.Errorf("MODIFIED %v rv %s", ev.Labels, ev.ResourceVersion)
	}
	ev = wantEvent(t, next(t, ch, false), watch.Deleted, "web")
	// As the Kubernetes watch cache: the object as it last matched, at the
	// revision where it stopped matching.
	if ev.Labels["app"] != "a" || ev.ResourceVersion != out.ResourceVersion {
		t.Errorf("DELETED labels %v rv %s, want app=a at %s", ev.Labels, ev.ResourceVersion, out.ResourceVersion)
	}
	quiet(t, ch)

	// Field selectors transition the same way (a pod being scheduled).
	fch := e.watch(e.pods, "default", registry.ListOptions{ResourceVersion: strconv.FormatInt(e.revision(), 10), Fields: mustFields(t, "spec.nodeName=n1")})
	e.createPod("default", newPod("sched"))
	if _, err := e.pods.GuaranteedUpdate(e.ctx, "default", "sched", registry.UpdateOptions{Subresource: "binding"}, func(cur runtime.Object) (runtime.Object, error) {
		p := cur.(*corev1.Pod)
		p.Spec.NodeName = "n1"
		p.ResourceVersion = ""
		return p, nil
	}); err != nil {
		t.Fatal(err)
	}
	ev = wantEvent(t, next(t, fch, false), watch.Added, "sched")
	if ev.Spec.NodeName != "n1" {
		t.Errorf("bound pod node %q", ev.Spec.NodeName)
	}
}

func TestWatchInitialEvents(t *testing.T) {
	e := newEnv(t)
	e.createPod("default", newPod("a"))
	e.createPod("default", newPod("b", withLabels("app", "b")))
	for _, rv := range []string{"", "0"} {
		t.Run("rv="+rv, func(t *testing.T) {
			ch := e.watch(e.pods, "default", registry.ListOptions{ResourceVersion: rv})
			wantEvent(t, next(t, ch, false), watch.Added, "a")
			wantEvent(t, next(t, ch, false), watch.Added, "b")
			quiet(t, ch)
			sel := e.watch(e.pods, "default", registry.ListOptions{ResourceVersion: rv, Labels: mustSelector(t, "app=b")})
			wantEvent(t, next(t, sel, false), watch.Added, "b")
			quiet(t, sel)
		})
	}
	// After the initial state, changes follow without a gap or repeat.
	ch := e.watch(e.pods, "default", registry.ListOptions{})
	wantEvent(t, next(t, ch, false), watch.Added, "a")
	wantEvent(t, next(t, ch, false), watch.Added, "b")
	e.createPod("default", newPod("c"))
	wantEvent(t, next(t, ch, false), watch.Added, "c")
	quiet(t, ch)
}

func TestWatchSendInitialEvents(t *testing.T) {
	e := newEnv(t)
	e.createPod("default", newPod("a"))
	b := e.createPod("default", newPod("b"))
	yes, no := true, false
	ch := e.watch(e.pods, "default", registry.ListOptions{SendInitialEvents: &yes, AllowBookmarks: true, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
	wantEvent(t, next(t, ch, false), watch.Added, "a")
	wantEvent(t, next(t, ch, false), watch.Added, "b")
	bm := next(t, ch, true)
	if bm.Type != watch.Bookmark {
		t.Fatalf("after the initial events got %s, want BOOKMARK", bm.Type)
	}
	m, err := meta.Accessor(bm.Object)
	if err != nil {
		t.Fatal(err)
	}
	if m.GetAnnotations()[registry.InitialEventsAnnotation] != "true" {
		t.Fatalf("bookmark annotations %v, want %s=true", m.GetAnnotations(), registry.InitialEventsAnnotation)
	}
	if mustRV(t, m.GetResourceVersion()) < mustRV(t, b.ResourceVersion) {
		t.Errorf("initial-events bookmark rv %s older than the last object %s", m.GetResourceVersion(), b.ResourceVersion)
	}
	if _, ok := bm.Object.(*corev1.Pod); !ok || m.GetName() != "" {
		t.Errorf("bookmark object %T name %q, want an empty Pod", bm.Object, m.GetName())
	}
	e.createPod("default", newPod("c"))
	wantEvent(t, next(t, ch, false), watch.Added, "c")

	// sendInitialEvents=false: no initial state, only what changes.
	quietCh := e.watch(e.pods, "default", registry.ListOptions{SendInitialEvents: &no, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
	e.createPod("default", newPod("d"))
	wantEvent(t, next(t, quietCh, false), watch.Added, "d")

	// The WatchList rules Kubernetes enforces.
	_, err = e.pods.Watch(e.ctx, "default", registry.ListOptions{SendInitialEvents: &yes, AllowBookmarks: true})
	st := wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
	if !hasCause(st, "resourceVersionMatch", "NotOlderThan") {
		t.Errorf("causes %+v", st.Details.Causes)
	}
	_, err = e.pods.Watch(e.ctx, "default", registry.ListOptions{SendInitialEvents: &yes, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
	wantStatus(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "sendInitialEvents requires setting allowWatchBookmarks to true")
}

func TestWatchBookmarks(t *testing.T) {
	e := newEnv(t)
	p := e.createPod("default", newPod("a"))
	ch := e.watch(e.pods, "default", registry.ListOptions{ResourceVersion: p.ResourceVersion, AllowBookmarks: true})
	got := 0
	deadline := time.After(15 * time.Second)
	var last int64
	for got < 3 {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("watch closed")
			}
			if ev.Type != watch.Bookmark {
				t.Fatalf("unexpected %s event", ev.Type)
			}
			bp, ok := ev.Object.(*corev1.Pod)
			if !ok || bp.Name != "" || bp.Kind != "Pod" {
				t.Fatalf("bookmark object %T %+v", ev.Object, ev.Object)
			}
			rv := mustRV(t, bp.ResourceVersion)
			if rv < mustRV(t, p.ResourceVersion) || rv < last {
				t.Fatalf("bookmark rv %d goes back (start %s, previous %d)", rv, p.ResourceVersion, last)
			}
			last = rv
			got++
		case <-deadline:
			t.Fatalf("%d bookmarks in 15s with BookmarkInterval %v", got, registry.BookmarkInterval)
		}
	}
	// After a write the bookmarks catch up with it.
	q := e.createPod("default", newPod("b"))
	wantEvent(t, next(t, ch, false), watch.Added, "b")
	deadline = time.After(15 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Type == watch.Bookmark && mustRV(t, ev.Object.(*corev1.Pod).ResourceVersion) >= mustRV(t, q.ResourceVersion) {
				goto caughtUp
			}
		case <-deadline:
			t.Fatal("no bookmark at or after the last write")
		}
	}
caughtUp:
	// Without allowWatchBookmarks no bookmarks come.
	plain := e.watch(e.pods, "default", registry.ListOptions{ResourceVersion: q.ResourceVersion})
	select {
	case ev := <-plain:
		t.Fatalf("got %s without allowWatchBookmarks", ev.Type)
	case <-time.After(3 * registry.BookmarkInterval):
	}
}

func TestWatchCompactedIsGone(t *testing.T) {
	e := newEnv(t)
	p := e.createPod("default", newPod("a"))
	e.createPod("default", newPod("b"))
	page, err := e.pods.List(e.ctx, "default", registry.ListOptions{Limit: 1})
	if err != nil || page.(*corev1.PodList).Continue == "" {
		t.Fatalf("first page: %v", err)
	}
	for i := 0; i < 3; i++ {
		cur := e.getPod("default", "a")
		cur.Labels = map[string]string{"i": strconv.Itoa(i)}
		if _, _, err := e.pods.Update(e.ctx, "default", "a", cur, registry.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := testEtcd.Client().Compact(e.ctx, e.revision()); err != nil {
		t.Fatal(err)
	}
	ch := e.watch(e.pods, "default", registry.ListOptions{ResourceVersion: p.ResourceVersion})
	ev := next(t, ch, true)
	if ev.Type != watch.Error {
		t.Fatalf("watch from compacted rv: got %s, want ERROR", ev.Type)
	}
	st, ok := ev.Object.(*metav1.Status)
	if !ok {
		t.Fatalf("ERROR event carries %T", ev.Object)
	}
	if st.Code != http.StatusGone || st.Reason != metav1.StatusReasonExpired || st.Status != metav1.StatusFailure {
		t.Fatalf("status %+v, want 410 Expired", st)
	}
	if !apierrors.IsResourceExpired(apierrors.FromObject(st)) {
		t.Errorf("client-go does not read %+v as expired", st)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("watch goes on after the ERROR event")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch not closed after the ERROR event")
	}
	// A list at the compacted revision is a 410 too, and so is a continue
	// token from before the compaction.
	_, err = e.pods.List(e.ctx, "default", registry.ListOptions{ResourceVersion: p.ResourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	wantStatus(t, err, http.StatusGone, metav1.StatusReasonExpired, "too old resource version")
	_, err = e.pods.List(e.ctx, "default", registry.ListOptions{Limit: 1, Continue: page.(*corev1.PodList).Continue})
	wantStatus(t, err, http.StatusGone, metav1.StatusReasonExpired, "The provided continue parameter is too old")
}

func TestWatchEndsWithContext(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(e.ctx)
	ch, err := e.pods.Watch(ctx, "default", registry.ListOptions{ResourceVersion: strconv.FormatInt(e.revision(), 10)})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			// Draining is fine; the channel must close soon after.
			for range ch {
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch channel not closed after cancel")
	}
}
