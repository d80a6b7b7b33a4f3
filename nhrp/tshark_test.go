package nhrp_test

// tshark as the oracle: every NHRP packet type and extension is encoded with
// this codec, framed in GRE (over IP and over UDP), written to a pcap and
// decoded by tshark; every field tshark reports must be what we encoded.
//
// How tshark 4.0 shows things, which the expectations below follow:
//   - Addresses of 4 bytes are IPv4 fields (nhrp.src.nbma.addr, ...); any
//     other length, IPv6 included, goes to a bytes field shown as bare hex
//     (nhrp.src.nbma.addr_bytes, ...; the destination's is spelled
//     nhrp.dst.prot.addr_byets).
//   - afn, pro.type, flags, request ID and extension type print in hex,
//     the rest in decimal; booleans as 1/0; checksum status good is 1.
//   - The flag bits shown depend on the packet type (Q/A/D/U/S for
//     resolution, U for registration, N for purge, plus Cisco NAT); Error
//     and Traffic Indications have no flags or request ID.
//   - The authentication extension is read as RFC 2332 §5.3.4: reserved,
//     SPI, a source address as long as the packet's source protocol
//     address, then data. Cisco's plain-text form (SPI 1 then the password)
//     thus shows its first 4 password bytes as an IPv4 "source address"
//     (and, in a packet with IPv6 protocol addresses, an 8-byte password is
//     too short for the 16-byte address: tshark calls it Malformed, so the
//     Cisco form is only used here with IPv4 protocol addresses).
//   - The offending packet of an Error Indication is dissected as NHRP: its
//     fields follow the outer packet's mandatory part in each occurrence
//     list. The data packet of a Traffic Indication is dissected as IP, by
//     its total length.
//   - The Traffic Indication code is not dissected at all.

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/capturetest"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/nhrp"
)

// tsFields are the fields asked of tshark, in column order. Every one of them
// is compared for every frame: a field the frame should not have must be
// empty.
var tsFields = []string{
	"frame.number",
	"ip.src", "ip.dst", "ip.proto", "ip.len",
	"ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.plen",
	"udp.srcport", "udp.dstport",
	"gre.flags_and_version", "gre.flags.checksum", "gre.flags.key", "gre.flags.sequence_number",
	"gre.checksum", "gre.checksum.status", "gre.key", "gre.sequence_number", "gre.proto",
	"icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
	"nhrp.hdr.afn", "nhrp.hdr.pro.type", "nhrp.hdr.hopcnt", "nhrp.hdr.pktsz",
	"nhrp.hdr.chksum", "nhrp.hdr.chksum.status", "nhrp.hdr.extoff", "nhrp.hdr.version",
	"nhrp.hdr.op.type", "nhrp.hdr.shtl", "nhrp.hdr.sstl",
	"nhrp.src.prot.len", "nhrp.dst.prot.len",
	"nhrp.flags", "nhrp.flag.q", "nhrp.flag.a", "nhrp.flag.d", "nhrp.flag.u", "nhrp.flag.s",
	"nhrp.flag.n", "nhrp.flag.nat",
	"nhrp.reqid",
	"nhrp.src.nbma.addr", "nhrp.src.nbma.addr_bytes", "nhrp.src.nbma.saddr",
	"nhrp.src.prot.addr", "nhrp.src.prot.addr_bytes",
	"nhrp.dst.prot.addr", "nhrp.dst.prot.addr_byets", // sic: tshark's own spelling
	"nhrp.err.code", "nhrp.err.offset",
	"nhrp.code", "nhrp.prefix", "nhrp.unused", "nhrp.mtu", "nhrp.htime",
	"nhrp.cli.addr_tl", "nhrp.cli.saddr_tl", "nhrp.prot.len", "nhrp.pref",
	"nhrp.client.nbma.addr", "nhrp.client.nbma.addr_bytes", "nhrp.client.nbma.saddr",
	"nhrp.client.prot.addr", "nhrp.client.prot.addr_bytes",
	"nhrp.ext.c", "nhrp.ext.type", "nhrp.ext.len",
	"nhrp.auth_ext.reserved", "nhrp.auth_ext.spi", "nhrp.auth_ext.src_addr", "nhrp.auth_ext.src_addr_bytes",
	"nhrp.auth_ext.data",
	"nhrp.vendor_ext.id", "nhrp.vendor_ext.data",
	"nhrp.devcap_ext.srccap", "nhrp.devcap_ext.dstcap",
	"nhrp.unknown_ext.value",
	"_ws.malformed", "_ws.expert.message", "_ws.expert.severity",
}

// tsRow is one NHRP packet of the table with what tshark must show of it
// beyond what tsExpectNHRP derives from the Packet.
type tsRow struct {
	name string
	pkt  *nhrp.Packet
	// offending is the packet an Error Indication carries (already encoded
	// into pkt.Payload); tshark dissects it as a nested NHRP packet.
	offending *nhrp.Packet
	// inner is the data packet a Traffic Indication carries (pkt.Payload),
	// which tshark dissects as IPv4.
	inner *tsIPv4
	// pins are values derived by hand from the inputs of the extension
	// constructors (Cisco password, SPI, OUI): they check that the
	// constructors put those inputs where tshark, following RFC 2332 and
	// Cisco, expects them.
	pins map[string]string
}

