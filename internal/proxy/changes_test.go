package proxy

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Changes syncs nothing before both initial lists are in, and a recorded
// change after that asks for a sync.
func TestChangesWaitForBothLists(t *testing.T) {
	var syncs atomic.Int32
	c, err := NewChanges("node-a", slog.New(slog.DiscardHandler), func() { syncs.Add(1) }, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.SyncLoop(ctx)
	waitSyncs := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for syncs.Load() < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := syncs.Load(); got != want {
			t.Fatalf("syncs = %d, want %d", got, want)
		}
	}
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}, Spec: v1.ServiceSpec{
		ClusterIP: "10.96.0.10", Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}},
	}}
	c.OnServiceAdd(svc)
	if c.Initialized() {
		t.Fatal("initialized before any list was delivered")
	}
	c.OnServicesSynced()
	if c.Initialized() {
		t.Fatal("initialized with the EndpointSlice list missing")
	}
	c.OnEndpointSlicesSynced()
	if !c.Initialized() {
		t.Fatal("not initialized after both lists")
	}
	// The Synced calls ask for runs (the backend itself skips them while
	// not initialized); they coalesce into at least one.
	deadline := time.Now().Add(5 * time.Second)
	for syncs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	before := syncs.Load()
	if before == 0 {
		t.Fatal("no sync after both lists were delivered")
	}
	changed := svc.DeepCopy()
	changed.Spec.Ports[0].Port = 81
	c.OnServiceUpdate(svc, changed)
	waitSyncs(before + 1)
	if got := c.Services.Pending(); got != 1 {
		t.Errorf("pending Service changes = %d, want 1 (web)", got)
	}
}
