package ikecrypto_test

// Diffie-Hellman known answers: RFC 5903 §8 (the ECP groups, in IKEv2's
// x ‖ y form), RFC 7748 §5.2 and §6.1 and RFC 8031 Appendix A (X25519),
// and for MODP 2048 the RFC 3526 prime recomputed from its formula, a key
// whose public value is known by hand, and agreement between two sides.

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"math/big"
	"testing"

	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

var ecpVectors = []struct {
	g                 ikecrypto.Group
	i, gix, giy       string
	r, grx, gry, girx string
}{
	{ // RFC 5903 §8.1
		g:    ikecrypto.GroupECP256,
		i:    "c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433",
		gix:  "dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180",
		giy:  "5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3",
		r:    "c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53",
		grx:  "d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63",
		gry:  "56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab",
		girx: "d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de",
	},
	{ // RFC 5903 §8.2
		g:    ikecrypto.GroupECP384,
		i:    "099f3c7034d4a2c699884d73a375a67f7624ef7c6b3c0f160647b67414dce655e35b538041e649ee3faef896783ab194",
		gix:  "667842d7d180ac2cde6f74f37551f55755c7645c20ef73e31634fe72b4c55ee6de3ac808acb4bdb4c88732aee95f41aa",
		giy:  "9482ed1fc0eeb9cafc4984625ccfc23f65032149e0e144ada024181535a0f38eeb9fcff3c2c947dae69b4c634573a81c",
		r:    "41cb0779b4bdb85d47846725fbec3c9430fab46cc8dc5060855cc9bda0aa2942e0308312916b8ed2960e4bd55a7448fc",
		grx:  "e558dbef53eecde3d3fccfc1aea08a89a987475d12fd950d83cfa41732bc509d0d1ac43a0336def96fda41d0774a3571",
		gry:  "dcfbec7aacf3196472169e838430367f66eebe3c6e70c416dd5f0c68759dd1fff83fa40142209dff5eaad96db9e6386c",
		girx: "11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4d603135569b9e9d09cf5d4a270f59746",
	},
	{ // RFC 5903 §8.3
		g:    ikecrypto.GroupECP521,
		i:    "0037ade9319a89f4dabdb3ef411aaccca5123c61acab57b5393dce47608172a095aa85a30fe1c2952c6771d937ba9777f5957b2639bab072462f68c27a57382d4a52",
		gix:  "0015417e84dbf28c0ad3c278713349dc7df153c897a1891bd98bab4357c9ecbee1e3bf42e00b8e380aeae57c2d107564941885942af5a7f4601723c4195d176ced3e",
		giy:  "017cae20b6641d2eeb695786d8c946146239d099e18e1d5a514c739d7cb4a10ad8a788015ac405d7799dc75e7b7d5b6cf2261a6a7f1507438bf01beb6ca3926f9582",
		r:    "0145ba99a847af43793fdd0e872e7cdfa16be30fdc780f97bccc3f078380201e9c677d600b343757a3bdbf2a3163e4c2f869cca7458aa4a4effc311f5cb151685eb9",
		grx:  "00d0b3975ac4b799f5bea16d5e13e9af971d5e9b984c9f39728b5e5739735a219b97c356436adc6e95bb0352f6be64a6c2912d4ef2d0433ced2b6171640012d9460f",
		gry:  "015c68226383956e3bd066e797b623c27ce0eac2f551a10c2c724d9852077b87220b6536c5c408a1d2aebb8e86d678ae49cb57091f4732296579ab44fcd17f0fc56a",
		girx: "01144c7d79ae6956bc8edb8e7c787c4521cb086fa64407f97894e5e6b2d79b04d1427e73ca4baa240a34786859810c06b3c715a3a8cc3151f2bee417996d19f3ddea",
	},
}

