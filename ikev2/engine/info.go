package engine

import (
	"net/netip"
	"time"

	"github.com/dmvpn/dmvpn/ikev2"
)

// Requests and responses on an SA with keys, and the INFORMATIONAL
// exchange (RFC 7296 §1.4): deletes both ways, liveness checks.

// request handles a peer's request with the expected message ID, already
// decrypted.
func (e *Engine) request(now time.Time, sa *ikeSA, from netip.AddrPort, natt bool, m *ikev2.Message) {
	e.follow(sa, from, natt)
	switch m.Header.Exchange {
	case ikev2.ExchangeIKEAuth:
		if sa.initiator || sa.state != stateRespInit {
			e.drop(now, DropUnexpected, from, "IKE_AUTH request in state "+sa.state.String())
			return
		}
		e.authRequest(now, sa, from, natt, m)
	case ikev2.ExchangeInformational:
		if sa.state != stateEstablished && sa.state != stateDeleting && sa.state != stateRekeyed {
			e.drop(now, DropUnexpected, from, "INFORMATIONAL request in state "+sa.state.String())
			return
		}
		e.infoRequest(now, sa, from, natt, m)
	case ikev2.ExchangeCreateChildSA:
		e.createChildRequest(now, sa, from, natt, m)
	default:
		e.drop(now, DropUnexpected, from, "exchange "+m.Header.Exchange.String())
	}
}

// follow moves the SA to where the peer's authenticated messages come
// from when a NAT is in between (its mapping may change, and the
// initiator floats to UDP 4500: RFC 7296 §2.23). Without NAT the
// address stays put: answers still go where each request came from.
func (e *Engine) follow(sa *ikeSA, from netip.AddrPort, natt bool) {
	if !sa.nat.Any() || sa.peer == from && sa.natt == natt {
		return
	}
	sa.peer, sa.natt = from, natt
	for _, c := range sa.children {
		c.info.Peer = from
	}
}

// respond answers the peer's current request on sa and remembers the
// answer for a retransmitted request.
func (e *Engine) respond(now time.Time, sa *ikeSA, to netip.AddrPort, natt bool, ex ikev2.ExchangeType, inner func(b *ikev2.Builder)) {
	msg, err := e.seal(sa, sa.header(ex, sa.peerNext, true), inner)
	if err != nil {
		e.rlog.Warn(now, "building a response", "peer", sa.peer, "err", err)
		return
	}
	sa.peerNext++
	sa.lastResp = msg
	e.transmit(to, natt, msg)
}

// infoRequest handles an INFORMATIONAL request: Delete payloads (the IKE
// SA, or Child SAs by the SPIs the peer receives on), AUTHENTICATION_FAILED
// from an initiator that refused our AUTH, or nothing (a liveness check).
func (e *Engine) infoRequest(now time.Time, sa *ikeSA, from netip.AddrPort, natt bool, m *ikev2.Message) {
	deleteIKE, authFailed := false, false
	var gone []*childSA
	for i := range m.Inner {
		p := &m.Inner[i]
		switch p.Type {
		case ikev2.PayloadDelete:
			d, err := p.Delete()
			if err != nil {
				continue
			}
			switch d.Protocol {
			case ikev2.ProtocolIKE:
				deleteIKE = true
			case ikev2.ProtocolESP:
				if d.SPISize != ikev2.ChildSPILen {
					continue
				}
				for j := 0; j < d.Count(); j++ {
					spi := d.ChildSPI(j)
					for _, c := range sa.children {
						if c.outSPI == spi && !containsChild(gone, c) {
							gone = append(gone, c)
						}
					}
				}
			}
		case ikev2.PayloadNotify:
			if n, err := p.Notify(); err == nil && n.Type == ikev2.NotifyAuthenticationFailed && !sa.initiator {
				authFailed = true
			}
		}
	}
	e.respond(now, sa, from, natt, ikev2.ExchangeInformational, func(b *ikev2.Builder) {
		if deleteIKE || authFailed || len(gone) == 0 {
			return
		}
		// §1.4.1: answer with the Delete of our own halves.
		spis := make([]uint32, len(gone))
		for i, c := range gone {
			spis[i] = c.inSPI
		}
		b.Delete(&ikev2.Delete{Protocol: ikev2.ProtocolESP, SPISize: ikev2.ChildSPILen, SPIs: spiBytes(spis)})
	})
	switch {
	case deleteIKE:
		if p := sa.peerRekey; p != nil {
			// §2.8.2: our rekey collided with the peer's, whose SA
			// survived (the peer deletes the old one): ours, unanswered
			// yet, is moot.
			e.completeIKERekey(now, sa, p, false)
		}
		e.remove(now, sa, ReasonDeletedByPeer, false)
	case authFailed:
		e.stats.AuthFailures++
		e.remove(now, sa, "authentication failed: the peer refused our AUTH", false)
	default:
		for _, c := range gone {
			reason := ReasonDeletedByPeer
			switch s := c.successor; {
			case c.state == childRedundant:
				reason = "redundant: simultaneous rekey"
			case s != nil:
				// The rekey initiator deletes the SA it replaced: now it
				// sends on the new one, and so do we (make before break).
				if s.state == childStandby {
					e.activate(now, s)
				}
				c.info.ReplacedBy = s.inSPI
				reason = "rekeyed"
			}
			e.removeChild(now, sa, c, reason)
		}
	}
}

func containsChild(cs []*childSA, c *childSA) bool {
	for _, o := range cs {
		if o == c {
			return true
		}
	}
	return false
}

// exchangeOf is the exchange a request of kind k is part of.
func exchangeOf(k reqKind) ikev2.ExchangeType {
	switch k {
	case reqInit:
		return ikev2.ExchangeIKESAInit
	case reqAuth:
		return ikev2.ExchangeIKEAuth
	case reqRekeyChild, reqRekeyIKE:
		return ikev2.ExchangeCreateChildSA
	}
	return ikev2.ExchangeInformational
}

// response handles the answer to our outstanding request, decrypted.
func (e *Engine) response(now time.Time, sa *ikeSA, from netip.AddrPort, natt bool, m *ikev2.Message) {
	r := sa.req
	if m.Header.Exchange != exchangeOf(r.kind) {
		e.drop(now, DropUnexpected, from, "response of another exchange")
		return
	}
	e.follow(sa, from, natt)
	switch r.kind {
	case reqAuth:
		e.authResponse(now, sa, from, m)
	case reqDeleteIKE:
		e.done(now, sa)
		e.remove(now, sa, "", false)
	case reqRekeyChild, reqRekeyIKE:
		if sa.state != stateEstablished {
			// Deleting meanwhile: the rekey is moot.
			e.releaseRequest(r)
			e.done(now, sa)
			return
		}
		if r.kind == reqRekeyChild {
			e.rekeyChildResponse(now, sa, r, m)
		} else {
			e.rekeyIKEResponse(now, sa, r, m)
		}
	default: // DPD, Child SA delete: the answer is all we wanted
		e.done(now, sa)
	}
}
