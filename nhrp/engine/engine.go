// Package engine is the NHRP protocol engine of one tunnel: the NHC side
// (register with each NHS, refresh, retry with backoff, deregister, resolve,
// act on redirects) and the NHS side (accept or refuse registrations, keep
// dynamic entries until they expire, forward resolutions, send redirects),
// plus purges and Error Indications both ways.
//
// The engine opens no sockets and starts no goroutines or timers: the node
// feeds it received NHRP packets and calls Tick at the deadline Tick last
// returned, passing the current time, so tests drive it with a fake clock.
// Packets go out through the Sender interface. All methods are safe for
// concurrent use (one mutex: the engine is the single owner of NHRP state).
//
// Every packet is hostile until shown otherwise. Who may send what is fixed
// per message type (see docs/ARCHITECTURE.md, "Role rules"): only an NHS
// answers registrations and sends Traffic Indications; replies and Error
// Indications count only when they match a request we have outstanding
// (request IDs are random) and come from where that request went; a
// binding is removed or moved only after its registrant fails a liveness
// probe, never on the word of a source address; a resolution answer must
// answer the question asked. Everything that fails is dropped and counted
// by reason (Stats.Dropped), never installed. State is bounded: holding
// times by our configuration, the cache by its limits, every table the
// engine keeps by a constant, and log lines by a rate limiter. No event
// walks the cache: timers live in a heap, indexes are incremental.
package engine

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/ratelimit"
	"github.com/dmvpn/dmvpn/internal/ratelog"
	"github.com/dmvpn/dmvpn/localroute"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
	"github.com/dmvpn/dmvpn/nhrp/replay"
)

// Sender transmits an encoded NHRP packet to an NBMA endpoint. It must not
// keep pkt after returning.
type Sender interface {
	SendNHRP(to netip.AddrPort, t nbma.Transport, pkt []byte)
}

// NHS is a next hop server this node registers with.
type NHS struct {
	Protocol  netip.Addr
	NBMA      netip.AddrPort
	Transport nbma.Transport
}

// StaticMap is a configured mapping (Cisco `ip nhrp map`).
type StaticMap struct {
	Protocol  netip.Addr
	NBMA      netip.AddrPort
	Transport nbma.Transport
	Multicast bool
}

// Config is what the engine needs to know about its tunnel.
type Config struct {
	// Address is the overlay address with the tunnel subnet's length.
	Address netip.Prefix
	// NBMA is this node's own underlay address (what it claims).
	NBMA netip.Addr
	MTU  uint16
	// Holdtime is the holding time put in registrations.
	Holdtime time.Duration
	// MaxHoldtime caps the holding time of every entry learned from a
	// peer (registrations, requester mappings, shortcuts), whatever the
	// peer asks for. 0 means max(Holdtime, DefaultMaxHoldtime).
	MaxHoldtime time.Duration
	// RegistrationInterval is the refresh period; 0 means Holdtime/3.
	RegistrationInterval time.Duration
	// Authentication is the Cisco plain-text secret; empty for none.
	Authentication []byte
	// HMAC, when set, replaces Cisco's clear text with keyed
	// authentication (nhrp.HMACKeys: HMAC-SHA-256 over the whole packet,
	// a key ID, a sequence number checked against a replay window).
	HMAC *nhrp.HMACKeys
	// HMACMaxSkew is how far a keyed packet's sequence number (the
	// signer's clock) may be from ours; 0: the replay filter's default.
	HMACMaxSkew time.Duration
	Unique      bool
	// Server makes this node an NHS: it accepts registrations and
	// forwards resolutions. A node that is not a server drops
	// Registration Requests.
	Server bool
	NHS    []NHS
	Static []StaticMap
	// Transport is this node's configured underlay, used to reach peers
	// learned through NHRP that we have not heard from directly.
	Transport nbma.Transport
	// UDPPort is the port peers learned through NHRP are reached on over
	// the UDP transport; 0: gre.UDPPort (GRE-in-UDP, 4754). With IPsec
	// the UDP transport is ESP-in-UDP and the node sets 4500.
	UDPPort uint16
	// Shortcut (spoke, phase 3): act on Traffic Indications.
	Shortcut bool
	// Redirect (hub, phase 3): send Traffic Indications.
	Redirect bool
	// MaxSend limits the NHRP packets this node sends (Cisco's `ip nhrp
	// max-send`); zero: no limit.
	MaxSend Rate
	// MaxReceive limits the NHRP packets accepted from one NBMA address
	// (other than an NHS's); zero: no limit.
	MaxReceive Rate
	// Routes is the overlay FIB: where a hub finds a destination's owner,
	// and where shortcut routes go. Required.
	Routes *fib.Table
	// Host is the host's routing view: what we own (our LANs) when asked.
	Host localroute.Table
	// OnRoutes is called after the engine changes Routes (so the node can
	// mirror them elsewhere); may be nil.
	OnRoutes func()
	// OnResolved is called, under the engine's lock, each time a
	// resolution's answer is installed, with the time since its request
	// was first sent (metrics); may be nil. It must not call the engine.
	OnResolved func(took time.Duration)
	// OnEvent is called, under the engine's lock, for each state change
	// worth telling an operator (package events: NHS up/down/refused,
	// registrations accepted/refused/expired/removed, shortcuts up/down,
	// purges); never for a refresh. It must not block or call the
	// engine; may be nil. Time is the engine's now (zero from the
	// cache's eviction hook: the listener stamps it).
	OnEvent func(events.Event)
	// Seed seeds the request-ID generator (tests); zero: crypto/rand.
	Seed [32]byte
}

