package underlay

import "sync/atomic"

// ConnStats counts the packets one Conn has handled. The socket Conns
// (IPConn, UDPConn) and the in-memory network's Conn all report it through
// a Stats method; see StatsConn.
type ConnStats struct {
	// Sent is the number of datagrams WriteBatch handed on (to the kernel,
	// or to the in-memory network, which may still lose them).
	Sent uint64
	// Received is the number of datagrams ReadBatch returned.
	Received uint64
	// Dropped counts datagrams that never made it: for a socket, packets
	// the kernel delivered that ReadBatch discarded (not addressed to this
	// Conn, IPv4 fragments, shorter than the Spec's MinLen, truncated by a
	// small buffer); for the in-memory network, packets this Conn sent that the
	// network dropped (loss, filter, NAT, nobody listening, full queue) plus
	// packets addressed to it that it could not take.
	Dropped uint64
	// SendErrors counts datagrams WriteBatch could not send (bad peer
	// address, or an error from sendmmsg).
	SendErrors uint64

	// The rest is kept by the socket Conns only (zero elsewhere).

	// SendCalls is the number of sendmmsg system calls, SendMsgs the
	// messages they carried: one datagram each, or with UDP GSO a run of
	// datagrams sent as one super-datagram (one skb), so Sent/SendMsgs is
	// the datagrams per skb. GSOMsgs counts the messages of more than one
	// datagram; GSOFallbacks those the kernel refused, resent one datagram
	// per message.
	SendCalls, SendMsgs, GSOMsgs, GSOFallbacks uint64
	// RecvCalls is the number of recvmmsg system calls, RecvMsgs the
	// messages they returned. With UDP GRO a message may hold several
	// datagrams: GROMsgs counts those, GROSegments the datagrams in them.
	RecvCalls, RecvMsgs, GROMsgs, GROSegments uint64
}

// StatsConn is a Conn that counts its packets. Every Conn in this module
// implements it.
type StatsConn interface {
	Conn
	Stats() ConnStats
}

// connCounters is the lock-free form of ConnStats, updated once per batch.
type connCounters struct {
	sent, received, dropped, sendErrors        atomic.Uint64
	sendCalls, sendMsgs, gsoMsgs, gsoFallbacks atomic.Uint64
	recvCalls, recvMsgs, groMsgs, groSegments  atomic.Uint64
}

func (c *connCounters) snapshot() ConnStats {
	return ConnStats{
		Sent:       c.sent.Load(),
		Received:   c.received.Load(),
		Dropped:    c.dropped.Load(),
		SendErrors: c.sendErrors.Load(),

		SendCalls:    c.sendCalls.Load(),
		SendMsgs:     c.sendMsgs.Load(),
		GSOMsgs:      c.gsoMsgs.Load(),
		GSOFallbacks: c.gsoFallbacks.Load(),
		RecvCalls:    c.recvCalls.Load(),
		RecvMsgs:     c.recvMsgs.Load(),
		GROMsgs:      c.groMsgs.Load(),
		GROSegments:  c.groSegments.Load(),
	}
}
