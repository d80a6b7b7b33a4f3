// Package replay is the anti-replay window of an inbound IPsec SA (RFC 4303
// §3.4.3 and Appendix A, with RFC 6479's bitmap of blocks): it decides
// whether an ESP (or AH) sequence number may be accepted, and with extended
// sequence numbers (ESN) it infers the 32 high-order bits that are not on the
// wire.
//
// # The two steps
//
// RFC 4303 §3.4.3 splits the check in two, and so does Window:
//
//   - Check, before the ICV is verified: is the number new (above the
//     window) or inside the window and not yet seen? It changes nothing, so
//     a forged packet, which fails the ICV afterwards, leaves no trace; and
//     it is cheap, so a flood of replays is refused before any cryptography.
//     With ESN it returns the full 64-bit number, which the ICV covers.
//   - Accept, after the ICV verified: mark the number seen and, if it is
//     above the window, slide the window up to it. Accept checks again, so a
//     number accepted by someone else between Check and Accept is refused.
//
// # The bitmap (RFC 6479)
//
// The window remembers the Size highest sequence numbers below and including
// the highest accepted one (Top): a number n is "in the window" when
// Top-Size < n ≤ Top, "too old" below that, and "new" above Top. The bits
// live in a ring of 64-bit blocks; bit n%64 of block (n/64) mod blocks says
// whether n was accepted. The ring holds 2×Size bits (a power of two number
// of blocks, so indexing is a mask), more than the Size the window needs:
// sliding the window up clears whole blocks ahead of Top instead of shifting
// a bitmap, so every Check is O(1) and every Accept is O(1) except that a
// jump of k blocks clears min(k, blocks) blocks (at most 32 for the default
// 1,024-packet window) — a constant bound, independent of traffic.
//
// # ESN (RFC 4303 Appendix A2)
//
// Only the low 32 bits Seql of a 64-bit number travel in the packet. With
// Top = Th‖Tl and the window's bottom Bl = Tl−Size+1 (mod 2³²), the high
// half Seqh is inferred as in Appendix A2.2:
//
//	Case A, Tl ≥ Size−1 (the window lies in one 2³² subspace):
//	    Seql ≥ Bl → Seqh = Th     (in the window, or new in this subspace)
//	    Seql < Bl → Seqh = Th+1   (new, in the next subspace)
//	Case B, Tl < Size−1 (the window straddles a subspace boundary):
//	    Seql ≥ Bl → Seqh = Th−1   (in the window's part below the boundary)
//	    Seql < Bl → Seqh = Th
//
// so a number is always placed in the 2³² numbers starting at the window's
// bottom. A guess that is wrong (more than 2³²−Size packets lost) fails the
// ICV, since the ICV covers the high bits, and the packet is dropped; the
// resynchronisation of Appendix A3 is not implemented. It follows that with
// ESN a number below the window cannot be told from the one 2³² above it: it
// is read as the latter and refused by the ICV, not by the window
// (ErrTooOld only comes from the very ends of the 64-bit space). Without ESN
// the number is the 32-bit wire value and the window works the same way.
//
// Sequence number 0 is never sent (the first packet of an SA carries 1), so
// it is refused as too old. A Window is not safe for concurrent use: the
// owner (esp.SA) holds a lock around Check, the ICV check and Accept.
package replay

import (
	"errors"
	"fmt"
	"math/bits"
)

// Window sizes.
const (
	// DefaultSize is the window used when New is given 0: 1,024 packets,
	// well above RFC 4303's default of 64, since a multi-core or multi-queue
	// sender reorders more than that at 10 Gb/s.
	DefaultSize = 1024
	// MinSize and MaxSize bound the window; the size is a power of two.
	MinSize = 64
	MaxSize = 1 << 20
)

// Error is why a sequence number is refused. The values are distinct,
// compare with == or errors.Is, and returning one allocates nothing.
type Error uint8

// Reasons for refusing a sequence number.
const (
	// ErrReplayed: the number is in the window and was accepted before.
	ErrReplayed Error = iota + 1
	// ErrTooOld: the number is below the window (or 0, or, with ESN, its
	// inferred high half would wrap below 0 or above 2³²−1).
	ErrTooOld
)

func (e Error) Error() string {
	switch e {
	case ErrReplayed:
		return "replay: sequence number already received"
	case ErrTooOld:
		return "replay: sequence number below the replay window"
	}
	return fmt.Sprintf("replay: error %d", uint8(e))
}

