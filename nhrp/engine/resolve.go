package engine

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

// Resolution, shortcut and redirect parameters.
const (
	resolveTries = 4                // 1 + 3 retries at 1, 2, 4 s
	negativeHold = 10 * time.Second // a failed resolution is not retried before this
	// incompleteHold outlasts every retry of a pending resolution.
	incompleteHold = 20 * time.Second
	probeTimeout   = 3 * time.Second // a used shortcut that never hears its peer is dropped
	redirectBurst  = 4               // Traffic Indications per (source, destination)...
	redirectEvery  = 5 * time.Second // ...per this period (OpenNHRP's limits)
	// tiCopy is how much of the triggering packet a Traffic Indication
	// carries: the IP header and the start of the transport header.
	tiCopy = 64
	// maxRedirectKeys bounds the redirect rate limiter's table.
	maxRedirectKeys = 65536
)

type pendingResolution struct {
	target   netip.Addr
	reqID    uint32
	attempts int
	nextAt   time.Time
	started  time.Time
	// route is the prefix of the route that sent target into the tunnel
	// when we asked: a shortcut may refine it, never reach beyond it.
	route netip.Prefix
}

type redirectKey struct {
	from netip.AddrPort
	dst  netip.Addr
}

// holder is a peer that learned a mapping through us (hub) or from us
// (owner): it is told with a Purge Request when the mapping goes stale.
type holder struct {
	ep netip.AddrPort
	t  nbma.Transport
}

// Resolve starts an NHRP resolution of target (phase 2: a next hop on the
// tunnel with no mapping; phase 3: the destination of a redirected packet)
// unless one is pending, an answer is cached, or it recently failed.
func (e *Engine) Resolve(now time.Time, target netip.Addr) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resolve(now, target)
}

func (e *Engine) resolve(now time.Time, target netip.Addr) {
	if len(e.nhs) == 0 || !target.IsValid() || target == e.self() || target.Is4() != e.self().Is4() {
		return
	}
	if _, ok := e.pending[target]; ok {
		return
	}
	if old, ok := e.cache.Get(target); ok && old.Type != cache.Incomplete {
		return // known, or negative
	}
	r, ok := e.cfg.Routes.Lookup(target)
	if !ok {
		return // nothing routes it into the tunnel
	}
	if r.Source == fib.SourceNHRP && target != r.NextHop {
		// A shortcut already covers it. NHRP routes win over static and
		// BGP routes of the same prefix (fib), so an installed shortcut
		// is always the one in use and a redirect never loops back here.
		return
	}
	if len(e.pending) >= maxPending {
		e.stats.Dropped[DropBusy]++
		return
	}
	p := &pendingResolution{target: target, started: now, route: r.Prefix}
	e.addPending(p)
	if err := e.cache.Put(cache.Entry{Protocol: target, Type: cache.Incomplete, Created: now, Expires: now.Add(incompleteHold)}); err != nil {
		e.stats.Dropped[DropCacheFull]++
	}
	e.sendResolution(now, p)
}

func (e *Engine) addPending(p *pendingResolution) {
	e.pending[p.target] = p
}

func (e *Engine) removePending(target netip.Addr) {
	if p, ok := e.pending[target]; ok {
		delete(e.pendingByID, p.reqID)
		delete(e.pending, target)
	}
}

// sendResolution (re)sends the Resolution Request of p to our first NHS
// that is up (or the first one), with a fresh request ID.
func (e *Engine) sendResolution(now time.Time, p *pendingResolution) {
	n := e.upNHS()
	req := e.newPacket(nhrp.TypeResolutionRequest, p.target)
	req.Flags = nhrp.FlagResolutionQ | nhrp.FlagResolutionS | nhrp.FlagCiscoNAT
	delete(e.pendingByID, p.reqID)
	p.reqID = e.nextReqID()
	e.pendingByID[p.reqID] = p
	req.RequestID = p.reqID
	req.CIEs = append(req.CIEs[:0], nhrp.CIE{PrefixLength: uint8(e.self().BitLen()), MTU: e.cfg.MTU, HoldingTime: seconds(e.cfg.Holdtime)})
	nat := nhrp.NewNATAddress(e.selfNATCIEs()...)
	req.Extensions = nhrp.StandardRequestExtensions(req.Extensions[:0], e.auth, &nat)
	e.transmit(now, n.NBMA, n.Transport)
	p.attempts++
	p.nextAt = now.Add(retryMin << (p.attempts - 1))
	e.timers.Schedule(timerKey{timerResolve, p.target}, p.nextAt)
}

