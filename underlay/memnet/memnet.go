// Package memnet is an in-memory NBMA network for tests: hubs and spokes run
// in one process, unprivileged, and talk through underlay.Conns that behave
// like the socket transports (raw GRE addressed by IP, GRE-in-UDP by IP and
// port), with optional impairments (loss, delay, reordering, a filter hook)
// and home-router NAT.
//
// How a datagram travels, in order:
//  1. WriteBatch copies it (the sender reuses its buffer).
//  2. Source NAT: leaving a NAT's inside prefix for an address outside it,
//     the source becomes the NAT's public address (see AddNAT).
//  3. Destination NAT: sent to a NAT's public address, it is translated
//     back to an inside host if a mapping lets it in, else dropped. A
//     private (inside) address is unreachable from outside its NAT.
//  4. The filter (SetFilter) may drop it.
//  5. Nobody listening at the destination: dropped.
//  6. The link's impairment (SetImpairment, SetLinkImpairment): random loss,
//     reordering, then delay, which runs on the Network's clock, so with a
//     clock.Fake nothing delayed arrives until the test calls Advance.
//  7. It is queued at the receiving Conn, whose ReadBatch returns it with
//     Peer set to the source as seen after NAT.
//
// Links, impairments and the filter name hosts by their real addresses
// (the ones they Listen on), never by NAT public addresses. Every drop is
// counted, both per Conn and in Network.Stats.
package memnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmvpn/dmvpn/clock"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/underlay"
)

const (
	// BatchSize is what every memnet Conn reports as its batch size.
	BatchSize = 128
	// DefaultQueueLimit is how many datagrams a Conn holds unread before
	// further ones are dropped (like a full socket buffer).
	DefaultQueueLimit = 4096
	// DefaultSeed seeds the loss generator until SetSeed is called, so runs
	// are reproducible by default.
	DefaultSeed = 1

	firstEphemeralPort = 49152
	firstNATPort       = 10000
)

// Impairment describes what a link does to the datagrams crossing it. The
// zero value is a perfect link.
type Impairment struct {
	// Loss is the probability in [0, 1] that a datagram is dropped.
	Loss float64
	// Delay is added to every datagram, on the Network's clock.
	Delay time.Duration
	// ReorderEvery > 0 holds back every Nth datagram on a link and
	// releases it right after the next one, so they arrive swapped.
	ReorderEvery int
	// ReorderTimeout, if positive, releases a held-back datagram after
	// this long on the clock when no later datagram has come to overtake
	// it. Zero holds it until one does (or the impairment changes).
	ReorderTimeout time.Duration
}

// NATMode says what a NAT does with raw GRE, which has no ports to
// translate. UDP is translated the same way in both modes.
type NATMode uint8

const (
	// NATModeUDPOnly drops every protocol-47 packet crossing the NAT in
	// either direction, like the lab's nat3 by default.
	NATModeUDPOnly NATMode = iota + 1
	// NATModePermissive passes GRE the way Linux masquerade does: tracked
	// by IP pair (public address, outside host), so only one inside host
	// at a time can talk GRE to a given outside host; another inside host
	// trying to is silently dropped.
	NATModePermissive
)

func (m NATMode) String() string {
	switch m {
	case NATModeUDPOnly:
		return "udp-only"
	case NATModePermissive:
		return "permissive"
	}
	return fmt.Sprintf("natmode(%d)", uint8(m))
}

// Stats counts datagrams over the whole Network. A datagram that has been
// sent is eventually either delivered or dropped for exactly one reason;
// the difference is still in flight (delayed or held back for reordering).
type Stats struct {
	Sent      uint64 // accepted by some WriteBatch
	Delivered uint64 // queued at the receiving Conn
	Received  uint64 // returned by some ReadBatch
	Delayed   uint64 // scheduled on the clock because of a Delay
	Reordered uint64 // held back to be overtaken

	DroppedLoss       uint64 // random loss
	DroppedFilter     uint64 // the filter said no
	DroppedNAT        uint64 // NAT: GRE in udp-only mode, GRE tuple clash, no mapping, private destination, hairpin
	DroppedNoListener uint64 // nobody listens at the destination
	DroppedQueueFull  uint64 // the receiver's queue was full
	DroppedClosed     uint64 // the receiver closed while it was in flight or queued
	DroppedTooBig     uint64 // did not fit the buffer the receiver passed to ReadBatch
}