// tsIPv4 describes an IPv4 ICMP echo request built by tsICMPv4.
type tsIPv4 struct {
	src, dst netip.Addr
	data     []byte
}

func (p *tsIPv4) bytes() []byte { return tsICMPv4(p.src, p.dst, 7, p.data) }

func tsAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func tsCIE(code nhrp.CIECode, prefix uint8, mtu, hold uint16, pref uint8, nbma, proto string) nhrp.CIE {
	c := nhrp.CIE{Code: code, PrefixLength: prefix, MTU: mtu, HoldingTime: hold, Preference: pref}
	if nbma != "" {
		c.NBMA = tsAddr(nbma)
	}
	if proto != "" {
		c.Protocol = tsAddr(proto)
	}
	return c
}

func tsRows(t *testing.T) []tsRow {
	t.Helper()
	ciscoSecret := []byte("dmvpn123") // 8 bytes, the longest IOS sends
	cisco, err := nhrp.NewCiscoAuthentication(ciscoSecret)
	if err != nil {
		t.Fatal(err)
	}
	const rfcSPI = 0x1234
	rfcSrc := tsAddr("10.0.0.11") // RFC 2332 §5.3.4: the source address comes first
	rfcKey := []byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02}
	rfcData := append(rfcSrc.AsSlice(), rfcKey...)
	rfcAuth := nhrp.NewAuthentication(rfcSPI, rfcData)
	// With IPv6 protocol addresses the source address is 16 bytes.
	rfcSrc6 := tsAddr("fd00::1")
	rfcAuth6 := nhrp.NewAuthentication(rfcSPI, append(rfcSrc6.AsSlice(), rfcKey...))
	oui := [3]byte{0x00, 0x00, 0x0c} // Cisco
	vendorData := []byte("group-A")
	vendor := nhrp.NewVendorPrivate(oui, vendorData)
	unknown := nhrp.Extension{Type: 0x3801, Data: []byte{1, 2, 3, 4, 5}} // experimental range, not compulsory

	ciscoPins := map[string]string{
		"nhrp.auth_ext.spi": strconv.Itoa(int(nhrp.CiscoAuthSPI)),
		// tshark reads Cisco's password as RFC 2332's source address
		// (first 4 bytes, as IPv4) followed by the data.
		"nhrp.auth_ext.src_addr": netip.AddrFrom4([4]byte(ciscoSecret[:4])).String(),
		"nhrp.auth_ext.data":     hex.EncodeToString(ciscoSecret[4:]),
	}

	resReq := &nhrp.Packet{
		HopCount:  255,
		Type:      nhrp.TypeResolutionRequest,
		Flags:     nhrp.FlagResolutionQ | nhrp.FlagResolutionS | nhrp.FlagCiscoNAT,
		RequestID: 0x01020304,
		SrcNBMA:   tsAddr("198.51.100.1"),
		SrcProto:  tsAddr("10.0.0.11"),
		DstProto:  tsAddr("10.0.0.12"),
		CIEs:      []nhrp.CIE{tsCIE(nhrp.CodeSuccess, 32, 1400, 7200, 0, "", "")},
		Extensions: []nhrp.Extension{
			nhrp.NewCIEExtension(nhrp.ExtResponderAddress),
			nhrp.NewCIEExtension(nhrp.ExtForwardTransitNHS, tsCIE(nhrp.CodeSuccess, 32, 1400, 7200, 0, "192.0.2.1", "10.0.0.1")),
			nhrp.NewCIEExtension(nhrp.ExtReverseTransitNHS),
			cisco,
			nhrp.NewNATAddress(tsCIE(nhrp.CodeSuccess, 32, 0, 0, 0, "203.0.113.7", "10.0.0.11")),
			nhrp.NewEnd(),
		},
	}
	resReply := &nhrp.Packet{
		HopCount: 254,
		Type:     nhrp.TypeResolutionReply,
		Flags: nhrp.FlagResolutionQ | nhrp.FlagResolutionA | nhrp.FlagResolutionD |
			nhrp.FlagResolutionU | nhrp.FlagResolutionS | nhrp.FlagCiscoNAT,
		RequestID: 0x01020304,
		SrcNBMA:   tsAddr("198.51.100.1"),
		SrcProto:  tsAddr("10.0.0.11"),
		DstProto:  tsAddr("10.0.0.12"),
		CIEs:      []nhrp.CIE{tsCIE(nhrp.CodeSuccess, 24, 1400, 7200, 3, "198.51.100.2", "10.0.0.12")},
		Extensions: []nhrp.Extension{
			nhrp.NewCIEExtension(nhrp.ExtResponderAddress, tsCIE(nhrp.CodeSuccess, 32, 1400, 7200, 0, "198.51.100.2", "10.0.0.12")),
			nhrp.NewCIEExtension(nhrp.ExtForwardTransitNHS,
				tsCIE(nhrp.CodeSuccess, 32, 1400, 7200, 0, "192.0.2.1", "10.0.0.1"),
				tsCIE(nhrp.CodeSuccess, 32, 1500, 600, 1, "192.0.2.2", "10.0.0.2")),
			nhrp.NewCIEExtension(nhrp.ExtReverseTransitNHS, tsCIE(nhrp.CodeSuccess, 32, 1400, 7200, 0, "192.0.2.1", "10.0.0.1")),
			cisco,
			nhrp.NewNATAddress(
				tsCIE(nhrp.CodeSuccess, 32, 0, 0, 0, "192.0.2.1", "10.0.0.1"),
				tsCIE(nhrp.CodeSuccess, 32, 0, 0, 0, "203.0.113.9", "10.0.0.12")),
			nhrp.NewEnd(),
		},
	}
	regReq := &nhrp.Packet{
		HopCount:  255,
		Type:      nhrp.TypeRegistrationRequest,
		Flags:     nhrp.FlagRegistrationU | nhrp.FlagCiscoNAT,
		RequestID: 0xfedcba98,
		SrcNBMA:   tsAddr("198.51.100.1"),
		SrcProto:  tsAddr("10.0.0.11"),
		DstProto:  tsAddr("10.0.0.1"),
		CIEs:      []nhrp.CIE{tsCIE(nhrp.CodeSuccess, 32, 17912, 7200, 0, "", "")},
		Extensions: []nhrp.Extension{
			nhrp.NewCIEExtension(nhrp.ExtResponderAddress),
			nhrp.NewCIEExtension(nhrp.ExtForwardTransitNHS),
			nhrp.NewCIEExtension(nhrp.ExtReverseTransitNHS),
			rfcAuth,
			vendor,
			unknown,
			nhrp.NewEnd(),
		},
	}
	regReply := &nhrp.Packet{
		HopCount:  255,
		Type:      nhrp.TypeRegistrationReply,
		Flags:     nhrp.FlagRegistrationU | nhrp.FlagCiscoNAT,
		RequestID: 0xfedcba98,
		SrcNBMA:   tsAddr("198.51.100.1"),
		SrcProto:  tsAddr("10.0.0.11"),
		DstProto:  tsAddr("10.0.0.1"),
		CIEs: []nhrp.CIE{
			tsCIE(nhrp.CodeAdministrativelyProhib, 32, 17912, 7200, 0, "", ""),
			tsCIE(nhrp.CodeInsufficientResources, 32, 17912, 7200, 0, "", ""),
			tsCIE(nhrp.CodeUniqueAddressRegistered, 32, 17912, 7200, 0, "", ""),
		},
		Extensions: []nhrp.Extension{
			nhrp.NewCIEExtension(nhrp.ExtResponderAddress, tsCIE(nhrp.CodeSuccess, 32, 17912, 7200, 0, "192.0.2.1", "10.0.0.1")),
			nhrp.NewCIEExtension(nhrp.ExtForwardTransitNHS),
			nhrp.NewCIEExtension(nhrp.ExtReverseTransitNHS),
			cisco,
			nhrp.NewNATAddress(tsCIE(nhrp.CodeSuccess, 32, 0, 0, 0, "203.0.113.7", "10.0.0.11")),
			nhrp.NewEnd(),
		},
	}
	// IPv6 everywhere: NBMA (afn 2) and protocol (0x86DD).
	purgeReq := &nhrp.Packet{
		HopCount:  16,
		Type:      nhrp.TypePurgeRequest,
		Flags:     nhrp.FlagPurgeN,
		RequestID: 42,
		SrcNBMA:   tsAddr("2001:db8::1"),
		SrcProto:  tsAddr("fd00::1"),
		DstProto:  tsAddr("fd00::11"),
		CIEs: []nhrp.CIE{
			tsCIE(nhrp.CodeSuccess, 64, 1280, 0, 0, "2001:db8::11", "fd00:0:0:11::"),
			tsCIE(nhrp.CodeNoBindingExists, 128, 1280, 0, 0, "", "fd00::12"),
		},
		Extensions: []nhrp.Extension{
			nhrp.NewCIEExtension(nhrp.ExtResponderAddress),
			nhrp.NewCIEExtension(nhrp.ExtForwardTransitNHS, tsCIE(nhrp.CodeSuccess, 128, 1400, 600, 0, "2001:db8::1", "fd00::1")),
			nhrp.NewCIEExtension(nhrp.ExtReverseTransitNHS, tsCIE(nhrp.CodeSuccess, 128, 1400, 600, 0, "2001:db8::2", "fd00::2")),
			rfcAuth6,
			nhrp.NewEnd(),
		},
	}
	purgeReply := &nhrp.Packet{
		HopCount:  16,
		Type:      nhrp.TypePurgeReply,
		RequestID: 42,
		SrcNBMA:   tsAddr("2001:db8::11"),
		SrcProto:  tsAddr("fd00::11"),
		DstProto:  tsAddr("fd00::1"),
		CIEs:      []nhrp.CIE{tsCIE(nhrp.CodeBindingNotUnique, 64, 0, 0, 0, "", "fd00:0:0:11::")},
		Extensions: []nhrp.Extension{
			nhrp.NewCIEExtension(nhrp.ExtResponderAddress, tsCIE(nhrp.CodeSuccess, 128, 1400, 600, 255, "2001:db8::11", "fd00::11")),
			nhrp.NewNATAddress(tsCIE(nhrp.CodeSuccess, 128, 0, 0, 0, "2001:db8:ffff::11", "fd00::11")),
			vendor,
			nhrp.NewEnd(),
		},
	}
	// IPv6 NBMA with IPv4 protocol addresses (DMVPN over an IPv6 underlay).
	regReq6 := &nhrp.Packet{
		HopCount:  255,
		Type:      nhrp.TypeRegistrationRequest,
		Flags:     nhrp.FlagRegistrationU,
		RequestID: 7,
		SrcNBMA:   tsAddr("2001:db8::11"),
		SrcProto:  tsAddr("10.0.0.11"),
		DstProto:  tsAddr("10.0.0.1"),
		CIEs:      []nhrp.CIE{tsCIE(nhrp.CodeSuccess, 32, 1400, 600, 0, "2001:db8::11", "10.0.0.11")},
		Extensions: []nhrp.Extension{
			nhrp.NewCIEExtension(nhrp.ExtResponderAddress),
			cisco,
			nhrp.NewEnd(),
		},
	}

	// Error Indications carry the offending packet; RFC 2332 §5.2.7 allows
	// no extensions in them.
	offending := &nhrp.Packet{
		HopCount:  255,
		Type:      nhrp.TypeRegistrationRequest,
		Flags:     nhrp.FlagRegistrationU,
		RequestID: 99,
		SrcNBMA:   tsAddr("198.51.100.1"),
		SrcProto:  tsAddr("10.0.0.11"),
		DstProto:  tsAddr("10.0.0.1"),
		CIEs:      []nhrp.CIE{tsCIE(nhrp.CodeSuccess, 32, 1400, 7200, 0, "", "")},
		Extensions: []nhrp.Extension{
			{Compulsory: true, Type: 0x3802, Data: []byte{0xaa, 0xbb}}, // unknown compulsory: the error
			nhrp.NewEnd(),
		},
	}
	offBytes := tsEncode(t, offending)
	errUnrec := &nhrp.Packet{
		HopCount:    255,
		Type:        nhrp.TypeErrorIndication,
		Code:        uint16(nhrp.ErrUnrecognizedExtension),
		ErrorOffset: uint16(tsMandatoryEnd(offending)), // where the unknown extension starts
		SrcNBMA:     tsAddr("192.0.2.1"),
		SrcProto:    tsAddr("10.0.0.1"),
		DstProto:    tsAddr("10.0.0.11"),
		Payload:     offBytes,
	}
	offending6 := purgeReq
	errAuth6 := &nhrp.Packet{
		HopCount:    8,
		Type:        nhrp.TypeErrorIndication,
		Code:        uint16(nhrp.ErrAuthenticationFailure),
		ErrorOffset: 0,
		SrcNBMA:     tsAddr("2001:db8::11"),
		SrcProto:    tsAddr("fd00::11"),
		DstProto:    tsAddr("fd00::1"),
		Payload:     tsEncode(t, offending6),
	}

	// Traffic Indication: the start of the data packet that set it off.
	// Its IPv4 total length equals the bytes carried, since tshark
	// dissects the inner packet by that length.
	inner := &tsIPv4{src: tsAddr("10.0.0.11"), dst: tsAddr("10.0.2.20"), data: []byte("0123456789abcdef")}
	traffic := &nhrp.Packet{
		HopCount:   1,
		Type:       nhrp.TypeTrafficIndication,
		Code:       nhrp.TrafficCodeRedirect,
		SrcNBMA:    tsAddr("192.0.2.1"),
		SrcProto:   tsAddr("10.0.0.1"),
		DstProto:   tsAddr("10.0.0.11"),
		Payload:    inner.bytes(),
		Extensions: []nhrp.Extension{cisco, nhrp.NewNATAddress(), nhrp.NewEnd()},
	}

	rfcPins := map[string]string{
		"nhrp.auth_ext.spi":      strconv.Itoa(rfcSPI),
		"nhrp.auth_ext.src_addr": rfcSrc.String(),
		"nhrp.auth_ext.data":     hex.EncodeToString(rfcKey),
	}
	rfc6Pins := map[string]string{
		"nhrp.auth_ext.spi":            strconv.Itoa(rfcSPI),
		"nhrp.auth_ext.src_addr_bytes": hex.EncodeToString(rfcSrc6.AsSlice()),
		"nhrp.auth_ext.data":           hex.EncodeToString(rfcKey),
	}
	vendorPins := map[string]string{
		"nhrp.vendor_ext.id":   strconv.Itoa(int(oui[0])<<16 | int(oui[1])<<8 | int(oui[2])),
		"nhrp.vendor_ext.data": hex.EncodeToString(vendorData),
	}
	merge := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	return []tsRow{
		{name: "resolution request", pkt: resReq, pins: ciscoPins},
		{name: "resolution reply", pkt: resReply, pins: ciscoPins},
		{name: "registration request rfc auth vendor unknown", pkt: regReq, pins: merge(rfcPins, vendorPins)},
		{name: "registration reply", pkt: regReply, pins: ciscoPins},
		{name: "registration request ipv6 nbma", pkt: regReq6, pins: ciscoPins},
		{name: "purge request ipv6", pkt: purgeReq, pins: rfc6Pins},
		{name: "purge reply ipv6", pkt: purgeReply, pins: vendorPins},
		{name: "error indication unrecognized extension", pkt: errUnrec, offending: offending},
		{name: "error indication ipv6", pkt: errAuth6, offending: offending6, pins: rfc6Pins},
		{name: "traffic indication", pkt: traffic, inner: inner, pins: ciscoPins},
	}
}

