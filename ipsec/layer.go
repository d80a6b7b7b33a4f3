// Package ipsec puts ESP (RFC 4303) between the data plane and the underlay
// sockets: a Layer holds the node's Child SAs (the SA database, by peer and
// by inbound SPI) and offers the data plane one underlay.Conn per transport
// that seals every datagram written to a peer with the peer's outbound SA
// and opens every ESP packet read with the inbound SA its SPI names. The
// data plane keeps speaking GRE to "a peer over a transport" and never sees
// ESP; the sockets keep moving bytes of IP protocol 50 or UDP port 4500 and
// never see GRE.
//
// # Where it sits
//
//	data plane (GRE)  --WriteBatch-->  Face(GRE)  --seal-->  raw socket, IP protocol 50
//	                                   Face(UDP)  --seal-->  UDP 4500 (RFC 3948)
//	data plane (GRE)  <--ReadBatch--   Face(GRE)  <--open--  raw socket, IP protocol 50
//	                                   Face(UDP)  <--open--  UDP 4500: ESP; IKE (non-ESP
//	                                                         marker) to Config.OnIKE
//
// The transport label keeps its meaning for the rest of the node: "GRE"
// is the raw IP transport (now protocol 50 instead of 47), "UDP" the UDP
// one (now ESP-in-UDP on 4500 instead of GRE-in-UDP). A peer is its NBMA
// endpoint exactly as the data plane and the NHRP cache name it: address and
// port 0 over raw ESP, address and port (a NAT's mapping) over ESP-in-UDP, so
// several spokes behind one NAT each have their own SA.
//
// # No clear text, no waiting
//
// A datagram for a peer without an outbound SA is never sent as it is: it
// is copied into the peer's small waiting queue (QueueLen packets; at most
// MaxWaiting peers wait at once, each for at most WaitTimeout) and
// Config.OnNeedSA is told, once per wait, so the node can start IKE. When
// the SA is installed and active the queue leaves at once, in order. The
// data plane's goroutine never blocks on any of it: a full queue drops and
// counts.
//
// # Rekeying, make before break
//
// Install adds a Child SA's inbound side at once (so the peer may use it as
// soon as it likes) and, unless told to stand by, makes its outbound side
// the peer's current one; Activate switches a standing-by SA to current;
// Remove ends an SA's outbound use at once but keeps its inbound side for
// Linger, for packets already in flight. So across a rekey a peer always has
// exactly one current outbound SA and every packet sent on either SA opens.
//
// # Concurrency
//
// The SA tables are read on every packet by the data plane's goroutines and
// changed rarely, by the node's control loop: they sit behind one RWMutex
// taken for reading once per batch (writes copy nothing: a change is O(1)).
// Each esp.SA serialises its own Seal/Open. Counters are atomics.
package ipsec

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/underlay"
)

// Defaults and bounds.
const (
	// DefaultQueueLen is how many packets wait for one peer's SA.
	DefaultQueueLen = 16
	// DefaultMaxWaiting bounds the peers waiting for an SA at once.
	DefaultMaxWaiting = 1024
	// DefaultWaitTimeout is how long packets wait for an SA before they
	// are dropped (IKE gives up after ~15 s of retransmissions).
	DefaultWaitTimeout = 20 * time.Second
	// DefaultLinger is how long a removed or replaced SA still opens
	// packets in flight.
	DefaultLinger = 3 * time.Second
	// maxQueued is the longest datagram a waiting queue copies.
	maxQueued = 9216
	// trafficEvery is how often, at most, OnTraffic is told about one
	// inbound SA (DPD only needs to know a peer is alive).
	trafficEvery = time.Second
)

// Config is what a Layer needs.
type Config struct {
	// Local is this node's NBMA address: the outer source of tunnel-mode
	// packets and the destination inbound tunnel-mode packets must have.
	Local netip.Addr
	// Raw is the socket of IP protocol 50 (esp.IPProto); UDP the one on
	// UDP 4500 (esp.UDPPort). Either may be nil (that transport is then
	// not offered). The Layer owns them from now on: Close closes them.
	Raw, UDP underlay.Conn
	// Workers is how many cores seal and open one batch (the caller's
	// goroutine and Workers-1 pool workers; see workers.go); 0 or 1: the
	// caller alone. The node passes GOMAXPROCS.
	Workers int
	// QueueLen, MaxWaiting, WaitTimeout, Linger: 0 means the defaults.
	QueueLen    int
	MaxWaiting  int
	WaitTimeout time.Duration
	Linger      time.Duration
	// Now is the clock (nil: time.Now); tests pass a fake one.
	Now func() time.Time
	// OnNeedSA is told that a datagram waits for an SA with peer (its
	// endpoint as the data plane names it, on transport t). It runs on
	// the data plane's goroutine with the Layer's read lock held: it must
	// not block, nor call the Layer or anything that may call it (the IKE
	// engine, whose events install SAs). OnIKE and OnSoftExpired run the
	// same way; OnTraffic runs without the lock.
	OnNeedSA func(peer netip.AddrPort, t nbma.Transport)
	// OnIKE receives an IKE message read on the UDP 4500 socket: payload
	// starts with the non-ESP marker (what ikev2/engine's
	// HandlePacketNATT takes). It runs on the reader's goroutine: copy
	// what you keep, do not block.
	OnIKE func(from netip.AddrPort, payload []byte)
	// OnTraffic is told, at most once a second per SA, that ESP opened on
	// the inbound SA spi (IKE's liveness checks skip live peers). Same
	// rules as OnIKE.
	OnTraffic func(spi uint32)
	// OnSoftExpired is told, once per SA, that an SA passed its soft
	// packet/octet limit (time to rekey). Same rules as OnIKE.
	OnSoftExpired func(inboundSPI uint32)
	Log           *slog.Logger
}

