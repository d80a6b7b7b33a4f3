package gre_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/dmvpn/dmvpn/gre"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// encap encapsulates payload behind h in a fresh buffer with exactly the
// header's headroom and returns the GRE packet.
func encap(t testing.TB, h gre.Header, payload []byte) []byte {
	t.Helper()
	n := h.Len()
	buf := make([]byte, n+len(payload))
	copy(buf[n:], payload)
	start, err := gre.Encapsulate(buf, n, &h)
	if err != nil || start != 0 {
		t.Fatalf("Encapsulate(%+v) = %d, %v; want 0, nil", h, start, err)
	}
	return buf
}

// allFlags returns a header for each of the 8 combinations of the checksum,
// key and sequence number flags.
func allFlags() []gre.Header {
	var hs []gre.Header
	for m := range 8 {
		h := gre.Header{
			ChecksumPresent: m&1 != 0,
			KeyPresent:      m&2 != 0,
			SeqPresent:      m&4 != 0,
			Protocol:        gre.ProtoNHRP,
		}
		if h.KeyPresent {
			h.Key = 0x000003e8
		}
		if h.SeqPresent {
			h.Seq = 0x01020304
		}
		hs = append(hs, h)
	}
	return hs
}

func flagName(h gre.Header) string {
	s := ""
	if h.ChecksumPresent {
		s += "C"
	}
	if h.KeyPresent {
		s += "K"
	}
	if h.SeqPresent {
		s += "S"
	}
	if s == "" {
		s = "none"
	}
	return s
}

func TestRoundTripEveryFlagCombination(t *testing.T) {
	payloads := map[string][]byte{
		"empty": nil,
		"odd":   []byte("odd-length payload!"),
		"even":  bytes.Repeat([]byte{0xff, 0x00, 0x5a, 0xa5}, 100),
	}
	for _, h := range allFlags() {
		for pname, payload := range payloads {
			t.Run(flagName(h)+"/"+pname, func(t *testing.T) {
				wantLen := gre.MinLen
				for _, on := range []bool{h.ChecksumPresent, h.KeyPresent, h.SeqPresent} {
					if on {
						wantLen += 4
					}
				}
				if h.Len() != wantLen {
					t.Fatalf("Len() = %d, want %d", h.Len(), wantLen)
				}
				h := h
				if h.ChecksumPresent {
					h.Reserved1 = 0x1234 // kept as the RFC 1701 offset field
				}
				h.Reserved0 = 0x0208 // reserved bits 6 and 12, kept

				pkt := encap(t, h, payload)
				// The first word, by hand.
				w := uint16(0x0208)
				if h.ChecksumPresent {
					w |= 0x8000
				}
				if h.KeyPresent {
					w |= 0x2000
				}
				if h.SeqPresent {
					w |= 0x1000
				}
				if got := uint16(pkt[0])<<8 | uint16(pkt[1]); got != w {
					t.Errorf("flags and version 0x%04x, want 0x%04x", got, w)
				}

				got, pl, err := gre.Decode(pkt)
				if err != nil {
					t.Fatalf("Decode: %v\npacket: %x", err, pkt)
				}
				want := h
				if h.ChecksumPresent {
					want.Checksum = uint16(pkt[4])<<8 | uint16(pkt[5])
				}
				if got != want {
					t.Errorf("Decode = %+v, want %+v", got, want)
				}
				if !bytes.Equal(pl, payload) {
					t.Errorf("payload %x, want %x", pl, payload)
				}
				if len(pl) > 0 && &pl[0] != &pkt[h.Len()] {
					t.Errorf("payload is a copy, want a sub-slice of the input")
				}
				// Re-encoding the decoded header gives the same packet.
				if again := encap(t, got, pl); !bytes.Equal(again, pkt) {
					t.Errorf("re-encoded\n%x\nwant\n%x", again, pkt)
				}
			})
		}
	}
}

