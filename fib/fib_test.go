package fib

import (
	"net/netip"
	"testing"
)

func TestLongestMatchAndSources(t *testing.T) {
	tb := New()
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	tb.Add(Route{Prefix: p("10.0.0.0/24"), Source: SourceConnected})
	tb.Add(Route{Prefix: p("10.1.0.0/16"), NextHop: a("10.0.0.1"), Source: SourceStatic})
	tb.Add(Route{Prefix: p("10.1.2.0/24"), NextHop: a("10.0.0.12"), Source: SourceNHRP})

	tests := []struct {
		dst, nh string
		ok      bool
	}{
		{"10.0.0.12", "10.0.0.12", true}, // connected: the destination is the next hop
		{"10.1.1.10", "10.0.0.1", true},  // summary via the hub
		{"10.1.2.10", "10.0.0.12", true}, // shortcut beats the summary
		{"192.0.2.1", "", false},
	}
	for _, tc := range tests {
		r, ok := tb.Lookup(a(tc.dst))
		if ok != tc.ok {
			t.Fatalf("%s: ok=%v", tc.dst, ok)
		}
		if ok && r.NextHopFor(a(tc.dst)) != a(tc.nh) {
			t.Errorf("%s: next hop %s, want %s", tc.dst, r.NextHopFor(a(tc.dst)), tc.nh)
		}
	}

	// An NHRP shortcut for the same prefix as a static route overrides it
	// (next-hop override); deleting the shortcut uncovers the static one.
	tb.Add(Route{Prefix: p("10.1.2.0/24"), NextHop: a("10.0.0.1"), Source: SourceStatic})
	if r, _ := tb.Lookup(a("10.1.2.10")); r.Source != SourceNHRP {
		t.Fatalf("the shortcut should win, got %v", r)
	}
	if !tb.Delete(p("10.1.2.0/24"), SourceStatic) {
		t.Fatal("delete static")
	}
	if r, _ := tb.Lookup(a("10.1.2.10")); r.Source != SourceNHRP {
		t.Fatalf("nhrp route should stay, got %v", r)
	}
	if _, ok := tb.Get(p("10.1.2.0/24"), SourceNHRP); !ok {
		t.Fatal("Get nhrp")
	}
	if rs := tb.Covering(a("10.1.2.10")); len(rs) < 2 || rs[0].Prefix != p("10.1.2.0/24") {
		t.Fatalf("covering %v", rs)
	}
	tb.Delete(p("10.1.2.0/24"), SourceNHRP)
	if r, _ := tb.Lookup(a("10.1.2.10")); r.NextHop != a("10.0.0.1") {
		t.Fatalf("fallback to summary, got %v", r)
	}
	if n := len(tb.Routes()); n != 2 {
		t.Fatalf("%d routes left", n)
	}
}

func BenchmarkLookup(b *testing.B) {
	tb := New()
	tb.Add(Route{Prefix: netip.MustParsePrefix("10.0.0.0/24"), Source: SourceConnected})
	tb.Add(Route{Prefix: netip.MustParsePrefix("10.1.0.0/16"), NextHop: netip.MustParseAddr("10.0.0.1"), Source: SourceStatic})
	dst := netip.MustParseAddr("10.1.2.3")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tb.Lookup(dst); !ok {
			b.Fatal("miss")
		}
	}
}
