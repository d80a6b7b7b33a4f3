package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmvpn/dmvpn/internal/ratelog"
	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Errors that errors.Is finds in what the Speaker returns.
var (
	ErrStopped   = errors.New("bgp: speaker stopped")
	ErrTooMany   = errors.New("bgp: too many announced prefixes")
	ErrBadPrefix = errors.New("bgp: not a usable prefix")
)

// OpError is a failed GoBGP operation: what we asked (Op, e.g. "listen",
// "add neighbor"), about what (Target, e.g. "127.0.0.1:179"), and GoBGP's
// or the kernel's answer.
type OpError struct {
	Op     string
	Target string
	Err    error
}

func (e *OpError) Error() string {
	if e.Target == "" {
		return "bgp: " + e.Op + ": " + e.Err.Error()
	}
	return "bgp: " + e.Op + " " + e.Target + ": " + e.Err.Error()
}

func (e *OpError) Unwrap() error { return e.Err }

// dynamicGroup names the GoBGP peer group of Dynamic[i]; a dynamic peer's
// PeerGroup tells Neighbors it is dynamic.
const dynamicGroupPrefix = "dmvpn-dynamic-"

func dynamicGroup(i int) string { return dynamicGroupPrefix + strconv.Itoa(i) }

// Speaker is a running BGP speaker: an embedded GoBGP server configured
// for DMVPN (see the package documentation). Its methods are safe for
// concurrent use.
type Speaker struct {
	cfg     Config // normalized; Neighbors is the start-up list (see neighbors)
	log     *slog.Logger
	sessLog *ratelog.Limiter // session up/down lines
	srv     *server.BgpServer
	logSh   *gobgpLogShared

	served      chan struct{} // closed when GoBGP's Serve returns
	watchCancel context.CancelFunc

	changes chan struct{}
	rib     *ribView

	// opMu serializes the operations that change GoBGP's configuration or
	// our own routes, and Stop.
	opMu      sync.Mutex
	neighbors map[netip.Addr]Neighbor // static neighbors now configured
	local     map[netip.Prefix]source // our own routes, by why we have them
	announced int                     // prefixes in local with srcAnnounced
	stopped   atomic.Bool

	peers *peerTable
}

// Start starts a speaker for cfg. ctx bounds the start-up only: the
// speaker runs until Stop. The error names the offending field
// (*ConfigError) or the GoBGP operation that failed (*OpError: the port is
// in use, the device does not exist...); on error nothing is left running.
func Start(ctx context.Context, cfg Config) (*Speaker, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	s := &Speaker{
		cfg:       c,
		log:       c.Log.With("component", "bgp"),
		changes:   make(chan struct{}, 1),
		rib:       newRibView(),
		neighbors: make(map[netip.Addr]Neighbor, len(c.Neighbors)),
		local:     make(map[netip.Prefix]source, len(c.Networks)+len(c.Aggregates)),
		served:    make(chan struct{}),
	}
	s.peers = newPeerTable(&s.cfg)
	s.sessLog = ratelog.New(s.log, ratelog.DefaultInterval, ratelog.DefaultBurst)
	var glog *slog.Logger
	glog, s.logSh = newGobgpLog(s.log, s.peers.dialFailed, s.peers.notified)
	lvl := new(slog.LevelVar)
	lvl.Set(slog.LevelWarn)
	s.srv = server.NewBgpServer(server.LoggerOption(glog, lvl))
	go func() {
		defer close(s.served)
		s.srv.Serve()
	}()
	if err := s.start(ctx); err != nil {
		s.shutdown(false)
		return nil, err
	}
	s.log.Info("bgp speaker started", "as", c.AS, "router_id", c.RouterID,
		"listen", s.listenString(), "neighbors", len(c.Neighbors), "dynamic_ranges", len(c.Dynamic),
		"route_reflector", c.RouteReflector, "next_hop_self", c.NextHopSelf)
	return s, nil
}

func (s *Speaker) listenString() string {
	if s.cfg.ListenPort < 0 {
		return "none"
	}
	a := "*"
	if s.cfg.ListenAddress.IsValid() {
		a = s.cfg.ListenAddress.String()
	}
	return net.JoinHostPort(a, strconv.Itoa(int(s.cfg.ListenPort)))
}

