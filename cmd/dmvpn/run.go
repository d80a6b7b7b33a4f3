package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/internal/pidlock"
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
SIGHUP is logged and ignored: configuration reload is not supported yet. A lock on
<api-socket>.lock refuses a second 'dmvpn run' with the same configuration.
Needs root (or CAP_NET_ADMIN and CAP_NET_RAW).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(file)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
			slog.SetDefault(log)
			// Signals first: a SIGTERM during start-up then shuts the node
			// down cleanly as soon as it runs, and SIGHUP never kills it.
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						log.Warn("SIGHUP: configuration reload is not supported yet; still running with the configuration read at start-up (restart dmvpn to apply changes)",
							"config", file)
					}
				}
			}()
			// One daemon per configuration: the lock comes before anything
			// that a second instance would disturb (the API socket it would
			// replace, the device, the sockets).
			lock, err := lockInstance(cfg.APISocket)
			if err != nil {
				return err
			}
			defer lock.Release()
			// The API socket before the node, so that a daemon that cannot
			// serve its API fails here with the cause instead of running
			// without one.
			ln, err := api.Listen(cfg.APISocket)
			if err != nil {
				return err
			}
			n, err := node.New(cfg, node.Options{Log: log})
			if err != nil {
				ln.Close()
				return err
			}
			apiErr := make(chan error, 1)
			go func() { apiErr <- api.ServeListener(ctx, ln, n) }()
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

// lockInstance takes the lock file next to the API socket, <api-socket>.lock,
// that keeps a second `dmvpn run` with the same configuration from starting.
// The lock is held until the process exits.
func lockInstance(apiSocket string) (*pidlock.Lock, error) {
	path := apiSocket + ".lock"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	l, err := pidlock.Acquire(path)
	if errors.Is(err, pidlock.ErrLocked) {
		return nil, fmt.Errorf("another dmvpn is already running with this configuration (api-socket %s): %w; stop it first", apiSocket, err)
	}
	return l, err
}
