package node

// Routing: where the FIB's learned routes come from and where they go.
//
//	BGP best paths (bgp.Speaker) ─┐
//	kernel routes of other        ├─► control loop ─► FIB (source bgp / kernel)
//	daemons (localroute.Kernel) ──┘        │          kernel route on the overlay
//	                                       │          device (static and bgp)
//	                                       └────────► engine.RoutesChanged (route watch)
//
// Both producers hand over through a pending set behind a mutex and a
// one-slot wake channel: they never block on the control loop, and the
// pending set is bounded by the size of their own tables (one entry per
// prefix, the latest state wins). The control loop drains them, so the
// FIB, the kernel routes and the engine only ever change on its goroutine.

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/dmvpn/dmvpn/bgp"
	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/internal/ratelog"
)

// maxKernelRoutes bounds the pending kernel-route changes (and so the
// routes of other daemons the node follows).
const maxKernelRoutes = 100_000

// pendingRoutes is a set of route changes handed from a producer goroutine
// to the control loop: the latest state per prefix.
type pendingRoutes struct {
	mu      sync.Mutex
	changes map[netip.Prefix]pendingRoute
	wake    chan struct{}
	dropped uint64
}

type pendingRoute struct {
	nextHop netip.Addr
	present bool
}

func newPendingRoutes() *pendingRoutes {
	return &pendingRoutes{changes: map[netip.Prefix]pendingRoute{}, wake: make(chan struct{}, 1)}
}

// put records the state of prefix and wakes the control loop; it never
// blocks.
func (p *pendingRoutes) put(prefix netip.Prefix, nextHop netip.Addr, present bool) {
	p.mu.Lock()
	if _, ok := p.changes[prefix]; !ok && len(p.changes) >= maxKernelRoutes {
		p.dropped++
		p.mu.Unlock()
		return
	}
	p.changes[prefix] = pendingRoute{nextHop, present}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take returns the pending changes and empties the set.
func (p *pendingRoutes) take() map[netip.Prefix]pendingRoute {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.changes) == 0 {
		return nil
	}
	c := p.changes
	p.changes = make(map[netip.Prefix]pendingRoute, len(c))
	return c
}

// routing is the node's route plumbing (nil parts are off).
type routing struct {
	speaker *bgp.Speaker
	kernel  *pendingRoutes // routes other daemons put on the overlay device
	local   *pendingRoutes // the host's local routes (redistribute connected)
	// announced are the local routes announced (redistribute connected).
	announced map[netip.Prefix]bool
	// mu guards kernelInstalled: the control loop (BGP) and a reload
	// (static routes) both change kernel routes. A leaf lock apart from
	// fib.mu, taken inside it never.
	mu sync.Mutex
	// kernelInstalled are the prefixes the node has put into the kernel
	// (static and bgp routes), so that a prefix two sources share is
	// removed only when the last goes.
	kernelInstalled map[netip.Prefix]bool
	log             *ratelog.Limiter
	stopSpeaker     context.CancelFunc
	stopOnce        sync.Once
}

// bgpConfig is the speaker's configuration for a node.
func bgpConfig(cfg *config.Config, n *Node) bgp.Config {
	b := cfg.BGP
	bc := bgp.Config{
		AS:              b.AS,
		RouterID:        b.RouterID,
		ListenAddress:   cfg.Tunnel.Address.Addr(),
		ListenPort:      int32(b.Port),
		LocalAddress:    cfg.Tunnel.Address.Addr(),
		RouteReflector:  b.RouteReflector,
		NextHopSelf:     b.NextHopSelf,
		Aggregates:      b.Aggregates,
		Networks:        b.Networks,
		HoldTime:        b.HoldTime,
		Keepalive:       b.Keepalive,
		ConnectRetry:    b.ConnectRetry,
		Password:        b.Password,
		GracefulRestart: b.GracefulRestart,
		RestartTime:     b.RestartTime,
		MaxPrefixes:     b.MaxPrefixes,
		// The speaker names its component itself (component=bgp).
		Log: n.opts.Log.With("node", cfg.Name),
	}
	if _, real := n.dev.(routeDevice); real {
		bc.BindDevice = cfg.Tunnel.Device
	}
	if len(b.DynamicNeighbors) == 0 {
		bc.ListenPort = -1 // nothing to accept: a spoke only connects
	}
	for _, d := range b.DynamicNeighbors {
		bc.Dynamic = append(bc.Dynamic, bgp.DynamicRange{Prefix: d.Prefix, AS: d.AS})
	}
	bc.Neighbors = bgpNeighbors(cfg)
	bc.OnSession = func(nb netip.Addr, as uint32, dynamic, up bool, reason string) {
		ev := events.Event{Time: n.clk.Now(), Type: events.BGPDown, Peer: nb.String(), Reason: reason}
		if up {
			ev.Type, ev.Reason = events.BGPUp, ""
			if dynamic {
				ev.Reason = "dynamic"
			}
		}
		n.emit(ev) // the bus and the hooks' queue never wait
	}
	return bc
}