// ErrConfig is wrapped by the errors New returns.
var ErrConfig = errors.New("replay: bad window configuration")

// Window is the anti-replay state of one inbound SA.
type Window struct {
	size   uint64   // window size W, a power of two
	mask   uint64   // len(blocks)-1
	blocks []uint64 // the ring: 2W bits
	top    uint64   // highest accepted sequence number, 0 before the first
	esn    bool
}

// New returns a window of size packets (0 means DefaultSize; otherwise a
// power of two in [MinSize, MaxSize]) for an SA with or without extended
// sequence numbers.
func New(size int, esn bool) (*Window, error) {
	if size == 0 {
		size = DefaultSize
	}
	if size < MinSize || size > MaxSize || bits.OnesCount(uint(size)) != 1 {
		return nil, fmt.Errorf("%w: size %d is not a power of two in [%d, %d]", ErrConfig, size, MinSize, MaxSize)
	}
	n := 2 * size / 64
	return &Window{
		size:   uint64(size),
		mask:   uint64(n - 1),
		blocks: make([]uint64, n),
		esn:    esn,
	}, nil
}

// Size is the number of sequence numbers the window tracks below Top.
func (w *Window) Size() int { return int(w.size) }

// ESN reports whether the window infers 64-bit sequence numbers.
func (w *Window) ESN() bool { return w.esn }

// Top is the highest sequence number accepted, 0 before the first.
func (w *Window) Top() uint64 { return w.top }

// Infer returns the full sequence number that the low 32 bits seql stand
// for: seql itself without ESN, and with ESN the number whose low half is
// seql in the 2³² numbers starting at the window's bottom (RFC 4303 A2.2).
// ok is false when that number would lie outside [0, 2⁶⁴): the high half
// would wrap.
func (w *Window) Infer(seql uint32) (seq uint64, ok bool) {
	if !w.esn {
		return uint64(seql), true
	}
	th, tl := uint32(w.top>>32), uint32(w.top)
	ws := uint32(w.size)
	bl := tl - ws + 1 // mod 2³²
	if tl >= ws-1 {
		// Case A: the window is within one subspace.
		if seql >= bl {
			return uint64(th)<<32 | uint64(seql), true
		}
		if th == ^uint32(0) {
			return 0, false
		}
		return uint64(th+1)<<32 | uint64(seql), true
	}
	// Case B: the window spans two subspaces.
	if seql >= bl {
		if th == 0 {
			return 0, false // below sequence number 0
		}
		return uint64(th-1)<<32 | uint64(seql), true
	}
	return uint64(th)<<32 | uint64(seql), true
}

// Check decides, before the ICV is verified, whether a packet whose header
// carries seql may be processed: it returns the full sequence number (the
// ICV covers its high half with ESN) or ErrReplayed or ErrTooOld. It
// changes nothing.
func (w *Window) Check(seql uint32) (uint64, error) {
	seq, ok := w.Infer(seql)
	if !ok {
		return 0, ErrTooOld
	}
	return seq, w.check(seq)
}

func (w *Window) check(seq uint64) error {
	if seq == 0 {
		return ErrTooOld
	}
	if seq > w.top {
		return nil
	}
	if w.top-seq >= w.size {
		return ErrTooOld
	}
	if w.blocks[(seq>>6)&w.mask]&(1<<(seq&63)) != 0 {
		return ErrReplayed
	}
	return nil
}

// Accept records seq (as returned by Check) once the packet's ICV verified:
// the number is marked seen and, when it is above Top, the window slides up
// to it. It refuses, changing nothing, what Check would refuse now.
func (w *Window) Accept(seq uint64) error {
	if err := w.check(seq); err != nil {
		return err
	}
	if seq > w.top {
		cur, next := w.top>>6, seq>>6
		n := next - cur
		if n > w.mask+1 {
			n = w.mask + 1
		}
		// Blocks cur+1 … next come into the window: they still hold bits of
		// numbers 2W (or more) below; clear them.
		for i := uint64(1); i <= n; i++ {
			w.blocks[(cur+i)&w.mask] = 0
		}
		w.top = seq
	}
	w.blocks[(seq>>6)&w.mask] |= 1 << (seq & 63)
	return nil
}
