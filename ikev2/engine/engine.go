// Package engine is dmvpn's IKEv2 state machine (RFC 7296), first step:
// establishing an IKE SA and its first Child SA (IKE_SA_INIT, IKE_AUTH with
// a pre-shared key), liveness checks (DPD) and deletes, as initiator and as
// responder, with NAT detection, cookies, retransmissions and the bounds
// a hub facing the Internet needs.
//
// The engine is sans-IO, like the NHRP engine: it opens no sockets and
// starts no goroutines or timers. The node hands it every IKE datagram
// (HandlePacket for UDP 500, HandlePacketNATT for UDP 4500), calls Tick at
// the deadline it returns, and tells it when ESP traffic arrived (Traffic),
// so that only idle peers are probed. Datagrams go out through Sender;
// state changes come out through Config.OnEvent, Child SA keys included.
// All methods are safe for concurrent use (one mutex).
//
// # Concurrency
//
// The engine's state changes only under its mutex, and Sender and OnEvent
// are only called with it held (so never concurrently). The expensive part
// of answering a handshake is computed without it: for IKE_SA_INIT our
// D-H key pair (fresh for each exchange, never used twice), g^ir after
// RFC 6989's checks, SKEYSEED, the IKE SA's keys and the response; for
// IKE_AUTH the peer's AUTH payload and ours. The message's handler
// reserves the half-open SA first (indexed, counted by every bound, marked
// busy: copies of the message and messages for the SA meanwhile are
// dropped as DropUnexpected), releases the lock, computes from copies,
// takes the lock again and applies the result only if the SA is still
// there and still busy with that computation (a timer, Delete or a
// collision may have removed it: then nothing is sent). So a node that
// calls HandlePacket from several goroutines spreads the hub's handshake
// cryptography over that many cores (BenchmarkHandshake); called from one,
// the engine behaves exactly as before. Everything else (rekeys, the
// initiator's side, INFORMATIONAL) runs under the lock.
//
// Peers are IKE endpoints, address and port: several spokes behind one NAT
// each get their own SA. An IKE SA is found by our SPI; the endpoint index
// is for Initiate (one SA per peer) and collisions.
//
// # Simultaneous initiation
//
// Two spokes resolving each other start IKE toward each other at once. The
// rule, applied by both sides to the same two nonces so that both agree:
// when an IKE_SA_INIT request arrives from a peer we have an initiation of
// our own outstanding with (IKE_SA_INIT or IKE_AUTH sent, not yet
// established), the exchange whose initiator nonce is lower survives
// (nonces compared as octet strings; equal nonces, never seen in practice,
// fall back to the lower initiator SPI). If ours is lower, the peer's
// request is dropped (DropCollision): the peer, applying the same rule to
// our request, abandons its own initiation and answers ours. If theirs is
// lower, we abandon ours silently (no event: the SA we answer replaces it)
// and answer. Either way one IKE SA and one Child SA pair result, with
// the lower-nonce side as initiator. Like RFC 7296 §2.8.1 for rekeys, the
// lowest nonce decides; unlike it, the losing exchange is cut short instead
// of completed and deleted, so no SA comes up only to go again.
//
// # Hostile input
//
// Every datagram is decoded by package ikev2, which checks every length;
// what the engine indexes beyond that it checks itself. Unauthenticated
// input (IKE_SA_INIT) creates state only within the bounds: a token bucket
// per source address, cookies once CookieThreshold half-open SAs exist
// (stateless, ikecrypto.CookieJar), hard caps on half-open SAs
// (MaxHalfOpen) and on all SAs (MaxIKESAs), a few SAs per endpoint. Everything else needs an SA's keys.
// What is dropped is counted by reason (Stats.Dropped); nothing a peer
// sends makes an SA come up without a verified AUTH payload.
//
// # Rekeying and lifetimes
//
// CREATE_CHILD_SA rekeys the Child SA (REKEY_SA, new nonces, a KE payload
// when Config.PFSGroup is set; RFC 7296 §1.3.3, §2.17) and the IKE SA (new
// SPIs, KE always, SKEYSEED from the old SK_d, message IDs from 0 on the
// new SA; §1.3.2, §2.18), in both roles. A CREATE_CHILD_SA for a further
// Child SA is answered NO_ADDITIONAL_SAS: DMVPN has one pair per peer.
//
// Lifetimes: each SA is rekeyed at 90 % of its lifetime (ChildLifetime,
// IKELifetime) less a random jitter of up to 10 %, i.e. in [0.8, 0.9) of
// it, by whichever peer's time comes first (both run the rule); RekeyChild
// rekeys at once (the node's answer to an ESP soft limit), RekeyIKE too.
// An SA still not replaced at its lifetime is deleted ("lifetime expired:
// not rekeyed"). A rekey request without an answer after the
// retransmissions means the peer is dead: IKESADown, as for DPD.
//
// What the data plane sees of a Child SA rekey, make before break:
//
//	rekey initiator: ChildSAUp(new, Replaces=old, Standby=false): install
//	                 it and send on it now; then ChildSADown(old,
//	                 Reason "rekeyed", ReplacedBy=new), and our Delete of
//	                 old goes to the peer.
//	rekey responder: ChildSAUp(new, Replaces=old, Standby=true): install the
//	                 inbound SA, keep sending on old; then, when the peer's
//	                 Delete of old arrives (or 2 s later without it),
//	                 ChildSAActive(new): send on it now; at the Delete,
//	                 ChildSADown(old, "rekeyed", ReplacedBy=new).
//
// So at every moment one outbound SA per peer is in use (the one of the
// last ChildSAUp without Standby, or of the last ChildSAActive), and a
// ChildSADown of a rekey never names it. The data plane keeps an old
// inbound SA a few seconds after its ChildSADown for packets in flight.
// An IKE SA rekey reports IKESARekeyed (new SPIs, the old ones in OldSPIi
// and OldSPIr) and no Child SA events: the Child SAs move unchanged.
//
// Collisions. Both peers rekeying the same Child SA (or the IKE SA) at
// once: both exchanges complete, and the SA made with the lowest of the
// four nonces is redundant (§2.8.1, §2.8.2). The node that made it deletes
// it without ever reporting it; the other node reported it as a standby
// SA and gets ChildSADown ("redundant: simultaneous rekey") when the
// Delete comes, never a ChildSAActive. The survivor's initiator deletes the
// old SA. A rekey of a Child SA we already deleted is answered
// CHILD_SA_NOT_FOUND; TEMPORARY_FAILURE answers a rekey while the IKE SA
// is being deleted or rekeyed, a Child SA rekey while we rekey the IKE SA
// and an IKE SA rekey while we rekey a Child SA (§2.25); a refused rekey is
// tried again after a random 1 to 3 s.
//
// Not yet (later steps, room left): EAP, certificates, fragmentation,
// reauthentication.
package engine

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/ikev2"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
	"github.com/dmvpn/dmvpn/internal/ratelimit"
	"github.com/dmvpn/dmvpn/internal/ratelog"
)

