package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/dmvpn/dmvpn/ikev2"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// IKE_SA_INIT (RFC 7296 §1.2): SA, KE, Nonce, NAT detection; COOKIE
// (§2.6) and INVALID_KE_PAYLOAD (§1.2) restarts on the initiator's side.

// startInitiator makes an initiator SA and sends its IKE_SA_INIT.
func (e *Engine) startInitiator(now time.Time, peer netip.AddrPort) error {
	spi, err := e.newSPI()
	if err != nil {
		return err
	}
	ni, err := e.nonce()
	if err != nil {
		return err
	}
	sa := &ikeSA{spiI: spi, ours: spi, initiator: true, state: stateInitSent, key: peer, peer: peer,
		natt: peer.Port() == ikev2.NATTPort, created: now, lastRx: now, ni: ni,
		group: e.cfg.IKEProposals[0].Groups[0]}
	if sa.dh, err = sa.group.GenerateKey(e.rnd); err != nil {
		return err
	}
	// INITIAL_CONTACT: we hold no SA with this peer (Initiate checked), so
	// whatever it still holds for us is stale.
	sa.initialContact = true
	e.add(sa)
	e.sendInit(now, sa)
	return nil
}

// sendInit (re)builds the IKE_SA_INIT request (after a COOKIE or
// INVALID_KE_PAYLOAD with the same SPI and nonce) and sends it.
func (e *Engine) sendInit(now time.Time, sa *ikeSA) {
	h := ikev2.Header{InitiatorSPI: ikev2.SPI(sa.spiI), Exchange: ikev2.ExchangeIKESAInit, Flags: ikev2.FlagInitiator}
	b := ikev2.NewMessage(nil, &h)
	if sa.cookie != nil {
		// §2.6: the COOKIE notification comes first.
		b.Notify(&ikev2.Notify{Type: ikev2.NotifyCookie, Data: sa.cookie})
	}
	b.SA(ikeSAPayload(e.cfg.IKEProposals, 0))
	b.KE(&ikev2.KE{Group: ikev2.DHGroup(sa.group), Data: sa.dh.Public()})
	b.Nonce(sa.ni)
	b.Notify(&ikev2.Notify{Type: ikev2.NotifyNATDetectionSourceIP, Data: e.natSource(sa.spiI, 0, e.localEP(sa.natt))})
	b.Notify(&ikev2.Notify{Type: ikev2.NotifyNATDetectionDestinationIP, Data: natHash(sa.spiI, 0, sa.peer)})
	msg, err := b.Finish()
	if err != nil {
		e.rlog.Warn(now, "building IKE_SA_INIT", "peer", sa.peer, "err", err)
		e.remove(now, sa, "cannot build IKE_SA_INIT: "+err.Error(), true)
		return
	}
	sa.msg1 = msg
	sa.nextID = 1
	e.sendRequest(now, sa, &request{kind: reqInit, id: 0, msg: msg})
}

