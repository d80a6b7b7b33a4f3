package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// State is a session's state (RFC 4271 §8.2.2).
type State uint8

// Session states. StateUnknown is what a neighbor has before GoBGP reports
// anything.
const (
	StateUnknown State = iota
	StateIdle
	StateConnect
	StateActive
	StateOpenSent
	StateOpenConfirm
	StateEstablished
)

var stateNames = [...]string{"Unknown", "Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established"}

func (st State) String() string {
	if int(st) < len(stateNames) {
		return stateNames[st]
	}
	return "State(" + strconv.Itoa(int(st)) + ")"
}

func fsmState(s bgp.FSMState) State {
	switch s {
	case bgp.BGP_FSM_IDLE:
		return StateIdle
	case bgp.BGP_FSM_CONNECT:
		return StateConnect
	case bgp.BGP_FSM_ACTIVE:
		return StateActive
	case bgp.BGP_FSM_OPENSENT:
		return StateOpenSent
	case bgp.BGP_FSM_OPENCONFIRM:
		return StateOpenConfirm
	case bgp.BGP_FSM_ESTABLISHED:
		return StateEstablished
	}
	return StateUnknown
}

func apiState(s api.PeerState_SessionState) State {
	switch s {
	case api.PeerState_SESSION_STATE_IDLE:
		return StateIdle
	case api.PeerState_SESSION_STATE_CONNECT:
		return StateConnect
	case api.PeerState_SESSION_STATE_ACTIVE:
		return StateActive
	case api.PeerState_SESSION_STATE_OPENSENT:
		return StateOpenSent
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return StateEstablished
	}
	return StateUnknown
}

// NeighborStatus is one session as `show bgp` prints it.
type NeighborStatus struct {
	Address      netip.Addr
	AS           uint32 // configured; for a dynamic any-AS peer the AS of its OPEN (0 before)
	Description  string
	Dynamic      bool // accepted from a Dynamic range
	State        State
	Since        time.Time  // when State was entered (Established: the session's up time starts here)
	LocalAddress netip.Addr // the session's local address, once Established
	RouterID     netip.Addr // the peer's BGP identifier, once Established
	// Prefixes received from the neighbor, of which accepted (not
	// rejected as looping, etc.), and the number of our best paths
	// advertised to it. Advertised is -1 when not computed: GoBGP counts
	// it by walking the table per neighbor, so Neighbors skips it when
	// neighbors × prefixes exceeds advertisedBudget.
	Received, Accepted uint64
	Advertised         int64
	// LastError says in words why the session is not up, or why it last
	// went down ("" once Established, or when nothing went wrong yet):
	// connection refused, no answer (down, filtered, or TCP MD5 password
	// mismatch), a NOTIFICATION (bad peer AS, bad router ID, too many
	// prefixes...), hold timer expired. LastErrorAt is when it happened.
	LastError   string
	LastErrorAt time.Time
}

// advertisedBudget bounds the work of counting advertised prefixes in one
// Neighbors call (neighbors × Loc-RIB prefixes): GoBGP counts them by
// running its export path for every best path and neighbor, in its
// management goroutine, holding up everything else meanwhile.
const advertisedBudget = 1 << 16

// maxRecentDynamic is how many dynamic peers that went away Neighbors
// still shows, with their LastError (GoBGP forgets them at once).
const maxRecentDynamic = 64

// maxDynamicTracked bounds the dynamic peers tracked at once; past it,
// idle ones are forgotten first, then new ones are not tracked (they still
// work; Neighbors lists them from GoBGP without a LastError).
const maxDynamicTracked = 1 << 16