func tsEncode(t *testing.T, p *nhrp.Packet) []byte {
	t.Helper()
	b, err := p.AppendEncode(nil)
	if err != nil {
		t.Fatalf("encode %v: %v", p.Type, err)
	}
	return b
}

// Independent computation of the layout (not the codec's Len methods).

func tsAddrLen(a netip.Addr) int {
	if !a.IsValid() {
		return 0
	}
	return len(a.AsSlice())
}

func tsCIELen(c *nhrp.CIE) int {
	return 12 + tsAddrLen(c.NBMA) + len(c.NBMASubaddress) + tsAddrLen(c.Protocol)
}

// tsMandatoryEnd is the offset where the extensions start.
func tsMandatoryEnd(p *nhrp.Packet) int {
	n := 20 + 8 + tsAddrLen(p.SrcNBMA) + len(p.SrcNBMASubaddress) + tsAddrLen(p.SrcProto) + tsAddrLen(p.DstProto)
	if p.Type.HasCIEs() {
		for i := range p.CIEs {
			n += tsCIELen(&p.CIEs[i])
		}
	} else {
		n += len(p.Payload)
	}
	return n
}

func tsExtValueLen(e *nhrp.Extension) int {
	switch e.Type {
	case nhrp.ExtResponderAddress, nhrp.ExtForwardTransitNHS, nhrp.ExtReverseTransitNHS, nhrp.ExtNATAddress:
		n := 0
		for i := range e.CIEs {
			n += tsCIELen(&e.CIEs[i])
		}
		return n
	}
	return len(e.Data)
}

