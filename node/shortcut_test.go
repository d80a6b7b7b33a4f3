package node

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/nhrp/cache"
	"github.com/dmvpn/dmvpn/underlay/memnet"
)

// Phase 3: the hub advertises a summary and redirects; spokes resolve and
// install shortcut routes for the owner's prefix.
func phase3Hub() string {
	return strings.Replace(hubYAML, "  authentication: lab\n", "  authentication: lab\n  redirect: true\n", 1)
}

func phase3Spoke(i int, source, transport string) string {
	return strings.Replace(spokeYAML(i, source, transport, 42, "lab"), "  authentication: lab\n", "  authentication: lab\n  shortcut: true\n", 1)
}

// phase2Spoke routes every other spoke's LAN via that spoke's overlay
// address (the next hop a BGP route reflector would leave unchanged).
func phase2Spoke(i int, source string) string {
	var routes strings.Builder
	for j := 1; j <= 3; j++ {
		if j != i {
			fmt.Fprintf(&routes, "  - {prefix: 10.1.%d.0/24, via: 10.0.0.1%d}\n", j, j)
		}
	}
	routes.WriteString("  - {prefix: 10.1.0.0/24, via: 10.0.0.1}\n")
	y := spokeYAML(i, source, "gre", 42, "lab")
	return y[:strings.Index(y, "routes:")] + "routes:\n" + routes.String()
}

func shortcutVia(n *testNode, prefix, via string) bool {
	r, ok := n.n.FIB().Lookup(netip.MustParsePrefix(prefix).Addr())
	return ok && r.Source == fib.SourceNHRP && r.Prefix == netip.MustParsePrefix(prefix) && r.NextHop == netip.MustParseAddr(via)
}

func mapped(n *testNode, addr string) bool {
	e, ok := n.n.Cache().Get(netip.MustParseAddr(addr))
	return ok && e.Type == cache.Resolved
}

func TestPhase3RedirectAndShortcut(t *testing.T) {
	tn := newTestNet(t)
	hub := tn.start(phase3Hub(), "10.1.0.0/24")
	s1 := tn.start(phase3Spoke(1, "198.51.100.1", "gre"), "10.1.1.0/24")
	s2 := tn.start(phase3Spoke(2, "198.51.100.65", "gre"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return registered(s1) && registered(s2) })

	ping(t, s1, s2, "10.1.1.10", "10.1.2.10") // via the hub, which redirects
	eventually(t, "spoke1 shortcut to 10.1.2.0/24", func() bool { return shortcutVia(s1, "10.1.2.0/24", "10.0.0.12") })
	if !mapped(s2, "10.0.0.11") {
		t.Fatal("the owner did not install the requester's mapping")
	}
	if hub.n.Engine().Stats().RedirectsSent == 0 {
		t.Fatal("no Traffic Indication sent")
	}
	// The return direction is redirected too.
	ping(t, s2, s1, "10.1.2.10", "10.1.1.10")
	eventually(t, "spoke2 shortcut to 10.1.1.0/24", func() bool { return shortcutVia(s2, "10.1.1.0/24", "10.0.0.11") })

	before := hub.n.Plane().Stats().Hairpinned
	for i := 0; i < 5; i++ {
		ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
		ping(t, s2, s1, "10.1.2.10", "10.1.1.10")
	}
	if after := hub.n.Plane().Stats().Hairpinned; after != before {
		t.Fatalf("hub still relays spoke-to-spoke traffic: %d -> %d", before, after)
	}
	// Other destinations still follow the summary through the hub.
	if r, _ := s1.n.FIB().Lookup(netip.MustParseAddr("10.1.0.10")); r.NextHop != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("hub LAN route %+v", r)
	}
	if rs := s1.n.Routes(); !strings.Contains(fmt.Sprint(rs), "10.1.2.0/24") {
		t.Fatalf("show routes lacks the shortcut: %v", rs)
	}

	// `dmvpn clear nhrp` forgets shortcuts: the next packet crosses the
	// hub again (and is redirected again).
	if n := s1.n.ClearNHRP(); n == 0 {
		t.Fatal("clear removed nothing")
	}
	if shortcutVia(s1, "10.1.2.0/24", "10.0.0.12") || mapped(s1, "10.0.0.12") {
		t.Fatal("shortcut survived clear")
	}
	before = hub.n.Plane().Stats().Hairpinned
	ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
	if hub.n.Plane().Stats().Hairpinned == before {
		t.Fatal("after clear the packet did not cross the hub")
	}
	eventually(t, "shortcut back after clear", func() bool { return shortcutVia(s1, "10.1.2.0/24", "10.0.0.12") })

	// Used shortcuts are refreshed past their holding time (30 s)...
	for i := 0; i < 4; i++ {
		tn.advance(8 * time.Second)
		ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
	}
	if !shortcutVia(s1, "10.1.2.0/24", "10.0.0.12") {
		t.Fatal("a used shortcut expired")
	}
	// ...idle ones expire, and traffic falls back to the hub. A shortcut
	// used since its last refresh is refreshed once more, so it can live up
	// to 5/3 of the holding time after its last use.
	tn.advance(61 * time.Second)
	eventually(t, "idle shortcut expired", func() bool { return !shortcutVia(s1, "10.1.2.0/24", "10.0.0.12") })
	eventually(t, "spoke2's idle shortcut expired", func() bool { return !shortcutVia(s2, "10.1.1.0/24", "10.0.0.11") })
	before = hub.n.Plane().Stats().Hairpinned
	ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
	if hub.n.Plane().Stats().Hairpinned == before {
		t.Fatal("after expiry traffic did not go back through the hub")
	}
}

