// Command dmvpn is a DMVPN hub or spoke: `dmvpn run -c FILE` runs a node,
// `dmvpn show dmvpn|nhrp|routes` asks a running node, `dmvpn config check`
// validates a config, `dmvpn lab` builds a demonstration network in
// namespaces on this machine.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// errReported is returned by a command that has already printed what went
// wrong (dmvpn config check): main exits 1 without printing it again.
var errReported = errors.New("errors reported")

func main() {
	if err := newRootCmd(os.Stdout, os.Stderr).Execute(); err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "dmvpn:", err)
		}
		os.Exit(1)
	}
}

// newRootCmd builds the whole command tree, writing to stdout and stderr
// (tests walk it and run it in-process with buffers). The writers are set
// before the completion command is added, which keeps the one it had then.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "dmvpn",
		Short: "DMVPN (mGRE + NHRP) hub and spoke for Linux, with a userspace data plane",
		Long: `dmvpn makes this Linux host a DMVPN hub (NHRP server) or spoke (NHRP client),
wire-compatible with Cisco IOS: multipoint GRE with a key, NHRP with Cisco's
extensions, phases 1 to 3, on a userspace data plane (TUN + raw GRE or
GRE-in-UDP). One YAML file per node configures it (docs/CONFIG.md).

"dmvpn run" runs a node in the foreground (packaging/systemd/dmvpn@.service
runs /etc/dmvpn/NAME.yaml as the service dmvpn@NAME); "dmvpn show" and
"dmvpn clear" talk to a running node over its API socket, "dmvpn capture"
writes its packets to a pcapng file (Wireshark, tshark), "dmvpn events"
streams what happens (NHS up/down, registrations, shortcuts, purges); "dmvpn config
check" validates a config without starting anything; "dmvpn lab" builds a
demonstration hub and spokes in network namespaces. "dmvpn help COMMAND"
describes each command, "dmvpn completion SHELL" prints a shell completion
script.`,
		Example: `  dmvpn config check /etc/dmvpn/spoke1.yaml
  sudo dmvpn run -c /etc/dmvpn/spoke1.yaml
  sudo systemctl enable --now dmvpn@spoke1
  dmvpn show dmvpn -c /etc/dmvpn/spoke1.yaml
  sudo dmvpn lab`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRunCmd(), newShowCmd(), newClearCmd(), newReloadCmd(), newCaptureCmd(), newEventsCmd(), newConfigCmd(), newLabCmd(), newVersionCmd())
	addCompletionCmd(root)
	return root
}
