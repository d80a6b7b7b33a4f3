// Package localroute tells the data plane which destinations the host
// routes somewhere other than the tunnel (its LANs, its default route), so a
// packet arriving from the tunnel is handed to the host instead of relayed,
// and, later, which local prefix covers an address NHRP is asked about.
//
// Kernel mirrors the host's main routing table over netlink, one
// notification at a time, and reports the overlay routes other routing
// daemons install through the tunnel device (KernelOptions.OnOverlayRoute:
// the FIB's kernel source); Static is a fixed list for in-process tests.
// Lookups are lock-free.
package localroute

import (
	"net/netip"
	"sync/atomic"

	"github.com/gaissmai/bart"
)

// Table answers "does the host route dst out of the tunnel, and by which
// prefix?".
type Table interface {
	// Local returns the host's longest-match route for dst when that route
	// does not lead into the tunnel device.
	Local(dst netip.Addr) (netip.Prefix, bool)
}

// entry is a host route: does it go into the tunnel?
type entry struct{ viaTunnel bool }

// snapshot is an immutable longest-match table.
type snapshot struct{ t *bart.Table[entry] }

func (s *snapshot) local(dst netip.Addr) (netip.Prefix, bool) {
	pfx, e, ok := s.t.LookupPrefixLPM(netip.PrefixFrom(dst, dst.BitLen()))
	if !ok || e.viaTunnel {
		return netip.Prefix{}, false
	}
	return pfx, true
}

// Static is a fixed set of local prefixes.
type Static struct{ s snapshot }

// NewStatic returns a table where exactly prefixes are local.
func NewStatic(prefixes ...netip.Prefix) *Static {
	t := new(bart.Table[entry])
	for _, p := range prefixes {
		t.Insert(p.Masked(), entry{})
	}
	return &Static{s: snapshot{t}}
}

// Local implements Table.
func (s *Static) Local(dst netip.Addr) (netip.Prefix, bool) { return s.s.local(dst) }

// Mirror is a Table whose content is replaced wholesale.
type Mirror struct{ cur atomic.Pointer[snapshot] }

// Local implements Table.
func (m *Mirror) Local(dst netip.Addr) (netip.Prefix, bool) {
	s := m.cur.Load()
	if s == nil {
		return netip.Prefix{}, false
	}
	return s.local(dst)
}

// Route is one host route for Replace.
type Route struct {
	Prefix    netip.Prefix
	ViaTunnel bool
}

// set installs (present) or removes prefix p in a new snapshot: a copy of
// the trie's path to p, not of the table, so one change costs the same
// whatever the table's size.
func (m *Mirror) set(p netip.Prefix, e entry, present bool) {
	t := new(bart.Table[entry])
	if s := m.cur.Load(); s != nil {
		t = s.t
	}
	if present {
		if old, ok := t.Get(p); ok && old == e {
			return
		}
		t = t.InsertPersist(p, e)
	} else {
		if _, ok := t.Get(p); !ok {
			return
		}
		t = t.DeletePersist(p)
	}
	m.cur.Store(&snapshot{t})
}

// Replace installs a new set of host routes.
func (m *Mirror) Replace(routes []Route) {
	t := new(bart.Table[entry])
	for _, r := range routes {
		p := r.Prefix.Masked()
		// Keep "local" when two routes share a prefix (e.g. several
		// tables); the data plane only needs to know the host can reach it.
		if old, ok := t.Get(p); ok && !old.viaTunnel {
			continue
		}
		t.Insert(p, entry{viaTunnel: r.ViaTunnel})
	}
	m.cur.Store(&snapshot{t})
}
