package ikecrypto_test

// Conformance against real captures kept outside the repo in
// <repo>/../shared/captures (see INDEX.md there):
//
//   - tcpdump's ikev2pI2.pcap (Openswan, IKE_SA_INIT + IKE_AUTH) with its
//     secrets file tcpdump_ikev2pI2-secrets.txt, which gives SK_ei/SK_ai and
//     SK_er/SK_ar (AES-CBC-128, HMAC-SHA1-96). The IKE_AUTH request opens with
//     those keys except for its ICV: the capture's ICV was not made with the
//     SK_ai of the file (tcpdump never checks it; Wireshark 4.0.17, given the
//     same keys, decrypts the payload and reports the ICV "incorrect, should
//     be 579ae74ad294a105b0b6f1c4"). So: our Open refuses it with
//     ErrIntegrity; our HMAC over the message is exactly the ICV Wireshark
//     computes; with that ICV in place the message opens and holds IDi
//     (FQDN "west") and AUTH, as tcpdump's expected output shows.
//   - nDPI's esp.pcapng (Cisco IOS FlexVPN, no NAT between the peers): the
//     NAT_DETECTION_*_IP notifications of both IKE_SA_INIT messages are our
//     NATDetectionHash of the addresses and ports in the packets.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
	"github.com/dmvpn/dmvpn/internal/capturetest"
)

// udpDatagram is one UDP datagram of a capture.
type udpDatagram struct {
	frame            int
	src, dst         netip.Addr
	srcPort, dstPort uint16
	payload          []byte
}

