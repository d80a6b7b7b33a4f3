package engine

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	"github.com/dmvpn/dmvpn/ikev2"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// Rekeying (RFC 7296 §1.3.2, §1.3.3, §2.8, §2.18, §2.25): CREATE_CHILD_SA
// for the Child SA and for the IKE SA, as initiator and responder, the
// collision rules, and the lifetimes that start them. The package
// documentation says what the data plane sees.

// armIKE arms an established IKE SA's timers: DPD, rekey, hard lifetime.
func (e *Engine) armIKE(now time.Time, sa *ikeSA) {
	if e.cfg.DPDInterval > 0 {
		e.timers.Set(timerKey{timerDPD, sa.ours}, now.Add(e.cfg.DPDInterval))
	}
	sa.expires = now.Add(e.cfg.IKELifetime)
	sa.rekeyAt = e.rekeyTime(now, e.cfg.IKELifetime)
	e.timers.Set(timerKey{timerIKERekey, sa.ours}, sa.rekeyAt)
	e.timers.Set(timerKey{timerIKEExpire, sa.ours}, sa.expires)
}

// linger is how long an IKE SA superseded by the peer's rekey (or made
// redundant by a collision) waits for the peer's Delete: the peer's
// retransmissions of it, with our own schedule as the estimate, and a
// margin; at most 5 minutes.
func (e *Engine) linger() time.Duration {
	span := e.cfg.RetransmitBase * time.Duration(1<<e.cfg.RetransmitTries-1)
	return min(span+5*time.Second, 5*time.Minute)
}

// retryChildRekey plans the next rekey attempt of c after d.
func (e *Engine) retryChildRekey(now time.Time, c *childSA, d time.Duration) {
	c.rekeyAt = now.Add(d)
	e.timers.Set(timerKey{timerChildRekey, uint64(c.inSPI)}, c.rekeyAt)
}

// retryIKERekey plans the next rekey attempt of sa after d.
func (e *Engine) retryIKERekey(now time.Time, sa *ikeSA, d time.Duration) {
	sa.rekeyAt = now.Add(d)
	e.timers.Set(timerKey{timerIKERekey, sa.ours}, sa.rekeyAt)
}

// tempFailDelay is the random delay before a rekey answered with
// TEMPORARY_FAILURE is tried again: random, so that two peers refusing
// each other's rekeys (a Child SA rekey crossing an IKE SA rekey) do not
// collide again.
func (e *Engine) tempFailDelay() time.Duration { return tempFailMin + e.randDuration(tempFailSpread) }

// ---- Child SA rekey, our side ----

// startChildRekey queues a rekey of c, unless one is under way or c is
// being replaced already (nil then too).
func (e *Engine) startChildRekey(now time.Time, sa *ikeSA, c *childSA) error {
	if sa.state != stateEstablished || c.state != childActive || c.successor != nil || c.rekeying {
		return nil
	}
	if len(sa.children) >= maxChildren {
		return errTooManyChildren
	}
	spi, err := e.newChildSPI()
	if err != nil {
		return err
	}
	ni, err := e.nonce()
	if err != nil {
		return err
	}
	r := &request{kind: reqRekeyChild, old: c, nonce: ni, group: e.cfg.PFSGroup}
	if r.group != 0 {
		if r.dh, err = r.group.GenerateKey(e.rnd); err != nil {
			return err
		}
	}
	r.child = &childSA{inSPI: spi, state: childPending, replaces: c}
	e.byChild[spi] = r.child // reserved; its ike stays nil until it is up
	c.rekeying = true
	e.timers.Cancel(timerKey{timerChildRekey, uint64(c.inSPI)})
	if !e.queueRequest(now, sa, r) {
		e.releaseRequest(r)
		e.retryChildRekey(now, c, rekeyRetry)
	}
	return nil
}

// staleRekey reports whether a queued rekey became moot before it was
// sent: the Child SA is gone or being replaced by the peer's rekey, the
// IKE SA is no longer established or the peer rekeyed it.
func (e *Engine) staleRekey(sa *ikeSA, r *request) bool {
	switch r.kind {
	case reqRekeyChild:
		o := r.old
		return sa.state != stateEstablished || o.ike != sa || o.state != childActive || o.successor != nil
	case reqRekeyIKE:
		return sa.state != stateEstablished || sa.peerRekey != nil || !sa.announced
	}
	return false
}

// buildRekeyChild is the inner payloads of our Child SA rekey (§1.3.3):
// REKEY_SA with the SPI we receive the old SA on, the mode asked for
// again, proposals with our new inbound SPI, Ni, KEi with PFS, and the
// selectors of the first Child SA (GRE between the NBMA hosts).
func (e *Engine) buildRekeyChild(b *ikev2.Builder, sa *ikeSA, r *request) {
	b.Notify(&ikev2.Notify{Protocol: ikev2.ProtocolESP, Type: ikev2.NotifyRekeySA, SPI: spi4(r.old.inSPI)})
	if r.old.info.Mode == Transport {
		b.Notify(&ikev2.Notify{Type: ikev2.NotifyUseTransportMode})
	}
	b.SA(espSAPayload(e.cfg.ESPProposals, r.child.inSPI, r.group))
	b.Nonce(r.nonce)
	if r.dh != nil {
		b.KE(&ikev2.KE{Group: ikev2.DHGroup(r.group), Data: r.dh.Public()})
	}
	b.TSi(hostTS(e.cfg.Local))
	b.TSr(hostTS(sa.key.Addr()))
}

