// Command berth runs Pods as local processes and gives them Kubernetes Services.
//
// The commands here only parse flags, build a Config and call one package; the
// behaviour lives under internal/.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := newRootCommand()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "berth",
		Short: "Kubernetes Pods and Services on one machine, as local processes",
		Long: `berth runs Pods as real local processes, each with its own network identity,
and gives them Kubernetes Services: a stable ClusterIP, NodePort or LoadBalancer
endpoint whose backends follow the Pods as they are created, replaced and deleted.

Use the real kubectl with the kubeconfig that 'berth server' writes.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCommand(), newAgentCommand(), newForwardCommand(), newCleanupCommand(), newVersionCommand(), newShimCommand(), newAgnhostCommand())
	return root
}
