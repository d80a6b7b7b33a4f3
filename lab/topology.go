package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// Node names. Each node is one network namespace, named "<prefix>-<node>".
const (
	Inet     = "inet"      // the "internet" router every WAN hangs off
	Hub      = "hub"       // DMVPN hub (NHS)
	Spoke1   = "spoke1"    // spoke on a public address
	Spoke2   = "spoke2"    // spoke on a public address
	NAT3     = "nat3"      // home router in front of spoke3 (masquerade, drops GRE/ESP)
	Spoke3   = "spoke3"    // spoke behind nat3, must use GRE-in-UDP
	HostLAN0 = "host-lan0" // LAN host behind the hub
	HostLAN1 = "host-lan1" // LAN host behind spoke1
	HostLAN2 = "host-lan2" // LAN host behind spoke2
	HostLAN3 = "host-lan3" // LAN host behind spoke3
)

// Nodes lists every node of the lab, in build order.
var Nodes = []string{Inet, Hub, Spoke1, Spoke2, NAT3, Spoke3, HostLAN0, HostLAN1, HostLAN2, HostLAN3}

// Interface names used inside the namespaces (all at most 15 characters).
const (
	IfWAN    = "wan0"   // underlay interface of hub, spokes and nat3 (nat3: public side)
	IfLAN    = "lan0"   // LAN-facing interface of hub, spokes; nat3's inside interface
	IfHost   = "eth0"   // a LAN host's only interface
	IfTunnel = "dmvpn0" // the TUN device the daemon creates (tunnel.device)
)

// Addressing plan shared by the lab and its tests.
var (
	OverlayPrefix = netip.MustParsePrefix("10.0.0.0/24")  // tunnel addresses: hub .1, spokeN .1N
	LANSuperNet   = netip.MustParsePrefix("10.1.0.0/16")  // all LANs: 10.1.N.0/24, N=0 hub
	NAT3Public    = netip.MustParseAddr("198.51.100.129") // nat3's public address (spoke3 seen from outside)
	NAT3Inside    = netip.MustParsePrefix("192.168.3.1/24")
)

// Daemon describes a node that runs dmvpn: the hub and the three spokes.
type Daemon struct {
	Name       string
	WAN        netip.Prefix // address on wan0 (spoke3: its private address behind nat3)
	Gateway    netip.Addr   // default route
	PublicNBMA netip.Addr   // the NBMA address the hub sees (spoke3: nat3's public address)
	LAN        netip.Prefix // address on lan0, 10.1.N.1/24
	Overlay    netip.Prefix // tunnel address, 10.0.0.1 (hub) or 10.0.0.1N (spokeN)
	Host       string       // the LAN host node behind it
	HostAddr   netip.Addr   // the LAN host's address, 10.1.N.10
	Transport  string       // default transport: gre, or udp for spoke3
	BehindNAT  bool
}

// IsHub reports whether d is the hub.
func (d Daemon) IsHub() bool { return d.Name == Hub }

// Daemons lists the nodes that run dmvpn, hub first.
var Daemons = []Daemon{
	{
		Name: Hub, WAN: pfx("192.0.2.1/24"), Gateway: ip("192.0.2.254"), PublicNBMA: ip("192.0.2.1"),
		LAN: pfx("10.1.0.1/24"), Overlay: pfx("10.0.0.1/24"), Host: HostLAN0, HostAddr: ip("10.1.0.10"),
		Transport: "gre",
	},
	{
		Name: Spoke1, WAN: pfx("198.51.100.1/26"), Gateway: ip("198.51.100.62"), PublicNBMA: ip("198.51.100.1"),
		LAN: pfx("10.1.1.1/24"), Overlay: pfx("10.0.0.11/24"), Host: HostLAN1, HostAddr: ip("10.1.1.10"),
		Transport: "gre",
	},
	{
		Name: Spoke2, WAN: pfx("198.51.100.65/26"), Gateway: ip("198.51.100.126"), PublicNBMA: ip("198.51.100.65"),
		LAN: pfx("10.1.2.1/24"), Overlay: pfx("10.0.0.12/24"), Host: HostLAN2, HostAddr: ip("10.1.2.10"),
		Transport: "gre",
	},
	{
		Name: Spoke3, WAN: pfx("192.168.3.2/24"), Gateway: ip("192.168.3.1"), PublicNBMA: NAT3Public,
		LAN: pfx("10.1.3.1/24"), Overlay: pfx("10.0.0.13/24"), Host: HostLAN3, HostAddr: ip("10.1.3.10"),
		Transport: "udp", BehindNAT: true,
	},
}

