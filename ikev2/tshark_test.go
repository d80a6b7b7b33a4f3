package ikev2_test

// TShark as the oracle for the encoder: messages with every payload type are
// built with the Builder, framed in IPv4/UDP (port 500, and 4500 behind the
// non-ESP marker), written to a pcap and dissected by TShark; every field
// TShark reports must be what was encoded, computed from the values given
// to the Builder. A second test holds the String names to what TShark 4.0
// calls the same values (`tshark -G values`).
//
// How TShark 4.0 shows things, which the expectations follow:
//   - Next Payload, payload type and payload length lists descend into the
//     SA payload: proposals are payloads of type 2 (Next Payload 2 or 0),
//     transforms of type 3 (3 or 0).
//   - isakmp.spisize lists the SPI sizes of proposals and notifications in
//     wire order; isakmp.spi the non-empty SPIs of both.
//   - A transform's ID goes to isakmp.tf.id.encr, .prf, .integ, .dh or .esn
//     by its type; attributes show their type without the format bit, the
//     format (1 for TV), the value (a TV's two octets too) and for TLV the
//     length; a Key Length also as isakmp.ike2.attr.key_length. An empty
//     TLV attribute (and an empty CP attribute, a request) is an expert
//     note, "Attribute value is empty".
//   - An ID payload with no data (ID_NULL) trips an assertion in TShark
//     4.0's dissector ("len > 0", a dissector bug): it is left out here.
//   - Notification data is isakmp.notify.data, as hex, "<MISSING>" when
//     there is none.
//   - Numbers print in decimal except the header's version, flags and
//     message ID and the bytes fields (bare hex).

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dmvpn/dmvpn/ikev2"
	"github.com/dmvpn/dmvpn/internal/capturetest"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/internal/testenv"
)

// tsFrame is one datagram of the pcap.
type tsFrame struct {
	name string
	data []byte // IPv4 packet
	want tsExp
}

type tsExp map[string][]string

func (e tsExp) add(field string, v ...string) { e[field] = append(e[field], v...) }

func tsDec[T ~uint8 | ~uint16 | ~uint32 | int](v T) string { return strconv.FormatUint(uint64(v), 10) }

var (
	tsSrc = netip.MustParseAddr("198.51.100.1")
	tsDst = netip.MustParseAddr("192.0.2.1")
)

// tsUDP frames an IKE message (with the marker on port 4500) in IPv4/UDP.
func tsUDP(msg []byte, natt bool, id uint16, want tsExp) []byte {
	port := uint16(ikev2.Port)
	if natt {
		port = ikev2.NATTPort
		msg = append(ikev2.AppendNonESPMarker(nil), msg...)
	}
	b := make([]byte, inet.IPv4HeaderLen+inet.UDPHeaderLen+len(msg))
	inet.PutIPv4Header(b, tsSrc, tsDst, inet.ProtoUDP, inet.UDPHeaderLen+len(msg), id)
	inet.PutUDPHeader(b[inet.IPv4HeaderLen:], port, port, len(msg))
	copy(b[inet.IPv4HeaderLen+inet.UDPHeaderLen:], msg)
	want.add("ip.src", tsSrc.String())
	want.add("ip.dst", tsDst.String())
	want.add("udp.srcport", tsDec(port))
	want.add("udp.dstport", tsDec(port))
	return b
}

