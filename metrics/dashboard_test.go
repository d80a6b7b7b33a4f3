package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

const dashboardFile = "../docs/grafana-dashboard.json"

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
		RefID        string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

var (
	// metricRe finds the metric names in a PromQL expression: ours, the
	// Go runtime's and the process collector's.
	metricRe = regexp.MustCompile(`\b(?:dmvpn|go|process)_[a-zA-Z0-9_]+`)
	legendRe = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// exported returns the families a node's registry serves (with every
// optional series present) and their label names.
func exported(t *testing.T) map[string]map[string]bool {
	t.Helper()
	c := New(testSnapshot)
	c.ObserveResolution(time.Millisecond)
	mfs, err := NewRegistry(c).Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
	add := func(name string, m []*dto.Metric) {
		labels := map[string]bool{}
		for _, x := range m {
			for _, l := range x.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		out[name] = labels
	}
	for _, mf := range mfs {
		add(mf.GetName(), mf.GetMetric())
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				add(mf.GetName()+s, mf.GetMetric())
			}
			out[mf.GetName()+"_bucket"]["le"] = true
		}
	}
	return out
}

// The Grafana dashboard is valid JSON, well formed as a dashboard, and
// every metric it queries is one the collector exports, with the labels
// its legends name.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q uid %q", d.Title, d.UID)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] || !vars["instance"] {
		t.Errorf("templating variables %v, want datasource and instance", vars)
	}

	have := exported(t)
	used := map[string]bool{}
	check := func(where, expr, legend string) {
		names := metricRe.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q queries no dmvpn, go or process metric", where, expr)
		}
		labels := map[string]bool{"instance": true, "job": true} // added by Prometheus
		for _, n := range names {
			ls, ok := have[n]
			if !ok {
				t.Errorf("%s: %q uses %s, which the collector does not export", where, expr, n)
				continue
			}
			used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] = true
			for l := range ls {
				labels[l] = true
			}
		}
		for _, m := range legendRe.FindAllStringSubmatch(legend, -1) {
			if !labels[m[1]] {
				t.Errorf("%s: legend %q names label %s, which %v do not have", where, legend, m[1], names)
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if err := json.Unmarshal(v.Query, &s); err != nil {
				t.Fatalf("variable %s: query %s", v.Name, v.Query)
			}
			q.Query = s
		}
		check("variable "+v.Name, q.Query, "")
	}

	ids := map[int]string{}
	var walk func(ps []panel)
	targets := 0
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no queries", p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				targets++
				if refs[tg.RefID] || tg.RefID == "" {
					t.Errorf("panel %q: refId %q", p.Title, tg.RefID)
				}
				refs[tg.RefID] = true
				if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
					t.Errorf("panel %q: %q does not filter on $instance", p.Title, tg.Expr)
				}
				check("panel "+p.Title, tg.Expr, tg.LegendFormat)
			}
		}
	}
	walk(d.Panels)
	if targets < 20 {
		t.Errorf("%d queries; the dashboard is incomplete", targets)
	}
	// The dashboard shows every dmvpn metric.
	var unused []string
	for n := range wantFamilies {
		if !used[n] {
			unused = append(unused, n)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("the dashboard does not show %v", unused)
	}
}
