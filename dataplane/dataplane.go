// Package dataplane moves packets between the overlay device (a tun.Device)
// and the underlay (underlay.Conn): FIB lookup, NHRP cache lookup, GRE
// encapsulation on the way out; GRE decapsulation, key check, delivery to the
// overlay or userspace hairpin forwarding (a hub relaying spoke to spoke) on
// the way in. NHRP packets are handed to the control plane.
//
// Everything is batched: one tun Read and one underlay WriteBatch per batch,
// buffers allocated once per goroutine with headroom so headers are prepended
// in place. The steady state allocates nothing per packet.
package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/dmvpn/dmvpn/capture"
	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/localroute"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp/cache"
	"github.com/dmvpn/dmvpn/underlay"
)

// tunOffset is where inner packets sit in every buffer: room for the
// virtio-net header the TUN needs (10 bytes) in front, and for an outer IPv4
// header plus the largest GRE header when the same buffer is reused for
// encapsulation.
const tunOffset = 64

// maxPacket is the size of each buffer past tunOffset: large enough for the
// TUN's GRO to coalesce TCP segments into one write, as wireguard-go does.
const maxPacket = 65535

// Config is the data plane's part of the tunnel configuration.
type Config struct {
	// Key is the GRE key (RFC 2890) when KeyPresent.
	Key        uint32
	KeyPresent bool
	// Local is this node's overlay address; Subnet the tunnel subnet.
	Local  netip.Addr
	Subnet netip.Prefix
	// Host tells which destinations the host routes out of the tunnel
	// (its LANs): packets for them arriving from the tunnel go to the TUN,
	// never back into the tunnel. Nil means none.
	Host localroute.Table
	// NHS lists the overlay addresses of our next hop servers, in
	// preference order: destinations on the tunnel with no mapping go
	// through the first one we can reach (phase 1 behaviour).
	NHS []netip.Addr
}

// Stats are the data plane's counters.
type Stats struct {
	OverlayRx, OverlayTx       uint64 // packets read from / written to the TUN
	UnderlayRx, UnderlayTx     uint64 // GRE packets received / sent
	Hairpinned                 uint64 // relayed tunnel to tunnel
	ControlRx, ControlTx       uint64 // NHRP packets
	Multicast                  uint64 // copies sent for overlay multicast
	NoRoute, NoPeer, TTLExpire uint64
	KeyMismatch, BadGRE        uint64
	BadInner, Loop             uint64
	WriteErrors                uint64
}

type counters struct {
	overlayRx, overlayTx, underlayRx, underlayTx, hairpinned atomic.Uint64
	controlRx, controlTx, multicast                          atomic.Uint64
	noRoute, noPeer, ttlExpire, keyMismatch, badGRE          atomic.Uint64
	badInner, loop, writeErrors                              atomic.Uint64
}

// ControlFunc receives an NHRP packet from peer over transport t. pkt is only
// valid during the call.
type ControlFunc func(peer netip.AddrPort, t nbma.Transport, pkt []byte)

// MissFunc is told about a next hop on the tunnel with no mapping (phase
// 2 resolves it). It runs on the data path with the cache read-locked: it
// must not block and must not touch the cache.
type MissFunc func(nextHop netip.Addr)

// TransitFunc is told about each packet relayed from one tunnel peer to
// another (phase 3 uses it to send Traffic Indications). pkt is the inner
// packet, valid only during the call.
type TransitFunc func(from netip.AddrPort, t nbma.Transport, pkt []byte)

// Plane is the data plane of one tunnel.
type Plane struct {
	cfg     Config
	dev     tun.Device
	conns   map[nbma.Transport]underlay.Conn
	fib     *fib.Table
	cache   *cache.Cache
	control ControlFunc
	transit atomic.Pointer[TransitFunc]
	miss    atomic.Pointer[MissFunc]
	nhs     atomic.Pointer[[]netip.Addr] // cfg.NHS, replaced by reloads
	log     *slog.Logger
	c       counters

	keyWarn sync.Map // netip.Addr -> time.Time: rate-limits key mismatch logs
	ctlPool sync.Pool

	// taps are the packet captures running (dmvpn capture), copied on
	// write under tapMu; nil when there are none, so that the forwarding
	// loops pay one atomic load per batch for the feature.
	taps  atomic.Pointer[[]*capture.Tap]
	tapMu sync.Mutex
}

