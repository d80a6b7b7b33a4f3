package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/config"
)

func newClearCmd() *cobra.Command {
	var file, socket string
	cmd := &cobra.Command{
		Use:   "clear nhrp",
		Short: "Forget resolved NHRP mappings and shortcut routes (Cisco's clear ip nhrp)",
		Long: `Forget every resolved, negative and incomplete NHRP mapping and every shortcut
route of a running node. Registrations and static mappings stay; traffic follows the
hub's routes again until it is resolved anew.`,
		Example: `  dmvpn clear nhrp -c /etc/dmvpn/spoke1.yaml
  dmvpn clear nhrp -s /run/dmvpn/spoke1.sock`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"nhrp"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "nhrp" {
				return fmt.Errorf("unknown table %q (valid: nhrp)", args[0])
			}
			path, err := socketPath(file, socket)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			r, err := api.NewClient(path).ClearNHRP(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cleared %d NHRP cache entries\n", r.Entries)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "the node's configuration file (to find its API socket)")
	cmd.Flags().StringVarP(&socket, "socket", "s", "", "the node's API socket")
	return cmd
}

// socketPath finds a node's API socket from -s, or from its config (-c).
func socketPath(file, socket string) (string, error) {
	if socket != "" {
		return socket, nil
	}
	if file == "" {
		return "", fmt.Errorf("say which node: -c its config file, or -s its API socket")
	}
	cfg, err := config.Load(file)
	if err != nil {
		return "", err
	}
	return cfg.APISocket, nil
}
