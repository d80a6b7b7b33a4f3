package engine

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

// shortcutUnderSummary is phase 3 with spoke1 holding the shortcut
// 10.1.2.0/24 via spoke2 (10.0.0.12), which refines spoke1's static
// summary 10.1.0.0/16 via the hub; spoke1's events from then on are in
// *evs.
func shortcutUnderSummary(t *testing.T) (w *wire, s1, s2 *node, evs *[]events.Event) {
	t.Helper()
	w, hub, s1, s2 := phase3(t)
	pkt := make([]byte, 28)
	pkt[0] = 0x45
	copy(pkt[12:], ad("10.1.1.10").AsSlice())
	copy(pkt[16:], ad("10.1.2.10").AsSlice())
	hub.eng.Redirect(t0, s1.nbma, nbma.TransportUDP, pkt)
	w.pump(t0)
	if r, ok := s1.eng.cfg.Routes.Lookup(ad("10.1.2.10")); !ok || r.Source != fib.SourceNHRP || r.Prefix != pfx("10.1.2.0/24") {
		t.Fatalf("no shortcut to start with: %+v %v", r, ok)
	}
	evs = new([]events.Event)
	s1.eng.mu.Lock()
	s1.eng.cfg.OnEvent = func(ev events.Event) { *evs = append(*evs, ev) }
	s1.eng.mu.Unlock()
	checkWatchIndex(t, s1.eng)
	return w, s1, s2, evs
}

// checkWatchIndex: the prefix index holds exactly the shortcut routes of
// the FIB, each with its owner.
func checkWatchIndex(t *testing.T, e *Engine) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, r := range e.cfg.Routes.Routes() {
		if r.Source != fib.SourceNHRP {
			continue
		}
		n++
		ref, ok := e.watch.t.Get(r.Prefix)
		if !ok || ref.owner != r.NextHop || !r.Prefix.Contains(ref.target) {
			t.Fatalf("shortcut %v via %v indexed as %+v (%v)", r.Prefix, r.NextHop, ref, ok)
		}
	}
	if e.watch.t.Size() != n {
		t.Fatalf("index holds %d shortcuts, the FIB %d", e.watch.t.Size(), n)
	}
}

func shortcutOf(e *Engine, dst string) (fib.Route, bool) {
	r, ok := e.cfg.Routes.Lookup(ad(dst))
	return r, ok && r.Source == fib.SourceNHRP
}

func TestRouteWatchSummaryWithdrawn(t *testing.T) {
	w, s1, s2, evs := shortcutUnderSummary(t)
	now := t0.Add(time.Second)
	rt := s1.eng.cfg.Routes

	// Unrelated changes, beside the shortcut or inside it but not where
	// its destination is, leave it alone.
	rt.Add(fib.Route{Prefix: pfx("10.9.0.0/16"), NextHop: ad("10.0.0.1"), Source: fib.SourceStatic})
	rt.Add(fib.Route{Prefix: pfx("10.1.3.0/24"), NextHop: ad("10.0.0.1"), Source: fib.SourceKernel})
	rt.Add(fib.Route{Prefix: pfx("10.1.2.128/25"), NextHop: ad("10.0.0.1"), Source: fib.SourceKernel})
	s1.eng.RoutesChanged(now, []netip.Prefix{pfx("10.9.0.0/16"), pfx("10.1.3.0/24"), pfx("10.1.2.128/25"), {}})
	if _, ok := shortcutOf(s1.eng, "10.1.2.10"); !ok || len(*evs) != 0 {
		t.Fatalf("an unrelated change touched the shortcut (events %+v)", *evs)
	}
	if _, ok := s1.cache.Get(ad("10.0.0.12")); !ok {
		t.Fatal("an unrelated change dropped the mapping")
	}

	// The summary is withdrawn: nothing sends 10.1.2.0/24 into the tunnel
	// any more, and the shortcut goes with it.
	rt.Delete(pfx("10.1.0.0/16"), fib.SourceStatic)
	s1.eng.RoutesChanged(now, []netip.Prefix{pfx("10.1.0.0/16")})
	if r, ok := rt.Lookup(ad("10.1.2.10")); ok {
		t.Fatalf("10.1.2.10 still routed into the tunnel: %+v", r)
	}
	// What the routes still send into the tunnel goes their way (the hub).
	if r, ok := rt.Lookup(ad("10.1.2.200")); !ok || r.Source != fib.SourceKernel || r.NextHop != ad("10.0.0.1") {
		t.Fatalf("10.1.2.200: %+v %v, want the kernel route via the hub", r, ok)
	}
	if _, ok := s1.cache.Get(ad("10.0.0.12")); ok {
		t.Fatal("the mapping of the shortcut's owner survived")
	}
	if len(*evs) != 1 {
		t.Fatalf("events %+v, want one shortcut-down", *evs)
	}
	ev := (*evs)[0]
	if ev.Type != events.ShortcutDown || ev.Peer != "10.0.0.12" || ev.Prefix != "10.1.2.0/24" ||
		!strings.HasPrefix(ev.Reason, "route-watch: no route covers 10.1.2.0/24") || ev.NBMA != s2.nbma.String() {
		t.Fatalf("event %+v", ev)
	}
	checkWatchIndex(t, s1.eng)

	// A redirect for the destination no longer starts a resolution:
	// nothing routes it into the tunnel.
	before := w.sent(nhrp.TypeResolutionRequest)
	s1.eng.Resolve(now, ad("10.1.2.10"))
	w.pump(now)
	if got := w.sent(nhrp.TypeResolutionRequest); got != before {
		t.Fatalf("%d resolution requests sent for an unrouted destination", got-before)
	}
}

