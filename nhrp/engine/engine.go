// Package engine is the NHRP protocol engine of one tunnel: the NHC side
// (register with each NHS, refresh, retry with backoff, deregister) and the
// NHS side (accept or refuse registrations, keep dynamic entries until they
// expire, answer purges), plus Error Indications both ways.
//
// The engine opens no sockets and starts no goroutines or timers: the node
// feeds it received NHRP packets and calls Tick at the deadline Tick last
// returned, passing the current time, so tests drive it with a fake clock.
// Packets go out through the Sender interface. All methods are safe for
// concurrent use (one mutex: the engine is the single owner of NHRP state).
package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/localroute"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
	"github.com/dmvpn/dmvpn/underlay"
)

// Sender transmits an encoded NHRP packet to an NBMA endpoint. It must not
// keep pkt after returning.
type Sender interface {
	SendNHRP(to netip.AddrPort, t underlay.Transport, pkt []byte)
}

// NHS is a next hop server this node registers with.
type NHS struct {
	Protocol  netip.Addr
	NBMA      netip.AddrPort
	Transport underlay.Transport
}

// StaticMap is a configured mapping (Cisco `ip nhrp map`).
type StaticMap struct {
	Protocol  netip.Addr
	NBMA      netip.AddrPort
	Transport underlay.Transport
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
	// RegistrationInterval is the refresh period; 0 means Holdtime/3.
	RegistrationInterval time.Duration
	// Authentication is the Cisco plain-text secret; empty for none.
	Authentication []byte
	Unique         bool
	NHS            []NHS
	Static         []StaticMap
	// Transport is this node's configured underlay, used to reach peers
	// learned through NHRP that we have not heard from directly.
	Transport underlay.Transport
	// Shortcut (spoke, phase 3): act on Traffic Indications.
	Shortcut bool
	// Redirect (hub, phase 3): send Traffic Indications.
	Redirect bool
	// Routes is the overlay FIB: where a hub finds a destination's owner,
	// and where shortcut routes go. Required.
	Routes *fib.Table
	// Host is the host's routing view: what we own (our LANs) when asked.
	Host localroute.Table
	// OnRoutes is called after the engine changes Routes (so the node can
	// mirror them elsewhere); may be nil.
	OnRoutes func()
}

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
}

// Retry backoff for unanswered registrations.
const (
	retryMin = time.Second
	retryMax = 16 * time.Second
	// errorIndicationGap rate-limits Error Indications per source.
	errorIndicationGap = time.Second
	// hopCount is what we put in packets we originate.
	hopCount = 255
)

