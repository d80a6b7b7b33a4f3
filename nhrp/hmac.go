package nhrp

// Keyed authentication: the RFC 2332 §5.3.4 authentication extension with an
// HMAC-SHA-256-128 over the packet, for clouds that want more than Cisco's
// 8-byte clear-text password.
//
// Wire layout of the extension (type 7, compulsory bit set, so 0x8007):
//
//	offset  size  field
//	0       2     Reserved, 0
//	2       2     SPI = key ID, 2..65535 (1 is Cisco's clear-text form)
//	4       A     Src Addr: the signer's protocol (tunnel) address; A is the
//	              packet's source protocol address length (4 or 16), as
//	              RFC 2332 §5.3.4 says and Wireshark dissects it
//	4+A     8     sequence number, big endian: the signer's clock in Unix
//	              nanoseconds, strictly increasing per signer
//	12+A    16    MAC: HMAC-SHA-256 truncated to its first 128 bits
//	              (RFC 4868 §2.3), keyed with the secret the SPI names
//
// so the extension value is 32 bytes long with IPv4 protocol addresses and 44
// with IPv6. The MAC covers the NHRP packet as sent (packet size bytes:
// fixed header, mandatory part, every extension), with the checksum field
// (offset 12, 2 bytes) and the 16 MAC bytes taken as zero. Authentication is
// hop by hop (RFC 2332 §5.3.4): a forwarding NHS verifies, then re-signs the
// packet it forwards, so the hop count is covered as sent.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/netip"

	"github.com/dmvpn/dmvpn/internal/inet"
)

// HMAC extension layout.
const (
	// MinHMACKeyID is the smallest key ID (SPI) of a keyed authentication
	// extension: 0 is left unused and 1 is Cisco's clear-text form
	// (CiscoAuthSPI), so a receiver tells the two forms apart by the SPI.
	MinHMACKeyID uint16 = 2
	// MinHMACSecretLen is the shortest secret NewHMACKeys accepts (128
	// bits, the strength of the truncated MAC).
	MinHMACSecretLen = 16
	// HMACSeqLen and HMACTagLen are the lengths of the sequence number and
	// of the truncated MAC.
	HMACSeqLen = 8
	HMACTagLen = 16

	hmacFixedLen = 4 // reserved, SPI
)

// HMACError is why Sign or Verify refused a packet. Every value is a distinct
// reason, comparable with == or errors.Is, and small enough to index a drop
// counter array (HMACErrorCount entries, 0 unused). Returning one allocates
// nothing.
type HMACError uint8

// Reasons for refusing a packet.
const (
	// ErrHMACMalformed: the packet's size, extension area or
	// authentication extension do not have the layout above (lengths,
	// reserved field, Src Addr length, two authentication extensions).
	ErrHMACMalformed HMACError = iota + 1
	// ErrHMACMissing: there is no authentication extension.
	ErrHMACMissing
	// ErrHMACNotKeyed: the authentication extension has an SPI below
	// MinHMACKeyID, i.e. Cisco's clear-text form (SPI 1) or SPI 0.
	ErrHMACNotKeyed
	// ErrHMACUnknownKey: the SPI names no key of the ring.
	ErrHMACUnknownKey
	// ErrHMACBadMAC: the MAC does not match (forged, altered, or signed
	// with another secret under the same key ID).
	ErrHMACBadMAC

	// HMACErrorCount is one more than the largest HMACError.
	HMACErrorCount = int(ErrHMACBadMAC) + 1
)

func (e HMACError) Error() string {
	switch e {
	case ErrHMACMalformed:
		return "nhrp: malformed packet or keyed authentication extension"
	case ErrHMACMissing:
		return "nhrp: no authentication extension"
	case ErrHMACNotKeyed:
		return "nhrp: authentication extension is not keyed (SPI 0 or Cisco clear text)"
	case ErrHMACUnknownKey:
		return "nhrp: authentication key ID unknown"
	case ErrHMACBadMAC:
		return "nhrp: authentication MAC mismatch"
	}
	return fmt.Sprintf("nhrp: HMAC error %d", uint8(e))
}

// ErrBadHMACKey is wrapped by the errors NewHMACKeys returns.
var ErrBadHMACKey = errors.New("nhrp: bad HMAC key")

// HMACKey is one shared secret and the key ID (SPI) that names it on the wire.
type HMACKey struct {
	ID     uint16 // MinHMACKeyID..65535
	Secret []byte // at least MinHMACSecretLen bytes
}

