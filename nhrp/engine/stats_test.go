package engine

import (
	"testing"

	"github.com/dmvpn/dmvpn/nhrp"
)

// byType returns the non-zero counters of a by-type array, by type name.
func byType(a [NumTypes + 1]uint64) map[string]uint64 {
	m := map[string]uint64{}
	for i, n := range a {
		if n != 0 {
			m[TypeName(nhrp.Type(i))] = n
		}
	}
	return m
}

func sum(a [NumTypes + 1]uint64) (s uint64) {
	for _, n := range a {
		s += n
	}
	return s
}

func sameCounts(t *testing.T, who string, got, want map[string]uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %v, want %v", who, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %v, want %v", who, got, want)
			return
		}
	}
}

func TestTypeNames(t *testing.T) {
	want := []string{"", "resolution_request", "resolution_reply", "registration_request", "registration_reply",
		"purge_request", "purge_reply", "error_indication", "traffic_indication"}
	for i, w := range want {
		if got := TypeName(nhrp.Type(i)); got != w {
			t.Errorf("TypeName(%d) = %q, want %q", i, got, w)
		}
	}
	if TypeName(9) != "" || TypeName(255) != "" {
		t.Error("a type out of 1..8 has a name")
	}
}

// A registration exchange counts exactly one request and one reply on
// each side, in the right direction.
func TestMessagesByType(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	sp := w.add(ap("198.51.100.1:4754"), spokeConfig("10.0.0.11/24"))
	hub.eng.Start(t0)
	sp.eng.Start(t0)
	w.pump(t0)
	if sp.eng.NHSStatus()[0].State != StateUp {
		t.Fatalf("not registered: %+v", sp.eng.NHSStatus()[0])
	}
	h, s := hub.eng.Stats(), sp.eng.Stats()
	sameCounts(t, "hub received", byType(h.ReceivedByType), map[string]uint64{"registration_request": 1})
	sameCounts(t, "hub sent", byType(h.SentByType), map[string]uint64{"registration_reply": 1})
	sameCounts(t, "spoke sent", byType(s.SentByType), map[string]uint64{"registration_request": 1})
	sameCounts(t, "spoke received", byType(s.ReceivedByType), map[string]uint64{"registration_reply": 1})
	if h.RegistrationsAccepted != 1 || h.RegistrationsRefused != 0 {
		t.Errorf("hub registrations %d accepted, %d refused", h.RegistrationsAccepted, h.RegistrationsRefused)
	}
	for _, st := range []Stats{h, s} {
		if sum(st.SentByType) != st.Sent || sum(st.ReceivedByType) != st.Received {
			t.Errorf("by type %d sent %d received, totals %d, %d", sum(st.SentByType), sum(st.ReceivedByType), st.Sent, st.Received)
		}
	}

	// A refresh: one more of each.
	now := sp.eng.NextDeadline()
	sp.eng.Tick(now)
	w.pump(now)
	h = hub.eng.Stats()
	sameCounts(t, "hub received after a refresh", byType(h.ReceivedByType), map[string]uint64{"registration_request": 2})
	sameCounts(t, "hub sent after a refresh", byType(h.SentByType), map[string]uint64{"registration_reply": 2})
}

// A packet that decodes but is dropped (authentication) is counted by
// type received, and under its drop reason; the Error Indication it gets
// is counted sent. A malformed packet has no type.
func TestMessagesByTypeDropped(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	cfg := spokeConfig("10.0.0.11/24")
	cfg.Authentication = []byte("wrong")
	sp := w.add(ap("198.51.100.1:4754"), cfg)
	hub.eng.Start(t0)
	sp.eng.Start(t0)
	w.pump(t0)
	h, s := hub.eng.Stats(), sp.eng.Stats()
	sameCounts(t, "hub received", byType(h.ReceivedByType), map[string]uint64{"registration_request": 1})
	sameCounts(t, "hub sent", byType(h.SentByType), map[string]uint64{"error_indication": 1})
	sameCounts(t, "spoke received", byType(s.ReceivedByType), map[string]uint64{"error_indication": 1})
	if h.Dropped[DropAuth] != 1 || h.RegistrationsAccepted != 0 {
		t.Errorf("hub: %d auth drops, %d accepted", h.Dropped[DropAuth], h.RegistrationsAccepted)
	}

	hub.eng.HandlePacket(t0, ap("198.51.100.9:4754"), 0, []byte{0, 1, 2})
	if h2 := hub.eng.Stats(); h2.ReceivedByType != h.ReceivedByType || h2.Received != h.Received+1 || h2.Malformed != h.Malformed+1 {
		t.Errorf("a malformed packet: by type %v, received %d, malformed %d", h2.ReceivedByType, h2.Received, h2.Malformed)
	}
}
