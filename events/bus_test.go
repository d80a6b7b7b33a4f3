package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func ev(t Type, peer string) Event { return Event{Type: t, Peer: peer} }

// next returns the next event or fails (bounded).
func next(t *testing.T, s *Sub) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, ok := s.Next(ctx)
	if !ok {
		t.Fatal("no event")
	}
	return e
}

func TestPublishNumbersStampsAndDelivers(t *testing.T) {
	b := NewBus(4, 8)
	s, err := b.Subscribe(0)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := b.Publish(Event{Type: NHSUp, Time: at, Peer: "10.0.0.1"})
	if p.Seq != 1 || !p.Time.Equal(at) {
		t.Fatalf("published %+v", p)
	}
	q := b.Publish(ev(NHSDown, "10.0.0.1"))
	if q.Seq != 2 || q.Time.IsZero() {
		t.Fatalf("unstamped event published as %+v", q)
	}
	if e := next(t, s); e != p {
		t.Fatalf("got %+v, want %+v", e, p)
	}
	if e := next(t, s); e != q {
		t.Fatalf("got %+v, want %+v", e, q)
	}
}

// A subscriber that never reads costs the publisher nothing more than a
// full queue: publishing goes on at once, the subscriber keeps its first
// events and is told, where the gap is, how many it lost.
func TestSlowSubscriberLosesEventsAndIsTold(t *testing.T) {
	b := NewBus(16, 4)
	slow, _ := b.Subscribe(0)
	t0 := time.Now()
	for i := 0; i < 1000; i++ {
		b.Publish(ev(ShortcutUp, fmt.Sprint(i)))
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("1000 publishes with a stuck subscriber took %v", d)
	}
	if slow.Lost() != 996 {
		t.Errorf("slow subscriber lost %d, want 996", slow.Lost())
	}
	if st := b.Stats(); st.Published != 1000 || st.Subscribers != 1 || st.Lost != 996 {
		t.Errorf("stats %+v", st)
	}
	// Its queue: the first four, then the marker with the count.
	for i := 0; i < 4; i++ {
		if e := next(t, slow); e.Peer != fmt.Sprint(i) || e.Seq != uint64(i+1) {
			t.Fatalf("slow event %d: %+v", i, e)
		}
	}
	m := next(t, slow)
	if m.Type != Dropped || m.Dropped != 996 || m.Seq != 0 {
		t.Fatalf("marker %+v", m)
	}
	// After the gap, delivery resumes: the marker goes in before the next
	// event accepted, with the count of what was lost meanwhile.
	b.Publish(ev(ShortcutDown, "a"))
	if e := next(t, slow); e.Type != ShortcutDown || e.Seq != 1001 {
		t.Fatalf("after the marker: %+v", e)
	}
	for i := 0; i < 6; i++ { // 4 fit, 2 lost
		b.Publish(ev(PurgeSent, fmt.Sprint(i)))
	}
	var got []string
	for i := 0; i < 5; i++ {
		e := next(t, slow)
		got = append(got, fmt.Sprintf("%s:%s:%d", e.Type, e.Peer, e.Dropped))
	}
	if want := "[purge-sent:0:0 purge-sent:1:0 purge-sent:2:0 purge-sent:3:0 dropped::2]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	b.Publish(ev(PurgeSent, "x"))
	b.Publish(ev(PurgeSent, "y"))
	if e := next(t, slow); e.Peer != "x" {
		t.Fatalf("%+v", e)
	}
}

func TestHistory(t *testing.T) {
	b := NewBus(3, 8)
	for i := 1; i <= 5; i++ {
		b.Publish(ev(NHSUp, fmt.Sprint(i)))
	}
	var h []string
	for _, e := range b.History() {
		h = append(h, e.Peer)
	}
	if fmt.Sprint(h) != "[3 4 5]" {
		t.Fatalf("history %v, want the last 3", h)
	}
	// A subscriber asks for the last 2, then gets what follows, with
	// nothing repeated or missed in between.
	s, _ := b.Subscribe(2)
	b.Publish(ev(NHSDown, "6"))
	var got []uint64
	for i := 0; i < 3; i++ {
		got = append(got, next(t, s).Seq)
	}
	if fmt.Sprint(got) != "[4 5 6]" {
		t.Fatalf("seqs %v", got)
	}
	// More history than kept gives what is kept.
	all, _ := b.Subscribe(1000)
	if e := next(t, all); e.Seq != 4 {
		t.Fatalf("first of all history: %+v", e)
	}
}

