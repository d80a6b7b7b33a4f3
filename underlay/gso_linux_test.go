//go:build linux

package underlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/nbma"
)

var (
	peerA = netip.MustParseAddrPort("192.0.2.1:4754")
	peerB = netip.MustParseAddrPort("192.0.2.2:4754")
)

// lensTo makes datagrams of the given lengths to peer (no buffers: gsoRun
// only looks at Len and Peer).
func lensTo(peer netip.AddrPort, lens ...int) []Datagram {
	ds := make([]Datagram, len(lens))
	for i, l := range lens {
		ds[i] = Datagram{Len: l, Peer: peer}
	}
	return ds
}

// runs splits ds into gsoRun's runs and returns their lengths.
func runs(ds []Datagram, maxSeg int) []int {
	var out []int
	for len(ds) > 0 {
		n := gsoRun(ds, udpMaxSegments, gsoMaxBytes, maxSeg)
		out = append(out, n)
		ds = ds[n:]
	}
	return out
}

func repeat(l, n int) []int { return slices.Repeat([]int{l}, n) }

func TestGSORun(t *testing.T) {
	mixed := append(lensTo(peerA, 1400, 1400), lensTo(peerB, 1400, 1400)...)
	mixed = append(mixed, lensTo(peerA, 1400)...)
	tests := []struct {
		name   string
		ds     []Datagram
		maxSeg int
		want   []int
	}{
		{"one", lensTo(peerA, 1400), gsoMaxBytes, []int{1}},
		{"equal", lensTo(peerA, 1400, 1400, 1400), gsoMaxBytes, []int{3}},
		{"last smaller", lensTo(peerA, 1400, 1400, 700), gsoMaxBytes, []int{3}},
		{"smaller ends the run", lensTo(peerA, 1400, 700, 1400, 1400), gsoMaxBytes, []int{2, 2}},
		{"two smaller", lensTo(peerA, 1400, 700, 700), gsoMaxBytes, []int{2, 1}},
		{"larger starts a new run", lensTo(peerA, 700, 700, 1400, 1400), gsoMaxBytes, []int{2, 2}},
		{"unequal", lensTo(peerA, 100, 200, 300), gsoMaxBytes, []int{1, 1, 1}},
		{"mixed peers", mixed, gsoMaxBytes, []int{2, 2, 1}},
		{"empty datagram", lensTo(peerA, 1400, 0, 1400), gsoMaxBytes, []int{1, 1, 1}},
		{"empty first", lensTo(peerA, 0, 0), gsoMaxBytes, []int{1, 1}},
		// 64 segments at most.
		{"64 segments", lensTo(peerA, repeat(100, 64)...), gsoMaxBytes, []int{64}},
		{"65 segments", lensTo(peerA, repeat(100, 65)...), gsoMaxBytes, []int{64, 1}},
		{"200 segments", lensTo(peerA, repeat(100, 200)...), gsoMaxBytes, []int{64, 64, 64, 8}},
		// 65507 bytes at most: 46 x 1400 = 64400, a 47th would be 65800.
		{"bytes 1400", lensTo(peerA, repeat(1400, 50)...), gsoMaxBytes, []int{46, 4}},
		{"bytes exact", lensTo(peerA, append(repeat(1000, 65), 507)...), gsoMaxBytes, []int{64, 2}},
		{"bytes exact fit", lensTo(peerA, 30000, 30000, 5507), gsoMaxBytes, []int{3}},
		{"bytes one over", lensTo(peerA, 30000, 30000, 5508), gsoMaxBytes, []int{2, 1}},
		{"last smaller over the limit", lensTo(peerA, append(repeat(1400, 46), 1200)...), gsoMaxBytes, []int{46, 1}},
		// A refused segment size caps what is coalesced.
		{"above maxSeg", lensTo(peerA, 1500, 1500, 1400, 1400), 1499, []int{1, 1, 2}},
		{"at maxSeg", lensTo(peerA, 1499, 1499), 1499, []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := runs(tt.ds, tt.maxSeg); !slices.Equal(got, tt.want) {
				t.Fatalf("runs %v, want %v", got, tt.want)
			}
		})
	}
}

