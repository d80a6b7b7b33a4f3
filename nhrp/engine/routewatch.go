package engine

import (
	"net/netip"
	"time"

	"github.com/gaissmai/bart"

	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

// Route watch (Cisco's NHRP route watch): a phase 3 shortcut refines a
// route — the static, kernel or BGP route that sent its destination into
// the tunnel, typically the hub's summary. When that route goes, or is
// replaced by one narrower than the shortcut, the shortcut would keep
// carrying traffic the routes no longer send into the tunnel, or more than
// they send to that owner; it is purged, and traffic follows the routes
// again.
//
// The check is the one a resolution's answer passes (badAnswer): the route
// the shortcut refines is the longest non-NHRP route for the destination it
// was resolved for, and the shortcut's prefix must not be wider than it. A
// shortcut that passed that check when it was installed passes this one
// while the routes stay, so a purge never races a redirect into a loop.

// shortcutRef is what the prefix index keeps of a shortcut route.
type shortcutRef struct {
	owner netip.Addr
	// target is the destination the shortcut was resolved for: the route
	// it refines is the one that carries target.
	target netip.Addr
}

// watched is a shortcut route a route change may affect.
type watched struct {
	prefix netip.Prefix
	ref    shortcutRef
}

// shortcutIndex indexes the shortcut routes by prefix (alongside
// Engine.shortcuts, by owner), so a changed route finds the shortcuts
// inside or around it by walking its part of the trie, not every shortcut.
type shortcutIndex struct {
	t       bart.Table[shortcutRef]
	scratch []watched
}

// indexShortcut records the shortcut route prefix via owner (call it when
// addShortcutRoute installs one). Its target is the owner's mapping's,
// which the resolution that installs the route has just set.
func (e *Engine) indexShortcut(prefix netip.Prefix, owner netip.Addr) {
	target := prefix.Addr()
	if c, ok := e.cache.Get(owner); ok && c.Target.IsValid() && prefix.Contains(c.Target) {
		target = c.Target
	}
	e.watch.t.Insert(prefix, shortcutRef{owner: owner, target: target})
}

// unindexShortcut forgets the shortcut route prefix (call it when the route
// is dropped).
func (e *Engine) unindexShortcut(prefix netip.Prefix) {
	e.watch.t.Delete(prefix)
}

// RoutesChanged tells the engine that the routes for the prefixes in
// changed were added, replaced or removed (in Config.Routes, from any
// source other than NHRP: static, kernel, BGP). Every shortcut route inside,
// equal to or covering one of them is checked again, and purged — its
// route and, when it was the last through its owner, the owner's mapping,
// with a shortcut-down event whose reason starts "route-watch" — when no
// route it refines covers it any more or the route it refines is now
// narrower than it. Traffic then follows the routes (back through the hub,
// or out of the tunnel). The cost is proportional to the shortcuts the
// prefixes contain or are contained in, not to all shortcuts. Call it from
// the control loop, after the FIB changed.
func (e *Engine) RoutesChanged(now time.Time, changed []netip.Prefix) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range changed {
		if !c.IsValid() {
			continue
		}
		c = c.Masked()
		w := e.watch.scratch[:0]
		for p, ref := range e.watch.t.Supernets(c) { // c itself included
			w = append(w, watched{p, ref})
		}
		for p, ref := range e.watch.t.Subnets(c) {
			if p != c {
				w = append(w, watched{p, ref})
			}
		}
		e.watch.scratch = w[:0]
		for _, s := range w {
			// An earlier purge in this loop may have taken it (the last
			// route through an owner takes the others with it).
			if ref, ok := e.watch.t.Get(s.prefix); !ok || ref != s.ref {
				continue
			}
			if why := e.unrefined(s); why != "" {
				e.watchPurge(now, s, why)
			}
		}
		clear(w) // no stale addresses kept alive in the scratch space
	}
}

// unrefined says why shortcut s no longer refines a route, or "" when it
// still does.
func (e *Engine) unrefined(s watched) string {
	r, ok := e.cfg.Routes.LookupExcept(s.ref.target, fib.SourceNHRP)
	if !ok || r.Source == fib.SourceConnected {
		return "route-watch: no route covers " + s.prefix.String() + " any more"
	}
	if r.Prefix.Bits() > s.prefix.Bits() {
		return "route-watch: " + s.prefix.String() + " is wider than the route it refines, " + r.Prefix.String() + " (" + r.Source.String() + ")"
	}
	return ""
}

// watchPurge drops shortcut s. The last route through its owner goes the
// way dropShortcut does (the mapping with it); one of several goes alone,
// as the owner's other routes still refine theirs.
func (e *Engine) watchPurge(now time.Time, s watched, why string) {
	e.rlog.Info(now, "shortcut purged, traffic follows the routes again", "prefix", s.prefix, "via", s.ref.owner, "why", why)
	rs := e.shortcuts[s.ref.owner]
	if _, ok := rs[s.prefix]; ok && len(rs) == 1 {
		e.dropShortcut(now, s.ref.owner, why)
		return
	}
	if c, ok := e.cache.Get(s.ref.owner); ok && c.Type == cache.Resolved && c.Target.IsValid() {
		e.emit(now, events.ShortcutDown, c.Protocol, c.NBMA, s.prefix.String(), why, 0)
	}
	delete(rs, s.prefix)
	e.unindexShortcut(s.prefix)
	e.cfg.Routes.Delete(s.prefix, fib.SourceNHRP)
	e.routeChanged()
}
