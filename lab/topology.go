package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
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
		if err := l.addNode(ctx, n, false); err != nil {
			return err
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
		if err := l.addDefaultRoute(r[0], ip(r[1])); err != nil {
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
		if err := l.setupLoss(); err != nil {
			return fmt.Errorf("loss on the inet router: %w", err)
		}
	}
	return l.waitLinksUp(ctx, linksUpWait)
}

// linksUpWait bounds waitLinksUp. The kernel's link watcher handles
// carrier changes at most once a second, so about a second is normal.
const linksUpWait = 10 * time.Second

// waitLinksUp waits until every veth of the lab is operationally up. Until
// the kernel's link watcher has seen a new veth's carrier (up to a second
// after it came up) the device drops what it is given to send, so a ping
// right after the build would be lost.
func (l *Lab) waitLinksUp(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		var down []string
		for _, ns := range l.Namespaces() {
			err := InNamespace(ns, func() error {
				links, err := netlink.LinkList()
				if err != nil {
					return err
				}
				for _, link := range links {
					if a := link.Attrs(); link.Type() == "veth" && a.OperState != netlink.OperUp {
						down = append(down, fmt.Sprintf("%s/%s (%s)", ns, a.Name, a.OperState))
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("links in %s: %w", ns, err)
			}
		}
		if len(down) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("links not up after %v: %s", limit, strings.Join(down, ", "))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// addNode creates node's namespace, brings lo up and sets nsSysctls (all of
// them best effort when lenient).
func (l *Lab) addNode(ctx context.Context, node string, lenient bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ns := l.Namespace(node)
	if err := NewNamespace(ns); err != nil {
		return err
	}
	return InNamespace(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			return fmt.Errorf("lo up in %s: %w", ns, err)
		}
		for _, s := range nsSysctls {
			err := os.WriteFile("/proc/sys/"+s[0], []byte(s[1]+"\n"), 0)
			// IPv6 is absent on kernels without it: best effort.
			if err != nil && !lenient && !strings.Contains(s[0], "ipv6") {
				return fmt.Errorf("sysctl %s=%s in %s: %w", strings.ReplaceAll(s[0], "/", "."), s[1], ns, err)
			}
		}
		return nil
	})
}

// addVeth creates the veth pair in a's namespace with its peer in b's, then
// addresses both ends and brings them up.
func (l *Lab) addVeth(ctx context.Context, v veth) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	na, nb := l.Namespace(v.a), l.Namespace(v.b)
	fdB, err := unix.Open(netnsDir+"/"+nb, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", nb, err)
	}
	defer unix.Close(fdB)
	mtu := l.opts.UnderlayMTU
	err = InNamespace(na, func() error {
		link := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: v.ifA, MTU: mtu},
			PeerName:      v.ifB,
			PeerMTU:       uint32(mtu),
			PeerNamespace: netlink.NsFd(fdB),
		}
		if err := netlink.LinkAdd(link); err != nil {
			return fmt.Errorf("veth %s/%s -- %s/%s: %w", na, v.ifA, nb, v.ifB, err)
		}
		return addrUp(na, v.ifA, v.addrA)
	})
	if err != nil {
		return err
	}
	return InNamespace(nb, func() error { return addrUp(nb, v.ifB, v.addrB) })
}

// addrUp adds addr to the link ifname and brings it up (in the calling
// thread's namespace ns).
func addrUp(ns, ifname, addr string) error {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", ifname, ns, err)
	}
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, a); err != nil {
		return fmt.Errorf("address %s on %s in %s: %w", addr, ifname, ns, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s up in %s: %w", ifname, ns, err)
	}
	return nil
}

func (l *Lab) addDefaultRoute(node string, gw netip.Addr) error {
	ns := l.Namespace(node)
	return InNamespace(ns, func() error {
		if err := netlink.RouteAdd(&netlink.Route{Gw: gw.AsSlice()}); err != nil {
			return fmt.Errorf("default route via %s in %s: %w", gw, ns, err)
		}
		return nil
	})
}

