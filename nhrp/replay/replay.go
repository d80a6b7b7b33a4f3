// Package replay is the replay filter for NHRP's keyed authentication
// (nhrp.HMACKeys): it decides whether a sequence number vouched for by a
// valid MAC may be acted on.
//
// A sequence number is the signer's clock in Unix nanoseconds, strictly
// increasing per signer (Sequencer makes them). Filter.Check accepts one only
// if
//
//   - it is within ±MaxSkew of the receiver's clock (passed in: the filter is
//     sans-IO and never reads the time itself), and
//   - it has not been accepted from that signer before: per signer the filter
//     keeps the Window highest sequence numbers it accepted, and the largest
//     one that dropped out of that window (the floor). A number above the
//     floor and not in the window has never been accepted, so it is, and
//     mild reordering (fewer than Window later packets overtaking it) is
//     fine; a number in the window is a replay; one at or below the floor is
//     refused because the filter can no longer tell.
//
// The table of signers is bounded (MaxSigners); when it is full the signer
// updated least recently is forgotten. Each check costs O(1) table work (a
// hash lookup and a move to the front of a list) plus a binary search in, and
// for reordered packets a shift of, that signer's window. Nothing allocates
// after New.
//
// What this protects against, with the MAC: forgery and alteration of NHRP
// packets by anyone without the key, and their replay: to the same receiver
// for as long as it remembers the signer, and to any receiver once the
// packet is more than MaxSkew old. What it does not:
//
//   - A receiver that restarted, or forgot a signer (table full), accepts a
//     replay of that signer's packets captured within the last MaxSkew, once
//     each. Size MaxSigners above the number of peers and keep MaxSkew small.
//   - Authentication is hop by hop and names no receiver, so a packet
//     captured on its way to one node can be replayed to another node
//     sharing the key, within MaxSkew, if that node has not accepted that
//     number from the signer already and it lies above that node's floor.
//     The content is still what the signer said; the engine's own checks
//     (destination address, request IDs) limit what such a replay does.
//   - A packet reflected back to its own signer: the engine must drop
//     packets whose signer is one of its own addresses.
//   - Nodes holding the key: one can sign anything, including another
//     member's signer address, protocol and NBMA addresses. IPsec identities
//     close that later.
//   - Clocks: signers and receivers must agree within MaxSkew (NTP). A
//     signer whose clock steps back is refused until it passes the highest
//     number a receiver accepted from it (at most about 2×MaxSkew).
package replay

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"slices"
	"time"
)

// Defaults for the zero fields of Config.
const (
	DefaultMaxSkew    = 60 * time.Second
	DefaultMaxSigners = 4096
	DefaultWindow     = 64

	// MaxMaxSigners, MaxWindow and MaxNumbers (MaxSigners × Window) bound
	// the memory New allocates, about MaxSigners × (8×Window + 64) bytes:
	// 2.3 MiB with the defaults, at most about 200 MiB.
	MaxMaxSigners = 1 << 20
	MaxWindow     = 1024
	MaxNumbers    = 1 << 24
)

// Config sizes a Filter; zero fields take the defaults.
type Config struct {
	// MaxSkew is how far a sequence number may be from the receiver's
	// clock, either way.
	MaxSkew time.Duration
	// MaxSigners bounds the table of signers.
	MaxSigners int
	// Window is how many of the highest accepted sequence numbers are kept
	// per signer, i.e. how much reordering is accepted.
	Window int
}

// Error is why Check refused a sequence number; the values are distinct, can
// be compared with == or errors.Is, index a counter array (ErrorCount entries,
// 0 unused), and returning one allocates nothing.
type Error uint8

// Reasons for refusing a sequence number.
const (
	// ErrTooOld: more than MaxSkew behind the receiver's clock.
	ErrTooOld Error = iota + 1
	// ErrTooNew: more than MaxSkew ahead of the receiver's clock.
	ErrTooNew
	// ErrReplay: already accepted from this signer.
	ErrReplay
	// ErrBelowWindow: at or below the signer's floor (Window higher numbers
	// were accepted since): maybe a replay, maybe a packet overtaken by too
	// many others; refused either way.
	ErrBelowWindow

	// ErrorCount is one more than the largest Error.
	ErrorCount = int(ErrBelowWindow) + 1
)