// MaxTaps bounds the captures running at once on one data plane.
const MaxTaps = 4

// ErrTooManyTaps is AddTap's answer when MaxTaps captures are running.
var ErrTooManyTaps = errors.New("dataplane: too many captures running")

// AddTap attaches a capture's tap: from now on every packet read from or
// written to the TUN, and every GRE packet received or handed to an
// underlay socket (NHRP included), is offered to it. remove detaches it
// (once; later calls do nothing).
func (p *Plane) AddTap(t *capture.Tap) (remove func(), err error) {
	p.tapMu.Lock()
	defer p.tapMu.Unlock()
	var cur []*capture.Tap
	if l := p.taps.Load(); l != nil {
		cur = *l
	}
	if len(cur) >= MaxTaps {
		return nil, ErrTooManyTaps
	}
	next := append(slices.Clip(cur), t)
	p.taps.Store(&next)
	return sync.OnceFunc(func() { p.removeTap(t) }), nil
}

func (p *Plane) removeTap(t *capture.Tap) {
	p.tapMu.Lock()
	defer p.tapMu.Unlock()
	l := p.taps.Load()
	if l == nil {
		return
	}
	next := slices.DeleteFunc(slices.Clone(*l), func(x *capture.Tap) bool { return x == t })
	if len(next) == 0 {
		p.taps.Store(nil)
		return
	}
	p.taps.Store(&next)
}

// tapInner offers packets crossing the TUN (each at tunOffset in its
// buffer, sizes[i] long; sizes nil: to the end of the buffer).
func tapInner(taps []*capture.Tap, dir capture.Dir, now int64, bufs [][]byte, sizes []int) {
	for i, b := range bufs {
		pkt := b[tunOffset:]
		if sizes != nil {
			pkt = pkt[:sizes[i]]
		}
		for _, t := range taps {
			t.Inner(dir, now, pkt)
		}
	}
}

// tapOuter offers GRE datagrams sent or received on c.
func tapOuter(taps []*capture.Tap, dir capture.Dir, now int64, c underlay.Conn, ds []underlay.Datagram) {
	udp, local := c.Transport() == nbma.TransportUDP, c.LocalAddr()
	for i := range ds {
		for _, t := range taps {
			t.Outer(dir, now, udp, local, ds[i].Peer, ds[i].Payload())
		}
	}
}

// New returns a data plane. conns holds one Conn per transport the node
// listens on.
func New(cfg Config, dev tun.Device, conns []underlay.Conn, f *fib.Table, c *cache.Cache, control ControlFunc, log *slog.Logger) *Plane {
	p := &Plane{cfg: cfg, dev: dev, conns: map[nbma.Transport]underlay.Conn{}, fib: f, cache: c, control: control, log: log}
	for _, c := range conns {
		p.conns[c.Transport()] = c
	}
	p.ctlPool.New = func() any { b := make([]byte, 2048); return &b }
	p.SetNHS(cfg.NHS)
	return p
}

// SetMissFunc installs the hook called for unmapped tunnel next hops.
func (p *Plane) SetMissFunc(f MissFunc) { p.miss.Store(&f) }

// SetTransitFunc installs the hook called for hairpinned packets. Like
// MissFunc it must not block or touch the cache.
func (p *Plane) SetTransitFunc(f TransitFunc) { p.transit.Store(&f) }

// Stats returns a snapshot of the counters.
func (p *Plane) Stats() Stats {
	c := &p.c
	return Stats{
		OverlayRx: c.overlayRx.Load(), OverlayTx: c.overlayTx.Load(),
		UnderlayRx: c.underlayRx.Load(), UnderlayTx: c.underlayTx.Load(),
		Hairpinned: c.hairpinned.Load(), ControlRx: c.controlRx.Load(), ControlTx: c.controlTx.Load(),
		Multicast: c.multicast.Load(), NoRoute: c.noRoute.Load(), NoPeer: c.noPeer.Load(),
		TTLExpire: c.ttlExpire.Load(), KeyMismatch: c.keyMismatch.Load(), BadGRE: c.badGRE.Load(),
		BadInner: c.badInner.Load(), Loop: c.loop.Load(), WriteErrors: c.writeErrors.Load(),
	}
}