// selfNATCIEs is our NAT extension content: how the NHS sees us, when we
// are behind NAT.
func (e *Engine) selfNATCIEs() []nhrp.CIE {
	for _, n := range e.nhs {
		if n.NATAddress.IsValid() {
			return []nhrp.CIE{{PrefixLength: uint8(e.self().BitLen()), MTU: e.cfg.MTU, NBMA: n.NATAddress.Addr(), Protocol: e.self()}}
		}
	}
	return nil
}

// resolveTimer retries or fails the pending resolution of target.
func (e *Engine) resolveTimer(now time.Time, target netip.Addr) {
	p, ok := e.pending[target]
	if !ok {
		return
	}
	if now.Before(p.nextAt) {
		e.timers.Schedule(timerKey{timerResolve, target}, p.nextAt)
		return
	}
	if p.attempts >= resolveTries {
		e.failResolution(now, target, "no reply")
		return
	}
	e.sendResolution(now, p)
}

// shortcutProbeTimer drops a used shortcut whose direct path has passed no
// traffic since it was installed: a black hole falls back to the hub.
func (e *Engine) shortcutProbeTimer(now time.Time, peer netip.Addr) {
	c, ok := e.cache.Get(peer)
	if !ok || c.Type != cache.Resolved || c.Direct || c.LastRx.Load() != 0 {
		return
	}
	if now.Sub(c.Created) < probeTimeout || !c.Used.Load() {
		// Not used yet: look again later, for as long as it lives.
		at := c.Created.Add(probeTimeout)
		if !at.After(now) {
			at = now.Add(time.Second)
		}
		e.timers.Schedule(timerKey{timerShortcutProbe, peer}, at)
		return
	}
	e.rlog.Warn(now, "direct path passes no traffic, falling back to the hub", "peer", c.Protocol, "nbma", c.NBMA)
	e.dropShortcut(now, c.Protocol, "dead: the direct path passed no traffic within 3s, back to the hub")
	if c.Target.IsValid() {
		_ = e.cache.Put(cache.Entry{Protocol: c.Target, Type: cache.Negative, Created: now, Expires: now.Add(negativeHold)})
	}
}

// shortcutRefreshTimer re-resolves a used shortcut a third of its holding
// time before it runs out; an idle one is left to expire.
func (e *Engine) shortcutRefreshTimer(now time.Time, peer netip.Addr) {
	c, ok := e.cache.Get(peer)
	if !ok || c.Type != cache.Resolved || !c.Target.IsValid() || c.Expires.IsZero() {
		return
	}
	at := c.Expires.Add(-c.HoldingTime / 3)
	if now.Before(at) {
		e.timers.Schedule(timerKey{timerShortcutRefresh, peer}, at)
		return
	}
	if !c.Used.Load() {
		// Idle so far; if it gets used before it expires, refresh then.
		if next := now.Add(max(c.Expires.Sub(now)/4, time.Second)); next.Before(c.Expires) {
			e.timers.Schedule(timerKey{timerShortcutRefresh, peer}, next)
		}
		return
	}
	if _, ok := e.pending[c.Target]; ok || len(e.pending) >= maxPending {
		return
	}
	c.Used.Store(false)
	r, _ := e.cfg.Routes.Lookup(c.Target)
	p := &pendingResolution{target: c.Target, started: now, route: e.refinedRoute(c.Target, r)}
	e.addPending(p)
	e.sendResolution(now, p)
}

// refinedRoute is the route a refresh of a shortcut for target refines: the
// best route that is not itself a shortcut, one a shortcut of its prefix
// hides included (the route watch checks the same one).
func (e *Engine) refinedRoute(target netip.Addr, r fib.Route) netip.Prefix {
	if r.Source != fib.SourceNHRP {
		return r.Prefix
	}
	if o, ok := e.cfg.Routes.LookupExcept(target, fib.SourceNHRP); ok {
		return o.Prefix
	}
	return r.Prefix
}

func (e *Engine) failResolution(now time.Time, target netip.Addr, why string) {
	e.removePending(target)
	if old, ok := e.cache.Get(target); !ok || old.Type == cache.Incomplete || old.Type == cache.Negative {
		// Only what we do not know becomes negative: a tunnel address
		// mapped meanwhile (the owner answering another resolution) keeps
		// its mapping, and the shortcut routes through it.
		_ = e.cache.Put(cache.Entry{Protocol: target, Type: cache.Negative, Created: now, Expires: now.Add(negativeHold)})
	}
	e.rlog.Info(now, "resolution failed, traffic stays on the hub path", "target", target, "why", why)
}

