package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/gre"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
	ikeengine "github.com/dmvpn/dmvpn/ikev2/engine"
	"github.com/dmvpn/dmvpn/internal/logging"
	"github.com/dmvpn/dmvpn/internal/ratelog"
	"github.com/dmvpn/dmvpn/ipsec"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/underlay"
)

// IKEPort is IKE's UDP port (RFC 7296 §2); NAT traversal moves to
// esp.UDPPort.
const IKEPort = 500

// ikeQueue bounds the IKE messages waiting for the control loop, like
// ctlQueue for NHRP.
const ikeQueue = 1024

// ipsecNode is the node's IPsec: the ESP layer between the data plane and
// the sockets, the IKEv2 engine the control loop drives, and the channels
// from the data path to the loop. Only the control loop calls the engine
// (but for Traffic, which the ESP readers call, at most once a second per
// SA); the engine's OnEvent runs inside those calls.
type ipsecNode struct {
	layer *ipsec.Layer
	ike   *ikeengine.Engine
	// ike500 is the UDP 500 socket; clearGRE the raw GRE socket kept
	// open to count (and drop) clear-text GRE, nil in tests.
	ike500   underlay.Conn
	clearGRE underlay.Conn
	// clearDropped counts clear-text GRE packets received and dropped.
	clearDropped atomic.Uint64
	ikeIn        chan ikePacket
	ikeDropped   atomic.Uint64
	need         chan netip.AddrPort
	soft         chan uint32
	keyLog       *keyLog
	keepalive    time.Duration
	nextKA       time.Time
	// layerNext is when the ESP layer's timers run next (under timerMu:
	// events may come from an API call's goroutine).
	timerMu   sync.Mutex
	layerNext time.Time
	log       *ratelog.Limiter

	// lost collects peers whose last SA died during an engine call
	// (OnEvent must not call back into engines); the loop hands them to
	// the NHRP engine right after.
	lostMu sync.Mutex
	lost   []lostPeer
	// out holds what the engine sent during the current call (SendIKE).
	outMu sync.Mutex
	out   []ikeOut
	// failures is the last IKE failure by peer address, for show dmvpn
	// (bounded: cleared when full).
	failMu   sync.Mutex
	failures map[netip.Addr]string
}

// maxFailures bounds the IKE failures remembered for show.
const maxFailures = 1024

func (s *ipsecNode) noteFailure(a netip.Addr, why string) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if s.failures == nil || len(s.failures) >= maxFailures {
		s.failures = map[netip.Addr]string{}
	}
	s.failures[a] = why
}

// lastFailure is the last IKE failure with a, if its SA is not up since.
func (s *ipsecNode) lastFailure(a netip.Addr) string {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failures[a]
}

type ikeOut struct {
	to   netip.AddrPort
	natt bool
	pkt  []byte
}

type lostPeer struct {
	key    netip.AddrPort
	reason string
}

// ikePacket is an IKE message copied out of a socket's read buffer.
type ikePacket struct {
	from netip.AddrPort
	natt bool
	buf  *[]byte
	n    int
}

// listenESPReal opens the real IPsec sockets: raw IP protocol 50 for the
// GRE (raw) transport, UDP for ESP-in-UDP on 4500 and for IKE on 500.
func listenESPReal(local netip.AddrPort, t nbma.Transport) (underlay.Conn, error) {
	if t == nbma.TransportUDP {
		// One octet: a NAT keepalive is the shortest thing on 4500.
		return listenSocket(local, t, 0, 1)
	}
	return listenSocket(local, t, esp.IPProto, esp.HeaderFixedLen)
}

