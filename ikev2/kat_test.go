package ikev2_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dmvpn/dmvpn/ikev2"
)

// katSAInit is an IKE_SA_INIT request written out by hand from RFC 7296
// §3.1-§3.10, octet by octet, not produced by this codec: one IKE proposal
// (AES-CBC-256, HMAC-SHA2-256 PRF, HMAC-SHA2-256-128, group 19), a KE of
// group 19 whose public value starts with a zero octet, a 32-octet nonce and
// the two NAT detection notifications.
var katSAInit = strings.Join([]string{
	// IKE header: SPIi, SPIr 0, next SA (33), version 2.0, IKE_SA_INIT
	// (34), flags I, message ID 0, length 240.
	"0102030405060708", "0000000000000000", "21", "20", "22", "08", "00000000", "000000f0",
	// SA: next KE (34), length 48.
	"22 00 0030",
	//   proposal: last, length 44, #1, IKE, SPI size 0, 4 transforms
	"00 00 002c 01 01 00 04",
	//   ENCR (1) AES-CBC (12), Key Length (TV, 14) 256
	"03 00 000c 01 00 000c 800e 0100",
	//   PRF (2) HMAC-SHA2-256 (5)
	"03 00 0008 02 00 0005",
	//   INTEG (3) HMAC-SHA2-256-128 (12)
	"03 00 0008 03 00 000c",
	//   D-H (4) group 19, last
	"00 00 0008 04 00 0013",
	// KE: next Nonce (40), length 72, group 19, reserved, 64 octets.
	"28 00 0048 0013 0000",
	"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
	"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
	// Nonce: next Notify (41), length 36, 32 octets.
	"29 00 0024", "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
	// Notify: next Notify, length 28, no protocol, no SPI,
	// NAT_DETECTION_SOURCE_IP (16388), 20 octets.
	"29 00 001c 00 00 4004", "1111111111111111111111111111111111111111",
	// Notify: last, length 28, NAT_DETECTION_DESTINATION_IP (16389).
	"00 00 001c 00 00 4005", "2222222222222222222222222222222222222222",
}, "")