// dropShortcut removes a resolved mapping and every route through it; why
// goes in the shortcut-down event (now may be zero: the listener stamps it).
func (e *Engine) dropShortcut(now time.Time, owner netip.Addr, why string) {
	if old, ok := e.cache.Get(owner); ok && old.Type == cache.Resolved {
		e.shortcutDown(now, old, why)
		e.cache.Delete(owner)
	}
	e.dropRoutesVia(owner)
}

// dropRoutesVia removes the shortcut routes through owner (an index, not a
// walk of the FIB).
func (e *Engine) dropRoutesVia(owner netip.Addr) {
	rs := e.shortcuts[owner]
	if len(rs) == 0 {
		return
	}
	delete(e.shortcuts, owner)
	for pfx := range rs {
		e.cfg.Routes.Delete(pfx, fib.SourceNHRP)
		e.unindexShortcut(pfx)
	}
	e.routeChanged()
}

func (e *Engine) addShortcutRoute(prefix netip.Prefix, owner netip.Addr) bool {
	// One prefix has one shortcut: take it away from a previous owner.
	if r, ok := e.cfg.Routes.Get(prefix, fib.SourceNHRP); ok && r.NextHop != owner {
		delete(e.shortcuts[r.NextHop], prefix)
	}
	m := e.shortcuts[owner]
	if m == nil {
		m = map[netip.Prefix]struct{}{}
		e.shortcuts[owner] = m
	}
	if _, ok := m[prefix]; !ok && len(m) >= maxShortcutsPerOwner {
		return false
	}
	m[prefix] = struct{}{}
	e.indexShortcut(prefix, owner)
	e.cfg.Routes.Add(fib.Route{Prefix: prefix, NextHop: owner, Source: fib.SourceNHRP})
	e.routeChanged()
	return true
}

func (e *Engine) routeChanged() {
	if e.cfg.OnRoutes != nil {
		e.cfg.OnRoutes()
	}
}

// ownedPrefix returns the prefix we answer for target with, when we own it:
// our own overlay address (phase 2) or a destination our host routes
// outside the tunnel (phase 3: its LAN). A default route does not make us
// the owner of the Internet.
func (e *Engine) ownedPrefix(target netip.Addr) (netip.Prefix, bool) {
	if target == e.self() {
		return netip.PrefixFrom(target, target.BitLen()), true
	}
	if e.cfg.Host == nil {
		return netip.Prefix{}, false
	}
	p, ok := e.cfg.Host.Local(target)
	if !ok || p.Bits() == 0 {
		return netip.Prefix{}, false
	}
	return p, true
}

