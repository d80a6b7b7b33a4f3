package esp

// UDP encapsulation of ESP for NAT traversal (RFC 3948): ESP packets and
// IKE messages share UDP port 4500. What tells them apart is the first four
// octets of the UDP payload: an ESP packet starts with its SPI, never 0; an
// IKE message on this port starts with the four zero octets of the non-ESP
// marker; and a NAT keepalive is a single 0xFF octet (RFC 3948 §2.2-§2.3).

// UDPPort is the NAT-traversal port, for IKE and ESP alike.
const UDPPort = 4500

// NonESPMarkerLen is the length of the zero marker in front of IKE messages
// on UDPPort.
const NonESPMarkerLen = 4

// UDPKind is what a UDP payload on port 4500 carries.
type UDPKind uint8

// Kinds of UDP 4500 payload.
const (
	// UDPInvalid: too short to be anything (or an ESP header cut short);
	// drop it.
	UDPInvalid UDPKind = iota
	// UDPESP: an ESP packet, starting at the first octet.
	UDPESP
	// UDPIKE: an IKE message after the NonESPMarkerLen zero octets.
	UDPIKE
	// UDPKeepalive: a NAT keepalive (one 0xFF octet); ignore it.
	UDPKeepalive
)

func (k UDPKind) String() string {
	switch k {
	case UDPESP:
		return "esp"
	case UDPIKE:
		return "ike"
	case UDPKeepalive:
		return "nat-keepalive"
	}
	return "invalid"
}

// ClassifyUDP says what the payload of a UDP datagram to or from UDPPort is.
func ClassifyUDP(payload []byte) UDPKind {
	switch {
	case len(payload) == 1 && payload[0] == 0xff:
		return UDPKeepalive
	case len(payload) < NonESPMarkerLen:
		return UDPInvalid
	case payload[0]|payload[1]|payload[2]|payload[3] == 0:
		return UDPIKE
	case len(payload) < HeaderFixedLen:
		return UDPInvalid
	}
	return UDPESP
}
