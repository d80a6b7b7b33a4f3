package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/events"
)

// eventsProvider is fakeProvider with an event bus.
type eventsProvider struct {
	fakeProvider
	bus *events.Bus
}

func (p *eventsProvider) SubscribeEvents(history int) (*events.Sub, error) {
	return p.bus.Subscribe(history)
}

func serveEvents(t *testing.T, p Provider) (*Client, context.CancelFunc, chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, l, p) }()
	return NewClient(sock), cancel, done
}

// waitSubscribers polls (bounded) until the bus has n subscribers.
func waitSubscribers(t *testing.T, b *events.Bus, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().Subscribers != n {
		if time.Now().After(deadline) {
			t.Fatalf("bus has %d subscribers, want %d", b.Stats().Subscribers, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type streamed struct {
	evs   []events.Event
	lines []string
	err   error
}

// stream runs c.Events in the background until it returns; the events
// arrive on the returned channel as they come.
func stream(ctx context.Context, c *Client, history int) (chan events.Event, chan streamed) {
	each := make(chan events.Event, 100)
	done := make(chan streamed, 1)
	go func() {
		var s streamed
		s.err = c.Events(ctx, history, func(ev events.Event, line []byte) error {
			s.evs = append(s.evs, ev)
			s.lines = append(s.lines, string(line))
			each <- ev
			return nil
		})
		done <- s
	}()
	return each, done
}

func recv(t *testing.T, ch chan events.Event) events.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event streamed within 10s")
	}
	return events.Event{}
}

// The stream starts with the history asked for, then carries each event
// as it is published, one JSON object per line; it ends when the client
// goes (its subscription with it) or when the node's bus closes, after
// the last events, even once the daemon has begun to stop.
func TestEventsStream(t *testing.T) {
	p := &eventsProvider{bus: events.NewBus(0, 0)}
	p.bus.Publish(events.Event{Type: events.NodeUp, Node: "spoke1"})
	p.bus.Publish(events.Event{Type: events.NHSUp, Node: "spoke1", Peer: "10.0.0.1", NBMA: "192.0.2.1"})
	c, stopServer, served := serveEvents(t, p)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, firstDone := stream(ctx, c, 1)
	if ev := recv(t, first); ev.Type != events.NHSUp || ev.Seq != 2 || ev.Peer != "10.0.0.1" {
		t.Fatalf("history: %+v", ev)
	}
	p.bus.Publish(events.Event{Type: events.ShortcutUp, Node: "spoke1", Peer: "10.0.0.12", Prefix: "10.1.2.0/24"})
	if ev := recv(t, first); ev.Type != events.ShortcutUp || ev.Seq != 3 || ev.Prefix != "10.1.2.0/24" {
		t.Fatalf("live: %+v", ev)
	}
	// A second stream without history sees only what follows.
	ctx2, cancel2 := context.WithCancel(context.Background())
	second, secondDone := stream(ctx2, c, 0)
	waitSubscribers(t, p.bus, 2)
	p.bus.Publish(events.Event{Type: events.PurgeReceived, Peer: "10.0.0.12"})
	if ev := recv(t, second); ev.Seq != 4 {
		t.Fatalf("second stream: %+v", ev)
	}
	if ev := recv(t, first); ev.Seq != 4 {
		t.Fatalf("first stream: %+v", ev)
	}
	// The client goes: its subscription goes too.
	cancel2()
	if s := <-secondDone; s.err != nil {
		t.Fatalf("cancelled stream: %v", s.err)
	}
	waitSubscribers(t, p.bus, 1)

	// The daemon stops: events published meanwhile still arrive, then the
	// stream ends when the node closes its bus.
	stopServer()
	p.bus.Publish(events.Event{Type: events.NHSDown, Peer: "10.0.0.1", Reason: "shut down"})
	p.bus.Publish(events.Event{Type: events.NodeDown})
	p.bus.Close()
	var s streamed
	select {
	case s = <-firstDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end when the bus closed")
	}
	if !errors.Is(s.err, io.EOF) {
		t.Errorf("stream ended with %v, want io.EOF (the node stopped)", s.err)
	}
	var got []string
	for _, ev := range s.evs {
		got = append(got, fmt.Sprintf("%d:%s", ev.Seq, ev.Type))
	}
	if want := "[2:nhs-up 3:shortcut-up 4:purge-received 5:nhs-down 6:node-down]"; fmt.Sprint(got) != want {
		t.Errorf("streamed %v, want %s", got, want)
	}
	if l := s.lines[1]; !strings.HasPrefix(l, `{"seq":3,"time":"`) || !strings.HasSuffix(l, `","type":"shortcut-up","node":"spoke1","peer":"10.0.0.12","prefix":"10.1.2.0/24"}`) {
		t.Errorf("line %s", l)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the API server did not stop")
	}
}

func TestEventsStreamErrors(t *testing.T) {
	// A daemon without events.
	c, _, _ := serveEvents(t, &fakeProvider{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Events(ctx, 0, func(events.Event, []byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "no event stream") {
		t.Errorf("no events: %v", err)
	}
	// Bad history; a closed bus (the node stopping).
	p := &eventsProvider{bus: events.NewBus(0, 0)}
	c, _, _ = serveEvents(t, p)
	if err := c.Events(ctx, 257, func(events.Event, []byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "want a number from 0 to 256") {
		t.Errorf("history 257: %v", err)
	}
	p.bus.Close()
	if err := c.Events(ctx, 0, func(events.Event, []byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("closed bus: %v", err)
	}
	// f's error ends the stream and is returned.
	p = &eventsProvider{bus: events.NewBus(0, 0)}
	p.bus.Publish(events.Event{Type: events.NodeUp})
	c, _, _ = serveEvents(t, p)
	stop := errors.New("stop")
	if err := c.Events(ctx, 1, func(events.Event, []byte) error { return stop }); err != stop {
		t.Errorf("f's error: %v", err)
	}
	waitSubscribers(t, p.bus, 0)
	// No daemon.
	if err := NewClient(filepath.Join(t.TempDir(), "none.sock")).Events(ctx, 0, nil); err == nil || !strings.Contains(err.Error(), "is `dmvpn run` running") {
		t.Errorf("no daemon: %v", err)
	}
}
