package e2e

// Phases 2 and 3 end to end: spoke-to-spoke traffic first crosses the hub,
// then goes direct once the source spoke has resolved the destination (phase
// 3: the hub's Traffic Indication makes it resolve and install a shortcut
// route; phase 2: it resolves the next hop its routes name). The proof that
// the path is direct is the hub's relay counter (show stats: dataplane
// hairpinned), which must not move while the traffic flows.

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
	"github.com/vishvananda/netlink"
)

// phase3Hold is the holding time of the shortcut expiry test.
const phase3Hold = 8 * time.Second

// checkEntry checks node's cache entry for proto: type resolved, NBMA
// matching nbma, transport.
func (e *env) checkEntry(node, proto string, nbma *regexp.Regexp, transport string) {
	e.t.Helper()
	x, ok, err := e.nhrpEntry(node, proto)
	switch {
	case err != nil:
		e.t.Error(err)
	case !ok:
		e.t.Errorf("%s has no NHRP entry for %s", node, proto)
	case x.Type != "resolved" || !nbma.MatchString(x.NBMA) || x.Transport != transport:
		e.t.Errorf("%s's NHRP entry for %s: %+v; want type resolved, nbma %s, transport %s", node, proto, x, nbma, transport)
	default:
		e.t.Logf("%s: show nhrp: %s %s nbma %s (claimed %s) transport %s flags %v holding %s",
			node, x.Protocol, x.Type, x.NBMA, x.ClaimedNBMA, x.Transport, x.Flags, x.HoldingTime)
	}
}

func exactly(s string) *regexp.Regexp { return regexp.MustCompile("^" + regexp.QuoteMeta(s) + "$") }