func (e Error) Error() string {
	switch e {
	case ErrTooOld:
		return "replay: sequence number too old for the clock skew allowed"
	case ErrTooNew:
		return "replay: sequence number too far in the future for the clock skew allowed"
	case ErrReplay:
		return "replay: sequence number already seen"
	case ErrBelowWindow:
		return "replay: sequence number below the replay window"
	}
	return fmt.Sprintf("replay: error %d", uint8(e))
}

// ErrConfig is wrapped by the errors New returns.
var ErrConfig = errors.New("replay: bad configuration")

// Filter is a replay filter: a bounded table of signers, each with its
// window. It is not safe for concurrent use.
type Filter struct {
	maxSkew int64
	window  int

	entries []entry  // len = signers in use, cap = MaxSigners
	seqs    []uint64 // entry i's window is seqs[i*window : (i+1)*window]
	// slots is an open-addressing hash index (linear probing, load ≤ 1/2):
	// entry index + 1, 0 for empty.
	slots []int32
	mask  uint64
	seed  maphash.Seed
	// LRU list through entries: head updated most recently, tail least.
	head, tail int32
}

type entry struct {
	addr netip.Addr
	hash uint64
	// floor is the largest sequence number that dropped out of the window
	// (0 at first): nothing at or below it is accepted.
	floor uint64
	n     int32 // sequence numbers in the window, sorted ascending
	prev  int32
	next  int32
}