// bgpNeighbors are the sessions a node opens: its NHSes (peer-nhs) and
// bgp.neighbors.
func bgpNeighbors(cfg *config.Config) []bgp.Neighbor {
	b := cfg.BGP
	var ns []bgp.Neighbor
	if b.PeerNHS {
		for _, s := range cfg.NHRP.NHS {
			ns = append(ns, bgp.Neighbor{Address: s.Address, AS: b.NHSAS, Port: b.Port, Description: "nhs"})
		}
	}
	for _, nb := range b.Neighbors {
		ns = append(ns, bgp.Neighbor{Address: nb.Address, AS: nb.AS, Port: b.Port, Description: nb.Description})
	}
	return ns
}

// startBGP starts the speaker (New calls it, so a port in use or a bad
// setting fails start-up with its cause).
func (n *Node) startBGP() error {
	if !n.cfg.BGP.Enabled() {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := bgp.Start(ctx, bgpConfig(n.cfg, n))
	if err != nil {
		cancel()
		return fmt.Errorf("bgp: %w", err)
	}
	n.routing.speaker, n.routing.stopSpeaker = s, cancel
	// The summaries we announce are refused here where nothing more
	// specific covers them, not sent out of the underlay by the host's
	// default route (Cisco's summary Null0 route).
	if dd, ok := n.dev.(interface{ AddDiscardRoute(netip.Prefix) error }); ok {
		for _, a := range n.cfg.BGP.Aggregates {
			if err := dd.AddDiscardRoute(a); err != nil {
				return fmt.Errorf("bgp: aggregate %s: %w", a, err)
			}
		}
	}
	return nil
}

// stopBGP stops the speaker once (Run before the NHRP shutdown, closeAll
// on a failed start); the pointer stays, so show bgp from the API
// goroutine never races with it.
func (n *Node) stopBGP() {
	r := &n.routing
	if r.speaker != nil {
		r.stopOnce.Do(func() {
			r.speaker.Stop()
			r.stopSpeaker()
		})
	}
}

// bgpChanges is the speaker's wake channel, or nil without BGP (a nil
// channel never fires in the control loop's select).
func (n *Node) bgpChanges() <-chan struct{} {
	if n.routing.speaker == nil {
		return nil
	}
	return n.routing.speaker.Changes()
}

// kernelChanges is the kernel route producer's wake channel, or nil.
func (n *Node) kernelChanges() <-chan struct{} {
	if n.routing.kernel == nil {
		return nil
	}
	return n.routing.kernel.wake
}

// localChanges is the local-route producer's wake channel, or nil.
func (n *Node) localChanges() <-chan struct{} {
	if n.routing.local == nil {
		return nil
	}
	return n.routing.local.wake
}

// redistributable reports whether a local route of the host may be
// announced (bgp.redistribute.connected): inside a prefix of
// bgp.redistribute.prefixes, not a default route, not touching the tunnel
// subnet, not covering an NBMA address (that would route the underlay into
// the tunnel at the peers).
func (n *Node) redistributable(p netip.Prefix) bool {
	if p.Bits() == 0 || p.Overlaps(n.cfg.Tunnel.Subnet()) || p.Contains(n.cfg.Tunnel.Source) {
		return false
	}
	for _, s := range n.cfg.NHRP.NHS {
		if p.Contains(s.NBMA) {
			return false
		}
	}
	for _, f := range n.cfg.BGP.Redistribute.Prefixes {
		if f.Bits() <= p.Bits() && f.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// drainLocal announces and withdraws the host's LAN routes.
func (n *Node) drainLocal() {
	s := n.routing.speaker
	if s == nil || n.routing.local == nil {
		return
	}
	if n.routing.announced == nil {
		n.routing.announced = map[netip.Prefix]bool{}
	}
	for p, r := range n.routing.local.take() {
		want := r.present && n.redistributable(p)
		switch {
		case want && !n.routing.announced[p]:
			if err := s.Announce(p); err != nil {
				n.routing.log.Warn(n.clk.Now(), "bgp redistribute connected", "prefix", p, "err", err)
				continue
			}
			n.routing.announced[p] = true
		case !want && n.routing.announced[p]:
			if err := s.Withdraw(p); err != nil {
				n.routing.log.Warn(n.clk.Now(), "bgp redistribute connected", "prefix", p, "err", err)
			}
			delete(n.routing.announced, p)
		}
	}
}

// usableRoute says why a learned route cannot be a FIB route, or "" if it
// can: its next hop must be another node on the tunnel subnet, and it must
// not shadow the tunnel subnet or cover an NBMA address this node sends to
// (the underlay would then be routed into the tunnel it carries).
func (n *Node) usableRoute(prefix netip.Prefix, nextHop netip.Addr) string {
	subnet := n.cfg.Tunnel.Subnet()
	switch {
	case !nextHop.IsValid() || !subnet.Contains(nextHop):
		return "next hop not on the tunnel subnet"
	case nextHop == n.cfg.Tunnel.Address.Addr():
		return "next hop is this node"
	case prefix.Addr().Is4() != subnet.Addr().Is4():
		return "other address family than the tunnel"
	case prefix.Overlaps(subnet):
		return "overlaps the tunnel subnet"
	case prefix.Contains(n.cfg.Tunnel.Source):
		return "covers this node's NBMA address"
	}
	for _, s := range n.cfg.NHRP.NHS {
		if prefix.Contains(s.NBMA) {
			return "covers an NHS's NBMA address"
		}
	}
	return ""
}

// drainBGP applies the speaker's best-path changes.
func (n *Node) drainBGP() {
	s := n.routing.speaker
	if s == nil {
		return
	}
	var changed []netip.Prefix
	s.Drain(func(prefix netip.Prefix, r bgp.Route, present bool) {
		if present {
			if why := n.usableRoute(prefix, r.NextHop); why != "" {
				n.routing.log.Warn(n.clk.Now(), "bgp route not installed", "prefix", prefix, "next_hop", r.NextHop, "from", r.Neighbor, "reason", why)
				present = false
			}
		}
		if n.setLearned(prefix, r.NextHop, present, fib.SourceBGP) {
			changed = append(changed, prefix)
		}
	})
	n.routesChanged(changed)
}

// drainKernel applies the routes other daemons installed or removed.
func (n *Node) drainKernel() {
	if n.routing.kernel == nil {
		return
	}
	var changed []netip.Prefix
	for prefix, r := range n.routing.kernel.take() {
		present := r.present
		if present {
			if why := n.usableRoute(prefix, r.nextHop); why != "" {
				n.routing.log.Warn(n.clk.Now(), "kernel route not followed", "prefix", prefix, "via", r.nextHop, "reason", why)
				present = false
			}
		}
		if n.setLearned(prefix, r.nextHop, present, fib.SourceKernel) {
			changed = append(changed, prefix)
		}
	}
	n.routesChanged(changed)
}

// setLearned installs or removes a learned route and reports whether the
// FIB changed.
func (n *Node) setLearned(prefix netip.Prefix, nextHop netip.Addr, present bool, src fib.Source) bool {
	if !present {
		if !n.fib.Delete(prefix, src) {
			return false
		}
	} else {
		if old, ok := n.fib.Get(prefix, src); ok && old.NextHop == nextHop {
			return false
		}
		n.fib.Add(fib.Route{Prefix: prefix, NextHop: nextHop, Source: src})
	}
	if src == fib.SourceBGP {
		n.syncKernelRoute(prefix)
	}
	return true
}

// syncKernelRoute makes the kernel route the node owns for prefix follow
// the FIB: present while a static or BGP route for it exists. (Kernel
// routes of other daemons are theirs; NHRP shortcuts refine a route that is
// already in the kernel.)
func (n *Node) syncKernelRoute(prefix netip.Prefix) {
	rd, ok := n.dev.(routeDevice)
	if !ok {
		return
	}
	_, static := n.fib.Get(prefix, fib.SourceStatic)
	_, learned := n.fib.Get(prefix, fib.SourceBGP)
	want := static || learned
	r := &n.routing
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case want && !r.kernelInstalled[prefix]:
		if err := rd.AddRoute(prefix); err != nil {
			r.log.Warn(n.clk.Now(), "kernel route", "prefix", prefix, "err", err)
			return
		}
		r.kernelInstalled[prefix] = true
	case !want && r.kernelInstalled[prefix]:
		if err := rd.DeleteRoute(prefix); err != nil {
			r.log.Warn(n.clk.Now(), "kernel route", "prefix", prefix, "err", err)
		}
		delete(r.kernelInstalled, prefix)
	}
}

// routesChanged tells the engine which prefixes changed, so it re-checks
// the shortcuts that refine them (route watch).
func (n *Node) routesChanged(changed []netip.Prefix) {
	if len(changed) == 0 {
		return
	}
	n.engine.RoutesChanged(n.clk.Now(), changed)
}

// applyBGP applies a reload's bgp.networks and session changes (the NHS
// list with peer-nhs, bgp.neighbors); the rest of bgp is fixed.
func (n *Node) applyBGP(old, cfg *config.Config) []string {
	s := n.routing.speaker
	if s == nil {
		return nil
	}
	var changed []string
	if !slices.Equal(old.BGP.Networks, cfg.BGP.Networks) {
		if err := s.SetNetworks(cfg.BGP.Networks); err != nil {
			changed = append(changed, fmt.Sprintf("bgp.networks: not applied: %v", err))
		} else {
			changed = append(changed, fmt.Sprintf("bgp.networks: %v (were %v)", cfg.BGP.Networks, old.BGP.Networks))
		}
	}
	before, after := bgpNeighbors(old), bgpNeighbors(cfg)
	if !slices.Equal(before, after) {
		if err := s.SetNeighbors(after); err != nil {
			changed = append(changed, fmt.Sprintf("bgp neighbors: not applied: %v", err))
		} else {
			changed = append(changed, fmt.Sprintf("bgp neighbors: %d (were %d)", len(after), len(before)))
		}
	}
	return changed
}
