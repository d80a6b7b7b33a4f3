package api

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dmvpn/dmvpn/internal/promtest"
)

// metricsProvider is fakeProvider with a Prometheus registry.
type metricsProvider struct {
	fakeProvider
	reg *prometheus.Registry
}

func (m *metricsProvider) Metrics() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// serve runs ServeListener for p on a fresh socket until t ends.
func serve(t *testing.T, p Provider) *Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, l, p) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	return NewClient(sock)
}

// GET /v1/metrics round trip: the client gets the provider's text
// exposition, which parses back to what the registry holds.
func TestMetricsRoundTrip(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dmvpn_test_packets_total", Help: "Test."}, []string{"reason"})
	reg.MustRegister(c)
	c.WithLabelValues("loop").Add(7)
	c.WithLabelValues("no_peer").Add(3)
	client := serve(t, &metricsProvider{reg: reg})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := client.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := promtest.Parse(raw)
	if err != nil {
		t.Fatalf("%v:\n%s", err, raw)
	}
	mf := mfs["dmvpn_test_packets_total"]
	if mf == nil || len(mf.GetMetric()) != 2 {
		t.Fatalf("families %v:\n%s", mfs, raw)
	}
	got := map[string]float64{}
	for _, m := range mf.GetMetric() {
		got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if got["loop"] != 7 || got["no_peer"] != 3 {
		t.Fatalf("values %v", got)
	}
	// The JSON views still work beside it.
	var st Stats
	if _, err := client.Get(ctx, "stats", &st); err != nil || st.DataPlane["hairpinned"] != 7 {
		t.Fatalf("stats %+v %v", st, err)
	}
}

// A provider without metrics answers 404, which the client reports.
func TestMetricsNotProvided(t *testing.T) {
	client := serve(t, &fakeProvider{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Metrics(ctx); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("metrics from a provider without them: %v", err)
	}
}
