// Package inet holds small Internet helpers shared by the codecs: the
// one's-complement checksum of RFC 1071 and IPv4/UDP header builders used to
// frame packets for captures and for the in-memory underlay.
package inet

import "encoding/binary"

// Checksum returns the RFC 1071 Internet checksum of b (the one's complement
// of the one's-complement sum of its 16-bit words, an odd byte padded with 0).
func Checksum(b []byte) uint16 {
	return ^Fold(Sum(0, b))
}

// Sum adds b to a running 32-bit one's-complement accumulator. The result may
// be fed back into Sum for the next chunk as long as each chunk but the last
// has even length.
func Sum(acc uint32, b []byte) uint32 {
	n := len(b) &^ 1
	for i := 0; i < n; i += 2 {
		acc += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)&1 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	return acc
}

// Fold folds the carries of a 32-bit accumulator into 16 bits.
func Fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = (acc >> 16) + (acc & 0xffff)
	}
	return uint16(acc)
}
