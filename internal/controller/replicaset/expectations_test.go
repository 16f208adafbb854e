package replicaset

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestExpectations(t *testing.T) {
	clock := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	e := newExpectations(clock)
	const key = "default/rs"

	if !e.Satisfied(key) {
		t.Fatal("no expectations: want satisfied")
	}
	e.ExpectCreations(key, 2)
	if e.Satisfied(key) {
		t.Fatal("2 creations outstanding: want unsatisfied")
	}
	e.CreationObserved(key)
	if e.Satisfied(key) {
		t.Fatal("1 creation outstanding: want unsatisfied")
	}
	e.CreationObserved(key)
	if !e.Satisfied(key) {
		t.Fatal("all creations observed: want satisfied")
	}

	e.ExpectDeletions(key, []string{"default/a", "default/b"})
	e.DeletionObserved(key, "default/a")
	// Graceful deletion reports a pod twice (deletionTimestamp, then the
	// delete): the second report must not count for pod b.
	e.DeletionObserved(key, "default/a")
	if e.Satisfied(key) {
		t.Fatal("pod b not yet observed: want unsatisfied")
	}
	if _, dels := e.pending(key); dels != 1 {
		t.Fatalf("pending deletions = %d, want 1", dels)
	}
	e.DeletionObserved(key, "default/b")
	if !e.Satisfied(key) {
		t.Fatal("all deletions observed: want satisfied")
	}

	e.ExpectCreations(key, 5)
	clock.SetTime(clock.Now().Add(ExpectationsTimeout + time.Second))
	if !e.Satisfied(key) {
		t.Fatal("expired expectations: want satisfied")
	}

	e.ExpectCreations(key, 1)
	e.Delete(key)
	if !e.Satisfied(key) {
		t.Fatal("deleted expectations: want satisfied")
	}
	// Observations for unknown keys are harmless.
	e.CreationObserved("default/other")
	e.DeletionObserved("default/other", "default/x")
}
