package ikecrypto_test

// Interop with an independent implementation: Wireshark (tshark) decrypts
// what we seal, given only the key-log lines we write. For every transform
// Wireshark's IKEv2 table names (AES-CBC-128/192/256 with the four HMACs,
// AES-GCM-128/192/256), an IKE SA's keys are derived with DeriveIKEKeys, an
// IKE_AUTH request and response are sealed, and the ikev2_decryption_table
// file is our AppendWireshark's lines, read by tshark from a private
// configuration directory (WIRESHARK_CONFIG_DIR). tshark must find IDi/IDr
// and AUTH inside and raise no integrity warning; a control message with
// one ICV octet changed must raise it, so the check is not vacuous. The
// Child SA keys from ChildKeymat key package esp's SAs in both directions,
// and tshark decrypts those packets with our esp_sa lines and checks
// their ICVs.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/dmvpn/dmvpn/esp"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
	"github.com/dmvpn/dmvpn/internal/testenv"
)

const tsharkTimeout = 2 * time.Minute

var (
	tsInit = netip.MustParseAddr("192.0.2.10")
	tsResp = netip.MustParseAddr("198.51.100.20")
)

// ipv4UDP wraps payload in IPv4 and UDP headers (UDP checksum 0: none).
func ipv4UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0], p[8], p[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], ipChecksum(p[:20]))
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

func ipv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	p := make([]byte, 20+len(payload))
	p[0], p[8], p[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], ipChecksum(p[:20]))
	copy(p[20:], payload)
	return p
}

func ipChecksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// ikeAuth builds and seals an IKE_AUTH message: ID (type 35 IDi or 36 IDr,
// FQDN) then AUTH (shared key), in the SK payload.
func ikeAuth(t *testing.T, sk *ikecrypto.SK, spiI, spiR uint64, response bool, fqdn string, auth []byte) []byte {
	t.Helper()
	idType, flags := byte(35), byte(0x08)
	if response {
		idType, flags = 36, 0x20
	}
	var inner []byte
	inner = append(inner, 39, 0)
	inner = binary.BigEndian.AppendUint16(inner, uint16(8+len(fqdn)))
	inner = append(inner, 2, 0, 0, 0)
	inner = append(inner, fqdn...)
	inner = append(inner, 0, 0)
	inner = binary.BigEndian.AppendUint16(inner, uint16(8+len(auth)))
	inner = append(inner, 2, 0, 0, 0)
	inner = append(inner, auth...)

	tr := sk.Transform()
	buf := make([]byte, 28+4+tr.Overhead(len(inner))+len(inner))
	binary.BigEndian.PutUint64(buf, spiI)
	binary.BigEndian.PutUint64(buf[8:], spiR)
	buf[16], buf[17], buf[18], buf[19] = 46, 0x20, 35, flags
	binary.BigEndian.PutUint32(buf[20:], 1)
	buf[28] = idType
	copy(buf[28+4+tr.IVLen():], inner)
	m, err := sk.Seal(buf, 28, len(inner))
	if err != nil {
		t.Fatal(err)
	}
	return buf[:m]
}

type tsFrame struct {
	data                   []byte
	wantPayloads, wantFQDN string // IKE
	wantBadICV             bool
	wantESP                bool
	espSPI                 uint32
}