// Dropped is the total of all drop counters.
func (s Stats) Dropped() uint64 {
	return s.DroppedLoss + s.DroppedFilter + s.DroppedNAT + s.DroppedNoListener +
		s.DroppedQueueFull + s.DroppedClosed + s.DroppedTooBig
}

type netCounters struct {
	sent, delivered, received, delayed, reordered            atomic.Uint64
	loss, filter, nat, noListener, queueFull, closed, tooBig atomic.Uint64
}

// FilterFunc decides whether a datagram goes on (true) or is dropped
// (false). from and to are the real addresses of the sending and receiving
// hosts (to is the addressed destination when nothing will receive it).
// It runs without the Network's lock, possibly concurrently for datagrams
// from different senders; it may change pkt in place (to corrupt it) but
// must not keep it.
type FilterFunc func(from, to netip.AddrPort, t nbma.Transport, pkt []byte) bool

// Network is an in-memory NBMA network. All methods are safe for concurrent
// use and may be called at any time.
type Network struct {
	clk clock.Clock

	mu         sync.Mutex
	rng        *rand.Rand
	conns      map[endpoint]*Conn
	def        Impairment
	links      map[hostPair]Impairment
	linkState  map[hostPair]*linkState
	filter     FilterFunc
	nats       []*natBox
	queueLimit atomic.Int64

	stats netCounters
	pool  sync.Pool // *packet
}

type endpoint struct {
	t  nbma.Transport
	ap netip.AddrPort
}

type hostPair struct{ src, dst netip.Addr }

// linkState is the reordering state of one directed host pair.
type linkState struct {
	count int
	held  *packet
	timer clock.Timer
}

// packet is one datagram in flight. Packets are pooled, so steady traffic
// without delay allocates nothing.
type packet struct {
	buf    []byte
	from   netip.AddrPort // source as the receiver sees it (after NAT)
	to     *Conn
	sender *Conn
}

// New returns an empty network on clk (clock.Real{} if nil).
func New(clk clock.Clock) *Network {
	if clk == nil {
		clk = clock.Real{}
	}
	n := &Network{
		clk:       clk,
		rng:       newRand(DefaultSeed),
		conns:     make(map[endpoint]*Conn),
		links:     make(map[hostPair]Impairment),
		linkState: make(map[hostPair]*linkState),
	}
	n.queueLimit.Store(DefaultQueueLimit)
	n.pool.New = func() any { return new(packet) }
	return n
}

func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// SetSeed reseeds the loss generator. The same seed and the same sequence
// of datagrams give the same losses.
func (n *Network) SetSeed(seed uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rng = newRand(seed)
}

// SetImpairment sets the impairment of every link that has none of its own.
// Datagrams held back for reordering are released.
func (n *Network) SetImpairment(imp Impairment) {
	n.mu.Lock()
	n.def = imp
	held := n.releaseHeldLocked(nil)
	n.mu.Unlock()
	n.sendNow(held)
}

// SetLinkImpairment sets the impairment of datagrams from host src to host
// dst (one direction; call it twice for both), overriding SetImpairment.
func (n *Network) SetLinkImpairment(src, dst netip.Addr, imp Impairment) {
	k := hostPair{src.Unmap(), dst.Unmap()}
	n.mu.Lock()
	n.links[k] = imp
	held := n.releaseHeldLocked(&k)
	n.mu.Unlock()
	n.sendNow(held)
}