func (e *Engine) handleResolutionRequest(now time.Time, from netip.AddrPort, t nbma.Transport, req *nhrp.Packet) {
	if x := req.Extension(nhrp.ExtForwardTransitNHS); x != nil {
		for _, c := range x.CIEs {
			if c.Protocol == e.self() {
				e.sendErrorIndication(now, from, t, e.rxRaw, nhrp.ErrLoopDetected, int(req.ExtensionOffset))
				return
			}
		}
	}
	// A requester is a station on the tunnel (it gets an answer sent to
	// it, and maybe a mapping).
	if req.SrcProto != e.self() && !e.onSubnet(req.SrcProto) {
		e.drop(now, DropOffSubnet, from, "resolution requester "+req.SrcProto.String())
		return
	}
	if prefix, ok := e.ownedPrefix(req.DstProto); ok {
		if until, ok := e.formerNHS[from.Addr()]; ok {
			if now.Before(until) {
				// We deregistered from it: its liveness probe must
				// find us gone.
				e.drop(now, DropNotFromNHS, from, "resolution request from an NHS we left")
				return
			}
			delete(e.formerNHS, from.Addr())
		}
		e.answerResolution(now, from, t, req, prefix)
		return
	}
	if !e.cfg.Server {
		// Only an NHS forwards. A client that does not own the target
		// says so to its NHS (stale routing there) and ignores the rest.
		if e.isNHS(from) {
			e.negativeReply(now, from, t, req)
		} else {
			e.drop(now, DropNotServer, from, "resolution request for something we do not own")
		}
		return
	}
	// We forward only for our registered clients (at the endpoint they
	// registered from) and for other NHSes: what we forward creates state
	// at the owner.
	if reg, ok := e.cache.Get(req.SrcProto); !ok || reg.Type != cache.Dynamic || reg.NBMA != from {
		if !e.isNHS(from) {
			e.drop(now, DropNotRegistered, from, "resolution request from "+req.SrcProto.String())
			return
		}
	}
	// Not ours: forward toward the owner (a registered spoke, or the next
	// hop our routes name), like an NHS on the routed path.
	owner, ok := e.cache.Get(req.DstProto)
	if !ok || owner.Type != cache.Dynamic {
		if r, rok := e.cfg.Routes.Lookup(req.DstProto); rok && r.Source != fib.SourceConnected {
			owner, ok = e.cache.Get(r.NextHopFor(req.DstProto))
		}
	}
	if !ok || (owner.Type != cache.Dynamic && owner.Type != cache.Static) || owner.Protocol == req.SrcProto || owner.NBMA == from {
		e.negativeReply(now, from, t, req)
		return
	}
	if req.HopCount <= 1 {
		e.stats.Dropped[DropHopCount]++
		e.sendErrorIndication(now, from, t, e.rxRaw, nhrp.ErrHopCountExceeded, 9)
		return
	}
	fwd := e.copyForForward(req)
	fwd.HopCount = req.HopCount - 1
	requesterNATed := req.SrcNBMA.IsValid() && from.Addr() != req.SrcNBMA && !e.isNHS(from)
	for i := range fwd.Extensions {
		x := &fwd.Extensions[i]
		switch x.Type {
		case nhrp.ExtForwardTransitNHS:
			x.CIEs = append(append([]nhrp.CIE(nil), x.CIEs...), nhrp.SelfCIE(e.cfg.NBMA, e.self(), e.cfg.MTU, seconds(e.cfg.Holdtime)))
		case nhrp.ExtNATAddress:
			// Tell the owner how we see a NATed requester (Cisco/FRR).
			if requesterNATed && !hasCIEFor(x.CIEs, req.SrcProto) {
				x.CIEs = append(append([]nhrp.CIE(nil), x.CIEs...), nhrp.CIE{PrefixLength: uint8(req.SrcProto.BitLen()), MTU: e.cfg.MTU, NBMA: from.Addr(), Protocol: req.SrcProto})
			}
		}
	}
	e.reauth(fwd)
	e.addHolder(owner.Protocol, holder{ep: from, t: t})
	e.rlog.Debug(now, "forwarding resolution request", "target", req.DstProto, "from", req.SrcProto, "to", owner.Protocol)
	e.transmit(now, owner.NBMA, owner.Transport)
}

func hasCIEFor(cs []nhrp.CIE, proto netip.Addr) bool {
	for _, c := range cs {
		if c.Protocol == proto {
			return true
		}
	}
	return false
}

// copyForForward prepares e.tx as a copy of p, to forward it or to turn it
// into a reply (CIEs and extensions are copied into e.tx's own slices; their
// byte fields still point into the receive buffer, which is fine until
// transmit).
func (e *Engine) copyForForward(p *nhrp.Packet) *nhrp.Packet {
	f := &e.tx
	cies, exts := f.CIEs[:0], f.Extensions[:0]
	*f = *p
	f.CIEs = append(cies, p.CIEs...)
	f.Extensions = append(exts, p.Extensions...)
	f.PacketSize, f.Checksum, f.ExtensionOffset = 0, 0, 0
	return f
}

func (e *Engine) addHolder(owner netip.Addr, h holder) {
	m := e.holders[owner]
	if m == nil {
		m = map[netip.AddrPort]holder{}
		e.holders[owner] = m
	}
	if _, ok := m[h.ep]; !ok && len(m) >= maxHoldersPerOwner {
		return // bounded: the rest learn of staleness by expiry
	}
	m[h.ep] = h
}

// negativeReply answers a request we can neither answer nor forward.
func (e *Engine) negativeReply(now time.Time, from netip.AddrPort, t nbma.Transport, req *nhrp.Packet) {
	rep := e.copyForForward(req)
	rep.Type = nhrp.TypeResolutionReply
	rep.HopCount = hopCount
	rep.CIEs = rep.CIEs[:0]
	rep.CIEs = append(rep.CIEs, nhrp.CIE{Code: nhrp.CodeNoBindingExists, PrefixLength: uint8(req.DstProto.BitLen()), MTU: e.cfg.MTU})
	e.fixReplyExtensions(rep)
	e.rlog.Debug(now, "no binding", "target", req.DstProto, "from", req.SrcProto)
	e.transmit(now, from, t)
}