// DefaultMaxHoldtime is the cap on peers' holding times when none is
// configured: Cisco's default holding time, so Cisco spokes keep theirs.
const DefaultMaxHoldtime = 7200 * time.Second

// Registration states of an NHS, as `show` reports them.
const (
	StateDown        = "down"        // not yet registered / lost
	StateRegistering = "registering" // request sent, no reply yet
	StateUp          = "up"          // registered
	StateRefused     = "refused"     // the NHS answered with a failure CIE code
	StateError       = "error"       // the NHS answered with an Error Indication
)

// NHSStatus is the registration state of one NHS.
type NHSStatus struct {
	NHS
	State      string
	Since      time.Time // when State last changed
	LastError  string
	Attempts   int
	NATAddress netip.AddrPort // our NBMA address as the NHS sees it, when NATed
	Expires    time.Time      // when our registration at the NHS runs out
}

// Stats counts protocol events.
type Stats struct {
	Received, Sent, Malformed, AuthFailures       uint64
	ErrorIndicationsSent, ErrorIndicationsRecvd   uint64
	RegistrationsAccepted, RegistrationsRefused   uint64
	PurgesReceived, ExpiredEntries, UnknownPeerRx uint64
	PurgesSent, RedirectsSent                     uint64
	// ProbesSent counts liveness probes of registrants; ProbesRefuted
	// those the registrant answered (the purge or move was not its own).
	ProbesSent, ProbesRefuted uint64
	// Dropped counts dropped packets by reason (index: DropReason).
	Dropped [numDropReasons]uint64
	// ReceivedByType counts the packets received that decoded, by NHRP
	// type (index: nhrp.Type, 1..8; 0 unused), before the role rules and
	// authentication (their drops are in Dropped); SentByType the
	// packets sent, by type.
	ReceivedByType, SentByType [NumTypes + 1]uint64
}

// NumTypes is the number of NHRP packet types the engine counts (1..8).
const NumTypes = 8

var typeNames = [NumTypes + 1]string{
	nhrp.TypeResolutionRequest: "resolution_request", nhrp.TypeResolutionReply: "resolution_reply",
	nhrp.TypeRegistrationRequest: "registration_request", nhrp.TypeRegistrationReply: "registration_reply",
	nhrp.TypePurgeRequest: "purge_request", nhrp.TypePurgeReply: "purge_reply",
	nhrp.TypeErrorIndication: "error_indication", nhrp.TypeTrafficIndication: "traffic_indication",
}

// TypeName is the snake-case name of NHRP type t (registration_request …
// traffic_indication), "" for a type out of 1..8: the metrics' type label.
func TypeName(t nhrp.Type) string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return ""
}

// DroppedByName returns the drop counters keyed by reason name.
func (s *Stats) DroppedByName() map[string]uint64 {
	m := make(map[string]uint64, numDropReasons)
	for i, n := range s.Dropped {
		m[DropReason(i).String()] = n
	}
	return m
}