// Phase 3: host-lan1 <-> host-lan2 crosses the hub until the hub's
// redirect has made both spokes install shortcut routes; then pings and a
// 1 MiB TCP echo each way flow with the hub relaying none of them.
func TestPhase3SpokeToSpokeGoesDirect(t *testing.T) {
	testenv.RequireRoot(t)
	e := newShortcutLab(t, '3', lab.Options{Phase: 3})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)

	h0 := e.hairpinned()
	e.waitDirect(flow12, directLimit)
	e.waitDirect(flow21, directLimit)
	h1 := e.hairpinned()
	if h1 == h0 {
		t.Errorf("the hub relayed nothing before the shortcuts: the first packets must cross it")
	}
	if n := e.stats(lab.Hub).NHRP["redirects_sent"]; n == 0 {
		t.Errorf("the hub sent no Traffic Indication")
	} else {
		t.Logf("the hub relayed %d packets and sent %d Traffic Indications before the shortcuts", h1-h0, n)
	}
	for _, n := range []string{lab.Spoke1, lab.Spoke2} {
		if line, err := e.logHas(n, 2*time.Second, `msg="shortcut up"`, "component=nhrp"); err != nil {
			t.Error(err)
		} else {
			t.Logf("%s log: %s", n, line)
		}
	}
	e.checkEntry(lab.Spoke1, "10.0.0.12", exactly("198.51.100.65"), "gre")
	e.checkEntry(lab.Spoke2, "10.0.0.11", exactly("198.51.100.1"), "gre")
	// The summary via the hub stays for everything else.
	rs, err := e.routes(lab.Spoke1)
	if err != nil {
		t.Fatal(err)
	}
	summary := false
	for _, r := range rs {
		if r.Prefix == lab.LANSuperNet.String() && r.NextHop == "10.0.0.1" && r.Best {
			summary = true
		}
	}
	if !summary {
		t.Errorf("spoke1 lost the summary via the hub: %s", routesString(rs))
	}
	t.Logf("spoke1 routes: %s", routesString(rs))

	e.provedDirect(10, echoSize, flow12, flow21)
	e.pingAll(3, reachLimit, pingCheck{lab.HostLAN1, lab.HostLAN0})
	for _, n := range allSpokes {
		if st := e.stats(n); st.DataPlane["write_errors"] != 0 {
			t.Errorf("%s: %d underlay/TUN write errors", n, st.DataPlane["write_errors"])
		}
	}
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// Phase 2: each spoke routes the other LANs via the owning spoke's tunnel
// address; the first packets go via the hub while the next hop is
// resolved, then traffic goes direct. The hub redirects nothing.
func TestPhase2NextHopResolvedGoesDirect(t *testing.T) {
	testenv.RequireRoot(t)
	e := newShortcutLab(t, '2', lab.Options{Phase: 2})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)

	h0 := e.hairpinned()
	e.waitDirect(flow12, directLimit)
	e.waitDirect(flow21, directLimit)
	if h1 := e.hairpinned(); h1 == h0 {
		t.Errorf("the hub relayed nothing before the resolution: the first packets must cross it")
	} else {
		t.Logf("the hub relayed %d packets before the next hops were resolved", h1-h0)
	}
	if n := e.stats(lab.Hub).NHRP["redirects_sent"]; n != 0 {
		t.Errorf("the phase-2 hub sent %d Traffic Indications", n)
	}
	e.checkEntry(lab.Spoke1, "10.0.0.12", exactly("198.51.100.65"), "gre")
	e.checkEntry(lab.Spoke2, "10.0.0.11", exactly("198.51.100.1"), "gre")
	e.provedDirect(10, echoSize, flow12, flow21)
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// spoke3 sits behind nat3 (GRE-in-UDP only): spoke1 <-> spoke3 go direct
// both ways through the NAT, spoke1 maps spoke3 at the NAT's public
// address and port over UDP, and the hub relays none of the traffic.
func TestPhase3NATSpokeShortcutBothWays(t *testing.T) {
	testenv.RequireRoot(t)
	e := newShortcutLab(t, 'x', lab.Options{Phase: 3})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)

	e.waitDirect(flow13, directLimit)
	e.waitDirect(flow31, directLimit)
	e.checkEntry(lab.Spoke1, "10.0.0.13", regexp.MustCompile(`^198\.51\.100\.129:\d+$`), "udp")
	e.checkEntry(lab.Spoke3, "10.0.0.11", regexp.MustCompile(`^198\.51\.100\.1(:\d+)?$`), "udp")
	x, _, _ := e.nhrpEntry(lab.Spoke1, "10.0.0.13")
	if x.ClaimedNBMA != "192.168.3.2" {
		t.Errorf("spoke1's entry for spoke3 claims %q, want spoke3's own address 192.168.3.2", x.ClaimedNBMA)
	}
	e.provedDirect(10, echoSize, flow13, flow31)
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// With a short holding time and the traffic stopped, the shortcut expires
// (not before its holding time, and within about twice it: a used shortcut
// is refreshed once more a third of its holding time before it runs out),
// and the next packets cross the hub again.
func TestPhase3IdleShortcutExpires(t *testing.T) {
	testenv.RequireRoot(t)
	e := newShortcutLab(t, 'e', lab.Options{Phase: 3, Holdtime: phase3Hold})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)

	tFirst := time.Now() // no shortcut exists before this
	e.waitDirect(flow12, directLimit)
	e.waitDirect(flow21, directLimit)
	e.provedDirect(3, 0, flow12, flow21)
	x, _, _ := e.nhrpEntry(lab.Spoke1, "10.0.0.12")
	if x.HoldingTime != phase3Hold.String() {
		t.Errorf("spoke1's shortcut to spoke2 holds %q, want %v", x.HoldingTime, phase3Hold)
	}
	tStop := time.Now() // the last traffic

	var gone time.Time
	err := e.poll(2*phase3Hold+4*time.Second, 100*time.Millisecond, func() error {
		if err := e.shortcutGone(lab.Spoke1, "10.0.0.12"); err != nil {
			return err
		}
		gone = time.Now()
		return nil
	})
	if err != nil {
		t.Fatalf("%v %v after the last traffic (holding time %v)", err, time.Since(tStop).Round(time.Millisecond), phase3Hold)
	}
	t.Logf("spoke1's idle shortcut expired %v after the last traffic, %v after the first ping (holding time %v)",
		gone.Sub(tStop).Round(time.Millisecond), gone.Sub(tFirst).Round(time.Millisecond), phase3Hold)
	if lived := gone.Sub(tFirst); lived < phase3Hold-500*time.Millisecond {
		t.Errorf("the shortcut lasted at most %v, less than its holding time %v", lived, phase3Hold)
	}
	if idle := gone.Sub(tStop); idle > 2*phase3Hold+time.Second {
		t.Errorf("the idle shortcut lasted %v after the last traffic; want at most about twice its holding time %v", idle, phase3Hold)
	}
	if line, err := e.logHas(lab.Spoke1, 2*time.Second, `msg="shortcut expired"`, "component=nhrp", "peer=10.0.0.12"); err != nil {
		t.Error(err)
	} else {
		t.Logf("spoke1 log: %s", line)
	}
	// spoke2's goes too (the mappings refresh each other only while used).
	if err := e.poll(phase3Hold, 100*time.Millisecond, func() error { return e.shortcutGone(lab.Spoke2, "10.0.0.11") }); err != nil {
		t.Error(err)
	}

	before := e.hairpinned()
	if err := e.l.Ping(e.ctx, lab.HostLAN1, flow12.Dst, 1); err != nil {
		t.Fatalf("after the expiry: %v", err)
	}
	if after := e.hairpinned(); after == before {
		t.Errorf("after the shortcut expired the ping did not cross the hub (hairpinned stays %d)", after)
	} else {
		t.Logf("after the expiry one ping crossed the hub again: hairpinned %d -> %d", before, after)
	}
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// establishDirect waits for the host-lan1 <-> host-lan2 shortcuts and
// proves them with pings.
func (e *env) establishDirect() {
	e.t.Helper()
	e.waitDirect(flow12, directLimit)
	e.waitDirect(flow21, directLimit)
	e.provedDirect(3, 0, flow12, flow21)
}