func (s *Speaker) start(ctx context.Context) error {
	c := &s.cfg
	g := &api.Global{
		Asn:          c.AS,
		RouterId:     c.RouterID.String(),
		ListenPort:   c.ListenPort,
		BindToDevice: c.BindDevice,
		Families: []uint32{
			uint32(oc.AfiSafiTypeToIntMap[oc.AFI_SAFI_TYPE_IPV4_UNICAST]),
			uint32(oc.AfiSafiTypeToIntMap[oc.AFI_SAFI_TYPE_IPV6_UNICAST]),
		},
	}
	if c.ListenPort < 0 {
		g.ListenPort = -1
	}
	if c.ListenAddress.IsValid() {
		g.ListenAddresses = []string{c.ListenAddress.String()}
	}
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		op := "start"
		if c.ListenPort > 0 {
			op = "listen on"
		}
		return &OpError{Op: op, Target: s.listenString(), Err: err}
	}

	// Watch before any neighbor exists, so that no change is missed.
	wctx, cancel := context.WithCancel(context.Background())
	s.watchCancel = cancel
	err := s.srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{
		OnBestPath:   s.onBestPath,
		OnPeerUpdate: s.onPeer,
	}, server.WatchBestPath(false), server.WatchPeer())
	if err != nil {
		return &OpError{Op: "watch events", Err: err}
	}

	if sets, pol := exportPolicy(c); pol != nil {
		for _, d := range sets {
			if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: d}); err != nil {
				return &OpError{Op: "define set", Target: d.Name, Err: err}
			}
		}
		if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol}); err != nil {
			return &OpError{Op: "add policy", Target: pol.Name, Err: err}
		}
		err := s.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Direction:     api.PolicyDirection_POLICY_DIRECTION_EXPORT,
			Policies:      []*api.Policy{{Name: pol.Name}},
			DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
		}})
		if err != nil {
			return &OpError{Op: "assign export policy", Err: err}
		}
	}

	for i, d := range c.Dynamic {
		name := dynamicGroup(i)
		if err := s.srv.AddPeerGroup(ctx, &api.AddPeerGroupRequest{PeerGroup: s.peerGroup(name, d)}); err != nil {
			return &OpError{Op: "add peer group for", Target: d.Prefix.String(), Err: err}
		}
		err := s.srv.AddDynamicNeighbor(ctx, &api.AddDynamicNeighborRequest{DynamicNeighbor: &api.DynamicNeighbor{
			Prefix: d.Prefix.String(), PeerGroup: name,
		}})
		if err != nil {
			return &OpError{Op: "add dynamic range", Target: d.Prefix.String(), Err: err}
		}
	}
	for _, n := range c.Neighbors {
		if err := s.addNeighbor(ctx, n, false); err != nil {
			return err
		}
	}
	for _, p := range c.Aggregates {
		if err := s.setSource(p, srcAggregate, true); err != nil {
			return err
		}
	}
	for _, p := range c.Networks {
		if err := s.setSource(p, srcNetwork, true); err != nil {
			return err
		}
	}
	return nil
}

// timers are the configured timers in GoBGP's units (seconds).
func (s *Speaker) timers() *api.Timers {
	return &api.Timers{Config: &api.TimersConfig{
		ConnectRetry:      uint64(s.cfg.ConnectRetry / time.Second),
		HoldTime:          uint64(s.cfg.HoldTime / time.Second),
		KeepaliveInterval: uint64(s.cfg.Keepalive / time.Second),
		// Used by GoBGP after an administrative reset only; the neighbor
		// should come back as fast as after any other failure.
		IdleHoldTimeAfterReset: uint64(s.cfg.ConnectRetry / time.Second),
	}}
}

func (s *Speaker) gracefulRestart() *api.GracefulRestart {
	if !s.cfg.GracefulRestart {
		return nil
	}
	return &api.GracefulRestart{Enabled: true, RestartTime: uint32(s.cfg.RestartTime / time.Second)}
}

// afiSafis enables the unicast family of addresses like a, with the prefix
// limit. IPv6 routes are exchanged over IPv6 sessions and IPv4 routes over
// IPv4 sessions: a route's next hop is its session's local address, which
// must be of the route's family (RFC 8950 next hops are not offered).
func (s *Speaker) afiSafis(a netip.Addr) []*api.AfiSafi {
	f := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if a.Is6() {
		f = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	}
	af := &api.AfiSafi{
		Config:       &api.AfiSafiConfig{Family: f, Enabled: true},
		PrefixLimits: &api.PrefixLimit{Family: f, MaxPrefixes: s.cfg.MaxPrefixes},
	}
	if s.cfg.GracefulRestart {
		af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
	}
	return []*api.AfiSafi{af}
}

