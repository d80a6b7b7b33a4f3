package engine

import (
	"net/netip"
	"time"

	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

// maxLostPerPeer bounds the mappings PeerLost removes for one endpoint
// (an endpoint normally carries one, two with IPv4 and IPv6 overlays).
const maxLostPerPeer = 8

// PeerLost is told that the path to an NBMA endpoint is gone although NHRP
// did not notice: with IPsec, the peer's SA died (deleted, dead peer,
// failed rekey) and nothing can reach it until a new one is up. Every
// mapping through ep goes as if its holding time had run out (a shortcut:
// its routes too, so traffic falls back to the hub; a registration: the
// holders of the binding are told), and an NHS at ep is down and
// registers again at once — that registration is what brings a new SA up.
// Configured mappings stay. It returns how many mappings went. The cost is
// per mapping of ep, not per entry in the cache.
func (e *Engine) PeerLost(now time.Time, ep netip.AddrPort, reason string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for range maxLostPerPeer {
		c, ok := e.cache.ByNBMA(ep)
		if !ok || c.Type == cache.Static || e.isNHSAddr(c.Protocol) {
			break
		}
		e.cache.Delete(c.Protocol)
		n++
		switch c.Type {
		case cache.Resolved:
			e.shortcutDown(now, c, reason)
			e.dropRoutesVia(c.Protocol)
			e.rlog.Info(now, "shortcut removed: its path is gone", "peer", c.Protocol, "nbma", ep, "reason", reason)
		case cache.Dynamic:
			e.cancelProbe(c.Protocol)
			e.emit(now, events.RegistrationExpired, c.Protocol, c.NBMA, "", reason, 0)
			e.purgeHolders(now, c.Protocol, uint8(c.Protocol.BitLen()))
			e.rlog.Info(now, "registration removed: its path is gone", "protocol", c.Protocol, "nbma", ep, "reason", reason)
		}
	}
	for _, s := range e.nhs {
		if s.NBMA == ep && (s.State == StateUp || s.State == StateRegistering) {
			e.setState(now, s, StateDown, reason)
			s.nextAt = now
		}
	}
	return n
}