// stopSpoke2Purged stops spoke2 cleanly and requires spoke1 to drop its
// shortcut and mapping within purgeLimit; it returns how long that took.
func (e *env) stopSpoke2Purged() time.Duration {
	e.t.Helper()
	off := e.logSize(lab.Spoke1)
	t0 := time.Now()
	if err := e.l.Stop(lab.Spoke2); err != nil {
		e.t.Fatalf("stop spoke2: %v", err)
	}
	stopped := time.Since(t0)
	var took time.Duration
	if err := e.poll(purgeLimit, 20*time.Millisecond, func() error {
		err := e.shortcutGone(lab.Spoke1, "10.0.0.12")
		took = time.Since(t0)
		return err
	}); err != nil {
		e.t.Fatalf("spoke2 stopped (in %v); %v s later: %v", stopped.Round(time.Millisecond), purgeLimit, err)
	}
	e.t.Logf("spoke1 dropped its shortcut to spoke2 %v after spoke2's stop began (the stop took %v)", took.Round(time.Millisecond), stopped.Round(time.Millisecond))
	if line, err := e.logSince(lab.Spoke1, off, 2*time.Second, "msg=purged", "component=nhrp", "protocol=10.0.0.12"); err != nil {
		e.t.Error(err)
	} else {
		e.t.Logf("spoke1 log: %s", line)
	}
	if err := e.poll(4*time.Second, 50*time.Millisecond, func() error {
		_, err := e.hubPeersUp(lab.Spoke1, lab.Spoke3)
		return err
	}); err != nil {
		e.t.Errorf("spoke2 not purged from the hub: %v", err)
	}
	return took
}

// spoke1FallsBackToHub checks, with spoke2 gone, that spoke1 routes
// host-lan2 by the summary via the hub, and that its packets reach the hub
// (which has no spoke2 to give them to) and get no answer. The hub drops
// them as no_peer (a route to spoke2 but no mapping) or, once BGP has
// withdrawn spoke2's LAN, its kernel refuses them with the summary's
// unreachable route (ICMP destination unreachable sent, counted in the
// hub's /proc/net/snmp), instead of routing them out of the underlay.
func (e *env) spoke1FallsBackToHub() {
	e.t.Helper()
	rs, err := e.routes(lab.Spoke1)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range rs {
		if r.Source == "nhrp" {
			e.t.Errorf("spoke1 keeps an nhrp route with spoke2 gone: %s", routesString(rs))
		}
	}
	dropped := func() uint64 {
		d := e.stats(lab.Hub).DataPlane
		return d["no_peer"] + d["no_route"] + e.icmpUnreachablesSent(lab.Hub)
	}
	np0 := dropped()
	e.unreachable(pingCheck{lab.HostLAN1, lab.HostLAN2})
	if np1 := dropped(); np1 == np0 {
		e.t.Errorf("spoke1's packets for host-lan2 did not reach the hub (its no_peer + no_route + ICMP unreachables sent stays %d)", np1)
	} else {
		e.t.Logf("with spoke2 gone spoke1 sends host-lan2's packets to the hub, which drops them (no_peer + no_route + ICMP unreachables sent %d -> %d)", np0, np1)
	}
}

