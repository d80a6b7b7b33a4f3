package ipsec

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmvpn/dmvpn/esp"
)

// childSA is one installed Child SA: the peer object both planes share.
// The data plane reads it under sadb.mu (read) and uses its atomics and
// esp.SAs; only the control loop changes the tables.
type childSA struct {
	desc     ChildSA
	key      netip.AddrPort
	in, out  *esp.SA
	created  time.Time
	outerHdr int // tunnel mode: the inner IP header's length; 0 in transport mode

	// Under sadb.mu.
	current bool
	retired time.Time // zero while installed; else when its inbound side goes
	autoAt  time.Time // Activation OnInbound: when it becomes current anyway

	// auto: becomes current at its first inbound packet (OnInbound).
	auto atomic.Bool

	lastTraffic  atomic.Int64 // unix nanoseconds of the last OnTraffic call
	softNotified atomic.Bool
	replayDrops  atomic.Uint64
	authFails    atomic.Uint64
}

// sadb is the SA database: every installed SA by inbound SPI, each peer's
// current outbound SA by endpoint, and the SAs of each peer. All changes
// are O(1) (O(SAs of the peer) for the per-peer lists, a handful).
type sadb struct {
	mu      sync.RWMutex
	spi     map[uint32]*childSA
	current map[netip.AddrPort]*childSA
	// byAddr holds the current SAs by peer address, for a data plane that
	// names a peer by its address alone (raw) while its SA runs over UDP
	// because IKE found a NAT, or the other way round.
	byAddr    map[netip.Addr][]*childSA
	peers     map[netip.AddrPort][]*childSA
	lingering []*childSA
	// standby holds the OnInbound SAs not yet current.
	standby map[*childSA]struct{}
}

func (d *sadb) init() {
	d.spi = map[uint32]*childSA{}
	d.current = map[netip.AddrPort]*childSA{}
	d.byAddr = map[netip.Addr][]*childSA{}
	d.peers = map[netip.AddrPort][]*childSA{}
	d.standby = map[*childSA]struct{}{}
}

func (d *sadb) add(sa *childSA) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.spi[sa.in.SPI()]; ok {
		return ErrSPIInUse
	}
	d.spi[sa.in.SPI()] = sa
	d.peers[sa.key] = append(d.peers[sa.key], sa)
	if !sa.autoAt.IsZero() {
		d.standby[sa] = struct{}{}
	}
	return nil
}

func (d *sadb) bySPI(spi uint32) *childSA {
	d.mu.RLock()
	defer d.mu.RUnlock()
	sa := d.spi[spi]
	if sa == nil || !sa.retired.IsZero() {
		return nil
	}
	return sa
}

// setCurrent makes sa its peer's current outbound SA; false: it is
// retired or current already.
func (d *sadb) setCurrent(sa *childSA) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !sa.retired.IsZero() || sa.current {
		return false
	}
	if old := d.current[sa.key]; old != nil && old != sa {
		d.uncurrent(old)
	}
	d.current[sa.key] = sa
	sa.current = true
	sa.autoAt = time.Time{}
	delete(d.standby, sa)
	d.byAddr[sa.key.Addr()] = append(d.byAddr[sa.key.Addr()], sa)
	return true
}

// uncurrent takes sa out of the current tables (mu held).
func (d *sadb) uncurrent(sa *childSA) {
	if !sa.current {
		return
	}
	sa.current = false
	if d.current[sa.key] == sa {
		delete(d.current, sa.key)
	}
	a := sa.key.Addr()
	l := slices.DeleteFunc(d.byAddr[a], func(x *childSA) bool { return x == sa })
	if len(l) == 0 {
		delete(d.byAddr, a)
	} else {
		d.byAddr[a] = l
	}
}

// retire stops sa's outbound use and schedules its inbound side's removal;
// it reports whether the peer still has a current SA.
func (d *sadb) retire(sa *childSA, until time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if sa.retired.IsZero() {
		d.uncurrent(sa)
		delete(d.standby, sa)
		sa.retired = until
		d.lingering = append(d.lingering, sa)
		l := slices.DeleteFunc(d.peers[sa.key], func(x *childSA) bool { return x == sa })
		if len(l) == 0 {
			delete(d.peers, sa.key)
		} else {
			d.peers[sa.key] = l
		}
	}
	return d.current[sa.key] != nil
}

// expire removes lingering SAs whose time is up and returns the next
// removal or activation time (zero: none) and the OnInbound SAs due to
// become current. O(SAs) for the activations: run from a timer, not per
// packet.
func (d *sadb) expire(now time.Time) (time.Time, []*childSA) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var next time.Time
	var due []*childSA
	{
		for sa := range d.standby {
			if !now.Before(sa.autoAt) {
				due = append(due, sa)
			} else if next.IsZero() || sa.autoAt.Before(next) {
				next = sa.autoAt
			}
		}
	}
	keep := d.lingering[:0]
	for _, sa := range d.lingering {
		if !now.Before(sa.retired) {
			if d.spi[sa.in.SPI()] == sa {
				delete(d.spi, sa.in.SPI())
			}
			continue
		}
		keep = append(keep, sa)
		if next.IsZero() || sa.retired.Before(next) {
			next = sa.retired
		}
	}
	clear(d.lingering[len(keep):])
	d.lingering = keep
	return next, due
}

// outbound is the current SA for a peer as the data plane names it (mu
// read-held): the exact endpoint, else the only current SA with its
// address when the data plane gave port 0 or 4500 (the SA's transport
// differs from the one the data plane chose).
func (d *sadb) outbound(peer netip.AddrPort) *childSA {
	if sa := d.current[peer]; sa != nil {
		return sa
	}
	if p := peer.Port(); p != 0 && p != esp.UDPPort {
		return nil
	}
	if l := d.byAddr[peer.Addr()]; len(l) == 1 {
		return l[0]
	}
	return nil
}

// inbound is the SA an ESP packet's SPI names (mu read-held), lingering
// ones included.
func (d *sadb) inbound(spi uint32) *childSA { return d.spi[spi] }

func (d *sadb) udpPeers() []netip.AddrPort {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var ps []netip.AddrPort
	for k, sa := range d.current {
		if sa.desc.UDP && sa.desc.BehindNAT {
			ps = append(ps, k)
		}
	}
	return ps
}