func spi4(spi uint32) []byte { return binary.BigEndian.AppendUint32(nil, spi) }

// rekeyChildResponse handles the answer to our Child SA rekey.
func (e *Engine) rekeyChildResponse(now time.Time, sa *ikeSA, r *request, m *ikev2.Message) {
	e.finish(sa)
	defer e.next(now, sa)
	old, c := r.old, r.child
	old.rekeying = false
	release := func() {
		if e.byChild[c.inSPI] == c {
			delete(e.byChild, c.inSPI)
		}
		c.state = childGone
	}
	inner := m.Inner
	if n, ok := firstError(inner); ok {
		release()
		e.childRekeyRefused(now, sa, old, n)
		return
	}
	if why := e.acceptRekeyChild(sa, r, inner); why != "" {
		// The peer installed an SA we will not use: delete it there (by
		// the SPI we would have received it on).
		e.rlog.Warn(now, "Child SA rekey answer refused", "peer", sa.peer, "why", why)
		release()
		e.queueRequest(now, sa, &request{kind: reqDeleteChild, spis: []uint32{c.inSPI}})
		if old.ike == sa && old.state == childActive && old.successor == nil {
			e.retryChildRekey(now, old, rekeyRetry)
		}
		return
	}
	rival := old.successor // a standby SA the peer made for old: a collision
	switch {
	case old.state == childGone && old.deletedHere:
		// We deleted the old SA meanwhile (operator, lifetime): its
		// replacement is not wanted either.
		release()
		e.queueRequest(now, sa, &request{kind: reqDeleteChild, spis: []uint32{c.inSPI}})
	case rival != nil && (rival.state != childStandby || loses(c.ni, c.nr, rival.ni, rival.nr)):
		// §2.8.1: ours has the lowest nonce (or the peer's already took
		// over): ours is redundant, and we made it, so we delete it. It
		// was never reported; the peer deletes the old SA, which makes the
		// rival active here.
		e.stats.RekeyCollisions++
		e.rlog.Info(now, "simultaneous Child SA rekey: ours is redundant", "peer", sa.peer, "old", old.inSPI)
		release()
		e.queueRequest(now, sa, &request{kind: reqDeleteChild, spis: []uint32{c.inSPI}})
	default:
		if rival != nil {
			// §2.8.1: the peer's is redundant; the peer deletes it.
			e.stats.RekeyCollisions++
			e.rlog.Info(now, "simultaneous Child SA rekey: the peer's is redundant", "peer", sa.peer, "old", old.inSPI)
			e.makeRedundant(now, rival)
		}
		e.stats.ChildRekeys++
		if old.state != childGone {
			old.successor = c
		}
		e.installChild(now, sa, c, childActive)
		if old.state != childGone {
			// Make before break: the new SA is in use; the old goes.
			old.info.ReplacedBy = c.inSPI
			e.deleteChild(now, old, "rekeyed")
		}
	}
}

// acceptRekeyChild checks the responder's answer to our Child SA rekey
// and derives the new SA's keys into r.child; a non-empty result says
// why it is refused.
func (e *Engine) acceptRekeyChild(sa *ikeSA, r *request, inner []ikev2.Payload) string {
	saP, nP := ikev2.Find(inner, ikev2.PayloadSA), ikev2.Find(inner, ikev2.PayloadNonce)
	tsiP, tsrP := ikev2.Find(inner, ikev2.PayloadTSi), ikev2.Find(inner, ikev2.PayloadTSr)
	if saP == nil || nP == nil || tsiP == nil || tsrP == nil {
		return "no SA, Nonce or selectors in the answer"
	}
	nr, err := nP.Nonce()
	if err != nil || ikecrypto.CheckNonce(sa.suite.PRF, nr) != nil {
		return "unusable responder nonce"
	}
	if saP.SA(&e.sa) != nil {
		return "unreadable Child SA proposal"
	}
	ch, err := acceptedESP(e.cfg.ESPProposals, &e.sa)
	if err != nil {
		return "Child SA: " + err.Error()
	}
	groups := dhGroups(&e.sa.Proposals[0])
	var gir []byte
	switch {
	case r.dh != nil:
		keP := ikev2.Find(inner, ikev2.PayloadKE)
		if len(groups) != 1 || groups[0] != r.group || keP == nil {
			return "PFS asked for, the answer has no KE of group " + r.group.String()
		}
		ke, err := keP.KE()
		if err != nil || ikecrypto.Group(ke.Group) != r.group {
			return "KE payload of another group"
		}
		if gir, err = r.dh.Shared(ke.Data); err != nil {
			return "KE: " + err.Error()
		}
		ch.dh = r.group
	case len(groups) > 0 && groups[0] != 0:
		return "a D-H group chosen that we did not offer"
	}
	if tsiP.TrafficSelectors(&e.tsi) != nil || tsrP.TrafficSelectors(&e.tsr) != nil {
		return "unreadable traffic selectors"
	}
	if !exactHost(&e.tsi, e.cfg.Local, sa.nat.Local) || !exactHost(&e.tsr, sa.key.Addr(), sa.nat.Remote) {
		return "traffic selectors narrowed to something other than GRE between the NBMA hosts"
	}
	mode := Tunnel
	if _, ok := ikev2.FindNotify(inner, ikev2.NotifyUseTransportMode); ok && !e.cfg.TunnelMode {
		mode = Transport
	}
	c := r.child
	if err := e.childKeys(sa, c, ch, mode, r.old.info.Remote, gir, r.nonce, nr, true); err != nil {
		return "Child SA keys: " + err.Error()
	}
	c.ni, c.nr = r.nonce, slices.Clone(nr)
	return ""
}

