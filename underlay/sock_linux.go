//go:build linux

package underlay

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/dmvpn/dmvpn/gre"
)

const (
	// batchSize is the most datagrams one recvmmsg/sendmmsg call moves.
	batchSize = 128
	// socketBufferSize is the kernel send and receive buffer we ask for.
	socketBufferSize = 4 << 20
)

// sock is the batched socket shared by GREConn and UDPConn.
type sock struct {
	pc        net.PacketConn
	rc        syscall.RawConn
	transport Transport
	rawGRE    bool // received packets start with the IPv4 header
	v6        bool // AF_INET6 socket: destinations are sockaddr_in6
	local     netip.AddrPort

	rmu sync.Mutex // one reader at a time owns rm
	rm  *mmsgs
	// wpool holds *mmsgs for concurrent writers; each WriteBatch takes
	// one, so the steady state allocates nothing.
	wpool sync.Pool

	stats connCounters
}

func newSock(pc net.PacketConn, t Transport, local netip.AddrPort) (*sock, error) {
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
		transport: t,
		rawGRE:    t == TransportGRE,
		v6:        v6,
		local:     local,
		rm:        newMmsgs(batchSize),
	}
	s.wpool.New = func() any { return newMmsgs(batchSize) }
	return s, nil
}

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
	m := s.rm
	for {
		for i := range ds {
			m.setBuf(i, ds[i].Buf[ds[i].Off:])
			if s.rawGRE {
				m.noName(i)
			} else {
				m.wantName(i)
			}
		}
		n, err := m.recv(s.rc, len(ds))
		if err != nil {
			return 0, readErr(err)
		}
		k, dropped := 0, 0
		for i := 0; i < n; i++ {
			if m.truncated(i) {
				dropped++
				continue
			}
			b := ds[i].Buf[ds[i].Off : ds[i].Off+m.msgLen(i)]
			var start, l int
			var peer netip.AddrPort
			if s.rawGRE {
				h, pl, src, ok := parseIPv4GRE(b, s.local.Addr())
				if !ok {
					dropped++
					continue
				}
				start, l, peer = h, pl, netip.AddrPortFrom(src, 0)
			} else {
				p, ok := m.name(i)
				if !ok || len(b) < gre.MinLen {
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

// WriteBatch implements Conn.
func (s *sock) WriteBatch(ds []Datagram) (int, error) {
	m := s.wpool.Get().(*mmsgs)
	defer s.wpool.Put(m)
	total, errs := 0, 0
	var first error
	for len(ds) > 0 {
		chunk := ds[:min(len(ds), batchSize)]
		ds = ds[len(chunk):]
		k := 0
		for i := range chunk {
			dst, ok := s.dest(chunk[i].Peer)
			if !ok {
				errs++
				if first == nil {
					first = fmt.Errorf("underlay: cannot send to %v over %v socket %v", chunk[i].Peer, s.transport, s.local)
				}
				continue
			}
			m.setBuf(k, chunk[i].Payload())
			m.setName(k, dst, s.v6)
			k++
		}
		sent, failed, ferr, fatal := m.send(s.rc, k)
		total += sent
		errs += failed
		if first == nil {
			first = ferr
		}
		if fatal != nil {
			first = readErr(fatal)
			break
		}
	}
	s.stats.sent.Add(uint64(total))
	if errs > 0 {
		s.stats.sendErrors.Add(uint64(errs))
	}
	return total, first
}

// dest checks and normalises a destination for this socket.
func (s *sock) dest(p netip.AddrPort) (netip.AddrPort, bool) {
	a := p.Addr().Unmap()
	if s.rawGRE {
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
func (s *sock) Transport() Transport { return s.transport }

// Close implements Conn. A ReadBatch blocked in another goroutine returns
// net.ErrClosed.
func (s *sock) Close() error { return s.pc.Close() }

// SetReadDeadline makes a blocked or later ReadBatch fail with an error
// wrapping os.ErrDeadlineExceeded once t has passed; the zero time clears it.
// It is not part of Conn: the data plane stops a reader with Close, tests use
// deadlines to stay bounded.
func (s *sock) SetReadDeadline(t time.Time) error { return s.pc.SetReadDeadline(t) }

// SetWriteDeadline bounds a WriteBatch waiting for socket buffer space.
func (s *sock) SetWriteDeadline(t time.Time) error { return s.pc.SetWriteDeadline(t) }

// Stats returns the Conn's counters.
func (s *sock) Stats() ConnStats { return s.stats.snapshot() }
