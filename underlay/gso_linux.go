//go:build linux

package underlay

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP segmentation offload (GSO, send) and receive offload (GRO) for the
// UDP sockets (GRE-in-UDP today), behind the unchanged Conn interface.
//
// Why: without them every tunnel packet is its own skb all the way through
// the kernel (socket, routing, netfilter, every veth or NIC queue on the
// way), and per-skb work is what limits throughput. With UDP_SEGMENT the
// kernel carries a run of same-sized datagrams to one peer as a single skb,
// cut into datagrams only where a device cannot take it whole (a NIC
// without UDP segmentation offload; veth and loopback take it whole, also
// through a forwarding namespace); with UDP_GRO a socket receives such a
// super-datagram, or datagrams the receive path coalesced, as one message.
//
// Send: WriteBatch turns each run of consecutive datagrams to the same Peer
// whose lengths are equal (the last may be shorter) into one message: an
// iovec per datagram, gathered by the kernel, plus a UDP_SEGMENT cmsg
// holding the common length (see gsoRun for the limits). Gathering with
// iovecs copies nothing in userspace and needs no coalescing buffer: the
// kernel copies the payloads into the skb whether they come in one iovec or
// in many, and the datagram boundaries are exactly the segment boundaries.
// The caller's buffers are only read, as before.
//
// If the kernel refuses a GSO message, its datagrams are resent one per
// message at once (keeping their order and per-datagram semantics), and:
// EIO (the route's device cannot offload the UDP checksum, or IPsec) turns
// GSO off for the Conn; EMSGSIZE or EINVAL (older kernels) mean a segment
// plus headers exceeds the path MTU, so datagrams of that size or more are
// no longer coalesced.
//
// Receive: the socket has UDP_GRO on; a message may then hold many
// datagrams, all gso_size bytes long but the last, with gso_size in a
// UDP_GRO cmsg. ReadBatch receives into the reader's own buffers (groMsgs
// of groBufLen bytes) and copies each datagram into the caller's ds[i].Buf
// at the caller's Off. Own buffers rather than the caller's because one
// message can expand into up to 64 datagrams: reading into the caller's
// buffers would mean passing only len(ds)/64 messages per recvmmsg (2 for a
// batch of 128) so that every expansion fits, or losing what does not; with
// own buffers recvmmsg takes up to min(len(ds), groMsgs) messages, whatever
// does not fit into ds waits in the reader's buffers for the next
// ReadBatch (which then makes no system call), and the caller's buffers may
// be of any size. The price is one copy per datagram, and that copy is made
// for all but the first datagram of each coalesced message either way, and
// 2 MiB of buffers per socket (made by the first ReadBatch; the kernel only
// backs the pages it writes to).

const (
	// udpMaxSegments is the most datagrams one UDP_SEGMENT send may carry
	// (the kernel's UDP_MAX_SEGMENTS) and the most UDP GRO coalesces into
	// one message (UDP_GRO_CNT_MAX).
	udpMaxSegments = 64
	// gsoMaxBytes is the largest UDP payload of one GSO send: a UDP datagram
	// in IPv4 (65535 - 20 - 8). IPv6 allows 20 bytes more; one limit keeps
	// dual-stack sockets, which send IPv4 too, simple.
	gsoMaxBytes = 65507
	// groBufLen is the size of each of the reader's receive buffers: the
	// largest UDP payload a GRO message can have.
	groBufLen = 1 << 16
	// groMsgs is the most messages one recvmmsg takes when UDP GRO is on.
	groMsgs = 32
)

// udpOffloads probes UDP GSO and turns UDP GRO on for a UDP socket. The
// UDP_SEGMENT socket option exists since Linux 4.18, with GSO; UDP_GRO since
// 5.0. Both are per socket and cost nothing until used.
func udpOffloads(rc syscall.RawConn) (gso, gro bool) {
	_ = rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT)
		gso = err == nil
		gro = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil
	})
	return gso, gro
}

// gsoRun returns how many datagrams, starting with ds[0], one UDP_SEGMENT
// message carries: ds[0] and the datagrams right after it that go to the
// same Peer and have the same length, plus at most one shorter one, which
// ends the run; at most maxSegs datagrams and maxBytes bytes in all. A
// datagram longer than maxSeg, or empty, travels alone (1).
func gsoRun(ds []Datagram, maxSegs, maxBytes, maxSeg int) int {
	seg := ds[0].Len
	if seg <= 0 || seg > maxSeg {
		return 1
	}
	n, total := 1, seg
	for n < len(ds) && n < maxSegs {
		d := &ds[n]
		if d.Peer != ds[0].Peer || d.Len <= 0 || d.Len > seg || total+d.Len > maxBytes {
			break
		}
		total += d.Len
		n++
		if d.Len < seg {
			break
		}
	}
	return n
}

