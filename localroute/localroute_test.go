package localroute

import (
	"net/netip"
	"testing"
)

func TestLocalLongestMatch(t *testing.T) {
	p := netip.MustParsePrefix
	var m Mirror
	if _, ok := m.Local(netip.MustParseAddr("10.1.1.10")); ok {
		t.Fatal("empty mirror says local")
	}
	m.Replace([]Route{
		{Prefix: p("0.0.0.0/0")},                    // default via the WAN: local
		{Prefix: p("10.0.0.0/24"), ViaTunnel: true}, // tunnel subnet
		{Prefix: p("10.1.0.0/16"), ViaTunnel: true}, // summary via the hub
		{Prefix: p("10.1.2.0/24")},                  // our own LAN
	})
	for dst, want := range map[string]string{
		"10.1.2.10": "10.1.2.0/24", "8.8.8.8": "0.0.0.0/0", "10.1.1.10": "", "10.0.0.12": "",
	} {
		got, ok := m.Local(netip.MustParseAddr(dst))
		if (want == "") == ok || (ok && got != p(want)) {
			t.Errorf("Local(%s) = %v %v, want %q", dst, got, ok, want)
		}
	}
	s := NewStatic(p("10.1.1.0/24"))
	if _, ok := s.Local(netip.MustParseAddr("10.1.1.7")); !ok {
		t.Fatal("static")
	}
}
