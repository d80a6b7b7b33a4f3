//go:build linux

package underlay

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batched socket I/O with recvmmsg(2) and sendmmsg(2).
//
// golang.org/x/net/ipv4.PacketConn.ReadBatch was the first choice, but it
// allocates a net.IP and a *net.UDPAddr (or *net.IPAddr) for every message it
// receives (measured: 64 allocations for a batch of 32), so it cannot give
// the zero-allocation steady state the data plane needs. This file issues the
// two system calls itself, through the net package's poller
// (syscall.RawConn), with every header, iovec and sockaddr preallocated.

// sockaddrLen is room for either sockaddr_in or sockaddr_in6.
const sockaddrLen = unix.SizeofSockaddrInet6

type sockaddrBuf [sockaddrLen]byte

// ctlLen is the control (ancillary data) buffer of one message: room for
// one UDP_SEGMENT or UDP_GRO cmsg (CmsgSpace(4) is 24 bytes on 64-bit
// Linux) with margin. A multiple of 8, so every message's buffer is aligned
// for a cmsghdr.
const ctlLen = 64

// mmsgs is the preallocated state of one recvmmsg or sendmmsg caller: one
// mmsghdr, iovec, sockaddr and control buffer per message. It belongs to one
// goroutine at a time (the reader, or a writer that took it from a pool).
//
// Message i normally uses iovec i (setBuf). A UDP GSO message gathers
// several datagrams instead: it points at a run of consecutive iovecs
// (setIov, then setMsg), so iovec indices and message indices differ.
type mmsgs struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []sockaddrBuf
	ctl   []byte // ctlLen bytes per message

	// Arguments and results of the system call made by fn.
	trap  uintptr // unix.SYS_RECVMMSG or unix.SYS_SENDMMSG
	off   int     // first header to pass
	cnt   int     // number of headers to pass
	n     int     // messages transferred
	errno syscall.Errno

	// fn is m.call bound once, so passing it to RawConn.Read/Write does
	// not allocate a closure per batch.
	fn func(fd uintptr) bool
}

func newMmsgs(size int) *mmsgs {
	m := &mmsgs{
		hdrs:  make([]unix.Mmsghdr, size),
		iovs:  make([]unix.Iovec, size),
		names: make([]sockaddrBuf, size),
		ctl:   make([]byte, size*ctlLen),
	}
	for i := range m.hdrs {
		m.hdrs[i].Hdr.Iov = &m.iovs[i]
		m.hdrs[i].Hdr.SetIovlen(1)
	}
	m.fn = m.call
	return m
}

// setBuf points message i at b alone (iovec i), with no control data.
func (m *mmsgs) setBuf(i int, b []byte) {
	m.setIov(i, b)
	h := &m.hdrs[i]
	h.Hdr.Iov = &m.iovs[i]
	h.Hdr.SetIovlen(1)
	h.Hdr.Control = nil
	h.Hdr.SetControllen(0)
	h.Len = 0
	h.Hdr.Flags = 0
}

// setIov points iovec j at b.
func (m *mmsgs) setIov(j int, b []byte) {
	m.iovs[j].Base = unsafe.SliceData(b)
	m.iovs[j].SetLen(len(b))
}

// setMsg makes message i gather iovecs [first, first+n) and, if gsoSize is
// not 0, carry a UDP_SEGMENT cmsg: the kernel sends the concatenation as
// one UDP GSO super-datagram and cuts it into gsoSize-byte datagrams (the
// last may be shorter).
func (m *mmsgs) setMsg(i, first, n, gsoSize int) {
	h := &m.hdrs[i]
	h.Hdr.Iov = &m.iovs[first]
	h.Hdr.SetIovlen(n)
	h.Len = 0
	h.Hdr.Flags = 0
	if gsoSize == 0 {
		h.Hdr.Control = nil
		h.Hdr.SetControllen(0)
		return
	}
	c := m.ctl[i*ctlLen : (i+1)*ctlLen]
	putSegmentCmsg(c, uint16(gsoSize))
	h.Hdr.Control = &c[0]
	h.Hdr.SetControllen(unix.CmsgSpace(2))
}

// wantCtl gives message i its control buffer to receive into (recvmmsg).
func (m *mmsgs) wantCtl(i int) {
	h := &m.hdrs[i]
	h.Hdr.Control = &m.ctl[i*ctlLen]
	h.Hdr.SetControllen(ctlLen)
}

// ctlData returns the control data recvmmsg stored for message i.
func (m *mmsgs) ctlData(i int) []byte {
	n := int(m.hdrs[i].Hdr.Controllen)
	if m.hdrs[i].Hdr.Control == nil || n <= 0 || n > ctlLen {
		return nil
	}
	return m.ctl[i*ctlLen : i*ctlLen+n]
}

// wantName makes message i receive the source address (recvmmsg).
func (m *mmsgs) wantName(i int) {
	m.hdrs[i].Hdr.Name = &m.names[i][0]
	m.hdrs[i].Hdr.Namelen = sockaddrLen
}

// noName makes message i carry no address (raw receive: the source is in
// the IPv4 header anyway).
func (m *mmsgs) noName(i int) {
	m.hdrs[i].Hdr.Name = nil
	m.hdrs[i].Hdr.Namelen = 0
}

