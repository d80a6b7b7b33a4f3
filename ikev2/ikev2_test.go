package ikev2_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dmvpn/dmvpn/ikev2"
)

var rtCmp = []cmp.Option{
	cmpopts.IgnoreUnexported(ikev2.SA{}),
	cmpopts.EquateComparable(netip.Addr{}),
	cmpopts.EquateEmpty(),
}

// rtItem is one payload of a round-trip message: its type and its typed
// value (what the Builder is given and the accessor must give back).
type rtItem struct {
	typ ikev2.PayloadType
	val any
}

func rtAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// rtItems has every payload type of RFC 7296 §3 (SK apart) with the corner
// cases of each: several proposals, SPIs of every size, TV and TLV
// attributes, notifications with and without SPI, both Delete forms, every
// selector type, CP attributes, an unknown payload type.
func rtItems() []rtItem {
	cp := ikev2.CP{Type: ikev2.CFGRequest}
	var err error
	for _, a := range []ikev2.CPAttribute{{Type: 1}, {Type: 8, Value: katSeq(1, 17)}} { // INTERNAL_IP4_ADDRESS, INTERNAL_IP6_ADDRESS
		if cp.Attributes, err = ikev2.AppendCPAttribute(cp.Attributes, a); err != nil {
			panic(err)
		}
	}
	return []rtItem{
		{ikev2.PayloadSA, &ikev2.SA{Proposals: []ikev2.Proposal{
			{Number: 1, Protocol: ikev2.ProtocolESP, SPI: []byte{0xc0, 0x01, 0xd0, 0x0d}, Transforms: []ikev2.Transform{
				{Type: ikev2.TransformENCR, ID: uint16(ikev2.EncrAESGCM16), Attributes: []ikev2.Attribute{ikev2.KeyLength(128)}},
				{Type: ikev2.TransformENCR, ID: uint16(ikev2.EncrAESGCM16), Attributes: []ikev2.Attribute{ikev2.KeyLength(256)}},
				{Type: ikev2.TransformDH, ID: uint16(ikev2.DHNone)},
				{Type: ikev2.TransformESN, ID: uint16(ikev2.ESNNo)},
				{Type: ikev2.TransformESN, ID: uint16(ikev2.ESNYes)},
			}},
			{Number: 2, Protocol: ikev2.ProtocolESP, SPI: []byte{0xc0, 0x01, 0xd0, 0x0d}, Transforms: []ikev2.Transform{
				{Type: ikev2.TransformENCR, ID: uint16(ikev2.EncrChaCha20Poly1305)},
				{Type: ikev2.TransformESN, ID: uint16(ikev2.ESNNo)},
			}},
			{Number: 3, Protocol: ikev2.ProtocolAH, SPI: []byte{1, 2, 3, 4}, Transforms: []ikev2.Transform{
				{Type: ikev2.TransformINTEG, ID: uint16(ikev2.IntegHMACSHA2512256)},
			}},
			// An IKE rekey proposal with its new 8-octet SPI, and a
			// transform carrying an unknown TLV attribute after the
			// key length.
			{Number: 4, Protocol: ikev2.ProtocolIKE, SPI: katSeq(0x80, 8), Reserved: 0x5a, Transforms: []ikev2.Transform{
				{Type: ikev2.TransformENCR, ID: uint16(ikev2.EncrAESCBC), Reserved: [2]byte{1, 2}, Attributes: []ikev2.Attribute{
					ikev2.KeyLength(192), {Type: 0x4001, Data: []byte("private")}, {Type: 0x4002},
				}},
				{Type: ikev2.TransformPRF, ID: uint16(ikev2.PRFHMACSHA2512)},
				{Type: ikev2.TransformINTEG, ID: uint16(ikev2.IntegHMACSHA196)},
				{Type: ikev2.TransformDH, ID: uint16(ikev2.DHMODP2048)},
				{Type: 241, ID: 0xffff}, // private use
			}},
		}}},
		{ikev2.PayloadKE, &ikev2.KE{Group: ikev2.DHCurve25519, Data: append([]byte{0, 0}, katSeq(7, 30)...)}},
		{ikev2.PayloadKE, &ikev2.KE{Group: 0x7777, Data: []byte{1}, Reserved: 0xbeef}}, // unknown group: any length
		{ikev2.PayloadIDi, &ikev2.ID{Type: ikev2.IDFQDN, Data: []byte("spoke1.dmvpn.example")}},
		{ikev2.PayloadIDr, &ikev2.ID{Type: ikev2.IDIPv4Addr, Data: []byte{192, 0, 2, 1}}},
		{ikev2.PayloadIDr, &ikev2.ID{Type: ikev2.IDIPv6Addr, Data: rtAddr("2001:db8::1").AsSlice(), Reserved: [3]byte{9, 8, 7}}},
		{ikev2.PayloadIDi, &ikev2.ID{Type: ikev2.IDNull}},
		{ikev2.PayloadIDi, &ikev2.ID{Type: ikev2.IDKeyID, Data: []byte{0}}},
		{ikev2.PayloadCERT, &ikev2.Cert{Encoding: ikev2.CertHashURLX509, Data: append(katSeq(0x30, 20), "http://ca.example/spoke1.der"...)}},
		{ikev2.PayloadCERTREQ, &ikev2.Cert{Encoding: ikev2.CertX509Signature}},
		{ikev2.PayloadAUTH, &ikev2.Auth{Method: ikev2.AuthSharedKeyMIC, Data: katRepeat(0xaa, 32)}},
		{ikev2.PayloadNonce, katSeq(0, ikev2.MinNonceLen)},
		{ikev2.PayloadNonce, katSeq(0, ikev2.MaxNonceLen)},
		{ikev2.PayloadNotify, &ikev2.Notify{Protocol: ikev2.ProtocolESP, Type: ikev2.NotifyRekeySA, SPI: []byte{0xca, 0xfe, 0xba, 0xbe}}},
		{ikev2.PayloadNotify, &ikev2.Notify{Protocol: ikev2.ProtocolIKE, Type: ikev2.NotifyInvalidSPI, SPI: katSeq(1, 8)}},
		{ikev2.PayloadNotify, &ikev2.Notify{Type: ikev2.NotifyCookie, Data: katSeq(0, ikev2.MaxCookieLen)}},
		{ikev2.PayloadNotify, &ikev2.Notify{Type: ikev2.NotifyInvalidKEPayload, Data: []byte{0, 19}}},
		{ikev2.PayloadNotify, &ikev2.Notify{Type: ikev2.NotifyUseTransportMode}},
		{ikev2.PayloadNotify, &ikev2.Notify{Protocol: ikev2.ProtocolAH, Type: 40000, Data: []byte("private status")}}, // empty SPI: protocol ignored
		{ikev2.PayloadDelete, &ikev2.Delete{Protocol: ikev2.ProtocolESP, SPISize: 4, SPIs: []byte{0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe}}},
		{ikev2.PayloadDelete, &ikev2.Delete{Protocol: ikev2.ProtocolIKE}},
		{ikev2.PayloadVendorID, []byte("dmvpn")},
		{ikev2.PayloadTSi, &ikev2.TrafficSelectors{Selectors: []ikev2.TrafficSelector{
			ikev2.HostSelector(rtAddr("198.51.100.7"), 47),
			{Type: ikev2.TSIPv6AddrRange, Protocol: 6, StartPort: 1000, EndPort: 2000, Start: rtAddr("2001:db8::"), End: rtAddr("2001:db8::ffff")},
			{Type: ikev2.TSIPv4AddrRange, StartPort: 0xffff, EndPort: 0, Start: rtAddr("0.0.0.0"), End: rtAddr("255.255.255.255")}, // OPAQUE ports
		}}},
		{ikev2.PayloadTSr, &ikev2.TrafficSelectors{Reserved: [3]byte{1, 0, 0}, Selectors: []ikev2.TrafficSelector{
			{Type: 9, Data: katSeq(0, 20)}, // TS_FC_ADDR_RANGE: raw
			ikev2.HostSelector(rtAddr("::ffff:192.0.2.9"), 47),
		}}},
		{ikev2.PayloadTSr, &ikev2.TrafficSelectors{}},
		{ikev2.PayloadCP, &cp},
		{ikev2.PayloadEAP, []byte{2, 7, 0, 9, 1, 'u', 's', 'e', 'r'}}, // Response, Identity "user"
		// Unknown payload types, not critical: kept and re-emitted.
		{200, &ikev2.Payload{Type: 200, Reserved: 0x11, Body: []byte("opaque")}},
		{ikev2.PayloadGSPM, &ikev2.Payload{Type: ikev2.PayloadGSPM}},
	}
}