// ChildSA is one Child SA as the Layer installs it: both directions.
type ChildSA struct {
	// Peer is the peer's endpoint: where ESP goes (port 4500 or a NAT's
	// mapping when UDP is set; the port is ignored otherwise).
	Peer netip.AddrPort
	// UDP: ESP-in-UDP (RFC 3948) instead of raw ESP.
	UDP bool
	// BehindNAT: our side is behind a NAT (IKE's NAT detection), so we
	// keep its mapping open with keepalives (RFC 3948 §2.3).
	BehindNAT bool
	// Tunnel: tunnel mode (an IP header inside, Local to Remote carrying
	// GRE) instead of transport mode.
	Tunnel bool
	// Local and Remote are the NBMA hosts the SA protects GRE between.
	Local, Remote netip.Addr
	In, Out       esp.Config
	// Lifetime is the SA's time limit, for show (IKE enforces it).
	Lifetime time.Duration
}

// Key is the endpoint the data plane names a peer of this SA by: its
// address and port over ESP-in-UDP, its address (port 0) over raw ESP.
func (c *ChildSA) Key() netip.AddrPort {
	if c.UDP {
		return c.Peer
	}
	return netip.AddrPortFrom(c.Peer.Addr(), 0)
}

// Errors of Install.
var (
	ErrSPIInUse  = errors.New("ipsec: inbound SPI already installed")
	ErrTransport = errors.New("ipsec: no socket for the SA's transport")
)

// Layer is the ESP layer of one node.
type Layer struct {
	cfg  Config
	raw  *Face
	udp  *Face
	log  *slog.Logger
	now  func() time.Time
	db   sadb
	wait waiting
	// scratch holds the writers' *sendScratch; pool is the crypto
	// workers (nil with one core).
	scratch sync.Pool
	pool    *pool
	c       counters
	close   sync.Once
}

