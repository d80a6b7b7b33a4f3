//go:build linux

package underlay

import (
	"fmt"
	"net"
	"net/netip"
)

// UDPConn carries datagrams in UDP on an ordinary UDP socket: GRE-in-UDP
// (RFC 8086, port 4754), the NAT-safe transport, today. Peer is the source
// address and port as the packet arrived, that is after any NAT on the way:
// replies must go back to exactly that endpoint, which is what a NAT lets in.
//
// Where the kernel has them, the socket uses UDP GSO on send and UDP GRO on
// receive (see gso_linux.go and Offloads): runs of same-sized datagrams to
// one peer travel through the kernel as one skb.
//
// Sizes (measured in private namespaces on Linux 6.18, lo at MTU 65536 and
// 1500, UDP GRO on and off; pinned by bigdatagram_linux_test.go): IP
// fragments are reassembled before UDP delivery exactly as before raw
// delivery, so datagrams up to the IPv4 maximum arrive whole, as over a raw
// IP socket: 65,507 bytes here (65,535 - 20 - 8), 65,515 there (65,535 -
// 20). One byte more fails with EMSGSIZE at the sender on both. A datagram
// longer than the room after the caller's Off is dropped and counted in
// Dropped, with UDP GRO on (the reader's 64 KiB buffers hold any datagram)
// or off (MSG_TRUNC); so is one shorter than the Spec's MinLen.
type UDPConn struct {
	*sock
}

var _ StatsConn = (*UDPConn)(nil)

// ListenUDP opens a UDP socket on local; s labels it and sets the shortest
// payload it hands on. Port 0 lets the kernel pick one (GRE-in-UDP callers
// normally pass gre.UDPPort, 4754). An IPv4 (or zero) address gives an IPv4
// socket; a specific IPv6 address an IPv6-only socket; :: a dual-stack
// socket, on which IPv4 peers appear as plain IPv4 addresses.
func ListenUDP(local netip.AddrPort, s Spec) (*UDPConn, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
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
		return nil, fmt.Errorf("underlay: %s socket on %v: %w", s.Transport.Name(), local, err)
	}
	bound := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	bound = netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port())
	sk, err := newSock(pc, s, 0, bound)
	if err != nil {
		pc.Close()
		return nil, err
	}
	return &UDPConn{sk}, nil
}