// peerTable tracks what GoBGP's peer events tell: state changes, why
// sessions went down, and (from its log) why connections fail. Static
// neighbors have an entry while configured. Dynamic peers get one with
// their first event; GoBGP deletes a dynamic peer without an event of its
// own (its last one is an Idle like any other), so an Idle dynamic entry
// is dropped when Neighbors finds GoBGP no longer has it, or when
// maxDynamicTracked is reached, into a ring of the last maxRecentDynamic.
type peerTable struct {
	cfg *Config // immutable fields only (AS, Password, Dynamic)

	mu          sync.Mutex
	m           map[netip.Addr]*peerTrack
	dynamic     int // dynamic entries in m
	recent      [maxRecentDynamic]peerTrack
	recentNext  int
	established int
	allDown     chan struct{} // closed when established reaches 0 (waitDown)
}

// waitDown waits until no session is Established, at most d; it reports
// whether that happened.
func (t *peerTable) waitDown(d time.Duration) bool {
	t.mu.Lock()
	if t.established == 0 {
		t.mu.Unlock()
		return true
	}
	if t.allDown == nil {
		t.allDown = make(chan struct{})
	}
	ch := t.allDown
	t.mu.Unlock()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
		return false
	}
}

// downLocked is called when established drops.
func (t *peerTable) downLocked() {
	t.established--
	if t.established == 0 && t.allDown != nil {
		close(t.allDown)
		t.allDown = nil
	}
}

// pruneLocked moves the Idle dynamic entries that GoBGP no longer has
// (live == nil: every Idle dynamic entry) to the recent ring.
func (t *peerTable) pruneLocked(live map[netip.Addr]bool) {
	for a, p := range t.m {
		if !p.dynamic || p.state != StateIdle || (live != nil && live[a]) {
			continue
		}
		t.recent[t.recentNext] = *p
		t.recentNext = (t.recentNext + 1) % maxRecentDynamic
		delete(t.m, a)
		t.dynamic--
	}
}

type peerTrack struct {
	addr        netip.Addr
	static      bool
	n           Neighbor // when static
	dynamic     bool
	as          uint32 // AS seen in an Established session
	state       State
	since       time.Time
	lastError   string
	lastErrorAt time.Time
}

func newPeerTable(c *Config) *peerTable {
	return &peerTable{cfg: c, m: make(map[netip.Addr]*peerTrack)}
}

func (t *peerTable) configure(n Neighbor) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.m[n.Address]
	if p == nil {
		p = &peerTrack{addr: n.Address, state: StateIdle, since: time.Now()}
		t.m[n.Address] = p
	}
	p.static, p.n, p.dynamic = true, n, false
}

func (t *peerTable) unconfigure(a netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.m[a]; p != nil && p.static {
		if p.state == StateEstablished {
			t.downLocked()
		}
		delete(t.m, a)
	}
}

// counts returns the sessions (static neighbors, dynamic peers not Idle)
// and how many are Established.
func (t *peerTable) counts() (n, established int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.m {
		if !p.dynamic || p.state != StateIdle {
			n++
		}
	}
	return n, t.established
}