func (p *Plane) greHeader(proto uint16) gre.Header {
	return gre.Header{KeyPresent: p.cfg.KeyPresent, Key: p.cfg.Key, Protocol: proto}
}

func (p *Plane) greLen() int {
	if p.cfg.KeyPresent {
		return 8
	}
	return 4
}

// SendNHRP sends an NHRP packet to an NBMA endpoint (engine.Sender).
func (p *Plane) SendNHRP(to netip.AddrPort, t nbma.Transport, pkt []byte) {
	c, ok := p.conns[t]
	if !ok {
		p.log.Warn("no underlay for transport", "transport", t, "to", to)
		return
	}
	bp := p.ctlPool.Get().(*[]byte)
	defer p.ctlPool.Put(bp)
	need := tunOffset + len(pkt)
	if cap(*bp) < need {
		*bp = make([]byte, need)
	}
	buf := (*bp)[:need]
	copy(buf[tunOffset:], pkt)
	h := p.greHeader(gre.ProtoNHRP)
	start, err := gre.Encapsulate(buf, tunOffset, &h)
	if err != nil {
		return
	}
	d := [1]underlay.Datagram{{Buf: buf, Off: start, Len: need - start, Peer: to}}
	if taps := p.taps.Load(); taps != nil {
		tapOuter(*taps, capture.Out, time.Now().UnixNano(), c, d[:])
	}
	if _, err := c.WriteBatch(d[:]); err != nil {
		p.c.writeErrors.Add(1)
		p.log.Debug("send NHRP", "to", to, "err", err)
		return
	}
	p.c.controlTx.Add(1)
}

// innerDst returns the destination of an IPv4 or IPv6 packet and the GRE
// protocol type that carries it.
func innerDst(pkt []byte) (netip.Addr, uint16, bool) {
	dst, ok := inet.IPDestination(pkt)
	if !ok {
		return netip.Addr{}, 0, false
	}
	if dst.Is4() {
		return dst, gre.ProtoIPv4, true
	}
	return dst, gre.ProtoIPv6, true
}

func isMulticast(dst netip.Addr, subnet netip.Prefix) bool {
	if dst.IsMulticast() {
		return true
	}
	// The tunnel subnet's IPv4 broadcast address.
	if dst.Is4() && subnet.Addr().Is4() && subnet.Bits() < 31 && subnet.Contains(dst) {
		b := dst.As4()
		host := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		mask := ^uint32(0) >> subnet.Bits()
		return host&mask == mask
	}
	return false
}

// decTTL decrements the IPv4 TTL / IPv6 hop limit of a forwarded packet,
// updating the IPv4 checksum incrementally (RFC 1624). It reports false when
// the packet must not be forwarded any more.
func decTTL(pkt []byte) bool {
	switch pkt[0] >> 4 {
	case 4:
		if pkt[8] <= 1 {
			return false
		}
		pkt[8]--
		// TTL is the high byte of its 16-bit word: the sum drops by 0x0100.
		sum := uint32(pkt[10])<<8 | uint32(pkt[11])
		sum += 0x0100
		sum = (sum & 0xffff) + (sum >> 16)
		pkt[10], pkt[11] = byte(sum>>8), byte(sum)
	case 6:
		if pkt[7] <= 1 {
			return false
		}
		pkt[7]--
	}
	return true
}

// batch collects datagrams per transport for one WriteBatch each.
type batch struct {
	by map[nbma.Transport][]underlay.Datagram
}

func newBatch(conns map[nbma.Transport]underlay.Conn, size int) *batch {
	b := &batch{by: map[nbma.Transport][]underlay.Datagram{}}
	for t := range conns {
		b.by[t] = make([]underlay.Datagram, 0, size)
	}
	return b
}