func (s *Speaker) peerGroup(name string, d DynamicRange) *api.PeerGroup {
	return &api.PeerGroup{
		Conf: &api.PeerGroupConf{
			PeerGroupName: name,
			PeerAsn:       d.AS, // 0: any AS, iBGP or eBGP decided per session
			AuthPassword:  s.cfg.Password,
		},
		Timers: s.timers(),
		Transport: &api.Transport{
			PassiveMode:   true,
			BindInterface: s.cfg.BindDevice,
		},
		RouteReflector: &api.RouteReflector{
			// Harmless for the eBGP sessions of an any-AS range: GoBGP
			// applies reflection rules to iBGP sessions only.
			RouteReflectorClient: s.cfg.RouteReflector && (d.AS == 0 || d.AS == s.cfg.AS),
		},
		GracefulRestart: s.gracefulRestart(),
		AfiSafis:        s.afiSafis(d.Prefix.Addr()),
	}
}

func (s *Speaker) peer(n Neighbor) *api.Peer {
	tr := &api.Transport{RemotePort: uint32(n.Port), BindInterface: s.cfg.BindDevice}
	if la := s.cfg.LocalAddress; la.IsValid() && la.Is4() == n.Address.Is4() {
		tr.LocalAddress = la.String()
	}
	return &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: n.Address.String(),
			PeerAsn:         n.AS,
			Description:     n.Description,
			AuthPassword:    s.cfg.Password,
		},
		Timers:    s.timers(),
		Transport: tr,
		RouteReflector: &api.RouteReflector{
			RouteReflectorClient: s.cfg.RouteReflector && n.AS == s.cfg.AS,
		},
		GracefulRestart: s.gracefulRestart(),
		AfiSafis:        s.afiSafis(n.Address),
	}
}

// addNeighbor configures a static neighbor; inSet says whether the static
// neighbor set of the export policy must learn it (at start-up the policy
// was built with the whole list).
func (s *Speaker) addNeighbor(ctx context.Context, n Neighbor, inSet bool) error {
	target := n.Address.String()
	if inSet && len(s.cfg.Dynamic) > 0 {
		err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: staticSet([]Neighbor{n})})
		if err != nil {
			return &OpError{Op: "add to the static neighbor set", Target: target, Err: err}
		}
	}
	s.peers.configure(n)
	if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peer(n)}); err != nil {
		s.peers.unconfigure(n.Address)
		return &OpError{Op: "add neighbor", Target: target, Err: err}
	}
	s.neighbors[n.Address] = n
	return nil
}

func (s *Speaker) deleteNeighbor(ctx context.Context, n Neighbor) error {
	target := n.Address.String()
	if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: target}); err != nil {
		return &OpError{Op: "delete neighbor", Target: target, Err: err}
	}
	delete(s.neighbors, n.Address)
	s.peers.unconfigure(n.Address)
	if len(s.cfg.Dynamic) > 0 {
		err := s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: staticSet([]Neighbor{n})})
		if err != nil {
			return &OpError{Op: "remove from the static neighbor set", Target: target, Err: err}
		}
	}
	return nil
}

