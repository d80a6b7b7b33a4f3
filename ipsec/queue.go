package ipsec

import (
	"net/netip"
	"sync"
	"time"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/nbma"
)

// waiting holds the datagrams that wait for their peer's SA: at most max
// peers, qlen datagrams each (the oldest is dropped for a newer one, as
// retransmitted NHRP requests supersede older copies). Copies are
// allocated: this is the slow path of an SA coming up, never the steady
// state.
type waiting struct {
	mu   sync.Mutex
	max  int
	qlen int
	m    map[netip.AddrPort]*waitQueue
}

type waitQueue struct {
	t     nbma.Transport
	since time.Time
	pkts  [][]byte
}

func (w *waiting) init(max, qlen int) {
	w.max, w.qlen = max, qlen
	w.m = map[netip.AddrPort]*waitQueue{}
}

// put queues a copy of payload for peer; started: the peer was not
// waiting before; ok false: dropped (too many peers waiting).
func (w *waiting) put(peer netip.AddrPort, t nbma.Transport, payload []byte, now time.Time) (started, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.m[peer]
	if q == nil {
		if len(w.m) >= w.max {
			return false, false
		}
		q = &waitQueue{t: t, since: now}
		w.m[peer] = q
		started = true
	}
	p := append([]byte(nil), payload...)
	if len(q.pkts) == w.qlen {
		copy(q.pkts, q.pkts[1:])
		q.pkts[len(q.pkts)-1] = p
		return started, true
	}
	q.pkts = append(q.pkts, p)
	return started, true
}

// take removes and returns the queue of an SA's peer key: the data plane
// may name the peer by the key itself, or, when its transport differs from
// the SA's, by the address with port 0 or 4500.
func (w *waiting) take(key netip.AddrPort) *waitQueue {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out *waitQueue
	for _, k := range [...]netip.AddrPort{key, netip.AddrPortFrom(key.Addr(), 0), netip.AddrPortFrom(key.Addr(), esp.UDPPort)} {
		q := w.m[k]
		if q == nil {
			continue
		}
		delete(w.m, k)
		if out == nil {
			out = q
		} else {
			out.pkts = append(out.pkts, q.pkts...)
		}
	}
	return out
}

// drop forgets what waits for key and returns how many datagrams.
func (w *waiting) drop(key netip.AddrPort) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.m[key]
	if q == nil {
		return 0
	}
	delete(w.m, key)
	return len(q.pkts)
}

// has reports whether anything waits for key.
func (w *waiting) has(key netip.AddrPort) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m[key] != nil
}

func (w *waiting) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}

// expire drops the queues older than timeout and returns when the next
// one expires (zero: none waits).
func (w *waiting) expire(now time.Time, timeout time.Duration, c *counters) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var next time.Time
	for k, q := range w.m {
		end := q.since.Add(timeout)
		if !now.Before(end) {
			c.waitExpired.Add(uint64(len(q.pkts)))
			delete(w.m, k)
			continue
		}
		if next.IsZero() || end.Before(next) {
			next = end
		}
	}
	return next
}