// tsMessage builds a message of items (and an SK or SKF payload last when
// sk is set) and what TShark must show of it.
func tsMessage(t *testing.T, h ikev2.Header, items []rtItem, sk func(b *ikev2.Builder)) ([]byte, tsExp) {
	t.Helper()
	b := ikev2.NewMessage(nil, &h)
	for _, it := range items {
		rtAdd(t, &b, it)
	}
	if sk != nil {
		sk(&b)
	}
	wire, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	// The payload lengths are the decoder's; every other value comes from
	// the items.
	var m ikev2.Message
	if err := m.Decode(wire); err != nil {
		t.Fatal(err)
	}
	e := tsExp{}
	e.add("isakmp.ispi", h.InitiatorSPI.String())
	e.add("isakmp.rspi", h.ResponderSPI.String())
	e.add("isakmp.version", fmt.Sprintf("0x2%x", h.MinorVersion))
	e.add("isakmp.exchangetype", tsDec(h.Exchange))
	e.add("isakmp.flags", fmt.Sprintf("0x%02x", uint8(h.Flags)))
	e.add("isakmp.messageid", fmt.Sprintf("0x%08x", h.MessageID))
	e.add("isakmp.length", tsDec(len(wire)))
	first := ikev2.PayloadNone
	if len(items) > 0 {
		first = items[0].typ
	} else if sk != nil {
		first = m.Payloads[0].Type
	}
	e.add("isakmp.nextpayload", tsDec(first))
	for i, it := range items {
		next := ikev2.PayloadNone
		if i+1 < len(items) {
			next = items[i+1].typ
		} else if sk != nil {
			next = m.Payloads[len(items)].Type
		}
		e.add("isakmp.nextpayload", tsDec(next))
		e.add("isakmp.typepayload", tsDec(it.typ))
		e.add("isakmp.payloadlength", tsDec(m.Payloads[i].Len()))
		e.payload(it)
	}
	if sk != nil {
		p := &m.Payloads[len(m.Payloads)-1]
		e.add("isakmp.nextpayload", tsDec(p.Next))
		e.add("isakmp.typepayload", tsDec(p.Type))
		e.add("isakmp.payloadlength", tsDec(p.Len()))
		if p.Type == ikev2.PayloadSK {
			e.add("isakmp.enc.data", "1")
		} else {
			e.add("isakmp.frag.number", tsDec(binary.BigEndian.Uint16(p.Body)))
			e.add("isakmp.frag.total", tsDec(binary.BigEndian.Uint16(p.Body[2:])))
		}
	}
	return wire, e
}