// putSegmentCmsg writes a UDP_SEGMENT cmsg for segments of size bytes at the
// start of c (8-byte aligned, at least CmsgSpace(2) long).
func putSegmentCmsg(c []byte, size uint16) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], size)
}

// groSize returns the segment size in a received UDP_GRO cmsg, 0 if ctl has
// none (the message is one datagram). ctl must be 8-byte aligned.
func groSize(ctl []byte) int {
	for len(ctl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(ctl) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			if v := int(int32(binary.NativeEndian.Uint32(ctl[unix.CmsgLen(0):]))); v > 0 {
				return v
			}
			return 0
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next >= len(ctl) {
			return 0
		}
		ctl = ctl[next:]
	}
	return 0
}

// groReader is the receive side of a UDP socket with UDP_GRO on: the
// reader's own buffers and the messages in them not yet handed out. It
// belongs to the goroutine holding sock.rmu.
type groReader struct {
	m      *mmsgs
	bufs   [][]byte // groMsgs buffers of groBufLen bytes
	minLen int      // shortest datagram deliver hands on (Spec.MinLen)

	// Messages [next, n) of the last recvmmsg are still to be handed out;
	// off is where the next datagram of message next starts.
	n, next, off int
	lens         []int // bytes in message i; -1: drop it whole
	segs         []int // its segment size; 0 if it is one datagram
	peers        []netip.AddrPort
}

func newGROReader(minLen int) *groReader {
	r := &groReader{
		m:      newMmsgs(groMsgs),
		bufs:   make([][]byte, groMsgs),
		minLen: minLen,
		lens:   make([]int, groMsgs),
		segs:   make([]int, groMsgs),
		peers:  make([]netip.AddrPort, groMsgs),
	}
	for i := range r.bufs {
		r.bufs[i] = make([]byte, groBufLen)
	}
	return r
}

// pending reports whether datagrams of the last recvmmsg are still waiting.
func (r *groReader) pending() bool { return r.next < r.n }

// recv receives up to cnt messages into the reader's buffers, blocking until
// one arrives, and records their length, peer and segment size. It returns
// the number of messages, of coalesced ones and of datagrams in those.
// Messages to drop whole (truncated, unknown source) are marked for deliver.
func (r *groReader) recv(rc syscall.RawConn, cnt int) (msgs, coalesced, segments int, err error) {
	cnt = min(cnt, len(r.bufs))
	m := r.m
	for i := 0; i < cnt; i++ {
		m.setBuf(i, r.bufs[i])
		m.wantName(i)
		m.wantCtl(i)
	}
	n, err := m.recv(rc, cnt)
	if err != nil {
		return 0, 0, 0, err
	}
	for i := 0; i < n; i++ {
		p, ok := m.name(i)
		if !ok || m.truncated(i) {
			r.lens[i], r.segs[i] = -1, 0
			continue
		}
		l, seg := m.msgLen(i), groSize(m.ctlData(i))
		if seg >= l {
			seg = 0
		}
		r.lens[i], r.segs[i], r.peers[i] = l, seg, p
		if seg > 0 {
			coalesced++
			segments += (l + seg - 1) / seg
		}
	}
	r.n, r.next, r.off = n, 0, 0
	return n, coalesced, segments, nil
}

// deliver copies waiting datagrams into ds[k].Buf[ds[k].Off:], in order,
// until ds is full or nothing waits. It returns how many it filled and how
// many it dropped: messages recv marked, datagrams shorter than minLen, and
// datagrams that do not fit the caller's buffer.
func (r *groReader) deliver(ds []Datagram) (k, dropped int) {
	for k < len(ds) && r.next < r.n {
		i := r.next
		l := r.lens[i]
		if l < 0 {
			dropped++
			r.next, r.off = r.next+1, 0
			continue
		}
		end := l
		if seg := r.segs[i]; seg > 0 {
			end = min(r.off+seg, l)
		}
		p := r.bufs[i][r.off:end]
		if end >= l {
			r.next, r.off = r.next+1, 0
		} else {
			r.off = end
		}
		d := &ds[k]
		if len(p) < r.minLen || len(d.Buf)-d.Off < len(p) {
			dropped++
			continue
		}
		d.Len = copy(d.Buf[d.Off:], p)
		d.Peer = r.peers[i]
		k++
	}
	return k, dropped
}
