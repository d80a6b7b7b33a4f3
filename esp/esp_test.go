package esp_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/inet"
)

const testSPI = 0x1000beef

// testKeys returns deterministic keys of the right lengths for t.
func testKeys(t esp.Transform, seed byte) (enc, integ []byte) {
	enc = make([]byte, t.EncKeyLen())
	for i := range enc {
		enc[i] = seed + byte(i)*7
	}
	if n := t.IntegKeyLen(); n > 0 {
		integ = make([]byte, n)
		for i := range integ {
			integ[i] = seed ^ byte(i*13+5)
		}
	}
	return enc, integ
}

func testConfig(t esp.Transform, esn bool) esp.Config {
	enc, integ := testKeys(t, 0x40)
	return esp.Config{SPI: testSPI, Transform: t, EncKey: enc, IntegKey: integ, ESN: esn}
}

// pair returns an outbound and an inbound SA sharing keys.
func pair(tb testing.TB, c esp.Config) (out, in *esp.SA) {
	tb.Helper()
	out, err := esp.NewOutbound(c)
	if err != nil {
		tb.Fatalf("NewOutbound(%v): %v", c.Transform, err)
	}
	in, err = esp.NewInbound(c)
	if err != nil {
		tb.Fatalf("NewInbound(%v): %v", c.Transform, err)
	}
	return out, in
}

// seal seals payload with out into a fresh buffer with exactly the room the
// transform asks for and returns the ESP packet (a sub-slice of that
// buffer), checking Seal's geometry.
func seal(tb testing.TB, out *esp.SA, payload []byte, nh byte) []byte {
	tb.Helper()
	tr := out.Transform()
	hdr, trl := tr.HeaderLen(), tr.TrailerLen(len(payload))
	if hdr != out.HeaderLen() || trl != out.TrailerLen(len(payload)) {
		tb.Fatalf("%v: SA and transform disagree on sizes", tr)
	}
	buf := make([]byte, hdr+len(payload)+trl)
	copy(buf[hdr:], payload)
	start, n, err := out.Seal(buf, hdr, len(payload), nh)
	if err != nil {
		tb.Fatalf("Seal(%v, %d octets): %v", tr, len(payload), err)
	}
	if start != 0 || n != len(buf) || n != len(payload)+tr.Overhead(len(payload)) {
		tb.Fatalf("Seal(%v, %d octets) = %d, %d; want 0, %d", tr, len(payload), start, n, len(buf))
	}
	return buf[start : start+n]
}

// open opens a copy of pkt and returns the payload.
func open(tb testing.TB, in *esp.SA, pkt []byte) ([]byte, byte, error) {
	tb.Helper()
	b := bytes.Clone(pkt)
	off, n, nh, err := in.Open(b)
	if err != nil {
		return nil, 0, err
	}
	if off != in.HeaderLen() || n < 0 || off+n > len(b) {
		tb.Fatalf("Open = %d, %d: outside the %d-octet packet", off, n, len(b))
	}
	return b[off : off+n], nh, nil
}

// Inner packets of the three modes DMVPN can use.

func ipv4Packet(n int, proto byte, id uint16) []byte {
	if n < 20 {
		n = 20
	}
	p := make([]byte, n)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	binary.BigEndian.PutUint16(p[4:], id)
	p[8], p[9] = 64, proto
	copy(p[12:], []byte{10, 1, 0, 1})
	copy(p[16:], []byte{10, 2, 0, 1})
	binary.BigEndian.PutUint16(p[10:], inet.Checksum(p[:20]))
	for i := 20; i < n; i++ {
		p[i] = byte(i*31 + int(id))
	}
	return p
}

func ipv6Packet(n int) []byte {
	if n < 40 {
		n = 40
	}
	p := make([]byte, n)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(n-40))
	p[6], p[7] = 59, 64
	p[8], p[24] = 0x20, 0x20
	for i := 40; i < n; i++ {
		p[i] = byte(i * 17)
	}
	return p
}

// grePacket is the transport-mode payload of DMVPN: GRE with the tunnel
// key, carrying an inner IPv4 packet of n octets.
func grePacket(tb testing.TB, n int) []byte {
	h := gre.Header{KeyPresent: true, Key: 42, Protocol: gre.ProtoIPv4}
	inner := ipv4Packet(n, 1, 7)
	buf := make([]byte, h.Len()+len(inner))
	copy(buf[h.Len():], inner)
	start, err := gre.Encapsulate(buf, h.Len(), &h)
	if err != nil || start != 0 {
		tb.Fatalf("gre.Encapsulate: %d, %v", start, err)
	}
	return buf
}

type mode struct {
	name    string
	nh      byte
	payload func(tb testing.TB, n int) []byte
}

var modes = []mode{
	{"transport-gre", esp.NextHeaderGRE, grePacket},
	{"tunnel-ipv4", esp.NextHeaderIPv4, func(_ testing.TB, n int) []byte { return ipv4Packet(n, 17, 9) }},
	{"tunnel-ipv6", esp.NextHeaderIPv6, func(_ testing.TB, n int) []byte { return ipv6Packet(n) }},
}

func TestRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 2, 3, 13, 14, 15, 16, 17, 20, 40, 64, 100, 1400, 1500, 9000}
	for _, tr := range esp.Transforms() {
		for _, esn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/esn=%v", tr, esn), func(t *testing.T) {
				out, in := pair(t, testConfig(tr, esn))
				if esn {
					// Cross the 2^32 boundary: the high half is in the ICV
					// or AAD only.
					esp.SetNextSeq(out, 1<<32-3)
					if err := esp.AcceptSeq(in, 1<<32-4); err != nil {
						t.Fatal(err)
					}
				}
				var wantPackets, wantBytes uint64
				for _, m := range modes {
					for _, size := range sizes {
						var payload []byte
						switch {
						case size == 0:
						case size < 20:
							payload = bytes.Repeat([]byte{byte(size)}, size) // not an IP packet: ESP does not care
						default:
							payload = m.payload(t, size)
						}
						seqBefore := out.Seq()
						pkt := seal(t, out, payload, m.nh)
						spi, lo, err := esp.ParseHeader(pkt)
						if err != nil || spi != testSPI || uint64(lo) != uint64(uint32(seqBefore+1)) || out.Seq() != seqBefore+1 {
							t.Fatalf("%s/%d: header SPI %#x seq %#x (%v), SA seq %d→%d", m.name, size, spi, lo, err, seqBefore, out.Seq())
						}
						if size >= 16 && bytes.Contains(pkt, payload[:16]) {
							t.Fatalf("%s/%d: the plaintext is visible in the ESP packet", m.name, size)
						}
						got, nh, err := open(t, in, pkt)
						if err != nil {
							t.Fatalf("%s/%d: Open: %v", m.name, size, err)
						}
						if nh != m.nh || !bytes.Equal(got, payload) {
							t.Fatalf("%s/%d: Open gave next header %d and %x, want %d and %x", m.name, size, nh, got, m.nh, payload)
						}
						if in.Seq() != out.Seq() {
							t.Fatalf("%s/%d: inbound top %#x, outbound seq %#x", m.name, size, in.Seq(), out.Seq())
						}
						// The same packet again is a replay.
						if _, _, err := open(t, in, pkt); err != esp.ErrReplayed {
							t.Fatalf("%s/%d: second Open = %v, want ErrReplayed", m.name, size, err)
						}
						wantPackets++
						wantBytes += uint64(len(payload))
					}
				}
				for _, sa := range []*esp.SA{out, in} {
					if p, b := sa.Usage(); p != wantPackets || b != wantBytes {
						t.Errorf("outbound=%v: Usage %d packets %d octets, want %d, %d", sa.Outbound(), p, b, wantPackets, wantBytes)
					}
				}
				if esn && out.Seq() < 1<<32 {
					t.Errorf("did not cross 2^32: seq %#x", out.Seq())
				}
			})
		}
	}
}

// TestSealMatchesReference checks every transform against an ESP sealer
// written out here from the RFCs with crypto/cipher, crypto/hmac and x/crypto
// directly: the same IV, keys and sequence number must give the same bytes.
func TestSealMatchesReference(t *testing.T) {
	for _, tr := range esp.Transforms() {
		for _, esn := range []bool{false, true} {
			for _, seq := range []uint64{1, 0x1234_5678, 1<<32 - 7, 0x0000_0007_ffff_fffe} {
				if !esn && seq > math.MaxUint32 {
					continue
				}
				c := testConfig(tr, esn)
				out, err := esp.NewOutbound(c)
				if err != nil {
					t.Fatal(err)
				}
				iv := bytes.Repeat([]byte{0xa5, 0x3c}, tr.IVLen()/2)
				esp.SetTestIV(out, iv)
				esp.SetNextSeq(out, seq)
				for _, size := range []int{0, 1, 45, 46, 47, 48, 333} {
					payload := bytes.Repeat([]byte{0x5a, byte(size)}, size)[:size]
					got := seal(t, out, payload, 47)
					want := refSeal(t, c, seq, iv, payload, 47)
					if !bytes.Equal(got, want) {
						t.Fatalf("%v esn=%v seq %#x size %d:\nSeal: %x\nref:  %x", tr, esn, seq, size, got, want)
					}
					seq++
				}
			}
		}
	}
}