// Bounds of the engine's own tables and timings.
const (
	retryMin = time.Second
	retryMax = 16 * time.Second
	// errorIndicationGap rate-limits Error Indications per source.
	errorIndicationGap = time.Second
	// hopCount is what we put in packets we originate.
	hopCount = 255
	// maxPending bounds resolutions in flight.
	maxPending = 1024
	// maxProbes bounds registrant liveness probes in flight.
	maxProbes = 1024
	// maxHoldersPerOwner bounds who we remember to purge per mapping.
	maxHoldersPerOwner = 1024
	// maxPurgeCIEs bounds the CIEs acted on in one Purge Request.
	maxPurgeCIEs = 64
	// maxShortcutsPerOwner bounds the shortcut routes through one peer.
	maxShortcutsPerOwner = 64
	// maxTimersPerTick bounds one Tick; the rest run at the next one,
	// which is due at once.
	maxTimersPerTick = 4096
)

// Engine is the NHRP engine of one tunnel.
type Engine struct {
	mu    sync.Mutex
	cfg   Config
	cache *cache.Cache
	send  Sender
	log   *slog.Logger
	rlog  *ratelog.Limiter // for everything a peer can make us say

	nhs    []*nhsState
	auth   *nhrp.Extension // what we put in our packets (Cisco, or the keyed placeholder)
	hmac   *nhrp.HMACKeys
	replay *replay.Filter
	seq    replay.Sequencer
	// prevAuth is what a reload replaced, accepted for AuthGrace.
	prevAuth *oldAuth
	// formerNHS are NHSes a reload removed (NBMA address → until when
	// their requests for our own address go unanswered).
	formerNHS map[netip.Addr]time.Time
	rnd       *rand.ChaCha8
	started   bool
	stats     Stats
	lastEI    map[netip.Addr]time.Time
	subnet    netip.Prefix
	proType   uint16
	afn       uint16

	sendLimit bucket
	recvLimit ratelimit.PerSource
	timers    timers

	pending     map[netip.Addr]*pendingResolution
	pendingByID map[uint32]*pendingResolution
	probes      map[netip.Addr]*probe
	probeByID   map[uint32]*probe
	redirects   map[redirectKey]*bucket
	holders     map[netip.Addr]map[netip.AddrPort]holder
	shortcuts   map[netip.Addr]map[netip.Prefix]struct{} // owner -> routes via it
	watch       shortcutIndex                            // the same routes by prefix (route watch)

	rx    nhrp.Packet // decode scratch
	rxRaw []byte      // the packet being handled, for Error Indications
	tx    nhrp.Packet // encode scratch
	buf   []byte
}

type nhsState struct {
	NHSStatus
	reqID  uint32
	nextAt time.Time
}

