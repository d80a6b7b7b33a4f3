package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/node"
)

func newRunCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "run -c FILE",
		Short: "Run a DMVPN node (hub or spoke) from its config file",
		Long: `Run a DMVPN node in the foreground. It creates the tunnel's TUN device, opens the
underlay (raw GRE, protocol 47, or GRE-in-UDP, port 4754), registers with its NHSes
(spoke) or accepts registrations (hub), and serves the API socket that 'dmvpn show'
uses. On SIGTERM or SIGINT it deregisters, removes its routes and device, and exits.
Needs root (or CAP_NET_ADMIN and CAP_NET_RAW).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(file)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
			slog.SetDefault(log)
			n, err := node.New(cfg, node.Options{Log: log})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			apiErr := make(chan error, 1)
			go func() { apiErr <- api.Serve(ctx, cfg.APISocket, n) }()
			runErr := n.Run(ctx)
			stop()
			if err := <-apiErr; err != nil && runErr == nil {
				runErr = err
			}
			if errors.Is(runErr, context.Canceled) {
				runErr = nil
			}
			return runErr
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "node configuration file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