func TestECPKnownAnswers(t *testing.T) {
	for _, v := range ecpVectors {
		t.Run(v.g.String(), func(t *testing.T) {
			ki, err := ikecrypto.NewPrivateKey(v.g, unhex(t, v.i))
			if err != nil {
				t.Fatal(err)
			}
			kr, err := ikecrypto.NewPrivateKey(v.g, unhex(t, v.r))
			if err != nil {
				t.Fatal(err)
			}
			// The KE payload is x ‖ y, no 0x04 in front (RFC 5903 §7).
			gi, gr := unhex(t, v.gix+v.giy), unhex(t, v.grx+v.gry)
			if !bytes.Equal(ki.Public(), gi) || len(gi) != v.g.PublicLen() {
				t.Errorf("g^i = %x\nwant  %x", ki.Public(), gi)
			}
			if !bytes.Equal(kr.Public(), gr) {
				t.Errorf("g^r = %x\nwant  %x", kr.Public(), gr)
			}
			// g^ir is the x coordinate only, full length.
			want := unhex(t, v.girx)
			for _, c := range []struct {
				k    *ikecrypto.PrivateKey
				peer []byte
			}{{ki, gr}, {kr, gi}} {
				z, err := c.k.Shared(c.peer)
				if err != nil || !bytes.Equal(z, want) || len(z) != v.g.SharedLen() {
					t.Errorf("g^ir = %x, %v\nwant   %x", z, err, want)
				}
			}

			// RFC 6989 §2.3: a point off the curve is refused.
			off := bytes.Clone(gr)
			off[len(off)-1] ^= 1
			if _, err := ki.Shared(off); !errors.Is(err, ikecrypto.ErrPeerPublic) {
				t.Errorf("off-curve point: %v, want ErrPeerPublic", err)
			}
			// Wrong lengths: crypto/ecdh's 0x04 ‖ x ‖ y form, x alone, a
			// stray octet.
			for _, bad := range [][]byte{append([]byte{4}, gr...), gr[:len(gr)/2], append(bytes.Clone(gr), 0), nil} {
				if _, err := ki.Shared(bad); !errors.Is(err, ikecrypto.ErrPeerPublic) {
					t.Errorf("%d-octet value: %v, want ErrPeerPublic", len(bad), err)
				}
			}
			// All zeros is no point (the point at infinity has no x ‖ y).
			if _, err := ki.Shared(make([]byte, v.g.PublicLen())); !errors.Is(err, ikecrypto.ErrPeerPublic) {
				t.Errorf("all-zero value: %v", err)
			}
			// Scalars out of range: zero, the wrong length.
			if _, err := ikecrypto.NewPrivateKey(v.g, make([]byte, len(unhex(t, v.i)))); err == nil {
				t.Error("zero scalar accepted")
			}
			if _, err := ikecrypto.NewPrivateKey(v.g, unhex(t, v.i)[1:]); err == nil {
				t.Error("short scalar accepted")
			}
		})
	}
}

