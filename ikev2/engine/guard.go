package engine

import (
	"github.com/dmvpn/dmvpn/internal/deadline"
	"github.com/dmvpn/dmvpn/internal/ratelimit"
)

// DropReason says why a received datagram was dropped (or a request not
// accepted). Every datagram that is not processed is counted under exactly
// one reason; Stats.Dropped is indexed by it.
type DropReason uint8

const (
	// DropMalformed: the codec refused it, or a payload the exchange needs
	// is missing or unusable.
	DropMalformed DropReason = iota
	// DropNotIKE: a datagram on UDP 4500 that is not IKE (ESP, keepalive).
	DropNotIKE
	// DropTooBig: longer than MaxMessage.
	DropTooBig
	// DropRateLimited: an IKE_SA_INIT over the per-source rate.
	DropRateLimited
	// DropHalfOpenFull: an IKE_SA_INIT while MaxHalfOpen SAs are half open.
	DropHalfOpenFull
	// DropTableFull: an IKE_SA_INIT while MaxIKESAs SAs exist.
	DropTableFull
	// DropPeerLimit: an IKE_SA_INIT from an endpoint that already has
	// maxSAsPerPeer SAs (established or being set up).
	DropPeerLimit
	// DropUnknownSPI: no IKE SA of ours has the message's SPIs (or the
	// I flag names the wrong side).
	DropUnknownSPI
	// DropWrongSource: an IKE_SA_INIT response from an address we did not
	// send the request to.
	DropWrongSource
	// DropUnexpected: a message the SA's state has no use for (an
	// IKE_AUTH on an established SA, a response nobody asked for, ...).
	DropUnexpected
	// DropOutOfWindow: a request or response whose message ID is neither
	// the expected one nor (requests) the last one answered.
	DropOutOfWindow
	// DropIntegrity: the SK payload did not verify (forged, corrupted or
	// keyed otherwise), or is missing where one is required.
	DropIntegrity
	// DropBadCookie: an IKE_SA_INIT with a COOKIE that does not verify
	// (answered with a fresh cookie, no state kept).
	DropBadCookie
	// DropBadKE: a KE payload that fails RFC 6989's checks.
	DropBadKE
	// DropCollision: an IKE_SA_INIT from a peer we are initiating to,
	// refused by the simultaneous-initiation rule (see Engine).
	DropCollision
	// DropBadProposal: a response whose SA payload is not one of the
	// proposals we offered.
	DropBadProposal
	// DropDuplicateSPI: an IKE_SA_INIT reusing the SPI of a half-open SA
	// from the same endpoint with different content.
	DropDuplicateSPI
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropMalformed: "malformed", DropNotIKE: "not_ike", DropTooBig: "too_big", DropRateLimited: "rate_limited",
	DropHalfOpenFull: "half_open_full", DropTableFull: "table_full", DropPeerLimit: "peer_limit",
	DropUnknownSPI: "unknown_spi", DropWrongSource: "wrong_source", DropUnexpected: "unexpected",
	DropOutOfWindow: "out_of_window", DropIntegrity: "integrity", DropBadCookie: "bad_cookie",
	DropBadKE: "bad_ke", DropCollision: "collision", DropBadProposal: "bad_proposal",
	DropDuplicateSPI: "duplicate_spi",
}

func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// DropReasons lists every reason, in order.
func DropReasons() []DropReason {
	out := make([]DropReason, numDropReasons)
	for i := range out {
		out[i] = DropReason(i)
	}
	return out
}

// Rate is a token bucket's shape: Packets per Interval, bursting to
// Packets (Config.InitRate).
type Rate = ratelimit.Rate

// Timers: one heap of deadlines, at most one live timer per (kind, SA). A
// later deadline for a key armed earlier is not pushed: the earlier one,
// when it fires, looks at the SA and re-arms. Cancelling is forgetting the
// key; its heap entries are skipped when they surface. So the heap stays
// proportional to the SAs it serves.
type timerKind uint8

const (
	timerRetransmit timerKind = iota + 1 // resend our outstanding request, or give up
	timerHalfOpen                        // a responder's half-open SA waited too long for IKE_AUTH
	timerDPD                             // is the peer idle long enough for a liveness check?
	timerIKERekey                        // the IKE SA's rekey time (or a retry of its rekey)
	timerIKEExpire                       // the IKE SA's hard lifetime
	timerLinger                          // a rekeyed IKE SA waited long enough for the peer's Delete
	// Child SA timers: spi is the Child SA's inbound SPI.
	timerChildRekey    // the Child SA's rekey time (or a retry)
	timerChildExpire   // its hard lifetime
	timerChildFallback // a standby SA waited long enough for the old one's Delete; a redundant one for its own
)

type timerKey struct {
	kind timerKind
	spi  uint64 // our SPI of the IKE SA; a Child SA's inbound SPI
}

// timers is the engine's deadline table (internal/deadline).
type timers = deadline.Timers[timerKey]