func TestPhase3PurgeWhenOwnerLeaves(t *testing.T) {
	tn := newTestNet(t)
	hub := tn.start(phase3Hub(), "10.1.0.0/24")
	s1 := tn.start(phase3Spoke(1, "198.51.100.1", "gre"), "10.1.1.0/24")
	s2 := tn.start(phase3Spoke(2, "198.51.100.65", "gre"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return registered(s1) && registered(s2) })
	ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
	eventually(t, "shortcut", func() bool { return shortcutVia(s1, "10.1.2.0/24", "10.0.0.12") })

	probes := hub.n.Engine().Stats().ProbesSent
	s2.stop(t)
	delete(tn.nodes, "spoke2")
	eventually(t, "spoke1's shortcut purged", func() bool { return !shortcutVia(s1, "10.1.2.0/24", "10.0.0.12") && !mapped(s1, "10.0.0.12") })

	// spoke2 comes back at another NBMA address: traffic goes via the hub
	// and then direct to the new address.
	// The hub still holds its old binding (the purge spoke2 sent on the
	// way out is only honoured once the old endpoint fails its liveness
	// probes), refuses the new address meanwhile, and accepts its retry.
	s2 = tn.start(phase3Spoke(2, "198.51.100.66", "gre"), "10.1.2.0/24")
	expectProbesThenPurge(t, tn, hub, probes)
	eventually(t, "old binding removed", func() bool {
		e, ok := hub.n.Cache().Get(netip.MustParseAddr("10.0.0.12"))
		return !ok || e.NBMA.Addr() == netip.MustParseAddr("198.51.100.66")
	})
	tn.advance(5 * time.Second) // spoke2's retry after the refusal
	eventually(t, "spoke2 back", func() bool { return registered(s2) })
	tn.advance(11 * time.Second) // past the negative-cache time of any failed attempt
	ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
	eventually(t, "new shortcut", func() bool {
		e, ok := s1.n.Cache().Get(netip.MustParseAddr("10.0.0.12"))
		return shortcutVia(s1, "10.1.2.0/24", "10.0.0.12") && ok && e.NBMA.Addr() == netip.MustParseAddr("198.51.100.66")
	})
}

func TestPhase2ResolveNextHop(t *testing.T) {
	tn := newTestNet(t)
	hub := tn.start(hubYAML, "10.1.0.0/24")
	s1 := tn.start(phase2Spoke(1, "198.51.100.1"), "10.1.1.0/24")
	s2 := tn.start(phase2Spoke(2, "198.51.100.65"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return registered(s1) && registered(s2) })

	ping(t, s1, s2, "10.1.1.10", "10.1.2.10") // first packets via the hub...
	if hub.n.Plane().Stats().Hairpinned == 0 {
		t.Fatal("the first packet did not go through the hub")
	}
	eventually(t, "next hop resolved", func() bool { return mapped(s1, "10.0.0.12") })
	if !mapped(s2, "10.0.0.11") {
		t.Fatal("owner did not learn the requester")
	}
	before := hub.n.Plane().Stats().Hairpinned
	for i := 0; i < 5; i++ { // ...then direct, both ways
		ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
		ping(t, s2, s1, "10.1.2.10", "10.1.1.10")
	}
	if hub.n.Plane().Stats().Hairpinned != before {
		t.Fatal("hub still relays after resolution")
	}
}

func TestPhase3ShortcutThroughNAT(t *testing.T) {
	tn := newTestNet(t)
	if err := tn.net.AddNAT(netip.MustParsePrefix("192.168.3.0/24"), netip.MustParseAddr("198.51.100.129"), memnet.NATModeUDPOnly); err != nil {
		t.Fatal(err)
	}
	hub := tn.start(phase3Hub(), "10.1.0.0/24")
	s1 := tn.start(phase3Spoke(1, "198.51.100.1", "gre"), "10.1.1.0/24")
	s3 := tn.start(phase3Spoke(3, "192.168.3.2", "udp"), "10.1.3.0/24")
	eventually(t, "registered", func() bool { return registered(s1) && registered(s3) })

	ping(t, s1, s3, "10.1.1.10", "10.1.3.10")
	ping(t, s3, s1, "10.1.3.10", "10.1.1.10")
	eventually(t, "shortcuts both ways", func() bool {
		return shortcutVia(s1, "10.1.3.0/24", "10.0.0.13") && shortcutVia(s3, "10.1.1.0/24", "10.0.0.11")
	})
	e, _ := s1.n.Cache().Get(netip.MustParseAddr("10.0.0.13"))
	if e.NBMA.Addr() != netip.MustParseAddr("198.51.100.129") || !e.NAT {
		t.Fatalf("spoke1's mapping for the NATed spoke: %+v", e)
	}
	before := hub.n.Plane().Stats().Hairpinned
	for i := 0; i < 5; i++ {
		ping(t, s1, s3, "10.1.1.10", "10.1.3.10")
		ping(t, s3, s1, "10.1.3.10", "10.1.1.10")
	}
	if hub.n.Plane().Stats().Hairpinned != before {
		t.Fatalf("hub still relays NATed traffic: %d -> %d", before, hub.n.Plane().Stats().Hairpinned)
	}
}
