package node

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/fib"
)

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse("reload.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReloadChangesExactlyWhatChanged: a reload that removes an NHS and
// adds a route changes that and nothing else (the other NHS's registration
// does not flap, the hub keeps the binding); one that touches the tunnel is
// refused and changes nothing.
func TestReloadChangesExactlyWhatChanged(t *testing.T) {
	tn := newTestNet(t)
	hub := tn.start(hubYAML, "10.1.0.0/24")
	two := strings.Replace(spokeYAML(1, "198.51.100.1", "gre", 42, "lab"),
		"    - {address: 10.0.0.1, nbma: 192.0.2.1}\n",
		"    - {address: 10.0.0.1, nbma: 192.0.2.1}\n    - {address: 10.0.0.2, nbma: 192.0.2.99}\n", 1)
	sp := tn.start(two, "10.1.1.0/24")
	eventually(t, "registered with the hub", func() bool {
		st := sp.n.Engine().NHSStatus()
		return len(st) == 2 && st[0].State == "up"
	})
	before := sp.n.Engine().NHSStatus()[0]
	binding, _ := hub.n.Cache().Get(netip.MustParseAddr("10.0.0.11"))

	one := strings.Replace(spokeYAML(1, "198.51.100.1", "gre", 42, "lab"),
		"routes:\n", "routes:\n  - {prefix: 172.16.9.0/24, via: 10.0.0.1}\n", 1)
	changed, err := sp.n.Apply(mustParse(t, one))
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 2 || !strings.Contains(changed[0], "removed 10.0.0.2") || !strings.Contains(changed[1], "172.16.9.0/24 via 10.0.0.1") {
		t.Fatalf("changes %q", changed)
	}
	st := sp.n.Engine().NHSStatus()
	if len(st) != 1 || st[0].Protocol != before.Protocol || st[0].State != "up" || !st[0].Since.Equal(before.Since) {
		t.Fatalf("NHS status after the reload %+v, before %+v", st, before)
	}
	if b, ok := hub.n.Cache().Get(netip.MustParseAddr("10.0.0.11")); !ok || !b.Created.Equal(binding.Created) {
		t.Fatalf("the hub's binding changed: %+v", b)
	}
	if r, ok := sp.n.FIB().Lookup(netip.MustParseAddr("172.16.9.1")); !ok || r.Source != fib.SourceStatic || r.NextHop != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("new route %+v %v", r, ok)
	}
	if _, ok := sp.n.Cache().Get(netip.MustParseAddr("10.0.0.2")); ok {
		t.Fatal("the removed NHS is still in the cache")
	}
	// The same again: nothing to do.
	if changed, err := sp.n.Apply(mustParse(t, one)); err != nil || len(changed) != 0 {
		t.Fatalf("second reload: %q %v", changed, err)
	}

	// The tunnel cannot change live: refused, nothing applied.
	moved := strings.Replace(one, "address: 10.0.0.11/24", "address: 10.0.0.21/24", 1)
	moved = strings.Replace(moved, "172.16.9.0/24", "172.16.10.0/24", 1)
	_, err = sp.n.Apply(mustParse(t, moved))
	if !errors.Is(err, ErrNotLive) || !strings.Contains(err.Error(), "tunnel.address (10.0.0.11/24 → 10.0.0.21/24)") {
		t.Fatalf("refusal: %v", err)
	}
	if _, ok := sp.n.FIB().Lookup(netip.MustParseAddr("172.16.10.1")); ok {
		t.Fatal("a refused reload applied a route")
	}
	if _, ok := sp.n.FIB().Lookup(netip.MustParseAddr("172.16.9.1")); !ok {
		t.Fatal("a refused reload removed a route")
	}
	// A hub does not become a spoke.
	if _, err := hub.n.Apply(mustParse(t, strings.Replace(hubYAML, "  authentication: lab\n",
		"  authentication: lab\n  nhs:\n    - {address: 10.0.0.2, nbma: 192.0.2.2}\n", 1))); !errors.Is(err, ErrNotLive) {
		t.Fatalf("hub to spoke: %v", err)
	}
}
