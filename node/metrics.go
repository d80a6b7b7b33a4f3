package node

import (
	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/metrics"
	"github.com/dmvpn/dmvpn/underlay"
)

var _ api.MetricsProvider = (*Node)(nil)

// metricsSnapshot reads the counters for a scrape: atomics (data plane,
// sockets, control queue) and the engine's and cache's counters under
// their locks, briefly, as `show stats` does. Nothing walks the cache,
// unless metrics.peer-limit asks for per-peer series: then one walk under
// the cache's read lock picks the busiest peers (cache.TopPeers).
func (n *Node) metricsSnapshot() metrics.Snapshot {
	s := metrics.Snapshot{
		Node: n.cfg.Name, Role: n.Role(), Transport: n.cfg.Tunnel.Transport.String(),
		DataPlane: n.plane.Stats(), Engine: n.engine.Stats(), LogSuppressed: n.engine.LogSuppressed(),
		CacheEntries: n.cache.Len(), CacheMaxEntries: n.cache.Limits().MaxEntries, Cache: n.cache.Stats(),
		ControlQueueLen: len(n.ctl), ControlQueueCap: cap(n.ctl), ControlQueueDropped: n.ctlDropped.Load(),
		NHS: n.engine.NHSStatus(), Events: n.bus.Stats(), Hooks: n.hooks.Stats(),
	}
	if limit := int(n.peerLimit.Load()); limit > 0 {
		var peers int
		s.Peers, peers = n.cache.TopPeers(limit)
		s.PeersTruncated = peers > len(s.Peers)
	}
	if x := n.ipsec; x != nil {
		s.IPsec = &metrics.IPsec{ESP: x.layer.Stats(), IKE: x.ike.Stats(), ClearGREDropped: x.clearDropped.Load()}
	}
	if sp := n.routing.speaker; sp != nil {
		st := sp.Stats()
		s.BGP = &st
	}
	for _, c := range n.conns {
		t := c.Transport()
		c = socketOf(c)
		sc, ok := c.(underlay.StatsConn)
		if !ok {
			continue
		}
		u := metrics.Socket{Transport: t, Stats: sc.Stats()}
		if o, ok := c.(interface{ Offloads() (gso, gro bool) }); ok {
			u.Offloads = true
			u.GSO, u.GRO = o.Offloads()
		}
		s.Underlay = append(s.Underlay, u)
	}
	return s
}
