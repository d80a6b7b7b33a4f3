package engine

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

// Registrant liveness probes. A source address proves nothing (anyone can
// put another's address on a raw GRE packet), so a purge, a withdrawal
// (holding time 0) or a registration of an address bound elsewhere does not
// remove the binding at once: the NHS asks the registrant, at the endpoint
// it registered from, to resolve its own address (a Resolution Request
// with a fresh random request ID, which every NHC answers for itself). A
// registrant that answers is alive and keeps its binding; one that stays
// silent for probeTries attempts, probeEvery apart, loses it.
const (
	probeTries = 2
	probeEvery = time.Second
)

type probe struct {
	addr   netip.Addr
	ep     netip.AddrPort
	t      nbma.Transport
	reqID  uint32
	tries  int
	nextAt time.Time
	why    string
}

// register sends a Registration Request to n and schedules the retry.
func (e *Engine) register(now time.Time, n *nhsState) {
	p := e.newPacket(nhrp.TypeRegistrationRequest, n.Protocol)
	p.Flags = nhrp.FlagCiscoNAT
	if e.cfg.Unique {
		p.Flags |= nhrp.FlagRegistrationU
	}
	n.reqID = e.nextReqID()
	p.RequestID = n.reqID
	self := e.cfg.Address.Addr()
	p.CIEs = append(p.CIEs[:0], nhrp.CIE{
		PrefixLength: uint8(self.BitLen()), MTU: e.cfg.MTU, HoldingTime: seconds(e.cfg.Holdtime),
	})
	// Cisco's NAT extension: the NHS as we know it, so it can tell us how
	// it sees us (FRR nhrp_nhs.c does the same).
	nat := nhrp.NewNATAddress(nhrp.CIE{PrefixLength: uint8(n.Protocol.BitLen()), MTU: e.cfg.MTU, NBMA: n.NBMA.Addr(), Protocol: n.Protocol})
	p.Extensions = nhrp.StandardRequestExtensions(p.Extensions[:0], e.auth, &nat)
	e.transmit(now, n.NBMA, n.Transport)

	if n.State != StateUp {
		if n.State == StateDown {
			e.setState(now, n, StateRegistering, n.LastError)
		}
		n.Attempts++
		if n.Attempts == 4 && n.State == StateRegistering {
			e.log.Warn("no reply from NHS (check reachability, tunnel key and transport); still trying",
				"nhs", n.Protocol, "nbma", n.NBMA, "attempts", n.Attempts-1)
		}
		n.nextAt = now.Add(backoff(n.Attempts, e.cfg.RegistrationInterval))
	} else {
		// Refresh: if unanswered, retry sooner than the next refresh.
		n.Attempts++
		n.nextAt = now.Add(min(backoff(n.Attempts, e.cfg.RegistrationInterval), e.cfg.RegistrationInterval))
	}
}

func backoff(attempt int, ceiling time.Duration) time.Duration {
	d := retryMin << min(attempt-1, 10)
	d = min(d, retryMax)
	if ceiling > 0 {
		d = min(d, ceiling)
	}
	return d
}

// nhsForReply returns the NHS whose outstanding request has ID id, if the
// packet came from that NHS.
func (e *Engine) nhsForReply(from netip.AddrPort, id uint32) (*nhsState, DropReason) {
	for _, n := range e.nhs {
		if n.reqID == id && id != 0 {
			if n.NBMA.Addr() != from.Addr() {
				return nil, DropNotFromNHS
			}
			return n, 0
		}
	}
	return nil, DropUnsolicited
}

func (e *Engine) handleRegistrationReply(now time.Time, from netip.AddrPort, rep *nhrp.Packet) {
	n, why := e.nhsForReply(from, rep.RequestID)
	if n == nil {
		e.drop(now, why, from, "registration reply")
		return
	}
	n.reqID = 0 // answered; late duplicates are ignored
	n.Attempts = 0
	code := nhrp.CodeSuccess
	var granted uint16
	for _, c := range rep.CIEs {
		if c.Code != nhrp.CodeSuccess {
			code = c.Code
		}
		granted = c.HoldingTime
	}
	if code != nhrp.CodeSuccess {
		e.setStateCode(now, n, StateRefused, fmt.Sprintf("NHS refused registration: %v (code %d)", code, code), int(code))
		e.rlog.Log(now, slog.LevelError, "registration refused by NHS", "nhs", n.Protocol, "nbma", n.NBMA, "code", uint8(code), "reason", code.String())
		n.Attempts = 3 // back off before trying again
		n.nextAt = now.Add(backoff(n.Attempts, e.cfg.RegistrationInterval))
		return
	}
	n.NATAddress = netip.AddrPort{}
	if nat := natAddress(rep, e.self(), e.cfg.NBMA); nat.IsValid() {
		n.NATAddress = netip.AddrPortFrom(nat, 0)
	}
	if n.State != StateUp {
		e.log.Info("registered with NHS", "nhs", n.Protocol, "nbma", n.NBMA, "nat", n.NATAddress.IsValid())
	}
	e.setState(now, n, StateUp, "")
	// The NHS may grant less than we asked for: refresh in time for what
	// it granted.
	hold, every := e.cfg.Holdtime, e.cfg.RegistrationInterval
	if g := time.Duration(granted) * time.Second; g > 0 && g < hold {
		hold, every = g, min(every, max(g/3, time.Second))
	}
	n.Expires = now.Add(hold)
	n.nextAt = now.Add(every)
}