// ClearLinkImpairment makes the link from src to dst follow SetImpairment
// again.
func (n *Network) ClearLinkImpairment(src, dst netip.Addr) {
	k := hostPair{src.Unmap(), dst.Unmap()}
	n.mu.Lock()
	delete(n.links, k)
	held := n.releaseHeldLocked(&k)
	n.mu.Unlock()
	n.sendNow(held)
}

// SetFilter installs f (nil removes it); see FilterFunc.
func (n *Network) SetFilter(f FilterFunc) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.filter = f
}

// SetQueueLimit sets how many unread datagrams each Conn holds before it
// drops more (DefaultQueueLimit to start with).
func (n *Network) SetQueueLimit(limit int) {
	n.queueLimit.Store(int64(max(limit, 1)))
}

// Stats returns the network-wide counters.
func (n *Network) Stats() Stats {
	c := &n.stats
	return Stats{
		Sent:              c.sent.Load(),
		Delivered:         c.delivered.Load(),
		Received:          c.received.Load(),
		Delayed:           c.delayed.Load(),
		Reordered:         c.reordered.Load(),
		DroppedLoss:       c.loss.Load(),
		DroppedFilter:     c.filter.Load(),
		DroppedNAT:        c.nat.Load(),
		DroppedNoListener: c.noListener.Load(),
		DroppedQueueFull:  c.queueFull.Load(),
		DroppedClosed:     c.closed.Load(),
		DroppedTooBig:     c.tooBig.Load(),
	}
}