// fixReplyExtensions puts our Responder Address and authentication into a
// reply built from a request.
func (e *Engine) fixReplyExtensions(rep *nhrp.Packet) {
	for i := range rep.Extensions {
		x := &rep.Extensions[i]
		switch x.Type {
		case nhrp.ExtResponderAddress:
			x.CIEs = []nhrp.CIE{nhrp.SelfCIE(e.cfg.NBMA, e.self(), e.cfg.MTU, seconds(e.cfg.Holdtime))}
		case nhrp.ExtNATAddress:
			x.CIEs = e.selfNATCIEs()
		}
	}
	e.reauth(rep)
}

// reauth replaces the authentication extension of a packet we send on
// (forward or answer) with ours: Cisco authentication is hop by hop.
func (e *Engine) reauth(p *nhrp.Packet) {
	if x := p.Extension(nhrp.ExtAuthentication); x != nil && e.auth != nil {
		*x = *e.auth
	}
}

// answerResolution replies to a request for something we own, and learns
// the requester on the way when we may.
func (e *Engine) answerResolution(now time.Time, from netip.AddrPort, t nbma.Transport, req *nhrp.Packet, prefix netip.Prefix) {
	// Where is the requester? Behind NAT (the NHS told us in the NAT
	// extension), or at the NBMA address it claims.
	natAddr := natAddress(req, req.SrcProto, req.SrcNBMA)
	viaNHS := e.isNHS(from)
	direct := !viaNHS && from.Addr() == req.SrcNBMA
	hold := time.Duration(0)
	if len(req.CIEs) > 0 {
		hold = e.capHold(req.CIEs[0].HoldingTime)
	} else {
		hold = e.capHold(0)
	}
	ep, pt := e.reachAt(direct, from, t, natAddr, req.SrcNBMA)
	// A mapping for the requester comes only from a request our NHS
	// vouches for (it forwards for registered clients only), or straight
	// from a peer we already map at that address (a refresh). An NHS has
	// its clients' registrations and learns nothing here.
	known := false
	if old, ok := e.cache.Get(req.SrcProto); ok && old.Type == cache.Resolved && old.NBMA.Addr() == from.Addr() {
		known = true
	}
	learn := !e.cfg.Server && req.SrcProto != e.self() && !e.isNHSAddr(req.SrcProto) && (viaNHS || (direct && known))
	if learn && (!natAddr.IsValid() || direct) {
		// Install the requester, so our return traffic can go direct too.
		e.installPeer(now, req.SrcProto, ep, pt, req.SrcNBMA, natAddr.IsValid(), direct, hold, netip.Addr{})
	}

	rep := e.copyForForward(req)
	rep.Type = nhrp.TypeResolutionReply
	rep.HopCount = hopCount
	rep.Flags = req.Flags | nhrp.FlagResolutionA | nhrp.FlagResolutionD
	rep.CIEs = append(rep.CIEs[:0], nhrp.CIE{
		PrefixLength: uint8(prefix.Bits()), MTU: e.cfg.MTU, HoldingTime: seconds(e.cfg.Holdtime),
		NBMA: e.cfg.NBMA, Protocol: e.self(),
	})
	e.fixReplyExtensions(rep)
	if learn {
		e.addHolder(e.self(), holder{ep: ep, t: pt})
	}
	e.rlog.Debug(now, "answering resolution", "target", req.DstProto, "prefix", prefix, "requester", req.SrcProto, "to", ep)
	if natAddr.IsValid() && !direct {
		// The requester's NAT will not let us in before it has sent to
		// us: answer through the NHS, and send a copy straight at its
		// public address, which opens our own NAT's mapping toward it.
		if n := e.upNHS(); n != nil {
			e.transmit(now, n.NBMA, n.Transport)
		}
	}
	e.transmit(now, ep, pt)
}

// natAddress returns the post-NAT NBMA address p's NAT extension gives for
// proto when it differs from claimed, the NBMA address proto's owner put on
// the wire; the zero Addr when there is none.
func natAddress(p *nhrp.Packet, proto, claimed netip.Addr) netip.Addr {
	x := p.Extension(nhrp.ExtNATAddress)
	if x == nil {
		return netip.Addr{}
	}
	var nat netip.Addr
	for _, c := range x.CIEs {
		if c.Protocol == proto && c.NBMA.IsValid() && c.NBMA != claimed {
			nat = c.NBMA
		}
	}
	return nat
}