// alignedBuf returns an 8-byte aligned byte slice, as cmsg buffers must be.
func alignedBuf(n int) []byte {
	w := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), n)
}

// putCmsg appends a cmsg at off and returns the next offset.
func putCmsg(c []byte, off int, level, typ int32, data []byte) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&c[off]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(c[off+unix.CmsgLen(0):], data)
	return off + unix.CmsgSpace(len(data))
}

func TestCmsgs(t *testing.T) {
	// The cmsg WriteBatch sends parses back as the kernel would read it.
	c := alignedBuf(ctlLen)
	putSegmentCmsg(c, 1400)
	msgs, err := unix.ParseSocketControlMessage(c[:unix.CmsgSpace(2)])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("parse: %v %v", msgs, err)
	}
	if h := msgs[0].Header; h.Level != unix.SOL_UDP || h.Type != unix.UDP_SEGMENT || len(msgs[0].Data) != 2 ||
		binary.NativeEndian.Uint16(msgs[0].Data) != 1400 {
		t.Fatalf("UDP_SEGMENT cmsg %+v %x", h, msgs[0].Data)
	}

	gro := binary.NativeEndian.AppendUint32(nil, 1452)
	other := []byte{1, 2, 3, 4, 5, 6, 7}
	tests := []struct {
		name string
		ctl  func(c []byte) int // fills c, returns its length
		want int
	}{
		{"none", func(c []byte) int { return 0 }, 0},
		{"gro", func(c []byte) int { return putCmsg(c, 0, unix.SOL_UDP, unix.UDP_GRO, gro) }, 1452},
		{"after another", func(c []byte) int {
			return putCmsg(c, putCmsg(c, 0, unix.SOL_IP, unix.IP_TTL, other), unix.SOL_UDP, unix.UDP_GRO, gro)
		}, 1452},
		{"other only", func(c []byte) int { return putCmsg(c, 0, unix.SOL_IP, unix.IP_TTL, other) }, 0},
		{"wrong level", func(c []byte) int { return putCmsg(c, 0, unix.SOL_IP, unix.UDP_GRO, gro) }, 0},
		{"short data", func(c []byte) int { return putCmsg(c, 0, unix.SOL_UDP, unix.UDP_GRO, gro[:2]) }, 0},
		{"truncated", func(c []byte) int { return putCmsg(c, 0, unix.SOL_UDP, unix.UDP_GRO, gro) - 8 }, 0},
		{"bad length", func(c []byte) int {
			putCmsg(c, 0, unix.SOL_UDP, unix.UDP_GRO, gro)
			(*unix.Cmsghdr)(unsafe.Pointer(&c[0])).SetLen(4)
			return unix.CmsgSpace(4)
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := alignedBuf(ctlLen)
			if got := groSize(c[:tt.ctl(c)]); got != tt.want {
				t.Fatalf("groSize = %d, want %d", got, tt.want)
			}
		})
	}
}

// groMsg is one message as recv records it: its bytes, segment size, peer;
// bad marks a message to drop whole.
type groMsg struct {
	data []byte
	seg  int
	peer netip.AddrPort
	bad  bool
}

// loadGRO puts msgs into a reader as if recvmmsg had just returned them.
func loadGRO(r *groReader, msgs []groMsg) {
	for i, m := range msgs {
		copy(r.bufs[i], m.data)
		r.lens[i], r.segs[i], r.peers[i] = len(m.data), m.seg, m.peer
		if m.bad {
			r.lens[i] = -1
		}
	}
	r.n, r.next, r.off = len(msgs), 0, 0
}

func ptr[T any](v T) *T { return &v }

// pattern is n bytes starting at byte first, counting up.
func pattern(first, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(first + i)
	}
	return b
}

