package gre_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/dmvpn/dmvpn/gre"
)

// FuzzDecode checks that Decode never panics, returns only its sentinel
// errors, and that what it accepts re-encodes (PutHeader and Encapsulate) to
// the same bytes, which decode to the same header and payload.
func FuzzDecode(f *testing.F) {
	for _, h := range allFlags() {
		f.Add(encap(f, h, []byte("payload")))
	}
	for _, s := range []string{
		"",
		"2000",             // truncated
		"00002001",         // bare header, NHRP
		"20002001000003e8", // Cisco DMVPN key 1000
		"2000000000000028", // Cisco keepalive reply
		// GRE keepalive: GRE key 0x28 carrying IPv4 (192.0.2.1 ->
		// 192.0.2.2, protocol 47) carrying the GRE reply.
		"2000080000000028" + "4500001c00010000ff2f0000c0000201c0000202" + "2000000000000028",
		"b00086dd465aabcd0000002800000007" + hex.EncodeToString([]byte("hello, gre")), // C K S
		"80000800ffff000077ff", // checksum -0
		"800008006ef900000102030405",
		"40000800",         // routing
		"3001880b00000000", // version 1 (PPTP)
		"03f82001",         // reserved bits
		"f7ffffffffffffffffffffffffffffff",
	} {
		b, err := hex.DecodeString(s)
		if err != nil {
			f.Fatalf("seed %q: %v", s, err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		h, pl, err := gre.Decode(b)
		if !bytes.Equal(in, b) {
			t.Fatalf("Decode modified its input")
		}
		if err != nil {
			if !errors.Is(err, gre.ErrTruncated) && !errors.Is(err, gre.ErrVersion) &&
				!errors.Is(err, gre.ErrFlags) && !errors.Is(err, gre.ErrChecksum) {
				t.Fatalf("Decode error %v wraps no sentinel", err)
			}
			if pl != nil {
				t.Fatalf("payload returned with error %v", err)
			}
			return
		}
		n := h.Len()
		if n < gre.MinLen || n > gre.MaxLen || n > len(b) {
			t.Fatalf("header length %d for a %d-byte input", n, len(b))
		}
		if !bytes.Equal(pl, b[n:]) {
			t.Fatalf("payload %x, want the %d bytes after the header", pl, len(b)-n)
		}
		if len(pl) > 0 && &pl[0] != &b[n] {
			t.Fatalf("payload is not a sub-slice of the input")
		}

		// PutHeader: the same header bytes, checksum zeroed.
		var hb [gre.MaxLen]byte
		k, err := h.PutHeader(hb[:])
		if err != nil || k != n {
			t.Fatalf("PutHeader = %d, %v; want %d", k, err, n)
		}
		want := bytes.Clone(b[:n])
		if h.ChecksumPresent {
			want[4], want[5] = 0, 0
		}
		if !bytes.Equal(hb[:n], want) {
			t.Fatalf("PutHeader wrote %x, input header %x", hb[:n], b[:n])
		}

		// Encapsulate in front of the payload: the input again, except
		// that a checksum of 0xffff (one's complement -0, accepted by
		// Decode) is re-encoded as the computed 0x0000.
		buf := make([]byte, n+len(pl))
		copy(buf[n:], pl)
		start, err := gre.Encapsulate(buf, n, &h)
		if err != nil || start != 0 {
			t.Fatalf("Encapsulate = %d, %v; want 0, nil", start, err)
		}
		if !bytes.Equal(buf, b) {
			negZero := h.ChecksumPresent && h.Checksum == 0xffff && buf[4] == 0 && buf[5] == 0 &&
				bytes.Equal(buf[6:], b[6:]) && bytes.Equal(buf[:4], b[:4])
			if !negZero {
				t.Fatalf("Encapsulate(Decode(b)) != b\nb:   %x\nenc: %x", b, buf)
			}
		}

		// Decoding that gives the same header (but for the checksum
		// read) and payload, and encoding is then a fixed point.
		h2, pl2, err := gre.Decode(buf)
		if err != nil {
			t.Fatalf("Decode(Encapsulate(h)): %v\nenc: %x", err, buf)
		}
		h1 := h
		h1.Checksum = h2.Checksum
		if h1 != h2 {
			t.Fatalf("decoded again %+v, want %+v", h2, h)
		}
		if !bytes.Equal(pl2, pl) {
			t.Fatalf("payload changed: %x, want %x", pl2, pl)
		}
		buf2 := make([]byte, n+len(pl2))
		copy(buf2[n:], pl2)
		if _, err := gre.Encapsulate(buf2, n, &h2); err != nil || !bytes.Equal(buf2, buf) {
			t.Fatalf("encoding is not a fixed point (%v):\nfirst:  %x\nsecond: %x", err, buf, buf2)
		}
	})
}
