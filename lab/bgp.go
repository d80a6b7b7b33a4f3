package lab

import (
	"context"
	"fmt"

	"github.com/dmvpn/dmvpn/api"
)

// CheckBGP checks the hub's view of BGP: a session with every spoke,
// Established, and every spoke's LAN a best path installed in the hub's
// FIB with that spoke as next hop.
func (l *Lab) CheckBGP(ctx context.Context) error {
	var b api.BGP
	if err := l.ShowJSON(ctx, Hub, "bgp", &b); err != nil {
		return err
	}
	if !b.Enabled {
		return fmt.Errorf("the hub runs no BGP")
	}
	state := map[string]string{}
	for _, n := range b.Neighbors {
		state[n.Address] = n.State
	}
	installed := map[string]string{}
	for _, r := range b.Routes {
		if r.Best && r.Installed {
			installed[r.Prefix] = r.NextHop
		}
	}
	for _, d := range Daemons[1:] {
		if st := state[d.Overlay.Addr().String()]; st != "Established" {
			return fmt.Errorf("the hub's BGP session with %s (%s) is %q, want Established", d.Name, d.Overlay.Addr(), st)
		}
		if nh := installed[d.LAN.Masked().String()]; nh != d.Overlay.Addr().String() {
			return fmt.Errorf("the hub's FIB has no BGP route %s via %s (got next hop %q)", d.LAN.Masked(), d.Overlay.Addr(), nh)
		}
	}
	return nil
}
