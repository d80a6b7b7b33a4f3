package ikecrypto_test

// SK payload protection: the RFC 7634 Appendix B IKEv2 message as a whole
// known answer (ChaCha20-Poly1305), the McGrew & Viega GCM vectors with
// their 4-octet salts and 8-octet IVs (as the Linux kernel and strongSwan
// carry them: aes_gcm.c) and RFC 3602's AES-CBC cases through the keyed
// state Seal and Open use, round trips for every transform, and every
// malformed shape Open must refuse with a typed error.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

func allTransforms() []ikecrypto.Transform {
	ts := []ikecrypto.Transform{
		{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 128},
		{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 192},
		{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 256},
		{Encryption: ikecrypto.EncrChaCha20Poly1305},
	}
	for _, bits := range []int{128, 192, 256} {
		for _, in := range []ikecrypto.Integrity{ikecrypto.IntegHMACSHA1_96, ikecrypto.IntegHMACSHA256128, ikecrypto.IntegHMACSHA384192, ikecrypto.IntegHMACSHA512256} {
			ts = append(ts, ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: bits, Integrity: in})
		}
	}
	return ts
}

// newSKPair makes the sealing and opening SK of one direction with
// deterministic keys.
func newSK(t testing.TB, tr ikecrypto.Transform) *ikecrypto.SK {
	t.Helper()
	enc := make([]byte, tr.EncKeyLen())
	for i := range enc {
		enc[i] = byte(0x40 + i)
	}
	integ := make([]byte, tr.IntegKeyLen())
	for i := range integ {
		integ[i] = byte(0x90 + i)
	}
	sk, err := ikecrypto.NewSK(tr, enc, integ)
	if err != nil {
		t.Fatalf("%v: %v", tr, err)
	}
	return sk
}

// layout builds an IKE message in a buffer with room for Seal: the IKE
// header, unenc octets of an unencrypted payload, the SK (or SKF) header,
// room for the IV, the n octets of inner payloads, room for the trailer.
// It returns the buffer, skOff and the plaintext it put in.
func layout(tr ikecrypto.Transform, unenc, hdrLen, n int) (buf []byte, skOff int, plain []byte) {
	skOff = ikecrypto.IKEHeaderLen + unenc
	buf = make([]byte, skOff+hdrLen+tr.Overhead(n)+n+7) // 7 spare octets
	binary.BigEndian.PutUint64(buf[0:], 0x0102030405060708)
	binary.BigEndian.PutUint64(buf[8:], 0x1112131415161718)
	buf[16] = 46 // SK
	if unenc > 0 {
		buf[16] = 40 // Nonce, say
		buf[ikecrypto.IKEHeaderLen] = 46
		binary.BigEndian.PutUint16(buf[ikecrypto.IKEHeaderLen+2:], uint16(unenc))
	}
	buf[17], buf[18], buf[19] = 0x20, 35, 0x08
	binary.BigEndian.PutUint32(buf[20:], 1)
	buf[skOff] = 35 // IDi
	if hdrLen == ikecrypto.SKFHeaderLen {
		buf[skOff] = 53
		binary.BigEndian.PutUint16(buf[skOff+4:], 1)
		binary.BigEndian.PutUint16(buf[skOff+6:], 2)
	}
	plain = make([]byte, n)
	for i := range plain {
		plain[i] = byte(i*7 + 3)
	}
	copy(buf[skOff+hdrLen+tr.IVLen():], plain)
	return buf, skOff, plain
}

// RFC 7634 Appendix B: an INFORMATIONAL request with one Notify, protected
// with ChaCha20-Poly1305; the whole 69-octet message is the answer.
func TestSKChaCha20Poly1305KnownAnswer(t *testing.T) {
	key := unhex(t, "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f a0a1a2a3")
	aad := unhex(t, "c0c1c2c3c4c5c6c7 d0d1d2d3d4d5d6d7 2e202500 00000009 00000045 29000029")
	iv := unhex(t, "1011121314151617")
	notify := unhex(t, "0000000c 00004001 0000000a")
	ct := unhex(t, "610394701f8d017f7c12924889 6b71bfe25236efd7cdc67066906315b2")
	want := concat(aad, iv, ct)
	tr := ikecrypto.Transform{Encryption: ikecrypto.EncrChaCha20Poly1305}

	open, _ := ikecrypto.NewSK(tr, key, nil)
	msg := bytes.Clone(want)
	off, n, err := open.Open(msg, ikecrypto.IKEHeaderLen)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(msg[off:off+n], notify) {
		t.Fatalf("inner payloads %x, want %x", msg[off:off+n], notify)
	}

	seal, _ := ikecrypto.NewSK(tr, key, nil)
	seal.SetNextIV(0x1011121314151617)
	buf := make([]byte, 100)
	copy(buf, aad[:ikecrypto.IKEHeaderLen+2]) // header and the SK's Next Payload, C bit
	binary.BigEndian.PutUint32(buf[24:], 0)   // Seal sets the lengths
	copy(buf[40:], notify)
	m, err := seal.Seal(buf, ikecrypto.IKEHeaderLen, len(notify))
	if err != nil || !bytes.Equal(buf[:m], want) {
		t.Fatalf("Seal = %x, %v\nwant   %x", buf[:m], err, want)
	}
}

