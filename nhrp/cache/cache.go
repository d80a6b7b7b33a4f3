// Package cache is the NHRP cache: which NBMA endpoint each overlay address
// lives at, with the entry's kind, holding time and flags. The NHRP engine
// owns its content (it is the only writer); the data path reads it
// concurrently, under a read lock taken once per packet batch.
//
// Every operation costs the same whatever the cache holds: the indexes (by
// endpoint, multicast peers, NBMA address counts, the expiry heap and the
// eviction ring) are updated incrementally, never rebuilt, and nothing but
// All (for the management API) walks the whole table. The cache is bounded:
// at most Limits.MaxEntries entries, at most Limits.MaxPerNBMA learned or
// registered entries per NBMA address; when it is full a learned entry
// (resolved, negative, incomplete) is evicted to make room, the oldest one
// not used since it was last looked at first (a CLOCK ring), and a
// registration or a static entry is never evicted.
package cache

import (
	"container/heap"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmvpn/dmvpn/nbma"
)

// Type is the kind of a cache entry (Cisco's and RFC 2332's vocabulary).
type Type uint8

const (
	// Static: configured (an NHS, or an `nhrp map`); never expires.
	Static Type = iota + 1
	// Dynamic: registered with us by an NHC; expires with its holding time.
	Dynamic
	// Resolved: learned from a Resolution Reply (a spoke-to-spoke shortcut).
	Resolved
	// Negative: a resolution failed; remembered briefly so we do not ask
	// again at once.
	Negative
	// Incomplete: a resolution is in flight.
	Incomplete
)

func (t Type) String() string {
	switch t {
	case Static:
		return "static"
	case Dynamic:
		return "dynamic"
	case Resolved:
		return "resolved"
	case Negative:
		return "negative"
	case Incomplete:
		return "incomplete"
	}
	return "unknown"
}

// learned reports whether entries of type t were learned from the network
// and may be evicted when the cache is full.
func (t Type) learned() bool { return t == Resolved || t == Negative || t == Incomplete }

// Entry maps an overlay (protocol) address to an NBMA endpoint.
type Entry struct {
	Protocol netip.Addr // overlay address of the peer
	// Prefix is the protocol prefix the entry covers (a CIE's prefix
	// length); a host prefix for registrations.
	Prefix netip.Prefix
	// NBMA is where packets for the peer are sent: the address (and UDP
	// port) we actually see it at, which differs from ClaimedNBMA behind
	// NAT.
	NBMA netip.AddrPort
	// ClaimedNBMA is the NBMA address the peer put in its packets.
	ClaimedNBMA netip.Addr
	Transport   nbma.Transport
	Type        Type
	// NHS marks the entry of one of our next hop servers.
	NHS bool
	// Unique: registered with the U flag; another NBMA may not replace it
	// until it expires.
	Unique bool
	// NAT: the peer is behind NAT (claimed and observed NBMA differ).
	NAT bool
	// Multicast: multicast and broadcast from the overlay are replicated
	// to this peer (hub: every registered spoke; spoke: its NHSes).
	Multicast bool
	// Up is false for an NHS we have not (yet) registered with.
	Up          bool
	MTU         uint16
	HoldingTime time.Duration
	Created     time.Time
	Expires     time.Time // zero: never
	// Used is set by the data path when it sends to the entry, so idle
	// shortcuts can age out while used ones are refreshed.
	Used *atomic.Bool
	// LastRx is when the data path last received anything from NBMA
	// (unix nanoseconds; 0 never): a shortcut that is used but never
	// answers is a black hole and falls back to the hub.
	LastRx *atomic.Int64
	// Counters are the packets and bytes the data path exchanged with
	// the peer (see PeerCounters); like Used and LastRx they are shared
	// by every copy of the entry and kept by a replacement at the same
	// endpoint.
	Counters *PeerCounters
	// Owner is the overlay address of the node that answered for this
	// entry (a shortcut's next hop); Target the address resolved.
	Target netip.Addr
	// Direct: learned from a packet that came straight from the peer, so
	// NBMA is known to work.
	Direct bool
}

