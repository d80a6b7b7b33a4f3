package node

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/internal/promtest"
)

// scrape gathers n's registry (the one /v1/metrics and metrics.listen
// serve) and returns its families by name.
func scrape(t *testing.T, n *testNode) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := n.n.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func mustSeries(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := promtest.Value(mfs, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

// The metrics follow the node's counters: every `show stats` counter is
// exported under its metric, with the same value, on a hub and on spokes
// that pass traffic through it.
func TestMetricsFollowStats(t *testing.T) {
	tn := newTestNet(t)
	hub := tn.start(hubYAML, "10.1.0.0/24")
	s1 := tn.start(spokeYAML(1, "198.51.100.1", "gre", 42, "lab"), "10.1.1.0/24")
	s2 := tn.start(spokeYAML(2, "198.51.100.65", "udp", 42, "lab"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return registered(s1) && registered(s2) && hub.n.Cache().Len() == 2 })

	before := scrape(t, hub)
	const pings = 5
	for i := 0; i < pings; i++ {
		ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
		ping(t, s2, s1, "10.1.2.10", "10.1.1.10")
	}
	// A scrape reads the counters as they are now.
	after := scrape(t, hub)
	hp0 := mustSeries(t, before, "dmvpn_dataplane_hairpinned_packets_total")
	hp1 := mustSeries(t, after, "dmvpn_dataplane_hairpinned_packets_total")
	if hp1-hp0 != 2*pings {
		t.Errorf("hub hairpinned %v -> %v, want +%d", hp0, hp1, 2*pings)
	}

	// The nodes are idle now (the fake clock does not move), but the last
	// packets' counters may still be moving (a TUN write is counted after
	// it returns): every series must equal its `show stats` counter once
	// they settle.
	for _, n := range []*testNode{hub, s1, s2} {
		var diffs []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if diffs = compareStats(t, n); len(diffs) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: metrics differ from show stats:\n%s", n.name, strings.Join(diffs, "\n"))
			}
		}
	}

	// The hub registered both spokes; the spokes are registered with
	// their NHS and sent their pings.
	hm := scrape(t, hub)
	if v := mustSeries(t, hm, "dmvpn_nhrp_registrations_total", "result", "accepted"); v < 2 {
		t.Errorf("hub accepted %v registrations, want at least 2", v)
	}
	if v := mustSeries(t, hm, "dmvpn_nhrp_cache_entries"); v != 2 {
		t.Errorf("hub cache entries %v, want 2", v)
	}
	if _, ok := promtest.Value(hm, "dmvpn_nhrp_nhs_up", "nhs", "10.0.0.1"); ok {
		t.Error("a hub exports NHS state")
	}
	for _, s := range []*testNode{s1, s2} {
		m := scrape(t, s)
		if v := mustSeries(t, m, "dmvpn_nhrp_nhs_up", "nhs", "10.0.0.1"); v != 1 {
			t.Errorf("%s: nhs_up %v, want 1", s.name, v)
		}
		for _, st := range []string{"up", "registering", "down", "refused", "error"} {
			want := 0.0
			if st == "up" {
				want = 1
			}
			if v := mustSeries(t, m, "dmvpn_nhrp_nhs_state", "nhs", "10.0.0.1", "state", st); v != want {
				t.Errorf("%s: nhs_state{state=%q} %v, want %v", s.name, st, v, want)
			}
		}
		exp := mustSeries(t, m, "dmvpn_nhrp_nhs_registration_expiry_timestamp_seconds", "nhs", "10.0.0.1")
		if now := float64(tn.clk.Now().Unix()); exp <= now || exp > now+30 {
			t.Errorf("%s: registration expiry %v, want within the 30 s holdtime after %v", s.name, exp, now)
		}
		if v := mustSeries(t, m, "dmvpn_overlay_read_packets_total"); v < pings {
			t.Errorf("%s: overlay read %v packets, want at least %d", s.name, v, pings)
		}
	}
	// The registry has the Go and process collectors too.
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if hm[name] == nil {
			t.Errorf("no %s", name)
		}
	}
}