// New returns an engine for cfg, writing entries into c and sending with s.
func New(cfg Config, c *cache.Cache, s Sender, log *slog.Logger) (*Engine, error) {
	if cfg.RegistrationInterval == 0 {
		cfg.RegistrationInterval = cfg.Holdtime / 3
	}
	if cfg.UDPPort == 0 {
		cfg.UDPPort = gre.UDPPort
	}
	if cfg.MaxHoldtime == 0 {
		cfg.MaxHoldtime = max(cfg.Holdtime, DefaultMaxHoldtime)
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.Routes == nil {
		cfg.Routes = fib.New()
	}
	if !cfg.Address.IsValid() {
		return nil, errors.New("nhrp: no tunnel address")
	}
	seed := cfg.Seed
	if seed == ([32]byte{}) {
		if _, err := crand.Read(seed[:]); err != nil {
			return nil, fmt.Errorf("nhrp: seeding request IDs: %w", err)
		}
	}
	e := &Engine{cfg: cfg, cache: c, send: s, log: log, rlog: ratelog.New(log, 0, 0),
		rnd: rand.NewChaCha8(seed), lastEI: map[netip.Addr]time.Time{}, buf: make([]byte, 0, 1500),
		subnet:    cfg.Address.Masked(),
		recvLimit: ratelimit.NewPerSource(cfg.MaxReceive),
		pending:   map[netip.Addr]*pendingResolution{}, pendingByID: map[uint32]*pendingResolution{},
		probes: map[netip.Addr]*probe{}, probeByID: map[uint32]*probe{}, formerNHS: map[netip.Addr]time.Time{},
		redirects: map[redirectKey]*bucket{}, holders: map[netip.Addr]map[netip.AddrPort]holder{},
		shortcuts: map[netip.Addr]map[netip.Prefix]struct{}{}}
	// An evicted shortcut takes its routes with it. Put runs under e.mu,
	// and so does this hook.
	c.OnEvict(func(gone cache.Entry) {
		if gone.Type == cache.Resolved {
			e.shortcutDown(time.Time{}, gone, "evicted: the NHRP cache is full")
			e.dropRoutesVia(gone.Protocol)
		}
	})
	if cfg.Address.Addr().Is4() {
		e.proType = nhrp.ProtoIPv4
	} else {
		e.proType = nhrp.ProtoIPv6
	}
	if !cfg.NBMA.IsValid() || cfg.NBMA.Is4() {
		e.afn = nhrp.AFNIPv4
	} else {
		e.afn = nhrp.AFNIPv6
	}
	if err := e.useAuth(cfg.Authentication, cfg.HMAC, cfg.HMACMaxSkew); err != nil {
		return nil, err
	}
	for _, n := range cfg.NHS {
		e.nhs = append(e.nhs, &nhsState{NHSStatus: NHSStatus{NHS: n, State: StateDown}})
	}
	return e, nil
}

// Start installs the static entries and sends the first registrations.
func (e *Engine) Start(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return
	}
	e.started = true
	for _, m := range e.cfg.Static {
		_ = e.cache.Put(cache.Entry{Protocol: m.Protocol, NBMA: m.NBMA, ClaimedNBMA: m.NBMA.Addr(), Transport: m.Transport,
			Type: cache.Static, Multicast: m.Multicast, Up: true, Created: now})
	}
	for _, n := range e.nhs {
		// The NHS is reachable before we are registered: traffic and our
		// registrations go to it through this static entry (Cisco's
		// `ip nhrp nhs X nbma Y multicast`).
		_ = e.cache.Put(cache.Entry{Protocol: n.Protocol, NBMA: n.NBMA, ClaimedNBMA: n.NBMA.Addr(), Transport: n.Transport,
			Type: cache.Static, NHS: true, Multicast: true, Created: now})
		n.Since = now
		e.register(now, n)
	}
}

// Tick runs timers due at now and returns when it wants to be called next.
func (e *Engine) Tick(now time.Time) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.nhs {
		if n.State == StateUp && !n.Expires.IsZero() && !now.Before(n.Expires) {
			e.setState(now, n, StateDown, "registration expired without a successful refresh")
			e.log.Warn("registration with NHS lost", "nhs", n.Protocol, "nbma", n.NBMA)
		}
		if !now.Before(n.nextAt) {
			e.register(now, n)
		}
	}
	for i := 0; i < maxTimersPerTick; i++ {
		k, ok := e.timers.Due(now)
		if !ok {
			break
		}
		e.fire(now, k)
	}
	for _, gone := range e.cache.Expire(now) {
		e.stats.ExpiredEntries++
		switch gone.Type {
		case cache.Resolved:
			e.shortcutDown(now, gone, "expired")
			e.dropRoutesVia(gone.Protocol)
			e.rlog.Info(now, "shortcut expired", "peer", gone.Protocol, "nbma", gone.NBMA)
		case cache.Dynamic:
			e.cancelProbe(gone.Protocol)
			e.emit(now, events.RegistrationExpired, gone.Protocol, gone.NBMA, "", "holding time ran out without a refresh", 0)
			e.purgeHolders(now, gone.Protocol, uint8(gone.Protocol.BitLen()))
			e.rlog.Info(now, "registration expired", "protocol", gone.Protocol, "nbma", gone.NBMA)
		}
	}
	return e.nextDeadline()
}

// fire runs one due timer.
func (e *Engine) fire(now time.Time, k timerKey) {
	switch k.kind {
	case timerResolve:
		e.resolveTimer(now, k.addr)
	case timerShortcutProbe:
		e.shortcutProbeTimer(now, k.addr)
	case timerShortcutRefresh:
		e.shortcutRefreshTimer(now, k.addr)
	case timerPurgeProbe:
		e.probeTimer(now, k.addr)
	}
}