func TestGCMKnownAnswers(t *testing.T) {
	plain64 := unhex(t, "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
	for _, v := range []struct {
		name          string
		bits          int
		key, aad, out string
		n             int
	}{
		{"case 3", 128, "feffe9928665731c6d6a8f9467308308 cafebabe", "",
			"42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985 4d5c2af327cd64a62cf35abd2ba6fab4", 64},
		{"case 4", 128, "feffe9928665731c6d6a8f9467308308 cafebabe", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
			"42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091 5bc94fbc3221a5db94fae95ae7121a47", 60},
		{"case 15", 256, "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308 cafebabe", "",
			"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad b094dac5d93471bdec1a502270e3cc6c", 64},
		{"case 16", 256, "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308 cafebabe", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
			"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662 76fc6ece0f4e1768cddf8853bb2d551b", 60},
	} {
		tr := ikecrypto.Transform{Encryption: ikecrypto.EncrAESGCM16, KeyBits: v.bits}
		sk, err := ikecrypto.NewSK(tr, unhex(t, v.key), nil)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		// The salt is the last 4 octets of SK_e: nonce = cafebabe ‖ IV.
		got := sk.SealAEAD(unhex(t, "facedbaddecaf888"), unhex(t, v.aad), plain64[:v.n])
		if want := unhex(t, v.out); !bytes.Equal(got, want) {
			t.Errorf("%s: %x\nwant     %x", v.name, got, want)
		}
	}
}

func TestCBCKnownAnswers(t *testing.T) {
	for _, v := range []struct{ name, key, iv, plain, out string }{
		{"RFC3602 1", "06a9214036b8a15b512e03d534120006", "3dafba429d9eb430b422da802c9fac41",
			"53696e676c6520626c6f636b206d7367", "e353779c1079aeb82708942dbe77181a"},
		{"RFC3602 2", "c286696d887c9aa0611bbb3e2025a45a", "562e17996d093d28ddb3ba695a2e6f58",
			"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
			"d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1"},
		{"RFC3602 3", "56e47a38c5598974bc46903dba290349", "8ce82eefbea0da3c44699ed7db51b7d9",
			"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf",
			"c30e32ffedc0774e6aff6af0869f71aa0f3af07a9a31a9c684db207eb0ef8e4e35907aa632c3ffdf868bb7b29d3d46ad83ce9f9a102ee99d49a53e87f4c3da55"},
	} {
		tr := ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: 128, Integrity: ikecrypto.IntegHMACSHA256128}
		sk, err := ikecrypto.NewSK(tr, unhex(t, v.key), make([]byte, 32))
		if err != nil {
			t.Fatal(err)
		}
		// Twice: the IV is set per message, never chained from the last.
		for range 2 {
			if got := sk.EncryptCBC(unhex(t, v.iv), unhex(t, v.plain)); !bytes.Equal(got, unhex(t, v.out)) {
				t.Errorf("%s: %x", v.name, got)
			}
		}
	}
}