// onPeer applies a GoBGP peer event.
func (s *Speaker) onPeer(ev *apiutil.WatchEventMessage_PeerEvent, ts time.Time) {
	if ev == nil || ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	st := &ev.Peer.State
	addr := st.NeighborAddress
	if !addr.IsValid() {
		addr = ev.Peer.Conf.NeighborAddress
	}
	if !addr.IsValid() {
		return
	}
	addr = addr.WithZone("")
	if ts.IsZero() {
		ts = time.Now()
	}
	dynamic := strings.HasPrefix(st.PeerGroup, dynamicGroupPrefix)
	now := fsmState(st.SessionState)

	t := s.peers
	t.mu.Lock()
	p := t.m[addr]
	if p == nil {
		if !dynamic {
			// A static neighbor's last events after SetNeighbors removed it.
			t.mu.Unlock()
			return
		}
		if t.dynamic >= maxDynamicTracked {
			t.pruneLocked(nil)
		}
		if t.dynamic >= maxDynamicTracked {
			t.mu.Unlock()
			return
		}
		p = &peerTrack{addr: addr, dynamic: true, state: StateActive}
		t.m[addr] = p
		t.dynamic++
	}
	old := p.state
	p.state, p.since = now, ts
	if st.PeerASN != 0 {
		p.as = st.PeerASN
	}
	switch {
	case now == StateEstablished && old != StateEstablished:
		t.established++
		p.lastError, p.lastErrorAt = "", time.Time{}
	case now != StateEstablished && old == StateEstablished:
		t.downLocked()
	}
	if s.stopped.Load() && old == StateEstablished && now != StateEstablished {
		// Our own Stop closed it: say so, not "the neighbor closed it".
		p.lastError, p.lastErrorAt = "this speaker stopped", ts
	} else if why := t.downReason(p, old, st); why != "" {
		p.lastError, p.lastErrorAt = why, ts
	}
	logged := *p
	t.mu.Unlock()

	// Rate-limited: a hub's thousands of spokes come and go together.
	switch {
	case now == StateEstablished && old != StateEstablished:
		s.sessLog.Info(ts, "bgp session up", "neighbor", addr, "as", logged.as, "dynamic", logged.dynamic)
		if cb := s.cfg.OnSession; cb != nil {
			cb(addr, logged.as, logged.dynamic, true, "")
		}
	case old == StateEstablished && now != StateEstablished:
		s.sessLog.Info(ts, "bgp session down", "neighbor", addr, "dynamic", logged.dynamic, "reason", logged.lastError)
		if cb := s.cfg.OnSession; cb != nil {
			cb(addr, logged.as, logged.dynamic, false, logged.lastError)
		}
	}
}

// downReason turns GoBGP's disconnect reason into words, "" when the event
// is not a failure (a timer moving Idle to Active, a deconfiguration).
func (t *peerTable) downReason(p *peerTrack, old State, st *apiutil.PeerState) string {
	if st.AdminState == api.PeerState_ADMIN_STATE_PFX_CT {
		return fmt.Sprintf("too many prefixes: the neighbor sent more than %d (MaxPrefixes), so the session was closed with a Cease", t.cfg.MaxPrefixes)
	}
	code, sub, haveCode := notificationCode(st.DisconnectMessage)
	switch st.DisconnectReason {
	case api.PeerState_DISCONNECT_REASON_HOLD_TIMER_EXPIRED:
		return "hold timer expired: nothing heard from the neighbor within the hold time (it is down, or the path to it is)"
	case api.PeerState_DISCONNECT_REASON_NOTIFICATION_RECEIVED:
		if haveCode {
			return "the neighbor closed the session with a NOTIFICATION: " + t.notification(p, code, sub, true)
		}
		return "the neighbor closed the session with a NOTIFICATION"
	case api.PeerState_DISCONNECT_REASON_NOTIFICATION_SENT:
		if haveCode {
			return "we closed the session with a NOTIFICATION: " + t.notification(p, code, sub, false)
		}
		return "we closed the session with a NOTIFICATION"
	case api.PeerState_DISCONNECT_REASON_BAD_PEER_AS:
		if want := t.expectedAS(p); want != 0 {
			return fmt.Sprintf("bad peer AS: the neighbor's OPEN carries an AS other than %d, the one configured for it; refused with a NOTIFICATION", want)
		}
		return "bad peer AS: the neighbor's OPEN carries an AS other than the one configured for it; refused with a NOTIFICATION"
	case api.PeerState_DISCONNECT_REASON_READ_FAILED:
		return "the connection failed: the neighbor closed or reset it"
	case api.PeerState_DISCONNECT_REASON_WRITE_FAILED:
		return "the connection failed while sending to the neighbor"
	case api.PeerState_DISCONNECT_REASON_INVALID_MSG:
		if old != StateEstablished {
			// GoBGP v4.8.0 takes a NOTIFICATION that answers our OPEN
			// for an invalid message and drops its code.
			return fmt.Sprintf("the neighbor refused our OPEN (GoBGP does not pass on the NOTIFICATION's reason): usually a bad peer AS — it must expect our AS %d — or a router ID clash (ours is %v)", t.cfg.AS, t.cfg.RouterID)
		}
		return "the neighbor sent a malformed or unexpected message; refused with a NOTIFICATION"
	case api.PeerState_DISCONNECT_REASON_GRACEFUL_RESTART:
		return "the neighbor is restarting (graceful restart): its routes are kept, marked stale, until it is back or its restart time runs out"
	case api.PeerState_DISCONNECT_REASON_RESTART_TIMER_EXPIRED:
		return "the neighbor did not come back within its graceful restart time: its stale routes were dropped"
	case api.PeerState_DISCONNECT_REASON_HARD_RESET:
		return "hard reset"
	case api.PeerState_DISCONNECT_REASON_ADMIN_DOWN:
		return "administratively shut down"
	}
	return ""
}

