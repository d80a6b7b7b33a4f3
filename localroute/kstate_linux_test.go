package localroute

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The state machine alone, fed synthetic notifications (no root needed).

const (
	tunIdx = 7
	lanIdx = 3
	own    = 0x44
)

type nh struct {
	link int
	gw   string
	dead bool
}

// rt builds a main-table unicast route notification.
func rt(dst string, proto, metric int, hops ...nh) *netlink.Route {
	p := netip.MustParsePrefix(dst)
	r := &netlink.Route{Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST, Protocol: netlink.RouteProtocol(proto), Priority: metric,
		Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is4() {
		r.Family = unix.AF_INET
	} else {
		r.Family = unix.AF_INET6
	}
	ip := func(s string) net.IP {
		if s == "" {
			return nil
		}
		return netip.MustParseAddr(s).AsSlice()
	}
	if len(hops) == 1 {
		r.LinkIndex, r.Gw = hops[0].link, ip(hops[0].gw)
		if hops[0].dead {
			r.Flags |= unix.RTNH_F_DEAD
		}
		return r
	}
	for _, h := range hops {
		info := &netlink.NexthopInfo{LinkIndex: h.link, Gw: ip(h.gw)}
		if h.dead {
			info.Flags = unix.RTNH_F_DEAD
		}
		r.MultiPath = append(r.MultiPath, info)
	}
	return r
}

func newTestState(subnet string) *kstate {
	return newKState(tunIdx, netip.MustParsePrefix(subnet), own)
}

// step applies a notification and returns the overlay change it caused.
type change struct {
	r       OverlayRoute
	present bool
}

func step(t *testing.T, s *kstate, typ uint16, flags uint16, r *netlink.Route) []change {
	t.Helper()
	p, ok := s.apply(typ, flags, r)
	if !ok {
		return nil
	}
	if r, present, changed := s.overlayChange(p); changed {
		return []change{{r, present}}
	}
	return nil
}

func ov(prefix, gw string, proto int, metric uint32) OverlayRoute {
	return OverlayRoute{Prefix: netip.MustParsePrefix(prefix), Gateway: netip.MustParseAddr(gw), Protocol: proto, Metric: metric}
}

func expect(t *testing.T, what string, got []change, want ...change) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: changes %+v, want %+v", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: change %d is %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

func TestStateOverlayRoutesIPv4(t *testing.T) {
	s := newTestState("10.0.0.0/24")
	const bgp, ospf = unix.RTPROT_BGP, unix.RTPROT_OSPF
	newR, delR, repl := uint16(unix.RTM_NEWROUTE), uint16(unix.RTM_DELROUTE), uint16(unix.NLM_F_REPLACE)

	expect(t, "add", step(t, s, newR, 0, rt("10.1.0.0/16", bgp, 20, nh{tunIdx, "10.0.0.1", false})),
		change{ov("10.1.0.0/16", "10.0.0.1", bgp, 20), true})
	expect(t, "same again", step(t, s, newR, 0, rt("10.1.0.0/16", bgp, 20, nh{tunIdx, "10.0.0.1", false})))
	expect(t, "replace gateway", step(t, s, newR, repl, rt("10.1.0.0/16", bgp, 20, nh{tunIdx, "10.0.0.2", false})),
		change{ov("10.1.0.0/16", "10.0.0.2", bgp, 20), true})
	expect(t, "replace: gateway off the subnet", step(t, s, newR, repl, rt("10.1.0.0/16", bgp, 20, nh{tunIdx, "172.16.0.1", false})),
		change{ov("10.1.0.0/16", "10.0.0.2", bgp, 20), false})
	expect(t, "replace: back on the subnet", step(t, s, newR, repl, rt("10.1.0.0/16", bgp, 20, nh{tunIdx, "10.0.0.3", false})),
		change{ov("10.1.0.0/16", "10.0.0.3", bgp, 20), true})
	expect(t, "replace: another device", step(t, s, newR, repl, rt("10.1.0.0/16", bgp, 20, nh{lanIdx, "10.0.0.3", false})),
		change{ov("10.1.0.0/16", "10.0.0.3", bgp, 20), false})
	if e, _ := s.entryFor(netip.MustParsePrefix("10.1.0.0/16")); e.viaTunnel {
		t.Fatal("a route out of the LAN is via the tunnel")
	}

	// ECMP: the first live next hop through the overlay device with a
	// gateway on the subnet.
	expect(t, "multipath", step(t, s, newR, 0, rt("10.2.0.0/16", ospf, 20,
		nh{lanIdx, "192.168.1.2", false}, nh{tunIdx, "172.16.0.1", false}, nh{tunIdx, "10.0.0.4", true}, nh{tunIdx, "10.0.0.5", false})),
		change{ov("10.2.0.0/16", "10.0.0.5", ospf, 20), true})
	if e, _ := s.entryFor(netip.MustParsePrefix("10.2.0.0/16")); e.viaTunnel {
		t.Fatal("an ECMP route with a LAN leg counts as via the tunnel")
	}
	// The dead one revives (a resync's dump shows it so): it comes first.
	expect(t, "revived", step(t, s, newR, 0, rt("10.2.0.0/16", ospf, 20,
		nh{lanIdx, "192.168.1.2", false}, nh{tunIdx, "172.16.0.1", false}, nh{tunIdx, "10.0.0.4", false}, nh{tunIdx, "10.0.0.5", false})),
		change{ov("10.2.0.0/16", "10.0.0.4", ospf, 20), true})
	expect(t, "delete", step(t, s, delR, 0, rt("10.2.0.0/16", ospf, 20,
		nh{lanIdx, "192.168.1.2", false}, nh{tunIdx, "172.16.0.1", false}, nh{tunIdx, "10.0.0.4", false}, nh{tunIdx, "10.0.0.5", false})),
		change{ov("10.2.0.0/16", "10.0.0.4", ospf, 20), false})
	if _, ok := s.routes[netip.MustParsePrefix("10.2.0.0/16")]; ok {
		t.Fatal("deleted route still mirrored")
	}

	// Our own routes are never reported, but are via the tunnel.
	expect(t, "ours", step(t, s, newR, 0, rt("10.3.0.0/16", own, 0, nh{tunIdx, "10.0.0.6", false})))
	if e, ok := s.entryFor(netip.MustParsePrefix("10.3.0.0/16")); !ok || !e.viaTunnel {
		t.Fatal("our route is not via the tunnel")
	}
	// No gateway: a device route, not an overlay route.
	expect(t, "no gateway", step(t, s, newR, 0, rt("10.4.0.0/16", unix.RTPROT_STATIC, 0, nh{tunIdx, "", false})))

	// Metrics: the kernel uses the lowest; only that one counts.
	expect(t, "LAN metric 10", step(t, s, newR, 0, rt("10.5.0.0/16", unix.RTPROT_STATIC, 10, nh{lanIdx, "192.168.1.2", false})))
	expect(t, "tunnel metric 20 behind it", step(t, s, newR, 0, rt("10.5.0.0/16", ospf, 20, nh{tunIdx, "10.0.0.7", false})))
	expect(t, "LAN route gone", step(t, s, delR, 0, rt("10.5.0.0/16", unix.RTPROT_STATIC, 10, nh{lanIdx, "192.168.1.2", false})),
		change{ov("10.5.0.0/16", "10.0.0.7", ospf, 20), true})
	// A TOS route does not take ordinary traffic.
	tos := rt("10.5.0.0/16", bgp, 5, nh{tunIdx, "10.0.0.8", false})
	tos.Tos = 0x10
	expect(t, "TOS route", step(t, s, newR, 0, tos))

	// A delete naming a next hop the route does not have changes nothing.
	expect(t, "delete of another next hop", step(t, s, delR, 0, rt("10.5.0.0/16", ospf, 20, nh{tunIdx, "10.0.0.99", false})))
	if _, ok := s.reported[netip.MustParsePrefix("10.5.0.0/16")]; !ok {
		t.Fatal("route lost to a delete of a next hop it does not have")
	}
	// Other tables and cached clones are not the main table.
	other := rt("10.6.0.0/16", bgp, 0, nh{tunIdx, "10.0.0.9", false})
	other.Table = 100
	expect(t, "other table", step(t, s, newR, 0, other))
	cloned := rt("10.6.0.0/16", bgp, 0, nh{tunIdx, "10.0.0.9", false})
	cloned.Flags |= unix.RTM_F_CLONED
	expect(t, "cloned", step(t, s, newR, 0, cloned))
	if _, ok := s.routes[netip.MustParsePrefix("10.6.0.0/16")]; ok {
		t.Fatal("mirrored a route of another table")
	}
	// A default route has no RTA_DST.
	def := rt("0.0.0.0/0", ospf, 0, nh{tunIdx, "10.0.0.1", false})
	def.Dst = nil
	expect(t, "default", step(t, s, newR, 0, def), change{ov("0.0.0.0/0", "10.0.0.1", ospf, 0), true})
	// An IPv6 route is not on an IPv4 tunnel's subnet.
	expect(t, "IPv6 on an IPv4 tunnel", step(t, s, newR, 0, rt("2001:db8:1::/48", bgp, 20, nh{tunIdx, "::ffff:10.0.0.1", false})))
}

// TestStateIPv6Siblings: IPv6 ECMP routes are siblings the kernel adds and
// deletes one by one (an append announces the whole set, a delete only the
// sibling).
func TestStateIPv6Siblings(t *testing.T) {
	s := newTestState("2001:db8::/64")
	newR, delR := uint16(unix.RTM_NEWROUTE), uint16(unix.RTM_DELROUTE)
	const ospf = unix.RTPROT_OSPF
	expect(t, "multipath add", step(t, s, newR, 0, rt("2001:db8:5::/48", ospf, 20,
		nh{lanIdx, "2001:db8:f::2", false}, nh{tunIdx, "2001:db8::2", false})),
		change{ov("2001:db8:5::/48", "2001:db8::2", ospf, 20), true})
	expect(t, "append (the whole set announced)", step(t, s, newR, uint16(unix.NLM_F_APPEND), rt("2001:db8:5::/48", ospf, 20,
		nh{tunIdx, "2001:db8::3", false}, nh{lanIdx, "2001:db8:f::2", false}, nh{tunIdx, "2001:db8::2", false})))
	expect(t, "delete the LAN sibling", step(t, s, delR, 0, rt("2001:db8:5::/48", ospf, 20, nh{lanIdx, "2001:db8:f::2", false})))
	if e, _ := s.entryFor(netip.MustParsePrefix("2001:db8:5::/48")); !e.viaTunnel {
		t.Fatal("every sibling left goes into the tunnel, but the mirror says otherwise")
	}
	expect(t, "delete the sibling in use", step(t, s, delR, 0, rt("2001:db8:5::/48", ospf, 20, nh{tunIdx, "2001:db8::2", false})),
		change{ov("2001:db8:5::/48", "2001:db8::3", ospf, 20), true})
	expect(t, "delete the last", step(t, s, delR, 0, rt("2001:db8:5::/48", ospf, 20, nh{tunIdx, "2001:db8::3", false})),
		change{ov("2001:db8:5::/48", "2001:db8::3", ospf, 20), false})
	if len(s.routes) != 0 || len(s.reported) != 0 {
		t.Fatalf("left: %v %v", s.routes, s.reported)
	}
}

// TestStateReplayConverges: updates queued while a dump ran are applied on
// top of it; the result is the kernel's table as of the last update.
func TestStateReplayConverges(t *testing.T) {
	newR, delR, repl := uint16(unix.RTM_NEWROUTE), uint16(unix.RTM_DELROUTE), uint16(unix.NLM_F_REPLACE)
	type upd struct {
		typ, flags uint16
		r          *netlink.Route
	}
	const bgp = unix.RTPROT_BGP
	a := nh{tunIdx, "10.0.0.1", false}
	b := nh{tunIdx, "10.0.0.2", false}
	c := nh{lanIdx, "192.168.1.2", false}
	for _, tc := range []struct {
		name   string
		dump   []*netlink.Route // the table when it was read
		queued []upd            // everything since the subscription
		want   map[string]string
	}{
		{"added then replaced", []*netlink.Route{rt("10.1.0.0/16", bgp, 0, b)},
			[]upd{{newR, 0, rt("10.1.0.0/16", bgp, 0, a)}, {newR, repl, rt("10.1.0.0/16", bgp, 0, b)}},
			map[string]string{"10.1.0.0/16": "10.0.0.2"}},
		{"added, dumped, deleted", []*netlink.Route{rt("10.1.0.0/16", bgp, 0, a)},
			[]upd{{newR, 0, rt("10.1.0.0/16", bgp, 0, a)}, {delR, 0, rt("10.1.0.0/16", bgp, 0, a)}},
			map[string]string{}},
		{"a sibling deleted before the dump", []*netlink.Route{rt("10.1.0.0/16", bgp, 0, a)},
			[]upd{{delR, 0, rt("10.1.0.0/16", bgp, 0, c)}},
			map[string]string{"10.1.0.0/16": "10.0.0.1"}},
		{"deleted and added elsewhere", []*netlink.Route{rt("10.1.0.0/16", bgp, 0, c)},
			[]upd{{delR, 0, rt("10.1.0.0/16", bgp, 0, a)}, {newR, 0, rt("10.1.0.0/16", bgp, 0, c)}},
			map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestState("10.0.0.0/24")
			for _, r := range tc.dump {
				s.apply(newR, 0, r)
			}
			for _, u := range tc.queued {
				s.apply(u.typ, u.flags, u.r)
			}
			s.overlayDiff()
			if len(s.reported) != len(tc.want) {
				t.Fatalf("reported %v, want %v", s.reported, tc.want)
			}
			for p, gw := range tc.want {
				if got := s.reported[netip.MustParsePrefix(p)]; got.Gateway != netip.MustParseAddr(gw) {
					t.Fatalf("%s via %v, want %s", p, got.Gateway, gw)
				}
			}
		})
	}
}