// setName writes the destination of message i. v6 selects sockaddr_in6
// (an IPv6 socket: IPv4 destinations become IPv4-mapped addresses).
func (m *mmsgs) setName(i int, ap netip.AddrPort, v6 bool) {
	sa := &m.names[i]
	addr := ap.Addr()
	if v6 {
		binary.NativeEndian.PutUint16(sa[0:2], unix.AF_INET6)
		binary.BigEndian.PutUint16(sa[2:4], ap.Port())
		binary.NativeEndian.PutUint32(sa[4:8], 0) // flow info
		a16 := addr.As16()
		copy(sa[8:24], a16[:])
		binary.NativeEndian.PutUint32(sa[24:28], zoneIndex(addr.Zone()))
		m.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
	} else {
		binary.NativeEndian.PutUint16(sa[0:2], unix.AF_INET)
		binary.BigEndian.PutUint16(sa[2:4], ap.Port())
		a4 := addr.As4()
		copy(sa[4:8], a4[:])
		clear(sa[8:16])
		m.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
	}
	m.hdrs[i].Hdr.Name = &sa[0]
}

// name returns the address recvmmsg stored for message i. IPv4-mapped IPv6
// addresses are unmapped, so a peer has one spelling whichever socket
// family saw it.
func (m *mmsgs) name(i int) (netip.AddrPort, bool) {
	sa := &m.names[i]
	l := m.hdrs[i].Hdr.Namelen
	if l < 2 {
		return netip.AddrPort{}, false
	}
	switch binary.NativeEndian.Uint16(sa[0:2]) {
	case unix.AF_INET:
		if l < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), binary.BigEndian.Uint16(sa[2:4])), true
	case unix.AF_INET6:
		if l < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}, false
		}
		a := netip.AddrFrom16([16]byte(sa[8:24])).Unmap()
		if id := binary.NativeEndian.Uint32(sa[24:28]); id != 0 && a.Is6() {
			// Link-local peers only; this allocates.
			a = a.WithZone(strconv.FormatUint(uint64(id), 10))
		}
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(sa[2:4])), true
	}
	return netip.AddrPort{}, false
}

// truncated reports whether message i did not fit its buffer.
func (m *mmsgs) truncated(i int) bool { return m.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 }

// msgLen is the number of bytes message i carried.
func (m *mmsgs) msgLen(i int) int { return int(m.hdrs[i].Len) }

// call runs inside RawConn.Read/Write. Returning false makes the poller
// wait for the socket to become ready and call again.
func (m *mmsgs) call(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(m.trap, fd, uintptr(unsafe.Pointer(&m.hdrs[m.off])), uintptr(m.cnt), 0, 0, 0)
		switch e {
		case 0:
			m.n, m.errno = int(r), 0
			return true
		case unix.EINTR:
			// Retry at once: waiting for readiness could miss data
			// already queued (the poller is edge-triggered).
			continue
		case unix.EAGAIN:
			return false
		default:
			m.n, m.errno = 0, e
			return true
		}
	}
}

// recv fills up to cnt messages, blocking until at least one arrives.
func (m *mmsgs) recv(rc syscall.RawConn, cnt int) (int, error) {
	m.trap, m.off, m.cnt = unix.SYS_RECVMMSG, 0, cnt
	if err := rc.Read(m.fn); err != nil {
		return 0, err
	}
	if m.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", m.errno)
	}
	return m.n, nil
}

// sendOnce is one sendmmsg call for messages [off, off+cnt): it returns how
// many the kernel took and, if it took none, why (errno); fatal is an error
// from the poller (socket closed, deadline).
func (m *mmsgs) sendOnce(rc syscall.RawConn, off, cnt int) (n int, errno syscall.Errno, fatal error) {
	m.trap, m.off, m.cnt = unix.SYS_SENDMMSG, off, cnt
	if err := rc.Write(m.fn); err != nil {
		return 0, 0, err
	}
	if m.errno != 0 {
		return 0, m.errno, nil
	}
	if m.n <= 0 { // cannot happen; callers must never spin
		return 0, unix.EIO, nil
	}
	return m.n, 0, nil
}

func zoneIndex(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

// setSocketBuffers asks for large kernel socket buffers so a burst of
// batches is not dropped while the reader is busy. SO_RCVBUFFORCE and
// SO_SNDBUFFORCE work as root (CAP_NET_ADMIN) beyond net.core.rmem_max; the
// plain options, capped by the sysctl, are the fallback. Failures are
// ignored: the defaults work, only less well.
func setSocketBuffers(rc syscall.RawConn, size int) {
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, size)
		}
	})
}

// socketIs6 reports whether the socket is AF_INET6.
func socketIs6(rc syscall.RawConn) (bool, error) {
	var dom int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		dom, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return false, err
	}
	if serr != nil {
		return false, os.NewSyscallError("getsockopt", serr)
	}
	return dom == unix.AF_INET6, nil
}

// readErr turns an error from the poller into what ReadBatch promises.
func readErr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return net.ErrClosed
	}
	return err
}

// checkReadBufs validates the caller's buffers before the kernel sees them.
func checkReadBufs(ds []Datagram) error {
	for i := range ds {
		if ds[i].Off < 0 || ds[i].Off >= len(ds[i].Buf) {
			return errBadReadBuf
		}
	}
	return nil
}

var errBadReadBuf = errors.New("underlay: ReadBatch datagram has no room after Off")