func TestKnownAnswers(t *testing.T) {
	tests := []struct {
		name    string
		h       gre.Header
		payload string // hex
		want    string // hex: GRE header and payload
	}{
		{"no options, NHRP", gre.Header{Protocol: gre.ProtoNHRP}, "", "00002001"},
		{"Cisco DMVPN key 1000, NHRP", gre.Header{KeyPresent: true, Protocol: gre.ProtoNHRP, Key: 1000}, "0001", "20002001000003e8" + "0001"},
		{"Cisco keepalive reply, key 0x28, protocol 0", gre.Header{KeyPresent: true, Key: 0x28}, "", "2000000000000028"},
		{"sequence only", gre.Header{SeqPresent: true, Protocol: gre.ProtoIPv4, Seq: 7}, "", "1000080000000007"},
		{"key and sequence", gre.Header{KeyPresent: true, SeqPresent: true, Protocol: gre.ProtoIPv4, Key: 0xdeadbeef, Seq: 1},
			"", "30000800deadbeef00000001"},
		{"reserved0 bits kept", gre.Header{Reserved0: 0x03f8, Protocol: gre.ProtoIPv6}, "", "03f886dd"},
		// Checksums worked out by hand: one's complement of the sum of
		// the 16-bit words, an odd last byte padded with zero.
		// 8000+0800+0102+0304+0500 = 9106, ^9106 = 6ef9.
		{"checksum, odd payload", gre.Header{ChecksumPresent: true, Protocol: gre.ProtoIPv4}, "0102030405", "800008006ef90000" + "0102030405"},
		{"checksum, key, sequence, offset field", gre.Header{ChecksumPresent: true, KeyPresent: true, SeqPresent: true,
			Protocol: gre.ProtoIPv6, Reserved1: 0xabcd, Key: 0x28, Seq: 7},
			hex.EncodeToString([]byte("hello, gre")), "b00086dd465aabcd0000002800000007" + hex.EncodeToString([]byte("hello, gre"))},
		// 8000+0800+77ff = ffff: the checksum is 0000.
		{"checksum zero", gre.Header{ChecksumPresent: true, Protocol: gre.ProtoIPv4}, "77ff", "8000080000000000" + "77ff"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := mustHex(t, tc.want)
			pkt := encap(t, tc.h, mustHex(t, tc.payload))
			if !bytes.Equal(pkt, want) {
				t.Fatalf("Encapsulate wrote\n%x\nwant\n%x", pkt, want)
			}
			if !tc.h.ChecksumPresent {
				var hb [gre.MaxLen]byte
				n, err := tc.h.PutHeader(hb[:])
				if err != nil || !bytes.Equal(hb[:n], want[:tc.h.Len()]) {
					t.Errorf("PutHeader = %x, %v; want %x", hb[:n], err, want[:tc.h.Len()])
				}
			}
			got, pl, err := gre.Decode(want)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			wantH := tc.h
			if tc.h.ChecksumPresent {
				wantH.Checksum = uint16(want[4])<<8 | uint16(want[5])
			}
			if got != wantH {
				t.Errorf("Decode = %+v, want %+v", got, wantH)
			}
			if !bytes.Equal(pl, mustHex(t, tc.payload)) {
				t.Errorf("payload %x, want %s", pl, tc.payload)
			}
		})
	}
}

func TestPutHeaderWritesZeroChecksum(t *testing.T) {
	h := gre.Header{ChecksumPresent: true, Protocol: gre.ProtoIPv4, Checksum: 0xbeef, Reserved1: 0x0102}
	b := bytes.Repeat([]byte{0xaa}, gre.MaxLen)
	n, err := h.PutHeader(b)
	if err != nil || n != 8 {
		t.Fatalf("PutHeader = %d, %v", n, err)
	}
	if want := mustHex(t, "8000080000000102"); !bytes.Equal(b[:n], want) {
		t.Errorf("PutHeader wrote %x, want %x", b[:n], want)
	}
	if b[n] != 0xaa {
		t.Errorf("PutHeader wrote past its %d bytes", n)
	}
}

