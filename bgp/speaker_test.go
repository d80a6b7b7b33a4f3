package bgp

import (
	"context"
	"errors"
	"fmt"
	stdnet "net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// hasVia reports whether m has p with next hop nh.
func hasVia(m map[netip.Prefix]Route, p netip.Prefix, nh netip.Addr) bool {
	r, ok := m[p]
	return ok && r.NextHop == nh
}

// Phase 2, iBGP: a route-reflector hub with a dynamic range and no
// per-spoke configuration; every spoke learns every other spoke's LAN with
// the announcing spoke as next hop. A spoke added later is accepted as is;
// a spoke that stops is withdrawn everywhere.
func TestPhase2IBGPReflection(t *testing.T) {
	const net = 11
	port := freePort(t)
	hub := start(t, hubConfig(t, net, port, 65000))
	hubView := newView(hub)

	spokes := map[byte]*Speaker{}
	views := map[byte]*view{}
	for h := byte(2); h <= 4; h++ {
		spokes[h] = start(t, spokeConfig(t, net, h, 65000, port))
		views[h] = newView(spokes[h])
	}
	for h, v := range views {
		v.wait(t, "spoke learns the other spokes' LANs via them", func(m map[netip.Prefix]Route) bool {
			for o := byte(2); o <= 4; o++ {
				if o != h && !hasVia(m, lan(net, o), addr(net, o)) {
					return false
				}
			}
			return true
		})
		if _, own := v.m[lan(net, h)]; own {
			t.Errorf("spoke %d: Drain reported its own LAN: %s", h, fmtRoutes(v.m))
		}
		for o := byte(2); o <= 4; o++ {
			if r, ok := v.m[lan(net, o)]; ok && (r.Neighbor != addr(net, 1) || len(r.ASPath) != 0) {
				t.Errorf("spoke %d: %v learned from %v with AS path %v, want from the hub with an empty path", h, lan(net, o), r.Neighbor, r.ASPath)
			}
		}
	}
	hubView.wait(t, "hub learns every spoke LAN", func(m map[netip.Prefix]Route) bool {
		return hasVia(m, lan(net, 2), addr(net, 2)) && hasVia(m, lan(net, 3), addr(net, 3)) && hasVia(m, lan(net, 4), addr(net, 4))
	})
	for _, n := range hub.Neighbors() {
		if !n.Dynamic || n.State != StateEstablished || n.AS != 65000 || n.Received != 1 {
			t.Errorf("hub neighbor %+v: want dynamic, Established, AS 65000, 1 prefix received", n)
		}
	}
	if n, ok := neighbor(spokes[2], addr(net, 1)); !ok || n.Dynamic || n.Description != "hub" || n.Received != 2 || n.LocalAddress != addr(net, 2) {
		t.Errorf("spoke 2's hub session: %+v (found %v)", n, ok)
	}

	// A new spoke: nothing changes at the hub.
	spokes[5] = start(t, spokeConfig(t, net, 5, 65000, port))
	views[5] = newView(spokes[5])
	for h, v := range views {
		v.wait(t, "every spoke learns the others, the late one included", func(m map[netip.Prefix]Route) bool {
			for o := byte(2); o <= 5; o++ {
				if o != h && !hasVia(m, lan(net, o), addr(net, o)) {
					return false
				}
			}
			return true
		})
	}

	// A spoke stops (Cease): its LAN is withdrawn at the hub and the others.
	spokes[4].Stop()
	delete(views, 4)
	hubView.wait(t, "hub withdraws the stopped spoke's LAN", func(m map[netip.Prefix]Route) bool {
		_, ok := m[lan(net, 4)]
		return !ok
	})
	for h, v := range views {
		v.wait(t, "spokes withdraw the stopped spoke's LAN", func(m map[netip.Prefix]Route) bool {
			_, ok := m[lan(net, 4)]
			return !ok && (h == 5 || hasVia(m, lan(net, 5), addr(net, 5)))
		})
	}

	// The hub's table: every LAN once, best, learned; nothing of its own.
	var lans []netip.Prefix
	for _, r := range hub.Routes() {
		if r.Local || !r.Best {
			t.Errorf("hub route %+v: want only best learned paths", r)
		}
		lans = append(lans, r.Prefix)
	}
	slices.SortFunc(lans, netip.Prefix.Compare)
	want := []netip.Prefix{lan(net, 2), lan(net, 3), lan(net, 5)}
	if !slices.Equal(lans, want) {
		t.Errorf("hub Routes: %v, want %v", lans, want)
	}
}

// Phase 3: the hub sends its spokes only its aggregate, with itself as
// next hop; more-specifics inside it stay at the hub, which learns them
// all.
func TestPhase3AggregateNextHopSelf(t *testing.T) {
	const net = 21
	port := freePort(t)
	agg := netip.MustParsePrefix("10.0.0.0/8")
	hc := hubConfig(t, net, port, 65000)
	hc.Aggregates = []netip.Prefix{agg}
	hc.NextHopSelf = true
	hub := start(t, hc)
	hubView := newView(hub)
	views := map[byte]*view{}
	for h := byte(2); h <= 4; h++ {
		views[h] = newView(start(t, spokeConfig(t, net, h, 65000, port)))
	}
	hubView.wait(t, "hub learns every spoke LAN via the spoke", func(m map[netip.Prefix]Route) bool {
		return hasVia(m, lan(net, 2), addr(net, 2)) && hasVia(m, lan(net, 3), addr(net, 3)) && hasVia(m, lan(net, 4), addr(net, 4))
	})
	if _, ok := hubView.m[agg]; ok {
		t.Errorf("hub's Drain reported its own aggregate")
	}
	// Everything the hub learned so far was processed before this
	// announcement, so once a spoke has it, the spoke has whatever else
	// the hub was going to send it.
	sentinel := netip.MustParsePrefix("192.0.2.0/24")
	if err := hub.Announce(sentinel); err != nil {
		t.Fatal(err)
	}
	for h, v := range views {
		v.wait(t, "spoke learns the aggregate and the hub's own route via the hub", func(m map[netip.Prefix]Route) bool {
			return hasVia(m, agg, addr(net, 1)) && hasVia(m, sentinel, addr(net, 1))
		})
		if len(v.m) != 2 {
			t.Errorf("spoke %d learned %s; want only %v and %v (summary-only)", h, fmtRoutes(v.m), agg, sentinel)
		}
	}
	var sawAgg bool
	for _, r := range hub.Routes() {
		if r.Prefix == agg {
			sawAgg = r.Local && r.Best
		}
	}
	if !sawAgg {
		t.Errorf("hub's Routes lacks its aggregate as a best local path: %+v", hub.Routes())
	}
}

// Phase 2 with eBGP spokes (each its own AS) and an iBGP one, all from one
// any-AS range: the next hop stays the announcing spoke's.
func TestPhase2EBGPNextHopUnchanged(t *testing.T) {
	const net = 31
	port := freePort(t)
	hub := start(t, hubConfig(t, net, port, 0))
	views := map[byte]*view{}
	as := map[byte]uint32{2: 65002, 3: 65003, 4: 65000}
	for h := byte(2); h <= 4; h++ {
		views[h] = newView(start(t, spokeConfig(t, net, h, as[h], port)))
	}
	wantPath := func(from, to byte) []uint32 {
		var p []uint32
		if as[to] != 65000 {
			p = append(p, 65000) // the hub, on the way to an eBGP spoke
		}
		if as[from] != 65000 {
			p = append(p, as[from])
		}
		return p
	}
	for h, v := range views {
		v.wait(t, "spoke learns the others' LANs with their own next hop", func(m map[netip.Prefix]Route) bool {
			for o := byte(2); o <= 4; o++ {
				if o != h && !hasVia(m, lan(net, o), addr(net, o)) {
					return false
				}
			}
			return true
		})
		for o := byte(2); o <= 4; o++ {
			if o == h {
				continue
			}
			if got := v.m[lan(net, o)].ASPath; !slices.Equal(got, wantPath(o, h)) {
				t.Errorf("spoke %d (AS %d) has %v with AS path %v, want %v", h, as[h], lan(net, o), got, wantPath(o, h))
			}
		}
	}
	for h := byte(2); h <= 4; h++ {
		n, ok := neighbor(hub, addr(net, h))
		if !ok || !n.Dynamic || n.State != StateEstablished || n.AS != as[h] {
			t.Errorf("hub's view of spoke %d: %+v, want dynamic, Established, AS %d", h, n, as[h])
		}
	}
}

// A spoke with the wrong AS, and a spoke expecting the wrong AS of the hub:
// LastError says so, on both sides.
func TestWrongASLastError(t *testing.T) {
	const net = 41
	port := freePort(t)
	hub := start(t, hubConfig(t, net, port, 65000))
	wrongOwn := start(t, spokeConfig(t, net, 2, 65009, port))
	sc := spokeConfig(t, net, 3, 65000, port)
	sc.Neighbors[0].AS = 65099
	wrongPeer := start(t, sc)

	errOf := func(s *Speaker, a netip.Addr) string {
		n, _ := neighbor(s, a)
		return n.LastError
	}
	waitCond(t, "spoke with AS 65009 learns why the hub refuses it", func() bool {
		e := errOf(wrongOwn, addr(net, 1))
		return strings.Contains(e, "refused our OPEN") && strings.Contains(e, "bad peer AS") && strings.Contains(e, "65009")
	}, fmtNeighbors(wrongOwn))
	waitCond(t, "spoke expecting AS 65099 says the hub's AS is not that", func() bool {
		e := errOf(wrongPeer, addr(net, 1))
		return strings.Contains(e, "bad peer AS") && strings.Contains(e, "65099")
	}, fmtNeighbors(wrongPeer))
	waitCond(t, "the hub shows the refused dynamic peer and why", func() bool {
		n, ok := neighbor(hub, addr(net, 2))
		return ok && n.Dynamic && n.State != StateEstablished && strings.Contains(n.LastError, "bad peer AS") && strings.Contains(n.LastError, "65000")
	}, fmtNeighbors(hub))
	for _, s := range []*Speaker{wrongOwn, wrongPeer} {
		if n, _ := neighbor(s, addr(net, 1)); n.State == StateEstablished {
			t.Errorf("%v: session up despite the AS mismatch", s.cfg.RouterID)
		}
	}
}

// Nothing listens at the neighbor: LastError says connection refused.
func TestConnectionRefusedLastError(t *testing.T) {
	const net = 42
	port := freePort(t)
	s := start(t, spokeConfig(t, net, 2, 65000, port))
	waitCond(t, "LastError explains the refused connection", func() bool {
		n, _ := neighbor(s, addr(net, 1))
		return strings.Contains(n.LastError, "connection refused") && strings.Contains(n.LastError, addr(net, 1).String())
	}, fmtNeighbors(s))
}

// TCP MD5: the same password comes up; another or none never gets past the
// handshake, and LastError names the likely cause.
func TestMD5Password(t *testing.T) {
	const net = 43
	port := freePort(t)
	hc := hubConfig(t, net, port, 65000)
	hc.Password = "dmvpn-secret"
	start(t, hc)
	good := spokeConfig(t, net, 2, 65000, port)
	good.Password = "dmvpn-secret"
	bad := spokeConfig(t, net, 3, 65000, port)
	bad.Password = "not-the-secret"
	none := spokeConfig(t, net, 4, 65000, port)
	sGood, sBad, sNone := start(t, good), start(t, bad), start(t, none)

	waitCond(t, "the spoke with the right password comes up", established(sGood, addr(net, 1)), fmtNeighbors(sGood))
	waitCond(t, "the spoke with a wrong password is told it may be the password", func() bool {
		n, _ := neighbor(sBad, addr(net, 1))
		return strings.Contains(n.LastError, "no answer") && strings.Contains(n.LastError, "MD5 password differs")
	}, fmtNeighbors(sBad))
	waitCond(t, "the spoke without a password is told the hub may need one", func() bool {
		n, _ := neighbor(sNone, addr(net, 1))
		return strings.Contains(n.LastError, "no answer") && strings.Contains(n.LastError, "requires a TCP MD5 password")
	}, fmtNeighbors(sNone))
	for _, s := range []*Speaker{sBad, sNone} {
		if n, _ := neighbor(s, addr(net, 1)); n.State == StateEstablished {
			t.Errorf("%v: up with the wrong password", s.cfg.RouterID)
		}
	}
}

// Announce and Withdraw reach the peers; SetNeighbors adds and removes
// sessions, and what a removed session taught us is withdrawn.
func TestAnnounceWithdrawSetNeighbors(t *testing.T) {
	const net = 51
	port := freePort(t)
	hub := start(t, hubConfig(t, net, port, 65000))
	ac := spokeConfig(t, net, 2, 65000, port)
	hubNeighbors := ac.Neighbors
	ac.Neighbors, ac.Networks = nil, nil
	a := start(t, ac)
	b := start(t, spokeConfig(t, net, 3, 65000, port))
	av, bv, hv := newView(a), newView(b), newView(hub)

	if st := a.Stats(); st.Neighbors != 0 {
		t.Fatalf("spoke without neighbors: %+v", st)
	}
	if err := a.SetNeighbors(hubNeighbors); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "SetNeighbors brings the session up", established(a, addr(net, 1)), fmtNeighbors(a))
	av.wait(t, "the new session brings the other spoke's LAN", func(m map[netip.Prefix]Route) bool {
		return hasVia(m, lan(net, 3), addr(net, 3))
	})

	shortcut := netip.MustParsePrefix("10.99.0.0/16")
	for _, p := range []netip.Prefix{lan(net, 2), shortcut, shortcut} {
		if err := a.Announce(p); err != nil {
			t.Fatalf("Announce(%v): %v", p, err)
		}
	}
	bv.wait(t, "the other spoke learns both announcements via the announcer", func(m map[netip.Prefix]Route) bool {
		return hasVia(m, lan(net, 2), addr(net, 2)) && hasVia(m, shortcut, addr(net, 2))
	})
	if err := a.Withdraw(shortcut); err != nil {
		t.Fatal(err)
	}
	if err := a.Withdraw(netip.MustParsePrefix("192.0.2.0/24")); err != nil {
		t.Errorf("Withdraw of a prefix never announced: %v, want nil", err)
	}
	bv.wait(t, "the withdrawal reaches the other spoke, the LAN stays", func(m map[netip.Prefix]Route) bool {
		_, ok := m[shortcut]
		return !ok && hasVia(m, lan(net, 2), addr(net, 2))
	})
	hv.wait(t, "the hub has the LAN and not the withdrawn prefix", func(m map[netip.Prefix]Route) bool {
		_, ok := m[shortcut]
		return !ok && hasVia(m, lan(net, 2), addr(net, 2))
	})

	if err := a.Announce(netip.Prefix{}); !errors.Is(err, ErrBadPrefix) {
		t.Errorf("Announce(invalid) = %v, want ErrBadPrefix", err)
	}
	if err := a.SetNeighbors([]Neighbor{{Address: addr(net, 1)}}); !errors.Is(err, ErrConfig) {
		t.Errorf("SetNeighbors without an AS = %v, want a ConfigError", err)
	} else if n, _ := neighbor(a, addr(net, 1)); n.State != StateEstablished {
		t.Errorf("a refused SetNeighbors changed the session: %+v", n)
	}

	if err := a.SetNeighbors(nil); err != nil {
		t.Fatal(err)
	}
	av.wait(t, "removing the session withdraws what it taught", func(m map[netip.Prefix]Route) bool { return len(m) == 0 })
	bv.wait(t, "the other spoke loses the removed spoke's LAN", func(m map[netip.Prefix]Route) bool {
		_, ok := m[lan(net, 2)]
		return !ok
	})
	if ns := a.Neighbors(); len(ns) != 0 {
		t.Errorf("Neighbors after SetNeighbors(nil): %+v", ns)
	}
	waitCond(t, "the hub no longer counts the removed spoke", func() bool {
		st := hub.Stats()
		return st.Established == 1
	}, fmtNeighbors(hub))
}

