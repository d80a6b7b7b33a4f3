//go:build linux

package underlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dmvpn/dmvpn/nbma"
)

const (
	// batchSize is the most datagrams one recvmmsg/sendmmsg call moves.
	batchSize = 128
	// socketBufferSize is the kernel send and receive buffer we ask for.
	socketBufferSize = 4 << 20
)

// sock is the batched socket shared by IPConn and UDPConn.
type sock struct {
	pc        net.PacketConn
	rc        syscall.RawConn
	transport nbma.Transport // a label only
	raw       bool           // raw IPv4: received packets start with the IPv4 header
	proto     uint8          // raw: the IP protocol ReadBatch accepts
	minLen    int            // shortest payload ReadBatch hands on
	v6        bool           // AF_INET6 socket: destinations are sockaddr_in6
	local     netip.AddrPort

	rmu sync.Mutex // one reader at a time owns rm and gro
	rm  *mmsgs
	// gro is the receive state when UDP GRO is on (groOn), made by the
	// first ReadBatch.
	gro   *groReader
	groOn bool
	// wpool holds *writer for concurrent writers; each WriteBatch takes
	// one, so the steady state allocates nothing.
	wpool sync.Pool

	// gsoOn: WriteBatch coalesces datagrams with UDP_SEGMENT (gso_linux.go).
	// Cleared for good when the kernel says the route cannot offload.
	gsoOn atomic.Bool
	// gsoMaxSeg is the longest datagram WriteBatch coalesces; lowered when
	// the kernel refuses a segment size as too big for the path.
	gsoMaxSeg atomic.Int64

	closed atomic.Bool
	stats  connCounters
}

// writer is the preallocated state of one WriteBatch.
type writer struct {
	m *mmsgs
	// one resends a refused GSO message one datagram per message.
	one *mmsgs
	// Message i carries datagrams [first[i], first[i]+count[i]) of the
	// chunk being sent.
	first, count []int
}

func newWriter() *writer {
	return &writer{
		m:     newMmsgs(batchSize),
		one:   newMmsgs(udpMaxSegments),
		first: make([]int, batchSize),
		count: make([]int, batchSize),
	}
}

// check validates a Spec before a socket is opened for it.
func (s Spec) check() error {
	if s.Transport == 0 {
		return errNoTransport
	}
	if s.MinLen < 0 || s.MinLen > 65535 {
		return fmt.Errorf("underlay: %s socket: minimum payload length %d out of range (valid: 0 to 65535)", s.Transport.Name(), s.MinLen)
	}
	return nil
}

var errNoTransport = errors.New("underlay: socket without a transport label (Spec.Transport is zero)")

// newSock wraps pc, a raw IPv4 socket for protocol proto or (proto 0) a UDP
// socket, for batched I/O.
func newSock(pc net.PacketConn, spec Spec, proto uint8, local netip.AddrPort) (*sock, error) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("underlay: %T has no raw file descriptor", pc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	v6, err := socketIs6(rc)
	if err != nil {
		return nil, err
	}
	setSocketBuffers(rc, socketBufferSize)
	s := &sock{
		pc:        pc,
		rc:        rc,
		transport: spec.Transport,
		raw:       proto != 0,
		proto:     proto,
		minLen:    spec.MinLen,
		v6:        v6,
		local:     local,
		rm:        newMmsgs(batchSize),
	}
	s.wpool.New = func() any { return newWriter() }
	s.gsoMaxSeg.Store(gsoMaxBytes)
	if !s.raw {
		gso, gro := udpOffloads(rc)
		s.gsoOn.Store(gso)
		s.groOn = gro
	}
	return s, nil
}

// Offloads reports whether WriteBatch uses UDP GSO and ReadBatch UDP GRO
// (UDP sockets on Linux 4.18 and 5.0 or later; never raw IP). GSO can
// turn off at run time, when a route cannot offload it.
func (s *sock) Offloads() (gso, gro bool) { return s.gsoOn.Load(), s.groOn }