func TestGRODeliver(t *testing.T) {
	// Three 1000-byte segments and a 300-byte one, coalesced.
	coal := pattern(0, 3300)
	segs := [][]byte{coal[:1000], coal[1000:2000], coal[2000:3000], coal[3000:]}
	single := pattern(7, 500)
	tests := []struct {
		name    string
		msgs    []groMsg
		dsLen   int // datagrams per ReadBatch
		bufLen  int // caller buffer size
		want    [][]byte
		peers   []netip.AddrPort
		batches []int // datagrams per deliver call
		dropped int
		minLen  *int // the socket's Spec.MinLen; nil: gre.MinLen, as for GRE-in-UDP
	}{
		{
			name: "coalesced", msgs: []groMsg{{data: coal, seg: 1000, peer: peerA}},
			dsLen: 8, bufLen: 2048, want: segs, peers: []netip.AddrPort{peerA, peerA, peerA, peerA},
			batches: []int{4},
		},
		{
			name: "exact multiple", msgs: []groMsg{{data: coal[:3000], seg: 1000, peer: peerA}},
			dsLen: 8, bufLen: 2048, want: segs[:3], peers: []netip.AddrPort{peerA, peerA, peerA},
			batches: []int{3},
		},
		{
			name: "not coalesced", msgs: []groMsg{{data: single, peer: peerB}, {data: coal[:1000], peer: peerA}},
			dsLen: 8, bufLen: 2048, want: [][]byte{single, segs[0]}, peers: []netip.AddrPort{peerB, peerA},
			batches: []int{2},
		},
		{
			name:  "mixed, in order",
			msgs:  []groMsg{{data: single, peer: peerB}, {data: coal, seg: 1000, peer: peerA}, {data: single, peer: peerA}},
			dsLen: 8, bufLen: 2048,
			want:    [][]byte{single, segs[0], segs[1], segs[2], segs[3], single},
			peers:   []netip.AddrPort{peerB, peerA, peerA, peerA, peerA, peerA},
			batches: []int{6},
		},
		{
			// ds smaller than what arrived: the rest waits for the next
			// ReadBatch, mid-message too.
			name:  "carry over",
			msgs:  []groMsg{{data: coal, seg: 1000, peer: peerA}, {data: single, peer: peerB}},
			dsLen: 3, bufLen: 2048,
			want:    [][]byte{segs[0], segs[1], segs[2], segs[3], single},
			peers:   []netip.AddrPort{peerA, peerA, peerA, peerA, peerB},
			batches: []int{3, 2},
		},
		{
			name: "one at a time", msgs: []groMsg{{data: coal, seg: 1000, peer: peerA}},
			dsLen: 1, bufLen: 2048, want: segs, peers: []netip.AddrPort{peerA, peerA, peerA, peerA},
			batches: []int{1, 1, 1, 1},
		},
		{
			// A caller buffer too small for a segment drops that segment
			// only (the short last one still fits).
			name: "small caller buffer", msgs: []groMsg{{data: coal, seg: 1000, peer: peerA}},
			dsLen: 8, bufLen: testHeadroom + 999, want: segs[3:], peers: []netip.AddrPort{peerA},
			batches: []int{1}, dropped: 3,
		},
		{
			name: "dropped message", msgs: []groMsg{{data: coal, seg: 1000, peer: peerA, bad: true}, {data: single, peer: peerB}},
			dsLen: 8, bufLen: 2048, want: [][]byte{single}, peers: []netip.AddrPort{peerB},
			batches: []int{1}, dropped: 1,
		},
		{
			// Segments too short for a GRE header are dropped one by one.
			name: "short segments", msgs: []groMsg{{data: pattern(0, 11), seg: 5, peer: peerA}, {data: nil, peer: peerA}},
			dsLen: 8, bufLen: 64, want: [][]byte{pattern(0, 5), pattern(5, 5)}, peers: []netip.AddrPort{peerA, peerA},
			batches: []int{2}, dropped: 2,
		},
		{
			// An ESP-in-UDP socket's minimum (8: SPI and sequence
			// number): the 8-byte segments pass, the 5-byte tail and
			// a 7-byte datagram do not.
			name: "minimum 8", msgs: []groMsg{{data: pattern(0, 21), seg: 8, peer: peerA}, {data: pattern(1, 7), peer: peerB}, {data: pattern(2, 8), peer: peerB}},
			dsLen: 8, bufLen: 64, want: [][]byte{pattern(0, 8), pattern(8, 8), pattern(2, 8)}, peers: []netip.AddrPort{peerA, peerA, peerB},
			batches: []int{3}, dropped: 2, minLen: ptr(8),
		},
		{
			// Minimum 1 (a NAT keepalive is one byte): it passes, an
			// empty datagram does not.
			name: "minimum 1", msgs: []groMsg{{data: []byte{0xff}, peer: peerA}, {data: nil, peer: peerA}},
			dsLen: 8, bufLen: 64, want: [][]byte{{0xff}}, peers: []netip.AddrPort{peerA},
			batches: []int{1}, dropped: 1, minLen: ptr(1),
		},
		{
			name: "minimum 0 takes an empty datagram", msgs: []groMsg{{data: nil, peer: peerA}},
			dsLen: 8, bufLen: 64, want: [][]byte{{}}, peers: []netip.AddrPort{peerA},
			batches: []int{1}, minLen: ptr(0),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			minLen := gre.MinLen
			if tt.minLen != nil {
				minLen = *tt.minLen
			}
			r := newGROReader(minLen)
			loadGRO(r, tt.msgs)
			var got [][]byte
			var peers []netip.AddrPort
			var batches []int
			dropped := 0
			for r.pending() {
				ds := newDatagrams(tt.dsLen, tt.bufLen)
				k, d := r.deliver(ds)
				dropped += d
				if k == 0 {
					continue
				}
				batches = append(batches, k)
				for _, x := range ds[:k] {
					if x.Off != testHeadroom {
						t.Errorf("Off %d, want %d", x.Off, testHeadroom)
					}
					got = append(got, bytes.Clone(x.Payload()))
					peers = append(peers, x.Peer)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d datagrams, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Errorf("datagram %d: %d bytes %x..., want %d bytes %x...", i, len(got[i]), got[i][:min(4, len(got[i]))], len(tt.want[i]), tt.want[i][:min(4, len(tt.want[i]))])
				}
			}
			if !slices.Equal(peers, tt.peers) {
				t.Errorf("peers %v, want %v", peers, tt.peers)
			}
			if !slices.Equal(batches, tt.batches) {
				t.Errorf("batches %v, want %v", batches, tt.batches)
			}
			if dropped != tt.dropped {
				t.Errorf("dropped %d, want %d", dropped, tt.dropped)
			}
		})
	}
}