// Drain reports changes, replacements and withdrawals of learned best
// paths, and never our own routes: when our own path becomes the best one,
// the learned one is reported gone.
func TestDrainSemantics(t *testing.T) {
	const net = 61
	port := freePort(t)
	hub := start(t, hubConfig(t, net, port, 65000))
	shared := netip.MustParsePrefix("10.61.0.0/24")
	spokes := map[byte]*Speaker{}
	for h := byte(2); h <= 3; h++ {
		c := spokeConfig(t, net, h, 65000, port)
		c.Networks = append(c.Networks, shared)
		spokes[h] = start(t, c)
	}

	type call struct {
		r       Route
		present bool
	}
	learned := map[netip.Prefix]Route{}
	var calls []call
	drain := func() {
		hub.Drain(func(p netip.Prefix, r Route, present bool) {
			if r.Prefix != p {
				t.Errorf("Drain(%v) with Route for %v", p, r.Prefix)
			}
			calls = append(calls, call{r, present})
			if present {
				learned[p] = r
			} else {
				delete(learned, p)
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		waitCond(t, what, func() bool { drain(); return cond() }, func() string { return fmtRoutes(learned) })
	}
	waitFor("both spokes' paths, the shared prefix from one of them", func() bool {
		return learned[shared].Neighbor.IsValid() && hasVia(learned, lan(net, 2), addr(net, 2)) && hasVia(learned, lan(net, 3), addr(net, 3))
	})
	winner := learned[shared].Neighbor
	other := addr(net, 2)
	if winner == other {
		other = addr(net, 3)
	}
	var ours int
	for _, r := range hub.Routes() {
		if r.Prefix == shared && !r.Local {
			ours++
		}
	}
	if ours != 2 {
		t.Errorf("hub Routes has %d paths for %v, want 2", ours, shared)
	}

	// Our own route is never reported; when it is the best path for a
	// learned prefix, that prefix is reported gone, and back when we
	// withdraw ours.
	own := netip.MustParsePrefix("192.0.2.0/24")
	calls = nil
	if err := hub.Announce(own); err != nil {
		t.Fatal(err)
	}
	if err := hub.Announce(shared); err != nil {
		t.Fatal(err)
	}
	waitFor("our path for the shared prefix hides the learned one", func() bool {
		_, ok := learned[shared]
		return !ok
	})
	if err := hub.Withdraw(shared); err != nil {
		t.Fatal(err)
	}
	waitFor("withdrawing ours brings the learned one back", func() bool {
		return learned[shared].Neighbor.IsValid()
	})
	for _, c := range calls {
		if c.r.Prefix == own {
			t.Errorf("Drain reported our own route %+v", c)
		}
	}
	winner = learned[shared].Neighbor
	other = addr(net, 2)
	if winner == other {
		other = addr(net, 3)
	}

	// Replace: the winner goes; the other spoke's path takes over,
	// reported as a change, never as a withdrawal.
	calls = nil
	spokes[winner.As4()[3]].Stop()
	waitFor("the other spoke's path replaces the stopped winner's", func() bool {
		return learned[shared].Neighbor == other
	})
	for _, c := range calls {
		if c.r.Prefix == shared && !c.present {
			t.Errorf("the replacement was reported as a withdrawal first: %+v", calls)
		}
	}

	// Withdraw: the last spoke goes; everything it taught is reported gone.
	spokes[other.As4()[3]].Stop()
	waitFor("everything learned is withdrawn", func() bool { return len(learned) == 0 })

	// Nothing pending: a Drain now reports nothing.
	calls = nil
	drain()
	if len(calls) != 0 {
		t.Errorf("Drain with nothing changed reported %+v", calls)
	}
}

// Graceful restart: Stop closes the sessions without a Cease, so the
// neighbors keep our routes (stale) instead of withdrawing them, and the
// restarted speaker takes over.
func TestGracefulRestartStop(t *testing.T) {
	const net = 71
	port := freePort(t)
	hc := hubConfig(t, net, port, 65000)
	hc.GracefulRestart, hc.RestartTime = true, 60*time.Second
	hub, err := Start(context.Background(), hc)
	if err != nil {
		t.Fatal(err)
	}
	var spokes []*Speaker
	for h := byte(2); h <= 3; h++ {
		c := spokeConfig(t, net, h, 65000, port)
		c.GracefulRestart, c.RestartTime = true, 60*time.Second
		spokes = append(spokes, start(t, c))
	}
	v := newView(spokes[0])
	v.wait(t, "spoke 2 learns spoke 3's LAN", func(m map[netip.Prefix]Route) bool {
		return hasVia(m, lan(net, 3), addr(net, 3))
	})

	hub.Stop()
	// GoBGP reports a session down after the withdrawals it causes, on the
	// same event queue; so once the spoke sees the session down, a
	// withdrawal would already be pending.
	waitCond(t, "spoke 2 sees the hub go", func() bool {
		return spokes[0].Stats().Established == 0
	}, fmtNeighbors(spokes[0]))
	v.drain()
	if !hasVia(v.m, lan(net, 3), addr(net, 3)) {
		t.Fatalf("spoke 2 withdrew spoke 3's LAN when the hub stopped gracefully: %s", fmtRoutes(v.m))
	}
	if n, _ := neighbor(spokes[0], addr(net, 1)); !strings.Contains(n.LastError, "graceful restart") {
		t.Errorf("LastError while the hub restarts: %q", n.LastError)
	}

	start(t, hc)
	waitCond(t, "spoke 2 is back with the restarted hub", established(spokes[0], addr(net, 1)), fmtNeighbors(spokes[0]))
	v.wait(t, "spoke 2 has spoke 3's LAN from the restarted hub", func(m map[netip.Prefix]Route) bool {
		return hasVia(m, lan(net, 3), addr(net, 3)) && spokes[1].Stats().Established == 1
	})
}

// A static neighbor inside a dynamic range (a second hub on the tunnel
// subnet) gets every route with its own next hop, not the summary-only,
// next-hop-self treatment of the spokes.
func TestStaticNeighborInsideDynamicRange(t *testing.T) {
	const net = 81
	port := freePort(t)
	agg := netip.MustParsePrefix("10.0.0.0/8")
	hc := hubConfig(t, net, port, 65000)
	hc.Aggregates, hc.NextHopSelf = []netip.Prefix{agg}, true
	hc.Neighbors = []Neighbor{{Address: addr(net, 9), AS: 65000, Port: uint16(port), Description: "hub 2"}}
	start(t, hc)
	hub2 := start(t, spokeConfig(t, net, 9, 65000, port)) // peers with hub 1, originates 10.81.9.0/24
	spoke := start(t, spokeConfig(t, net, 2, 65000, port))
	h2v, sv := newView(hub2), newView(spoke)
	h2v.wait(t, "hub 2 gets the spoke's LAN with the spoke as next hop, and the aggregate", func(m map[netip.Prefix]Route) bool {
		return hasVia(m, lan(net, 2), addr(net, 2)) && hasVia(m, agg, addr(net, 1))
	})
	sv.wait(t, "the spoke gets the aggregate only, via hub 1", func(m map[netip.Prefix]Route) bool {
		return hasVia(m, agg, addr(net, 1))
	})
	if _, ok := sv.m[lan(net, 9)]; ok {
		t.Errorf("the spoke got hub 2's LAN inside the aggregate: %s", fmtRoutes(sv.m))
	}
}

// countStacks counts the goroutines whose stack mentions s.
func countStacks(s string) int {
	buf := make([]byte, 16<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, s) {
			n++
		}
	}
	return n
}

// Stop ends every goroutine of GoBGP's, except the known leak of GoBGP
// v4.8.0: at most one outgoing-queue goroutine per session end (see
// TestMain). A speaker whose neighbor never came up leaves nothing.
func TestGoroutinesAfterStop(t *testing.T) {
	const net = 91
	port := freePort(t)
	noGoBGP := func() bool { return countStacks("osrg/gobgp") == 0 }
	waitCond(t, "earlier tests' GoBGP goroutines end", noGoBGP, func() string { return "" })
	queues := countStacks("infiniteBuffer(")

	hub, err := Start(context.Background(), hubConfig(t, net, port, 65000))
	if err != nil {
		t.Fatal(err)
	}
	var spokes []*Speaker
	for h := byte(2); h <= 3; h++ {
		s, err := Start(context.Background(), spokeConfig(t, net, h, 65000, port))
		if err != nil {
			t.Fatal(err)
		}
		spokes = append(spokes, s)
	}
	v := newView(spokes[0])
	v.wait(t, "routes flow", func(m map[netip.Prefix]Route) bool { return hasVia(m, lan(net, 3), addr(net, 3)) })
	for _, s := range spokes {
		s.Stop()
	}
	hub.Stop()
	hub.Stop() // twice is fine
	waitCond(t, "no GoBGP goroutine left after Stop", noGoBGP, func() string { return fmt.Sprint(countStacks("osrg/gobgp"), " left") })
	// Two sessions, each with a queue at both ends.
	if leaked := countStacks("infiniteBuffer(") - queues; leaked > 4 {
		t.Errorf("%d outgoing queues left for 2 sessions; GoBGP's known leak is at most one per session end", leaked)
	} else {
		t.Logf("GoBGP left %d outgoing queue goroutines for 2 sessions (4 session ends)", leaked)
	}

	queues = countStacks("infiniteBuffer(")
	s, err := Start(context.Background(), spokeConfig(t, net, 4, 65000, port))
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	waitCond(t, "a static-only speaker leaves nothing", func() bool {
		return noGoBGP() && countStacks("infiniteBuffer(") == queues
	}, func() string { return fmt.Sprint(countStacks("infiniteBuffer(")-queues, " queues left") })
	if s.Neighbors() != nil || s.Routes() != nil {
		t.Error("a stopped speaker still lists neighbors or routes")
	}
	if err := s.Announce(lan(net, 4)); !errors.Is(err, ErrStopped) {
		t.Errorf("Announce after Stop = %v, want ErrStopped", err)
	}
}

// Start fails with the reason, and leaves nothing running.
func TestStartErrors(t *testing.T) {
	const net = 92
	l, err := stdnet.Listen("tcp", netip.AddrPortFrom(addr(net, 1), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := int32(l.Addr().(*stdnet.TCPAddr).Port)

	_, err = Start(context.Background(), hubConfig(t, net, port, 65000))
	var oe *OpError
	if !errors.As(err, &oe) || oe.Op != "listen on" || !strings.Contains(err.Error(), "address already in use") ||
		!strings.Contains(err.Error(), netip.AddrPortFrom(addr(net, 1), uint16(port)).String()) {
		t.Errorf("Start on a port in use: %v", err)
	}

	c := hubConfig(t, net, freePort(t), 65000)
	c.BindDevice = "nosuchdev0"
	if _, err := Start(context.Background(), c); !errors.As(err, &oe) || !strings.Contains(err.Error(), "no such device") {
		t.Errorf("Start bound to a missing device: %v", err)
	}

	c = hubConfig(t, net, freePort(t), 65000)
	c.HoldTime = 2 * time.Second
	var ce *ConfigError
	if _, err := Start(context.Background(), c); !errors.As(err, &ce) || ce.Field != "HoldTime" {
		t.Errorf("Start with hold time 2s: %v", err)
	}
}

// MaxPrefixes bounds what one neighbor may send: past it the session is
// closed, both ends say why, and the table never holds more.
func TestMaxPrefixes(t *testing.T) {
	const net = 93
	port := freePort(t)
	hc := hubConfig(t, net, port, 65000)
	hc.MaxPrefixes = 2
	hub := start(t, hc)
	sc := spokeConfig(t, net, 2, 65000, port)
	sc.Networks = []netip.Prefix{lan(net, 2), lan(net, 3), lan(net, 4)}
	spoke := start(t, sc)
	waitCond(t, "the spoke is told it sent too many prefixes", func() bool {
		n, _ := neighbor(spoke, addr(net, 1))
		return strings.Contains(n.LastError, "maximum number of prefixes")
	}, fmtNeighbors(spoke))
	waitCond(t, "the hub says why it closed the session", func() bool {
		n, _ := neighbor(hub, addr(net, 2))
		return strings.Contains(n.LastError, "more than 2 (MaxPrefixes)")
	}, fmtNeighbors(hub))
	hv := newView(hub)
	hv.drain()
	if len(hv.m) > 2 {
		t.Errorf("the hub holds more routes from one neighbor than its limit: %s", fmtRoutes(hv.m))
	}
}

// SetNetworks (a reload of Config.Networks) and Announce (redistributed
// routes) are independent reasons to originate a prefix: the route stays
// until both are gone.
func TestSetNetworksAndAnnounce(t *testing.T) {
	const net = 94
	port := freePort(t)
	hv := newView(start(t, hubConfig(t, net, port, 65000)))
	a, b := lan(net, 2), lan(net, 3)
	spoke := start(t, spokeConfig(t, net, 2, 65000, port)) // Networks: [a]
	has := func(want ...netip.Prefix) func(map[netip.Prefix]Route) bool {
		return func(m map[netip.Prefix]Route) bool {
			if len(m) != len(want) {
				return false
			}
			for _, p := range want {
				if !hasVia(m, p, addr(net, 2)) {
					return false
				}
			}
			return true
		}
	}
	hv.wait(t, "the configured network", has(a))
	if err := spoke.Announce(a); err != nil {
		t.Fatal(err)
	}
	if err := spoke.SetNetworks([]netip.Prefix{b}); err != nil {
		t.Fatal(err)
	}
	hv.wait(t, "a stays (announced), b is new", has(a, b))
	if err := spoke.Withdraw(a); err != nil {
		t.Fatal(err)
	}
	hv.wait(t, "a goes with its last reason", has(b))
	if err := spoke.SetNetworks([]netip.Prefix{b, b}); !errors.Is(err, ErrConfig) {
		t.Errorf("SetNetworks with a duplicate = %v, want a ConfigError", err)
	}
	if err := spoke.SetNetworks(nil); err != nil {
		t.Fatal(err)
	}
	hv.wait(t, "no networks, nothing announced", has())
}