// handleRegistrationRequest is the NHS side of a registration.
func (e *Engine) handleRegistrationRequest(now time.Time, from netip.AddrPort, t nbma.Transport, req *nhrp.Packet) {
	if !e.cfg.Server {
		e.drop(now, DropNotServer, from, "registration request, but we are not an NHS")
		return
	}
	if len(req.CIEs) == 0 {
		// Nothing to register and no CIE to carry a code back in.
		e.drop(now, DropNoCIE, from, "registration request without a CIE")
		return
	}
	code, why := nhrp.CodeSuccess, ""
	src := req.SrcProto
	hold := time.Duration(req.CIEs[0].HoldingTime) * time.Second
	var old cache.Entry
	existed := false
	if !e.onSubnet(src) || e.isNHSAddr(src) {
		code, why = nhrp.CodeAdministrativelyProhib, "protocol address not usable on the tunnel subnet"
		e.stats.Dropped[DropOffSubnet]++
	} else if old, existed = e.cache.Get(src); existed {
		switch {
		case old.Type == cache.Static:
			code, why = nhrp.CodeAdministrativelyProhib, "address is statically mapped"
		case old.Type == cache.Dynamic && old.NBMA != from:
			// Bound elsewhere: the holder keeps it while it answers.
			code, why = nhrp.CodeUniqueAddressRegistered, fmt.Sprintf("already registered from %s", old.NBMA)
			e.stats.Dropped[DropNotOwner]++
			e.startProbe(now, old, "registered from "+from.String())
		case old.Type == cache.Dynamic && hold == 0:
			// A withdrawal from the registrant's endpoint: honoured once
			// the registrant is shown to be gone.
			e.startProbe(now, old, "withdrawn")
		}
	}
	natted := req.SrcNBMA.IsValid() && req.SrcNBMA != from.Addr()
	granted := e.capHold(req.CIEs[0].HoldingTime)
	if code == nhrp.CodeSuccess && hold > 0 {
		entry := cache.Entry{
			Protocol: src, NBMA: from, ClaimedNBMA: req.SrcNBMA, Transport: t, Type: cache.Dynamic,
			Unique: req.Flags&nhrp.FlagRegistrationU != 0, NAT: natted, Multicast: true, Up: true,
			MTU: req.CIEs[0].MTU, HoldingTime: granted, Created: now, Expires: now.Add(granted),
		}
		refresh := existed && old.Type == cache.Dynamic && old.NBMA == from
		if refresh {
			// The registrant is alive: whatever purge was being verified
			// was not its own. A refresh can neither drop the unique flag
			// nor bring the expiry forward (a spoofed refresh would).
			e.cancelProbe(src)
			entry.Created = old.Created
			entry.Unique = entry.Unique || old.Unique
			if old.Expires.After(entry.Expires) {
				entry.Expires = old.Expires
			}
		}
		if err := e.cache.Put(entry); err != nil {
			code, why = nhrp.CodeInsufficientResources, err.Error()
			e.stats.Dropped[DropCacheFull]++
		} else {
			if existed && old.Type != cache.Dynamic {
				e.dropRoutesVia(src) // a resolved mapping it replaces
			}
			if !refresh {
				e.rlog.Info(now, "registered", "protocol", src, "nbma", from, "claimed", req.SrcNBMA, "nat", natted, "holdtime", granted)
				if e.cfg.OnEvent != nil {
					reason := ""
					if natted {
						reason = "behind NAT: claims " + req.SrcNBMA.String()
					}
					e.emit(now, events.RegistrationAccepted, src, from, "", reason, 0)
				}
			}
			e.stats.RegistrationsAccepted++
		}
	}
	if code != nhrp.CodeSuccess {
		e.stats.RegistrationsRefused++
		e.rlog.Warn(now, "registration refused", "protocol", src, "nbma", from, "code", code, "why", why)
		e.emit(now, events.RegistrationRefused, src, from, "", why, int(code))
	}

	// The reply: the request with the result and the holding time granted
	// in its CIEs, our own protocol address as destination (an NHC that
	// did not know it, like FRR's with a dynamic NHS, learns it there), our
	// Responder Address, and (Cisco) the address we saw the spoke at when
	// NATed.
	rep := e.copyForForward(req)
	rep.HopCount = hopCount
	rep.Type = nhrp.TypeRegistrationReply
	rep.DstProto = e.self()
	for i := range rep.CIEs {
		rep.CIEs[i].Code = code
		if code == nhrp.CodeSuccess && rep.CIEs[i].HoldingTime != 0 {
			rep.CIEs[i].HoldingTime = seconds(granted)
		}
	}
	for i := range rep.Extensions {
		x := &rep.Extensions[i]
		switch x.Type {
		case nhrp.ExtResponderAddress:
			x.CIEs = []nhrp.CIE{nhrp.SelfCIE(e.cfg.NBMA, e.self(), e.cfg.MTU, seconds(e.cfg.Holdtime))}
		case nhrp.ExtNATAddress:
			if natted {
				x.CIEs = append(append([]nhrp.CIE(nil), x.CIEs...), nhrp.CIE{
					PrefixLength: uint8(src.BitLen()), MTU: req.CIEs[0].MTU,
					NBMA: from.Addr(), Protocol: src,
				})
			}
		}
	}
	e.reauth(rep)
	e.transmit(now, from, t)
}