// Sender transmits one UDP datagram. natt: send it from our UDP 4500
// socket; pkt then already starts with the non-ESP marker. Otherwise from
// UDP 500. It must not keep pkt after returning, nor call the engine. It
// is called with the engine's lock held, from whichever goroutine's call
// (HandlePacket, Tick, ...) sends.
type Sender interface {
	SendIKE(to netip.AddrPort, natt bool, pkt []byte)
}

// Peer is what is configured for one peer address.
type Peer struct {
	// PSK replaces Config.PSK for this peer.
	PSK []byte
	// RemoteID, when set, is the identity the peer must authenticate
	// with (replacing Config.RemoteID).
	RemoteID Identity
}

// Config is what the engine needs to know.
type Config struct {
	// Local is our NBMA address: the traffic selectors' local host and the
	// address NAT detection hashes (with port 500 or 4500).
	Local netip.Addr
	// LocalID is our identity; zero: AddrID(Local).
	LocalID Identity
	// PSK is the pre-shared key of the cloud (Cisco's keyring for address
	// 0.0.0.0); Peers may override it per peer address.
	PSK []byte
	// RemoteID, when set, is the identity every peer must authenticate
	// with (Peers may override it); zero: any identity.
	RemoteID Identity
	// Peers holds per-peer settings, by the address the peer's IKE
	// messages come from (its public address behind NAT).
	Peers map[netip.Addr]Peer

	// IKEProposals and ESPProposals, in order of preference; nil: the
	// defaults (DefaultIKEProposals, DefaultESPProposals).
	IKEProposals []IKEProposal
	ESPProposals []ESPProposal
	// TunnelMode makes us ask for tunnel mode instead of transport mode,
	// and refuse transport mode as a responder. DMVPN wants transport mode
	// (the default); tunnel mode is for peers that cannot do it.
	TunnelMode bool

	// ChildLifetime and ChildLifetimeKB are each Child SA's limits
	// (Cisco's defaults: 3600 s, 4,608,000 KB); 0: those. The engine
	// rekeys a Child SA before ChildLifetime (see Engine, "Lifetimes") and
	// deletes it at that age if no rekey succeeded; the octet limit is the
	// data plane's (esp.Lifetime in ChildSA.Limits), which calls
	// RekeyChild at the soft limit.
	ChildLifetime   time.Duration
	ChildLifetimeKB uint64
	// IKELifetime is the IKE SA's: rekeyed before, deleted at that age if
	// no rekey succeeded. 0: 24 hours (Cisco's 86,400 s).
	IKELifetime time.Duration
	// PFSGroup, when set, makes Child SA rekeys carry a KE payload of this
	// group (perfect forward secrecy), and is required of the peer's
	// rekeys. 0: no PFS asked for (Cisco's default); a peer's rekey with
	// PFS is still accepted with any group we implement that it proposes.
	PFSGroup ikecrypto.Group
	// ForceUDPEncap makes every SA use UDP 4500 for IKE and ESP, NAT or
	// not, as strongSwan's encap=yes: our NAT_DETECTION_SOURCE_IP hashes
	// an endpoint that is not ours, so the peer sees a NAT (RFC 7296
	// §2.23), and we act as if we were behind one (float, keepalives).
	// A node on the UDP transport asks for it: ESP-in-UDP has the
	// kernel's UDP GSO/GRO, raw ESP does not.
	ForceUDPEncap bool
	// ExportKeys puts each IKE SA's keys in its IKESAUp and IKESARekeyed
	// events (Event.IKEKeys), for a key log that lets Wireshark decrypt
	// the exchanges. Off by default: keys leave the engine only in Child
	// SA events, for the data plane.
	ExportKeys bool

	// DPDInterval: an established SA whose peer sent nothing (IKE or, per
	// Traffic, ESP) for this long gets an empty INFORMATIONAL; a peer that
	// answers none of its retransmissions is dead. 0: no DPD.
	DPDInterval time.Duration
	// RetransmitBase is the first retransmission timeout, doubled for each
	// next one; RetransmitTries the number of timeouts before giving up.
	// 0: 500 ms and 5 (sent at 0, 0.5, 1.5, 3.5 and 7.5 s, given up at
	// 15.5 s).
	RetransmitBase  time.Duration
	RetransmitTries int
	// HalfOpenTimeout is how long a responder waits for IKE_AUTH after
	// answering IKE_SA_INIT; 0: 30 s.
	HalfOpenTimeout time.Duration

	// CookieThreshold: with this many half-open SAs, IKE_SA_INIT requests
	// without a valid cookie are answered with one and no state is kept.
	// 0: 64; negative: always demand cookies.
	CookieThreshold int
	// MaxHalfOpen is the hard cap on half-open SAs (0: 1,024); MaxIKESAs on
	// all SAs (0: 16,384).
	MaxHalfOpen int
	MaxIKESAs   int
	// InitRate limits IKE_SA_INIT requests accepted per source address
	// (0: 20 per second). Retransmissions of one already answered are free.
	InitRate Rate

	// Rand is the source of SPIs, nonces, DH keys and the cookie secret;
	// nil: crypto/rand. Tests pass a seeded reader.
	Rand io.Reader
	// OnEvent is called, under the engine's lock, for each SA state
	// change. It must not block or call the engine; may be nil.
	OnEvent func(Event)
}

