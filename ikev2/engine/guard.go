package engine

import (
	"container/heap"
	"net/netip"
	"time"
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

// Rate is a token bucket's shape: Packets per Interval, bursting to Packets.
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

// maxSources bounds the per-source limiter. When it is full it is cleared:
// every source starts again with a full bucket, which weakens the limit only
// for an attacker inventing source addresses faster than the table turns
// over; the half-open bound and cookies take over then.
const maxSources = 8192

// sourceLimiter is a token bucket per source address (not port: one host
// inventing ports gets no more than one host).
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
)

type timerKey struct {
	kind timerKind
	spi  uint64 // our SPI of the SA
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

// set arms k at at, replacing whatever it was armed at (the stale heap entry
// is skipped later).
func (t *timers) set(k timerKey, at time.Time) {
	if cur, ok := t.sched[k]; ok && cur.Equal(at) {
		return
	}
	t.sched[k] = at
	heap.Push(&t.h, timer{at: at, timerKey: k})
	// Stale entries are dropped as they surface; if they pile up (a timer
	// re-armed often without firing), rebuild from the live set.
	if len(t.h) > 4*len(t.sched)+64 {
		t.h = t.h[:0]
		for k, at := range t.sched {
			t.h = append(t.h, timer{at: at, timerKey: k})
		}
		heap.Init(&t.h)
	}
}

func (t *timers) cancel(k timerKey) { delete(t.sched, k) }

// next returns the earliest live deadline, or zero.
func (t *timers) next() time.Time {
	for len(t.h) > 0 {
		top := t.h[0]
		if at, ok := t.sched[top.timerKey]; ok && at.Equal(top.at) {
			return top.at
		}
		heap.Pop(&t.h)
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
