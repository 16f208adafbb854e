package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/berth-project/berth/internal/agent"
	"github.com/berth-project/berth/internal/agent/network"
	"github.com/berth-project/berth/internal/server"
)

func newCleanupCommand() *cobra.Command {
	var dataDir, bridge, logLevel string
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Stop every Pod process and remove every pod network a stopped berth left behind",
		Long: `Pods keep running when berth server or berth agent stops, so that the next
start adopts them. cleanup is for when they should not: it kills every container
process recorded in --data-dir and removes the pods' network namespaces, veths
and addresses, and then the pod bridge if no other pod is on it. Run it only
while berth is stopped; the API objects stay as they are (delete them with
kubectl first if you want them gone for good).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the berth binary: %w", err)
			}
			res, err := agent.Cleanup(context.Background(), filepath.Join(dataDir, "agent"), self, bridge, log)
			msg := fmt.Sprintf("stopped %d containers, removed %d pod networks", res.Containers, res.Attachments)
			if res.Bridge != "" {
				msg += " and bridge " + res.Bridge
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg)
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", server.DefaultDataDir(), "data dir of the stopped berth server (or agent)")
	cmd.Flags().StringVar(&bridge, "pod-bridge", network.DefaultBridgeName, "host bridge of the Pods' veths in netns mode (as given to berth server or agent)")
	cmd.Flags().StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	return cmd
}