// Listen attaches a host endpoint to the network. For TransportGRE addr's
// port must be 0; for TransportUDP port 0 picks a free port. The address
// must be a specific IPv4 or IPv6 address.
func (n *Network) Listen(addr netip.AddrPort, t nbma.Transport) (underlay.Conn, error) {
	c, err := n.listen(addr, t)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ListenConn is Listen returning the concrete type, for tests that want
// Stats or Pending without a type assertion.
func (n *Network) ListenConn(addr netip.AddrPort, t nbma.Transport) (*Conn, error) {
	return n.listen(addr, t)
}

func (n *Network) listen(addr netip.AddrPort, t nbma.Transport) (*Conn, error) {
	a := addr.Addr().Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return nil, fmt.Errorf("memnet: listen on %v: need a specific address", addr)
	}
	switch t {
	case nbma.TransportGRE:
		if addr.Port() != 0 {
			return nil, fmt.Errorf("memnet: listen on %v: raw GRE has no port", addr)
		}
	case nbma.TransportUDP:
	default:
		return nil, fmt.Errorf("memnet: listen on %v: unknown transport %v", addr, t)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	ap := netip.AddrPortFrom(a, addr.Port())
	if t == nbma.TransportUDP && ap.Port() == 0 {
		for p := firstEphemeralPort; ; p++ {
			if p > 65535 {
				return nil, fmt.Errorf("memnet: listen on %v: no free port", addr)
			}
			cand := netip.AddrPortFrom(a, uint16(p))
			if _, used := n.conns[endpoint{t, cand}]; !used {
				ap = cand
				break
			}
		}
	}
	e := endpoint{t, ap}
	if _, used := n.conns[e]; used {
		return nil, fmt.Errorf("memnet: listen on %v %v: address already in use", t, ap)
	}
	c := &Conn{
		net:    n,
		t:      t,
		local:  ap,
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	n.conns[e] = c
	return c, nil
}

// AddNAT puts the hosts in inside behind a NAT whose public address is
// public, behaving like a home router:
//   - A datagram from an inside host to an address outside the prefix
//     leaves with source public. UDP keeps its source port if no other
//     inside endpoint holds that public port, else gets a free one
//     (10000 and up); the mapping is per inside endpoint, whatever the
//     destination. Raw GRE follows mode.
//   - A datagram to the public address is let in only as a reply: UDP to a
//     mapped port from an outside endpoint the inside endpoint has sent to
//     through that mapping; GRE (permissive mode) from an outside host the
//     inside host has sent GRE to. Anything else is dropped, unless a Conn
//     listens on the public address itself (the router's own service).
//   - Inside hosts reach each other directly; inside addresses cannot be
//     reached from outside; there is no hairpinning (an inside host sending
//     to its own NAT's public address is dropped).
//
// Mappings never expire (use ResetNAT). Inside prefixes must not overlap.
func (n *Network) AddNAT(inside netip.Prefix, public netip.Addr, mode NATMode) error {
	inside = inside.Masked()
	public = public.Unmap()
	if !inside.IsValid() || !public.IsValid() {
		return fmt.Errorf("memnet: NAT %v -> %v: invalid prefix or address", inside, public)
	}
	if mode != NATModeUDPOnly && mode != NATModePermissive {
		return fmt.Errorf("memnet: NAT %v -> %v: unknown mode %v", inside, public, mode)
	}
	if inside.Contains(public) {
		return fmt.Errorf("memnet: NAT %v: public address %v is inside", inside, public)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, b := range n.nats {
		if b.inside.Overlaps(inside) {
			return fmt.Errorf("memnet: NAT %v overlaps NAT %v", inside, b.inside)
		}
		if b.public == public {
			return fmt.Errorf("memnet: public address %v already used by NAT %v", public, b.inside)
		}
	}
	n.nats = append(n.nats, newNATBox(inside, public, mode))
	return nil
}

// ResetNAT forgets every mapping of the NAT with this public address, as if
// the router rebooted. It reports whether there was such a NAT.
func (n *Network) ResetNAT(public netip.Addr) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, b := range n.nats {
		if b.public == public.Unmap() {
			n.nats[i] = newNATBox(b.inside, b.public, b.mode)
			return true
		}
	}
	return false
}

// natInside returns the NAT whose inside prefix holds a, if any.
func (n *Network) natInside(a netip.Addr) *natBox {
	for _, b := range n.nats {
		if b.inside.Contains(a) {
			return b
		}
	}
	return nil
}

// natPublic returns the NAT whose public address is a, if any.
func (n *Network) natPublic(a netip.Addr) *natBox {
	for _, b := range n.nats {
		if b.public == a {
			return b
		}
	}
	return nil
}

func (n *Network) impairment(k hostPair) Impairment {
	if imp, ok := n.links[k]; ok {
		return imp
	}
	return n.def
}

// send moves one datagram from c to dst. It owns p.
func (n *Network) send(c *Conn, dst netip.AddrPort, p *packet) {
	n.stats.sent.Add(1)
	src := c.local
	t := c.t

	n.mu.Lock()
	from, to, ok := n.route(t, src, dst)
	if !ok {
		n.mu.Unlock()
		n.drop(p, &n.stats.nat)
		return
	}
	filter := n.filter
	n.mu.Unlock()

	if filter != nil && !filter(src, to, t, p.buf) {
		n.drop(p, &n.stats.filter)
		return
	}

	n.mu.Lock()
	recv := n.conns[endpoint{t, to}]
	if recv == nil {
		n.mu.Unlock()
		n.drop(p, &n.stats.noListener)
		return
	}
	p.from, p.to = from, recv
	k := hostPair{src.Addr(), to.Addr()}
	imp := n.impairment(k)
	if imp.Loss > 0 && n.rng.Float64() < imp.Loss {
		n.mu.Unlock()
		n.drop(p, &n.stats.loss)
		return
	}
	var out [2]*packet // p, then a held-back packet it overtakes
	out[0] = p
	if imp.ReorderEvery > 0 {
		st := n.linkState[k]
		if st == nil {
			st = new(linkState)
			n.linkState[k] = st
		}
		st.count++
		switch {
		case st.held != nil:
			out[1] = st.held
			st.held = nil
			if st.timer != nil {
				st.timer.Stop()
				st.timer = nil
			}
		case st.count%imp.ReorderEvery == 0:
			st.held = p
			n.stats.reordered.Add(1)
			if imp.ReorderTimeout > 0 {
				st.timer = n.clk.AfterFunc(imp.ReorderTimeout, func() { n.releaseHeld(k, p) })
			}
			n.mu.Unlock()
			return
		}
	}
	if imp.Delay > 0 {
		for _, q := range out {
			if q != nil {
				n.stats.delayed.Add(1)
				n.clk.AfterFunc(imp.Delay, func() { n.deliver(q) })
			}
		}
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	n.sendNow(out[:])
}

// route applies source and destination NAT to a datagram from src to dst.
// It returns the source the receiver will see and the real destination.
func (n *Network) route(t nbma.Transport, src, dst netip.AddrPort) (from, to netip.AddrPort, ok bool) {
	from, to = src, dst
	sbox := n.natInside(src.Addr())
	if sbox != nil && !sbox.inside.Contains(dst.Addr()) {
		if dst.Addr() == sbox.public {
			return from, to, false // no hairpinning
		}
		if from, ok = sbox.outbound(t, src, dst); !ok {
			return from, to, false
		}
	}
	if dbox := n.natPublic(dst.Addr()); dbox != nil {
		if inside, ok := dbox.inbound(t, from, dst); ok {
			return from, inside, true
		}
		if _, self := n.conns[endpoint{t, dst}]; self {
			return from, dst, true
		}
		return from, to, false
	}
	if dbox := n.natInside(dst.Addr()); dbox != nil && dbox != sbox {
		return from, to, false // private address, unreachable from outside
	}
	return from, to, true
}

// releaseHeld delivers p if it is still held back on link k (reorder
// timeout).
func (n *Network) releaseHeld(k hostPair, p *packet) {
	n.mu.Lock()
	st := n.linkState[k]
	if st == nil || st.held != p {
		n.mu.Unlock()
		return
	}
	st.held, st.timer = nil, nil
	delay := n.impairment(k).Delay
	if delay > 0 {
		n.stats.delayed.Add(1)
		n.clk.AfterFunc(delay, func() { n.deliver(p) })
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	n.deliver(p)
}

// releaseHeldLocked takes every held-back packet (on link *only, or all
// links) out of the reordering state and returns them.
func (n *Network) releaseHeldLocked(only *hostPair) []*packet {
	var out []*packet
	for k, st := range n.linkState {
		if only != nil && k != *only {
			continue
		}
		if st.held != nil {
			out = append(out, st.held)
			if st.timer != nil {
				st.timer.Stop()
			}
		}
		delete(n.linkState, k)
	}
	return out
}

func (n *Network) sendNow(ps []*packet) {
	for _, p := range ps {
		if p != nil {
			n.deliver(p)
		}
	}
}

// deliver queues p at its receiver.
func (n *Network) deliver(p *packet) {
	to := p.to
	to.mu.Lock()
	switch {
	case to.closed:
		to.mu.Unlock()
		n.drop(p, &n.stats.closed)
		return
	case int64(len(to.queue)) >= n.queueLimit.Load():
		to.mu.Unlock()
		to.stats.dropped.Add(1)
		n.drop(p, &n.stats.queueFull)
		return
	}
	to.queue = append(to.queue, p)
	to.mu.Unlock()
	n.stats.delivered.Add(1)
	select {
	case to.notify <- struct{}{}:
	default:
	}
}

// drop counts p as dropped for reason and recycles it.
func (n *Network) drop(p *packet, reason *atomic.Uint64) {
	reason.Add(1)
	if p.sender != nil {
		p.sender.stats.dropped.Add(1)
	}
	n.putPacket(p)
}

func (n *Network) getPacket(b []byte, sender *Conn) *packet {
	p := n.pool.Get().(*packet)
	if cap(p.buf) < len(b) {
		p.buf = make([]byte, len(b), max(len(b), 2048))
	}
	p.buf = p.buf[:len(b)]
	copy(p.buf, b)
	p.sender = sender
	return p
}

func (n *Network) putPacket(p *packet) {
	p.to, p.sender, p.from = nil, nil, netip.AddrPort{}
	n.pool.Put(p)
}

// Conn is one host endpoint on a Network. It implements underlay.Conn and
// underlay.StatsConn.
type Conn struct {
	net   *Network
	t     nbma.Transport
	local netip.AddrPort

	mu     sync.Mutex
	queue  []*packet
	closed bool
	notify chan struct{} // a datagram was queued (capacity 1)
	done   chan struct{} // closed by Close

	stats struct {
		sent, received, dropped, sendErrors atomic.Uint64
	}
}

var _ underlay.StatsConn = (*Conn)(nil)

// ReadBatch implements underlay.Conn. It blocks until a datagram is queued
// or the Conn is closed. A datagram larger than the room after ds[i].Off is
// dropped (counted as DroppedTooBig).
func (c *Conn) ReadBatch(ds []underlay.Datagram) (int, error) {
	if len(ds) == 0 {
		return 0, nil
	}
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return 0, net.ErrClosed
		}
		if len(c.queue) == 0 {
			c.mu.Unlock()
			select {
			case <-c.notify:
			case <-c.done:
			}
			continue
		}
		k, used := 0, 0
		var tooBig uint64
		for used < len(c.queue) && k < len(ds) {
			p := c.queue[used]
			used++
			d := &ds[k]
			if d.Off < 0 || d.Off > len(d.Buf) || len(d.Buf)-d.Off < len(p.buf) {
				tooBig++
				c.net.putPacket(p)
				continue
			}
			d.Len = copy(d.Buf[d.Off:], p.buf)
			d.Peer = p.from
			k++
			c.net.putPacket(p)
		}
		rest := copy(c.queue, c.queue[used:])
		clear(c.queue[rest:])
		c.queue = c.queue[:rest]
		c.mu.Unlock()
		if tooBig > 0 {
			c.stats.dropped.Add(tooBig)
			c.net.stats.tooBig.Add(tooBig)
		}
		if k > 0 {
			c.stats.received.Add(uint64(k))
			c.net.stats.received.Add(uint64(k))
			return k, nil
		}
	}
}

// WriteBatch implements underlay.Conn. Datagrams to an address nobody
// listens on, or lost on the way, count as sent: the network drops them
// silently (and counts them). Only a bad destination is an error: not a
// specific address, or port 0 on UDP (a raw GRE peer's port is ignored).
func (c *Conn) WriteBatch(ds []underlay.Datagram) (int, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	sent, bad := 0, 0
	var first error
	for i := range ds {
		dst, ok := c.dest(ds[i].Peer)
		if !ok {
			bad++
			if first == nil {
				first = fmt.Errorf("memnet: cannot send to %v over %v from %v", ds[i].Peer, c.t, c.local)
			}
			continue
		}
		c.net.send(c, dst, c.net.getPacket(ds[i].Payload(), c))
		sent++
	}
	c.stats.sent.Add(uint64(sent))
	if bad > 0 {
		c.stats.sendErrors.Add(uint64(bad))
	}
	return sent, first
}

func (c *Conn) dest(p netip.AddrPort) (netip.AddrPort, bool) {
	a := p.Addr().Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return netip.AddrPort{}, false
	}
	if c.t == nbma.TransportGRE {
		return netip.AddrPortFrom(a, 0), true
	}
	if p.Port() == 0 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, p.Port()), true
}