// DaemonByName returns the daemon node called name.
func DaemonByName(name string) (Daemon, bool) {
	for _, d := range Daemons {
		if d.Name == name {
			return d, true
		}
	}
	return Daemon{}, false
}

// HostAddr returns the address of a LAN host node (host-lan0..host-lan3).
func HostAddr(node string) (netip.Addr, bool) {
	for _, d := range Daemons {
		if d.Host == node {
			return d.HostAddr, true
		}
	}
	return netip.Addr{}, false
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

// veth is one point-to-point link between two namespaces.
type veth struct {
	a, ifA, addrA string
	b, ifB, addrB string
}

// underlayLinks hang every WAN off the inet router; the nat3 inside link and
// the LAN links follow.
var underlayLinks = []veth{
	{Inet, "to-hub", "192.0.2.254/24", Hub, IfWAN, "192.0.2.1/24"},
	{Inet, "to-spoke1", "198.51.100.62/26", Spoke1, IfWAN, "198.51.100.1/26"},
	{Inet, "to-spoke2", "198.51.100.126/26", Spoke2, IfWAN, "198.51.100.65/26"},
	{Inet, "to-nat3", "198.51.100.190/26", NAT3, IfWAN, "198.51.100.129/26"},
	{NAT3, IfLAN, "192.168.3.1/24", Spoke3, IfWAN, "192.168.3.2/24"},
}

// defaultRoutes: node -> gateway. The inet router has none: it knows no
// private prefix, like the real internet.
var defaultRoutes = [][2]string{
	{Hub, "192.0.2.254"},
	{Spoke1, "198.51.100.62"},
	{Spoke2, "198.51.100.126"},
	{NAT3, "198.51.100.190"},
	{Spoke3, "192.168.3.1"},
	{HostLAN0, "10.1.0.1"},
	{HostLAN1, "10.1.1.1"},
	{HostLAN2, "10.1.2.1"},
	{HostLAN3, "10.1.3.1"},
}

func lanLinks() []veth {
	var v []veth
	for _, d := range Daemons {
		v = append(v, veth{d.Name, IfLAN, d.LAN.String(), d.Host, IfHost, netip.PrefixFrom(d.HostAddr, d.LAN.Bits()).String()})
	}
	return v
}

// nsSysctls are set in every namespace before any interface is added, so new
// interfaces (and the daemons' TUN devices) inherit them from "default".
var nsSysctls = [][2]string{
	{"net/ipv4/ip_forward", "1"},
	{"net/ipv4/conf/all/rp_filter", "0"},
	{"net/ipv4/conf/default/rp_filter", "0"},
	// The lab is IPv4 only; IPv6 would add link-local chatter (router
	// solicitations) on every TUN device.
	{"net/ipv6/conf/all/disable_ipv6", "1"},
	{"net/ipv6/conf/default/disable_ipv6", "1"},
}

// build creates the namespaces and links. The caller tears down on error.
func (l *Lab) build(ctx context.Context) error {
	for _, n := range Nodes {
		ns := l.Namespace(n)
		if _, err := l.run(ctx, "ip", "netns", "add", ns); err != nil {
			return err
		}
		if _, err := l.run(ctx, "ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
		var sh strings.Builder
		sh.WriteString("set -e; ")
		for _, s := range nsSysctls {
			if strings.Contains(s[0], "ipv6") {
				// absent on kernels without IPv6: best effort
				fmt.Fprintf(&sh, "echo %s 2>/dev/null > /proc/sys/%s || true; ", s[1], s[0])
			} else {
				fmt.Fprintf(&sh, "echo %s > /proc/sys/%s; ", s[1], s[0])
			}
		}
		if _, err := l.run(ctx, "ip", "netns", "exec", ns, "sh", "-c", sh.String()); err != nil {
			return fmt.Errorf("sysctls in %s: %w", ns, err)
		}
	}
	for _, v := range underlayLinks {
		if err := l.addVeth(ctx, v); err != nil {
			return err
		}
	}
	for _, v := range lanLinks() {
		if err := l.addVeth(ctx, v); err != nil {
			return err
		}
	}
	for _, r := range defaultRoutes {
		if _, err := l.run(ctx, "ip", "-n", l.Namespace(r[0]), "route", "add", "default", "via", r[1]); err != nil {
			return err
		}
	}
	if err := l.setupNAT(ctx); err != nil {
		return err
	}
	if l.opts.Attacker {
		if err := l.buildAttacker(ctx); err != nil {
			return err
		}
	}
	if l.opts.LossPct > 0 {
		rules := fmt.Sprintf(`table ip lablossy {
  chain forward {
    type filter hook forward priority -10; policy accept;
    numgen random mod 100 < %d counter drop
  }
}
`, l.opts.LossPct)
		if _, err := l.runStdin(ctx, rules, "ip", "netns", "exec", l.Namespace(Inet), "nft", "-f", "-"); err != nil {
			return fmt.Errorf("loss on the inet router (needs nft): %w", err)
		}
	}
	return nil
}

func (l *Lab) addVeth(ctx context.Context, v veth) error {
	na, nb := l.Namespace(v.a), l.Namespace(v.b)
	mtu := fmt.Sprint(l.opts.UnderlayMTU)
	cmds := [][]string{
		{"ip", "-n", na, "link", "add", v.ifA, "mtu", mtu, "type", "veth", "peer", "name", v.ifB, "mtu", mtu, "netns", nb},
		{"ip", "-n", na, "addr", "add", v.addrA, "dev", v.ifA},
		{"ip", "-n", nb, "addr", "add", v.addrB, "dev", v.ifB},
		{"ip", "-n", na, "link", "set", v.ifA, "up"},
		{"ip", "-n", nb, "link", "set", v.ifB, "up"},
	}
	for _, c := range cmds {
		if _, err := l.run(ctx, c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// NAT table and chain names in the nat3 namespace (nft). The drop rule for
// GRE/ESP carries a counter, so tests can prove it fired:
// `nft list chain ip labnat forward`.
const (
	NATTable = "labnat"
	NATChain = "forward"
)

func (l *Lab) setupNAT(ctx context.Context) error {
	ns := l.Namespace(NAT3)
	udpOnly := l.opts.NATMode == NATUDPOnly
	if natTool() == "nft" {
		drop := ""
		if udpOnly {
			drop = "meta l4proto { 47, 50 } counter drop"
		}
		rules := fmt.Sprintf(`table ip %s {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "%s" masquerade
  }
  chain %s {
    type filter hook forward priority filter; policy accept;
    %s
    iifname "%s" ct state established,related accept
    iifname "%s" drop
  }
}
`, NATTable, IfWAN, NATChain, drop, IfWAN, IfWAN)
		_, err := l.runStdin(ctx, rules, "ip", "netns", "exec", ns, "nft", "-f", "-")
		return err
	}
	var cmds [][]string
	if udpOnly {
		cmds = append(cmds,
			[]string{"iptables", "-A", "FORWARD", "-p", "47", "-j", "DROP"},
			[]string{"iptables", "-A", "FORWARD", "-p", "50", "-j", "DROP"})
	}
	cmds = append(cmds,
		[]string{"iptables", "-t", "nat", "-A", "POSTROUTING", "-o", IfWAN, "-j", "MASQUERADE"},
		[]string{"iptables", "-A", "FORWARD", "-i", IfWAN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		[]string{"iptables", "-A", "FORWARD", "-i", IfWAN, "-j", "DROP"})
	for _, c := range cmds {
		if _, err := l.run(ctx, "ip", append([]string{"netns", "exec", ns}, c...)...); err != nil {
			return err
		}
	}
	return nil
}

// natTool picks nft when installed, else iptables.
func natTool() string {
	if _, err := exec.LookPath("nft"); err == nil {
		return "nft"
	}
	return "iptables"
}

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/var/run/netns"

func nsExists(name string) bool {
	_, err := os.Stat(netnsDir + "/" + name)
	return err == nil
}
