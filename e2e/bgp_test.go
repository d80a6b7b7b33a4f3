package e2e

// BGP end to end on the namespace lab: the configs carry no static LAN
// route; every node announces its LAN over the built-in BGP, the hub
// reflects them (phase 2) or sends only the summary (phases 1 and 3).

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
	"github.com/dmvpn/dmvpn/overlay"
)

// bgpLimit bounds the wait for BGP to converge (sessions open after
// GoBGP's first connect delay of up to 2s; a stopped spoke's Cease is
// immediate).
const bgpLimit = 30 * time.Second

func (e *env) bgpView(node string) (api.BGP, error) {
	var b api.BGP
	ctx, cancel := e.timeout(10 * time.Second)
	defer cancel()
	err := e.l.ShowJSON(ctx, node, "bgp", &b)
	return b, err
}

// kernelRoutes returns node's main-table routes through the overlay
// device: prefix -> protocol.
func (e *env) kernelRoutes(node string) (map[string]int, error) {
	out := map[string]int{}
	err := e.l.Do(node, func() error {
		link, err := netlink.LinkByName(lab.IfTunnel)
		if err != nil {
			return err
		}
		rs, err := netlink.RouteList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Dst != nil {
				out[r.Dst.String()] = int(r.Protocol)
			}
		}
		return nil
	})
	return out, err
}

// routeVia finds node's FIB route for prefix.
func (e *env) routeVia(node, prefix string) (api.Route, bool, error) {
	rs, err := e.routes(node)
	if err != nil {
		return api.Route{}, false, err
	}
	for _, r := range rs {
		if r.Prefix == prefix && r.Best {
			return r, true, nil
		}
	}
	return api.Route{}, false, nil
}

// learned checks that node's FIB routes prefix via nextHop, learned over
// BGP, and that the kernel routes it into the overlay device with dmvpn's
// protocol number.
func (e *env) learned(node, prefix, nextHop string) error {
	r, ok, err := e.routeVia(node, prefix)
	if err != nil {
		return err
	}
	if !ok || r.Source != "bgp" || r.NextHop != nextHop {
		return fmt.Errorf("%s: route %s is %+v (found %v), want via %s from bgp", node, prefix, r, ok, nextHop)
	}
	kr, err := e.kernelRoutes(node)
	if err != nil {
		return err
	}
	if p, ok := kr[prefix]; !ok || p != overlay.RouteProtocol {
		return fmt.Errorf("%s: kernel route %s via %s: present %v protocol %d, want protocol %d", node, prefix, lab.IfTunnel, ok, p, overlay.RouteProtocol)
	}
	return nil
}

// forgotten checks that node has no FIB route and no kernel route for prefix.
func (e *env) forgotten(node, prefix string) error {
	r, ok, err := e.routeVia(node, prefix)
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("%s still routes %s: %+v", node, prefix, r)
	}
	kr, err := e.kernelRoutes(node)
	if err != nil {
		return err
	}
	if _, ok := kr[prefix]; ok {
		return fmt.Errorf("%s still has a kernel route %s via %s", node, prefix, lab.IfTunnel)
	}
	return nil
}

func (e *env) waitFor(limit time.Duration, what string, f func() error) {
	e.t.Helper()
	t0 := time.Now()
	if err := e.poll(limit, 200*time.Millisecond, f); err != nil {
		e.t.Fatalf("%s: after %v: %v", what, limit, err)
	}
	e.t.Logf("%s after %v", what, time.Since(t0).Round(time.Millisecond))
}

