package localroute

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The kernel's main table as the mirror keeps it, one change at a time.
//
// A kernel route is identified by its destination, TOS and priority (the
// metric): what `ip route replace` and `ip route del` match on. Each has an
// ordered list of legs (next hops). Notifications are applied as the
// kernel means them:
//
//   - RTM_NEWROUTE with NLM_F_REPLACE sets the route's legs;
//   - RTM_NEWROUTE without it adds the legs it names that the route lacks
//     (IPv4 `ip route append` makes a second route of the same key, IPv6
//     appends a sibling and announces the whole set; either way the legs
//     end up together, in the order they came);
//   - RTM_DELROUTE removes the legs it names (an IPv6 sibling is deleted
//     alone, an IPv4 route with all of its next hops); the route goes with
//     its last leg.
//
// Applying a notification that the state already reflects changes nothing,
// so replaying the updates queued while a dump ran (a resync) converges on
// the kernel's table.

// Bounds of the mirror. A host with more routes than maxPrefixes (about
// 150 bytes each) is not what a DMVPN node is; past it, new prefixes are
// not mirrored (logged, counted) until a resync finds room.
const (
	maxPrefixes        = 1 << 20
	maxVariants        = 16 // routes (TOS, metric) per prefix
	maxLegs            = 32 // next hops per route
	maxOverlayRoutes   = 100_000
	defaultRecvBufSize = 4 << 20
)

type leg struct {
	link int
	gw   netip.Addr
	dead bool // RTNH_F_DEAD: the kernel does not use it
}

func (l leg) same(o leg) bool { return l.link == o.link && l.gw == o.gw }

// variant is one kernel route of a prefix.
type variant struct {
	tos      uint8
	priority uint32
	protocol uint8
	unicast  bool
	legs     []leg
}

// OverlayRoute is a route another routing daemon (FRR's zebra, BIRD, an
// operator) installed in the host's main table through the overlay device,
// with a gateway on the tunnel subnet: the FIB's SourceKernel.
type OverlayRoute struct {
	Prefix netip.Prefix
	// Gateway is the overlay next hop: the first live next hop of the
	// route that leaves through the overlay device with a gateway on the
	// tunnel subnet (an ECMP route's others are not used).
	Gateway netip.Addr
	// Protocol is the kernel's rtm_protocol (186 bgp, 188 ospf, 11 zebra, 12 bird,
	// 3 boot for `ip route add`, ...).
	Protocol int
	// Metric is the route's priority.
	Metric uint32
}

// kstate is the mirror's view of the main table. It is owned by one
// goroutine (NewKernelWithOptions, then the subscription loop).
type kstate struct {
	tunIndex int
	subnet   netip.Prefix // zero: no overlay routes reported
	ownProto int          // our own routes' protocol: never reported

	routes   map[netip.Prefix][]variant
	reported map[netip.Prefix]OverlayRoute

	// Counters (read through Kernel.Stats).
	ignoredPrefixes, ignoredOverlay uint64
}

func newKState(tunIndex int, subnet netip.Prefix, ownProto int) *kstate {
	return &kstate{tunIndex: tunIndex, subnet: subnet.Masked(), ownProto: ownProto,
		routes: map[netip.Prefix][]variant{}, reported: map[netip.Prefix]OverlayRoute{}}
}