func TestChecksumVerified(t *testing.T) {
	good := mustHex(t, "b00086dd465aabcd0000002800000007"+hex.EncodeToString([]byte("hello, gre")))
	if _, _, err := gre.Decode(good); err != nil {
		t.Fatalf("Decode of a good packet: %v", err)
	}
	// Every single-bit error in header or payload is caught (the
	// one's-complement sum detects all of them).
	for i := range good {
		for bit := range 8 {
			if i == 0 && bit == 7 {
				continue // clearing C gives another valid layout
			}
			bad := bytes.Clone(good)
			bad[i] ^= 1 << bit
			_, _, err := gre.Decode(bad)
			if err == nil {
				t.Errorf("byte %d bit %d flipped: Decode accepted it", i, bit)
				continue
			}
			// Flipping a flag bit changes the layout or is refused:
			// any error will do there; elsewhere it must be the
			// checksum.
			if i >= 4 && !errors.Is(err, gre.ErrChecksum) {
				t.Errorf("byte %d bit %d flipped: %v, want ErrChecksum", i, bit, err)
			}
		}
	}
	t.Run("wrong checksum", func(t *testing.T) {
		bad := bytes.Clone(good)
		bad[4], bad[5] = 0x46, 0x5b
		_, _, err := gre.Decode(bad)
		if !errors.Is(err, gre.ErrChecksum) {
			t.Fatalf("Decode = %v, want ErrChecksum", err)
		}
	})
	t.Run("zero checksum field", func(t *testing.T) {
		bad := bytes.Clone(good)
		bad[4], bad[5] = 0, 0
		if _, _, err := gre.Decode(bad); !errors.Is(err, gre.ErrChecksum) {
			t.Fatalf("Decode = %v, want ErrChecksum", err)
		}
	})
	t.Run("negative zero", func(t *testing.T) {
		// The computed checksum is 0x0000; 0xffff is the other one's
		// complement zero and verifies too (RFC 1624). Re-encoding
		// writes 0x0000.
		pkt := mustHex(t, "80000800ffff000077ff")
		h, pl, err := gre.Decode(pkt)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if h.Checksum != 0xffff {
			t.Errorf("Checksum = 0x%04x, want 0xffff", h.Checksum)
		}
		if got, want := encap(t, h, pl), mustHex(t, "8000080000000000"+"77ff"); !bytes.Equal(got, want) {
			t.Errorf("re-encoded %x, want %x", got, want)
		}
	})
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		pkt  string
		want error
	}{
		{"routing bit (RFC 1701)", "40000800", gre.ErrFlags},
		{"routing bit with checksum", "c0000800000000000000", gre.ErrFlags},
		{"strict source route bit", "08000800", gre.ErrFlags},
		{"recursion control MSB (RFC 2784 bit 5)", "04000800", gre.ErrFlags},
		{"PPTP enhanced GRE (version 1)", "3001880b00000000", gre.ErrVersion},
	}
	for v := 1; v <= 7; v++ {
		tests = append(tests, struct {
			name string
			pkt  string
			want error
		}{fmt.Sprintf("version %d", v), fmt.Sprintf("000%d2001", v), gre.ErrVersion})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, pl, err := gre.Decode(mustHex(t, tc.pkt))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode(%s) = %v, want %v", tc.pkt, err, tc.want)
			}
			if pl != nil {
				t.Errorf("payload %x returned with an error", pl)
			}
		})
	}
	// Reserved bits 6-12 are ignored on receipt (RFC 2784 §2.3).
	h, _, err := gre.Decode(mustHex(t, "03f82001"))
	if err != nil || h.Reserved0 != 0x03f8 {
		t.Errorf("Decode(03f82001) = %+v, %v; want Reserved0 0x03f8, nil", h, err)
	}
}

func TestDecodeTruncated(t *testing.T) {
	for _, h := range allFlags() {
		pkt := encap(t, h, []byte{1, 2, 3})
		for n := range h.Len() {
			_, pl, err := gre.Decode(pkt[:n])
			if !errors.Is(err, gre.ErrTruncated) {
				t.Errorf("%s: Decode of %d of %d header bytes = %v, want ErrTruncated", flagName(h), n, h.Len(), err)
			}
			if pl != nil {
				t.Errorf("%s: payload returned with an error", flagName(h))
			}
		}
		// The header alone, with an empty payload, decodes (its
		// checksum, if any, no longer matches).
		if !h.ChecksumPresent {
			if _, pl, err := gre.Decode(pkt[:h.Len()]); err != nil || len(pl) != 0 {
				t.Errorf("%s: Decode of the bare header = %x, %v", flagName(h), pl, err)
			}
		}
	}
	if _, _, err := gre.Decode(nil); !errors.Is(err, gre.ErrTruncated) {
		t.Errorf("Decode(nil) = %v, want ErrTruncated", err)
	}
}

