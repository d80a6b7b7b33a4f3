package ikecrypto_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// PSK AUTH (RFC 7296 §2.15). No published vector exists for it, so the
// answers below were computed by an independent route, Python 3's hmac and
// hashlib from the formula:
//
//	k    = HMAC(psk, "Key Pad for IKEv2")
//	AUTH = HMAC(k, msg | nonce | HMAC(SK_p, IDType | RESERVED | IDData))
//
// with psk "dmvpn-test-psk", msg = 00 01 … 63, nonce = a0 a1 … af twice,
// SK_p = 0x11 × 32 (× 20 for SHA-1), ID = FQDN "spoke1.example".
func TestPSKAuthKnownAnswers(t *testing.T) {
	msg := seq(100)
	nonce := make([]byte, 32)
	for i := range nonce {
		nonce[i] = byte(0xa0 + i%16)
	}
	id := append(unhex(t, "02000000"), "spoke1.example"...)
	psk := []byte("dmvpn-test-psk")
	for _, c := range []struct {
		prf  ikecrypto.PRF
		skp  []byte
		want string
	}{
		{ikecrypto.PRFHMACSHA2256, rep(0x11, 32), "7ee12e4cf2c3d8a6dadc89e8fae784eeefdc79a8ab31ab4037e64d9175ec9023"},
		{ikecrypto.PRFHMACSHA1, rep(0x11, 20), "04a3c2484650de2210a6b0d2d8d35a9737ddbc9e"},
		{ikecrypto.PRFHMACSHA2512, rep(0x11, 32), "517b80af8eabe6353cc4be5873da2f7b2ccdf3011470e18b315c924c75946875c5b053eb00e301577c20b449d45128d90964a5fb3766e318356e401397120cd3"},
	} {
		got, err := ikecrypto.PSKAuth(c.prf, psk, msg, nonce, c.skp, id)
		if err != nil || !bytes.Equal(got, unhex(t, c.want)) {
			t.Errorf("%v: AUTH = %x, %v\nwant   %s", c.prf, got, err, c.want)
		}
		if err := ikecrypto.VerifyPSKAuth(c.prf, psk, msg, nonce, c.skp, id, got); err != nil {
			t.Errorf("%v: own AUTH does not verify: %v", c.prf, err)
		}
		// Each input is bound: change any one and the AUTH fails.
		flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
		for name, args := range map[string][5][]byte{
			"psk":     {flip(psk, 0), msg, nonce, c.skp, id},
			"message": {psk, flip(msg, 99), nonce, c.skp, id},
			"nonce":   {psk, msg, flip(nonce, 0), c.skp, id},
			"SK_p":    {psk, msg, nonce, flip(c.skp, 3), id},
			"ID":      {psk, msg, nonce, c.skp, flip(id, 0)},
		} {
			if err := ikecrypto.VerifyPSKAuth(c.prf, args[0], args[1], args[2], args[3], args[4], got); !errors.Is(err, ikecrypto.ErrAuthMismatch) {
				t.Errorf("%v: changed %s: %v, want ErrAuthMismatch", c.prf, name, err)
			}
		}
		for _, bad := range [][]byte{nil, got[:len(got)-1], append(bytes.Clone(got), 0)} {
			if err := ikecrypto.VerifyPSKAuth(c.prf, psk, msg, nonce, c.skp, id, bad); !errors.Is(err, ikecrypto.ErrAuthMismatch) {
				t.Errorf("%v: AUTH of %d octets: %v", c.prf, len(bad), err)
			}
		}
	}
	// The initiator's and responder's AUTH differ (different keys and
	// messages), and an empty PSK is refused.
	if _, err := ikecrypto.PSKAuth(ikecrypto.PRFHMACSHA2256, nil, msg, nonce, rep(0x11, 32), id); !errors.Is(err, ikecrypto.ErrKeyLength) {
		t.Errorf("empty PSK: %v", err)
	}
	if _, err := ikecrypto.PSKAuth(ikecrypto.PRFHMACSHA2256, psk, msg, nonce, nil, id); !errors.Is(err, ikecrypto.ErrKeyLength) {
		t.Errorf("empty SK_p: %v", err)
	}
	// AES-XCBC takes a PSK of any length (RFC 4434 pads or hashes it).
	for _, n := range []int{1, 16, 64} {
		if _, err := ikecrypto.PSKAuth(ikecrypto.PRFAES128XCBC, rep('k', n), msg, nonce, rep(0x11, 16), id); err != nil {
			t.Errorf("AES-XCBC with a %d-octet PSK: %v", n, err)
		}
	}
}

