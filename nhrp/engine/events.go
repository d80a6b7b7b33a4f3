package engine

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

// Events (Config.OnEvent) are emitted on state changes only: an NHS's
// registration state, a new binding (not a refresh), a shortcut installed
// or removed (not refreshed), a purge. Nothing is built when no one
// listens.

// emit reports an event through cfg.OnEvent, under e.mu. A zero now lets
// the listener stamp the time (the cache's eviction hook has none).
func (e *Engine) emit(now time.Time, t events.Type, peer netip.Addr, nbma netip.AddrPort, prefix, reason string, code int) {
	if e.cfg.OnEvent == nil {
		return
	}
	ev := events.Event{Time: now, Type: t, Prefix: prefix, Reason: reason, Code: code}
	if peer.IsValid() {
		ev.Peer = peer.String()
	}
	if nbma.Addr().IsValid() {
		ev.NBMA = nbmaString(nbma)
	}
	e.cfg.OnEvent(ev)
}

// nbmaString is an NBMA endpoint as `show dmvpn` writes it: the address
// alone over raw GRE (port 0), address:port over GRE-in-UDP.
func nbmaString(ep netip.AddrPort) string {
	if ep.Port() == 0 {
		return ep.Addr().String()
	}
	return ep.String()
}

// nhsEvent reports n's registration state change from old.
func (e *Engine) nhsEvent(now time.Time, n *nhsState, old, why string, code int) {
	if e.cfg.OnEvent == nil {
		return
	}
	if old == StateUp {
		e.emit(now, events.NHSDown, n.Protocol, n.NBMA, "", why, code)
	}
	switch n.State {
	case StateUp:
		reason := ""
		if n.NATAddress.IsValid() {
			reason = "behind NAT: the NHS sees us as " + n.NATAddress.Addr().String()
		}
		e.emit(now, events.NHSUp, n.Protocol, n.NBMA, "", reason, 0)
	case StateRefused:
		e.emit(now, events.NHSRefused, n.Protocol, n.NBMA, "", why, code)
	case StateError:
		e.emit(now, events.NHSError, n.Protocol, n.NBMA, "", why, code)
	}
}

// shortcutDown reports that the shortcut through c (a resolution we made)
// goes, naming its routes: call it before they are dropped.
func (e *Engine) shortcutDown(now time.Time, c cache.Entry, why string) {
	if e.cfg.OnEvent == nil || c.Type != cache.Resolved || !c.Target.IsValid() {
		return
	}
	e.emit(now, events.ShortcutDown, c.Protocol, c.NBMA, e.routesVia(c.Protocol), why, 0)
}

// routesVia lists the shortcut routes through owner, sorted, comma-separated.
func (e *Engine) routesVia(owner netip.Addr) string {
	rs := e.shortcuts[owner]
	if len(rs) == 0 {
		return ""
	}
	v := make([]string, 0, len(rs))
	for p := range rs {
		v = append(v, p.String())
	}
	slices.Sort(v)
	return strings.Join(v, ",")
}
