package lab

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/dmvpn/dmvpn/api"
)

// CheckIPsec checks the hub's view of IPsec (Options.IPsec): with every
// spoke a current Child SA that carried packets both ways, raw ESP for
// the spokes on the internet and ESP-in-UDP for spoke3 behind its NAT, and
// no clear-text GRE received.
func (l *Lab) CheckIPsec(ctx context.Context) error {
	var x api.IPsec
	if err := l.ShowJSON(ctx, Hub, "ipsec", &x); err != nil {
		return err
	}
	if !x.Enabled {
		return fmt.Errorf("the hub runs no IPsec")
	}
	for _, d := range Daemons[1:] {
		want, encap := d.WAN.Addr(), "esp"
		if d.Name == Spoke3 {
			want, encap = NAT3Public, "esp-in-udp"
		}
		var found *api.ChildSA
		for i := range x.Child {
			c := &x.Child[i]
			if p, err := netip.ParseAddrPort(c.Peer); err == nil && p.Addr() == want && c.State == "current" {
				found = c
			}
		}
		switch {
		case found == nil:
			return fmt.Errorf("the hub has no current Child SA with %s (%s)", d.Name, want)
		case found.Encap != encap:
			return fmt.Errorf("the hub's SA with %s is %s, want %s", d.Name, found.Encap, encap)
		case found.InPackets == 0 || found.OutPackets == 0:
			return fmt.Errorf("the hub's SA with %s carried %d packets in, %d out", d.Name, found.InPackets, found.OutPackets)
		}
	}
	if n := x.Counters["clear_gre_dropped"]; n != 0 {
		return fmt.Errorf("the hub received %d clear-text GRE packets", n)
	}
	return nil
}