func rtAdd(t testing.TB, b *ikev2.Builder, it rtItem) {
	t.Helper()
	switch v := it.val.(type) {
	case *ikev2.SA:
		b.SA(v)
	case *ikev2.KE:
		b.KE(v)
	case *ikev2.ID:
		if it.typ == ikev2.PayloadIDi {
			b.IDi(v)
		} else {
			b.IDr(v)
		}
	case *ikev2.Cert:
		if it.typ == ikev2.PayloadCERT {
			b.Cert(v)
		} else {
			b.CertReq(v)
		}
	case *ikev2.Auth:
		b.Auth(v)
	case *ikev2.Notify:
		b.Notify(v)
	case *ikev2.Delete:
		b.Delete(v)
	case *ikev2.TrafficSelectors:
		if it.typ == ikev2.PayloadTSi {
			b.TSi(v)
		} else {
			b.TSr(v)
		}
	case *ikev2.CP:
		b.CP(v)
	case *ikev2.Payload:
		b.Payload(v)
	case []byte:
		switch it.typ {
		case ikev2.PayloadNonce:
			b.Nonce(v)
		case ikev2.PayloadVendorID:
			b.VendorID(v)
		case ikev2.PayloadEAP:
			b.EAP(v)
		default:
			t.Fatalf("test bug: []byte for %v", it.typ)
		}
	default:
		t.Fatalf("test bug: %T", v)
	}
	if err := b.Err(); err != nil {
		t.Fatalf("adding %v: %v", it.typ, err)
	}
}

