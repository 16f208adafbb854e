package server

import (
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/berth-project/berth/internal/agent"
	"github.com/berth-project/berth/internal/pki"
)

// startAgent runs the node agent for this machine, as an API client like any
// other. Its serving certificate is signed by berth's CA, and it accepts
// client certificates from the same CA (the API server presents the admin one).
func startAgent(g *group, cfg Config, client kubernetes.Interface, bundle *pki.Bundle) error {
	hostname, _ := os.Hostname()
	hosts := []string{"127.0.0.1", "localhost", hostname, cfg.NodeName}
	if cfg.AgentBindAddress != "" {
		hosts = append(hosts, cfg.AgentBindAddress)
	}
	serving, err := bundle.IssueServing("berth-agent", hosts)
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Config{
		Client: client, NodeName: cfg.NodeName, StateDir: filepath.Join(cfg.DataDir, "agent"),
		NetworkMode: cfg.PodNetwork, PodCIDR: cfg.PodCIDR,
		BindAddress: cfg.AgentBindAddress, Port: cfg.AgentPort,
		ServingCert: &serving, ClientCAs: bundle.ClientPool(),
		BackOffBase: cfg.RestartBackoffBase, BackOffMax: cfg.RestartBackoffMax,
		Logger: cfg.Logger,
	})
	if err != nil {
		return err
	}
	g.Go("agent", a.Run)
	return nil
}

// Backoff defaults of the agent, as the kubelet's.
const (
	defaultBackoffBase = 10 * time.Second
	defaultBackoffMax  = 300 * time.Second
)
