// Package metrics exports a node's counters to Prometheus. The Collector
// reads a Snapshot at scrape time (the counters the data plane and the
// engine keep anyway: atomics, and the engine's Stats under its lock), so
// metrics cost nothing per packet beyond those counters. The one metric observed as it happens,
// the resolution latency histogram, is fed by the engine's OnResolved hook,
// once per shortcut.
//
// Names follow the Prometheus conventions: dmvpn_ prefix, _total for
// counters, base units (_seconds), and labels with a small, fixed set of
// values (reason, transport, direction, type, state, and nhs: the
// configured NHSes). The per-peer series (dmvpn_peer_*, labels peer and
// nbma) are there only for the peers the node puts in Snapshot.Peers: at
// most metrics.peer-limit of them (default 0, none), so a hub with 10,000
// spokes exports the same series as one with two unless asked otherwise.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"github.com/dmvpn/dmvpn/bgp"
	ikeengine "github.com/dmvpn/dmvpn/ikev2/engine"
	"github.com/dmvpn/dmvpn/ipsec"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dmvpn/dmvpn/dataplane"
	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/events/hooks"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
	"github.com/dmvpn/dmvpn/nhrp/engine"
	"github.com/dmvpn/dmvpn/underlay"
)

// Snapshot is a node's counters read at one instant.
type Snapshot struct {
	Node, Role, Transport string // name, hub | spoke, configured transport

	DataPlane     dataplane.Stats
	Engine        engine.Stats
	LogSuppressed uint64 // log lines the engine's rate limiter dropped

	CacheEntries    int
	CacheMaxEntries int
	Cache           cache.Stats

	// The control queue between the underlay readers and the engine:
	// its depth now, its capacity, and the packets dropped because it
	// was full.
	ControlQueueLen, ControlQueueCap int
	ControlQueueDropped              uint64

	// Underlay has one entry per underlay socket.
	Underlay []Socket
	// NHS is the registration state of each configured NHS (spokes).
	NHS []engine.NHSStatus
	// Events and Hooks are the event bus's and the hook runner's
	// counters.
	Events events.Stats
	Hooks  hooks.Stats

	// Peers are the peers that get per-peer series (the busiest, at most
	// metrics.peer-limit; none by default); PeersTruncated is set when
	// there were more peers than that.
	Peers          []cache.PeerStats
	PeersTruncated bool

	// BGP is the speaker's counters, nil without BGP.
	BGP *bgp.Stats
	// IPsec is the ESP layer's and the IKE engine's counters, nil
	// without IPsec.
	IPsec *IPsec
}

// IPsec is what the metrics say of a node's IPsec.
type IPsec struct {
	ESP ipsec.Stats
	IKE ikeengine.Stats
	// ClearGREDropped counts clear-text GRE packets received and dropped.
	ClearGREDropped uint64
}

// Socket is the counters of one underlay socket.
type Socket struct {
	Transport nbma.Transport
	Stats     underlay.ConnStats
	// Offloads is set when the socket reports GSO and GRO (UDP sockets).
	Offloads bool
	GSO, GRO bool
}

// QueueFull is the drop reason, beside the engine's, of an NHRP packet
// dropped because the control queue was full.
const QueueFull = "queue_full"

// NHSStates are the registration states dmvpn_nhrp_nhs_state reports.
var NHSStates = []string{engine.StateUp, engine.StateRegistering, engine.StateDown, engine.StateRefused, engine.StateError}

// ResolutionBuckets are the buckets of dmvpn_nhrp_resolution_duration_seconds:
// sub-millisecond on a LAN, up to the engine's retries (1, 2, 4 s …).
var ResolutionBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Collector is a prometheus.Collector over a node's snapshots.
type Collector struct {
	snap       func() Snapshot
	resolution prometheus.Histogram
}

// New returns a collector that calls snap at every scrape. snap must be
// safe to call from any goroutine.
func New(snap func() Snapshot) *Collector {
	return &Collector{snap: snap, resolution: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "dmvpn_nhrp_resolution_duration_seconds",
		Help:    "Time from sending a Resolution Request to installing the answer (shortcut up), successful resolutions only.",
		Buckets: ResolutionBuckets,
	})}
}

