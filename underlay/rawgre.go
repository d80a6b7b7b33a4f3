//go:build linux

package underlay

import (
	"fmt"
	"net"
	"net/netip"
)

// GREConn carries GRE directly in IPv4 (IP protocol 47, Cisco's wire format)
// over a raw socket. It needs root (CAP_NET_RAW).
//
// The kernel builds the outer IPv4 header on send (no IP_HDRINCL). On
// receive Linux hands a raw socket the whole datagram, IPv4 header included;
// ReadBatch checks and skips it, so ds[i].Off ends up at the GRE header, and
// sets Peer to the IPv4 source with port 0.
//
// Kernel behaviour to know (checked by this package's tests, or by hand, in
// a private network namespace on Linux 6.18):
//   - Every raw socket for protocol 47 in the namespace gets a copy of every
//     GRE packet whose destination matches its bound address: an unbound
//     socket (local unspecified) sees GRE to every local address, a socket
//     bound to an address only GRE to that address (the kernel filters, so
//     ReadBatch's own destination check is only a guard). A socket also
//     receives GRE it sends to its own address.
//   - GRE to a local address that no protocol-47 socket matches (none open,
//     or only sockets bound to other addresses) is answered with ICMP
//     protocol unreachable, as there is no kernel GRE here: open the socket
//     before advertising the address.
//   - Send: the kernel uses the default path-MTU mode (IP_PMTUDISC_WANT), so
//     a datagram larger than the route MTU is fragmented locally rather than
//     refused; 65,516 bytes or more fail with EMSGSIZE.
//   - Receive: fragments are reassembled before raw delivery, and the header
//     then shows no fragment bits; ReadBatch still drops anything marked as
//     a fragment.
type GREConn struct {
	*sock
}

var _ StatsConn = (*GREConn)(nil)

// ListenGRE opens a raw IPv4 protocol-47 socket on local. The zero Addr or
// 0.0.0.0 receives GRE sent to any local address.
func ListenGRE(local netip.Addr) (*GREConn, error) {
	if !local.IsValid() {
		local = netip.IPv4Unspecified()
	}
	local = local.Unmap()
	if !local.Is4() {
		return nil, fmt.Errorf("underlay: raw GRE needs an IPv4 local address, not %v", local)
	}
	pc, err := net.ListenPacket("ip4:47", local.String())
	if err != nil {
		return nil, fmt.Errorf("underlay: raw GRE socket on %v: %w", local, err)
	}
	s, err := newSock(pc, TransportGRE, netip.AddrPortFrom(local, 0))
	if err != nil {
		pc.Close()
		return nil, err
	}
	return &GREConn{s}, nil
}
