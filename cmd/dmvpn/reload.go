package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dmvpn/dmvpn/api"
)

func newReloadCmd() *cobra.Command {
	var file, socket string
	cmd := &cobra.Command{
		Use:   "reload -c FILE",
		Short: "Make a running node re-read its configuration file and apply the changes",
		Long: `Ask a running node to re-read the configuration file it was started with
(SIGHUP does the same). The file is validated fully first; then only what differs
is applied: NHSes added or removed (the others keep their registrations), static
mappings, static routes (overlay FIB and kernel), NHRP timers, flags and limits,
the authentication secret or keys (the previous ones are still accepted for 60 s,
so the nodes of a cloud can be reloaded one after another), and the log level.

Changes a running node cannot make (tunnel.*, name, api-socket,
nhrp.network-id, nhrp.max-entries*, metrics, hooks, turning a hub into a spoke or
back) are refused with the reason, and the node keeps running its previous
configuration unchanged. The command prints what changed and exits 0, or prints why
the reload was refused and exits 1.`,
		Example: `  sudoedit /etc/dmvpn/spoke1.yaml && dmvpn reload -c /etc/dmvpn/spoke1.yaml
  dmvpn reload -s /run/dmvpn/spoke1.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := socketPath(file, socket)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			r, err := api.NewClient(path).Reload(ctx)
			if err != nil {
				return err
			}
			if len(r.Changed) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "reloaded: nothing changed")
			}
			for _, c := range r.Changed {
				fmt.Fprintln(cmd.OutOrStdout(), "reloaded:", c)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "the node's configuration file (to find its API socket)")
	cmd.Flags().StringVarP(&socket, "socket", "s", "", "the node's API socket")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	return cmd
}
