package ikecrypto

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// keyPad is the constant of RFC 7296 §2.15, without a terminating NUL.
const keyPad = "Key Pad for IKEv2"

// MACedID computes prf(SK_p, RestOfIDPayload) (RFC 7296 §2.15): SK_pi for
// the initiator's ID, SK_pr for the responder's; idBody is the ID payload
// without its generic header (ID Type, the three RESERVED octets, the
// identification data).
func MACedID(p PRF, skp, idBody []byte) ([]byte, error) {
	if len(skp) == 0 {
		return nil, fmt.Errorf("%w: empty SK_p", ErrKeyLength)
	}
	return p.Compute(skp, idBody)
}

// PSKAuth computes the Authentication Data of an AUTH payload with method
// 2, Shared Key Message Integrity Code (RFC 7296 §2.15):
//
//	AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
//	InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
//	ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR
//
// For the initiator's AUTH: realMessage is the IKE_SA_INIT request as sent
// (the very octets, from the IKE header, after a COOKIE retry the second
// one), peerNonce the responder's nonce data, skp SK_pi and idBody the
// initiator's ID payload body; for the responder's, the IKE_SA_INIT
// response, the initiator's nonce, SK_pr and its ID. The SignedOctets are
// fed to the PRF in pieces, never concatenated.
func PSKAuth(p PRF, psk, realMessage, peerNonce, skp, idBody []byte) ([]byte, error) {
	if len(psk) == 0 {
		return nil, fmt.Errorf("%w: empty pre-shared key", ErrKeyLength)
	}
	id, err := MACedID(p, skp, idBody)
	if err != nil {
		return nil, err
	}
	defer clear(id)
	k, err := p.Compute(psk, []byte(keyPad))
	if err != nil {
		return nil, err
	}
	defer clear(k)
	return p.Compute(k, realMessage, peerNonce, id)
}

// VerifyPSKAuth checks a peer's AUTH payload of method 2 (arguments as for
// PSKAuth, from the peer's side: its IKE_SA_INIT message, our nonce, its
// SK_p and ID), comparing in constant time. It returns nil or an error
// wrapping ErrAuthMismatch (or the reason it could not compute).
func VerifyPSKAuth(p PRF, psk, realMessage, peerNonce, skp, idBody, auth []byte) error {
	want, err := PSKAuth(p, psk, realMessage, peerNonce, skp, idBody)
	if err != nil {
		return err
	}
	defer clear(want)
	if subtle.ConstantTimeCompare(want, auth) != 1 {
		return fmt.Errorf("%w: pre-shared key AUTH (%d octets)", ErrAuthMismatch, len(auth))
	}
	return nil
}

// NATDetectionLen is the length of a NAT_DETECTION_*_IP notification's data.
const NATDetectionLen = sha1.Size

// NATDetectionHash is the data of NAT_DETECTION_SOURCE_IP and
// NAT_DETECTION_DESTINATION_IP (RFC 7296 §2.23):
//
//	SHA-1 ( SPIi | SPIr | IP | Port )
//
// with the SPIs of the message's IKE header (SPIr is 0 in the first
// IKE_SA_INIT request), the source or destination address as 4 octets
// (IPv4, also when held as IPv4-mapped IPv6) or 16, and the port in
// network order. It allocates nothing.
func NATDetectionHash(spiI, spiR uint64, ip netip.Addr, port uint16) [NATDetectionLen]byte {
	var b [8 + 8 + 16 + 2]byte
	binary.BigEndian.PutUint64(b[0:], spiI)
	binary.BigEndian.PutUint64(b[8:], spiR)
	var n int // where the port goes
	if ip = ip.Unmap(); ip.Is4() {
		a := ip.As4()
		copy(b[16:], a[:])
		n = 20
	} else {
		a := ip.As16()
		copy(b[16:], a[:])
		n = 32
	}
	binary.BigEndian.PutUint16(b[n:], port)
	return sha1.Sum(b[:n+2])
}