// New returns a Layer over the sockets in cfg.
func New(cfg Config) *Layer {
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.MaxWaiting <= 0 {
		cfg.MaxWaiting = DefaultMaxWaiting
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	if cfg.Linger <= 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	l := &Layer{cfg: cfg, log: cfg.Log, now: cfg.Now}
	l.db.init()
	l.wait.init(cfg.MaxWaiting, cfg.QueueLen)
	l.scratch.New = func() any { return newSendScratch() }
	if cfg.Workers > 1 {
		l.pool = newPool(cfg.Workers - 1)
	}
	if cfg.Raw != nil {
		l.raw = &Face{l: l, conn: cfg.Raw, t: nbma.TransportGRE}
	}
	if cfg.UDP != nil {
		l.udp = &Face{l: l, conn: cfg.UDP, t: nbma.TransportUDP}
	}
	return l
}

// Face returns the Conn the data plane uses for transport t (nil when the
// Layer has no socket for it).
func (l *Layer) Face(t nbma.Transport) *Face {
	switch t {
	case nbma.TransportGRE:
		return l.raw
	case nbma.TransportUDP:
		return l.udp
	}
	return nil
}

// Faces lists the Layer's Conns, raw first.
func (l *Layer) Faces() []underlay.Conn {
	var fs []underlay.Conn
	if l.raw != nil {
		fs = append(fs, l.raw)
	}
	if l.udp != nil {
		fs = append(fs, l.udp)
	}
	return fs
}

func (l *Layer) face(udp bool) *Face {
	if udp {
		return l.udp
	}
	return l.raw
}

// Close closes the sockets (once).
func (l *Layer) Close() error {
	var err error
	l.close.Do(func() {
		if l.pool != nil {
			close(l.pool.stop)
		}
		var errs []error
		for _, f := range []*Face{l.raw, l.udp} {
			if f != nil {
				errs = append(errs, f.conn.Close())
			}
		}
		err = errors.Join(errs...)
	})
	return err
}

// Activation says when an installed SA's outbound side becomes current.
type Activation uint8

const (
	// Now: at once (the peer has the SA: we learned of it from the
	// peer's answer).
	Now Activation = iota
	// OnInbound: when the first packet opens on its inbound side (proof
	// the peer installed it), or after MaxStandby. What an IKE responder
	// uses: its answer is still on its way to the initiator, whose ESP
	// reader could otherwise see our packets before its control plane
	// installed the SA.
	OnInbound
	// Later: only when Activate is called (a rekey answered, until the
	// old SA's delete arrives).
	Later
)

// MaxStandby bounds how long an OnInbound SA waits for the peer's first
// packet before it becomes current anyway.
const MaxStandby = time.Second

// Install adds a Child SA: its inbound side at once, its outbound side as
// the peer's current one when a says so. Packets waiting for the peer
// leave when the outbound side becomes current.
func (l *Layer) Install(c ChildSA, a Activation) error {
	if l.face(c.UDP) == nil {
		return fmt.Errorf("%w (udp %v)", ErrTransport, c.UDP)
	}
	in, err := esp.NewInbound(c.In)
	if err != nil {
		return fmt.Errorf("ipsec: inbound SA %#08x: %w", c.In.SPI, err)
	}
	out, err := esp.NewOutbound(c.Out)
	if err != nil {
		return fmt.Errorf("ipsec: outbound SA %#08x: %w", c.Out.SPI, err)
	}
	now := l.now()
	sa := &childSA{desc: c, key: c.Key(), in: in, out: out, created: now}
	if c.Tunnel {
		sa.outerHdr = tunnelHeaderLen(c.Local)
	}
	if a == OnInbound {
		sa.autoAt = now.Add(MaxStandby)
		sa.auto.Store(true)
	}
	if err := l.db.add(sa); err != nil {
		return err
	}
	if a == Now {
		l.activate(sa)
	}
	return nil
}

// Activate makes the standing-by SA with inbound SPI spi the peer's
// current outbound SA.
func (l *Layer) Activate(spi uint32) bool {
	sa := l.db.bySPI(spi)
	if sa == nil {
		return false
	}
	l.activate(sa)
	return true
}

func (l *Layer) activate(sa *childSA) {
	sa.auto.Store(false)
	if !l.db.setCurrent(sa) {
		return
	}
	l.c.activated.Add(1)
	if q := l.wait.take(sa.key); q != nil {
		l.sendQueued(sa, q)
	}
}

// Remove ends the SA with inbound SPI spi: it stops being used outbound at
// once; its inbound side opens packets for Linger more (Expire removes it).
// It reports whether the SA's peer still has a current outbound SA (false:
// the peer has lost its protection, and the node's state for it should go).
func (l *Layer) Remove(spi uint32) (peerStillUp bool, found bool) {
	sa := l.db.bySPI(spi)
	if sa == nil {
		return false, false
	}
	up := l.db.retire(sa, l.now().Add(l.cfg.Linger))
	return up, true
}

// DropWaiting drops what waits for the peer endpoint key (its IKE failed:
// the next packet starts a new attempt) and reports how many datagrams.
// Installed SAs are not touched.
func (l *Layer) DropWaiting(key netip.AddrPort) int {
	n := l.wait.drop(key)
	l.c.waitExpired.Add(uint64(n))
	return n
}

// Up reports whether the peer endpoint (as the data plane names it) has a
// current outbound SA.
func (l *Layer) Up(peer netip.AddrPort) bool {
	l.db.mu.RLock()
	defer l.db.mu.RUnlock()
	return l.db.outbound(peer) != nil
}

// Expire removes lingering inbound SAs and waiting queues that are past
// their time, activates OnInbound SAs whose peer stayed silent, and
// returns the next time it has something to do (zero: nothing).
func (l *Layer) Expire(now time.Time) time.Time {
	next, due := l.db.expire(now)
	for _, sa := range due {
		l.activate(sa)
	}
	if w := l.wait.expire(now, l.cfg.WaitTimeout, &l.c); !w.IsZero() && (next.IsZero() || w.Before(next)) {
		next = w
	}
	return next
}

// SendKeepalives sends a NAT keepalive (RFC 3948 §2.3, one 0xFF octet) to
// every ESP-in-UDP peer with a current SA of ours behind a NAT, and returns
// how many.
func (l *Layer) SendKeepalives() int {
	if l.udp == nil {
		return 0
	}
	peers := l.db.udpPeers()
	if len(peers) == 0 {
		return 0
	}
	buf := []byte{0xff}
	ds := make([]underlay.Datagram, len(peers))
	for i, p := range peers {
		ds[i] = underlay.Datagram{Buf: buf, Off: 0, Len: 1, Peer: p}
	}
	n, _ := l.udp.conn.WriteBatch(ds)
	l.c.keepalivesTx.Add(uint64(n))
	return n
}

// SendIKE sends an IKE message from the UDP 4500 socket (pkt starts with
// the non-ESP marker), for the node's ikev2/engine Sender.
func (l *Layer) SendIKE(to netip.AddrPort, pkt []byte) error {
	if l.udp == nil {
		return ErrTransport
	}
	d := [1]underlay.Datagram{{Buf: pkt, Off: 0, Len: len(pkt), Peer: to}}
	_, err := l.udp.conn.WriteBatch(d[:])
	return err
}