func TestRouteWatchSummaryReplaced(t *testing.T) {
	_, s1, _, evs := shortcutUnderSummary(t)
	now := t0.Add(time.Second)
	rt := s1.eng.cfg.Routes
	stays := func(what string) {
		t.Helper()
		if _, ok := shortcutOf(s1.eng, "10.1.2.10"); !ok || len(*evs) != 0 {
			t.Fatalf("%s: the shortcut went (events %+v)", what, *evs)
		}
		checkWatchIndex(t, s1.eng)
	}

	// Another daemon's route takes the summary's place.
	rt.Add(fib.Route{Prefix: pfx("10.1.0.0/16"), NextHop: ad("10.0.0.1"), Source: fib.SourceKernel})
	rt.Delete(pfx("10.1.0.0/16"), fib.SourceStatic)
	s1.eng.RoutesChanged(now, []netip.Prefix{pfx("10.1.0.0/16")})
	stays("summary replaced by a kernel route")

	// A narrower covering route (BGP /20), then the /16 goes: the /20
	// still covers the shortcut.
	rt.Add(fib.Route{Prefix: pfx("10.1.0.0/20"), NextHop: ad("10.0.0.1"), Source: fib.SourceBGP})
	s1.eng.RoutesChanged(now, []netip.Prefix{pfx("10.1.0.0/20")})
	rt.Delete(pfx("10.1.0.0/16"), fib.SourceKernel)
	s1.eng.RoutesChanged(now, []netip.Prefix{pfx("10.1.0.0/16")})
	stays("summary narrowed to a /20")

	// A static route of exactly the shortcut's prefix: the shortcut
	// overrides it (next-hop override), and refines it.
	rt.Add(fib.Route{Prefix: pfx("10.1.2.0/24"), NextHop: ad("10.0.0.1"), Source: fib.SourceStatic})
	s1.eng.RoutesChanged(now, []netip.Prefix{pfx("10.1.2.0/24")})
	stays("a static route of the same prefix")
	rt.Delete(pfx("10.1.2.0/24"), fib.SourceStatic)
	s1.eng.RoutesChanged(now, []netip.Prefix{pfx("10.1.2.0/24")})
	stays("the static route of the same prefix gone")

	// The route for the shortcut's destination becomes narrower than the
	// shortcut: it would carry more than the routes send that way.
	rt.Add(fib.Route{Prefix: pfx("10.1.2.0/25"), NextHop: ad("10.0.0.1"), Source: fib.SourceKernel})
	s1.eng.RoutesChanged(now, []netip.Prefix{pfx("10.1.2.0/25")})
	if _, ok := shortcutOf(s1.eng, "10.1.2.200"); ok {
		t.Fatal("a shortcut wider than the route it refines stayed")
	}
	if r, ok := rt.Lookup(ad("10.1.2.10")); !ok || r.Prefix != pfx("10.1.2.0/25") || r.NextHop != ad("10.0.0.1") {
		t.Fatalf("10.1.2.10: %+v %v, want the /25 via the hub", r, ok)
	}
	if len(*evs) != 1 || !strings.HasPrefix((*evs)[0].Reason, "route-watch: 10.1.2.0/24 is wider than the route it refines, 10.1.2.0/25") {
		t.Fatalf("events %+v", *evs)
	}
	checkWatchIndex(t, s1.eng)
}