func (e *Engine) handlePurgeRequest(now time.Time, from netip.AddrPort, t nbma.Transport, req *nhrp.Packet) {
	e.stats.PurgesReceived++
	cies := req.CIEs
	if len(cies) > maxPurgeCIEs {
		cies = cies[:maxPurgeCIEs]
	}
	if e.cfg.OnEvent != nil && len(cies) > 0 {
		why := ""
		if len(req.CIEs) > 1 {
			why = fmt.Sprintf("purges %d addresses", len(req.CIEs))
		}
		e.emit(now, events.PurgeReceived, cies[0].Protocol, from, "", why, 0)
	}
	for _, c := range cies {
		addr := c.Protocol
		if !addr.IsValid() {
			continue
		}
		old, ok := e.cache.Get(addr)
		if !ok {
			continue
		}
		switch old.Type {
		case cache.Dynamic:
			// Only the registrant may purge its binding, and its word is
			// checked by a probe, not by the packet's source address.
			if old.NBMA != from {
				e.drop(now, DropNotOwner, from, "purge of "+addr.String()+" registered from "+old.NBMA.String())
				continue
			}
			e.startProbe(now, old, "purged")
		case cache.Resolved:
			// The peer itself, or our NHS (which forwarded the
			// resolution), may tell us a shortcut is stale. At worst a
			// forged one sends traffic back through the hub.
			if old.NBMA.Addr() != from.Addr() && !e.isNHS(from) {
				e.drop(now, DropNotOwner, from, "purge of a shortcut by a third party")
				continue
			}
			e.dropShortcut(now, addr, "purged by "+nbmaString(from))
			e.rlog.Info(now, "purged", "protocol", addr, "type", old.Type, "nbma", old.NBMA, "by", from)
		case cache.Negative, cache.Incomplete:
			if e.isNHS(from) {
				e.cache.Delete(addr)
			}
		}
	}
	if req.Flags&nhrp.FlagPurgeN != 0 {
		return
	}
	rep := e.copyForForward(req)
	rep.HopCount = hopCount
	rep.Type = nhrp.TypePurgeReply
	e.reauth(rep)
	e.transmit(now, from, t)
}

// startProbe asks the registrant of b whether it is still there; if it
// does not answer, the binding goes (why says what asked for that).
func (e *Engine) startProbe(now time.Time, b cache.Entry, why string) {
	if p, ok := e.probes[b.Protocol]; ok && p.ep == b.NBMA {
		return // already asking
	}
	if len(e.probes) >= maxProbes {
		e.stats.Dropped[DropBusy]++
		return
	}
	p := &probe{addr: b.Protocol, ep: b.NBMA, t: b.Transport, reqID: e.nextReqID(), why: why}
	e.probes[b.Protocol] = p
	e.probeByID[p.reqID] = p
	e.sendProbe(now, p)
}