// PeerCounters are one peer's traffic counters, incremented by the data
// path with one atomic add per packet and per byte count (no lock, no
// allocation): received is every GRE packet that arrived from the entry's
// NBMA endpoint (data and NHRP, before the key check), sent every data
// packet queued to it (unicast, relayed or a multicast copy). Bytes are
// GRE packets' (GRE header and payload, without the outer IP or UDP
// header). Received and sent sit on separate cache lines: the underlay
// readers write one, the overlay reader the other.
type PeerCounters struct {
	RxPackets, RxBytes atomic.Uint64
	_                  [48]byte
	TxPackets, TxBytes atomic.Uint64
	_                  [48]byte
}

// Rx counts one packet of n bytes received from the peer.
func (c *PeerCounters) Rx(n int) {
	c.RxPackets.Add(1)
	c.RxBytes.Add(uint64(n))
}

// Tx counts one packet of n bytes sent to the peer.
func (c *PeerCounters) Tx(n int) {
	c.TxPackets.Add(1)
	c.TxBytes.Add(uint64(n))
}

// PeerStats is a snapshot of one entry's counters.
type PeerStats struct {
	Protocol           netip.Addr
	NBMA               netip.AddrPort
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
}

// Load returns the counters' values (zero for nil).
func (c *PeerCounters) Load() (rxPackets, rxBytes, txPackets, txBytes uint64) {
	if c == nil {
		return 0, 0, 0, 0
	}
	return c.RxPackets.Load(), c.RxBytes.Load(), c.TxPackets.Load(), c.TxBytes.Load()
}

func (e *Entry) forwards() bool {
	switch e.Type {
	case Static, Dynamic, Resolved:
		return e.NBMA.IsValid()
	}
	return false
}

// Limits bound the cache. Zero fields take the defaults.
type Limits struct {
	// MaxEntries bounds the whole cache.
	MaxEntries int
	// MaxPerNBMA bounds the non-static entries that map to one NBMA
	// address (whatever the port): one peer, or a NAT in front of several,
	// cannot fill the cache.
	MaxPerNBMA int
}

// Defaults for Limits.
const (
	DefaultMaxEntries = 100_000
	DefaultMaxPerNBMA = 256
)

// Errors returned by Put when an entry cannot be added.
var (
	ErrFull      = errors.New("nhrp cache full")
	ErrNBMALimit = errors.New("too many cache entries for this NBMA address")
)

// Peer is a multicast replication target.
type Peer struct {
	NBMA      netip.AddrPort
	Transport nbma.Transport
	// Counters are the entry's (Entry.Counters), to count the copies.
	Counters *PeerCounters
}

// item is an entry with its places in the indexes.
type item struct {
	Entry
	heapIdx  int   // in expiry, -1 when not there
	mcastIdx int   // in multicast, -1 when not there
	ring     *item // eviction ring (learned entries only): next
	prev     *item
	inRing   bool
}

// Stats counts the cache's bounds at work.
type Stats struct {
	Evicted, RefusedFull, RefusedPerNBMA uint64
}

// Cache is safe for concurrent use.
type Cache struct {
	mu        sync.RWMutex
	lim       Limits
	entries   map[netip.Addr]*item
	byNBMA    map[netip.AddrPort]*item // forwarding entries by endpoint, for Touch
	perNBMA   map[netip.Addr]int       // non-static entries per NBMA address
	expiry    expiryHeap
	multicast []Peer
	mcastOf   []*item // parallel to multicast
	hand      *item   // eviction ring: the oldest learned entry
	stats     Stats
	onEvict   func(Entry)
}

// New returns an empty cache with the default limits.
func New() *Cache { return NewWithLimits(Limits{}) }

// NewWithLimits returns an empty cache bounded by lim.
func NewWithLimits(lim Limits) *Cache {
	if lim.MaxEntries <= 0 {
		lim.MaxEntries = DefaultMaxEntries
	}
	if lim.MaxPerNBMA <= 0 {
		lim.MaxPerNBMA = DefaultMaxPerNBMA
	}
	return &Cache{lim: lim, entries: map[netip.Addr]*item{}, byNBMA: map[netip.AddrPort]*item{}, perNBMA: map[netip.Addr]int{}}
}

// Limits returns the cache's bounds.
func (c *Cache) Limits() Limits { return c.lim }

// Put inserts or replaces the entry for e.Protocol. A new entry that does
// not fit is refused (ErrFull, ErrNBMALimit) unless a learned entry can be
// evicted for it; replacing an entry always succeeds unless it moves to an
// NBMA address that is at its limit.
func (c *Cache) Put(e Entry) error {
	if !e.Prefix.IsValid() {
		e.Prefix = netip.PrefixFrom(e.Protocol, e.Protocol.BitLen())
	}
	c.mu.Lock()
	victim, err := c.putLocked(e)
	hook := c.onEvict
	c.mu.Unlock()
	if victim.Protocol.IsValid() && hook != nil {
		hook(victim)
	}
	return err
}