// rtGet decodes p into a value of the kind rtItem holds for its type.
func rtGet(p *ikev2.Payload, like any) (any, error) {
	switch like.(type) {
	case *ikev2.SA:
		var sa ikev2.SA
		return &sa, p.SA(&sa)
	case *ikev2.KE:
		v, err := p.KE()
		return &v, err
	case *ikev2.ID:
		v, err := p.ID()
		return &v, err
	case *ikev2.Cert:
		v, err := p.Cert()
		return &v, err
	case *ikev2.Auth:
		v, err := p.Auth()
		return &v, err
	case *ikev2.Notify:
		v, err := p.Notify()
		return &v, err
	case *ikev2.Delete:
		v, err := p.Delete()
		return &v, err
	case *ikev2.TrafficSelectors:
		var ts ikev2.TrafficSelectors
		return &ts, p.TrafficSelectors(&ts)
	case *ikev2.CP:
		v, err := p.CP()
		return &v, err
	case *ikev2.Payload:
		return &ikev2.Payload{Type: p.Type, Critical: p.Critical, Reserved: p.Reserved, Body: p.Body}, nil
	case []byte:
		switch p.Type {
		case ikev2.PayloadNonce:
			return p.Nonce()
		case ikev2.PayloadVendorID:
			return p.VendorID()
		case ikev2.PayloadEAP:
			return p.EAP()
		}
	}
	return nil, fmt.Errorf("test bug: %T for %v", like, p.Type)
}

// rtCheck decodes the payload list ps against items.
func rtCheck(t *testing.T, ps []ikev2.Payload, items []rtItem) {
	t.Helper()
	if len(ps) < len(items) {
		t.Fatalf("%d payloads decoded, %d written", len(ps), len(items))
	}
	for i, it := range items {
		p := &ps[i]
		if p.Type != it.typ {
			t.Errorf("payload %d: type %v, want %v", i, p.Type, it.typ)
			continue
		}
		got, err := rtGet(p, it.val)
		if err != nil {
			t.Errorf("payload %d (%v): %v", i, p.Type, err)
			continue
		}
		if d := cmp.Diff(it.val, got, rtCmp...); d != "" {
			t.Errorf("payload %d (%v) (-written +decoded):\n%s", i, p.Type, d)
		}
	}
}