func TestTsharkDecryptsOurs(t *testing.T) {
	tshark := testenv.RequireTool(t, "tshark")
	var frames []tsFrame
	var ikeTable, espTable []byte

	var ikeTransforms []ikecrypto.Transform
	controlled := map[bool]bool{} // a tampered control for AEAD and for CBC
	for _, tr := range allTransforms() {
		if tr.Encryption != ikecrypto.EncrChaCha20Poly1305 { // no name in Wireshark's IKEv2 table
			ikeTransforms = append(ikeTransforms, tr)
		}
	}
	for i, tr := range ikeTransforms {
		suite := ikecrypto.Suite{Transform: tr, PRF: ikecrypto.PRFHMACSHA2256}
		spiI, spiR := 0x1000000000000000+uint64(i), 0x2000000000000000+uint64(i)
		ni, nr := rep(byte(i), 32), rep(byte(0x80+i), 32)
		seed, _ := ikecrypto.SKEYSEED(suite.PRF, ni, nr, rep(0x33, 32))
		keys, err := ikecrypto.DeriveIKEKeys(suite, seed, ni, nr, spiI, spiR)
		if err != nil {
			t.Fatal(err)
		}
		l := ikecrypto.NewIKEKeyLog(spiI, spiR, tr, keys)
		if ikeTable, err = l.AppendWireshark(ikeTable); err != nil {
			t.Fatal(err)
		}
		iSK, _ := ikecrypto.NewSK(tr, keys.SKei, keys.SKai)
		rSK, _ := ikecrypto.NewSK(tr, keys.SKer, keys.SKar)
		authI, _ := ikecrypto.PSKAuth(suite.PRF, []byte("psk"), []byte("IKE_SA_INIT request"), nr, keys.SKpi, []byte("id"))
		authR, _ := ikecrypto.PSKAuth(suite.PRF, []byte("psk"), []byte("IKE_SA_INIT response"), ni, keys.SKpr, []byte("id"))
		fqdnI, fqdnR := fmt.Sprintf("spoke%d.example", i), fmt.Sprintf("hub%d.example", i)
		req := ikeAuth(t, iSK, spiI, spiR, false, fqdnI, authI)
		resp := ikeAuth(t, rSK, spiI, spiR, true, fqdnR, authR)
		frames = append(frames,
			tsFrame{data: ipv4UDP(tsInit, tsResp, 500, 500, req), wantPayloads: "46,35,39", wantFQDN: fqdnI},
			tsFrame{data: ipv4UDP(tsResp, tsInit, 500, 500, resp), wantPayloads: "46,36,39", wantFQDN: fqdnR})
		if !controlled[tr.AEAD()] {
			controlled[tr.AEAD()] = true
			// Controls: one ICV octet changed (CBC's HMAC, GCM's tag).
			bad := bytes.Clone(req)
			bad[len(bad)-1] ^= 1
			frames = append(frames, tsFrame{data: ipv4UDP(tsInit, tsResp, 500, 500, bad), wantBadICV: true})
		}

		// The first Child SA of this IKE SA, with an ESP transform that
		// Wireshark 4.0 can check (not ChaCha20-Poly1305).
		et := esp.Transforms()[i%len(esp.Transforms())]
		if et.Encryption == esp.EncrChaCha20Poly1305 {
			et = esp.GCM128
		}
		ck, err := ikecrypto.ChildKeymat(suite.PRF, keys.SKd, nil, ni, nr, et.EncKeyLen(), et.IntegKeyLen())
		if err != nil {
			t.Fatal(err)
		}
		ours := ikecrypto.Transform{Encryption: ikecrypto.Encryption(et.Encryption), KeyBits: et.KeyBits, Integrity: ikecrypto.Integrity(et.Integrity)}
		for dir, c := range []struct {
			src, dst   netip.Addr
			spi        uint32
			enc, integ []byte
		}{
			{tsInit, tsResp, 0xc0000000 + uint32(i), ck.InitEnc, ck.InitInteg}, // the responder's SPI
			{tsResp, tsInit, 0xd0000000 + uint32(i), ck.RespEnc, ck.RespInteg}, // the initiator's SPI
		} {
			el := ikecrypto.ESPKeyLog{Src: c.src, Dst: c.dst, SPI: c.spi, Transform: ours, EncKey: c.enc, IntegKey: c.integ}
			if espTable, err = el.AppendWireshark(espTable); err != nil {
				t.Fatal(err)
			}
			sa, err := esp.NewOutbound(esp.Config{SPI: c.spi, Transform: et, EncKey: c.enc, IntegKey: c.integ})
			if err != nil {
				t.Fatal(err)
			}
			// Tunnel mode: an inner ICMP echo, so tshark shows a second IP.
			inner := ipv4(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1,
				[]byte{8, 0, 0xf7, 0xfe - byte(dir), 0, 1, 0, byte(dir)})
			buf := make([]byte, esp.MaxHeaderLen+len(inner)+esp.MaxTrailerLen)
			copy(buf[esp.MaxHeaderLen:], inner)
			start, n, err := sa.Seal(buf, esp.MaxHeaderLen, len(inner), esp.NextHeaderIPv4)
			if err != nil {
				t.Fatal(err)
			}
			frames = append(frames, tsFrame{data: ipv4(c.src, c.dst, esp.IPProto, buf[start:start+n]), wantESP: true, espSPI: c.spi})
		}
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "wireshark")
	if err := os.MkdirAll(cfg, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"ikev2_decryption_table": ikeTable,
		"esp_sa":                 espTable,
		"preferences":            []byte("esp.enable_encryption_decode: TRUE\nesp.enable_authentication_check: TRUE\n"),
	} {
		if err := os.WriteFile(filepath.Join(cfg, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pcap := filepath.Join(dir, "ours.pcap")
	f, err := os.Create(pcap)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 0)
	for i, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(fr.data), Length: len(fr.data)}
		if err := w.WritePacket(ci, fr.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), tsharkTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tshark, "-n", "-r", pcap, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "frame.number", "-e", "isakmp.typepayload", "-e", "isakmp.id.data.fqdn", "-e", "_ws.expert.message",
		"-e", "esp.spi", "-e", "esp.icv_good", "-e", "ip.dst", "-e", "icmp.type")
	cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+cfg, "HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "esp_sa") || strings.Contains(stderr.String(), "ikev2_decryption_table") {
		t.Fatalf("tshark refused a key table:\n%s", stderr.String())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(frames) {
		t.Fatalf("tshark printed %d frames, we wrote %d:\n%s", len(lines), len(frames), out)
	}
	var ike, espN, controls int
	for i, line := range lines {
		f := strings.Split(line, "\t")
		for len(f) < 8 {
			f = append(f, "")
		}
		fr := frames[i]
		switch {
		case fr.wantBadICV:
			controls++
			if !strings.Contains(f[3], "Integrity Checksum Data is incorrect") {
				t.Errorf("frame %d (tampered control): tshark did not flag the ICV: %q", i+1, line)
			}
		case fr.wantESP:
			espN++
			spi := fmt.Sprintf("0x%08x", fr.espSPI)
			if !strings.Contains(f[4], spi) || f[5] != "1" || !strings.Contains(f[6], "10.0.0.2") || f[7] != "8" {
				t.Errorf("frame %d (ESP SPI %s): spi %q icv_good %q ip.dst %q icmp %q", i+1, spi, f[4], f[5], f[6], f[7])
			}
		default:
			ike++
			if f[1] != fr.wantPayloads || f[2] != fr.wantFQDN || f[3] != "" {
				t.Errorf("frame %d: payloads %q fqdn %q expert %q; want %q %q and no warning", i+1, f[1], f[2], f[3], fr.wantPayloads, fr.wantFQDN)
			}
		}
	}
	t.Logf("tshark decrypted %d IKE messages (%d transforms), %d ESP packets, flagged %d tampered controls", ike, len(ikeTransforms), espN, controls)
}
