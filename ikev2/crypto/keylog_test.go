package ikecrypto_test

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// The line tshark 4.0.17 takes for tcpdump's ikev2pI2.pcap (checked by
// hand with -o uat:ikev2_decryption_table:…, and by TestTsharkDecryptsOurs
// for lines we write).
const pI2Wireshark = `0001020304050607,c02e7a3031a03188,3f44bf47cafd8150591deb088199fcbf,bedb67ec7dc3d00cccac42e70cd63bde,"AES-CBC-128 [RFC3602]",4ea8e662b07cdd430f6944c6723e4b82d5722418,515b0bd22e6d76b34fdb760aa7bfad80b109b75d,"HMAC_SHA1_96 [RFC2404]"` + "\n"

// tcpdump_ikev2pI2-secrets.txt.
const pI2Tcpdump = "ikev2 I 0x0001020304050607 0xc02e7a3031a03188 sha1:0x4ea8e662b07cdd430f6944c6723e4b82d5722418 aes128:0x3f44bf47cafd8150591deb088199fcbf\n" +
	"ikev2 R 0x0001020304050607 0xc02e7a3031a03188 sha1:0x515b0bd22e6d76b34fdb760aa7bfad80b109b75d aes128:0xbedb67ec7dc3d00cccac42e70cd63bde\n"