// TestBuildMessages checks the messages WriteBatch hands the kernel: one
// per GSO run, each gathering its own iovecs, with a UDP_SEGMENT cmsg when
// it has several datagrams; single datagrams after a run use the iovec
// after the run's, not the one with their message's index.
func TestBuildMessages(t *testing.T) {
	s := &sock{transport: nbma.TransportUDP}
	s.gsoOn.Store(true)
	s.gsoMaxSeg.Store(gsoMaxBytes)
	bad := netip.AddrPort{}
	lens := []int{50, 1400, 1400, 1400, 900, 30, 1400, 1400, 60}
	tos := []netip.AddrPort{peerA, peerA, peerA, peerA, peerA, bad, peerB, peerB, peerA}
	ds := newDatagrams(len(lens), 2048)
	for i := range ds {
		setPayload(&ds[i], pattern(i, lens[i]), tos[i])
	}
	w := newWriter()
	var tally sendTally
	var first error
	n := s.build(w, ds, &tally, &first)
	// 50 | 1400 1400 1400 900 | (bad) | 1400 1400 | 60
	wantFirst := []int{0, 1, 6, 8}
	wantCount := []int{1, 4, 2, 1}
	wantSeg := []int{0, 1400, 1400, 0}
	if n != len(wantFirst) || tally.errs != 1 || first == nil {
		t.Fatalf("build = %d messages, %d errors (%v); want %d, 1", n, tally.errs, first, len(wantFirst))
	}
	if !slices.Equal(w.first[:n], wantFirst) || !slices.Equal(w.count[:n], wantCount) {
		t.Fatalf("messages first %v count %v, want %v %v", w.first[:n], w.count[:n], wantFirst, wantCount)
	}
	for i := range n {
		h := &w.m.hdrs[i].Hdr
		iovs := unsafe.Slice(h.Iov, h.Iovlen)
		if len(iovs) != wantCount[i] {
			t.Fatalf("message %d: %d iovecs, want %d", i, len(iovs), wantCount[i])
		}
		for j, iov := range iovs {
			d := &ds[wantFirst[i]+j]
			if got := unsafe.Slice(iov.Base, iov.Len); !bytes.Equal(got, d.Payload()) || &got[0] != &d.Buf[d.Off] {
				t.Errorf("message %d iovec %d is not datagram %d's payload in place", i, j, wantFirst[i]+j)
			}
		}
		seg := 0
		if h.Control != nil {
			seg = -1
			c := unsafe.Slice(h.Control, h.Controllen)
			if msgs, err := unix.ParseSocketControlMessage(c); err == nil && len(msgs) == 1 &&
				msgs[0].Header.Type == unix.UDP_SEGMENT && msgs[0].Header.Level == unix.SOL_UDP {
				seg = int(binary.NativeEndian.Uint16(msgs[0].Data))
			}
		}
		if seg != wantSeg[i] {
			t.Errorf("message %d: UDP_SEGMENT %d, want %d", i, seg, wantSeg[i])
		}
		to, ok := w.m.name(i)
		if want := ds[wantFirst[i]].Peer; !ok || to != want {
			t.Errorf("message %d to %v, want %v", i, to, want)
		}
	}

	// Without GSO every datagram is its own message, and the writer's
	// state left by GSO messages is reset.
	s.gsoOn.Store(false)
	tally, first = sendTally{}, nil
	if n := s.build(w, ds, &tally, &first); n != len(ds)-1 {
		t.Fatalf("build without GSO = %d messages, want %d", n, len(ds)-1)
	}
	for i := range len(ds) - 1 {
		if h := &w.m.hdrs[i].Hdr; h.Iovlen != 1 || h.Control != nil || h.Controllen != 0 {
			t.Errorf("message %d: %d iovecs, control %v/%d", i, h.Iovlen, h.Control, h.Controllen)
		}
	}
}