func TestCloseEndsSubscriptionsAfterTheirQueue(t *testing.T) {
	b := NewBus(0, 0)
	s, _ := b.Subscribe(0)
	var wg sync.WaitGroup
	wg.Add(1)
	var tail []Type
	go func() {
		defer wg.Done()
		for {
			e, ok := s.Next(context.Background())
			if !ok {
				return
			}
			tail = append(tail, e.Type)
		}
	}()
	b.Publish(ev(NHSDown, "10.0.0.1"))
	b.Publish(ev(NodeDown, ""))
	b.Close()
	wg.Wait()
	if fmt.Sprint(tail) != "[nhs-down node-down]" {
		t.Fatalf("after close got %v", tail)
	}
	if _, err := b.Subscribe(0); err != ErrClosed {
		t.Fatalf("subscribe after close: %v", err)
	}
	b.Publish(ev(NHSUp, "")) // no panic, no delivery
}

func TestNextHonoursContextAndSubClose(t *testing.T) {
	b := NewBus(0, 0)
	s, _ := b.Subscribe(0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, ok := s.Next(ctx); ok {
		t.Fatal("an event out of nowhere")
	}
	s.Close()
	if st := b.Stats(); st.Subscribers != 0 {
		t.Fatalf("closed subscription still counted: %+v", st)
	}
	if _, ok := s.Next(context.Background()); ok {
		t.Fatal("a closed subscription delivered")
	}
}

func TestSubscribersBounded(t *testing.T) {
	b := NewBus(0, 1)
	var subs []*Sub
	for i := 0; i < MaxSubscribers; i++ {
		s, err := b.Subscribe(0)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	if _, err := b.Subscribe(0); err != ErrTooMany {
		t.Fatalf("subscriber %d: %v", MaxSubscribers+1, err)
	}
	subs[0].Close()
	if _, err := b.Subscribe(0); err != nil {
		t.Fatalf("after one left: %v", err)
	}
}

// Publish may be called from many goroutines while subscribers come and go.
func TestConcurrent(t *testing.T) {
	b := NewBus(8, 8)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 500; j++ {
				b.Publish(ev(PurgeReceived, ""))
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				s, err := b.Subscribe(4)
				if err != nil {
					continue
				}
				c, cc := context.WithTimeout(ctx, time.Millisecond)
				s.Next(c)
				cc()
				s.Close()
			}
		}()
	}
	wg.Wait()
	if st := b.Stats(); st.Published != 2000 || st.Subscribers != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEventTextAndJSON(t *testing.T) {
	e := Event{Seq: 7, Time: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC), Type: ShortcutDown, Node: "spoke1",
		Peer: "10.0.0.12", NBMA: "198.51.100.65", Prefix: "10.1.2.0/24", Reason: "purged by 198.51.100.65"}
	if got, want := e.String(), `2026-01-02T03:04:05.006Z shortcut-down         node=spoke1 peer=10.0.0.12 nbma=198.51.100.65 prefix=10.1.2.0/24 reason="purged by 198.51.100.65"`; got != want {
		t.Errorf("text\n got %s\nwant %s", got, want)
	}
	b, _ := json.Marshal(e)
	if got, want := string(b), `{"seq":7,"time":"2026-01-02T03:04:05.006Z","type":"shortcut-down","node":"spoke1","peer":"10.0.0.12","nbma":"198.51.100.65","prefix":"10.1.2.0/24","reason":"purged by 198.51.100.65"}`; got != want {
		t.Errorf("json\n got %s\nwant %s", got, want)
	}
	nl := Event{Type: Error, Reason: "a\nb"}
	if s := nl.String(); strings.Contains(s, "\n") {
		t.Errorf("text with a newline: %q", s)
	}
}

func TestNamesAndSuggest(t *testing.T) {
	names := Names()
	for _, n := range names {
		if i, ok := Lookup(n); !ok || i.Reserved {
			t.Errorf("%s: %+v %v", n, i, ok)
		}
	}
	if i, ok := Lookup("sa-up"); !ok || i.Reserved {
		t.Errorf("sa-up: %+v", i)
	}
	if _, ok := Lookup("dropped"); ok {
		t.Error("the dropped marker is not an event type")
	}
	for in, want := range map[string]string{"shortcut-upp": "shortcut-up", "nhs_up": "nhs-up", "registration-accept": "registration-accepted", "zzz": ""} {
		if got := Suggest(in); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