// TestRoundTripEveryPayload encodes every payload type with the Builder,
// decodes it, checks each typed value against what was written, and
// re-encodes the message both ways (raw and typed) to the same octets.
func TestRoundTripEveryPayload(t *testing.T) {
	items := rtItems()
	h := ikev2.Header{
		InitiatorSPI: 0x1111111111111111, ResponderSPI: 0x2222222222222222,
		MinorVersion: 3, Exchange: ikev2.ExchangeIKEAuth, Flags: ikev2.FlagInitiator | ikev2.FlagVersion | 0x80, MessageID: 0xfedcba98,
	}
	b := ikev2.NewMessage(nil, &h)
	for _, it := range items {
		rtAdd(t, &b, it)
	}
	skBody := katSeq(0x40, 48)
	off := b.Encrypted(ikev2.PayloadIDi, len(skBody))
	wire, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	copy(wire[off:], skBody) // what ikev2/crypto would seal in place

	var m ikev2.Message
	if err := m.Decode(wire); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	wantH := h
	wantH.NextPayload, wantH.Length = ikev2.PayloadSA, uint32(len(wire))
	if m.Header != wantH {
		t.Errorf("header %+v, want %+v", m.Header, wantH)
	}
	if len(m.Payloads) != len(items)+1 {
		t.Fatalf("%d payloads, want %d", len(m.Payloads), len(items)+1)
	}
	rtCheck(t, m.Payloads, items)
	for i := range m.Payloads[:len(items)] {
		want := ikev2.PayloadSK
		if i+1 < len(items) {
			want = items[i+1].typ
		}
		if got := m.Payloads[i].Next; got != want {
			t.Errorf("payload %d: Next %v, want %v", i, got, want)
		}
	}
	e, ok := m.Encrypted()
	if !ok || e.First != ikev2.PayloadIDi || !bytes.Equal(e.Body, skBody) || !bytes.Equal(e.Associated, wire[:off]) {
		t.Errorf("Encrypted() = first %v, body %x, %d octets associated (%v); want IDi, %x, %d", e.First, e.Body, len(e.Associated), ok, skBody, off)
	}

	re, err := ikev2.AppendMessage(nil, &m.Header, m.Payloads)
	if err != nil || !bytes.Equal(re, wire) {
		t.Errorf("AppendMessage: %v\n got  %x\n want %x", err, re, wire)
	}
	typed, err := typedReencode(&m)
	if err != nil || !bytes.Equal(typed, wire) {
		t.Errorf("typed re-encoding: %v\n got  %x\n want %x", err, typed, wire)
	}
}