// NewRegistry returns a registry with c and the Go runtime and process
// collectors (go_*, process_*: goroutines, memory, CPU, open files).
func NewRegistry(c *Collector) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// ObserveResolution records how long a successful resolution took; it is
// the engine's Config.OnResolved.
func (c *Collector) ObserveResolution(d time.Duration) { c.resolution.Observe(d.Seconds()) }

type desc struct {
	d *prometheus.Desc
	t prometheus.ValueType
}

func counter(name, help string, labels ...string) desc {
	return desc{prometheus.NewDesc(name, help, labels, nil), prometheus.CounterValue}
}

func gauge(name, help string, labels ...string) desc {
	return desc{prometheus.NewDesc(name, help, labels, nil), prometheus.GaugeValue}
}

// The metrics, in the order Describe lists them.
var (
	mInfo = gauge("dmvpn_info", "Always 1; the labels describe the node.", "node", "role", "transport")

	// Data plane (package dataplane).
	mOverlayRead    = counter("dmvpn_overlay_read_packets_total", "Packets read from the TUN device (from the host into the tunnel).")
	mOverlayWritten = counter("dmvpn_overlay_written_packets_total", "Packets written to the TUN device (out of the tunnel to the host).")
	mUnderlayRx     = counter("dmvpn_underlay_received_packets_total", "GRE packets received from the underlay (data and NHRP).")
	mUnderlayTx     = counter("dmvpn_underlay_sent_packets_total", "GRE data packets sent on the underlay (NHRP is dmvpn_dataplane_control_packets_total).")
	mHairpinned     = counter("dmvpn_dataplane_hairpinned_packets_total", "Packets relayed from one tunnel peer to another (a hub between spokes).")
	mControl        = counter("dmvpn_dataplane_control_packets_total", "NHRP packets the data plane received and sent.", "direction")
	mMulticast      = counter("dmvpn_dataplane_multicast_copies_total", "Copies sent for overlay multicast and broadcast.")
	mDPDropped      = counter("dmvpn_dataplane_dropped_packets_total", "Packets the data plane dropped, by reason.", "reason")
	mWriteErrors    = counter("dmvpn_dataplane_write_errors_total", "Packets that could not be written (underlay or TUN).")

	// Underlay sockets (package underlay), by transport.
	mSockDatagrams = counter("dmvpn_underlay_socket_datagrams_total", "Datagrams an underlay socket sent and received.", "transport", "direction")
	mSockDropped   = counter("dmvpn_underlay_socket_dropped_datagrams_total", "Datagrams an underlay socket received and discarded (not for it, fragments, too short, truncated).", "transport")
	mSockSendErr   = counter("dmvpn_underlay_socket_send_errors_total", "Datagrams an underlay socket could not send.", "transport")
	mSockSyscalls  = counter("dmvpn_underlay_socket_syscalls_total", "sendmmsg and recvmmsg system calls.", "transport", "direction")
	mSockMessages  = counter("dmvpn_underlay_socket_messages_total", "Messages (skbs) those system calls carried; with UDP GSO/GRO one holds several datagrams.", "transport", "direction")
	mSockGSO       = counter("dmvpn_underlay_socket_gso_messages_total", "Messages sent with UDP GSO (more than one datagram).", "transport")
	mSockGSOFall   = counter("dmvpn_underlay_socket_gso_fallbacks_total", "GSO messages the kernel refused, resent one datagram per message.", "transport")
	mSockGRO       = counter("dmvpn_underlay_socket_gro_messages_total", "Messages received coalesced by UDP GRO.", "transport")
	mSockGROSeg    = counter("dmvpn_underlay_socket_gro_segments_total", "Datagrams in messages received coalesced by UDP GRO.", "transport")
	mSockOffload   = gauge("dmvpn_underlay_socket_offload_enabled", "1 when the socket uses the offload (UDP GSO, GRO), else 0.", "transport", "offload")

	// NHRP (package nhrp/engine and the node's control queue).
	mNHRPRx         = counter("dmvpn_nhrp_packets_received_total", "NHRP packets handed to the engine.")
	mNHRPTx         = counter("dmvpn_nhrp_packets_sent_total", "NHRP packets the engine sent.")
	mNHRPDropped    = counter("dmvpn_nhrp_packets_dropped_total", "NHRP packets dropped, by reason (role rules, bounds, rate limits, authentication, queue_full).", "reason")
	mRegistrations  = counter("dmvpn_nhrp_registrations_total", "Registration Requests this NHS answered, by result.", "result")
	mErrorInd       = counter("dmvpn_nhrp_error_indications_total", "Error Indications sent and received.", "direction")
	mPurges         = counter("dmvpn_nhrp_purges_total", "Purge Requests sent and received.", "direction")
	mRedirects      = counter("dmvpn_nhrp_redirects_sent_total", "Traffic Indications (phase 3 redirects) sent.")
	mProbesSent     = counter("dmvpn_nhrp_probes_sent_total", "Liveness probes of registrants sent (before a purge, withdrawal or move is honoured).")
	mProbesRefuted  = counter("dmvpn_nhrp_probes_refuted_total", "Liveness probes the registrant answered (the purge or move was not its own).")
	mExpired        = counter("dmvpn_nhrp_cache_expired_entries_total", "Cache entries that expired with their holding time.")
	mCacheEntries   = gauge("dmvpn_nhrp_cache_entries", "Entries in the NHRP cache.")
	mCacheMax       = gauge("dmvpn_nhrp_cache_max_entries", "The NHRP cache's bound (nhrp.max-entries).")
	mCacheEvicted   = counter("dmvpn_nhrp_cache_evictions_total", "Learned entries evicted to make room.")
	mCacheRefused   = counter("dmvpn_nhrp_cache_refused_total", "Entries the cache refused, by bound (full, per_nbma).", "reason")
	mQueueLen       = gauge("dmvpn_nhrp_control_queue_length", "NHRP packets waiting in the control queue.")
	mQueueCap       = gauge("dmvpn_nhrp_control_queue_capacity", "The control queue's capacity.")
	mLogSuppressed  = counter("dmvpn_log_lines_suppressed_total", "Log lines the rate limiter suppressed.")
	mNHSUp          = gauge("dmvpn_nhrp_nhs_up", "1 when registered with the NHS, else 0.", "nhs")
	mNHSState       = gauge("dmvpn_nhrp_nhs_state", "1 for the NHS's current registration state, 0 for the others.", "nhs", "state")
	mNHSSince       = gauge("dmvpn_nhrp_nhs_state_change_timestamp_seconds", "When the NHS's registration state last changed (Unix time).", "nhs")
	mNHSExpiry      = gauge("dmvpn_nhrp_nhs_registration_expiry_timestamp_seconds", "When our registration at the NHS runs out unless refreshed (Unix time); only while registered.", "nhs")
	mEvents         = counter("dmvpn_events_published_total", "Events the node published (dmvpn events, hooks).")
	mEventsLost     = counter("dmvpn_events_lost_total", "Events event streams lost because they did not keep up.")
	mEventSubs      = gauge("dmvpn_event_subscribers", "Event streams open (dmvpn events).")
	mHookRuns       = counter("dmvpn_hooks_runs_total", "Hook runs, by result (succeeded, failed, timed_out; dropped: not run, too many waiting).", "result")
	mBGPSessions    = gauge("dmvpn_bgp_sessions", "BGP sessions known (configured neighbors and dynamic peers connected), by state (established, other); only with BGP.", "state")
	mBGPLearned     = gauge("dmvpn_bgp_learned_prefixes", "Prefixes with a best path learned from a neighbor; only with BGP.")
	mBGPChanges     = counter("dmvpn_bgp_best_path_changes_total", "Best-path changes the speaker handed to the node; only with BGP.")
	mNHRPMessages   = counter("dmvpn_nhrp_messages_total", "NHRP packets received (decoded, before role rules and authentication: their drops are dmvpn_nhrp_packets_dropped_total) and sent, by type.", "direction", "type")
	mIPsecIKESAs    = gauge("dmvpn_ipsec_ike_sas", "IKE SAs, by state (established, half_open); only with IPsec.", "state")
	mIPsecChildSAs  = gauge("dmvpn_ipsec_child_sas", "Child (ESP) SAs installed, lingering ones after a rekey included; only with IPsec.")
	mIPsecWaiting   = gauge("dmvpn_ipsec_peers_waiting", "Peers with packets waiting for their SA; only with IPsec.")
	mIPsecESP       = counter("dmvpn_ipsec_esp_packets_total", "ESP packets sealed (out) and opened (in); only with IPsec.", "direction")
	mIPsecESPDrop   = counter("dmvpn_ipsec_esp_dropped_total", "Packets the ESP layer dropped, by reason; only with IPsec.", "reason")
	mIPsecIKEMsgs   = counter("dmvpn_ipsec_ike_messages_total", "IKE messages received (in) and sent (out); only with IPsec.", "direction")
	mIPsecIKEDrop   = counter("dmvpn_ipsec_ike_dropped_total", "IKE messages dropped, by reason; only with IPsec.", "reason")
	mIPsecIKEEvents = counter("dmvpn_ipsec_ike_total", "IKE outcomes: established, failed, dead (DPD), child_rekeys, ike_rekeys, auth_failures; only with IPsec.", "event")
	allDescs        = []desc{mInfo, mOverlayRead, mOverlayWritten, mUnderlayRx, mUnderlayTx, mHairpinned, mControl, mMulticast, mDPDropped, mWriteErrors, mSockDatagrams, mSockDropped, mSockSendErr, mSockSyscalls, mSockMessages, mSockGSO, mSockGSOFall, mSockGRO, mSockGROSeg, mSockOffload, mNHRPRx, mNHRPTx, mNHRPDropped, mRegistrations, mErrorInd, mPurges, mRedirects, mProbesSent, mProbesRefuted, mExpired, mCacheEntries, mCacheMax, mCacheEvicted, mCacheRefused, mQueueLen, mQueueCap, mLogSuppressed, mNHSUp, mNHSState, mNHSSince, mNHSExpiry, mEvents, mEventsLost, mEventSubs, mHookRuns, mBGPSessions, mBGPLearned, mBGPChanges, mIPsecIKESAs, mIPsecChildSAs, mIPsecWaiting, mIPsecESP, mIPsecESPDrop, mIPsecIKEMsgs, mIPsecIKEDrop, mIPsecIKEEvents, mNHRPMessages, mPeerRxPackets, mPeerRxBytes, mPeerTxPackets, mPeerTxBytes, mPeerTrunc}
	dataplaneReason = []string{"no_route", "no_peer", "ttl_expired", "key_mismatch", "bad_gre", "bad_inner", "loop"}
)

