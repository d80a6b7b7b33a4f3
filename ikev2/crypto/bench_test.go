package ikecrypto_test

import (
	"net/netip"
	"testing"

	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// One side's Diffie-Hellman work per exchange: a fresh key and the secret.
func BenchmarkDH(b *testing.B) {
	for _, g := range ikecrypto.Groups() {
		peer, _ := g.GenerateKey(nil)
		b.Run(g.String(), func(b *testing.B) {
			for b.Loop() {
				k, err := g.GenerateKey(nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := k.Shared(peer.Public()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

var benchSuites = []ikecrypto.Suite{
	// What we would propose: AES-GCM-256, PRF-HMAC-SHA2-256.
	{Transform: ikecrypto.Transform{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 256}, PRF: ikecrypto.PRFHMACSHA2256},
	// IOS XE's smart default: AES-CBC-256, HMAC-SHA2-512, PRF SHA-512.
	{Transform: ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: 256, Integrity: ikecrypto.IntegHMACSHA512256}, PRF: ikecrypto.PRFHMACSHA2512},
}

// SKEYSEED, the seven IKE SA keys and the first Child SA's KEYMAT.
func BenchmarkKeyDerivation(b *testing.B) {
	ni, nr, gir := seq(32), rep(0x5a, 32), rep(0x42, 32)
	for _, s := range benchSuites {
		b.Run(s.String(), func(b *testing.B) {
			for b.Loop() {
				seed, err := ikecrypto.SKEYSEED(s.PRF, ni, nr, gir)
				if err != nil {
					b.Fatal(err)
				}
				k, err := ikecrypto.DeriveIKEKeys(s, seed, ni, nr, 1, 2)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ikecrypto.ChildKeymat(s.PRF, k.SKd, nil, ni, nr, 36, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Seal and Open of a 300-octet IKE_AUTH (inner payloads: IDi, AUTH, SA,
// TSi, TSr of a PSK exchange).
func BenchmarkSK(b *testing.B) {
	const n = 300
	for _, s := range benchSuites {
		tr := s.Transform
		sealer, opener := newSK(b, tr), newSK(b, tr)
		buf, skOff, _ := layout(tr, 0, 4, n)
		work := make([]byte, len(buf))
		m, _ := sealer.Seal(append([]byte(nil), buf...), skOff, n)
		b.Run(tr.String()+"/Seal", func(b *testing.B) {
			b.SetBytes(int64(m))
			b.ReportAllocs()
			for b.Loop() {
				copy(work, buf)
				if _, err := sealer.Seal(work, skOff, n); err != nil {
					b.Fatal(err)
				}
			}
		})
		sealed := make([]byte, len(buf))
		copy(sealed, buf)
		m, _ = sealer.Seal(sealed, skOff, n)
		b.Run(tr.String()+"/Open", func(b *testing.B) {
			b.SetBytes(int64(m))
			b.ReportAllocs()
			for b.Loop() {
				copy(work, sealed[:m])
				if _, _, err := opener.Open(work[:m], skOff); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The responder's cryptography for one PSK handshake (IKE_SA_INIT and
// IKE_AUTH, first Child SA): its DH key and g^ir, SKEYSEED and keys, the
// two SKs, opening the IKE_AUTH request, checking the initiator's AUTH,
// making its own, sealing the response, and the Child SA KEYMAT. The
// initiator's side is the same work, so this is the per-handshake cost on
// each end.
func BenchmarkResponderHandshake(b *testing.B) {
	for _, g := range []ikecrypto.Group{ikecrypto.GroupCurve25519, ikecrypto.GroupECP256, ikecrypto.GroupMODP2048} {
		s := benchSuites[0]
		initiator, _ := g.GenerateKey(nil)
		ni, nr := seq(32), rep(0x5a, 32)
		msg1, msg2 := make([]byte, 400), make([]byte, 400)
		id := append([]byte{2, 0, 0, 0}, "spoke.example"...)
		psk := []byte("a pre-shared key of some length")
		// The initiator's IKE_AUTH, sealed once with the keys this exchange
		// derives (the DH secret is fixed by the initiator's key and ours
		// below, drawn from a constant reader).
		ours, _ := g.GenerateKey(constReader(0x21))
		gir, _ := ours.Shared(initiator.Public())
		seed, _ := ikecrypto.SKEYSEED(s.PRF, ni, nr, gir)
		k, _ := ikecrypto.DeriveIKEKeys(s, seed, ni, nr, 1, 2)
		authI, _ := ikecrypto.PSKAuth(s.PRF, psk, msg1, nr, k.SKpi, id)
		iSK, _ := ikecrypto.NewSK(s.Transform, k.SKei, k.SKai)
		req, skOff, _ := layout(s.Transform, 0, 4, 300)
		m, _ := iSK.Seal(req, skOff, 300)
		req = req[:m]
		work := make([]byte, len(req))
		resp, _, _ := layout(s.Transform, 0, 4, 250)
		b.Run(g.String(), func(b *testing.B) {
			for b.Loop() {
				key, err := g.GenerateKey(constReader(0x21))
				if err != nil {
					b.Fatal(err)
				}
				gir, err := key.Shared(initiator.Public())
				if err != nil {
					b.Fatal(err)
				}
				seed, _ := ikecrypto.SKEYSEED(s.PRF, ni, nr, gir)
				k, err := ikecrypto.DeriveIKEKeys(s, seed, ni, nr, 1, 2)
				if err != nil {
					b.Fatal(err)
				}
				in, _ := ikecrypto.NewSK(s.Transform, k.SKei, k.SKai)
				out, _ := ikecrypto.NewSK(s.Transform, k.SKer, k.SKar)
				copy(work, req)
				if _, _, err := in.Open(work, skOff); err != nil {
					b.Fatal(err)
				}
				if err := ikecrypto.VerifyPSKAuth(s.PRF, psk, msg1, nr, k.SKpi, id, authI); err != nil {
					b.Fatal(err)
				}
				if _, err := ikecrypto.PSKAuth(s.PRF, psk, msg2, ni, k.SKpr, id); err != nil {
					b.Fatal(err)
				}
				if _, err := out.Seal(resp, skOff, 250); err != nil {
					b.Fatal(err)
				}
				if _, err := ikecrypto.ChildKeymat(s.PRF, k.SKd, nil, ni, nr, 36, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCookie(b *testing.B) {
	j, _ := ikecrypto.NewCookieJar(nil)
	ni, ip := seq(32), netip.MustParseAddr("192.0.2.1")
	c := j.Append(nil, ni, ip, 7)
	b.ReportAllocs()
	for b.Loop() {
		if err := j.Check(c, ni, ip, 7); err != nil {
			b.Fatal(err)
		}
	}
}