// openIPsec opens the IPsec sockets and builds the ESP layer and the IKE
// engine; the data plane gets the layer's faces as its underlay.
func (n *Node) openIPsec() error {
	cfg := n.cfg
	listen := n.opts.ListenIPsec
	real := listen == nil
	if real {
		listen = listenESPReal
	}
	src := cfg.Tunnel.Source
	s := &ipsecNode{ikeIn: make(chan ikePacket, ikeQueue), need: make(chan netip.AddrPort, 256),
		soft: make(chan uint32, 256), keepalive: cfg.IPsec.NATKeepalive,
		log: ratelog.New(n.logFor(logging.IPsec), 10*time.Second, 5)}
	n.ipsec = s
	raw, err := listen(netip.AddrPortFrom(src, 0), nbma.TransportGRE)
	if err != nil {
		return fmt.Errorf("listen raw ESP (IP protocol 50) on %v: %w", src, err)
	}
	udp, err := listen(netip.AddrPortFrom(src, esp.UDPPort), nbma.TransportUDP)
	if err != nil {
		raw.Close()
		return fmt.Errorf("listen ESP-in-UDP on %v: %w", netip.AddrPortFrom(src, esp.UDPPort), err)
	}
	s.ike500, err = listen(netip.AddrPortFrom(src, IKEPort), nbma.TransportUDP)
	if err != nil {
		raw.Close()
		udp.Close()
		return fmt.Errorf("listen IKE on %v: %w", netip.AddrPortFrom(src, IKEPort), err)
	}
	if real {
		// Kept open so that clear-text GRE is counted and dropped here
		// rather than answered by the kernel; failing to open it costs
		// only the counter.
		c, err := listenSocket(netip.AddrPortFrom(src, 0), nbma.TransportGRE, gre.IPProto, 1)
		if err != nil {
			n.log.Warn("clear-text GRE will not be counted", "err", err)
		} else {
			s.clearGRE = c
		}
	}
	s.layer = ipsec.New(ipsec.Config{Local: src, Raw: raw, UDP: udp, Now: n.clk.Now, Workers: cryptoWorkers(),
		Log: n.logFor(logging.IPsec),
		OnNeedSA: func(peer netip.AddrPort, _ nbma.Transport) {
			select {
			case s.need <- peer:
			default:
			}
			n.poke()
		},
		OnIKE: func(from netip.AddrPort, payload []byte) { n.queueIKE(from, true, payload) },
		OnTraffic: func(spi uint32) {
			if s.ike != nil {
				s.ike.Traffic(n.clk.Now(), spi)
			}
		},
		OnSoftExpired: func(spi uint32) {
			select {
			case s.soft <- spi:
			default:
			}
		},
	})
	n.conns = append(n.conns, s.layer.Faces()...)

	ecfg, err := ikeConfig(cfg)
	if err != nil {
		return err
	}
	ecfg.OnEvent = n.onIKEEvent
	if cfg.IPsec.KeyLog != "" {
		kl, err := openKeyLog(cfg.IPsec.KeyLog)
		if err != nil {
			return fmt.Errorf("ipsec.key-log: %w", err)
		}
		s.keyLog = kl
		ecfg.ExportKeys = true
		n.log.Warn("ipsec.key-log is on: every SA's keys are written to it", "file", cfg.IPsec.KeyLog)
	}
	s.ike, err = ikeengine.New(ecfg, (*ikeSender)(n), n.logFor(logging.IPsec))
	if err != nil {
		return fmt.Errorf("ipsec: %w", err)
	}
	return nil
}

// ikeConfig is the IKE engine's view of the ipsec section.
func ikeConfig(cfg *config.Config) (ikeengine.Config, error) {
	c := &cfg.IPsec
	e := ikeengine.Config{
		Local:      cfg.Tunnel.Source,
		LocalID:    identity(c.LocalID, cfg.Tunnel.Source),
		PSK:        []byte(c.PSK),
		RemoteID:   identity(c.RemoteID, netip.Addr{}),
		TunnelMode: c.Mode == "tunnel",
		// The UDP transport is ESP-in-UDP, NAT or not (docs/CONFIG.md):
		// it has the kernel's UDP GSO/GRO, raw ESP has no offload.
		ForceUDPEncap:   cfg.Tunnel.Transport == nbma.TransportUDP,
		ChildLifetime:   c.Lifetime,
		ChildLifetimeKB: c.LifetimeKB,
		IKELifetime:     c.IKELifetime,
		PFSGroup:        c.PFS,
		DPDInterval:     c.DPD,
	}
	if len(c.Peers) > 0 {
		e.Peers = map[netip.Addr]ikeengine.Peer{}
		for _, p := range c.Peers {
			e.Peers[p.Address] = ikeengine.Peer{PSK: []byte(p.PSK), RemoteID: identity(p.RemoteID, p.Address)}
		}
	}
	for _, p := range c.IKEProposals {
		e.IKEProposals = append(e.IKEProposals, ikeengine.IKEProposal{Encryption: p.Encryption, KeyBits: p.KeyBits,
			Integrity: p.Integrity, PRF: p.PRF, Groups: p.Groups})
	}
	for _, p := range c.ESPProposals {
		e.ESPProposals = append(e.ESPProposals, ikeengine.ESPProposal{Encryption: p.Encryption, KeyBits: p.KeyBits,
			Integrity: p.Integrity, ESN: p.ESN})
	}
	return e, nil
}

