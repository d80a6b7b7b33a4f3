//go:build linux

package underlay

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// IPConn carries the datagrams of one IP protocol directly in IPv4 over a
// raw socket: GRE (protocol 47, Cisco's wire format) today, ESP (50) later.
// It needs root (CAP_NET_RAW).
//
// The kernel builds the outer IPv4 header on send (no IP_HDRINCL). On
// receive Linux hands a raw socket the whole datagram, IPv4 header included;
// ReadBatch checks and skips it (protocol, fragment bits, destination, the
// Spec's MinLen), so ds[i].Off ends up at the payload, and sets Peer to the
// IPv4 source with port 0.
//
// Kernel behaviour to know (checked by this package's tests, or by hand, in
// a private network namespace on Linux 6.18; measured with protocol 47, and
// the same for any protocol, raw delivery being by protocol number):
//   - Every raw socket for protocol N in the namespace gets a copy of every
//     protocol-N packet whose destination matches its bound address: an
//     unbound socket (local unspecified) sees them to every local address,
//     a socket bound to an address only those to that address (the kernel
//     filters, so ReadBatch's own destination check is only a guard). A
//     socket also receives what it sends to its own address. Sockets for
//     other protocols see none of it.
//   - A packet to a local address that no protocol-N socket matches (none
//     open, or only sockets bound to other addresses) is answered with ICMP
//     protocol unreachable when the kernel has no handler of its own for N
//     (none for GRE here): open the socket before advertising the address.
//   - Send: the kernel uses the default path-MTU mode (IP_PMTUDISC_WANT), so
//     a datagram larger than the route MTU is fragmented locally rather than
//     refused; 65,516 bytes or more fail with EMSGSIZE.
//   - Receive: fragments are reassembled before raw delivery, and the header
//     then shows no fragment bits; ReadBatch still drops anything marked as
//     a fragment.
type IPConn struct {
	*sock
}

var _ StatsConn = (*IPConn)(nil)

// ListenIP opens a raw IPv4 socket for IP protocol proto (1 to 254) on
// local. The zero Addr or 0.0.0.0 receives what is sent to any local
// address. s labels the socket and sets the shortest payload it hands on.
func ListenIP(local netip.Addr, proto int, s Spec) (*IPConn, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if proto < 1 || proto > 254 {
		// 0 is IPPROTO_IP, not a protocol on the wire; 255 (IPPROTO_RAW)
		// sockets send only.
		return nil, fmt.Errorf("underlay: raw %s socket: IP protocol %d out of range (valid: 1 to 254)", s.Transport.Name(), proto)
	}
	if !local.IsValid() {
		local = netip.IPv4Unspecified()
	}
	local = local.Unmap()
	if !local.Is4() {
		return nil, fmt.Errorf("underlay: raw %s needs an IPv4 local address, not %v", s.Transport.Name(), local)
	}
	pc, err := net.ListenPacket("ip4:"+strconv.Itoa(proto), local.String())
	if err != nil {
		return nil, fmt.Errorf("underlay: raw %s socket on %v: %w", s.Transport.Name(), local, err)
	}
	sk, err := newSock(pc, s, uint8(proto), netip.AddrPortFrom(local, 0))
	if err != nil {
		pc.Close()
		return nil, err
	}
	return &IPConn{sk}, nil
}