// OnEvict sets a function called (outside the cache's lock, on the
// goroutine that called Put) with every entry evicted to make room, so its
// owner can drop what depended on it (routes through a shortcut).
func (c *Cache) OnEvict(f func(Entry)) {
	c.mu.Lock()
	c.onEvict = f
	c.mu.Unlock()
}

func (c *Cache) putLocked(e Entry) (victim Entry, err error) {
	if it, ok := c.entries[e.Protocol]; ok {
		if e.Type != Static && e.NBMA.Addr() != it.NBMA.Addr() && c.perNBMA[e.NBMA.Addr()] >= c.lim.MaxPerNBMA {
			c.stats.RefusedPerNBMA++
			return Entry{}, ErrNBMALimit
		}
		// A replacement starts unused; it keeps its receive time while it
		// stays at the same endpoint. Reusing the atomics keeps a refresh
		// free of allocations.
		if e.Used == nil {
			e.Used = it.Used
			e.Used.Store(false)
		}
		if e.LastRx == nil && e.NBMA == it.NBMA {
			e.LastRx = it.LastRx
		}
		if e.LastRx == nil {
			e.LastRx = new(atomic.Int64)
		}
		// The traffic counters too: a refresh at the same endpoint keeps
		// counting, a move to another endpoint starts again from zero.
		if e.Counters == nil && e.NBMA == it.NBMA {
			e.Counters = it.Counters
		}
		if e.Counters == nil {
			e.Counters = new(PeerCounters)
		}
		c.unindex(it)
		it.Entry = e
		c.index(it)
		return Entry{}, nil
	}
	if e.Type != Static && e.NBMA.Addr().IsValid() && c.perNBMA[e.NBMA.Addr()] >= c.lim.MaxPerNBMA {
		c.stats.RefusedPerNBMA++
		return Entry{}, ErrNBMALimit
	}
	if e.Used == nil {
		e.Used = new(atomic.Bool)
	}
	if e.LastRx == nil {
		e.LastRx = new(atomic.Int64)
	}
	if e.Counters == nil {
		e.Counters = new(PeerCounters)
	}
	if len(c.entries) >= c.lim.MaxEntries {
		v, ok := c.evictLocked()
		if !ok {
			c.stats.RefusedFull++
			return Entry{}, ErrFull
		}
		victim = v
	}
	it := &item{Entry: e, heapIdx: -1, mcastIdx: -1}
	c.entries[e.Protocol] = it
	c.index(it)
	return victim, nil
}

// index adds it to every index its fields put it in.
func (c *Cache) index(it *item) {
	if it.Type != Static && it.NBMA.Addr().IsValid() {
		c.perNBMA[it.NBMA.Addr()]++
	}
	if it.forwards() {
		c.byNBMA[it.NBMA] = it
		if it.Multicast {
			it.mcastIdx = len(c.multicast)
			c.multicast = append(c.multicast, Peer{NBMA: it.NBMA, Transport: it.Transport, Counters: it.Counters})
			c.mcastOf = append(c.mcastOf, it)
		}
	}
	if !it.Expires.IsZero() {
		heap.Push(&c.expiry, it)
	}
	if it.Type.learned() {
		c.ringAdd(it)
	}
}

// unindex removes it from every index.
func (c *Cache) unindex(it *item) {
	if it.Type != Static && it.NBMA.Addr().IsValid() {
		a := it.NBMA.Addr()
		if c.perNBMA[a]--; c.perNBMA[a] <= 0 {
			delete(c.perNBMA, a)
		}
	}
	if c.byNBMA[it.NBMA] == it {
		delete(c.byNBMA, it.NBMA)
	}
	if i := it.mcastIdx; i >= 0 {
		last := len(c.multicast) - 1
		c.multicast[i], c.mcastOf[i] = c.multicast[last], c.mcastOf[last]
		c.mcastOf[i].mcastIdx = i
		c.multicast[last], c.mcastOf[last] = Peer{}, nil
		c.multicast, c.mcastOf = c.multicast[:last], c.mcastOf[:last]
		it.mcastIdx = -1
	}
	if it.heapIdx >= 0 {
		heap.Remove(&c.expiry, it.heapIdx)
	}
	if it.inRing {
		c.ringRemove(it)
	}
}

