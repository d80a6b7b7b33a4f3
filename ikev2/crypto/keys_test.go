package ikecrypto_test

// IKEv2 key derivation known answers from NIST's SP 800-135 IKEv2 KDF
// validation vectors (CAVS/ACVP), which give, for Ni, Nr, g^ir, g^ir (new),
// SPIi and SPIr: SKEYSEED, DKM = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr),
// DKM(Child SA) = prf+(SK_d, Ni | Nr), DKM(Child SA D-H) = prf+(SK_d,
// g^ir (new) | Ni | Nr) and SKEYSEED(Rekey) = prf(SK_d, g^ir (new) | Ni | Nr),
// SK_d being the first PRF-output octets of DKM.
//
//   - HMAC-SHA-1, COUNT 0 of the 64-bit-nonce group, as libreswan's CAVS
//     driver documents it (programs/cavp, ikev2 test comment);
//   - HMAC-SHA2-256 with 2048-bit nonces, from NIST's ACVP-Server IKEv2
//     KDF tests (IkeV2Tests.cs, "IKEv2 SHA2-256").

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

type kdfVector struct {
	prf                                 ikecrypto.PRF
	ni, nr, gir, girNew, spiI, spiR     string
	skeyseed, dkm, dkmChild, dkmChildDH string
	skeyseedRekey                       string
}

var kdfSHA1 = kdfVector{
	prf:    ikecrypto.PRFHMACSHA1,
	ni:     "32b50d5f4a3763f3",
	nr:     "9206a04b26564cb1",
	gir:    "4b2c1f971981a8ad8d0abeafabf38cf75fc8349c148142465ed9c8b516b8be52",
	girNew: "863f3c9d06efd39d2b907b97f8699e5dd5251ef64a2a176f36ee40c87d4f9330",
	spiI:   "34c9e7c188868785",
	spiR:   "3ff77d760d2b2199",

	skeyseed: "a9a7b222b59f8f48645f28a1db5b5f5d7479cba7",
	dkm: "a14293677cc80ff8f9cc0eee30d895da9d8f405666e30ef0dfcb63c634a46002a2a63080e514a062768b76606f9fa5e9" +
		"92204fc5a670bde3f10d6b027113936a5c55b648a194ae587b0088d52204b702c979fa280870d2ed41efa9c549fd1119" +
		"8af1670b143d384bd275c5f594cf266b05ebadca855e4249520a441a81157435a7a56cc4",
	dkmChild: "8059e3ee8810e6c3a91bc8bcd2a7a41151b8d0e6ae239c7b38093ad85ef4c5811a8e7b5d1cdabd9560b2d5e092d1f24e" +
		"2d4b85eccdf0ad0dc9abd94b51ee71814ca6dbc8bb51b6309f5b9545c7eb35cf5580b1e521a8fe20754a2d883ba0c2cf" +
		"285f524aea6545b33106bc03e614296d319d41d4b50b3f510b1c0a22f3e664994d234cb4",
	dkmChildDH: "bb43244c1860ad65ee1e211ffe8bb3661750c8f89cb9f547df7f4fa61d37301628190e38c66232eab4b3ab14c400a519" +
		"7dd3730ed4820a8a10394d51e1c0400052f63ebd36b0e7ef53aaed31eba4a5080d7d4b5666023a8bbb5ffb7857240f9a" +
		"05884d1b7d2f933708450b7b3288f1fc863ab49fa901227cffc06e27899c7054d56fd74c",
	skeyseedRekey: "63e81194946ebd05df7df5ebf5d8750056bf1f1d",
}