// TestRouteWatchOneOfSeveral: an owner with two shortcut routes loses only
// the one whose summary went; its mapping and other route stay.
func TestRouteWatchOneOfSeveral(t *testing.T) {
	_, s1, s2, evs := shortcutUnderSummary(t)
	now := t0.Add(time.Second)
	rt := s1.eng.cfg.Routes
	rt.Add(fib.Route{Prefix: pfx("10.2.0.0/16"), NextHop: ad("10.0.0.1"), Source: fib.SourceBGP})
	s1.eng.mu.Lock()
	s1.eng.installPeer(now, ad("10.0.0.12"), s2.nbma, nbma.TransportUDP, s2.nbma.Addr(), false, true, time.Minute, ad("10.2.0.10"))
	s1.eng.addShortcutRoute(pfx("10.2.0.0/24"), ad("10.0.0.12"))
	s1.eng.mu.Unlock()
	checkWatchIndex(t, s1.eng)

	// A change covering both (a default route appears) checks both and
	// keeps both.
	rt.Add(fib.Route{Prefix: pfx("0.0.0.0/0"), NextHop: ad("10.0.0.1"), Source: fib.SourceKernel})
	s1.eng.RoutesChanged(now, []netip.Prefix{pfx("0.0.0.0/0")})
	rt.Delete(pfx("0.0.0.0/0"), fib.SourceKernel)
	s1.eng.RoutesChanged(now, []netip.Prefix{pfx("0.0.0.0/0")})
	if len(*evs) != 0 {
		t.Fatalf("events %+v", *evs)
	}

	rt.Delete(pfx("10.2.0.0/16"), fib.SourceBGP)
	s1.eng.RoutesChanged(now, []netip.Prefix{pfx("10.2.0.0/16")})
	if _, ok := shortcutOf(s1.eng, "10.2.0.10"); ok {
		t.Fatal("the shortcut under the withdrawn summary stayed")
	}
	if _, ok := shortcutOf(s1.eng, "10.1.2.10"); !ok {
		t.Fatal("the owner's other shortcut went")
	}
	if c, ok := s1.cache.Get(ad("10.0.0.12")); !ok || c.Type != cache.Resolved {
		t.Fatal("the owner's mapping went with one of its routes")
	}
	if len(*evs) != 1 || (*evs)[0].Type != events.ShortcutDown || (*evs)[0].Prefix != "10.2.0.0/24" {
		t.Fatalf("events %+v", *evs)
	}
	checkWatchIndex(t, s1.eng)

	// The index follows the other ways shortcuts go (here: cleared).
	s1.eng.ClearShortcuts()
	checkWatchIndex(t, s1.eng)
	if s1.eng.watch.t.Size() != 0 {
		t.Fatal("cleared shortcuts left in the index")
	}
}

// BenchmarkRouteWatch: one changed route (the prefix of one shortcut, whose
// summary stays) on a spoke holding n shortcuts; the cost must not depend
// on n.
func BenchmarkRouteWatch(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			rt := fib.New()
			rt.Add(fib.Route{Prefix: pfx("100.64.0.0/16"), Source: fib.SourceConnected})
			rt.Add(fib.Route{Prefix: pfx("10.0.0.0/8"), NextHop: ad("100.64.0.1"), Source: fib.SourceStatic})
			c := cache.NewWithLimits(cache.Limits{MaxEntries: n + 16, MaxPerNBMA: n + 16})
			e, err := New(Config{Address: pfx("100.64.0.11/16"), NBMA: ad("198.51.100.1"), MTU: 1400, Holdtime: 600 * time.Second,
				Shortcut: true, Routes: rt, Seed: [32]byte{7},
				NHS: []NHS{{Protocol: ad("100.64.0.1"), NBMA: ap("192.0.2.1:0"), Transport: nbma.TransportGRE}}},
				c, &nopSender{}, quiet())
			if err != nil {
				b.Fatal(err)
			}
			prefixes := make([]netip.Prefix, n)
			e.mu.Lock()
			for i := range n {
				owner := netip.AddrFrom4([4]byte{100, 64, byte(1 + i/maxShortcutsPerOwner), byte(2 + i%maxShortcutsPerOwner)})
				prefixes[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
				target := prefixes[i].Addr().Next()
				ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, byte(1 + i/maxShortcutsPerOwner), byte(2 + i%maxShortcutsPerOwner)}), 0)
				if !e.installPeer(t0, owner, ep, nbma.TransportGRE, ep.Addr(), false, true, 600*time.Second, target) ||
					!e.addShortcutRoute(prefixes[i], owner) {
					b.Fatalf("shortcut %d not installed", i)
				}
			}
			e.mu.Unlock()
			if e.watch.t.Size() != n {
				b.Fatalf("%d shortcuts indexed", e.watch.t.Size())
			}
			changed := make([]netip.Prefix, 1)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				changed[0] = prefixes[i%n]
				e.RoutesChanged(t0, changed)
			}
			b.StopTimer()
			if e.watch.t.Size() != n {
				b.Fatalf("%d shortcuts left, want %d: the summary stayed", e.watch.t.Size(), n)
			}
		})
	}
}