func TestKeyLogIKEFormats(t *testing.T) {
	logs, err := ikecrypto.ParseTcpdumpIKE(strings.NewReader("# a comment\n\n" + pI2Tcpdump + "0x12345678@192.1.2.45 3des-cbc-hmac96:0x4343\n"))
	if err != nil || len(logs) != 1 {
		t.Fatalf("%d SAs, %v", len(logs), err)
	}
	ws, err := logs[0].AppendWireshark(nil)
	if err != nil || string(ws) != pI2Wireshark {
		t.Fatalf("Wireshark line:\n%s%v\nwant\n%s", ws, err, pI2Wireshark)
	}
	back, err := ikecrypto.ParseWiresharkIKE(strings.TrimSuffix(string(ws), "\n"))
	if err != nil {
		t.Fatal(err)
	}
	td, err := back.AppendTcpdump(nil)
	if err != nil || string(td) != pI2Tcpdump {
		t.Fatalf("tcpdump lines:\n%s%v", td, err)
	}

	// Every transform Wireshark names goes out and comes back; GCM has no
	// integrity keys (empty fields) and "NONE [RFC4306]".
	for _, tr := range allTransforms() {
		l := ikecrypto.IKEKeyLog{SPIi: 0xfedcba9876543210, SPIr: 0x0123456789abcdef, Transform: tr,
			SKei: rep(1, tr.EncKeyLen()), SKer: rep(2, tr.EncKeyLen()), SKai: rep(3, tr.IntegKeyLen()), SKar: rep(4, tr.IntegKeyLen())}
		line, err := l.AppendWireshark(nil)
		if tr.Encryption == ikecrypto.EncrChaCha20Poly1305 {
			if !errors.Is(err, ikecrypto.ErrKeyLog) {
				t.Errorf("%v: %v, want ErrKeyLog (Wireshark has no name for it)", tr, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tr, err)
		}
		if tr.AEAD() && !strings.Contains(string(line), `",,,"NONE [RFC4306]"`) {
			t.Errorf("%v: %s", tr, line)
		}
		got, err := ikecrypto.ParseWiresharkIKE(string(line))
		if err != nil {
			t.Fatalf("%v: %v\n%s", tr, err, line)
		}
		if got.SPIi != l.SPIi || got.SPIr != l.SPIr || got.Transform != tr || !bytes.Equal(got.SKei, l.SKei) || !bytes.Equal(got.SKer, l.SKer) ||
			!bytes.Equal(got.SKai, l.SKai) || !bytes.Equal(got.SKar, l.SKar) {
			t.Errorf("%v: round trip gave %+v", tr, got)
		}
		_, err = l.AppendTcpdump(nil)
		if tr.AEAD() != errors.Is(err, ikecrypto.ErrKeyLog) {
			t.Errorf("%v: tcpdump line: %v", tr, err)
		}
	}
	// Keys that do not fit the transform make no line.
	bad := logs[0]
	bad.SKei = bad.SKei[:15]
	if _, err := bad.AppendWireshark(nil); !errors.Is(err, ikecrypto.ErrKeyLog) {
		t.Errorf("short SK_ei: %v", err)
	}
}

func TestKeyLogESPFormat(t *testing.T) {
	l := ikecrypto.ESPKeyLog{
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), SPI: 0x0000abcd,
		Transform: ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: 128, Integrity: ikecrypto.IntegHMACSHA256128},
		EncKey:    rep(0xaa, 16), IntegKey: rep(0xbb, 32),
	}
	line, err := l.AppendWireshark(nil)
	want := `"IPv4","192.0.2.1","192.0.2.2","0x0000abcd","AES-CBC [RFC3602]","0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","HMAC-SHA-256-128 [RFC4868]","0x` + strings.Repeat("bb", 32) + "\"\n"
	if err != nil || string(line) != want {
		t.Fatalf("esp_sa line:\n%s%v\nwant\n%s", line, err, want)
	}
	for _, c := range []struct {
		tr       ikecrypto.Transform
		src, dst string
		name     string
	}{
		{ikecrypto.Transform{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 256}, "2001:db8::1", "2001:db8::2", `"IPv6","2001:db8::1","2001:db8::2","0x0000abcd","AES-GCM with 16 octet ICV [RFC4106]"`},
		{ikecrypto.Transform{Encryption: ikecrypto.EncrChaCha20Poly1305, KeyBits: 256}, "192.0.2.1", "192.0.2.2", `"ChaCha20 with Poly1305 [RFC7634]"`},
		{ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: 256, Integrity: ikecrypto.IntegHMACSHA512256}, "192.0.2.1", "192.0.2.2", `"HMAC-SHA-512-256 [RFC4868]"`},
		{ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: 128, Integrity: ikecrypto.IntegHMACSHA1_96}, "::ffff:192.0.2.1", "192.0.2.2", `"IPv4","192.0.2.1"`},
	} {
		e := ikecrypto.ESPKeyLog{Src: netip.MustParseAddr(c.src), Dst: netip.MustParseAddr(c.dst), SPI: 0xabcd, Transform: c.tr,
			EncKey: rep(1, c.tr.EncKeyLen()), IntegKey: rep(2, c.tr.IntegKeyLen())}
		line, err := e.AppendWireshark(nil)
		if err != nil || !strings.Contains(string(line), c.name) {
			t.Errorf("%v: %s %v", c.tr, line, err)
			continue
		}
		got, err := ikecrypto.ParseWiresharkESP(string(line))
		if err != nil || got.Transform != c.tr || got.SPI != 0xabcd || !bytes.Equal(got.EncKey, e.EncKey) || !bytes.Equal(got.IntegKey, e.IntegKey) {
			t.Errorf("%v: round trip %+v, %v", c.tr, got, err)
		}
	}
	mixed := l
	mixed.Dst = netip.MustParseAddr("2001:db8::2")
	if _, err := mixed.AppendWireshark(nil); !errors.Is(err, ikecrypto.ErrKeyLog) {
		t.Errorf("IPv4 to IPv6: %v", err)
	}
}

