package garbagecollector

import (
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// objectRef names one object of one watched resource; it is the work item.
type objectRef struct {
	resource  int // index into Controller.resources
	namespace string
	name      string
	uid       types.UID
}

// node is what the graph knows of an object from its informer.
type node struct {
	ref        objectRef
	owners     []metav1.OwnerReference
	deleting   bool
	finalizers []string
}

func (n *node) hasFinalizer(f string) bool { return slices.Contains(n.finalizers, f) }

// deletingDependents: in foreground deletion, waiting for its dependents.
func (n *node) deletingDependents() bool {
	return n.deleting && n.hasFinalizer(metav1.FinalizerDeleteDependents)
}

// blocksOwner reports whether n's reference to owner has
// blockOwnerDeletion.
func (n *node) blocksOwner(owner types.UID) bool {
	for _, r := range n.owners {
		if r.UID == owner && r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion {
			return true
		}
	}
	return false
}

// graph indexes the watched objects by UID and by the UIDs of their owners.
// Safe for concurrent use.
type graph struct {
	mu         sync.Mutex
	nodes      map[types.UID]*node                  // protected by mu
	dependents map[types.UID]map[types.UID]struct{} // owner -> dependents; protected by mu
}

func newGraph() *graph {
	return &graph{nodes: map[types.UID]*node{}, dependents: map[types.UID]map[types.UID]struct{}{}}
}

// upsert stores n and returns what was stored before under its UID.
func (g *graph) upsert(n *node) *node {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.nodes[n.ref.uid]
	if old != nil {
		g.unlinkLocked(old)
	}
	g.nodes[n.ref.uid] = n
	for _, o := range n.owners {
		deps := g.dependents[o.UID]
		if deps == nil {
			deps = map[types.UID]struct{}{}
			g.dependents[o.UID] = deps
		}
		deps[n.ref.uid] = struct{}{}
	}
	return old
}

// remove drops the object uid and returns it (nil if unknown).
func (g *graph) remove(uid types.UID) *node {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.nodes[uid]
	if old != nil {
		g.unlinkLocked(old)
		delete(g.nodes, uid)
	}
	return old
}

func (g *graph) unlinkLocked(n *node) {
	for _, o := range n.owners {
		if deps := g.dependents[o.UID]; deps != nil {
			delete(deps, n.ref.uid)
			if len(deps) == 0 {
				delete(g.dependents, o.UID)
			}
		}
	}
}

func (g *graph) get(uid types.UID) *node {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.nodes[uid]
}

// dependentsOf returns the known dependents of owner. Nodes are replaced,
// never changed, so they may be read without the lock.
func (g *graph) dependentsOf(owner types.UID) []*node {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*node
	for uid := range g.dependents[owner] {
		if n := g.nodes[uid]; n != nil {
			out = append(out, n)
		}
	}
	return out
}