func TestGSORefused(t *testing.T) {
	s := &sock{transport: nbma.TransportUDP}
	s.gsoOn.Store(true)
	s.gsoMaxSeg.Store(gsoMaxBytes)
	s.gsoRefused(unix.EMSGSIZE, 1500)
	if got := s.gsoMaxSeg.Load(); got != 1499 || !s.gsoOn.Load() {
		t.Fatalf("after EMSGSIZE at 1500: max %d on %v", got, s.gsoOn.Load())
	}
	s.gsoRefused(unix.EINVAL, 1600) // an older message; keeps the lower limit
	s.gsoRefused(unix.ENETUNREACH, 100)
	if got := s.gsoMaxSeg.Load(); got != 1499 || !s.gsoOn.Load() {
		t.Fatalf("max %d on %v", got, s.gsoOn.Load())
	}
	s.gsoRefused(unix.EIO, 1400)
	if s.gsoOn.Load() {
		t.Fatal("GSO still on after EIO")
	}
}

// --- on sockets, in a private network namespace -------------------------

// setOffloads turns c's UDP GSO and GRO on or off, as if the kernel had
// them or not.
func setOffloads(t testing.TB, c *UDPConn, gso, gro bool) {
	t.Helper()
	v := 0
	if gro {
		v = 1
	}
	var serr error
	if err := c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, v)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	c.gsoOn.Store(gso)
	c.groOn = gro
}

func requireOffloads(t testing.TB, cs ...*UDPConn) {
	t.Helper()
	for _, c := range cs {
		if gso, gro := c.Offloads(); !gso || !gro {
			t.Skipf("kernel without UDP GSO (%v) or GRO (%v)", gso, gro)
		}
	}
}

