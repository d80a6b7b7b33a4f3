package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/nbma"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with node configuration files (check)",
		Long: `Commands on node configuration files, without a running node.

"dmvpn config check FILE..." parses and validates each file exactly as
"dmvpn run" does at start-up, and starts nothing. docs/CONFIG.md describes
every field.`,
		Example: `  dmvpn config check /etc/dmvpn/spoke1.yaml
  dmvpn config check /etc/dmvpn/*.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newConfigCheckCmd())
	return cmd
}

func newConfigCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE...",
		Short: "Validate node configuration files without starting anything",
		Long: `Parse and validate each configuration file exactly as "dmvpn run" does at
start-up (strict YAML: unknown or duplicate fields, wrong types, values out of
range, inconsistent addresses), without creating a device, opening a socket
or touching the system.

For a valid file it prints "FILE: ok" and a one-line summary: name, role
(hub: no nhs; spoke: one or more), tunnel address and device, NBMA source,
transport and NHSes. For an invalid one it prints every problem, one per line,
as FILE:LINE:COLUMN: FIELD: what is wrong and what would be valid, on standard
error. It exits 0 if every file is valid and 1 otherwise, so it fits before a
restart (the systemd unit runs it as ExecStartPre) or in CI.`,
		Example: `  dmvpn config check /etc/dmvpn/spoke1.yaml
  dmvpn config check /etc/dmvpn/*.yaml && sudo systemctl restart dmvpn@spoke1`,
		Args: cobra.MinimumNArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return []cobra.Completion{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			failed := false
			for _, file := range args {
				if !checkConfig(cmd.OutOrStdout(), cmd.ErrOrStderr(), file) {
					failed = true
				}
			}
			if failed {
				return errReported
			}
			return nil
		},
	}
}

// checkConfig loads file and reports on it: "FILE: ok" and a summary on out,
// or every error and a count on errOut. It reports whether the file is valid.
func checkConfig(out, errOut io.Writer, file string) bool {
	cfg, err := config.Load(file)
	if err == nil {
		err = cfg.ResolveHooks() // as dmvpn run does at start-up
	}
	if err != nil {
		errs := splitErrors(err)
		for _, e := range errs {
			fmt.Fprintln(errOut, e)
		}
		noun := "errors"
		if len(errs) == 1 {
			noun = "error"
		}
		fmt.Fprintf(errOut, "%s: %d %s\n", file, len(errs), noun)
		return false
	}
	fmt.Fprintf(out, "%s: ok\n", file)
	fmt.Fprintf(out, "  %s\n", configSummary(cfg))
	for i, h := range cfg.Hooks {
		fmt.Fprintf(out, "  %s\n", hookSummary(i, h))
	}
	return true
}

// hookSummary is one line per hook: what it runs for, the program found
// (and how), its timeout.
//
//	hooks[0]: shortcut-up, shortcut-down: /usr/bin/logger (logger, found on PATH) -t dmvpn, timeout 10s
func hookSummary(i int, h config.Hook) string {
	on := "every event"
	if len(h.Events) > 0 {
		on = strings.Join(h.Events, ", ")
	}
	prog := h.Path
	if h.Path != h.Command[0] {
		prog += " (" + h.Command[0] + ", found on PATH)"
	}
	args := ""
	for _, a := range h.Command[1:] {
		args += " " + strconv.Quote(a)
	}
	return fmt.Sprintf("hooks[%d]: %s: %s%s, timeout %s", i, on, prog, args, h.Timeout)
}

// splitErrors returns the errors joined in err (config.Parse joins one per
// problem), or err alone.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// configSummary is one line saying what a valid config makes of this host:
//
//	spoke spoke1: tunnel 10.0.0.11/24 on dmvpn0, source 198.51.100.1, transport gre, nhs 10.0.0.1 at 192.0.2.1
func configSummary(c *config.Config) string {
	var b strings.Builder
	role := "spoke"
	if c.IsHub() {
		role = "hub"
	}
	fmt.Fprintf(&b, "%s %s: tunnel %s on %s, source %s, transport %s", role, c.Name,
		c.Tunnel.Address, c.Tunnel.Device, c.Tunnel.Source, c.Tunnel.Transport)
	if c.Tunnel.Transport == nbma.TransportUDP {
		fmt.Fprintf(&b, " port %d", c.Tunnel.UDPPort)
	}
	if len(c.NHRP.NHS) > 0 {
		b.WriteString(", nhs")
		for i, s := range c.NHRP.NHS {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %s at %s", s.Address, s.NBMA)
		}
	}
	if c.BGP.Enabled() {
		fmt.Fprintf(&b, ", bgp as %d", c.BGP.AS)
		if len(c.BGP.DynamicNeighbors) > 0 {
			fmt.Fprintf(&b, " (dynamic neighbors from %s)", c.BGP.DynamicNeighbors[0].Prefix)
		}
	}
	if c.IPsec.Enabled() {
		fmt.Fprintf(&b, ", %s", c.IPsec.Summary())
	}
	fmt.Fprintf(&b, ", api-socket %s", c.APISocket)
	return b.String()
}