var kdfSHA256 = kdfVector{
	prf: ikecrypto.PRFHMACSHA2256,
	ni: "0a58fea9c1d4fee2e74e1aad6fb02dd5f318eb127465a112be8dc3c04d5dba62eae708f9dc1b2362afd6ba4bda3cf500" +
		"0f4979fbcbadbcfda9291593829c4e905c21db0c2ee15175ce77a8a0dadf25c7f175bc53fd91b636a9b3c50b203de9b9" +
		"d6dc463dcb4048f101e26498ceaed3afbcd931394a7e099392dfff82e5d6fa85c2e8a8ab90ad363a66795dc32798847e" +
		"405acd87988140f973058917273a6b0bafb962c75e2b1a21e79c08beeb82168bf8b4b57f3dce867bf7862a7b8acbc21b" +
		"e838021913daf64340c055ed17aaf7b6e1d0ca33ae890ddbdb83f4e615aad5e3bff58c3db70bac81a0dfbabe5391fc62" +
		"bca4659e22a0741e01d8d06e67d9bb41",
	nr: "e4fdfa68df6171d9eaff8b7b5ad31e7c6098d259f3397c9854cbefe7449b0864c1df16ddece8b26567560f8d59182a44" +
		"c19149c2d0d72606a160021ade3d23c7c6936c91a4b6bec37adf38cfc84b851c68dcee06f81306f63abbefc07e231e30" +
		"58c49437a557df617eac01663593d2a3e594699284c0a35eae6931492ccb2a43db72a600a3899205d681d2b76b1280e4" +
		"56339bb10e0c584aecfdae31c77a4c40dbcb345f782ac32835d4c220c1e97254ded6a40075dd717b00b69c86a49e8017" +
		"73026536ae02d58a649827f1ba67610ee936dffd11c9d5a9156631916a0a0046ec0ba42f56f2a18de83d5d71a985b0cc" +
		"9eec2c06b3d907ca58454419f374069d",
	gir:    "9d469de41b4739c7dd01f19aa94f17e48150ae9dbede94832142db19",
	girNew: "c2987b0767006c3b9aea491bfed1646a3d7194639492b8d45b23b383",
	spiI:   "c8de93111750e409",
	spiR:   "32d51b33508997fa",

	skeyseed: "eec13ac67c2e072abb684ab4e7b6ce3e7f400af8b96bed48e113497ed337f8d4",
	dkm: "bc83518f63b762874ac57947cdfae33a8d9724df0b83ee4b6df38c23fc2ad829f4d70b5a68dd1f5a52416f09758638ae" +
		"df919c09a17c5298cdb703bb75b1005cba0109739aaa4efd2fe7534c95ad05e546e4419931270eddcab68ac1589d7fde" +
		"47f5b9e8d5b614cb24ec3caf515497a9e99ee6f1b318ff153b539ef071dcaff9b41945dcb780700d69e5dc888a91de19" +
		"5c52825badfd0ab4c33cec71ab5c2b4badefe5455455ce5d8ae91721a2091bcccc1514e69482c9c8da1d9f0f187eedda" +
		"916393570a8c0a8dfabc26d8ed31e8ea47662515972a22d11d692bc1fac6395aecd82a01ab78daafcd6f3070b1201f15" +
		"8a19331b5d21ceee66fccd2ea37bc07648b9539a52dbf797af53e31a0e8706dd86cf5081ebabd095f281d23c222dd3bc" +
		"5abf06869017ca8f751cafcc85abea6ba88c139d1f32a12f7f486cf57eae5d85551b97f3963616d8f597c70efa98c1e1" +
		"fa369fb77a80b1ec5fe533890672c4551172eab1b7fd68ad08c4d4c69f2a867302065ca730aa6915bc2cfb6d93820977",
	dkmChild: "c725012285d56e53244a9baaaf95abfca543708d333a3f3a86ba660e00edd4d489bcd631819fda0413382edd9f53d1ed" +
		"718e056c2ad91d38de90f06cd434de70141d051c021e7ddd6e4137946b4770dca59a4decabdd866852eb557fdd995646" +
		"613ff2923f5f23aa58c8fbd5ad52cf2eac9bda97faad5596695f4a747a0f1cc6a1f78b2181138fb19ac24574d2e6b3a4" +
		"0d6e688abb919a27d793b76568ec66bd099f6f476b705c1472d774a1516a11311b887688f36649e24227640ea8d8666b" +
		"9f452217e7103b6f0a92b6adb8fbda650ba58d6ac13ac6f6b6361a5d1c44f1e9f22196c96295115c5d01a120e7265962" +
		"d20353a049286908da776c2165f706a16f43d85fcd319f89c4386340bcb8ed10df38345cb68af719abaf997e9789a5f1" +
		"9a392dcecd78168ba282f0b30555c7a47031a3156d12d7158aa41b863b8394d30fec63120e89cbc5750eed7786f7d596" +
		"1b1f2e6faca641ed776d2211bee757b68b77f94056172553715da9fbd1c9a8728f28a2f3c9714a4917490132562484cd",
	dkmChildDH: "140a1f2a3c94318ece6edfa8c63f37d8d45982de8b6cbfe34011150db0253e34de3796d4aa579954a0bbf234794eb6e7" +
		"ece2a8f91100f5507df4ee8e66c7813d4c0ff64d484a3494c54b0d9c605ea24234a49a010ce5c352feb9e1060c8c7872" +
		"29466296cdc9d11bb9d221ed2bb39544572464254ec02a0fbe777b07402c775eb6d3e53cd16214c707f851942cc7da92" +
		"a811b6c5c82f29d9fc3751b0ebff9898fb14372402a6989ffb9cc32dfe7e2cea32fd882e09804d7fea34ce3b5eb6f303" +
		"e095c48a452b0a3eccada81af22195ebbaad289aeabdab074c94e751496bde39d868ebf1d693f36d1c3c672bbb59c9f7" +
		"7aeb68de57d77da231b7f13d6d277f600c3d3086c4de7b3a59127f4cb9c118935574f30e1b7c88b52c8c3531fdbd38ee" +
		"3d14c69e81803ced6e7501fa0180f6d110b648272002dc1ad5bf09dc83188011da1d48632e0d2453c8abdd8e9fd32a57" +
		"6aeb9ddfb0a024f674441c20a950d9bd8cd7b30933cc0d8e87b55e8aa9d913579b410417b3acc13c14bf73c457327873",
	skeyseedRekey: "05f796c8df322a7e33283ae5fa2f376d8d5efa0ac3745fc548e430031424c121",
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func concat(bs ...[]byte) []byte { return slices.Concat(bs...) }

func TestKDFKnownAnswers(t *testing.T) {
	for _, v := range []struct {
		name  string
		v     kdfVector
		suite ikecrypto.Suite // its seven keys are a prefix of DKM
		child ikecrypto.Transform
	}{
		// AES-CBC-128/HMAC-SHA1-96/PRF-HMAC-SHA1 takes exactly the 132
		// octets of this vector's DKM.
		{"SHA1", kdfSHA1, ikecrypto.Suite{Transform: ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: 128, Integrity: ikecrypto.IntegHMACSHA1_96}, PRF: ikecrypto.PRFHMACSHA1},
			ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: 256, Integrity: ikecrypto.IntegHMACSHA256128}},
		{"SHA2-256", kdfSHA256, ikecrypto.Suite{Transform: ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: 256, Integrity: ikecrypto.IntegHMACSHA512256}, PRF: ikecrypto.PRFHMACSHA2256},
			ikecrypto.Transform{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 256}},
	} {
		t.Run(v.name, func(t *testing.T) {
			ni, nr, gir, girNew := unhex(t, v.v.ni), unhex(t, v.v.nr), unhex(t, v.v.gir), unhex(t, v.v.girNew)
			spiI, spiR := beUint64(unhex(t, v.v.spiI)), beUint64(unhex(t, v.v.spiR))
			dkm := unhex(t, v.v.dkm)

			seed, err := ikecrypto.SKEYSEED(v.v.prf, ni, nr, gir)
			if err != nil || !bytes.Equal(seed, unhex(t, v.v.skeyseed)) {
				t.Fatalf("SKEYSEED = %x, %v\nwant       %s", seed, err, v.v.skeyseed)
			}
			var spis []byte
			spis = append(append(spis, unhex(t, v.v.spiI)...), unhex(t, v.v.spiR)...)
			got, err := ikecrypto.PRFPlus(v.v.prf, seed, len(dkm), ni, nr, spis)
			if err != nil || !bytes.Equal(got, dkm) {
				t.Fatalf("DKM = %x, %v", got, err)
			}

			keys, err := ikecrypto.DeriveIKEKeys(v.suite, seed, ni, nr, spiI, spiR)
			if err != nil {
				t.Fatal(err)
			}
			all := concat(keys.SKd, keys.SKai, keys.SKar, keys.SKei, keys.SKer, keys.SKpi, keys.SKpr)
			if n, _ := ikecrypto.IKEKeysLen(v.suite); n != len(all) || !bytes.Equal(all, dkm[:n]) {
				t.Fatalf("IKE SA keys (%d octets, IKEKeysLen %d) are not DKM's prefix:\n%x", len(all), n, all)
			}
			pk := v.v.prf.KeyLen()
			tl := v.suite.Transform
			for name, k := range map[string][2]int{
				"SK_d": {len(keys.SKd), pk}, "SK_ai": {len(keys.SKai), tl.IntegKeyLen()}, "SK_ar": {len(keys.SKar), tl.IntegKeyLen()},
				"SK_ei": {len(keys.SKei), tl.EncKeyLen()}, "SK_er": {len(keys.SKer), tl.EncKeyLen()}, "SK_pi": {len(keys.SKpi), pk}, "SK_pr": {len(keys.SKpr), pk},
			} {
				if k[0] != k[1] {
					t.Errorf("%s is %d octets, want %d", name, k[0], k[1])
				}
			}
			skd := dkm[:pk]
			if !bytes.Equal(keys.SKd, skd) {
				t.Fatalf("SK_d = %x", keys.SKd)
			}

			// Child SA KEYMAT, split as the ESP transform asks: a prefix of
			// the published DKM(Child SA) and DKM(Child SA D-H).
			enc, integ := v.child.EncKeyLen(), v.child.IntegKeyLen()
			for _, c := range []struct {
				name string
				gir  []byte
				want []byte
			}{{"no PFS", nil, unhex(t, v.v.dkmChild)}, {"PFS", girNew, unhex(t, v.v.dkmChildDH)}} {
				ck, err := ikecrypto.ChildKeymat(v.v.prf, keys.SKd, c.gir, ni, nr, enc, integ)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if len(ck.InitEnc) != enc || len(ck.RespEnc) != enc || len(ck.InitInteg) != integ || len(ck.RespInteg) != integ {
					t.Errorf("%s: key lengths %d/%d/%d/%d", c.name, len(ck.InitEnc), len(ck.InitInteg), len(ck.RespEnc), len(ck.RespInteg))
				}
				// Initiator's encryption, its integrity, then the responder's.
				km := concat(ck.InitEnc, ck.InitInteg, ck.RespEnc, ck.RespInteg)
				if !bytes.Equal(km, c.want[:len(km)]) {
					t.Errorf("%s: KEYMAT %x\nwant %x", c.name, km, c.want[:len(km)])
				}
			}

			re, err := ikecrypto.RekeySKEYSEED(v.v.prf, keys.SKd, girNew, ni, nr)
			if err != nil || !bytes.Equal(re, unhex(t, v.v.skeyseedRekey)) {
				t.Errorf("SKEYSEED(Rekey) = %x, %v\nwant              %s", re, err, v.v.skeyseedRekey)
			}
		})
	}
}