func katBytes(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func katRepeat(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func katSeq(from, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(from + i)
	}
	return b
}

// katSA is the SA payload of katSAInit as a value.
func katSA() *ikev2.SA {
	return &ikev2.SA{Proposals: []ikev2.Proposal{{
		Number:   1,
		Protocol: ikev2.ProtocolIKE,
		Transforms: []ikev2.Transform{
			{Type: ikev2.TransformENCR, ID: uint16(ikev2.EncrAESCBC), Attributes: []ikev2.Attribute{ikev2.KeyLength(256)}},
			{Type: ikev2.TransformPRF, ID: uint16(ikev2.PRFHMACSHA2256)},
			{Type: ikev2.TransformINTEG, ID: uint16(ikev2.IntegHMACSHA2256128)},
			{Type: ikev2.TransformDH, ID: uint16(ikev2.DHECP256)},
		},
	}}}
}

func katHeader() ikev2.Header {
	return ikev2.Header{
		InitiatorSPI: 0x0102030405060708,
		Exchange:     ikev2.ExchangeIKESAInit,
		Flags:        ikev2.FlagInitiator,
	}
}

// katBuild builds katSAInit with the Builder into dst.
func katBuild(dst []byte) ([]byte, error) {
	h := katHeader()
	b := ikev2.NewMessage(dst, &h)
	b.SA(katSA())
	b.KE(&ikev2.KE{Group: ikev2.DHECP256, Data: katSeq(0, 64)})
	b.Nonce(katSeq(0xa0, 32))
	b.Notify(&ikev2.Notify{Type: ikev2.NotifyNATDetectionSourceIP, Data: katRepeat(0x11, 20)})
	b.Notify(&ikev2.Notify{Type: ikev2.NotifyNATDetectionDestinationIP, Data: katRepeat(0x22, 20)})
	return b.Finish()
}

var katCmp = []cmp.Option{cmpopts.IgnoreUnexported(ikev2.SA{}), cmpopts.EquateEmpty()}

func TestKnownAnswerIKESAInit(t *testing.T) {
	wire := katBytes(t, katSAInit)
	if len(wire) != 240 {
		t.Fatalf("test bug: the vector is %d octets, its header says 240", len(wire))
	}

	var m ikev2.Message
	if err := m.Decode(wire); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := katHeader()
	want.NextPayload, want.Length = ikev2.PayloadSA, 240
	if m.Header != want {
		t.Errorf("header %+v, want %+v", m.Header, want)
	}
	if m.Header.IsResponse() || !m.Header.IsInitiator() {
		t.Errorf("flags %v: want an initiator's request", m.Header.Flags)
	}
	if !bytes.Equal(m.Raw, wire) || &m.Raw[0] != &wire[0] {
		t.Errorf("Raw is not the datagram itself")
	}
	type at struct {
		typ ikev2.PayloadType
		off int
		n   int
	}
	var got []at
	for _, p := range m.Payloads {
		got = append(got, at{p.Type, p.Offset, p.Len()})
	}
	wantAt := []at{{ikev2.PayloadSA, 28, 48}, {ikev2.PayloadKE, 76, 72}, {ikev2.PayloadNonce, 148, 36}, {ikev2.PayloadNotify, 184, 28}, {ikev2.PayloadNotify, 212, 28}}
	if d := cmp.Diff(wantAt, got, cmp.AllowUnexported(at{})); d != "" {
		t.Errorf("payloads (-want +got):\n%s", d)
	}

	var sa ikev2.SA
	if err := m.Payloads[0].SA(&sa); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(katSA(), &sa, katCmp...); d != "" {
		t.Errorf("SA (-want +got):\n%s", d)
	}
	enc, _ := sa.Proposals[0].Transform(ikev2.TransformENCR)
	if bits, ok := enc.KeyLength(); !ok || bits != 256 || enc.String() != "ENCR_AES_CBC/256" {
		t.Errorf("ENCR transform %v: key length %d, %v", enc, bits, ok)
	}
	ke, err := m.Payloads[1].KE()
	if err != nil || ke.Group != ikev2.DHECP256 || !bytes.Equal(ke.Data, katSeq(0, 64)) {
		t.Errorf("KE %v %x, %v: want group 19 and 64 octets from 0x00 (the leading zero kept)", ke.Group, ke.Data, err)
	}
	nonce, err := m.Payloads[2].Nonce()
	if err != nil || !bytes.Equal(nonce, katSeq(0xa0, 32)) {
		t.Errorf("Nonce %x, %v", nonce, err)
	}
	src, ok := ikev2.FindNotify(m.Payloads, ikev2.NotifyNATDetectionSourceIP)
	if !ok || !bytes.Equal(src.Data, katRepeat(0x11, 20)) || len(src.SPI) != 0 {
		t.Errorf("NAT_DETECTION_SOURCE_IP %+v, %v", src, ok)
	}
	dst, ok := ikev2.FindNotify(m.Payloads, ikev2.NotifyNATDetectionDestinationIP)
	if !ok || !bytes.Equal(dst.Data, katRepeat(0x22, 20)) {
		t.Errorf("NAT_DETECTION_DESTINATION_IP %+v, %v", dst, ok)
	}
	if _, ok := ikev2.FindNotify(m.Payloads, ikev2.NotifyCookie); ok {
		t.Errorf("a COOKIE found in a message without one")
	}
	if _, ok := m.Encrypted(); ok {
		t.Errorf("Encrypted() reports an SK payload in IKE_SA_INIT")
	}

	// Encoding: the Builder writes the same octets, and so does
	// AppendMessage from the decoded payloads.
	built, err := katBuild(nil)
	if err != nil {
		t.Fatalf("Builder: %v", err)
	}
	if !bytes.Equal(built, wire) {
		t.Errorf("Builder output differs from the hand-written vector:\n got  %x\n want %x", built, wire)
	}
	re, err := ikev2.AppendMessage(nil, &m.Header, m.Payloads)
	if err != nil || !bytes.Equal(re, wire) {
		t.Errorf("AppendMessage = %x, %v; want the vector", re, err)
	}

	// Behind the non-ESP marker on port 4500.
	natt, err := katBuild(ikev2.AppendNonESPMarker(nil))
	if err != nil {
		t.Fatal(err)
	}
	msg, ok := ikev2.FromNATT(natt)
	if !ok || !bytes.Equal(msg, wire) {
		t.Errorf("FromNATT(marker ‖ message) = %x, %v", msg, ok)
	}
	for _, b := range [][]byte{{0xff}, {0, 0, 0, 1, 0, 0, 0, 1}, {0, 0}} {
		if _, ok := ikev2.FromNATT(b); ok {
			t.Errorf("FromNATT(%x): ESP, keepalive or runt taken for IKE", b)
		}
	}
}