// payload adds what TShark shows of one payload, from its value.
func (e tsExp) payload(it rtItem) {
	x := hex.EncodeToString
	switch v := it.val.(type) {
	case *ikev2.SA:
		for i, p := range v.Proposals {
			last := 2
			if i == len(v.Proposals)-1 {
				last = 0
			}
			plen := 8 + len(p.SPI)
			for _, tr := range p.Transforms {
				plen += confTransformLen(&tr)
			}
			e.add("isakmp.nextpayload", tsDec(last))
			e.add("isakmp.typepayload", "2")
			e.add("isakmp.payloadlength", tsDec(plen))
			e.add("isakmp.prop.number", tsDec(p.Number))
			e.add("isakmp.prop.protoid", tsDec(p.Protocol))
			e.add("isakmp.spisize", tsDec(len(p.SPI)))
			if len(p.SPI) > 0 {
				e.add("isakmp.spi", x(p.SPI))
			}
			e.add("isakmp.prop.transforms", tsDec(len(p.Transforms)))
			for j, tr := range p.Transforms {
				last := 3
				if j == len(p.Transforms)-1 {
					last = 0
				}
				e.add("isakmp.nextpayload", tsDec(last))
				e.add("isakmp.typepayload", "3")
				e.add("isakmp.payloadlength", tsDec(confTransformLen(&tr)))
				e.add("isakmp.tf.type", tsDec(tr.Type))
				switch tr.Type {
				case ikev2.TransformENCR:
					e.add("isakmp.tf.id.encr", tsDec(tr.ID))
				case ikev2.TransformPRF:
					e.add("isakmp.tf.id.prf", tsDec(tr.ID))
				case ikev2.TransformINTEG:
					e.add("isakmp.tf.id.integ", tsDec(tr.ID))
				case ikev2.TransformDH:
					e.add("isakmp.tf.id.dh", tsDec(tr.ID))
				case ikev2.TransformESN:
					e.add("isakmp.tf.id.esn", tsDec(tr.ID))
				default:
					e.add("isakmp.tf.id", tsDec(tr.ID))
				}
				for _, a := range tr.Attributes {
					e.add("isakmp.ike2.attr.type", tsDec(a.Type))
					e.add("isakmp.ike2.attr.format", tsBool(a.TV))
					switch {
					case a.TV:
						e.add("isakmp.ike2.attr.value", fmt.Sprintf("%04x", a.Value))
					case len(a.Data) > 0:
						e.add("isakmp.ike2.attr.length", tsDec(len(a.Data)))
						e.add("isakmp.ike2.attr.value", x(a.Data))
					default:
						e.add("isakmp.ike2.attr.length", "0")
						e.add("_ws.expert.message", "Attribute value is empty")
					}
					if a.Type == ikev2.AttrKeyLength {
						e.add("isakmp.ike2.attr.key_length", tsDec(a.Value))
					}
				}
			}
		}
	case *ikev2.KE:
		e.add("isakmp.key_exchange.dh_group", tsDec(v.Group))
		e.add("isakmp.key_exchange.data", x(v.Data))
	case *ikev2.ID:
		e.add("isakmp.id.type", tsDec(v.Type))
		switch v.Type {
		case ikev2.IDFQDN:
			e.add("isakmp.id.data.fqdn", string(v.Data))
		case ikev2.IDIPv4Addr, ikev2.IDIPv6Addr:
			a, _ := v.Addr()
			if a.Is4() {
				e.add("isakmp.id.data.ipv4_addr", a.String())
			} else {
				e.add("isakmp.id.data.ipv6_addr", a.String())
			}
		case ikev2.IDKeyID:
			e.add("isakmp.id.data.key_id", x(v.Data))
		}
	case *ikev2.Cert:
		if it.typ == ikev2.PayloadCERT {
			e.add("isakmp.cert.encoding", tsDec(v.Encoding))
		} else {
			e.add("isakmp.certreq.type", tsDec(v.Encoding))
		}
	case *ikev2.Auth:
		e.add("isakmp.auth.method", tsDec(v.Method))
		e.add("isakmp.auth.data", x(v.Data))
	case *ikev2.Notify:
		e.add("isakmp.notify.protoid", tsDec(v.Protocol))
		e.add("isakmp.spisize", tsDec(len(v.SPI)))
		if len(v.SPI) > 0 {
			e.add("isakmp.spi", x(v.SPI))
		}
		e.add("isakmp.notify.msgtype", tsDec(v.Type))
		if len(v.Data) > 0 {
			e.add("isakmp.notify.data", x(v.Data))
		} else {
			e.add("isakmp.notify.data", "<MISSING>")
		}
	case *ikev2.Delete:
		e.add("isakmp.delete.protoid", tsDec(v.Protocol))
		e.add("isakmp.spisize", tsDec(v.SPISize))
		e.add("isakmp.spinum", tsDec(v.Count()))
		for i := range v.Count() {
			e.add("isakmp.delete.spi", x(v.SPI(i)))
		}
	case *ikev2.TrafficSelectors:
		e.add("isakmp.ts.number", tsDec(len(v.Selectors)))
		for _, s := range v.Selectors {
			e.add("isakmp.ts.type", tsDec(s.Type))
			e.add("isakmp.ts.selector_length", tsDec(tsSelectorLen(&s)))
			if s.Type != ikev2.TSIPv4AddrRange && s.Type != ikev2.TSIPv6AddrRange {
				continue // Fibre Channel: TShark's isakmp.ts.*_fc, not asked
			}
			e.add("isakmp.ts.protoid", tsDec(s.Protocol))
			e.add("isakmp.ts.start_port", tsDec(s.StartPort))
			e.add("isakmp.ts.end_port", tsDec(s.EndPort))
			switch s.Type {
			case ikev2.TSIPv4AddrRange:
				e.add("isakmp.ts.start_ipv4", s.Start.String())
				e.add("isakmp.ts.end_ipv4", s.End.String())
			case ikev2.TSIPv6AddrRange:
				e.add("isakmp.ts.start_ipv6", s.Start.String())
				e.add("isakmp.ts.end_ipv6", s.End.String())
			}
		}
	case *ikev2.CP:
		e.add("isakmp.cfg.type", tsDec(v.Type))
		for a := range v.All() {
			e.add("isakmp.cfg.attr.type", tsDec(a.Type))
			e.add("isakmp.cfg.attr.length", tsDec(len(a.Value)))
			if len(a.Value) == 0 {
				e.add("_ws.expert.message", "Attribute value is empty")
			}
		}
	case []byte:
		switch it.typ {
		case ikev2.PayloadNonce:
			e.add("isakmp.nonce", x(v))
		case ikev2.PayloadVendorID:
			e.add("isakmp.vid_bytes", x(v))
		case ikev2.PayloadEAP:
			e.add("eap.code", tsDec(v[0]))
			e.add("eap.id", tsDec(v[1]))
			e.add("eap.len", tsDec(binary.BigEndian.Uint16(v[2:])))
			e.add("eap.type", tsDec(v[4]))
			e.add("eap.identity", string(v[5:]))
		}
	}
}

func tsBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func tsSelectorLen(s *ikev2.TrafficSelector) int {
	switch s.Type {
	case ikev2.TSIPv4AddrRange:
		return 16
	case ikev2.TSIPv6AddrRange:
		return 40
	}
	return 4 + len(s.Data)
}

// tsFields are the fields asked of TShark; every one is compared for every
// frame, so a field a frame should not have must be empty.
var tsFields = []string{
	"ip.src", "ip.dst", "udp.srcport", "udp.dstport",
	"isakmp.ispi", "isakmp.rspi", "isakmp.version", "isakmp.exchangetype", "isakmp.flags", "isakmp.messageid", "isakmp.length",
	"isakmp.nextpayload", "isakmp.typepayload", "isakmp.payloadlength",
	"isakmp.prop.number", "isakmp.prop.protoid", "isakmp.spisize", "isakmp.spi", "isakmp.prop.transforms",
	"isakmp.tf.type", "isakmp.tf.id.encr", "isakmp.tf.id.prf", "isakmp.tf.id.integ", "isakmp.tf.id.dh", "isakmp.tf.id.esn", "isakmp.tf.id",
	"isakmp.ike2.attr.type", "isakmp.ike2.attr.format", "isakmp.ike2.attr.length", "isakmp.ike2.attr.value", "isakmp.ike2.attr.key_length",
	"isakmp.key_exchange.dh_group", "isakmp.key_exchange.data",
	"isakmp.id.type", "isakmp.id.data.fqdn", "isakmp.id.data.ipv4_addr", "isakmp.id.data.ipv6_addr", "isakmp.id.data.key_id",
	"isakmp.cert.encoding", "isakmp.certreq.type", "isakmp.auth.method", "isakmp.auth.data", "isakmp.nonce",
	"isakmp.notify.protoid", "isakmp.notify.msgtype", "isakmp.notify.data",
	"isakmp.delete.protoid", "isakmp.spinum", "isakmp.delete.spi", "isakmp.vid_bytes",
	"isakmp.ts.number", "isakmp.ts.type", "isakmp.ts.protoid", "isakmp.ts.selector_length", "isakmp.ts.start_port", "isakmp.ts.end_port",
	"isakmp.ts.start_ipv4", "isakmp.ts.end_ipv4", "isakmp.ts.start_ipv6", "isakmp.ts.end_ipv6",
	"isakmp.cfg.type", "isakmp.cfg.attr.type", "isakmp.cfg.attr.length",
	"eap.code", "eap.id", "eap.len", "eap.type", "eap.identity",
	"isakmp.enc.data", "isakmp.frag.number", "isakmp.frag.total",
	"_ws.malformed", "_ws.expert.message",
}

func tsFrames(t *testing.T) []tsFrame {
	var frames []tsFrame
	add := func(name string, h ikev2.Header, items []rtItem, sk func(*ikev2.Builder), natt bool) {
		wire, want := tsMessage(t, h, items, sk)
		frames = append(frames, tsFrame{name: name, data: tsUDP(wire, natt, uint16(len(frames)+1), want), want: want})
	}
	// katSAInit, built from its values.
	kat := []rtItem{
		{ikev2.PayloadSA, katSA()},
		{ikev2.PayloadKE, &ikev2.KE{Group: ikev2.DHECP256, Data: katSeq(0, 64)}},
		{ikev2.PayloadNonce, katSeq(0xa0, 32)},
		{ikev2.PayloadNotify, &ikev2.Notify{Type: ikev2.NotifyNATDetectionSourceIP, Data: katRepeat(0x11, 20)}},
		{ikev2.PayloadNotify, &ikev2.Notify{Type: ikev2.NotifyNATDetectionDestinationIP, Data: katRepeat(0x22, 20)}},
	}
	add("IKE_SA_INIT", katHeader(), kat, nil, false)

	// Every payload type, not in an exchange that would have them all
	// (TShark does not mind), on port 4500, ending with an SK payload.
	var items []rtItem
	for _, it := range rtItems() {
		if id, ok := it.val.(*ikev2.ID); ok && len(id.Data) == 0 {
			continue // TShark 4.0's dissector bug, see the top
		}
		if it.typ.Known() {
			items = append(items, it)
		}
	}
	h := ikev2.Header{InitiatorSPI: 0x1111111111111111, ResponderSPI: 0x2222222222222222, Exchange: ikev2.ExchangeIKEAuth,
		Flags: ikev2.FlagResponse, MessageID: 1}
	add("every payload", h, items, func(b *ikev2.Builder) { b.Encrypted(ikev2.PayloadIDi, 48) }, true)

	h = ikev2.Header{InitiatorSPI: 0x1111111111111111, ResponderSPI: 0x2222222222222222, Exchange: ikev2.ExchangeInformational,
		Flags: ikev2.FlagInitiator, MessageID: 7}
	add("SKF", h, nil, func(b *ikev2.Builder) { b.Fragment(ikev2.PayloadDelete, 2, 3, 40) }, true)
	return frames
}

