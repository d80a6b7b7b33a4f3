package ipsec

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/underlay"
)

// readHeadroom is how far before the caller's offset ESP is read, so that
// with an AEAD transform (16 octets of ESP header) the GRE packet opens
// exactly where the caller wanted it and nothing is moved.
const readHeadroom = esp.HeaderFixedLen + 8

// ReadBatch implements underlay.Conn: it reads ESP (and, on UDP 4500, IKE
// and keepalives) and returns only the GRE datagrams that opened, each with
// Peer set to the endpoint the data plane knows the SA's peer by. Whatever
// does not open is counted by reason and left out; IKE goes to OnIKE.
func (f *Face) ReadBatch(ds []underlay.Datagram) (int, error) {
	l := f.l
	if cap(f.want) < len(ds) {
		f.want = make([]int, len(ds))
	}
	want := f.want[:len(ds)]
	if f.live == nil {
		f.live = make([]uint32, 0, 16)
		f.wake = make([]*childSA, 0, 16)
	}
	for i := range ds {
		want[i] = ds[i].Off
	}
	for {
		for i := range ds {
			ds[i].Off, ds[i].Len = max(want[i]-readHeadroom, 0), 0
		}
		n, err := f.conn.ReadBatch(ds)
		if err != nil {
			return 0, err
		}
		now := l.now().UnixNano()
		f.live, f.wake = f.live[:0], f.wake[:0]
		// Find each datagram's SA under the lock; open them (spread over
		// the crypto workers) without it; then keep, in their order, the
		// ones that opened.
		f.ops, f.idx = f.ops[:0], f.idx[:0]
		l.db.mu.RLock()
		for i := 0; i < n; i++ {
			if sa := f.inboundSA(&ds[i]); sa != nil {
				f.ops = append(f.ops, op{sa: sa, pkt: ds[i].Payload()})
				f.idx = append(f.idx, i)
			}
		}
		l.db.mu.RUnlock()
		l.runAll(&f.crypto, f.ops)
		kept := 0
		for k := range f.ops {
			i := f.idx[k]
			if !f.opened(&ds[i], want[i], &f.ops[k], now) {
				continue
			}
			if kept != i {
				ds[kept], ds[i] = ds[i], ds[kept]
				want[kept], want[i] = want[i], want[kept]
			}
			kept++
		}
		clear(f.ops)
		l.c.opened.Add(uint64(kept))
		// Outside the lock: OnTraffic takes the IKE engine's, whose
		// OnEvent installs SAs here (the other lock order).
		if l.cfg.OnTraffic != nil {
			for _, spi := range f.live {
				l.cfg.OnTraffic(spi)
			}
		}
		for i, sa := range f.wake {
			if sa.auto.Load() {
				l.activate(sa)
			}
			f.wake[i] = nil
		}
		f.wake = f.wake[:0]
		if kept > 0 {
			return kept, nil
		}
	}
}

// inboundSA classifies one datagram and finds the SA its SPI names
// (sadb.mu read-held); nil: dropped and counted, or consumed (IKE).
func (f *Face) inboundSA(d *underlay.Datagram) *childSA {
	l := f.l
	pkt := d.Payload()
	if f.t == nbma.TransportUDP {
		switch esp.ClassifyUDP(pkt) {
		case esp.UDPIKE:
			l.c.ikeRx.Add(1)
			if l.cfg.OnIKE != nil {
				l.cfg.OnIKE(d.Peer, pkt)
			}
			return nil
		case esp.UDPKeepalive:
			l.c.keepalivesRx.Add(1)
			return nil
		case esp.UDPInvalid:
			l.c.malformed.Add(1)
			return nil
		}
	}
	spi, _, err := esp.ParseHeader(pkt)
	if err != nil {
		l.c.malformed.Add(1)
		return nil
	}
	sa := l.db.inbound(spi)
	if sa == nil {
		l.c.unknownSPI.Add(1)
		return nil
	}
	// An SA is bound to its peer's address and to its encapsulation:
	// the same SPI from elsewhere, or raw where the SA runs over UDP, is
	// not this SA's traffic.
	if d.Peer.Addr() != sa.key.Addr() || sa.desc.UDP != (f.t == nbma.TransportUDP) {
		l.c.wrongSource.Add(1)
		return nil
	}
	return sa
}

// opened finishes one datagram after its Open (o): counts a failure, or
// strips a tunnel-mode inner header, puts the GRE packet where the caller
// wanted it and names the peer. False: dropped.
func (f *Face) opened(d *underlay.Datagram, want int, o *op, now int64) bool {
	l, sa := f.l, o.sa
	if o.err != nil {
		switch {
		case errors.Is(o.err, esp.ErrReplayed), errors.Is(o.err, esp.ErrTooOld):
			sa.replayDrops.Add(1)
			l.c.replayed.Add(1)
		case errors.Is(o.err, esp.ErrAuth):
			sa.authFails.Add(1)
			l.c.authFailed.Add(1)
		default:
			l.c.openErrors.Add(1)
		}
		return false
	}
	if sa.in.SoftExpired() {
		l.softExpired(sa)
	}
	if sa.auto.Load() && len(f.wake) < cap(f.wake) {
		f.wake = append(f.wake, sa) // the peer uses it: our side may too
	}
	if last := sa.lastTraffic.Load(); now-last >= int64(trafficEvery) && len(f.live) < cap(f.live) && sa.lastTraffic.CompareAndSwap(last, now) {
		f.live = append(f.live, sa.in.SPI())
	}
	off, n, nh := o.ioff, o.m, o.nh
	inner := o.pkt[off : off+n]
	switch nh {
	case esp.NextHeaderGRE:
	case esp.NextHeaderIPv4, esp.NextHeaderIPv6:
		hl, ok := tunnelInner(inner, sa.desc.Remote, sa.desc.Local)
		if !ok {
			l.c.badInner.Add(1)
			return false
		}
		off, n = off+hl, n-hl
	case esp.NextHeaderNone:
		l.c.dummies.Add(1)
		return false
	default:
		l.c.badInner.Add(1)
		return false
	}
	start := d.Off + off
	if start != want && want >= 0 && want+n <= len(d.Buf) {
		copy(d.Buf[want:want+n], d.Buf[start:start+n])
		start = want
	}
	d.Off, d.Len, d.Peer = start, n, sa.key
	return true
}

// tunnelInner checks the inner IP header of a tunnel-mode packet (GRE from
// the SA's remote host to its local one, no fragments) and returns its
// length.
func tunnelInner(b []byte, src, dst netip.Addr) (int, bool) {
	if len(b) < 1 {
		return 0, false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return 0, false
		}
		hl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:]))
		if hl < 20 || hl > len(b) || total != len(b) || b[9] != inet.ProtoGRE ||
			binary.BigEndian.Uint16(b[6:])&0x3fff != 0 { // MF or an offset: a fragment
			return 0, false
		}
		s, _ := netip.AddrFromSlice(b[12:16])
		t, _ := netip.AddrFromSlice(b[16:20])
		if s != src.Unmap() || t != dst.Unmap() {
			return 0, false
		}
		return hl, true
	case 6:
		if len(b) < 40 || int(binary.BigEndian.Uint16(b[4:]))+40 != len(b) || b[6] != inet.ProtoGRE {
			return 0, false
		}
		s, _ := netip.AddrFromSlice(b[8:24])
		t, _ := netip.AddrFromSlice(b[24:40])
		if s != src || t != dst {
			return 0, false
		}
		return 40, true
	}
	return 0, false
}