// initRequest answers an IKE_SA_INIT request: a responder SA, or a
// stateless COOKIE, INVALID_KE_PAYLOAD or NO_PROPOSAL_CHOSEN.
func (e *Engine) initRequest(now time.Time, from netip.AddrPort, natt bool, m *ikev2.Message) {
	h := &m.Header
	if h.ResponderSPI != 0 || h.MessageID != 0 || !h.IsInitiator() || h.InitiatorSPI == 0 {
		e.drop(now, DropMalformed, from, "IKE_SA_INIT request header")
		return
	}
	spiI := uint64(h.InitiatorSPI)
	if sa := e.halfOpen[initKey{from, spiI}]; sa != nil {
		if bytes.Equal(m.Raw, sa.msg1) && sa.msg2 == nil {
			// Its answer is being computed (initJob): it goes out then.
			e.drop(now, DropUnexpected, from, "IKE_SA_INIT retransmitted while its answer is computed")
			return
		}
		if bytes.Equal(m.Raw, sa.msg1) {
			e.stats.Reanswered++
			e.transmit(from, natt, sa.msg2)
			return
		}
		e.drop(now, DropDuplicateSPI, from, "IKE_SA_INIT reusing a half-open SA's SPI")
		return
	}
	for _, o := range e.byKey[from] {
		if !o.initiator && o.spiI == spiI {
			// A late copy of the request that made an SA now past
			// IKE_SA_INIT: already answered, nothing new (§2.1).
			e.drop(now, DropOutOfWindow, from, "old IKE_SA_INIT")
			return
		}
	}
	if !e.initRate.Allow(now, from.Addr()) {
		e.drop(now, DropRateLimited, from, "IKE_SA_INIT rate")
		return
	}
	saP, keP, nP := m.Find(ikev2.PayloadSA), m.Find(ikev2.PayloadKE), m.Find(ikev2.PayloadNonce)
	if saP == nil || keP == nil || nP == nil {
		e.drop(now, DropMalformed, from, "IKE_SA_INIT without SA, KE or Nonce")
		return
	}
	ni, err1 := nP.Nonce()
	ke, err2 := keP.KE()
	if err1 != nil || err2 != nil {
		e.drop(now, DropMalformed, from, "IKE_SA_INIT nonce or KE")
		return
	}
	// Cookies once the half-open table fills (§2.6): stateless, so a flood
	// of forged sources costs a MAC each and leaves nothing behind.
	if e.nHalf >= e.cfg.CookieThreshold {
		c, ok := ikev2.FindNotify(m.Payloads, ikev2.NotifyCookie)
		if !ok {
			e.sendCookie(now, from, natt, h, ni)
			return
		}
		if e.cookies.Check(c.Data, ni, from.Addr(), spiI) != nil {
			e.drop(now, DropBadCookie, from, "cookie does not verify")
			e.sendCookie(now, from, natt, h, ni)
			return
		}
	}
	switch {
	case e.nHalf >= e.cfg.MaxHalfOpen:
		e.drop(now, DropHalfOpenFull, from, "half-open SAs at the limit")
		return
	case len(e.bySPI) >= e.cfg.MaxIKESAs:
		e.drop(now, DropTableFull, from, "IKE SAs at the limit")
		return
	}
	if !e.collision(now, from, ni, spiI) {
		return
	}
	if len(e.byKey[from]) >= maxSAsPerPeer {
		e.drop(now, DropPeerLimit, from, "too many SAs with this endpoint")
		return
	}
	if err := saP.SA(&e.sa); err != nil {
		e.drop(now, DropMalformed, from, err.Error())
		return
	}
	ch, ok := selectIKE(e.cfg.IKEProposals, &e.sa, ke.Group, false)
	if !ok {
		e.stats.NoProposalSent++
		e.rlog.Info(now, "IKE_SA_INIT: no proposal chosen", "peer", from)
		e.initNotify(now, from, natt, h, ikev2.Notify{Type: ikev2.NotifyNoProposalChosen})
		return
	}
	if ch.group != ikecrypto.Group(ke.Group) {
		e.stats.InvalidKESent++
		var g [2]byte
		binary.BigEndian.PutUint16(g[:], uint16(ch.group))
		e.initNotify(now, from, natt, h, ikev2.Notify{Type: ikev2.NotifyInvalidKEPayload, Data: g[:]})
		return
	}
	if ikecrypto.CheckNonce(ch.suite.PRF, ni) != nil {
		e.drop(now, DropMalformed, from, "nonce too short for the PRF")
		return
	}
	spiR, err := e.newSPI()
	if err != nil {
		e.rlog.Warn(now, "SPI", "err", err)
		return
	}
	nr, err := e.nonce()
	if err != nil {
		e.rlog.Warn(now, "nonce", "err", err)
		return
	}
	// The SA is reserved now, half open and without keys: its SPI is
	// taken, the bounds count it and a retransmission finds it. Our D-H
	// key, g^ir, SKEYSEED, the keys and the response are computed by
	// HandlePacket after it released the lock (initJob); they arrive in
	// commit, which sends the answer.
	sa := &ikeSA{spiI: spiI, spiR: spiR, ours: spiR, state: stateRespInit, key: from, peer: from, natt: natt,
		created: now, lastRx: now, ni: slices.Clone(ni), nr: nr, group: ch.group, suite: ch.suite, nextID: 0, peerNext: 1}
	nat, hasNAT := natCheck(m, spiI, 0, from, e.localEP(natt))
	sa.nat = e.natFound(nat, hasNAT)
	sa.msg1 = slices.Clone(m.Raw)
	j := &initJob{sa: sa, from: from, natt: natt, rnd: e.rnd, ch: ch, peerKE: slices.Clone(ke.Data),
		spiI: spiI, spiR: spiR, ni: sa.ni, nr: nr, hasNAT: hasNAT, local: e.localEP(natt),
		natSrc: e.natSource(spiI, spiR, e.localEP(natt))}
	sa.busy = j
	e.job = j
	e.add(sa)
	e.timers.Set(timerKey{timerHalfOpen, sa.ours}, now.Add(e.cfg.HalfOpenTimeout))
}

