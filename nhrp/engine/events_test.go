package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
)

// recorder collects a node's events (OnEvent runs under the engine's
// lock, on the test's goroutine: no locking needed).
type recorder struct{ evs []events.Event }

func (r *recorder) on(ev events.Event) { r.evs = append(r.evs, ev) }

// brief is "type peer [nbma] [prefix]" per event, for comparing sequences.
func (r *recorder) brief() []string {
	var v []string
	for _, e := range r.evs {
		s := string(e.Type) + " " + e.Peer
		if e.NBMA != "" {
			s += " @" + e.NBMA
		}
		if e.Prefix != "" {
			s += " " + e.Prefix
		}
		v = append(v, s)
	}
	return v
}

// shortcuts keeps only the shortcut events.
func (r *recorder) shortcuts() {
	var v []events.Event
	for _, e := range r.evs {
		if strings.HasPrefix(string(e.Type), "shortcut-") {
			v = append(v, e)
		}
	}
	r.evs = v
}

func (r *recorder) take() []string {
	v := r.brief()
	r.evs = nil
	return v
}

func listen(n *node) *recorder {
	r := &recorder{}
	n.eng.mu.Lock()
	n.eng.cfg.OnEvent = r.on
	n.eng.mu.Unlock()
	return r
}

func wantEvents(t *testing.T, who string, got []string, want ...string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s's events:\n  %s\nwant\n  %s", who, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// Registration: nhs-up at the spoke and registration-accepted at the hub
// once, not on every refresh; an unrefreshed registration ends in nhs-down
// at the spoke and registration-expired at the hub.
func TestEventsRegistrationUpRefreshExpiry(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	sp := w.add(ap("198.51.100.1:4754"), spokeConfig("10.0.0.11/24"))
	hr, sr := listen(hub), listen(sp)
	hub.eng.Start(t0)
	sp.eng.Start(t0)
	w.pump(t0)
	wantEvents(t, "spoke", sr.take(), "nhs-up 10.0.0.1 @192.0.2.1:4754")
	wantEvents(t, "hub", hr.take(), "registration-accepted 10.0.0.11 @198.51.100.1:4754")

	now := t0
	for i := 0; i < 5; i++ { // refreshes every 20 s
		now = sp.eng.NextDeadline()
		sp.eng.Tick(now)
		w.pump(now)
		hub.eng.Tick(now)
	}
	if got := w.sent(nhrp.TypeRegistrationRequest); got < 5 {
		t.Fatalf("only %d registrations", got)
	}
	wantEvents(t, "spoke after refreshes", sr.take())
	wantEvents(t, "hub after refreshes", hr.take())

	// The hub goes silent: the spoke's registration runs out, and so does
	// the hub's binding.
	w.drop = func(frame) bool { return true }
	end := now.Add(61 * time.Second)
	for now.Before(end) {
		now = now.Add(time.Second)
		sp.eng.Tick(now)
		hub.eng.Tick(now)
		w.pump(now)
	}
	wantEvents(t, "spoke after silence", sr.brief(), "nhs-down 10.0.0.1 @192.0.2.1:4754")
	if len(sr.evs) == 1 && !strings.Contains(sr.evs[0].Reason, "expired") {
		t.Errorf("nhs-down reason %q", sr.evs[0].Reason)
	}
	wantEvents(t, "hub after silence", hr.brief(), "registration-expired 10.0.0.11 @198.51.100.1:4754")
	for _, e := range append(sr.evs, hr.evs...) {
		if e.Time.IsZero() || e.Time.Before(t0) {
			t.Errorf("event %+v: time not the engine's now", e)
		}
	}
}

// Refusals carry their codes: a unique address held elsewhere (CIE code
// 14) at both ends; an Error Indication (authentication, code 11) at the
// spoke. A registrant that shuts down is removed after its probe fails,
// and the refused spoke then gets in.
func TestEventsRefusedErrorAndRemoved(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	a := w.add(ap("198.51.100.1:4754"), spokeConfig("10.0.0.11/24"))
	b := w.add(ap("198.51.100.65:4754"), spokeConfig("10.0.0.11/24"))
	bad := spokeConfig("10.0.0.13/24")
	bad.Authentication = []byte("wrong")
	c := w.add(ap("198.51.100.129:4754"), bad)
	hr, ar, br, cr := listen(hub), listen(a), listen(b), listen(c)
	hub.eng.Start(t0)
	a.eng.Start(t0)
	w.pump(t0)
	b.eng.Start(t0)
	c.eng.Start(t0)
	w.pump(t0)
	wantEvents(t, "a", ar.take(), "nhs-up 10.0.0.1 @192.0.2.1:4754")
	wantEvents(t, "b", br.brief(), "nhs-refused 10.0.0.1 @192.0.2.1:4754")
	if len(br.evs) == 1 && (br.evs[0].Code != 14 || !strings.Contains(br.evs[0].Reason, "already registered")) {
		t.Errorf("b's refusal: %+v", br.evs[0])
	}
	br.evs = nil
	wantEvents(t, "c", cr.brief(), "nhs-error 10.0.0.1 @192.0.2.1:4754")
	if len(cr.evs) == 1 && cr.evs[0].Code != 11 {
		t.Errorf("c's error: %+v", cr.evs[0])
	}
	wantEvents(t, "hub", hr.brief(), "registration-accepted 10.0.0.11 @198.51.100.1:4754", "registration-refused 10.0.0.11 @198.51.100.65:4754")
	if len(hr.evs) == 2 && hr.evs[1].Code != 14 {
		t.Errorf("hub's refusal: %+v", hr.evs[1])
	}
	hr.evs = nil

	// a leaves: its purge is checked by a probe, then the binding goes.
	now := t0.Add(time.Second)
	a.eng.Shutdown(now)
	delete(w.nodes, a.nbma.Addr())
	w.pump(now)
	wantEvents(t, "a at shutdown", ar.take(), "purge-sent 10.0.0.11 @192.0.2.1:4754", "nhs-down 10.0.0.1 @192.0.2.1:4754")
	wantEvents(t, "hub on a's purge", hr.take(), "purge-received 10.0.0.11 @198.51.100.1:4754")
	for i := 0; i < 3; i++ {
		now = now.Add(time.Second)
		hub.eng.Tick(now)
		w.pump(now)
	}
	wantEvents(t, "hub after the probes", hr.brief(), "registration-removed 10.0.0.11 @198.51.100.1:4754")
	if len(hr.evs) == 1 && !strings.Contains(hr.evs[0].Reason, "purged") {
		t.Errorf("removal reason %q", hr.evs[0].Reason)
	}
	hr.evs = nil
	// b's next attempt gets in.
	for i := 0; i < 20 && b.eng.NHSStatus()[0].State != StateUp; i++ {
		now = b.eng.NextDeadline()
		b.eng.Tick(now)
		w.pump(now)
	}
	wantEvents(t, "b", br.take(), "nhs-up 10.0.0.1 @192.0.2.1:4754")
	wantEvents(t, "hub", hr.take(), "registration-accepted 10.0.0.11 @198.51.100.65:4754")
}

// Shortcuts: one shortcut-up when a resolution is installed, none when a
// shortcut in use is refreshed, none at the owner (which only learns the
// requester); the owner's shutdown purges it (shortcut-down, with the
// route), and the hub removes the owner's registration and tells the
// requester too.
func TestEventsShortcutUpRefreshPurge(t *testing.T) {
	w, hub, s1, s2 := phase3(t)
	hr, r1, r2 := listen(hub), listen(s1), listen(s2)
	redirect(t, w, s1)
	wantEvents(t, "spoke1", r1.brief(), "shortcut-up 10.0.0.12 @198.51.100.65:4754 10.1.2.0/24")
	if len(r1.evs) == 1 && r1.evs[0].Reason != "resolved 10.1.2.10" {
		t.Errorf("shortcut-up reason %q", r1.evs[0].Reason)
	}
	r1.evs = nil
	wantEvents(t, "spoke2 (owner)", r2.take())

	// In use: refreshed a third of its holding time before it expires.
	e, _ := s1.cache.Get(ad("10.0.0.12"))
	e.Used.Store(true)
	now := e.Expires.Add(-e.HoldingTime / 3)
	for _, n := range []*node{hub, s1, s2} {
		n.eng.Tick(now)
	}
	w.pump(now)
	if re, _ := s1.cache.Get(ad("10.0.0.12")); !re.Expires.After(e.Expires) || w.sent(nhrp.TypeResolutionRequest) < 2 {
		t.Fatalf("not refreshed: expires %v (was %v)", re.Expires, e.Expires)
	}
	wantEvents(t, "spoke1 after the refresh", r1.take())

	now = now.Add(time.Second)
	s2.eng.Shutdown(now)
	delete(w.nodes, s2.nbma.Addr())
	w.pump(now)
	wantEvents(t, "spoke2 at shutdown", r2.take(),
		"purge-sent 10.0.0.12 @198.51.100.1:4754", "purge-sent 10.0.0.12 @192.0.2.1:4754", "nhs-down 10.0.0.1 @192.0.2.1:4754")
	wantEvents(t, "spoke1 on spoke2's purge", r1.brief(),
		"purge-received 10.0.0.12 @198.51.100.65:4754", "shortcut-down 10.0.0.12 @198.51.100.65:4754 10.1.2.0/24")
	if len(r1.evs) == 2 && r1.evs[1].Reason != "purged by 198.51.100.65:4754" {
		t.Errorf("shortcut-down reason %q", r1.evs[1].Reason)
	}
	r1.evs = nil
	for i := 0; i < 3; i++ {
		now = now.Add(time.Second)
		hub.eng.Tick(now)
		w.pump(now)
	}
	wantEvents(t, "hub", hr.take(), "purge-received 10.0.0.12 @198.51.100.65:4754",
		"registration-removed 10.0.0.12 @198.51.100.65:4754", "purge-sent 10.0.0.12 @198.51.100.1:4754")
	// The hub's purge finds nothing left at spoke1: no second shortcut-down.
	wantEvents(t, "spoke1 on the hub's purge", r1.take(), "purge-received 10.0.0.12 @192.0.2.1:4754")
}

// An idle shortcut expires (shortcut-down "expired"); a used one whose
// direct path never carries anything is dropped as dead; clear nhrp
// reports what it removes.
func TestEventsShortcutExpiredDeadCleared(t *testing.T) {
	w, _, s1, s2 := phase3(t)
	r1 := listen(s1)
	redirect(t, w, s1)
	e, _ := s1.cache.Get(ad("10.0.0.12"))
	w.drop = func(frame) bool { return true }
	s1.eng.Tick(e.Expires) // the unrefreshed registration expires too
	r1.shortcuts()
	wantEvents(t, "spoke1", r1.brief(), "shortcut-up 10.0.0.12 @198.51.100.65:4754 10.1.2.0/24", "shortcut-down 10.0.0.12 @198.51.100.65:4754 10.1.2.0/24")
	if len(r1.evs) == 2 && (r1.evs[1].Reason != "expired" || r1.evs[1].Time != e.Expires) {
		t.Errorf("expired shortcut: %+v", r1.evs[1])
	}
	r1.evs = nil

	// Dead path: installed as not direct, used, never heard from.
	now := e.Expires.Add(time.Second)
	s1.eng.mu.Lock()
	s1.eng.installPeer(now, ad("10.0.0.12"), s2.nbma, nbma.TransportUDP, s2.nbma.Addr(), false, false, time.Minute, ad("10.1.2.10"))
	s1.eng.addShortcutRoute(pfx("10.1.2.0/24"), ad("10.0.0.12"))
	s1.eng.mu.Unlock()
	d, _ := s1.cache.Get(ad("10.0.0.12"))
	d.Used.Store(true)
	s1.eng.Tick(now.Add(probeTimeout))
	evs := r1.evs
	r1.evs = nil
	if len(evs) != 1 || evs[0].Type != events.ShortcutDown || !strings.HasPrefix(evs[0].Reason, "dead") || evs[0].Prefix != "10.1.2.0/24" {
		t.Errorf("dead shortcut: %+v", evs)
	}

	s1.eng.mu.Lock()
	s1.eng.installPeer(now, ad("10.0.0.12"), s2.nbma, nbma.TransportUDP, s2.nbma.Addr(), false, true, time.Minute, ad("10.1.2.10"))
	s1.eng.mu.Unlock()
	s1.eng.ClearShortcuts()
	if len(r1.evs) != 1 || r1.evs[0].Type != events.ShortcutDown || r1.evs[0].Reason != "cleared (clear nhrp)" || !r1.evs[0].Time.IsZero() {
		t.Errorf("clear: %+v", r1.evs)
	}
}

// A reload that removes an NHS we are registered with deregisters
// (purge-sent) and reports the NHS down; one added reports up once it
// answers.
func TestEventsReloadRemovesAndAddsNHS(t *testing.T) {
	w := newWire(t)
	hub1 := w.add(ap("192.0.2.1:4754"), hubConfig())
	hub2cfg := hubConfig()
	hub2cfg.Address = pfx("10.0.0.2/24")
	hub2 := w.add(ap("192.0.2.2:4754"), hub2cfg)
	cfg := spokeConfig("10.0.0.11/24")
	sp := w.add(ap("198.51.100.1:4754"), cfg)
	r := listen(sp)
	for _, n := range []*node{hub1, hub2, sp} {
		n.eng.Start(t0)
	}
	w.pump(t0)
	wantEvents(t, "spoke", r.take(), "nhs-up 10.0.0.1 @192.0.2.1:4754")
	l := liveOf(cfg)
	l.NHS = []NHS{{Protocol: ad("10.0.0.2"), NBMA: ap("192.0.2.2:4754"), Transport: nbma.TransportUDP}}
	now := t0.Add(time.Second)
	if _, err := sp.eng.Reconfigure(now, l); err != nil {
		t.Fatal(err)
	}
	w.pump(now)
	wantEvents(t, "spoke after the reload", r.brief(),
		"purge-sent 10.0.0.11 @192.0.2.1:4754", "nhs-down 10.0.0.1 @192.0.2.1:4754", "nhs-up 10.0.0.2 @192.0.2.2:4754")
	if len(r.evs) == 3 && !strings.Contains(r.evs[1].Reason, "reload") {
		t.Errorf("nhs-down reason %q", r.evs[1].Reason)
	}
}
