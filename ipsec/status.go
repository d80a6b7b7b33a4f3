package ipsec

import (
	"net/netip"
	"sort"
	"sync/atomic"
	"time"
)

type counters struct {
	sealed, opened, queued, dequeued, queueDrops, waitExpired atomic.Uint64
	tooBig, sealErrors, writeErrors, activated                atomic.Uint64
	malformed, unknownSPI, wrongSource, replayed, authFailed  atomic.Uint64
	openErrors, badInner, dummies, keepalivesRx, keepalivesTx atomic.Uint64
	ikeRx                                                     atomic.Uint64
}

// Stats are the Layer's counters. Every datagram the Layer does not pass
// on is counted under exactly one reason.
type Stats struct {
	// Sealed and Opened count ESP packets made and accepted.
	Sealed, Opened uint64
	// Queued counts datagrams that waited for an SA, Dequeued those sent
	// when it came; QueueDrops those refused (too many peers waiting),
	// WaitExpired those dropped when their SA did not come in time.
	Queued, Dequeued, QueueDrops, WaitExpired uint64
	// TooBig: longer than a copy buffer (9216 octets); SealErrors: the SA
	// refused (lifetime, sequence numbers exhausted); WriteErrors: the
	// socket refused.
	TooBig, SealErrors, WriteErrors uint64
	// Inbound drops: Malformed (not ESP), UnknownSPI, WrongSource (an
	// SA's SPI from another address or encapsulation), Replayed (replay
	// window), AuthFailed (ICV), OpenErrors (padding, lifetime, ...),
	// BadInner (tunnel mode inner header, unknown next header), Dummies
	// (next header 59).
	Malformed, UnknownSPI, WrongSource, Replayed, AuthFailed uint64
	OpenErrors, BadInner, Dummies                            uint64
	// KeepalivesRx/Tx: NAT keepalives; IKERx: IKE messages on UDP 4500
	// handed to OnIKE; Activated: SAs made current.
	KeepalivesRx, KeepalivesTx, IKERx, Activated uint64
	// SAs is the number of installed SAs (lingering ones included),
	// Waiting the peers waiting for one.
	SAs, Waiting int
}

// Stats returns a snapshot of the counters.
func (l *Layer) Stats() Stats {
	c := &l.c
	l.db.mu.RLock()
	sas := len(l.db.spi)
	l.db.mu.RUnlock()
	return Stats{
		Sealed: c.sealed.Load(), Opened: c.opened.Load(), Queued: c.queued.Load(), Dequeued: c.dequeued.Load(),
		QueueDrops: c.queueDrops.Load(), WaitExpired: c.waitExpired.Load(), TooBig: c.tooBig.Load(),
		SealErrors: c.sealErrors.Load(), WriteErrors: c.writeErrors.Load(), Malformed: c.malformed.Load(),
		UnknownSPI: c.unknownSPI.Load(), WrongSource: c.wrongSource.Load(), Replayed: c.replayed.Load(),
		AuthFailed: c.authFailed.Load(), OpenErrors: c.openErrors.Load(), BadInner: c.badInner.Load(),
		Dummies: c.dummies.Load(), KeepalivesRx: c.keepalivesRx.Load(), KeepalivesTx: c.keepalivesTx.Load(),
		IKERx: c.ikeRx.Load(), Activated: c.activated.Load(), SAs: sas, Waiting: l.wait.len(),
	}
}

// SAInfo is one installed Child SA as `show ipsec` reports it.
type SAInfo struct {
	Peer         netip.AddrPort `json:"peer"`
	UDP          bool           `json:"udp_encap"`
	Mode         string         `json:"mode"`
	Local        netip.Addr     `json:"local"`
	Remote       netip.Addr     `json:"remote"`
	InboundSPI   uint32         `json:"inbound_spi"`
	OutboundSPI  uint32         `json:"outbound_spi"`
	Transform    string         `json:"transform"`
	ESN          bool           `json:"esn"`
	ReplayWindow int            `json:"replay_window,omitempty"`
	State        string         `json:"state"` // current, standby, retiring
	Created      time.Time      `json:"created"`
	Lifetime     time.Duration  `json:"lifetime_ns,omitempty"`
	InPackets    uint64         `json:"in_packets"`
	InBytes      uint64         `json:"in_bytes"`
	OutPackets   uint64         `json:"out_packets"`
	OutBytes     uint64         `json:"out_bytes"`
	ReplayDrops  uint64         `json:"replay_drops"`
	AuthFailures uint64         `json:"auth_failures"`
	SoftExpired  bool           `json:"soft_expired,omitempty"`
}

// SAs lists the installed SAs, by peer then age (O(SAs): for show).
func (l *Layer) SAs() []SAInfo {
	type snap struct {
		sa      *childSA
		current bool
		retired bool
	}
	l.db.mu.RLock()
	ss := make([]snap, 0, len(l.db.spi))
	for _, sa := range l.db.spi {
		ss = append(ss, snap{sa, sa.current, !sa.retired.IsZero()})
	}
	l.db.mu.RUnlock()
	out := make([]SAInfo, 0, len(ss))
	for _, s := range ss {
		sa := s.sa
		inP, inB := sa.in.Usage()
		outP, outB := sa.out.Usage()
		state := "standby"
		switch {
		case s.retired:
			state = "retiring"
		case s.current:
			state = "current"
		}
		mode := "transport"
		if sa.desc.Tunnel {
			mode = "tunnel"
		}
		out = append(out, SAInfo{Peer: sa.key, UDP: sa.desc.UDP, Mode: mode, Local: sa.desc.Local, Remote: sa.desc.Remote,
			InboundSPI: sa.in.SPI(), OutboundSPI: sa.out.SPI(), Transform: sa.in.Transform().String(), ESN: sa.in.ESN(),
			ReplayWindow: sa.desc.In.ReplayWindow, State: state, Created: sa.created, Lifetime: sa.desc.Lifetime,
			InPackets: inP, InBytes: inB, OutPackets: outP, OutBytes: outB,
			ReplayDrops: sa.replayDrops.Load(), AuthFailures: sa.authFails.Load(), SoftExpired: sa.out.SoftExpired() || sa.in.SoftExpired()})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Peer != out[j].Peer {
			return out[i].Peer.Addr().Less(out[j].Peer.Addr()) || (out[i].Peer.Addr() == out[j].Peer.Addr() && out[i].Peer.Port() < out[j].Peer.Port())
		}
		return out[i].Created.Before(out[j].Created)
	})
	return out
}

// PeerState is what `show dmvpn` says of a peer's protection: "up" (a
// current SA), "waiting" (packets wait for one) or "none".
func (l *Layer) PeerState(peer netip.AddrPort) string {
	if l.Up(peer) {
		return "up"
	}
	if l.wait.has(peer) {
		return "waiting"
	}
	return "none"
}
