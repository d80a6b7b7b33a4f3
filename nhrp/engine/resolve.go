package engine

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
	"github.com/dmvpn/dmvpn/underlay"
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
)

type pendingResolution struct {
	target   netip.Addr
	reqID    uint32
	attempts int
	nextAt   time.Time
	started  time.Time
}

type redirectKey struct {
	from netip.AddrPort
	dst  netip.Addr
}

type tokenBucket struct {
	tokens float64
	last   time.Time
}

// holder is a peer that learned a mapping through us (hub) or from us
// (owner): it is told with a Purge Request when the mapping goes stale.
type holder struct {
	ep netip.AddrPort
	t  underlay.Transport
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
	if len(e.nhs) == 0 || !target.IsValid() || target == e.self() {
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
		return // a shortcut already covers it
	}
	p := &pendingResolution{target: target, started: now}
	e.pending[target] = p
	e.cache.Put(cache.Entry{Protocol: target, Type: cache.Incomplete, Created: now, Expires: now.Add(incompleteHold)})
	e.sendResolution(now, p)
}

// sendResolution (re)sends the Resolution Request of p to our first NHS
// that is up (or the first one).
func (e *Engine) sendResolution(now time.Time, p *pendingResolution) {
	n := e.upNHS()
	req := e.newPacket(nhrp.TypeResolutionRequest, p.target)
	req.Flags = nhrp.FlagResolutionQ | nhrp.FlagResolutionS | nhrp.FlagCiscoNAT
	p.reqID = e.nextReqID()
	req.RequestID = p.reqID
	req.CIEs = append(req.CIEs[:0], nhrp.CIE{PrefixLength: uint8(e.self().BitLen()), MTU: e.cfg.MTU, HoldingTime: seconds(e.cfg.Holdtime)})
	nat := nhrp.NewNATAddress(e.selfNATCIEs()...)
	req.Extensions = nhrp.StandardRequestExtensions(req.Extensions[:0], e.auth, &nat)
	e.transmit(n.NBMA, n.Transport)
	p.attempts++
	p.nextAt = now.Add(retryMin << (p.attempts - 1))
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

func (e *Engine) self() netip.Addr { return e.cfg.Address.Addr() }

// tickResolutions retries or fails pending requests, refreshes used
// shortcuts and drops those whose direct path passes no traffic.
func (e *Engine) tickResolutions(now time.Time) {
	for target, p := range e.pending {
		if now.Before(p.nextAt) {
			continue
		}
		if p.attempts >= resolveTries {
			e.failResolution(now, target, "no reply")
			continue
		}
		e.sendResolution(now, p)
	}
	for _, c := range e.cache.All() {
		if c.Type != cache.Resolved {
			continue
		}
		used := c.Used.Load()
		if used && !c.Direct && c.LastRx.Load() == 0 && now.Sub(c.Created) >= probeTimeout {
			e.log.Warn("nhrp: direct path passes no traffic, falling back to the hub", "peer", c.Protocol, "nbma", c.NBMA)
			e.dropShortcut(c.Protocol)
			if c.Target.IsValid() {
				e.cache.Put(cache.Entry{Protocol: c.Target, Type: cache.Negative, Created: now, Expires: now.Add(negativeHold)})
			}
			continue
		}
		// Refresh what is in use a third of the holding time before it
		// runs out; let idle shortcuts expire.
		if c.Target.IsValid() && used && !c.Expires.IsZero() && c.Expires.Sub(now) <= c.HoldingTime/3 {
			if _, ok := e.pending[c.Target]; !ok {
				c.Used.Store(false)
				p := &pendingResolution{target: c.Target, started: now}
				e.pending[c.Target] = p
				e.sendResolution(now, p)
			}
		}
	}
}

func (e *Engine) resolutionDeadline(next time.Time) time.Time {
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, p := range e.pending {
		earlier(p.nextAt)
	}
	for _, c := range e.cache.All() {
		if c.Type == cache.Resolved {
			if !c.Direct && c.LastRx.Load() == 0 {
				earlier(c.Created.Add(probeTimeout))
			}
			if !c.Expires.IsZero() {
				earlier(c.Expires.Add(-c.HoldingTime / 3))
			}
		}
	}
	return next
}

func (e *Engine) failResolution(now time.Time, target netip.Addr, why string) {
	delete(e.pending, target)
	e.cache.Put(cache.Entry{Protocol: target, Type: cache.Negative, Created: now, Expires: now.Add(negativeHold)})
	e.log.Info("nhrp: resolution failed, traffic stays on the hub path", "target", target, "why", why)
}

// dropShortcut removes a resolved mapping and every route through it.
func (e *Engine) dropShortcut(owner netip.Addr) {
	if old, ok := e.cache.Get(owner); ok && old.Type == cache.Resolved {
		e.cache.Delete(owner)
	}
	for _, r := range e.cfg.Routes.Routes() {
		if r.Source == fib.SourceNHRP && r.NextHop == owner {
			e.cfg.Routes.Delete(r.Prefix, fib.SourceNHRP)
			e.routeChanged()
		}
	}
}

func (e *Engine) routeChanged() {
	if e.cfg.OnRoutes != nil {
		e.cfg.OnRoutes()
	}
}

// isNHS reports whether ep is one of our NHSes.
func (e *Engine) isNHS(ep netip.AddrPort) bool {
	for _, n := range e.nhs {
		if n.NBMA.Addr() == ep.Addr() {
			return true
		}
	}
	return false
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

func (e *Engine) handleResolutionRequest(now time.Time, from netip.AddrPort, t underlay.Transport, req *nhrp.Packet) {
	if x := req.Extension(nhrp.ExtForwardTransitNHS); x != nil {
		for _, c := range x.CIEs {
			if c.Protocol == e.self() {
				e.sendErrorIndication(now, from, t, e.rxRaw, nhrp.ErrLoopDetected, int(req.ExtensionOffset))
				return
			}
		}
	}
	if prefix, ok := e.ownedPrefix(req.DstProto); ok {
		e.answerResolution(now, from, t, req, prefix)
		return
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
	e.log.Debug("nhrp: forwarding resolution request", "target", req.DstProto, "from", req.SrcProto, "to", owner.Protocol)
	e.transmit(owner.NBMA, owner.Transport)
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
	m[h.ep] = h
}

// negativeReply answers a request we can neither answer nor forward.
func (e *Engine) negativeReply(now time.Time, from netip.AddrPort, t underlay.Transport, req *nhrp.Packet) {
	rep := e.copyForForward(req)
	rep.Type = nhrp.TypeResolutionReply
	rep.HopCount = hopCount
	rep.CIEs = rep.CIEs[:0]
	rep.CIEs = append(rep.CIEs, nhrp.CIE{Code: nhrp.CodeNoBindingExists, PrefixLength: uint8(req.DstProto.BitLen()), MTU: e.cfg.MTU})
	e.fixReplyExtensions(rep)
	e.log.Debug("nhrp: no binding", "target", req.DstProto, "from", req.SrcProto)
	e.transmit(from, t)
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
// the requester on the way.
func (e *Engine) answerResolution(now time.Time, from netip.AddrPort, t underlay.Transport, req *nhrp.Packet, prefix netip.Prefix) {
	// Where is the requester? Behind NAT (the NHS told us in the NAT
	// extension), or at the NBMA address it claims.
	natAddr := natAddress(req, req.SrcProto, req.SrcNBMA)
	direct := !e.isNHS(from) && from.Addr() == req.SrcNBMA
	hold := time.Duration(e.cfg.Holdtime)
	if len(req.CIEs) > 0 && req.CIEs[0].HoldingTime > 0 {
		hold = time.Duration(req.CIEs[0].HoldingTime) * time.Second
	}
	ep, pt := e.reachAt(direct, from, t, natAddr, req.SrcNBMA)
	if !natAddr.IsValid() || direct {
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
	e.addHolder(e.self(), holder{ep: ep, t: pt})
	e.log.Debug("nhrp: answering resolution", "target", req.DstProto, "prefix", prefix, "requester", req.SrcProto, "to", ep)
	if natAddr.IsValid() && !direct {
		// The requester's NAT will not let us in before it has sent to
		// us: answer through the NHS, and send a copy straight at its
		// public address, which opens our own NAT's mapping toward it.
		if n := e.upNHS(); n != nil {
			e.transmit(n.NBMA, n.Transport)
		}
	}
	e.transmit(ep, pt)
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
func (e *Engine) reachAt(direct bool, from netip.AddrPort, t underlay.Transport, natAddr, claimed netip.Addr) (netip.AddrPort, underlay.Transport) {
	switch {
	case direct:
		return from, t
	case natAddr.IsValid():
		return netip.AddrPortFrom(natAddr, gre.UDPPort), underlay.TransportUDP
	case e.cfg.Transport == underlay.TransportUDP:
		return netip.AddrPortFrom(claimed, gre.UDPPort), underlay.TransportUDP
	}
	return netip.AddrPortFrom(claimed, 0), underlay.TransportGRE
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
// one exists for the address.
func (e *Engine) installPeer(now time.Time, proto netip.Addr, ep netip.AddrPort, t underlay.Transport, claimed netip.Addr, nat, direct bool, hold time.Duration, target netip.Addr) {
	if old, ok := e.cache.Get(proto); ok && (old.Type == cache.Static || old.Type == cache.Dynamic) {
		return
	}
	entry := cache.Entry{
		Protocol: proto, NBMA: ep, ClaimedNBMA: claimed, Transport: t, Type: cache.Resolved,
		NAT: nat, Direct: direct, Up: true, MTU: e.cfg.MTU, HoldingTime: hold,
		Created: now, Expires: now.Add(hold), Target: target,
	}
	if old, ok := e.cache.Get(proto); ok && old.Type == cache.Resolved && old.NBMA == ep {
		entry.Created = old.Created
		entry.LastRx = old.LastRx
		entry.Direct = entry.Direct || old.Direct
		if !entry.Target.IsValid() {
			entry.Target = old.Target
		}
	}
	if direct && entry.LastRx == nil {
		// It just reached us straight: the path works.
		entry.LastRx = new(atomic.Int64)
		entry.LastRx.Store(now.UnixNano())
	}
	e.cache.Put(entry)
}

func (e *Engine) handleResolutionReply(now time.Time, from netip.AddrPort, t underlay.Transport, rep *nhrp.Packet) {
	if rep.SrcProto != e.self() {
		// Transit: an owner answered a NATed requester through us.
		to, ok := e.cache.Get(rep.SrcProto)
		if !ok || !to.NBMA.IsValid() || rep.HopCount <= 1 {
			return
		}
		fwd := e.copyForForward(rep)
		fwd.HopCount = rep.HopCount - 1
		e.reauth(fwd)
		e.transmit(to.NBMA, to.Transport)
		return
	}
	var p *pendingResolution
	for _, c := range e.pending {
		if c.reqID == rep.RequestID {
			p = c
		}
	}
	if p == nil {
		return // a duplicate (we also get NATed answers twice) or stale
	}
	if len(rep.CIEs) == 0 || rep.CIEs[0].Code != nhrp.CodeSuccess {
		code := nhrp.CodeNoBindingExists
		if len(rep.CIEs) > 0 {
			code = rep.CIEs[0].Code
		}
		e.failResolution(now, p.target, code.String())
		return
	}
	delete(e.pending, p.target)
	c := rep.CIEs[0]
	owner := c.Protocol
	if !owner.IsValid() {
		owner = rep.DstProto
	}
	natAddr := natAddress(rep, owner, c.NBMA)
	direct := !e.isNHS(from)
	ep, pt := e.reachAt(direct, from, t, natAddr, c.NBMA)
	hold := time.Duration(c.HoldingTime) * time.Second
	if hold == 0 {
		hold = e.cfg.Holdtime
	}
	e.installPeer(now, owner, ep, pt, c.NBMA, natAddr.IsValid() || (direct && from.Addr() != c.NBMA), direct, hold, p.target)
	if old, ok := e.cache.Get(p.target); ok && old.Type == cache.Incomplete {
		e.cache.Delete(p.target)
	}
	bits := int(c.PrefixLength)
	if bits > rep.DstProto.BitLen() {
		bits = rep.DstProto.BitLen()
	}
	prefix := netip.PrefixFrom(rep.DstProto, bits).Masked()
	if owner != rep.DstProto || bits < rep.DstProto.BitLen() {
		// Phase 3: a shortcut route for the owner's prefix; it beats the
		// hub's summary by longest match.
		e.cfg.Routes.Add(fib.Route{Prefix: prefix, NextHop: owner, Source: fib.SourceNHRP})
		e.routeChanged()
	}
	e.log.Info("nhrp: shortcut up", "target", p.target, "prefix", prefix, "via", owner, "nbma", ep, "transport", pt,
		"took", now.Sub(p.started))
}

func (e *Engine) handleTrafficIndication(now time.Time, from netip.AddrPort, ti *nhrp.Packet) {
	if !e.cfg.Shortcut {
		return
	}
	if ti.Code != nhrp.TrafficCodeRedirect {
		return
	}
	dst, ok := inet.IPDestination(ti.Payload)
	if !ok {
		return
	}
	e.log.Debug("nhrp: redirected", "by", from, "destination", dst)
	e.resolve(now, dst)
}

// Redirect is called (hub, phase 3) for a data packet relayed from one
// tunnel peer to another: it sends the source a Traffic Indication so it
// resolves the destination and goes direct. Rate-limited per (source,
// destination).
func (e *Engine) Redirect(now time.Time, from netip.AddrPort, t underlay.Transport, pkt []byte) {
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
		if len(e.redirects) > 65536 {
			clear(e.redirects) // bound memory under a scan
		}
		b = &tokenBucket{tokens: redirectBurst, last: now}
		e.redirects[k] = b
	}
	b.tokens = min(redirectBurst, b.tokens+now.Sub(b.last).Seconds()*redirectBurst/redirectEvery.Seconds())
	b.last = now
	if b.tokens < 1 {
		return
	}
	b.tokens--
	ti := e.newPacket(nhrp.TypeTrafficIndication, src)
	ti.HopCount = 1
	ti.Code = nhrp.TrafficCodeRedirect
	ti.Payload = pkt[:min(len(pkt), tiCopy)]
	e.appendAuthAndEnd(ti)
	e.stats.RedirectsSent++
	e.log.Debug("nhrp: redirect", "to", from, "source", src, "destination", dst)
	e.transmit(from, t)
}

// purgeHolders tells every peer that learned owner's mapping through or
// from us to forget it.
func (e *Engine) purgeHolders(owner netip.Addr, prefixLen uint8) {
	hs := e.holders[owner]
	delete(e.holders, owner)
	for _, h := range hs {
		e.sendPurge(h.ep, h.t, owner, prefixLen, false)
	}
}

func (e *Engine) sendPurge(to netip.AddrPort, t underlay.Transport, addr netip.Addr, prefixLen uint8, noReply bool) {
	p := e.newPacket(nhrp.TypePurgeRequest, addr)
	if noReply {
		p.Flags = nhrp.FlagPurgeN
	}
	p.RequestID = e.nextReqID()
	p.CIEs = append(p.CIEs[:0], nhrp.CIE{PrefixLength: prefixLen, Protocol: addr})
	e.appendAuthAndEnd(p)
	e.stats.PurgesSent++
	e.transmit(to, t)
}

// ClearShortcuts forgets every resolved, negative and incomplete mapping
// and every shortcut route (Cisco's `clear ip nhrp`); traffic falls back to
// the hub until it is resolved again.
// It returns how many cache entries it removed.
func (e *Engine) ClearShortcuts() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.pending)
	n := 0
	for _, c := range e.cache.All() {
		switch c.Type {
		case cache.Resolved, cache.Negative, cache.Incomplete:
			e.dropShortcut(c.Protocol)
			e.cache.Delete(c.Protocol)
			n++
		}
	}
	e.log.Info("nhrp: cleared resolved mappings and shortcuts", "entries", n)
	return n
}
