package main

import (
	"context"
	"fmt"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-project/berth/internal/server"
)

func newServerCommand() *cobra.Command {
	cfg := server.Config{}
	var etcdServers string
	var logLevel string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the API server, controllers, node agent and proxy in one process",
		Long: `Run berth: a Kubernetes-compatible API server on embedded etcd (or an external
etcd cluster with --etcd-servers), the controllers, a node agent that runs Pods
as local processes, and the Service proxy.

On first start it creates a CA, a serving certificate and admin credentials in
the data dir, and writes an admin kubeconfig to <data-dir>/kubeconfig:

  berth server &
  export KUBECONFIG=/var/lib/berth/kubeconfig   # as root
  kubectl apply -f examples/`,
		Example: `  # as root: data in /var/lib/berth, API on https://127.0.0.1:6443
  berth server

  # a throwaway instance on another port
  berth server --data-dir /tmp/berth --secure-port 7443

  # storage in an external etcd cluster
  berth server --etcd-servers http://10.0.0.5:2379,http://10.0.0.6:2379`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg.Logger = log
			if etcdServers != "" {
				for _, s := range strings.Split(etcdServers, ",") {
					if s = strings.TrimSpace(s); s != "" {
						cfg.EtcdServers = append(cfg.EtcdServers, s)
					}
				}
			}
			out := cmd.OutOrStdout()
			cfg.Started = func(kubeconfig string) {
				fmt.Fprintf(out, "berth is ready. Use it with:\n  export KUBECONFIG=%s\n  kubectl get pods\n", kubeconfig)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return server.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", server.DefaultDataDir(), "directory for etcd data, credentials, the kubeconfig and pod state")
	f.StringVar(&etcdServers, "etcd-servers", "", "comma-separated etcd client URLs; empty runs etcd embedded in --data-dir")
	f.StringVar(&cfg.EtcdPrefix, "etcd-prefix", "/berth", "key prefix for everything berth stores in etcd")
	f.StringVar(&cfg.BindAddress, "bind-address", "127.0.0.1", "IP address the API server listens on")
	f.IntVar(&cfg.SecurePort, "secure-port", 6443, "HTTPS port of the API server")
	f.StringVar(&cfg.PodNetwork, "pod-network", "auto", "how pods get their own IP: netns (a network namespace per pod; needs root), loopback (a 127.x address per pod), or auto (netns as root, else loopback)")
	f.StringVar(&cfg.PodCIDR, "pod-cidr", "", "pod address range (default 10.244.0.0/16 with netns, 127.244.0.0/16 with loopback)")
	f.StringVar(&cfg.ServiceCIDR, "service-cidr", "", "range Service cluster IPs are allocated from (default 10.96.0.0/12 with netns, 127.96.0.0/16 with loopback)")
	f.StringVar(&cfg.LBPool, "lb-pool", "", "LoadBalancer IPs, as CIDRs or start-end ranges, comma-separated (default 10.250.0.0/24 with netns, 127.250.0.0/24 with loopback)")
	f.StringSliceVar(&cfg.NodePortAddresses, "nodeport-addresses", []string{"127.0.0.1"}, "IPs NodePorts listen on, comma-separated (0.0.0.0 for all)")
	f.StringVar(&cfg.ProxyMode, "proxy-mode", "userspace", "Service proxy: userspace (a TCP/UDP proxy, the default) or nftables (kernel DNAT; needs root)")
	f.StringVar(&cfg.NodeName, "node-name", "", "name of this node (default: the hostname)")
	f.StringVar(&cfg.AgentBindAddress, "agent-bind-address", "127.0.0.1", "IP address the node agent serves logs, exec and port-forward on")
	f.IntVar(&cfg.AgentPort, "agent-port", 10250, "HTTPS port of the node agent (0: any free port)")
	f.DurationVar(&cfg.RestartBackoffBase, "restart-backoff-base", 10*time.Second, "first crash-loop back-off delay of a failing container; doubles up to --restart-backoff-max")
	f.DurationVar(&cfg.RestartBackoffMax, "restart-backoff-max", 300*time.Second, "longest crash-loop back-off delay")
	_ = f.MarkHidden("restart-backoff-base")
	_ = f.MarkHidden("restart-backoff-max")
	f.StringVar(&cfg.NodePortRange, "service-node-port-range", "30000-32767", "port range NodePorts are allocated from")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringSliceVar(&cfg.Disable, "disable", nil, "components not to run, comma-separated: controllers, scheduler, agent, proxy")
	return cmd
}
