// Package etcd implements storage.Interface on etcd, either embedded in the
// berth process (the default, in --data-dir) or an external cluster
// (--etcd-servers). Both are reached through the same etcd v3 client.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/berth-project/berth/internal/storage"
)

// Store is a storage.Interface over an etcd v3 client.
type Store struct {
	client *clientv3.Client
	log    *slog.Logger

	// lastProgress is when a watch last asked etcd for progress (unix ns).
	lastProgress atomic.Int64

	leaseMu sync.Mutex // guards lease and leaseExpiry
	lease   clientv3.LeaseID
	// leaseExpiry is when the shared lease's TTL runs out; keys attached to it
	// live at least as long as they asked for.
	leaseExpiry time.Time
}

var _ storage.Interface = (*Store)(nil)

// New wraps an etcd client. The caller owns the client.
func New(client *clientv3.Client, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	return &Store{client: client, log: log}
}

// Client returns the underlying etcd client (for compaction and tests).
func (s *Store) Client() *clientv3.Client { return s.client }

func (s *Store) Get(ctx context.Context, key string) (storage.KeyValue, error) {
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return storage.KeyValue{}, fmt.Errorf("etcd get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return storage.KeyValue{}, storage.ErrNotFound
	}
	kv := resp.Kvs[0]
	return storage.KeyValue{Key: string(kv.Key), Value: kv.Value, Revision: kv.ModRevision}, nil
}

func (s *Store) List(ctx context.Context, prefix string, opts storage.ListOptions) (storage.ListResult, error) {
	start := prefix
	if opts.StartKey != "" {
		start = opts.StartKey
	}
	ops := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix))}
	if opts.Limit > 0 {
		ops = append(ops, clientv3.WithLimit(opts.Limit))
	}
	if opts.Revision > 0 {
		ops = append(ops, clientv3.WithRev(opts.Revision))
	}
	resp, err := s.client.Get(ctx, start, ops...)
	if err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			return storage.ListResult{}, storage.ErrCompacted
		}
		if errors.Is(err, rpctypes.ErrFutureRev) {
			return storage.ListResult{}, fmt.Errorf("etcd list %s at revision %d: %w", prefix, opts.Revision, err)
		}
		return storage.ListResult{}, fmt.Errorf("etcd list %s: %w", prefix, err)
	}
	res := storage.ListResult{Revision: resp.Header.Revision, Items: make([]storage.KeyValue, 0, len(resp.Kvs))}
	if opts.Revision > 0 {
		res.Revision = opts.Revision
	}
	for _, kv := range resp.Kvs {
		res.Items = append(res.Items, storage.KeyValue{Key: string(kv.Key), Value: kv.Value, Revision: kv.ModRevision})
	}
	if resp.More {
		res.More = true
		res.Remaining = resp.Count - int64(len(resp.Kvs))
	}
	return res, nil
}

func (s *Store) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (int64, error) {
	var putOpts []clientv3.OpOption
	if ttl > 0 {
		id, err := s.leaseFor(ctx, ttl)
		if err != nil {
			return 0, fmt.Errorf("etcd create %s: %w", key, err)
		}
		putOpts = append(putOpts, clientv3.WithLease(id))
	}
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(value), putOpts...)).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("etcd create %s: %w", key, err)
	}
	if !resp.Succeeded {
		return 0, storage.ErrExists
	}
	return resp.Header.Revision, nil
}

func (s *Store) Update(ctx context.Context, key string, value []byte, expected int64) (int64, error) {
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expected)).
		Then(clientv3.OpPut(key, string(value), clientv3.WithIgnoreLease())).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		if errors.Is(err, rpctypes.ErrKeyNotFound) {
			// WithIgnoreLease on a missing key.
			return 0, storage.ErrNotFound
		}
		return 0, fmt.Errorf("etcd update %s: %w", key, err)
	}
	if !resp.Succeeded {
		if len(resp.Responses) > 0 && len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return 0, storage.ErrNotFound
		}
		return 0, storage.ErrConflict
	}
	return resp.Header.Revision, nil
}

func (s *Store) Delete(ctx context.Context, key string, expected int64) (storage.KeyValue, int64, error) {
	var cmp []clientv3.Cmp
	if expected > 0 {
		cmp = append(cmp, clientv3.Compare(clientv3.ModRevision(key), "=", expected))
	} else {
		cmp = append(cmp, clientv3.Compare(clientv3.ModRevision(key), ">", 0))
	}
	resp, err := s.client.Txn(ctx).
		If(cmp...).
		Then(clientv3.OpDelete(key, clientv3.WithPrevKV())).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return storage.KeyValue{}, 0, fmt.Errorf("etcd delete %s: %w", key, err)
	}
	if !resp.Succeeded {
		if len(resp.Responses) > 0 && len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return storage.KeyValue{}, 0, storage.ErrNotFound
		}
		return storage.KeyValue{}, 0, storage.ErrConflict
	}
	del := resp.Responses[0].GetResponseDeleteRange()
	if del == nil || len(del.PrevKvs) == 0 {
		return storage.KeyValue{}, 0, storage.ErrNotFound
	}
	prev := del.PrevKvs[0]
	return storage.KeyValue{Key: string(prev.Key), Value: prev.Value, Revision: prev.ModRevision}, resp.Header.Revision, nil
}

