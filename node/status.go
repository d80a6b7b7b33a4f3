package node

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/nhrp/cache"
	"github.com/dmvpn/dmvpn/nhrp/engine"
	"github.com/dmvpn/dmvpn/underlay"
)

var _ api.Provider = (*Node)(nil)

// DMVPN is the `show dmvpn` view: on a spoke its NHSes with their
// registration state, on a hub every peer in the cache.
func (n *Node) DMVPN() api.DMVPN {
	now := n.clk.Now()
	d := api.DMVPN{
		Node: n.cfg.Name, Role: n.Role(), Interface: n.cfg.Tunnel.Device,
		Address: n.cfg.Tunnel.Address.String(), NBMA: n.cfg.Tunnel.Source.String(),
		Transport: n.cfg.Tunnel.Transport.String(), NetworkID: n.cfg.NHRP.NetworkID,
		Peers: []api.Peer{},
	}
	nhs := map[string]engine.NHSStatus{}
	for _, s := range n.engine.NHSStatus() {
		nhs[s.Protocol.String()] = s
	}
	for _, e := range n.cache.All() {
		if e.Type == cache.Negative {
			continue
		}
		p := api.Peer{
			PeerNBMA: e.NBMA.Addr().String(), PeerTunnel: e.Protocol.String(), Type: e.Type.String(),
			Attributes: e.Attributes(), NAT: e.NAT, Transport: e.Transport.String(), Since: e.Created, State: "UP",
		}
		if e.NBMA.Port() != 0 {
			p.PeerNBMA = e.NBMA.String()
		}
		if e.ClaimedNBMA != e.NBMA.Addr() {
			p.ClaimedNBMA = e.ClaimedNBMA.String()
		}
		if s, ok := nhs[p.PeerTunnel]; ok {
			p.Since = s.Since
			switch s.State {
			case engine.StateUp:
				p.State = "UP"
			case engine.StateRegistering:
				p.State = "NHRP"
			default:
				p.State = strings.ToUpper(s.State)
			}
			p.Reason = s.LastError
			if s.State == engine.StateRegistering && s.Attempts > 1 {
				p.Reason = "no reply from NHS yet (check reachability, tunnel key and transport)"
			}
			if s.NATAddress.IsValid() {
				p.Reason = strings.TrimSpace(p.Reason + " we are NATed, the NHS sees us as " + s.NATAddress.Addr().String())
			}
		}
		p.UpDown = api.UpDown(now.Sub(p.Since))
		if n.ipsec != nil {
			p.Crypto = n.ipsec.layer.PeerState(e.NBMA)
			if p.Crypto != "up" {
				if why := n.ipsec.lastFailure(e.NBMA.Addr()); why != "" {
					p.Reason = "IPsec: IKE with " + e.NBMA.Addr().String() + " failed: " + why
				} else if p.State != "UP" {
					p.Reason = "waiting for IPsec: no SA with " + e.NBMA.Addr().String() + " yet"
				}
			}
		}
		d.Peers = append(d.Peers, p)
	}
	return d
}

// NHRP is the `show nhrp` view of the cache.
func (n *Node) NHRP() []api.NHRPEntry {
	out := []api.NHRPEntry{}
	for _, e := range n.cache.All() {
		x := api.NHRPEntry{
			Protocol: e.Protocol.String(), Prefix: e.Prefix.String(), NBMA: e.NBMA.String(),
			ClaimedNBMA: e.ClaimedNBMA.String(), Type: e.Type.String(), Transport: e.Transport.String(),
			Created: e.Created, Flags: []string{},
		}
		if e.NBMA.Port() == 0 {
			x.NBMA = e.NBMA.Addr().String()
		}
		x.RxPackets, x.RxBytes, x.TxPackets, x.TxBytes = e.Counters.Load()
		if !e.Expires.IsZero() {
			exp := e.Expires
			x.Expires = &exp
			x.HoldingTime = e.HoldingTime.String()
		}
		for _, f := range []struct {
			on   bool
			name string
		}{{e.NHS, "nhs"}, {e.Unique, "unique"}, {e.NAT, "nat"}, {e.Multicast, "multicast"}, {e.Used.Load(), "used"}, {e.Type == cache.Static && !e.Up && e.NHS, "down"}} {
			if f.on {
				x.Flags = append(x.Flags, f.name)
			}
		}
		out = append(out, x)
	}
	return out
}

// Routes is the `show routes` view of the FIB.
func (n *Node) Routes() []api.Route {
	out := []api.Route{}
	for _, r := range n.fib.Routes() {
		nh := "directly connected"
		if r.NextHop.IsValid() {
			nh = r.NextHop.String()
		}
		out = append(out, api.Route{Prefix: r.Prefix.String(), NextHop: nh, Source: r.Source.String(), Distance: r.Source.Distance(), Best: n.fib.Best(r)})
	}
	return out
}