func tsPacketLen(p *nhrp.Packet) int {
	n := tsMandatoryEnd(p)
	for i := range p.Extensions {
		n += 4 + tsExtValueLen(&p.Extensions[i])
	}
	return n
}

// tsExp accumulates the expected occurrences of each field, in wire order.
type tsExp map[string][]string

func (e tsExp) add(field string, v ...string) { e[field] = append(e[field], v...) }

func tsDec[T ~uint8 | ~uint16 | ~uint32 | int](v T) string { return strconv.FormatUint(uint64(v), 10) }
func tsHex16[T ~uint16](v T) string                        { return fmt.Sprintf("0x%04x", uint16(v)) }
func tsBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// tsAddrField adds an address tshark shows as an IPv4 field when it is 4
// bytes long, and as raw bytes (field+bytesSuffix) otherwise.
func (e tsExp) addr(field, bytesField string, a netip.Addr) {
	switch {
	case !a.IsValid():
	case a.Is4():
		e.add(field, a.String())
	default:
		e.add(bytesField, hex.EncodeToString(a.AsSlice()))
	}
}

func (e tsExp) cie(c *nhrp.CIE) {
	e.add("nhrp.code", tsDec(c.Code))
	e.add("nhrp.prefix", tsDec(c.PrefixLength))
	e.add("nhrp.unused", tsDec(c.Unused))
	e.add("nhrp.mtu", tsDec(c.MTU))
	e.add("nhrp.htime", tsDec(c.HoldingTime))
	e.add("nhrp.cli.addr_tl", tsDec(tsAddrLen(c.NBMA)))
	e.add("nhrp.cli.saddr_tl", tsDec(len(c.NBMASubaddress)))
	e.add("nhrp.prot.len", tsDec(tsAddrLen(c.Protocol)))
	e.add("nhrp.pref", tsDec(c.Preference))
	e.addr("nhrp.client.nbma.addr", "nhrp.client.nbma.addr_bytes", c.NBMA)
	if len(c.NBMASubaddress) > 0 {
		e.add("nhrp.client.nbma.saddr", hex.EncodeToString(c.NBMASubaddress))
	}
	e.addr("nhrp.client.prot.addr", "nhrp.client.prot.addr_bytes", c.Protocol)
}

