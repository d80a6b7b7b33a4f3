package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/internal/logging"
	"github.com/dmvpn/dmvpn/internal/pidlock"
	"github.com/dmvpn/dmvpn/metrics"
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
uses (with metrics.listen, also Prometheus metrics at /metrics over HTTP). On
SIGTERM or SIGINT it deregisters, removes its routes and device, and exits.
SIGHUP re-reads the configuration file and applies what changed, as 'dmvpn reload'
does (refused, with the reason, for changes that need a restart). A lock on
<api-socket>.lock refuses a second 'dmvpn run' with the same configuration.
Needs root (or CAP_NET_ADMIN and CAP_NET_RAW).

Under systemd (packaging/systemd/dmvpn@.service, Type=notify) it sends
READY=1 once the node is up and STOPPING=1 when it begins to shut down, through
$NOTIFY_SOCKET; without that variable it sends nothing.`,
		Example: `  sudo dmvpn run -c /etc/dmvpn/spoke1.yaml
  sudo systemctl start dmvpn@spoke1     # the same, as a service`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(file)
			if err != nil {
				return err
			}
			levels := logging.NewLevels(cfg.LogLevel, cfg.LogLevels)
			h, err := logging.New(os.Stderr, cfg.LogFormat, levels)
			if err != nil {
				return err
			}
			log := slog.New(h)
			slog.SetDefault(log)
			// Signals first: a SIGTERM during start-up then shuts the node
			// down cleanly as soon as it runs, and SIGHUP never kills it.
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			var node_ atomic.Pointer[node.Node] // set once the node exists
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						n := node_.Load()
						if n == nil {
							log.Warn("SIGHUP during start-up: ignored; send it again once the node runs", "config", file)
							continue
						}
						log.Info("SIGHUP: reloading the configuration", "config", file)
						_, _ = n.Reload() // logs what changed, or why it refused
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
			// So does metrics.listen, when it is set.
			var ml net.Listener
			if cfg.Metrics.Listen.IsValid() {
				if ml, err = metrics.Listen(cfg.Metrics.Listen); err != nil {
					ln.Close()
					return err
				}
			}
			n, err := node.New(cfg, node.Options{Log: log, ConfigPath: file, Levels: levels})
			if err != nil {
				ln.Close()
				if ml != nil {
					ml.Close()
				}
				return err
			}
			node_.Store(n)
			apiErr := make(chan error, 1)
			go func() { apiErr <- api.ServeListener(ctx, ln, n) }()
			metricsErr := make(chan error, 1)
			if ml != nil {
				log.Info("serving metrics", "listen", ml.Addr().String(), "path", metrics.Path)
				go func() { metricsErr <- metrics.ServeListener(ctx, ml, n.Metrics()) }()
			} else {
				metricsErr <- nil
			}
			// Ready for systemd (Type=notify) here, before n.Run rather
			// than from inside it: everything that can fail at start-up
			// is behind us (config, lock, API and metrics listeners, and
			// in node.New the underlay sockets, the TUN device with its
			// address and routes, the engine). Run only starts the packet
			// loops and
			// the engine, which cannot fail before they handle
			// traffic, so the node needs no systemd hook.
			sdNotify(log, "READY=1\nSTATUS="+readyStatus(cfg))
			stopping := sync.OnceFunc(func() {
				sdNotify(log, "STOPPING=1\nSTATUS=stopping: deregistering, removing "+cfg.Tunnel.Device)
			})
			go func() { <-ctx.Done(); stopping() }() // SIGTERM, SIGINT
			runErr := n.Run(ctx)
			stopping() // Run also returns on a data plane error
			stop()
			for _, c := range []chan error{apiErr, metricsErr} {
				if err := <-c; err != nil && runErr == nil {
					runErr = err
				}
			}
			if errors.Is(runErr, context.Canceled) {
				runErr = nil
			}
			return runErr
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "node configuration file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	return cmd
}

// readyStatus is the STATUS= that systemctl status shows while the node runs.
func readyStatus(cfg *config.Config) string {
	role := "spoke"
	if cfg.IsHub() {
		role = "hub"
	}
	return fmt.Sprintf("%s %s up: %s on %s, source %s, transport %s", role, cfg.Name,
		cfg.Tunnel.Address, cfg.Tunnel.Device, cfg.Tunnel.Source, cfg.Tunnel.Transport)
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
