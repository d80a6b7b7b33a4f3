package ipsec

import (
	"encoding/binary"
	"net/netip"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/underlay"
)

// Face is the Conn of one transport that the data plane writes GRE
// datagrams to and reads them from; it seals and opens ESP on its socket.
// Like every underlay.Conn it is safe for one reader and many writers.
type Face struct {
	l    *Layer
	conn underlay.Conn
	t    nbma.Transport
	// want and live are the reader's scratch: the offsets the caller
	// asked for, the SAs to report to OnTraffic after the batch.
	want []int
	live []uint32
	wake []*childSA
	// ops and idx: the batch's opens and which datagram each is.
	ops    []op
	idx    []int
	crypto batchCrypto
}

var _ underlay.Conn = (*Face)(nil)

// BatchSize implements underlay.Conn.
func (f *Face) BatchSize() int { return f.conn.BatchSize() }

// Transport implements underlay.Conn: the label the data plane knows the
// transport by (GRE: raw ESP; UDP: ESP-in-UDP).
func (f *Face) Transport() nbma.Transport { return f.t }

// LocalAddr implements underlay.Conn.
func (f *Face) LocalAddr() netip.AddrPort { return f.conn.LocalAddr() }

// Close implements underlay.Conn: it closes the Face's socket.
func (f *Face) Close() error { return f.conn.Close() }

// Socket is the socket under the Face (for captures and statistics).
func (f *Face) Socket() underlay.Conn { return f.conn }

// scratchHead is the headroom of a copy: tunnel-mode IP header and the
// largest ESP header, with room to spare.
const scratchHead = 64

// sendScratch is one writer's working space, pooled so that the steady
// state allocates nothing: the outgoing datagrams per socket, and copy
// buffers for payloads that cannot be sealed where they are (shared by a
// multicast batch, or without head/tailroom).
type sendScratch struct {
	raw, udp []underlay.Datagram
	copies   [][]byte
	used     int
	ops      []op
	crypto   batchCrypto
}

func newSendScratch() any {
	return &sendScratch{raw: make([]underlay.Datagram, 0, 128), udp: make([]underlay.Datagram, 0, 128)}
}

// copyBuf returns a free copy buffer.
func (s *sendScratch) copyBuf() []byte {
	if s.used == len(s.copies) {
		s.copies = append(s.copies, make([]byte, scratchHead+maxQueued+esp.MaxTrailerLen))
	}
	b := s.copies[s.used]
	s.used++
	return b
}

// WriteBatch implements underlay.Conn: every datagram is sealed with its
// peer's current outbound SA and sent on that SA's socket, or, without an
// SA, queued for it (see Layer). It reports as sent what was sent or
// queued; what was dropped is counted in Stats.
func (f *Face) WriteBatch(ds []underlay.Datagram) (int, error) {
	l := f.l
	s := l.scratch.Get().(*sendScratch)
	var dropped int
	l.db.mu.RLock()
	for i := range ds {
		d := &ds[i]
		sa := l.db.outbound(d.Peer)
		if sa == nil {
			if !l.queue(d.Peer, f.t, d.Payload()) {
				dropped++
			}
			continue
		}
		if !l.prepare(s, sa, d.Buf, d.Off, d.Len, d.Shared) {
			dropped++
		}
	}
	l.db.mu.RUnlock()
	sent, err := l.sealAndSend(s)
	dropped += len(s.ops) - sent
	l.putScratch(s)
	return len(ds) - dropped, err
}

