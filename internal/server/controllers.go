package server

import (
	"log/slog"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// startControllers runs the controllers as API clients.
func startControllers(g *group, client kubernetes.Interface, cfg *rest.Config, log *slog.Logger) {
	_ = g
	_ = client
	_ = cfg
	_ = log
}