func (s *Store) Revision(ctx context.Context) (int64, error) {
	// A Get of a key that never exists is the cheapest way to read the header.
	resp, err := s.client.Get(ctx, "/berth/revision-probe", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("etcd revision: %w", err)
	}
	return resp.Header.Revision, nil
}

func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64, progressEvery time.Duration) <-chan storage.Event {
	out := make(chan storage.Event, 100)
	go func() {
		defer close(out)
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		defer cancel()
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(fromRev + 1)}
		if progressEvery > 0 {
			opts = append(opts, clientv3.WithProgressNotify())
		}
		wch := s.client.Watch(ctx, prefix, opts...)
		var tick <-chan time.Time
		if progressEvery > 0 {
			t := time.NewTicker(progressEvery)
			defer t.Stop()
			tick = t.C
		}
		heard := false // whether etcd has sent this watch anything yet
		send := func(ev storage.Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick:
				// Ask etcd to tell the watches how far they have got; the
				// answer arrives as an empty response with a header
				// revision. One request reaches every watch of the client,
				// so the watches take turns instead of each asking.
				if s.progressDue(progressEvery) {
					if err := s.client.RequestProgress(ctx); err != nil && ctx.Err() == nil {
						s.log.Debug("etcd watch progress request failed", "prefix", prefix, "err", err)
					}
				}
				// etcd answers only once the store has moved past the watch's
				// start (its startRev is fromRev+1), so on an idle store no
				// bookmark would ever come. While nothing has been written
				// since fromRev, fromRev itself is the exact progress.
				if !heard {
					if rev, err := s.Revision(ctx); err == nil && rev == fromRev {
						if !send(storage.Event{Type: storage.EventProgress, Revision: rev}) {
							return
						}
					}
				}
			case resp, ok := <-wch:
				heard = true
				if !ok {
					if ctx.Err() == nil {
						send(storage.Event{Type: storage.EventError, Err: errors.New("etcd watch channel closed")})
					}
					return
				}
				if err := resp.Err(); err != nil {
					if resp.CompactRevision > 0 || errors.Is(err, rpctypes.ErrCompacted) {
						err = storage.ErrCompacted
					}
					send(storage.Event{Type: storage.EventError, Err: err})
					return
				}
				if resp.IsProgressNotify() {
					if !send(storage.Event{Type: storage.EventProgress, Revision: resp.Header.Revision}) {
						return
					}
					continue
				}
				for _, ev := range resp.Events {
					if ev.PrevKv == nil && !ev.IsCreate() {
						// An update or delete replayed from history whose
						// previous value is compacted away: what changed
						// (and a deleted object itself) is lost, so the
						// watcher must relist, as from a compacted revision.
						send(storage.Event{Type: storage.EventError, Err: storage.ErrCompacted})
						return
					}
					e := storage.Event{Key: string(ev.Kv.Key), Revision: ev.Kv.ModRevision}
					if ev.PrevKv != nil {
						e.PrevValue = ev.PrevKv.Value
					}
					switch ev.Type {
					case clientv3.EventTypePut:
						e.Type = storage.EventPut
						e.Value = ev.Kv.Value
					case clientv3.EventTypeDelete:
						e.Type = storage.EventDelete
					}
					if !send(e) {
						return
					}
				}
			}
		}
	}()
	return out
}

// progressDue says whether this watch should send the shared progress
// request now: at most one per half interval for the whole client.
func (s *Store) progressDue(every time.Duration) bool {
	now := time.Now().UnixNano()
	last := s.lastProgress.Load()
	if now-last < int64(every/2) {
		return false
	}
	return s.lastProgress.CompareAndSwap(last, now)
}

// leaseFor returns a lease that outlives ttl, sharing one lease between keys
// created close together as the Kubernetes API server does, so that a burst of
// Events does not create a lease each.
func (s *Store) leaseFor(ctx context.Context, ttl time.Duration) (clientv3.LeaseID, error) {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	now := time.Now()
	if s.lease != 0 && s.leaseExpiry.After(now.Add(ttl)) && s.leaseExpiry.Before(now.Add(ttl+time.Minute)) {
		return s.lease, nil
	}
	grant := ttl + time.Minute
	resp, err := s.client.Grant(ctx, int64(grant.Seconds()))
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	s.lease = resp.ID
	s.leaseExpiry = now.Add(grant)
	return s.lease, nil
}

// RunCompactor compacts history older than interval every interval, as the
// Kubernetes API server does, until ctx is done. Watches and continue tokens
// older than that get ErrCompacted (410 Gone at the API).
func (s *Store) RunCompactor(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rev, err := s.Revision(ctx)
		if err != nil {
			s.log.Warn("compaction: read revision", "err", err)
			continue
		}
		if last > 0 {
			if _, err := s.client.Compact(ctx, last); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
				s.log.Warn("compaction failed", "revision", last, "err", err)
			} else {
				s.log.Debug("compacted", "revision", last)
			}
		}
		last = rev
	}
}
