package e2e

// Prometheus metrics end to end: `dmvpn show metrics -c FILE` on the lab's
// daemons follows the traffic sent through the hub; metrics.listen serves
// /metrics over TCP inside the node's namespace (and only where it is
// configured); a metrics.listen that cannot listen stops `dmvpn run` at
// start-up with the cause.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/dmvpn/dmvpn/internal/promtest"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
)

// metricsListen is where the hub serves /metrics, on its namespace's
// loopback.
const metricsListen = "127.0.0.1:9273"

// metricsOf runs `dmvpn show metrics -c <node>.yaml` and parses it.
func (e *env) metricsOf(node string) map[string]*dto.MetricFamily {
	e.t.Helper()
	ctx, cancel := e.timeout(15 * time.Second)
	defer cancel()
	out, err := e.l.Show(ctx, node, "metrics", false)
	if err != nil {
		e.t.Fatal(err)
	}
	mfs, err := promtest.Parse(out)
	if err != nil {
		e.t.Fatalf("dmvpn show metrics on %s does not parse: %v\n%s", node, err, out)
	}
	return mfs
}

func mustMetric(t *testing.T, node string, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := promtest.Value(mfs, name, labels...)
	if !ok {
		t.Fatalf("%s: no series %s%v", node, name, labels)
	}
	return v
}

