package ikev2

import "github.com/dmvpn/dmvpn/esp"

// NAT traversal (RFC 3948): on NATTPort, IKE messages share the socket with
// ESP and keepalives, and follow a 4-octet non-ESP marker of zeros. The
// classification is esp's (esp.ClassifyUDP), which the ESP receive path
// uses too, so both sides of the port agree on every datagram.

// NATTPort is the NAT-traversal port, for IKE and ESP alike.
const NATTPort = esp.UDPPort

// NonESPMarkerLen is the length of the marker in front of an IKE message on
// NATTPort.
const NonESPMarkerLen = esp.NonESPMarkerLen

// FromNATT returns the IKE message in the payload of a UDP datagram to or
// from NATTPort, without the non-ESP marker. ok is false when the datagram
// is not IKE: ESP, a NAT keepalive, or too short (esp.ClassifyUDP).
func FromNATT(payload []byte) (msg []byte, ok bool) {
	if esp.ClassifyUDP(payload) != esp.UDPIKE {
		return nil, false
	}
	return payload[NonESPMarkerLen:], true
}

// AppendNonESPMarker appends the non-ESP marker; build the message after it
// (NewMessage(AppendNonESPMarker(buf), &h)) to send it on NATTPort.
func AppendNonESPMarker(dst []byte) []byte {
	return append(dst, 0, 0, 0, 0)
}
