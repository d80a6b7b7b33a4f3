package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/events"
)

// eventsDaemon is an API server with an event bus and nothing else.
type eventsDaemon struct{ bus *events.Bus }

func (eventsDaemon) DMVPN() api.DMVPN      { return api.DMVPN{} }
func (eventsDaemon) NHRP() []api.NHRPEntry { return nil }
func (eventsDaemon) Routes() []api.Route   { return nil }
func (eventsDaemon) Stats() api.Stats      { return api.Stats{} }
func (eventsDaemon) ClearNHRP() int        { return 0 }
func (d eventsDaemon) SubscribeEvents(history int) (*events.Sub, error) {
	return d.bus.Subscribe(history)
}

func serveEventsDaemon(t *testing.T) (string, *events.Bus) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d := eventsDaemon{bus: events.NewBus(0, 0)}
	go func() { _ = api.ServeListener(ctx, l, d) }()
	return sock, d.bus
}

type run struct {
	out, errOut string
	err         error
}

func start(t *testing.T, args ...string) chan run {
	done := make(chan run, 1)
	go func() {
		out, errOut, err := execute(t, args...)
		done <- run{out, errOut, err}
	}()
	return done
}

func wait(t *testing.T, done chan run) run {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("dmvpn events did not end within 20s")
	}
	return run{}
}

func waitSubscribed(t *testing.T, b *events.Bus, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); b.Stats().Subscribers != n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers, want %d", b.Stats().Subscribers, n)
		}
	}
}

// --json prints the stream's lines as they are; --history starts with the
// kept events; --type filters; --count ends it.
func TestEventsCommandJSON(t *testing.T) {
	sock, bus := serveEventsDaemon(t)
	bus.Publish(events.Event{Type: events.NodeUp, Node: "hub"})
	bus.Publish(events.Event{Type: events.RegistrationAccepted, Node: "hub", Peer: "10.0.0.11", NBMA: "198.51.100.1"})
	done := start(t, "events", "-s", sock, "--json", "--history", "10", "--type", "registration-accepted,registration-removed", "--count", "2")
	waitSubscribed(t, bus, 1)
	bus.Publish(events.Event{Type: events.PurgeReceived, Node: "hub", Peer: "10.0.0.12"}) // filtered out
	bus.Publish(events.Event{Type: events.RegistrationRemoved, Node: "hub", Peer: "10.0.0.12", Reason: "purged; the registrant no longer answers"})
	bus.Publish(events.Event{Type: events.RegistrationAccepted, Node: "hub", Peer: "10.0.0.13"}) // after --count
	r := wait(t, done)
	if r.err != nil {
		t.Fatalf("%v; stderr %s", r.err, r.errOut)
	}
	lines := strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("printed:\n%s", r.out)
	}
	var a, b events.Event
	if json.Unmarshal([]byte(lines[0]), &a) != nil || json.Unmarshal([]byte(lines[1]), &b) != nil {
		t.Fatalf("not JSON lines:\n%s", r.out)
	}
	if a.Seq != 2 || a.Type != events.RegistrationAccepted || a.Peer != "10.0.0.11" || b.Seq != 4 || b.Type != events.RegistrationRemoved {
		t.Errorf("events %+v, %+v", a, b)
	}
}

// The text form: one line per event; the node stopping ends the command
// (exit 0, said on stderr); --timeout ends it too, an error when --count
// was not reached.
func TestEventsCommandTextStopAndTimeout(t *testing.T) {
	sock, bus := serveEventsDaemon(t)
	done := start(t, "events", "-s", sock)
	waitSubscribed(t, bus, 1)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	bus.Publish(events.Event{Time: at, Type: events.ShortcutDown, Node: "spoke1", Peer: "10.0.0.12", NBMA: "198.51.100.65",
		Prefix: "10.1.2.0/24", Reason: "purged by 198.51.100.65"})
	bus.Publish(events.Event{Time: at, Type: events.NodeDown, Node: "spoke1"})
	bus.Close()
	r := wait(t, done)
	if r.err != nil {
		t.Fatal(r.err)
	}
	want := "2026-03-04T05:06:07.000Z shortcut-down         node=spoke1 peer=10.0.0.12 nbma=198.51.100.65 prefix=10.1.2.0/24 reason=\"purged by 198.51.100.65\"\n" +
		"2026-03-04T05:06:07.000Z node-down             node=spoke1\n"
	if r.out != want {
		t.Errorf("printed\n%s\nwant\n%s", r.out, want)
	}
	if !strings.Contains(r.errOut, "the node stopped") {
		t.Errorf("stderr %q", r.errOut)
	}

	sock, bus = serveEventsDaemon(t)
	t0 := time.Now()
	r = wait(t, start(t, "events", "-s", sock, "--count", "1", "--timeout", "300ms"))
	if r.err == nil || !strings.Contains(r.err.Error(), "--timeout 300ms: 0 of 1 events") {
		t.Errorf("timeout with --count: %v", r.err)
	}
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Errorf("ended after %v, before its timeout", d)
	}
	if r = wait(t, start(t, "events", "-s", sock, "--timeout", "200ms")); r.err != nil {
		t.Errorf("timeout without --count: %v", r.err)
	}
	waitSubscribed(t, bus, 0)
}

func TestEventsCommandErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"events", "-s", "/nonexistent.sock", "--type", "shortcut-upp"}, `--type: unknown event "shortcut-upp" (valid: nhs-up, `},
		{[]string{"events", "-s", "/nonexistent.sock", "--type", "shortcut-upp"}, `did you mean "shortcut-up"?`},
		{[]string{"events", "-s", "/nonexistent.sock", "--history", "300"}, "--history 300: want 0 to 256"},
		{[]string{"events", "-s", "/nonexistent.sock"}, "is `dmvpn run` running?"},
		{[]string{"events"}, "say which node"},
	} {
		_, _, err := execute(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
}

// config check looks hooks' programs up as dmvpn run does, and lists them.
func TestConfigCheckHooks(t *testing.T) {
	const cfg = `name: spoke1
tunnel:
  address: 10.0.0.11/24
  source: 198.51.100.1
nhrp:
  network-id: 1
  nhs:
    - address: 10.0.0.1
      nbma: 192.0.2.1
hooks:
  - event: [shortcut-up, shortcut-down]
    command: [sh, -c, "not run by config check"]
  - event: "*"
    command: [/nonexistent/notify]
    timeout: 30s
`
	bad := writeFile(t, "spoke1.yaml", cfg)
	_, errOut, err := execute(t, "config", "check", bad)
	if err == nil || !strings.Contains(errOut, bad+`:14:15: hooks[1].command[0]: "/nonexistent/notify" does not exist`) ||
		!strings.HasSuffix(errOut, bad+": 1 error\n") {
		t.Fatalf("err %v, stderr:\n%s", err, errOut)
	}
	good := writeFile(t, "spoke1.yaml", strings.Replace(cfg, "/nonexistent/notify", "/bin/sh", 1))
	out, errOut, err := execute(t, "config", "check", good)
	if err != nil {
		t.Fatalf("%v: %s", err, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[2], "  hooks[0]: shortcut-up, shortcut-down: /") ||
		!strings.Contains(lines[2], "/sh (sh, found on PATH) \"-c\" \"not run by config check\", timeout 10s") ||
		lines[3] != "  hooks[1]: every event: /bin/sh, timeout 30s" {
		t.Errorf("config check printed:\n%s", out)
	}
}
