package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/berth-project/berth/internal/agent"
	"github.com/berth-project/berth/internal/agent/network"
	"github.com/berth-project/berth/internal/agent/podspec"
	"github.com/berth-project/berth/internal/agent/runtime"
	"github.com/berth-project/berth/internal/agnhost"
	"github.com/berth-project/berth/internal/server"
	"github.com/berth-project/berth/internal/version"
)

func newAgentCommand() *cobra.Command {
	var (
		kubeconfig, dataDir, logLevel     string
		nodeIP, certFile, keyFile, caFile string
		logMaxSize                        string
		cfg                               agent.Config
	)
	hostname, _ := os.Hostname()
	hostname = strings.ToLower(hostname) // node names are DNS names
	cmd := &cobra.Command{
		Use:   "agent --kubeconfig FILE",
		Short: "Run a node agent that runs this machine's Pods as local processes",
		Long: `Run berth's node agent on its own against a berth (or Kubernetes) API server.
'berth server' already runs one for the local machine; use this to add a node.

The agent registers a Node, runs the Pods bound to it as local processes, each
with its own IP (network namespaces when run as root, 127.x addresses
otherwise), probes, restarts and logs, and serves the API server's kubectl
logs/exec/port-forward requests over HTTPS on --agent-port. Requests must
carry a client certificate signed by the cluster CA (the kubeconfig's
certificate authority unless --client-ca-file says otherwise).

Pods keep running when the agent stops; the next agent over the same
--data-dir adopts them.`,
		Example: `  # add this machine as a node of a berth server
  berth agent --kubeconfig /var/lib/berth/kubeconfig --node-name worker-1 --agent-port 10251`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if kubeconfig == "" {
				return errors.New("--kubeconfig is required: the agent is a client of the API server")
			}
			restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
			}
			restCfg.UserAgent = "berth-agent/" + version.Berth
			restCfg.QPS, restCfg.Burst = 50, 100
			client, err := kubernetes.NewForConfig(restCfg)
			if err != nil {
				return fmt.Errorf("API client: %w", err)
			}
			caPEM := restCfg.CAData
			if caFile == "" {
				caFile = restCfg.CAFile
			}
			if caFile != "" {
				if caPEM, err = os.ReadFile(caFile); err != nil {
					return fmt.Errorf("client CA: %w", err)
				}
			}
			pool := x509.NewCertPool()
			if len(caPEM) == 0 || !pool.AppendCertsFromPEM(caPEM) {
				return errors.New("no cluster CA to check the API server's client certificate with: the kubeconfig has no certificate-authority; pass --client-ca-file")
			}
			cfg.ClientCAs = pool
			if (certFile == "") != (keyFile == "") {
				return errors.New("--tls-cert-file and --tls-private-key-file go together")
			}
			if certFile != "" {
				pair, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return fmt.Errorf("agent serving certificate: %w", err)
				}
				cfg.ServingCert = &pair
			}
			if nodeIP != "" {
				if cfg.NodeIP = net.ParseIP(nodeIP); cfg.NodeIP == nil {
					return fmt.Errorf("--node-ip %q is not an IP address", nodeIP)
				}
			}
			q, err := resource.ParseQuantity(logMaxSize)
			if err != nil || q.Value() <= 0 {
				return fmt.Errorf("--container-log-max-size %q: want a size such as 10Mi", logMaxSize)
			}
			cfg.LogMaxBytes = q.Value()
			if dataDir, err = filepath.Abs(dataDir); err != nil {
				return err
			}
			cfg.Client = client
			cfg.StateDir = filepath.Join(dataDir, "agent")
			cfg.Logger = log
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the API server to register with (required)")
	f.StringVar(&cfg.NodeName, "node-name", hostname, "name of the Node to register")
	f.StringVar(&dataDir, "data-dir", server.DefaultDataDir(), "directory for the agent's state (<data-dir>/agent): containers, pod networks, logs")
	f.StringVar(&cfg.NetworkMode, "pod-network", network.ModeAuto, "pod networking: netns (root on Linux: a namespace and veth per Pod), loopback (a 127.x address per Pod) or auto")
	f.StringVar(&cfg.PodCIDR, "pod-cidr", "", "range Pod IPs come from (default 10.244.0.0/16 for netns, 127.244.0.0/16 for loopback)")
	f.StringVar(&cfg.BridgeName, "pod-bridge", network.DefaultBridgeName, "host bridge of the Pods' veths in netns mode")
	f.StringVar(&nodeIP, "node-ip", "", "the node's InternalIP and the Pods' hostIP (default 127.0.0.1 in loopback mode, the bridge gateway in netns mode)")
	f.StringVar(&cfg.BindAddress, "agent-bind-address", "127.0.0.1", "IP address the agent API listens on")
	f.IntVar(&cfg.Port, "agent-port", agent.DefaultPort, "HTTPS port of the agent API; 0 picks a free port and advertises it")
	f.StringVar(&certFile, "tls-cert-file", "", "serving certificate of the agent API (default: self-signed)")
	f.StringVar(&keyFile, "tls-private-key-file", "", "key of --tls-cert-file")
	f.StringVar(&caFile, "client-ca-file", "", "CA that signs the API server's client certificate (default: the kubeconfig's certificate authority)")
	f.StringVar(&logMaxSize, "container-log-max-size", "10Mi", "size at which a container's log file is rotated")
	f.IntVar(&cfg.LogMaxFiles, "container-log-max-files", agent.DefaultLogMaxFiles, "log files kept per container, the current one included (at least 2)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.DurationVar(&cfg.BackOffBase, "crashloop-backoff-base", agent.DefaultBackOffBase, "first delay of the crash-loop back-off")
	f.DurationVar(&cfg.BackOffMax, "crashloop-backoff-max", agent.DefaultBackOffMax, "longest delay of the crash-loop back-off")
	_ = f.MarkHidden("crashloop-backoff-base")
	_ = f.MarkHidden("crashloop-backoff-max")
	return cmd
}

// newShimCommand is the hidden command the runtime re-executes berth with
// to supervise one container.
func newShimCommand() *cobra.Command {
	return &cobra.Command{
		Use:                agent.ShimSubcommand,
		Hidden:             true,
		DisableFlagParsing: true,
		Run: func(_ *cobra.Command, args []string) {
			os.Exit(runtime.ShimMain(args))
		},
	}
}

// newAgnhostCommand runs the built-in agnhost e2e image: a container of
// registry.k8s.io/e2e-test-images/agnhost runs `berth agnhost <args>`.
func newAgnhostCommand() *cobra.Command {
	return &cobra.Command{
		Use:                podspec.AgnhostSubcommand,
		Short:              "Run the built-in agnhost test image (netexec, serve-hostname, pause)",
		Hidden:             true,
		DisableFlagParsing: true,
		Run: func(cmd *cobra.Command, args []string) {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			err := agnhost.Main(ctx, args, os.Stdout, os.Stderr)
			stop()
			os.Exit(agnhost.ExitCode(err))
		},
	}
}