func (e *Engine) nextDeadline() time.Time {
	next := e.cache.NextExpiry()
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	earlier(e.timers.Next())
	for _, n := range e.nhs {
		earlier(n.nextAt)
		if n.State == StateUp {
			earlier(n.Expires)
		}
	}
	return next
}

// NextDeadline is when Tick should run next (zero: no timer).
func (e *Engine) NextDeadline() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nextDeadline()
}

// Shutdown deregisters from every NHS with a Purge Request for our own
// binding, so hubs drop us at once instead of when the holding time ends,
// and tells every peer holding a shortcut to us to forget it, so its
// traffic falls back to the hub at once.
func (e *Engine) Shutdown(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sendLimit = bucket{} // a last burst: these must go out
	told := map[netip.AddrPort]bool{}
	for _, c := range e.cache.All() { // once, at exit
		if c.Type == cache.Resolved && c.NBMA.IsValid() && !told[c.NBMA] {
			told[c.NBMA] = true
			e.sendPurge(now, c.NBMA, c.Transport, e.self(), uint8(e.self().BitLen()), true)
		}
	}
	for _, h := range e.holders[e.self()] {
		if !told[h.ep] {
			told[h.ep] = true
			e.sendPurge(now, h.ep, h.t, e.self(), uint8(e.self().BitLen()), true)
		}
	}
	for _, n := range e.nhs {
		if n.State == StateUp || n.Attempts > 0 {
			e.deregister(now, n, "deregistering: shutting down")
			e.setState(now, n, StateDown, "shut down")
		}
	}
}

// NHSStatus returns the registration state of every NHS.
func (e *Engine) NHSStatus() []NHSStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]NHSStatus, len(e.nhs))
	for i, n := range e.nhs {
		out[i] = n.NHSStatus
	}
	return out
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats
}

// LogSuppressed is how many log lines the engine's rate limiter dropped.
func (e *Engine) LogSuppressed() uint64 { return e.rlog.Suppressed() }

// nextReqID returns a fresh random, non-zero request ID: a reply or Error
// Indication is matched by it, so a blind forger has to guess 32 bits.
func (e *Engine) nextReqID() uint32 {
	for {
		if id := uint32(e.rnd.Uint64()); id != 0 && e.pendingByID[id] == nil && e.probeByID[id] == nil {
			return id
		}
	}
}

func (e *Engine) drop(now time.Time, r DropReason, from netip.AddrPort, why string) {
	e.stats.Dropped[r]++
	e.rlog.Debug(now, "dropped "+r.String(), "from", from, "why", why)
}

func (e *Engine) self() netip.Addr { return e.cfg.Address.Addr() }

// onSubnet reports whether a is an address a peer may hold on the tunnel
// subnet: inside it, of its family, not its network or (IPv4) broadcast
// address, and not ours.
func (e *Engine) onSubnet(a netip.Addr) bool {
	if !a.IsValid() || a.Is4() != e.subnet.Addr().Is4() || !e.subnet.Contains(a) || a == e.self() {
		return false
	}
	if a == e.subnet.Addr() && e.subnet.Bits() < a.BitLen()-1 {
		return false // the network address
	}
	if a.Is4() && e.subnet.Bits() < 31 {
		b := a.As4()
		host := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		if mask := ^uint32(0) >> e.subnet.Bits(); host&mask == mask {
			return false // the broadcast address
		}
	}
	return true
}

// isNHS reports whether ep is (the NBMA address of) one of our NHSes.
func (e *Engine) isNHS(ep netip.AddrPort) bool {
	for _, n := range e.nhs {
		if n.NBMA.Addr() == ep.Addr() {
			return true
		}
	}
	return false
}

// isNHSAddr reports whether a is the overlay address of one of our NHSes.
func (e *Engine) isNHSAddr(a netip.Addr) bool {
	for _, n := range e.nhs {
		if n.Protocol == a {
			return true
		}
	}
	return false
}

func (e *Engine) setState(now time.Time, n *nhsState, state, why string) {
	e.setStateCode(now, n, state, why, 0)
}