// childRekeyRefused handles an error notification answering our rekey of
// old.
func (e *Engine) childRekeyRefused(now time.Time, sa *ikeSA, old *childSA, n ikev2.NotifyType) {
	alive := old.ike == sa && old.state == childActive && old.successor == nil
	switch n {
	case ikev2.NotifyTemporaryFailure:
		// §2.25: the peer is busy with a conflicting exchange; again
		// after a random delay.
		if alive {
			e.retryChildRekey(now, old, e.tempFailDelay())
		}
	case ikev2.NotifyChildSANotFound:
		// The peer has no such SA (it deleted it; its Delete is on the
		// way or came): there is nothing to send on.
		if alive {
			old.deletedHere = true
			e.removeChild(now, sa, old, "rekey refused: the peer has no such Child SA")
		}
	default:
		e.rlog.Warn(now, "Child SA rekey refused", "peer", sa.peer, "notify", n)
		if alive {
			e.retryChildRekey(now, old, rekeyRetry)
		}
	}
}

// ---- Child SA rekey, the peer's side ----

// createChildRequest answers a peer's CREATE_CHILD_SA: a rekey of the
// IKE SA or of a Child SA; anything else (a further Child SA) is
// NO_ADDITIONAL_SAS: DMVPN has one pair per peer.
func (e *Engine) createChildRequest(now time.Time, sa *ikeSA, from netip.AddrPort, natt bool, m *ikev2.Message) {
	switch sa.state {
	case stateEstablished:
	case stateDeleting, stateRekeyed:
		// §2.25.1, §2.25.2: we are closing this IKE SA (or it was
		// rekeyed and the Delete is coming): the peer retries on the SA
		// that remains, if any.
		e.refuse(now, sa, from, natt, ikev2.Notify{Type: ikev2.NotifyTemporaryFailure})
		return
	default:
		e.drop(now, DropUnexpected, from, "CREATE_CHILD_SA request in state "+sa.state.String())
		return
	}
	inner := m.Inner
	saP := ikev2.Find(inner, ikev2.PayloadSA)
	if saP == nil || saP.SA(&e.sa) != nil || len(e.sa.Proposals) == 0 {
		e.refuse(now, sa, from, natt, ikev2.Notify{Type: ikev2.NotifyInvalidSyntax})
		return
	}
	if e.sa.Proposals[0].Protocol == ikev2.ProtocolIKE {
		e.rekeyIKERequest(now, sa, from, natt, inner)
		return
	}
	rn, ok := ikev2.FindNotify(inner, ikev2.NotifyRekeySA)
	if !ok {
		e.refuse(now, sa, from, natt, ikev2.Notify{Type: ikev2.NotifyNoAdditionalSAs})
		return
	}
	if rn.Protocol != ikev2.ProtocolESP || len(rn.SPI) != ikev2.ChildSPILen {
		e.refuse(now, sa, from, natt, ikev2.Notify{Type: ikev2.NotifyInvalidSyntax})
		return
	}
	e.rekeyChildRequest(now, sa, from, natt, inner, binary.BigEndian.Uint32(rn.SPI))
}

// refuse answers the peer's current request with one notification.
func (e *Engine) refuse(now time.Time, sa *ikeSA, from netip.AddrPort, natt bool, n ikev2.Notify) {
	e.respond(now, sa, from, natt, ikev2.ExchangeCreateChildSA, func(b *ikev2.Builder) { b.Notify(&n) })
}