// httpInNamespace is an HTTP client whose connections are opened inside
// the named network namespace.
func httpInNamespace(ns string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := lab.InNamespace(ns, func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// TestMetricsLab sends a known number of pings from host-lan1 to host-lan2
// (relayed by the hub) and checks that every counter on the path grew by at
// least that much in `dmvpn show metrics`, and that metrics.listen answers
// on the hub.
func TestMetricsLab(t *testing.T) {
	testenv.RequireRoot(t)
	e := newLab(t, 'z', lab.Options{Tweak: func(node string, c *lab.NodeConfig) {
		if node == lab.Hub {
			c.Metrics.Listen = metricsListen
		}
	}})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	path := pingCheck{lab.HostLAN1, lab.HostLAN2}
	if err := e.waitPing(path.from, path.dst(), reachLimit); err != nil {
		t.Fatalf("%s: not reachable within %v: %v", path, reachLimit, err)
	}

	nodes := []string{lab.Hub, lab.Spoke1, lab.Spoke2}
	before := map[string]map[string]*dto.MetricFamily{}
	for _, n := range nodes {
		before[n] = e.metricsOf(n)
	}
	const pings = 20
	r, err := e.l.PingStats(e.ctx, path.from, path.dst(), pings)
	if err != nil || r.Received != pings || r.Sent != pings {
		t.Fatalf("ping %s: %s: %v", path, r, err)
	}
	t.Logf("ping %s: %s", path, r)
	after := map[string]map[string]*dto.MetricFamily{}
	for _, n := range nodes {
		after[n] = e.metricsOf(n)
	}

	// Each echo request and reply crosses spoke1, the hub (relayed) and
	// spoke2 once: the counters grew by at least that (registration
	// refreshes and the like may add more).
	grew := func(node string, min float64, name string, labels ...string) {
		t.Helper()
		b := mustMetric(t, node, before[node], name, labels...)
		a := mustMetric(t, node, after[node], name, labels...)
		if a-b < min {
			t.Errorf("%s: %s%v grew by %v (%v -> %v) during %d pings, want at least %v", node, name, labels, a-b, b, a, pings, min)
		}
	}
	grew(lab.Hub, 2*pings, "dmvpn_dataplane_hairpinned_packets_total")
	grew(lab.Hub, 2*pings, "dmvpn_underlay_received_packets_total")
	grew(lab.Hub, 2*pings, "dmvpn_underlay_sent_packets_total")
	grew(lab.Hub, 2*pings, "dmvpn_underlay_socket_datagrams_total", "transport", "gre", "direction", "received")
	grew(lab.Hub, 2*pings, "dmvpn_underlay_socket_datagrams_total", "transport", "gre", "direction", "sent")
	for _, s := range []string{lab.Spoke1, lab.Spoke2} {
		grew(s, pings, "dmvpn_overlay_read_packets_total")    // requests (spoke1) or replies (spoke2) from the LAN
		grew(s, pings, "dmvpn_overlay_written_packets_total") // replies (spoke1) or requests (spoke2) to the LAN
		grew(s, pings, "dmvpn_underlay_sent_packets_total")
		grew(s, pings, "dmvpn_underlay_received_packets_total")
		grew(s, pings, "dmvpn_underlay_socket_datagrams_total", "transport", "gre", "direction", "sent")
		grew(s, pings, "dmvpn_underlay_socket_syscalls_total", "transport", "gre", "direction", "sent")
	}
	// No counter goes backwards between two scrapes.
	for _, n := range nodes {
		for name, mf := range before[n] {
			if mf.GetType() != dto.MetricType_COUNTER {
				continue
			}
			for _, m := range mf.GetMetric() {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName(), l.GetValue())
				}
				if a, ok := promtest.Value(after[n], name, labels...); !ok || a < m.GetCounter().GetValue() {
					t.Errorf("%s: %s%v went from %v to %v (present: %v)", n, name, labels, m.GetCounter().GetValue(), a, ok)
				}
			}
		}
	}

	// State: the hub holds the three spokes' registrations; each spoke is
	// registered with the hub.
	hub := after[lab.Hub]
	if v := mustMetric(t, lab.Hub, hub, "dmvpn_info", "node", lab.Hub, "role", "hub", "transport", "gre"); v != 1 {
		t.Errorf("hub: dmvpn_info %v", v)
	}
	if v := mustMetric(t, lab.Hub, hub, "dmvpn_nhrp_cache_entries"); v != 3 {
		t.Errorf("hub: %v cache entries, want the 3 spokes", v)
	}
	if v := mustMetric(t, lab.Hub, hub, "dmvpn_nhrp_registrations_total", "result", "accepted"); v < 3 {
		t.Errorf("hub: %v registrations accepted, want at least 3", v)
	}
	for _, s := range []string{lab.Spoke1, lab.Spoke2} {
		if v := mustMetric(t, s, after[s], "dmvpn_nhrp_nhs_up", "nhs", "10.0.0.1"); v != 1 {
			t.Errorf("%s: dmvpn_nhrp_nhs_up %v, want 1", s, v)
		}
		if v := mustMetric(t, s, after[s], "dmvpn_nhrp_nhs_state", "nhs", "10.0.0.1", "state", "up"); v != 1 {
			t.Errorf("%s: dmvpn_nhrp_nhs_state{state=up} %v, want 1", s, v)
		}
	}

	// metrics.listen: the hub serves the same metrics over HTTP inside its
	// namespace; the counters are at least what show metrics saw.
	var body []byte
	err = e.poll(10*time.Second, 100*time.Millisecond, func() error {
		resp, err := httpInNamespace(e.l.Namespace(lab.Hub)).Get("http://" + metricsListen + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			return fmt.Errorf("GET /metrics: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("metrics.listen %s on the hub: %v", metricsListen, err)
	}
	scraped, err := promtest.Parse(body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	if v, ok := promtest.Value(scraped, "dmvpn_info", "node", lab.Hub, "role", "hub", "transport", "gre"); !ok || v != 1 {
		t.Errorf("/metrics: dmvpn_info %v %v", v, ok)
	}
	shown := mustMetric(t, lab.Hub, hub, "dmvpn_dataplane_hairpinned_packets_total")
	if v := mustMetric(t, lab.Hub, scraped, "dmvpn_dataplane_hairpinned_packets_total"); v < shown {
		t.Errorf("/metrics: hairpinned %v, below the %v show metrics saw before", v, shown)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if scraped[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if line, err := e.logHas(lab.Hub, 5*time.Second, "serving metrics", metricsListen); err != nil {
		t.Error(err)
	} else {
		t.Logf("hub: %s", line)
	}

	// spoke1 has no metrics.listen: nothing listens there.
	if resp, err := httpInNamespace(e.l.Namespace(lab.Spoke1)).Get("http://" + metricsListen + "/metrics"); err == nil {
		resp.Body.Close()
		t.Errorf("spoke1 answers on %s without metrics.listen: %s", metricsListen, resp.Status)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("spoke1 %s: %v, want connection refused", metricsListen, err)
	}
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// TestMetricsListenFailure: a metrics.listen the daemon cannot listen on
// stops `dmvpn run` at start-up, with the address and the cause, before the
// node comes up.
func TestMetricsListenFailure(t *testing.T) {
	requireDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), procBudget)
	defer cancel()
	ns := procNetns(t, 'q', true) // procNBMA is on lo
	dir := procDir(t, 'q')

	// Port 9273 on procNBMA is taken (by this test, in the namespace).
	busy := procNBMA + ":9273"
	var l net.Listener
	if err := lab.InNamespace(ns, func() error {
		var err error
		l, err = net.Listen("tcp", busy)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	for _, tt := range []struct{ listen, cause string }{
		{busy, "address already in use"},
		{"192.0.2.99:9273", "cannot assign requested address"}, // not on this host
	} {
		t.Run(tt.listen, func(t *testing.T) {
			cfg := procConfig(t, dir, filepath.Join(dir, "hub1.sock"))
			f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = fmt.Fprintf(f, "metrics:\n  listen: %s\n", tt.listen)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, ns, cfg)
			if code := d.wait(t, 20*time.Second); code == 0 {
				t.Fatalf("dmvpn run exited 0; output:\n%s", d.out)
			}
			out := d.out.String()
			t.Logf("output: %s", strings.TrimSpace(out))
			noPanic(t, "dmvpn run", out)
			for _, want := range []string{"dmvpn: metrics.listen " + tt.listen + ": ", tt.cause} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "dmvpn node up") {
				t.Errorf("the node came up without its metrics endpoint:\n%s", out)
			}
			if deviceExists(ctx, ns, "dmvpnp0") {
				t.Error("device dmvpnp0 left behind after a failed start")
			}
			for _, f := range []string{"hub1.sock", "hub1.sock.lock"} {
				if _, err := os.Lstat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s after a failed start: %v, want it removed", f, err)
				}
			}
		})
	}
}