func (t *peerTable) expectedAS(p *peerTrack) uint32 {
	if p.static {
		return p.n.AS
	}
	best := -1
	var as uint32
	for _, d := range t.cfg.Dynamic {
		if d.Prefix.Contains(p.addr) && d.Prefix.Bits() > best {
			best, as = d.Prefix.Bits(), d.AS
		}
	}
	return as
}

var notificationRE = regexp.MustCompile(`code (\d+)\b.*subcode (\d+)\b`)

// notificationCode extracts the error code and subcode from GoBGP's text
// ("notification-received code 2(open) subcode 2(bad peer as)").
func notificationCode(msg string) (code, sub uint8, ok bool) {
	m := notificationRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, 0, false
	}
	c, err1 := strconv.ParseUint(m[1], 10, 8)
	s, err2 := strconv.ParseUint(m[2], 10, 8)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uint8(c), uint8(s), true
}

// notification words a NOTIFICATION (RFC 4271 §4.5, RFC 4486 for Cease)
// from the point of view of who got it.
func (t *peerTable) notification(p *peerTrack, code, sub uint8, received bool) string {
	switch code {
	case bgp.BGP_ERROR_MESSAGE_HEADER_ERROR:
		return "message header error"
	case bgp.BGP_ERROR_OPEN_MESSAGE_ERROR:
		switch sub {
		case bgp.BGP_ERROR_SUB_UNSUPPORTED_VERSION_NUMBER:
			return "OPEN error: unsupported BGP version"
		case bgp.BGP_ERROR_SUB_BAD_PEER_AS:
			if received {
				return fmt.Sprintf("OPEN error: bad peer AS — it does not expect our AS %d (check the AS it has configured for us)", t.cfg.AS)
			}
			if want := t.expectedAS(p); want != 0 {
				return fmt.Sprintf("OPEN error: bad peer AS — its OPEN carries an AS other than %d, the one configured for it", want)
			}
			return "OPEN error: bad peer AS"
		case bgp.BGP_ERROR_SUB_BAD_BGP_IDENTIFIER:
			return "OPEN error: bad BGP identifier (router IDs must be set and differ between iBGP neighbors)"
		case bgp.BGP_ERROR_SUB_UNSUPPORTED_OPTIONAL_PARAMETER:
			return "OPEN error: unsupported optional parameter"
		case bgp.BGP_ERROR_SUB_UNACCEPTABLE_HOLD_TIME:
			return "OPEN error: unacceptable hold time"
		case bgp.BGP_ERROR_SUB_UNSUPPORTED_CAPABILITY:
			return "OPEN error: unsupported capability (no address family in common?)"
		}
		return "OPEN error (subcode " + strconv.Itoa(int(sub)) + ")"
	case bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR:
		return "UPDATE error (subcode " + strconv.Itoa(int(sub)) + ")"
	case bgp.BGP_ERROR_HOLD_TIMER_EXPIRED:
		if received {
			return "hold timer expired at the neighbor (it heard nothing from us)"
		}
		return "hold timer expired"
	case bgp.BGP_ERROR_FSM_ERROR:
		return "finite state machine error"
	case bgp.BGP_ERROR_CEASE:
		switch sub {
		case bgp.BGP_ERROR_SUB_MAXIMUM_NUMBER_OF_PREFIXES_REACHED:
			return "Cease: maximum number of prefixes reached"
		case bgp.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN:
			return "Cease: administrative shutdown"
		case bgp.BGP_ERROR_SUB_PEER_DECONFIGURED:
			return "Cease: peer de-configured (the neighbor removed us or stopped)"
		case bgp.BGP_ERROR_SUB_ADMINISTRATIVE_RESET:
			return "Cease: administrative reset"
		case bgp.BGP_ERROR_SUB_CONNECTION_REJECTED:
			return "Cease: connection rejected (the neighbor has no configuration for us?)"
		case bgp.BGP_ERROR_SUB_OTHER_CONFIGURATION_CHANGE:
			return "Cease: configuration change"
		case bgp.BGP_ERROR_SUB_CONNECTION_COLLISION_RESOLUTION:
			return "Cease: connection collision resolution"
		case bgp.BGP_ERROR_SUB_OUT_OF_RESOURCES:
			return "Cease: out of resources"
		}
		return "Cease (subcode " + strconv.Itoa(int(sub)) + ")"
	}
	return "error code " + strconv.Itoa(int(code)) + " subcode " + strconv.Itoa(int(sub))
}