// Leading zero octets of g^ir and the nonces count (a big.Int would drop
// them): the same value with one more leading zero is another secret.
func TestKDFKeepsLeadingZeros(t *testing.T) {
	ni, nr := seq(16), seq(16)
	gir := append([]byte{0}, rep(0x42, 31)...)
	a, _ := ikecrypto.SKEYSEED(ikecrypto.PRFHMACSHA2256, ni, nr, gir)
	b, _ := ikecrypto.SKEYSEED(ikecrypto.PRFHMACSHA2256, ni, nr, gir[1:])
	if bytes.Equal(a, b) {
		t.Fatal("a leading zero of g^ir made no difference")
	}
	c, _ := ikecrypto.SKEYSEED(ikecrypto.PRFHMACSHA2256, append([]byte{0}, ni...), nr, gir)
	if bytes.Equal(a, c) {
		t.Fatal("a leading zero of Ni made no difference")
	}
}

// RFC 7296 §2.14: a PRF with a fixed-size key (AES-XCBC) takes the first
// 64 bits of Ni and of Nr as its SKEYSEED key; HMAC takes all of Ni | Nr.
func TestSKEYSEEDFixedKeyPRF(t *testing.T) {
	ni, nr, gir := seq(32), rep(0x77, 32), rep(0x99, 32)
	got, err := ikecrypto.SKEYSEED(ikecrypto.PRFAES128XCBC, ni, nr, gir)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ikecrypto.PRFAES128XCBC.Compute(concat(ni[:8], nr[:8]), gir)
	if !bytes.Equal(got, want) {
		t.Fatalf("SKEYSEED = %x, want prf(Ni[:8] | Nr[:8], g^ir) = %x", got, want)
	}
	// Octets past the first 8 of each nonce do not matter; those before do.
	ni2 := slices.Clone(ni)
	ni2[31] ^= 1
	if s, _ := ikecrypto.SKEYSEED(ikecrypto.PRFAES128XCBC, ni2, nr, gir); !bytes.Equal(s, got) {
		t.Error("Ni[31] changed an AES-XCBC SKEYSEED")
	}
	ni2[7] ^= 1
	if s, _ := ikecrypto.SKEYSEED(ikecrypto.PRFAES128XCBC, ni2, nr, gir); bytes.Equal(s, got) {
		t.Error("Ni[7] did not change an AES-XCBC SKEYSEED")
	}
	// HMAC: every octet of Ni counts.
	h1, _ := ikecrypto.SKEYSEED(ikecrypto.PRFHMACSHA2256, ni, nr, gir)
	ni3 := slices.Clone(ni)
	ni3[31] ^= 1
	if h2, _ := ikecrypto.SKEYSEED(ikecrypto.PRFHMACSHA2256, ni3, nr, gir); bytes.Equal(h1, h2) {
		t.Error("Ni[31] did not change an HMAC SKEYSEED")
	}
	if _, err := ikecrypto.SKEYSEED(ikecrypto.PRFAES128XCBC, seq(7), nr, gir); !errors.Is(err, ikecrypto.ErrNonce) {
		t.Errorf("7-octet Ni with AES-XCBC: %v", err)
	}
	// Its IKE SA keys: SK_d, SK_pi, SK_pr of 16 octets.
	s := ikecrypto.Suite{Transform: ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: 128, Integrity: ikecrypto.IntegHMACSHA256128}, PRF: ikecrypto.PRFAES128XCBC}
	k, err := ikecrypto.DeriveIKEKeys(s, got, ni, nr, 1, 2)
	if err != nil || len(k.SKd) != 16 || len(k.SKpi) != 16 || len(k.SKpr) != 16 {
		t.Errorf("AES-XCBC IKE keys: %d/%d/%d, %v", len(k.SKd), len(k.SKpi), len(k.SKpr), err)
	}
}