// rekeyChildRequest answers the peer's rekey of the Child SA it receives
// on spi (our outbound): a new SA, reported as standby until the peer
// deletes the old one (or standbyFallback passes).
func (e *Engine) rekeyChildRequest(now time.Time, sa *ikeSA, from netip.AddrPort, natt bool, inner []ikev2.Payload, spi uint32) {
	refuse := func(n ikev2.Notify) { e.refuse(now, sa, from, natt, n) }
	var old *childSA
	for _, c := range sa.children {
		if c.outSPI == spi && (c.state == childActive || c.state == childStandby) {
			old = c
		}
	}
	switch {
	case old == nil:
		// §2.25.1: deleted (ours report gone at once), replaced, redundant.
		refuse(ikev2.Notify{Protocol: ikev2.ProtocolESP, Type: ikev2.NotifyChildSANotFound, SPI: spi4(spi)})
		return
	case old.state != childActive || old.successor != nil, sa.rekeyOf != nil && !sa.announced:
		// Being replaced already (a rekey of the peer's we answered, not
		// yet finished), or this IKE SA is the peer's half of a rekey
		// collision not yet resolved.
		refuse(ikev2.Notify{Type: ikev2.NotifyTemporaryFailure})
		return
	case sa.req != nil && sa.req.kind == reqRekeyIKE:
		// §2.25.2: we are rekeying the IKE SA; the Child SA moves with it
		// and the peer retries there.
		refuse(ikev2.Notify{Type: ikev2.NotifyTemporaryFailure})
		return
	case len(sa.children) >= maxChildren:
		refuse(ikev2.Notify{Type: ikev2.NotifyNoAdditionalSAs})
		return
	}
	collision := sa.req != nil && sa.req.kind == reqRekeyChild && sa.req.old == old
	nP, tsiP, tsrP := ikev2.Find(inner, ikev2.PayloadNonce), ikev2.Find(inner, ikev2.PayloadTSi), ikev2.Find(inner, ikev2.PayloadTSr)
	if nP == nil || tsiP == nil || tsrP == nil {
		refuse(ikev2.Notify{Type: ikev2.NotifyInvalidSyntax})
		return
	}
	ni, err := nP.Nonce()
	if err != nil || ikecrypto.CheckNonce(sa.suite.PRF, ni) != nil {
		refuse(ikev2.Notify{Type: ikev2.NotifyInvalidSyntax})
		return
	}
	ch, ok := selectESP(e.cfg.ESPProposals, &e.sa)
	if !ok {
		e.rlog.Info(now, "Child SA rekey: no proposal chosen", "peer", sa.peer)
		refuse(ikev2.Notify{Type: ikev2.NotifyNoProposalChosen})
		return
	}
	var ke *ikev2.KE
	if keP := ikev2.Find(inner, ikev2.PayloadKE); keP != nil {
		k, err := keP.KE()
		if err != nil {
			refuse(ikev2.Notify{Type: ikev2.NotifyInvalidSyntax})
			return
		}
		ke = &k
	}
	g, n := e.pfsChoice(dhGroups(&e.sa.Proposals[ch.index]), ke)
	if n.Type != 0 {
		refuse(n)
		return
	}
	if tsiP.TrafficSelectors(&e.tsi) != nil || tsrP.TrafficSelectors(&e.tsr) != nil {
		refuse(ikev2.Notify{Type: ikev2.NotifyInvalidSyntax})
		return
	}
	tsI, ok1 := matchTS(&e.tsi, sa.peer.Addr(), sa.nat.Remote)
	tsR, ok2 := matchTS(&e.tsr, e.cfg.Local, sa.nat.Local)
	if !ok1 || !ok2 {
		refuse(ikev2.Notify{Type: ikev2.NotifyTSUnacceptable})
		return
	}
	mode := Tunnel
	if _, ok := ikev2.FindNotify(inner, ikev2.NotifyUseTransportMode); ok && !e.cfg.TunnelMode {
		mode = Transport
	}
	var gir []byte
	var dh *ikecrypto.PrivateKey
	if g != 0 {
		if dh, err = g.GenerateKey(e.rnd); err == nil {
			gir, err = dh.Shared(ke.Data)
		}
		if err != nil {
			e.drop(now, DropBadKE, from, err.Error())
			refuse(ikev2.Notify{Type: ikev2.NotifyInvalidSyntax})
			return
		}
		ch.dh = g
	}
	newSPI, err1 := e.newChildSPI()
	nr, err2 := e.nonce()
	if err1 != nil || err2 != nil {
		refuse(ikev2.Notify{Type: ikev2.NotifyTemporaryFailure})
		return
	}
	c := &childSA{inSPI: newSPI, replaces: old}
	if err := e.childKeys(sa, c, ch, mode, old.info.Remote, gir, ni, nr, false); err != nil {
		refuse(ikev2.Notify{Type: ikev2.NotifyNoProposalChosen})
		return
	}
	c.ni, c.nr = slices.Clone(ni), nr
	e.respond(now, sa, from, natt, ikev2.ExchangeCreateChildSA, func(b *ikev2.Builder) {
		if mode == Transport {
			b.Notify(&ikev2.Notify{Type: ikev2.NotifyUseTransportMode})
		}
		b.SA(ch.payload(c.inSPI))
		b.Nonce(nr)
		if dh != nil {
			b.KE(&ikev2.KE{Group: ikev2.DHGroup(g), Data: dh.Public()})
		}
		b.TSi(hostTS(tsI))
		b.TSr(hostTS(tsR))
	})
	if !collision {
		// A rekey of ours still waiting in the queue is moot now.
		e.dropQueuedRekeys(sa, old)
		e.stats.ChildRekeys++
	}
	old.successor = c
	e.installChild(now, sa, c, childStandby)
	e.timers.Set(timerKey{timerChildFallback, uint64(c.inSPI)}, now.Add(standbyFallback))
}