func TestSKRoundTrip(t *testing.T) {
	for _, tr := range allTransforms() {
		for _, hdr := range []int{ikecrypto.SKHeaderLen, ikecrypto.SKFHeaderLen} {
			for _, unenc := range []int{0, 36} {
				for _, n := range []int{0, 1, 14, 15, 16, 17, 300, 1400} {
					sealer, opener := newSK(t, tr), newSK(t, tr)
					buf, skOff, plain := layout(tr, unenc, hdr, n)
					seal, open := sealer.Seal, opener.Open
					if hdr == ikecrypto.SKFHeaderLen {
						seal, open = sealer.SealFragment, opener.OpenFragment
					}
					m, err := seal(buf, skOff, n)
					if err != nil {
						t.Fatalf("%v hdr %d unenc %d n %d: Seal: %v", tr, hdr, unenc, n, err)
					}
					if want := skOff + hdr + n + tr.Overhead(n); m != want {
						t.Errorf("%v n %d: length %d, want %d", tr, n, m, want)
					}
					if int(binary.BigEndian.Uint32(buf[24:])) != m || int(binary.BigEndian.Uint16(buf[skOff+2:])) != m-skOff {
						t.Errorf("%v n %d: Length fields %d/%d for %d/%d", tr, n, binary.BigEndian.Uint32(buf[24:]), binary.BigEndian.Uint16(buf[skOff+2:]), m, m-skOff)
					}
					ctLen := m - skOff - hdr - tr.IVLen() - tr.ICVLen()
					if tr.AEAD() && ctLen != n+1 || !tr.AEAD() && ctLen%16 != 0 {
						t.Errorf("%v n %d: ciphertext of %d octets", tr, n, ctLen)
					}
					if n >= 16 && bytes.Contains(buf[:m], plain[:16]) {
						t.Errorf("%v n %d: plaintext visible in the sealed message", tr, n)
					}
					sealed := bytes.Clone(buf[:m])
					off, got, err := open(buf[:m], skOff)
					if err != nil {
						t.Fatalf("%v hdr %d unenc %d n %d: Open: %v", tr, hdr, unenc, n, err)
					}
					if off != skOff+hdr+tr.IVLen() || !bytes.Equal(buf[off:off+got], plain) {
						t.Fatalf("%v n %d: Open gave %d octets at %d", tr, n, got, off)
					}
					// The wrong kind of payload header shifts the AAD/IV: refused.
					if hdr == ikecrypto.SKHeaderLen && n > 0 {
						if _, _, err := opener.OpenFragment(bytes.Clone(sealed), skOff); err == nil {
							t.Errorf("%v: an SK payload opened as SKF", tr)
						}
					}
				}
			}
		}
	}
}

// Two messages with the same contents get different IVs: random for CBC,
// the next counter value for AEAD.
func TestSKFreshIVs(t *testing.T) {
	for _, tr := range allTransforms() {
		sk := newSK(t, tr)
		var ivs [][]byte
		for range 3 {
			buf, skOff, _ := layout(tr, 0, ikecrypto.SKHeaderLen, 20)
			if _, err := sk.Seal(buf, skOff, 20); err != nil {
				t.Fatal(err)
			}
			ivs = append(ivs, buf[skOff+4:skOff+4+tr.IVLen()])
		}
		if bytes.Equal(ivs[0], ivs[1]) || bytes.Equal(ivs[1], ivs[2]) {
			t.Errorf("%v: IV repeated: %x", tr, ivs)
		}
		if tr.AEAD() && (binary.BigEndian.Uint64(ivs[1]) != binary.BigEndian.Uint64(ivs[0])+1) {
			t.Errorf("%v: AEAD IVs %x are not a counter", tr, ivs)
		}
	}
}

func TestSKIVExhausted(t *testing.T) {
	tr := ikecrypto.Transform{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 128}
	sk := newSK(t, tr)
	sk.SetNextIV(math.MaxUint64)
	buf, skOff, _ := layout(tr, 0, 4, 8)
	if _, err := sk.Seal(buf, skOff, 8); err != nil {
		t.Fatalf("last IV: %v", err)
	}
	buf, skOff, _ = layout(tr, 0, 4, 8)
	if _, err := sk.Seal(buf, skOff, 8); !errors.Is(err, ikecrypto.ErrIVExhausted) {
		t.Fatalf("after the last IV: %v", err)
	}
}

func TestSealRefusals(t *testing.T) {
	tr := ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: 256, Integrity: ikecrypto.IntegHMACSHA512256}
	sk := newSK(t, tr)
	buf, skOff, _ := layout(tr, 0, 4, 100)
	// One octet short of the room: refused, nothing touched.
	short := bytes.Clone(buf[:skOff+4+100+tr.Overhead(100)-1])
	before := bytes.Clone(short)
	if _, err := sk.Seal(short, skOff, 100); !errors.Is(err, ikecrypto.ErrNoRoom) || !bytes.Equal(short, before) {
		t.Errorf("short buffer: %v, touched %v", err, !bytes.Equal(short, before))
	}
	for _, c := range []struct{ skOff, n int }{{27, 10}, {-1, 10}, {28, -1}, {len(buf) + 1, 0}, {28, len(buf) + 1}} {
		if _, err := sk.Seal(buf, c.skOff, c.n); !errors.Is(err, ikecrypto.ErrBadLength) && !errors.Is(err, ikecrypto.ErrNoRoom) {
			t.Errorf("skOff %d n %d: %v", c.skOff, c.n, err)
		}
	}
	// An SK payload over 65,535 octets cannot be described.
	big := make([]byte, 70000)
	if _, err := sk.Seal(big, 28, 65535); !errors.Is(err, ikecrypto.ErrBadLength) {
		t.Errorf("oversized SK payload: %v", err)
	}
	// Key lengths.
	if _, err := ikecrypto.NewSK(tr, make([]byte, 31), make([]byte, 64)); !errors.Is(err, ikecrypto.ErrTransform) {
		t.Errorf("31-octet AES-256 key: %v", err)
	}
	if _, err := ikecrypto.NewSK(ikecrypto.Transform{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 128}, make([]byte, 16), nil); !errors.Is(err, ikecrypto.ErrTransform) {
		t.Errorf("GCM key without salt: %v", err)
	}
}

