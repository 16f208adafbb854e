// Package storagetest is the conformance suite every storage.Interface
// implementation must pass.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/storage"
)

// Run exercises s under a fresh prefix. s must be empty under /conformance/.
func Run(t *testing.T, s storage.Interface) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := fmt.Sprintf("/conformance/%d/", time.Now().UnixNano())

	t.Run("CreateGetUpdateDelete", func(t *testing.T) {
		k := p + "crud/a"
		rev, err := s.Create(ctx, k, []byte("1"), 0)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if _, err := s.Create(ctx, k, []byte("x"), 0); !errors.Is(err, storage.ErrExists) {
			t.Fatalf("second create: got %v, want ErrExists", err)
		}
		kv, err := s.Get(ctx, k)
		if err != nil || string(kv.Value) != "1" || kv.Revision != rev {
			t.Fatalf("get: %+v %v (want rev %d)", kv, err, rev)
		}
		rev2, err := s.Update(ctx, k, []byte("2"), rev)
		if err != nil || rev2 <= rev {
			t.Fatalf("update: rev %d err %v", rev2, err)
		}
		if _, err := s.Update(ctx, k, []byte("3"), rev); !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("stale update: got %v, want ErrConflict", err)
		}
		if _, _, err := s.Delete(ctx, k, rev); !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("stale delete: got %v, want ErrConflict", err)
		}
		prev, drev, err := s.Delete(ctx, k, rev2)
		if err != nil || string(prev.Value) != "2" || drev <= rev2 {
			t.Fatalf("delete: %+v rev %d err %v", prev, drev, err)
		}
		if _, err := s.Get(ctx, k); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("get after delete: got %v, want ErrNotFound", err)
		}
		if _, err := s.Update(ctx, k, []byte("4"), rev2); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("update after delete: got %v, want ErrNotFound", err)
		}
		if _, _, err := s.Delete(ctx, k, 0); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("delete after delete: got %v, want ErrNotFound", err)
		}
	})

	t.Run("ListPagingAndRevision", func(t *testing.T) {
		lp := p + "list/"
		var mid int64
		for i := 0; i < 5; i++ {
			rev, err := s.Create(ctx, fmt.Sprintf("%s%d", lp, i), []byte{byte('a' + i)}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if i == 2 {
				mid = rev
			}
		}
		all, err := s.List(ctx, lp, storage.ListOptions{})
		if err != nil || len(all.Items) != 5 || all.More {
			t.Fatalf("list all: %d items more=%v err=%v", len(all.Items), all.More, err)
		}
		page, err := s.List(ctx, lp, storage.ListOptions{Limit: 2})
		if err != nil || len(page.Items) != 2 || !page.More || page.Remaining != 3 {
			t.Fatalf("page 1: %+v err=%v", page, err)
		}
		next, err := s.List(ctx, lp, storage.ListOptions{Limit: 10, StartKey: page.Items[1].Key + "\x00", Revision: page.Revision})
		if err != nil || len(next.Items) != 3 || next.More {
			t.Fatalf("page 2: %+v err=%v", next, err)
		}
		old, err := s.List(ctx, lp, storage.ListOptions{Revision: mid})
		if err != nil || len(old.Items) != 3 {
			t.Fatalf("list at revision %d: %d items err=%v", mid, len(old.Items), err)
		}
	})

	t.Run("Watch", func(t *testing.T) {
		wp := p + "watch/"
		start, err := s.Revision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		ch := s.Watch(wctx, wp, start, 0)
		r1, _ := s.Create(ctx, wp+"x", []byte("1"), 0)
		r2, _ := s.Update(ctx, wp+"x", []byte("2"), r1)
		if _, _, err := s.Delete(ctx, wp+"x", r2); err != nil {
			t.Fatal(err)
		}
		want := []struct {
			typ  storage.EventType
			val  string
			prev string
		}{{storage.EventPut, "1", ""}, {storage.EventPut, "2", "1"}, {storage.EventDelete, "", "2"}}
		for i, w := range want {
			select {
			case ev := <-ch:
				if ev.Type != w.typ || string(ev.Value) != w.val || string(ev.PrevValue) != w.prev {
					t.Fatalf("event %d: got %+v, want %+v", i, ev, w)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("event %d: timed out", i)
			}
		}
		// A watch from the start sees the same history again.
		again := s.Watch(wctx, wp, start, 0)
		select {
		case ev := <-again:
			if ev.Type != storage.EventPut || string(ev.Value) != "1" {
				t.Fatalf("replayed event: %+v", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("replay timed out")
		}
	})

	t.Run("WatchProgress", func(t *testing.T) {
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		rev, _ := s.Revision(ctx)
		ch := s.Watch(wctx, p+"progress/", rev, 100*time.Millisecond)
		select {
		case ev := <-ch:
			if ev.Type != storage.EventProgress || ev.Revision < rev {
				t.Fatalf("got %+v, want a progress event at >= %d", ev, rev)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("no progress event")
		}
	})

	t.Run("WatchProgressAfterWrites", func(t *testing.T) {
		// Writes elsewhere in the store move a quiet watch's progress on.
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		rev, _ := s.Revision(ctx)
		ch := s.Watch(wctx, p+"quiet/", rev, 100*time.Millisecond)
		wrote, err := s.Create(ctx, p+"busy/a", []byte("1"), 0)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.After(15 * time.Second)
		for {
			select {
			case ev := <-ch:
				if ev.Type != storage.EventProgress {
					t.Fatalf("got %+v, want only progress events", ev)
				}
				if ev.Revision >= wrote {
					return
				}
			case <-deadline:
				t.Fatalf("no progress event at or after revision %d", wrote)
			}
		}
	})

	t.Run("TTL", func(t *testing.T) {
		if _, err := s.Create(ctx, p+"ttl/a", []byte("1"), time.Second); err != nil {
			t.Fatalf("create with ttl: %v", err)
		}
		if _, err := s.Get(ctx, p+"ttl/a"); err != nil {
			t.Fatalf("get ttl key: %v", err)
		}
	})
}

// RunCompaction checks that watching and listing below a compacted revision
// fail with ErrCompacted; compact compacts the store up to rev.
func RunCompaction(t *testing.T, s storage.Interface, compact func(rev int64) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := fmt.Sprintf("/compaction/%d/", time.Now().UnixNano())
	r1, err := s.Create(ctx, p+"a", []byte("1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Update(ctx, p+"a", []byte("2"), r1)
	if err != nil {
		t.Fatal(err)
	}
	if err := compact(r2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(ctx, p, storage.ListOptions{Revision: r1}); !errors.Is(err, storage.ErrCompacted) {
		t.Fatalf("list at compacted revision: got %v, want ErrCompacted", err)
	}
	ch := s.Watch(ctx, p, r1-1, 0)
	select {
	case ev := <-ch:
		if ev.Type != storage.EventError || !errors.Is(ev.Err, storage.ErrCompacted) {
			t.Fatalf("watch from compacted revision: got %+v, want ErrCompacted", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch from compacted revision: no error")
	}
	// From r1 the watch may start (r2 is kept), but the update at r2 lost its
	// previous value to the compaction: a watch must not report it as if it
	// were a create.
	ch = s.Watch(ctx, p, r1, 0)
	select {
	case ev := <-ch:
		if ev.Type != storage.EventError || !errors.Is(ev.Err, storage.ErrCompacted) {
			t.Fatalf("watch replaying an update whose previous value is compacted: got %+v, want ErrCompacted", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch from the compaction boundary: no event")
	}
	// An update after the compaction still carries its previous value.
	rev, _ := s.Revision(ctx)
	live := s.Watch(ctx, p, rev, 0)
	if _, err := s.Update(ctx, p+"a", []byte("3"), r2); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-live:
		if ev.Type != storage.EventPut || string(ev.Value) != "3" || string(ev.PrevValue) != "2" {
			t.Fatalf("update after compaction: %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event for an update after compaction")
	}
}
