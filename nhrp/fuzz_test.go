package nhrp_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/nhrp"
)

// fzCmpOpts compares decoded packets: Decode reports the size, checksum and
// extension offset it read, which Encode computes afresh (bytes after End of
// Extensions, for one, are not re-emitted), so those three are left out.
var fzCmpOpts = []cmp.Option{
	cmpopts.IgnoreUnexported(nhrp.Packet{}),
	cmpopts.EquateComparable(netip.Addr{}),
	cmpopts.EquateEmpty(),
	cmpopts.IgnoreFields(nhrp.Packet{}, "PacketSize", "Checksum", "ExtensionOffset"),
}

func fzAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func fzEncode(f *testing.F, p *nhrp.Packet) []byte {
	f.Helper()
	b, err := p.AppendEncode(nil)
	if err != nil {
		f.Fatalf("encoding seed %v: %v", p.Type, err)
	}
	return b
}

// fzSeedPackets builds one packet of each interesting shape with the codec.
func fzSeedPackets(f *testing.F) [][]byte {
	auth, err := nhrp.NewCiscoAuthentication([]byte("NHRPAUTH"))
	if err != nil {
		f.Fatal(err)
	}
	nbmaSpoke, nbmaHub := fzAddr("169.254.100.1"), fzAddr("169.254.100.5")
	tunSpoke, tunHub := fzAddr("155.1.0.1"), fzAddr("155.1.0.5")

	// Registration Request with Cisco's extensions: Responder Address,
	// Forward/Reverse Transit NHS, authentication, NAT address, End.
	nat := nhrp.NewNATAddress(nhrp.CIE{PrefixLength: 32, MTU: 17912, NBMA: nbmaHub, Protocol: tunHub})
	regReq := &nhrp.Packet{
		HopCount:   255,
		Type:       nhrp.TypeRegistrationRequest,
		Flags:      nhrp.FlagRegistrationU | nhrp.FlagCiscoNAT,
		RequestID:  1,
		SrcNBMA:    nbmaSpoke,
		SrcProto:   tunSpoke,
		DstProto:   tunHub,
		CIEs:       []nhrp.CIE{{PrefixLength: 32, MTU: 17912, HoldingTime: 7200}},
		Extensions: nhrp.StandardRequestExtensions(nil, &auth, &nat),
	}

	// Resolution Reply with several CIEs and CIE-carrying extensions.
	resReply := &nhrp.Packet{
		HopCount:  254,
		Type:      nhrp.TypeResolutionReply,
		Flags:     nhrp.FlagResolutionQ | nhrp.FlagResolutionA | nhrp.FlagResolutionD | nhrp.FlagResolutionU | nhrp.FlagResolutionS | nhrp.FlagCiscoNAT,
		RequestID: 0xdeadbeef,
		SrcNBMA:   fzAddr("192.168.200.3"),
		SrcProto:  fzAddr("10.255.255.3"),
		DstProto:  fzAddr("10.255.255.2"),
		CIEs: []nhrp.CIE{
			{PrefixLength: 32, MTU: 1514, HoldingTime: 7200, NBMA: fzAddr("192.168.200.2"), Protocol: fzAddr("10.255.255.2")},
			{Code: nhrp.CodeNoBindingExists, PrefixLength: 24, Unused: 0x1234, Preference: 7,
				NBMA: fzAddr("192.168.200.9"), NBMASubaddress: []byte{1, 2, 3}, Protocol: fzAddr("10.1.2.0")},
		},
		Extensions: []nhrp.Extension{
			nhrp.NewCIEExtension(nhrp.ExtResponderAddress, nhrp.SelfCIE(fzAddr("192.168.200.2"), fzAddr("10.255.255.2"), 1514, 7200)),
			nhrp.NewCIEExtension(nhrp.ExtForwardTransitNHS, nhrp.SelfCIE(fzAddr("192.168.200.1"), fzAddr("10.255.255.1"), 1514, 7200)),
			nhrp.NewCIEExtension(nhrp.ExtReverseTransitNHS),
			auth,
			nhrp.NewNATAddress(),
			nhrp.NewEnd(),
		},
	}

	// Error Indication carrying the start of an offending packet.
	offending := fzEncode(f, &nhrp.Packet{Type: nhrp.TypeResolutionRequest, HopCount: 3, RequestID: 9,
		SrcNBMA: nbmaSpoke, SrcProto: tunSpoke, DstProto: tunHub})
	errInd := &nhrp.Packet{
		HopCount:    255,
		Type:        nhrp.TypeErrorIndication,
		Code:        uint16(nhrp.ErrLoopDetected),
		ErrorOffset: 9,
		SrcNBMA:     nbmaHub,
		SrcProto:    tunHub,
		DstProto:    tunSpoke,
		Payload:     offending,
		Extensions:  []nhrp.Extension{nhrp.NewEnd()},
	}

	// Traffic Indication (DMVPN redirect) with the start of the IPv4
	// packet that triggered it.
	inner := make([]byte, inet.IPv4HeaderLen+8)
	inet.PutIPv4Header(inner, fzAddr("10.255.255.3"), fzAddr("10.255.255.2"), inet.ProtoICMP, 8, 5)
	copy(inner[inet.IPv4HeaderLen:], []byte{8, 0, 0xf7, 0xff, 0, 1, 0, 0})
	trafficInd := &nhrp.Packet{
		HopCount:   255,
		Type:       nhrp.TypeTrafficIndication,
		Code:       nhrp.TrafficCodeRedirect,
		SrcNBMA:    fzAddr("192.168.200.1"),
		SrcProto:   fzAddr("10.255.255.1"),
		DstProto:   fzAddr("10.255.255.3"),
		Payload:    inner,
		Extensions: []nhrp.Extension{nhrp.NewCIEExtension(nhrp.ExtForwardTransitNHS), auth, nhrp.NewEnd()},
	}

	// IPv6 everywhere, with a Vendor-Private and an unknown (not
	// compulsory) extension.
	v6 := &nhrp.Packet{
		HopCount:  16,
		Type:      nhrp.TypeResolutionRequest,
		Flags:     nhrp.FlagResolutionQ,
		RequestID: 42,
		SrcNBMA:   fzAddr("2001:db8::1"),
		SrcProto:  fzAddr("fd00::1"),
		DstProto:  fzAddr("fd00::2"),
		CIEs:      []nhrp.CIE{{PrefixLength: 128, MTU: 1400, HoldingTime: 600, NBMA: fzAddr("2001:db8::2"), Protocol: fzAddr("fd00::2")}},
		Extensions: []nhrp.Extension{
			nhrp.NewCIEExtension(nhrp.ExtResponderAddress),
			nhrp.NewVendorPrivate([3]byte{0x00, 0x00, 0x0c}, []byte("cisco")),
			{Type: 0x1234, U: true, Data: []byte{1, 2, 3, 4, 5}},
			nhrp.NewEnd(),
		},
	}

	// Purge Request with a 16-byte (IPv4-mapped) NBMA address and an
	// unknown compulsory extension: Decode reports it but decodes it all.
	purge := &nhrp.Packet{
		HopCount:   1,
		Type:       nhrp.TypePurgeRequest,
		Flags:      nhrp.FlagPurgeN,
		RequestID:  7,
		SrcNBMA:    fzAddr("::ffff:192.0.2.1"),
		SrcProto:   fzAddr("10.0.0.1"),
		DstProto:   fzAddr("10.0.0.2"),
		CIEs:       []nhrp.CIE{{PrefixLength: 32, Protocol: fzAddr("10.0.0.9")}},
		Extensions: []nhrp.Extension{{Compulsory: true, Type: 0x2abc, Data: []byte("x")}, nhrp.NewEnd()},
	}

	// Registration Reply and Purge Reply with no extensions at all.
	regReply := &nhrp.Packet{HopCount: 255, Type: nhrp.TypeRegistrationReply, Flags: nhrp.FlagRegistrationU, RequestID: 1,
		SrcNBMA: nbmaSpoke, SrcProto: tunSpoke, DstProto: tunHub,
		CIEs: []nhrp.CIE{{Code: nhrp.CodeUniqueAddressRegistered, PrefixLength: 32, MTU: 17912, HoldingTime: 7200}}}
	purgeReply := &nhrp.Packet{HopCount: 255, Type: nhrp.TypePurgeReply, RequestID: 7, SrcNBMA: nbmaHub, DstProto: tunSpoke}

	var seeds [][]byte
	for _, p := range []*nhrp.Packet{regReq, resReply, errInd, trafficInd, v6, purge, regReply, purgeReply} {
		seeds = append(seeds, fzEncode(f, p))
	}
	return seeds
}

