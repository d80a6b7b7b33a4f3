// Package capture is the data plane's packet capture (`dmvpn capture`): a
// tap the forwarding loops copy packets into, a bounded lock-free ring that
// carries the copies to one consumer without ever making a producer wait, a
// small filter language evaluated on the consumer's side, and the pcapng
// writer (Wireshark, tshark) that turns the copies into a capture file.
//
// The data plane holds its taps behind an atomic pointer: with no capture
// running it pays one atomic load per batch and nothing else; with one
// running, each packet at a tapped point is copied (up to the snap length)
// into preallocated memory, or counted as dropped when the ring is full.
// Nothing on the data path allocates, blocks, or evaluates a filter.
package capture

import (
	"net/netip"
	"sync/atomic"
)

// Point is where in the data plane a packet was seen.
type Point uint8

const (
	// Inner is the overlay side: packets read from or written to the TUN.
	Inner Point = iota
	// Outer is the underlay side: GRE packets (data and NHRP) as handed
	// to or received from the underlay socket.
	Outer
	numPoints
)

func (p Point) String() string {
	if p == Inner {
		return "inner"
	}
	return "outer"
}

// Dir is a packet's direction, as tcpdump on the interface would see it:
// Out is toward the tunnel (read from the TUN; sent to a peer), In is from
// it (received from a peer; written to the TUN).
type Dir uint8

const (
	In Dir = iota
	Out
)

func (d Dir) String() string {
	if d == In {
		return "in"
	}
	return "out"
}

// Meta describes one captured packet.
type Meta struct {
	Time  int64 // Unix nanoseconds
	Point Point
	Dir   Dir
	// UDP: the outer packet travelled as GRE-in-UDP (else raw GRE).
	UDP bool
	// Local and Peer are the NBMA endpoints of an Outer packet (the
	// socket's address, the peer's address and UDP port).
	Local, Peer netip.AddrPort
	// Len is the packet's length; the copy holds at most the snap length.
	Len int
}

// slot is one record of the ring: its place in the arena and its metadata.
// seq is the slot's sequence number + 1 once the producer has finished
// writing it, which is what the consumer waits for.
type slot struct {
	seq  atomic.Uint32
	off  uint32 // where the copy starts in the arena
	n    uint32 // bytes copied
	used uint32 // arena bytes the record took (with the arena's end it skipped)
	meta Meta
}

// Ring is a bounded multi-producer, single-consumer queue of packet copies:
// a fixed number of slots and a fixed byte arena, both allocated once.
// Producers reserve a slot and arena space with one compare-and-swap and
// copy outside any lock; when either is exhausted the packet is not copied
// and counted as dropped. A producer never waits for the consumer or for
// another producer.
type Ring struct {
	slots []slot
	arena []byte
	smask uint32
	amask uint32
	// head is where producers reserve: the next slot number in the high
	// 32 bits, the next arena byte (free-running) in the low 32. tail is
	// the same for what the consumer has released.
	head, tail atomic.Uint64
	dropped    [numPoints]atomic.Uint64
	copied     [numPoints]atomic.Uint64
	// waiting is set by a consumer about to sleep on wake.
	waiting atomic.Bool
	wake    chan struct{}
}

// Default ring size: 1,024 packets and 4 MiB of copies.
const (
	DefaultSlots = 1024
	DefaultBytes = 4 << 20
)

// NewRing returns a ring of at least slots records and bytes of arena (each
// rounded up to a power of two; the arena to at least 128 KiB, so that a
// 64 KiB packet always fits).
func NewRing(slots, bytes int) *Ring {
	s, b := pow2(max(slots, 2)), pow2(max(bytes, 128<<10))
	return &Ring{slots: make([]slot, s), arena: make([]byte, b), smask: uint32(s - 1), amask: uint32(b - 1),
		wake: make(chan struct{}, 1)}
}

func pow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// Put copies pkt (at most snap bytes of it) into the ring with its
// metadata, or counts it as dropped when the ring is full. It never blocks
// and never allocates.
func (r *Ring) Put(m *Meta, pkt []byte, snap int) bool {
	n := uint32(min(len(pkt), snap))
	size := uint32(len(r.arena))
	for {
		h, t := r.head.Load(), r.tail.Load()
		hs, hb := uint32(h>>32), uint32(h)
		ts, tb := uint32(t>>32), uint32(t)
		if hs-ts > r.smask { // all slots taken
			break
		}
		off, need := hb&r.amask, n
		if off+n > size { // does not fit before the arena's end: start over at 0
			need += size - off
			off = 0
		}
		if hb-tb+need > size {
			break
		}
		if !r.head.CompareAndSwap(h, uint64(hs+1)<<32|uint64(hb+need)) {
			continue // another producer got there first
		}
		s := &r.slots[hs&r.smask]
		s.off, s.n, s.used = off, n, need
		s.meta = *m
		s.meta.Len = len(pkt)
		copy(r.arena[off:off+n], pkt)
		s.seq.Store(hs + 1)
		r.copied[m.Point].Add(1)
		if r.waiting.Load() && r.waiting.CompareAndSwap(true, false) {
			select {
			case r.wake <- struct{}{}:
			default:
			}
		}
		return true
	}
	r.dropped[m.Point].Add(1)
	return false
}

// Next returns the oldest record, waiting until one is ready or done is
// closed (then ok is false). The data stays valid until Release. Only one
// goroutine may consume.
func (r *Ring) Next(done <-chan struct{}) (m *Meta, data []byte, ok bool) {
	for {
		if m, data, ok := r.peek(); ok {
			return m, data, true
		}
		r.waiting.Store(true)
		if m, data, ok := r.peek(); ok { // a producer may have missed the flag
			r.waiting.Store(false)
			return m, data, true
		}
		select {
		case <-r.wake:
		case <-done:
			r.waiting.Store(false)
			return nil, nil, false
		}
	}
}

// TryNext is Next without waiting.
func (r *Ring) TryNext() (m *Meta, data []byte, ok bool) { return r.peek() }

func (r *Ring) peek() (*Meta, []byte, bool) {
	ts := uint32(r.tail.Load() >> 32)
	s := &r.slots[ts&r.smask]
	if s.seq.Load() != ts+1 {
		return nil, nil, false
	}
	return &s.meta, r.arena[s.off : s.off+s.n], true
}

// Release frees the record Next returned.
func (r *Ring) Release() {
	t := r.tail.Load()
	ts, tb := uint32(t>>32), uint32(t)
	s := &r.slots[ts&r.smask]
	r.tail.Store(uint64(ts+1)<<32 | uint64(tb+s.used))
}

// Dropped returns how many packets at point p found the ring full.
func (r *Ring) Dropped(p Point) uint64 { return r.dropped[p].Load() }

// Copied returns how many packets at point p were copied into the ring.
func (r *Ring) Copied(p Point) uint64 { return r.copied[p].Load() }