// identity converts a configured identity; "address" without one is def.
func identity(id config.IPsecID, def netip.Addr) ikeengine.Identity {
	switch id.Kind {
	case config.IDAddress:
		if id.Addr.IsValid() {
			return ikeengine.AddrID(id.Addr)
		}
		if def.IsValid() {
			return ikeengine.AddrID(def)
		}
	case config.IDFQDN:
		return ikeengine.FQDNID(id.Name)
	case config.IDKeyID:
		return ikeengine.KeyID([]byte(id.Name))
	}
	return ikeengine.Identity{}
}

// ikeSender sends the engine's datagrams (ikeengine.Sender).
type ikeSender Node

// What the engine sends during a call leaves only after the call returns
// (afterIKE): the Child SAs its events install are then in place before
// the peer can see the message that lets it use them (the IKE_AUTH
// response, which the engine sends before it reports the SA).
func (s *ikeSender) SendIKE(to netip.AddrPort, natt bool, pkt []byte) {
	n := (*Node)(s)
	n.ipsec.outMu.Lock()
	if len(n.ipsec.out) < ikeQueue {
		n.ipsec.out = append(n.ipsec.out, ikeOut{to, natt, append([]byte(nil), pkt...)})
	}
	n.ipsec.outMu.Unlock()
}

// sendIKE transmits one IKE datagram.
func (n *Node) sendIKE(to netip.AddrPort, natt bool, pkt []byte) {
	var err error
	if natt {
		err = n.ipsec.layer.SendIKE(to, pkt)
	} else {
		d := [1]underlay.Datagram{{Buf: pkt, Len: len(pkt), Peer: to}}
		_, err = n.ipsec.ike500.WriteBatch(d[:])
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		n.ipsec.log.Debug(n.clk.Now(), "send IKE", "to", to, "err", err)
	}
}

// queueIKE copies an IKE message for the control loop, or drops and
// counts it when the queue is full (a flood costs a copy, never a stall).
func (n *Node) queueIKE(from netip.AddrPort, natt bool, pkt []byte) {
	if len(pkt) > ikeengine.MaxMessage {
		n.ipsec.ikeDropped.Add(1)
		return
	}
	bp, k := n.pooledCopy(pkt)
	m := ikePacket{from: from, natt: natt, buf: bp, n: k}
	select {
	case n.ipsec.ikeIn <- m:
	default:
		n.ipsec.ikeDropped.Add(1)
		n.ctlPool.Put(bp)
	}
}

// runIKE500 reads the UDP 500 socket until it is closed.
func (n *Node) runIKE500() {
	readAll(n.ipsec.ike500, ikeengine.MaxMessage+64, func(ds []underlay.Datagram) {
		for _, d := range ds {
			n.queueIKE(d.Peer, false, d.Payload())
		}
	})
}

// runClearGRE drains the raw GRE socket: with IPsec on, clear-text GRE is
// never accepted, only counted.
func (n *Node) runClearGRE() {
	readAll(n.ipsec.clearGRE, 2048, func(ds []underlay.Datagram) {
		n.ipsec.clearDropped.Add(uint64(len(ds)))
		n.ipsec.log.Warn(n.clk.Now(), "dropping clear-text GRE: the tunnel is protected by IPsec", "from", ds[0].Peer)
	})
}

