package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/capture"
)

// stopGrace is how long Ctrl-C waits for the daemon to end a capture
// cleanly before dropping the connection.
const stopGrace = 5 * time.Second

func newCaptureCmd() *cobra.Command {
	var file, socket, out string
	var inner, outer, control bool
	var count, snaplen int
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "capture [--inner] [--outer] [--control] [FILTER...] -w FILE|-",
		Short: "Capture a running node's packets to a pcapng file (Wireshark, tshark)",
		Long: `Capture packets inside a running node's data plane, over its API socket, and
write them as pcapng, which Wireshark and tshark read. Where:

  --inner    the overlay side (the default): IP packets read from the TUN (outbound)
             and written to it (inbound); relayed packets never cross the TUN
  --outer    the underlay side: every GRE packet sent and received, data and NHRP,
             behind an IPv4 header (and for GRE-in-UDP a UDP header) made from the
             real NBMA addresses, so Wireshark shows IP / GRE (key) / IP or NHRP
  --control  the outer side's NHRP packets only

The flags combine (one file, one interface per side). A capture stops after --count
packets, after --duration, or on Ctrl-C (the file is then completed: a clean stop);
then it prints what it captured, what the tap saw before the filter and how many
packets found its buffer full ("dropped by buffer": the data plane never waits for a
capture, it skips the copy).

` + capture.FilterHelp + `

The filter runs in the daemon, after the copy, not in the kernel.`,
		Example: `  dmvpn capture -c /etc/dmvpn/spoke1.yaml -w spoke1.pcapng
  dmvpn capture -c /etc/dmvpn/hub1.yaml --outer --count 100 -w hub.pcapng
  dmvpn capture -c /etc/dmvpn/hub1.yaml --control --duration 10m -w nhrp.pcapng
  dmvpn capture -s /run/dmvpn/spoke1.sock icmp and host 10.1.2.10 -w - | tshark -r -`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("say where to write: -w FILE, or -w - for standard output")
			}
			path, err := socketPath(file, socket)
			if err != nil {
				return err
			}
			q := api.CaptureQuery{Filter: strings.Join(args, " "), Count: count, SnapLen: snaplen, Duration: duration}
			if !inner && !outer && !control {
				inner = true
			}
			for _, p := range []struct {
				on   bool
				name string
			}{{inner, "inner"}, {outer, "outer"}, {control, "control"}} {
				if p.on {
					q.Points = append(q.Points, p.name)
				}
			}
			// Check the filter here too, for an error before any file is made.
			if _, err := capture.ParseFilter(q.Filter); err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			var w io.Writer = cmd.OutOrStdout()
			if out != "-" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := api.NewClient(path)
			s, err := c.Capture(ctx, q, w)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "capturing %s (Ctrl-C stops)\n", s.Info)
			// Ctrl-C or SIGTERM: ask the daemon to end the capture
			// cleanly (the file gets its statistics); a second signal,
			// or no end within stopGrace, drops the connection.
			sig := make(chan os.Signal, 2)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sig)
			waited := make(chan struct{})
			defer close(waited)
			go func() {
				select {
				case <-sig:
				case <-waited:
					return
				}
				sctx, scancel := context.WithTimeout(ctx, stopGrace)
				defer scancel()
				if err := c.StopCapture(sctx, s.ID); err != nil {
					fmt.Fprintln(stderr, "dmvpn capture: stop:", err)
					cancel()
					return
				}
				select {
				case <-sig:
				case <-time.After(stopGrace):
				case <-waited:
					return
				}
				cancel()
			}()
			res, err := s.Wait()
			if f, ok := w.(*os.File); ok && out != "-" {
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("capture cut short (%w); %s may end in the middle of a block", err, out)
				}
				return err
			}
			fmt.Fprintf(stderr, "%d packets captured\n%d packets seen by the tap\n%d packets dropped by buffer\n", res.Captured, res.Seen, res.Dropped)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "the node's configuration file (to find its API socket)")
	cmd.Flags().StringVarP(&socket, "socket", "s", "", "the node's API socket")
	cmd.Flags().StringVarP(&out, "write", "w", "", "the pcapng file to write; - for standard output")
	cmd.Flags().BoolVar(&inner, "inner", false, "capture the overlay side: packets crossing the TUN (the default)")
	cmd.Flags().BoolVar(&outer, "outer", false, "capture the underlay side: GRE packets sent and received, NHRP included")
	cmd.Flags().BoolVar(&control, "control", false, "capture NHRP only (outer form)")
	cmd.Flags().IntVar(&count, "count", 0, "stop after this many packets (0: no limit)")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (0: no limit)")
	cmd.Flags().IntVar(&snaplen, "snaplen", 0, "bytes kept of each packet (default and most: 65535)")
	_ = cmd.MarkFlagFilename("write", "pcapng")
	return cmd
}