// Every octet of a sealed message matters: flipping any one makes Open fail
// with a typed error (a Length field: ErrBadLength; anything else:
// ErrIntegrity), never succeed.
func TestOpenTamper(t *testing.T) {
	for _, tr := range allTransforms() {
		sk := newSK(t, tr)
		buf, skOff, _ := layout(tr, 12, 4, 40)
		m, _ := sk.Seal(buf, skOff, 40)
		sealed := bytes.Clone(buf[:m])
		for i := range m {
			msg := bytes.Clone(sealed)
			msg[i] ^= 0x10
			_, _, err := newSK(t, tr).Open(msg, skOff)
			var e ikecrypto.Error
			if err == nil || !errors.As(err, &e) {
				t.Fatalf("%v: octet %d flipped: err %v", tr, i, err)
			}
			lengthField := (i >= 24 && i < 28) || (i >= skOff+2 && i < skOff+4)
			if lengthField && e != ikecrypto.ErrBadLength || !lengthField && e != ikecrypto.ErrIntegrity {
				t.Errorf("%v: octet %d flipped: %v", tr, i, err)
			}
		}
		// The other direction's key does not open it.
		other, _ := ikecrypto.NewSK(tr, bytes.Repeat([]byte{1}, tr.EncKeyLen()), bytes.Repeat([]byte{2}, tr.IntegKeyLen()))
		if _, _, err := other.Open(bytes.Clone(sealed), skOff); !errors.Is(err, ikecrypto.ErrIntegrity) {
			t.Errorf("%v: wrong key: %v", tr, err)
		}
	}
}

// Malformed shapes: each is refused with its typed error before any length
// is used, never a panic.
func TestOpenMalformed(t *testing.T) {
	for _, tr := range allTransforms() {
		sk := newSK(t, tr)
		buf, skOff, _ := layout(tr, 0, 4, 40)
		m, _ := sk.Seal(buf, skOff, 40)
		good := bytes.Clone(buf[:m])
		iv, icv := tr.IVLen(), tr.ICVLen()

		// withLen fixes both Length fields after a change of size, so the
		// check that fires is the one under test.
		withLen := func(b []byte) []byte {
			if len(b) >= 28 {
				binary.BigEndian.PutUint32(b[24:], uint32(len(b)))
			}
			if len(b) >= skOff+4 {
				binary.BigEndian.PutUint16(b[skOff+2:], uint16(len(b)-skOff))
			}
			return b
		}
		cases := []struct {
			name  string
			msg   []byte
			skOff int
			want  ikecrypto.Error
		}{
			{"empty", nil, 28, ikecrypto.ErrTruncated},
			{"header only", bytes.Clone(good[:27]), 28, ikecrypto.ErrTruncated},
			{"skOff inside the header", bytes.Clone(good), 27, ikecrypto.ErrBadLength},
			{"skOff past the end", bytes.Clone(good), m + 1, ikecrypto.ErrBadLength},
			{"negative skOff", bytes.Clone(good), -5, ikecrypto.ErrBadLength},
			{"no SK header", withLen(bytes.Clone(good[:30])), 28, ikecrypto.ErrTruncated},
			{"IKE Length too long", func() []byte { b := bytes.Clone(good); binary.BigEndian.PutUint32(b[24:], uint32(m+1)); return b }(), 28, ikecrypto.ErrBadLength},
			{"IKE Length huge", func() []byte { b := bytes.Clone(good); binary.BigEndian.PutUint32(b[24:], math.MaxUint32); return b }(), 28, ikecrypto.ErrBadLength},
			{"SK Length short", func() []byte { b := bytes.Clone(good); binary.BigEndian.PutUint16(b[30:], uint16(m-skOff-1)); return b }(), 28, ikecrypto.ErrBadLength},
			{"SK Length zero", func() []byte { b := bytes.Clone(good); binary.BigEndian.PutUint16(b[30:], 0); return b }(), 28, ikecrypto.ErrBadLength},
			// A trailing octet: for CBC no longer whole blocks (checked
			// first, it costs nothing), for AEAD a tag that fails.
			{"trailing octet", withLen(append(bytes.Clone(good), 0)), 28, map[bool]ikecrypto.Error{true: ikecrypto.ErrIntegrity, false: ikecrypto.ErrBadLength}[tr.AEAD()]},
			{"IV only", withLen(bytes.Clone(good[:skOff+4+iv])), 28, ikecrypto.ErrTruncated},
			{"IV and ICV, no ciphertext", withLen(bytes.Clone(good[:skOff+4+iv+icv])), 28, ikecrypto.ErrTruncated},
			{"shorter than the ICV", withLen(bytes.Clone(good[:skOff+4+icv-1])), 28, ikecrypto.ErrTruncated},
		}
		if !tr.AEAD() {
			cases = append(cases, struct {
				name  string
				msg   []byte
				skOff int
				want  ikecrypto.Error
			}{"CBC not whole blocks", withLen(append(bytes.Clone(good[:m-icv-1]), good[m-icv:]...)), 28, ikecrypto.ErrBadLength})
		}
		for _, c := range cases {
			_, _, err := sk.Open(c.msg, c.skOff)
			if err != c.want {
				t.Errorf("%v: %s: %v, want %v", tr, c.name, err, c.want)
			}
		}
	}
}

