// Package storage is the seam between berth's API registry and the key-value
// store behind it. The interface is kine-shaped: every write returns the store
// revision it produced, updates and deletes name the revision they expect, and
// watches start from a revision. Embedded etcd, external etcd and the in-memory
// test store all implement it.
package storage

import (
	"context"
	"errors"
	"time"
)

// Errors every implementation returns (wrapped or bare) so the registry can map
// them to Kubernetes Status errors.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("key not found")
	// ErrExists: Create found the key already present.
	ErrExists = errors.New("key already exists")
	// ErrConflict: the key's revision is not the one the caller expected.
	ErrConflict = errors.New("revision conflict")
	// ErrCompacted: the requested revision is older than the store keeps.
	ErrCompacted = errors.New("revision compacted")
)

// KeyValue is one stored object. Revision is the store revision of its last
// modification; it becomes the object's resourceVersion.
type KeyValue struct {
	Key      string
	Value    []byte
	Revision int64
}

// ListOptions narrows a List.
type ListOptions struct {
	// StartKey, when set, lists keys >= StartKey (used for continue tokens).
	StartKey string
	// Limit caps the number of items; 0 means no limit.
	Limit int64
	// Revision reads the prefix as it was at this revision; 0 means latest.
	Revision int64
}

// ListResult is a consistent snapshot of part of a prefix.
type ListResult struct {
	Items []KeyValue
	// Revision is the store revision the snapshot was read at.
	Revision int64
	// More says that keys beyond the last item exist (paging).
	More bool
	// Remaining counts the keys after the last item when More is set.
	Remaining int64
}

// EventType is the kind of change a watch reports.
type EventType int

const (
	// EventPut is a create or an update; PrevValue is nil for a create.
	EventPut EventType = iota
	// EventDelete removes a key; PrevValue is the last value it had.
	EventDelete
	// EventProgress carries no key: it says every change up to Revision has
	// been delivered (a bookmark).
	EventProgress
	// EventError ends the watch; Err says why (ErrCompacted among others).
	EventError
)

// Event is one change seen by a watch.
type Event struct {
	Type      EventType
	Key       string
	Value     []byte
	PrevValue []byte
	Revision  int64
	Err       error
}

// Interface is what the registry needs from a store. Implementations are safe
// for concurrent use.
type Interface interface {
	// Get returns the current value of key, or ErrNotFound.
	Get(ctx context.Context, key string) (KeyValue, error)
	// List returns keys under prefix in key order, or ErrCompacted when
	// opts.Revision is older than the store keeps.
	List(ctx context.Context, prefix string, opts ListOptions) (ListResult, error)
	// Create stores key if it does not exist (else ErrExists). A ttl > 0 makes
	// the key expire on its own (used for Events).
	Create(ctx context.Context, key string, value []byte, ttl time.Duration) (int64, error)
	// Update replaces key if its revision is still expected (else ErrConflict,
	// or ErrNotFound when the key is gone).
	Update(ctx context.Context, key string, value []byte, expected int64) (int64, error)
	// Delete removes key if its revision is still expected (0: any), returning
	// the removed value and the revision of the delete.
	Delete(ctx context.Context, key string, expected int64) (KeyValue, int64, error)
	// Watch streams changes under prefix after revision fromRev (exclusive).
	// The channel is closed when ctx is done or after an EventError. When
	// progressEvery > 0 the watch emits EventProgress about that often.
	Watch(ctx context.Context, prefix string, fromRev int64, progressEvery time.Duration) <-chan Event
	// Revision returns the store's current revision.
	Revision(ctx context.Context) (int64, error)
}