// fzHexSeeds are hand-written packets (checksums computed by hand) aimed at
// the decoder's bounds checks.
var fzHexSeeds = []string{
	// Smallest Resolution Request: no addresses, no CIEs, no extensions.
	"000108000000000000ff001cf5e10000010100000000000000000001",
	// A CIE claiming a 16-byte protocol address with 4 bytes left.
	"000108000000000000ff0038db9c0000010104000404000000000002c00002010a0000010a000002" +
		"0020000005dc1c20000010000a000003",
	// An extension whose length (0xffff) runs past the packet.
	"000108000000000000ff002c17970028010304000404800200000003c00002010a0000010a000002" +
		"8003ffff",
	// End of Extensions with a non-zero length.
	"000108000000000000ff003017920028010304000404800200000003c00002010a0000010a000002" +
		"8000000400000000",
	// Extension offset (30) inside the mandatory part's addresses.
	"000108000000000000ff002c17a4001e010304000404800200000003c00002010a0000010a000002" +
		"80000000",
	// Error Indication (protocol address unreachable) quoting a packet.
	"000108000000000000ff004417a60000010704000404000000060000c00002010a0000010a000002" +
		"000108000000000000ff001cf5d90000010100000000000000000009",
	// Packet size 0xffff on a 28-byte packet.
	"000108000000000000fffffff5fd0000010100000000000000000001",
	// Unknown compulsory extension 0x0123 with 2 bytes, then End.
	"000108000000000000ff0032166d0028010304000404800200000004c00002010a0000010a000002" +
		"8123000280008000" + "0000",
	// IPv6 afn and protocol, IPv4-mapped 16-byte NBMA address.
	"000286dd0000000000ff004c58b4000001011000101000000000000500000000000000000000ffff" +
		"01020304fd000000000000000000000000000001fd000000000000000000000000000002",
	// Truncated fixed header and empty input.
	"000108000000000000ff00",
	"",
}

