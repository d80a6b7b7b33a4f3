package inet

import "net/netip"

// IPDestination returns the destination address of an IPv4 or IPv6 packet
// (by its version nibble), or false when pkt is too short or not IP.
func IPDestination(pkt []byte) (netip.Addr, bool) {
	return ipAddr(pkt, 16, 24)
}

// IPSource returns the source address of an IPv4 or IPv6 packet.
func IPSource(pkt []byte) (netip.Addr, bool) {
	return ipAddr(pkt, 12, 8)
}

// ipAddr reads the address at off4 in an IPv4 header or off6 in an IPv6
// header.
func ipAddr(pkt []byte, off4, off6 int) (netip.Addr, bool) {
	if len(pkt) == 0 {
		return netip.Addr{}, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) >= IPv4HeaderLen {
			return netip.AddrFrom4([4]byte(pkt[off4 : off4+4])), true
		}
	case 6:
		if len(pkt) >= 40 {
			return netip.AddrFrom16([16]byte(pkt[off6 : off6+16])), true
		}
	}
	return netip.Addr{}, false
}