// readAll reads batches from c (buffers of size octets) into f until c is
// closed.
func readAll(c underlay.Conn, size int, f func([]underlay.Datagram)) {
	ds := make([]underlay.Datagram, c.BatchSize())
	for i := range ds {
		ds[i].Buf = make([]byte, size)
	}
	for {
		for i := range ds {
			ds[i].Off, ds[i].Len = 0, 0
		}
		k, err := c.ReadBatch(ds)
		if err != nil {
			return
		}
		f(ds[:k])
	}
}

// handleIKE hands queued IKE messages to the engine (bounded, like
// handleQueued).
func (n *Node) handleIKE(m ikePacket) {
	s := n.ipsec
	for i := 0; ; i++ {
		now := n.clk.Now()
		if m.natt {
			s.ike.HandlePacketNATT(now, m.from, (*m.buf)[:m.n])
		} else {
			s.ike.HandlePacket(now, m.from, (*m.buf)[:m.n])
		}
		if cap(*m.buf) <= 64<<10 {
			n.ctlPool.Put(m.buf)
		}
		if i == ikeQueue {
			break
		}
		select {
		case m = <-s.ikeIn:
			continue
		default:
		}
		break
	}
	n.afterIKE()
}

// initiateFor starts IKE with a peer the data plane has packets for. The
// peer is named as the data plane names it (port 0 raw, 4500 over UDP);
// IKE starts on port 500 and floats to 4500 if it finds a NAT. A peer
// behind a NAT mapping with another port can only be reached once it
// starts IKE itself (it will: it needs the SA for its own answer).
func (n *Node) initiateFor(peer netip.AddrPort) {
	s := n.ipsec
	s.wakeLayer(n.clk.Now())
	if p := peer.Port(); p != 0 && p != esp.UDPPort {
		s.log.Debug(n.clk.Now(), "waiting for the peer behind NAT to start IKE", "peer", peer)
		return
	}
	// A node on raw ESP reaches a peer over UDP only when NHRP says it is
	// behind a NAT (or it came to us over UDP, and then it has an SA).
	behindNAT := n.cfg.Tunnel.Transport == nbma.TransportGRE && peer.Port() != 0
	if e, ok := n.cache.ByNBMA(peer); behindNAT || ok && e.NAT {
		// Behind a NAT: its mapping only lets in what answers it, so our
		// IKE_SA_INIT (and, after the float, our IKE_AUTH to 4500) would
		// be dropped, and a simultaneous initiation could pick ours. It
		// starts IKE itself: it needs the SA for its own packets to us.
		s.log.Debug(n.clk.Now(), "waiting for the peer behind NAT to start IKE", "peer", peer)
		return
	}
	to := netip.AddrPortFrom(peer.Addr(), IKEPort)
	if err := s.ike.Initiate(n.clk.Now(), to); err != nil && !errors.Is(err, ikeengine.ErrExists) {
		s.log.Warn(n.clk.Now(), "cannot start IKE", "peer", to, "err", err)
	}
	n.afterIKE()
}

// afterIKE runs what the engine's events asked for once the engine call
// returned: the NHRP state of peers that lost their last SA goes.
func (n *Node) afterIKE() {
	s := n.ipsec
	s.outMu.Lock()
	out := s.out
	s.out = nil
	s.outMu.Unlock()
	for _, m := range out {
		n.sendIKE(m.to, m.natt, m.pkt)
	}
	s.lostMu.Lock()
	lost := s.lost
	s.lost = nil
	s.lostMu.Unlock()
	for _, p := range lost {
		now := n.clk.Now()
		k := n.engine.PeerLost(now, p.key, p.reason)
		if p.key.Port() == 0 {
			k += n.engine.PeerLost(now, netip.AddrPortFrom(p.key.Addr(), esp.UDPPort), p.reason)
		}
		s.log.Info(now, "IPsec SA gone: NHRP state of the peer removed", "peer", p.key, "mappings", k, "reason", p.reason)
	}
}