// Engine is the NHRP engine of one tunnel.
type Engine struct {
	mu    sync.Mutex
	cfg   Config
	cache *cache.Cache
	send  Sender
	log   *slog.Logger

	nhs     []*nhsState
	auth    *nhrp.Extension
	reqID   uint32
	started bool
	stats   Stats
	lastEI  map[netip.Addr]time.Time

	pending   map[netip.Addr]*pendingResolution
	redirects map[redirectKey]*tokenBucket
	holders   map[netip.Addr]map[netip.AddrPort]holder

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
	if log == nil {
		log = slog.Default()
	}
	if cfg.Routes == nil {
		cfg.Routes = fib.New()
	}
	e := &Engine{cfg: cfg, cache: c, send: s, log: log, lastEI: map[netip.Addr]time.Time{}, buf: make([]byte, 0, 1500),
		pending: map[netip.Addr]*pendingResolution{}, redirects: map[redirectKey]*tokenBucket{},
		holders: map[netip.Addr]map[netip.AddrPort]holder{}}
	if len(cfg.Authentication) > 0 {
		a, err := nhrp.NewCiscoAuthentication(cfg.Authentication)
		if err != nil {
			return nil, fmt.Errorf("nhrp: authentication: %w", err)
		}
		e.auth = &a
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
		e.cache.Put(cache.Entry{Protocol: m.Protocol, NBMA: m.NBMA, ClaimedNBMA: m.NBMA.Addr(), Transport: m.Transport,
			Type: cache.Static, Multicast: m.Multicast, Up: true, Created: now})
	}
	for _, n := range e.nhs {
		// The NHS is reachable before we are registered: traffic and our
		// registrations go to it through this static entry (Cisco's
		// `ip nhrp nhs X nbma Y multicast`).
		e.cache.Put(cache.Entry{Protocol: n.Protocol, NBMA: n.NBMA, ClaimedNBMA: n.NBMA.Addr(), Transport: n.Transport,
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
			e.log.Warn("nhrp: registration with NHS lost", "nhs", n.Protocol, "nbma", n.NBMA)
		}
		if !now.Before(n.nextAt) {
			e.register(now, n)
		}
	}
	e.tickResolutions(now)
	for _, gone := range e.cache.Expire(now) {
		e.stats.ExpiredEntries++
		switch gone.Type {
		case cache.Resolved:
			e.dropShortcut(gone.Protocol)
			e.log.Info("nhrp: shortcut expired", "peer", gone.Protocol, "nbma", gone.NBMA)
		case cache.Dynamic:
			e.purgeHolders(gone.Protocol, uint8(gone.Protocol.BitLen()))
			e.log.Info("nhrp: registration expired", "protocol", gone.Protocol, "nbma", gone.NBMA)
		default:
			e.log.Debug("nhrp: cache entry expired", "protocol", gone.Protocol, "type", gone.Type)
		}
	}
	return e.nextDeadline()
}

func (e *Engine) nextDeadline() time.Time {
	next := e.resolutionDeadline(e.cache.NextExpiry())
	for _, n := range e.nhs {
		if !n.nextAt.IsZero() && (next.IsZero() || n.nextAt.Before(next)) {
			next = n.nextAt
		}
		if n.State == StateUp && !n.Expires.IsZero() && n.Expires.Before(next) {
			next = n.Expires
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
	told := map[netip.AddrPort]bool{}
	for _, c := range e.cache.All() {
		if c.Type == cache.Resolved && c.NBMA.IsValid() && !told[c.NBMA] {
			told[c.NBMA] = true
			e.sendPurge(c.NBMA, c.Transport, e.self(), uint8(e.self().BitLen()), true)
		}
	}
	for _, h := range e.holders[e.self()] {
		if !told[h.ep] {
			told[h.ep] = true
			e.sendPurge(h.ep, h.t, e.self(), uint8(e.self().BitLen()), true)
		}
	}
	for _, n := range e.nhs {
		// Purge wherever a registration may have been accepted, even if
		// its reply has not reached us yet.
		if n.State != StateUp && n.Attempts == 0 {
			continue
		}
		p := e.newPacket(nhrp.TypePurgeRequest, n.Protocol)
		p.Flags = nhrp.FlagPurgeN // we will not be here to read the reply
		p.RequestID = e.nextReqID()
		p.CIEs = append(p.CIEs[:0], nhrp.CIE{PrefixLength: uint8(e.cfg.Address.Addr().BitLen()), Protocol: e.cfg.Address.Addr()})
		e.appendAuthAndEnd(p)
		e.transmit(n.NBMA, n.Transport)
		e.setState(now, n, StateDown, "shut down")
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

func (e *Engine) nextReqID() uint32 {
	e.reqID++
	return e.reqID
}

func (e *Engine) setState(now time.Time, n *nhsState, state, why string) {
	if n.State != state {
		n.Since = now
	}
	n.State = state
	n.LastError = why
	up := state == StateUp
	e.cache.Update(n.Protocol, func(c *cache.Entry) { c.Up = up })
}

// register sends a Registration Request to n and schedules the retry.
func (e *Engine) register(now time.Time, n *nhsState) {
	p := e.newPacket(nhrp.TypeRegistrationRequest, n.Protocol)
	p.Flags = nhrp.FlagCiscoNAT
	if e.cfg.Unique {
		p.Flags |= nhrp.FlagRegistrationU
	}
	n.reqID = e.nextReqID()
	p.RequestID = n.reqID
	self := e.cfg.Address.Addr()
	p.CIEs = append(p.CIEs[:0], nhrp.CIE{
		PrefixLength: uint8(self.BitLen()), MTU: e.cfg.MTU, HoldingTime: seconds(e.cfg.Holdtime),
	})
	// Cisco's NAT extension: the NHS as we know it, so it can tell us how
	// it sees us (FRR nhrp_nhs.c does the same).
	nat := nhrp.NewNATAddress(nhrp.CIE{PrefixLength: uint8(n.Protocol.BitLen()), MTU: e.cfg.MTU, NBMA: n.NBMA.Addr(), Protocol: n.Protocol})
	p.Extensions = nhrp.StandardRequestExtensions(p.Extensions[:0], e.auth, &nat)
	e.transmit(n.NBMA, n.Transport)

	if n.State != StateUp {
		if n.State == StateDown {
			e.setState(now, n, StateRegistering, n.LastError)
		}
		n.Attempts++
		if n.Attempts == 4 && n.State == StateRegistering {
			e.log.Warn("nhrp: no reply from NHS (check reachability, tunnel key and transport); still trying",
				"nhs", n.Protocol, "nbma", n.NBMA, "attempts", n.Attempts-1)
		}
		n.nextAt = now.Add(backoff(n.Attempts, e.cfg.RegistrationInterval))
	} else {
		// Refresh: if unanswered, retry sooner than the next refresh.
		n.Attempts++
		n.nextAt = now.Add(min(backoff(n.Attempts, e.cfg.RegistrationInterval), e.cfg.RegistrationInterval))
	}
}

func backoff(attempt int, ceiling time.Duration) time.Duration {
	d := retryMin << min(attempt-1, 10)
	d = min(d, retryMax)
	if ceiling > 0 {
		d = min(d, ceiling)
	}
	return d
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

// transmit encodes e.tx and sends it.
func (e *Engine) transmit(to netip.AddrPort, t underlay.Transport) {
	b, err := e.tx.AppendEncode(e.buf[:0])
	if err != nil {
		e.log.Error("nhrp: encode", "type", e.tx.Type, "err", err)
		return
	}
	e.buf = b[:0]
	e.stats.Sent++
	e.send.SendNHRP(to, t, b)
}

// HandlePacket processes one NHRP packet received from the NBMA endpoint
// from over transport t. b is only read during the call.
func (e *Engine) HandlePacket(now time.Time, from netip.AddrPort, t underlay.Transport, b []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats.Received++
	e.rxRaw = b
	defer func() { e.rxRaw = nil }()
	p := &e.rx
	err := p.Decode(b)
	if err != nil {
		var de *nhrp.DecodeError
		e.stats.Malformed++
		e.log.Debug("nhrp: malformed packet", "from", from, "err", err)
		if errors.As(err, &de) && de.Code != 0 && p.Type != nhrp.TypeErrorIndication {
			e.sendErrorIndication(now, from, t, b, nhrp.ErrorCode(de.Code), de.Offset)
		}
		return
	}
	if p.HopCount == 0 {
		e.sendErrorIndication(now, from, t, b, nhrp.ErrHopCountExceeded, 9)
		return
	}
	if !e.authenticated(p) {
		e.stats.AuthFailures++
		if p.Type == nhrp.TypeErrorIndication {
			// An NHS that does not share our secret cannot sign the
			// Error Indication that tells us so: act on it anyway. It
			// can only mark a registration failed and slow its retries.
			e.handleErrorIndication(now, from, p)
			return
		}
		e.log.Warn("nhrp: authentication failure", "from", from, "type", p.Type, "src", p.SrcProto)
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
		e.log.Debug("nhrp: purge reply", "from", from, "reqid", p.RequestID)
	case nhrp.TypeErrorIndication:
		e.handleErrorIndication(now, from, p)
	}
}

// authenticated checks the Cisco authentication extension when we have a
// secret configured.
func (e *Engine) authenticated(p *nhrp.Packet) bool {
	if e.auth == nil {
		return true
	}
	x := p.Extension(nhrp.ExtAuthentication)
	if x == nil {
		return false
	}
	a, err := x.Authentication()
	if err != nil {
		return false
	}
	secret, ok := a.CiscoSecret()
	return ok && string(secret) == string(e.cfg.Authentication)
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

func (e *Engine) sendErrorIndication(now time.Time, to netip.AddrPort, t underlay.Transport, offending []byte, code nhrp.ErrorCode, offset int) {
	if last, ok := e.lastEI[to.Addr()]; ok && now.Sub(last) < errorIndicationGap {
		return
	}
	e.lastEI[to.Addr()] = now
	if len(e.lastEI) > 4096 { // bound the rate limiter's memory
		clear(e.lastEI)
	}
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
	// RFC 2332 §5.2.7: an Error Indication carries no extensions (so no
	// authentication either: receivers act on it unauthenticated).
	e.stats.ErrorIndicationsSent++
	e.transmit(to, t)
}

func (e *Engine) handleRegistrationRequest(now time.Time, from netip.AddrPort, t underlay.Transport, req *nhrp.Packet) {
	code := nhrp.CodeSuccess
	why := ""
	src := req.SrcProto
	switch {
	case !src.IsValid() || !e.cfg.Address.Contains(src) || src == e.cfg.Address.Addr():
		code, why = nhrp.CodeAdministrativelyProhib, "protocol address not on the tunnel subnet"
	case len(req.CIEs) == 0:
		code, why = nhrp.CodeAdministrativelyProhib, "no CIE"
	}
	if code == nhrp.CodeSuccess {
		if old, ok := e.cache.Get(src); ok {
			switch {
			case old.Type == cache.Static:
				code, why = nhrp.CodeAdministrativelyProhib, "address is statically mapped"
			case old.Type == cache.Dynamic && old.Unique && old.NBMA != from && now.Before(old.Expires):
				code, why = nhrp.CodeUniqueAddressRegistered, fmt.Sprintf("already registered from %s", old.NBMA)
			}
		}
	}
	natted := req.SrcNBMA.IsValid() && req.SrcNBMA != from.Addr()
	hold := time.Duration(req.CIEs[0].HoldingTime) * time.Second
	if code == nhrp.CodeSuccess && len(req.CIEs) > 0 && hold == 0 {
		// Holding time 0 withdraws the registration.
		e.cache.Delete(src)
		e.log.Info("nhrp: registration withdrawn", "protocol", src, "nbma", from)
	} else if code == nhrp.CodeSuccess {
		old, existed := e.cache.Get(src)
		entry := cache.Entry{
			Protocol: src, NBMA: from, ClaimedNBMA: req.SrcNBMA, Transport: t, Type: cache.Dynamic,
			Unique: req.Flags&nhrp.FlagRegistrationU != 0, NAT: natted, Multicast: true, Up: true,
			MTU: req.CIEs[0].MTU, HoldingTime: hold, Created: now, Expires: now.Add(hold),
		}
		if existed && old.NBMA == from && old.Type == cache.Dynamic {
			entry.Created = old.Created // a refresh keeps the up time
		} else {
			if existed && old.Type == cache.Dynamic {
				// It moved: whoever learned the old address must forget it.
				e.purgeHolders(src, uint8(src.BitLen()))
			}
			e.log.Info("nhrp: registered", "protocol", src, "nbma", from, "claimed", req.SrcNBMA, "nat", natted, "holdtime", hold)
		}
		e.cache.Put(entry)
		e.stats.RegistrationsAccepted++
	} else {
		e.stats.RegistrationsRefused++
		e.log.Warn("nhrp: registration refused", "protocol", src, "nbma", from, "code", code, "why", why)
	}

	// The reply: the request with the result in its CIEs, our Responder
	// Address, and (Cisco) the address we saw the spoke at when NATed.
	rep := e.copyForForward(req)
	rep.HopCount = hopCount
	rep.Type = nhrp.TypeRegistrationReply
	for i := range rep.CIEs {
		rep.CIEs[i].Code = code
	}
	for i := range rep.Extensions {
		x := &rep.Extensions[i]
		switch x.Type {
		case nhrp.ExtResponderAddress:
			x.CIEs = []nhrp.CIE{nhrp.SelfCIE(e.cfg.NBMA, e.self(), e.cfg.MTU, seconds(e.cfg.Holdtime))}
		case nhrp.ExtNATAddress:
			if natted {
				x.CIEs = append(append([]nhrp.CIE(nil), x.CIEs...), nhrp.CIE{
					PrefixLength: uint8(src.BitLen()), MTU: req.CIEs[0].MTU,
					NBMA: from.Addr(), Protocol: src,
				})
			}
		}
	}
	e.reauth(rep)
	e.transmit(from, t)
}

func (e *Engine) handleRegistrationReply(now time.Time, from netip.AddrPort, rep *nhrp.Packet) {
	var n *nhsState
	for _, c := range e.nhs {
		if c.reqID == rep.RequestID && c.reqID != 0 {
			n = c
		}
	}
	if n == nil {
		e.log.Debug("nhrp: registration reply matches no request", "from", from, "reqid", rep.RequestID)
		return
	}
	n.reqID = 0 // answered; late duplicates are ignored
	n.Attempts = 0
	code := nhrp.CodeSuccess
	for _, c := range rep.CIEs {
		if c.Code != nhrp.CodeSuccess {
			code = c.Code
		}
	}
	if code != nhrp.CodeSuccess {
		e.setState(now, n, StateRefused, fmt.Sprintf("NHS refused registration: %v (code %d)", code, code))
		e.log.Error("nhrp: registration refused by NHS", "nhs", n.Protocol, "nbma", n.NBMA, "code", uint8(code), "reason", code.String())
		n.Attempts = 3 // back off before trying again
		n.nextAt = now.Add(backoff(n.Attempts, e.cfg.RegistrationInterval))
		return
	}
	n.NATAddress = netip.AddrPort{}
	if nat := natAddress(rep, e.self(), e.cfg.NBMA); nat.IsValid() {
		n.NATAddress = netip.AddrPortFrom(nat, 0)
	}
	if n.State != StateUp {
		e.log.Info("nhrp: registered with NHS", "nhs", n.Protocol, "nbma", n.NBMA, "nat", n.NATAddress.IsValid())
	}
	e.setState(now, n, StateUp, "")
	n.Expires = now.Add(e.cfg.Holdtime)
	n.nextAt = now.Add(e.cfg.RegistrationInterval)
}

func (e *Engine) handlePurgeRequest(now time.Time, from netip.AddrPort, t underlay.Transport, req *nhrp.Packet) {
	e.stats.PurgesReceived++
	for _, c := range req.CIEs {
		addr := c.Protocol
		if !addr.IsValid() {
			continue
		}
		old, ok := e.cache.Get(addr)
		if !ok || old.Type == cache.Static {
			continue
		}
		// Only the holder of a binding (or the station that told us about
		// it) may purge it.
		if old.Type == cache.Dynamic && old.NBMA != from {
			e.log.Warn("nhrp: purge from a station that does not own the binding", "protocol", addr, "from", from, "owner", old.NBMA)
			continue
		}
		switch old.Type {
		case cache.Resolved:
			e.dropShortcut(addr)
		case cache.Dynamic:
			e.cache.Delete(addr)
			e.purgeHolders(addr, c.PrefixLength)
		default:
			e.cache.Delete(addr)
		}
		e.log.Info("nhrp: purged", "protocol", addr, "type", old.Type, "nbma", old.NBMA, "by", from)
	}
	if req.Flags&nhrp.FlagPurgeN != 0 {
		return
	}
	rep := e.copyForForward(req)
	rep.HopCount = hopCount
	rep.Type = nhrp.TypePurgeReply
	e.reauth(rep)
	e.transmit(from, t)
}

func (e *Engine) handleErrorIndication(now time.Time, from netip.AddrPort, ei *nhrp.Packet) {
	e.stats.ErrorIndicationsRecvd++
	code := nhrp.ErrorCode(ei.Code)
	// Which of our requests was in error? The offending packet is ours.
	var off nhrp.Packet
	_ = off.Decode(ei.Payload) // best effort: fields stay zero if it is cut
	if off.Type == nhrp.TypeResolutionRequest && off.SrcProto == e.self() {
		for target, p := range e.pending {
			if p.reqID == off.RequestID {
				e.failResolution(now, target, fmt.Sprintf("Error Indication: %v", code))
				return
			}
		}
	}
	for _, n := range e.nhs {
		if n.NBMA.Addr() != from.Addr() {
			continue
		}
		if off.Type == nhrp.TypeRegistrationRequest && off.RequestID != 0 && off.RequestID != n.reqID && n.State == StateUp {
			continue // about an older request; our registration stands
		}
		e.setState(now, n, StateError, fmt.Sprintf("NHS sent Error Indication: %v (code %d)", code, uint16(code)))
		e.log.Error("nhrp: error indication from NHS", "nhs", n.Protocol, "nbma", n.NBMA, "code", uint16(code), "reason", code.String())
		n.Attempts = max(n.Attempts, 3)
		n.nextAt = now.Add(backoff(n.Attempts, e.cfg.RegistrationInterval))
		return
	}
	e.log.Warn("nhrp: error indication", "from", from, "code", uint16(code), "reason", code.String(), "offset", ei.ErrorOffset)
}

func seconds(d time.Duration) uint16 {
	s := d / time.Second
	if s > 0xffff {
		return 0xffff
	}
	return uint16(s)
}
