package api

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// UpDown formats a duration in state like Cisco's UpDn Tm column.
func UpDown(d time.Duration) string {
	d = d.Round(time.Second)
	if d < 0 {
		d = 0
	}
	h := int(d.Hours())
	if h >= 24 {
		return fmt.Sprintf("%dd%02dh", h/24, h%24)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, int(d.Minutes())%60, int(d.Seconds())%60)
}

// RenderDMVPN writes `show dmvpn` in Cisco's layout.
func RenderDMVPN(w io.Writer, d DMVPN) {
	fmt.Fprintf(w, "Legend: Attrb --> S - Static, D - Dynamic, I - Incomplete\n")
	fmt.Fprintf(w, "        N - NATed, L - Local, X - No Socket\n\n")
	fmt.Fprintf(w, "Interface: %s, IPv4 NHRP Details (node %s, %s %s, NBMA %s, %s)\n", d.Interface, d.Node, d.Role, d.Address, d.NBMA, d.Transport)
	fmt.Fprintf(w, "Type:%s, NHRP Peers:%d, Network-id:%d\n\n", titleCase(d.Role), len(d.Peers), d.NetworkID)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	crypto := len(d.Peers) > 0 && d.Peers[0].Crypto != ""
	if crypto {
		fmt.Fprintln(tw, " # Ent\tPeer NBMA Addr\tPeer Tunnel Add\tState\tUpDn Tm\tAttrb\tCrypto\t")
		fmt.Fprintln(tw, " -----\t--------------\t---------------\t-----\t-------\t-----\t------\t")
	} else {
		fmt.Fprintln(tw, " # Ent\tPeer NBMA Addr\tPeer Tunnel Add\tState\tUpDn Tm\tAttrb\t")
		fmt.Fprintln(tw, " -----\t--------------\t---------------\t-----\t-------\t-----\t")
	}
	for _, p := range d.Peers {
		if crypto {
			fmt.Fprintf(tw, " %5d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", 1, p.PeerNBMA, p.PeerTunnel, p.State, p.UpDown, p.Attributes, p.Crypto)
			continue
		}
		fmt.Fprintf(tw, " %5d\t%s\t%s\t%s\t%s\t%s\t\n", 1, p.PeerNBMA, p.PeerTunnel, p.State, p.UpDown, p.Attributes)
	}
	tw.Flush()
	for _, p := range d.Peers {
		if p.Reason != "" {
			fmt.Fprintf(w, "\n%s (%s): %s", p.PeerTunnel, p.PeerNBMA, p.Reason)
		}
	}
	fmt.Fprintln(w)
}

// RenderNHRP writes `show nhrp` (the cache) in the spirit of Cisco's.
func RenderNHRP(w io.Writer, es []NHRPEntry, now time.Time) {
	if len(es) == 0 {
		fmt.Fprintln(w, "NHRP cache is empty")
		return
	}
	for _, e := range es {
		fmt.Fprintf(w, "%s via %s\n", e.Prefix, e.Protocol)
		exp := "never expire"
		if e.Expires != nil {
			exp = "expire " + UpDown(e.Expires.Sub(now))
		}
		fmt.Fprintf(w, "   %s, created %s, %s\n", e.Type, UpDown(now.Sub(e.Created)), exp)
		fl := ""
		if len(e.Flags) > 0 {
			fl = "Flags: " + strings.Join(e.Flags, " ") + ", "
		}
		fmt.Fprintf(w, "   Type: %s, %sNBMA address: %s (%s)", e.Type, fl, e.NBMA, e.Transport)
		if e.ClaimedNBMA != "" && !strings.HasPrefix(e.NBMA, e.ClaimedNBMA) {
			fmt.Fprintf(w, ", claimed %s", e.ClaimedNBMA)
		}
		fmt.Fprintln(w)
	}
}

// RenderRoutes writes `show routes`.
func RenderRoutes(w io.Writer, rs []Route) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Prefix\tNext hop\tSource\tDistance\tBest\t")
	for _, r := range rs {
		best := ""
		if r.Best {
			best = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t\n", r.Prefix, r.NextHop, r.Source, r.Distance, best)
	}
	tw.Flush()
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