// full reports whether the batch for t is at its capacity (adding would
// grow it).
func (b *batch) full(t nbma.Transport) bool {
	s, ok := b.by[t]
	return ok && len(s) == cap(s)
}

func (b *batch) add(t nbma.Transport, d underlay.Datagram) bool {
	s, ok := b.by[t]
	if !ok {
		return false
	}
	b.by[t] = append(s, d)
	return true
}

func (p *Plane) flush(b *batch) {
	taps := p.taps.Load()
	var now int64
	if taps != nil {
		now = time.Now().UnixNano()
	}
	for t, ds := range b.by {
		if len(ds) == 0 {
			continue
		}
		if taps != nil {
			tapOuter(*taps, capture.Out, now, p.conns[t], ds)
		}
		n, err := p.conns[t].WriteBatch(ds)
		p.c.underlayTx.Add(uint64(n))
		if err != nil {
			p.c.writeErrors.Add(uint64(len(ds) - n))
			if !errors.Is(err, net.ErrClosed) {
				p.log.Debug("underlay write", "transport", t, "err", err)
			}
		}
		clear(ds)
		b.by[t] = ds[:0]
	}
}

// lookupPeer finds the NBMA endpoint for an overlay next hop, falling back
// to an NHS for addresses on the tunnel with no mapping.
// It returns the peer's traffic counters too (cache.PeerCounters).
func (p *Plane) lookupPeer(r cache.Reader, nh netip.Addr) (netip.AddrPort, nbma.Transport, *cache.PeerCounters, bool) {
	if ep, t, pc, ok := r.ForwardCounted(nh); ok {
		return ep, t, pc, true
	}
	if f := p.miss.Load(); f != nil && !p.isNHS(nh) && p.cfg.Subnet.Contains(nh) {
		(*f)(nh)
	}
	for _, nhs := range *p.nhs.Load() {
		if ep, t, pc, ok := r.ForwardCounted(nhs); ok {
			return ep, t, pc, true
		}
	}
	return netip.AddrPort{}, 0, nil, false
}

// SetNHS replaces the NHS list (a reload); the data path picks it up at
// its next lookup.
func (p *Plane) SetNHS(nhs []netip.Addr) {
	s := append([]netip.Addr(nil), nhs...)
	p.nhs.Store(&s)
}

func (p *Plane) isNHS(a netip.Addr) bool {
	for _, n := range *p.nhs.Load() {
		if n == a {
			return true
		}
	}
	return false
}

// RunOverlay reads packets from the TUN and sends them into the tunnel until
// the device is closed.
func (p *Plane) RunOverlay() error {
	bs := p.dev.BatchSize()
	bufs := make([][]byte, bs)
	sizes := make([]int, bs)
	for i := range bufs {
		bufs[i] = make([]byte, tunOffset+maxPacket)
	}
	out := newBatch(p.conns, bs*2)
	for {
		n, err := p.dev.Read(bufs, sizes, tunOffset)
		if err != nil {
			if errors.Is(err, tun.ErrTooManySegments) {
				p.c.badInner.Add(1)
				continue
			}
			if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dataplane: overlay read: %w", err)
		}
		p.c.overlayRx.Add(uint64(n))
		if taps := p.taps.Load(); taps != nil {
			tapInner(*taps, capture.Out, time.Now().UnixNano(), bufs[:n], sizes)
		}
		r := p.cache.Reader()
		for i := 0; i < n; i++ {
			pkt := bufs[i][tunOffset : tunOffset+sizes[i]]
			dst, proto, ok := innerDst(pkt)
			if !ok {
				p.c.badInner.Add(1)
				continue
			}
			if isMulticast(dst, p.cfg.Subnet) {
				p.replicate(out, r, bufs[i], len(pkt), proto)
				continue
			}
			route, ok := p.fib.Lookup(dst)
			if !ok {
				p.c.noRoute.Add(1)
				continue
			}
			ep, t, pc, ok := p.lookupPeer(r, route.NextHopFor(dst))
			if !ok {
				p.c.noPeer.Add(1)
				continue
			}
			p.encap(out, bufs[i], tunOffset, len(pkt), proto, ep, t, pc)
		}
		r.Release()
		p.flush(out)
	}
}