// nhrp adds what tshark shows of p. offending is the packet nested in an
// Error Indication; inner is the data packet of a Traffic Indication.
func (e tsExp) nhrp(p *nhrp.Packet, offending *nhrp.Packet, inner *tsIPv4) {
	// Encode derives afn and pro.type from the addresses when they are 0.
	afn, pt := p.AddressFamily, p.ProtocolType
	if afn == 0 {
		afn = nhrp.AFNIPv4
		if p.SrcNBMA.Is6() {
			afn = nhrp.AFNIPv6
		}
	}
	if pt == 0 {
		pt = nhrp.ProtoIPv4
		if p.SrcProto.Is6() {
			pt = nhrp.ProtoIPv6
		}
	}
	extoff := 0
	if len(p.Extensions) > 0 {
		extoff = tsMandatoryEnd(p)
	}
	e.add("nhrp.hdr.afn", tsHex16(afn))
	e.add("nhrp.hdr.pro.type", tsHex16(pt))
	e.add("nhrp.hdr.hopcnt", tsDec(p.HopCount))
	e.add("nhrp.hdr.pktsz", tsDec(tsPacketLen(p)))
	e.add("nhrp.hdr.chksum.status", "1") // good
	e.add("nhrp.hdr.extoff", tsDec(extoff))
	e.add("nhrp.hdr.version", "1")
	e.add("nhrp.hdr.op.type", tsDec(p.Type))
	e.add("nhrp.hdr.shtl", tsDec(tsAddrLen(p.SrcNBMA)))
	e.add("nhrp.hdr.sstl", tsDec(len(p.SrcNBMASubaddress)))
	e.add("nhrp.src.prot.len", tsDec(tsAddrLen(p.SrcProto)))
	e.add("nhrp.dst.prot.len", tsDec(tsAddrLen(p.DstProto)))
	switch {
	case p.Type.HasCIEs():
		e.add("nhrp.flags", tsHex16(p.Flags))
		has := func(f uint16) string { return tsBool(p.Flags&f != 0) }
		switch p.Type {
		case nhrp.TypeResolutionRequest, nhrp.TypeResolutionReply:
			e.add("nhrp.flag.q", has(nhrp.FlagResolutionQ))
			e.add("nhrp.flag.a", has(nhrp.FlagResolutionA))
			e.add("nhrp.flag.d", has(nhrp.FlagResolutionD))
			e.add("nhrp.flag.u", has(nhrp.FlagResolutionU))
			e.add("nhrp.flag.s", has(nhrp.FlagResolutionS))
		case nhrp.TypeRegistrationRequest, nhrp.TypeRegistrationReply:
			e.add("nhrp.flag.u", has(nhrp.FlagRegistrationU))
		case nhrp.TypePurgeRequest, nhrp.TypePurgeReply:
			e.add("nhrp.flag.n", has(nhrp.FlagPurgeN))
		}
		e.add("nhrp.flag.nat", has(nhrp.FlagCiscoNAT))
		e.add("nhrp.reqid", fmt.Sprintf("0x%08x", p.RequestID))
	case p.Type == nhrp.TypeErrorIndication:
		e.add("nhrp.err.code", tsDec(p.Code))
		e.add("nhrp.err.offset", tsDec(p.ErrorOffset))
	}
	e.addr("nhrp.src.nbma.addr", "nhrp.src.nbma.addr_bytes", p.SrcNBMA)
	if len(p.SrcNBMASubaddress) > 0 {
		e.add("nhrp.src.nbma.saddr", hex.EncodeToString(p.SrcNBMASubaddress))
	}
	e.addr("nhrp.src.prot.addr", "nhrp.src.prot.addr_bytes", p.SrcProto)
	e.addr("nhrp.dst.prot.addr", "nhrp.dst.prot.addr_byets", p.DstProto)
	if p.Type.HasCIEs() {
		for i := range p.CIEs {
			e.cie(&p.CIEs[i])
		}
	}
	if offending != nil {
		e.nhrp(offending, nil, nil)
	}
	if inner != nil {
		e.icmpv4(inner)
	}
	for i := range p.Extensions {
		x := &p.Extensions[i]
		e.add("nhrp.ext.c", tsBool(x.Compulsory))
		e.add("nhrp.ext.type", tsHex16(uint16(x.Type)))
		e.add("nhrp.ext.len", tsDec(tsExtValueLen(x)))
		switch x.Type {
		case nhrp.ExtResponderAddress, nhrp.ExtForwardTransitNHS, nhrp.ExtReverseTransitNHS, nhrp.ExtNATAddress:
			for j := range x.CIEs {
				e.cie(&x.CIEs[j])
			}
		case nhrp.ExtEnd:
		case nhrp.ExtAuthentication:
			// RFC 2332 §5.3.4: reserved(2), SPI(2), source address
			// (as long as the packet's source protocol address),
			// authentication data.
			d := x.Data
			e.add("nhrp.auth_ext.reserved", tsDec(binary.BigEndian.Uint16(d)))
			e.add("nhrp.auth_ext.spi", tsDec(binary.BigEndian.Uint16(d[2:])))
			n := tsAddrLen(p.SrcProto)
			src, _ := netip.AddrFromSlice(d[4 : 4+n])
			e.addr("nhrp.auth_ext.src_addr", "nhrp.auth_ext.src_addr_bytes", src)
			if len(d) > 4+n {
				e.add("nhrp.auth_ext.data", hex.EncodeToString(d[4+n:]))
			}
		case nhrp.ExtVendorPrivate:
			d := x.Data
			e.add("nhrp.vendor_ext.id", tsDec(uint32(d[0])<<16|uint32(d[1])<<8|uint32(d[2])))
			if len(d) > 3 {
				e.add("nhrp.vendor_ext.data", hex.EncodeToString(d[3:]))
			}
		default:
			if len(x.Data) > 0 {
				e.add("nhrp.unknown_ext.value", hex.EncodeToString(x.Data))
			}
		}
	}
}