func TestIKEKeyLengths(t *testing.T) {
	cbc := func(bits int, in ikecrypto.Integrity) ikecrypto.Transform {
		return ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: bits, Integrity: in}
	}
	cases := []struct {
		s              ikecrypto.Suite
		d, a, e, total int
	}{
		// RFC 5282 §7.1: GCM's SK_e is key + 4-octet salt; no SK_a.
		{ikecrypto.Suite{Transform: ikecrypto.Transform{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 128}, PRF: ikecrypto.PRFHMACSHA2256}, 32, 0, 20, 3*32 + 2*20},
		{ikecrypto.Suite{Transform: ikecrypto.Transform{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 256}, PRF: ikecrypto.PRFHMACSHA2512}, 64, 0, 36, 3*64 + 2*36},
		// RFC 7634 §4: 36 octets of ChaCha20-Poly1305 key material.
		{ikecrypto.Suite{Transform: ikecrypto.Transform{Encryption: ikecrypto.EncrChaCha20Poly1305}, PRF: ikecrypto.PRFHMACSHA2256}, 32, 0, 36, 3*32 + 2*36},
		// Cisco's smart default: AES-CBC-256, SHA-512, PRF SHA-512.
		{ikecrypto.Suite{Transform: cbc(256, ikecrypto.IntegHMACSHA512256), PRF: ikecrypto.PRFHMACSHA2512}, 64, 64, 32, 3*64 + 2*64 + 2*32},
		{ikecrypto.Suite{Transform: cbc(192, ikecrypto.IntegHMACSHA384192), PRF: ikecrypto.PRFHMACSHA2384}, 48, 48, 24, 3*48 + 2*48 + 2*24},
		{ikecrypto.Suite{Transform: cbc(128, ikecrypto.IntegHMACSHA1_96), PRF: ikecrypto.PRFHMACSHA1}, 20, 20, 16, 3*20 + 2*20 + 2*16},
	}
	for _, c := range cases {
		k, err := ikecrypto.DeriveIKEKeys(c.s, rep(1, 32), seq(16), seq(16), 7, 8)
		if err != nil {
			t.Errorf("%v: %v", c.s, err)
			continue
		}
		if len(k.SKd) != c.d || len(k.SKpi) != c.d || len(k.SKpr) != c.d || len(k.SKai) != c.a || len(k.SKar) != c.a || len(k.SKei) != c.e || len(k.SKer) != c.e {
			t.Errorf("%v: d/pi/pr %d/%d/%d a %d/%d e %d/%d; want %d, %d, %d", c.s,
				len(k.SKd), len(k.SKpi), len(k.SKpr), len(k.SKai), len(k.SKar), len(k.SKei), len(k.SKer), c.d, c.a, c.e)
		}
		if n, _ := ikecrypto.IKEKeysLen(c.s); n != c.total {
			t.Errorf("%v: IKEKeysLen %d, want %d", c.s, n, c.total)
		}
		// Keys cannot be extended into one another.
		if cap(k.SKd) != len(k.SKd) || cap(k.SKei) != len(k.SKei) {
			t.Errorf("%v: key slices have spare capacity", c.s)
		}
		k.Clear()
		if !bytes.Equal(k.SKei, make([]byte, c.e)) || !bytes.Equal(k.SKd, make([]byte, c.d)) {
			t.Errorf("%v: Clear left key material", c.s)
		}
	}
	for _, bad := range []ikecrypto.Suite{
		{Transform: ikecrypto.Transform{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 128, Integrity: ikecrypto.IntegHMACSHA256128}, PRF: ikecrypto.PRFHMACSHA2256},
		{Transform: cbc(128, ikecrypto.IntegNone), PRF: ikecrypto.PRFHMACSHA2256},
		{Transform: cbc(100, ikecrypto.IntegHMACSHA1_96), PRF: ikecrypto.PRFHMACSHA2256},
		{Transform: ikecrypto.Transform{Encryption: 3, KeyBits: 192, Integrity: ikecrypto.IntegHMACSHA1_96}, PRF: ikecrypto.PRFHMACSHA2256},
		{Transform: cbc(128, ikecrypto.IntegHMACSHA1_96), PRF: 1},
	} {
		if _, err := ikecrypto.DeriveIKEKeys(bad, rep(1, 32), seq(16), seq(16), 7, 8); !errors.Is(err, ikecrypto.ErrTransform) && !errors.Is(err, ikecrypto.ErrPRF) {
			t.Errorf("%v: err %v, want ErrTransform or ErrPRF", bad, err)
		}
	}
}