// replicate sends an overlay multicast or broadcast packet (at tunOffset in
// buf) to every multicast peer: the GRE header is the same for all of them,
// so the packet is encapsulated once and every datagram points at the same
// bytes (sockets only read them). The batch is flushed whenever it fills,
// so a hub with thousands of spokes sends in bounded batches and allocates
// nothing per peer.
func (p *Plane) replicate(out *batch, r cache.Reader, buf []byte, n int, proto uint16) {
	peers := r.Multicast()
	if len(peers) == 0 {
		return
	}
	h := p.greHeader(proto)
	start, err := gre.Encapsulate(buf[:tunOffset+n], tunOffset, &h)
	if err != nil {
		return
	}
	for _, peer := range peers {
		if out.full(peer.Transport) {
			p.flush(out)
		}
		if out.add(peer.Transport, underlay.Datagram{Buf: buf, Off: start, Len: tunOffset + n - start, Peer: peer.NBMA, Shared: true}) {
			p.c.multicast.Add(1)
			if peer.Counters != nil {
				peer.Counters.Tx(tunOffset + n - start)
			}
		} else {
			p.c.noPeer.Add(1)
		}
	}
}

// encap prepends a GRE header to buf[off:off+n], queues it for ep and
// counts it in the peer's counters pc (when not nil).
func (p *Plane) encap(out *batch, buf []byte, off, n int, proto uint16, ep netip.AddrPort, t nbma.Transport, pc *cache.PeerCounters) bool {
	h := p.greHeader(proto)
	start, err := gre.Encapsulate(buf[:off+n], off, &h)
	if err != nil {
		return false
	}
	if !out.add(t, underlay.Datagram{Buf: buf, Off: start, Len: off + n - start, Peer: ep}) {
		p.c.noPeer.Add(1)
		return false
	}
	if pc != nil {
		pc.Tx(off + n - start)
	}
	return true
}

// ctlPacket is an NHRP packet waiting for the engine; pkt points into the
// batch's read buffer.
type ctlPacket struct {
	peer netip.AddrPort
	pkt  []byte
}

// RunUnderlay reads GRE packets from c until it is closed.
func (p *Plane) RunUnderlay(c underlay.Conn) error {
	bs := c.BatchSize()
	ds := make([]underlay.Datagram, bs)
	for i := range ds {
		ds[i].Buf = make([]byte, tunOffset+maxPacket)
	}
	// Read so that, for the usual header sizes, the inner packet lands at
	// tunOffset and goes to the TUN without a copy.
	readOff := tunOffset - p.greLen()
	if c.Transport() == nbma.TransportGRE {
		readOff -= 20 // the raw socket hands us the outer IPv4 header
	}
	toTun := make([][]byte, 0, bs)
	ctl := make([]ctlPacket, 0, bs)
	out := newBatch(p.conns, bs)
	for {
		for i := range ds {
			ds[i].Off, ds[i].Len = readOff, 0
		}
		n, err := c.ReadBatch(ds)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dataplane: underlay read: %w", err)
		}
		p.c.underlayRx.Add(uint64(n))
		now := time.Now().UnixNano()
		taps := p.taps.Load()
		if taps != nil {
			tapOuter(*taps, capture.In, now, c, ds[:n])
		}
		r := p.cache.Reader()
		for i := 0; i < n; i++ {
			r.Touch(ds[i].Peer, now, ds[i].Len)
			if b := p.receive(r, c, &ds[i], out, &ctl); b != nil {
				toTun = append(toTun, b)
			}
		}
		r.Release()
		// NHRP goes to the engine only now: it writes the cache, which the
		// batch above held read-locked.
		for _, m := range ctl {
			if p.control != nil {
				p.control(m.peer, c.Transport(), m.pkt)
			}
		}
		clear(ctl)
		ctl = ctl[:0]
		if len(toTun) > 0 {
			if taps != nil { // before Write: its GRO coalesces in place
				tapInner(*taps, capture.In, now, toTun, nil)
			}
			if _, err := p.dev.Write(toTun, tunOffset); err != nil {
				p.c.writeErrors.Add(1)
				p.log.Debug("overlay write", "err", err)
			} else {
				p.c.overlayTx.Add(uint64(len(toTun)))
			}
			clear(toTun)
			toTun = toTun[:0]
		}
		p.flush(out)
	}
}

