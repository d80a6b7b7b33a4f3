package inet

import (
	"encoding/binary"
	"net/netip"
)

// IPv4HeaderLen is the length of an IPv4 header without options.
const IPv4HeaderLen = 20

// UDPHeaderLen is the length of a UDP header.
const UDPHeaderLen = 8

// Protocol numbers used by the underlay.
const (
	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
	ProtoGRE  = 47
	ProtoESP  = 50
)

// PutIPv4Header writes a 20-byte IPv4 header (no options, TTL 64, DF clear)
// for a payload of payloadLen bytes into b and fills in its checksum.
func PutIPv4Header(b []byte, src, dst netip.Addr, proto uint8, payloadLen int, id uint16) {
	_ = b[IPv4HeaderLen-1]
	b[0] = 0x45
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:], uint16(IPv4HeaderLen+payloadLen))
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], 0)
	b[8] = 64
	b[9] = proto
	b[10], b[11] = 0, 0
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	binary.BigEndian.PutUint16(b[10:], Checksum(b[:IPv4HeaderLen]))
}

// PutUDPHeader writes a UDP header for a payload of payloadLen bytes. The
// checksum is left zero, which RFC 768 allows over IPv4 and RFC 8086 allows
// for GRE-in-UDP over IPv4.
func PutUDPHeader(b []byte, srcPort, dstPort uint16, payloadLen int) {
	_ = b[UDPHeaderLen-1]
	binary.BigEndian.PutUint16(b[0:], srcPort)
	binary.BigEndian.PutUint16(b[2:], dstPort)
	binary.BigEndian.PutUint16(b[4:], uint16(UDPHeaderLen+payloadLen))
	binary.BigEndian.PutUint16(b[6:], 0)
}
