package events

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Bounds of a Bus.
const (
	// DefaultHistory is how many past events a Bus keeps for new
	// subscribers (`dmvpn events --history N`).
	DefaultHistory = 256
	// DefaultQueue is each subscriber's queue: what it may fall behind
	// by before it loses events.
	DefaultQueue = 1024
	// MaxSubscribers bounds the subscribers of one Bus (API streams).
	MaxSubscribers = 64
)

var (
	// ErrClosed: the Bus is closed (the node stopped).
	ErrClosed = errors.New("events: the node is stopping")
	// ErrTooMany: MaxSubscribers are already listening.
	ErrTooMany = errors.New("events: too many subscribers")
)

// Bus hands events to its subscribers without ever waiting for them. It
// is safe for concurrent use. Lock order: Bus, then a subscriber's lock;
// Publish may be called under other locks (the engine's) since it takes
// nothing else and does a bounded amount of work per subscriber.
type Bus struct {
	mu     sync.Mutex
	seq    uint64
	hist   []Event // ring of the last len(hist) events
	head   int     // where the next event goes in hist
	n      int     // events in hist
	queue  int
	subs   map[*Sub]struct{}
	closed bool
	lost   uint64 // events lost by subscribers, over the bus's life
}

// NewBus returns a bus that keeps history past events and gives each
// subscriber a queue of queue events (zero or less: the defaults).
func NewBus(history, queue int) *Bus {
	if history <= 0 {
		history = DefaultHistory
	}
	if queue <= 0 {
		queue = DefaultQueue
	}
	return &Bus{hist: make([]Event, history), queue: queue, subs: map[*Sub]struct{}{}}
}

// Publish numbers ev, stamps it with the current time unless it has one,
// records it in the history and queues it for every subscriber (one that
// is full loses it, counted). It returns the event as published. After
// Close it only numbers and stamps.
func (b *Bus) Publish(ev Event) Event {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	ev.Seq = b.seq
	if b.closed {
		return ev
	}
	b.hist[b.head] = ev
	b.head = (b.head + 1) % len(b.hist)
	b.n = min(b.n+1, len(b.hist))
	for s := range b.subs {
		if !s.push(ev) {
			b.lost++
		}
	}
	return ev
}

// History returns the events kept, oldest first.
func (b *Bus) History() []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastLocked(b.n)
}

func (b *Bus) lastLocked(k int) []Event {
	k = min(k, b.n)
	out := make([]Event, 0, k)
	for i := b.n - k; i < b.n; i++ {
		out = append(out, b.hist[(b.head-b.n+i+len(b.hist))%len(b.hist)])
	}
	return out
}

// Stats is a Bus's counters.
type Stats struct {
	Published   uint64 // events published (the last sequence number)
	Subscribers int    // listening now
	Lost        uint64 // events subscribers lost because their queue was full
}

// Stats returns the bus's counters.
func (b *Bus) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{Published: b.seq, Subscribers: len(b.subs), Lost: b.lost}
}

// Subscribe returns a subscription that receives the last history events
// kept (at most the queue's size) and then every event published, in
// order, with nothing lost or repeated in between.
func (b *Bus) Subscribe(history int) (*Sub, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if len(b.subs) >= MaxSubscribers {
		return nil, ErrTooMany
	}
	s := &Sub{b: b, q: make([]Event, b.queue), wake: make(chan struct{}, 1)}
	for _, ev := range b.lastLocked(min(max(history, 0), b.queue)) {
		s.push(ev)
	}
	b.subs[s] = struct{}{}
	return s, nil
}

// Close ends every subscription (each still delivers what it has queued)
// and refuses new ones: the node is stopping.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		s.end()
	}
	clear(b.subs)
}

// Sub is one subscription to a Bus.
type Sub struct {
	b       *Bus
	mu      sync.Mutex
	q       []Event // ring
	head, n int
	dropped uint64 // lost since the last marker
	lost    uint64 // lost in all
	closed  bool
	wake    chan struct{}
}

// push queues ev, or counts it lost when the queue is full. After a loss,
// a Dropped marker goes in first, so the gap shows where it is.
func (s *Sub) push(ev Event) bool {
	s.mu.Lock()
	ok := true
	switch {
	case s.closed:
	case s.dropped == 0 && s.n < len(s.q):
		s.put(ev)
	case s.dropped > 0 && s.n+2 <= len(s.q):
		s.put(s.marker(ev.Time))
		s.put(ev)
	default:
		s.dropped++
		s.lost++
		ok = false
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return ok
}

func (s *Sub) put(ev Event) {
	s.q[(s.head+s.n)%len(s.q)] = ev
	s.n++
}

// marker returns the Dropped marker for what was lost, and resets the
// count.
func (s *Sub) marker(t time.Time) Event {
	m := Event{Time: t, Type: Dropped, Dropped: s.dropped,
		Reason: "this subscriber did not keep up; events were lost"}
	s.dropped = 0
	return m
}

func (s *Sub) end() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Next returns the next event, waiting for one until ctx is done. It
// reports false when ctx is done, or when the subscription is closed and
// everything queued has been delivered.
func (s *Sub) Next(ctx context.Context) (Event, bool) {
	for {
		s.mu.Lock()
		if s.n > 0 {
			ev := s.q[s.head]
			s.q[s.head] = Event{}
			s.head = (s.head + 1) % len(s.q)
			s.n--
			s.mu.Unlock()
			return ev, true
		}
		if s.dropped > 0 {
			m := s.marker(time.Now())
			s.mu.Unlock()
			return m, true
		}
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return Event{}, false
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return Event{}, false
		}
	}
}

// Lost is how many events this subscription has lost.
func (s *Sub) Lost() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

// Close ends the subscription.
func (s *Sub) Close() {
	s.b.mu.Lock()
	delete(s.b.subs, s)
	s.b.mu.Unlock()
	s.end()
}