// TestInnerChain builds the payloads of an IKE_AUTH request as the
// plaintext of an SK payload, and decodes them with DecodeInner and
// DecodeChain: the same walker, the same checks.
func TestInnerChain(t *testing.T) {
	items := []rtItem{
		{ikev2.PayloadIDi, &ikev2.ID{Type: ikev2.IDIPv4Addr, Data: []byte{198, 51, 100, 7}}},
		{ikev2.PayloadAUTH, &ikev2.Auth{Method: ikev2.AuthSharedKeyMIC, Data: katSeq(0, 32)}},
		{ikev2.PayloadNotify, &ikev2.Notify{Type: ikev2.NotifyUseTransportMode}},
		{ikev2.PayloadSA, &ikev2.SA{Proposals: []ikev2.Proposal{{Number: 1, Protocol: ikev2.ProtocolESP, SPI: []byte{1, 2, 3, 4}, Transforms: []ikev2.Transform{
			{Type: ikev2.TransformENCR, ID: uint16(ikev2.EncrAESCBC), Attributes: []ikev2.Attribute{ikev2.KeyLength(128)}},
			{Type: ikev2.TransformINTEG, ID: uint16(ikev2.IntegHMACSHA196)},
			{Type: ikev2.TransformESN, ID: uint16(ikev2.ESNNo)},
		}}}}},
		{ikev2.PayloadTSi, &ikev2.TrafficSelectors{Selectors: []ikev2.TrafficSelector{ikev2.HostSelector(rtAddr("198.51.100.7"), 47)}}},
		{ikev2.PayloadTSr, &ikev2.TrafficSelectors{Selectors: []ikev2.TrafficSelector{ikev2.HostSelector(rtAddr("192.0.2.1"), 47)}}},
	}
	c := ikev2.NewChain([]byte("prefix"))
	for _, it := range items {
		rtAdd(t, &c, it)
	}
	chain, err := c.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(chain, []byte("prefix")) {
		t.Fatalf("NewChain did not append after dst")
	}
	plain := chain[len("prefix"):]
	if c.First() != ikev2.PayloadIDi {
		t.Errorf("First() = %v", c.First())
	}

	h := ikev2.Header{InitiatorSPI: 1, ResponderSPI: 2, Exchange: ikev2.ExchangeIKEAuth, Flags: ikev2.FlagInitiator, MessageID: 1}
	b := ikev2.NewMessage(nil, &h)
	b.Encrypted(c.First(), 16+len(plain)+16)
	wire, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	var m ikev2.Message
	if err := m.Decode(wire); err != nil {
		t.Fatal(err)
	}
	if err := m.DecodeInner(plain); err != nil {
		t.Fatalf("DecodeInner: %v", err)
	}
	rtCheck(t, m.Inner, items)
	if len(m.Inner) != len(items) {
		t.Errorf("%d inner payloads, want %d", len(m.Inner), len(items))
	}
	ps, err := ikev2.DecodeChain(nil, plain, ikev2.PayloadIDi)
	if err != nil || len(ps) != len(items) {
		t.Errorf("DecodeChain: %d payloads, %v", len(ps), err)
	}
	if p := ikev2.Find(m.Inner, ikev2.PayloadIDi); p == nil || !bytes.Equal(p.Body, []byte{1, 0, 0, 0, 198, 51, 100, 7}) {
		t.Errorf("IDi body (RestOfInitIDPayload) %x", p.Body)
	}
	id := items[0].val.(*ikev2.ID)
	if body, _ := id.AppendBody(nil); !bytes.Equal(body, ikev2.Find(m.Inner, ikev2.PayloadIDi).Body) {
		t.Errorf("ID.AppendBody %x differs from the payload body the Builder wrote", body)
	}
	if a, ok := id.Addr(); !ok || a != rtAddr("198.51.100.7") {
		t.Errorf("ID.Addr() = %v, %v", a, ok)
	}

	// A nested SK is refused, with the offset inside the plaintext.
	nested := append(bytes.Clone(plain[:len(plain):len(plain)]), 0, 0, 0, 4)
	last := ikev2.Find(m.Inner, ikev2.PayloadTSr).Offset
	nested[last] = byte(ikev2.PayloadSK)
	err = m.DecodeInner(nested)
	var de *ikev2.DecodeError
	if !errors.As(err, &de) || !errors.Is(err, ikev2.ErrInvalid) || !de.Inner || de.Offset != len(plain) || de.Payload != ikev2.PayloadSK {
		t.Errorf("nested SK: %v (%+v), want ErrInvalid at decrypted offset %d", err, de, len(plain))
	}
	// DecodeInner needs an SK payload.
	var plainMsg ikev2.Message
	if err := plainMsg.Decode(katBytes(t, katSAInit)); err != nil {
		t.Fatal(err)
	}
	if err := plainMsg.DecodeInner(plain); !errors.Is(err, ikev2.ErrInvalid) {
		t.Errorf("DecodeInner without SK: %v", err)
	}
}

