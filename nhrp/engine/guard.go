package engine

import (
	"net/netip"

	"github.com/dmvpn/dmvpn/internal/deadline"
	"github.com/dmvpn/dmvpn/internal/ratelimit"
)

// DropReason says why a received NHRP packet (or one we were about to send)
// was dropped. Every packet that fails a role rule or a bound is dropped and
// counted under exactly one reason; `show stats` lists them.
type DropReason uint8

const (
	// DropMalformed: the codec refused it.
	DropMalformed DropReason = iota
	// DropAuth: authentication missing or wrong.
	DropAuth
	// DropReplay: keyed authentication valid, but a sequence number seen
	// before or outside the clock window.
	DropReplay
	// DropRateLimited: over the per-source receive limit.
	DropRateLimited
	// DropWrongFamily: protocol type or address lengths that are not the
	// tunnel's.
	DropWrongFamily
	// DropNotServer: a registration (or a request only an NHS forwards)
	// sent to a node that is not an NHS.
	DropNotServer
	// DropNotFromNHS: a Traffic Indication, Registration Reply or Error
	// Indication that did not come from one of our NHSes.
	DropNotFromNHS
	// DropUnsolicited: a reply or Error Indication matching no request
	// we have outstanding (request IDs are random, so a blind forger
	// lands here).
	DropUnsolicited
	// DropWrongAnswer: a Resolution Reply that does not answer the
	// question asked (another destination, a prefix that does not cover
	// it or reaches beyond the route it refines, an owner off the tunnel,
	// or from somewhere the request could not have reached).
	DropWrongAnswer
	// DropNotOwner: a purge, withdrawal or move of a binding by someone
	// other than its registrant (or refuted by the registrant answering
	// a liveness probe).
	DropNotOwner
	// DropNotRegistered: a resolution request to forward from a station
	// that is not registered with us.
	DropNotRegistered
	// DropOffSubnet: a protocol address not usable on the tunnel subnet
	// (outside it, its network or broadcast address, ours, an NHS's).
	DropOffSubnet
	// DropNoCIE: a request without the CIE it needs.
	DropNoCIE
	// DropCacheFull: state that would not fit the cache's bounds.
	DropCacheFull
	// DropHopCount: hop count exhausted.
	DropHopCount
	// DropBusy: too many resolutions or purge probes in flight.
	DropBusy
	// DropSendLimited: an outgoing packet over max-send.
	DropSendLimited
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropMalformed: "malformed", DropAuth: "auth", DropReplay: "replay", DropRateLimited: "rate_limited",
	DropWrongFamily: "wrong_family", DropNotServer: "not_server", DropNotFromNHS: "not_from_nhs",
	DropUnsolicited: "unsolicited", DropWrongAnswer: "wrong_answer", DropNotOwner: "not_owner",
	DropNotRegistered: "not_registered", DropOffSubnet: "off_subnet", DropNoCIE: "no_cie",
	DropCacheFull: "cache_full", DropHopCount: "hop_count", DropBusy: "busy", DropSendLimited: "send_limited",
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
// Packets (Config.MaxSend, Config.MaxReceive).
type Rate = ratelimit.Rate

// bucket is one token bucket (internal/ratelimit).
type bucket = ratelimit.Bucket

// maxSources bounds the engine's per-source tables (the receive limiter's,
// the Error Indication limiter's).
const maxSources = ratelimit.MaxSources

// Timers. The engine keeps one heap of deadlines instead of walking its
// state on every event; at most one live timer per (kind, address): a
// later deadline for a key that already has an earlier one is not pushed
// (the earlier one, when it fires, looks at the state and reschedules),
// so the heap stays proportional to the state it serves.
type timerKind uint8

const (
	timerResolve         timerKind = iota + 1 // retry or fail a pending resolution
	timerShortcutProbe                        // has a used shortcut heard its peer?
	timerShortcutRefresh                      // refresh a used shortcut before it expires
	timerPurgeProbe                           // did the registrant answer its liveness probe?
)

type timerKey struct {
	kind timerKind
	addr netip.Addr
}

// timers is the engine's deadline table (internal/deadline); Schedule
// keeps the earlier of two deadlines for one key.
type timers = deadline.Timers[timerKey]
