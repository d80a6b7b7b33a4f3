// Package deadline is the timer table of the sans-IO engines (nhrp/engine,
// ikev2/engine): one heap of deadlines instead of a walk of the engine's
// state on every event, and no timers of the runtime's, so an engine stays
// driven by the time its caller passes in (Next says when to call back,
// Due what is due then).
//
// At most one deadline is live per key. A key re-armed leaves its old heap
// entry behind; entries that no longer match the live deadline are skipped
// as they surface, and when they pile up (a key re-armed many times before
// it fires) the heap is rebuilt from the live set, so it stays proportional
// to the keys it serves. Every operation is O(log n). Not safe for
// concurrent use: the engines call it under their own lock.
package deadline

import (
	"container/heap"
	"time"
)

// Timers is a table of deadlines by key. The zero value is ready to use.
type Timers[K comparable] struct {
	h     entries[K]
	sched map[K]time.Time
}

type entry[K comparable] struct {
	at  time.Time
	key K
}

type entries[K comparable] []entry[K]

func (h entries[K]) Len() int           { return len(h) }
func (h entries[K]) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h entries[K]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *entries[K]) Push(x any)        { *h = append(*h, x.(entry[K])) }
func (h *entries[K]) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// Set arms k at at, replacing the deadline it had.
func (t *Timers[K]) Set(k K, at time.Time) {
	if cur, ok := t.sched[k]; ok && cur.Equal(at) {
		return
	}
	t.arm(k, at)
}

// Schedule arms k at at unless it is armed earlier already (the earlier
// one, when it fires, lets the engine look at its state and schedule
// again).
func (t *Timers[K]) Schedule(k K, at time.Time) {
	if cur, ok := t.sched[k]; ok && !at.Before(cur) {
		return
	}
	t.arm(k, at)
}

func (t *Timers[K]) arm(k K, at time.Time) {
	if t.sched == nil {
		t.sched = make(map[K]time.Time)
	}
	t.sched[k] = at
	heap.Push(&t.h, entry[K]{at, k})
	if len(t.h) > 4*len(t.sched)+64 {
		t.h = t.h[:0]
		for k, at := range t.sched {
			t.h = append(t.h, entry[K]{at, k})
		}
		heap.Init(&t.h)
	}
}

// Cancel disarms k.
func (t *Timers[K]) Cancel(k K) { delete(t.sched, k) }

// Armed reports k's deadline, if it has one.
func (t *Timers[K]) Armed(k K) (time.Time, bool) {
	at, ok := t.sched[k]
	return at, ok
}

// Next returns the earliest live deadline, or the zero time.
func (t *Timers[K]) Next() time.Time {
	for len(t.h) > 0 {
		top := t.h[0]
		if at, ok := t.sched[top.key]; ok && at.Equal(top.at) {
			return top.at
		}
		heap.Pop(&t.h)
	}
	return time.Time{}
}

// Due pops the next live deadline at or before now and disarms it; ok is
// false when none is due.
func (t *Timers[K]) Due(now time.Time) (k K, ok bool) {
	for len(t.h) > 0 && !now.Before(t.h[0].at) {
		top := heap.Pop(&t.h).(entry[K])
		if at, live := t.sched[top.key]; live && at.Equal(top.at) {
			delete(t.sched, top.key)
			return top.key, true
		}
	}
	return k, false
}

// Live is the number of armed keys; HeapLen the heap's length, stale
// entries included (bounded by 4×Live+64).
func (t *Timers[K]) Live() int    { return len(t.sched) }
func (t *Timers[K]) HeapLen() int { return len(t.h) }