// ReadBatch implements Conn. Packets the data path must not see (see
// ConnStats.Dropped) are discarded here and never returned; if a whole
// batch is discarded it waits for more.
func (s *sock) ReadBatch(ds []Datagram) (int, error) {
	if len(ds) > batchSize {
		ds = ds[:batchSize]
	}
	if len(ds) == 0 {
		return 0, nil
	}
	if err := checkReadBufs(ds); err != nil {
		return 0, err
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.groOn {
		return s.readGRO(ds)
	}
	m := s.rm
	for {
		for i := range ds {
			m.setBuf(i, ds[i].Buf[ds[i].Off:])
			if s.raw {
				m.noName(i)
			} else {
				m.wantName(i)
			}
		}
		n, err := m.recv(s.rc, len(ds))
		s.stats.recvCalls.Add(1)
		if err != nil {
			return 0, readErr(err)
		}
		s.stats.recvMsgs.Add(uint64(n))
		k, dropped := 0, 0
		for i := 0; i < n; i++ {
			if m.truncated(i) {
				dropped++
				continue
			}
			b := ds[i].Buf[ds[i].Off : ds[i].Off+m.msgLen(i)]
			var start, l int
			var peer netip.AddrPort
			if s.raw {
				h, pl, src, ok := parseIPv4(b, s.local.Addr(), s.proto, s.minLen)
				if !ok {
					dropped++
					continue
				}
				start, l, peer = h, pl, netip.AddrPortFrom(src, 0)
			} else {
				p, ok := m.name(i)
				if !ok || len(b) < s.minLen {
					dropped++
					continue
				}
				start, l, peer = 0, len(b), p
			}
			if k == i {
				ds[k].Off += start
			} else {
				// An earlier packet of this batch was dropped:
				// move this one into the first free slot, so the
				// batch has no holes. Rare, so a copy is fine.
				dst := ds[k].Buf[ds[k].Off:]
				if len(dst) < l {
					dropped++
					continue
				}
				copy(dst, b[start:start+l])
			}
			ds[k].Len = l
			ds[k].Peer = peer
			k++
		}
		if dropped > 0 {
			s.stats.dropped.Add(uint64(dropped))
		}
		if k > 0 {
			s.stats.received.Add(uint64(k))
			return k, nil
		}
	}
}

// readGRO is ReadBatch with UDP GRO on: hand out what the last recvmmsg
// left, or receive more (see gso_linux.go).
func (s *sock) readGRO(ds []Datagram) (int, error) {
	if s.gro == nil {
		s.gro = newGROReader(s.minLen)
	}
	r := s.gro
	for {
		if s.closed.Load() {
			return 0, net.ErrClosed
		}
		if !r.pending() {
			msgs, coalesced, segments, err := r.recv(s.rc, len(ds))
			s.stats.recvCalls.Add(1)
			if err != nil {
				return 0, readErr(err)
			}
			s.stats.recvMsgs.Add(uint64(msgs))
			if coalesced > 0 {
				s.stats.groMsgs.Add(uint64(coalesced))
				s.stats.groSegments.Add(uint64(segments))
			}
		}
		k, dropped := r.deliver(ds)
		if dropped > 0 {
			s.stats.dropped.Add(uint64(dropped))
		}
		if k > 0 {
			s.stats.received.Add(uint64(k))
			return k, nil
		}
	}
}

// sendTally counts one WriteBatch, for the stats.
type sendTally struct {
	sent, errs, calls, msgs, gsoMsgs, fallbacks int
}

// WriteBatch implements Conn.
func (s *sock) WriteBatch(ds []Datagram) (int, error) {
	w := s.wpool.Get().(*writer)
	defer s.wpool.Put(w)
	var t sendTally
	var first error
	for len(ds) > 0 {
		chunk := ds[:min(len(ds), batchSize)]
		ds = ds[len(chunk):]
		n := s.build(w, chunk, &t, &first)
		if fatal := s.sendMsgs(w, chunk, n, &t, &first); fatal != nil {
			first = readErr(fatal)
			break
		}
	}
	c := &s.stats
	c.sent.Add(uint64(t.sent))
	c.sendCalls.Add(uint64(t.calls))
	c.sendMsgs.Add(uint64(t.msgs))
	if t.gsoMsgs > 0 {
		c.gsoMsgs.Add(uint64(t.gsoMsgs))
	}
	if t.fallbacks > 0 {
		c.gsoFallbacks.Add(uint64(t.fallbacks))
	}
	if t.errs > 0 {
		c.sendErrors.Add(uint64(t.errs))
	}
	return t.sent, first
}

// build turns chunk into messages in w and returns how many: one per
// datagram, or with GSO one per run that gsoRun allows.
func (s *sock) build(w *writer, chunk []Datagram, t *sendTally, first *error) int {
	gso := s.gsoOn.Load()
	maxSeg := int(s.gsoMaxSeg.Load())
	m := w.m
	msgs, iov := 0, 0
	for i := 0; i < len(chunk); {
		dst, ok := s.dest(chunk[i].Peer)
		if !ok {
			t.errs++
			if *first == nil {
				*first = fmt.Errorf("underlay: cannot send to %v over %v socket %v", chunk[i].Peer, s.transport, s.local)
			}
			i++
			continue
		}
		n := 1
		if gso {
			n = gsoRun(chunk[i:], udpMaxSegments, gsoMaxBytes, maxSeg)
		}
		for j := range n {
			m.setIov(iov+j, chunk[i+j].Payload())
		}
		gsoSize := 0
		if n > 1 {
			gsoSize = chunk[i].Len
		}
		// Message msgs uses iovecs from iov on, not iovec msgs: earlier
		// GSO messages may have taken several.
		m.setMsg(msgs, iov, n, gsoSize)
		m.setName(msgs, dst, s.v6)
		w.first[msgs], w.count[msgs] = i, n
		msgs++
		iov += n
		i += n
	}
	return msgs
}

// sendMsgs sends the msgs messages build made. A message the kernel refuses
// is skipped and the rest are still sent; a refused GSO message is resent
// one datagram per message first. A non-nil return (socket closed,
// deadline) stops the batch.
func (s *sock) sendMsgs(w *writer, chunk []Datagram, msgs int, t *sendTally, first *error) error {
	m := w.m
	off := 0
	for off < msgs {
		n, errno, fatal := m.sendOnce(s.rc, off, msgs-off)
		t.calls++
		if fatal != nil {
			return fatal
		}
		if errno == 0 {
			for j := off; j < off+n; j++ {
				t.sent += w.count[j]
				if w.count[j] > 1 {
					t.gsoMsgs++
				}
			}
			t.msgs += n
			off += n
			continue
		}
		// sendmmsg reports an error only for the first message of the
		// call; later ones are tried by the next call.
		if c := w.count[off]; c > 1 {
			t.fallbacks++
			s.gsoRefused(errno, chunk[w.first[off]].Len)
			if err := s.sendSingles(w.one, chunk[w.first[off]:w.first[off]+c], t, first); err != nil {
				return err
			}
		} else {
			t.errs++
			if *first == nil {
				*first = os.NewSyscallError("sendmmsg", errno)
			}
		}
		off++
	}
	return nil
}

// sendSingles sends ds (one destination, already checked) one datagram per
// message, skipping any the kernel refuses.
func (s *sock) sendSingles(m *mmsgs, ds []Datagram, t *sendTally, first *error) error {
	dst, _ := s.dest(ds[0].Peer)
	for i := range ds {
		m.setBuf(i, ds[i].Payload())
		m.setName(i, dst, s.v6)
	}
	off := 0
	for off < len(ds) {
		n, errno, fatal := m.sendOnce(s.rc, off, len(ds)-off)
		t.calls++
		if fatal != nil {
			return fatal
		}
		if errno != 0 {
			t.errs++
			if *first == nil {
				*first = os.NewSyscallError("sendmmsg", errno)
			}
			off++
			continue
		}
		t.sent += n
		t.msgs += n
		off += n
	}
	return nil
}

// gsoRefused adapts to a GSO message the kernel refused with errno.
func (s *sock) gsoRefused(errno syscall.Errno, segSize int) {
	switch errno {
	case unix.EIO:
		// The route's device cannot checksum UDP segments (or it is
		// IPsec): no GSO on this socket any more.
		s.gsoOn.Store(false)
	case unix.EMSGSIZE, unix.EINVAL:
		// Segment plus headers larger than the path MTU (EINVAL on older
		// kernels): coalesce only shorter datagrams from now on.
		for {
			cur := s.gsoMaxSeg.Load()
			if int64(segSize) > cur || s.gsoMaxSeg.CompareAndSwap(cur, int64(segSize-1)) {
				return
			}
		}
	}
}

// dest checks and normalises a destination for this socket.
func (s *sock) dest(p netip.AddrPort) (netip.AddrPort, bool) {
	a := p.Addr().Unmap()
	if s.raw {
		return netip.AddrPortFrom(a, 0), a.Is4()
	}
	if !a.IsValid() || a.IsUnspecified() || p.Port() == 0 {
		return netip.AddrPort{}, false
	}
	if !s.v6 && !a.Is4() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, p.Port()), true
}

// BatchSize implements Conn.
func (s *sock) BatchSize() int { return batchSize }

// LocalAddr implements Conn.
func (s *sock) LocalAddr() netip.AddrPort { return s.local }

// Transport implements Conn.
func (s *sock) Transport() nbma.Transport { return s.transport }

// Close implements Conn. A ReadBatch blocked in another goroutine returns
// net.ErrClosed.
func (s *sock) Close() error {
	s.closed.Store(true)
	return s.pc.Close()
}

// SetReadDeadline makes a blocked or later ReadBatch fail with an error
// wrapping os.ErrDeadlineExceeded once t has passed; the zero time clears it.
// It is not part of Conn: the data plane stops a reader with Close, tests use
// deadlines to stay bounded.
func (s *sock) SetReadDeadline(t time.Time) error { return s.pc.SetReadDeadline(t) }

// SetWriteDeadline bounds a WriteBatch waiting for socket buffer space.
func (s *sock) SetWriteDeadline(t time.Time) error { return s.pc.SetWriteDeadline(t) }

// Stats returns the Conn's counters.
func (s *sock) Stats() ConnStats { return s.stats.snapshot() }
