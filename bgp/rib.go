package bgp

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Route is a best path learned from a neighbor.
type Route struct {
	Prefix   netip.Prefix
	NextHop  netip.Addr // as received (phase 2: the announcing spoke; phase 3: the hub)
	Neighbor netip.Addr // the session it was learned from
	ASPath   []uint32   // AS_SEQUENCE and AS_SET members in order; empty within our AS
}

// Equal reports whether r and o describe the same path.
func (r Route) Equal(o Route) bool {
	return r.Prefix == o.Prefix && r.NextHop == o.NextHop && r.Neighbor == o.Neighbor && slices.Equal(r.ASPath, o.ASPath)
}

// RouteStatus is one path of the Loc-RIB, as Routes lists it.
type RouteStatus struct {
	Prefix   netip.Prefix
	NextHop  netip.Addr // for our own paths: unspecified (each session's local address is sent)
	Neighbor netip.Addr // invalid for our own paths
	ASPath   []uint32
	Best     bool
	Local    bool      // originated here (Networks, Aggregates, Announce)
	Age      time.Time // when the path was received or originated
}

// ribView is the consumer's side of the Loc-RIB: the best learned path of
// every prefix whose best path changed since the last Drain (pending), and
// the best learned paths the consumer was last told about (reported), so
// that Drain reports only real changes and can rebuild from a table walk.
//
// pending is written by GoBGP's watch goroutine, one map store per changed
// prefix under mu, so GoBGP's event queue never waits for our consumer.
// It is bounded: each entry is a prefix that was in the table since the
// last Drain, but a peer that keeps announcing new prefixes and withdrawing
// them could grow it without bound between two Drains, so past
// pendingSlack + len(reported) entries it is dropped and the next Drain
// walks the whole table instead (resync) — O(table) once, never unbounded
// memory.
type ribView struct {
	mu       sync.Mutex
	pending  map[netip.Prefix]pendingEntry
	spare    map[netip.Prefix]pendingEntry // the previous pending map, cleared, reused by Drain
	resync   bool
	resyncs  uint64
	events   uint64
	reported int // len(reported), readable under mu

	drainMu   sync.Mutex // one Drain at a time; guards reportedM
	reportedM map[netip.Prefix]Route
}

type pendingEntry struct {
	route   Route
	present bool
}

// pendingSlack is how many more pending prefixes than reported ones the
// view holds before it falls back to a resync.
const pendingSlack = 65536

func newRibView() *ribView {
	return &ribView{
		pending:   make(map[netip.Prefix]pendingEntry),
		spare:     make(map[netip.Prefix]pendingEntry),
		reportedM: make(map[netip.Prefix]Route),
	}
}

// apply records that prefix's best path is now r (present) or that it has
// no best learned path (absent): withdrawn, or our own path is best.
func (v *ribView) apply(prefix netip.Prefix, r Route, present bool) {
	v.mu.Lock()
	v.events++
	if !v.resync {
		v.pending[prefix] = pendingEntry{route: r, present: present}
		if len(v.pending) > pendingSlack+v.reported {
			clear(v.pending)
			v.resync = true
			v.resyncs++
		}
	}
	v.mu.Unlock()
}

// drain hands every change since the last drain to fn. walk, used only
// after an overflow, must call yield for the best learned path of every
// prefix in the table.
func (v *ribView) drain(walk func(yield func(Route)), fn func(netip.Prefix, Route, bool)) {
	v.drainMu.Lock()
	defer v.drainMu.Unlock()

	v.mu.Lock()
	batch, resync := v.pending, v.resync
	v.pending, v.spare = v.spare, nil
	v.resync = false
	v.mu.Unlock()

	if resync {
		// The walk sees the table as it is now; events that arrive during
		// it land in the fresh pending map and are reported (again, if the
		// walk saw them already) by the next drain.
		clear(batch)
		walk(func(r Route) { batch[r.Prefix] = pendingEntry{route: r, present: true} })
		for p := range v.reportedM {
			if _, ok := batch[p]; !ok {
				batch[p] = pendingEntry{}
			}
		}
	}
	for p, e := range batch {
		old, had := v.reportedM[p]
		switch {
		case e.present && had && old.Equal(e.route):
		case e.present:
			v.reportedM[p] = e.route
			fn(p, e.route, true)
		case had:
			delete(v.reportedM, p)
			fn(p, Route{Prefix: p}, false)
		}
	}
	clear(batch)

	v.mu.Lock()
	v.spare = batch
	v.reported = len(v.reportedM)
	v.mu.Unlock()
}

func (v *ribView) stats() (pending, reported int, events, resyncs uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.pending), v.reported, v.events, v.resyncs
}

// family is the address family of p as GoBGP names it.
func family(p netip.Prefix) bgp.Family {
	if p.Addr().Is4() {
		return bgp.RF_IPv4_UC
	}
	return bgp.RF_IPv6_UC
}

// pathPrefix returns the prefix of a unicast path; ok is false for any
// other NLRI (GoBGP only negotiates IPv4 and IPv6 unicast with us, but the
// type is an interface).
func pathPrefix(p *apiutil.Path) (netip.Prefix, bool) {
	if p == nil || (p.Family != bgp.RF_IPv4_UC && p.Family != bgp.RF_IPv6_UC) {
		return netip.Prefix{}, false
	}
	n, ok := p.Nlri.(*bgp.IPAddrPrefix)
	if !ok || !n.Prefix.IsValid() {
		return netip.Prefix{}, false
	}
	return n.Prefix, true
}

// pathRoute converts a GoBGP path into a Route.
func pathRoute(prefix netip.Prefix, p *apiutil.Path) Route {
	r := Route{Prefix: prefix, Neighbor: p.PeerAddress}
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			r.NextHop = a.Value
		case *bgp.PathAttributeMpReachNLRI:
			if a.Nexthop.IsValid() {
				r.NextHop = a.Nexthop
			}
		case *bgp.PathAttributeAsPath:
			for _, seg := range a.Value {
				r.ASPath = append(r.ASPath, seg.GetAS()...)
			}
		}
	}
	return r
}

// isLocal reports whether p was originated here rather than learned.
func isLocal(p *apiutil.Path) bool { return !p.PeerAddress.IsValid() }
