// Package gre encodes and decodes GRE headers (RFC 2784) with the key and
// sequence number extensions of RFC 2890, as carried directly in IP
// (protocol 47) or in UDP (GRE-in-UDP, RFC 8086, port 4754).
//
// The package is a pure codec: no I/O, no allocation. Encoding writes the
// header into the headroom in front of a payload that already sits in the
// caller's buffer, so the data path never copies a packet to prepend a header;
// decoding returns the payload as a sub-slice of the input.
package gre

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dmvpn/dmvpn/internal/inet"
)

// Protocol types (Ethertypes) carried in the GRE protocol type field.
const (
	ProtoIPv4 uint16 = 0x0800
	ProtoIPv6 uint16 = 0x86DD
	ProtoNHRP uint16 = 0x2001 // NHRP over GRE, as used by Cisco DMVPN, FRR and OpenNHRP
)

// UDPPort is the IANA destination port of GRE-in-UDP (RFC 8086 §3).
const UDPPort = 4754

// IPProto is GRE's IP protocol number (IANA; RFC 2784), what a raw GRE
// socket opens.
const IPProto = 47

// Bits of the first 16-bit word (RFC 2784 §2, RFC 2890 §2, RFC 1701 for the
// bits we refuse).
const (
	flagChecksum    = 0x8000
	flagRouting     = 0x4000 // RFC 1701 routing present: refused (RFC 2784 §2.3)
	flagKey         = 0x2000
	flagSeq         = 0x1000
	flagStrictRoute = 0x0800 // RFC 1701 strict source route: refused
	flagRecurMSB    = 0x0400 // RFC 2784 bit 5 must be zero
	reserved0Mask   = 0x03F8 // bits 6-12: ignored on receipt, kept for re-encoding
	versionMask     = 0x0007
)

// MinLen is the size of the smallest GRE header (no optional fields).
const MinLen = 4

// MaxLen is the size of the largest GRE header (checksum, key and sequence).
const MaxLen = 16

// Header is a GRE header. Optional fields are present when their flag is set.
type Header struct {
	ChecksumPresent bool
	KeyPresent      bool
	SeqPresent      bool
	// Reserved0 holds bits 6-12 of the first word. RFC 2784 says to send
	// zero and ignore them on receipt; they are kept so a decoded header
	// re-encodes to the same bytes.
	Reserved0 uint16
	Protocol  uint16
	// Checksum is the value read on decode. Encode computes it.
	Checksum uint16
	// Reserved1 is the 16 bits after the checksum (the RFC 1701 offset
	// field), zero when sent by RFC 2784 implementations.
	Reserved1 uint16
	Key       uint32
	Seq       uint32
}

// Len is the encoded length of the header.
func (h *Header) Len() int {
	n := MinLen
	if h.ChecksumPresent {
		n += 4
	}
	if h.KeyPresent {
		n += 4
	}
	if h.SeqPresent {
		n += 4
	}
	return n
}

// Errors returned by Decode; they are wrapped with the offset and value.
var (
	ErrTruncated   = errors.New("gre: truncated header")
	ErrVersion     = errors.New("gre: unsupported version")
	ErrFlags       = errors.New("gre: RFC 1701 routing/strict-route/recursion bits set")
	ErrChecksum    = errors.New("gre: bad checksum")
	ErrNoHeadroom  = errors.New("gre: not enough headroom for header")
	ErrBufferSmall = errors.New("gre: buffer too small")
)

// PutHeader writes h into b[:h.Len()] with a zero checksum and returns the
// number of bytes written. Use Encapsulate when the checksum is wanted.
func (h *Header) PutHeader(b []byte) (int, error) {
	n := h.Len()
	if len(b) < n {
		return 0, ErrBufferSmall
	}
	w := h.Reserved0 & reserved0Mask
	if h.ChecksumPresent {
		w |= flagChecksum
	}
	if h.KeyPresent {
		w |= flagKey
	}
	if h.SeqPresent {
		w |= flagSeq
	}
	binary.BigEndian.PutUint16(b[0:], w)
	binary.BigEndian.PutUint16(b[2:], h.Protocol)
	off := 4
	if h.ChecksumPresent {
		binary.BigEndian.PutUint16(b[off:], 0)
		binary.BigEndian.PutUint16(b[off+2:], h.Reserved1)
		off += 4
	}
	if h.KeyPresent {
		binary.BigEndian.PutUint32(b[off:], h.Key)
		off += 4
	}
	if h.SeqPresent {
		binary.BigEndian.PutUint32(b[off:], h.Seq)
	}
	return n, nil
}

// Encapsulate writes h into the headroom immediately before pkt[off:], which
// holds the payload, computes the checksum when h.ChecksumPresent, and returns
// the index where the GRE packet starts: the packet is pkt[start:].
func Encapsulate(pkt []byte, off int, h *Header) (start int, err error) {
	n := h.Len()
	if off < n || off > len(pkt) {
		return 0, ErrNoHeadroom
	}
	start = off - n
	if _, err := h.PutHeader(pkt[start:off]); err != nil {
		return 0, err
	}
	if h.ChecksumPresent {
		// RFC 2784 §2.5: over the GRE header and the payload, with the
		// checksum field zero.
		binary.BigEndian.PutUint16(pkt[start+4:], inet.Checksum(pkt[start:]))
	}
	return start, nil
}

// Decode parses the GRE header at the start of b, verifies its checksum when
// present, and returns the header and the payload (a sub-slice of b).
func Decode(b []byte) (Header, []byte, error) {
	var h Header
	if len(b) < MinLen {
		return h, nil, fmt.Errorf("%w: %d bytes at offset 0, need %d", ErrTruncated, len(b), MinLen)
	}
	w := binary.BigEndian.Uint16(b)
	if v := w & versionMask; v != 0 {
		return h, nil, fmt.Errorf("%w %d at offset 1", ErrVersion, v)
	}
	if w&(flagRouting|flagStrictRoute|flagRecurMSB) != 0 {
		return h, nil, fmt.Errorf("%w: flags 0x%04x at offset 0", ErrFlags, w)
	}
	h.ChecksumPresent = w&flagChecksum != 0
	h.KeyPresent = w&flagKey != 0
	h.SeqPresent = w&flagSeq != 0
	h.Reserved0 = w & reserved0Mask
	h.Protocol = binary.BigEndian.Uint16(b[2:])
	n := h.Len()
	if len(b) < n {
		return h, nil, fmt.Errorf("%w: %d bytes at offset 0, flags 0x%04x need %d", ErrTruncated, len(b), w, n)
	}
	off := 4
	if h.ChecksumPresent {
		h.Checksum = binary.BigEndian.Uint16(b[off:])
		h.Reserved1 = binary.BigEndian.Uint16(b[off+2:])
		if inet.Checksum(b) != 0 {
			return h, nil, fmt.Errorf("%w 0x%04x at offset %d", ErrChecksum, h.Checksum, off)
		}
		off += 4
	}
	if h.KeyPresent {
		h.Key = binary.BigEndian.Uint32(b[off:])
		off += 4
	}
	if h.SeqPresent {
		h.Seq = binary.BigEndian.Uint32(b[off:])
		off += 4
	}
	return h, b[off:], nil
}

// UDPSourcePort maps a flow hash to a GRE-in-UDP source port in the
// ephemeral range 49152-65535, as RFC 8086 §3.2.1 recommends, so that ECMP
// and RSS spread flows while one flow keeps one port.
func UDPSourcePort(flowHash uint32) uint16 {
	return uint16(49152 + flowHash%16384)
}