// sendGSOFrames sends frames first..first+n-1 (each bodyLen bytes of body)
// to peer, batch at a time.
func sendGSOFrames(t testing.TB, c Conn, peer netip.AddrPort, first, n, batch, bodyLen int) {
	t.Helper()
	for done := 0; done < n; done += batch {
		k := min(batch, n-done)
		sendFrames(t, c, peer, first+done, k, bodyLen)
	}
}

// TestUDPGSOGRO sends 200 datagrams of 1400 bytes to one peer in batches:
// they must arrive intact, in order, from the right peer, and travel as GSO
// super-datagrams that the receiver gets coalesced (on loopback a GSO skb
// stays one skb to the receiving socket, which with UDP_GRO takes it whole).
func TestUDPGSOGRO(t *testing.T) {
	for _, tc := range []struct {
		name   string
		a, b   netip.AddrPort
		readDs int // datagrams per ReadBatch
	}{
		{"ipv4", netip.AddrPortFrom(lo2, 0), netip.AddrPortFrom(lo1, 0), batchSize},
		{"ipv4 small reads", netip.AddrPortFrom(lo2, 0), netip.AddrPortFrom(lo1, 0), 7},
		{"ipv6", netip.MustParseAddrPort("[::1]:0"), netip.MustParseAddrPort("[::1]:0"), batchSize},
		{"dual-stack to ipv4", netip.MustParseAddrPort("[::]:0"), netip.AddrPortFrom(lo1, 0), batchSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := listenUDPs(t, tc.a, tc.b)
			a, b := cs[0], cs[1]
			requireOffloads(t, a, b)
			const n, batch, size = 200, 50, 1400
			body := size - 8 // greFrame's keyed header is 8 bytes
			to := b.LocalAddr()
			if to.Addr().IsUnspecified() {
				to = netip.AddrPortFrom(lo1, to.Port())
			}
			sendGSOFrames(t, a, to, 0, n, batch, body)
			got := readNWith(t, b, n, tc.readDs, 2048)
			from := a.LocalAddr()
			if from.Addr().IsUnspecified() {
				from = netip.AddrPortFrom(lo1, from.Port())
			}
			checkFrames(t, got, from, 0, body, testHeadroom)

			sa, sb := a.Stats(), b.Stats()
			t.Logf("sender %+v", sa)
			t.Logf("receiver %+v", sb)
			// 4 batches of 50: 46 + 4 each (the 65507-byte limit).
			if sa.Sent != n || sa.SendErrors != 0 || sa.GSOFallbacks != 0 {
				t.Errorf("sender: %+v", sa)
			}
			if sa.GSOMsgs != 8 || sa.SendMsgs != 8 || sa.SendCalls != 4 {
				t.Errorf("sender: %d messages (%d GSO) in %d calls, want 8 (8) in 4", sa.SendMsgs, sa.GSOMsgs, sa.SendCalls)
			}
			if sb.Received != n || sb.Dropped != 0 {
				t.Errorf("receiver: %+v", sb)
			}
			if sb.GROMsgs != 8 || sb.GROSegments != n || sb.RecvMsgs != 8 {
				t.Errorf("receiver: %d messages, %d coalesced holding %d datagrams; want 8, 8, %d", sb.RecvMsgs, sb.GROMsgs, sb.GROSegments, n)
			}
		})
	}
}

// readNWith is readN with batch datagrams of size bytes per ReadBatch.
func readNWith(t testing.TB, c testConn, n, batch, size int) []received {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	defer c.SetReadDeadline(time.Time{})
	ds := newDatagrams(batch, size)
	var got []received
	for len(got) < n {
		for i := range ds {
			ds[i].Off = testHeadroom
		}
		k, err := c.ReadBatch(ds)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d datagrams: %v", len(got), n, err)
		}
		for _, d := range ds[:k] {
			got = append(got, received{d.Peer, d.Off, bytes.Clone(d.Payload())})
		}
	}
	if len(got) != n {
		t.Fatalf("got %d datagrams, want %d", len(got), n)
	}
	return got
}