func readUDP(t *testing.T, path string) []udpDatagram {
	t.Helper()
	frames, err := capturetest.ReadFrames(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []udpDatagram
	for _, f := range frames {
		ip, err := capturetest.LinkToIPv4(f.Link, f.Data)
		if err != nil || len(ip) < 20 || ip[9] != 17 {
			continue
		}
		ihl := int(ip[0]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if ihl < 20 || tot > len(ip) || tot < ihl+8 {
			continue
		}
		udp := ip[ihl:tot]
		out = append(out, udpDatagram{
			frame: f.Num, src: netip.AddrFrom4([4]byte(ip[12:16])), dst: netip.AddrFrom4([4]byte(ip[16:20])),
			srcPort: binary.BigEndian.Uint16(udp), dstPort: binary.BigEndian.Uint16(udp[2:]), payload: udp[8:],
		})
	}
	return out
}

// payload is one payload of an IKE message's chain, walked with every
// length checked (test-side; the codec is package ikev2's).
type payload struct {
	typ  byte
	body []byte
}

func walkPayloads(t *testing.T, first byte, b []byte) []payload {
	t.Helper()
	var out []payload
	for next := first; next != 0; {
		if len(b) < 4 || len(out) > 64 {
			t.Fatalf("payload chain runs off the end at payload %d (type %d)", len(out), next)
		}
		l := int(binary.BigEndian.Uint16(b[2:]))
		if l < 4 || l > len(b) {
			t.Fatalf("payload type %d: length %d of %d", next, l, len(b))
		}
		out = append(out, payload{next, b[4:l]})
		if next == 46 { // SK: the rest is encrypted
			return out
		}
		next, b = b[0], b[l:]
	}
	if len(b) != 0 {
		t.Fatalf("%d octets after the last payload", len(b))
	}
	return out
}

func TestConformanceIKEv2pI2(t *testing.T) {
	dir := capturetest.Dir(t)
	secrets, err := os.ReadFile(filepath.Join(dir, "tcpdump_ikev2pI2-secrets.txt"))
	if err != nil {
		t.Fatal(err)
	}
	logs, err := ikecrypto.ParseTcpdumpIKE(bytes.NewReader(secrets))
	if err != nil || len(logs) != 1 {
		t.Fatalf("secrets file: %d SAs, %v", len(logs), err)
	}
	l := logs[0]
	wantT := ikecrypto.Transform{Encryption: ikecrypto.EncrAESCBC, KeyBits: 128, Integrity: ikecrypto.IntegHMACSHA1_96}
	if l.SPIi != 0x0001020304050607 || l.SPIr != 0xc02e7a3031a03188 || l.Transform != wantT {
		t.Fatalf("secrets: %016x/%016x %v", l.SPIi, l.SPIr, l.Transform)
	}
	// The file's lines come back exactly from what was parsed.
	again, err := l.AppendTcpdump(nil)
	if err != nil {
		t.Fatal(err)
	}
	var fileLines []string
	for _, s := range strings.Split(string(secrets), "\n") {
		if strings.HasPrefix(s, "ikev2 ") {
			fileLines = append(fileLines, s)
		}
	}
	if string(again) != strings.Join(fileLines, "\n")+"\n" {
		t.Errorf("round trip:\n%s\nfile:\n%s", again, strings.Join(fileLines, "\n"))
	}

	var msg []byte
	for _, d := range readUDP(t, filepath.Join(dir, "tcpdump_ikev2pI2.pcap")) {
		if d.frame == 2 {
			msg = bytes.Clone(d.payload)
		}
	}
	if len(msg) != 284 || msg[16] != 46 || msg[18] != 35 {
		t.Fatalf("frame 2 is not the 284-octet IKE_AUTH with an SK payload: %d octets", len(msg))
	}
	if binary.BigEndian.Uint64(msg) != l.SPIi || binary.BigEndian.Uint64(msg[8:]) != l.SPIr {
		t.Fatal("frame 2's SPIs are not the secrets file's")
	}

	sk, err := ikecrypto.NewSK(l.Transform, l.SKei, l.SKai)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sk.Open(bytes.Clone(msg), ikecrypto.IKEHeaderLen); !errors.Is(err, ikecrypto.ErrIntegrity) {
		t.Fatalf("the capture's own ICV: %v, want ErrIntegrity", err)
	}
	wireshark := unhex(t, "579ae74ad294a105b0b6f1c4")
	icvOff := len(msg) - l.Transform.ICVLen()
	if got := sk.ICV(msg[:icvOff]); !bytes.Equal(got, wireshark) {
		t.Fatalf("HMAC-SHA1-96 from the IKE header through the ciphertext = %x, Wireshark's %x", got, wireshark)
	}
	copy(msg[icvOff:], wireshark)
	off, n, err := sk.Open(msg, ikecrypto.IKEHeaderLen)
	if err != nil {
		t.Fatalf("Open with Wireshark's ICV: %v", err)
	}
	ps := walkPayloads(t, msg[ikecrypto.IKEHeaderLen], msg[off:off+n])
	if len(ps) != 2 || ps[0].typ != 35 || ps[1].typ != 39 {
		t.Fatalf("inner payloads %v, want IDi then AUTH", ps)
	}
	// tcpdump's expected output: v2IDi 0200000077657374 fqdn:west; v2auth
	// method rsasig with 192 octets of zeros.
	if !bytes.Equal(ps[0].body, unhex(t, "0200000077657374")) {
		t.Errorf("IDi %x", ps[0].body)
	}
	if a := ps[1].body; len(a) != 196 || a[0] != 1 || !bytes.Equal(a[4:], make([]byte, 192)) {
		t.Errorf("AUTH of %d octets, method %d", len(a), a[0])
	}
	if pad := 224 - 1 - n; pad != 11 {
		t.Errorf("padding %d, Wireshark shows 11", pad)
	}
}

func TestConformanceNATDetection(t *testing.T) {
	dir := capturetest.Dir(t)
	checked := 0
	for _, d := range readUDP(t, filepath.Join(dir, "ndpi_esp_ikev2.pcapng")) {
		m := d.payload
		if len(m) < 28 || m[18] != 34 { // IKE_SA_INIT only: the rest is encrypted
			continue
		}
		spiI, spiR := binary.BigEndian.Uint64(m), binary.BigEndian.Uint64(m[8:])
		for _, p := range walkPayloads(t, m[16], m[28:]) {
			if p.typ != 41 || len(p.body) < 4 {
				continue
			}
			typ, data := binary.BigEndian.Uint16(p.body[2:]), p.body[4+int(p.body[1]):]
			var want [20]byte
			switch typ {
			case 16388: // NAT_DETECTION_SOURCE_IP
				want = ikecrypto.NATDetectionHash(spiI, spiR, d.src, d.srcPort)
			case 16389: // NAT_DETECTION_DESTINATION_IP
				want = ikecrypto.NATDetectionHash(spiI, spiR, d.dst, d.dstPort)
			default:
				continue
			}
			if !bytes.Equal(data, want[:]) {
				t.Errorf("frame %d notify %d: %x, we compute %x", d.frame, typ, data, want)
			}
			checked++
		}
	}
	if checked != 4 {
		t.Errorf("checked %d NAT detection notifications, want 4 (two per IKE_SA_INIT)", checked)
	}
}