// NAT detection hashes of a Cisco IOS FlexVPN exchange (nDPI's esp.pcapng,
// frames 1 and 2, no NAT between 10.2.3.2:500 and 10.3.4.4:500).
func TestNATDetectionKnownAnswers(t *testing.T) {
	a, b := netip.MustParseAddr("10.2.3.2"), netip.MustParseAddr("10.3.4.4")
	const spiI, spiR = 0x05ac0f4d122013f4, 0x5f46ee70bc4c5d0d
	for _, c := range []struct {
		spiR uint64
		ip   netip.Addr
		want string
	}{
		{0, a, "4fbeaa57ffae70cc08776899742185b6c2bbb55d"},    // request, source
		{0, b, "b16f1538b2b4d28d6f1aa6e8f79d9e92ca33d409"},    // request, destination
		{spiR, b, "cf73f6965980a0fef59cdd6a6944b18aca914785"}, // response, source
		{spiR, a, "b5bf51e2925a867c96f0013bda4ce526d85f36a6"}, // response, destination
	} {
		if got := ikecrypto.NATDetectionHash(spiI, c.spiR, c.ip, 500); !bytes.Equal(got[:], unhex(t, c.want)) {
			t.Errorf("%v SPIr %x: %x, want %s", c.ip, c.spiR, got, c.want)
		}
	}
	// IPv4-mapped IPv6 is the IPv4 address; another port is another hash.
	h4 := ikecrypto.NATDetectionHash(spiI, 0, a, 500)
	if h := ikecrypto.NATDetectionHash(spiI, 0, netip.AddrFrom16(a.As16()), 500); h != h4 {
		t.Error("IPv4-mapped address hashed as IPv6")
	}
	if h := ikecrypto.NATDetectionHash(spiI, 0, a, 4500); h == h4 {
		t.Error("the port is not in the hash")
	}
	if h := ikecrypto.NATDetectionHash(spiI, 0, netip.MustParseAddr("2001:db8::1"), 500); h == h4 {
		t.Error("IPv6 address collides")
	}
	if n := testing.AllocsPerRun(100, func() { ikecrypto.NATDetectionHash(spiI, spiR, b, 500) }); n != 0 {
		t.Errorf("%.0f allocations", n)
	}
}

func TestCookies(t *testing.T) {
	j, err := ikecrypto.NewCookieJar(nil)
	if err != nil {
		t.Fatal(err)
	}
	ni := seq(32)
	ip := netip.MustParseAddr("192.0.2.7")
	const spi = 0x1122334455667788
	c := j.Append(nil, ni, ip, spi)
	if len(c) != ikecrypto.CookieLen || len(c) > 64 {
		t.Fatalf("cookie of %d octets", len(c))
	}
	if err := j.Check(c, ni, ip, spi); err != nil {
		t.Fatalf("own cookie: %v", err)
	}
	// Stateless: the same inputs give the same cookie.
	if c2 := j.Append(nil, ni, ip, spi); !bytes.Equal(c, c2) {
		t.Error("cookie changed without a rotation")
	}
	// Bound to nonce, address and SPI.
	for name, err := range map[string]error{
		"nonce":           j.Check(c, seq(31), ip, spi),
		"address":         j.Check(c, ni, netip.MustParseAddr("192.0.2.8"), spi),
		"IPv6 address":    j.Check(c, ni, netip.MustParseAddr("2001:db8::7"), spi),
		"SPI":             j.Check(c, ni, ip, spi+1),
		"MAC flipped":     j.Check(func() []byte { b := bytes.Clone(c); b[10] ^= 1; return b }(), ni, ip, spi),
		"unknown version": j.Check(func() []byte { b := bytes.Clone(c); b[0] ^= 0x80; return b }(), ni, ip, spi),
		"short":           j.Check(c[:len(c)-1], ni, ip, spi),
		"long":            j.Check(append(bytes.Clone(c), 0), ni, ip, spi),
		"empty":           j.Check(nil, ni, ip, spi),
	} {
		if !errors.Is(err, ikecrypto.ErrCookie) {
			t.Errorf("changed %s: %v, want ErrCookie", name, err)
		}
	}
	// One rotation: the old cookie still works, a new one differs. Two:
	// the first is gone.
	if err := j.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := j.Check(c, ni, ip, spi); err != nil {
		t.Errorf("previous secret's cookie after one rotation: %v", err)
	}
	c2 := j.Append(nil, ni, ip, spi)
	if bytes.Equal(c, c2) {
		t.Error("rotation did not change the cookie")
	}
	if err := j.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := j.Check(c, ni, ip, spi); !errors.Is(err, ikecrypto.ErrCookie) {
		t.Errorf("cookie two rotations old: %v", err)
	}
	if err := j.Check(c2, ni, ip, spi); err != nil {
		t.Errorf("previous secret's cookie: %v", err)
	}
	// Another jar (another responder, or a restart) does not accept it.
	k, _ := ikecrypto.NewCookieJar(nil)
	if err := k.Check(k.Append(nil, ni, ip, spi), ni, ip, spi); err != nil {
		t.Fatal(err)
	}
	if err := k.Check(c2, ni, ip, spi); !errors.Is(err, ikecrypto.ErrCookie) {
		t.Errorf("other jar's cookie: %v", err)
	}
	if _, err := ikecrypto.NewCookieJar(bytes.NewReader(nil)); !errors.Is(err, ikecrypto.ErrRandom) {
		t.Errorf("empty random source: %v", err)
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() {
		buf = j.Append(buf[:0], ni, ip, spi)
		_ = j.Check(buf, ni, ip, spi)
	}); n != 0 {
		t.Errorf("%.0f allocations per cookie made and checked", n)
	}
}
