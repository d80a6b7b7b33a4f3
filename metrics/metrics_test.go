package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/dmvpn/dmvpn/dataplane"
	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/events/hooks"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp/cache"
	"github.com/dmvpn/dmvpn/nhrp/engine"
	"github.com/dmvpn/dmvpn/underlay"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// testSnapshot has a distinct value in every counter, so a counter wired
// to the wrong field shows.
func testSnapshot() Snapshot {
	s := Snapshot{
		Node: "spoke1", Role: "spoke", Transport: "gre",
		DataPlane: dataplane.Stats{OverlayRx: 1, OverlayTx: 2, UnderlayRx: 3, UnderlayTx: 4, Hairpinned: 5, ControlRx: 6,
			ControlTx: 7, Multicast: 8, NoRoute: 9, NoPeer: 10, TTLExpire: 11, KeyMismatch: 12, BadGRE: 13, BadInner: 14,
			Loop: 15, WriteErrors: 16},
		Engine: engine.Stats{Received: 21, Sent: 22, ErrorIndicationsSent: 23, ErrorIndicationsRecvd: 24,
			RegistrationsAccepted: 25, RegistrationsRefused: 26, PurgesReceived: 27, ExpiredEntries: 28, PurgesSent: 29,
			RedirectsSent: 30, ProbesSent: 31, ProbesRefuted: 32},
		LogSuppressed: 33, CacheEntries: 34, CacheMaxEntries: 100000,
		Cache:           cache.Stats{Evicted: 35, RefusedFull: 36, RefusedPerNBMA: 37},
		ControlQueueLen: 38, ControlQueueCap: 1024, ControlQueueDropped: 39,
		Underlay: []Socket{
			{Transport: nbma.TransportGRE, Stats: underlay.ConnStats{Sent: 41, Received: 42, Dropped: 43, SendErrors: 44, SendCalls: 45, SendMsgs: 46, RecvCalls: 47, RecvMsgs: 48}},
			{Transport: nbma.TransportUDP, Stats: underlay.ConnStats{Sent: 51, Received: 52, Dropped: 53, SendErrors: 54, SendCalls: 55, SendMsgs: 56,
				GSOMsgs: 57, GSOFallbacks: 58, RecvCalls: 59, RecvMsgs: 60, GROMsgs: 61, GROSegments: 62}, Offloads: true, GSO: true},
		},
		NHS: []engine.NHSStatus{
			{NHS: engine.NHS{Protocol: netip.MustParseAddr("10.0.0.1")}, State: engine.StateUp, Since: t0, Expires: t0.Add(600 * time.Second)},
			{NHS: engine.NHS{Protocol: netip.MustParseAddr("10.0.0.2")}, State: engine.StateRegistering, Since: t0.Add(time.Second)},
		},
		Events: events.Stats{Published: 71, Subscribers: 2, Lost: 72},
		Hooks:  hooks.Stats{Started: 80, Succeeded: 73, Failed: 74, TimedOut: 75, Dropped: 76},
	}
	for i, r := range engine.DropReasons() {
		s.Engine.Dropped[r] = uint64(100 + i)
	}
	for ty := 1; ty <= engine.NumTypes; ty++ {
		s.Engine.ReceivedByType[ty] = uint64(200 + ty)
		s.Engine.SentByType[ty] = uint64(300 + ty)
	}
	s.Peers = []cache.PeerStats{
		{Protocol: netip.MustParseAddr("10.0.0.12"), NBMA: netip.MustParseAddrPort("198.51.100.65:4754"), RxPackets: 401, RxBytes: 402, TxPackets: 403, TxBytes: 404},
		{Protocol: netip.MustParseAddr("10.0.0.1"), NBMA: netip.MustParseAddrPort("192.0.2.1:0"), RxPackets: 411, RxBytes: 412, TxPackets: 413, TxBytes: 414},
	}
	s.PeersTruncated = true
	return s
}