func TestFragmentPayload(t *testing.T) {
	h := ikev2.Header{InitiatorSPI: 1, ResponderSPI: 2, Exchange: ikev2.ExchangeIKEAuth, Flags: ikev2.FlagInitiator, MessageID: 1}
	for _, tc := range []struct {
		first         ikev2.PayloadType
		number, total uint16
	}{{ikev2.PayloadIDi, 1, 3}, {ikev2.PayloadNone, 3, 3}} {
		b := ikev2.NewMessage(ikev2.AppendNonESPMarker(nil), &h)
		off := b.Fragment(tc.first, tc.number, tc.total, 40)
		out, err := b.Finish()
		if err != nil {
			t.Fatal(err)
		}
		wire, ok := ikev2.FromNATT(out)
		if !ok {
			t.Fatal("FromNATT refused our message")
		}
		var m ikev2.Message
		if err := m.Decode(wire); err != nil {
			t.Fatal(err)
		}
		f, ok := m.Fragment()
		if !ok || f.First != tc.first || f.Number != tc.number || f.Total != tc.total || len(f.Body) != 40 || len(f.Associated) != off || off != ikev2.HeaderLen+8 {
			t.Errorf("Fragment() = %+v, %v; body offset %d", f, ok, off)
		}
		if re, err := typedReencode(&m); err != nil || !bytes.Equal(re, wire) {
			t.Errorf("re-encoding: %v", err)
		}
	}
	b := ikev2.NewMessage(nil, &h)
	b.Fragment(ikev2.PayloadIDi, 4, 3, 1)
	if _, err := b.Finish(); !errors.Is(err, ikev2.ErrInvalid) {
		t.Errorf("fragment 4 of 3: Finish = %v, want ErrInvalid", err)
	}
}

// TestBuilderRefuses checks that the Builder refuses what Decode would,
// keeps the first error, and leaves dst as it was.
func TestBuilderRefuses(t *testing.T) {
	h := katHeader()
	for _, tc := range []struct {
		name string
		add  func(b *ikev2.Builder)
		want error
	}{
		{"short nonce", func(b *ikev2.Builder) { b.Nonce(make([]byte, ikev2.MinNonceLen-1)) }, ikev2.ErrBadLength},
		{"long nonce", func(b *ikev2.Builder) { b.Nonce(make([]byte, ikev2.MaxNonceLen+1)) }, ikev2.ErrBadLength},
		{"KE length for the group", func(b *ikev2.Builder) { b.KE(&ikev2.KE{Group: ikev2.DHMODP2048, Data: make([]byte, 255)}) }, ikev2.ErrBadLength},
		{"ESP SPI of 8", func(b *ikev2.Builder) {
			b.SA(&ikev2.SA{Proposals: []ikev2.Proposal{{Number: 1, Protocol: ikev2.ProtocolESP, SPI: make([]byte, 8), Transforms: []ikev2.Transform{{Type: 1, ID: 12}}}}})
		}, ikev2.ErrInvalid},
		{"proposals 1, 3", func(b *ikev2.Builder) {
			tr := []ikev2.Transform{{Type: 1, ID: 12}}
			b.SA(&ikev2.SA{Proposals: []ikev2.Proposal{{Number: 1, Protocol: 1, Transforms: tr}, {Number: 3, Protocol: 1, Transforms: tr}}})
		}, ikev2.ErrInvalid},
		{"empty SA", func(b *ikev2.Builder) { b.SA(&ikev2.SA{}) }, ikev2.ErrBadLength},
		{"IPv4 ID of 16", func(b *ikev2.Builder) { b.IDi(&ikev2.ID{Type: ikev2.IDIPv4Addr, Data: make([]byte, 16)}) }, ikev2.ErrBadLength},
		{"NAT-D of 16", func(b *ikev2.Builder) {
			b.Notify(&ikev2.Notify{Type: ikev2.NotifyNATDetectionSourceIP, Data: make([]byte, 16)})
		}, ikev2.ErrBadLength},
		{"delete ESP with odd SPIs", func(b *ikev2.Builder) {
			b.Delete(&ikev2.Delete{Protocol: ikev2.ProtocolESP, SPISize: 4, SPIs: make([]byte, 6)})
		}, ikev2.ErrBadLength},
		{"IPv6 selector for IPv4", func(b *ikev2.Builder) {
			b.TSi(&ikev2.TrafficSelectors{Selectors: []ikev2.TrafficSelector{{Type: ikev2.TSIPv6AddrRange, Start: rtAddr("192.0.2.1"), End: rtAddr("192.0.2.1")}}})
		}, nil},
		{"payload after SK", func(b *ikev2.Builder) { b.Encrypted(ikev2.PayloadNone, 0); b.VendorID(nil) }, ikev2.ErrAfterEncrypted},
		{"critical bit kept, reserved too wide", func(b *ikev2.Builder) { b.Payload(&ikev2.Payload{Type: 201, Reserved: 0x80}) }, ikev2.ErrTooLong},
		{"payload too long", func(b *ikev2.Builder) { b.VendorID(make([]byte, 0x10000)) }, ikev2.ErrTooLong},
		{"too many payloads", func(b *ikev2.Builder) {
			for range ikev2.MaxPayloads + 1 {
				b.VendorID(nil)
			}
		}, ikev2.ErrTooMany},
		{"first error kept", func(b *ikev2.Builder) { b.Nonce(nil); b.Encrypted(0, -1) }, ikev2.ErrBadLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			b := ikev2.NewMessage(dst, &h)
			tc.add(&b)
			out, err := b.Finish()
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Finish: %v, want %v", err, tc.want)
			}
			if string(out) != "keep" {
				t.Errorf("Finish returned %q on error, want dst unchanged", out)
			}
		})
	}
	c := ikev2.NewChain(nil)
	c.Encrypted(ikev2.PayloadNone, 16)
	if _, err := c.Finish(); !errors.Is(err, ikev2.ErrInvalid) {
		t.Errorf("SK inside a chain: %v, want ErrInvalid", err)
	}
}

