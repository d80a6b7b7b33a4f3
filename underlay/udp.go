//go:build linux

package underlay

import (
	"fmt"
	"net"
	"net/netip"
)

// UDPConn carries GRE in UDP (RFC 8086) on an ordinary UDP socket, the
// NAT-safe transport. Peer is the source address and port as the packet
// arrived, that is after any NAT on the way: replies must go back to exactly
// that endpoint, which is what a NAT lets in.
//
// Where the kernel has them, the socket uses UDP GSO on send and UDP GRO on
// receive (see gso_linux.go and Offloads): runs of same-sized datagrams to
// one peer travel through the kernel as one skb.
//
// Sizes (measured in private namespaces on Linux 6.18, lo at MTU 65536 and
// 1500, UDP GRO on and off; pinned by bigdatagram_linux_test.go): IP
// fragments are reassembled before UDP delivery exactly as before raw
// delivery, so GRE packets up to the IPv4 maximum arrive whole, as over raw
// GRE: 65,507 bytes here (65,535 - 20 - 8), 65,515 there (65,535 - 20). One
// byte more fails with EMSGSIZE at the sender on both. A datagram longer than
// the room after the caller's Off is dropped and counted in Dropped, with
// UDP GRO on (the reader's 64 KiB buffers hold any datagram) or off (MSG_TRUNC).
type UDPConn struct {
	*sock
}

var _ StatsConn = (*UDPConn)(nil)

// ListenUDP opens a UDP socket for GRE-in-UDP on local. Callers normally
// pass port gre.UDPPort (4754); port 0 lets the kernel pick one. An IPv4 (or
// zero) address gives an IPv4 socket; a specific IPv6 address an IPv6-only
// socket; :: a dual-stack socket, on which IPv4 peers appear as plain IPv4
// addresses.
func ListenUDP(local netip.AddrPort) (*UDPConn, error) {
	a := local.Addr().Unmap()
	network := "udp4"
	switch {
	case !a.IsValid():
		a = netip.IPv4Unspecified()
	case a.Is6() && a.IsUnspecified():
		network = "udp"
	case a.Is6():
		network = "udp6"
	}
	laddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, local.Port()))
	if network == "udp" {
		laddr.IP = nil // dual-stack wildcard
	}
	pc, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("underlay: GRE-in-UDP socket on %v: %w", local, err)
	}
	bound := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	bound = netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port())
	s, err := newSock(pc, TransportUDP, bound)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return &UDPConn{s}, nil
}
