package bgp

import (
	"net/netip"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

type drained map[netip.Prefix]struct {
	r       Route
	present bool
}

func drainAll(v *ribView, walk func(func(Route))) drained {
	out := drained{}
	v.drain(walk, func(p netip.Prefix, r Route, present bool) {
		if _, dup := out[p]; dup {
			panic("prefix reported twice in one drain")
		}
		out[p] = struct {
			r       Route
			present bool
		}{r, present}
	})
	return out
}

func noWalk(func(Route)) { panic("walk without an overflow") }

func route(p, nh, from string, as ...uint32) Route {
	return Route{Prefix: netip.MustParsePrefix(p), NextHop: netip.MustParseAddr(nh), Neighbor: netip.MustParseAddr(from), ASPath: as}
}

func TestRibViewChangeReplaceWithdraw(t *testing.T) {
	v := newRibView()
	a := route("10.1.0.0/24", "10.0.0.2", "10.0.0.1")
	b := route("10.2.0.0/24", "10.0.0.3", "10.0.0.1", 65003)
	v.apply(a.Prefix, a, true)
	v.apply(b.Prefix, b, true)
	got := drainAll(v, noWalk)
	if len(got) != 2 || !got[a.Prefix].present || !got[a.Prefix].r.Equal(a) || !got[b.Prefix].r.Equal(b) {
		t.Fatalf("first drain: %+v", got)
	}
	if got := drainAll(v, noWalk); len(got) != 0 {
		t.Fatalf("drain with nothing new: %+v", got)
	}

	// Replace a (new next hop), re-apply b unchanged, withdraw nothing yet.
	a2 := route("10.1.0.0/24", "10.0.0.4", "10.0.0.1")
	v.apply(a.Prefix, a2, true)
	v.apply(b.Prefix, b, true)
	got = drainAll(v, noWalk)
	if len(got) != 1 || !got[a.Prefix].r.Equal(a2) {
		t.Fatalf("replace: %+v (an unchanged path must not be reported)", got)
	}

	// Withdraw b; a change undone before the drain reports nothing; a
	// prefix never reported that goes away reports nothing.
	v.apply(b.Prefix, Route{}, false)
	c := route("10.3.0.0/24", "10.0.0.5", "10.0.0.1")
	v.apply(c.Prefix, c, true)
	v.apply(c.Prefix, Route{}, false)
	v.apply(a.Prefix, route("10.1.0.0/24", "10.0.0.9", "10.0.0.1"), true)
	v.apply(a.Prefix, a2, true)
	got = drainAll(v, noWalk)
	if len(got) != 1 || got[b.Prefix].present || got[b.Prefix].r.Prefix != b.Prefix {
		t.Fatalf("withdraw: %+v", got)
	}
	if p, r, ev, rs := v.stats(); p != 0 || r != 1 || ev != 9 || rs != 0 {
		t.Errorf("stats: pending %d reported %d events %d resyncs %d", p, r, ev, rs)
	}
}

func TestRibViewOverflowResyncs(t *testing.T) {
	v := newRibView()
	keep := route("10.1.0.0/24", "10.0.0.2", "10.0.0.1")
	gone := route("10.2.0.0/24", "10.0.0.3", "10.0.0.1")
	moved := route("10.3.0.0/24", "10.0.0.4", "10.0.0.1")
	for _, r := range []Route{keep, gone, moved} {
		v.apply(r.Prefix, r, true)
	}
	drainAll(v, noWalk)

	// A peer churns through more prefixes than the bound between drains.
	for i := 0; i <= pendingSlack+3; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		v.apply(p, Route{Prefix: p}, i%2 == 0)
	}
	if p, _, _, rs := v.stats(); p > pendingSlack+3 || rs != 1 {
		t.Fatalf("pending %d after overflow, resyncs %d", p, rs)
	}
	// The table now: keep as it was, moved elsewhere, gone gone, one new.
	moved2 := route("10.3.0.0/24", "10.0.0.7", "10.0.0.1")
	fresh := route("10.4.0.0/24", "10.0.0.8", "10.0.0.1")
	walks := 0
	got := drainAll(v, func(yield func(Route)) {
		walks++
		for _, r := range []Route{keep, moved2, fresh} {
			yield(r)
		}
	})
	if walks != 1 || len(got) != 3 || got[gone.Prefix].present || !got[moved.Prefix].r.Equal(moved2) || !got[fresh.Prefix].r.Equal(fresh) {
		t.Fatalf("resync drain (walks %d): %+v", walks, got)
	}
	if got := drainAll(v, noWalk); len(got) != 0 {
		t.Fatalf("after the resync: %+v", got)
	}
}

func TestPathConversion(t *testing.T) {
	nlri, _ := bgp.NewIPAddrPrefix(netip.MustParsePrefix("10.9.0.0/16"))
	nh, _ := bgp.NewPathAttributeNextHop(netip.MustParseAddr("10.0.0.7"))
	as := bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{
		bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65000, 65007}),
		bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SET, []uint32{65100}),
	})
	p := &apiutil.Path{Family: bgp.RF_IPv4_UC, Nlri: nlri, Attrs: []bgp.PathAttributeInterface{nh, as}, PeerAddress: netip.MustParseAddr("10.0.0.1")}
	prefix, ok := pathPrefix(p)
	if !ok || prefix != netip.MustParsePrefix("10.9.0.0/16") {
		t.Fatalf("prefix %v %v", prefix, ok)
	}
	r := pathRoute(prefix, p)
	if !r.Equal(route("10.9.0.0/16", "10.0.0.7", "10.0.0.1", 65000, 65007, 65100)) || isLocal(p) {
		t.Errorf("route %+v", r)
	}

	nlri6, _ := bgp.NewIPAddrPrefix(netip.MustParsePrefix("2001:db8:5::/48"))
	mp, _ := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv6_UC, []bgp.PathNLRI{{NLRI: nlri6}}, netip.MustParseAddr("2001:db8::7"))
	p6 := &apiutil.Path{Family: bgp.RF_IPv6_UC, Nlri: nlri6, Attrs: []bgp.PathAttributeInterface{mp}}
	if prefix, ok := pathPrefix(p6); !ok || pathRoute(prefix, p6).NextHop != netip.MustParseAddr("2001:db8::7") || !isLocal(p6) {
		t.Errorf("IPv6 path: %v %v %+v", prefix, ok, pathRoute(prefix, p6))
	}
	if _, ok := pathPrefix(&apiutil.Path{Family: bgp.RF_FS_IPv4_UC, Nlri: nlri}); ok {
		t.Error("a flowspec path was taken for unicast")
	}
	if _, ok := pathPrefix(nil); ok {
		t.Error("nil path")
	}
}