// tsWritePcap writes frames as a classic pcap of raw IP packets
// (LINKTYPE_RAW, 101).
func tsWritePcap(path string, frames []tsFrame) error {
	pkts := make([][]byte, len(frames))
	for i := range frames {
		pkts[i] = frames[i].data
	}
	return capturetest.WriteRawPcap(path, pkts)
}

func TestTsharkDecodesEveryPayload(t *testing.T) {
	tshark := testenv.RequireTool(t, "tshark")
	frames := tsFrames(t)
	path := filepath.Join(t.TempDir(), "ikev2.pcap")
	if err := tsWritePcap(path, frames); err != nil {
		t.Fatal(err)
	}
	args := []string{"-r", path, "-n", "-T", "fields",
		"-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|", "-E", "quote=n"}
	for _, f := range tsFields {
		args = append(args, "-e", f)
	}
	out := capturetest.Tshark(t, tshark, args...)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(frames) {
		t.Fatalf("tshark gave %d lines for %d frames", len(lines), len(frames))
	}
	for i, line := range lines {
		f := &frames[i]
		cols := strings.Split(line, "\t")
		if len(cols) != len(tsFields) {
			t.Fatalf("frame %d: %d columns, want %d", i+1, len(cols), len(tsFields))
		}
		for name := range f.want {
			if !strings.Contains(" "+strings.Join(tsFields, " ")+" ", " "+name+" ") {
				t.Fatalf("test bug: expected field %s is not asked of tshark", name)
			}
		}
		var diffs []string
		for j, name := range tsFields {
			if want := strings.Join(f.want[name], "|"); cols[j] != want {
				diffs = append(diffs, fmt.Sprintf("  %s: tshark %q, encoded %q", name, cols[j], want))
			}
		}
		if len(diffs) > 0 {
			t.Errorf("frame %d (%s): tshark disagrees:\n%s", i+1, f.name, strings.Join(diffs, "\n"))
		}
	}
}

// tsValueNames reads `tshark -G values`: for each field, every name TShark
// has for each single value (a field may have several tables, IKEv1's and
// IKEv2's).
func tsValueNames(t *testing.T, tshark string) map[string]map[int][]string {
	out := capturetest.Tshark(t, tshark, "-G", "values")
	names := map[string]map[int][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		var field, name string
		var v int
		switch {
		case len(f) == 4 && f[0] == "V":
			n, err := strconv.Atoi(f[2])
			if err != nil {
				continue
			}
			field, v, name = f[1], n, f[3]
		case len(f) == 5 && f[0] == "R" && f[2] == f[3]:
			n, err := strconv.Atoi(f[2])
			if err != nil {
				continue
			}
			field, v, name = f[1], n, f[4]
		default:
			continue
		}
		if !strings.HasPrefix(field, "isakmp.") {
			continue
		}
		if names[field] == nil {
			names[field] = map[int][]string{}
		}
		names[field][v] = append(names[field][v], strings.TrimSpace(name))
	}
	return names
}