// sealAndSend seals the prepared ops of s (spread over the crypto workers)
// and writes them, in their order, to their sockets; it returns how many
// were sealed.
func (l *Layer) sealAndSend(s *sendScratch) (int, error) {
	l.runAll(&s.crypto, s.ops)
	var firstErr error
	sealed := 0
	for i := range s.ops {
		o := &s.ops[i]
		if !o.ok {
			l.c.sealErrors.Add(1)
			l.softExpired(o.sa)
			continue
		}
		sealed++
		if o.sa.out.SoftExpired() {
			l.softExpired(o.sa)
		}
		if o.sa.desc.UDP {
			s.udp = append(s.udp, o.out)
		} else {
			s.raw = append(s.raw, o.out)
		}
		if len(s.udp) == cap(s.udp) || len(s.raw) == cap(s.raw) {
			if err := l.flushScratch(s); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	if err := l.flushScratch(s); err != nil && firstErr == nil {
		firstErr = err
	}
	l.c.sealed.Add(uint64(sealed))
	return sealed, firstErr
}

// putScratch returns s to the pool, holding no reference to the caller's
// buffers.
func (l *Layer) putScratch(s *sendScratch) {
	clear(s.ops)
	s.ops = s.ops[:0]
	s.used = 0
	l.scratch.Put(s)
}

// flushScratch writes the sealed datagrams of s to their sockets.
func (l *Layer) flushScratch(s *sendScratch) error {
	var firstErr error
	for _, x := range []struct {
		ds *[]underlay.Datagram
		f  *Face
	}{{&s.raw, l.raw}, {&s.udp, l.udp}} {
		if len(*x.ds) == 0 {
			continue
		}
		n, err := x.f.conn.WriteBatch(*x.ds)
		if n < len(*x.ds) {
			l.c.writeErrors.Add(uint64(len(*x.ds) - n))
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
		clear(*x.ds)
		*x.ds = (*x.ds)[:0]
	}
	s.used = 0 // the copies are on the wire: reusable
	return firstErr
}

// prepare readies the GRE datagram buf[off:off+n] for sealing with sa (an
// op in s.ops): in place when it may and there is room around it, else in
// a copy; in tunnel mode with the inner IP header in front. False: too big
// to copy (counted).
func (l *Layer) prepare(s *sendScratch, sa *childSA, buf []byte, off, n int, shared bool) bool {
	head := sa.out.HeaderLen() + sa.outerHdr
	tail := sa.out.TrailerLen(n + sa.outerHdr)
	buf = buf[:cap(buf)]
	if shared || off < head || len(buf)-(off+n) < tail {
		if n > maxQueued {
			l.c.tooBig.Add(1)
			return false
		}
		c := s.copyBuf()
		copy(c[scratchHead:], buf[off:off+n])
		buf, off = c, scratchHead
	}
	nh := byte(esp.NextHeaderGRE)
	if sa.outerHdr > 0 {
		off -= sa.outerHdr
		n += sa.outerHdr
		nh = writeTunnelHeader(buf[off:off+sa.outerHdr], sa.desc.Local, sa.desc.Remote, n)
	}
	s.ops = append(s.ops, op{sa: sa, buf: buf, off: off, n: n, nh: nh})
	return true
}

// sendTo is where the SA's ESP goes: the peer's endpoint over UDP, its
// address (port 0) over raw ESP.
func (sa *childSA) sendTo() netip.AddrPort {
	if sa.desc.UDP {
		return sa.desc.Peer
	}
	return netip.AddrPortFrom(sa.desc.Peer.Addr(), 0)
}

func (l *Layer) softExpired(sa *childSA) {
	if sa.softNotified.CompareAndSwap(false, true) && l.cfg.OnSoftExpired != nil {
		l.cfg.OnSoftExpired(sa.in.SPI())
	}
}

// tunnelHeaderLen is the inner IP header tunnel mode puts in front of GRE.
func tunnelHeaderLen(local netip.Addr) int {
	if local.Is4() {
		return 20
	}
	return 40
}

// writeTunnelHeader writes the inner IP header of a tunnel-mode packet of
// total length n (header included) carrying GRE from src to dst, and
// returns the Next Header value that announces it.
func writeTunnelHeader(h []byte, src, dst netip.Addr, n int) byte {
	if src.Is4() {
		inet.PutIPv4Header(h, src, dst, inet.ProtoGRE, n-inet.IPv4HeaderLen, 0)
		return esp.NextHeaderIPv4
	}
	binary.BigEndian.PutUint32(h[0:], 6<<28)
	binary.BigEndian.PutUint16(h[4:], uint16(n-40))
	h[6], h[7] = inet.ProtoGRE, 64
	s, d := src.As16(), dst.As16()
	copy(h[8:24], s[:])
	copy(h[24:40], d[:])
	return esp.NextHeaderIPv6
}

// queue copies a datagram for a peer without an SA into its waiting queue
// and tells OnNeedSA when the wait starts. False: dropped.
func (l *Layer) queue(peer netip.AddrPort, t nbma.Transport, payload []byte) bool {
	if len(payload) > maxQueued {
		l.c.tooBig.Add(1)
		return false
	}
	started, ok := l.wait.put(peer, t, payload, l.now())
	if !ok {
		l.c.queueDrops.Add(1)
		return false
	}
	l.c.queued.Add(1)
	if started && l.cfg.OnNeedSA != nil {
		l.cfg.OnNeedSA(peer, t)
	}
	return true
}

// sendQueued seals and sends what waited for sa's peer, in order.
func (l *Layer) sendQueued(sa *childSA, q *waitQueue) {
	s := l.scratch.Get().(*sendScratch)
	for _, p := range q.pkts {
		l.prepare(s, sa, p, 0, len(p), true)
	}
	n, _ := l.sealAndSend(s)
	l.c.dequeued.Add(uint64(n))
	l.putScratch(s)
}
