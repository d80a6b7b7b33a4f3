package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dmvpn/dmvpn/lab"
)

func newLabCmd() *cobra.Command {
	var (
		keep   bool
		phase  int
		prefix string
		dir    string
		wait   time.Duration
		// noIPsec turns off the lab's default IPsec.
		noIPsec bool
	)
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Build a hub and three spokes in network namespaces here, prove LAN-to-LAN reachability, tear down",
		Long: `dmvpn lab builds, on this machine, a DMVPN hub and three spokes, each with one
LAN host behind it, in network namespaces joined by an "internet" router
namespace. spoke3 sits behind a NAT namespace (masquerade that drops GRE and
ESP, like a home router), so it uses a UDP transport; the others use raw IP.
Every tunnel is protected by IPsec (IKEv2 with a pre-shared key, ESP
AES-128-GCM in transport mode): raw ESP between the nodes on the internet,
ESP-in-UDP on port 4500 with spoke3, found by IKE's NAT detection. Each
node writes its SAs' keys to <dir>/<node>.keys, so a capture of the
underlay decrypts in tshark or Wireshark. --no-ipsec runs clear GRE
instead (GRE-in-UDP on port 4754 for spoke3).

It writes a config per node, starts a dmvpn daemon per node (this binary),
waits until the LAN hosts reach each other through the hub, prints a PASS or
FAIL line per check, "show dmvpn" of every node and "show ipsec" of the hub,
then tears everything
down. With --keep it leaves the lab up for exploring; "dmvpn lab down"
removes it. It exits non-zero if a check failed.

  overlay 10.0.0.0/24: hub .1, spokeN .1N      LANs 10.1.N.0/24, hosts 10.1.N.10
  hub 192.0.2.1   spoke1 198.51.100.1   spoke2 198.51.100.65
  spoke3 192.168.3.2 behind nat3 198.51.100.129

It needs root (network namespaces, TUN devices, raw sockets, nftables) and
nothing else: no ip, nft or ping command. It builds the namespaces, links,
routes and NAT through netlink and sends its own pings. Nothing runs outside
the lab's own namespaces.`,
		Example: `  sudo dmvpn lab
  sudo dmvpn lab --keep && sudo ip netns exec dmvpn-host-lan1 ping 10.1.2.10
  sudo dmvpn lab down`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.CheckRoot(); err != nil {
				return err
			}
			if err := lab.Preflight(); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding the dmvpn binary to start in the lab: %w", err)
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			return lab.Run(ctx, lab.Options{
				Prefix: prefix,
				Dir:    dir,
				Binary: self,
				Phase:  phase,
				IPsec:  !noIPsec,
			}, lab.RunOptions{
				Keep: keep,
				Wait: wait,
				Out:  cmd.OutOrStdout(),
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&keep, "keep", false, "leave the lab up afterwards (remove it with: dmvpn lab down)")
	f.BoolVar(&noIPsec, "no-ipsec", false, "run the tunnels as clear GRE, without IKEv2 and ESP")
	f.IntVar(&phase, "phase", lab.DefaultPhase, "DMVPN phase of the configs: 1 (hub-and-spoke routes), 2, or 3 (hub redirect, spoke shortcut)")
	f.StringVar(&prefix, "prefix", lab.DefaultPrefix, "namespace name prefix (namespaces are <prefix>-<node>); use another to run labs side by side")
	f.StringVar(&dir, "dir", "", "directory for configs, logs, sockets and state (default "+lab.DefaultRunDir+"/<prefix>)")
	f.DurationVar(&wait, "wait", 20*time.Second, "how long to wait for LAN-to-LAN reachability")
	cmd.AddCommand(newLabDownCmd())
	return cmd
}

func newLabDownCmd() *cobra.Command {
	var prefix, dir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the lab's daemons and delete its namespaces (after dmvpn lab --keep)",
		Long: `dmvpn lab down stops the daemons a "dmvpn lab --keep" started (by the PIDs in
its state file: SIGTERM, then SIGKILL), kills anything else still running in
the lab's namespaces, deletes the namespaces and removes the lab's files.
It is safe to run when no lab is up.`,
		Example: `  sudo dmvpn lab down
  sudo dmvpn lab down --prefix mylab`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.CheckRoot(); err != nil {
				return err
			}
			o := lab.Options{Prefix: prefix, Dir: dir}
			up, err := lab.Exists(o)
			if err != nil {
				return err
			}
			if !up {
				fmt.Fprintf(cmd.OutOrStdout(), "no lab %q here; nothing to do\n", prefix)
				return nil
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			if err := lab.Teardown(ctx, o); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %q down\n", prefix)
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", lab.DefaultPrefix, "namespace name prefix of the lab")
	cmd.Flags().StringVar(&dir, "dir", "", "the lab's directory, if it was given to dmvpn lab (default "+lab.DefaultRunDir+"/<prefix>)")
	return cmd
}

// signalContext ends on Ctrl-C or SIGTERM, so the lab tears down cleanly.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}