func (e tsExp) icmpv4(p *tsIPv4) {
	e.add("ip.src", p.src.String())
	e.add("ip.dst", p.dst.String())
	e.add("ip.proto", tsDec(inet.ProtoICMP))
	e.add("ip.len", tsDec(inet.IPv4HeaderLen+8+len(p.data)))
	e.add("icmp.type", "8")
	e.add("icmp.code", "0")
}

// tsICMPv4 builds an IPv4 ICMP echo request.
func tsICMPv4(src, dst netip.Addr, id uint16, data []byte) []byte {
	b := make([]byte, inet.IPv4HeaderLen+8+len(data))
	m := b[inet.IPv4HeaderLen:]
	m[0] = 8 // echo request
	binary.BigEndian.PutUint16(m[4:], 0x1234)
	binary.BigEndian.PutUint16(m[6:], 1)
	copy(m[8:], data)
	binary.BigEndian.PutUint16(m[2:], inet.Checksum(m))
	inet.PutIPv4Header(b, src, dst, inet.ProtoICMP, len(m), id)
	return b
}

// tsICMPv6 builds an IPv6 ICMPv6 echo request.
func tsICMPv6(src, dst netip.Addr, data []byte) []byte {
	b := make([]byte, 40+8+len(data))
	m := b[40:]
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(m)))
	b[6] = 58 // ICMPv6
	b[7] = 64
	copy(b[8:24], src.AsSlice())
	copy(b[24:40], dst.AsSlice())
	m[0] = 128 // echo request
	binary.BigEndian.PutUint16(m[4:], 0x4321)
	binary.BigEndian.PutUint16(m[6:], 2)
	copy(m[8:], data)
	// RFC 8200 §8.1 pseudo-header: addresses, upper-layer length, next header.
	var ph [8]byte
	binary.BigEndian.PutUint32(ph[0:], uint32(len(m)))
	ph[7] = 58
	acc := inet.Sum(0, b[8:40])
	acc = inet.Sum(acc, ph[:])
	acc = inet.Sum(acc, m)
	binary.BigEndian.PutUint16(m[2:], ^inet.Fold(acc))
	return b
}

