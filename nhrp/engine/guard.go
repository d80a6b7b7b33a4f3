package engine

import (
	"container/heap"
	"net/netip"
	"time"
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
// Packets.
type Rate struct {
	Packets  int
	Interval time.Duration
}

func (r Rate) valid() bool { return r.Packets > 0 && r.Interval > 0 }

type bucket struct {
	tokens float64
	last   time.Time
}

// take refills b for now and takes one token if there is one.
func (b *bucket) take(now time.Time, r Rate) bool {
	if b.last.IsZero() {
		b.tokens, b.last = float64(r.Packets), now
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(r.Packets), b.tokens+d.Seconds()*float64(r.Packets)/r.Interval.Seconds())
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// maxSources bounds the per-source limiter table. When it is full it is
// cleared: every source starts again with a full bucket, which weakens the
// limit only for an attacker inventing source addresses faster than this
// table turns over (the bounded control queue and the cheap per-packet cost
// take over then).
const maxSources = 8192

// sourceLimiter is a per-NBMA-address token bucket.
type sourceLimiter struct {
	rate Rate
	m    map[netip.Addr]*bucket
}

func (s *sourceLimiter) allow(now time.Time, a netip.Addr) bool {
	if !s.rate.valid() {
		return true
	}
	b := s.m[a]
	if b == nil {
		if len(s.m) >= maxSources {
			clear(s.m)
		}
		b = &bucket{}
		s.m[a] = b
	}
	return b.take(now, s.rate)
}

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

type timer struct {
	at time.Time
	timerKey
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

type timers struct {
	h     timerHeap
	sched map[timerKey]time.Time
}

// schedule arms (kind, addr) at at unless it is armed earlier already.
func (t *timers) schedule(kind timerKind, addr netip.Addr, at time.Time) {
	k := timerKey{kind, addr}
	if cur, ok := t.sched[k]; ok && !at.Before(cur) {
		return
	}
	t.sched[k] = at
	heap.Push(&t.h, timer{at: at, timerKey: k})
}

// next returns the earliest live deadline, or zero.
func (t *timers) next() time.Time {
	for len(t.h) > 0 {
		top := t.h[0]
		if at, ok := t.sched[top.timerKey]; ok && at.Equal(top.at) {
			return top.at
		}
		heap.Pop(&t.h) // superseded by an earlier one, already fired
	}
	return time.Time{}
}

// due pops the next live timer due at now.
func (t *timers) due(now time.Time) (timerKey, bool) {
	for len(t.h) > 0 && !now.Before(t.h[0].at) {
		top := heap.Pop(&t.h).(timer)
		if at, ok := t.sched[top.timerKey]; ok && at.Equal(top.at) {
			delete(t.sched, top.timerKey)
			return top.timerKey, true
		}
	}
	return timerKey{}, false
}

func (t *timers) len() int { return len(t.h) }