// setStateCode is setState with the NHRP code that caused it (a refusal's
// CIE code, an Error Indication's code), for the event it emits.
func (e *Engine) setStateCode(now time.Time, n *nhsState, state, why string, code int) {
	old := n.State
	if n.State != state {
		n.Since = now
	}
	n.State = state
	n.LastError = why
	up := state == StateUp
	e.cache.Update(n.Protocol, func(c *cache.Entry) { c.Up = up })
	if old != state {
		e.nhsEvent(now, n, old, why, code)
	}
}

// newPacket prepares e.tx as a packet we originate towards dst.
func (e *Engine) newPacket(t nhrp.Type, dst netip.Addr) *nhrp.Packet {
	p := &e.tx
	*p = nhrp.Packet{CIEs: p.CIEs[:0], Extensions: p.Extensions[:0]}
	p.HopCount = hopCount
	p.Type = t
	p.SrcNBMA = e.cfg.NBMA
	p.SrcProto = e.cfg.Address.Addr()
	p.DstProto = dst
	return p
}

// appendAuthAndEnd ends p's extensions with our authentication (if any) and
// End of Extensions.
func (e *Engine) appendAuthAndEnd(p *nhrp.Packet) {
	if e.auth != nil {
		p.Extensions = append(p.Extensions, *e.auth)
	}
	p.Extensions = append(p.Extensions, nhrp.NewEnd())
}

// transmit encodes e.tx and sends it, within max-send.
func (e *Engine) transmit(now time.Time, to netip.AddrPort, t nbma.Transport) {
	if e.cfg.MaxSend.Valid() && !e.sendLimit.Take(now, e.cfg.MaxSend) {
		e.stats.Dropped[DropSendLimited]++
		e.rlog.Warn(now, "max-send reached, not sending", "type", e.tx.Type, "to", to)
		return
	}
	b, err := e.tx.AppendEncode(e.buf[:0])
	if err != nil {
		e.rlog.Warn(now, "encode", "type", e.tx.Type, "err", err)
		return
	}
	e.buf = b[:0]
	if e.hmac != nil && e.tx.Type != nhrp.TypeErrorIndication {
		if err := e.hmac.Sign(b, e.seq.Next(now)); err != nil {
			e.rlog.Warn(now, "signing", "type", e.tx.Type, "err", err)
			return
		}
	}
	e.stats.Sent++
	if ty := e.tx.Type; int(ty) < len(e.stats.SentByType) {
		e.stats.SentByType[ty]++
	}
	e.send.SendNHRP(to, t, b)
}

// HandlePacket processes one NHRP packet received from the NBMA endpoint
// from over transport t. b is only read during the call.
func (e *Engine) HandlePacket(now time.Time, from netip.AddrPort, t nbma.Transport, b []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats.Received++
	if !e.isNHS(from) && !e.recvLimit.Allow(now, from.Addr()) {
		e.stats.Dropped[DropRateLimited]++
		return
	}
	e.rxRaw = b
	defer func() { e.rxRaw = nil }()
	p := &e.rx
	err := p.Decode(b)
	if err != nil {
		var de *nhrp.DecodeError
		e.stats.Malformed++
		e.stats.Dropped[DropMalformed]++
		e.rlog.Debug(now, "malformed packet", "from", from, "err", err)
		if errors.As(err, &de) && de.Code != 0 && p.Type != nhrp.TypeErrorIndication {
			e.sendErrorIndication(now, from, t, b, nhrp.ErrorCode(de.Code), de.Offset)
		}
		return
	}
	if int(p.Type) < len(e.stats.ReceivedByType) {
		e.stats.ReceivedByType[p.Type]++
	}
	if why := e.wrongFamily(p); why != "" {
		e.drop(now, DropWrongFamily, from, why)
		return
	}
	if p.HopCount == 0 {
		e.stats.Dropped[DropHopCount]++
		e.sendErrorIndication(now, from, t, b, nhrp.ErrHopCountExceeded, 9)
		return
	}
	// RFC 2332 §5.2.7: an Error Indication carries no extensions, so no
	// authentication: it is acted on only when it names a request we
	// have outstanding (random request ID) and comes from where it went.
	if p.Type != nhrp.TypeErrorIndication && e.prevAuth != nil && e.previousAuthOK(now, b, p) {
		// authenticated the way it was before the last reload: accepted
		// during the grace period
	} else if p.Type != nhrp.TypeErrorIndication && e.hmac != nil {
		if r, why := e.verifyHMAC(now, b); why != nil {
			e.stats.AuthFailures++
			e.stats.Dropped[r]++
			e.rlog.Warn(now, "keyed authentication failure", "from", from, "type", p.Type, "src", p.SrcProto, "err", why)
			if r == DropAuth {
				e.sendErrorIndication(now, from, t, b, nhrp.ErrAuthenticationFailure, e.authOffset(p))
			}
			return
		}
	} else if p.Type != nhrp.TypeErrorIndication && !e.authenticated(p) {
		e.stats.AuthFailures++
		e.stats.Dropped[DropAuth]++
		e.rlog.Warn(now, "authentication failure", "from", from, "type", p.Type, "src", p.SrcProto)
		e.sendErrorIndication(now, from, t, b, nhrp.ErrAuthenticationFailure, e.authOffset(p))
		return
	}
	switch p.Type {
	case nhrp.TypeResolutionRequest:
		e.handleResolutionRequest(now, from, t, p)
	case nhrp.TypeResolutionReply:
		e.handleResolutionReply(now, from, t, p)
	case nhrp.TypeTrafficIndication:
		e.handleTrafficIndication(now, from, p)
	case nhrp.TypeRegistrationRequest:
		e.handleRegistrationRequest(now, from, t, p)
	case nhrp.TypeRegistrationReply:
		e.handleRegistrationReply(now, from, p)
	case nhrp.TypePurgeRequest:
		e.handlePurgeRequest(now, from, t, p)
	case nhrp.TypePurgeReply:
		e.rlog.Debug(now, "purge reply", "from", from, "reqid", p.RequestID)
	case nhrp.TypeErrorIndication:
		e.handleErrorIndication(now, from, p)
	}
}