// compareStats lists the differences between n's metrics and its `show
// stats` counters, read one after the other.
func compareStats(t *testing.T, n *testNode) []string {
	t.Helper()
	st := n.n.Stats()
	mfs := scrape(t, n)
	var diffs []string
	check := func(want uint64, name string, labels ...string) {
		got, ok := promtest.Value(mfs, name, labels...)
		if !ok {
			diffs = append(diffs, fmt.Sprintf("no series %s%v", name, labels))
		} else if got != float64(want) {
			diffs = append(diffs, fmt.Sprintf("%s%v = %v, show stats says %d", name, labels, got, want))
		}
	}
	d := st.DataPlane
	check(d["overlay_rx"], "dmvpn_overlay_read_packets_total")
	check(d["overlay_tx"], "dmvpn_overlay_written_packets_total")
	check(d["underlay_rx"], "dmvpn_underlay_received_packets_total")
	check(d["underlay_tx"], "dmvpn_underlay_sent_packets_total")
	check(d["hairpinned"], "dmvpn_dataplane_hairpinned_packets_total")
	check(d["control_rx"], "dmvpn_dataplane_control_packets_total", "direction", "received")
	check(d["control_tx"], "dmvpn_dataplane_control_packets_total", "direction", "sent")
	check(d["multicast"], "dmvpn_dataplane_multicast_copies_total")
	check(d["write_errors"], "dmvpn_dataplane_write_errors_total")
	for _, r := range []string{"no_route", "no_peer", "ttl_expired", "key_mismatch", "bad_gre", "bad_inner", "loop"} {
		check(d[r], "dmvpn_dataplane_dropped_packets_total", "reason", r)
	}
	h := st.NHRP
	check(h["received"], "dmvpn_nhrp_packets_received_total")
	check(h["sent"], "dmvpn_nhrp_packets_sent_total")
	check(h["registrations_accepted"], "dmvpn_nhrp_registrations_total", "result", "accepted")
	check(h["registrations_refused"], "dmvpn_nhrp_registrations_total", "result", "refused")
	check(h["error_indications_sent"], "dmvpn_nhrp_error_indications_total", "direction", "sent")
	check(h["error_indications_received"], "dmvpn_nhrp_error_indications_total", "direction", "received")
	check(h["purges_sent"], "dmvpn_nhrp_purges_total", "direction", "sent")
	check(h["purges_received"], "dmvpn_nhrp_purges_total", "direction", "received")
	check(h["redirects_sent"], "dmvpn_nhrp_redirects_sent_total")
	check(h["probes_sent"], "dmvpn_nhrp_probes_sent_total")
	check(h["probes_refuted"], "dmvpn_nhrp_probes_refuted_total")
	check(h["expired_entries"], "dmvpn_nhrp_cache_expired_entries_total")
	check(h["cache_entries"], "dmvpn_nhrp_cache_entries")
	check(h["cache_evicted"], "dmvpn_nhrp_cache_evictions_total")
	check(h["cache_refused_full"], "dmvpn_nhrp_cache_refused_total", "reason", "full")
	check(h["cache_refused_per_nbma"], "dmvpn_nhrp_cache_refused_total", "reason", "per_nbma")
	check(h["log_lines_suppressed"], "dmvpn_log_lines_suppressed_total")
	check(uint64(ctlQueue), "dmvpn_nhrp_control_queue_capacity")
	check(uint64(n.n.cfg.NHRP.MaxEntries), "dmvpn_nhrp_cache_max_entries")
	if len(st.NHRPDropped) == 0 {
		diffs = append(diffs, "show stats has no drop reasons")
	}
	for r, v := range st.NHRPDropped {
		check(v, "dmvpn_nhrp_packets_dropped_total", "reason", r)
	}
	if got := len(mfs["dmvpn_nhrp_packets_dropped_total"].GetMetric()); got != len(st.NHRPDropped) {
		diffs = append(diffs, fmt.Sprintf("%d drop reasons exported, show stats has %d", got, len(st.NHRPDropped)))
	}
	if len(st.Underlay) != len(transports(n.n.cfg)) {
		diffs = append(diffs, fmt.Sprintf("show stats has sockets %v", st.Underlay))
	}
	for tr, u := range st.Underlay {
		check(u["sent"], "dmvpn_underlay_socket_datagrams_total", "transport", tr, "direction", "sent")
		check(u["received"], "dmvpn_underlay_socket_datagrams_total", "transport", tr, "direction", "received")
		check(u["dropped"], "dmvpn_underlay_socket_dropped_datagrams_total", "transport", tr)
		check(u["send_errors"], "dmvpn_underlay_socket_send_errors_total", "transport", tr)
		check(u["send_calls"], "dmvpn_underlay_socket_syscalls_total", "transport", tr, "direction", "sent")
		check(u["recv_calls"], "dmvpn_underlay_socket_syscalls_total", "transport", tr, "direction", "received")
		check(u["send_msgs"], "dmvpn_underlay_socket_messages_total", "transport", tr, "direction", "sent")
		check(u["recv_msgs"], "dmvpn_underlay_socket_messages_total", "transport", tr, "direction", "received")
		check(u["gso_msgs"], "dmvpn_underlay_socket_gso_messages_total", "transport", tr)
		check(u["gso_fallbacks"], "dmvpn_underlay_socket_gso_fallbacks_total", "transport", tr)
		check(u["gro_msgs"], "dmvpn_underlay_socket_gro_messages_total", "transport", tr)
		check(u["gro_segments"], "dmvpn_underlay_socket_gro_segments_total", "transport", tr)
	}
	role := n.n.Role()
	check(1, "dmvpn_info", "node", n.name, "role", role, "transport", n.n.cfg.Tunnel.Transport.String())
	return diffs
}

