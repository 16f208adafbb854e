package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berth-project/berth/internal/version"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print berth's version and the Kubernetes API level it serves",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get()
			fmt.Fprintf(cmd.OutOrStdout(), "berth %s (Kubernetes API %s, %s)\n", info.Berth, info.GitVersion, info.GoVersion)
			return nil
		},
	}
}