// onIKEEvent applies an IKE engine event: Child SAs into the ESP layer,
// the key log, the node's events. It runs under the engine's lock.
func (n *Node) onIKEEvent(ev ikeengine.Event) {
	s := n.ipsec
	switch ev.Type {
	case ikeengine.IKESAUp:
		s.failMu.Lock()
		delete(s.failures, ev.Peer.Addr())
		s.failMu.Unlock()
		s.log.Info(ev.Time, "IKE SA up", "peer", ev.Peer, "remote-id", ev.RemoteID, "initiator", ev.Initiator, "nat", ev.NAT.Any())
		if s.keyLog != nil {
			s.keyLog.ike(ev)
		}
	case ikeengine.IKESARekeyed:
		s.log.Info(ev.Time, "IKE SA rekeyed", "peer", ev.Peer, "spi-i", fmt.Sprintf("%016x", uint64(ev.SPIi)),
			"old-spi-i", fmt.Sprintf("%016x", uint64(ev.OldSPIi)))
		if s.keyLog != nil {
			s.keyLog.ike(ev)
		}
	case ikeengine.ChildSAActive:
		s.layer.Activate(ev.Child.Inbound.SPI)
	case ikeengine.IKESADown:
		s.log.Info(ev.Time, "IKE SA down", "peer", ev.Peer, "reason", ev.Reason)
	case ikeengine.IKESAFailed:
		s.log.Warn(ev.Time, "IKE SA failed", "peer", ev.Peer, "reason", ev.Reason)
		s.noteFailure(ev.Peer.Addr(), ev.Reason)
		// What waits for this peer goes; its next packet tries again. An
		// SA that works (this was a second attempt) stays.
		s.layer.DropWaiting(netip.AddrPortFrom(ev.Peer.Addr(), 0))
		s.layer.DropWaiting(netip.AddrPortFrom(ev.Peer.Addr(), esp.UDPPort))
		s.layer.DropWaiting(ev.Peer)
		n.emit(events.Event{Time: ev.Time, Type: events.SADown, NBMA: ev.Peer.String(), Reason: "IKE failed: " + ev.Reason})
	case ikeengine.ChildSAUp:
		c := ev.Child
		sa := layerSA(c)
		sa.BehindNAT = ev.NAT.Local
		sa.In.ReplayWindow = n.cfg.IPsec.ReplayWindow
		// The initiator learns of the SA from the responder's answer:
		// the peer has it. The responder waits for the initiator's
		// first packet (or a second): its answer may still be on its way.
		act := ipsec.Now
		switch {
		case c.Standby:
			act = ipsec.Later // a rekey we answered: ChildSAActive says when
		case c.Replaces == 0 && !ev.Initiator:
			act = ipsec.OnInbound
		}
		s.wakeLayer(ev.Time)
		if err := s.layer.Install(sa, act); err != nil {
			s.log.Warn(ev.Time, "cannot install Child SA", "peer", c.Peer, "err", err)
			return
		}
		if s.keyLog != nil {
			s.keyLog.esp(c)
		}
		s.log.Info(ev.Time, "Child SA up", "peer", sa.Key(), "mode", c.Mode, "transform", c.Transform,
			"spi-in", fmt.Sprintf("%#08x", c.Inbound.SPI), "spi-out", fmt.Sprintf("%#08x", c.Outbound.SPI),
			"esp-in-udp", c.UDPEncap, "replaces", fmt.Sprintf("%#08x", c.Replaces))
		typ, why := events.SAUp, ""
		if c.Replaces != 0 {
			typ, why = events.SARekeyed, fmt.Sprintf(", replaces spi in %#08x", c.Replaces)
		}
		n.emit(events.Event{Time: ev.Time, Type: typ, NBMA: sa.Key().String(),
			Reason: fmt.Sprintf("%v %v spi in %#08x out %#08x%s%s", c.Mode, c.Transform, c.Inbound.SPI, c.Outbound.SPI, encapNote(c.UDPEncap), why)})
	case ikeengine.ChildSADown:
		c := ev.Child
		if c.ReplacedBy != 0 {
			// Its successor takes over now if it still stands by (the
			// engine's ChildSAActive normally came first): a peer is
			// never left without a current SA by a rekey.
			s.layer.Activate(c.ReplacedBy)
		}
		up, found := s.layer.Remove(c.Inbound.SPI)
		if !found {
			return
		}
		s.wakeLayer(ev.Time)
		sa := layerSA(c)
		key := sa.Key()
		if c.ReplacedBy != 0 && up {
			return // a rekey's old SA: sa-rekeyed said it
		}
		n.emit(events.Event{Time: ev.Time, Type: events.SADown, NBMA: key.String(), Reason: ev.Reason})
		s.log.Info(ev.Time, "Child SA down", "peer", key, "spi-in", fmt.Sprintf("%#08x", c.Inbound.SPI), "reason", ev.Reason)
		switch {
		case up:
		case n.cfg.IsHub() && ev.Reason == ikeengine.ReasonDeletedByPeer:
			// A spoke that deleted its SA is alive and brings up a new
			// one when it needs it; FRR's nhrpd (and Cisco's) re-register
			// only on their refresh timer, so its binding stays until its
			// holding time runs out or the new SA carries a refresh. A
			// dead spoke (DPD, a failed rekey) loses it at once.
		default:
			s.lostMu.Lock()
			s.lost = append(s.lost, lostPeer{key, "IPsec SA down: " + ev.Reason})
			s.lostMu.Unlock()
		}
	}
}