// Resolution latency: a phase 3 shortcut observes the histogram once per
// resolution answered.
func TestMetricsResolutionHistogram(t *testing.T) {
	tn := newTestNet(t)
	tn.start(phase3Hub(), "10.1.0.0/24")
	s1 := tn.start(phase3Spoke(1, "198.51.100.1", "gre"), "10.1.1.0/24")
	s2 := tn.start(phase3Spoke(2, "198.51.100.65", "gre"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return registered(s1) && registered(s2) })
	if v := mustSeries(t, scrape(t, s1), "dmvpn_nhrp_resolution_duration_seconds"); v != 0 {
		t.Fatalf("resolutions before any traffic: %v", v)
	}
	ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
	eventually(t, "spoke1 shortcut", func() bool { return shortcutVia(s1, "10.1.2.0/24", "10.0.0.12") })
	m := scrape(t, s1)
	if v := mustSeries(t, m, "dmvpn_nhrp_resolution_duration_seconds"); v != 1 {
		t.Fatalf("spoke1 observed %v resolutions, want 1", v)
	}
	// The fake clock stood still: the resolution took 0 s, in the first
	// bucket.
	h := m["dmvpn_nhrp_resolution_duration_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleSum() != 0 || h.GetBucket()[0].GetCumulativeCount() != 1 {
		t.Errorf("histogram %v", h)
	}
}

// The handler behind /v1/metrics and metrics.listen serves the text
// exposition of the same registry, and it parses.
func TestMetricsHandler(t *testing.T) {
	tn := newTestNet(t)
	hub := tn.start(hubYAML, "10.1.0.0/24")
	srv := httptest.NewServer(hub.n.Metrics())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("%s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	mfs, err := promtest.Parse(body)
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, body)
	}
	if v, ok := promtest.Value(mfs, "dmvpn_info", "node", "hub", "role", "hub", "transport", "gre"); !ok || v != 1 {
		t.Errorf("dmvpn_info: %v %v\n%s", v, ok, body)
	}
}

