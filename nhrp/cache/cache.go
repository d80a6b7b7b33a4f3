// Package cache is the NHRP cache: which NBMA endpoint each overlay address
// lives at, with the entry's kind, holding time and flags. The NHRP engine
// owns its content (it is the only writer); the data path reads it
// concurrently, under a read lock taken once per packet batch.
package cache

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmvpn/dmvpn/underlay"
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
	Transport   underlay.Transport
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
	// Owner is the overlay address of the node that answered for this
	// entry (a shortcut's next hop); Target the address resolved.
	Target netip.Addr
	// Direct: learned from a packet that came straight from the peer, so
	// NBMA is known to work.
	Direct bool
}

// Cache is safe for concurrent use.
type Cache struct {
	mu        sync.RWMutex
	entries   map[netip.Addr]*Entry
	byNBMA    map[netip.AddrPort]*Entry // forwarding entries by endpoint, for Touch
	multicast atomic.Pointer[[]Entry]
}

// New returns an empty cache.
func New() *Cache {
	c := &Cache{entries: map[netip.Addr]*Entry{}, byNBMA: map[netip.AddrPort]*Entry{}}
	c.multicast.Store(&[]Entry{})
	return c
}

// Put inserts or replaces the entry for e.Protocol.
func (c *Cache) Put(e Entry) {
	if !e.Prefix.IsValid() {
		e.Prefix = netip.PrefixFrom(e.Protocol, e.Protocol.BitLen())
	}
	if e.Used == nil {
		e.Used = new(atomic.Bool)
	}
	if e.LastRx == nil {
		e.LastRx = new(atomic.Int64)
	}
	c.mu.Lock()
	c.entries[e.Protocol] = &e
	c.rebuildMulticastLocked()
	c.mu.Unlock()
}

// Delete removes the entry for addr and returns it.
func (c *Cache) Delete(addr netip.Addr) (Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[addr]
	if !ok {
		return Entry{}, false
	}
	delete(c.entries, addr)
	c.rebuildMulticastLocked()
	return *e, true
}

// Get returns a copy of the entry for addr.
func (c *Cache) Get(addr netip.Addr) (Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.entries[addr]
	if !ok {
		return Entry{}, false
	}
	return *e, true
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
func (r Reader) Forward(addr netip.Addr) (netip.AddrPort, underlay.Transport, bool) {
	e, ok := r.c.entries[addr]
	if !ok || !e.forwards() {
		return netip.AddrPort{}, 0, false
	}
	if !e.Used.Load() {
		e.Used.Store(true)
	}
	return e.NBMA, e.Transport, true
}

func (e *Entry) forwards() bool {
	switch e.Type {
	case Static, Dynamic, Resolved:
		return e.NBMA.IsValid()
	}
	return false
}

// Multicast returns the peers that multicast is replicated to. The slice is
// shared and must not be modified.
func (c *Cache) Multicast() []Entry { return *c.multicast.Load() }

// rebuildMulticastLocked recomputes the derived views (multicast peers,
// entries by endpoint) after a change.
func (c *Cache) rebuildMulticastLocked() {
	var m []Entry
	clear(c.byNBMA)
	for _, e := range c.entries {
		if e.Multicast && e.forwards() {
			m = append(m, *e)
		}
		if e.forwards() {
			c.byNBMA[e.NBMA] = e
		}
	}
	c.multicast.Store(&m)
}

// Touch records that a packet arrived from the NBMA endpoint ep at now
// (unix nanoseconds).
func (r Reader) Touch(ep netip.AddrPort, now int64) {
	// 10 ms granularity keeps the shared cache line quiet under load.
	if e, ok := r.c.byNBMA[ep]; ok && e.LastRx.Load() < now-int64(10*time.Millisecond) {
		e.LastRx.Store(now)
	}
}

// Expire removes every entry whose holding time has passed at now and
// returns them.
func (c *Cache) Expire(now time.Time) []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var gone []Entry
	for k, e := range c.entries {
		if !e.Expires.IsZero() && !now.Before(e.Expires) {
			gone = append(gone, *e)
			delete(c.entries, k)
		}
	}
	if len(gone) > 0 {
		c.rebuildMulticastLocked()
	}
	return gone
}

// NextExpiry returns the earliest expiry time, or zero.
func (c *Cache) NextExpiry() time.Time {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var next time.Time
	for _, e := range c.entries {
		if !e.Expires.IsZero() && (next.IsZero() || e.Expires.Before(next)) {
			next = e.Expires
		}
	}
	return next
}

// Update applies f to the entry for addr under the write lock.
func (c *Cache) Update(addr netip.Addr, f func(e *Entry)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[addr]
	if !ok {
		return false
	}
	f(e)
	c.rebuildMulticastLocked()
	return true
}

// All returns copies of every entry sorted by protocol address.
func (c *Cache) All() []Entry {
	c.mu.RLock()
	out := make([]Entry, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, *e)
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int { return a.Protocol.Compare(b.Protocol) })
	return out
}

// Len is the number of entries.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
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