// kernelRoute converts a netlink route of the main table into a prefix and
// a variant; ok is false for what the mirror does not keep (other tables,
// cached clones, other families).
func kernelRoute(r *netlink.Route) (netip.Prefix, variant, bool) {
	if r.Table != unix.RT_TABLE_MAIN || r.Flags&unix.RTM_F_CLONED != 0 {
		return netip.Prefix{}, variant{}, false
	}
	var p netip.Prefix
	switch {
	case r.Dst != nil:
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		ones, bits := r.Dst.Mask.Size()
		if !ok || bits == 0 {
			return netip.Prefix{}, variant{}, false
		}
		a = a.Unmap()
		if bits != a.BitLen() {
			return netip.Prefix{}, variant{}, false
		}
		p = netip.PrefixFrom(a, ones).Masked()
	case r.Family == unix.AF_INET:
		p = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	case r.Family == unix.AF_INET6:
		p = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	default:
		return netip.Prefix{}, variant{}, false
	}
	v := variant{tos: uint8(r.Tos), priority: uint32(r.Priority), protocol: uint8(r.Protocol), unicast: r.Type == unix.RTN_UNICAST}
	if len(r.MultiPath) > 0 {
		for _, nh := range r.MultiPath {
			if len(v.legs) == maxLegs {
				break
			}
			if nh == nil {
				continue
			}
			v.legs = append(v.legs, leg{link: nh.LinkIndex, gw: addrOf(nh.Gw), dead: nh.Flags&unix.RTNH_F_DEAD != 0})
		}
	} else {
		v.legs = []leg{{link: r.LinkIndex, gw: addrOf(r.Gw), dead: r.Flags&unix.RTNH_F_DEAD != 0}}
	}
	return p, v, true
}

// addrOf is a gateway as the kernel gave it: 4 bytes for IPv4, 16 for
// IPv6 (a v4-mapped IPv6 gateway stays IPv6: it is not on an IPv4 subnet).
func addrOf(ip []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a
}

// apply applies one notification (typ RTM_NEWROUTE or RTM_DELROUTE, the
// message's NLM_F_* flags) and reports the prefix it may have changed.
func (s *kstate) apply(typ uint16, nlflags uint16, r *netlink.Route) (netip.Prefix, bool) {
	p, v, ok := kernelRoute(r)
	if !ok {
		return netip.Prefix{}, false
	}
	vs, known := s.routes[p]
	i := slices.IndexFunc(vs, func(o variant) bool { return o.tos == v.tos && o.priority == v.priority })
	switch typ {
	case unix.RTM_NEWROUTE:
		if !known && len(s.routes) >= maxPrefixes {
			s.ignoredPrefixes++
			return netip.Prefix{}, false
		}
		switch {
		case i < 0:
			if len(vs) >= maxVariants {
				s.ignoredPrefixes++
				return netip.Prefix{}, false
			}
			vs = append(vs, v)
		case nlflags&unix.NLM_F_REPLACE != 0:
			vs[i] = v
		default:
			o := &vs[i]
			o.protocol, o.unicast = v.protocol, v.unicast
			for _, l := range v.legs {
				if j := slices.IndexFunc(o.legs, l.same); j >= 0 {
					o.legs[j].dead = l.dead
				} else if len(o.legs) < maxLegs {
					o.legs = append(o.legs, l)
				}
			}
		}
		s.routes[p] = vs
	case unix.RTM_DELROUTE:
		if i < 0 {
			return netip.Prefix{}, false
		}
		o := &vs[i]
		o.legs = slices.DeleteFunc(o.legs, func(l leg) bool { return slices.ContainsFunc(v.legs, l.same) })
		if len(o.legs) == 0 {
			vs = slices.Delete(vs, i, i+1)
		}
		if len(vs) == 0 {
			delete(s.routes, p)
		} else {
			s.routes[p] = vs
		}
	default:
		return netip.Prefix{}, false
	}
	return p, true
}

// best is the route the kernel uses for the prefix's ordinary traffic: the
// lowest metric among TOS 0 routes (or among all, when every route has a
// TOS).
func best(vs []variant) (variant, bool) {
	if len(vs) == 0 {
		return variant{}, false
	}
	b := slices.MinFunc(vs, func(a, b variant) int {
		if c := cmp.Compare(min(a.tos, 1), min(b.tos, 1)); c != 0 {
			return c
		}
		return cmp.Compare(a.priority, b.priority)
	})
	return b, true
}