// wantFamilies is every family the collector exports, with its type.
var wantFamilies = map[string]dto.MetricType{
	"dmvpn_info":                                           dto.MetricType_GAUGE,
	"dmvpn_overlay_read_packets_total":                     dto.MetricType_COUNTER,
	"dmvpn_overlay_written_packets_total":                  dto.MetricType_COUNTER,
	"dmvpn_underlay_received_packets_total":                dto.MetricType_COUNTER,
	"dmvpn_underlay_sent_packets_total":                    dto.MetricType_COUNTER,
	"dmvpn_dataplane_hairpinned_packets_total":             dto.MetricType_COUNTER,
	"dmvpn_dataplane_control_packets_total":                dto.MetricType_COUNTER,
	"dmvpn_dataplane_multicast_copies_total":               dto.MetricType_COUNTER,
	"dmvpn_dataplane_dropped_packets_total":                dto.MetricType_COUNTER,
	"dmvpn_dataplane_write_errors_total":                   dto.MetricType_COUNTER,
	"dmvpn_underlay_socket_datagrams_total":                dto.MetricType_COUNTER,
	"dmvpn_underlay_socket_dropped_datagrams_total":        dto.MetricType_COUNTER,
	"dmvpn_underlay_socket_send_errors_total":              dto.MetricType_COUNTER,
	"dmvpn_underlay_socket_syscalls_total":                 dto.MetricType_COUNTER,
	"dmvpn_underlay_socket_messages_total":                 dto.MetricType_COUNTER,
	"dmvpn_underlay_socket_gso_messages_total":             dto.MetricType_COUNTER,
	"dmvpn_underlay_socket_gso_fallbacks_total":            dto.MetricType_COUNTER,
	"dmvpn_underlay_socket_gro_messages_total":             dto.MetricType_COUNTER,
	"dmvpn_underlay_socket_gro_segments_total":             dto.MetricType_COUNTER,
	"dmvpn_underlay_socket_offload_enabled":                dto.MetricType_GAUGE,
	"dmvpn_nhrp_packets_received_total":                    dto.MetricType_COUNTER,
	"dmvpn_nhrp_packets_sent_total":                        dto.MetricType_COUNTER,
	"dmvpn_nhrp_packets_dropped_total":                     dto.MetricType_COUNTER,
	"dmvpn_nhrp_registrations_total":                       dto.MetricType_COUNTER,
	"dmvpn_nhrp_error_indications_total":                   dto.MetricType_COUNTER,
	"dmvpn_nhrp_purges_total":                              dto.MetricType_COUNTER,
	"dmvpn_nhrp_redirects_sent_total":                      dto.MetricType_COUNTER,
	"dmvpn_nhrp_probes_sent_total":                         dto.MetricType_COUNTER,
	"dmvpn_nhrp_probes_refuted_total":                      dto.MetricType_COUNTER,
	"dmvpn_nhrp_cache_expired_entries_total":               dto.MetricType_COUNTER,
	"dmvpn_nhrp_cache_entries":                             dto.MetricType_GAUGE,
	"dmvpn_nhrp_cache_max_entries":                         dto.MetricType_GAUGE,
	"dmvpn_nhrp_cache_evictions_total":                     dto.MetricType_COUNTER,
	"dmvpn_nhrp_cache_refused_total":                       dto.MetricType_COUNTER,
	"dmvpn_nhrp_control_queue_length":                      dto.MetricType_GAUGE,
	"dmvpn_nhrp_control_queue_capacity":                    dto.MetricType_GAUGE,
	"dmvpn_log_lines_suppressed_total":                     dto.MetricType_COUNTER,
	"dmvpn_nhrp_nhs_up":                                    dto.MetricType_GAUGE,
	"dmvpn_nhrp_nhs_state":                                 dto.MetricType_GAUGE,
	"dmvpn_nhrp_nhs_state_change_timestamp_seconds":        dto.MetricType_GAUGE,
	"dmvpn_nhrp_nhs_registration_expiry_timestamp_seconds": dto.MetricType_GAUGE,
	"dmvpn_nhrp_resolution_duration_seconds":               dto.MetricType_HISTOGRAM,
	"dmvpn_events_published_total":                         dto.MetricType_COUNTER,
	"dmvpn_events_lost_total":                              dto.MetricType_COUNTER,
	"dmvpn_event_subscribers":                              dto.MetricType_GAUGE,
	"dmvpn_hooks_runs_total":                               dto.MetricType_COUNTER,
	"dmvpn_nhrp_messages_total":                            dto.MetricType_COUNTER,
	"dmvpn_peer_received_packets_total":                    dto.MetricType_COUNTER,
	"dmvpn_peer_received_bytes_total":                      dto.MetricType_COUNTER,
	"dmvpn_peer_sent_packets_total":                        dto.MetricType_COUNTER,
	"dmvpn_peer_sent_bytes_total":                          dto.MetricType_COUNTER,
	"dmvpn_peer_series_truncated":                          dto.MetricType_GAUGE,
}