// BatchSize implements underlay.Conn.
func (c *Conn) BatchSize() int { return BatchSize }

// Transport implements underlay.Conn.
func (c *Conn) Transport() nbma.Transport { return c.t }

// LocalAddr implements underlay.Conn: the host's real address (port 0 for
// raw GRE), not what a NAT turns it into.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// Pending returns how many datagrams are queued unread.
func (c *Conn) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Stats returns the Conn's counters. Dropped counts datagrams this Conn sent
// that the network dropped, and datagrams for it that it could not take
// (full queue, too big for the read buffer).
func (c *Conn) Stats() underlay.ConnStats {
	return underlay.ConnStats{
		Sent:       c.stats.sent.Load(),
		Received:   c.stats.received.Load(),
		Dropped:    c.stats.dropped.Load(),
		SendErrors: c.stats.sendErrors.Load(),
	}
}

// Close implements underlay.Conn: it detaches the endpoint, drops whatever
// is queued or still in flight to it, and wakes a blocked ReadBatch, which
// returns net.ErrClosed. Closing twice is harmless.
func (c *Conn) Close() error {
	n := c.net
	n.mu.Lock()
	e := endpoint{c.t, c.local}
	if n.conns[e] == c {
		delete(n.conns, e)
	}
	n.mu.Unlock()

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	q := c.queue
	c.queue = nil
	c.mu.Unlock()
	close(c.done)
	for _, p := range q {
		n.drop(p, &n.stats.closed)
	}
	return nil
}