// TestReuse decodes different messages into one Message and one SA: the
// results must be those of fresh values, whatever came before.
func TestReuse(t *testing.T) {
	big := rtItems()[0].val.(*ikev2.SA)
	small := katSA()
	var reused ikev2.SA
	for _, want := range []*ikev2.SA{big, small, big, small} {
		h := katHeader()
		b := ikev2.NewMessage(nil, &h)
		b.SA(want)
		wire, err := b.Finish()
		if err != nil {
			t.Fatal(err)
		}
		var m ikev2.Message
		if err := m.Decode(wire); err != nil {
			t.Fatal(err)
		}
		if err := m.Payloads[0].SA(&reused); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, &reused, rtCmp...); d != "" {
			t.Errorf("reused SA (-want +got):\n%s", d)
		}
	}
	var ts ikev2.TrafficSelectors
	for _, it := range rtItems() {
		if it.typ != ikev2.PayloadTSi && it.typ != ikev2.PayloadTSr {
			continue
		}
		want := it.val.(*ikev2.TrafficSelectors)
		body, err := want.AppendBody(nil)
		if err != nil {
			t.Fatal(err)
		}
		p := ikev2.Payload{Type: it.typ, Offset: ikev2.HeaderLen, Body: body}
		if err := p.TrafficSelectors(&ts); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, &ts, rtCmp...); d != "" {
			t.Errorf("reused TrafficSelectors (-want +got):\n%s", d)
		}
	}
}

