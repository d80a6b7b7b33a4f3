// Package esp is IPsec's Encapsulating Security Payload (RFC 4303) for the
// data plane: an SA (security association) seals packets into ESP and opens
// them, in place, with no allocation per packet. It is a pure codec and
// cipher: no sockets, no clock, no goroutines, no policy. IKEv2 (which makes
// the keys) and the data plane (which owns the buffers and the outer IP or
// UDP header) are the callers.
//
// # What is where in the buffer
//
// Seal takes a payload already in the caller's buffer at buf[off:off+n] and
// builds the ESP packet around it without moving it:
//
//	           start                     off                        off+n
//	buf: ... | SPI | Seq | IV             | payload ................. | Padding | PL | NH | ICV | ...
//	         |<-- HeaderLen: 8 + IV ----->|<---------- n ------------>|<------ TrailerLen(n) ------>|
//	         |<------------------------------- length ---------------------------------------->|
//
// Field by field:
//
//   - SPI (4 octets) and Seq, the low 32 bits of the sequence number (4).
//   - IV: 8 octets for AES-GCM (RFC 4106 §3.1) and ChaCha20-Poly1305
//     (RFC 7634 §2), the 64-bit sequence number itself, which never repeats
//     within an SA (all a counter-mode nonce needs); 16 random octets for
//     AES-CBC (RFC 3602 §3, crypto/rand: the IV must be unpredictable).
//   - Padding 1, 2, 3, … (RFC 4303 §2.4), the least that makes payload ‖
//     padding ‖ PL ‖ NH a multiple of 16 for AES-CBC and of 4 for the AEAD
//     transforms; Pad Length; Next Header: 47 (GRE) in transport mode, 4 or
//     41 (IPv4, IPv6) in tunnel mode.
//   - ICV: 16 octets for the AEAD transforms; for AES-CBC the HMAC
//     truncated to half its size (RFC 2404, RFC 4868: 12, 16, 24, 32).
//
// The payload through Next Header is encrypted in place. What is
// authenticated: for AES-CBC, HMAC over SPI ‖ Seq ‖ IV ‖ ciphertext, then,
// with extended sequence numbers, the high 32 bits of the sequence number,
// which are not sent (RFC 4303 §2.2.1, §3.3.2.1); for AES-GCM and
// ChaCha20-Poly1305 the AAD is SPI ‖ Seq, or SPI ‖ Seq-high ‖ Seq-low with
// ESN (RFC 4106 §5, RFC 7634 §2.1), and the nonce is the 4-octet salt (the
// last 4 octets of the key material) ‖ IV.
//
// Open does the reverse in the same buffer: the ESP packet is pkt (from the
// SPI to the end of the ICV); it is verified and decrypted in place and the
// inner packet is pkt[off:off+n], off being HeaderLen.
//
// # Why in place
//
// A packet is read once into a buffer with headroom (the data plane already
// keeps 64 octets in front of every packet for the GRE and outer headers)
// and leaves from the same buffer, like GRE encapsulation does: a copy would
// need a second buffer per packet in flight and one more pass over the
// bytes. crypto/cipher's AEADs and CBC modes work in place (dst =
// plaintext[:0], overlapping exactly), and the HMAC, the nonce and AAD
// scratch and the cipher state are allocated once per SA, so Seal and Open
// allocate nothing.
//
// # The headroom/tailroom contract
//
// Seal needs Transform.HeaderLen() octets before off (16 for AEAD, 24 for
// AES-CBC; MaxHeaderLen for any) and Transform.TrailerLen(n) after off+n
// (MaxTrailerLen for any transform and length: 49); it fails with
// ErrNoHeadroom or ErrNoTailroom, touching nothing, otherwise. The ESP packet
// is n + Transform.Overhead(n) octets; Transform.MaxPayload(mtu) is the
// largest n that fits a given size. Outer headers (IP, and UDP 4500 for NAT
// traversal, RFC 3948) go in front of start and are the caller's.
//
// # What the caller does
//
//   - Demultiplexing: read the SPI with ParseHeader and find the inbound SA
//     (an unknown SPI is the caller's to count and drop; RFC 4303 §3.4.2);
//     UDP 4500 datagrams are classified with ClassifyUDP (RFC 3948: ESP, IKE
//     behind the non-ESP marker, or a NAT keepalive).
//   - Replay: every inbound SA has an anti-replay window (ipsec/replay);
//     Open checks it before the ICV and updates it after, as RFC 4303
//     §3.4.3 demands.
//   - Lifetimes: the SA counts packets and octets (of payload) and reports
//     SoftExpired (time to rekey) and HardExpired (Seal and Open refuse with
//     ErrLifetimeExpired); time limits are the caller's (IKEv2 holds the
//     clock). The outbound sequence number never cycles (RFC 4303 §3.3.3):
//     after 2³²−1 packets (2⁶⁴−1 with ESN) Seal returns ErrSeqExhausted and
//     the SA must be replaced; SoftExpired turns true when 7/8 of the space
//     is used, so a rekey starts well before.
//   - Next Header 59 (a dummy packet, RFC 4303 §2.6) is returned like any
//     other; the caller drops it.
//   - Rekey: create the new SAs, install the inbound one before the peer may
//     use it, switch outbound, and keep the old inbound SA a little while
//     for packets in flight.
//
// An SA may be used from several goroutines: Seal and Open serialize on the
// SA's mutex (the scratch space and the HMAC state are per SA), so one SA
// runs on one core at a time — the data plane has one goroutine per
// direction anyway, and a peer that needs more cores needs more SAs. The
// buffers passed to Seal and Open must not be touched by anyone else during
// the call. After an error, Open may have changed the packet's bytes (an
// AEAD zeroes what it decrypted when the tag does not match).
package esp