// natBox is the state of one NAT.
type natBox struct {
	inside netip.Prefix
	public netip.Addr
	mode   NATMode

	// UDP: one mapping per inside endpoint (endpoint-independent
	// mapping), letting in only remotes it has sent to.
	byInside map[netip.AddrPort]*udpMapping
	byPort   map[uint16]*udpMapping
	nextPort int

	// GRE (permissive): outside host -> the inside host talking GRE to it.
	gre map[netip.Addr]netip.Addr
}

type udpMapping struct {
	inside  netip.AddrPort
	port    uint16
	remotes map[netip.AddrPort]struct{}
}

func newNATBox(inside netip.Prefix, public netip.Addr, mode NATMode) *natBox {
	return &natBox{
		inside:   inside,
		public:   public,
		mode:     mode,
		byInside: make(map[netip.AddrPort]*udpMapping),
		byPort:   make(map[uint16]*udpMapping),
		nextPort: firstNATPort,
		gre:      make(map[netip.Addr]netip.Addr),
	}
}

var errNoPorts = errors.New("memnet: NAT out of ports")

// outbound translates the source of a datagram leaving the inside.
func (b *natBox) outbound(t nbma.Transport, src, dst netip.AddrPort) (netip.AddrPort, bool) {
	if t == nbma.TransportGRE {
		if b.mode != NATModePermissive {
			return netip.AddrPort{}, false
		}
		if owner, ok := b.gre[dst.Addr()]; ok && owner != src.Addr() {
			return netip.AddrPort{}, false // tuple clash: no port to tell them apart
		}
		b.gre[dst.Addr()] = src.Addr()
		return netip.AddrPortFrom(b.public, 0), true
	}
	m := b.byInside[src]
	if m == nil {
		port, err := b.freePort(src.Port())
		if err != nil {
			return netip.AddrPort{}, false
		}
		m = &udpMapping{inside: src, port: port, remotes: make(map[netip.AddrPort]struct{})}
		b.byInside[src] = m
		b.byPort[port] = m
	}
	if _, ok := m.remotes[dst]; !ok {
		m.remotes[dst] = struct{}{}
	}
	return netip.AddrPortFrom(b.public, m.port), true
}

func (b *natBox) freePort(want uint16) (uint16, error) {
	if _, used := b.byPort[want]; !used && want != 0 {
		return want, nil
	}
	for range 65536 - firstNATPort {
		p := uint16(b.nextPort)
		b.nextPort++
		if b.nextPort > 65535 {
			b.nextPort = firstNATPort
		}
		if _, used := b.byPort[p]; !used {
			return p, nil
		}
	}
	return 0, errNoPorts
}

// inbound translates a datagram sent to the public address back to the
// inside host it answers, if any.
func (b *natBox) inbound(t nbma.Transport, from, dst netip.AddrPort) (netip.AddrPort, bool) {
	if t == nbma.TransportGRE {
		if b.mode != NATModePermissive {
			return netip.AddrPort{}, false
		}
		owner, ok := b.gre[from.Addr()]
		if !ok {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(owner, 0), true
	}
	m := b.byPort[dst.Port()]
	if m == nil {
		return netip.AddrPort{}, false
	}
	if _, ok := m.remotes[from]; !ok {
		return netip.AddrPort{}, false
	}
	return m.inside, true
}