func encapNote(udp bool) string {
	if udp {
		return ", ESP-in-UDP"
	}
	return ""
}

// layerSA is the ESP layer's view of a Child SA.
func layerSA(c *ikeengine.ChildSA) ipsec.ChildSA {
	return ipsec.ChildSA{Peer: c.Peer, UDP: c.UDPEncap, Tunnel: c.Mode == ikeengine.Tunnel,
		Local: c.Local, Remote: c.Remote, In: c.InboundConfig(), Out: c.OutboundConfig(), Lifetime: c.Lifetime}
}

// tickIPsec runs the IPsec timers due at now: the engine's, the ESP
// layer's (lingering SAs, waiting queues) and NAT keepalives.
func (n *Node) tickIPsec(now time.Time) {
	s := n.ipsec
	s.ike.Tick(now)
	s.timerMu.Lock()
	due := !s.layerNext.IsZero() && !now.Before(s.layerNext)
	s.timerMu.Unlock()
	if due {
		next := s.layer.Expire(now)
		s.timerMu.Lock()
		s.layerNext = next
		s.timerMu.Unlock()
	}
	if s.keepalive > 0 && !now.Before(s.nextKA) {
		s.layer.SendKeepalives()
		s.nextKA = now.Add(s.keepalive)
	}
	n.afterIKE()
}