// reachAt chooses where to send to a peer learned from a packet: where the
// packet came from when it came straight from the peer (that works, NAT or
// not); its public address over GRE-in-UDP when it is behind NAT; else its
// claimed address over our own transport (GRE-in-UDP on the standard port).
func (e *Engine) reachAt(direct bool, from netip.AddrPort, t nbma.Transport, natAddr, claimed netip.Addr) (netip.AddrPort, nbma.Transport) {
	switch {
	case direct:
		return from, t
	case natAddr.IsValid():
		return netip.AddrPortFrom(natAddr, e.cfg.UDPPort), nbma.TransportUDP
	case e.cfg.Transport == nbma.TransportUDP:
		return netip.AddrPortFrom(claimed, e.cfg.UDPPort), nbma.TransportUDP
	}
	return netip.AddrPortFrom(claimed, 0), nbma.TransportGRE
}

func (e *Engine) upNHS() *nhsState {
	for _, n := range e.nhs {
		if n.State == StateUp {
			return n
		}
	}
	if len(e.nhs) > 0 {
		return e.nhs[0]
	}
	return nil
}

// installPeer adds a resolved mapping, unless a configured or registered
// one exists for the address. It reports whether the mapping is in the
// cache.
func (e *Engine) installPeer(now time.Time, proto netip.Addr, ep netip.AddrPort, t nbma.Transport, claimed netip.Addr, nat, direct bool, hold time.Duration, target netip.Addr) bool {
	old, existed := e.cache.Get(proto)
	if existed && (old.Type == cache.Static || old.Type == cache.Dynamic) {
		return false
	}
	entry := cache.Entry{
		Protocol: proto, NBMA: ep, ClaimedNBMA: claimed, Transport: t, Type: cache.Resolved,
		NAT: nat, Direct: direct, Up: true, MTU: e.cfg.MTU, HoldingTime: hold,
		Created: now, Expires: now.Add(hold), Target: target,
	}
	if existed && old.Type == cache.Resolved && old.NBMA == ep {
		entry.Created = old.Created
		entry.LastRx = old.LastRx
		entry.Direct = entry.Direct || old.Direct
		if !entry.Target.IsValid() {
			entry.Target = old.Target
		}
	} else if existed && old.Type == cache.Resolved {
		e.shortcutDown(now, old, "moved to "+nbmaString(ep))
		e.dropRoutesVia(proto) // it moved: its old routes pointed at a dead path
	}
	if direct && entry.LastRx == nil {
		// It just reached us straight: the path works.
		entry.LastRx = new(atomic.Int64)
		entry.LastRx.Store(now.UnixNano())
	}
	if err := e.cache.Put(entry); err != nil {
		e.stats.Dropped[DropCacheFull]++
		return false
	}
	if !entry.Direct {
		e.timers.Schedule(timerKey{timerShortcutProbe, proto}, entry.Created.Add(probeTimeout))
	}
	if entry.Target.IsValid() {
		e.timers.Schedule(timerKey{timerShortcutRefresh, proto}, entry.Expires.Add(-hold/3))
	}
	return true
}

// answerFrom reports whether a Resolution Reply from from could be the
// answer to our request: our NHS (the request went there), or the owner
// itself at the NBMA address it gives or the one the NAT extension gives.
func (e *Engine) answerFrom(from netip.AddrPort, c *nhrp.CIE, natAddr netip.Addr) bool {
	return e.isNHS(from) || from.Addr() == c.NBMA || (natAddr.IsValid() && from.Addr() == natAddr)
}