// SetNeighbors makes ns the list of static neighbors (the sessions we
// open): neighbors not in ns are removed (their sessions closed with a
// Cease and their routes withdrawn), new ones added, and ones whose AS,
// port or description changed are removed and added again. Neighbors
// left as they were keep their sessions. ns is checked as Config.Neighbors
// is; on a *ConfigError nothing changes. A GoBGP failure on one neighbor
// does not stop the others; the errors are joined.
func (s *Speaker) SetNeighbors(ns []Neighbor) error {
	c := Config{AS: s.cfg.AS, RouterID: s.cfg.RouterID, Neighbors: ns}
	c, err := c.normalize()
	if err != nil {
		return err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.stopped.Load() {
		return ErrStopped
	}
	ctx := context.Background()
	want := make(map[netip.Addr]Neighbor, len(c.Neighbors))
	for _, n := range c.Neighbors {
		want[n.Address] = n
	}
	var errs []error
	for a, old := range s.neighbors {
		if n, keep := want[a]; keep && n == old {
			continue
		}
		if err := s.deleteNeighbor(ctx, old); err != nil {
			errs = append(errs, err)
		}
	}
	added := 0
	for _, n := range c.Neighbors {
		if _, have := s.neighbors[n.Address]; have {
			continue
		}
		if err := s.addNeighbor(ctx, n, true); err != nil {
			errs = append(errs, err)
			continue
		}
		added++
	}
	s.log.Info("bgp neighbors set", "neighbors", len(s.neighbors), "added", added)
	return errors.Join(errs...)
}

// source says why we originate a prefix; a prefix may have several.
type source uint8

const (
	srcAnnounced source = 1 << iota // Announce (redistributed: origin INCOMPLETE)
	srcNetwork                      // Config.Networks, SetNetworks (origin IGP)
	srcAggregate                    // Config.Aggregates (origin IGP, ATOMIC_AGGREGATE, AGGREGATOR)
)

// top is the source whose attributes the path carries: the aggregate's,
// else the network's, else the announcement's.
func (src source) top() source {
	switch {
	case src&srcAggregate != 0:
		return srcAggregate
	case src&srcNetwork != 0:
		return srcNetwork
	}
	return src & srcAnnounced
}

// setSource adds (on) or removes one reason to originate p, and changes
// our path for p in GoBGP when its attributes change: a new path replaces
// the previous one (same NLRI, same local source), and the last reason
// going withdraws it. Called with opMu held (or during Start).
func (s *Speaker) setSource(p netip.Prefix, src source, on bool) error {
	old := s.local[p]
	now := old &^ src
	if on {
		now = old | src
	}
	if now.top() != old.top() {
		if now == 0 {
			path, err := s.localPath(p, old.top())
			if err != nil {
				return err
			}
			path.Withdrawal = true
			if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{path}}); err != nil {
				return &OpError{Op: "withdraw", Target: p.String(), Err: err}
			}
		} else {
			path, err := s.localPath(p, now.top())
			if err != nil {
				return err
			}
			if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}}); err != nil {
				return &OpError{Op: "originate", Target: p.String(), Err: err}
			}
		}
	}
	switch {
	case old&srcAnnounced == 0 && now&srcAnnounced != 0:
		s.announced++
	case old&srcAnnounced != 0 && now&srcAnnounced == 0:
		s.announced--
	}
	if now == 0 {
		delete(s.local, p)
	} else {
		s.local[p] = now
	}
	return nil
}

// localPath is our path for p as src makes it, with an unspecified next
// hop: GoBGP then sends each session's local address (our overlay address).
func (s *Speaker) localPath(p netip.Prefix, src source) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPrefix, p)
	}
	origin := uint8(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)
	if src == srcAnnounced {
		origin = bgp.BGP_ORIGIN_ATTR_TYPE_INCOMPLETE
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(origin)}
	fam := family(p)
	if fam == bgp.RF_IPv4_UC {
		nh, _ := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		attrs = append(attrs, nh)
	} else {
		mp, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, &OpError{Op: "build path", Target: p.String(), Err: err}
		}
		attrs = append(attrs, mp)
	}
	if src == srcAggregate {
		// RFC 4271 5.1.6/5.1.7: a summary that hides more-specifics says
		// so, and says who made it.
		attrs = append(attrs, bgp.NewPathAttributeAtomicAggregate())
		if ag, err := bgp.NewPathAttributeAggregator(s.cfg.AS, s.cfg.RouterID); err == nil {
			attrs = append(attrs, ag)
		}
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs, Age: time.Now().Unix()}, nil
}

func checkPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return p, fmt.Errorf("%w: %v", ErrBadPrefix, p)
	}
	return p.Masked(), nil
}