// ringAdd puts it at the young end of the eviction ring (just behind the
// hand).
func (c *Cache) ringAdd(it *item) {
	it.inRing = true
	if c.hand == nil {
		it.ring, it.prev = it, it
		c.hand = it
		return
	}
	tail := c.hand.prev
	it.prev, it.ring = tail, c.hand
	tail.ring = it
	c.hand.prev = it
}

func (c *Cache) ringRemove(it *item) {
	it.inRing = false
	if it.ring == it {
		c.hand = nil
	} else {
		it.prev.ring = it.ring
		it.ring.prev = it.prev
		if c.hand == it {
			c.hand = it.ring
		}
	}
	it.ring, it.prev = nil, nil
}

// evictScan bounds the CLOCK sweep: past this many recently used entries
// the oldest is evicted anyway, so Put stays O(1).
const evictScan = 16

// evictLocked removes one learned entry: the oldest not used since the
// hand last passed it.
func (c *Cache) evictLocked() (Entry, bool) {
	for i := 0; c.hand != nil; i++ {
		it := c.hand
		if i < evictScan && it.Used.Load() {
			it.Used.Store(false) // second chance
			c.hand = it.ring
			continue
		}
		c.unindex(it)
		delete(c.entries, it.Protocol)
		c.stats.Evicted++
		return it.Entry, true
	}
	return Entry{}, false
}

// Delete removes the entry for addr and returns it.
func (c *Cache) Delete(addr netip.Addr) (Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.entries[addr]
	if !ok {
		return Entry{}, false
	}
	c.unindex(it)
	delete(c.entries, addr)
	return it.Entry, true
}

// Get returns a copy of the entry for addr.
func (c *Cache) Get(addr netip.Addr) (Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	it, ok := c.entries[addr]
	if !ok {
		return Entry{}, false
	}
	return it.Entry, true
}

// ByNBMA returns a copy of the forwarding entry at the NBMA endpoint ep.
func (c *Cache) ByNBMA(ep netip.AddrPort) (Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	it, ok := c.byNBMA[ep]
	if !ok {
		return Entry{}, false
	}
	return it.Entry, true
}

// Update applies f to the entry for addr under the write lock. f may change
// any field but Protocol.
func (c *Cache) Update(addr netip.Addr, f func(e *Entry)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.entries[addr]
	if !ok {
		return false
	}
	c.unindex(it)
	counters := it.Counters
	f(&it.Entry)
	it.Protocol = addr
	if it.Counters == nil {
		it.Counters = counters
	}
	c.index(it)
	return true
}

// Reader is a read-locked view for the data path: take one per batch,
// Lookup per packet, Release at the end of the batch.
type Reader struct{ c *Cache }

// Reader read-locks the cache.
func (c *Cache) Reader() Reader {
	c.mu.RLock()
	return Reader{c}
}

// Release drops the read lock.
func (r Reader) Release() { r.c.mu.RUnlock() }

// Forward returns where to send packets for the overlay address addr: only
// entries that can carry traffic (static, up dynamic and resolved ones).
// It marks the entry used.
func (r Reader) Forward(addr netip.Addr) (netip.AddrPort, nbma.Transport, bool) {
	ep, t, _, ok := r.ForwardCounted(addr)
	return ep, t, ok
}

// ForwardCounted is Forward that also returns the entry's traffic
// counters, for the data path to count what it sends (PeerCounters.Tx).
func (r Reader) ForwardCounted(addr netip.Addr) (netip.AddrPort, nbma.Transport, *PeerCounters, bool) {
	e, ok := r.c.entries[addr]
	if !ok || !e.forwards() {
		return netip.AddrPort{}, 0, nil, false
	}
	if !e.Used.Load() {
		e.Used.Store(true)
	}
	return e.NBMA, e.Transport, e.Counters, true
}

// Multicast returns the peers that multicast is replicated to. The slice
// belongs to the cache and is valid until Release.
func (r Reader) Multicast() []Peer { return r.c.multicast }

// Multicast returns a copy of the multicast peers (for tests and the API).
func (c *Cache) Multicast() []Peer {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.multicast)
}

