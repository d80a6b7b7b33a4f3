// Package underlay moves GRE packets between this node and NBMA endpoints.
//
// A Conn is the data plane's only view of the network underneath the
// overlay, like wireguard-go's conn.Bind: the node reads and writes batches of
// datagrams and never learns whether they travel as raw IPv4 GRE (protocol
// 47, Cisco's wire format), as GRE-in-UDP (RFC 8086, port 4754), or through
// the in-memory network used by tests (package underlay/memnet).
package underlay

import (
	"fmt"
	"net/netip"
)

// Transport says how GRE packets are carried on the NBMA network.
type Transport uint8

const (
	// TransportGRE is GRE directly over IPv4, IP protocol 47.
	TransportGRE Transport = iota + 1
	// TransportUDP is GRE-in-UDP, RFC 8086, destination port 4754.
	TransportUDP
)

func (t Transport) String() string {
	switch t {
	case TransportGRE:
		return "gre"
	case TransportUDP:
		return "udp"
	}
	return fmt.Sprintf("transport(%d)", uint8(t))
}

// ParseTransport parses the config spelling of a transport.
func ParseTransport(s string) (Transport, error) {
	switch s {
	case "gre":
		return TransportGRE, nil
	case "udp":
		return TransportUDP, nil
	}
	return 0, fmt.Errorf("unknown transport %q (valid: gre, udp)", s)
}

// Datagram is one underlay packet. Buf[Off:Off+Len] is the GRE packet (GRE
// header first). Peer is the remote NBMA endpoint: the destination on write,
// the source on read; its port is 0 for raw GRE.
type Datagram struct {
	Buf  []byte
	Off  int
	Len  int
	Peer netip.AddrPort
}

// Payload returns the GRE packet.
func (d *Datagram) Payload() []byte { return d.Buf[d.Off : d.Off+d.Len] }

// Conn is a batched underlay socket. Implementations must be safe for one
// concurrent reader and any number of concurrent writers.
type Conn interface {
	// ReadBatch blocks until at least one datagram arrives, then fills
	// up to len(ds) of them and returns how many. The caller owns each
	// ds[i].Buf and sets ds[i].Off to the headroom it wants in front of the
	// GRE packet; an implementation may move Off forward (never back) and
	// sets Len and Peer. After Close it returns net.ErrClosed.
	ReadBatch(ds []Datagram) (int, error)
	// WriteBatch sends ds[i].Payload() to ds[i].Peer for every i and
	// returns the number sent. An error for one datagram does not stop the
	// rest; the first error is returned.
	WriteBatch(ds []Datagram) (int, error)
	// BatchSize is the largest batch worth passing to ReadBatch/WriteBatch.
	BatchSize() int
	// Transport is how this Conn carries GRE.
	Transport() Transport
	// LocalAddr is the local NBMA endpoint (port 0 for raw GRE).
	LocalAddr() netip.AddrPort
	Close() error
}