func TestCheckNonce(t *testing.T) {
	for _, c := range []struct {
		prf ikecrypto.PRF
		n   int
		ok  bool
	}{
		{ikecrypto.PRFHMACSHA2256, 16, true}, {ikecrypto.PRFHMACSHA2256, 15, false},
		{ikecrypto.PRFHMACSHA2256, 256, true}, {ikecrypto.PRFHMACSHA2256, 257, false},
		// At least half the key size: 32 octets for SHA-512's 64.
		{ikecrypto.PRFHMACSHA2512, 31, false}, {ikecrypto.PRFHMACSHA2512, 32, true},
		{ikecrypto.PRFHMACSHA2384, 23, false}, {ikecrypto.PRFHMACSHA2384, 24, true},
		{ikecrypto.PRFAES128XCBC, 16, true},
	} {
		err := ikecrypto.CheckNonce(c.prf, make([]byte, c.n))
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ikecrypto.ErrNonce)) {
			t.Errorf("%v, %d octets: %v", c.prf, c.n, err)
		}
	}
}

func TestKeyDerivationRefusals(t *testing.T) {
	if _, err := ikecrypto.RekeySKEYSEED(ikecrypto.PRFHMACSHA2256, nil, seq(32), seq(16), seq(16)); !errors.Is(err, ikecrypto.ErrKeyLength) {
		t.Errorf("empty SK_d: %v", err)
	}
	if _, err := ikecrypto.ChildKeymat(ikecrypto.PRFHMACSHA2256, nil, nil, seq(16), seq(16), 16, 16); !errors.Is(err, ikecrypto.ErrKeyLength) {
		t.Errorf("empty SK_d: %v", err)
	}
	if _, err := ikecrypto.ChildKeymat(ikecrypto.PRFHMACSHA2256, seq(32), nil, seq(16), seq(16), 0, 16); !errors.Is(err, ikecrypto.ErrKeyLength) {
		t.Errorf("no encryption key: %v", err)
	}
	// More KEYMAT than prf+ can make (255 blocks of 20 octets).
	if _, err := ikecrypto.ChildKeymat(ikecrypto.PRFHMACSHA1, seq(20), nil, seq(16), seq(16), 2000, 600); !errors.Is(err, ikecrypto.ErrPRFPlusLimit) {
		t.Errorf("5,200 octets of SHA-1 KEYMAT: %v", err)
	}
	if _, err := ikecrypto.DeriveIKEKeys(ikecrypto.Suite{Transform: ikecrypto.Transform{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 128}, PRF: ikecrypto.PRFHMACSHA2256}, nil, seq(16), seq(16), 1, 2); !errors.Is(err, ikecrypto.ErrKeyLength) {
		t.Errorf("empty SKEYSEED: %v", err)
	}
}
