package server

import (
	"github.com/berth-project/berth/internal/alloc"
	"github.com/berth-project/berth/internal/registry"
	"github.com/berth-project/berth/internal/registry/deployment"
	"github.com/berth-project/berth/internal/registry/endpoints"
	"github.com/berth-project/berth/internal/registry/endpointslice"
	"github.com/berth-project/berth/internal/registry/event"
	"github.com/berth-project/berth/internal/registry/lease"
	"github.com/berth-project/berth/internal/registry/namespace"
	"github.com/berth-project/berth/internal/registry/node"
	"github.com/berth-project/berth/internal/registry/pod"
	"github.com/berth-project/berth/internal/registry/replicaset"
	"github.com/berth-project/berth/internal/registry/service"
)

// kinds lists every kind the API serves; adding a kind is one line here and
// a strategy package under internal/registry.
func kinds(svc service.Config) []*registry.Kind {
	return []*registry.Kind{
		namespace.Kind(),
		node.Kind(),
		pod.Kind(),
		service.Kind(svc),
		event.Kind(),
		endpoints.Kind(),
		endpointslice.Kind(),
		deployment.Kind(),
		replicaset.Kind(),
		lease.Kind(),
	}
}

// allocators builds the cluster IP and node port allocators over storage.
type allocators struct {
	clusterIPRange *alloc.IPRange
	clusterIPs     *alloc.Allocator
	nodePorts      *alloc.Allocator
}