// FuzzDecode checks that Decode never panics, that what it accepts
// re-encodes to a packet that decodes the same, and that encoding is then a
// fixed point.
//
// testdata/fuzz/FuzzDecode holds the minimized findings. The two
// *-zero-replaced-on-encode inputs decode with afn (resp. pro.type) 0, which
// Encode takes as "derive it from the addresses": the re-encoded packet says
// afn 1 (resp. pro.type 0x0800), so a decoded packet is not re-emitted as
// received. They fail until the codec keeps decoded values (or Decode
// rejects 0).
func FuzzDecode(f *testing.F) {
	for _, s := range fzSeedPackets(f) {
		f.Add(s)
		f.Add(s[:len(s)/2]) // truncated
	}
	for _, h := range fzHexSeeds {
		b, err := hex.DecodeString(h)
		if err != nil {
			f.Fatalf("seed %q: %v", h, err)
		}
		f.Add(b)
	}
	// A decoded packet reused for every input: Decode must not leak state
	// from one packet into the next.
	var reused nhrp.Packet
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		var p nhrp.Packet
		err := p.Decode(b)
		if !bytes.Equal(in, b) {
			t.Fatalf("Decode modified its input")
		}
		errReused := reused.Decode(b)
		if (err == nil) != (errReused == nil) || (err != nil && err.Error() != errReused.Error()) {
			t.Fatalf("Decode into a reused Packet: error %v, fresh Packet: %v", errReused, err)
		}
		if d := cmp.Diff(&p, &reused, cmpopts.IgnoreUnexported(nhrp.Packet{}), cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("Decode into a reused Packet differs from a fresh one (-fresh +reused):\n%s", d)
		}
		if err != nil {
			var de *nhrp.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode error %T %v is not a *nhrp.DecodeError", err, err)
			}
			if de.Offset < 0 || de.Offset > len(b) {
				t.Fatalf("DecodeError offset %d outside the %d-byte input: %v", de.Offset, len(b), err)
			}
			if !errors.Is(err, nhrp.ErrUnrecognizedCompulsory) {
				return
			}
			if de.Code != nhrp.ErrUnrecognizedExtension {
				t.Fatalf("unrecognized compulsory extension with code %v, want %v", de.Code, nhrp.ErrUnrecognizedExtension)
			}
		}
		unknown := err != nil

		enc1, err := p.AppendEncode(nil)
		if err != nil {
			t.Fatalf("AppendEncode of a decoded packet: %v\npacket: %+v", err, p)
		}
		if len(enc1) > int(p.PacketSize) {
			t.Fatalf("re-encoded %d bytes from a %d-byte packet", len(enc1), p.PacketSize)
		}
		var q nhrp.Packet
		err = q.Decode(enc1)
		if err != nil && !(unknown && errors.Is(err, nhrp.ErrUnrecognizedCompulsory)) {
			t.Fatalf("Decode(Encode(p)): %v\ninput:   %x\nencoded: %x", err, b, enc1)
		}
		if unknown && err == nil {
			t.Fatalf("Decode(Encode(p)) lost the unrecognized compulsory extension\ninput:   %x\nencoded: %x", b, enc1)
		}
		if d := cmp.Diff(&p, &q, fzCmpOpts...); d != "" {
			t.Fatalf("Decode(Encode(p)) != p (-p +decoded again):\n%s\ninput:   %x\nencoded: %x", d, b, enc1)
		}
		if int(q.PacketSize) != len(enc1) {
			t.Fatalf("re-encoded packet size field %d, length %d", q.PacketSize, len(enc1))
		}
		enc2, err := q.AppendEncode(nil)
		if err != nil {
			t.Fatalf("AppendEncode of the re-decoded packet: %v", err)
		}
		if !bytes.Equal(enc1, enc2) {
			t.Fatalf("encoding is not a fixed point:\nfirst:  %x\nsecond: %x", enc1, enc2)
		}
	})
}