// dropQueuedRekeys takes unsent rekeys of old out of sa's queue.
func (e *Engine) dropQueuedRekeys(sa *ikeSA, old *childSA) {
	sa.queue = slices.DeleteFunc(sa.queue, func(q *request) bool {
		if q.kind == reqRekeyChild && q.old == old {
			e.releaseRequest(q)
			return true
		}
		return false
	})
}

// pfsChoice decides a peer's Child SA rekey's D-H group from the groups
// its chosen proposal lists (0 is NONE) and its KE payload: with PFSGroup
// configured that group is required; otherwise the peer's KE is taken
// when its proposal lists that group and we implement it, and no PFS is
// fine when the proposal allows it. n is the refusal, if any.
func (e *Engine) pfsChoice(groups []ikecrypto.Group, ke *ikev2.KE) (g ikecrypto.Group, n ikev2.Notify) {
	invalidKE := func(g ikecrypto.Group) ikev2.Notify {
		return ikev2.Notify{Type: ikev2.NotifyInvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, uint16(g))}
	}
	implemented := func(g ikecrypto.Group) bool { return g != 0 && g.Valid() == nil }
	if want := e.cfg.PFSGroup; want != 0 {
		switch {
		case !slices.Contains(groups, want):
			return 0, ikev2.Notify{Type: ikev2.NotifyNoProposalChosen}
		case ke == nil || ikecrypto.Group(ke.Group) != want:
			return 0, invalidKE(want)
		}
		return want, n
	}
	if ke != nil {
		if g := ikecrypto.Group(ke.Group); slices.Contains(groups, g) && implemented(g) {
			return g, n
		}
	}
	if len(groups) == 0 || slices.Contains(groups, 0) {
		return 0, n
	}
	for _, g := range groups {
		if implemented(g) {
			return 0, invalidKE(g)
		}
	}
	return 0, ikev2.Notify{Type: ikev2.NotifyNoProposalChosen}
}

// makeRedundant marks a standby SA the peer made as the loser of a
// collision: never used for sending, deleted by the peer (or by us, if
// its Delete does not come).
func (e *Engine) makeRedundant(now time.Time, c *childSA) {
	c.state = childRedundant
	e.timers.Cancel(timerKey{timerChildRekey, uint64(c.inSPI)})
	e.timers.Set(timerKey{timerChildFallback, uint64(c.inSPI)}, now.Add(e.linger()))
}

// activate makes a standby SA the one sent on (ChildSAActive); the SA it
// replaces stays for what is in flight, until its Delete.
func (e *Engine) activate(now time.Time, c *childSA) {
	c.state = childActive
	c.info.Standby = false
	e.timers.Cancel(timerKey{timerChildFallback, uint64(c.inSPI)})
	if o := c.replaces; o != nil && o.successor == c && o.state == childActive {
		o.state = childReplaced
		e.timers.Cancel(timerKey{timerChildRekey, uint64(o.inSPI)})
	}
	info := c.info
	info.Inbound = SAKeys{SPI: c.inSPI}
	info.Outbound = SAKeys{SPI: c.outSPI}
	e.emit(now, ChildSAActive, c.ike, "", &info)
}

// childTimer runs a Child SA's rekey, lifetime and fallback timers.
func (e *Engine) childTimer(now time.Time, kind timerKind, c *childSA) {
	sa := c.ike
	switch kind {
	case timerChildRekey:
		if c.state == childActive && c.successor == nil && sa.state == stateEstablished {
			if err := e.startChildRekey(now, sa, c); err != nil {
				e.rlog.Warn(now, "Child SA rekey not started", "peer", sa.peer, "err", err)
				e.retryChildRekey(now, c, rekeyRetry)
			}
		}
	case timerChildExpire:
		e.rlog.Info(now, "Child SA lifetime expired", "peer", sa.peer, "spi", c.inSPI, "state", c.state.String())
		switch c.state {
		case childActive, childReplaced:
			reason := "lifetime expired: not rekeyed"
			if s := c.successor; s != nil {
				c.info.ReplacedBy = s.inSPI
				reason = "rekeyed"
			}
			e.deleteChild(now, c, reason)
		default:
			e.deleteChild(now, c, "lifetime expired")
		}
	case timerChildFallback:
		switch c.state {
		case childStandby:
			if o := c.replaces; o != nil && o.rekeying && o.state != childGone {
				// Our own rekey of the old SA collides with this one and
				// is not answered yet: which survives is not known.
				e.timers.Set(timerKey{timerChildFallback, uint64(c.inSPI)}, now.Add(standbyFallback))
				return
			}
			e.activate(now, c)
		case childRedundant:
			// The peer that made it did not delete it: we do.
			e.deleteChild(now, c, "redundant: simultaneous rekey")
		}
	}
}