// Defaults and bounds.
const (
	defaultRetransmitBase  = 500 * time.Millisecond
	defaultRetransmitTries = 5
	defaultHalfOpenTimeout = 30 * time.Second
	defaultCookieThreshold = 64
	defaultMaxHalfOpen     = 1024
	defaultMaxIKESAs       = 16384
	defaultChildLifetime   = 3600 * time.Second
	defaultChildLifetimeKB = 4608000
	defaultIKELifetime     = 24 * time.Hour
	// minLifetime keeps rekey times sane (a rekey takes a round trip).
	minLifetime = 10 * time.Second
	// standbyFallback is how long a rekey responder keeps sending on the
	// old Child SA when the initiator's Delete of it does not come.
	standbyFallback = 2 * time.Second
	// tempFailRetry is the range of the random delay before a rekey the
	// peer answered TEMPORARY_FAILURE is tried again (RFC 7296 §2.25).
	tempFailMin, tempFailSpread = time.Second, 2 * time.Second
	// rekeyRetry is how long after another refusal a rekey is retried
	// (until the hard lifetime ends the SA).
	rekeyRetry = 30 * time.Second
	// MaxMessage is the longest IKE message handled (RFC 7296 §2 asks for
	// 1,280 at least; without fragmentation nothing real is near this).
	MaxMessage = 16384
	// nonceLen is the length of our nonces: at least half of every PRF's
	// key (RFC 7296 §2.10), 256 bits.
	nonceLen = 32
	// maxSAsPerPeer bounds the SAs of one endpoint: an established one, its
	// replacement, a few half-open attempts.
	maxSAsPerPeer = 4
	// maxQueued bounds the requests waiting behind the outstanding one
	// (window 1): deletes and DPD never need more.
	maxQueued = 4
	// maxChildren bounds the Child SAs of one IKE SA: one, its rekey's
	// replacement, the redundant one of a collision, one spare.
	maxChildren = 4
	// maxInitRetries bounds COOKIE and INVALID_KE_PAYLOAD retries.
	maxInitRetries = 3
	// maxTimersPerTick bounds one Tick; the rest run at the next one.
	maxTimersPerTick = 4096
	// cookieRotation is how often the cookie secret changes.
	cookieRotation = 2 * time.Minute
)

// Errors of the API.
var (
	// ErrExists: an SA with the peer exists or is being set up.
	ErrExists = errors.New("ikev2 engine: an IKE SA with this peer exists or is being set up")
	// ErrFull: the SA table is at MaxIKESAs.
	ErrFull = errors.New("ikev2 engine: too many IKE SAs")
	// ErrNoSA: no SA with the peer (or SPI).
	ErrNoSA = errors.New("ikev2 engine: no such SA")

	errTooManyChildren = errors.New("ikev2 engine: too many Child SAs on the IKE SA")
)

// Stats counts what the engine did.
type Stats struct {
	Received, Sent uint64
	// Retransmitted counts our requests sent again after a timeout;
	// Reanswered the responses sent again for a retransmitted request.
	Retransmitted, Reanswered uint64
	// CookiesSent, InvalidKESent, NoProposalSent: stateless IKE_SA_INIT
	// answers.
	CookiesSent, InvalidKESent, NoProposalSent uint64
	// AuthFailures counts AUTH payloads (or identities) refused.
	AuthFailures uint64
	// Established counts IKE SAs that came up; Failed attempts given up;
	// Dead SAs whose peer stopped answering.
	Established, Failed, Dead uint64
	// Collisions counts simultaneous initiations resolved (either way).
	Collisions uint64
	// ChildRekeys and IKERekeys count rekeys completed (either role);
	// RekeyCollisions simultaneous rekeys resolved (RFC 7296 §2.8.1,
	// §2.8.2), counted by each node that saw both halves.
	ChildRekeys, IKERekeys, RekeyCollisions uint64
	// IKESAs, HalfOpen and ChildSAs are the current table sizes.
	IKESAs, HalfOpen, ChildSAs int
	// Dropped counts dropped datagrams by reason (index: DropReason).
	Dropped [numDropReasons]uint64
}

// DroppedByName returns the drop counters keyed by reason name.
func (s *Stats) DroppedByName() map[string]uint64 {
	m := make(map[string]uint64, numDropReasons)
	for i, n := range s.Dropped {
		m[DropReason(i).String()] = n
	}
	return m
}

// initKey finds a responder's half-open SA from a retransmitted
// IKE_SA_INIT (RFC 7296 §2.1: same SPIi from the same endpoint).
type initKey struct {
	from netip.AddrPort
	spiI uint64
}

// Engine is one node's IKEv2 engine.
type Engine struct {
	mu   sync.Mutex
	cfg  Config
	send Sender
	log  *slog.Logger
	rlog *ratelog.Limiter
	rnd  io.Reader

	cookies     *ikecrypto.CookieJar
	cookieSince time.Time

	bySPI    map[uint64]*ikeSA           // our SPI → SA
	byKey    map[netip.AddrPort][]*ikeSA // peer endpoint → its SAs
	halfOpen map[initKey]*ikeSA          // responder SAs waiting for IKE_AUTH
	byChild  map[uint32]*childSA         // our inbound SPI → Child SA
	nHalf    int
	timers   timers
	initRate ratelimit.PerSource
	stats    Stats

	// Scratch, reused under mu.
	rx    ikev2.Message
	rxBuf []byte
	tx    []byte
	plain []byte
	sa    ikev2.SA
	tsi   ikev2.TrafficSelectors
	tsr   ikev2.TrafficSelectors
	// job is what the message being handled left to compute without the
	// lock (HandlePacket takes it).
	job offLock
	// afterCompute, when set (tests), runs between a job's compute and
	// its commit, without the lock: where other calls can interleave.
	afterCompute func()
}