func TestKeyLogParseErrors(t *testing.T) {
	good := strings.TrimSuffix(pI2Wireshark, "\n")
	for name, line := range map[string]string{
		"empty":             "",
		"seven fields":      good[:strings.LastIndex(good, ",")],
		"nine fields":       good + `,"x"`,
		"unterminated":      strings.TrimSuffix(good, `"`),
		"bad escape":        strings.Replace(good, `"HMAC_SHA1`, `"\qHMAC_SHA1`, 1),
		"short SPI":         good[2:],
		"non-hex key":       strings.Replace(good, "3f44bf47", "3f44bz47", 1),
		"odd-length key":    strings.Replace(good, "3f44bf47", "3f44bf4", 1),
		"unknown cipher":    strings.Replace(good, "AES-CBC-128", "AES-CBC-129", 1),
		"unknown integrity": strings.Replace(good, "HMAC_SHA1_96", "HMAC_MD5_96", 1),
		"key too short":     strings.Replace(good, "3f44bf47", "", 1),
		"junk after quote":  strings.Replace(good, `[RFC3602]"`, `[RFC3602]"x`, 1),
		"too long":          good + strings.Repeat(" ", 5000),
	} {
		if _, err := ikecrypto.ParseWiresharkIKE(line); !errors.Is(err, ikecrypto.ErrKeyLog) {
			t.Errorf("%s: %v, want ErrKeyLog", name, err)
		}
	}
	// Escapes Wireshark writes are understood.
	esc := strings.Replace(good, `"AES-CBC-128 [RFC3602]"`, `"AES-CBC-128\x20[RFC3602]"`, 1)
	if _, err := ikecrypto.ParseWiresharkIKE(esc); err != nil {
		t.Errorf("\\x20 escape: %v", err)
	}
	for name, line := range map[string]string{
		"wildcard source":   `"IPv4","*","192.0.2.2","0x1","AES-CBC [RFC3602]","0x` + strings.Repeat("aa", 16) + `","NULL","0x"`,
		"protocol mismatch": `"IPv6","192.0.2.1","192.0.2.2","0x1","AES-CBC [RFC3602]","0x` + strings.Repeat("aa", 16) + `","HMAC-SHA-1-96 [RFC2404]","0x` + strings.Repeat("bb", 20) + `"`,
		"CBC without MAC":   `"IPv4","192.0.2.1","192.0.2.2","0x1","AES-CBC [RFC3602]","0x` + strings.Repeat("aa", 16) + `","NULL","0x"`,
		"bad SPI":           `"IPv4","192.0.2.1","192.0.2.2","0x1ffffffff","AES-CBC [RFC3602]","0x` + strings.Repeat("aa", 16) + `","HMAC-SHA-1-96 [RFC2404]","0x` + strings.Repeat("bb", 20) + `"`,
		"GCM key of 17":     `"IPv4","192.0.2.1","192.0.2.2","0x1","AES-GCM with 16 octet ICV [RFC4106]","0x` + strings.Repeat("aa", 17) + `","NULL","0x"`,
	} {
		if _, err := ikecrypto.ParseWiresharkESP(line); !errors.Is(err, ikecrypto.ErrKeyLog) {
			t.Errorf("%s: %v, want ErrKeyLog", name, err)
		}
	}
	iLine, rLine, _ := strings.Cut(pI2Tcpdump, "\n")
	for name, file := range map[string]string{
		"no R line":      iLine + "\n",
		"I twice":        iLine + "\n" + iLine + "\n" + rLine,
		"unknown cipher": strings.Replace(pI2Tcpdump, "aes128:", "des:", 1),
		"five fields":    "ikev2 I 0x0001020304050607 0xc02e7a3031a03188 sha1:0x00\n",
		"bad direction":  strings.Replace(pI2Tcpdump, "ikev2 R", "ikev2 X", 1),
		"mixed ciphers":  iLine + "\n" + strings.Replace(rLine, "aes128:0xbedb67ec7dc3d00cccac42e70cd63bde", "aes256:0x"+strings.Repeat("cc", 32), 1),
		"long line":      strings.Repeat("x", 5000) + "\n",
	} {
		if _, err := ikecrypto.ParseTcpdumpIKE(strings.NewReader(file)); !errors.Is(err, ikecrypto.ErrKeyLog) {
			t.Errorf("tcpdump %s: %v, want ErrKeyLog", name, err)
		}
	}
}
