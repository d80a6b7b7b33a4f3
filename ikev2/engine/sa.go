package engine

import (
	"net/netip"
	"slices"
	"time"

	"github.com/dmvpn/dmvpn/ikev2"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// saState is where an IKE SA is in its life.
type saState uint8

const (
	stateInitSent    saState = iota + 1 // initiator: IKE_SA_INIT sent
	stateAuthSent                       // initiator: IKE_AUTH sent
	stateRespInit                       // responder: IKE_SA_INIT answered, waiting for IKE_AUTH (half open)
	stateEstablished                    // both AUTHs verified (or made by a rekey)
	stateDeleting                       // our Delete sent; waiting for its answer
	// stateRekeyed: superseded by a rekey (the old SA) or redundant after
	// a rekey collision (RFC 7296 §2.8.2). No Child SAs, no events; it
	// waits for a Delete exchange (ours or the peer's), or is dropped
	// silently after rekeyedLinger.
	stateRekeyed
)

func (s saState) String() string {
	switch s {
	case stateInitSent:
		return "init-sent"
	case stateAuthSent:
		return "auth-sent"
	case stateRespInit:
		return "half-open"
	case stateEstablished:
		return "established"
	case stateDeleting:
		return "deleting"
	case stateRekeyed:
		return "rekeyed"
	}
	return "unknown"
}

// reqKind is what one of our requests is for.
type reqKind uint8

const (
	reqInit reqKind = iota + 1
	reqAuth
	reqDPD
	reqDeleteIKE
	reqDeleteChild
	reqNotify     // an error notification sent once, never retransmitted
	reqRekeyChild // CREATE_CHILD_SA rekeying a Child SA (§1.3.3)
	reqRekeyIKE   // CREATE_CHILD_SA rekeying the IKE SA (§1.3.2)
)

// request is one request of ours: outstanding (window 1) or queued.
type request struct {
	kind    reqKind
	id      uint32
	msg     []byte // as sent, for retransmission
	natt    bool
	tries   int       // transmissions so far
	sentAt  time.Time // the first transmission
	spis    []uint32  // reqDeleteChild: our inbound SPIs
	notify  ikev2.NotifyType
	noReply bool // reqNotify: the exchange is done once sent

	// Rekeys: our nonce, our D-H key (IKE rekeys, Child rekeys with PFS)
	// and its group.
	nonce []byte
	dh    *ikecrypto.PrivateKey
	group ikecrypto.Group
	// reqRekeyChild: the SA being rekeyed and the new one (its inbound
	// SPI reserved in byChild).
	old, child *childSA
	// reqRekeyIKE: our SPI of the new IKE SA.
	newSPI uint64
}

// childState is where a Child SA is in its life. What the data plane was
// told follows from it: pending ones were never reported, active and
// replaced ones were reported up with their outbound in use (replaced:
// no longer), standby ones with their outbound not yet in use.
type childState uint8

const (
	childPending   childState = iota // SPI reserved: proposed, not up (ike is nil)
	childActive                      // installed; its outbound is the one in use
	childStandby                     // a rekey responder's new SA: inbound installed, outbound not yet in use
	childReplaced                    // its successor's outbound is in use; waiting for the Delete
	childRedundant                   // lost a rekey collision (§2.8.1); to be deleted by the peer that made it
	childGone                        // removed (requests may still point at it)
)

func (s childState) String() string {
	switch s {
	case childPending:
		return "pending"
	case childActive:
		return "active"
	case childStandby:
		return "standby"
	case childReplaced:
		return "replaced"
	case childRedundant:
		return "redundant"
	}
	return "gone"
}

// childSA is one Child SA of an IKE SA.
type childSA struct {
	ike      *ikeSA
	inSPI    uint32 // ours: chosen by us
	outSPI   uint32 // the peer's
	info     ChildSA
	proposed bool // initiator: proposed in IKE_AUTH, not yet accepted
	state    childState

	created, rekeyAt, expires time.Time
	// ni and nr are the nonces of the exchange that made it: the rekey
	// collision rule compares them (§2.8.1).
	ni, nr []byte
	// replaces is the SA a rekey made this one for; successor, on the old
	// SA, the new one that is to take over (a standby SA the peer made, or
	// ours once it is up).
	replaces, successor *childSA
	// rekeying: our rekey request for this SA is queued or outstanding.
	rekeying bool
	// deletedHere: removed by us (DeleteChild, expiry), not by the peer.
	deletedHere bool
}

// ikeSA is one IKE SA, from its first IKE_SA_INIT to its deletion.
type ikeSA struct {
	spiI, spiR uint64
	ours       uint64 // the SPI the SA is found by: spiI as initiator, spiR as responder
	initiator  bool
	state      saState
	key        netip.AddrPort // the endpoint it is indexed by (byKey)
	peer       netip.AddrPort // where to send now (moves with NAT)
	natt       bool           // IKE on UDP 4500 with the marker
	nat        NAT
	created    time.Time
	lastRx     time.Time // anything authenticated (or ESP, via Traffic) from the peer

	ni, nr     []byte
	dh         *ikecrypto.PrivateKey
	group      ikecrypto.Group
	cookie     []byte
	retries    int    // COOKIE and INVALID_KE_PAYLOAD restarts
	msg1, msg2 []byte // the IKE_SA_INIT request and response, as on the wire
	suite      ikecrypto.Suite
	keys       ikecrypto.IKEKeys
	in, out    *ikecrypto.SK

	nextID   uint32 // our next request's message ID
	req      *request
	queue    []*request
	peerNext uint32 // the peer's next request's message ID
	lastResp []byte // our answer to the peer's last request

	remoteID       Identity
	initialContact bool
	children       []*childSA
	pending        *childSA // initiator: the Child SA proposed in IKE_AUTH; responder: the one being answered
	// busy: a HandlePacket is computing this SA's next step without the
	// lock (offLock); messages for it are dropped until it commits.
	busy offLock

	// announced: IKESAUp or IKESARekeyed was reported for it (so its end
	// is reported too). An SA the peer made by a rekey that collided with
	// ours is not, until the collision is resolved in its favour.
	announced        bool
	rekeyAt, expires time.Time
	// rekeying: our IKE SA rekey is queued or outstanding.
	rekeying bool
	// peerRekey, on an SA whose rekey collided with ours: the new IKE SA
	// the peer made; rekeyOf, on that new SA, the SA it replaces.
	peerRekey, rekeyOf *ikeSA
}

// add indexes a new SA.
func (e *Engine) add(sa *ikeSA) {
	e.bySPI[sa.ours] = sa
	e.byKey[sa.key] = append(e.byKey[sa.key], sa)
	if sa.state == stateRespInit {
		e.halfOpen[initKey{sa.key, sa.spiI}] = sa
		e.nHalf++
	}
}

// leaveHalfOpen takes a responder SA out of the half-open count.
func (e *Engine) leaveHalfOpen(sa *ikeSA) {
	k := initKey{sa.key, sa.spiI}
	if e.halfOpen[k] == sa {
		delete(e.halfOpen, k)
		e.nHalf--
	}
	e.timers.Cancel(timerKey{timerHalfOpen, sa.ours})
}

// remove forgets sa: its Child SAs are reported down (if it was up, the
// IKE SA too, else failed when failed is set), keys cleared, timers off.
func (e *Engine) remove(now time.Time, sa *ikeSA, reason string, failed bool) {
	if e.bySPI[sa.ours] != sa {
		return
	}
	for len(sa.children) > 0 {
		e.removeChild(now, sa, sa.children[0], reason)
	}
	switch {
	case sa.state == stateEstablished && sa.announced:
		e.emit(now, IKESADown, sa, reason, nil)
	case failed:
		e.stats.Failed++
		e.emit(now, IKESAFailed, sa, reason, nil)
	}
	e.leaveHalfOpen(sa)
	delete(e.bySPI, sa.ours)
	list := slices.DeleteFunc(e.byKey[sa.key], func(o *ikeSA) bool { return o == sa })
	if len(list) == 0 {
		delete(e.byKey, sa.key)
	} else {
		e.byKey[sa.key] = list
	}
	for _, k := range []timerKind{timerRetransmit, timerDPD, timerIKERekey, timerIKEExpire, timerLinger} {
		e.timers.Cancel(timerKey{k, sa.ours})
	}
	if sa.pending != nil {
		delete(e.byChild, sa.pending.inSPI)
		sa.pending = nil
	}
	// Child SPIs reserved by rekeys that will not complete now.
	if sa.req != nil {
		e.releaseRequest(sa.req)
	}
	for _, r := range sa.queue {
		e.releaseRequest(r)
	}
	// A collision partner that goes away cannot be resolved in favour of;
	// the peer's half of an unresolved collision goes with the old SA.
	if o := sa.rekeyOf; o != nil && o.peerRekey == sa {
		o.peerRekey = nil
	}
	if o := sa.peerRekey; o != nil {
		sa.peerRekey = nil
		if o.rekeyOf == sa && !o.announced {
			e.remove(now, o, "", false)
		}
	}
	if sa.in != nil {
		sa.keys.Clear()
	}
	sa.state = 0
	sa.req, sa.queue = nil, nil
}

// releaseRequest frees what a request that will never be answered holds:
// the inbound SPI reserved for a Child SA rekey.
func (e *Engine) releaseRequest(r *request) {
	if r.kind == reqRekeyChild && r.child != nil {
		if e.byChild[r.child.inSPI] == r.child {
			delete(e.byChild, r.child.inSPI)
		}
		r.child.state = childGone
		if r.old != nil {
			r.old.rekeying = false
		}
	}
}

// removeChild forgets one Child SA, reporting it down.
func (e *Engine) removeChild(now time.Time, sa *ikeSA, c *childSA, reason string) {
	i := slices.Index(sa.children, c)
	if i < 0 {
		return
	}
	sa.children = slices.Delete(sa.children, i, i+1)
	if e.byChild[c.inSPI] == c {
		delete(e.byChild, c.inSPI)
	}
	for _, k := range []timerKind{timerChildRekey, timerChildExpire, timerChildFallback} {
		e.timers.Cancel(timerKey{k, uint64(c.inSPI)})
	}
	if o := c.replaces; o != nil && o.successor == c {
		o.successor = nil
	}
	c.state = childGone
	down := c.info
	down.Inbound = SAKeys{SPI: c.inSPI}
	down.Outbound = SAKeys{SPI: c.outSPI}
	down.Standby = false
	e.emit(now, ChildSADown, sa, reason, &down)
}

// deleteChild removes one of our Child SAs and tells the peer. A standby
// successor takes over first, so that something is always sent on.
func (e *Engine) deleteChild(now time.Time, c *childSA, reason string) {
	sa := c.ike
	if s := c.successor; s != nil && s.state == childStandby {
		e.activate(now, s)
	}
	c.deletedHere = true
	e.removeChild(now, sa, c, reason)
	if sa.state == stateEstablished {
		e.queueRequest(now, sa, &request{kind: reqDeleteChild, spis: []uint32{c.inSPI}})
	}
}

// deleteIKE starts deleting an SA of ours: established ones are reported
// down now and a Delete goes to the peer; ones being set up are dropped.
func (e *Engine) deleteIKE(now time.Time, sa *ikeSA, reason string) {
	switch sa.state {
	case stateEstablished:
		for len(sa.children) > 0 {
			e.removeChild(now, sa, sa.children[0], reason)
		}
		if sa.announced {
			e.emit(now, IKESADown, sa, reason, nil)
		}
		sa.state = stateDeleting
		e.timers.Cancel(timerKey{timerDPD, sa.ours})
		// The Delete goes first: whatever was queued is moot now.
		sa.queue = sa.queue[:0]
		e.queueRequest(now, sa, &request{kind: reqDeleteIKE})
	case stateDeleting:
	case stateRekeyed:
		// Nothing was reported for it any more: tell the peer, quietly.
		if sa.req == nil || sa.req.kind != reqDeleteIKE {
			sa.queue = sa.queue[:0]
			e.queueRequest(now, sa, &request{kind: reqDeleteIKE})
		}
	default:
		e.remove(now, sa, reason, true)
	}
}

// queueRequest sends r now if nothing is outstanding, else queues it
// (bounded: a full queue drops the oldest DPD, then refuses r: false).
func (e *Engine) queueRequest(now time.Time, sa *ikeSA, r *request) bool {
	if sa.req == nil && len(sa.queue) == 0 {
		e.sendRequest(now, sa, r)
		return true
	}
	if len(sa.queue) >= maxQueued {
		i := slices.IndexFunc(sa.queue, func(q *request) bool { return q.kind == reqDPD })
		if i < 0 {
			e.rlog.Warn(now, "request queue full, request dropped", "peer", sa.peer, "request", r.kind.String())
			return false
		}
		sa.queue = slices.Delete(sa.queue, i, i+1)
	}
	sa.queue = append(sa.queue, r)
	e.next(now, sa)
	return true
}

// sendRequest builds r (INFORMATIONAL and CREATE_CHILD_SA requests;
// IKE_SA_INIT and IKE_AUTH come built), sends it and arms its
// retransmission. A rekey that became moot while it was queued is
// dropped and the next queued request goes instead.
func (e *Engine) sendRequest(now time.Time, sa *ikeSA, r *request) {
	if r.msg == nil {
		if e.staleRekey(sa, r) {
			e.releaseRequest(r)
			if r.kind == reqRekeyIKE {
				sa.rekeying = false
			}
			e.next(now, sa)
			return
		}
		r.id = sa.nextID
		ex := exchangeOf(r.kind)
		msg, err := e.seal(sa, sa.header(ex, r.id, false), func(b *ikev2.Builder) {
			switch r.kind {
			case reqDeleteIKE:
				b.Delete(&ikev2.Delete{Protocol: ikev2.ProtocolIKE})
			case reqDeleteChild:
				b.Delete(&ikev2.Delete{Protocol: ikev2.ProtocolESP, SPISize: ikev2.ChildSPILen, SPIs: spiBytes(r.spis)})
			case reqNotify:
				b.Notify(&ikev2.Notify{Type: r.notify})
			case reqRekeyChild:
				e.buildRekeyChild(b, sa, r)
			case reqRekeyIKE:
				e.buildRekeyIKE(b, r)
			}
		})
		if err != nil {
			e.rlog.Warn(now, "building a request", "peer", sa.peer, "err", err)
			e.releaseRequest(r)
			e.next(now, sa)
			return
		}
		r.msg = msg
		sa.nextID++
	}
	r.natt = sa.natt
	r.sentAt = now
	r.tries = 1
	sa.req = r
	e.transmit(sa.peer, r.natt, r.msg)
	if r.noReply {
		// Fire and forget: the exchange ends with this message.
		sa.req = nil
		return
	}
	e.timers.Set(timerKey{timerRetransmit, sa.ours}, now.Add(e.cfg.RetransmitBase))
}

func spiBytes(spis []uint32) []byte {
	b := make([]byte, 0, 4*len(spis))
	for _, s := range spis {
		b = append(b, byte(s>>24), byte(s>>16), byte(s>>8), byte(s))
	}
	return b
}

// retransmitTimer resends the outstanding request or, after the last
// timeout, gives the SA up.
func (e *Engine) retransmitTimer(now time.Time, sa *ikeSA) {
	r := sa.req
	if r == nil {
		return
	}
	if r.tries >= e.cfg.RetransmitTries {
		e.giveUp(now, sa, r)
		return
	}
	timeout := e.cfg.RetransmitBase << r.tries
	r.tries++
	e.stats.Retransmitted++
	e.transmit(sa.peer, r.natt, r.msg)
	e.timers.Set(timerKey{timerRetransmit, sa.ours}, now.Add(timeout))
}

// giveUp ends an SA whose request went unanswered.
func (e *Engine) giveUp(now time.Time, sa *ikeSA, r *request) {
	switch {
	case r.kind == reqDeleteIKE || sa.state == stateDeleting || sa.state == stateRekeyed:
		e.remove(now, sa, "", false)
	case sa.state == stateEstablished:
		e.stats.Dead++
		e.rlog.Info(now, "peer dead", "peer", sa.peer, "since", r.sentAt)
		e.remove(now, sa, "dead peer: no answer to "+r.kind.String(), false)
	default:
		e.rlog.Info(now, "IKE SA not established: no answer", "peer", sa.peer, "state", sa.state.String())
		e.remove(now, sa, "no answer to "+r.kind.String(), true)
	}
}

func (k reqKind) String() string {
	switch k {
	case reqInit:
		return "IKE_SA_INIT"
	case reqAuth:
		return "IKE_AUTH"
	case reqDPD:
		return "liveness check"
	case reqDeleteIKE:
		return "IKE SA delete"
	case reqDeleteChild:
		return "Child SA delete"
	case reqNotify:
		return "notification"
	case reqRekeyChild:
		return "Child SA rekey"
	case reqRekeyIKE:
		return "IKE SA rekey"
	}
	return "request"
}

// done ends the outstanding request and sends the next queued one.
func (e *Engine) done(now time.Time, sa *ikeSA) {
	e.finish(sa)
	e.next(now, sa)
}

// finish ends the outstanding request.
func (e *Engine) finish(sa *ikeSA) {
	sa.req = nil
	e.timers.Cancel(timerKey{timerRetransmit, sa.ours})
}

// next sends the first queued request if none is outstanding.
func (e *Engine) next(now time.Time, sa *ikeSA) {
	if sa.req == nil && len(sa.queue) > 0 && sa.state != 0 {
		r := sa.queue[0]
		sa.queue = slices.Delete(sa.queue, 0, 1)
		e.sendRequest(now, sa, r)
	}
}

// dpdTimer probes an established SA whose peer has been quiet for the DPD
// interval, and re-arms for when it will have been.
func (e *Engine) dpdTimer(now time.Time, sa *ikeSA) {
	d := e.cfg.DPDInterval
	if d <= 0 || sa.state != stateEstablished {
		return
	}
	idle := now.Sub(sa.lastRx)
	if idle < d {
		e.timers.Set(timerKey{timerDPD, sa.ours}, sa.lastRx.Add(d))
		return
	}
	if sa.req == nil {
		e.sendRequest(now, sa, &request{kind: reqDPD})
	}
	// The next check: after this probe's answer refreshed lastRx, or
	// (busy with another request) one interval on.
	e.timers.Set(timerKey{timerDPD, sa.ours}, now.Add(d))
}

// established brings sa up: events, DPD, one SA per peer.
func (e *Engine) established(now time.Time, sa *ikeSA) {
	sa.state = stateEstablished
	sa.announced = true
	e.leaveHalfOpen(sa)
	e.stats.Established++
	e.emit(now, IKESAUp, sa, "", nil)
	e.armIKE(now, sa)
	// One IKE SA per peer: older established ones are replaced. With
	// INITIAL_CONTACT the peer has forgotten them already (RFC 7296
	// §2.4): drop them silently; otherwise tell the peer.
	for _, o := range append([]*ikeSA(nil), e.byKey[sa.key]...) {
		if o == sa || o.state != stateEstablished || !o.announced {
			continue
		}
		if sa.initialContact && !sa.initiator {
			e.remove(now, o, "replaced: the peer sent INITIAL_CONTACT", false)
		} else {
			e.deleteIKE(now, o, "replaced by a newer IKE SA")
		}
	}
}

// addChild installs a negotiated Child SA and reports it.
func (e *Engine) addChild(now time.Time, sa *ikeSA, c *childSA) {
	e.installChild(now, sa, c, childActive)
}

// installChild puts c into sa's table in state st (active or standby),
// arms its lifetime and reports ChildSAUp.
func (e *Engine) installChild(now time.Time, sa *ikeSA, c *childSA, st childState) {
	c.ike = sa
	c.state = st
	sa.children = append(sa.children, c)
	e.byChild[c.inSPI] = c
	c.created = now
	c.expires = now.Add(e.cfg.ChildLifetime)
	c.rekeyAt = e.rekeyTime(now, e.cfg.ChildLifetime)
	e.timers.Set(timerKey{timerChildRekey, uint64(c.inSPI)}, c.rekeyAt)
	e.timers.Set(timerKey{timerChildExpire, uint64(c.inSPI)}, c.expires)
	c.info.Standby = st == childStandby
	if c.replaces != nil {
		c.info.Replaces = c.replaces.inSPI
	}
	e.emit(now, ChildSAUp, sa, "", &c.info)
}

// emit reports an event; Child SA events get their own copy of the keys.
func (e *Engine) emit(now time.Time, t EventType, sa *ikeSA, reason string, c *ChildSA) {
	if e.cfg.OnEvent == nil {
		return
	}
	ev := Event{Type: t, Time: now, Peer: sa.peer, SPIi: ikev2.SPI(sa.spiI), SPIr: ikev2.SPI(sa.spiR),
		Initiator: sa.initiator, RemoteID: sa.remoteID, NAT: sa.nat, Reason: reason}
	if o := sa.rekeyOf; t == IKESARekeyed && o != nil {
		ev.OldSPIi, ev.OldSPIr = ikev2.SPI(o.spiI), ikev2.SPI(o.spiR)
	}
	ev.RemoteID.Data = slices.Clone(ev.RemoteID.Data)
	if e.cfg.ExportKeys && (t == IKESAUp || t == IKESARekeyed) {
		k := ikecrypto.NewIKEKeyLog(sa.spiI, sa.spiR, sa.suite.Transform, sa.keys)
		k.SKei, k.SKer = slices.Clone(k.SKei), slices.Clone(k.SKer)
		k.SKai, k.SKar = slices.Clone(k.SKai), slices.Clone(k.SKar)
		ev.IKEKeys = &k
	}
	if c != nil {
		cc := *c
		cc.Inbound.EncKey, cc.Inbound.IntegKey = slices.Clone(c.Inbound.EncKey), slices.Clone(c.Inbound.IntegKey)
		cc.Outbound.EncKey, cc.Outbound.IntegKey = slices.Clone(c.Outbound.EncKey), slices.Clone(c.Outbound.IntegKey)
		ev.Child = &cc
	}
	e.cfg.OnEvent(ev)
}

// childInfo fills in what the data plane needs from the negotiated first
// Child SA (keys from the IKE_AUTH nonces).
func (e *Engine) childInfo(sa *ikeSA, c *childSA, ch espChoice, mode Mode, remote netip.Addr) error {
	return e.childKeys(sa, c, ch, mode, remote, nil, sa.ni, sa.nr, sa.initiator)
}

// childKeys fills in what the data plane needs from a negotiated Child
// SA: keys (ikecrypto.ChildKeymat over gir, ni and nr, in esp's lengths),
// mode, endpoints. weInitiated: we sent the request of the exchange that
// made it (RFC 7296 §2.17: KEYMAT's first half protects what that
// exchange's initiator sends, whoever initiated the IKE SA).
func (e *Engine) childKeys(sa *ikeSA, c *childSA, ch espChoice, mode Mode, remote netip.Addr, gir, ni, nr []byte, weInitiated bool) error {
	t := ch.transform
	k, err := ikecrypto.ChildKeymat(sa.suite.PRF, sa.keys.SKd, gir, ni, nr, t.EncKeyLen(), t.IntegKeyLen())
	if err != nil {
		return err
	}
	c.outSPI = ch.peerSPI
	in, out := SAKeys{SPI: c.inSPI}, SAKeys{SPI: c.outSPI}
	if weInitiated {
		out.EncKey, out.IntegKey = slices.Clone(k.InitEnc), slices.Clone(k.InitInteg)
		in.EncKey, in.IntegKey = slices.Clone(k.RespEnc), slices.Clone(k.RespInteg)
	} else {
		in.EncKey, in.IntegKey = slices.Clone(k.InitEnc), slices.Clone(k.InitInteg)
		out.EncKey, out.IntegKey = slices.Clone(k.RespEnc), slices.Clone(k.RespInteg)
	}
	k.Clear()
	c.info = ChildSA{Peer: sa.peer, UDPEncap: sa.nat.Any(), Mode: mode, Local: e.cfg.Local, Remote: remote,
		Transform: t, ESN: ch.esn, Inbound: in, Outbound: out, Lifetime: e.cfg.ChildLifetime, Limits: e.childLimits(),
		PFS: ch.dh}
	return nil
}