// New returns an engine for cfg sending with s. log may be nil.
func New(cfg Config, s Sender, log *slog.Logger) (*Engine, error) {
	if !cfg.Local.IsValid() {
		return nil, errors.New("ikev2 engine: no local address")
	}
	cfg.Local = cfg.Local.Unmap()
	if cfg.LocalID.IsZero() {
		cfg.LocalID = AddrID(cfg.Local)
	}
	if !cfg.LocalID.valid() {
		return nil, fmt.Errorf("ikev2 engine: local identity %v cannot be sent", cfg.LocalID)
	}
	if cfg.IKEProposals == nil {
		cfg.IKEProposals = DefaultIKEProposals()
	}
	if cfg.ESPProposals == nil {
		cfg.ESPProposals = DefaultESPProposals()
	}
	if err := checkIKEProposals(cfg.IKEProposals); err != nil {
		return nil, err
	}
	if err := checkESPProposals(cfg.ESPProposals); err != nil {
		return nil, err
	}
	if cfg.ChildLifetime == 0 {
		cfg.ChildLifetime = defaultChildLifetime
	}
	if cfg.ChildLifetimeKB == 0 {
		cfg.ChildLifetimeKB = defaultChildLifetimeKB
	}
	if cfg.IKELifetime == 0 {
		cfg.IKELifetime = defaultIKELifetime
	}
	if cfg.ChildLifetime < minLifetime || cfg.IKELifetime < minLifetime {
		return nil, fmt.Errorf("ikev2 engine: lifetimes %v (Child SA) and %v (IKE SA): at least %v", cfg.ChildLifetime,
			cfg.IKELifetime, minLifetime)
	}
	if cfg.PFSGroup != 0 {
		if err := cfg.PFSGroup.Valid(); err != nil {
			return nil, fmt.Errorf("ikev2 engine: PFS group: %w", err)
		}
	}
	if cfg.RetransmitBase <= 0 {
		cfg.RetransmitBase = defaultRetransmitBase
	}
	if cfg.RetransmitTries <= 0 {
		cfg.RetransmitTries = defaultRetransmitTries
	}
	cfg.RetransmitTries = min(cfg.RetransmitTries, 16)
	if cfg.HalfOpenTimeout <= 0 {
		cfg.HalfOpenTimeout = defaultHalfOpenTimeout
	}
	if cfg.CookieThreshold == 0 {
		cfg.CookieThreshold = defaultCookieThreshold
	} else if cfg.CookieThreshold < 0 {
		cfg.CookieThreshold = 0
	}
	if cfg.MaxHalfOpen <= 0 {
		cfg.MaxHalfOpen = defaultMaxHalfOpen
	}
	if cfg.MaxIKESAs <= 0 {
		cfg.MaxIKESAs = defaultMaxIKESAs
	}
	if cfg.InitRate == (Rate{}) {
		cfg.InitRate = Rate{Packets: 20, Interval: time.Second}
	}
	if len(cfg.PSK) == 0 {
		for a, p := range cfg.Peers {
			if len(p.PSK) == 0 {
				return nil, fmt.Errorf("ikev2 engine: no pre-shared key for peer %v and none for the cloud", a)
			}
		}
		if len(cfg.Peers) == 0 {
			return nil, errors.New("ikev2 engine: no pre-shared key")
		}
	}
	for _, id := range append([]Identity{cfg.RemoteID}, peerIDs(cfg.Peers)...) {
		if !id.IsZero() && !id.valid() {
			return nil, fmt.Errorf("ikev2 engine: remote identity %v cannot be matched", id)
		}
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("part", "ike") // the node gives the component
	// Key generation runs without the engine's lock (offLock), so the
	// source must be safe for concurrent use: crypto/rand is, a reader
	// from the configuration (a test's seeded one) gets a lock of its own.
	var rnd io.Reader = crand.Reader
	if cfg.Rand != nil {
		rnd = &lockedReader{r: cfg.Rand}
	}
	jar, err := ikecrypto.NewCookieJar(rnd)
	if err != nil {
		return nil, fmt.Errorf("ikev2 engine: cookie secret: %w", err)
	}
	return &Engine{cfg: cfg, send: s, log: log, rlog: ratelog.New(log, 0, 0), rnd: rnd, cookies: jar,
		bySPI: map[uint64]*ikeSA{}, byKey: map[netip.AddrPort][]*ikeSA{}, halfOpen: map[initKey]*ikeSA{},
		byChild:  map[uint32]*childSA{},
		initRate: ratelimit.NewPerSource(cfg.InitRate),
		// Scratch grows with the largest message seen (at most MaxMessage).
		rxBuf: make([]byte, 0, 1024), tx: make([]byte, 0, 1024), plain: make([]byte, 0, 1024)}, nil
}

func peerIDs(m map[netip.Addr]Peer) []Identity {
	out := make([]Identity, 0, len(m))
	for _, p := range m {
		out = append(out, p.RemoteID)
	}
	return out
}

// HandlePacket handles a datagram received on UDP 500: pkt is the UDP
// payload, from the peer's address and port. pkt is not kept nor changed.
// It may be called concurrently: handshake cryptography runs without the
// lock (see Concurrency), so calls from several goroutines overlap.
func (e *Engine) HandlePacket(now time.Time, from netip.AddrPort, pkt []byte) {
	e.mu.Lock()
	e.handle(now, from, false, pkt)
	e.unlockAndRun(now)
}

// HandlePacketNATT handles a datagram received on UDP 4500 that is IKE
// (the payload starts with the non-ESP marker; ESP and keepalives are the
// data plane's and are dropped here as DropNotIKE).
func (e *Engine) HandlePacketNATT(now time.Time, from netip.AddrPort, payload []byte) {
	e.mu.Lock()
	if msg, ok := ikev2.FromNATT(payload); ok {
		e.handle(now, from, true, msg)
	} else {
		e.stats.Received++
		e.drop(now, DropNotIKE, from, "not IKE")
	}
	e.unlockAndRun(now)
}

// offLock is the expensive part of handling one message (D-H, SKEYSEED,
// AUTH payloads), left by the handler for the SA it concerns: that SA is
// marked busy with it, so nothing else starts on it meanwhile. compute
// runs without the engine's lock and touches only the job's own data
// (copies made under the lock, or SA fields written before and never
// again); commit runs under the lock again and first checks that the SA
// is still there and still busy with this job (a timer, Delete or a
// collision may have removed it while the lock was free), then applies
// the result: state changes, events, datagrams. So the engine's state
// only ever changes under the lock, and concurrent HandlePacket calls
// spend their crypto in parallel.
type offLock interface {
	compute()
	commit(e *Engine, now time.Time)
}

// unlockAndRun ends a HandlePacket call, which holds e.mu: it releases the lock,
// runs the job the message left (if any) and commits it under the lock.
func (e *Engine) unlockAndRun(now time.Time) {
	j := e.job
	e.job = nil
	e.mu.Unlock()
	if j == nil {
		return
	}
	j.compute()
	if e.afterCompute != nil {
		e.afterCompute()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	j.commit(e, now)
}

// lockedReader makes a reader safe for concurrent use.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(b)
}

func (e *Engine) handle(now time.Time, from netip.AddrPort, natt bool, pkt []byte) {
	e.stats.Received++
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if len(pkt) > MaxMessage {
		e.drop(now, DropTooBig, from, "message too long")
		return
	}
	// Our own copy: SK payloads are decrypted in place, and the caller's
	// buffer is theirs.
	e.rxBuf = append(e.rxBuf[:0], pkt...)
	m := &e.rx
	if err := m.Decode(e.rxBuf); err != nil {
		e.drop(now, DropMalformed, from, err.Error())
		return
	}
	h := &m.Header
	if h.Exchange == ikev2.ExchangeIKESAInit {
		if h.IsResponse() {
			e.initResponse(now, from, natt, m)
		} else {
			e.initRequest(now, from, natt, m)
		}
		return
	}
	e.protected(now, from, natt, m)
}

// protected handles every message after IKE_SA_INIT: found by our SPI,
// checked against the message-ID window, decrypted.
func (e *Engine) protected(now time.Time, from netip.AddrPort, natt bool, m *ikev2.Message) {
	h := &m.Header
	fromInitiator := h.IsInitiator()
	ours := uint64(h.InitiatorSPI)
	if fromInitiator {
		ours = uint64(h.ResponderSPI)
	}
	sa := e.bySPI[ours]
	if sa == nil || sa.initiator == fromInitiator || sa.spiI != uint64(h.InitiatorSPI) || sa.spiR != uint64(h.ResponderSPI) {
		e.drop(now, DropUnknownSPI, from, "no SA with these SPIs")
		return
	}
	if sa.in == nil {
		e.drop(now, DropUnexpected, from, "no keys yet")
		return
	}
	if sa.busy != nil {
		// A request of the peer's is being handled without the lock; a
		// retransmission of it gets the answer when that is done.
		e.drop(now, DropUnexpected, from, "the SA is busy with the peer's previous message")
		return
	}
	sk := m.Find(ikev2.PayloadSK)
	if sk == nil {
		e.drop(now, DropIntegrity, from, "not encrypted")
		return
	}
	if h.IsResponse() {
		if sa.req == nil || sa.req.id != h.MessageID || sa.req.noReply {
			e.drop(now, DropOutOfWindow, from, "no request outstanding with this message ID")
			return
		}
		if !e.open(now, sa, from, m, sk) {
			return
		}
		e.response(now, sa, from, natt, m)
		return
	}
	switch {
	case h.MessageID == sa.peerNext:
		if !e.open(now, sa, from, m, sk) {
			return
		}
		e.request(now, sa, from, natt, m)
	case h.MessageID+1 == sa.peerNext && sa.lastResp != nil:
		// A retransmission: the answer was lost. Verify it first, so a
		// forger cannot make us send, then answer as before.
		if !e.open(now, sa, from, m, sk) {
			return
		}
		e.stats.Reanswered++
		e.transmit(from, natt, sa.lastResp)
	default:
		e.drop(now, DropOutOfWindow, from, "request message ID outside the window")
	}
}

// open verifies and decrypts m's SK payload and decodes the inner payloads;
// on success the peer has shown it holds the SA's keys.
func (e *Engine) open(now time.Time, sa *ikeSA, from netip.AddrPort, m *ikev2.Message, sk *ikev2.Payload) bool {
	off, n, err := sa.in.Open(m.Raw, sk.Offset)
	if err != nil {
		e.drop(now, DropIntegrity, from, err.Error())
		return false
	}
	if err := m.DecodeInner(m.Raw[off : off+n]); err != nil {
		e.drop(now, DropMalformed, from, err.Error())
		return false
	}
	sa.lastRx = now
	return true
}

// Tick runs the timers due at now and returns when it wants to run next
// (zero: nothing scheduled).
func (e *Engine) Tick(now time.Time) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now.Sub(e.cookieSince) >= cookieRotation {
		if e.cookieSince.IsZero() {
			e.cookieSince = now
		} else if err := e.cookies.Rotate(); err == nil {
			e.cookieSince = now
		}
	}
	for i := 0; i < maxTimersPerTick; i++ {
		k, ok := e.timers.Due(now)
		if !ok {
			break
		}
		switch k.kind {
		case timerChildRekey, timerChildExpire, timerChildFallback:
			if c := e.byChild[uint32(k.spi)]; c != nil && c.ike != nil {
				e.childTimer(now, k.kind, c)
			}
			continue
		}
		sa := e.bySPI[k.spi]
		if sa == nil {
			continue
		}
		switch k.kind {
		case timerRetransmit:
			e.retransmitTimer(now, sa)
		case timerHalfOpen:
			if sa.state == stateRespInit {
				e.rlog.Info(now, "half-open IKE SA timed out", "peer", sa.peer)
				e.remove(now, sa, "no IKE_AUTH from the peer", false)
			}
		case timerDPD:
			e.dpdTimer(now, sa)
		case timerIKERekey, timerIKEExpire, timerLinger:
			e.ikeTimer(now, k.kind, sa)
		}
	}
	return e.nextDeadline()
}