// TestUDPGSOMixed sends a batch mixing peers and sizes: everything arrives
// in order per peer, runs go out as GSO messages, the rest alone.
func TestUDPGSOMixed(t *testing.T) {
	cs := listenUDPs(t, netip.AddrPortFrom(lo3, 0), netip.AddrPortFrom(lo1, 0), netip.AddrPortFrom(lo2, 0))
	a, b1, b2 := cs[0], cs[1], cs[2]
	requireOffloads(t, a, b1, b2)
	// key, body length, destination
	type frame struct {
		key, body int
		to        *UDPConn
	}
	var frames []frame
	add := func(to *UDPConn, n, body int) {
		for range n {
			frames = append(frames, frame{len(frames), body, to})
		}
	}
	add(b1, 5, 1000) // run of 5
	add(b1, 1, 400)  // shorter: ends it
	add(b2, 3, 1000) // another peer
	add(b1, 1, 1000) // alone: next is larger
	add(b1, 2, 1200) // run of 2
	add(b2, 1, 0)    // 8-byte datagram alone
	ds := newDatagrams(len(frames), 2048)
	for i, f := range frames {
		setPayload(&ds[i], greFrame(f.key, f.body), f.to.LocalAddr())
	}
	if n, err := a.WriteBatch(ds); n != len(ds) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	if s := a.Stats(); s.SendMsgs != 5 || s.GSOMsgs != 3 || s.Sent != uint64(len(frames)) {
		t.Errorf("sender %+v: want 5 messages, 3 of them GSO", s)
	}
	for _, b := range []*UDPConn{b1, b2} {
		var want []frame
		for _, f := range frames {
			if f.to == b {
				want = append(want, f)
			}
		}
		got := readN(t, b, len(want))
		for i, r := range got {
			if !bytes.Equal(r.payload, greFrame(want[i].key, want[i].body)) || r.peer != a.LocalAddr() {
				t.Errorf("%v datagram %d: from %v, %d bytes; want frame %d", b.LocalAddr(), i, r.peer, len(r.payload), want[i].key)
			}
		}
	}
}

// TestUDPGSOTooBigForMTU: with lo's MTU at 1500, 1600-byte datagrams cannot
// be GSO segments (the kernel refuses the message); WriteBatch resends them
// one by one (the kernel fragments each), stops coalescing that size, and
// still coalesces smaller datagrams.
func TestUDPGSOTooBigForMTU(t *testing.T) {
	var a, b *UDPConn
	t.Cleanup(func() { closeAll([]*UDPConn{a, b}) })
	inNetns(t, func() error {
		if err := linkMTU("lo", 1500); err != nil {
			return err
		}
		var err error
		if a, err = listenUDP(netip.AddrPortFrom(lo2, 0)); err != nil {
			return err
		}
		b, err = listenUDP(netip.AddrPortFrom(lo1, 0))
		return err
	})
	requireOffloads(t, a, b)
	sendFrames(t, a, b.LocalAddr(), 0, 10, 1600)
	checkFrames(t, readN(t, b, 10), a.LocalAddr(), 0, 1600, testHeadroom)
	s := a.Stats()
	if s.GSOFallbacks != 1 || s.GSOMsgs != 0 || s.Sent != 10 || s.SendErrors != 0 {
		t.Fatalf("after too-big GSO: %+v", s)
	}
	if max := a.gsoMaxSeg.Load(); max != 1607 {
		t.Errorf("largest coalesced segment now %d, want 1607", max)
	}
	// The same size again goes out uncoalesced without a refusal; smaller
	// datagrams are still coalesced.
	sendFrames(t, a, b.LocalAddr(), 10, 10, 1600)
	sendFrames(t, a, b.LocalAddr(), 20, 10, 1000)
	got := readN(t, b, 20)
	checkFrames(t, got[:10], a.LocalAddr(), 10, 1600, testHeadroom)
	checkFrames(t, got[10:], a.LocalAddr(), 20, 1000, testHeadroom)
	if s := a.Stats(); s.GSOFallbacks != 1 || s.GSOMsgs != 1 || !a.gsoOn.Load() {
		t.Errorf("afterwards: %+v", s)
	}
}