// receive handles one underlay datagram. It returns the buffer to write to
// the TUN (inner packet at tunOffset), or nil when the packet was consumed,
// relayed or dropped.
func (p *Plane) receive(r cache.Reader, c underlay.Conn, d *underlay.Datagram, out *batch, ctl *[]ctlPacket) []byte {
	h, payload, err := gre.Decode(d.Payload())
	if err != nil {
		p.c.badGRE.Add(1)
		return nil
	}
	if h.KeyPresent != p.cfg.KeyPresent || h.Key != p.cfg.Key {
		p.c.keyMismatch.Add(1)
		p.warnKey(d.Peer, h)
		return nil
	}
	if h.Protocol == gre.ProtoNHRP {
		p.c.controlRx.Add(1)
		*ctl = append(*ctl, ctlPacket{peer: d.Peer, pkt: payload})
		return nil
	}
	dst, _, ok := innerDst(payload)
	if !ok || (h.Protocol != gre.ProtoIPv4 && h.Protocol != gre.ProtoIPv6) {
		p.c.badInner.Add(1)
		return nil
	}
	inner := d.Off + (d.Len - len(payload))
	if dst != p.cfg.Local && !isMulticast(dst, p.cfg.Subnet) && !p.hostRoutes(dst) {
		if route, ok := p.fib.Lookup(dst); ok {
			nh := route.NextHopFor(dst)
			if nh != p.cfg.Local {
				p.relay(r, d, inner, payload, nh, h.Protocol, out, c.Transport())
				return nil
			}
		}
	}
	if inner != tunOffset {
		copy(d.Buf[tunOffset:], payload)
	}
	return d.Buf[:tunOffset+len(payload)]
}

// hostRoutes reports whether the host itself routes dst somewhere other than
// the tunnel, so the packet is delivered to it rather than relayed.
func (p *Plane) hostRoutes(dst netip.Addr) bool {
	if p.cfg.Host == nil {
		return false
	}
	_, ok := p.cfg.Host.Local(dst)
	return ok
}

// relay forwards a packet that arrived from the tunnel back into the tunnel
// (a hub between two spokes), in userspace, in the same buffer.
func (p *Plane) relay(r cache.Reader, d *underlay.Datagram, inner int, payload []byte, nh netip.Addr, proto uint16, out *batch, from nbma.Transport) {
	ep, t, pc, ok := p.lookupPeer(r, nh)
	if !ok {
		p.c.noPeer.Add(1)
		return
	}
	if ep == d.Peer {
		p.c.loop.Add(1) // would bounce straight back
		return
	}
	if !decTTL(payload) {
		p.c.ttlExpire.Add(1)
		return
	}
	if f := p.transit.Load(); f != nil {
		(*f)(d.Peer, from, payload)
	}
	if p.encap(out, d.Buf, inner, len(payload), proto, ep, t, pc) {
		p.c.hairpinned.Add(1)
	}
}

func (p *Plane) warnKey(peer netip.AddrPort, h gre.Header) {
	now := time.Now()
	if last, ok := p.keyWarn.Load(peer.Addr()); ok && now.Sub(last.(time.Time)) < time.Minute {
		return
	}
	p.keyWarn.Store(peer.Addr(), now)
	got := "none"
	if h.KeyPresent {
		got = fmt.Sprint(h.Key)
	}
	want := "none"
	if p.cfg.KeyPresent {
		want = fmt.Sprint(p.cfg.Key)
	}
	p.log.Warn("dropping GRE packets with the wrong tunnel key", "from", peer, "key", got, "expected", want)
}