func TestAccessors(t *testing.T) {
	p := ikev2.Payload{Type: ikev2.PayloadNonce, Body: make([]byte, 32)}
	if _, err := p.KE(); !errors.Is(err, ikev2.ErrWrongType) {
		t.Errorf("KE() of a Nonce: %v", err)
	}
	var sa ikev2.SA
	if err := p.SA(&sa); !errors.Is(err, ikev2.ErrWrongType) {
		t.Errorf("SA() of a Nonce: %v", err)
	}
	d := ikev2.Delete{Protocol: ikev2.ProtocolESP, SPISize: 4, SPIs: []byte{0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe}}
	if d.Count() != 2 || d.ChildSPI(0) != 1 || d.ChildSPI(1) != 0xfffffffe {
		t.Errorf("Delete SPIs: %d, %x, %x", d.Count(), d.ChildSPI(0), d.ChildSPI(1))
	}
	n := ikev2.Notify{Type: ikev2.NotifyInvalidKEPayload, Data: []byte{0, 31}}
	if g, ok := n.Group(); !ok || g != ikev2.DHCurve25519 {
		t.Errorf("INVALID_KE_PAYLOAD group %v, %v", g, ok)
	}
	prop := ikev2.Proposal{Protocol: ikev2.ProtocolESP, SPI: []byte{0xde, 0xad, 0xbe, 0xef}}
	if spi, ok := prop.ChildSPI(); !ok || spi != 0xdeadbeef {
		t.Errorf("ChildSPI %x, %v", spi, ok)
	}
	cp := rtItems()
	var c *ikev2.CP
	for _, it := range cp {
		if v, ok := it.val.(*ikev2.CP); ok {
			c = v
		}
	}
	var attrs []ikev2.CPAttribute
	for a := range c.All() {
		attrs = append(attrs, a)
	}
	if len(attrs) != 2 || attrs[0].Type != 1 || len(attrs[0].Value) != 0 || attrs[1].Type != 8 || !bytes.Equal(attrs[1].Value, katSeq(1, 17)) {
		t.Errorf("CP attributes %+v", attrs)
	}
	for g, n := range map[ikev2.DHGroup]int{ikev2.DHECP521: 132 /* 2 × 66 */, ikev2.DHMODP1024: 128, ikev2.DHMODP2048: 256, ikev2.DHECP256: 64, ikev2.DHECP384: 96, ikev2.DHCurve25519: 32} {
		if got := mustLen(t, g); got != n {
			t.Errorf("group %d: key exchange length %d, want %d", g, got, n)
		}
	}
	if _, ok := ikev2.DHGroup(999).KeyExchangeLen(); ok {
		t.Errorf("unknown group 999 has a length")
	}
}

func mustLen(t *testing.T, g ikev2.DHGroup) int {
	t.Helper()
	n, ok := g.KeyExchangeLen()
	if !ok {
		t.Fatalf("group %d has no length", g)
	}
	return n
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{ikev2.PayloadSA.String(), "SA"},
		{ikev2.PayloadNotify.String(), "N"},
		{ikev2.PayloadType(99).String(), "payload 99"},
		{ikev2.ExchangeIKESAInit.String(), "IKE_SA_INIT"},
		{ikev2.ExchangeType(1).String(), "exchange 1"},
		{ikev2.NotifyNATDetectionSourceIP.String(), "NAT_DETECTION_SOURCE_IP"},
		{ikev2.NotifyType(8000).String(), "error notify 8000"},
		{ikev2.NotifyType(50000).String(), "status notify 50000"},
		{ikev2.EncrAESGCM16.String(), "AES-GCM with a 16 octet ICV"},
		{ikev2.EncrChaCha20Poly1305.String(), "ENCR_CHACHA20_POLY1305"},
		{ikev2.PRFHMACSHA2256.String(), "PRF_HMAC_SHA2_256"},
		{ikev2.IntegHMACSHA2512256.String(), "AUTH_HMAC_SHA2_512_256"},
		{ikev2.DHMODP2048.String(), "2048 bit MODP group"},
		{ikev2.DHCurve25519.String(), "Curve25519"},
		{ikev2.ESNYes.String(), "Extended Sequence Numbers"},
		{(ikev2.FlagInitiator | ikev2.FlagResponse).String(), "IR"},
		{ikev2.Flags(0xff).String(), "IVR+0xc7"},
		{ikev2.Flags(0).String(), "-"},
		{ikev2.SPI(0x0102).String(), "0000000000000102"},
		{ikev2.Transform{Type: ikev2.TransformDH, ID: 19}.String(), "256-bit random ECP group"},
		{ikev2.ProtocolESP.String(), "ESP"},
	} {
		if tc.got != tc.want {
			t.Errorf("String() = %q, want %q", tc.got, tc.want)
		}
	}
	if !ikev2.NotifyAuthenticationFailed.IsError() || ikev2.NotifyCookie.IsError() || ikev2.NotifyNone.IsError() {
		t.Errorf("IsError wrong")
	}
}
