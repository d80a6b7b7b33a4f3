package capture

import (
	"encoding/binary"
	"net/netip"

	"github.com/dmvpn/dmvpn/gre"
)

// Points selects what a tap copies.
type Points uint8

const (
	// PointInner: packets read from and written to the TUN.
	PointInner Points = 1 << iota
	// PointOuter: every GRE packet sent or received (data and NHRP).
	PointOuter
	// PointControl: NHRP packets only, in their outer (GRE) form.
	PointControl
)

// MaxSnapLen is the largest (and default) snap length.
const MaxSnapLen = 65535

// Tap is one capture's attachment to the data plane. The forwarding loops
// call Inner and Outer for every packet at those points while the tap is
// attached; both are safe for concurrent use, never block and never
// allocate.
type Tap struct {
	points Points
	snap   int
	ring   *Ring
}

// NewTap returns a tap copying the packets at points, at most snap bytes
// of each (0 or more than MaxSnapLen: MaxSnapLen), into ring.
func NewTap(points Points, snap int, ring *Ring) *Tap {
	if snap <= 0 || snap > MaxSnapLen {
		snap = MaxSnapLen
	}
	return &Tap{points: points, snap: snap, ring: ring}
}

// Ring returns the tap's ring.
func (t *Tap) Ring() *Ring { return t.ring }

// Points returns what the tap copies.
func (t *Tap) Points() Points { return t.points }

// Inner offers an IP packet crossing the TUN: dir Out when read from it
// (the host sends it into the tunnel), In when written to it.
func (t *Tap) Inner(dir Dir, now int64, pkt []byte) {
	if t.points&PointInner == 0 {
		return
	}
	m := Meta{Time: now, Point: Inner, Dir: dir}
	t.ring.Put(&m, pkt, t.snap)
}

// Outer offers a GRE packet (from its GRE header on) sent to or received
// from peer on the socket bound to local; udp tells GRE-in-UDP from raw GRE.
func (t *Tap) Outer(dir Dir, now int64, udp bool, local, peer netip.AddrPort, pkt []byte) {
	if t.points&PointOuter == 0 && (t.points&PointControl == 0 || !IsNHRP(pkt)) {
		return
	}
	m := Meta{Time: now, Point: Outer, Dir: dir, UDP: udp, Local: local, Peer: peer}
	t.ring.Put(&m, pkt, t.snap)
}

// IsNHRP reports whether a GRE packet carries NHRP.
func IsNHRP(pkt []byte) bool {
	return len(pkt) >= 4 && binary.BigEndian.Uint16(pkt[2:4]) == gre.ProtoNHRP
}