// liveLegs are the legs the kernel uses: those not dead, or all when every
// one is.
func liveLegs(v variant) []leg {
	if !slices.ContainsFunc(v.legs, func(l leg) bool { return l.dead }) {
		return v.legs
	}
	live := make([]leg, 0, len(v.legs))
	for _, l := range v.legs {
		if !l.dead {
			live = append(live, l)
		}
	}
	if len(live) == 0 {
		return v.legs
	}
	return live
}

// entryFor is what the mirror's lookups answer for p: present, and whether
// it leads into the tunnel (every next hop the kernel uses goes through the
// overlay device; a route that also leaves elsewhere, or a blackhole, is
// the host's).
func (s *kstate) entryFor(p netip.Prefix) (entry, bool) {
	v, ok := best(s.routes[p])
	if !ok {
		return entry{}, false
	}
	via := v.unicast
	for _, l := range liveLegs(v) {
		if l.link != s.tunIndex {
			via = false
		}
	}
	return entry{viaTunnel: via}, true
}

// overlayFor is p's overlay route, if the route the kernel uses for p is
// one: unicast, TOS 0, not ours, with a live next hop through the overlay
// device whose gateway is on the tunnel subnet.
func (s *kstate) overlayFor(p netip.Prefix) (OverlayRoute, bool) {
	if !s.subnet.IsValid() {
		return OverlayRoute{}, false
	}
	v, ok := best(s.routes[p])
	if !ok || !v.unicast || v.tos != 0 || int(v.protocol) == s.ownProto {
		return OverlayRoute{}, false
	}
	for _, l := range v.legs {
		if !l.dead && l.link == s.tunIndex && l.gw.IsValid() && l.gw.Is4() == s.subnet.Addr().Is4() && s.subnet.Contains(l.gw) {
			return OverlayRoute{Prefix: p, Gateway: l.gw, Protocol: int(v.protocol), Metric: v.priority}, true
		}
	}
	return OverlayRoute{}, false
}

// overlayChange records p's overlay route as it is now and returns what
// to report: the route and whether it is present; ok is false when nothing
// changed (or a new one is over the bound, counted).
func (s *kstate) overlayChange(p netip.Prefix) (OverlayRoute, bool, bool) {
	now, has := s.overlayFor(p)
	old, had := s.reported[p]
	switch {
	case has && had && now == old:
		return OverlayRoute{}, false, false
	case has:
		if !had && len(s.reported) >= maxOverlayRoutes {
			s.ignoredOverlay++
			return OverlayRoute{}, false, false
		}
		s.reported[p] = now
		return now, true, true
	case had:
		delete(s.reported, p)
		return old, false, true
	}
	return OverlayRoute{}, false, false
}

// overlayDiff brings reported in line with the whole state (after reset)
// and returns the changes: removals first, then additions and changes,
// each sorted by prefix.
func (s *kstate) overlayDiff() (gone, now []OverlayRoute) {
	for p, old := range s.reported {
		if _, ok := s.overlayFor(p); !ok {
			gone = append(gone, old)
			delete(s.reported, p)
		}
	}
	for p := range s.routes {
		r, ok := s.overlayFor(p)
		if !ok {
			continue
		}
		old, had := s.reported[p]
		if had && old == r {
			continue
		}
		if !had && len(s.reported) >= maxOverlayRoutes {
			s.ignoredOverlay++
			continue
		}
		s.reported[p] = r
		now = append(now, r)
	}
	byPrefix := func(a, b OverlayRoute) int { return comparePrefix(a.Prefix, b.Prefix) }
	slices.SortFunc(gone, byPrefix)
	slices.SortFunc(now, byPrefix)
	return gone, now
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// snapshot builds the whole lookup table (after reset).
func (s *kstate) snapshot() *snapshot {
	t := new(bart.Table[entry])
	for p := range s.routes {
		if e, ok := s.entryFor(p); ok {
			t.Insert(p, e)
		}
	}
	return &snapshot{t}
}
