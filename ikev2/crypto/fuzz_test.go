package ikecrypto_test

import (
	"bytes"
	"errors"
	"testing"

	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// FuzzOpen feeds arbitrary messages and SK offsets to Open and OpenFragment
// for every transform: it must never panic, fail only with this package's
// Error values, and, when it succeeds, return a region inside the message
// right behind the IV. The corpus starts from sealed messages of each
// transform, so mutations land next to valid shapes.
func FuzzOpen(f *testing.F) {
	ts := allTransforms()
	sks := make([]*ikecrypto.SK, len(ts))
	for i, tr := range ts {
		sks[i] = newSK(f, tr)
		for _, frag := range []bool{false, true} {
			hdr := ikecrypto.SKHeaderLen
			if frag {
				hdr = ikecrypto.SKFHeaderLen
			}
			for _, n := range []int{0, 17, 64} {
				buf, skOff, _ := layout(tr, 0, hdr, n)
				seal := sks[i].Seal
				if frag {
					seal = sks[i].SealFragment
				}
				m, err := seal(buf, skOff, n)
				if err != nil {
					f.Fatal(err)
				}
				f.Add(uint8(i), skOff, frag, buf[:m])
			}
		}
	}
	f.Add(uint8(0), 28, false, []byte{})
	f.Add(uint8(5), 0, false, make([]byte, 28))
	f.Fuzz(func(t *testing.T, sel uint8, skOff int, frag bool, msg []byte) {
		i := int(sel) % len(ts)
		tr, sk := ts[i], sks[i]
		open, hdr := sk.Open, ikecrypto.SKHeaderLen
		if frag {
			open, hdr = sk.OpenFragment, ikecrypto.SKFHeaderLen
		}
		m := bytes.Clone(msg)
		off, n, err := open(m, skOff)
		if err != nil {
			var e ikecrypto.Error
			if !errors.As(err, &e) {
				t.Fatalf("untyped error %T %v", err, err)
			}
			return
		}
		if off != skOff+hdr+tr.IVLen() || n < 0 || off+n > len(m) {
			t.Fatalf("Open returned [%d:%d+%d] of %d octets", off, off, n, len(m))
		}
	})
}

// FuzzSealOpen: whatever the layout and contents, what Seal makes Open
// gives back unchanged.
func FuzzSealOpen(f *testing.F) {
	ts := allTransforms()
	f.Add(uint8(0), uint8(0), false, []byte("inner payloads"))
	f.Add(uint8(7), uint8(40), true, make([]byte, 300))
	f.Fuzz(func(t *testing.T, sel, unenc uint8, frag bool, plain []byte) {
		if len(plain) > 4000 {
			return
		}
		tr := ts[int(sel)%len(ts)]
		sealer, opener := newSK(t, tr), newSK(t, tr)
		hdr := ikecrypto.SKHeaderLen
		seal, open := sealer.Seal, opener.Open
		if frag {
			hdr, seal, open = ikecrypto.SKFHeaderLen, sealer.SealFragment, opener.OpenFragment
		}
		buf, skOff, _ := layout(tr, int(unenc), hdr, len(plain))
		copy(buf[skOff+hdr+tr.IVLen():], plain)
		m, err := seal(buf, skOff, len(plain))
		if err != nil {
			t.Fatal(err)
		}
		off, n, err := open(buf[:m], skOff)
		if err != nil || !bytes.Equal(buf[off:off+n], plain) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParseKeyLog: the key-log parsers take any line without panicking, and
// what they accept formats back to a line they accept again.
func FuzzParseKeyLog(f *testing.F) {
	f.Add(pI2Wireshark)
	f.Add(`"IPv4","192.0.2.1","192.0.2.2","0x0000abcd","AES-CBC [RFC3602]","0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","HMAC-SHA-1-96 [RFC2404]","0x` + "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"")
	f.Add(pI2Tcpdump)
	f.Fuzz(func(t *testing.T, line string) {
		if l, err := ikecrypto.ParseWiresharkIKE(line); err == nil {
			out, err := l.AppendWireshark(nil)
			if err != nil {
				t.Fatalf("accepted %q but cannot format it: %v", line, err)
			}
			if _, err := ikecrypto.ParseWiresharkIKE(string(out)); err != nil {
				t.Fatalf("own line %q refused: %v", out, err)
			}
		}
		if l, err := ikecrypto.ParseWiresharkESP(line); err == nil {
			out, err := l.AppendWireshark(nil)
			if err != nil {
				t.Fatalf("accepted %q but cannot format it: %v", line, err)
			}
			if _, err := ikecrypto.ParseWiresharkESP(string(out)); err != nil {
				t.Fatalf("own line %q refused: %v", out, err)
			}
		}
		_, _ = ikecrypto.ParseTcpdumpIKE(bytes.NewReader([]byte(line)))
	})
}