// loses reports whether the SA made with nonces ai, ar is the redundant
// one against the SA made with bi, br: the one with the lowest of the four
// nonces, compared octet by octet (RFC 7296 §2.8.1, §2.8.2). Equal lowest
// nonces (never seen) fall back to the higher ones, so both peers agree.
func loses(ai, ar, bi, br []byte) bool {
	lo := func(x, y []byte) ([]byte, []byte) {
		if bytes.Compare(x, y) <= 0 {
			return x, y
		}
		return y, x
	}
	aLo, aHi := lo(ai, ar)
	bLo, bHi := lo(bi, br)
	if c := bytes.Compare(aLo, bLo); c != 0 {
		return c < 0
	}
	return bytes.Compare(aHi, bHi) < 0
}

// ---- IKE SA rekey ----

// startIKERekey queues a rekey of sa (nil too when one is under way).
func (e *Engine) startIKERekey(now time.Time, sa *ikeSA) error {
	return e.startIKERekeyGroup(now, sa, sa.group)
}

func (e *Engine) startIKERekeyGroup(now time.Time, sa *ikeSA, g ikecrypto.Group) error {
	if sa.state != stateEstablished || !sa.announced || sa.rekeying || sa.peerRekey != nil {
		return nil
	}
	spi, err := e.newSPI()
	if err != nil {
		return err
	}
	ni, err := e.nonce()
	if err != nil {
		return err
	}
	dh, err := g.GenerateKey(e.rnd)
	if err != nil {
		return err
	}
	sa.rekeying = true
	e.timers.Cancel(timerKey{timerIKERekey, sa.ours})
	if !e.queueRequest(now, sa, &request{kind: reqRekeyIKE, newSPI: spi, nonce: ni, group: g, dh: dh}) {
		sa.rekeying = false
		e.retryIKERekey(now, sa, rekeyRetry)
	}
	return nil
}

// buildRekeyIKE is the inner payloads of our IKE SA rekey (§1.3.2): our
// proposals with the new SA's SPI, Ni, KEi.
func (e *Engine) buildRekeyIKE(b *ikev2.Builder, r *request) {
	b.SA(ikeSAPayload(e.cfg.IKEProposals, r.newSPI))
	b.Nonce(r.nonce)
	b.KE(&ikev2.KE{Group: ikev2.DHGroup(r.group), Data: r.dh.Public()})
}

// rekeyKeys computes the keys of ns, made by rekeying old (§2.18):
// SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) with the old SA's PRF
// (the exchange is the old SA's), then prf+ with the new SA's.
func (e *Engine) rekeyKeys(old, ns *ikeSA, gir []byte) error {
	seed, err := ikecrypto.RekeySKEYSEED(old.suite.PRF, old.keys.SKd, gir, ns.ni, ns.nr)
	if err != nil {
		return err
	}
	defer clear(seed)
	return e.setKeys(ns, seed)
}

// newRekeyed is the IKE SA a rekey of old makes, not yet indexed.
func newRekeyed(now time.Time, old *ikeSA, spiI, spiR uint64, initiator bool, ch ikeChoice, ni, nr []byte) *ikeSA {
	ours := spiR
	if initiator {
		ours = spiI
	}
	// §2.18: message IDs start again at 0.
	return &ikeSA{spiI: spiI, spiR: spiR, ours: ours, initiator: initiator, state: stateEstablished, key: old.key,
		peer: old.peer, natt: old.natt, nat: old.nat, created: now, lastRx: now, ni: ni, nr: nr, group: ch.group,
		suite: ch.suite, remoteID: old.remoteID, rekeyOf: old}
}