func (e *Engine) nextDeadline() time.Time {
	next := e.timers.Next()
	if rot := e.cookieSince.Add(cookieRotation); e.nHalf > 0 && (next.IsZero() || rot.Before(next)) {
		next = rot
	}
	return next
}

// NextDeadline is when Tick should run next (zero: no timer).
func (e *Engine) NextDeadline() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nextDeadline()
}

// Initiate starts an IKE SA (and its first Child SA) with the peer's IKE
// endpoint (normally its address and port 500). ErrExists when one exists
// or is being set up, in either direction.
func (e *Engine) Initiate(now time.Time, peer netip.AddrPort) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	if !peer.IsValid() || peer.Port() == 0 {
		return fmt.Errorf("ikev2 engine: initiate to %v: no address and port", peer)
	}
	for _, o := range e.byKey[peer] {
		if o.state != stateDeleting && o.state != stateRekeyed {
			return fmt.Errorf("initiate to %v: %w", peer, ErrExists)
		}
	}
	// An SA that moved there (the float to 4500, a NAT's new mapping) is
	// one with this peer too. O(SAs): an API call, not a packet's work.
	for _, o := range e.bySPI {
		if o.peer == peer && o.key != peer && o.state != stateDeleting && o.state != stateRekeyed {
			return fmt.Errorf("initiate to %v (where the SA with %v moved): %w", peer, o.key, ErrExists)
		}
	}
	if len(e.bySPI) >= e.cfg.MaxIKESAs {
		return fmt.Errorf("initiate to %v: %w", peer, ErrFull)
	}
	return e.startInitiator(now, peer)
}

