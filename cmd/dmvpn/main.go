// Command dmvpn is a DMVPN hub or spoke: `dmvpn run -c FILE` runs a node,
// `dmvpn show dmvpn|nhrp|routes` asks a running node, `dmvpn lab` builds a
// demonstration network in namespaces on this machine.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	root := &cobra.Command{
		Use:           "dmvpn",
		Short:         "DMVPN (mGRE + NHRP) hub and spoke for Linux, with a userspace data plane",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(), newShowCmd(), newClearCmd(), newLabCmd(), newVersionCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "dmvpn:", err)
		os.Exit(1)
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "dmvpn", version) },
	}
}