// A spoke that stops cleanly purges the shortcuts its peers hold (spoke1
// drops its route and mapping within purgeLimit) and its packets go back
// to the hub path; when it starts again, traffic goes direct again.
func TestPhase3PurgeOnSpokeShutdownAndBack(t *testing.T) {
	testenv.RequireRoot(t)
	e := newShortcutLab(t, 'p', lab.Options{Phase: 3})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	e.establishDirect()

	purged0 := e.stats(lab.Spoke1).NHRP["purges_received"]
	e.stopSpoke2Purged()
	if n := e.stats(lab.Spoke1).NHRP["purges_received"]; n == purged0 {
		t.Errorf("spoke1 counted no Purge Request")
	}
	e.spoke1FallsBackToHub()

	t0 := time.Now()
	if err := e.l.Start(lab.Spoke2); err != nil {
		t.Fatalf("restart spoke2: %v", err)
	}
	e.waitHubPeersUp(registerLimit, allSpokes...)
	e.waitDirect(flow12, directLimit)
	e.waitDirect(flow21, directLimit)
	t.Logf("direct again both ways %v after spoke2's restart", time.Since(t0).Round(time.Millisecond))
	e.checkEntry(lab.Spoke1, "10.0.0.12", exactly("198.51.100.65"), "gre")
	e.provedDirect(5, echoSize/4, flow12, flow21)
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// moveSpoke2 gives spoke2's wan0 the address addr (same /26, same gateway)
// instead of its own, and rewrites its config's tunnel.source.
func (e *env) moveSpoke2(addr string) {
	e.t.Helper()
	d, _ := lab.DaemonByName(lab.Spoke2)
	// ip addr del/add, ip route replace default, through netlink
	if err := e.l.Do(lab.Spoke2, func() error {
		wan, err := netlink.LinkByName(lab.IfWAN)
		if err != nil {
			return err
		}
		old, err := netlink.ParseAddr(d.WAN.String())
		if err != nil {
			return err
		}
		if err := netlink.AddrDel(wan, old); err != nil {
			return fmt.Errorf("deleting %s: %w", d.WAN, err)
		}
		moved, err := netlink.ParseAddr(fmt.Sprintf("%s/%d", addr, d.WAN.Bits()))
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(wan, moved); err != nil {
			return fmt.Errorf("adding %s: %w", moved, err)
		}
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: wan.Attrs().Index, Gw: d.Gateway.AsSlice()}); err != nil {
			return fmt.Errorf("default route via %s: %w", d.Gateway, err)
		}
		return nil
	}); err != nil {
		e.t.Fatalf("moving spoke2 to %s: %v", addr, err)
	}
	c, err := e.l.Config(lab.Spoke2)
	if err != nil {
		e.t.Fatal(err)
	}
	c.Tunnel.Source = addr
	if err := os.WriteFile(e.l.ConfigPath(lab.Spoke2), c.Marshal("spoke2 moved to "+addr+" by the e2e test"), 0o644); err != nil {
		e.t.Fatal(err)
	}
	addrs, err := e.l.Addrs(lab.Spoke2, lab.IfWAN)
	e.t.Logf("spoke2's wan0 now: %v %v", addrs, err)
}

// spoke2 stops, comes back on another NBMA address: spoke1's old shortcut
// is purged, the hub lists spoke2 at the new address, and spoke1 goes
// direct again, to the new address.
func TestPhase3PurgeOnNBMAChange(t *testing.T) {
	testenv.RequireRoot(t)
	const moved = "198.51.100.66"
	e := newShortcutLab(t, 'm', lab.Options{Phase: 3})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	e.establishDirect()
	e.checkEntry(lab.Spoke1, "10.0.0.12", exactly("198.51.100.65"), "gre")

	e.stopSpoke2Purged()
	e.moveSpoke2(moved)
	t0 := time.Now()
	if err := e.l.Start(lab.Spoke2); err != nil {
		t.Fatalf("restart spoke2: %v", err)
	}
	d := e.waitHubPeersUp(registerLimit, allSpokes...)
	if p, _ := peer(d, spokes[lab.Spoke2]); p.PeerNBMA != moved {
		t.Errorf("the hub lists spoke2 at %q, want %s", p.PeerNBMA, moved)
	}
	e.waitDirect(flow12, directLimit)
	e.waitDirect(flow21, directLimit)
	t.Logf("direct again both ways %v after spoke2's restart at %s", time.Since(t0).Round(time.Millisecond), moved)
	e.checkEntry(lab.Spoke1, "10.0.0.12", exactly(moved), "gre")
	e.checkEntry(lab.Spoke2, "10.0.0.11", exactly("198.51.100.1"), "gre")
	e.provedDirect(5, echoSize/4, flow12, flow21)
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// icmpUnreachablesSent is node's kernel count of ICMP destination
// unreachables sent (Icmp OutDestUnreachs in its namespace's /proc/net/snmp).
func (e *env) icmpUnreachablesSent(node string) uint64 {
	e.t.Helper()
	var n uint64
	if err := e.l.Do(node, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Icmp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i, name := range names {
				if name == "OutDestUnreachs" && i < len(f) {
					n, err = strconv.ParseUint(f[i], 10, 64)
					return err
				}
			}
		}
		return fmt.Errorf("no Icmp OutDestUnreachs in /proc/net/snmp")
	}); err != nil {
		e.t.Fatal(err)
	}
	return n
}