func (e *Engine) handleResolutionReply(now time.Time, from netip.AddrPort, t nbma.Transport, rep *nhrp.Packet) {
	if rep.SrcProto != e.self() {
		e.forwardReply(now, from, rep)
		return
	}
	if pr := e.probeByID[rep.RequestID]; pr != nil {
		e.probeAnswered(now, from, pr)
		return
	}
	p := e.pendingByID[rep.RequestID]
	if p == nil {
		e.drop(now, DropUnsolicited, from, "resolution reply matching no request")
		return
	}
	if rep.DstProto != p.target {
		e.drop(now, DropWrongAnswer, from, "answers "+rep.DstProto.String()+", we asked for "+p.target.String())
		return
	}
	if len(rep.CIEs) == 0 || rep.CIEs[0].Code != nhrp.CodeSuccess {
		if !e.isNHS(from) {
			e.drop(now, DropWrongAnswer, from, "negative answer not from our NHS")
			return
		}
		code := nhrp.CodeNoBindingExists
		if len(rep.CIEs) > 0 {
			code = rep.CIEs[0].Code
		}
		e.failResolution(now, p.target, code.String())
		return
	}
	c := rep.CIEs[0]
	owner := c.Protocol
	if !owner.IsValid() {
		owner = rep.DstProto
	}
	natAddr := natAddress(rep, owner, c.NBMA)
	if why := e.badAnswer(p, from, &c, owner, natAddr); why != "" {
		// Not installed, and the request stays pending: a forger cannot
		// stop the real answer from counting.
		e.drop(now, DropWrongAnswer, from, why)
		return
	}
	bits := min(int(c.PrefixLength), p.target.BitLen())
	prefix := netip.PrefixFrom(p.target, bits).Masked()
	direct := !e.isNHS(from)
	ep, pt := e.reachAt(direct, from, t, natAddr, c.NBMA)
	hold := e.capHold(c.HoldingTime)
	e.removePending(p.target)
	// A shortcut in use being refreshed is no news; a new one, or a new
	// route through a known one, is.
	old, had := e.cache.Get(owner)
	wasUp := had && old.Type == cache.Resolved && old.Target.IsValid() && old.NBMA == ep
	if !e.installPeer(now, owner, ep, pt, c.NBMA, natAddr.IsValid() || (direct && from.Addr() != c.NBMA), direct, hold, p.target) {
		// Nowhere to put it (or a registration holds the address): stay
		// on the hub path, and do not ask again at once.
		e.failResolution(now, p.target, "mapping not installed")
		return
	}
	if old, ok := e.cache.Get(p.target); ok && old.Type == cache.Incomplete {
		e.cache.Delete(p.target)
	}
	newRoute, route := false, ""
	if !e.subnet.Contains(p.target) && (owner != p.target || bits < p.target.BitLen()) {
		// Phase 3: a shortcut route for the owner's prefix; it beats the
		// hub's summary by longest match. (A tunnel address, phase 2,
		// needs only the mapping: whatever prefix length the owner put in
		// its answer, no route goes into the connected subnet.)
		_, known := e.shortcuts[owner][prefix]
		if !e.addShortcutRoute(prefix, owner) {
			e.stats.Dropped[DropCacheFull]++
		} else {
			newRoute, route = !known, prefix.String()
		}
	}
	e.rlog.Info(now, "shortcut up", "target", p.target, "prefix", prefix, "via", owner, "nbma", ep, "transport", pt,
		"took", now.Sub(p.started))
	if !wasUp || newRoute {
		e.emit(now, events.ShortcutUp, owner, ep, route, "resolved "+p.target.String(), 0)
	}
	if e.cfg.OnResolved != nil {
		e.cfg.OnResolved(now.Sub(p.started))
	}
}

// badAnswer checks that a positive reply answers the question p asked:
// from a place the request could reach, an owner on the tunnel, and a
// prefix that covers the target (it is built from it) without reaching
// beyond the route the shortcut refines or into the tunnel subnet.
func (e *Engine) badAnswer(p *pendingResolution, from netip.AddrPort, c *nhrp.CIE, owner, natAddr netip.Addr) string {
	if !e.answerFrom(from, c, natAddr) {
		return "reply from " + from.Addr().String() + ", neither our NHS nor the owner"
	}
	if !e.onSubnet(owner) || e.isNHSAddr(owner) {
		return "owner " + owner.String() + " is not a peer on the tunnel subnet"
	}
	if !c.NBMA.IsValid() && !natAddr.IsValid() && !e.isNHS(from) {
		return "no NBMA address"
	}
	bits := min(int(c.PrefixLength), p.target.BitLen())
	prefix := netip.PrefixFrom(p.target, bits).Masked()
	if e.subnet.Contains(p.target) {
		if owner != p.target {
			return "a tunnel address answered by another station"
		}
		return ""
	}
	if prefix.Overlaps(e.subnet) {
		return "prefix " + prefix.String() + " overlaps the tunnel subnet"
	}
	if p.route.IsValid() && bits < p.route.Bits() {
		return "prefix " + prefix.String() + " is wider than the route it refines, " + p.route.String()
	}
	if prefix.Contains(e.self()) {
		return "prefix covers our own address"
	}
	return ""
}