// Traffic tells the engine that ESP arrived on the Child SA with inbound
// SPI spi: its peer is alive, so DPD leaves it alone. Cheap: no timer is
// touched (the DPD timer looks at the time when it fires).
func (e *Engine) Traffic(now time.Time, spi uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.byChild[spi]; c != nil && c.ike != nil && now.After(c.ike.lastRx) {
		c.ike.lastRx = now
	}
}

// Delete deletes every IKE SA with the peer endpoint: the one it was
// initiated to (or first heard from), or the one its events and SAs name
// now (behind NAT an SA moves: to the peer's UDP 4500, to the NAT's
// mapping). An INFORMATIONAL with a Delete payload is sent (and
// retransmitted), and IKESADown (after ChildSADown) is reported at once,
// as the SA stops being used now. O(SAs): an operator's action, not a
// packet's.
func (e *Engine) Delete(now time.Time, peer netip.AddrPort, reason string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	sas := append([]*ikeSA(nil), e.byKey[peer]...)
	for _, sa := range e.bySPI {
		if sa.peer == peer && sa.key != peer {
			sas = append(sas, sa)
		}
	}
	found := false
	for _, sa := range sas {
		found = true
		e.deleteIKE(now, sa, reason)
	}
	if !found {
		return fmt.Errorf("delete %v: %w", peer, ErrNoSA)
	}
	return nil
}

// DeleteChild deletes the Child SA with inbound SPI spi, telling the peer
// (INFORMATIONAL with an ESP Delete payload); ChildSADown is reported at
// once.
func (e *Engine) DeleteChild(now time.Time, spi uint32, reason string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.byChild[spi]
	if c == nil || c.ike == nil || c.ike.state != stateEstablished {
		return fmt.Errorf("delete child SA %08x: %w", spi, ErrNoSA)
	}
	e.deleteChild(now, c, reason)
	return nil
}

// RekeyChild rekeys the Child SA with inbound SPI inboundSPI now (the node
// calls it when the ESP SA's soft octet or packet limit is reached,
// esp.SA.SoftExpired; the engine rekeys by time on its own). nil also
// when a rekey of it is already under way or it is being replaced; ErrNoSA
// when there is no such SA up.
func (e *Engine) RekeyChild(now time.Time, inboundSPI uint32) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.byChild[inboundSPI]
	if c == nil || c.ike == nil || c.ike.state != stateEstablished {
		return fmt.Errorf("rekey child SA %08x: %w", inboundSPI, ErrNoSA)
	}
	if err := e.startChildRekey(now, c.ike, c); err != nil {
		return fmt.Errorf("rekey child SA %08x: %w", inboundSPI, err)
	}
	return nil
}

// RekeyIKE rekeys the established IKE SA with the peer endpoint (as Delete
// finds it) now. nil also when a rekey is already under way; ErrNoSA when
// none is established.
func (e *Engine) RekeyIKE(now time.Time, peer netip.AddrPort) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	var sa *ikeSA
	for _, o := range e.byKey[peer] {
		if o.state == stateEstablished && o.announced {
			sa = o
		}
	}
	if sa == nil {
		for _, o := range e.bySPI {
			if o.peer == peer && o.state == stateEstablished && o.announced {
				sa = o
			}
		}
	}
	if sa == nil {
		return fmt.Errorf("rekey IKE SA with %v: %w", peer, ErrNoSA)
	}
	if err := e.startIKERekey(now, sa); err != nil {
		return fmt.Errorf("rekey IKE SA with %v: %w", peer, err)
	}
	return nil
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.IKESAs, s.HalfOpen, s.ChildSAs = len(e.bySPI), e.nHalf, len(e.byChild)
	return s
}

