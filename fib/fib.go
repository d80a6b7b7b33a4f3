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

const (
	SourceConnected Source = iota + 1 // the tunnel subnet
	SourceStatic                      // configuration
	SourceNHRP                        // shortcut learned by NHRP resolution (phase 3)
	SourceBGP                         // learned over the overlay
)

// Distance orders sources for the same prefix: connected, then an NHRP
// shortcut, then static, then BGP. A shortcut for exactly the prefix of a
// static or BGP route overrides it, as Cisco's NHRP next-hop override does:
// the shortcut is the same destination reached directly instead of through
// the hub, and a shortcut that lost to the route it refines would never be
// used while redirects kept asking for it. It never beats the connected
// tunnel subnet (the engine installs no shortcut inside it).
func (s Source) Distance() int {
	switch s {
	case SourceConnected:
		return 0
	case SourceNHRP:
		return 1
	case SourceStatic:
		return 2
	case SourceBGP:
		return 3
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
	mu     sync.Mutex
	routes map[netip.Prefix][]Route // every source's route, best first
	cur    atomic.Pointer[bart.Table[Route]]
}

// New returns an empty table.
func New() *Table {
	t := &Table{routes: map[netip.Prefix][]Route{}}
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
	rs := slices.DeleteFunc(t.routes[r.Prefix], func(o Route) bool { return o.Source == r.Source })
	rs = append(rs, r)
	slices.SortStableFunc(rs, func(a, b Route) int { return cmp.Compare(a.Source.Distance(), b.Source.Distance()) })
	t.routes[r.Prefix] = rs
	t.publish(r.Prefix)
}

// Delete removes the route for prefix from source, if any, and reports
// whether there was one.
func (t *Table) Delete(prefix netip.Prefix, src Source) bool {
	prefix = prefix.Masked()
	t.mu.Lock()
	defer t.mu.Unlock()
	rs := t.routes[prefix]
	n := len(rs)
	rs = slices.DeleteFunc(rs, func(o Route) bool { return o.Source == src })
	if len(rs) == n {
		return false
	}
	if len(rs) == 0 {
		delete(t.routes, prefix)
	} else {
		t.routes[prefix] = rs
	}
	t.publish(prefix)
	return true
}

// publish installs the best route for prefix in a new immutable table.
func (t *Table) publish(prefix netip.Prefix) {
	old := t.cur.Load()
	if rs := t.routes[prefix]; len(rs) > 0 {
		t.cur.Store(old.InsertPersist(prefix, rs[0]))
	} else {
		t.cur.Store(old.DeletePersist(prefix))
	}
}

// Get returns the route for prefix from source, if there is one.
func (t *Table) Get(prefix netip.Prefix, src Source) (Route, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.routes[prefix.Masked()] {
		if r.Source == src {
			return r, true
		}
	}
	return Route{}, false
}

// Covering returns the routes in use whose prefixes contain dst, longest
// first (at most one per prefix length: a bounded walk up the tree).
func (t *Table) Covering(dst netip.Addr) []Route {
	cur := t.cur.Load()
	var out []Route
	for bits := dst.BitLen(); bits >= 0; bits-- {
		if r, ok := cur.Get(netip.PrefixFrom(dst, bits).Masked()); ok {
			out = append(out, r)
		}
	}
	return out
}

// Routes returns every installed route (best and backup), sorted by prefix
// then source.
func (t *Table) Routes() []Route {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Route
	for _, rs := range t.routes {
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
