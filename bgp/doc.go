// Package bgp is the node's BGP speaker: GoBGP v4 (github.com/osrg/gobgp/v4)
// embedded as a library and configured for DMVPN. It opens no socket of its
// own; GoBGP does, optionally pinned to the overlay device
// (Config.BindDevice: SO_BINDTODEVICE on the listener and on every session)
// and sourced from the overlay address (Config.LocalAddress).
//
// # How DMVPN routes with it
//
// Hub: a route reflector (Config.RouteReflector) that accepts sessions from
// its Dynamic ranges — the tunnel subnet — with no per-spoke configuration.
// A range with AS 0 accepts any AS and decides per session whether it is
// iBGP or eBGP (GoBGP skips the OPEN's AS check for a peer group without a
// peer AS), so one range serves iBGP spokes and spokes that each have their
// own AS alike; a range with an AS enforces it. Dynamic sessions are
// passive: GoBGP never dials them.
//
// Phase 2: the hub reflects spokes' routes with the next hop unchanged
// (iBGP leaves it; for eBGP spokes the export policy says "unchanged",
// because eBGP would otherwise rewrite it to the hub), so each spoke sees
// the announcing spoke as next hop and resolves it with NHRP.
//
// Phase 3: Config.Aggregates with Config.NextHopSelf: the hub sends dynamic
// neighbors its aggregates with itself as next hop and none of the routes
// inside them (summary-only); it still learns every spoke route for its
// own table. NHRP redirects and shortcuts refine the summary.
//
// Spoke: static Neighbors (its NHSes, active), Networks and whatever the
// node announces (Announce: connected LAN routes, NHRP shortcuts), all with
// the session's local address — the spoke's overlay address — as next hop.
//
// GoBGP attaches per-neighbor policies to route-server clients only, so all
// of this is one global export policy whose statements match the
// destination neighbor against a neighbor set of the dynamic ranges
// (exportPolicy). Static neighbors inside a dynamic range (a second hub on
// the tunnel subnet) are excepted and get every route as usual.
//
// # What the node reads
//
// Changes is poked when best paths change; Drain then hands over every
// prefix whose best learned path changed, in O(changed prefixes), never our
// own routes. GoBGP delivers its events through an unbounded queue on one
// goroutine per watch; our callback only stores into a bounded pending
// map, so neither GoBGP nor the queue waits for the node. Neighbors and
// Routes are for show commands (one GoBGP management call each).
//
// # GoBGP facts this package depends on (v4.8.0)
//
//   - Timers are whole seconds. GoBGP waits at least 2 s between
//     connection attempts (MinConnectRetry) and holds a neighbor whose
//     session dropped in Idle for 5 s before it dials again.
//   - A dynamic neighbor is deleted when its session ends (it reconnects
//     as a new one). The number of dynamic peers is bounded only by the
//     size of the ranges: configure the tunnel subnet, not more.
//   - GoBGP's stop (even "allowing graceful restart") deletes neighbors one
//     at a time, each withdrawing its routes from the sessions still open:
//     O(neighbors²) UPDATEs, 12–18 s at 1,000 dynamic neighbors, which also
//     defeats graceful restart, and it accepts connections meanwhile that
//     it can crash on (a nil OPEN once its configuration is cleared). Our
//     Stop shuts down the listeners and every session's connection first
//     (shutdownSessions), then stops GoBGP: 0.5 s at 1,000.
//   - GoBGP leaks a neighbor's outgoing queue goroutine, with what it
//     holds, when a session ends with UPDATEs still queued (always for a
//     dynamic neighbor): about 10 KB per dynamic session ended.
//   - GoBGP allocates a 2,048-shard table per neighbor and address family
//     for its Adj-RIB-In: about 200 KB per neighbor before any route.
//   - GoBGP stores some configuration in package variables (route selection
//     options): several speakers in one process (the tests) share them, and
//     the race detector sees each Start write them while others read.
//   - A route's next hop must match its session's family: IPv4 prefixes go
//     over IPv4 sessions, IPv6 prefixes over IPv6 sessions.
package bgp
