package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/events"
)

// errEnough ends a stream once --count events have been printed.
var errEnough = errors.New("enough events")

func newEventsCmd() *cobra.Command {
	var file, socket, types string
	var asJSON bool
	var count, history int
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Stream a running node's events: NHS up/down, registrations, shortcuts, purges",
		Long: `Print a running node's events as they happen, one line each, until interrupted
(or --count, --timeout, or the node stopping). The text form is the time, the type
and key=value fields; --json prints each event as a JSON object on its own line
(seq, time, type, node, peer, nbma, prefix, reason, code).

Types: ` + strings.Join(events.Names(), ", ") + `.
Peer is the overlay address the event is about (the NHS, the registrant, the
shortcut's owner, the address purged), nbma its NBMA address (or where a purge
came from or went to), prefix a shortcut's route, code an NHRP code. A node numbers
its events (seq); a stream that falls behind loses events and gets a "dropped"
line with the count. The same events run the commands configured in hooks:
(docs/CONFIG.md).

--history N starts with the last N events the node kept (at most 256), so
nothing between start-up and the command is missed. --type keeps the listed
types only. --count N exits (0) after N events; --timeout D exits after D, with
an error if --count was not reached: handy in scripts and tests.`,
		Example: `  dmvpn events -c /etc/dmvpn/spoke1.yaml
  dmvpn events -c /etc/dmvpn/hub1.yaml --json --history 256
  dmvpn events -s /run/dmvpn/spoke1.sock --type shortcut-up,shortcut-down
  dmvpn events -c /etc/dmvpn/spoke1.yaml --type nhs-up --count 1 --timeout 60s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			want, err := parseTypes(types)
			if err != nil {
				return err
			}
			if history < 0 || history > events.DefaultHistory {
				return fmt.Errorf("--history %d: want 0 to %d", history, events.DefaultHistory)
			}
			if count < 0 {
				return fmt.Errorf("--count %d: want 0 (no limit) or more", count)
			}
			if timeout < 0 {
				return fmt.Errorf("--timeout %v: want a positive duration, or 0 for none", timeout)
			}
			path, err := socketPath(file, socket)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			out := cmd.OutOrStdout()
			n := 0
			err = api.NewClient(path).Events(ctx, history, func(ev events.Event, line []byte) error {
				if want != nil && !want[ev.Type] && ev.Type != events.Dropped {
					return nil
				}
				var werr error
				if asJSON {
					_, werr = fmt.Fprintf(out, "%s\n", line)
				} else {
					_, werr = fmt.Fprintln(out, ev.String())
				}
				if werr != nil {
					return werr
				}
				if ev.Type != events.Dropped {
					n++
				}
				if count > 0 && n >= count {
					return errEnough
				}
				return nil
			})
			switch {
			case errors.Is(err, errEnough):
				return nil
			case errors.Is(err, io.EOF):
				if count > 0 {
					return fmt.Errorf("the node stopped after %d of %d events", n, count)
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "dmvpn events: the node stopped")
				return nil
			case err != nil:
				return err
			}
			if count > 0 && n < count && ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("--timeout %v: %d of %d events", timeout, n, count)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "the node's configuration file (to find its API socket)")
	cmd.Flags().StringVarP(&socket, "socket", "s", "", "the node's API socket")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each event as a JSON object on its own line")
	cmd.Flags().IntVar(&history, "history", 0, "start with the last N events the node kept (0 to 256)")
	cmd.Flags().StringVar(&types, "type", "", "print only these event types (comma-separated)")
	cmd.Flags().IntVar(&count, "count", 0, "exit after N events (0: no limit)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "exit after this long (0: no limit); an error if --count was not reached")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	_ = cmd.RegisterFlagCompletionFunc("type", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return events.Names(), cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// parseTypes reads --type: nil for every type.
func parseTypes(s string) (map[events.Type]bool, error) {
	if s == "" {
		return nil, nil
	}
	m := map[events.Type]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		info, ok := events.Lookup(name)
		if !ok {
			hint := ""
			if g := events.Suggest(name); g != "" {
				hint = fmt.Sprintf("; did you mean %q?", g)
			}
			return nil, fmt.Errorf("--type: unknown event %q (valid: %s%s)", name, strings.Join(events.Names(), ", "), hint)
		}
		m[info.Type] = true
	}
	return m, nil
}