// initJob is the expensive half of answering an IKE_SA_INIT request: our
// D-H key (fresh for every exchange, never used twice), g^ir after RFC
// 6989's checks of the peer's value, SKEYSEED and the IKE SA's keys, the
// response. compute runs without the engine's lock and touches nothing but
// the job: what it reads was copied (or made for the SA and never written
// again), what it makes is handed to the SA by commit.
type initJob struct {
	sa         *ikeSA // reserved, half open, busy with this job
	from       netip.AddrPort
	natt       bool
	rnd        io.Reader // safe for concurrent use (see New)
	ch         ikeChoice
	peerKE     []byte // the peer's Key Exchange Data
	spiI, spiR uint64
	ni, nr     []byte
	hasNAT     bool
	local      netip.AddrPort // our endpoint for NAT detection
	natSrc     []byte         // our NAT_DETECTION_SOURCE_IP data (natSource)

	keys    ikecrypto.IKEKeys
	in, out *ikecrypto.SK
	msg     []byte // the response
	err     error
	badKE   bool // err is the peer's value failing the checks
}

func (j *initJob) compute() {
	dh, err := j.ch.group.GenerateKey(j.rnd)
	if err != nil {
		j.err = fmt.Errorf("DH key: %w", err)
		return
	}
	gir, err := dh.Shared(j.peerKE)
	if err != nil {
		j.err, j.badKE = err, true
		return
	}
	defer clear(gir)
	if j.keys, j.in, j.out, err = ikeKeys(j.ch.suite, false, j.ni, j.nr, j.spiI, j.spiR, gir); err != nil {
		j.err = fmt.Errorf("IKE keys: %w", err)
		return
	}
	rh := ikev2.Header{InitiatorSPI: ikev2.SPI(j.spiI), ResponderSPI: ikev2.SPI(j.spiR), Exchange: ikev2.ExchangeIKESAInit,
		Flags: ikev2.FlagResponse}
	b := ikev2.NewMessage(nil, &rh)
	b.SA(j.ch.payload(0))
	b.KE(&ikev2.KE{Group: ikev2.DHGroup(j.ch.group), Data: dh.Public()})
	b.Nonce(j.nr)
	if j.hasNAT {
		b.Notify(&ikev2.Notify{Type: ikev2.NotifyNATDetectionSourceIP, Data: j.natSrc})
		b.Notify(&ikev2.Notify{Type: ikev2.NotifyNATDetectionDestinationIP, Data: natHash(j.spiI, j.spiR, j.from)})
	}
	if j.msg, err = b.Finish(); err != nil {
		j.keys.Clear()
		j.err = fmt.Errorf("building IKE_SA_INIT response: %w", err)
	}
}

func (j *initJob) commit(e *Engine, now time.Time) {
	sa := j.sa
	if e.bySPI[sa.ours] != sa || sa.busy != offLock(j) {
		// Removed meanwhile (its half-open time, Delete, a rekey of the
		// peer's...): whoever removed it accounted for it.
		j.keys.Clear()
		return
	}
	sa.busy = nil
	if j.err != nil {
		e.remove(now, sa, "", false)
		if j.badKE {
			e.drop(now, DropBadKE, j.from, j.err.Error())
		} else {
			e.rlog.Warn(now, "IKE_SA_INIT response", "peer", j.from, "err", j.err)
		}
		return
	}
	sa.keys, sa.in, sa.out, sa.msg2 = j.keys, j.in, j.out, j.msg
	e.transmit(j.from, j.natt, j.msg)
}

// collision applies the simultaneous-initiation rule (package doc) to an
// IKE_SA_INIT request from a peer; false: the request is dropped.
func (e *Engine) collision(now time.Time, from netip.AddrPort, ni []byte, spiI uint64) bool {
	for _, o := range e.byKey[from] {
		if !o.initiator || (o.state != stateInitSent && o.state != stateAuthSent) {
			continue
		}
		e.stats.Collisions++
		c := bytes.Compare(o.ni, ni)
		if c < 0 || c == 0 && o.spiI < spiI {
			e.drop(now, DropCollision, from, "simultaneous IKE_SA_INIT: ours has the lower nonce")
			// Send ours again at once: when the peer is behind a NAT,
			// its request has just opened the mapping that dropped our
			// first one, and waiting for the retransmission timer
			// would cost it half a second.
			if o.req != nil && o.req.msg != nil {
				e.transmit(o.peer, o.req.natt, o.req.msg)
			}
			return false
		}
		e.rlog.Info(now, "simultaneous IKE_SA_INIT: the peer's has the lower nonce, answering it", "peer", from)
		e.remove(now, o, "", false)
		return true
	}
	return true
}

