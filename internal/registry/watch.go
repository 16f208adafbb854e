package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/berth-project/berth/internal/storage"
)

// BookmarkInterval is how often a watch that allows bookmarks gets one.
var BookmarkInterval = 10 * time.Second

// InitialEventsAnnotation marks the bookmark that ends the initial events of
// a watch with sendInitialEvents=true (the WatchList protocol client-go uses).
const InitialEventsAnnotation = "k8s.io/initial-events-end"

// Watch streams changes to objects in ns that match opts. The channel closes
// when ctx is done or after an ERROR event.
func (s *Store) Watch(ctx context.Context, ns string, opts ListOptions) (<-chan watch.Event, error) {
	if err := s.Kind.ValidateFieldSelector(opts.Fields); err != nil {
		return nil, err
	}
	rev, err := ParseResourceVersion(opts.ResourceVersion, s.Kind.GroupResource())
	if err != nil {
		return nil, err
	}
	initial := opts.SendInitialEvents != nil && *opts.SendInitialEvents
	if opts.SendInitialEvents != nil {
		var errs field.ErrorList
		if opts.ResourceVersionMatch != metav1.ResourceVersionMatchNotOlderThan {
			errs = append(errs, field.Forbidden(field.NewPath("resourceVersionMatch"), "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"))
		}
		if initial && !opts.AllowBookmarks {
			errs = append(errs, field.Forbidden(field.NewPath("allowWatchBookmarks"), "sendInitialEvents requires setting allowWatchBookmarks to true"))
		}
		if len(errs) > 0 {
			return nil, apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("ListOptions").GroupKind(), "", errs)
		}
	} else if rev == 0 {
		// Kubernetes: a watch from "" or "0" first sends the current state.
		initial = true
	}
	match := opts.matcher(s.Kind)
	var initialObjs []runtime.Object
	if initial {
		list, err := s.List(ctx, ns, ListOptions{Labels: opts.Labels, Fields: opts.Fields})
		if err != nil {
			return nil, err
		}
		lm, _ := meta.ListAccessor(list)
		listRev, _ := ParseResourceVersion(lm.GetResourceVersion(), s.Kind.GroupResource())
		if listRev > rev {
			rev = listRev
		}
		initialObjs, _ = meta.ExtractList(list)
	} else if rev == 0 {
		if rev, err = s.storage.Revision(ctx); err != nil {
			return nil, s.internal(err)
		}
	}
	progress := time.Duration(0)
	if opts.AllowBookmarks {
		progress = BookmarkInterval
	}
	events := s.storage.Watch(ctx, s.listPrefix(ns), rev, progress)
	out := make(chan watch.Event, 64)
	go func() {
		defer close(out)
		send := func(ev watch.Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, obj := range initialObjs {
			if !send(watch.Event{Type: watch.Added, Object: obj}) {
				return
			}
		}
		if opts.SendInitialEvents != nil && *opts.SendInitialEvents {
			bm := s.bookmark(rev)
			m, _ := metaOf(bm)
			m.SetAnnotations(map[string]string{InitialEventsAnnotation: "true"})
			if !send(watch.Event{Type: watch.Bookmark, Object: bm}) {
				return
			}
		}
		for ev := range events {
			var out watch.Event
			switch ev.Type {
			case storage.EventProgress:
				if !opts.AllowBookmarks {
					continue
				}
				out = watch.Event{Type: watch.Bookmark, Object: s.bookmark(ev.Revision)}
			case storage.EventError:
				out = watch.Event{Type: watch.Error, Object: s.watchError(ev.Err, rev)}
			default:
				var ok bool
				if out, ok = s.translate(ev, match); !ok {
					continue
				}
			}
			if !send(out) || out.Type == watch.Error {
				return
			}
		}
	}()
	return out, nil
}

func (s *Store) bookmark(rev int64) runtime.Object {
	obj := s.Kind.New()
	m, _ := metaOf(obj)
	m.SetResourceVersion(formatRV(rev))
	obj.GetObjectKind().SetGroupVersionKind(s.Kind.GroupVersionKind)
	return obj
}

func (s *Store) watchError(err error, rev int64) *metav1.Status {
	if errors.Is(err, storage.ErrCompacted) {
		return &apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d", rev)).ErrStatus
	}
	st := apierrors.NewInternalError(err).ErrStatus
	st.Code = http.StatusInternalServerError
	return &st
}

// translate turns a storage event into a watch event as seen through the
// selector: an object that stops matching is reported DELETED and one that
// starts matching ADDED, as the Kubernetes watch cache does.
func (s *Store) translate(ev storage.Event, match func(runtime.Object) bool) (watch.Event, bool) {
	var cur, prev runtime.Object
	var err error
	if ev.Type == storage.EventPut {
		if cur, err = s.Kind.decode(ev.Value, ev.Revision); err != nil {
			s.log.Error("watch: undecodable object", "key", ev.Key, "err", err)
			return watch.Event{}, false
		}
	}
	if ev.PrevValue != nil {
		if prev, err = s.Kind.decode(ev.PrevValue, ev.Revision); err != nil {
			prev = nil
		}
	}
	curOK := cur != nil && match(cur)
	prevOK := prev != nil && match(prev)
	switch {
	case ev.Type == storage.EventDelete:
		if prevOK {
			return watch.Event{Type: watch.Deleted, Object: prev}, true
		}
	case curOK && prevOK:
		return watch.Event{Type: watch.Modified, Object: cur}, true
	case curOK:
		return watch.Event{Type: watch.Added, Object: cur}, true
	case prevOK:
		return watch.Event{Type: watch.Deleted, Object: prev}, true
	}
	return watch.Event{}, false
}