import "encoding/binary"

// Next Header values (IANA protocol numbers) that DMVPN uses.
const (
	NextHeaderIPv4 = 4  // tunnel mode, IPv4 inner packet
	NextHeaderGRE  = 47 // transport mode: the GRE packet of the mGRE tunnel
	NextHeaderIPv6 = 41 // tunnel mode, IPv6 inner packet
	NextHeaderNone = 59 // a dummy packet (RFC 4303 §2.6): drop it
)

// IPProto is ESP's IP protocol number.
const IPProto = 50

// Error is why an ESP operation failed. The values are distinct, compare
// with == or errors.Is, can index a counter array (ErrorCount entries, 0
// unused), and returning one allocates nothing.
type Error uint8

// Reasons for failing.
const (
	// ErrTruncated: the packet is shorter than the SA's transform needs.
	ErrTruncated Error = iota + 1
	// ErrBadLength: the ciphertext is not a whole number of cipher blocks,
	// or Seal's payload does not lie inside its buffer.
	ErrBadLength
	// ErrSPIMismatch: the packet's SPI is not the SA's (the caller looked
	// up the wrong SA).
	ErrSPIMismatch
	// ErrAuth: the ICV does not verify (a forged, corrupted or wrongly
	// keyed packet, or with ESN a wrongly inferred high half).
	ErrAuth
	// ErrBadPadding: authentic but malformed: the Pad Length runs past the
	// payload or the padding is not 1, 2, 3, … (RFC 4303 §2.4).
	ErrBadPadding
	// ErrReplayed: the sequence number was accepted before.
	ErrReplayed
	// ErrTooOld: the sequence number is below the replay window.
	ErrTooOld
	// ErrNoHeadroom: Seal has not HeaderLen octets before the payload.
	ErrNoHeadroom
	// ErrNoTailroom: Seal has not TrailerLen octets after the payload.
	ErrNoTailroom
	// ErrSeqExhausted: the outbound sequence number would cycle; the SA
	// must be rekeyed (RFC 4303 §3.3.3).
	ErrSeqExhausted
	// ErrLifetimeExpired: the SA passed its hard packet or octet limit.
	ErrLifetimeExpired
	// ErrDirection: Seal on an inbound SA or Open on an outbound one.
	ErrDirection
	// ErrTransform: the transform is not one this package implements (New
	// wraps it with the reason).
	ErrTransform
	// ErrConfig: a bad key length, SPI or limit (New wraps it with the
	// reason).
	ErrConfig

	// ErrorCount is one more than the largest Error.
	ErrorCount = int(ErrConfig) + 1
)

var errorText = [ErrorCount]string{
	ErrTruncated:       "esp: packet too short",
	ErrBadLength:       "esp: bad length",
	ErrSPIMismatch:     "esp: SPI is not the SA's",
	ErrAuth:            "esp: integrity check failed",
	ErrBadPadding:      "esp: bad padding",
	ErrReplayed:        "esp: replayed sequence number",
	ErrTooOld:          "esp: sequence number below the replay window",
	ErrNoHeadroom:      "esp: not enough headroom for the ESP header",
	ErrNoTailroom:      "esp: not enough tailroom for the ESP trailer",
	ErrSeqExhausted:    "esp: sequence numbers exhausted, rekey the SA",
	ErrLifetimeExpired: "esp: SA lifetime expired",
	ErrDirection:       "esp: wrong direction for this SA",
	ErrTransform:       "esp: unsupported transform",
	ErrConfig:          "esp: bad SA configuration",
}

func (e Error) Error() string {
	if int(e) < len(errorText) && errorText[e] != "" {
		return errorText[e]
	}
	return "esp: unknown error"
}

// ParseHeader reads the SPI and the (low 32 bits of the) sequence number at
// the start of an ESP packet, for the caller to find the SA. It fails only
// with ErrTruncated.
func ParseHeader(b []byte) (spi, seq uint32, err error) {
	if len(b) < HeaderFixedLen {
		return 0, 0, ErrTruncated
	}
	return binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:]), nil
}