// Per-peer series: none by default; with metrics.peer-limit, the busiest
// peers up to the limit, with the counters `show nhrp` shows, and
// dmvpn_peer_series_truncated when some peers were left out. The limit
// changes live.
func TestMetricsPerPeer(t *testing.T) {
	tn := newTestNet(t)
	hub := tn.start(hubYAML, "10.1.0.0/24")
	s1 := tn.start(spokeYAML(1, "198.51.100.1", "gre", 42, "lab"), "10.1.1.0/24")
	s2 := tn.start(spokeYAML(2, "198.51.100.65", "udp", 42, "lab"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return registered(s1) && registered(s2) && hub.n.Cache().Len() == 2 })
	for i := 0; i < 3; i++ {
		ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
		ping(t, s2, s1, "10.1.2.10", "10.1.1.10")
	}
	for i := 0; i < 5; i++ { // spoke1 is the busier peer
		ping(t, s1, hub, "10.1.1.10", "10.1.0.10")
	}
	perPeer := []string{"dmvpn_peer_received_packets_total", "dmvpn_peer_received_bytes_total", "dmvpn_peer_sent_packets_total", "dmvpn_peer_sent_bytes_total"}
	count := func(mfs map[string]*dto.MetricFamily) (n int) {
		for _, name := range perPeer {
			n += len(mfs[name].GetMetric())
		}
		return n
	}

	// Default: no per-peer series.
	m := scrape(t, hub)
	if n := count(m); n != 0 {
		t.Fatalf("peer-limit 0: %d per-peer series", n)
	}
	if v := mustSeries(t, m, "dmvpn_peer_series_truncated"); v != 0 {
		t.Errorf("peer-limit 0: truncated %v", v)
	}

	setLimit := func(limit int) {
		t.Helper()
		cfg, err := config.Parse("test.yaml", []byte(hubYAML+fmt.Sprintf("metrics:\n  peer-limit: %d\n", limit)))
		if err != nil {
			t.Fatal(err)
		}
		changed, err := hub.n.Apply(cfg)
		if err != nil || !strings.Contains(strings.Join(changed, "\n"), "metrics.peer-limit") {
			t.Fatalf("reload to peer-limit %d: %v, %v", limit, changed, err)
		}
	}

	// Room for both: their series equal the counters of show nhrp (once
	// the last packets are counted), and nothing is truncated.
	setLimit(5)
	var diffs []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		diffs = nil
		m = scrape(t, hub)
		for _, e := range hub.n.NHRP() {
			for i, want := range []uint64{e.RxPackets, e.RxBytes, e.TxPackets, e.TxBytes} {
				got, ok := promtest.Value(m, perPeer[i], "peer", e.Protocol, "nbma", e.NBMA)
				if !ok || got != float64(want) {
					diffs = append(diffs, fmt.Sprintf("%s{peer=%s,nbma=%s} = %v (%v), show nhrp says %d", perPeer[i], e.Protocol, e.NBMA, got, ok, want))
				}
			}
			if e.RxPackets == 0 || e.TxPackets == 0 || e.RxBytes <= e.RxPackets || e.TxBytes <= e.TxPackets {
				diffs = append(diffs, fmt.Sprintf("%s: counters %+v", e.Protocol, e))
			}
		}
		if len(diffs) == 0 && count(m) == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("per-peer series (%d):\n%s", count(m), strings.Join(diffs, "\n"))
		}
	}
	if v := mustSeries(t, m, "dmvpn_peer_series_truncated"); v != 0 {
		t.Errorf("peer-limit 5, 2 peers: truncated %v", v)
	}

	// Capped at one: the busier peer only, and truncated.
	setLimit(1)
	m = scrape(t, hub)
	if n := count(m); n != 4 {
		t.Fatalf("peer-limit 1: %d per-peer series, want 4", n)
	}
	for _, name := range perPeer {
		if l := m[name].GetMetric()[0].GetLabel(); len(l) != 2 || l[1].GetName() != "peer" || l[1].GetValue() != "10.0.0.11" {
			t.Errorf("peer-limit 1: %s is for %v, want peer 10.0.0.11", name, l)
		}
	}
	if v := mustSeries(t, m, "dmvpn_peer_series_truncated"); v != 1 {
		t.Errorf("peer-limit 1, 2 peers: truncated %v", v)
	}

	// Back to 0: none again.
	setLimit(0)
	if n := count(scrape(t, hub)); n != 0 {
		t.Errorf("peer-limit back to 0: %d per-peer series", n)
	}
}