// An authentic message whose Pad Length reaches past the plaintext (the
// free5gc crash: a negative slice) is ErrBadPadding; the longest valid pad
// leaves an empty plaintext.
func TestOpenBadPadding(t *testing.T) {
	for _, tr := range allTransforms() {
		for _, pad := range []int{15, 16, 200, 255} {
			msg, skOff := authenticWithPad(t, tr, pad)
			off, n, err := newSK(t, tr).Open(msg, skOff)
			ctLen := len(msg) - skOff - 4 - tr.IVLen() - tr.ICVLen()
			switch {
			case pad < ctLen:
				if err != nil || n != ctLen-1-pad || off != skOff+4+tr.IVLen() {
					t.Errorf("%v: pad %d of %d: n %d, %v", tr, pad, ctLen, n, err)
				}
			default:
				if !errors.Is(err, ikecrypto.ErrBadPadding) {
					t.Errorf("%v: pad %d of %d: %v, want ErrBadPadding", tr, pad, ctLen, err)
				}
			}
		}
	}
}

// authenticWithPad makes a message with a valid ICV whose single block
// (CBC) or 16 octets (AEAD) of plaintext end in Pad Length = pad.
func authenticWithPad(t *testing.T, tr ikecrypto.Transform, pad int) ([]byte, int) {
	t.Helper()
	sk := newSK(t, tr)
	if tr.AEAD() {
		// Seal 15 octets (+ Pad Length 0), then redo the AEAD step with the
		// last plaintext octet set to pad.
		buf, skOff, _ := layout(tr, 0, 4, 15)
		m, _ := sk.Seal(buf, skOff, 15)
		ivOff := skOff + 4
		plain := make([]byte, 16)
		plain[15] = byte(pad)
		ct := sk.SealAEAD(buf[ivOff:ivOff+8], buf[:ivOff], plain)
		copy(buf[ivOff+8:], ct)
		return buf[:m], skOff
	}
	// CBC, one block: flipping IV[15] flips the decrypted Pad Length; then
	// the ICV is recomputed over the changed IV.
	buf, skOff, _ := layout(tr, 0, 4, 15)
	m, _ := sk.Seal(buf, skOff, 15)
	buf[skOff+4+15] ^= byte(pad)
	copy(buf[m-tr.ICVLen():m], sk.ICV(buf[:m-tr.ICVLen()]))
	return buf[:m], skOff
}

func TestSealOpenAllocations(t *testing.T) {
	for _, tr := range []ikecrypto.Transform{
		{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 256},
		{Encryption: ikecrypto.EncrChaCha20Poly1305},
		{Encryption: ikecrypto.EncrAESCBC, KeyBits: 256, Integrity: ikecrypto.IntegHMACSHA512256},
	} {
		sealer, opener := newSK(t, tr), newSK(t, tr)
		buf, skOff, _ := layout(tr, 0, 4, 300)
		work := make([]byte, len(buf))
		allocs := testing.AllocsPerRun(100, func() {
			copy(work, buf)
			m, err := sealer.Seal(work, skOff, 300)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := opener.Open(work[:m], skOff); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v: %.1f allocations per Seal+Open", tr, allocs)
		}
	}
}