// TestNamesMatchTshark: wherever both this package and TShark 4.0 name a
// value, the names are the same, except for the few listed (TShark's typos
// and its IKEv1-era names).
func TestNamesMatchTshark(t *testing.T) {
	tshark := testenv.RequireTool(t, "tshark")
	names := tsValueNames(t, tshark)
	type set struct {
		field    string
		max      int
		name     func(v int) string
		fallback func(v int) string
		except   map[int]string // ours, where we differ on purpose
	}
	sets := []set{
		{"isakmp.exchangetype", 255, func(v int) string { return ikev2.ExchangeType(v).String() }, func(v int) string { return fmt.Sprintf("exchange %d", v) }, nil},
		{"isakmp.notify.msgtype", 65535, func(v int) string { return ikev2.NotifyType(v).String() }, func(v int) string {
			if ikev2.NotifyType(v).IsError() {
				return fmt.Sprintf("error notify %d", v)
			}
			return fmt.Sprintf("status notify %d", v)
		}, map[int]string{0: "NONE"}},
		{"isakmp.tf.type", 255, func(v int) string { return ikev2.TransformType(v).String() }, func(v int) string { return fmt.Sprintf("transform type %d", v) }, nil},
		{"isakmp.tf.id.encr", 65535, func(v int) string { return ikev2.EncrID(v).String() }, func(v int) string { return fmt.Sprintf("ENCR %d", v) }, nil},
		{"isakmp.tf.id.prf", 65535, func(v int) string { return ikev2.PRFID(v).String() }, func(v int) string { return fmt.Sprintf("PRF %d", v) },
			map[int]string{4: "PRF_AES128_XCBC", 8: "PRF_AES128_CMAC"}},
		{"isakmp.tf.id.integ", 65535, func(v int) string { return ikev2.IntegID(v).String() }, func(v int) string { return fmt.Sprintf("INTEG %d", v) }, nil},
		{"isakmp.tf.id.dh", 65535, func(v int) string { return ikev2.DHGroup(v).String() }, func(v int) string { return fmt.Sprintf("DH group %d", v) },
			map[int]string{0: "NONE"}},
		{"isakmp.tf.id.esn", 65535, func(v int) string { return ikev2.ESNID(v).String() }, func(v int) string { return fmt.Sprintf("ESN %d", v) }, nil},
		{"isakmp.prop.protoid", 255, func(v int) string { return ikev2.Protocol(v).String() }, func(v int) string { return fmt.Sprintf("protocol %d", v) }, nil},
		{"isakmp.id.type", 255, func(v int) string { return ikev2.IDType(v).String() }, func(v int) string { return fmt.Sprintf("ID type %d", v) },
			map[int]string{12: "ID_FC_NAME"}}, // TShark: IKEv1's KEY_LIST
		{"isakmp.auth.method", 255, func(v int) string { return ikev2.AuthMethod(v).String() }, func(v int) string { return fmt.Sprintf("auth method %d", v) }, nil},
		{"isakmp.cert.encoding", 255, func(v int) string { return ikev2.CertEncoding(v).String() }, func(v int) string { return fmt.Sprintf("cert encoding %d", v) }, nil},
		{"isakmp.ts.type", 255, func(v int) string { return ikev2.TSType(v).String() }, func(v int) string { return fmt.Sprintf("TS type %d", v) }, nil},
		{"isakmp.cfg.type", 255, func(v int) string { return ikev2.CFGType(v).String() }, func(v int) string { return fmt.Sprintf("CFG type %d", v) }, nil},
	}
	compared := 0
	for _, s := range sets {
		theirs := names[s.field]
		if len(theirs) == 0 {
			t.Errorf("tshark -G values has no %s", s.field)
			continue
		}
		for v := 0; v <= s.max; v++ {
			ours := s.name(v)
			if ours == s.fallback(v) {
				continue
			}
			if want, ok := s.except[v]; ok {
				if ours != want {
					t.Errorf("%s %d: %q, want %q", s.field, v, ours, want)
				}
				continue
			}
			tn, ok := theirs[v]
			if !ok {
				continue // a value newer than TShark 4.0
			}
			compared++
			if !slices.Contains(tn, ours) {
				t.Errorf("%s %d: ours %q, TShark %q", s.field, v, ours, tn)
			}
		}
	}
	t.Logf("%d names compared with TShark's", compared)
	if compared < 150 {
		t.Errorf("only %d names compared", compared)
	}
}