// dialFailed records why GoBGP's attempt to connect to a static neighbor
// failed (from its log; see gobgpLog).
func (t *peerTable) dialFailed(peer, err string) {
	a, perr := netip.ParseAddr(peer)
	if perr != nil {
		return
	}
	a = a.WithZone("")
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.m[a]
	if p == nil || !p.static || p.state == StateEstablished {
		return
	}
	port := p.n.Port
	if port == 0 {
		port = DefaultPort
	}
	target := netip.AddrPortFrom(a, port).String()
	var why string
	switch {
	case strings.Contains(err, "connection refused"):
		why = "cannot connect to " + target + ": connection refused (nothing listens there: BGP is not running on the neighbor, or the port is wrong)"
	case strings.Contains(err, "timeout"):
		why = "cannot connect to " + target + ": no answer (the neighbor is down or unreachable, a filter drops our SYN"
		if t.cfg.Password != "" {
			why += ", or its TCP MD5 password differs from ours or is not set"
		} else {
			why += ", or it requires a TCP MD5 password"
		}
		why += ")"
	case strings.Contains(err, "no route to host"), strings.Contains(err, "network is unreachable"):
		why = "cannot connect to " + target + ": no route to the neighbor"
	case strings.Contains(err, "cannot assign requested address"):
		why = "cannot connect to " + target + ": the local address " + t.cfg.LocalAddress.String() + " is not one of ours"
	default:
		why = "cannot connect to " + target + ": " + err
	}
	p.lastError, p.lastErrorAt = why, time.Now()
}

// notified records a NOTIFICATION we sent a static neighbor while its
// session was not up: our check of its OPEN failed (from GoBGP's log; see
// gobgpLog). Cease and FSM errors are left to the peer events, which
// explain them better.
func (t *peerTable) notified(peer string, code, sub int) {
	if code != bgp.BGP_ERROR_MESSAGE_HEADER_ERROR && code != bgp.BGP_ERROR_OPEN_MESSAGE_ERROR && code != bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR {
		return
	}
	if code > 255 || sub > 255 {
		return
	}
	a, err := netip.ParseAddr(peer)
	if err != nil {
		return
	}
	a = a.WithZone("")
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.m[a]
	if p == nil || !p.static || p.state == StateEstablished {
		return
	}
	p.lastError = "we refused the neighbor's OPEN with a NOTIFICATION: " + t.notification(p, uint8(code), uint8(sub), false)
	p.lastErrorAt = time.Now()
}