// NAT table and chain names in the nat3 namespace (nftables). The drop rule
// for GRE/ESP carries a counter, so tests can prove it fired (NATDropped,
// or `nft list chain ip labnat forward`).
const (
	NATTable = "labnat"
	NATChain = "forward"
)

// setupNAT programs nat3 through nftables' netlink API:
//
//	table ip labnat {
//	  chain postrouting {
//	    type nat hook postrouting priority srcnat; policy accept;
//	    oifname "wan0" masquerade
//	  }
//	  chain forward {
//	    type filter hook forward priority filter; policy accept;
//	    meta l4proto { 47, 50 } counter drop       # udp-only mode
//	    iifname "wan0" ct state established,related accept
//	    iifname "wan0" drop
//	  }
//	}
func (l *Lab) setupNAT(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.nft(NAT3, func(c *nftables.Conn) error {
		t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: NATTable})
		post := c.AddChain(&nftables.Chain{
			Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
			Policy: policy(nftables.ChainPolicyAccept),
		})
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(IfWAN)},
			&expr.Masq{},
		}})
		fwd := c.AddChain(&nftables.Chain{
			Name: NATChain, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter,
			Policy: policy(nftables.ChainPolicyAccept),
		})
		if l.opts.NATMode == NATUDPOnly {
			set := &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: nftables.TypeInetProto}
			if err := c.AddSet(set, []nftables.SetElement{{Key: []byte{unix.IPPROTO_GRE}}, {Key: []byte{unix.IPPROTO_ESP}}}); err != nil {
				return err
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
				&expr.Counter{},
				&expr.Verdict{Kind: expr.VerdictDrop},
			}})
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(IfWAN)},
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{
				SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  []byte{0, 0, 0, 0},
			},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(IfWAN)},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
		return nil
	})
}

// setupLoss makes the inet router drop LossPct percent of what it forwards:
//
//	table ip lablossy {
//	  chain forward {
//	    type filter hook forward priority -10; policy accept;
//	    numgen random mod 100 < N counter drop
//	  }
//	}
func (l *Lab) setupLoss() error {
	return l.nft(Inet, func(c *nftables.Conn) error {
		t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "lablossy"})
		fwd := c.AddChain(&nftables.Chain{
			Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-10),
			Policy: policy(nftables.ChainPolicyAccept),
		})
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: []expr.Any{
			&expr.Numgen{Register: 1, Modulus: 100, Type: unix.NFT_NG_RANDOM},
			// cmp lt compares bytes: network order, as nft emits it
			&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
			&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binaryutil.BigEndian.PutUint32(uint32(l.opts.LossPct))},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
		return nil
	})
}

// nft runs f on an nftables connection into node's namespace, then commits
// what f queued.
func (l *Lab) nft(node string, f func(*nftables.Conn) error) error {
	ns := l.Namespace(node)
	fd, err := unix.Open(netnsDir+"/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer unix.Close(fd)
	c, err := nftables.New(nftables.WithNetNSFd(fd), nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", ns, err)
	}
	defer c.CloseLasting()
	if err := f(c); err != nil {
		return fmt.Errorf("nftables in %s: %w", ns, err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables in %s: %w (does the kernel have nftables, NAT and conntrack?)", ns, err)
	}
	return nil
}

// NATDropped returns how many packets nat3 has dropped for being GRE or ESP
// (the counter of its udp-only rule; 0 in permissive mode).
func (l *Lab) NATDropped() (uint64, error) {
	var n uint64
	err := l.nft(NAT3, func(c *nftables.Conn) error {
		t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: NATTable}
		rules, err := c.GetRules(t, &nftables.Chain{Name: NATChain, Table: t})
		if err != nil {
			return err
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					n += ctr.Packets
				}
			}
		}
		return nil
	})
	return n, err
}

func policy(p nftables.ChainPolicy) *nftables.ChainPolicy { return &p }

// ifname is an interface name as nftables compares it: 16 bytes, NUL padded.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}
