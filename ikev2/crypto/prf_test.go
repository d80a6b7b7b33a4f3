package ikecrypto_test

// Known answers for the PRFs, written out from the published vectors:
// RFC 2202 (HMAC-SHA1), RFC 4231 (HMAC-SHA2 PRF), RFC 4868 §2.7.2 (the
// truncated HMAC-SHA2 authenticators, with keys of the full hash length),
// RFC 3566 §4.6 and RFC 4434 §4 (AES-XCBC-MAC and its PRF), and strongSwan's
// prf+ counter vector (src/libstrongswan/tests/suites/test_prf_plus.c:
// HMAC-SHA2-256, key 0x0b×20, seed "Hi There", read in chunks of
// 3, 6, 7, 16, 8, 8, 14, 20 and 40 octets, concatenated here).

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// unhex decodes hex written with spaces or newlines for readability.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

func rep(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func TestPRFKnownAnswers(t *testing.T) {
	aa131 := rep(0xaa, 131)
	key25 := unhex(t, "0102030405060708090a0b0c0d0e0f10111213141516171819")
	largeKeyData := []byte("Test Using Larger Than Block-Size Key - Hash Key First")
	cases := []struct {
		name string
		prf  ikecrypto.PRF
		key  []byte
		data []byte
		want string
	}{
		{"RFC2202 1", ikecrypto.PRFHMACSHA1, rep(0x0b, 20), []byte("Hi There"), "b617318655057264e28bc0b6fb378c8ef146be00"},
		{"RFC2202 2", ikecrypto.PRFHMACSHA1, []byte("Jefe"), []byte("what do ya want for nothing?"), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"},

		{"RFC4231 1/256", ikecrypto.PRFHMACSHA2256, rep(0x0b, 20), []byte("Hi There"),
			"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{"RFC4231 1/384", ikecrypto.PRFHMACSHA2384, rep(0x0b, 20), []byte("Hi There"),
			"afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6"},
		{"RFC4231 1/512", ikecrypto.PRFHMACSHA2512, rep(0x0b, 20), []byte("Hi There"),
			"87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},

		{"RFC4231 2/256", ikecrypto.PRFHMACSHA2256, []byte("Jefe"), []byte("what do ya want for nothing?"),
			"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{"RFC4231 2/384", ikecrypto.PRFHMACSHA2384, []byte("Jefe"), []byte("what do ya want for nothing?"),
			"af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"},
		{"RFC4231 2/512", ikecrypto.PRFHMACSHA2512, []byte("Jefe"), []byte("what do ya want for nothing?"),
			"164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},

		{"RFC4231 3/256", ikecrypto.PRFHMACSHA2256, rep(0xaa, 20), rep(0xdd, 50),
			"773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
		{"RFC4231 3/384", ikecrypto.PRFHMACSHA2384, rep(0xaa, 20), rep(0xdd, 50),
			"88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b2a5ab39dc13814b94e3ab6e101a34f27"},
		{"RFC4231 3/512", ikecrypto.PRFHMACSHA2512, rep(0xaa, 20), rep(0xdd, 50),
			"fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb"},

		{"RFC4231 4/256", ikecrypto.PRFHMACSHA2256, key25, rep(0xcd, 50),
			"82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
		{"RFC4231 4/384", ikecrypto.PRFHMACSHA2384, key25, rep(0xcd, 50),
			"3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e6801dd23c4a7d679ccf8a386c674cffb"},
		{"RFC4231 4/512", ikecrypto.PRFHMACSHA2512, key25, rep(0xcd, 50),
			"b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3dba91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd"},

		{"RFC4231 6/256", ikecrypto.PRFHMACSHA2256, aa131, largeKeyData,
			"60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
		{"RFC4231 6/384", ikecrypto.PRFHMACSHA2384, aa131, largeKeyData,
			"4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c60c2ef6ab4030fe8296248df163f44952"},
		{"RFC4231 6/512", ikecrypto.PRFHMACSHA2512, aa131, largeKeyData,
			"80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"},

		// RFC 3566 §4.6 test cases 1-5 (full 128-bit output, the PRF of RFC 4434).
		{"RFC3566 1", ikecrypto.PRFAES128XCBC, seq(16), nil, "75f0251d528ac01c4573dfd584d79f29"},
		{"RFC3566 2", ikecrypto.PRFAES128XCBC, seq(16), seq(3), "5b376580ae2f19afe7219ceef172756f"},
		{"RFC3566 3", ikecrypto.PRFAES128XCBC, seq(16), seq(16), "d2a246fa349b68a79998a4394ff7a263"},
		{"RFC3566 4", ikecrypto.PRFAES128XCBC, seq(16), seq(20), "47f51b4564966215b8985c63055ed308"},
		{"RFC3566 5", ikecrypto.PRFAES128XCBC, seq(16), seq(32), "f54f0ec8d2b9f3d36807734bd5283fd4"},
		// RFC 4434 §4: keys shorter and longer than 128 bits.
		{"RFC4434 10-octet key", ikecrypto.PRFAES128XCBC, seq(10), seq(20), "0fa087af7d866e7653434e602fdde835"},
		{"RFC4434 18-octet key", ikecrypto.PRFAES128XCBC, append(seq(16), 0xed, 0xcb), seq(20), "8cd3c93ae598a9803006ffb67c40e9e4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.prf.Compute(c.key, c.data)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, c.want); !bytes.Equal(got, want) {
				t.Errorf("prf = %x\nwant  %x", got, want)
			}
			if len(got) != c.prf.Size() {
				t.Errorf("output %d octets, Size() says %d", len(got), c.prf.Size())
			}
			// The data in pieces gives the same output (the key derivation
			// feeds Ni | Nr | SPIi | SPIr that way).
			if len(c.data) > 1 {
				h := len(c.data) / 2
				got2, _ := c.prf.Compute(c.key, c.data[:h], nil, c.data[h:])
				if !bytes.Equal(got2, got) {
					t.Errorf("in pieces: %x", got2)
				}
			}
		})
	}
}

// seq is 00 01 02 … n-1, the RFC 3566 keys and messages.
func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// RFC 4868 §2.7.2.1-2.7.2.3 (AUTH256-1 … AUTH512-2) and RFC 2202's
// HMAC-SHA1 truncated to 96 bits: the ICVs of the SK payload.
func TestIntegrityTruncation(t *testing.T) {
	cases := []struct {
		integ ikecrypto.Integrity
		key   []byte
		data  string
		want  string
	}{
		{ikecrypto.IntegHMACSHA1_96, rep(0x0b, 20), "Hi There", "b617318655057264e28bc0b6"},
		{ikecrypto.IntegHMACSHA256128, rep(0x0b, 32), "Hi There", "198a607eb44bfbc69903a0f1cf2bbdc5"},
		{ikecrypto.IntegHMACSHA384192, rep(0x0b, 48), "Hi There", "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973"},
		{ikecrypto.IntegHMACSHA512256, rep(0x0b, 64), "Hi There", "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8"},
		{ikecrypto.IntegHMACSHA256128, []byte(strings.Repeat("Jefe", 8)), "what do ya want for nothing?", "167f928588c5cc2eef8e3093caa0e87c"},
		{ikecrypto.IntegHMACSHA384192, []byte(strings.Repeat("Jefe", 12)), "what do ya want for nothing?", "2c7353974f1842fd66d53c452ca42122b28c0b594cfb184d"},
		{ikecrypto.IntegHMACSHA512256, []byte(strings.Repeat("Jefe", 16)), "what do ya want for nothing?", "cb370917ae8a7ce28cfd1d8f4705d6141c173b2a9362c15df235dfb251b15454"},
	}
	for _, c := range cases {
		tr := ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: 128, Integrity: c.integ}
		sk, err := ikecrypto.NewSK(tr, make([]byte, 16), c.key)
		if err != nil {
			t.Fatalf("%v: %v", tr, err)
		}
		if got := sk.ICV([]byte(c.data)); !bytes.Equal(got, unhex(t, c.want)) {
			t.Errorf("%v: ICV %x, want %s", tr, got, c.want)
		}
		if tr.ICVLen() != len(c.want)/2 || tr.IntegKeyLen() != len(c.key) {
			t.Errorf("%v: ICVLen %d IntegKeyLen %d", tr, tr.ICVLen(), tr.IntegKeyLen())
		}
	}
}

// strongSwan's prf+ counter vector, the outputs it reads one after another.
const prfPlusStrongSwan = "" +
	"b9bdc0" + "8988b4c2b75a" + "a93e596ac84205" +
	"fa2ddde1bf7a2572067b00e14b237732" + "830509981ad2f94a" + "8c32a47daa2255b6" +
	"60c436347ae756a6edc023477d80" + "9590e682f61d9c04b06b4ad971a34c8147fa6679" +
	"2ff1434b93c722b32e12f48832ebc15ce2369ce71fe9b7b81e5704c14d0f5280a6ec626e992d7a9f"

func TestPRFPlusKnownAnswer(t *testing.T) {
	want := unhex(t, prfPlusStrongSwan)
	got, err := ikecrypto.PRFPlus(ikecrypto.PRFHMACSHA2256, rep(0x0b, 20), len(want), []byte("Hi There"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("prf+ =\n%x\nwant\n%x", got, want)
	}
	// A shorter request is a prefix; the seed may come in pieces.
	got, _ = ikecrypto.PRFPlus(ikecrypto.PRFHMACSHA2256, rep(0x0b, 20), 40, []byte("Hi "), []byte("There"))
	if !bytes.Equal(got, want[:40]) {
		t.Errorf("prefix of 40 in pieces = %x", got)
	}
	// T1 is prf(K, S | 0x01): the first block by hand.
	t1, _ := ikecrypto.PRFHMACSHA2256.Compute(rep(0x0b, 20), []byte("Hi There"), []byte{1})
	if !bytes.Equal(t1, want[:32]) {
		t.Errorf("T1 = %x, want %x", t1, want[:32])
	}
}

func TestPRFPlusLimit(t *testing.T) {
	for _, p := range []ikecrypto.PRF{ikecrypto.PRFHMACSHA1, ikecrypto.PRFAES128XCBC, ikecrypto.PRFHMACSHA2256, ikecrypto.PRFHMACSHA2384, ikecrypto.PRFHMACSHA2512} {
		max := 255 * p.Size()
		out, err := ikecrypto.PRFPlus(p, seq(16), max, []byte("seed"))
		if err != nil || len(out) != max {
			t.Errorf("%v: 255 blocks: %d octets, %v", p, len(out), err)
		}
		// Block 255 is prf(K, T254 | S | 0xff): the counter did not wrap.
		t255, _ := p.Compute(seq(16), out[max-2*p.Size():max-p.Size()], []byte("seed"), []byte{0xff})
		if !bytes.Equal(t255, out[max-p.Size():]) {
			t.Errorf("%v: block 255 is not prf(K, T254 | S | 0xff)", p)
		}
		for _, n := range []int{max + 1, 1 << 20, -1} {
			if _, err := ikecrypto.PRFPlus(p, seq(16), n, []byte("seed")); !errors.Is(err, ikecrypto.ErrPRFPlusLimit) {
				t.Errorf("%v: %d octets: err %v, want ErrPRFPlusLimit", p, n, err)
			}
		}
	}
	if _, err := ikecrypto.PRFPlus(ikecrypto.PRF(99), nil, 1); !errors.Is(err, ikecrypto.ErrPRF) {
		t.Errorf("unknown PRF: %v", err)
	}
}