// sendCookie answers with a COOKIE and keeps nothing.
func (e *Engine) sendCookie(now time.Time, from netip.AddrPort, natt bool, h *ikev2.Header, ni []byte) {
	e.stats.CookiesSent++
	c := e.cookies.Append(make([]byte, 0, ikecrypto.CookieLen), ni, from.Addr(), uint64(h.InitiatorSPI))
	e.initNotify(now, from, natt, h, ikev2.Notify{Type: ikev2.NotifyCookie, Data: c})
}

// initNotify answers an IKE_SA_INIT request with one notification and no
// state (responder SPI 0).
func (e *Engine) initNotify(now time.Time, to netip.AddrPort, natt bool, h *ikev2.Header, n ikev2.Notify) {
	rh := ikev2.Header{InitiatorSPI: h.InitiatorSPI, Exchange: ikev2.ExchangeIKESAInit, Flags: ikev2.FlagResponse}
	b := ikev2.NewMessage(e.plain[:0], &rh)
	b.Notify(&n)
	msg, err := b.Finish()
	if err != nil {
		e.rlog.Warn(now, "building a notification", "err", err)
		return
	}
	e.plain = msg[:0]
	e.transmit(to, natt, msg)
}

// deriveKeys computes SKEYSEED and the IKE SA's keys (§2.14).
func (e *Engine) deriveKeys(sa *ikeSA, gir []byte) error {
	seed, err := ikecrypto.SKEYSEED(sa.suite.PRF, sa.ni, sa.nr, gir)
	if err != nil {
		return err
	}
	defer clear(seed)
	return e.setKeys(sa, seed)
}

// setKeys derives an IKE SA's keys from SKEYSEED and its SK protection in
// both directions.
func (e *Engine) setKeys(sa *ikeSA, seed []byte) error {
	k, in, out, err := ikeKeysFromSeed(sa.suite, sa.initiator, seed, sa.ni, sa.nr, sa.spiI, sa.spiR)
	if err != nil {
		return err
	}
	sa.keys, sa.in, sa.out = k, in, out
	return nil
}

// ikeKeys computes SKEYSEED from g^ir and the IKE SA's keys (§2.14), and
// the SK protection of what we send (out) and receive (in). Pure: safe
// without the engine's lock.
func ikeKeys(s ikecrypto.Suite, initiator bool, ni, nr []byte, spiI, spiR uint64, gir []byte) (ikecrypto.IKEKeys, *ikecrypto.SK, *ikecrypto.SK, error) {
	seed, err := ikecrypto.SKEYSEED(s.PRF, ni, nr, gir)
	if err != nil {
		return ikecrypto.IKEKeys{}, nil, nil, err
	}
	defer clear(seed)
	return ikeKeysFromSeed(s, initiator, seed, ni, nr, spiI, spiR)
}

// ikeKeysFromSeed is ikeKeys from SKEYSEED.
func ikeKeysFromSeed(s ikecrypto.Suite, initiator bool, seed, ni, nr []byte, spiI, spiR uint64) (ikecrypto.IKEKeys, *ikecrypto.SK, *ikecrypto.SK, error) {
	k, err := ikecrypto.DeriveIKEKeys(s, seed, ni, nr, spiI, spiR)
	if err != nil {
		return ikecrypto.IKEKeys{}, nil, nil, err
	}
	ei, ai, er, ar := k.SKei, k.SKai, k.SKer, k.SKar
	if !initiator {
		ei, ai, er, ar = er, ar, ei, ai
	}
	out, err := ikecrypto.NewSK(s.Transform, ei, ai)
	if err == nil {
		var in *ikecrypto.SK
		if in, err = ikecrypto.NewSK(s.Transform, er, ar); err == nil {
			return k, in, out, nil
		}
	}
	k.Clear()
	return ikecrypto.IKEKeys{}, nil, nil, err
}