// TestStateOverlayBound: past maxOverlayRoutes new overlay routes are
// ignored and counted; a removal makes room again.
func TestStateOverlayBound(t *testing.T) {
	s := newTestState("10.0.0.0/8")
	for i := range maxOverlayRoutes {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		s.reported[p] = OverlayRoute{Prefix: p}
	}
	newR := uint16(unix.RTM_NEWROUTE)
	if got := step(t, s, newR, 0, rt("10.1.0.0/16", unix.RTPROT_BGP, 0, nh{tunIdx, "10.0.0.1", false})); len(got) != 0 {
		t.Fatalf("reported past the bound: %v", got)
	}
	if s.ignoredOverlay != 1 {
		t.Fatalf("ignored %d, want 1", s.ignoredOverlay)
	}
	delete(s.reported, netip.MustParsePrefix("172.0.0.0/32"))
	if _, now := s.overlayDiff(); len(now) != 1 || now[0].Prefix != netip.MustParsePrefix("10.1.0.0/16") {
		t.Fatalf("after room was made: %v", now)
	}
}

// BenchmarkApply: one route notification against a table of n prefixes
// (the lookup table's copy-on-write included); the cost must not grow with n.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{1_000, 200_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			k := &Kernel{st: newTestState("10.0.0.0/24"), tunIndex: tunIdx}
			for i := range n {
				r := rt(netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), 0}), 24).String(), unix.RTPROT_BGP, 0, nh{lanIdx, "192.168.1.2", false})
				k.st.apply(unix.RTM_NEWROUTE, 0, r)
			}
			k.cur.Store(k.st.snapshot())
			add := rt("10.1.0.0/16", unix.RTPROT_BGP, 20, nh{tunIdx, "10.0.0.1", false})
			del := rt("10.1.0.0/16", unix.RTPROT_BGP, 20, nh{tunIdx, "10.0.0.1", false})
			b.ReportAllocs()
			for b.Loop() {
				for _, u := range []struct {
					typ uint16
					r   *netlink.Route
				}{{unix.RTM_NEWROUTE, add}, {unix.RTM_DELROUTE, del}} {
					if p, ok := k.st.apply(u.typ, 0, u.r); ok {
						k.publish(p)
					}
				}
			}
		})
	}
}
