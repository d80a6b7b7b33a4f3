package fib

import (
	"fmt"
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

// TestDistanceOrder: for one prefix, whichever order the sources arrive in,
// the route in use is connected, then nhrp, static, kernel, bgp; removing
// the best uncovers the next.
func TestDistanceOrder(t *testing.T) {
	p := netip.MustParsePrefix("10.1.0.0/16")
	dst := netip.MustParseAddr("10.1.2.3")
	want := []Source{SourceConnected, SourceNHRP, SourceStatic, SourceKernel, SourceBGP}
	orders := [][]Source{
		{SourceBGP, SourceKernel, SourceStatic, SourceNHRP, SourceConnected},
		{SourceKernel, SourceBGP, SourceConnected, SourceStatic, SourceNHRP},
		{SourceStatic, SourceConnected, SourceBGP, SourceNHRP, SourceKernel},
	}
	for _, order := range orders {
		tb := New()
		for i, s := range order {
			// Each source has its own next hop, to tell them apart.
			tb.Add(Route{Prefix: p, NextHop: netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)}), Source: s})
		}
		for _, s := range want {
			r, ok := tb.Lookup(dst)
			if !ok || r.Source != s {
				t.Fatalf("order %v: in use %v (%v), want %v", order, r.Source, ok, s)
			}
			if !tb.Best(r) {
				t.Fatalf("Best(%v) false for the route in use", r)
			}
			if !tb.Delete(p, s) {
				t.Fatalf("delete %v", s)
			}
		}
		if _, ok := tb.Lookup(dst); ok {
			t.Fatal("a route is left after deleting every source")
		}
	}
	names := map[Source]string{SourceConnected: "connected", SourceNHRP: "nhrp", SourceStatic: "static", SourceKernel: "kernel", SourceBGP: "bgp"}
	for s, name := range names {
		if got := s.String(); got != name {
			t.Errorf("Source(%d).String() = %q, want %q", s, got, name)
		}
	}
	if SourceKernel.Distance() <= SourceStatic.Distance() || SourceKernel.Distance() >= SourceBGP.Distance() {
		t.Errorf("kernel distance %d, static %d, bgp %d", SourceKernel.Distance(), SourceStatic.Distance(), SourceBGP.Distance())
	}
}

// TestLookupExcept: the route a shortcut refines is found even when the
// shortcut hides it (same prefix), and only routes containing the address
// count.
func TestLookupExcept(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	tb := New()
	tb.Add(Route{Prefix: p("10.0.0.0/24"), Source: SourceConnected})
	tb.Add(Route{Prefix: p("10.1.0.0/16"), NextHop: a("10.0.0.1"), Source: SourceBGP})
	tb.Add(Route{Prefix: p("10.1.2.0/24"), NextHop: a("10.0.0.1"), Source: SourceKernel})
	tb.Add(Route{Prefix: p("10.1.2.0/24"), NextHop: a("10.0.0.12"), Source: SourceNHRP})
	tb.Add(Route{Prefix: p("10.1.2.128/25"), NextHop: a("10.0.0.13"), Source: SourceNHRP})

	tests := []struct {
		dst    string
		prefix string // "" for none
		src    Source
	}{
		{"10.1.2.10", "10.1.2.0/24", SourceKernel},  // hidden by the shortcut of its prefix
		{"10.1.2.200", "10.1.2.0/24", SourceKernel}, // a longer shortcut is skipped too
		{"10.1.3.1", "10.1.0.0/16", SourceBGP},
		{"10.0.0.5", "10.0.0.0/24", SourceConnected},
		{"192.0.2.1", "", 0},
	}
	for _, tc := range tests {
		r, ok := tb.LookupExcept(a(tc.dst), SourceNHRP)
		if tc.prefix == "" {
			if ok {
				t.Errorf("LookupExcept(%s) = %v, want none", tc.dst, r)
			}
			continue
		}
		if !ok || r.Prefix != p(tc.prefix) || r.Source != tc.src {
			t.Errorf("LookupExcept(%s) = %v %v, want %s from %v", tc.dst, r, ok, tc.prefix, tc.src)
		}
	}
	// The data path still sees the shortcuts.
	if r, _ := tb.Lookup(a("10.1.2.200")); r.Source != SourceNHRP || r.NextHop != a("10.0.0.13") {
		t.Fatalf("Lookup = %v", r)
	}
	// Withdrawing the kernel route leaves the BGP summary as the refined one.
	tb.Delete(p("10.1.2.0/24"), SourceKernel)
	if r, ok := tb.LookupExcept(a("10.1.2.10"), SourceNHRP); !ok || r.Prefix != p("10.1.0.0/16") {
		t.Fatalf("after delete: %v %v", r, ok)
	}
	if _, ok := tb.LookupExcept(netip.Addr{}, SourceNHRP); ok {
		t.Fatal("invalid address matched")
	}
	// IPv6 uses the same tree.
	tb.Add(Route{Prefix: p("2001:db8:1::/48"), NextHop: a("2001:db8::1"), Source: SourceStatic})
	if r, ok := tb.LookupExcept(a("2001:db8:1:2::10"), SourceNHRP); !ok || r.Source != SourceStatic {
		t.Fatalf("IPv6: %v %v", r, ok)
	}
	if n := len(tb.Routes()); n != 5 {
		t.Fatalf("%d routes, want 5: %v", n, tb.Routes())
	}
}

// BenchmarkLookupExcept: the route-watch question, at 100 and 100,000
// routes; the cost must not grow with the table.
func BenchmarkLookupExcept(b *testing.B) {
	for _, n := range []int{100, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tb := New()
			tb.Add(Route{Prefix: netip.MustParsePrefix("10.0.0.0/8"), NextHop: netip.MustParseAddr("100.64.0.1"), Source: SourceStatic})
			for i := range n {
				pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
				tb.Add(Route{Prefix: pfx, NextHop: netip.MustParseAddr("100.64.0.2"), Source: SourceNHRP})
			}
			dst := netip.AddrFrom4([4]byte{10, 0, 0, 50})
			b.ReportAllocs()
			for b.Loop() {
				if r, ok := tb.LookupExcept(dst, SourceNHRP); !ok || r.Source != SourceStatic {
					b.Fatal("wrong route")
				}
			}
		})
	}
}