func neighborStates(b api.BGP) string {
	var s []string
	for _, n := range b.Neighbors {
		s = append(s, n.Address+"="+n.State)
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// Phase 2 over BGP: the hub reflects each spoke's LAN with that spoke as
// next hop; a spoke started later is learned by everyone with no change
// at the hub; a spoke that stops is withdrawn everywhere, FIB and kernel.
// Spoke to spoke traffic goes direct on the BGP next hop.
func TestBGPSpokesJoinAndLeave(t *testing.T) {
	testenv.RequireRoot(t)
	e := newShortcutLab(t, 'b', lab.Options{Phase: 2})
	for _, n := range []string{lab.Hub, lab.Spoke1, lab.Spoke2} {
		if err := e.l.Start(n); err != nil {
			t.Fatal(err)
		}
	}
	hubCfg, err := os.ReadFile(e.l.ConfigPath(lab.Hub))
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor(bgpLimit, "spoke1 and spoke2 learned each other's LANs over BGP", func() error {
		return firstErr(e.learned(lab.Spoke1, "10.1.2.0/24", "10.0.0.12"), e.learned(lab.Spoke2, "10.1.1.0/24", "10.0.0.11"),
			e.learned(lab.Hub, "10.1.1.0/24", "10.0.0.11"), e.learned(lab.Spoke1, "10.1.0.0/24", "10.0.0.1"))
	})
	for _, c := range lab.Daemons {
		if c.IsHub() {
			continue
		}
		cfg, err := os.ReadFile(e.l.ConfigPath(c.Name))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(cfg, []byte("routes:")) {
			t.Errorf("%s's config has static routes:\n%s", c.Name, cfg)
		}
	}
	e.waitDirect(flow12, directLimit)

	// A new spoke: nothing changes at the hub.
	if err := e.l.Start(lab.Spoke3); err != nil {
		t.Fatal(err)
	}
	e.waitFor(bgpLimit, "spoke3 (started later) learned and learned by all", func() error {
		return firstErr(e.learned(lab.Hub, "10.1.3.0/24", "10.0.0.13"), e.learned(lab.Spoke1, "10.1.3.0/24", "10.0.0.13"),
			e.learned(lab.Spoke3, "10.1.1.0/24", "10.0.0.11"))
	})
	if err := e.waitPing(lab.HostLAN1, "10.1.3.10", reachLimit); err != nil {
		t.Errorf("host-lan1 -> host-lan3 over the BGP route: %v", err)
	}
	if after, err := os.ReadFile(e.l.ConfigPath(lab.Hub)); err != nil || !bytes.Equal(after, hubCfg) {
		t.Errorf("the hub's config changed (err %v)", err)
	}
	b, err := e.bgpView(lab.Hub)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range b.Neighbors {
		if !n.Dynamic || n.State != "Established" {
			t.Errorf("hub neighbor %+v: want a dynamic, Established session", n)
		}
	}
	if len(b.Neighbors) != 3 {
		t.Errorf("hub neighbors: %s", neighborStates(b))
	}

	// The hub's events: a bgp-up for each session (from the dynamic range).
	hubEvents := e.streamEvents(lab.Hub)
	for _, peer := range []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"} { // in any order
		hubEvents.waitFor(10*time.Second, match{typ: events.BGPUp, peer: peer, reason: "^dynamic$"})
	}

	// A spoke that stops is withdrawn: from the hub and the other spokes,
	// FIB and kernel.
	if err := e.l.Stop(lab.Spoke2); err != nil {
		t.Fatal(err)
	}
	if evs := hubEvents.waitFor(bgpLimit, match{typ: events.BGPDown, peer: "10.0.0.12"}); count(evs, events.BGPDown, "10.0.0.12") != 1 {
		t.Errorf("hub events: %s, want one bgp-down for 10.0.0.12", brief(evs))
	} else {
		for _, ev := range evs {
			if ev.Type == events.BGPDown {
				t.Logf("hub: %s %s: %s", ev.Type, ev.Peer, ev.Reason)
			}
		}
	}
	e.waitFor(bgpLimit, "spoke2's LAN withdrawn everywhere", func() error {
		return firstErr(e.forgotten(lab.Hub, "10.1.2.0/24"), e.forgotten(lab.Spoke1, "10.1.2.0/24"), e.forgotten(lab.Spoke3, "10.1.2.0/24"))
	})
	if err := e.learned(lab.Spoke1, "10.1.3.0/24", "10.0.0.13"); err != nil {
		t.Errorf("spoke3's route went with spoke2's: %v", err)
	}
	if b, err := e.bgpView(lab.Hub); err == nil {
		t.Logf("hub neighbors after spoke2 stopped: %s", neighborStates(b))
	}
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke3)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Phase 3 over BGP: the hub sends only the summary with itself as next
// hop; shortcuts refine it. When the summary is withdrawn the shortcut it
// refined goes too (route watch), not only when it expires.
func TestBGPShortcutGoesWithTheSummary(t *testing.T) {
	testenv.RequireRoot(t)
	no := false
	e := newShortcutLab(t, 'w', lab.Options{Phase: 3, Tweak: func(node string, c *lab.NodeConfig) {
		if node == lab.Spoke1 {
			// Its session with the hub as a plain neighbor, so that a
			// reload can take it away.
			c.BGP.PeerNHS = &no
			c.BGP.Neighbors = []lab.BGPNeighbor{{Address: "10.0.0.1", AS: lab.AS}}
		}
	}})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	e.waitFor(bgpLimit, "the spokes got only the summary via the hub", func() error {
		return firstErr(e.learned(lab.Spoke1, lab.LANSuperNet.String(), "10.0.0.1"), e.learned(lab.Spoke2, lab.LANSuperNet.String(), "10.0.0.1"))
	})
	for _, p := range []string{"10.1.2.0/24", "10.1.3.0/24"} {
		if r, ok, _ := e.routeVia(lab.Spoke1, p); ok {
			t.Errorf("spoke1 has a more specific route %s (%+v): the hub must send only the summary", p, r)
		}
	}
	e.waitDirect(flow12, directLimit)
	e.provedDirect(3, 0, flow12)

	// Take spoke1's BGP session away: the summary goes, and with it the
	// shortcut that refined it.
	off := e.logSize(lab.Spoke1)
	c, err := e.l.Config(lab.Spoke1)
	if err != nil {
		t.Fatal(err)
	}
	c.BGP.Neighbors = nil
	if err := os.WriteFile(e.l.ConfigPath(lab.Spoke1), c.Marshal("spoke1 without its BGP session"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := e.timeout(10 * time.Second)
	defer cancel()
	if out, err := e.l.Exec(ctx, lab.Spoke1, e.l.Options().Binary, "reload", "-c", e.l.ConfigPath(lab.Spoke1)); err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	e.waitFor(bgpLimit, "the summary and the shortcut under it left spoke1", func() error {
		return firstErr(e.forgotten(lab.Spoke1, lab.LANSuperNet.String()), e.shortcutGone(lab.Spoke1, "10.0.0.12"))
	})
	if line, err := e.logSince(lab.Spoke1, off, 5*time.Second, "route-watch"); err != nil {
		t.Errorf("spoke1 did not log the route watch: %v", err)
	} else {
		t.Logf("spoke1: %s", line)
	}
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// Every BGP message the lab exchanges (inside GRE on the hub's underlay)
// decodes in tshark with no Malformed frame and no expert warning.
func TestBGPCaptureDecodes(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "tshark")
	testenv.RequireTool(t, "tcpdump")
	e := newShortcutLab(t, 'q', lab.Options{Phase: 2})
	c := e.startCapture(lab.Hub)
	e.startAll()
	e.waitFor(bgpLimit, "every spoke's LAN at the hub", func() error {
		return firstErr(e.learned(lab.Hub, "10.1.1.0/24", "10.0.0.11"), e.learned(lab.Hub, "10.1.2.0/24", "10.0.0.12"),
			e.learned(lab.Hub, "10.1.3.0/24", "10.0.0.13"), e.learned(lab.Spoke1, "10.1.3.0/24", "10.0.0.13"))
	})
	ctx, cancel := e.timeout(10 * time.Second)
	defer cancel()
	if raw, err := e.l.Show(ctx, lab.Hub, "metrics", false); err != nil {
		t.Error(err)
	} else {
		for _, want := range []string{`dmvpn_bgp_sessions{state="established"} 3`, "dmvpn_bgp_learned_prefixes 3"} {
			if !strings.Contains(string(raw), want) {
				t.Errorf("the hub's metrics lack %q", want)
			}
		}
	}
	c.stop()
	types := map[string]int{}
	for _, row := range e.tsharkFields(c.pcap, "bgp", "bgp.type") {
		for _, ty := range strings.Split(row[0], ",") {
			types[ty]++
		}
	}
	// 1 OPEN, 2 UPDATE, 4 KEEPALIVE.
	if types["1"] < 6 || types["2"] < 6 || types["4"] < 6 {
		t.Errorf("BGP messages by type in the hub's underlay capture: %v, want OPEN, UPDATE and KEEPALIVE from every session both ways", types)
	}
	t.Logf("BGP messages by type: %v", types)
	if rows := e.tsharkFields(c.pcap, "bgp.type == 2 && bgp.nlri_prefix == 10.1.3.0", "frame.number", "bgp.update.path_attribute.next_hop"); len(rows) == 0 {
		t.Errorf("no UPDATE for spoke3's LAN 10.1.3.0/24 in the capture")
	} else {
		t.Logf("UPDATE 10.1.3.0/24: %v", rows[0])
	}
	e.noMalformed(c.pcap)
}

// redistribute connected: spoke1 announces no network, only the host's
// routes inside 10.1.0.0/16 that do not go into the tunnel. Its LAN is
// learned everywhere; a LAN address added later is announced, and
// withdrawn when it goes; the underlay and the tunnel subnet never are.
func TestBGPRedistributeConnected(t *testing.T) {
	testenv.RequireRoot(t)
	e := newShortcutLab(t, 'd', lab.Options{Phase: 2, Tweak: func(node string, c *lab.NodeConfig) {
		if node == lab.Spoke1 {
			c.BGP.Networks = nil
			c.BGP.Redistribute = &lab.BGPRedistribute{Connected: true, Prefixes: []string{"10.1.0.0/16"}}
		}
	}})
	e.startAll()
	e.waitFor(bgpLimit, "spoke1's connected LAN learned by the hub and spoke2", func() error {
		return firstErr(e.learned(lab.Hub, "10.1.1.0/24", "10.0.0.11"), e.learned(lab.Spoke2, "10.1.1.0/24", "10.0.0.11"))
	})
	extra := netip.MustParsePrefix("10.1.91.1/24")
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: extra.Addr().AsSlice(), Mask: net.CIDRMask(24, 32)}}
	inSpoke1 := func(f func(netlink.Link) error) {
		t.Helper()
		if err := e.l.Do(lab.Spoke1, func() error {
			ln, err := netlink.LinkByName(lab.IfLAN)
			if err != nil {
				return err
			}
			return f(ln)
		}); err != nil {
			t.Fatal(err)
		}
	}
	inSpoke1(func(ln netlink.Link) error { return netlink.AddrAdd(ln, addr) })
	e.waitFor(bgpLimit, "a LAN added at spoke1 announced", func() error {
		return e.learned(lab.Spoke2, "10.1.91.0/24", "10.0.0.11")
	})
	inSpoke1(func(ln netlink.Link) error { return netlink.AddrDel(ln, addr) })
	e.waitFor(bgpLimit, "the LAN removed at spoke1 withdrawn", func() error {
		return e.forgotten(lab.Spoke2, "10.1.91.0/24")
	})
	b, err := e.bgpView(lab.Hub)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range b.Routes {
		p := netip.MustParsePrefix(r.Prefix)
		if r.Neighbor == "10.0.0.11" && !lab.LANSuperNet.Contains(p.Addr()) {
			t.Errorf("spoke1 announced %s, outside bgp.redistribute.prefixes", r.Prefix)
		}
	}
}

// kernelRouteBy checks that node's kernel (main table) routes prefix via
// gw on dmvpn0 with protocol proto (RTPROT_*: zebra's per protocol, bird's 12).
func (e *env) kernelRouteBy(node, prefix, gw string, proto int) error {
	want := netip.MustParsePrefix(prefix)
	var found []string
	ok := false
	err := e.l.Do(node, func() error {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Dst == nil || r.Dst.String() != want.String() {
				continue
			}
			dev := "?"
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				dev = l.Attrs().Name
			}
			found = append(found, fmt.Sprintf("via %v dev %s proto %d", r.Gw, dev, r.Protocol))
			if int(r.Protocol) == proto && dev == lab.IfTunnel && r.Gw != nil && r.Gw.String() == gw {
				ok = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s's kernel routes %s %v, want via %s dev %s proto %d", node, prefix, found, gw, lab.IfTunnel, proto)
	}
	return nil
}

// followsKernel checks that our daemon on node follows the route another daemon
// (zebra, BIRD) installed: its FIB's best route for prefix is via gw from source kernel.
func (e *env) followsKernel(node, prefix, gw string) error {
	r, ok, err := e.routeVia(node, prefix)
	if err != nil {
		return err
	}
	if !ok || r.Source != "kernel" || r.NextHop != gw {
		rs, _ := e.routes(node)
		return fmt.Errorf("%s: best route %s is %+v (found %v), want via %s from kernel; FIB %s", node, prefix, r, ok, gw, routesString(rs))
	}
	return nil
}