// HMACKeys is a key ring: the first key signs, every key verifies, so keys
// roll over without a flag day (add the new key second everywhere, then move
// it first everywhere, then drop the old one).
//
// Sign and Verify allocate nothing; they reuse one HMAC state per key and a
// scratch buffer, so an HMACKeys is not safe for concurrent use (the engine
// calls it under its lock). It keeps no copy of the secrets, only the HMAC
// states derived from them (as sensitive: do not log or expose them).
type HMACKeys struct {
	keys []hmacKey
	sum  [sha256.Size]byte
}

type hmacKey struct {
	id  uint16
	mac hash.Hash
}

// NewHMACKeys builds a key ring from keys, the first of which signs. It
// refuses an empty list, key IDs below MinHMACKeyID, secrets shorter than
// MinHMACSecretLen and duplicate IDs.
func NewHMACKeys(keys []HMACKey) (*HMACKeys, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrBadHMACKey)
	}
	k := &HMACKeys{keys: make([]hmacKey, 0, len(keys))}
	for i, key := range keys {
		if key.ID < MinHMACKeyID {
			return nil, fmt.Errorf("%w: key %d: ID %d is reserved (%d is Cisco's clear-text form); use %d..65535",
				ErrBadHMACKey, i+1, key.ID, CiscoAuthSPI, MinHMACKeyID)
		}
		if len(key.Secret) < MinHMACSecretLen {
			return nil, fmt.Errorf("%w: key ID %d: secret of %d bytes, need at least %d",
				ErrBadHMACKey, key.ID, len(key.Secret), MinHMACSecretLen)
		}
		for j := range k.keys {
			if k.keys[j].id == key.ID {
				return nil, fmt.Errorf("%w: key ID %d appears twice (keys %d and %d)", ErrBadHMACKey, key.ID, j+1, i+1)
			}
		}
		mac := hmac.New(sha256.New, key.Secret)
		mac.Reset() // precomputes the padded key states, so later Resets allocate nothing
		k.keys = append(k.keys, hmacKey{id: key.ID, mac: mac})
	}
	return k, nil
}

// SigningKeyID is the ID of the key that signs (the first one).
func (k *HMACKeys) SigningKeyID() uint16 { return k.keys[0].id }

// NewAuthentication is NewHMACAuthentication with the signing key's ID.
func (k *HMACKeys) NewAuthentication(signer netip.Addr) Extension {
	return NewHMACAuthentication(k.SigningKeyID(), signer)
}

// NewHMACAuthentication returns a keyed authentication extension (type 7,
// compulsory) with sequence number and MAC zero: a placeholder to put in the
// packet's extension list before encoding; Sign fills it in the encoded
// packet (the Extension itself is never modified, so it can be reused).
// signer must have the length of the packet's source protocol address (IPv4
// or IPv6 as that address is), or Sign refuses the packet; use the signer's
// own tunnel address of that family.
func NewHMACAuthentication(keyID uint16, signer netip.Addr) Extension {
	data := make([]byte, 0, addrLen(signer)+HMACSeqLen+HMACTagLen)
	data = append(data, signer.AsSlice()...)
	data = data[:cap(data)]
	return NewAuthentication(keyID, data)
}