// rekeyIKERequest answers the peer's rekey of the IKE SA.
func (e *Engine) rekeyIKERequest(now time.Time, sa *ikeSA, from netip.AddrPort, natt bool, inner []ikev2.Payload) {
	refuse := func(n ikev2.Notify) { e.refuse(now, sa, from, natt, n) }
	switch {
	case sa.req != nil && sa.req.kind == reqRekeyChild, sa.peerRekey != nil, !sa.announced:
		// A Child SA rekey of ours is under way (it would have to move
		// half done; strongSwan refuses the same way), or this SA is
		// being rekeyed already.
		refuse(ikev2.Notify{Type: ikev2.NotifyTemporaryFailure})
		return
	case len(e.byKey[sa.key]) >= maxSAsPerPeer || len(e.bySPI) >= e.cfg.MaxIKESAs:
		refuse(ikev2.Notify{Type: ikev2.NotifyNoAdditionalSAs})
		return
	}
	collision := sa.req != nil && sa.req.kind == reqRekeyIKE
	nP, keP := ikev2.Find(inner, ikev2.PayloadNonce), ikev2.Find(inner, ikev2.PayloadKE)
	if nP == nil || keP == nil {
		refuse(ikev2.Notify{Type: ikev2.NotifyInvalidSyntax})
		return
	}
	ni, err1 := nP.Nonce()
	ke, err2 := keP.KE()
	if err1 != nil || err2 != nil {
		refuse(ikev2.Notify{Type: ikev2.NotifyInvalidSyntax})
		return
	}
	ch, ok := selectIKE(e.cfg.IKEProposals, &e.sa, ke.Group, true)
	if !ok {
		e.rlog.Info(now, "IKE SA rekey: no proposal chosen", "peer", sa.peer)
		refuse(ikev2.Notify{Type: ikev2.NotifyNoProposalChosen})
		return
	}
	if ch.group != ikecrypto.Group(ke.Group) {
		refuse(ikev2.Notify{Type: ikev2.NotifyInvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, uint16(ch.group))})
		return
	}
	if ikecrypto.CheckNonce(ch.suite.PRF, ni) != nil || ikecrypto.CheckNonce(sa.suite.PRF, ni) != nil {
		refuse(ikev2.Notify{Type: ikev2.NotifyInvalidSyntax})
		return
	}
	dh, err := ch.group.GenerateKey(e.rnd)
	if err != nil {
		refuse(ikev2.Notify{Type: ikev2.NotifyTemporaryFailure})
		return
	}
	gir, err := dh.Shared(ke.Data)
	if err != nil {
		e.drop(now, DropBadKE, from, err.Error())
		refuse(ikev2.Notify{Type: ikev2.NotifyInvalidSyntax})
		return
	}
	spiR, err1 := e.newSPI()
	nr, err2 := e.nonce()
	if err1 != nil || err2 != nil {
		refuse(ikev2.Notify{Type: ikev2.NotifyTemporaryFailure})
		return
	}
	ns := newRekeyed(now, sa, ch.peerSPI, spiR, false, ch, slices.Clone(ni), nr)
	if err := e.rekeyKeys(sa, ns, gir); err != nil {
		e.rlog.Warn(now, "IKE SA rekey keys", "err", err)
		refuse(ikev2.Notify{Type: ikev2.NotifyNoProposalChosen})
		return
	}
	e.respond(now, sa, from, natt, ikev2.ExchangeCreateChildSA, func(b *ikev2.Builder) {
		b.SA(ch.payload(spiR))
		b.Nonce(nr)
		b.KE(&ikev2.KE{Group: ikev2.DHGroup(ch.group), Data: dh.Public()})
	})
	e.add(ns)
	if collision {
		// §2.8.2: both complete; which survives is decided when ours is
		// answered. Until then the peer's new SA is not announced.
		sa.peerRekey = ns
		return
	}
	e.completeIKERekey(now, sa, ns, false)
}

// rekeyIKEResponse handles the answer to our IKE SA rekey.
func (e *Engine) rekeyIKEResponse(now time.Time, sa *ikeSA, r *request, m *ikev2.Message) {
	e.finish(sa)
	sa.rekeying = false
	inner := m.Inner
	fail := func(retry time.Duration) {
		if p := sa.peerRekey; p != nil {
			// A collision whose other half is all there is: the peer's.
			e.completeIKERekey(now, sa, p, false)
			return
		}
		e.retryIKERekey(now, sa, retry)
		e.next(now, sa)
	}
	if n, ok := firstError(inner); ok {
		switch n {
		case ikev2.NotifyTemporaryFailure:
			fail(e.tempFailDelay())
		case ikev2.NotifyInvalidKEPayload:
			kn, _ := ikev2.FindNotify(inner, ikev2.NotifyInvalidKEPayload)
			g, ok := kn.Group()
			if want := ikecrypto.Group(g); ok && e.groupConfigured(want) && want != r.group && sa.peerRekey == nil {
				if err := e.startIKERekeyGroup(now, sa, want); err == nil {
					e.next(now, sa)
					return
				}
			}
			e.rlog.Warn(now, "IKE SA rekey refused", "peer", sa.peer, "notify", n)
			fail(rekeyRetry)
		default:
			e.rlog.Warn(now, "IKE SA rekey refused", "peer", sa.peer, "notify", n)
			fail(rekeyRetry)
		}
		return
	}
	ns, why := e.acceptRekeyIKE(now, sa, r, inner)
	if why != "" {
		e.rlog.Warn(now, "IKE SA rekey answer refused", "peer", sa.peer, "why", why)
		fail(rekeyRetry)
		return
	}
	e.add(ns)
	rival := sa.peerRekey
	switch {
	case rival == nil:
		e.completeIKERekey(now, sa, ns, true)
	case loses(ns.ni, ns.nr, rival.ni, rival.nr):
		// §2.8.2: ours is redundant; we made it, we delete it (quietly:
		// it was never announced). The peer deletes the old SA.
		e.stats.RekeyCollisions++
		e.rlog.Info(now, "simultaneous IKE SA rekey: ours is redundant", "peer", sa.peer)
		ns.state = stateRekeyed
		ns.rekeyOf = nil
		e.queueRequest(now, ns, &request{kind: reqDeleteIKE})
		e.completeIKERekey(now, sa, rival, false)
	default:
		// The peer's is redundant: it deletes it; we delete the old SA.
		e.stats.RekeyCollisions++
		e.rlog.Info(now, "simultaneous IKE SA rekey: the peer's is redundant", "peer", sa.peer)
		rival.state = stateRekeyed
		rival.rekeyOf = nil
		sa.peerRekey = nil
		e.timers.Set(timerKey{timerLinger, rival.ours}, now.Add(e.linger()))
		e.completeIKERekey(now, sa, ns, true)
	}
}

