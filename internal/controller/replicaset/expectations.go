package replicaset

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// ExpectationsTimeout is how long a controller waits for the watch events of
// its own creates and deletes before it syncs anyway. Upstream's value: a
// dropped watch event must not put a ReplicaSet to sleep forever.
const ExpectationsTimeout = 5 * time.Minute

// expectations remembers, per controller key, how many Pod creations and
// which Pod deletions the controller has asked for but not yet seen through
// its informer. While any are outstanding the controller does not create or
// delete again, so a burst of watch events on a stale cache cannot make it
// create too many Pods (upstream's UIDTrackingControllerExpectations).
//
// Deletions are tracked by Pod key so that the update that sets a Pod's
// deletionTimestamp and the later delete event count once, not twice.
//
// All methods are safe for concurrent use.
type expectations struct {
	clock clock.PassiveClock

	mu      sync.Mutex
	byOwner map[string]*expectation // protected by mu
}

type expectation struct {
	adds      int64
	dels      map[string]struct{} // pod keys still expected to go
	timestamp time.Time
}

func newExpectations(c clock.PassiveClock) *expectations {
	if c == nil {
		c = clock.RealClock{}
	}
	return &expectations{clock: c, byOwner: map[string]*expectation{}}
}

// Satisfied reports whether the controller of key may act: it has no
// outstanding expectations, or they expired.
func (e *expectations) Satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	exp, ok := e.byOwner[key]
	if !ok {
		return true
	}
	if exp.adds <= 0 && len(exp.dels) == 0 {
		return true
	}
	return e.clock.Since(exp.timestamp) > ExpectationsTimeout
}

// ExpectCreations records that n creations are under way, replacing whatever
// was expected before (upstream sets, not adds: a sync only happens once the
// previous expectations are met or expired).
func (e *expectations) ExpectCreations(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.byOwner[key] = &expectation{adds: int64(n), dels: map[string]struct{}{}, timestamp: e.clock.Now()}
}

// ExpectDeletions records the pods (by namespace/name key) being deleted.
func (e *expectations) ExpectDeletions(key string, podKeys []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	dels := make(map[string]struct{}, len(podKeys))
	for _, k := range podKeys {
		dels[k] = struct{}{}
	}
	e.byOwner[key] = &expectation{dels: dels, timestamp: e.clock.Now()}
}

// CreationObserved lowers the expected creations of key by one.
func (e *expectations) CreationObserved(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if exp, ok := e.byOwner[key]; ok {
		exp.adds--
	}
}

// DeletionObserved marks the deletion of podKey as seen, once.
func (e *expectations) DeletionObserved(key, podKey string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if exp, ok := e.byOwner[key]; ok {
		delete(exp.dels, podKey)
	}
}

// Delete forgets everything about key, e.g. when its ReplicaSet is deleted,
// so that a new ReplicaSet of the same name starts clean.
func (e *expectations) Delete(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.byOwner, key)
}

// pending returns the outstanding creations and deletions of key (tests).
func (e *expectations) pending(key string) (adds int64, dels int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if exp, ok := e.byOwner[key]; ok {
		return exp.adds, len(exp.dels)
	}
	return 0, 0
}