// Touch records that a packet of n bytes arrived from the NBMA endpoint ep
// at now (unix nanoseconds): the entry's receive time and its received
// counters.
func (r Reader) Touch(ep netip.AddrPort, now int64, n int) {
	e, ok := r.c.byNBMA[ep]
	if !ok {
		return
	}
	e.Counters.Rx(n)
	// 10 ms granularity keeps the shared cache line quiet under load.
	if e.LastRx.Load() < now-int64(10*time.Millisecond) {
		e.LastRx.Store(now)
	}
}

// Expire removes every entry whose holding time has passed at now and
// returns them.
func (c *Cache) Expire(now time.Time) []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var gone []Entry
	for len(c.expiry) > 0 && !now.Before(c.expiry[0].Expires) {
		it := c.expiry[0]
		c.unindex(it)
		delete(c.entries, it.Protocol)
		gone = append(gone, it.Entry)
	}
	return gone
}

// NextExpiry returns the earliest expiry time, or zero.
func (c *Cache) NextExpiry() time.Time {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.expiry) == 0 {
		return time.Time{}
	}
	return c.expiry[0].Expires
}

// All returns copies of every entry sorted by protocol address. It walks
// the whole cache: for the management API, never per packet or event.
func (c *Cache) All() []Entry {
	c.mu.RLock()
	out := make([]Entry, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, e.Entry)
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int { return a.Protocol.Compare(b.Protocol) })
	return out
}

// TopPeers returns the counters of at most n forwarding entries (static,
// dynamic and resolved ones with an NBMA address), the busiest first
// (received plus sent packets; ties by protocol address), and how many
// forwarding entries there are. It walks the whole cache under the read
// lock, reading atomics and keeping the n best in a heap: for a metrics
// scrape that asks for per-peer series, never per packet.
func (c *Cache) TopPeers(n int) (top []PeerStats, peers int) {
	if n <= 0 {
		return nil, 0
	}
	h := make(peerHeap, 0, min(n, 1024))
	c.mu.RLock()
	for _, it := range c.entries {
		if !it.forwards() {
			continue
		}
		peers++
		s := PeerStats{Protocol: it.Protocol, NBMA: it.NBMA}
		s.RxPackets, s.RxBytes, s.TxPackets, s.TxBytes = it.Counters.Load()
		if len(h) < n {
			heap.Push(&h, s)
		} else if busier(s, h[0]) {
			h[0] = s
			heap.Fix(&h, 0)
		}
	}
	c.mu.RUnlock()
	top = []PeerStats(h)
	slices.SortFunc(top, func(a, b PeerStats) int {
		if busier(a, b) {
			return -1
		}
		if busier(b, a) {
			return 1
		}
		return 0
	})
	return top, peers
}

// busier orders peers by total packets, then by protocol address (the
// lower first), so the selection is deterministic.
func busier(a, b PeerStats) bool {
	ta, tb := a.RxPackets+a.TxPackets, b.RxPackets+b.TxPackets
	if ta != tb {
		return ta > tb
	}
	return a.Protocol.Less(b.Protocol)
}

// peerHeap is a min-heap of the busiest peers so far (the least busy on
// top, to be replaced).
type peerHeap []PeerStats

func (h peerHeap) Len() int           { return len(h) }
func (h peerHeap) Less(i, j int) bool { return busier(h[j], h[i]) }
func (h peerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *peerHeap) Push(x any)        { *h = append(*h, x.(PeerStats)) }
func (h *peerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Len is the number of entries.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// CountNBMA is the number of non-static entries mapping to the NBMA
// address a.
func (c *Cache) CountNBMA(a netip.Addr) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.perNBMA[a]
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.stats
}

// Attributes returns Cisco's `show dmvpn` attribute letters for e:
// S static, D dynamic, N NATed, I incomplete.
func (e *Entry) Attributes() string {
	var b strings.Builder
	switch e.Type {
	case Static:
		b.WriteByte('S')
	case Dynamic, Resolved:
		b.WriteByte('D')
	case Incomplete, Negative:
		b.WriteByte('I')
	}
	if e.NAT {
		b.WriteByte('N')
	}
	return b.String()
}

// expiryHeap orders entries with a holding time by expiry (container/heap).
type expiryHeap []*item

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].Expires.Before(h[j].Expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *expiryHeap) Push(x any) {
	it := x.(*item)
	it.heapIdx = len(*h)
	*h = append(*h, it)
}
func (h *expiryHeap) Pop() any {
	old := *h
	n := len(old)
	it := old[n-1]
	old[n-1] = nil
	it.heapIdx = -1
	*h = old[:n-1]
	return it
}