// acceptRekeyIKE checks the answer to our IKE SA rekey and makes the new
// SA (not yet indexed); a non-empty why says why it is refused.
func (e *Engine) acceptRekeyIKE(now time.Time, sa *ikeSA, r *request, inner []ikev2.Payload) (*ikeSA, string) {
	saP, nP, keP := ikev2.Find(inner, ikev2.PayloadSA), ikev2.Find(inner, ikev2.PayloadNonce), ikev2.Find(inner, ikev2.PayloadKE)
	if saP == nil || nP == nil || keP == nil {
		return nil, "no SA, Nonce or KE in the answer"
	}
	nr, err1 := nP.Nonce()
	ke, err2 := keP.KE()
	if err1 != nil || err2 != nil || saP.SA(&e.sa) != nil {
		return nil, "unreadable payloads"
	}
	ch, err := acceptedIKE(e.cfg.IKEProposals, &e.sa, true)
	if err != nil {
		return nil, err.Error()
	}
	if ch.group != r.group || ikecrypto.Group(ke.Group) != r.group {
		return nil, "a group other than our KE's"
	}
	if ikecrypto.CheckNonce(ch.suite.PRF, nr) != nil || ikecrypto.CheckNonce(sa.suite.PRF, nr) != nil {
		return nil, "responder nonce too short"
	}
	if e.bySPI[r.newSPI] != nil {
		return nil, "our new SPI was taken meanwhile"
	}
	gir, err := r.dh.Shared(ke.Data)
	if err != nil {
		return nil, "KE: " + err.Error()
	}
	ns := newRekeyed(now, sa, r.newSPI, ch.peerSPI, true, ch, r.nonce, slices.Clone(nr))
	if err := e.rekeyKeys(sa, ns, gir); err != nil {
		return nil, "keys: " + err.Error()
	}
	return ns, ""
}

// completeIKERekey makes ns, a rekey of old, the IKE SA: the Child SAs and
// the queued requests move to it, IKESARekeyed is reported, and old waits
// for its Delete: ours (weDelete: we initiated ns), or the peer's.
func (e *Engine) completeIKERekey(now time.Time, old, ns *ikeSA, weDelete bool) {
	old.peerRekey = nil
	ns.state, ns.announced = stateEstablished, true
	ns.rekeyOf = old
	for _, c := range old.children {
		c.ike = ns
		c.info.Peer = ns.peer
	}
	ns.children = append(ns.children, old.children...)
	old.children = nil
	// Requests waiting on the old SA go on the new one (built with its
	// keys and message IDs when sent); liveness checks are moot.
	for _, q := range old.queue {
		if q.kind == reqDeleteChild || q.kind == reqRekeyChild || q.kind == reqNotify {
			ns.queue = append(ns.queue, q)
		} else {
			e.releaseRequest(q)
		}
	}
	old.queue = nil
	old.state = stateRekeyed
	for _, k := range []timerKind{timerDPD, timerIKERekey, timerIKEExpire} {
		e.timers.Cancel(timerKey{k, old.ours})
	}
	if old.lastRx.After(ns.lastRx) {
		ns.lastRx = old.lastRx
	}
	e.armIKE(now, ns)
	e.stats.IKERekeys++
	e.emit(now, IKESARekeyed, ns, "", nil)
	ns.rekeyOf = nil
	if weDelete {
		// §2.18: the Delete is the last request on the old SA.
		e.queueRequest(now, old, &request{kind: reqDeleteIKE})
	} else {
		e.timers.Set(timerKey{timerLinger, old.ours}, now.Add(e.linger()))
	}
	e.next(now, ns)
}

// ikeTimer runs an IKE SA's rekey, lifetime and linger timers.
func (e *Engine) ikeTimer(now time.Time, kind timerKind, sa *ikeSA) {
	switch kind {
	case timerIKERekey:
		if sa.state == stateEstablished && sa.announced {
			if err := e.startIKERekey(now, sa); err != nil {
				e.rlog.Warn(now, "IKE SA rekey not started", "peer", sa.peer, "err", err)
				e.retryIKERekey(now, sa, rekeyRetry)
			}
		}
	case timerIKEExpire:
		if sa.state == stateEstablished && sa.announced {
			e.rlog.Info(now, "IKE SA lifetime expired", "peer", sa.peer)
			e.deleteIKE(now, sa, "IKE SA lifetime expired: not rekeyed")
		}
	case timerLinger:
		if sa.state == stateRekeyed {
			e.remove(now, sa, "", false)
		}
	}
}
