package server

import (
	"context"
	"fmt"
	"log/slog"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"

	"github.com/berth-project/berth/internal/controller/deployment"
	"github.com/berth-project/berth/internal/controller/endpoints"
	"github.com/berth-project/berth/internal/controller/endpointslice"
	"github.com/berth-project/berth/internal/controller/garbagecollector"
	"github.com/berth-project/berth/internal/controller/lbipam"
	"github.com/berth-project/berth/internal/controller/namespace"
	"github.com/berth-project/berth/internal/controller/replicaset"
	"github.com/berth-project/berth/internal/scheduler"
)

// runnable is what every controller offers.
type runnable interface {
	Run(ctx context.Context, workers int) error
}

// startControllers runs the controllers (and the scheduler, unless disabled)
// as API clients, all through the informers of one shared factory.
func startControllers(g *group, cfg Config, client kubernetes.Interface, rc *rest.Config, log *slog.Logger) error {
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	pool, err := lbipam.ParsePool(cfg.LBPool)
	if err != nil {
		return fmt.Errorf("--lb-pool: %w", err)
	}
	mc, err := metadata.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("metadata client: %w", err)
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	metaFactory := metadatainformer.NewSharedInformerFactory(mc, 0)
	type entry struct {
		name    string
		workers int
		make    func() (runnable, error)
	}
	entries := []entry{
		{"namespace-controller", 2, func() (runnable, error) {
			return namespace.New(namespace.Config{Client: client, Dynamic: dyn, Logger: log}, factory)
		}},
		{"endpointslice-controller", 4, func() (runnable, error) {
			return endpointslice.New(endpointslice.Config{Client: client, Logger: log}, factory)
		}},
		{"endpoints-controller", 2, func() (runnable, error) {
			return endpoints.New(endpoints.Config{Client: client, Logger: log}, factory)
		}},
		{"lbipam-controller", 2, func() (runnable, error) {
			return lbipam.New(lbipam.Config{Client: client, Pool: pool, Logger: log}, factory)
		}},
		{"replicaset-controller", 5, func() (runnable, error) {
			return replicaset.New(replicaset.Config{Client: client, Logger: log}, factory)
		}},
		{"deployment-controller", 5, func() (runnable, error) {
			return deployment.New(deployment.Config{Client: client, Logger: log}, factory)
		}},
		{"garbage-collector", 5, func() (runnable, error) {
			return garbagecollector.New(garbagecollector.Config{Metadata: mc, Logger: log}, metaFactory)
		}},
	}
	if cfg.enabled("scheduler") {
		entries = append(entries, entry{"scheduler", 1, func() (runnable, error) {
			return scheduler.New(scheduler.Config{Client: client, Logger: log}, factory)
		}})
	}
	for _, e := range entries {
		c, err := e.make()
		if err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
		workers := e.workers
		g.Go(e.name, func(ctx context.Context) error { return c.Run(ctx, workers) })
	}
	g.Go("informers", func(ctx context.Context) error {
		factory.Start(ctx.Done())
		metaFactory.Start(ctx.Done())
		<-ctx.Done()
		factory.Shutdown()
		metaFactory.Shutdown()
		return nil
	})
	return nil
}
