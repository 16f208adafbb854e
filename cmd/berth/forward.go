package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/berth-project/berth/internal/forward"
)

func newForwardCommand() *cobra.Command {
	var (
		kubeconfig  string
		kubeContext string
		namespace   string
		addresses   []string
		wait        time.Duration
		logLevel    string
	)
	cmd := &cobra.Command{
		Use:   "forward [flags] TARGET [LOCAL:]REMOTE... [TARGET [LOCAL:]REMOTE...]...",
		Short: "Forward local ports to a Service, Deployment or Pod, surviving pod replacement",
		Long: `Forward local ports to a Service, a Deployment or a Pod through the API server's
pods/portforward subresource, so no network route to the pods is needed.

Unlike 'kubectl port-forward svc/NAME', which picks one pod and breaks when it
dies, 'berth forward svc/NAME' binds each local port to the Service: every new
connection goes to a ready endpoint from a live EndpointSlice watch, in turn.
Pods that are deleted or replaced stop getting new connections, new pods start
getting them, and terminating endpoints are never chosen. When no endpoint is
ready a connection waits up to --wait, then is closed and the reason logged.

TARGET is svc/NAME (or service/, services/), deploy/NAME (or deployment/), which
follows the Deployment's ready pods, or pod/NAME, which follows one pod as
kubectl does. Each port is LOCAL:REMOTE, REMOTE (same local port) or :REMOTE (a
free local port, printed). REMOTE is the Service port (number or name) for svc,
the container port (number or name) for pod and deploy.

A status line per target on stderr shows ready endpoints, open and total
connections and the last error. Ctrl-C stops cleanly.`,
		Example: `  # Local 8080 to port 80 of Service web, following its pods
  berth forward svc/web 8080:80

  # Two targets, a free local port for the second
  berth forward svc/web 8080:http deploy/api :9090

  # Listen on every interface, wait at most 5s for a ready pod
  berth forward --address 0.0.0.0 --wait 5s svc/web 8080:80`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := forward.ParseArgs(args)
			if err != nil {
				return err
			}
			if wait < 0 {
				return fmt.Errorf("invalid --wait %s: must not be negative", wait)
			}
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = kubeconfig
			overrides := &clientcmd.ConfigOverrides{CurrentContext: kubeContext}
			overrides.Context.Namespace = namespace
			clientConfig := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
			config, err := clientConfig.ClientConfig()
			if err != nil {
				if clientcmd.IsEmptyConfig(err) {
					return fmt.Errorf("no kubeconfig found (looked at --kubeconfig, $KUBECONFIG and %s): pass --kubeconfig with the file 'berth server' writes", clientcmd.RecommendedHomeFile)
				}
				return fmt.Errorf("load kubeconfig: %w", err)
			}
			ns, _, err := clientConfig.Namespace()
			if err != nil {
				return fmt.Errorf("namespace from kubeconfig: %w", err)
			}
			config.UserAgent = "berth-forward"
			client, err := kubernetes.NewForConfig(config)
			if err != nil {
				return fmt.Errorf("build a client from the kubeconfig: %w", err)
			}

			stderr := cmd.ErrOrStderr()
			consoleCfg := forward.ConsoleConfig{}
			if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				consoleCfg.TTY = true
				if w, _, err := term.GetSize(int(f.Fd())); err == nil {
					consoleCfg.Width = w
				}
			}
			console := forward.NewConsole(stderr, consoleCfg)
			// Logs (client-go's klog included) go through the console, so
			// that they never tear the status block.
			logger, err := newLogger(logLevel, console)
			if err != nil {
				return err
			}

			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			// After the first signal, a second one kills at once, should the
			// clean shutdown hang.
			context.AfterFunc(ctx, stop)
			return forward.Run(ctx, forward.Options{
				Client:       client,
				Config:       config,
				ConfigSource: kubeconfigSource(clientConfig, rules, kubeContext),
				Namespace:    ns,
				Targets:      targets,
				Addresses:    addresses,
				Wait:         wait,
				Out:          cmd.OutOrStdout(),
				Console:      console,
				Logger:       logger,
			})
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default $KUBECONFIG, then ~/.kube/config)")
	flags.StringVar(&kubeContext, "context", "", "kubeconfig context to use (default its current-context)")
	flags.StringVarP(&namespace, "namespace", "n", "", "namespace of the targets (default the context's namespace, else default)")
	flags.StringSliceVar(&addresses, "address", []string{"127.0.0.1"}, "local addresses to listen on, comma separated: IPs or localhost")
	flags.DurationVar(&wait, "wait", 30*time.Second, "how long a new connection waits for a ready endpoint before it is closed")
	flags.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// kubeconfigSource names the context and file the credentials came from, for
// error messages that say what to fix.
func kubeconfigSource(cc clientcmd.ClientConfig, rules *clientcmd.ClientConfigLoadingRules, contextFlag string) string {
	name := contextFlag
	if name == "" {
		if raw, err := cc.RawConfig(); err == nil {
			name = raw.CurrentContext
		}
	}
	files := rules.ExplicitPath
	if files == "" {
		files = strings.Join(rules.GetLoadingPrecedence(), string(os.PathListSeparator))
	}
	return fmt.Sprintf("context %q in %s", name, files)
}