func TestX25519KnownAnswers(t *testing.T) {
	// RFC 7748 §6.1 and RFC 8031 Appendix A: two key pairs and their secret.
	for _, v := range []struct{ name, a, apub, b, bpub, k string }{
		{"RFC7748", "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
			"8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
			"5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
			"de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
			"4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"},
		// RFC 8031 Appendix A, the IKEv2 example (strongSwan's curve25519_2).
		{"RFC8031", "751fb4308655b476b6789b7325f9ea8cddd16a58533ff6d9e60009464a5f9d94",
			"48d5ddd4061257ba166fa3f9bbdb74f1a4e81c089384fa77f790709f0dfbc766",
			"0a54645253290d60ddadd0e030bacd9e5501efdc220755a1e978f1b839a05688",
			"0be7c1f5aad87d7e448662673298a443478b859745179eaf564c79c0ef6eee25",
			"c74950607a12327f3204d94b6825bfb068b7f8319a9e3708ed3d43ce8130c950"},
	} {
		a, err := ikecrypto.NewPrivateKey(ikecrypto.GroupCurve25519, unhex(t, v.a))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ikecrypto.NewPrivateKey(ikecrypto.GroupCurve25519, unhex(t, v.b))
		if !bytes.Equal(a.Public(), unhex(t, v.apub)) || !bytes.Equal(b.Public(), unhex(t, v.bpub)) {
			t.Errorf("%s: public keys %x %x", v.name, a.Public(), b.Public())
		}
		k1, err1 := a.Shared(b.Public())
		k2, err2 := b.Shared(a.Public())
		if err1 != nil || err2 != nil || !bytes.Equal(k1, unhex(t, v.k)) || !bytes.Equal(k2, k1) {
			t.Errorf("%s: shared %x / %x (%v, %v)", v.name, k1, k2, err1, err2)
		}
	}

	// RFC 7748 §5.2: the X25519 function on given (scalar, u) pairs, and
	// its iteration k, u ← X25519(k, u), k after 1 and 1,000 rounds.
	for _, v := range []struct{ k, u, out string }{
		{"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			"c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
		{"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			"95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
	} {
		k, _ := ikecrypto.NewPrivateKey(ikecrypto.GroupCurve25519, unhex(t, v.k))
		if z, err := k.Shared(unhex(t, v.u)); err != nil || !bytes.Equal(z, unhex(t, v.out)) {
			t.Errorf("X25519(%s…) = %x, %v", v.k[:8], z, err)
		}
	}
	k := append([]byte{9}, make([]byte, 31)...)
	u := bytes.Clone(k)
	for n := 1; n <= 1000; n++ {
		key, err := ikecrypto.NewPrivateKey(ikecrypto.GroupCurve25519, k)
		if err != nil {
			t.Fatal(err)
		}
		out, err := key.Shared(u)
		if err != nil {
			t.Fatalf("round %d: %v", n, err)
		}
		u, k = k, out
		switch n {
		case 1:
			if want := unhex(t, "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"); !bytes.Equal(k, want) {
				t.Fatalf("after 1 round: %x", k)
			}
		case 1000:
			if want := unhex(t, "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"); !bytes.Equal(k, want) {
				t.Fatalf("after 1,000 rounds: %x", k)
			}
		}
	}
}

// RFC 8031 §2.3: the all-zero result (from the low-order u-coordinates,
// including non-canonical encodings of them) MUST be refused.
func TestX25519LowOrder(t *testing.T) {
	k, _ := ikecrypto.NewPrivateKey(ikecrypto.GroupCurve25519, unhex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
	for _, u := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000", // 0
		"0100000000000000000000000000000000000000000000000000000000000000", // 1
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", // order 8
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p-1
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p (= 0)
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p+1 (= 1)
	} {
		if _, err := k.Shared(unhex(t, u)); !errors.Is(err, ikecrypto.ErrZeroShared) {
			t.Errorf("u = %s…: %v, want ErrZeroShared", u[:8], err)
		}
	}
	if _, err := k.Shared(make([]byte, 31)); !errors.Is(err, ikecrypto.ErrPeerPublic) {
		t.Errorf("31 octets: %v", err)
	}
}

// The RFC 3526 §3 prime, recomputed: p = 2^2048 − 2^1984 − 1 + 2^64 ×
// (⌊2^1918 π⌋ + 124476), π from Machin's formula in integers.
func TestMODPPrime(t *testing.T) {
	const prec = 1918 + 96
	one := new(big.Int).Lsh(big.NewInt(1), prec)
	arctanInv := func(x int64) *big.Int {
		sum, term := new(big.Int), new(big.Int).Div(one, big.NewInt(x))
		x2 := big.NewInt(x * x)
		for n, sign := int64(1), 1; term.Sign() != 0; n, sign = n+2, -sign {
			q := new(big.Int).Div(term, big.NewInt(n))
			if sign > 0 {
				sum.Add(sum, q)
			} else {
				sum.Sub(sum, q)
			}
			term.Div(term, x2)
		}
		return sum
	}
	pi := new(big.Int).Mul(big.NewInt(4), new(big.Int).Sub(new(big.Int).Mul(big.NewInt(4), arctanInv(5)), arctanInv(239)))
	fl := new(big.Int).Rsh(pi, prec-1918)
	p := new(big.Int).Lsh(big.NewInt(1), 2048)
	p.Sub(p, new(big.Int).Lsh(big.NewInt(1), 1984))
	p.Sub(p, big.NewInt(1))
	p.Add(p, new(big.Int).Lsh(fl.Add(fl, big.NewInt(124476)), 64))

	// The package's p is the one the peer values are bounded by (RFC 6989:
	// p−2 is the largest value accepted, p−1 the smallest refused) and
	// reduced by: (p−2)^3 = (−2)^3 = p−8 mod p.
	pm2 := new(big.Int).Sub(p, big.NewInt(2)).FillBytes(make([]byte, 256))
	pm1 := new(big.Int).Sub(p, big.NewInt(1)).FillBytes(make([]byte, 256))
	k, err := ikecrypto.NewPrivateKey(ikecrypto.GroupMODP2048, []byte{3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Shared(pm2); err != nil {
		t.Errorf("p-2 refused: %v (the package's prime is not RFC 3526's)", err)
	}
	if _, err := k.Shared(pm1); !errors.Is(err, ikecrypto.ErrPeerPublic) {
		t.Errorf("p-1 accepted: %v (the package's prime is not RFC 3526's)", err)
	}
	// (p−2)^3 mod p = −8 mod p = p − 8.
	z, _ := k.Shared(pm2)
	if want := new(big.Int).Sub(p, big.NewInt(8)).FillBytes(make([]byte, 256)); !bytes.Equal(z, want) {
		t.Errorf("(p-2)^3 mod p = %x…, want p-8", z[:8])
	}
	if !p.ProbablyPrime(4) || !new(big.Int).Rsh(p, 1).ProbablyPrime(4) {
		t.Error("p is not a safe prime")
	}
}

func TestMODPKnownAndAgreement(t *testing.T) {
	g := ikecrypto.GroupMODP2048
	// x = 2: g^x = 4, left-padded to the prime's 256 octets (RFC 7296 §3.4).
	k2, err := ikecrypto.NewPrivateKey(g, []byte{2})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 256)
	want[255] = 4
	if !bytes.Equal(k2.Public(), want) {
		t.Errorf("2^2 = %x…%x", k2.Public()[:4], k2.Public()[252:])
	}
	// x = 1000: 2^1000 is 126 octets long; the rest is zeros in front.
	k1000, _ := ikecrypto.NewPrivateKey(g, []byte{0x03, 0xe8})
	want = new(big.Int).Lsh(big.NewInt(1), 1000).FillBytes(make([]byte, 256))
	if !bytes.Equal(k1000.Public(), want) {
		t.Errorf("2^1000 = %x…", k1000.Public()[:8])
	}
	// Shared(g^y) for y = 1000 from x = 2 is 2^2000, from x = 1000 is (2^2)^1000.
	z1, _ := k2.Shared(k1000.Public())
	z2, _ := k1000.Shared(k2.Public())
	if want := new(big.Int).Lsh(big.NewInt(1), 2000).FillBytes(make([]byte, 256)); !bytes.Equal(z1, want) || !bytes.Equal(z2, want) {
		t.Errorf("2^2000: %x… / %x…", z1[:8], z2[:8])
	}
	// Exponents 0 and 1 make public values 1 and 2: refused as keys.
	for _, x := range [][]byte{{0}, {1}, nil, make([]byte, 257)} {
		if _, err := ikecrypto.NewPrivateKey(g, x); err == nil {
			t.Errorf("exponent %x accepted", x)
		}
	}

	// Two random sides agree on 256 octets.
	a, err := g.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := g.GenerateKey(rand.Reader)
	za, err1 := a.Shared(b.Public())
	zb, err2 := b.Shared(a.Public())
	if err1 != nil || err2 != nil || !bytes.Equal(za, zb) || len(za) != 256 || len(a.Public()) != 256 {
		t.Fatalf("agreement: %v %v, equal %v, %d octets", err1, err2, bytes.Equal(za, zb), len(za))
	}

	// RFC 6989 §2.1: 1 < y < p−1 and exactly 256 octets.
	one := make([]byte, 256)
	one[255] = 1
	for name, y := range map[string][]byte{
		"0": make([]byte, 256), "1": one, "2^2048-1": rep(0xff, 256),
		"255 octets": a.Public()[1:], "257 octets": append([]byte{0}, a.Public()...),
	} {
		if _, err := b.Shared(y); !errors.Is(err, ikecrypto.ErrPeerPublic) {
			t.Errorf("y = %s: %v, want ErrPeerPublic", name, err)
		}
	}
}

// GenerateKey depends only on the bytes it reads: a test can fix them.
func TestGenerateKeyDeterministic(t *testing.T) {
	for _, g := range ikecrypto.Groups() {
		seed := bytes.Repeat([]byte("deterministic key material "), 8)
		a, err := g.GenerateKey(bytes.NewReader(seed))
		if err != nil {
			t.Fatalf("%v: %v", g, err)
		}
		b, _ := g.GenerateKey(bytes.NewReader(seed))
		c, _ := g.GenerateKey(bytes.NewReader(append([]byte{1}, seed...)))
		if !bytes.Equal(a.Public(), b.Public()) {
			t.Errorf("%v: same reader, different keys", g)
		}
		if bytes.Equal(a.Public(), c.Public()) {
			t.Errorf("%v: different readers, same key", g)
		}
		if len(a.Public()) != g.PublicLen() || a.Group() != g {
			t.Errorf("%v: public value of %d octets", g, len(a.Public()))
		}
		// A reader that runs dry is an error, not a weak key.
		if _, err := g.GenerateKey(bytes.NewReader(seed[:5])); !errors.Is(err, ikecrypto.ErrRandom) {
			t.Errorf("%v: short reader: %v", g, err)
		}
	}
	// Scalars ≥ the order are drawn again; a reader that only gives them
	// fails after a bounded number of tries.
	if _, err := ikecrypto.GroupECP256.GenerateKey(constReader(0xff)); !errors.Is(err, ikecrypto.ErrRandom) {
		t.Errorf("all-0xff P-256 scalars: %v", err)
	}
	if k, err := ikecrypto.GroupECP256.GenerateKey(io.MultiReader(bytes.NewReader(rep(0xff, 64)), bytes.NewReader(rep(0x11, 32)))); err != nil {
		t.Errorf("P-256 after two rejected scalars: %v", err)
	} else if k2, _ := ikecrypto.NewPrivateKey(ikecrypto.GroupECP256, rep(0x11, 32)); !bytes.Equal(k.Public(), k2.Public()) {
		t.Error("P-256 did not take the first scalar below the order")
	}
	if _, err := ikecrypto.Group(5).GenerateKey(nil); !errors.Is(err, ikecrypto.ErrGroup) {
		t.Errorf("group 5: %v", err)
	}
}

type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// The shared secret keeps its leading zero octets: find (deterministically)
// a pair whose secret starts with 0x00 and check its length.
func TestSharedKeepsLeadingZeros(t *testing.T) {
	for _, g := range []ikecrypto.Group{ikecrypto.GroupCurve25519, ikecrypto.GroupECP256, ikecrypto.GroupMODP2048} {
		peer, _ := g.GenerateKey(constReader(0x5a))
		found := false
		for i := 0; i < 4096 && !found; i++ {
			seed := bytes.Repeat([]byte{byte(i), byte(i >> 8), 0x33}, 22)
			k, err := g.GenerateKey(bytes.NewReader(seed))
			if err != nil {
				t.Fatal(err)
			}
			z, err := k.Shared(peer.Public())
			if err != nil {
				t.Fatal(err)
			}
			if len(z) != g.SharedLen() {
				t.Fatalf("%v: secret of %d octets, want %d", g, len(z), g.SharedLen())
			}
			if z[0] == 0 {
				found = true
				z2, _ := peer.Shared(k.Public())
				if !bytes.Equal(z, z2) {
					t.Errorf("%v: sides disagree on a secret with a leading zero", g)
				}
			}
		}
		if !found {
			t.Errorf("%v: no secret with a leading zero in 4096 tries", g)
		}
	}
}