// Announce originates prefix with our next hop: a redistributed route (a
// LAN route, an NHRP shortcut), origin INCOMPLETE. Announcements are a set:
// announcing a prefix twice is one announcement, withdrawn by one
// Withdraw. They are independent of the configured Networks (SetNetworks)
// and Aggregates: a prefix that is also one of those stays originated,
// with its attributes (origin IGP), until both are gone. At most
// MaxAnnounced prefixes (ErrTooMany).
func (s *Speaker) Announce(prefix netip.Prefix) error {
	prefix, err := checkPrefix(prefix)
	if err != nil {
		return err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.stopped.Load() {
		return ErrStopped
	}
	if s.local[prefix]&srcAnnounced != 0 {
		return nil
	}
	if s.announced >= MaxAnnounced {
		return fmt.Errorf("%w: %d already (at most %d)", ErrTooMany, s.announced, MaxAnnounced)
	}
	return s.setSource(prefix, srcAnnounced, true)
}

// Withdraw withdraws a prefix given to Announce. Withdrawing a prefix not
// announced does nothing (nil); it does not touch the configured Networks
// and Aggregates.
func (s *Speaker) Withdraw(prefix netip.Prefix) error {
	prefix, err := checkPrefix(prefix)
	if err != nil {
		return err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.stopped.Load() {
		return ErrStopped
	}
	if s.local[prefix]&srcAnnounced == 0 {
		return nil
	}
	return s.setSource(prefix, srcAnnounced, false)
}

// SetNetworks makes ps the configured networks (Config.Networks, for a
// live reload): prefixes no longer listed are withdrawn — unless also
// announced (Announce) or an aggregate — and new ones originated. ps is
// checked as Config.Networks is; on a *ConfigError nothing changes. A
// GoBGP failure on one prefix does not stop the others; the errors are
// joined.
func (s *Speaker) SetNetworks(ps []netip.Prefix) error {
	ps, err := prefixList("Networks", ps)
	if err != nil {
		return err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.stopped.Load() {
		return ErrStopped
	}
	want := make(map[netip.Prefix]bool, len(ps))
	for _, p := range ps {
		want[p] = true
	}
	var errs []error
	for p, src := range s.local {
		if src&srcNetwork != 0 && !want[p] {
			errs = append(errs, s.setSource(p, srcNetwork, false))
		}
	}
	for _, p := range ps {
		if s.local[p]&srcNetwork == 0 {
			errs = append(errs, s.setSource(p, srcNetwork, true))
		}
	}
	return errors.Join(errs...)
}

// Changes is poked (capacity 1, never blocking GoBGP) whenever a best path
// changes; the receiver then calls Drain. A poke may be spurious (the
// change was our own route, or was undone before Drain), never missing.
// The channel is never closed, not even by Stop.
func (s *Speaker) Changes() <-chan struct{} { return s.changes }

// Drain calls fn for every prefix whose best learned path changed since
// the last Drain (or since Start), with its current best path, or with
// present=false when it has none any more: withdrawn by every neighbor, or
// our own path for the prefix is now the best one (the node then routes it
// itself). Only paths learned from neighbors are ever reported, never the
// ones we originate or announce; a change and its undoing between two
// Drains report nothing. Cost O(changed prefixes), except once after the
// pending set overflowed (see ribView): one walk of the table. fn runs on
// the caller's goroutine with no lock of ours held, so it may call the
// Speaker; Drains are serialized. After Stop, Drain reports what was
// pending and nothing more.
func (s *Speaker) Drain(fn func(prefix netip.Prefix, r Route, present bool)) {
	s.rib.drain(s.walkBest, fn)
}

// walkBest yields the best learned path of every prefix in the table.
func (s *Speaker) walkBest(yield func(Route)) {
	if s.stopped.Load() {
		return
	}
	for _, fam := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
		err := s.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam},
			func(_ bgp.NLRI, paths []*apiutil.Path) {
				for _, p := range paths {
					if !p.Best {
						continue
					}
					if prefix, ok := pathPrefix(p); ok && !isLocal(p) && !p.IsNexthopInvalid {
						yield(pathRoute(prefix, p))
					}
					break
				}
			})
		if err != nil {
			s.log.Warn("bgp table walk failed", "family", fam.String(), "err", err)
		}
	}
}