func (e *Engine) sendProbe(now time.Time, p *probe) {
	req := e.newPacket(nhrp.TypeResolutionRequest, p.addr)
	req.Flags = nhrp.FlagResolutionQ | nhrp.FlagResolutionS
	req.RequestID = p.reqID
	req.CIEs = append(req.CIEs[:0], nhrp.CIE{PrefixLength: uint8(e.self().BitLen()), MTU: e.cfg.MTU, HoldingTime: seconds(e.cfg.Holdtime)})
	req.Extensions = nhrp.StandardRequestExtensions(req.Extensions[:0], e.auth, nil)
	e.stats.ProbesSent++
	e.transmit(now, p.ep, p.t)
	p.tries++
	p.nextAt = now.Add(probeEvery)
	e.timers.Schedule(timerKey{timerPurgeProbe, p.addr}, p.nextAt)
}

func (e *Engine) probeTimer(now time.Time, addr netip.Addr) {
	p, ok := e.probes[addr]
	if !ok {
		return
	}
	if now.Before(p.nextAt) {
		e.timers.Schedule(timerKey{timerPurgeProbe, addr}, p.nextAt)
		return
	}
	if p.tries < probeTries {
		e.sendProbe(now, p)
		return
	}
	e.cancelProbe(addr)
	if old, ok := e.cache.Get(addr); ok && old.Type == cache.Dynamic && old.NBMA == p.ep {
		e.cache.Delete(addr)
		e.emit(now, events.RegistrationRemoved, addr, p.ep, "", p.why+"; the registrant no longer answers", 0)
		e.purgeHolders(now, addr, uint8(addr.BitLen()))
		e.rlog.Info(now, "purged", "protocol", addr, "type", cache.Dynamic, "nbma", p.ep, "request", p.why,
			"verified", "the registrant no longer answers")
	}
}

// probeAnswered handles a Resolution Reply to one of our probes.
func (e *Engine) probeAnswered(now time.Time, from netip.AddrPort, p *probe) {
	if from.Addr() != p.ep.Addr() {
		e.drop(now, DropWrongAnswer, from, "probe answered from elsewhere")
		return
	}
	e.cancelProbe(p.addr)
	e.stats.ProbesRefuted++
	e.rlog.Warn(now, "registrant is alive; ignoring a purge or move it did not send", "protocol", p.addr, "nbma", p.ep, "request", p.why)
}

func (e *Engine) cancelProbe(addr netip.Addr) {
	if p, ok := e.probes[addr]; ok {
		delete(e.probeByID, p.reqID)
		delete(e.probes, addr)
	}
}

// offendingRequest reads the type, request ID and source protocol address
// of the packet an Error Indication carries. It needs only the fixed header
// and the start of the mandatory part, since senders may cut the copy
// short; every length is checked against b.
func offendingRequest(b []byte) (t nhrp.Type, id uint32, src netip.Addr, ok bool) {
	const fixed, mand = 20, 8
	if len(b) < fixed+mand {
		return 0, 0, netip.Addr{}, false
	}
	t = nhrp.Type(b[17])
	shtl, sstl := int(b[18]&0x3f), int(b[19]&0x3f)
	srcLen := int(b[fixed])
	id = binary.BigEndian.Uint32(b[fixed+4:])
	off := fixed + mand + shtl + sstl
	if off+srcLen > len(b) {
		return t, id, netip.Addr{}, true
	}
	src, _ = netip.AddrFromSlice(b[off : off+srcLen])
	return t, id, src, true
}

func (e *Engine) handleErrorIndication(now time.Time, from netip.AddrPort, ei *nhrp.Packet) {
	e.stats.ErrorIndicationsRecvd++
	code := nhrp.ErrorCode(ei.Code)
	typ, id, src, ok := offendingRequest(ei.Payload)
	if !ok || src != e.self() || id == 0 {
		e.drop(now, DropUnsolicited, from, "error indication about a packet we did not send")
		return
	}
	switch typ {
	case nhrp.TypeResolutionRequest:
		if p := e.pendingByID[id]; p != nil {
			if !e.isNHS(from) {
				e.drop(now, DropNotFromNHS, from, "error indication about a resolution")
				return
			}
			e.failResolution(now, p.target, fmt.Sprintf("Error Indication: %v", code))
			return
		}
	case nhrp.TypeRegistrationRequest:
		n, why := e.nhsForReply(from, id)
		if n == nil {
			e.drop(now, why, from, "error indication about a registration")
			return
		}
		n.reqID = 0
		e.setStateCode(now, n, StateError, fmt.Sprintf("NHS sent Error Indication: %v (code %d)", code, uint16(code)), int(code))
		e.rlog.Log(now, slog.LevelError, "error indication from NHS", "nhs", n.Protocol, "nbma", n.NBMA, "code", uint16(code), "reason", code.String())
		n.Attempts = max(n.Attempts, 3)
		n.nextAt = now.Add(backoff(n.Attempts, e.cfg.RegistrationInterval))
		return
	}
	e.drop(now, DropUnsolicited, from, "error indication matching no outstanding request")
}