func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry() // checks Describe against Collect
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value is the value of the series of family name with exactly labels.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	mf := mfs[name]
	if mf == nil {
		t.Fatalf("no family %s", name)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("%s has no series %v", name, want)
	return 0
}

func TestFamiliesTypesAndLabels(t *testing.T) {
	c := New(testSnapshot)
	mfs := gather(t, c)
	var missing, extra []string
	for name, typ := range wantFamilies {
		mf := mfs[name]
		if mf == nil {
			missing = append(missing, name)
			continue
		}
		if mf.GetType() != typ {
			t.Errorf("%s is a %v, want a %v", name, mf.GetType(), typ)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
	}
	for name := range mfs {
		if _, ok := wantFamilies[name]; !ok {
			extra = append(extra, name)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra) > 0 {
		t.Errorf("families missing %v, unexpected %v", missing, extra)
	}

	// Labels: a small fixed set of names, and values from a fixed set
	// (nhs: the configured NHSes). Per-peer labels only for the peers of
	// Snapshot.Peers.
	allowed := map[string]map[string]bool{
		"reason":    nil, // checked below against the engine's and data plane's lists
		"direction": {"sent": true, "received": true},
		"transport": {"gre": true, "udp": true},
		"offload":   {"gso": true, "gro": true},
		"result":    {"accepted": true, "refused": true, "succeeded": true, "failed": true, "timed_out": true, "dropped": true},
		"state":     {"up": true, "registering": true, "down": true, "refused": true, "error": true},
		"nhs":       {"10.0.0.1": true, "10.0.0.2": true},
		"node":      {"spoke1": true}, "role": {"spoke": true},
		"type": {"resolution_request": true, "resolution_reply": true, "registration_request": true, "registration_reply": true,
			"purge_request": true, "purge_reply": true, "error_indication": true, "traffic_indication": true},
		"peer": {"10.0.0.12": true, "10.0.0.1": true},
		"nbma": {"198.51.100.65:4754": true, "192.0.2.1": true},
	}
	perPeer := map[string]bool{"dmvpn_peer_received_packets_total": true, "dmvpn_peer_received_bytes_total": true,
		"dmvpn_peer_sent_packets_total": true, "dmvpn_peer_sent_bytes_total": true}
	reasons := map[string]bool{QueueFull: true, "full": true, "per_nbma": true}
	for _, r := range engine.DropReasons() {
		reasons[r.String()] = true
	}
	for _, r := range dataplaneReason {
		reasons[r] = true
	}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				vals, ok := allowed[l.GetName()]
				if !ok && !(name == "dmvpn_info" && l.GetName() == "transport") {
					t.Errorf("%s: label %s is not one of the bounded labels", name, l.GetName())
					continue
				}
				if l.GetName() == "reason" {
					vals = reasons
				}
				if (l.GetName() == "peer" || l.GetName() == "nbma") != perPeer[name] {
					t.Errorf("%s: label %s: per-peer labels are for the dmvpn_peer_ series only", name, l.GetName())
				}
				if vals != nil && !vals[l.GetValue()] {
					t.Errorf("%s: %s=%q is not an expected value", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	// Every engine drop reason is there, and queue_full.
	if got, want := len(mfs["dmvpn_nhrp_packets_dropped_total"].GetMetric()), len(engine.DropReasons())+1; got != want {
		t.Errorf("dmvpn_nhrp_packets_dropped_total has %d series, want %d", got, want)
	}
	if got := len(mfs["dmvpn_nhrp_nhs_state"].GetMetric()); got != 2*len(NHSStates) {
		t.Errorf("dmvpn_nhrp_nhs_state has %d series, want %d", got, 2*len(NHSStates))
	}
	// Both directions of the 8 types; one series per peer given.
	if got := len(mfs["dmvpn_nhrp_messages_total"].GetMetric()); got != 2*engine.NumTypes {
		t.Errorf("dmvpn_nhrp_messages_total has %d series, want %d", got, 2*engine.NumTypes)
	}
	for name := range perPeer {
		if got := len(mfs[name].GetMetric()); got != 2 {
			t.Errorf("%s has %d series, want 2", name, got)
		}
	}
}

// Without peers in the snapshot (peer-limit 0) there is no per-peer
// series, and the truncation gauge is 0.
func TestNoPeerSeries(t *testing.T) {
	s := testSnapshot()
	s.Peers, s.PeersTruncated = nil, false
	mfs := gather(t, New(func() Snapshot { return s }))
	for _, name := range []string{"dmvpn_peer_received_packets_total", "dmvpn_peer_received_bytes_total", "dmvpn_peer_sent_packets_total", "dmvpn_peer_sent_bytes_total"} {
		if mfs[name] != nil {
			t.Errorf("%s exported without peers", name)
		}
	}
	if v := value(t, mfs, "dmvpn_peer_series_truncated"); v != 0 {
		t.Errorf("dmvpn_peer_series_truncated = %v", v)
	}
}

// Every series follows the field it reads.
func TestValues(t *testing.T) {
	s := testSnapshot()
	c := New(func() Snapshot { return s })
	c.ObserveResolution(3 * time.Millisecond)
	c.ObserveResolution(2 * time.Second)
	mfs := gather(t, c)
	for _, tt := range []struct {
		want   float64
		name   string
		labels []string
	}{
		{1, "dmvpn_info", []string{"node", "spoke1", "role", "spoke", "transport", "gre"}},
		{1, "dmvpn_overlay_read_packets_total", nil},
		{2, "dmvpn_overlay_written_packets_total", nil},
		{3, "dmvpn_underlay_received_packets_total", nil},
		{4, "dmvpn_underlay_sent_packets_total", nil},
		{5, "dmvpn_dataplane_hairpinned_packets_total", nil},
		{6, "dmvpn_dataplane_control_packets_total", []string{"direction", "received"}},
		{7, "dmvpn_dataplane_control_packets_total", []string{"direction", "sent"}},
		{8, "dmvpn_dataplane_multicast_copies_total", nil},
		{9, "dmvpn_dataplane_dropped_packets_total", []string{"reason", "no_route"}},
		{10, "dmvpn_dataplane_dropped_packets_total", []string{"reason", "no_peer"}},
		{11, "dmvpn_dataplane_dropped_packets_total", []string{"reason", "ttl_expired"}},
		{12, "dmvpn_dataplane_dropped_packets_total", []string{"reason", "key_mismatch"}},
		{13, "dmvpn_dataplane_dropped_packets_total", []string{"reason", "bad_gre"}},
		{14, "dmvpn_dataplane_dropped_packets_total", []string{"reason", "bad_inner"}},
		{15, "dmvpn_dataplane_dropped_packets_total", []string{"reason", "loop"}},
		{16, "dmvpn_dataplane_write_errors_total", nil},
		{21, "dmvpn_nhrp_packets_received_total", nil},
		{22, "dmvpn_nhrp_packets_sent_total", nil},
		{23, "dmvpn_nhrp_error_indications_total", []string{"direction", "sent"}},
		{24, "dmvpn_nhrp_error_indications_total", []string{"direction", "received"}},
		{25, "dmvpn_nhrp_registrations_total", []string{"result", "accepted"}},
		{26, "dmvpn_nhrp_registrations_total", []string{"result", "refused"}},
		{27, "dmvpn_nhrp_purges_total", []string{"direction", "received"}},
		{28, "dmvpn_nhrp_cache_expired_entries_total", nil},
		{29, "dmvpn_nhrp_purges_total", []string{"direction", "sent"}},
		{30, "dmvpn_nhrp_redirects_sent_total", nil},
		{31, "dmvpn_nhrp_probes_sent_total", nil},
		{32, "dmvpn_nhrp_probes_refuted_total", nil},
		{33, "dmvpn_log_lines_suppressed_total", nil},
		{34, "dmvpn_nhrp_cache_entries", nil},
		{100000, "dmvpn_nhrp_cache_max_entries", nil},
		{35, "dmvpn_nhrp_cache_evictions_total", nil},
		{36, "dmvpn_nhrp_cache_refused_total", []string{"reason", "full"}},
		{37, "dmvpn_nhrp_cache_refused_total", []string{"reason", "per_nbma"}},
		{38, "dmvpn_nhrp_control_queue_length", nil},
		{1024, "dmvpn_nhrp_control_queue_capacity", nil},
		{39, "dmvpn_nhrp_packets_dropped_total", []string{"reason", QueueFull}},
		{100, "dmvpn_nhrp_packets_dropped_total", []string{"reason", "malformed"}},
		{100 + float64(engine.DropSendLimited), "dmvpn_nhrp_packets_dropped_total", []string{"reason", "send_limited"}},
		{41, "dmvpn_underlay_socket_datagrams_total", []string{"transport", "gre", "direction", "sent"}},
		{42, "dmvpn_underlay_socket_datagrams_total", []string{"transport", "gre", "direction", "received"}},
		{43, "dmvpn_underlay_socket_dropped_datagrams_total", []string{"transport", "gre"}},
		{44, "dmvpn_underlay_socket_send_errors_total", []string{"transport", "gre"}},
		{45, "dmvpn_underlay_socket_syscalls_total", []string{"transport", "gre", "direction", "sent"}},
		{46, "dmvpn_underlay_socket_messages_total", []string{"transport", "gre", "direction", "sent"}},
		{47, "dmvpn_underlay_socket_syscalls_total", []string{"transport", "gre", "direction", "received"}},
		{48, "dmvpn_underlay_socket_messages_total", []string{"transport", "gre", "direction", "received"}},
		{57, "dmvpn_underlay_socket_gso_messages_total", []string{"transport", "udp"}},
		{58, "dmvpn_underlay_socket_gso_fallbacks_total", []string{"transport", "udp"}},
		{61, "dmvpn_underlay_socket_gro_messages_total", []string{"transport", "udp"}},
		{62, "dmvpn_underlay_socket_gro_segments_total", []string{"transport", "udp"}},
		{1, "dmvpn_underlay_socket_offload_enabled", []string{"transport", "udp", "offload", "gso"}},
		{0, "dmvpn_underlay_socket_offload_enabled", []string{"transport", "udp", "offload", "gro"}},
		{1, "dmvpn_nhrp_nhs_up", []string{"nhs", "10.0.0.1"}},
		{0, "dmvpn_nhrp_nhs_up", []string{"nhs", "10.0.0.2"}},
		{1, "dmvpn_nhrp_nhs_state", []string{"nhs", "10.0.0.1", "state", "up"}},
		{0, "dmvpn_nhrp_nhs_state", []string{"nhs", "10.0.0.1", "state", "registering"}},
		{1, "dmvpn_nhrp_nhs_state", []string{"nhs", "10.0.0.2", "state", "registering"}},
		{0, "dmvpn_nhrp_nhs_state", []string{"nhs", "10.0.0.2", "state", "up"}},
		{float64(t0.Unix()), "dmvpn_nhrp_nhs_state_change_timestamp_seconds", []string{"nhs", "10.0.0.1"}},
		{float64(t0.Unix() + 600), "dmvpn_nhrp_nhs_registration_expiry_timestamp_seconds", []string{"nhs", "10.0.0.1"}},
		{2, "dmvpn_nhrp_resolution_duration_seconds", nil},
		{71, "dmvpn_events_published_total", nil},
		{72, "dmvpn_events_lost_total", nil},
		{2, "dmvpn_event_subscribers", nil},
		{73, "dmvpn_hooks_runs_total", []string{"result", "succeeded"}},
		{74, "dmvpn_hooks_runs_total", []string{"result", "failed"}},
		{75, "dmvpn_hooks_runs_total", []string{"result", "timed_out"}},
		{76, "dmvpn_hooks_runs_total", []string{"result", "dropped"}},
		{201, "dmvpn_nhrp_messages_total", []string{"direction", "received", "type", "resolution_request"}},
		{203, "dmvpn_nhrp_messages_total", []string{"direction", "received", "type", "registration_request"}},
		{208, "dmvpn_nhrp_messages_total", []string{"direction", "received", "type", "traffic_indication"}},
		{304, "dmvpn_nhrp_messages_total", []string{"direction", "sent", "type", "registration_reply"}},
		{305, "dmvpn_nhrp_messages_total", []string{"direction", "sent", "type", "purge_request"}},
		{306, "dmvpn_nhrp_messages_total", []string{"direction", "sent", "type", "purge_reply"}},
		{307, "dmvpn_nhrp_messages_total", []string{"direction", "sent", "type", "error_indication"}},
		{302, "dmvpn_nhrp_messages_total", []string{"direction", "sent", "type", "resolution_reply"}},
		{401, "dmvpn_peer_received_packets_total", []string{"peer", "10.0.0.12", "nbma", "198.51.100.65:4754"}},
		{402, "dmvpn_peer_received_bytes_total", []string{"peer", "10.0.0.12", "nbma", "198.51.100.65:4754"}},
		{403, "dmvpn_peer_sent_packets_total", []string{"peer", "10.0.0.12", "nbma", "198.51.100.65:4754"}},
		{404, "dmvpn_peer_sent_bytes_total", []string{"peer", "10.0.0.12", "nbma", "198.51.100.65:4754"}},
		{411, "dmvpn_peer_received_packets_total", []string{"peer", "10.0.0.1", "nbma", "192.0.2.1"}},
		{414, "dmvpn_peer_sent_bytes_total", []string{"peer", "10.0.0.1", "nbma", "192.0.2.1"}},
		{1, "dmvpn_peer_series_truncated", nil},
	} {
		if got := value(t, mfs, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	// The gre socket has no offloads to report; an NHS not registered has
	// no expiry.
	for _, m := range mfs["dmvpn_underlay_socket_offload_enabled"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "transport" && l.GetValue() == "gre" {
				t.Errorf("offload series for gre: %v", m)
			}
		}
	}
	if n := len(mfs["dmvpn_nhrp_nhs_registration_expiry_timestamp_seconds"].GetMetric()); n != 1 {
		t.Errorf("%d expiry series, want 1 (the NHS that is up)", n)
	}

	// The histogram's buckets: 3 ms and 2 s.
	h := mfs["dmvpn_nhrp_resolution_duration_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleSum() != 2.003 {
		t.Errorf("resolution sum %v, want 2.003", h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		want := uint64(0)
		switch {
		case b.GetUpperBound() >= 2:
			want = 2
		case b.GetUpperBound() >= 0.003:
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}

	// Scrapes read the snapshot again: counters move.
	s.DataPlane.Hairpinned = 500
	s.ControlQueueDropped = 7
	mfs = gather(t, c)
	if got := value(t, mfs, "dmvpn_dataplane_hairpinned_packets_total"); got != 500 {
		t.Errorf("after a change: hairpinned %v, want 500", got)
	}
	if got := value(t, mfs, "dmvpn_nhrp_packets_dropped_total", "reason", QueueFull); got != 7 {
		t.Errorf("after a change: queue_full %v, want 7", got)
	}
}

// The exposition passes promlint (names, units, _total, help).
func TestLint(t *testing.T) {
	c := New(testSnapshot)
	c.ObserveResolution(time.Millisecond)
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// So does the registry a node serves (with the Go and process
	// collectors).
	problems, err = testutil.GatherAndLint(NewRegistry(c))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint (registry): %s: %s", p.Metric, p.Text)
	}
}

// A part of the text exposition, exactly.
func TestExposition(t *testing.T) {
	c := New(testSnapshot)
	const want = `
# HELP dmvpn_nhrp_registrations_total Registration Requests this NHS answered, by result.
# TYPE dmvpn_nhrp_registrations_total counter
dmvpn_nhrp_registrations_total{result="accepted"} 25
dmvpn_nhrp_registrations_total{result="refused"} 26
# HELP dmvpn_nhrp_nhs_up 1 when registered with the NHS, else 0.
# TYPE dmvpn_nhrp_nhs_up gauge
dmvpn_nhrp_nhs_up{nhs="10.0.0.1"} 1
dmvpn_nhrp_nhs_up{nhs="10.0.0.2"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "dmvpn_nhrp_registrations_total", "dmvpn_nhrp_nhs_up"); err != nil {
		t.Fatal(err)
	}
}

// A hub: no NHS series, no offload series without sockets that report them.
func TestHubSnapshot(t *testing.T) {
	mfs := gather(t, New(func() Snapshot { return Snapshot{Node: "hub", Role: "hub", Transport: "gre"} }))
	for _, name := range []string{"dmvpn_nhrp_nhs_up", "dmvpn_nhrp_nhs_state", "dmvpn_underlay_socket_datagrams_total"} {
		if mfs[name] != nil {
			t.Errorf("a hub without sockets exports %s", name)
		}
	}
	if value(t, mfs, "dmvpn_info", "node", "hub", "role", "hub", "transport", "gre") != 1 {
		t.Error("dmvpn_info")
	}
}

func TestServeListener(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(New(testSnapshot))
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, l, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})) }()
	base := "http://" + l.Addr().String()
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(base + Path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`dmvpn_info{node="spoke1",role="spoke",transport="gre"} 1`, "go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, path := range []string{"/", "/v1/stats", "/metrics/x"} {
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
	}

	// A second listener on the same port fails with the cause.
	_, err = Listen(netip.MustParseAddrPort(l.Addr().String()))
	if err == nil || !strings.HasPrefix(err.Error(), "metrics.listen "+l.Addr().String()+": ") || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second Listen: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeListener: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeListener did not return")
	}
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the listener is still open after ServeListener returned")
	}
}