// onBestPath runs on GoBGP's watch goroutine: one map store per path.
func (s *Speaker) onBestPath(paths []*apiutil.Path, _ time.Time) {
	for _, p := range paths {
		prefix, ok := pathPrefix(p)
		if !ok {
			continue
		}
		if p.Withdrawal || isLocal(p) || p.IsNexthopInvalid {
			s.rib.apply(prefix, Route{}, false)
		} else {
			s.rib.apply(prefix, pathRoute(prefix, p), true)
		}
	}
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Routes lists the Loc-RIB: every path of every IPv4 and IPv6 unicast
// prefix, ours included, best first within a prefix. It copies the whole
// table (O(table)); it is for show commands, not for polling.
func (s *Speaker) Routes() []RouteStatus {
	if s.stopped.Load() {
		return nil
	}
	var out []RouteStatus
	for _, fam := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
		err := s.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam, SortType: api.ListPathRequest_SORT_TYPE_PREFIX},
			func(_ bgp.NLRI, paths []*apiutil.Path) {
				start := len(out)
				for _, p := range paths {
					prefix, ok := pathPrefix(p)
					if !ok {
						continue
					}
					r := pathRoute(prefix, p)
					rs := RouteStatus{
						Prefix: prefix, NextHop: r.NextHop, Neighbor: r.Neighbor, ASPath: r.ASPath,
						Best: p.Best, Local: isLocal(p), Age: time.Unix(p.Age, 0),
					}
					if rs.Best && len(out) > start {
						out = append(out, out[start])
						out[start] = rs
						continue
					}
					out = append(out, rs)
				}
			})
		if err != nil {
			s.log.Warn("bgp table walk failed", "family", fam.String(), "err", err)
		}
	}
	return out
}

// Stats are counters of the speaker, cheap to read (no GoBGP call).
type Stats struct {
	Neighbors   int    // sessions known: static neighbors and dynamic peers connected
	Established int    // of which Established
	Learned     int    // prefixes with a best learned path, as last drained
	Pending     int    // prefixes changed since the last Drain
	Events      uint64 // best-path changes received from GoBGP
	Resyncs     uint64 // times the pending set overflowed and Drain walked the table
}

// Stats returns the speaker's counters.
func (s *Speaker) Stats() Stats {
	var st Stats
	st.Neighbors, st.Established = s.peers.counts()
	st.Pending, st.Learned, st.Events, st.Resyncs = s.rib.stats()
	return st
}

// Stop stops the speaker and waits for GoBGP's goroutines to end. It
// first stops accepting connections and shuts down every session's
// connection, with no NOTIFICATION and no further UPDATE (see
// shutdownSessions): neighbors that negotiated graceful restart
// (GracefulRestart) keep our routes, stale, for RestartTime or until we
// are back; the others withdraw them at once, as after a Cease. (GoBGP's
// own stop sends a Cease but first withdraws every neighbor's routes from
// all the others, one neighbor at a time: O(neighbors²) UPDATEs nobody
// will read — 12–18 s for 1,000 dynamic neighbors — during which it
// accepts reconnections it can crash on.) Stop may be called more than
// once; later calls do nothing.
func (s *Speaker) Stop() {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.stopped.Swap(true) {
		return
	}
	s.shutdown(s.cfg.GracefulRestart)
	s.log.Info("bgp speaker stopped", "graceful_restart", s.cfg.GracefulRestart)
}

// stopWait bounds how long Stop waits for GoBGP to see the sessions it
// shut down end.
const stopWait = 5 * time.Second

func (s *Speaker) shutdown(graceful bool) {
	s.stopped.Store(true)
	s.logSh.stopping.Store(true)
	// Stop accepting, then end every session's connection before GoBGP
	// stops: see shutdownSessions for why, and Stop for what the
	// neighbors see.
	shutdownListeners(&s.cfg)
	ns := make([]Neighbor, 0, len(s.neighbors))
	for _, n := range s.neighbors {
		ns = append(ns, n)
	}
	if n := shutdownSessions(&s.cfg, ns); n > 0 {
		down := s.peers.waitDown(stopWait)
		acked := waitFINsAcked(&s.cfg, finWait)
		s.log.Debug("bgp sessions shut down", "sessions", n, "all_down", down, "fins_acked", acked)
	}
	if graceful {
		if err := s.srv.StopBgp(context.Background(), &api.StopBgpRequest{AllowGracefulRestart: true}); err != nil {
			s.log.Warn("bgp graceful stop failed", "err", err)
		}
	}
	// Stop (again) ends what is left, the listeners, and GoBGP's BFD
	// goroutine, which nothing else ends.
	s.srv.Stop()
	if s.watchCancel != nil {
		s.watchCancel()
	}
	<-s.served
}