// TestUDPNoOffloads: with GSO and GRO off (old kernels) the UDP socket
// behaves as before: one message per datagram.
func TestUDPNoOffloads(t *testing.T) {
	cs := listenUDPs(t, netip.AddrPortFrom(lo2, 0), netip.AddrPortFrom(lo1, 0))
	a, b := cs[0], cs[1]
	setOffloads(t, a, false, false)
	setOffloads(t, b, false, false)
	sendGSOFrames(t, a, b.LocalAddr(), 0, 100, 50, 1392)
	checkFrames(t, readN(t, b, 100), a.LocalAddr(), 0, 1392, testHeadroom)
	if sa, sb := a.Stats(), b.Stats(); sa.SendMsgs != 100 || sa.GSOMsgs != 0 || sb.RecvMsgs != 100 || sb.GROMsgs != 0 {
		t.Errorf("sender %+v receiver %+v", sa, sb)
	}
	// A GSO sender to a receiver without GRO: the kernel segments for it.
	setOffloads(t, a, true, false)
	sendGSOFrames(t, a, b.LocalAddr(), 100, 100, 50, 1392)
	checkFrames(t, readN(t, b, 100), a.LocalAddr(), 100, 1392, testHeadroom)
	if sa, sb := a.Stats(), b.Stats(); sa.GSOMsgs == 0 || sb.GROMsgs != 0 || sb.Received != 200 {
		t.Errorf("sender %+v receiver %+v", sa, sb)
	}
}

// TestUDPGROCloseWithPending: after Close, ReadBatch reports net.ErrClosed
// even with datagrams of the last recvmmsg still waiting.
func TestUDPGROCloseWithPending(t *testing.T) {
	cs := listenUDPs(t, netip.AddrPortFrom(lo2, 0), netip.AddrPortFrom(lo1, 0))
	a, b := cs[0], cs[1]
	requireOffloads(t, a, b)
	sendFrames(t, a, b.LocalAddr(), 0, 10, 500)
	got := readNWith(t, b, 1, 1, 2048)
	checkFrames(t, got, a.LocalAddr(), 0, 500, testHeadroom)
	if !b.gro.pending() {
		t.Fatal("nothing pending after reading 1 of a 10-datagram GRO message")
	}
	b.Close()
	if _, err := b.ReadBatch(newDatagrams(4, 2048)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadBatch after Close: %v", err)
	}
}

// TestUDPGSOConcurrentWriters: writers sharing a socket each get their own
// coalescing state; every datagram arrives once, intact, and each writer's
// datagrams in the order it sent them.
func TestUDPGSOConcurrentWriters(t *testing.T) {
	cs := listenUDPs(t, netip.AddrPortFrom(lo2, 0), netip.AddrPortFrom(lo1, 0))
	a, b := cs[0], cs[1]
	requireOffloads(t, a, b)
	const writers, batches, per, body = 4, 10, 20, 992
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			ds := newDatagrams(per, 2048)
			for k := range batches {
				for i := range ds {
					setPayload(&ds[i], greFrame(w<<16|k*per+i, body), b.LocalAddr())
				}
				if n, err := a.WriteBatch(ds); n != per || err != nil {
					errc <- fmt.Errorf("writer %d: WriteBatch = %d, %v", w, n, err)
					return
				}
			}
		})
	}
	got := readN(t, b, writers*batches*per)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	next := make([]int, writers)
	for _, r := range got {
		h, _, err := gre.Decode(r.payload)
		if err != nil {
			t.Fatal(err)
		}
		w, seq := int(h.Key>>16), int(h.Key&0xffff)
		if w >= writers || seq != next[w] {
			t.Fatalf("key %#x: want writer %d's datagram %d next", h.Key, w, next[min(w, writers-1)])
		}
		next[w]++
		if !bytes.Equal(r.payload, greFrame(int(h.Key), body)) {
			t.Fatalf("key %#x: corrupt payload", h.Key)
		}
	}
	if s := a.Stats(); s.GSOMsgs != writers*batches {
		t.Errorf("sender %+v: want one GSO message per batch", s)
	}
}