// Neighbors lists every session: the static neighbors, the dynamic peers
// connected now, and the last maxRecentDynamic dynamic peers that went
// away (State Idle, with their LastError). Sorted by address. It asks
// GoBGP (one management call); see NeighborStatus.Advertised for the
// cost bound.
func (s *Speaker) Neighbors() []NeighborStatus {
	if s.stopped.Load() {
		return nil
	}
	n, _ := s.peers.counts()
	_, reported, _, _ := s.rib.stats()
	s.opMu.Lock()
	ours := len(s.local)
	s.opMu.Unlock()
	adv := n*(reported+ours) <= advertisedBudget

	var peers []*api.Peer
	err := s.srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: adv}, func(p *api.Peer) {
		peers = append(peers, p)
	})
	if err != nil {
		s.log.Warn("bgp neighbor list failed", "err", err)
	}
	t := s.peers
	out := make([]NeighborStatus, 0, len(peers)+maxRecentDynamic)
	live := make(map[netip.Addr]bool, len(peers))
	statuses := make([]NeighborStatus, 0, len(peers))
	for _, p := range peers {
		ns := neighborFromAPI(p, adv)
		if ns.Address.IsValid() {
			live[ns.Address] = true
			statuses = append(statuses, ns)
		}
	}
	t.mu.Lock()
	if err == nil {
		t.pruneLocked(live)
	}
	seen := make(map[netip.Addr]bool, len(peers))
	for _, ns := range statuses {
		seen[ns.Address] = true
		if tr := t.m[ns.Address]; tr != nil {
			ns.LastError, ns.LastErrorAt = tr.lastError, tr.lastErrorAt
			if ns.Since.IsZero() {
				ns.Since = tr.since
			}
			if ns.AS == 0 {
				ns.AS = tr.as
			}
		}
		out = append(out, ns)
	}
	for i := range t.recent {
		r := &t.recent[i]
		if !r.addr.IsValid() || seen[r.addr] {
			continue
		}
		seen[r.addr] = true
		out = append(out, NeighborStatus{
			Address: r.addr, AS: r.as, Dynamic: true, State: StateIdle, Since: r.since,
			Advertised: -1, LastError: r.lastError, LastErrorAt: r.lastErrorAt,
		})
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b NeighborStatus) int { return a.Address.Compare(b.Address) })
	return out
}

func neighborFromAPI(p *api.Peer, adv bool) NeighborStatus {
	var ns NeighborStatus
	ns.Advertised = -1
	if p.Conf != nil {
		ns.Address, _ = netip.ParseAddr(p.Conf.NeighborAddress)
		ns.AS = p.Conf.PeerAsn
		ns.Description = p.Conf.Description
		ns.Dynamic = strings.HasPrefix(p.Conf.PeerGroup, dynamicGroupPrefix)
	}
	if st := p.State; st != nil {
		if a, err := netip.ParseAddr(st.NeighborAddress); err == nil {
			ns.Address = a
		}
		if st.PeerAsn != 0 {
			ns.AS = st.PeerAsn
		}
		if strings.HasPrefix(st.PeerGroup, dynamicGroupPrefix) {
			ns.Dynamic = true
		}
		ns.State = apiState(st.SessionState)
		ns.RouterID, _ = netip.ParseAddr(st.RouterId)
	}
	ns.Address = ns.Address.WithZone("")
	if ti := p.Timers; ti != nil && ti.State != nil {
		switch {
		case ns.State == StateEstablished && ti.State.Uptime != nil && ti.State.Uptime.Seconds > 0:
			ns.Since = ti.State.Uptime.AsTime()
		case ns.State != StateEstablished && ti.State.Downtime != nil && ti.State.Downtime.Seconds > 0:
			ns.Since = ti.State.Downtime.AsTime()
		}
	}
	if ns.State == StateEstablished && p.Transport != nil {
		ns.LocalAddress, _ = netip.ParseAddr(p.Transport.LocalAddress)
	}
	if ns.State != StateEstablished {
		ns.RouterID = netip.Addr{}
	}
	var advertised int64
	for _, af := range p.AfiSafis {
		if af == nil || af.State == nil {
			continue
		}
		ns.Received += af.State.Received
		ns.Accepted += af.State.Accepted
		advertised += int64(af.State.Advertised)
	}
	if adv {
		ns.Advertised = advertised
	}
	return ns
}
