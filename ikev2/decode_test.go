package ikev2_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dmvpn/dmvpn/ikev2"
)

// rawP is one payload of a hand-made message: rawMsg writes it without the
// codec, so it can be anything.
type rawP struct {
	typ   ikev2.PayloadType
	flags byte
	body  []byte
	next  *byte // the Next Payload octet; nil: the next payload's type (0 for the last)
	plen  int   // the payload length field; 0: 4 + len(body)
}

func nextIs(b byte) *byte { return &b }

// rawMsg is an IKE_SA_INIT request with payloads ps; the header's Next
// Payload is ps[0]'s type and its length the message's.
func rawMsg(ps ...rawP) []byte {
	b := make([]byte, ikev2.HeaderLen)
	binary.BigEndian.PutUint64(b, 0x0102030405060708)
	b[17], b[18], b[19] = 0x20, 34, 0x08
	if len(ps) > 0 {
		b[16] = byte(ps[0].typ)
	}
	for i, p := range ps {
		next := byte(0)
		if i+1 < len(ps) {
			next = byte(ps[i+1].typ)
		}
		if p.next != nil {
			next = *p.next
		}
		n := p.plen
		if n == 0 {
			n = 4 + len(p.body)
		}
		b = append(b, next, p.flags, byte(n>>8), byte(n))
		b = append(b, p.body...)
	}
	binary.BigEndian.PutUint32(b[24:], uint32(len(b)))
	return b
}

func hexb(t testing.TB, s string) []byte { return katBytes(t, s) }

// set returns a copy of b with b[off:] overwritten by v.
func set(b []byte, off int, v ...byte) []byte {
	c := bytes.Clone(b)
	copy(c[off:], v)
	return c
}

// saBody is the SA payload body of katSAInit (at offset 32 in a message
// whose first payload it is): proposal at 32, transforms at 40 (12 octets,
// its Key Length attribute at 48), 52, 60 and 68.
func saBody(t testing.TB) []byte { return hexb(t, katSAInit)[32:76] }

