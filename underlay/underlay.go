// Package underlay moves datagrams between this node and NBMA endpoints.
//
// A Conn is the data plane's only view of the network underneath the
// overlay, like wireguard-go's conn.Bind: the node reads and writes batches of
// datagrams and never learns whether they travel in raw IPv4 (one IP
// protocol: 47 for GRE, Cisco's wire format), in UDP (one port: 4754 for
// GRE-in-UDP, RFC 8086), or through the in-memory network used by tests
// (package underlay/memnet).
//
// The sockets are payload-agnostic: they know an IP protocol number or a UDP
// port, the shortest payload worth handing on (Spec.MinLen) and a label
// (Spec.Transport), nothing of GRE. Demultiplexing (the GRE key, later the
// ESP SPI and the non-ESP marker on UDP 4500) is done by their users above.
package underlay

import (
	"net/netip"

	"github.com/dmvpn/dmvpn/nbma"
)

// Datagram is one underlay packet. Buf[Off:Off+Len] is its payload, what the
// socket's IP protocol or UDP port carries (for GRE, the GRE header first).
// Peer is the remote NBMA endpoint: the destination on write, the source on
// read; its port is 0 on a raw IP socket.
type Datagram struct {
	Buf  []byte
	Off  int
	Len  int
	Peer netip.AddrPort
	// Shared says that other datagrams of the batch point at the same
	// payload bytes (one multicast packet replicated to many peers): a
	// Conn that transforms payloads in place (ipsec's ESP faces) must
	// work on a copy. Sockets only read payloads and ignore it.
	Shared bool
}

// Payload returns the datagram's payload.
func (d *Datagram) Payload() []byte { return d.Buf[d.Off : d.Off+d.Len] }

// Conn is a batched underlay socket. Implementations must be safe for one
// concurrent reader and any number of concurrent writers.
type Conn interface {
	// ReadBatch blocks until at least one datagram arrives, then fills
	// up to len(ds) of them and returns how many. The caller owns each
	// ds[i].Buf and sets ds[i].Off to the headroom it wants in front of the
	// payload; an implementation may move Off forward (never back) and
	// sets Len and Peer. After Close it returns net.ErrClosed.
	ReadBatch(ds []Datagram) (int, error)
	// WriteBatch sends ds[i].Payload() to ds[i].Peer for every i and
	// returns the number sent. An error for one datagram does not stop the
	// rest; the first error is returned.
	WriteBatch(ds []Datagram) (int, error)
	// BatchSize is the largest batch worth passing to ReadBatch/WriteBatch.
	BatchSize() int
	// Transport is the label the Conn was opened with: how the NBMA
	// network carries what it moves. The Conn does not interpret it.
	Transport() nbma.Transport
	// LocalAddr is the local NBMA endpoint (port 0 on a raw IP socket).
	LocalAddr() netip.AddrPort
	Close() error
}

// Spec is what a socket needs to know of its payload, and all it knows.
type Spec struct {
	// Transport labels the socket: Conn.Transport returns it and error
	// messages name it (nbma.Transport.Name). It must not be zero.
	Transport nbma.Transport
	// MinLen is the shortest payload ReadBatch hands on (GRE: gre.MinLen,
	// the smallest GRE header); shorter datagrams are dropped and counted
	// in ConnStats.Dropped. 0 to 65,535.
	MinLen int
}

// Deprecated aliases, kept for one release while code in flight moves to
// package nbma; nothing in this module uses them.
type (
	// Deprecated: use nbma.Transport.
	Transport = nbma.Transport
)

const (
	// Deprecated: use nbma.TransportGRE.
	TransportGRE = nbma.TransportGRE
	// Deprecated: use nbma.TransportUDP.
	TransportUDP = nbma.TransportUDP
)

// ParseTransport parses the config spelling of a transport.
//
// Deprecated: use nbma.ParseTransport.
func ParseTransport(s string) (Transport, error) { return nbma.ParseTransport(s) }
