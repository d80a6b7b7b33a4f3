package engine

import (
	"net/netip"
	"slices"
	"time"

	"github.com/dmvpn/dmvpn/ikev2"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// IKE_AUTH (RFC 7296 §1.2, §2.15): identities, PSK AUTH, the first Child
// SA (ESP, GRE between the two NBMA hosts, transport mode asked for).

const protoGRE = 47

// hostTS is the TSi/TSr payload of one host's GRE.
func hostTS(a netip.Addr) *ikev2.TrafficSelectors {
	return &ikev2.TrafficSelectors{Selectors: []ikev2.TrafficSelector{ikev2.HostSelector(a, protoGRE)}}
}

// sendAuth sends the initiator's IKE_AUTH request.
func (e *Engine) sendAuth(now time.Time, sa *ikeSA) {
	psk, _ := e.peerConfig(sa.key.Addr())
	id := e.cfg.LocalID.payload()
	idBody, err := id.AppendBody(nil)
	if err != nil {
		e.remove(now, sa, "our identity: "+err.Error(), true)
		return
	}
	auth, err := ikecrypto.PSKAuth(sa.suite.PRF, psk, sa.msg1, sa.nr, sa.keys.SKpi, idBody)
	if err != nil {
		e.remove(now, sa, "AUTH: "+err.Error(), true)
		return
	}
	spi, err := e.newChildSPI()
	if err != nil {
		e.remove(now, sa, err.Error(), true)
		return
	}
	c := &childSA{inSPI: spi, proposed: true}
	sa.pending = c
	e.byChild[spi] = c // reserved; c.ike stays nil until it is up
	msg, err := e.seal(sa, sa.header(ikev2.ExchangeIKEAuth, 1, false), func(b *ikev2.Builder) {
		b.IDi(id)
		if sa.initialContact {
			b.Notify(&ikev2.Notify{Type: ikev2.NotifyInitialContact})
		}
		b.Auth(&ikev2.Auth{Method: ikev2.AuthSharedKeyMIC, Data: auth})
		if !e.cfg.TunnelMode {
			b.Notify(&ikev2.Notify{Type: ikev2.NotifyUseTransportMode})
		}
		b.SA(espSAPayload(e.cfg.ESPProposals, spi, 0))
		b.TSi(hostTS(e.cfg.Local))
		b.TSr(hostTS(sa.key.Addr()))
	})
	if err != nil {
		e.remove(now, sa, err.Error(), true)
		return
	}
	sa.state = stateAuthSent
	sa.nextID = 2
	e.sendRequest(now, sa, &request{kind: reqAuth, id: 1, msg: msg})
}

// authRequest handles IKE_AUTH at the responder.
func (e *Engine) authRequest(now time.Time, sa *ikeSA, from netip.AddrPort, natt bool, m *ikev2.Message) {
	inner := m.Inner
	idP, authP := ikev2.Find(inner, ikev2.PayloadIDi), ikev2.Find(inner, ikev2.PayloadAUTH)
	if idP == nil || authP == nil {
		e.drop(now, DropMalformed, from, "IKE_AUTH without IDi or AUTH")
		e.respond(now, sa, from, natt, ikev2.ExchangeIKEAuth, func(b *ikev2.Builder) {
			b.Notify(&ikev2.Notify{Type: ikev2.NotifyInvalidSyntax})
		})
		e.remove(now, sa, "IKE_AUTH without IDi or AUTH", true)
		return
	}
	id, err1 := idP.ID()
	auth, err2 := authP.Auth()
	psk, want := e.peerConfig(sa.key.Addr())
	rid := Identity{Type: id.Type, Data: slices.Clone(id.Data)}
	why := ""
	switch {
	case err1 != nil || err2 != nil:
		why = "unreadable IDi or AUTH"
	case auth.Method != ikev2.AuthSharedKeyMIC:
		why = "AUTH method " + auth.Method.String() + ", want a shared key"
	case !want.IsZero() && !want.Equal(rid):
		why = "identity " + rid.String() + " is not the configured " + want.String()
	}
	if why != "" {
		e.authFailed(now, sa, from, natt, rid, why)
		return
	}
	ourID := e.cfg.LocalID.payload()
	ourBody, err := ourID.AppendBody(nil)
	if err != nil {
		e.remove(now, sa, "our identity: "+err.Error(), true)
		return
	}
	// The Child SA is negotiated now, while the message is at hand (it
	// lives in the engine's scratch); its SPI is reserved (sa.pending,
	// which remove releases) until the AUTH payloads, ours and the
	// peer's, are computed without the lock (authJob).
	c, ch, mode, tsI, tsR, refusal := e.respondChild(now, sa, inner)
	if c != nil {
		e.byChild[c.inSPI] = c
		sa.pending = c
	}
	_, ic := ikev2.FindNotify(inner, ikev2.NotifyInitialContact)
	j := &authJob{sa: sa, from: from, natt: natt, rid: rid, initialContact: ic, prf: sa.suite.PRF, psk: psk,
		msg1: sa.msg1, msg2: sa.msg2, ni: sa.ni, nr: sa.nr,
		skpi: slices.Clone(sa.keys.SKpi), skpr: slices.Clone(sa.keys.SKpr),
		idBody: slices.Clone(idP.Body), auth: slices.Clone(auth.Data), ourID: ourID, ourBody: ourBody,
		child: c, ch: ch, mode: mode, tsI: tsI, tsR: tsR, refusal: refusal}
	sa.busy = j
	e.job = j
}

// authFailed answers an IKE_AUTH request whose AUTH we refuse and removes
// the SA.
func (e *Engine) authFailed(now time.Time, sa *ikeSA, from netip.AddrPort, natt bool, rid Identity, why string) {
	e.stats.AuthFailures++
	e.rlog.Warn(now, "IKE_AUTH refused", "peer", from, "id", rid.String(), "why", why)
	e.respond(now, sa, from, natt, ikev2.ExchangeIKEAuth, func(b *ikev2.Builder) {
		b.Notify(&ikev2.Notify{Type: ikev2.NotifyAuthenticationFailed})
	})
	e.remove(now, sa, "authentication failed: "+why, true)
}

// authJob is the expensive half of answering IKE_AUTH: verifying the
// peer's AUTH payload and computing ours (PRFs over the IKE_SA_INIT
// messages, RFC 7296 §2.15). compute runs without the engine's lock on
// the job's own data: the keys and what the message held are copies (a
// removal clears the SA's keys in place), the IKE_SA_INIT messages and
// nonces are never written after the SA was made.
type authJob struct {
	sa             *ikeSA
	from           netip.AddrPort
	natt           bool
	rid            Identity
	initialContact bool

	prf                   ikecrypto.PRF
	psk                   []byte // the configuration's, read-only
	msg1, msg2, ni, nr    []byte
	skpi, skpr            []byte
	idBody, auth          []byte // the peer's ID payload body and AUTH data
	ourID                 *ikev2.ID
	ourBody               []byte
	child                 *childSA // nil: none (refusal says why, 0: none asked for)
	ch                    espChoice
	mode                  Mode
	tsI, tsR              netip.Addr
	refusal               ikev2.NotifyType
	verifyErr, ourAuthErr error
	ourAuth               []byte
}

func (j *authJob) compute() {
	defer clear(j.skpi)
	defer clear(j.skpr)
	j.verifyErr = ikecrypto.VerifyPSKAuth(j.prf, j.psk, j.msg1, j.nr, j.skpi, j.idBody, j.auth)
	if j.verifyErr != nil {
		return
	}
	j.ourAuth, j.ourAuthErr = ikecrypto.PSKAuth(j.prf, j.psk, j.msg2, j.ni, j.skpr, j.ourBody)
}

func (j *authJob) commit(e *Engine, now time.Time) {
	sa := j.sa
	if e.bySPI[sa.ours] != sa || sa.busy != offLock(j) {
		// Removed meanwhile (its half-open time, Delete): the reserved
		// Child SPI went with it.
		clear(j.ourAuth)
		return
	}
	sa.busy = nil
	switch {
	case j.verifyErr != nil:
		e.authFailed(now, sa, j.from, j.natt, j.rid, "AUTH does not verify (pre-shared key mismatch)")
		return
	case j.ourAuthErr != nil:
		e.remove(now, sa, "AUTH: "+j.ourAuthErr.Error(), true)
		return
	}
	defer clear(j.ourAuth)
	c := j.child
	sa.pending = nil
	sa.remoteID = j.rid
	sa.initialContact = j.initialContact
	e.respond(now, sa, j.from, j.natt, ikev2.ExchangeIKEAuth, func(b *ikev2.Builder) {
		b.IDr(j.ourID)
		b.Auth(&ikev2.Auth{Method: ikev2.AuthSharedKeyMIC, Data: j.ourAuth})
		if c == nil {
			if j.refusal != 0 {
				b.Notify(&ikev2.Notify{Type: j.refusal})
			}
			return
		}
		if j.mode == Transport {
			b.Notify(&ikev2.Notify{Type: ikev2.NotifyUseTransportMode})
		}
		b.SA(j.ch.payload(c.inSPI))
		b.TSi(hostTS(j.tsI))
		b.TSr(hostTS(j.tsR))
	})
	e.established(now, sa)
	if c != nil {
		e.addChild(now, sa, c)
	} else if j.refusal != 0 {
		e.emit(now, ChildSAFailed, sa, "refused the peer's Child SA: "+j.refusal.String(), nil)
	}
}

// respondChild negotiates the first Child SA as the responder. c is nil
// when there is none: refusal says what to answer (0: the peer asked for
// none).
func (e *Engine) respondChild(now time.Time, sa *ikeSA, inner []ikev2.Payload) (c *childSA, ch espChoice, mode Mode, tsI, tsR netip.Addr, refusal ikev2.NotifyType) {
	saP, tsiP, tsrP := ikev2.Find(inner, ikev2.PayloadSA), ikev2.Find(inner, ikev2.PayloadTSi), ikev2.Find(inner, ikev2.PayloadTSr)
	if saP == nil {
		return nil, ch, 0, tsI, tsR, 0
	}
	if tsiP == nil || tsrP == nil || saP.SA(&e.sa) != nil {
		return nil, ch, 0, tsI, tsR, ikev2.NotifyInvalidSyntax
	}
	ch, ok := selectESP(e.cfg.ESPProposals, &e.sa)
	if !ok {
		return nil, ch, 0, tsI, tsR, ikev2.NotifyNoProposalChosen
	}
	if tsiP.TrafficSelectors(&e.tsi) != nil || tsrP.TrafficSelectors(&e.tsr) != nil {
		return nil, ch, 0, tsI, tsR, ikev2.NotifyInvalidSyntax
	}
	tsI, ok1 := matchTS(&e.tsi, sa.peer.Addr(), sa.nat.Remote)
	tsR, ok2 := matchTS(&e.tsr, e.cfg.Local, sa.nat.Local)
	if !ok1 || !ok2 {
		e.rlog.Info(now, "Child SA refused: traffic selectors are not GRE between the NBMA hosts", "peer", sa.peer)
		return nil, ch, 0, tsI, tsR, ikev2.NotifyTSUnacceptable
	}
	mode = Tunnel
	if _, ok := ikev2.FindNotify(inner, ikev2.NotifyUseTransportMode); ok && !e.cfg.TunnelMode {
		mode = Transport
	}
	spi, err := e.newChildSPI()
	if err != nil {
		return nil, ch, 0, tsI, tsR, ikev2.NotifyNoAdditionalSAs
	}
	c = &childSA{inSPI: spi}
	if err := e.childInfo(sa, c, ch, mode, sa.key.Addr()); err != nil {
		return nil, ch, 0, tsI, tsR, ikev2.NotifyNoProposalChosen
	}
	return c, ch, mode, tsI, tsR, 0
}

// matchTS finds in ts a selector that allows GRE to or from host a (the
// whole port range, protocol GRE or any), and returns the host to answer
// with: a itself, or, when a's side is behind NAT (RFC 7296 §2.23.1: it
// names its address before translation), the one host it proposed.
func matchTS(ts *ikev2.TrafficSelectors, a netip.Addr, natted bool) (netip.Addr, bool) {
	for i := range ts.Selectors {
		s := &ts.Selectors[i]
		if s.Type != ikev2.TSIPv4AddrRange && s.Type != ikev2.TSIPv6AddrRange {
			continue
		}
		if s.Protocol != 0 && s.Protocol != protoGRE {
			continue
		}
		if !(s.StartPort == 0 && s.EndPort == 0xffff) {
			continue
		}
		if !s.Start.IsValid() || !s.End.IsValid() || s.Start.Is4() != a.Is4() {
			continue
		}
		if s.Start.Compare(a) <= 0 && a.Compare(s.End) <= 0 {
			return a, true
		}
		if natted && s.Start == s.End {
			return s.Start, true
		}
	}
	return netip.Addr{}, false
}

// authResponse handles the answer to our IKE_AUTH.
func (e *Engine) authResponse(now time.Time, sa *ikeSA, from netip.AddrPort, m *ikev2.Message) {
	inner := m.Inner
	if _, ok := ikev2.FindNotify(inner, ikev2.NotifyAuthenticationFailed); ok {
		e.stats.AuthFailures++
		e.rlog.Warn(now, "the peer refused our authentication", "peer", from)
		e.done(now, sa)
		e.remove(now, sa, "authentication failed: the peer refused our AUTH", true)
		return
	}
	idP, authP := ikev2.Find(inner, ikev2.PayloadIDr), ikev2.Find(inner, ikev2.PayloadAUTH)
	if idP == nil || authP == nil {
		why := "IKE_AUTH answered without IDr or AUTH"
		if n, ok := firstError(inner); ok {
			why = "IKE_AUTH refused: " + n.String()
		}
		e.done(now, sa)
		e.remove(now, sa, why, true)
		return
	}
	id, err1 := idP.ID()
	auth, err2 := authP.Auth()
	psk, want := e.peerConfig(sa.key.Addr())
	rid := Identity{Type: id.Type, Data: slices.Clone(id.Data)}
	why := ""
	switch {
	case err1 != nil || err2 != nil:
		why = "unreadable IDr or AUTH"
	case auth.Method != ikev2.AuthSharedKeyMIC:
		why = "AUTH method " + auth.Method.String() + ", want a shared key"
	case !want.IsZero() && !want.Equal(rid):
		why = "identity " + rid.String() + " is not the configured " + want.String()
	case ikecrypto.VerifyPSKAuth(sa.suite.PRF, psk, sa.msg2, sa.ni, sa.keys.SKpr, idP.Body, auth.Data) != nil:
		why = "AUTH does not verify (pre-shared key mismatch)"
	}
	e.done(now, sa)
	if why != "" {
		// §2.21.2: tell the responder, which believes the SA is up, and
		// delete it.
		e.stats.AuthFailures++
		e.rlog.Warn(now, "IKE_AUTH answer refused", "peer", from, "id", rid.String(), "why", why)
		e.sendRequest(now, sa, &request{kind: reqNotify, notify: ikev2.NotifyAuthenticationFailed, noReply: true})
		e.remove(now, sa, "authentication failed: "+why, true)
		return
	}
	sa.remoteID = rid
	c := sa.pending
	sa.pending = nil
	e.established(now, sa)
	if c == nil {
		return
	}
	reason := e.acceptChild(now, sa, c, inner)
	if reason == "" {
		e.addChild(now, sa, c)
		return
	}
	delete(e.byChild, c.inSPI)
	e.emit(now, ChildSAFailed, sa, reason, nil)
}

// acceptChild checks the responder's Child SA and derives its keys; a
// non-empty result says why it is refused (a refusal of an SA the peer
// installed is followed by a Delete for it).
func (e *Engine) acceptChild(now time.Time, sa *ikeSA, c *childSA, inner []ikev2.Payload) string {
	if n, ok := firstError(inner); ok {
		return "the peer refused the Child SA: " + n.String()
	}
	saP, tsiP, tsrP := ikev2.Find(inner, ikev2.PayloadSA), ikev2.Find(inner, ikev2.PayloadTSi), ikev2.Find(inner, ikev2.PayloadTSr)
	if saP == nil || tsiP == nil || tsrP == nil {
		return "the peer set up no Child SA"
	}
	if saP.SA(&e.sa) != nil {
		return "unreadable Child SA proposal"
	}
	refuse := func(why string) string {
		// The peer installed an SA we will not use: delete it there (a
		// Delete names the SPI its sender receives on, RFC 7296 §3.11).
		e.queueRequest(now, sa, &request{kind: reqDeleteChild, spis: []uint32{c.inSPI}})
		return why
	}
	ch, err := acceptedESP(e.cfg.ESPProposals, &e.sa)
	if err != nil {
		return refuse("Child SA: " + err.Error())
	}
	if tsiP.TrafficSelectors(&e.tsi) != nil || tsrP.TrafficSelectors(&e.tsr) != nil {
		return refuse("unreadable traffic selectors")
	}
	if !exactHost(&e.tsi, e.cfg.Local, sa.nat.Local) || !exactHost(&e.tsr, sa.key.Addr(), sa.nat.Remote) {
		return refuse("traffic selectors narrowed to something other than GRE between the NBMA hosts")
	}
	mode := Tunnel
	if _, ok := ikev2.FindNotify(inner, ikev2.NotifyUseTransportMode); ok && !e.cfg.TunnelMode {
		mode = Transport
	}
	if err := e.childInfo(sa, c, ch, mode, sa.key.Addr()); err != nil {
		return refuse("Child SA keys: " + err.Error())
	}
	return ""
}

// exactHost reports whether ts is GRE for the one host we proposed (or,
// with that side behind NAT, one host).
func exactHost(ts *ikev2.TrafficSelectors, a netip.Addr, natted bool) bool {
	if len(ts.Selectors) != 1 {
		return false
	}
	s := &ts.Selectors[0]
	if s.Protocol != protoGRE || s.StartPort != 0 || s.EndPort != 0xffff || s.Start != s.End || !s.Start.IsValid() {
		return false
	}
	return s.Start == a || natted && s.Start.Is4() == a.Is4()
}

// firstError returns the first error notification in ps.
func firstError(ps []ikev2.Payload) (ikev2.NotifyType, bool) {
	for i := range ps {
		if ps[i].Type != ikev2.PayloadNotify {
			continue
		}
		if n, err := ps[i].Notify(); err == nil && n.Type.IsError() {
			return n.Type, true
		}
	}
	return 0, false
}
