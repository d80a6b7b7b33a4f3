package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/events"
)

// collect reads a subscription in the background; the events so far are
// returned by the function it returns, and done is closed when the
// subscription ends.
func collect(t *testing.T, s *events.Sub) (func() []string, chan struct{}) {
	t.Helper()
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, ok := s.Next(context.Background())
			if !ok {
				return
			}
			mu.Lock()
			got = append(got, fmt.Sprintf("%s %s %s", ev.Node, ev.Type, ev.Peer))
			mu.Unlock()
		}
	}()
	return func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }, done
}

func has(got []string, want ...string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// A node's events reach its bus in order, named after the node (the
// hub's registrations, a spoke's NHS), a spoke's clean stop shows at the
// hub as a purge and, once probed, a removal; a stopping node's stream
// ends with node-down. Hooks run for the events they name.
func TestNodeEventsAndHooks(t *testing.T) {
	tn := newTestNet(t)
	hubCfg := hubYAML + `hooks:
  - event: registration-accepted
    command: [true]
`
	hub := tn.start(hubCfg)
	s1 := tn.start(spokeYAML(1, "198.51.100.1", "gre", 42, "lab"), "10.1.1.0/24")
	s2 := tn.start(spokeYAML(2, "198.51.100.65", "gre", 42, "lab"), "10.1.2.0/24")
	hs, err := hub.n.SubscribeEvents(events.DefaultHistory)
	if err != nil {
		t.Fatal(err)
	}
	hubEvents, hubDone := collect(t, hs)
	ss, _ := s1.n.SubscribeEvents(events.DefaultHistory)
	s1Events, _ := collect(t, ss)
	eventually(t, "registrations", func() bool { return registered(s1) && registered(s2) })
	eventually(t, "hub events", func() bool {
		g := hubEvents()
		return has(g, "hub node-up ", "hub registration-accepted 10.0.0.11") && has(g, "hub registration-accepted 10.0.0.12")
	})
	eventually(t, "spoke1 events", func() bool { return has(s1Events(), "spoke1 node-up ", "spoke1 nhs-up 10.0.0.1") })
	eventually(t, "hooks", func() bool { return hub.n.Stats().Events["hooks_succeeded"] == 2 })
	if st := hub.n.Stats().Events; st["hooks_started"] != 2 || st["hooks_failed"] != 0 || st["subscribers"] != 1 || st["published"] < 3 {
		t.Errorf("hub's events stats %v", st)
	}

	before := hub.n.Engine().Stats().ProbesSent
	s2.stop(t)
	eventually(t, "purge at the hub", func() bool { return has(hubEvents(), "hub purge-received 10.0.0.12") })
	expectProbesThenPurge(t, tn, hub, before)
	eventually(t, "removal at the hub", func() bool {
		return has(hubEvents(), "hub purge-received 10.0.0.12", "hub registration-removed 10.0.0.12")
	})

	hub.stop(t)
	select {
	case <-hubDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the hub's stream did not end when it stopped")
	}
	if g := hubEvents(); g[len(g)-1] != "hub node-down " {
		t.Errorf("the hub's last event: %v", g)
	}
	if _, err := hub.n.SubscribeEvents(0); err != events.ErrClosed {
		t.Errorf("subscribe to a stopped node: %v", err)
	}
}

// A hook whose program cannot be found stops start-up with the file and
// line; a reload changes hooks live, and a reload with a hook that cannot
// be found is refused with nothing applied.
func TestNodeHooksStartupAndReload(t *testing.T) {
	cfg, err := config.Parse("hub.yaml", []byte(hubYAML+"hooks:\n  - event: nhs-up\n    command: [dmvpn-no-such-hook]\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), `node hub: hooks: hub.yaml:17:15: hooks[0].command[0]: "dmvpn-no-such-hook" is not on PATH`) {
		t.Fatalf("New: %v", err)
	}

	tn := newTestNet(t)
	hub := tn.start(hubYAML)
	if c := hub.n.live; len(c.Hooks) != 0 {
		t.Fatalf("hooks %+v", c.Hooks)
	}
	withHook, err := config.Parse("hub.yaml", []byte(hubYAML+"hooks:\n  - event: registration-accepted\n    command: [true, x]\n"))
	if err != nil {
		t.Fatal(err)
	}
	changed, err := hub.n.Apply(withHook)
	if err != nil || fmt.Sprint(changed) != "[hooks: 1 (was 0)]" {
		t.Fatalf("reload adding a hook: %v %v", changed, err)
	}
	s1 := tn.start(spokeYAML(1, "198.51.100.1", "gre", 42, "lab"), "10.1.1.0/24")
	eventually(t, "registration", func() bool { return registered(s1) })
	eventually(t, "the reloaded hook ran", func() bool { return hub.n.Stats().Events["hooks_succeeded"] == 1 })

	// The same hooks again: nothing to do (where the program was found
	// does not count as a change).
	same, _ := config.Parse("hub.yaml", []byte(hubYAML+"hooks:\n  - event: registration-accepted\n    command: [true, x]\n"))
	if changed, err := hub.n.Apply(same); err != nil || len(changed) != 0 {
		t.Fatalf("reload with the same hooks: %v %v", changed, err)
	}
	bad, _ := config.Parse("hub.yaml", []byte(hubYAML+"log-level: debug\nhooks:\n  - event: nhs-up\n    command: [dmvpn-no-such-hook]\n"))
	if _, err := hub.n.Apply(bad); err == nil || !strings.Contains(err.Error(), "reload refused") || !strings.Contains(err.Error(), "is not on PATH") {
		t.Fatalf("reload with a missing program: %v", err)
	}
	if hub.n.live.LogLevel != same.LogLevel {
		t.Error("a refused reload applied its log level")
	}
}