// refSeal builds an ESP packet the long way (RFC 4303 §2, §3.3; RFC 4106;
// RFC 7634; RFC 3602 with RFC 2404/4868).
func refSeal(tb testing.TB, c esp.Config, seq uint64, iv, payload []byte, nh byte) []byte {
	tb.Helper()
	tr := c.Transform
	align := 4
	if !tr.AEAD() {
		align = 16
	}
	plain := append([]byte(nil), payload...)
	for i := 1; (len(plain)+2)%align != 0; i++ {
		plain = append(plain, byte(i))
	}
	plain = append(plain, byte(len(plain)-len(payload)), nh)
	hdr := binary.BigEndian.AppendUint32(nil, c.SPI)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(seq))
	pkt := append(append(hdr, iv...), make([]byte, 0)...)
	if tr.AEAD() {
		key, salt := c.EncKey[:len(c.EncKey)-4], c.EncKey[len(c.EncKey)-4:]
		var a cipher.AEAD
		var err error
		if tr.Encryption == esp.EncrChaCha20Poly1305 {
			a, err = chacha20poly1305.New(key)
		} else {
			var b cipher.Block
			if b, err = aes.NewCipher(key); err == nil {
				a, err = cipher.NewGCM(b)
			}
		}
		if err != nil {
			tb.Fatal(err)
		}
		aad := binary.BigEndian.AppendUint32(nil, c.SPI)
		if c.ESN {
			aad = binary.BigEndian.AppendUint32(aad, uint32(seq>>32))
		}
		aad = binary.BigEndian.AppendUint32(aad, uint32(seq))
		return a.Seal(pkt, append(append([]byte(nil), salt...), iv...), plain, aad)
	}
	b, err := aes.NewCipher(c.EncKey)
	if err != nil {
		tb.Fatal(err)
	}
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, plain)
	pkt = append(pkt, ct...)
	var h func() hash.Hash
	var icvLen int
	switch tr.Integrity {
	case esp.IntegHMACSHA1_96:
		h, icvLen = sha1.New, 12
	case esp.IntegHMACSHA256128:
		h, icvLen = sha256.New, 16
	case esp.IntegHMACSHA384192:
		h, icvLen = sha512.New384, 24
	case esp.IntegHMACSHA512256:
		h, icvLen = sha512.New, 32
	}
	m := hmac.New(h, c.IntegKey)
	m.Write(pkt)
	if c.ESN {
		m.Write(binary.BigEndian.AppendUint32(nil, uint32(seq>>32)))
	}
	return append(pkt, m.Sum(nil)[:icvLen]...)
}

// TestEveryByteFlipped: any change to a sealed packet makes Open fail, and
// the failures leave the replay window as it was.
func TestEveryByteFlipped(t *testing.T) {
	for _, tr := range esp.Transforms() {
		for _, esn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/esn=%v", tr, esn), func(t *testing.T) {
				out, in := pair(t, testConfig(tr, esn))
				pkt := seal(t, out, grePacket(t, 61), esp.NextHeaderGRE)
				for i := range pkt {
					for _, bit := range []byte{0x01, 0x80} {
						b := bytes.Clone(pkt)
						b[i] ^= bit
						_, _, _, err := in.Open(b)
						want := esp.ErrAuth
						if i < 4 {
							want = esp.ErrSPIMismatch
						}
						if i >= 4 && i < 8 && err == esp.ErrTooOld && binary.BigEndian.Uint32(b[4:]) == 0 {
							continue // sequence number 1 became 0
						}
						if err != want {
							t.Fatalf("byte %d ^ %#x: Open = %v, want %v", i, bit, err, want)
						}
					}
				}
				if in.Seq() != 0 {
					t.Fatalf("failed opens moved the window to %d", in.Seq())
				}
				if _, _, err := open(t, in, pkt); err != nil {
					t.Fatalf("the unmodified packet after the forgeries: %v", err)
				}
			})
		}
	}
}

