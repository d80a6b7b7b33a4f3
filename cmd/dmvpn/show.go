package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dmvpn/dmvpn/api"
)

func newShowCmd() *cobra.Command {
	var file, socket string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show dmvpn|nhrp|routes|bgp [routes]|ipsec|stats|metrics",
		Short: "Show a running node's peers, NHRP cache, routes, BGP, counters or Prometheus metrics",
		Long: `Ask a running node, over its API socket (found from its config with -c, or
given with -s), for one view:

  dmvpn    peers and their state, like Cisco's "show dmvpn"
  nhrp     the NHRP cache, like "show ip nhrp"
  routes   the overlay forwarding table: every source's route, and which wins
  bgp      BGP neighbors (state, uptime, prefixes, why a session is down);
           "bgp routes": the BGP table with next hops
  ipsec    IKE SAs and Child (ESP) SAs: peer, identities, algorithms, SPIs,
           age, packets/bytes, replay drops; and the IPsec counters
  stats    data plane and NHRP counters, drops by reason (JSON)
  metrics  the Prometheus text exposition

--json prints the dmvpn, nhrp, routes, bgp and ipsec views as JSON. The socket is mode
0660, owned by whoever runs the node (root under systemd).`,
		Example: `  dmvpn show dmvpn -c /etc/dmvpn/spoke1.yaml
  dmvpn show nhrp -s /run/dmvpn/spoke1.sock --json
  dmvpn show bgp routes -c /etc/dmvpn/hub1.yaml
  dmvpn show stats -c /etc/dmvpn/hub1.yaml | jq .nhrp_dropped`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 && args[0] == "bgp" && args[1] == "routes" {
				return nil
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		ValidArgs: []string{"dmvpn", "nhrp", "routes", "bgp", "ipsec", "stats", "metrics"},
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := socketPath(file, socket)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			c := api.NewClient(path)
			out := cmd.OutOrStdout()
			var v any
			switch args[0] {
			case "dmvpn":
				v = &api.DMVPN{}
			case "nhrp":
				v = &[]api.NHRPEntry{}
			case "routes":
				v = &[]api.Route{}
			case "bgp":
				v = &api.BGP{}
			case "ipsec":
				v = &api.IPsec{}
			case "stats":
				v = &api.Stats{}
			case "metrics":
				// The Prometheus text exposition, as a scrape gets it
				// (--json does not apply).
				raw, err := c.Metrics(ctx)
				if err != nil {
					return err
				}
				_, err = out.Write(raw)
				return err
			default:
				return fmt.Errorf("unknown view %q (valid: dmvpn, nhrp, routes, bgp, ipsec, stats, metrics)", args[0])
			}
			raw, err := c.Get(ctx, args[0], v)
			if err != nil {
				return err
			}
			if asJSON || args[0] == "stats" {
				_, err := out.Write(raw)
				return err
			}
			switch x := v.(type) {
			case *api.DMVPN:
				api.RenderDMVPN(out, *x)
			case *[]api.NHRPEntry:
				api.RenderNHRP(out, *x, time.Now())
			case *[]api.Route:
				api.RenderRoutes(out, *x)
			case *api.IPsec:
				api.RenderIPsec(out, *x)
			case *api.BGP:
				if len(args) == 2 {
					api.RenderBGPRoutes(out, *x)
				} else {
					api.RenderBGP(out, *x, time.Now())
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "the node's configuration file (to find its API socket)")
	cmd.Flags().StringVarP(&socket, "socket", "s", "", "the node's API socket")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
