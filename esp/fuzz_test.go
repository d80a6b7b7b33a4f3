package esp_test

import (
	"bytes"
	"testing"

	"github.com/dmvpn/dmvpn/esp"
)

// fuzzTransforms are the transforms the fuzz targets pick from with the
// first input octet (and whether ESN is on with its low bit).
var fuzzTransforms = esp.Transforms()

func fuzzSA(tb testing.TB, sel byte) (*esp.SA, *esp.SA) {
	tr := fuzzTransforms[int(sel>>1)%len(fuzzTransforms)]
	c := testConfig(tr, sel&1 == 1)
	c.ReplayWindow = 64
	return pair(tb, c)
}

// FuzzOpen feeds arbitrary octets to Open: it must not panic, must return
// one of its errors, and what it accepts must lie inside the packet. Seeds
// are real packets of every transform (with and without ESN) and their
// mangled forms, so the fuzzer starts past the length checks.
func FuzzOpen(f *testing.F) {
	for sel := range 2 * len(fuzzTransforms) {
		out, _ := fuzzSA(f, byte(sel))
		for _, n := range []int{0, 1, 33, 100} {
			pkt := seal(f, out, grePacket(f, n+20)[:n], esp.NextHeaderGRE)
			f.Add(byte(sel), pkt)
			f.Add(byte(sel), pkt[:len(pkt)-1])
		}
	}
	f.Add(byte(0), []byte{})
	f.Add(byte(0), []byte{0x10, 0x00, 0xbe, 0xef, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, sel byte, pkt []byte) {
		_, in := fuzzSA(t, sel)
		b := bytes.Clone(pkt)
		off, n, _, err := in.Open(b)
		if err != nil {
			e, ok := err.(esp.Error)
			if !ok || int(e) <= 0 || int(e) >= esp.ErrorCount {
				t.Fatalf("Open returned %T %v", err, err)
			}
			switch e {
			case esp.ErrTruncated, esp.ErrBadLength, esp.ErrSPIMismatch, esp.ErrAuth, esp.ErrBadPadding, esp.ErrTooOld:
			default:
				t.Fatalf("Open of a fresh SA returned %v", err)
			}
			if in.Seq() != 0 && e != esp.ErrBadPadding {
				t.Fatalf("a refused packet (%v) moved the window to %d", err, in.Seq())
			}
			return
		}
		if off != in.HeaderLen() || n < 0 || off+n > len(b)-esp.TrailerFixedLen {
			t.Fatalf("Open = %d, %d for %d octets", off, n, len(b))
		}
		// Only a packet sealed with the test keys gets here: it must be a
		// seed, opened again to the same payload by a second SA.
		_, in2 := fuzzSA(t, sel)
		b2 := bytes.Clone(pkt)
		off2, n2, _, err := in2.Open(b2)
		if err != nil || off2 != off || !bytes.Equal(b2[off2:off2+n2], b[off:off+n]) {
			t.Fatalf("a second SA disagrees: %v", err)
		}
		if _, _, _, err := in.Open(bytes.Clone(pkt)); err != esp.ErrReplayed {
			t.Fatalf("the same packet twice: %v", err)
		}
	})
}

// FuzzSealOpen: any payload, next header and transform round-trips, and a
// flipped octet anywhere in the result is refused.
func FuzzSealOpen(f *testing.F) {
	f.Add(byte(0), byte(47), []byte("GRE packet"), uint16(3))
	f.Add(byte(7), byte(4), bytes.Repeat([]byte{0xff}, 1500), uint16(1000))
	f.Add(byte(9), byte(41), []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, sel, nh byte, payload []byte, flip uint16) {
		out, in := fuzzSA(t, sel)
		pkt := seal(t, out, payload, nh)
		got, gotNH, err := open(t, in, pkt)
		if err != nil || gotNH != nh || !bytes.Equal(got, payload) {
			t.Fatalf("round trip: %v, next header %d, %d/%d octets", err, gotNH, len(got), len(payload))
		}
		pkt2 := seal(t, out, payload, nh)
		i := int(flip) % len(pkt2)
		pkt2[i] ^= 1 << (flip >> 13)
		if _, _, err := open(t, in, pkt2); err == nil {
			t.Fatalf("octet %d flipped: accepted", i)
		}
	})
}