// forwardReply relays a reply an owner sent a NATed requester through us
// (NHS only), to a registered client.
func (e *Engine) forwardReply(now time.Time, from netip.AddrPort, rep *nhrp.Packet) {
	if !e.cfg.Server {
		e.drop(now, DropNotServer, from, "transit resolution reply")
		return
	}
	to, ok := e.cache.Get(rep.SrcProto)
	if !ok || to.Type != cache.Dynamic || !to.NBMA.IsValid() {
		e.drop(now, DropNotRegistered, from, "transit reply for "+rep.SrcProto.String())
		return
	}
	if _, ok := e.cache.ByNBMA(from); !ok {
		e.drop(now, DropNotRegistered, from, "transit reply from a station that is not registered")
		return
	}
	if rep.HopCount <= 1 {
		e.stats.Dropped[DropHopCount]++
		return
	}
	fwd := e.copyForForward(rep)
	fwd.HopCount = rep.HopCount - 1
	e.reauth(fwd)
	e.transmit(now, to.NBMA, to.Transport)
}

func (e *Engine) handleTrafficIndication(now time.Time, from netip.AddrPort, ti *nhrp.Packet) {
	if !e.cfg.Shortcut {
		return
	}
	// Only an NHS redirects.
	if !e.isNHS(from) {
		e.drop(now, DropNotFromNHS, from, "traffic indication")
		return
	}
	if ti.Code != nhrp.TrafficCodeRedirect {
		return
	}
	dst, ok := inet.IPDestination(ti.Payload)
	if !ok {
		return
	}
	e.rlog.Debug(now, "redirected", "by", from, "destination", dst)
	e.resolve(now, dst)
}

// Redirect is called (hub, phase 3) for a data packet relayed from one
// tunnel peer to another: it sends the source a Traffic Indication so it
// resolves the destination and goes direct. Rate-limited per (source,
// destination).
func (e *Engine) Redirect(now time.Time, from netip.AddrPort, t nbma.Transport, pkt []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.cfg.Redirect {
		return
	}
	dst, ok1 := inet.IPDestination(pkt)
	src, ok2 := inet.IPSource(pkt)
	if !ok1 || !ok2 {
		return
	}
	k := redirectKey{from: from, dst: dst}
	b := e.redirects[k]
	if b == nil {
		if len(e.redirects) >= maxRedirectKeys {
			clear(e.redirects) // bound memory under a scan
		}
		b = &bucket{}
		e.redirects[k] = b
	}
	if !b.Take(now, Rate{Packets: redirectBurst, Interval: redirectEvery}) {
		return
	}
	ti := e.newPacket(nhrp.TypeTrafficIndication, src)
	ti.HopCount = 1
	ti.Code = nhrp.TrafficCodeRedirect
	ti.Payload = pkt[:min(len(pkt), tiCopy)]
	e.appendAuthAndEnd(ti)
	e.stats.RedirectsSent++
	e.rlog.Debug(now, "redirect", "to", from, "source", src, "destination", dst)
	e.transmit(now, from, t)
}

// purgeHolders tells every peer that learned owner's mapping through or
// from us to forget it.
func (e *Engine) purgeHolders(now time.Time, owner netip.Addr, prefixLen uint8) {
	hs := e.holders[owner]
	delete(e.holders, owner)
	for _, h := range hs {
		e.sendPurge(now, h.ep, h.t, owner, prefixLen, false)
	}
}

func (e *Engine) sendPurge(now time.Time, to netip.AddrPort, t nbma.Transport, addr netip.Addr, prefixLen uint8, noReply bool) {
	p := e.newPacket(nhrp.TypePurgeRequest, addr)
	if noReply {
		p.Flags = nhrp.FlagPurgeN
	}
	p.RequestID = e.nextReqID()
	p.CIEs = append(p.CIEs[:0], nhrp.CIE{PrefixLength: prefixLen, Protocol: addr})
	e.appendAuthAndEnd(p)
	e.stats.PurgesSent++
	e.transmit(now, to, t)
	e.emit(now, events.PurgeSent, addr, to, "", "", 0)
}

// ClearShortcuts forgets every resolved, negative and incomplete mapping
// and every shortcut route (Cisco's `clear ip nhrp`); traffic falls back to
// the hub until it is resolved again.
// It returns how many cache entries it removed.
func (e *Engine) ClearShortcuts() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	for t := range e.pending {
		e.removePending(t)
	}
	n := 0
	for _, c := range e.cache.All() { // an operator command, not an event
		switch c.Type {
		case cache.Resolved, cache.Negative, cache.Incomplete:
			e.dropShortcut(time.Time{}, c.Protocol, "cleared (clear nhrp)")
			e.cache.Delete(c.Protocol)
			n++
		}
	}
	for owner := range e.shortcuts {
		e.dropRoutesVia(owner)
	}
	e.log.Info("cleared resolved mappings and shortcuts", "entries", n)
	return n
}