// tsFrame is one raw-IPv4 frame of the capture and what tshark must show.
type tsFrame struct {
	name string
	data []byte
	want tsExp
	pins map[string]string
}

var (
	tsOuterSrc = tsAddr("198.51.100.1")
	tsOuterDst = tsAddr("192.0.2.1")
)

const tsUDPSrcPort = 50123

// tsGREFrame frames payload in GRE h, in IPv4 directly (protocol 47) or in
// UDP to port 4754, and records the outer fields in want.
func tsGREFrame(t *testing.T, payload []byte, h gre.Header, udp bool, id uint16, want tsExp) []byte {
	t.Helper()
	head := inet.IPv4HeaderLen + inet.UDPHeaderLen + gre.MaxLen
	buf := make([]byte, head+len(payload))
	copy(buf[head:], payload)
	start, err := gre.Encapsulate(buf, head, &h)
	if err != nil {
		t.Fatal(err)
	}
	greLen := len(buf) - start
	off := start
	proto := uint8(inet.ProtoGRE)
	if udp {
		off -= inet.UDPHeaderLen
		inet.PutUDPHeader(buf[off:], tsUDPSrcPort, gre.UDPPort, greLen)
		proto = inet.ProtoUDP
	}
	off -= inet.IPv4HeaderLen
	inet.PutIPv4Header(buf[off:], tsOuterSrc, tsOuterDst, proto, len(buf)-off-inet.IPv4HeaderLen, id)

	// Outer fields come first in every occurrence list.
	for f, v := range map[string]string{
		"ip.src": tsOuterSrc.String(), "ip.dst": tsOuterDst.String(),
		"ip.proto": tsDec(proto), "ip.len": tsDec(len(buf) - off),
	} {
		want[f] = append([]string{v}, want[f]...)
	}
	if udp {
		want.add("udp.srcport", tsDec(uint16(tsUDPSrcPort)))
		want.add("udp.dstport", tsDec(uint16(gre.UDPPort)))
	}
	var fv uint16
	if h.ChecksumPresent {
		fv |= 0x8000
	}
	if h.KeyPresent {
		fv |= 0x2000
	}
	if h.SeqPresent {
		fv |= 0x1000
	}
	want.add("gre.flags_and_version", tsHex16(fv))
	want.add("gre.flags.checksum", tsBool(h.ChecksumPresent))
	want.add("gre.flags.key", tsBool(h.KeyPresent))
	want.add("gre.flags.sequence_number", tsBool(h.SeqPresent))
	if h.ChecksumPresent {
		// The value is whatever Encapsulate computed; its status (good)
		// is the check.
		want.add("gre.checksum", fmt.Sprintf("0x%04x", binary.BigEndian.Uint16(buf[start+4:])))
		want.add("gre.checksum.status", "1")
	}
	if h.KeyPresent {
		want.add("gre.key", fmt.Sprintf("0x%08x", h.Key))
	}
	if h.SeqPresent {
		want.add("gre.sequence_number", tsDec(h.Seq))
	}
	want.add("gre.proto", tsHex16(h.Protocol))
	return buf[off:]
}