// SAStatus is one IKE SA as `show` reports it.
type SAStatus struct {
	Peer       netip.AddrPort
	SPIi, SPIr ikev2.SPI
	Initiator  bool
	State      string
	RemoteID   Identity
	NAT        NAT
	Suite      ikecrypto.Suite
	// Group is the Diffie-Hellman group of the exchange that made the
	// SA's keys (IKE_SA_INIT, or its rekey).
	Group ikecrypto.Group
	// NumChildren is len(Children).
	NumChildren int
	Children    []ChildStatus
	Created     time.Time
	LastRx      time.Time
	// RekeyAt is when the engine rekeys the SA next (zero: not planned,
	// e.g. being set up or deleted); Expires its hard lifetime.
	RekeyAt, Expires time.Time
}

// ChildStatus is one Child SA of an IKE SA as `show` reports it.
type ChildStatus struct {
	InboundSPI, OutboundSPI uint32
	Transform               esp.Transform
	ESN                     bool
	Mode                    Mode
	UDPEncap                bool
	PFS                     ikecrypto.Group
	// State: "active" (its outbound SA is the one in use), "standby" (a
	// rekey's new SA, outbound not yet in use), "replaced" (its successor's
	// is; waiting for the Delete) or "redundant" (lost a rekey collision).
	State                     string
	Created, RekeyAt, Expires time.Time
}

// SAs lists the IKE SAs (for `show`; O(SAs)).
func (e *Engine) SAs() []SAStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]SAStatus, 0, len(e.bySPI))
	for _, sa := range e.bySPI {
		st := SAStatus{Peer: sa.peer, SPIi: ikev2.SPI(sa.spiI), SPIr: ikev2.SPI(sa.spiR),
			Initiator: sa.initiator, State: sa.state.String(), RemoteID: sa.remoteID, NAT: sa.nat,
			Suite: sa.suite, Group: sa.group, NumChildren: len(sa.children), Created: sa.created, LastRx: sa.lastRx,
			Expires: sa.expires}
		if sa.state == stateEstablished {
			st.RekeyAt = sa.rekeyAt
		}
		for _, c := range sa.children {
			cs := ChildStatus{InboundSPI: c.inSPI, OutboundSPI: c.outSPI, Transform: c.info.Transform, ESN: c.info.ESN,
				Mode: c.info.Mode, UDPEncap: c.info.UDPEncap, PFS: c.info.PFS, State: c.state.String(),
				Created: c.created, Expires: c.expires}
			if c.state == childActive && c.successor == nil {
				cs.RekeyAt = c.rekeyAt
			}
			st.Children = append(st.Children, cs)
		}
		out = append(out, st)
	}
	return out
}

// LogSuppressed is how many log lines the rate limiter dropped.
func (e *Engine) LogSuppressed() uint64 { return e.rlog.Suppressed() }

func (e *Engine) drop(now time.Time, r DropReason, from netip.AddrPort, why string) {
	e.stats.Dropped[r]++
	e.rlog.Debug(now, "dropped "+r.String(), "from", from, "why", why)
}

// random fills b from the configured source.
func (e *Engine) random(b []byte) error {
	_, err := io.ReadFull(e.rnd, b)
	return err
}

// newSPI returns a fresh non-zero IKE SPI not in use.
func (e *Engine) newSPI() (uint64, error) {
	var b [8]byte
	for range 16 {
		if err := e.random(b[:]); err != nil {
			return 0, err
		}
		if s := binary.BigEndian.Uint64(b[:]); s != 0 && e.bySPI[s] == nil {
			return s, nil
		}
	}
	return 0, errors.New("ikev2 engine: no free SPI")
}

// newChildSPI returns a fresh inbound ESP SPI: not 0, not 1-255 (reserved
// by IANA, RFC 4303 §2.1), not in use.
func (e *Engine) newChildSPI() (uint32, error) {
	var b [4]byte
	for range 16 {
		if err := e.random(b[:]); err != nil {
			return 0, err
		}
		if s := binary.BigEndian.Uint32(b[:]); s > 255 && e.byChild[s] == nil {
			return s, nil
		}
	}
	return 0, errors.New("ikev2 engine: no free ESP SPI")
}

// randDuration returns a uniformly random duration in [0, d) (0 when the
// random source fails: a rekey without jitter is still a rekey).
func (e *Engine) randDuration(d time.Duration) time.Duration {
	var b [8]byte
	if d <= 0 || e.random(b[:]) != nil {
		return 0
	}
	return time.Duration(binary.BigEndian.Uint64(b[:]) % uint64(d))
}

// rekeyTime is when an SA of lifetime l made at t is rekeyed: at 90 % of
// l less a random jitter of up to 10 % of l, i.e. in [0.8 l, 0.9 l)
// (strongSwan's rekey_time = 0.9 life with rand_time = 0.1 life). Both
// peers run this rule for the same SA; whoever's time comes first rekeys
// it, and the other sees it replaced (or, at the same moment, the
// collision rules of RFC 7296 §2.8 apply). The jitter keeps collisions
// rare and a hub's rekeys spread out.
func (e *Engine) rekeyTime(t time.Time, l time.Duration) time.Time {
	return t.Add(l - l/10 - e.randDuration(l/10))
}

func (e *Engine) nonce() ([]byte, error) {
	n := make([]byte, nonceLen)
	return n, e.random(n)
}

