package ratelimit

import (
	"net/netip"
	"testing"
	"time"
)

func TestBucketBurstThenRefill(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := Rate{Packets: 3, Interval: time.Second}
	var b Bucket
	for i := range 3 {
		if !b.Take(t0, r) {
			t.Fatalf("take %d of the burst refused", i)
		}
	}
	if b.Take(t0, r) {
		t.Fatal("a fourth take at once allowed")
	}
	if b.Take(t0.Add(300*time.Millisecond), r) {
		t.Fatal("0.9 tokens made a packet")
	}
	if !b.Take(t0.Add(340*time.Millisecond), r) {
		t.Fatal("1.02 tokens refused")
	}
}

func TestPerSourceBoundedAndSeparate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewPerSource(Rate{Packets: 1, Interval: time.Hour})
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if !s.Allow(t0, a) || s.Allow(t0, a) || !s.Allow(t0, b) {
		t.Fatal("per-source buckets are not separate")
	}
	for i := range 3 * MaxSources {
		s.Allow(t0, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		if s.Len() > MaxSources {
			t.Fatalf("%d sources tracked, bound %d", s.Len(), MaxSources)
		}
	}
	var zero PerSource
	if !zero.Allow(t0, a) || !zero.Allow(t0, a) {
		t.Fatal("the zero PerSource limits")
	}
}