// Per peer (the cache entries' counters), for at most metrics.peer-limit
// peers.
var (
	mPeerRxPackets = counter("dmvpn_peer_received_packets_total", "GRE packets received from the peer (data and NHRP).", "peer", "nbma")
	mPeerRxBytes   = counter("dmvpn_peer_received_bytes_total", "Bytes of GRE packets received from the peer (GRE header and payload).", "peer", "nbma")
	mPeerTxPackets = counter("dmvpn_peer_sent_packets_total", "GRE data packets sent to the peer (unicast, relayed, multicast copies).", "peer", "nbma")
	mPeerTxBytes   = counter("dmvpn_peer_sent_bytes_total", "Bytes of GRE data packets sent to the peer (GRE header and payload).", "peer", "nbma")
	mPeerTrunc     = gauge("dmvpn_peer_series_truncated", "1 when there are more peers than metrics.peer-limit and only the busiest have dmvpn_peer_* series, else 0.")
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d.d
	}
	c.resolution.Describe(ch)
}

// Collect implements prometheus.Collector: one snapshot per scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snap()
	emit := func(d desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.d, d.t, v, labels...)
	}
	emit(mInfo, 1, s.Node, s.Role, s.Transport)

	d := &s.DataPlane
	emit(mOverlayRead, float64(d.OverlayRx))
	emit(mOverlayWritten, float64(d.OverlayTx))
	emit(mUnderlayRx, float64(d.UnderlayRx))
	emit(mUnderlayTx, float64(d.UnderlayTx))
	emit(mHairpinned, float64(d.Hairpinned))
	emit(mControl, float64(d.ControlRx), "received")
	emit(mControl, float64(d.ControlTx), "sent")
	emit(mMulticast, float64(d.Multicast))
	for i, v := range []uint64{d.NoRoute, d.NoPeer, d.TTLExpire, d.KeyMismatch, d.BadGRE, d.BadInner, d.Loop} {
		emit(mDPDropped, float64(v), dataplaneReason[i])
	}
	emit(mWriteErrors, float64(d.WriteErrors))

	for _, u := range s.Underlay {
		t, st := u.Transport.String(), &u.Stats
		emit(mSockDatagrams, float64(st.Sent), t, "sent")
		emit(mSockDatagrams, float64(st.Received), t, "received")
		emit(mSockDropped, float64(st.Dropped), t)
		emit(mSockSendErr, float64(st.SendErrors), t)
		emit(mSockSyscalls, float64(st.SendCalls), t, "sent")
		emit(mSockSyscalls, float64(st.RecvCalls), t, "received")
		emit(mSockMessages, float64(st.SendMsgs), t, "sent")
		emit(mSockMessages, float64(st.RecvMsgs), t, "received")
		emit(mSockGSO, float64(st.GSOMsgs), t)
		emit(mSockGSOFall, float64(st.GSOFallbacks), t)
		emit(mSockGRO, float64(st.GROMsgs), t)
		emit(mSockGROSeg, float64(st.GROSegments), t)
		if u.Offloads {
			emit(mSockOffload, b2f(u.GSO), t, "gso")
			emit(mSockOffload, b2f(u.GRO), t, "gro")
		}
	}

	e := &s.Engine
	emit(mNHRPRx, float64(e.Received))
	emit(mNHRPTx, float64(e.Sent))
	for _, r := range engine.DropReasons() {
		emit(mNHRPDropped, float64(e.Dropped[r]), r.String())
	}
	emit(mNHRPDropped, float64(s.ControlQueueDropped), QueueFull)
	for ty := 1; ty <= engine.NumTypes; ty++ {
		name := engine.TypeName(nhrp.Type(ty))
		emit(mNHRPMessages, float64(e.ReceivedByType[ty]), "received", name)
		emit(mNHRPMessages, float64(e.SentByType[ty]), "sent", name)
	}
	emit(mRegistrations, float64(e.RegistrationsAccepted), "accepted")
	emit(mRegistrations, float64(e.RegistrationsRefused), "refused")
	emit(mErrorInd, float64(e.ErrorIndicationsSent), "sent")
	emit(mErrorInd, float64(e.ErrorIndicationsRecvd), "received")
	emit(mPurges, float64(e.PurgesSent), "sent")
	emit(mPurges, float64(e.PurgesReceived), "received")
	emit(mRedirects, float64(e.RedirectsSent))
	emit(mProbesSent, float64(e.ProbesSent))
	emit(mProbesRefuted, float64(e.ProbesRefuted))
	emit(mExpired, float64(e.ExpiredEntries))
	emit(mCacheEntries, float64(s.CacheEntries))
	emit(mCacheMax, float64(s.CacheMaxEntries))
	emit(mCacheEvicted, float64(s.Cache.Evicted))
	emit(mCacheRefused, float64(s.Cache.RefusedFull), "full")
	emit(mCacheRefused, float64(s.Cache.RefusedPerNBMA), "per_nbma")
	emit(mQueueLen, float64(s.ControlQueueLen))
	emit(mQueueCap, float64(s.ControlQueueCap))
	emit(mLogSuppressed, float64(s.LogSuppressed))

	for _, n := range s.NHS {
		a := n.Protocol.String()
		emit(mNHSUp, b2f(n.State == engine.StateUp), a)
		for _, st := range NHSStates {
			emit(mNHSState, b2f(n.State == st), a, st)
		}
		if !n.Since.IsZero() {
			emit(mNHSSince, unix(n.Since), a)
		}
		if n.State == engine.StateUp && !n.Expires.IsZero() {
			emit(mNHSExpiry, unix(n.Expires), a)
		}
	}
	emit(mEvents, float64(s.Events.Published))
	emit(mEventsLost, float64(s.Events.Lost))
	emit(mEventSubs, float64(s.Events.Subscribers))
	emit(mHookRuns, float64(s.Hooks.Succeeded), "succeeded")
	emit(mHookRuns, float64(s.Hooks.Failed), "failed")
	emit(mHookRuns, float64(s.Hooks.TimedOut), "timed_out")
	emit(mHookRuns, float64(s.Hooks.Dropped), "dropped")

	for i := range s.Peers {
		p := &s.Peers[i]
		peer, nbma := p.Protocol.String(), p.NBMA.String()
		if p.NBMA.Port() == 0 {
			nbma = p.NBMA.Addr().String()
		}
		emit(mPeerRxPackets, float64(p.RxPackets), peer, nbma)
		emit(mPeerRxBytes, float64(p.RxBytes), peer, nbma)
		emit(mPeerTxPackets, float64(p.TxPackets), peer, nbma)
		emit(mPeerTxBytes, float64(p.TxBytes), peer, nbma)
	}
	emit(mPeerTrunc, b2f(s.PeersTruncated))
	if b := s.BGP; b != nil {
		emit(mBGPSessions, float64(b.Established), "established")
		emit(mBGPSessions, float64(b.Neighbors-b.Established), "other")
		emit(mBGPLearned, float64(b.Learned))
		emit(mBGPChanges, float64(b.Events))
	}
	if x := s.IPsec; x != nil {
		e, k := &x.ESP, &x.IKE
		emit(mIPsecIKESAs, float64(k.IKESAs-k.HalfOpen), "established")
		emit(mIPsecIKESAs, float64(k.HalfOpen), "half_open")
		emit(mIPsecChildSAs, float64(e.SAs))
		emit(mIPsecWaiting, float64(e.Waiting))
		emit(mIPsecESP, float64(e.Sealed), "out")
		emit(mIPsecESP, float64(e.Opened), "in")
		for _, r := range []struct {
			name string
			v    uint64
		}{{"unknown_spi", e.UnknownSPI}, {"wrong_source", e.WrongSource}, {"replayed", e.Replayed}, {"auth_failed", e.AuthFailed},
			{"malformed", e.Malformed}, {"open_error", e.OpenErrors}, {"bad_inner", e.BadInner}, {"queue_full", e.QueueDrops},
			{"wait_expired", e.WaitExpired}, {"too_big", e.TooBig}, {"seal_error", e.SealErrors}, {"clear_gre", x.ClearGREDropped}} {
			emit(mIPsecESPDrop, float64(r.v), r.name)
		}
		emit(mIPsecIKEMsgs, float64(k.Received), "in")
		emit(mIPsecIKEMsgs, float64(k.Sent), "out")
		for name, v := range k.DroppedByName() {
			emit(mIPsecIKEDrop, float64(v), name)
		}
		for _, r := range []struct {
			name string
			v    uint64
		}{{"established", k.Established}, {"failed", k.Failed}, {"dead", k.Dead}, {"child_rekeys", k.ChildRekeys},
			{"ike_rekeys", k.IKERekeys}, {"auth_failures", k.AuthFailures}} {
			emit(mIPsecIKEEvents, float64(r.v), r.name)
		}
	}
	c.resolution.Collect(ch)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Listen opens the TCP listener of metrics.listen, so that a daemon that
// cannot serve its metrics fails at start-up with the cause.
func Listen(addr netip.AddrPort) (net.Listener, error) {
	l, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w", addr, err)
	}
	return l, nil
}

// Path is where ServeListener answers scrapes.
const Path = "/metrics"

// ServeListener answers GET /metrics on l with h (the node's Prometheus
// handler) until ctx is done, then closes l.
func ServeListener(ctx context.Context, l net.Listener, h http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("metrics: %w", err)
}
