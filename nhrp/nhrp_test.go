package nhrp_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dmvpn/dmvpn/nhrp"
)

var cmpPacket = []cmp.Option{
	cmpopts.IgnoreUnexported(nhrp.Packet{}),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmpopts.EquateEmpty(),
	// Decode fills in what Encode computes; callers of Encode leave them 0.
	cmpopts.IgnoreFields(nhrp.Packet{}, "PacketSize", "Checksum", "ExtensionOffset"),
}

// withDefaults returns a copy of p with the fixed-header fields Encode
// derives when they are zero (afn from the NBMA address, protocol type from
// the protocol addresses, version 1).
func withDefaults(p *nhrp.Packet) *nhrp.Packet {
	q := *p
	if q.AddressFamily == 0 {
		q.AddressFamily = nhrp.AFNIPv4
		if q.SrcNBMA.Is6() {
			q.AddressFamily = nhrp.AFNIPv6
		}
	}
	if q.ProtocolType == 0 {
		q.ProtocolType = nhrp.ProtoIPv4
		if q.SrcProto.Is6() {
			q.ProtocolType = nhrp.ProtoIPv6
		}
	}
	if q.Version == 0 {
		q.Version = 1
	}
	return &q
}

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

func mustAuth(t testing.TB, secret string) nhrp.Extension {
	e, err := nhrp.NewCiscoAuthentication([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// registrationRequest is what a Cisco spoke sends its hub.
func registrationRequest(t testing.TB) *nhrp.Packet {
	auth := mustAuth(t, "NHRPAUTH")
	nat := nhrp.NewNATAddress(nhrp.CIE{PrefixLength: 32, MTU: 17912, NBMA: a("169.254.100.5"), Protocol: a("155.1.0.5")})
	return &nhrp.Packet{
		HopCount:   255,
		Type:       nhrp.TypeRegistrationRequest,
		Flags:      nhrp.FlagRegistrationU | nhrp.FlagCiscoNAT,
		RequestID:  1,
		SrcNBMA:    a("169.254.100.1"),
		SrcProto:   a("155.1.0.1"),
		DstProto:   a("155.1.0.5"),
		CIEs:       []nhrp.CIE{{PrefixLength: 32, MTU: 17912, HoldingTime: 7200}},
		Extensions: nhrp.StandardRequestExtensions(nil, &auth, &nat),
	}
}

// every builds one packet of every type with every extension, IPv4 and IPv6.
func every(t testing.TB) map[string]*nhrp.Packet {
	cie := func(code nhrp.CIECode, nbma, proto string) nhrp.CIE {
		c := nhrp.CIE{Code: code, PrefixLength: 24, MTU: 1400, HoldingTime: 600, Preference: 7}
		if nbma != "" {
			c.NBMA = a(nbma)
		}
		if proto != "" {
			c.Protocol = a(proto)
		}
		return c
	}
	allExt := func() []nhrp.Extension {
		return []nhrp.Extension{
			nhrp.NewCIEExtension(nhrp.ExtResponderAddress, cie(0, "192.0.2.1", "10.0.0.1")),
			nhrp.NewCIEExtension(nhrp.ExtForwardTransitNHS, cie(0, "192.0.2.1", "10.0.0.1"), cie(0, "192.0.2.2", "10.0.0.2")),
			nhrp.NewCIEExtension(nhrp.ExtReverseTransitNHS, cie(0, "192.0.2.2", "10.0.0.2")),
			mustAuth(t, "s3cret"),
			nhrp.NewAuthentication(0x1234, []byte{192, 0, 2, 9, 0xde, 0xad}),
			nhrp.NewVendorPrivate([3]byte{0x00, 0x00, 0x0c}, []byte("group-A")),
			nhrp.NewNATAddress(cie(0, "198.51.100.129", "10.0.0.13")),
			{Type: 0x1234, Data: []byte{1, 2, 3}}, // unknown, not compulsory: kept
			nhrp.NewEnd(),
		}
	}
	m := map[string]*nhrp.Packet{}
	for i, typ := range []nhrp.Type{1, 2, 3, 4, 5, 6} {
		m[typ.String()+"/v4"] = &nhrp.Packet{
			HopCount: 255, Type: typ, Flags: 0x8002, RequestID: uint32(1000 + i),
			SrcNBMA: a("198.51.100.1"), SrcProto: a("10.0.0.11"), DstProto: a("10.0.0.12"),
			CIEs:       []nhrp.CIE{cie(nhrp.CodeSuccess, "198.51.100.65", "10.0.0.12"), cie(nhrp.CodeUniqueAddressRegistered, "", "")},
			Extensions: allExt(),
		}
		m[typ.String()+"/v6"] = &nhrp.Packet{
			HopCount: 8, Type: typ, Flags: 0x1000, RequestID: uint32(2000 + i),
			SrcNBMA: a("2001:db8::1"), SrcProto: a("fd00::11"), DstProto: a("fd00::12"),
			CIEs:       []nhrp.CIE{cie(nhrp.CodeNoBindingExists, "2001:db8::2", "fd00::12")},
			Extensions: []nhrp.Extension{nhrp.NewCIEExtension(nhrp.ExtResponderAddress, cie(0, "2001:db8::2", "fd00::12")), nhrp.NewEnd()},
		}
	}
	inner, err := m["Registration Request/v4"].AppendEncode(nil)
	if err != nil {
		t.Fatal(err)
	}
	m["Error Indication"] = &nhrp.Packet{
		HopCount: 255, Type: nhrp.TypeErrorIndication, Code: uint16(nhrp.ErrUnrecognizedExtension), ErrorOffset: 52,
		SrcNBMA: a("192.0.2.1"), SrcProto: a("10.0.0.1"), DstProto: a("10.0.0.11"),
		Payload: inner, Extensions: allExt(),
	}
	m["Traffic Indication"] = &nhrp.Packet{
		HopCount: 1, Type: nhrp.TypeTrafficIndication, Code: nhrp.TrafficCodeRedirect,
		SrcNBMA: a("192.0.2.1"), SrcProto: a("10.0.0.1"), DstProto: a("10.1.1.10"),
		Payload:    bytes.Repeat([]byte{0x45}, 64),
		Extensions: []nhrp.Extension{mustAuth(t, "s3cret"), nhrp.NewNATAddress(), nhrp.NewEnd()},
	}
	return m
}

func TestRoundTripEveryTypeAndExtension(t *testing.T) {
	for name, p := range every(t) {
		t.Run(name, func(t *testing.T) {
			b, err := p.AppendEncode(nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != p.Len() {
				t.Fatalf("encoded %d bytes, Len says %d", len(b), p.Len())
			}
			var got nhrp.Packet
			if err := got.Decode(b); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if d := cmp.Diff(withDefaults(p), &got, cmpPacket...); d != "" {
				t.Fatalf("round trip (-sent +decoded):\n%s", d)
			}
			if int(got.PacketSize) != len(b) {
				t.Errorf("packet size %d, want %d", got.PacketSize, len(b))
			}
			again, _ := got.AppendEncode(nil)
			if !bytes.Equal(again, b) {
				t.Fatalf("re-encode differs:\n%x\n%x", again, b)
			}
		})
	}
}

// TestKnownAnswer checks byte layouts written by hand from RFC 2332 §5.1,
// §5.2.0.1 and §5.3, and draft-detienne-dmvpn-01 §4 for type 8.
func TestKnownAnswer(t *testing.T) {
	hexb := func(s string) []byte {
		b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		p    *nhrp.Packet
		want []byte // checksum bytes (12-13) are checked separately
	}{{
		name: "registration request, one CIE, no extensions",
		p: &nhrp.Packet{
			HopCount: 255, Type: nhrp.TypeRegistrationRequest, Flags: nhrp.FlagRegistrationU, RequestID: 7,
			SrcNBMA: a("198.51.100.1"), SrcProto: a("10.0.0.11"), DstProto: a("10.0.0.1"),
			CIEs: []nhrp.CIE{{PrefixLength: 32, MTU: 1400, HoldingTime: 600}},
		},
		want: hexb(`
			0001 0800 0000000000 ff 0034 0000 0000 01 03 04 00
			04 04 8000 00000007 c6336401 0a00000b 0a000001
			00 20 0000 0578 0258 00 00 00 00`),
	}, {
		name: "traffic indication with end extension",
		p: &nhrp.Packet{
			HopCount: 1, Type: nhrp.TypeTrafficIndication, Code: 0,
			SrcNBMA: a("192.0.2.1"), SrcProto: a("10.0.0.1"), DstProto: a("10.0.0.11"),
			Payload:    []byte{0x45, 0x00, 0x00, 0x04},
			Extensions: []nhrp.Extension{nhrp.NewEnd()},
		},
		want: hexb(`
			0001 0800 0000000000 01 0030 0000 002c 01 08 04 00
			04 04 0000 0000 0000 c0000201 0a000001 0a00000b
			45000004
			8000 0000`),
	}, {
		name: "error indication code 11 offset 40",
		p: &nhrp.Packet{
			HopCount: 255, Type: nhrp.TypeErrorIndication, Code: uint16(nhrp.ErrAuthenticationFailure), ErrorOffset: 40,
			SrcNBMA: a("192.0.2.1"), SrcProto: a("10.0.0.1"), DstProto: a("10.0.0.11"),
			Payload: []byte{1, 2},
		},
		want: hexb(`
			0001 0800 0000000000 ff 002a 0000 0000 01 07 04 00
			04 04 0000 000b 0028 c0000201 0a000001 0a00000b
			0102`),
	}, {
		name: "cisco auth and NAT extension",
		p: &nhrp.Packet{
			HopCount: 255, Type: nhrp.TypePurgeRequest, Flags: nhrp.FlagPurgeN, RequestID: 1,
			SrcNBMA: a("192.0.2.1"), SrcProto: a("10.0.0.1"), DstProto: a("10.0.0.11"),
			Extensions: []nhrp.Extension{mustAuth(t, "ab"), nhrp.NewNATAddress(), nhrp.NewEnd()},
		},
		want: hexb(`
			0001 0800 0000000000 ff 003a 0000 0028 01 05 04 00
			04 04 8000 00000001 c0000201 0a000001 0a00000b
			8007 0006 00000001 6162
			0009 0000
			8000 0000`),
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.AppendEncode(nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("length %d, want %d\n got %x\nwant %x", len(got), len(tc.want), got, tc.want)
			}
			// The checksum must make the one's-complement sum zero.
			var sum uint32
			for i := 0; i+1 < len(got); i += 2 {
				sum += uint32(got[i])<<8 | uint32(got[i+1])
			}
			if len(got)%2 == 1 {
				sum += uint32(got[len(got)-1]) << 8
			}
			for sum > 0xffff {
				sum = sum>>16 + sum&0xffff
			}
			if sum != 0xffff {
				t.Errorf("checksum 0x%02x%02x does not verify", got[12], got[13])
			}
			got[12], got[13] = 0, 0
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("\n got %x\nwant %x", got, tc.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := registrationRequest(t).AppendEncode(nil)
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte {
		b := f(append([]byte(nil), good...))
		return b
	}
	// refix recomputes the checksum after a mutation, so the test reaches
	// the check it aims at.
	refix := func(b []byte) []byte {
		b[12], b[13] = 0, 0
		var sum uint32
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		c := ^uint16(sum)
		b[12], b[13] = byte(c>>8), byte(c)
		return b
	}
	tests := []struct {
		name   string
		in     []byte
		cause  error
		code   nhrp.ErrorCode
		offset int
	}{
		{"empty", nil, nhrp.ErrTruncated, 0, 0},
		{"short fixed header", good[:19], nhrp.ErrTruncated, 0, 0},
		{"packet size past input", good[:len(good)-1], nhrp.ErrTruncated, 0, 10},
		{"bad checksum", mut(func(b []byte) []byte { b[30] ^= 1; return b }), nhrp.ErrBadChecksum, 0, 12},
		{"version 2", mut(func(b []byte) []byte { b[16] = 2; return refix(b) }), nhrp.ErrBadVersion, nhrp.ErrProtocolError, 16},
		{"type 0", mut(func(b []byte) []byte { b[17] = 0; return refix(b) }), nhrp.ErrUnknownType, nhrp.ErrProtocolError, 17},
		{"E.164 NBMA", mut(func(b []byte) []byte { b[18] |= 0x40; return refix(b) }), nhrp.ErrBadAddress, nhrp.ErrProtocolError, 18},
		{"address length 5", mut(func(b []byte) []byte { b[20] = 5; return refix(b) }), nhrp.ErrBadAddress, nhrp.ErrProtocolError, 32},
		{"extension offset inside addresses", mut(func(b []byte) []byte { b[15] = 30; return refix(b) }), nhrp.ErrBadExtensionOffset, nhrp.ErrProtocolError, 14},
		{"CIE overruns mandatory part", mut(func(b []byte) []byte { b[15] -= 2; return refix(b) }), nhrp.ErrBadCIE, nhrp.ErrProtocolError, 40},
		{"extension length overrun", mut(func(b []byte) []byte { b[55] = 0xff; return refix(b) }), nhrp.ErrBadExtension, nhrp.ErrInvalidExtension, 54},
		{"unknown compulsory extension", mut(func(b []byte) []byte { b[52], b[53] = 0xbf, 0xff; return refix(b) }), nhrp.ErrUnrecognizedCompulsory, nhrp.ErrUnrecognizedExtension, 52},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p nhrp.Packet
			err := p.Decode(tc.in)
			var de *nhrp.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v, want a *DecodeError", err)
			}
			if !errors.Is(err, tc.cause) || de.Code != tc.code || de.Offset != tc.offset {
				t.Fatalf("got %v (code %d offset %d), want cause %v code %d offset %d", err, de.Code, de.Offset, tc.cause, tc.code, tc.offset)
			}
		})
	}
}

func TestUnknownCompulsoryExtensionStillDecodes(t *testing.T) {
	p := registrationRequest(t)
	p.Extensions = append([]nhrp.Extension{{Compulsory: true, Type: 0x3801, Data: []byte("x")}}, p.Extensions...)
	b, _ := p.AppendEncode(nil)
	var got nhrp.Packet
	err := got.Decode(b)
	var de *nhrp.DecodeError
	if !errors.As(err, &de) || de.Code != nhrp.ErrUnrecognizedExtension {
		t.Fatalf("got %v, want unrecognized extension", err)
	}
	if d := cmp.Diff(withDefaults(p), &got, cmpPacket...); d != "" {
		t.Fatalf("packet with unknown extension not fully decoded:\n%s", d)
	}
}

func TestAuthentication(t *testing.T) {
	e := mustAuth(t, "NHRPAUTH")
	au, err := e.Authentication()
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := au.CiscoSecret(); !ok || string(s) != "NHRPAUTH" {
		t.Fatalf("secret %q %v", s, ok)
	}
	if _, err := nhrp.NewCiscoAuthentication([]byte("123456789")); !errors.Is(err, nhrp.ErrAuthTooLong) {
		t.Fatalf("9-byte secret: %v", err)
	}
	rfc := nhrp.NewAuthentication(0x55, []byte{1, 2, 3, 4, 9})
	au, _ = rfc.Authentication()
	if _, ok := au.CiscoSecret(); ok || au.SPI != 0x55 {
		t.Fatalf("RFC form read as %+v", au)
	}
	vp := nhrp.NewVendorPrivate([3]byte{0, 0, 0x0c}, []byte("x"))
	if oui, data, err := vp.VendorPrivate(); err != nil || oui != [3]byte{0, 0, 0x0c} || string(data) != "x" {
		t.Fatalf("vendor private: %v %v %q", err, oui, data)
	}
}

func TestPaddingAfterPacketIgnored(t *testing.T) {
	b, _ := registrationRequest(t).AppendEncode(nil)
	padded := append(append([]byte(nil), b...), 0, 0, 0, 0)
	var p nhrp.Packet
	if err := p.Decode(padded); err != nil {
		t.Fatal(err)
	}
	if int(p.PacketSize) != len(b) {
		t.Fatalf("size %d", p.PacketSize)
	}
}

func TestEncodeBufferTooSmall(t *testing.T) {
	p := registrationRequest(t)
	buf := make([]byte, p.Len()-1)
	if _, err := p.Encode(buf); !errors.Is(err, nhrp.ErrBufferTooSmall) {
		t.Fatalf("got %v", err)
	}
}

func BenchmarkEncodeRegistrationRequest(b *testing.B) {
	p := registrationRequest(b)
	buf := make([]byte, 1500)
	b.ReportAllocs()
	b.SetBytes(int64(p.Len()))
	for b.Loop() {
		if _, err := p.Encode(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRegistrationRequest(b *testing.B) {
	raw, err := registrationRequest(b).AppendEncode(nil)
	if err != nil {
		b.Fatal(err)
	}
	var p nhrp.Packet
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := p.Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}
