package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

func liveOf(c Config) Live {
	return Live{Holdtime: c.Holdtime, RegistrationInterval: c.RegistrationInterval, MaxHoldtime: c.MaxHoldtime,
		Unique: c.Unique, Shortcut: c.Shortcut, Redirect: c.Redirect, MaxSend: c.MaxSend, MaxReceive: c.MaxReceive,
		Authentication: c.Authentication, HMAC: c.HMAC, HMACMaxSkew: c.HMACMaxSkew, NHS: c.NHS, Static: c.Static}
}

func TestReconfigureNHSAddRemoveLeavesTheRestAlone(t *testing.T) {
	w := newWire(t)
	hub1 := w.add(ap("192.0.2.1:4754"), hubConfig())
	hub2cfg := hubConfig()
	hub2cfg.Address = pfx("10.0.0.2/24")
	hub2 := w.add(ap("192.0.2.2:4754"), hub2cfg)
	sp := w.add(ap("198.51.100.1:4754"), spokeConfig("10.0.0.11/24"))
	for _, n := range []*node{hub1, hub2, sp} {
		n.eng.Start(t0)
	}
	w.pump(t0)
	before := sp.eng.NHSStatus()[0]
	reg1, _ := hub1.cache.Get(ad("10.0.0.11"))

	// Add hub2.
	now := t0.Add(5 * time.Second)
	l := liveOf(sp.eng.cfg)
	l.NHS = append(append([]NHS(nil), l.NHS...), NHS{Protocol: ad("10.0.0.2"), NBMA: hub2.nbma, Transport: nbma.TransportUDP})
	changed, err := sp.eng.Reconfigure(now, l)
	if err != nil || len(changed) != 1 || !strings.Contains(changed[0], "added 10.0.0.2") {
		t.Fatalf("changes %q %v", changed, err)
	}
	w.pump(now)
	st := sp.eng.NHSStatus()
	if len(st) != 2 || st[1].State != StateUp {
		t.Fatalf("status %+v", st)
	}
	if st[0].Since != before.Since || st[0].State != StateUp {
		t.Fatalf("hub1's registration flapped: %+v, was %+v", st[0], before)
	}
	if r, _ := hub1.cache.Get(ad("10.0.0.11")); r.Created != reg1.Created {
		t.Fatal("hub1's binding was replaced")
	}
	if _, ok := hub2.cache.Get(ad("10.0.0.11")); !ok {
		t.Fatal("hub2 has no registration")
	}

	// Remove hub1: it is purged, probes us, we do not answer it, and the
	// binding goes; hub2's stands.
	now = now.Add(time.Second)
	l.NHS = l.NHS[1:]
	changed, _ = sp.eng.Reconfigure(now, l)
	if len(changed) != 1 || !strings.Contains(changed[0], "removed 10.0.0.1") {
		t.Fatalf("changes %q", changed)
	}
	w.pump(now)
	for i := 1; i <= 3; i++ {
		at := now.Add(time.Duration(i) * time.Second)
		hub1.eng.Tick(at)
		w.pump(at)
	}
	if _, ok := hub1.cache.Get(ad("10.0.0.11")); ok {
		t.Fatal("hub1 kept the binding of a spoke that left it")
	}
	if _, ok := sp.cache.Get(ad("10.0.0.1")); ok {
		t.Fatal("the spoke kept hub1's entry")
	}
	if st := sp.eng.NHSStatus(); len(st) != 1 || st[0].Protocol != ad("10.0.0.2") || st[0].State != StateUp {
		t.Fatalf("status %+v", st)
	}
	// Nothing changes: nothing reported.
	if changed, _ := sp.eng.Reconfigure(now, l); len(changed) != 0 {
		t.Fatalf("no-op reconfigure changed %q", changed)
	}
}

func TestReconfigureSecretWithGrace(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	sp := w.add(ap("198.51.100.1:4754"), spokeConfig("10.0.0.11/24"))
	hub.eng.Start(t0)
	sp.eng.Start(t0)
	w.pump(t0)
	// The hub gets a new secret first; the spoke still has the old one.
	l := liveOf(hub.eng.cfg)
	l.Authentication, l.AuthChanged = []byte("newlab"), true
	if _, err := hub.eng.Reconfigure(t0, l); err != nil {
		t.Fatal(err)
	}
	sp.eng.mu.Lock()
	sp.eng.register(t0.Add(10*time.Second), sp.eng.nhs[0])
	sp.eng.mu.Unlock()
	w.pump(t0.Add(10 * time.Second))
	if hub.eng.Stats().AuthFailures != 0 || hub.eng.Stats().RegistrationsAccepted != 2 {
		t.Fatalf("old secret refused within the grace period: %+v", hub.eng.Stats())
	}
	// The hub's reply carries the new secret: the spoke, not reloaded yet,
	// refuses it (as it should), and after the grace period the hub
	// refuses the old one.
	sp.eng.mu.Lock()
	sp.eng.register(t0.Add(AuthGrace+time.Second), sp.eng.nhs[0])
	sp.eng.mu.Unlock()
	w.pump(t0.Add(AuthGrace + time.Second))
	if hub.eng.Stats().AuthFailures == 0 {
		t.Fatalf("old secret accepted after the grace period: %+v", hub.eng.Stats())
	}
	// The spoke reloads too: registered again.
	ls := liveOf(sp.eng.cfg)
	ls.Authentication, ls.AuthChanged = []byte("newlab"), true
	now := t0.Add(AuthGrace + 20*time.Second)
	if _, err := sp.eng.Reconfigure(now, ls); err != nil {
		t.Fatal(err)
	}
	sp.eng.mu.Lock()
	sp.eng.register(now, sp.eng.nhs[0])
	sp.eng.mu.Unlock()
	w.pump(now)
	if st := sp.eng.NHSStatus()[0]; st.State != StateUp {
		t.Fatalf("after both reloads: %+v", st)
	}
	if e, _ := hub.cache.Get(ad("10.0.0.11")); e.Type != cache.Dynamic {
		t.Fatal("not registered")
	}
}