// wrongFamily checks that p speaks the tunnel's protocol and NBMA families:
// the protocol type, and every address present has the right length (a
// 0x86DD packet with 4-byte addresses, say, is refused).
func (e *Engine) wrongFamily(p *nhrp.Packet) string {
	if p.ProtocolType != e.proType {
		return fmt.Sprintf("protocol type 0x%04x, tunnel uses 0x%04x", p.ProtocolType, e.proType)
	}
	if p.AddressFamily != e.afn {
		return fmt.Sprintf("address family %d, tunnel uses %d", p.AddressFamily, e.afn)
	}
	want4 := e.proType == nhrp.ProtoIPv4
	for _, a := range [...]netip.Addr{p.SrcProto, p.DstProto} {
		if a.IsValid() && a.Is4() != want4 {
			return "protocol address of the wrong length"
		}
	}
	if p.SrcNBMA.IsValid() && p.SrcNBMA.Is4() != (e.afn == nhrp.AFNIPv4) {
		return "NBMA address of the wrong length"
	}
	for i := range p.CIEs {
		c := &p.CIEs[i]
		if (c.Protocol.IsValid() && c.Protocol.Is4() != want4) || (c.NBMA.IsValid() && c.NBMA.Is4() != (e.afn == nhrp.AFNIPv4)) {
			return "CIE address of the wrong length"
		}
	}
	return ""
}

// useAuth installs how our packets are authenticated and others' checked:
// keyed (keys, with a fresh replay filter), Cisco's clear text (secret), or
// not at all.
func (e *Engine) useAuth(secret []byte, keys *nhrp.HMACKeys, skew time.Duration) error {
	e.auth, e.hmac, e.replay = nil, nil, nil
	switch {
	case keys != nil:
		// Signers are peers (authentication is hop by hop), so the
		// replay table is sized like the cache; its memory is touched
		// only as signers appear.
		f, err := replay.New(replay.Config{MaxSkew: skew, MaxSigners: min(max(e.cache.Limits().MaxEntries, 16), 65536), Window: 32})
		if err != nil {
			return fmt.Errorf("nhrp: replay filter: %w", err)
		}
		a := keys.NewAuthentication(e.self())
		e.auth, e.hmac, e.replay = &a, keys, f
	case len(secret) > 0:
		a, err := nhrp.NewCiscoAuthentication(secret)
		if err != nil {
			return fmt.Errorf("nhrp: authentication: %w", err)
		}
		e.auth = &a
	}
	return nil
}