// initResponse handles the answer to our IKE_SA_INIT.
func (e *Engine) initResponse(now time.Time, from netip.AddrPort, natt bool, m *ikev2.Message) {
	h := &m.Header
	sa := e.bySPI[uint64(h.InitiatorSPI)]
	if sa == nil || !sa.initiator || h.IsInitiator() {
		e.drop(now, DropUnknownSPI, from, "IKE_SA_INIT response for no SA of ours")
		return
	}
	if sa.state != stateInitSent || h.MessageID != 0 {
		e.drop(now, DropUnexpected, from, "IKE_SA_INIT response in state "+sa.state.String())
		return
	}
	if from.Addr() != sa.peer.Addr() {
		e.drop(now, DropWrongSource, from, "IKE_SA_INIT response from elsewhere")
		return
	}
	// Notifications first: an unauthenticated answer can only restart or
	// fail the exchange (§2.21.1 accepts the risk), never bring it up.
	if n, ok := ikev2.FindNotify(m.Payloads, ikev2.NotifyCookie); ok {
		if sa.retries >= maxInitRetries || len(n.Data) == 0 {
			e.remove(now, sa, "the responder keeps demanding cookies", true)
			return
		}
		sa.retries++
		sa.cookie = slices.Clone(n.Data)
		e.done(now, sa)
		e.sendInit(now, sa)
		return
	}
	if n, ok := ikev2.FindNotify(m.Payloads, ikev2.NotifyInvalidKEPayload); ok {
		g, ok := n.Group()
		want := ikecrypto.Group(g)
		if !ok || !e.groupConfigured(want) || want == sa.group || sa.retries >= maxInitRetries {
			e.remove(now, sa, "INVALID_KE_PAYLOAD: the responder wants group "+ikev2.DHGroup(g).String()+", not configured", true)
			return
		}
		dh, err := want.GenerateKey(e.rnd)
		if err != nil {
			e.remove(now, sa, "DH key: "+err.Error(), true)
			return
		}
		sa.retries++
		sa.group, sa.dh = want, dh
		e.done(now, sa)
		e.sendInit(now, sa)
		return
	}
	for i := range m.Payloads {
		if m.Payloads[i].Type != ikev2.PayloadNotify {
			continue
		}
		if n, err := m.Payloads[i].Notify(); err == nil && n.Type.IsError() {
			e.rlog.Info(now, "IKE_SA_INIT refused", "peer", from, "notify", n.Type)
			e.remove(now, sa, "IKE_SA_INIT refused: "+n.Type.String(), true)
			return
		}
	}
	if h.ResponderSPI == 0 {
		e.drop(now, DropMalformed, from, "IKE_SA_INIT response without a responder SPI")
		return
	}
	saP, keP, nP := m.Find(ikev2.PayloadSA), m.Find(ikev2.PayloadKE), m.Find(ikev2.PayloadNonce)
	if saP == nil || keP == nil || nP == nil {
		e.drop(now, DropMalformed, from, "IKE_SA_INIT response without SA, KE or Nonce")
		return
	}
	nr, err1 := nP.Nonce()
	ke, err2 := keP.KE()
	err3 := saP.SA(&e.sa)
	if err1 != nil || err2 != nil || err3 != nil {
		e.drop(now, DropMalformed, from, "IKE_SA_INIT response payloads")
		return
	}
	ch, err := acceptedIKE(e.cfg.IKEProposals, &e.sa, false)
	if err != nil || ch.group != sa.group || ikecrypto.Group(ke.Group) != sa.group {
		e.drop(now, DropBadProposal, from, "IKE_SA_INIT response: not what we proposed")
		return
	}
	if ikecrypto.CheckNonce(ch.suite.PRF, nr) != nil {
		e.drop(now, DropMalformed, from, "responder nonce too short")
		return
	}
	gir, err := sa.dh.Shared(ke.Data)
	if err != nil {
		e.drop(now, DropBadKE, from, err.Error())
		return
	}
	// Committed: from here the response is the one the AUTH payloads sign.
	e.done(now, sa)
	sa.spiR = uint64(h.ResponderSPI)
	sa.nr = slices.Clone(nr)
	sa.suite = ch.suite
	sa.msg2 = slices.Clone(m.Raw)
	sa.dh = nil
	if err := e.deriveKeys(sa, gir); err != nil {
		e.remove(now, sa, "IKE keys: "+err.Error(), true)
		return
	}
	if nat, ok := natCheck(m, sa.spiI, sa.spiR, from, e.localEP(natt)); ok {
		sa.nat = e.natFound(nat, ok)
	}
	if sa.nat.Any() && !sa.natt {
		// §2.23: with a NAT in between, the initiator moves to 4500.
		sa.natt = true
		sa.peer = netip.AddrPortFrom(sa.peer.Addr(), ikev2.NATTPort)
	}
	e.sendAuth(now, sa)
}

func (e *Engine) groupConfigured(g ikecrypto.Group) bool {
	for _, p := range e.cfg.IKEProposals {
		if slices.Contains(p.Groups, g) {
			return true
		}
	}
	return false
}