// Stats returns the counters.
func (n *Node) Stats() api.Stats {
	d := n.plane.Stats()
	e := n.engine.Stats()
	cs := n.cache.Stats()
	dropped := e.DroppedByName()
	dropped["queue_full"] = n.ctlDropped.Load()
	return api.Stats{
		DataPlane: map[string]uint64{
			"overlay_rx": d.OverlayRx, "overlay_tx": d.OverlayTx, "underlay_rx": d.UnderlayRx, "underlay_tx": d.UnderlayTx,
			"hairpinned": d.Hairpinned, "control_rx": d.ControlRx, "control_tx": d.ControlTx, "multicast": d.Multicast,
			"no_route": d.NoRoute, "no_peer": d.NoPeer, "ttl_expired": d.TTLExpire, "key_mismatch": d.KeyMismatch,
			"bad_gre": d.BadGRE, "bad_inner": d.BadInner, "loop": d.Loop, "write_errors": d.WriteErrors,
		},
		NHRP: map[string]uint64{
			"received": e.Received, "sent": e.Sent, "malformed": e.Malformed, "auth_failures": e.AuthFailures,
			"error_indications_sent": e.ErrorIndicationsSent, "error_indications_received": e.ErrorIndicationsRecvd,
			"registrations_accepted": e.RegistrationsAccepted, "registrations_refused": e.RegistrationsRefused,
			"purges_received": e.PurgesReceived, "expired_entries": e.ExpiredEntries,
			"purges_sent": e.PurgesSent, "redirects_sent": e.RedirectsSent,
			"probes_sent": e.ProbesSent, "probes_refuted": e.ProbesRefuted,
			"cache_entries": uint64(n.cache.Len()), "cache_evicted": cs.Evicted,
			"cache_refused_full": cs.RefusedFull, "cache_refused_per_nbma": cs.RefusedPerNBMA,
			"control_queue_depth": uint64(len(n.ctl)), "log_lines_suppressed": n.engine.LogSuppressed(),
		},
		NHRPDropped: dropped,
		Underlay:    n.underlayStats(),
		Events:      n.eventStats(),
	}
}

// ClearNHRP forgets resolved mappings and shortcut routes.
func (n *Node) ClearNHRP() int {
	return n.engine.ClearShortcuts()
}

// underlayStats returns the counters of the underlay sockets, by transport.
func (n *Node) underlayStats() map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	for _, c := range n.conns {
		name := c.Transport().String()
		c = socketOf(c)
		sc, ok := c.(underlay.StatsConn)
		if !ok {
			continue
		}
		s := sc.Stats()
		m := map[string]uint64{
			"sent": s.Sent, "received": s.Received, "dropped": s.Dropped, "send_errors": s.SendErrors,
			"send_calls": s.SendCalls, "send_msgs": s.SendMsgs, "gso_msgs": s.GSOMsgs, "gso_fallbacks": s.GSOFallbacks,
			"recv_calls": s.RecvCalls, "recv_msgs": s.RecvMsgs, "gro_msgs": s.GROMsgs, "gro_segments": s.GROSegments,
		}
		if o, ok := c.(interface{ Offloads() (gso, gro bool) }); ok {
			gso, gro := o.Offloads()
			m["gso_on"], m["gro_on"] = b2u(gso), b2u(gro)
		}
		out[name] = m
	}
	return out
}

// socketOf is the socket under an underlay Conn: an IPsec face's, or the
// Conn itself.
func socketOf(c underlay.Conn) underlay.Conn {
	if f, ok := c.(interface{ Socket() underlay.Conn }); ok {
		return f.Socket()
	}
	return c
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// BGP returns `show bgp`: the speaker's sessions and table, each best path
// marked with whether it is the node's FIB route (or why not).
func (n *Node) BGP() api.BGP {
	s := n.routing.speaker
	if s == nil {
		return api.BGP{Neighbors: []api.BGPNeighbor{}, Routes: []api.BGPRoute{}}
	}
	out := api.BGP{Enabled: true, AS: n.cfg.BGP.AS, RouterID: n.cfg.BGP.RouterID.String(),
		Neighbors: []api.BGPNeighbor{}, Routes: []api.BGPRoute{}}
	for _, nb := range s.Neighbors() {
		row := api.BGPNeighbor{Address: nb.Address.String(), AS: nb.AS, Description: nb.Description, Dynamic: nb.Dynamic,
			State: nb.State.String(), Received: nb.Received, Accepted: nb.Accepted, LastError: nb.LastError}
		if nb.Advertised >= 0 {
			row.Advertised = uint64(nb.Advertised)
		}
		if !nb.Since.IsZero() {
			row.Since = nb.Since
			row.UpDown = api.UpDown(n.clk.Now().Sub(nb.Since))
		}
		out.Neighbors = append(out.Neighbors, row)
	}
	for _, r := range s.Routes() {
		row := api.BGPRoute{Prefix: r.Prefix.String(), NextHop: r.NextHop.String(), ASPath: r.ASPath, Best: r.Best}
		if r.ASPath == nil {
			row.ASPath = []uint32{}
		}
		if r.Local {
			row.NextHop = "self"
		} else {
			row.Neighbor = r.Neighbor.String()
			if r.Best {
				if got, ok := n.fib.Get(r.Prefix, fib.SourceBGP); ok && got.NextHop == r.NextHop {
					row.Installed = n.fib.Best(got)
					if !row.Installed {
						row.Note = "a route of lower distance wins"
					}
				} else if why := n.usableRoute(r.Prefix, r.NextHop); why != "" {
					row.Note = why
				}
			}
		}
		out.Routes = append(out.Routes, row)
	}
	slices.SortStableFunc(out.Routes, func(a, b api.BGPRoute) int {
		pa, pb := netip.MustParsePrefix(a.Prefix), netip.MustParsePrefix(b.Prefix)
		if c := pa.Addr().Compare(pb.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(pa.Bits(), pb.Bits())
	})
	return out
}