// ipsecDeadline is the earliest IPsec timer.
func (n *Node) ipsecDeadline() time.Time {
	s := n.ipsec
	next := s.ike.NextDeadline()
	s.timerMu.Lock()
	layerNext := s.layerNext
	s.timerMu.Unlock()
	for _, t := range []time.Time{layerNext, s.nextKA} {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

// shutdownIPsec deletes every IKE SA (telling the peers), after NHRP's
// last packets have left over them.
func (n *Node) shutdownIPsec(now time.Time) {
	s := n.ipsec
	for _, sa := range s.ike.SAs() {
		s.ike.Delete(now, sa.Peer, "shutting down")
	}
	n.afterIKE()
	if s.keyLog != nil {
		s.keyLog.close()
	}
}

func (n *Node) closeIPsec() {
	s := n.ipsec
	if s == nil {
		return
	}
	if s.layer != nil {
		s.layer.Close() // its sockets (closed once more is harmless) and its crypto workers
	}
	if s.ike500 != nil {
		s.ike500.Close()
	}
	if s.clearGRE != nil {
		s.clearGRE.Close()
	}
}

// keyLog writes SA keys in Wireshark's formats: ikev2_decryption_table
// records (IKE SAs) and esp_sa records (each direction of a Child SA),
// appended to one file, each record one write.
type keyLog struct {
	mu sync.Mutex
	f  *os.File
}

func openKeyLog(path string) (*keyLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &keyLog{f: f}, nil
}

func (k *keyLog) write(b []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.f.Write(b)
}

func (k *keyLog) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.f.Close()
}

// ike writes the ikev2_decryption_table record of an IKE SA (IKESAUp,
// IKESARekeyed). ChaCha20-Poly1305 has no name in Wireshark's table: such
// an SA is left out.
func (k *keyLog) ike(ev ikeengine.Event) {
	if ev.IKEKeys == nil {
		return
	}
	b, err := ev.IKEKeys.AppendWireshark(nil)
	if err != nil {
		return
	}
	k.write(b)
}

// esp writes the esp_sa records of both directions of a Child SA.
func (k *keyLog) esp(c *ikeengine.ChildSA) {
	var b []byte
	for _, d := range []struct {
		src, dst netip.Addr
		keys     ikeengine.SAKeys
	}{{c.Remote, c.Local, c.Inbound}, {c.Local, c.Remote, c.Outbound}} {
		l := ikecrypto.ESPKeyLog{Src: d.src, Dst: d.dst, SPI: d.keys.SPI,
			Transform: ikecrypto.Transform{Encryption: ikecrypto.Encryption(c.Transform.Encryption), KeyBits: c.Transform.KeyBits,
				Integrity: ikecrypto.Integrity(c.Transform.Integrity)},
			EncKey: d.keys.EncKey, IntegKey: d.keys.IntegKey}
		var err error
		if b, err = l.AppendWireshark(b); err != nil {
			return
		}
	}
	k.write(b)
}

// The loop's IPsec channels: nil (never ready) without IPsec.
func (n *Node) ikeChan() <-chan ikePacket {
	if n.ipsec == nil {
		return nil
	}
	return n.ipsec.ikeIn
}

func (n *Node) needChan() <-chan netip.AddrPort {
	if n.ipsec == nil {
		return nil
	}
	return n.ipsec.need
}

func (n *Node) softChan() <-chan uint32 {
	if n.ipsec == nil {
		return nil
	}
	return n.ipsec.soft
}

// drainIPsecRequests starts IKE for every peer waiting (bounded by the
// channel's size).
func (n *Node) drainIPsecRequests() {
	for range cap(n.ipsec.need) {
		select {
		case p := <-n.ipsec.need:
			n.initiateFor(p)
		default:
			return
		}
	}
}

// rekeyChild starts the rekey of an SA that passed its soft packet or
// octet limit.
func (n *Node) rekeyChild(spi uint32) {
	n.ipsec.log.Info(n.clk.Now(), "Child SA passed its soft limit", "spi", fmt.Sprintf("%#08x", spi))
	if err := n.ipsec.ike.RekeyChild(n.clk.Now(), spi); err != nil && !errors.Is(err, ikeengine.ErrNoSA) {
		n.ipsec.log.Warn(n.clk.Now(), "cannot rekey Child SA", "spi", fmt.Sprintf("%#08x", spi), "err", err)
	}
	n.afterIKE()
}

// IPsec is `show ipsec` (api.IPsecProvider).
func (n *Node) IPsec() api.IPsec {
	x := api.IPsec{IKE: []api.IKESA{}, Child: []api.ChildSA{}, Counters: map[string]uint64{}}
	s := n.ipsec
	if s == nil {
		return x
	}
	now := n.clk.Now()
	x.Enabled, x.Mode, x.KeyLog = true, n.cfg.IPsec.Mode, n.cfg.IPsec.KeyLog
	rekeyAt := map[uint32]time.Time{}
	for _, sa := range s.ike.SAs() {
		for _, c := range sa.Children {
			rekeyAt[c.InboundSPI] = c.RekeyAt
		}
		nat := ""
		switch {
		case sa.NAT.Local && sa.NAT.Remote:
			nat = "both"
		case sa.NAT.Local:
			nat = "local"
		case sa.NAT.Remote:
			nat = "remote"
		}
		x.IKE = append(x.IKE, api.IKESA{Peer: sa.Peer.String(), SPIi: fmt.Sprintf("%016x", uint64(sa.SPIi)),
			SPIr: fmt.Sprintf("%016x", uint64(sa.SPIr)), Initiator: sa.Initiator, State: sa.State,
			RemoteID: sa.RemoteID.String(), Suite: sa.Suite.String(), NAT: nat, Children: sa.NumChildren,
			Created: sa.Created, Age: api.UpDown(now.Sub(sa.Created)), LastRx: sa.LastRx, Group: sa.Group.String(),
			RekeyAt: sa.RekeyAt, RekeyIn: rekeyIn(now, sa.RekeyAt)})
	}
	for _, c := range s.layer.SAs() {
		encap := "esp"
		if c.UDP {
			encap = "esp-in-udp"
		}
		lt := ""
		if c.Lifetime > 0 {
			lt = c.Lifetime.String()
		}
		x.Child = append(x.Child, api.ChildSA{Peer: c.Peer.String(), Mode: c.Mode, Encap: encap, Local: c.Local.String(),
			Remote: c.Remote.String(), InboundSPI: fmt.Sprintf("0x%08x", c.InboundSPI), OutboundSPI: fmt.Sprintf("0x%08x", c.OutboundSPI),
			Transform: c.Transform, ESN: c.ESN, State: c.State, Created: c.Created, Age: api.UpDown(now.Sub(c.Created)),
			Lifetime: lt, InPackets: c.InPackets, InBytes: c.InBytes, OutPackets: c.OutPackets, OutBytes: c.OutBytes,
			ReplayDrops: c.ReplayDrops, AuthFailures: c.AuthFailures, RekeyAt: rekeyAt[c.InboundSPI],
			RekeyIn: rekeyIn(now, rekeyAt[c.InboundSPI])})
	}
	for k, v := range n.ipsecCounters() {
		x.Counters[k] = v
	}
	return x
}

// ipsecCounters are the IPsec counters by name (show ipsec, metrics).
func (n *Node) ipsecCounters() map[string]uint64 {
	s := n.ipsec
	l := s.layer.Stats()
	e := s.ike.Stats()
	m := map[string]uint64{
		"esp_sealed": l.Sealed, "esp_opened": l.Opened, "esp_queued": l.Queued, "esp_dequeued": l.Dequeued,
		"esp_queue_drops": l.QueueDrops, "esp_wait_expired": l.WaitExpired, "esp_too_big": l.TooBig,
		"esp_seal_errors": l.SealErrors, "esp_write_errors": l.WriteErrors, "esp_malformed": l.Malformed,
		"esp_unknown_spi": l.UnknownSPI, "esp_wrong_source": l.WrongSource, "esp_replayed": l.Replayed,
		"esp_auth_failed": l.AuthFailed, "esp_open_errors": l.OpenErrors, "esp_bad_inner": l.BadInner,
		"esp_dummies": l.Dummies, "nat_keepalives_rx": l.KeepalivesRx, "nat_keepalives_tx": l.KeepalivesTx,
		"clear_gre_dropped": s.clearDropped.Load(), "ike_queue_drops": s.ikeDropped.Load(),
		"ike_received": e.Received, "ike_sent": e.Sent, "ike_retransmitted": e.Retransmitted,
		"ike_auth_failures": e.AuthFailures, "ike_established": e.Established, "ike_failed": e.Failed,
		"ike_dead_peers": e.Dead, "ike_collisions": e.Collisions, "ike_cookies_sent": e.CookiesSent,
		"ike_child_rekeys": e.ChildRekeys, "ike_ike_rekeys": e.IKERekeys, "ike_rekey_collisions": e.RekeyCollisions,
	}
	for k, v := range e.DroppedByName() {
		m["ike_dropped_"+k] = v
	}
	return m
}

// wakeLayer makes the next tick run the ESP layer's timers (standby SAs,
// lingering ones, waiting queues) soon; Expire then says when next.
func (s *ipsecNode) wakeLayer(now time.Time) {
	t := now.Add(100 * time.Millisecond)
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	if s.layerNext.IsZero() || t.Before(s.layerNext) {
		s.layerNext = t
	}
}

// rekeyIn is the time left to a planned rekey, for show.
func rekeyIn(now, at time.Time) string {
	if at.IsZero() {
		return ""
	}
	return api.UpDown(at.Sub(now))
}

// cryptoWorkers is how many cores seal and open a batch: all of them from
// four on. With two, the data plane's reader and writer goroutines, the
// TUN and the kernel already keep both busy under load, and handing half
// a batch to the other core cost more than it saved when measured
// (`go test ./ipsec -bench Workers -cpu 2` on the 2-vCPU test machine).
func cryptoWorkers() int {
	if n := runtime.GOMAXPROCS(0); n >= 4 {
		return n
	}
	return 1
}