// hmacExt locates the authentication extension of the encoded packet pkt:
// off is the offset of its value, al the length of its Src Addr. It checks
// every length it uses against the packet size, never reads past it, and
// refuses a second authentication extension.
func hmacExt(pkt []byte) (b []byte, off, al int, err HMACError) {
	if len(pkt) < fixedHeaderLen+mandatoryHeaderLen {
		return nil, 0, 0, ErrHMACMalformed
	}
	size := int(binary.BigEndian.Uint16(pkt[10:]))
	if size < fixedHeaderLen+mandatoryHeaderLen || size > len(pkt) {
		return nil, 0, 0, ErrHMACMalformed
	}
	b = pkt[:size]
	eo := int(binary.BigEndian.Uint16(b[14:]))
	if eo == 0 {
		return nil, 0, 0, ErrHMACMissing
	}
	if eo < fixedHeaderLen+mandatoryHeaderLen || eo > size {
		return nil, 0, 0, ErrHMACMalformed
	}
	vlen := -1
	for pos := eo; pos < size; {
		if size-pos < extHeaderLen {
			return nil, 0, 0, ErrHMACMalformed
		}
		t := ExtensionType(binary.BigEndian.Uint16(b[pos:]) & extTypeMask)
		n := int(binary.BigEndian.Uint16(b[pos+2:]))
		pos += extHeaderLen
		if n > size-pos {
			return nil, 0, 0, ErrHMACMalformed
		}
		if t == ExtAuthentication {
			if vlen >= 0 {
				return nil, 0, 0, ErrHMACMalformed
			}
			off, vlen = pos, n
		}
		pos += n
		if t == ExtEnd {
			break
		}
	}
	if vlen < 0 {
		return nil, 0, 0, ErrHMACMissing
	}
	if vlen < hmacFixedLen {
		return nil, 0, 0, ErrHMACMalformed
	}
	if binary.BigEndian.Uint16(b[off+2:]) < MinHMACKeyID {
		return nil, 0, 0, ErrHMACNotKeyed
	}
	al = int(b[fixedHeaderLen]) // source protocol address length
	if binary.BigEndian.Uint16(b[off:]) != 0 || (al != 4 && al != 16) ||
		vlen != hmacFixedLen+al+HMACSeqLen+HMACTagLen {
		return nil, 0, 0, ErrHMACMalformed
	}
	return b, off, al, 0
}

func (k *HMACKeys) key(id uint16) hash.Hash {
	for i := range k.keys {
		if k.keys[i].id == id {
			return k.keys[i].mac
		}
	}
	return nil
}

var hmacZeros [HMACTagLen]byte

// mac computes the truncated MAC of b whose MAC field starts at tag, with
// that field and the checksum taken as zero, into k.sum[:HMACTagLen].
func (k *HMACKeys) mac(h hash.Hash, b []byte, tag int) []byte {
	h.Reset()
	h.Write(b[:12])
	h.Write(hmacZeros[:2])
	h.Write(b[14:tag])
	h.Write(hmacZeros[:])
	h.Write(b[tag+HMACTagLen:])
	return h.Sum(k.sum[:0])[:HMACTagLen]
}

// Sign completes the keyed authentication extension of pkt, an encoded NHRP
// packet (as Packet.AppendEncode writes it) holding exactly one, made by
// NewHMACAuthentication: it writes seq, computes and writes the MAC with the
// key the extension's SPI names, then recomputes the NHRP checksum. seq must
// be strictly greater than every sequence number this signer used before
// (replay.Sequencer gives such numbers from the clock).
func (k *HMACKeys) Sign(pkt []byte, seq uint64) error {
	b, off, al, e := hmacExt(pkt)
	if e != 0 {
		return e
	}
	h := k.key(binary.BigEndian.Uint16(b[off+2:]))
	if h == nil {
		return ErrHMACUnknownKey
	}
	s := off + hmacFixedLen + al
	binary.BigEndian.PutUint64(b[s:], seq)
	tag := s + HMACSeqLen
	copy(b[tag:tag+HMACTagLen], k.mac(h, b, tag))
	binary.BigEndian.PutUint16(b[12:], 0)
	binary.BigEndian.PutUint16(b[12:], inet.Checksum(b))
	return nil
}

// Verify checks the keyed authentication extension of the received packet
// pkt (raw bytes; anything after the packet size is ignored) and returns
// what it vouches for: the signer's address, the key ID and the sequence
// number. It does not check the NHRP checksum (Decode does) nor replays
// (feed signer and seq to a replay.Filter). It never reads past pkt, never
// modifies it, and returns an HMACError on failure.
func (k *HMACKeys) Verify(pkt []byte) (signer netip.Addr, keyID uint16, seq uint64, err error) {
	b, off, al, e := hmacExt(pkt)
	if e != 0 {
		return netip.Addr{}, 0, 0, e
	}
	id := binary.BigEndian.Uint16(b[off+2:])
	h := k.key(id)
	if h == nil {
		return netip.Addr{}, 0, 0, ErrHMACUnknownKey
	}
	a := off + hmacFixedLen
	tag := a + al + HMACSeqLen
	if !hmac.Equal(k.mac(h, b, tag), b[tag:tag+HMACTagLen]) {
		return netip.Addr{}, 0, 0, ErrHMACBadMAC
	}
	if al == 4 {
		signer = netip.AddrFrom4([4]byte(b[a:]))
	} else {
		signer = netip.AddrFrom16([16]byte(b[a:]))
	}
	return signer, id, binary.BigEndian.Uint64(b[a+al:]), nil
}
