// Package ratelimit is the token buckets of the sans-IO engines
// (nhrp/engine, ikev2/engine): a bucket per purpose, driven by the time the
// caller passes in, and a bounded table of buckets per source address.
package ratelimit

import (
	"net/netip"
	"time"
)

// Rate is a bucket's shape: Packets per Interval, bursting to Packets.
type Rate struct {
	Packets  int
	Interval time.Duration
}

// Valid reports whether r limits anything (both fields positive).
func (r Rate) Valid() bool { return r.Packets > 0 && r.Interval > 0 }

// Bucket is one token bucket; the zero value starts full at its first Take.
type Bucket struct {
	tokens float64
	last   time.Time
}

// Take refills b for now at rate r and takes one token if there is one.
func (b *Bucket) Take(now time.Time, r Rate) bool {
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

// MaxSources bounds a PerSource table. When it is full it is cleared: every
// source starts again with a full bucket, which weakens the limit only for
// an attacker inventing source addresses faster than the table turns over
// (the engines' other bounds take over then).
const MaxSources = 8192

// PerSource is a bucket per source address (not port: a host inventing
// ports gets no more than one host). The zero value allows everything.
type PerSource struct {
	rate Rate
	m    map[netip.Addr]*Bucket
}

// NewPerSource returns a table limiting each source to r.
func NewPerSource(r Rate) PerSource { return PerSource{rate: r, m: make(map[netip.Addr]*Bucket)} }

// Allow takes a token from a's bucket.
func (s *PerSource) Allow(now time.Time, a netip.Addr) bool {
	if !s.rate.Valid() {
		return true
	}
	b := s.m[a]
	if b == nil {
		if len(s.m) >= MaxSources {
			clear(s.m)
		}
		b = &Bucket{}
		s.m[a] = b
	}
	return b.Take(now, s.rate)
}

// Len is the number of sources tracked.
func (s *PerSource) Len() int { return len(s.m) }