func tsFrames(t *testing.T) []tsFrame {
	var frames []tsFrame
	id := uint16(1)
	for _, r := range tsRows(t) {
		wire := tsEncode(t, r.pkt)
		for _, udp := range []bool{false, true} {
			want := tsExp{}
			want.nhrp(r.pkt, r.offending, r.inner)
			// The NHRP checksum value is the one on the wire; its status
			// (good) is the check.
			want["nhrp.hdr.chksum"] = []string{fmt.Sprintf("0x%04x", binary.BigEndian.Uint16(wire[12:]))}
			if r.offending != nil {
				ow := tsEncode(t, r.offending)
				want.add("nhrp.hdr.chksum", fmt.Sprintf("0x%04x", binary.BigEndian.Uint16(ow[12:])))
			}
			h := gre.Header{KeyPresent: true, Key: 0x000003e8, Protocol: gre.ProtoNHRP}
			name := r.name + "/gre"
			if udp {
				name = r.name + "/gre-in-udp"
			}
			data := tsGREFrame(t, wire, h, udp, id, want)
			id++
			frames = append(frames, tsFrame{name: name, data: data, want: want, pins: r.pins})
		}
	}

	// GRE-only frames: checksum, key and sequence present, IPv4 and IPv6
	// payloads, over IP and over UDP.
	in4 := &tsIPv4{src: tsAddr("10.0.0.11"), dst: tsAddr("10.0.2.20"), data: []byte("ping over gre")}
	src6, dst6 := tsAddr("fd00::11"), tsAddr("fd00::2:20")
	in6 := tsICMPv6(src6, dst6, []byte("ping6 over gre"))
	for _, udp := range []bool{false, true} {
		want := tsExp{}
		want.icmpv4(in4)
		h := gre.Header{ChecksumPresent: true, KeyPresent: true, SeqPresent: true, Key: 0xdeadbeef, Seq: 123456, Protocol: gre.ProtoIPv4}
		data := tsGREFrame(t, in4.bytes(), h, udp, id, want)
		id++
		frames = append(frames, tsFrame{name: fmt.Sprintf("gre csum+key+seq ipv4 udp=%v", udp), data: data, want: want})

		want = tsExp{}
		want.add("ipv6.src", src6.String())
		want.add("ipv6.dst", dst6.String())
		want.add("ipv6.nxt", "58")
		want.add("ipv6.plen", tsDec(len(in6)-40))
		want.add("icmpv6.type", "128")
		want.add("icmpv6.code", "0")
		h = gre.Header{ChecksumPresent: true, KeyPresent: true, SeqPresent: true, Key: 1, Seq: 0xffffffff, Protocol: gre.ProtoIPv6}
		data = tsGREFrame(t, in6, h, udp, id, want)
		id++
		frames = append(frames, tsFrame{name: fmt.Sprintf("gre csum+key+seq ipv6 udp=%v", udp), data: data, want: want})
	}
	return frames
}

// tsWritePcap writes frames as a classic pcap file of raw IP packets
// (LINKTYPE_RAW, 101).
func tsWritePcap(path string, frames []tsFrame) error {
	pkts := make([][]byte, len(frames))
	for i := range frames {
		pkts[i] = frames[i].data
	}
	return capturetest.WriteRawPcap(path, pkts)
}

// tsVerboseFrames splits `tshark -V` output into one text per frame.
func tsVerboseFrames(out string) map[int]string {
	re := regexp.MustCompile(`(?m)^Frame (\d+):`)
	idx := re.FindAllStringSubmatchIndex(out, -1)
	m := map[int]string{}
	for i, loc := range idx {
		end := len(out)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		n, _ := strconv.Atoi(out[loc[2]:loc[3]])
		m[n] = out[loc[0]:end]
	}
	return m
}

func TestTsharkDecodesEveryMessage(t *testing.T) {
	tshark := testenv.RequireTool(t, "tshark")
	frames := tsFrames(t)
	path := filepath.Join(t.TempDir(), "nhrp.pcap")
	if err := tsWritePcap(path, frames); err != nil {
		t.Fatal(err)
	}

	verbose := capturetest.Tshark(t, tshark, "-r", path, "-n", "-V")
	perFrame := tsVerboseFrames(verbose)
	if len(perFrame) != len(frames) {
		t.Fatalf("tshark -V shows %d frames, wrote %d", len(perFrame), len(frames))
	}
	for n, text := range perFrame {
		for _, bad := range []string{"Malformed", "Expert Info (Warning", "Expert Info (Error"} {
			if strings.Contains(text, bad) {
				t.Errorf("frame %d (%s): tshark -V shows %q:\n%s", n, frames[n-1].name, bad, text)
			}
		}
	}

	args := []string{"-r", path, "-n", "-T", "fields",
		"-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|", "-E", "quote=n"}
	for _, f := range tsFields {
		args = append(args, "-e", f)
	}
	out := capturetest.Tshark(t, tshark, args...)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(frames) {
		t.Fatalf("tshark -T fields gave %d lines, wrote %d frames", len(lines), len(frames))
	}
	for i, line := range lines {
		f := &frames[i]
		cols := strings.Split(line, "\t")
		if len(cols) != len(tsFields) {
			t.Fatalf("frame %d: %d columns, want %d: %q", i+1, len(cols), len(tsFields), line)
		}
		got := map[string]string{}
		for j, name := range tsFields {
			got[name] = cols[j]
		}
		want := map[string]string{"frame.number": strconv.Itoa(i + 1)}
		for k, v := range f.want {
			want[k] = strings.Join(v, "|")
		}
		var diffs []string
		for _, name := range tsFields {
			if got[name] != want[name] {
				diffs = append(diffs, fmt.Sprintf("  %s: tshark %q, encoded %q", name, got[name], want[name]))
			}
		}
		for name, v := range f.pins {
			if got[name] != v {
				diffs = append(diffs, fmt.Sprintf("  %s (constructor input): tshark %q, want %q", name, got[name], v))
			}
		}
		for name := range f.want {
			if _, ok := got[name]; !ok {
				t.Fatalf("test bug: expected field %s is not asked of tshark", name)
			}
		}
		if len(diffs) > 0 {
			t.Errorf("frame %d (%s): tshark disagrees:\n%s\ntshark -V:\n%s", i+1, f.name, strings.Join(diffs, "\n"), perFrame[i+1])
		}
	}
}