// New returns an empty filter sized by cfg.
func New(cfg Config) (*Filter, error) {
	if cfg.MaxSkew == 0 {
		cfg.MaxSkew = DefaultMaxSkew
	}
	if cfg.MaxSigners == 0 {
		cfg.MaxSigners = DefaultMaxSigners
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MaxSkew < 0 {
		return nil, fmt.Errorf("%w: max skew %v is negative", ErrConfig, cfg.MaxSkew)
	}
	if cfg.MaxSigners < 1 || cfg.MaxSigners > MaxMaxSigners {
		return nil, fmt.Errorf("%w: max signers %d outside 1..%d", ErrConfig, cfg.MaxSigners, MaxMaxSigners)
	}
	if cfg.Window < 1 || cfg.Window > MaxWindow {
		return nil, fmt.Errorf("%w: window %d outside 1..%d", ErrConfig, cfg.Window, MaxWindow)
	}
	if cfg.MaxSigners*cfg.Window > MaxNumbers {
		return nil, fmt.Errorf("%w: max signers %d × window %d is over %d sequence numbers", ErrConfig, cfg.MaxSigners, cfg.Window, MaxNumbers)
	}
	nslots := 2
	for nslots < 2*cfg.MaxSigners {
		nslots *= 2
	}
	return &Filter{
		maxSkew: int64(cfg.MaxSkew),
		window:  cfg.Window,
		entries: make([]entry, 0, cfg.MaxSigners),
		seqs:    make([]uint64, cfg.MaxSigners*cfg.Window),
		slots:   make([]int32, nslots),
		mask:    uint64(nslots - 1),
		seed:    maphash.MakeSeed(),
		head:    -1,
		tail:    -1,
	}, nil
}

// Len is the number of signers the filter remembers.
func (f *Filter) Len() int { return len(f.entries) }

// Check decides whether seq, vouched for by signer's valid MAC, is fresh at
// the receiver's time now, and records it when it is. Call it only after the
// MAC verified, so that only key holders take room in the table. now must be
// a real time (between the years 1678 and 2262, as time.Time.UnixNano needs).
func (f *Filter) Check(signer netip.Addr, seq uint64, now time.Time) error {
	ns := now.UnixNano()
	if seq > math.MaxInt64 || int64(seq) > satAdd(ns, f.maxSkew) {
		return ErrTooNew
	}
	if int64(seq) < satAdd(ns, -f.maxSkew) {
		return ErrTooOld
	}
	h := f.hash(signer)
	i := f.lookup(signer, h)
	if i < 0 {
		i = f.add(signer, h)
		f.seqs[int(i)*f.window] = seq
		f.entries[i].n = 1
		f.touch(i)
		return nil
	}
	e := &f.entries[i]
	w := f.seqs[int(i)*f.window : int(i+1)*f.window]
	n := int(e.n)
	switch {
	case seq > w[n-1]: // in order: the common case
		if n < len(w) {
			w[n] = seq
			e.n++
		} else {
			e.floor = w[0]
			copy(w, w[1:])
			w[n-1] = seq
		}
	case seq <= e.floor:
		return ErrBelowWindow
	default:
		k, found := slices.BinarySearch(w[:n], seq)
		if found {
			return ErrReplay
		}
		switch {
		case n < len(w):
			copy(w[k+1:n+1], w[k:n])
			w[k] = seq
			e.n++
		case k == 0:
			// Above the floor, so never seen, but below the whole
			// window: accepted, and it becomes the floor.
			e.floor = seq
		default:
			e.floor = w[0]
			copy(w[:k-1], w[1:k])
			w[k-1] = seq
		}
	}
	f.touch(i)
	return nil
}

func satAdd(a, b int64) int64 {
	s := a + b
	if b > 0 && s < a {
		return math.MaxInt64
	}
	if b < 0 && s > a {
		return math.MinInt64
	}
	return s
}

func (f *Filter) hash(a netip.Addr) uint64 {
	b := a.As16()
	return maphash.Bytes(f.seed, b[:]) // As16 folds 4-in-6 onto IPv4; lookup's == tells them apart
}

func (f *Filter) lookup(a netip.Addr, h uint64) int32 {
	for s := h & f.mask; ; s = (s + 1) & f.mask {
		v := f.slots[s]
		if v == 0 {
			return -1
		}
		if e := &f.entries[v-1]; e.hash == h && e.addr == a {
			return v - 1
		}
	}
}

// add takes an entry for a new signer: a fresh one while there is room,
// else the least recently updated one, which is forgotten.
func (f *Filter) add(a netip.Addr, h uint64) int32 {
	var i int32
	if len(f.entries) < cap(f.entries) {
		i = int32(len(f.entries))
		f.entries = f.entries[:i+1]
	} else {
		i = f.tail
		f.unindex(i)
		f.unlink(i)
	}
	f.entries[i] = entry{addr: a, hash: h, prev: -1, next: -1}
	s := h & f.mask
	for f.slots[s] != 0 {
		s = (s + 1) & f.mask
	}
	f.slots[s] = i + 1
	return i
}

// unindex removes entry i from the hash index, shifting back the entries
// after it in its probe run (no tombstones, so lookups stay short).
func (f *Filter) unindex(i int32) {
	s := f.entries[i].hash & f.mask
	for f.slots[s] != i+1 {
		s = (s + 1) & f.mask
	}
	for {
		f.slots[s] = 0
		j := s
		for {
			j = (j + 1) & f.mask
			v := f.slots[j]
			if v == 0 {
				return
			}
			home := f.entries[v-1].hash & f.mask
			// The entry at j may move to s unless its home lies
			// cyclically in (s, j].
			if s <= j {
				if s < home && home <= j {
					continue
				}
			} else if s < home || home <= j {
				continue
			}
			f.slots[s] = v
			s = j
			break
		}
	}
}

func (f *Filter) unlink(i int32) {
	e := &f.entries[i]
	if e.prev >= 0 {
		f.entries[e.prev].next = e.next
	} else {
		f.head = e.next
	}
	if e.next >= 0 {
		f.entries[e.next].prev = e.prev
	} else {
		f.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

// touch makes entry i the most recently updated.
func (f *Filter) touch(i int32) {
	if f.head == i {
		return
	}
	e := &f.entries[i]
	if e.prev >= 0 || e.next >= 0 || f.tail == i {
		f.unlink(i)
	}
	e.next = f.head
	e.prev = -1
	if f.head >= 0 {
		f.entries[f.head].prev = i
	}
	f.head = i
	if f.tail < 0 {
		f.tail = i
	}
}

// Sequencer hands out a signer's sequence numbers: its clock in Unix
// nanoseconds, bumped by one when the clock has not moved on (or went back)
// since the last number, so they strictly increase. It is not safe for
// concurrent use.
type Sequencer struct{ last uint64 }

// Next returns the sequence number for a packet signed at now.
func (s *Sequencer) Next(now time.Time) uint64 {
	v := uint64(max(now.UnixNano(), 0))
	if v <= s.last {
		v = s.last + 1
	}
	s.last = v
	return v
}
