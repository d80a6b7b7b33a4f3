package underlay

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 header fields used by the raw IP receive path (RFC 791).
const (
	ipv4MinHeaderLen = 20
	ipv4FragMask     = 0x3fff // MF flag and fragment offset
)

// parseIPv4 checks the IPv4 header at the front of p, a packet read from a
// raw IP socket for protocol proto (Linux hands such sockets the whole
// datagram, IPv4 header included, with the total length in network byte
// order). It returns the offset and length of the payload behind the header
// and the source address. ok is false for anything the data path must not
// see: not IPv4 or not protocol proto, a malformed header, a fragment (the
// kernel reassembles before raw delivery, so this is only a guard), a
// destination other than local when local is a specific address, or a
// payload shorter than minLen.
func parseIPv4(p []byte, local netip.Addr, proto uint8, minLen int) (off, n int, src netip.Addr, ok bool) {
	if len(p) < ipv4MinHeaderLen || p[0]>>4 != 4 {
		return 0, 0, netip.Addr{}, false
	}
	hl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	switch {
	case hl < ipv4MinHeaderLen, hl > len(p),
		total < hl, total > len(p),
		binary.BigEndian.Uint16(p[6:8])&ipv4FragMask != 0,
		p[9] != proto,
		total-hl < minLen:
		return 0, 0, netip.Addr{}, false
	}
	if local.IsValid() && !local.IsUnspecified() && netip.AddrFrom4([4]byte(p[16:20])) != local {
		return 0, 0, netip.Addr{}, false
	}
	return hl, total - hl, netip.AddrFrom4([4]byte(p[12:16])), true
}