func TestEncapsulateHeadroom(t *testing.T) {
	payload := []byte("payload")
	for _, h := range allFlags() {
		t.Run(flagName(h), func(t *testing.T) {
			n := h.Len()
			for off := range n {
				buf := make([]byte, off+len(payload))
				copy(buf[off:], payload)
				orig := bytes.Clone(buf)
				start, err := gre.Encapsulate(buf, off, &h)
				if !errors.Is(err, gre.ErrNoHeadroom) {
					t.Errorf("headroom %d < %d: Encapsulate = %d, %v; want ErrNoHeadroom", off, n, start, err)
				}
				if !bytes.Equal(buf, orig) {
					t.Errorf("headroom %d: buffer modified on error", off)
				}
			}
			// Offset past the end of the buffer.
			buf := make([]byte, n)
			if _, err := gre.Encapsulate(buf, n+1, &h); !errors.Is(err, gre.ErrNoHeadroom) {
				t.Errorf("offset past the buffer: %v, want ErrNoHeadroom", err)
			}
			// More headroom than needed: the header ends right before
			// the payload and nothing in front of it is touched.
			const extra = 5
			buf = bytes.Repeat([]byte{0xee}, extra+n+len(payload))
			copy(buf[extra+n:], payload)
			start, err := gre.Encapsulate(buf, extra+n, &h)
			if err != nil || start != extra {
				t.Fatalf("Encapsulate = %d, %v; want %d, nil", start, err, extra)
			}
			if !bytes.Equal(buf[:extra], bytes.Repeat([]byte{0xee}, extra)) {
				t.Errorf("bytes before the header modified: %x", buf[:extra])
			}
			if !bytes.Equal(buf[extra+n:], payload) {
				t.Errorf("payload modified: %x", buf[extra+n:])
			}
			if _, pl, err := gre.Decode(buf[start:]); err != nil || !bytes.Equal(pl, payload) {
				t.Errorf("Decode = %x, %v", pl, err)
			}
			// An empty payload at the very end of the buffer.
			buf = make([]byte, n)
			if start, err := gre.Encapsulate(buf, n, &h); err != nil || start != 0 {
				t.Errorf("empty payload: Encapsulate = %d, %v", start, err)
			}
		})
	}
}

func TestPutHeaderBufferTooSmall(t *testing.T) {
	for _, h := range allFlags() {
		for n := range h.Len() {
			b := make([]byte, n)
			if k, err := h.PutHeader(b); !errors.Is(err, gre.ErrBufferSmall) || k != 0 {
				t.Errorf("%s: PutHeader into %d bytes = %d, %v; want 0, ErrBufferSmall", flagName(h), n, k, err)
			}
		}
	}
}

func TestUDPSourcePort(t *testing.T) {
	for _, hash := range []uint32{0, 1, 16383, 16384, 0x7fffffff, 0xffffffff} {
		p := gre.UDPSourcePort(hash)
		if p < 49152 {
			t.Errorf("UDPSourcePort(%#x) = %d, outside 49152-65535", hash, p)
		}
		if p != gre.UDPSourcePort(hash) {
			t.Errorf("UDPSourcePort(%#x) not stable", hash)
		}
	}
	if gre.UDPSourcePort(0) == gre.UDPSourcePort(1) {
		t.Errorf("UDPSourcePort does not spread flows")
	}
}

// The data path must not allocate.
func TestZeroAllocs(t *testing.T) {
	h := gre.Header{ChecksumPresent: true, KeyPresent: true, SeqPresent: true, Protocol: gre.ProtoIPv4, Key: 1, Seq: 2}
	buf := make([]byte, gre.MaxLen+1400)
	var start int
	if n := testing.AllocsPerRun(100, func() {
		h.Seq++
		start, _ = gre.Encapsulate(buf, gre.MaxLen, &h)
	}); n != 0 {
		t.Errorf("Encapsulate: %v allocs per run, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, _, err := gre.Decode(buf[start:]); err != nil {
			panic(err)
		}
	}); n != 0 {
		t.Errorf("Decode: %v allocs per run, want 0", n)
	}
}

var benchHeaders = []struct {
	name string
	h    gre.Header
}{
	{"key", gre.Header{KeyPresent: true, Protocol: gre.ProtoIPv4, Key: 1000}},
	{"checksum+key+seq", gre.Header{ChecksumPresent: true, KeyPresent: true, SeqPresent: true, Protocol: gre.ProtoIPv4, Key: 1000}},
}

const benchPayload = 1400

func BenchmarkEncapsulate(b *testing.B) {
	for _, bh := range benchHeaders {
		b.Run(bh.name, func(b *testing.B) {
			h := bh.h
			buf := make([]byte, gre.MaxLen+benchPayload)
			b.SetBytes(benchPayload)
			b.ReportAllocs()
			for b.Loop() {
				h.Seq++
				if _, err := gre.Encapsulate(buf, gre.MaxLen, &h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, bh := range benchHeaders {
		b.Run(bh.name, func(b *testing.B) {
			pkt := encap(b, bh.h, make([]byte, benchPayload))
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := gre.Decode(pkt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
