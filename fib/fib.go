// Package fib is the overlay forwarding table: which tunnel next hop a
// destination goes to. Lookups are lock-free (an immutable bart table behind
// an atomic pointer, replaced on every change), so the data path never waits
// for the control plane; changes are rare and serialized by a mutex.
package fib

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gaissmai/bart"
)

// Source is where a route came from. For the same prefix the route with the
// lowest Distance wins (like an administrative distance).
type Source uint8

// The numeric values are stable (they are never persisted, but tests and
// sort orders use them); the order of preference is Distance's.
const (
	SourceConnected Source = iota + 1 // the tunnel subnet
	SourceStatic                      // configuration
	SourceNHRP                        // shortcut learned by NHRP resolution (phase 3)
	SourceBGP                         // learned over the overlay
	// SourceKernel: a route another routing daemon on the host (FRR's
	// zebra, BIRD) installed in the kernel's main table through the
	// overlay device, with a gateway on the tunnel subnet (localroute's
	// overlay routes): what OSPF or another IGP over the tunnel chose.
	SourceKernel
)

// Distance orders sources for the same prefix: connected 0, nhrp 1,
// static 2, kernel 3, bgp 4.
//
//   - An NHRP shortcut beats every route it can refine (static, kernel, BGP)
//     when it has exactly their prefix, as Cisco's NHRP next-hop override
//     does: the shortcut is the same destination reached directly instead of
//     through the hub, and a shortcut that lost to the route it refines would
//     never be used while redirects kept asking for it. It never beats the
//     connected tunnel subnet (the engine installs no shortcut inside it).
//   - Configuration beats anything learned.
//   - Another daemon's choice beats our BGP, as OSPF (110) beats iBGP (200)
//     on a router: an operator who runs an IGP over the tunnel wants its
//     routes, and our BGP is the fallback for what the IGP does not know.
func (s Source) Distance() int {
	switch s {
	case SourceConnected:
		return 0
	case SourceNHRP:
		return 1
	case SourceStatic:
		return 2
	case SourceKernel:
		return 3
	case SourceBGP:
		return 4
	}
	return 255
}

func (s Source) String() string {
	switch s {
	case SourceConnected:
		return "connected"
	case SourceStatic:
		return "static"
	case SourceNHRP:
		return "nhrp"
	case SourceBGP:
		return "bgp"
	case SourceKernel:
		return "kernel"
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

// Route sends Prefix to NextHop, an overlay address on the tunnel subnet. A
// connected route has no next hop: the destination itself is the next hop.
type Route struct {
	Prefix  netip.Prefix
	NextHop netip.Addr
	Source  Source
}

// NextHopFor returns the overlay next hop for dst along r.
func (r Route) NextHopFor(dst netip.Addr) netip.Addr {
	if r.NextHop.IsValid() {
		return r.NextHop
	}
	return dst
}

// Table is the FIB. The zero value is not usable; use New.
type Table struct {
	mu sync.Mutex
	// all holds every source's route per prefix, best first. A (mutable)
	// trie rather than a map so that LookupExcept walks only the prefixes
	// containing an address, whatever the table's size.
	all bart.Table[[]Route]
	cur atomic.Pointer[bart.Table[Route]]
}

// New returns an empty table.
func New() *Table {
	t := &Table{}
	t.cur.Store(new(bart.Table[Route]))
	return t
}

// Lookup returns the best route for dst by longest prefix match.
func (t *Table) Lookup(dst netip.Addr) (Route, bool) {
	return t.cur.Load().Lookup(dst)
}

// Add installs r, replacing the route of the same prefix and source.
func (t *Table) Add(r Route) {
	r.Prefix = r.Prefix.Masked()
	t.mu.Lock()
	defer t.mu.Unlock()
	old, _ := t.all.Get(r.Prefix)
	// A new slice: the old one is never shared, but rebuilding keeps Add
	// obviously free of aliasing.
	rs := make([]Route, 0, len(old)+1)
	for _, o := range old {
		if o.Source != r.Source {
			rs = append(rs, o)
		}
	}
	rs = append(rs, r)
	slices.SortStableFunc(rs, func(a, b Route) int { return cmp.Compare(a.Source.Distance(), b.Source.Distance()) })
	t.all.Insert(r.Prefix, rs)
	t.publish(r.Prefix, rs)
}

// Delete removes the route for prefix from source, if any, and reports
// whether there was one.
func (t *Table) Delete(prefix netip.Prefix, src Source) bool {
	prefix = prefix.Masked()
	t.mu.Lock()
	defer t.mu.Unlock()
	old, _ := t.all.Get(prefix)
	i := slices.IndexFunc(old, func(o Route) bool { return o.Source == src })
	if i < 0 {
		return false
	}
	rs := slices.Delete(slices.Clone(old), i, i+1)
	if len(rs) == 0 {
		t.all.Delete(prefix)
	} else {
		t.all.Insert(prefix, rs)
	}
	t.publish(prefix, rs)
	return true
}

// publish installs the best route for prefix (rs[0], or none) in a new
// immutable table.
func (t *Table) publish(prefix netip.Prefix, rs []Route) {
	old := t.cur.Load()
	if len(rs) > 0 {
		t.cur.Store(old.InsertPersist(prefix, rs[0]))
	} else {
		t.cur.Store(old.DeletePersist(prefix))
	}
}

// Get returns the route for prefix from source, if there is one.
func (t *Table) Get(prefix netip.Prefix, src Source) (Route, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rs, _ := t.all.Get(prefix.Masked())
	for _, r := range rs {
		if r.Source == src {
			return r, true
		}
	}
	return Route{}, false
}

// Covering returns the routes in use whose prefixes contain dst, longest
// first (at most one per prefix length: a bounded walk up the tree). A
// route that lost to another source for its prefix is not among them; see
// LookupExcept.
func (t *Table) Covering(dst netip.Addr) []Route {
	cur := t.cur.Load()
	var out []Route
	for _, r := range cur.Supernets(netip.PrefixFrom(dst, dst.BitLen())) {
		out = append(out, r)
	}
	return out
}

// LookupExcept returns the route that would carry dst if source src had no
// routes: the longest match among every installed route, those that lost to
// another source for their prefix included, not from src. The NHRP engine
// asks it with SourceNHRP for the route a shortcut refines (the static,
// kernel or BGP route an NHRP next-hop override hides). Its cost is a walk
// up the trie from dst (at most one step per prefix length), independent
// of the table's size.
func (t *Table) LookupExcept(dst netip.Addr, src Source) (Route, bool) {
	if !dst.IsValid() {
		return Route{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, rs := range t.all.Supernets(netip.PrefixFrom(dst, dst.BitLen())) {
		for _, r := range rs {
			if r.Source != src {
				return r, true
			}
		}
	}
	return Route{}, false
}

// Routes returns every installed route (best and backup), sorted by prefix
// then source.
func (t *Table) Routes() []Route {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Route
	for _, rs := range t.all.All() {
		out = append(out, rs...)
	}
	slices.SortFunc(out, func(a, b Route) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()); c != 0 {
			return c
		}
		return cmp.Compare(a.Source, b.Source)
	})
	return out
}

// Best reports whether r is the route in use for its prefix.
func (t *Table) Best(r Route) bool {
	got, ok := t.cur.Load().Get(r.Prefix)
	return ok && got == r
}