func TestTruncatedAndExtended(t *testing.T) {
	for _, tr := range esp.Transforms() {
		t.Run(tr.String(), func(t *testing.T) {
			out, in := pair(t, testConfig(tr, false))
			pkt := seal(t, out, grePacket(t, 40), esp.NextHeaderGRE)
			for n := range len(pkt) {
				_, _, _, err := in.Open(bytes.Clone(pkt[:n]))
				switch {
				case err == nil:
					t.Fatalf("Open of the first %d of %d octets succeeded", n, len(pkt))
				case err != esp.ErrTruncated && err != esp.ErrBadLength && err != esp.ErrAuth:
					t.Fatalf("Open of %d octets: %v", n, err)
				}
			}
			for _, extra := range [][]byte{{0}, make([]byte, 16), make([]byte, 3)} {
				if _, _, _, err := in.Open(append(bytes.Clone(pkt), extra...)); err != esp.ErrAuth && err != esp.ErrBadLength {
					t.Fatalf("Open with %d octets appended: %v", len(extra), err)
				}
			}
			if _, _, err := open(t, in, pkt); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPadding: authentic packets (sealed by the reference with a chosen
// trailer) whose padding is wrong are refused after the ICV; non-minimal
// padding that follows the rules is accepted.
func TestPadding(t *testing.T) {
	for _, tr := range []esp.Transform{esp.GCM128, esp.ChaCha20Poly1305, esp.CBC128SHA1, esp.CBC256SHA512} {
		t.Run(tr.String(), func(t *testing.T) {
			align := 4
			if !tr.AEAD() {
				align = 16
			}
			payload := grePacket(t, 30) // 38 octets
			mono := func(n int) []byte {
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(i + 1)
				}
				return p
			}
			// The trailer's padding length that aligns, plus k whole blocks.
			base := (align - (len(payload)+2)%align) % align
			cases := []struct {
				name    string
				padding []byte
				padLen  int
				want    error
			}{
				{"minimal", mono(base), base, nil},
				{"one more block", mono(base + align), base + align, nil},
				{"up to 255 octets", mono(255 - (len(payload)+257)%align), 255 - (len(payload)+257)%align, nil},
				{"pad length past the payload", mono(base + align), 250, esp.ErrBadPadding},
				{"pad length 255 with less", mono(base + 2*align), 255, esp.ErrBadPadding},
				{"zeros", make([]byte, base+align), base + align, esp.ErrBadPadding},
				{"off by one", append(mono(base+align-1), 0), base + align, esp.ErrBadPadding},
				{"reversed", func() []byte { p := mono(base + align); p[0], p[len(p)-1] = p[len(p)-1], p[0]; return p }(), base + align, esp.ErrBadPadding},
				{"pad length short of the padding", mono(base + align), base + align - 1, esp.ErrBadPadding},
			}
			for i, c := range cases {
				if (len(payload)+len(c.padding)+2)%align != 0 {
					continue // only 255 may not align with 16-octet blocks
				}
				cfg := testConfig(tr, false)
				_, in := pair(t, cfg)
				plain := append(append(bytes.Clone(payload), c.padding...), byte(c.padLen), esp.NextHeaderGRE)
				pkt := refSealRaw(t, cfg, uint64(i+1), bytes.Repeat([]byte{7}, tr.IVLen()), plain)
				got, nh, err := open(t, in, pkt)
				if err != c.want {
					t.Fatalf("%s: Open = %v, want %v", c.name, err, c.want)
				}
				if err == nil && (nh != esp.NextHeaderGRE || !bytes.Equal(got, payload)) {
					t.Fatalf("%s: Open gave %d %x", c.name, nh, got)
				}
				if err != nil && in.Seq() != uint64(i+1) {
					// RFC 4303 §3.4.3: the window moves once the ICV verified.
					t.Fatalf("%s: window top %d after an authentic packet with bad padding", c.name, in.Seq())
				}
			}
		})
	}
}

// refSealRaw seals an already padded plaintext (payload ‖ padding ‖ pad
// length ‖ next header) the reference way.
func refSealRaw(tb testing.TB, c esp.Config, seq uint64, iv, plain []byte) []byte {
	tb.Helper()
	tr := c.Transform
	hdr := binary.BigEndian.AppendUint32(nil, c.SPI)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(seq))
	hdr = append(hdr, iv...)
	if tr.AEAD() {
		key, salt := c.EncKey[:len(c.EncKey)-4], c.EncKey[len(c.EncKey)-4:]
		var a cipher.AEAD
		if tr.Encryption == esp.EncrChaCha20Poly1305 {
			a, _ = chacha20poly1305.New(key)
		} else {
			b, _ := aes.NewCipher(key)
			a, _ = cipher.NewGCM(b)
		}
		aad := binary.BigEndian.AppendUint32(nil, c.SPI)
		aad = binary.BigEndian.AppendUint32(aad, uint32(seq))
		return a.Seal(hdr, append(append([]byte(nil), salt...), iv...), plain, aad)
	}
	b, _ := aes.NewCipher(c.EncKey)
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, plain)
	p := append(hdr, ct...)
	mac := esp.ICV(tr, c.IntegKey, p)
	return append(p, mac...)
}

func TestReplayThroughSA(t *testing.T) {
	out, in := pair(t, testConfig(esp.GCM128, false))
	var pkts [][]byte
	for i := range 100 {
		pkts = append(pkts, seal(t, out, ipv4Packet(60+i, 6, uint16(i)), esp.NextHeaderIPv4))
	}
	order := []int{0, 2, 1, 5, 4, 3, 99, 50, 36, 98}
	for _, i := range order {
		if _, _, err := open(t, in, pkts[i]); err != nil {
			t.Fatalf("packet %d: %v", i+1, err)
		}
	}
	if _, _, err := open(t, in, pkts[4]); err != esp.ErrReplayed {
		t.Fatalf("replay: %v", err)
	}
	w := in.Seq() // 100; the default window is 1024, so make something old:
	if w != 100 {
		t.Fatalf("top %d", w)
	}
	out2, in2 := pair(t, esp.Config{SPI: 7, Transform: esp.GCM128, EncKey: make([]byte, 20), ReplayWindow: 64})
	first := seal(t, out2, []byte("first"), 59)
	for range 64 {
		seal(t, out2, nil, 59)
	}
	last := seal(t, out2, []byte("last"), 59)
	if _, nh, err := open(t, in2, last); err != nil || nh != esp.NextHeaderNone {
		t.Fatalf("last: %d %v", nh, err)
	}
	if _, _, err := open(t, in2, first); err != esp.ErrTooOld {
		t.Fatalf("a packet 65 behind with a 64-packet window: %v", err)
	}
}

func TestSeqExhaustion(t *testing.T) {
	for _, esn := range []bool{false, true} {
		for _, tr := range []esp.Transform{esp.GCM256, esp.CBC128SHA1} {
			t.Run(fmt.Sprintf("%v/esn=%v", tr, esn), func(t *testing.T) {
				out, in := pair(t, testConfig(tr, esn))
				last := uint64(math.MaxUint32)
				if esn {
					last = math.MaxUint64
				}
				soft := last - last/8
				esp.SetNextSeq(out, soft-1)
				seal(t, out, []byte("x"), 4)
				if out.SoftExpired() || out.HardExpired() {
					t.Fatalf("expired at seq %#x", out.Seq())
				}
				seal(t, out, []byte("x"), 4)
				if !out.SoftExpired() || out.HardExpired() {
					t.Fatalf("seq %#x: soft %v hard %v; want soft only", out.Seq(), out.SoftExpired(), out.HardExpired())
				}
				esp.SetNextSeq(out, last)
				pkt := seal(t, out, []byte("the last one"), 4)
				if !out.HardExpired() {
					t.Fatal("not hard expired after the last sequence number")
				}
				buf := make([]byte, 100)
				copy(buf[40:], "more")
				before := bytes.Clone(buf)
				if _, _, err := out.Seal(buf, 40, 4, 4); err != esp.ErrSeqExhausted {
					t.Fatalf("Seal past %#x = %v, want ErrSeqExhausted", last, err)
				}
				if !bytes.Equal(buf, before) || out.Seq() != last {
					t.Fatal("a refused Seal wrote to the buffer or used a sequence number")
				}
				if err := esp.AcceptSeq(in, last-10); err != nil {
					t.Fatal(err)
				}
				if got, _, err := open(t, in, pkt); err != nil || string(got) != "the last one" {
					t.Fatalf("Open of seq %#x: %q, %v", last, got, err)
				}
			})
		}
	}
}

func TestLifetimes(t *testing.T) {
	c := testConfig(esp.CBC256SHA256, true)
	c.Lifetime = esp.Lifetime{SoftPackets: 3, HardPackets: 5, SoftBytes: 250, HardBytes: 1000}
	out, in := pair(t, c)
	if out.Lifetime() != c.Lifetime {
		t.Fatalf("Lifetime %+v", out.Lifetime())
	}
	var pkts [][]byte
	for i := range 2 {
		pkts = append(pkts, seal(t, out, make([]byte, 100), 4))
		if out.SoftExpired() {
			t.Fatalf("soft expired after %d packets", i+1)
		}
	}
	pkts = append(pkts, seal(t, out, make([]byte, 10), 4)) // 3 packets: soft (packets); 210 octets
	if !out.SoftExpired() || out.HardExpired() {
		t.Fatal("3 packets: want soft expired only")
	}
	pkts = append(pkts, seal(t, out, make([]byte, 900), 4)) // 1110 octets ≥ 1000: hard
	if !out.HardExpired() {
		t.Fatal("1110 octets: want hard expired")
	}
	if _, _, err := out.Seal(make([]byte, 100), 40, 10, 4); err != esp.ErrLifetimeExpired {
		t.Fatalf("Seal after the hard limit: %v", err)
	}
	for i, p := range pkts {
		_, _, err := open(t, in, p)
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
	}
	if !in.HardExpired() {
		t.Fatal("inbound: want hard expired")
	}
	if _, _, err := open(t, in, pkts[0]); err != esp.ErrLifetimeExpired {
		t.Fatalf("Open after the hard limit: %v", err)
	}

	// Packet limits alone.
	c.Lifetime = esp.Lifetime{HardPackets: 2}
	out, _ = pair(t, c)
	seal(t, out, nil, 59)
	seal(t, out, nil, 59)
	if _, _, err := out.Seal(make([]byte, 64), 32, 0, 59); err != esp.ErrLifetimeExpired || !out.SoftExpired() {
		t.Fatalf("third packet with HardPackets 2: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	good := testConfig(esp.GCM128, false)
	cases := []struct {
		name string
		mod  func(*esp.Config)
		want error
	}{
		{"SPI 0", func(c *esp.Config) { c.SPI = 0 }, esp.ErrConfig},
		{"short key", func(c *esp.Config) { c.EncKey = c.EncKey[:16] }, esp.ErrConfig},
		{"integrity key for GCM", func(c *esp.Config) { c.IntegKey = make([]byte, 20) }, esp.ErrConfig},
		{"GCM with HMAC", func(c *esp.Config) { c.Transform.Integrity = esp.IntegHMACSHA1_96 }, esp.ErrTransform},
		{"AES-192", func(c *esp.Config) { c.Transform.KeyBits = 192; c.EncKey = make([]byte, 28) }, esp.ErrTransform},
		{"CBC without integrity", func(c *esp.Config) { c.Transform = esp.Transform{Encryption: esp.EncrAESCBC, KeyBits: 128} }, esp.ErrTransform},
		{"unknown encryption", func(c *esp.Config) { c.Transform.Encryption = 3 }, esp.ErrTransform},
		{"unknown integrity", func(c *esp.Config) {
			c.Transform = esp.Transform{Encryption: esp.EncrAESCBC, KeyBits: 128, Integrity: 5}
		}, esp.ErrTransform},
		{"ChaCha20 128", func(c *esp.Config) { c.Transform = esp.Transform{Encryption: esp.EncrChaCha20Poly1305, KeyBits: 128} }, esp.ErrTransform},
		{"window not a power of two", func(c *esp.Config) { c.ReplayWindow = 1000 }, esp.ErrConfig},
		{"soft above hard", func(c *esp.Config) { c.Lifetime = esp.Lifetime{SoftPackets: 10, HardPackets: 5} }, esp.ErrConfig},
		{"soft bytes above hard", func(c *esp.Config) { c.Lifetime = esp.Lifetime{SoftBytes: 10, HardBytes: 5} }, esp.ErrConfig},
		{"wrong HMAC key length", func(c *esp.Config) {
			c.Transform = esp.CBC128SHA256
			c.EncKey = make([]byte, 16)
			c.IntegKey = make([]byte, 20)
		}, esp.ErrConfig},
	}
	for _, cs := range cases {
		c := good
		cs.mod(&c)
		_, errIn := esp.NewInbound(c)
		_, errOut := esp.NewOutbound(c)
		if !errors.Is(errIn, cs.want) || (!errors.Is(errOut, cs.want) && cs.name != "window not a power of two") {
			t.Errorf("%s: NewInbound %v, NewOutbound %v; want %v", cs.name, errIn, errOut, cs.want)
		}
	}
	// ChaCha20-Poly1305 with KeyBits 0 means 256.
	c := testConfig(esp.Transform{Encryption: esp.EncrChaCha20Poly1305}, false)
	if len(c.EncKey) != 36 {
		t.Fatalf("ChaCha20-Poly1305 key length %d", len(c.EncKey))
	}
	if _, err := esp.NewOutbound(c); err != nil {
		t.Fatal(err)
	}
}

func TestSealErrors(t *testing.T) {
	for _, tr := range []esp.Transform{esp.GCM128, esp.CBC128SHA1} {
		out, in := pair(t, testConfig(tr, false))
		hdr := tr.HeaderLen()
		n := 50
		trl := tr.TrailerLen(n)
		cases := []struct {
			name    string
			buf     int
			off, n  int
			want    error
			nowrite bool
		}{
			{"no headroom", hdr - 1 + n + trl, hdr - 1, n, esp.ErrNoHeadroom, true},
			{"no tailroom", hdr + n + trl - 1, hdr, n, esp.ErrNoTailroom, true},
			{"payload past the buffer", hdr + n, hdr, n + 1, esp.ErrBadLength, true},
			{"negative length", hdr + n + trl, hdr, -1, esp.ErrBadLength, true},
			{"negative offset", hdr + n + trl, -1, n, esp.ErrBadLength, true},
			{"offset past the end", 10, 11, 0, esp.ErrBadLength, true},
			{"exact room", hdr + n + trl, hdr, n, nil, false},
		}
		for _, c := range cases {
			buf := make([]byte, c.buf)
			for i := range buf {
				buf[i] = byte(i)
			}
			before := bytes.Clone(buf)
			seq := out.Seq()
			_, _, err := out.Seal(buf, c.off, c.n, 4)
			if err != c.want {
				t.Errorf("%v %s: Seal = %v, want %v", tr, c.name, err, c.want)
			}
			if c.nowrite && (!bytes.Equal(buf, before) || out.Seq() != seq) {
				t.Errorf("%v %s: a refused Seal changed the buffer or the sequence number", tr, c.name)
			}
		}
		if _, _, err := in.Seal(make([]byte, 200), 50, 10, 4); err != esp.ErrDirection {
			t.Errorf("Seal on an inbound SA: %v", err)
		}
		if _, _, _, err := out.Open(make([]byte, 200)); err != esp.ErrDirection {
			t.Errorf("Open on an outbound SA: %v", err)
		}
		pkt := seal(t, out, []byte("payload"), 4)
		other, err := esp.NewInbound(func() esp.Config { c := testConfig(tr, false); c.SPI++; return c }())
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := open(t, other, pkt); err != esp.ErrSPIMismatch {
			t.Errorf("Open with another SA's SPI: %v", err)
		}
		wrongKey, err := esp.NewInbound(func() esp.Config {
			c := testConfig(tr, false)
			c.EncKey, c.IntegKey = testKeys(tr, 0x41)
			return c
		}())
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := open(t, wrongKey, pkt); err != esp.ErrAuth {
			t.Errorf("Open with the wrong keys: %v", err)
		}
	}
}

// TestSealInPlaceGeometry: Seal and Open in a buffer with more room than
// needed touch only the ESP packet's bytes.
func TestSealInPlaceGeometry(t *testing.T) {
	for _, tr := range esp.Transforms() {
		out, in := pair(t, testConfig(tr, false))
		payload := grePacket(t, 200)
		const head, tail = 64, 64
		buf := make([]byte, head+len(payload)+esp.MaxTrailerLen+tail)
		for i := range buf {
			buf[i] = 0xee
		}
		copy(buf[head:], payload)
		start, n, err := out.Seal(buf, head, len(payload), esp.NextHeaderGRE)
		if err != nil {
			t.Fatal(err)
		}
		if start != head-tr.HeaderLen() {
			t.Fatalf("%v: start %d, want %d", tr, start, head-tr.HeaderLen())
		}
		for i, b := range buf {
			if (i < start || i >= start+n) && b != 0xee {
				t.Fatalf("%v: Seal wrote octet %d outside the packet [%d, %d)", tr, i, start, start+n)
			}
		}
		pkt := buf[start : start+n]
		off, m, nh, err := in.Open(pkt)
		if err != nil || nh != esp.NextHeaderGRE || !bytes.Equal(pkt[off:off+m], payload) || &pkt[off] != &buf[head] {
			t.Fatalf("%v: Open in place: %v, %d", tr, err, nh)
		}
	}
}

func TestTransformSizes(t *testing.T) {
	type sizes struct{ hdr, iv, icv, trailer1400, overhead1400, key, integ int }
	want := map[esp.Transform]sizes{
		esp.GCM128:           {16, 8, 16, 20, 36, 20, 0},
		esp.GCM256:           {16, 8, 16, 20, 36, 36, 0},
		esp.ChaCha20Poly1305: {16, 8, 16, 20, 36, 36, 0},
		esp.CBC128SHA1:       {24, 16, 12, 20, 44, 16, 20},
		esp.CBC256SHA256:     {24, 16, 16, 24, 48, 32, 32},
		esp.CBC256SHA384:     {24, 16, 24, 32, 56, 32, 48},
		esp.CBC256SHA512:     {24, 16, 32, 40, 64, 32, 64},
	}
	for tr, w := range want {
		got := sizes{tr.HeaderLen(), tr.IVLen(), tr.ICVLen(), tr.TrailerLen(1400), tr.Overhead(1400), tr.EncKeyLen(), tr.IntegKeyLen()}
		if got != w {
			t.Errorf("%v: sizes %+v, want %+v", tr, got, w)
		}
		if tr.KeymatLen() != w.key+w.integ {
			t.Errorf("%v: KeymatLen %d", tr, tr.KeymatLen())
		}
	}
	for _, tr := range esp.Transforms() {
		if tr.HeaderLen() > esp.MaxHeaderLen || tr.MaxTrailerLen() > esp.MaxTrailerLen {
			t.Errorf("%v exceeds MaxHeaderLen/MaxTrailerLen", tr)
		}
		for n := range 100 {
			if tr.TrailerLen(n) > tr.MaxTrailerLen() || (n+tr.PadLen(n)+2)%4 != 0 {
				t.Errorf("%v: TrailerLen(%d) = %d", tr, n, tr.TrailerLen(n))
			}
		}
		for size := 0; size < 2000; size++ {
			m := tr.MaxPayload(size)
			if m > 0 && m+tr.Overhead(m) > size {
				t.Fatalf("%v: MaxPayload(%d) = %d does not fit (%d)", tr, size, m, m+tr.Overhead(m))
			}
			if m+1+tr.Overhead(m+1) <= size {
				t.Fatalf("%v: MaxPayload(%d) = %d, but %d fits", tr, size, m, m+1)
			}
		}
		if s := tr.String(); s == "" || tr.Valid() != nil {
			t.Errorf("%v: String %q, Valid %v", tr, s, tr.Valid())
		}
	}
	if allocs := testing.AllocsPerRun(100, func() {
		for _, tr := range []esp.Transform{esp.GCM128, esp.CBC256SHA512} {
			_ = tr.HeaderLen() + tr.TrailerLen(1400) + tr.Overhead(100) + tr.MaxPayload(1480) + tr.MaxTrailerLen()
		}
	}); allocs != 0 {
		t.Errorf("the size methods allocate %.1f times", allocs)
	}
	if esp.MaxHeaderLen != 24 || esp.MaxTrailerLen != 49 {
		t.Fatalf("MaxHeaderLen %d, MaxTrailerLen %d", esp.MaxHeaderLen, esp.MaxTrailerLen)
	}
	if got := esp.GCM128.MaxPayload(1500 - 20); got != 1446 {
		t.Errorf("GCM-128 in a 1500-octet IPv4 MTU: %d", got)
	}
	if got := esp.CBC128SHA1.MaxPayload(1500 - 20); got != 1438 {
		t.Errorf("CBC-SHA1 in a 1500-octet IPv4 MTU: %d", got)
	}
}

func TestErrors(t *testing.T) {
	seen := map[string]esp.Error{}
	for e := esp.Error(1); int(e) < esp.ErrorCount; e++ {
		s := e.Error()
		if prev, dup := seen[s]; dup || s == "esp: unknown error" {
			t.Errorf("error %d: %q (duplicate of %d?)", e, s, prev)
		}
		seen[s] = e
	}
	if esp.Error(0).Error() != "esp: unknown error" || esp.Error(200).Error() != "esp: unknown error" {
		t.Error("out-of-range errors")
	}
	if _, _, err := esp.ParseHeader([]byte{1, 2, 3, 4, 5, 6, 7}); err != esp.ErrTruncated {
		t.Error(err)
	}
	spi, seq, err := esp.ParseHeader([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9})
	if err != nil || spi != 0x01020304 || seq != 0x05060708 {
		t.Error(spi, seq, err)
	}
}

func TestClassifyUDP(t *testing.T) {
	cases := []struct {
		b    []byte
		want esp.UDPKind
	}{
		{nil, esp.UDPInvalid},
		{[]byte{0xff}, esp.UDPKeepalive},
		{[]byte{0xfe}, esp.UDPInvalid},
		{[]byte{0, 0, 0}, esp.UDPInvalid},
		{[]byte{0, 0, 0, 0}, esp.UDPIKE},
		{append(make([]byte, 4), make([]byte, 28)...), esp.UDPIKE},
		{[]byte{1, 2, 3, 4}, esp.UDPInvalid},
		{[]byte{1, 2, 3, 4, 5, 6, 7}, esp.UDPInvalid},
		{[]byte{0, 0, 0, 1, 0, 0, 0, 1}, esp.UDPESP},
		{[]byte{0xff, 0xff}, esp.UDPInvalid},
	}
	for _, c := range cases {
		if got := esp.ClassifyUDP(c.b); got != c.want {
			t.Errorf("ClassifyUDP(%x) = %v, want %v", c.b, got, c.want)
		}
	}
	for k := esp.UDPInvalid; k <= esp.UDPKeepalive; k++ {
		if k.String() == "" {
			t.Error(k)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	for _, tr := range esp.Transforms() {
		for _, esn := range []bool{false, true} {
			out, in := pair(t, testConfig(tr, esn))
			payload := grePacket(t, 1392)
			buf := make([]byte, esp.MaxHeaderLen+len(payload)+esp.MaxTrailerLen)
			allocs := testing.AllocsPerRun(200, func() {
				copy(buf[esp.MaxHeaderLen:], payload)
				start, n, err := out.Seal(buf, esp.MaxHeaderLen, len(payload), esp.NextHeaderGRE)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, _, err := in.Open(buf[start : start+n]); err != nil {
					t.Fatal(err)
				}
				_ = in.SoftExpired()
				_, _ = in.Usage()
			})
			if allocs != 0 {
				t.Errorf("%v esn=%v: Seal+Open allocate %.1f times per packet", tr, esn, allocs)
			}
			// The failing paths too: a replay, a forgery, a truncation.
			replayed := seal(t, out, payload, esp.NextHeaderGRE)
			forged := seal(t, out, payload, esp.NextHeaderGRE)
			forged[len(forged)-1] ^= 1
			if _, _, err := open(t, in, replayed); err != nil {
				t.Fatal(err)
			}
			allocs = testing.AllocsPerRun(200, func() {
				if _, _, _, err := in.Open(replayed); err != esp.ErrReplayed {
					t.Fatal(err)
				}
				if _, _, _, err := in.Open(forged); err != esp.ErrAuth {
					t.Fatal(err)
				}
				if _, _, _, err := in.Open(forged[:20]); err != esp.ErrTruncated {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%v esn=%v: failing Opens allocate %.1f times", tr, esn, allocs)
			}
		}
	}
}

// TestConcurrentUse: several goroutines seal on one outbound SA and open on
// one inbound SA (run with -race); every sequence number is used once and
// every packet opens once.
func TestConcurrentUse(t *testing.T) {
	out, in := pair(t, testConfig(esp.GCM128, true))
	const workers, each = 4, 200
	pkts := make(chan []byte, workers*each)
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				payload := ipv4Packet(40+i, 17, uint16(w))
				buf := make([]byte, esp.MaxHeaderLen+len(payload)+esp.MaxTrailerLen)
				copy(buf[esp.MaxHeaderLen:], payload)
				start, n, err := out.Seal(buf, esp.MaxHeaderLen, len(payload), esp.NextHeaderIPv4)
				if err != nil {
					t.Error(err)
					return
				}
				pkts <- buf[start : start+n]
			}
		}()
	}
	for range workers {
		<-done
	}
	close(pkts)
	var all [][]byte
	seen := map[uint32]bool{}
	for p := range pkts {
		_, seq, _ := esp.ParseHeader(p)
		if seen[seq] {
			t.Fatalf("sequence number %d used twice", seq)
		}
		seen[seq] = true
		all = append(all, p)
	}
	errs := make(chan error, len(all))
	for w := range workers {
		go func() {
			for i := w; i < len(all); i += workers {
				_, _, _, err := in.Open(all[i])
				errs <- err
			}
		}()
	}
	for range all {
		if err := <-errs; err != nil && err != esp.ErrTooOld {
			t.Fatal(err) // a reordering deeper than the window is refused; nothing else may be
		}
	}
	if out.Seq() != workers*each {
		t.Fatalf("outbound seq %d", out.Seq())
	}
}