// transmit sends msg (an IKE message) to to, behind the non-ESP marker on
// UDP 4500.
func (e *Engine) transmit(to netip.AddrPort, natt bool, msg []byte) {
	e.stats.Sent++
	if !natt {
		e.send.SendIKE(to, false, msg)
		return
	}
	b := append(ikev2.AppendNonESPMarker(e.tx[:0]), msg...)
	e.tx = b[:0]
	e.send.SendIKE(to, true, b)
}

// header is the IKE header of a message on sa.
func (sa *ikeSA) header(ex ikev2.ExchangeType, id uint32, response bool) ikev2.Header {
	h := ikev2.Header{InitiatorSPI: ikev2.SPI(sa.spiI), ResponderSPI: ikev2.SPI(sa.spiR), Exchange: ex, MessageID: id}
	if sa.initiator {
		h.Flags |= ikev2.FlagInitiator
	}
	if response {
		h.Flags |= ikev2.FlagResponse
	}
	return h
}

// seal builds an encrypted message on sa: the header h, then an SK payload
// holding what inner adds. The result is a new slice (requests are kept for
// retransmission, responses for retransmitted requests).
func (e *Engine) seal(sa *ikeSA, h ikev2.Header, inner func(b *ikev2.Builder)) ([]byte, error) {
	chain := ikev2.NewChain(e.plain[:0])
	if inner != nil {
		inner(&chain)
	}
	plain, err := chain.Finish()
	if err != nil {
		return nil, fmt.Errorf("ikev2 engine: inner payloads: %w", err)
	}
	e.plain = plain[:0]
	t := sa.out.Transform()
	n := len(plain)
	b := ikev2.NewMessage(make([]byte, 0, ikev2.HeaderLen+ikev2.PayloadHeaderLen+n+t.Overhead(n)), &h)
	body := b.Encrypted(chain.First(), n+t.Overhead(n))
	msg, err := b.Finish()
	if err != nil {
		return nil, fmt.Errorf("ikev2 engine: message: %w", err)
	}
	copy(msg[body+t.IVLen():], plain)
	m, err := sa.out.Seal(msg, body-ikev2.PayloadHeaderLen, n)
	if err != nil {
		return nil, fmt.Errorf("ikev2 engine: seal: %w", err)
	}
	return msg[:m], nil
}

// psk returns the pre-shared key and the required remote identity for a
// peer address.
func (e *Engine) peerConfig(a netip.Addr) (psk []byte, remote Identity) {
	psk, remote = e.cfg.PSK, e.cfg.RemoteID
	if p, ok := e.cfg.Peers[a]; ok {
		if len(p.PSK) > 0 {
			psk = p.PSK
		}
		if !p.RemoteID.IsZero() {
			remote = p.RemoteID
		}
	}
	return psk, remote
}

// natSource is our NAT_DETECTION_SOURCE_IP data: the hash of our endpoint,
// or with ForceUDPEncap of one that is not ours (the unspecified address,
// port 0), so that the peer finds a NAT.
func (e *Engine) natSource(spiI, spiR uint64, ours netip.AddrPort) []byte {
	if e.cfg.ForceUDPEncap {
		fake := netip.IPv4Unspecified()
		if ours.Addr().Is6() {
			fake = netip.IPv6Unspecified()
		}
		return natHash(spiI, spiR, netip.AddrPortFrom(fake, 0))
	}
	return natHash(spiI, spiR, ours)
}

// natFound is what NAT detection found, with ForceUDPEncap's pretence
// that we are behind a NAT when the peer does NAT detection at all.
func (e *Engine) natFound(nat NAT, ok bool) NAT {
	if ok && e.cfg.ForceUDPEncap {
		nat.Local = true
	}
	return nat
}

// natHash is the NAT_DETECTION_*_IP data for an endpoint.
func natHash(spiI, spiR uint64, ep netip.AddrPort) []byte {
	h := ikecrypto.NATDetectionHash(spiI, spiR, ep.Addr(), ep.Port())
	return h[:]
}

// natCheck compares the NAT detection notifications of m (hashed with
// spiI, spiR) with the endpoints: src where the message came from, dst
// where it went (ours). ok is false when m has none (no NAT traversal).
func natCheck(m *ikev2.Message, spiI, spiR uint64, src, dst netip.AddrPort) (nat NAT, ok bool) {
	srcSeen, srcMatch, dstSeen, dstMatch := false, false, false, false
	want := ikecrypto.NATDetectionHash(spiI, spiR, src.Addr(), src.Port())
	wantDst := ikecrypto.NATDetectionHash(spiI, spiR, dst.Addr(), dst.Port())
	for i := range m.Payloads {
		p := &m.Payloads[i]
		if p.Type != ikev2.PayloadNotify {
			continue
		}
		n, err := p.Notify()
		if err != nil {
			continue
		}
		switch n.Type {
		case ikev2.NotifyNATDetectionSourceIP:
			srcSeen = true
			srcMatch = srcMatch || bytes.Equal(n.Data, want[:])
		case ikev2.NotifyNATDetectionDestinationIP:
			dstSeen = true
			dstMatch = dstMatch || bytes.Equal(n.Data, wantDst[:])
		}
	}
	if !srcSeen || !dstSeen {
		return NAT{}, false
	}
	return NAT{Remote: !srcMatch, Local: !dstMatch}, true
}

// localEP is our endpoint for NAT detection: port 500, or 4500.
func (e *Engine) localEP(natt bool) netip.AddrPort {
	if natt {
		return netip.AddrPortFrom(e.cfg.Local, ikev2.NATTPort)
	}
	return netip.AddrPortFrom(e.cfg.Local, ikev2.Port)
}

// childLimits is the octet lifetime of Child SAs: hard at the configured
// kilobytes, soft at 7/8 of it (time to rekey).
func (e *Engine) childLimits() esp.Lifetime {
	hard := e.cfg.ChildLifetimeKB * 1024
	return esp.Lifetime{SoftBytes: hard - hard/8, HardBytes: hard}
}