// deregister tells NHS n, where a registration may have been accepted
// (even if its reply has not reached us yet), to drop our binding: a
// Purge Request without reply, as we will not wait for one.
func (e *Engine) deregister(now time.Time, n *nhsState, why string) {
	if n.State != StateUp && n.Attempts == 0 {
		return
	}
	p := e.newPacket(nhrp.TypePurgeRequest, n.Protocol)
	p.Flags = nhrp.FlagPurgeN
	p.RequestID = e.nextReqID()
	p.CIEs = append(p.CIEs[:0], nhrp.CIE{PrefixLength: uint8(e.self().BitLen()), Protocol: e.self()})
	e.appendAuthAndEnd(p)
	e.transmit(now, n.NBMA, n.Transport)
	e.emit(now, events.PurgeSent, e.self(), n.NBMA, "", why, 0)
}

// errReflected: a keyed packet signed by ourselves, sent back to us.
var errReflected = errors.New("signed by this node: reflected")

// verifyHMAC checks the keyed authentication of the raw packet b: the MAC,
// that we did not sign it ourselves (a reflection), and the replay window.
func (e *Engine) verifyHMAC(now time.Time, b []byte) (DropReason, error) {
	signer, _, seq, err := e.hmac.Verify(b)
	if err != nil {
		return DropAuth, err
	}
	if signer == e.self() {
		return DropReplay, errReflected
	}
	if err := e.replay.Check(signer, seq, now); err != nil {
		return DropReplay, err
	}
	return 0, nil
}

// authenticated checks the Cisco authentication extension when we have a
// secret configured.
func (e *Engine) authenticated(p *nhrp.Packet) bool {
	return e.auth == nil || ciscoSecretIs(p, e.cfg.Authentication)
}

// ciscoSecretIs reports whether p carries Cisco's clear-text
// authentication with secret.
func ciscoSecretIs(p *nhrp.Packet, secret []byte) bool {
	x := p.Extension(nhrp.ExtAuthentication)
	if x == nil {
		return false
	}
	a, err := x.Authentication()
	if err != nil {
		return false
	}
	s, ok := a.CiscoSecret()
	return ok && string(s) == string(secret)
}

// authOffset is the offset of the authentication extension in p, or of the
// extension area when there is none (for the Error Indication's offset).
func (e *Engine) authOffset(p *nhrp.Packet) int {
	off := int(p.ExtensionOffset)
	if off == 0 {
		return int(p.PacketSize)
	}
	for i := range p.Extensions {
		if p.Extensions[i].Type == nhrp.ExtAuthentication {
			return off
		}
		off += p.Extensions[i].Len()
	}
	return int(p.ExtensionOffset)
}

func (e *Engine) sendErrorIndication(now time.Time, to netip.AddrPort, t nbma.Transport, offending []byte, code nhrp.ErrorCode, offset int) {
	if last, ok := e.lastEI[to.Addr()]; ok && now.Sub(last) < errorIndicationGap {
		return
	}
	if len(e.lastEI) >= maxSources { // bound the rate limiter's memory
		clear(e.lastEI)
	}
	e.lastEI[to.Addr()] = now
	// The destination is the offending packet's source protocol address
	// when we could read it.
	var dst netip.Addr
	if e.rx.SrcProto.IsValid() {
		dst = e.rx.SrcProto
	}
	p := e.newPacket(nhrp.TypeErrorIndication, dst)
	p.Code = uint16(code)
	p.ErrorOffset = uint16(offset)
	if len(offending) > 1024 {
		offending = offending[:1024]
	}
	p.Payload = offending
	// RFC 2332 §5.2.7: an Error Indication carries no extensions.
	e.stats.ErrorIndicationsSent++
	e.transmit(now, to, t)
}

func seconds(d time.Duration) uint16 {
	s := d / time.Second
	if s > 0xffff {
		return 0xffff
	}
	return uint16(s)
}

// capHold bounds a holding time a peer asked for by our configuration;
// zero becomes our own holding time.
func (e *Engine) capHold(secs uint16) time.Duration {
	d := time.Duration(secs) * time.Second
	if d == 0 {
		d = e.cfg.Holdtime
	}
	return min(d, e.cfg.MaxHoldtime)
}