func TestDecodeErrors(t *testing.T) {
	kat := hexb(t, katSAInit)
	sa := saBody(t)
	sap := func(body []byte) []byte { return rawMsg(rawP{typ: ikev2.PayloadSA, body: body}) }
	one := func(typ ikev2.PayloadType, body string) []byte { return rawMsg(rawP{typ: typ, body: hexb(t, body)}) }
	withLen := func(b []byte, n uint32) []byte { return set(b, 24, byte(n>>24), byte(n>>16), byte(n>>8), byte(n)) }
	manyProposals := func(n int) []byte {
		var b []byte
		for i := 1; i <= n; i++ {
			last := byte(2)
			if i == n {
				last = 0
			}
			b = append(b, last, 0, 0, 16, byte(i), 1, 0, 1, 0, 0, 0, 8, 1, 0, 0, 12)
		}
		return b
	}
	manyTransforms := func(n int) []byte {
		b := []byte{0, 0, 0, 0, 1, 1, 0, byte(n)}
		for i := 0; i < n; i++ {
			last := byte(3)
			if i == n-1 {
				last = 0
			}
			b = append(b, last, 0, 0, 8, 1, 0, 0, 12)
		}
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		return b
	}
	var many []rawP
	for range ikev2.MaxPayloads + 1 {
		many = append(many, rawP{typ: ikev2.PayloadVendorID})
	}

	type tc struct {
		name    string
		b       []byte
		err     error // nil: decodes
		off     int
		notify  ikev2.NotifyType // 0: INVALID_SYNTAX
		silent  bool             // NotifyNone: no header to answer to
		payload ikev2.PayloadType
	}
	cases := []tc{
		// The IKE header.
		{name: "empty", b: nil, err: ikev2.ErrTruncated, off: 0, silent: true},
		{name: "27 octets", b: kat[:27], err: ikev2.ErrTruncated, off: 0, silent: true},
		{name: "IKEv1", b: set(kat, 17, 0x10), err: ikev2.ErrVersion, off: 17, notify: ikev2.NotifyInvalidMajorVersion},
		{name: "version 3.0", b: set(kat, 17, 0x30), err: ikev2.ErrVersion, off: 17, notify: ikev2.NotifyInvalidMajorVersion},
		{name: "minor version ignored", b: set(kat, 17, 0x2f)},
		{name: "length below the header", b: withLen(kat, 27), err: ikev2.ErrBadLength, off: 24},
		{name: "length past the datagram", b: withLen(kat, 241), err: ikev2.ErrTruncated, off: 24},
		{name: "length 4 GiB", b: withLen(kat, 0xffffffff), err: ikev2.ErrTruncated, off: 24},
		{name: "datagram longer than the message", b: append(bytes.Clone(kat), 0), err: ikev2.ErrBadLength, off: 24},
		{name: "datagram cut short", b: kat[:200], err: ikev2.ErrTruncated, off: 24},
		{name: "header only", b: rawMsg()},

		// The payload chain.
		{name: "unknown critical payload", b: rawMsg(rawP{typ: 200, flags: 0x80, body: []byte("x")}), err: ikev2.ErrCritical, off: 29, notify: ikev2.NotifyUnsupportedCriticalPayload, payload: 200},
		{name: "critical IKEv1 payload type", b: rawMsg(rawP{typ: ikev2.PayloadVendorID}, rawP{typ: 13, flags: 0xff}), err: ikev2.ErrCritical, off: 33, notify: ikev2.NotifyUnsupportedCriticalPayload, payload: 13},
		{name: "unknown payload skipped", b: rawMsg(rawP{typ: 200, flags: 0x7f, body: []byte("x")}, rawP{typ: ikev2.PayloadNonce, body: make([]byte, 16)})},
		{name: "known payload with the critical bit", b: rawMsg(rawP{typ: ikev2.PayloadNonce, flags: 0x80, body: make([]byte, 16)})},
		{name: "payload length 3", b: set(kat, 30, 0, 3), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadSA},
		{name: "payload length past the message", b: set(kat, 30, 0, 0xd5), err: ikev2.ErrTruncated, off: 30, payload: ikev2.PayloadSA},
		{name: "chain promises one more payload", b: set(kat, 212, 41), err: ikev2.ErrTruncated, off: 240, payload: ikev2.PayloadNotify},
		{name: "payload header cut", b: withLen(append(rawMsg(rawP{typ: ikev2.PayloadVendorID, next: nextIs(43)}), 0, 0), 34), err: ikev2.ErrTruncated, off: 32, payload: ikev2.PayloadVendorID},
		{name: "octets after the last payload", b: set(kat, 28, 0), err: ikev2.ErrBadLength, off: 76},
		{name: "too many payloads", b: rawMsg(many...), err: ikev2.ErrTooMany, off: 28 + 4*ikev2.MaxPayloads, payload: ikev2.PayloadVendorID},
		{name: "octets after SK", b: rawMsg(rawP{typ: ikev2.PayloadSK, next: nextIs(35), body: []byte{1, 2}}, rawP{typ: ikev2.PayloadNonce, body: make([]byte, 16)}), err: ikev2.ErrBadLength, off: 34},
		{name: "SK with an empty body", b: rawMsg(rawP{typ: ikev2.PayloadSK, next: nextIs(35)})},

		// SA: proposals (at 32), transforms (40, 52, 60, 68), attribute (48).
		{name: "proposal Last Substruc 1", b: set(kat, 32, 1), err: ikev2.ErrInvalid, off: 32, payload: ikev2.PayloadSA},
		{name: "proposal says more, SA ends", b: set(kat, 32, 2), err: ikev2.ErrTruncated, off: 32, payload: ikev2.PayloadSA},
		{name: "last proposal ends early", b: sap(append(bytes.Clone(sa), 0, 0, 0, 0)), err: ikev2.ErrBadLength, off: 34, payload: ikev2.PayloadSA},
		{name: "proposal header cut", b: sap(sa[:7]), err: ikev2.ErrTruncated, off: 32, payload: ikev2.PayloadSA},
		{name: "proposal length 7", b: set(kat, 34, 0, 7), err: ikev2.ErrBadLength, off: 34, payload: ikev2.PayloadSA},
		{name: "proposal length past the SA", b: set(kat, 34, 0, 45), err: ikev2.ErrTruncated, off: 34, payload: ikev2.PayloadSA},
		{name: "proposal number 0", b: set(kat, 36, 0), err: ikev2.ErrInvalid, off: 36, payload: ikev2.PayloadSA},
		{name: "response's proposal 7", b: set(kat, 36, 7)},
		{name: "protocol 4", b: set(kat, 37, 4), err: ikev2.ErrInvalid, off: 37, payload: ikev2.PayloadSA},
		{name: "IKE SPI size 4", b: set(kat, 38, 4), err: ikev2.ErrInvalid, off: 38, payload: ikev2.PayloadSA},
		{name: "ESP SPI size 0", b: set(kat, 37, 3), err: ikev2.ErrInvalid, off: 38, payload: ikev2.PayloadSA},
		{name: "SPI past the proposal", b: sap(set(sa, 6, 40)), err: ikev2.ErrInvalid, off: 38, payload: ikev2.PayloadSA},
		{name: "IKE SPI size 8 past the proposal", b: sap(set(set(sa, 2, 0, 12), 6, 8)[:12]), err: ikev2.ErrTruncated, off: 38, payload: ikev2.PayloadSA},
		{name: "no transforms", b: set(kat, 39, 0), err: ikev2.ErrInvalid, off: 39, payload: ikev2.PayloadSA},
		{name: "5 transforms counted, 4 there", b: set(kat, 39, 5), err: ikev2.ErrInvalid, off: 68, payload: ikev2.PayloadSA},
		{name: "3 transforms counted, 4 there", b: set(kat, 39, 3), err: ikev2.ErrInvalid, off: 60, payload: ikev2.PayloadSA},
		{name: "transform Last Substruc 46 (tcpdump's crash)", b: set(kat, 52, 46), err: ikev2.ErrInvalid, off: 52, payload: ikev2.PayloadSA},
		{name: "transform length 7", b: set(kat, 42, 0, 7), err: ikev2.ErrBadLength, off: 42, payload: ikev2.PayloadSA},
		{name: "transform length past the proposal", b: set(kat, 42, 0, 0x40), err: ikev2.ErrTruncated, off: 42, payload: ikev2.PayloadSA},
		{name: "transforms short of the proposal", b: sap(append(set(sa, 2, 0, 48), 0, 0, 0, 0)), err: ikev2.ErrBadLength, off: 76, payload: ikev2.PayloadSA},
		{name: "attribute length past the transform (free5gc 940)", b: set(kat, 48, 0x00, 0x0e, 0x01, 0x00), err: ikev2.ErrTruncated, off: 50, payload: ikev2.PayloadSA},
		{name: "attribute header cut", b: set(kat, 42, 0, 10), err: ikev2.ErrTruncated, off: 48, payload: ikev2.PayloadSA},
		{name: "Key Length in TLV format", b: set(kat, 48, 0x00, 0x0e, 0x00, 0x00), err: ikev2.ErrInvalid, off: 48, payload: ikev2.PayloadSA},
		{name: "unknown TLV attribute of 0 octets", b: set(kat, 48, 0x40, 0x01, 0x00, 0x00)},
		{name: "two Key Lengths in one transform", b: sap(hexb(t, "00 00 0018 01 01 00 01 00 00 0010 01 00 000c 800e 0080 800e 0100")), err: ikev2.ErrInvalid, off: 52, payload: ikev2.PayloadSA},
		{name: "empty SA", b: sap(nil), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadSA},
		{name: "64 proposals", b: sap(manyProposals(ikev2.MaxProposals))},
		{name: "65 proposals", b: sap(manyProposals(ikev2.MaxProposals + 1)), err: ikev2.ErrTooMany, off: 32 + 16*ikev2.MaxProposals, payload: ikev2.PayloadSA},
		{name: "255 transforms", b: sap(manyTransforms(255))},

		// KE.
		{name: "KE of 2 octets", b: one(ikev2.PayloadKE, "0013"), err: ikev2.ErrTruncated, off: 30, payload: ikev2.PayloadKE},
		{name: "KE group 0", b: one(ikev2.PayloadKE, "0000 0000 01"), err: ikev2.ErrInvalid, off: 32, payload: ikev2.PayloadKE},
		{name: "KE group 19 of 63 octets", b: rawMsg(rawP{typ: ikev2.PayloadKE, body: append(hexb(t, "0013 0000"), make([]byte, 63)...)}), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadKE},
		{name: "KE group 31 of 33 octets", b: rawMsg(rawP{typ: ikev2.PayloadKE, body: append(hexb(t, "001f 0000"), make([]byte, 33)...)}), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadKE},
		{name: "KE without data", b: one(ikev2.PayloadKE, "1234 0000"), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadKE},

		// IDi, IDr.
		{name: "ID of 1 octet (tcpdump's id-short)", b: one(ikev2.PayloadIDi, "01"), err: ikev2.ErrTruncated, off: 30, payload: ikev2.PayloadIDi},
		{name: "ID type 0", b: one(ikev2.PayloadIDr, "00 000000 01"), err: ikev2.ErrInvalid, off: 32, payload: ikev2.PayloadIDr},
		{name: "IPv4 ID of 1 octet (tcpdump's id-normal)", b: one(ikev2.PayloadIDi, "01 000000 de"), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadIDi},
		{name: "IPv6 ID of 4 octets", b: one(ikev2.PayloadIDi, "05 000000 c0000201"), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadIDi},
		{name: "empty FQDN", b: one(ikev2.PayloadIDi, "02 000000"), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadIDi},
		{name: "ID of an unknown type, empty", b: one(ikev2.PayloadIDi, "c8 000000")},

		// CERT, CERTREQ, AUTH, Nonce.
		{name: "empty CERT", b: one(ikev2.PayloadCERT, ""), err: ikev2.ErrTruncated, off: 30, payload: ikev2.PayloadCERT},
		{name: "CERTREQ without authorities", b: one(ikev2.PayloadCERTREQ, "04")},
		{name: "AUTH of 3 octets", b: one(ikev2.PayloadAUTH, "020000"), err: ikev2.ErrTruncated, off: 30, payload: ikev2.PayloadAUTH},
		{name: "AUTH method 0", b: one(ikev2.PayloadAUTH, "00 000000 01"), err: ikev2.ErrInvalid, off: 32, payload: ikev2.PayloadAUTH},
		{name: "AUTH without data", b: one(ikev2.PayloadAUTH, "02 000000"), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadAUTH},
		{name: "nonce of 15", b: rawMsg(rawP{typ: ikev2.PayloadNonce, body: make([]byte, 15)}), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadNonce},
		{name: "nonce of 257", b: rawMsg(rawP{typ: ikev2.PayloadNonce, body: make([]byte, 257)}), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadNonce},

		// Notify.
		{name: "notify of 3", b: one(ikev2.PayloadNotify, "000040"), err: ikev2.ErrTruncated, off: 30, payload: ikev2.PayloadNotify},
		{name: "notify SPI past the payload", b: one(ikev2.PayloadNotify, "03 04 4009 010203"), err: ikev2.ErrTruncated, off: 33, payload: ikev2.PayloadNotify},
		{name: "notify IKE SPI of 4", b: one(ikev2.PayloadNotify, "01 04 000b 01020304"), err: ikev2.ErrInvalid, off: 33, payload: ikev2.PayloadNotify},
		{name: "notify ESP SPI of 8", b: one(ikev2.PayloadNotify, "03 08 4009 0102030405060708"), err: ikev2.ErrInvalid, off: 33, payload: ikev2.PayloadNotify},
		{name: "notify SPI without protocol", b: one(ikev2.PayloadNotify, "00 04 4009 01020304"), err: ikev2.ErrInvalid, off: 32, payload: ikev2.PayloadNotify},
		{name: "notify protocol 9 with SPI", b: one(ikev2.PayloadNotify, "09 04 4009 01020304"), err: ikev2.ErrInvalid, off: 32, payload: ikev2.PayloadNotify},
		{name: "notify protocol 9 without SPI", b: one(ikev2.PayloadNotify, "09 00 4009")},
		{name: "notify type 0", b: one(ikev2.PayloadNotify, "00 00 0000"), err: ikev2.ErrInvalid, off: 34, payload: ikev2.PayloadNotify},
		{name: "empty COOKIE", b: one(ikev2.PayloadNotify, "00 00 4006"), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadNotify},
		{name: "COOKIE of 65", b: rawMsg(rawP{typ: ikev2.PayloadNotify, body: append(hexb(t, "00 00 4006"), make([]byte, 65)...)}), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadNotify},
		{name: "NAT-D of 19", b: rawMsg(rawP{typ: ikev2.PayloadNotify, body: append(hexb(t, "00 00 4005"), make([]byte, 19)...)}), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadNotify},
		{name: "INVALID_KE_PAYLOAD of 3", b: one(ikev2.PayloadNotify, "00 00 0011 001300"), err: ikev2.ErrBadLength, off: 30, payload: ikev2.PayloadNotify},

		// Delete.
		{name: "delete of 3", b: one(ikev2.PayloadDelete, "03 04 00"), err: ikev2.ErrTruncated, off: 30, payload: ikev2.PayloadDelete},
		{name: "delete protocol 0", b: one(ikev2.PayloadDelete, "00 00 0000"), err: ikev2.ErrInvalid, off: 32, payload: ikev2.PayloadDelete},
		{name: "delete IKE with SPI size 8", b: one(ikev2.PayloadDelete, "01 08 0001 0102030405060708"), err: ikev2.ErrInvalid, off: 33, payload: ikev2.PayloadDelete},
		{name: "delete IKE with 1 SPI", b: one(ikev2.PayloadDelete, "01 00 0001"), err: ikev2.ErrInvalid, off: 34, payload: ikev2.PayloadDelete},
		{name: "delete ESP SPI size 8", b: one(ikev2.PayloadDelete, "03 08 0001 0102030405060708"), err: ikev2.ErrInvalid, off: 33, payload: ikev2.PayloadDelete},
		{name: "delete 2 ESP SPIs in 7 octets", b: one(ikev2.PayloadDelete, "03 04 0002 01020304050607"), err: ikev2.ErrBadLength, off: 34, payload: ikev2.PayloadDelete},
		{name: "delete 65535 ESP SPIs in 4 octets", b: one(ikev2.PayloadDelete, "03 04 ffff 01020304"), err: ikev2.ErrBadLength, off: 34, payload: ikev2.PayloadDelete},

		// TSi, TSr: selectors at 36.
		{name: "TS of 3", b: one(ikev2.PayloadTSi, "010000"), err: ikev2.ErrTruncated, off: 30, payload: ikev2.PayloadTSi},
		{name: "65 selectors", b: one(ikev2.PayloadTSi, "41 000000"), err: ikev2.ErrTooMany, off: 32, payload: ikev2.PayloadTSi},
		{name: "2 selectors counted, 1 there", b: one(ikev2.PayloadTSi, "02 000000 07 2f 0010 0000 ffff c0000201 c0000201"), err: ikev2.ErrTruncated, off: 52, payload: ikev2.PayloadTSi},
		{name: "selector header cut", b: one(ikev2.PayloadTSr, "01 000000 07 2f"), err: ikev2.ErrTruncated, off: 36, payload: ikev2.PayloadTSr},
		{name: "IPv4 selector of 6", b: one(ikev2.PayloadTSr, "01 000000 07 2f 0006 0000"), err: ikev2.ErrBadLength, off: 38, payload: ikev2.PayloadTSr},
		{name: "selector of an unknown type, 4 octets", b: one(ikev2.PayloadTSr, "01 000000 0a 00 0004")},
		{name: "selector of an unknown type, 3 octets", b: one(ikev2.PayloadTSr, "01 000000 0a 00 0003 00"), err: ikev2.ErrBadLength, off: 38, payload: ikev2.PayloadTSr},
		{name: "selector length 7", b: one(ikev2.PayloadTSi, "01 000000 07 2f 0007 0000 ffff"), err: ikev2.ErrBadLength, off: 38, payload: ikev2.PayloadTSi},
		{name: "selector length past the payload", b: one(ikev2.PayloadTSi, "01 000000 07 2f 0011 0000 ffff c0000201 c0000201"), err: ikev2.ErrTruncated, off: 38, payload: ikev2.PayloadTSi},
		{name: "IPv4 selector of 40", b: rawMsg(rawP{typ: ikev2.PayloadTSi, body: append(hexb(t, "01 000000 07 2f 0028 0000 ffff"), make([]byte, 32)...)}), err: ikev2.ErrBadLength, off: 38, payload: ikev2.PayloadTSi},
		{name: "IPv6 selector of 16", b: one(ikev2.PayloadTSi, "01 000000 08 2f 0010 0000 ffff c0000201 c0000201"), err: ikev2.ErrBadLength, off: 38, payload: ikev2.PayloadTSi},
		{name: "octets after the selectors", b: one(ikev2.PayloadTSi, "01 000000 07 2f 0010 0000 ffff c0000201 c0000201 00"), err: ikev2.ErrBadLength, off: 52, payload: ikev2.PayloadTSi},

		// CP, EAP.
		{name: "CP of 3", b: one(ikev2.PayloadCP, "010000"), err: ikev2.ErrTruncated, off: 30, payload: ikev2.PayloadCP},
		{name: "CP type 0", b: one(ikev2.PayloadCP, "00 000000"), err: ikev2.ErrInvalid, off: 32, payload: ikev2.PayloadCP},
		{name: "CP attribute header cut", b: one(ikev2.PayloadCP, "01 000000 0001"), err: ikev2.ErrTruncated, off: 36, payload: ikev2.PayloadCP},
		{name: "CP attribute past the payload", b: one(ikev2.PayloadCP, "01 000000 0001 0004 c000"), err: ikev2.ErrTruncated, off: 38, payload: ikev2.PayloadCP},
		{name: "EAP of 3", b: one(ikev2.PayloadEAP, "010200"), err: ikev2.ErrTruncated, off: 30, payload: ikev2.PayloadEAP},
		{name: "EAP length not the payload's", b: one(ikev2.PayloadEAP, "01 02 0006 01"), err: ikev2.ErrBadLength, off: 34, payload: ikev2.PayloadEAP},

		// SKF.
		{name: "SKF of 3", b: rawMsg(rawP{typ: ikev2.PayloadSKF, next: nextIs(35), body: []byte{0, 1, 0}}), err: ikev2.ErrTruncated, off: 30, payload: ikev2.PayloadSKF},
		{name: "fragment 0", b: rawMsg(rawP{typ: ikev2.PayloadSKF, next: nextIs(35), body: []byte{0, 0, 0, 2}}), err: ikev2.ErrInvalid, off: 32, payload: ikev2.PayloadSKF},
		{name: "fragment 3 of 2", b: rawMsg(rawP{typ: ikev2.PayloadSKF, body: []byte{0, 3, 0, 2}}), err: ikev2.ErrInvalid, off: 32, payload: ikev2.PayloadSKF},
		{name: "fragment 2 of 2, next payload kept", b: rawMsg(rawP{typ: ikev2.PayloadSKF, next: nextIs(35), body: []byte{0, 2, 0, 2, 9}})},
	}
	var m ikev2.Message
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := m.Decode(c.b)
			var fresh ikev2.Message
			if ferr := fresh.Decode(c.b); fmt.Sprint(ferr) != fmt.Sprint(err) {
				t.Errorf("a reused Message says %v, a fresh one %v", err, ferr)
			}
			if c.err == nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if re, err := ikev2.AppendMessage(nil, &m.Header, m.Payloads); err != nil || !bytes.Equal(re, c.b) {
					t.Errorf("re-encoding an accepted message: %v", err)
				}
				return
			}
			var de *ikev2.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode = %v, want a *DecodeError wrapping %v", err, c.err)
			}
			notify := c.notify
			switch {
			case c.silent:
				notify = ikev2.NotifyNone
			case notify == 0:
				notify = ikev2.NotifyInvalidSyntax
			}
			if !errors.Is(err, c.err) || de.Offset != c.off || de.Notify != notify || de.Payload != c.payload || de.Inner {
				t.Errorf("Decode = %v\n  offset %d, notify %v, payload %v\nwant %v at %d, notify %v, payload %v", err, de.Offset, de.Notify, de.Payload, c.err, c.off, notify, c.payload)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("offset %d", c.off)) {
				t.Errorf("error text %q does not say the offset", err)
			}
			if de.Offset < 0 || de.Offset > len(c.b) {
				t.Errorf("offset %d outside the %d-octet input", de.Offset, len(c.b))
			}
		})
	}
}

// TestDecodeHeaderAfterError: a receiver answers with the header of the
// message it refuses.
func TestDecodeHeaderAfterError(t *testing.T) {
	b := rawMsg(rawP{typ: 200, flags: 0x80})
	b[19] = 0x08
	binary.BigEndian.PutUint32(b[20:], 7)
	var m ikev2.Message
	err := m.Decode(b)
	if !errors.Is(err, ikev2.ErrCritical) {
		t.Fatalf("Decode: %v", err)
	}
	if m.Header.InitiatorSPI != 0x0102030405060708 || m.Header.MessageID != 7 || m.Header.Exchange != ikev2.ExchangeIKESAInit {
		t.Errorf("header after the error: %+v", m.Header)
	}
	h, err := ikev2.DecodeHeader(set(b, 17, 0x10))
	if !errors.Is(err, ikev2.ErrVersion) || h.InitiatorSPI != 0x0102030405060708 || h.MessageID != 7 {
		t.Errorf("DecodeHeader of IKEv1: %+v, %v", h, err)
	}
}
