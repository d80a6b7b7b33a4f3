package ikev2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/netip"
)

// Encoding errors (the Builder also refuses, wrapped, any *DecodeError the
// decoder would return for what it was asked to write).
var (
	// ErrTooLong: a field does not fit its length field (a payload over
	// 65,535 octets, an SPI over 255, ...).
	ErrTooLong = errors.New("ikev2: too long for its length field")
	// ErrAfterEncrypted: a payload added after an SK or SKF payload, which
	// must be last.
	ErrAfterEncrypted = errors.New("ikev2: payload after the encrypted payload")
)

const fragmentHdrLen = 4 // Fragment Number, Total Fragments

// shortErr reports a payload body too short for its fixed part; the offset
// is that of the payload length field.
func shortErr(base int, pt PayloadType, need, have int, what string) *DecodeError {
	return syntaxErr(base-2, pt, ErrTruncated, "payload length %d, %s needs at least %d", have+PayloadHeaderLen, what, need+PayloadHeaderLen)
}

func (p *Payload) want(t PayloadType) error {
	if p.Type != t {
		return fmt.Errorf("%w: %v, not %v", ErrWrongType, p.Type, t)
	}
	return nil
}

func (p *Payload) base() int { return p.Offset + PayloadHeaderLen }

// asError turns a *DecodeError into an error without making a non-nil
// interface of a nil pointer.
func asError(e *DecodeError) error {
	if e == nil {
		return nil
	}
	return e
}

// ---------------------------------------------------------------------------
// KE (§3.4).

// KE is a Key Exchange payload. Data is the public value as a byte string
// of the group's length (KeyExchangeLen): never a number, whose leading zero
// octets would be lost.
type KE struct {
	Group DHGroup
	Data  []byte
	// Reserved holds the 2 reserved octets, kept for re-encoding.
	Reserved uint16
}

func decodeKE(b []byte, base int) (KE, *DecodeError) {
	if len(b) < 4 {
		return KE{}, shortErr(base, PayloadKE, 4, len(b), "the D-H group and reserved field")
	}
	ke := KE{Group: DHGroup(binary.BigEndian.Uint16(b)), Reserved: binary.BigEndian.Uint16(b[2:]), Data: b[4:]}
	if ke.Group == DHNone {
		return KE{}, syntaxErr(base, PayloadKE, ErrInvalid, "D-H group 0")
	}
	if n, ok := ke.Group.KeyExchangeLen(); ok && len(ke.Data) != n {
		return KE{}, syntaxErr(base-2, PayloadKE, ErrBadLength, "%d octets of key exchange data, group %d needs %d", len(ke.Data), uint16(ke.Group), n)
	}
	if len(ke.Data) == 0 {
		return KE{}, syntaxErr(base-2, PayloadKE, ErrBadLength, "no key exchange data")
	}
	return ke, nil
}

// KE decodes a KE payload.
func (p *Payload) KE() (KE, error) {
	if err := p.want(PayloadKE); err != nil {
		return KE{}, err
	}
	v, err := decodeKE(p.Body, p.base())
	return v, asError(err)
}

// AppendBody appends the payload body (what follows the generic header).
func (ke *KE) AppendBody(dst []byte) ([]byte, error) {
	dst = binary.BigEndian.AppendUint16(dst, uint16(ke.Group))
	dst = binary.BigEndian.AppendUint16(dst, ke.Reserved)
	return append(dst, ke.Data...), nil
}

// ---------------------------------------------------------------------------
// IDi, IDr (§3.5).

// ID is an Identification payload. Data is raw; for IPv4 and IPv6 it is the
// 4- or 16-octet address (Decode checks the length).
//
// The AUTH payload signs the ID payload's body, generic header excluded
// ("RestOfInitIDPayload", RFC 7296 §2.15): for a received ID that is
// Payload.Body, for ours what AppendBody appends, which is byte for byte what
// the Builder writes.
type ID struct {
	Type IDType
	Data []byte
	// Reserved holds the 3 reserved octets, kept for re-encoding.
	Reserved [3]byte
}

func decodeID(b []byte, base int, pt PayloadType) (ID, *DecodeError) {
	if len(b) < 4 {
		return ID{}, shortErr(base, pt, 4, len(b), "the ID type and reserved field")
	}
	id := ID{Type: IDType(b[0]), Reserved: [3]byte(b[1:4]), Data: b[4:]}
	switch id.Type {
	case 0:
		return ID{}, syntaxErr(base, pt, ErrInvalid, "ID type 0")
	case IDIPv4Addr:
		if len(id.Data) != 4 {
			return ID{}, syntaxErr(base-2, pt, ErrBadLength, "%v of %d octets, want 4", id.Type, len(id.Data))
		}
	case IDIPv6Addr:
		if len(id.Data) != 16 {
			return ID{}, syntaxErr(base-2, pt, ErrBadLength, "%v of %d octets, want 16", id.Type, len(id.Data))
		}
	case IDFQDN, IDRFC822Addr, IDDERASN1DN, IDDERASN1GN, IDKeyID:
		// An empty identity would match whatever a policy's
		// default does: refuse it here.
		if len(id.Data) == 0 {
			return ID{}, syntaxErr(base-2, pt, ErrBadLength, "empty %v", id.Type)
		}
	}
	return id, nil
}

// ID decodes an IDi or IDr payload.
func (p *Payload) ID() (ID, error) {
	if p.Type != PayloadIDi && p.Type != PayloadIDr {
		return ID{}, fmt.Errorf("%w: %v, not IDi or IDr", ErrWrongType, p.Type)
	}
	v, err := decodeID(p.Body, p.base(), p.Type)
	return v, asError(err)
}

// Addr returns the address of an ID_IPV4_ADDR or ID_IPV6_ADDR.
func (id *ID) Addr() (netip.Addr, bool) {
	switch {
	case id.Type == IDIPv4Addr && len(id.Data) == 4:
		return netip.AddrFrom4([4]byte(id.Data)), true
	case id.Type == IDIPv6Addr && len(id.Data) == 16:
		return netip.AddrFrom16([16]byte(id.Data)), true
	}
	return netip.Addr{}, false
}

// AppendBody appends the payload body: RestOfInitIDPayload (or
// RestOfRespIDPayload) of RFC 7296 §2.15.
func (id *ID) AppendBody(dst []byte) ([]byte, error) {
	dst = append(dst, byte(id.Type), id.Reserved[0], id.Reserved[1], id.Reserved[2])
	return append(dst, id.Data...), nil
}

// ---------------------------------------------------------------------------
// CERT, CERTREQ (§3.6, §3.7).

// Cert is a Certificate or Certificate Request payload: the encoding and
// the raw certificate data (for CERTREQ, the certification authorities).
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

func decodeCert(b []byte, base int, pt PayloadType) (Cert, *DecodeError) {
	if len(b) < 1 {
		return Cert{}, shortErr(base, pt, 1, len(b), "the certificate encoding")
	}
	return Cert{Encoding: CertEncoding(b[0]), Data: b[1:]}, nil
}

// Cert decodes a CERT or CERTREQ payload.
func (p *Payload) Cert() (Cert, error) {
	if p.Type != PayloadCERT && p.Type != PayloadCERTREQ {
		return Cert{}, fmt.Errorf("%w: %v, not CERT or CERTREQ", ErrWrongType, p.Type)
	}
	v, err := decodeCert(p.Body, p.base(), p.Type)
	return v, asError(err)
}

// AppendBody appends the payload body.
func (c *Cert) AppendBody(dst []byte) ([]byte, error) {
	return append(append(dst, byte(c.Encoding)), c.Data...), nil
}

// ---------------------------------------------------------------------------
// AUTH (§3.8).

// Auth is an Authentication payload.
type Auth struct {
	Method AuthMethod
	Data   []byte
	// Reserved holds the 3 reserved octets, kept for re-encoding.
	Reserved [3]byte
}

func decodeAuth(b []byte, base int) (Auth, *DecodeError) {
	if len(b) < 4 {
		return Auth{}, shortErr(base, PayloadAUTH, 4, len(b), "the auth method and reserved field")
	}
	a := Auth{Method: AuthMethod(b[0]), Reserved: [3]byte(b[1:4]), Data: b[4:]}
	if a.Method == 0 {
		return Auth{}, syntaxErr(base, PayloadAUTH, ErrInvalid, "auth method 0")
	}
	if len(a.Data) == 0 {
		return Auth{}, syntaxErr(base-2, PayloadAUTH, ErrBadLength, "no authentication data")
	}
	return a, nil
}

// Auth decodes an AUTH payload.
func (p *Payload) Auth() (Auth, error) {
	if err := p.want(PayloadAUTH); err != nil {
		return Auth{}, err
	}
	v, err := decodeAuth(p.Body, p.base())
	return v, asError(err)
}

// AppendBody appends the payload body.
func (a *Auth) AppendBody(dst []byte) ([]byte, error) {
	dst = append(dst, byte(a.Method), a.Reserved[0], a.Reserved[1], a.Reserved[2])
	return append(dst, a.Data...), nil
}

// ---------------------------------------------------------------------------
// Nonce (§3.9).

func decodeNonce(b []byte, base int) ([]byte, *DecodeError) {
	if len(b) < MinNonceLen || len(b) > MaxNonceLen {
		return nil, syntaxErr(base-2, PayloadNonce, ErrBadLength, "nonce of %d octets, want %d to %d", len(b), MinNonceLen, MaxNonceLen)
	}
	return b, nil
}

// Nonce returns a Nonce payload's data (MinNonceLen to MaxNonceLen octets),
// a byte string kept as received.
func (p *Payload) Nonce() ([]byte, error) {
	if err := p.want(PayloadNonce); err != nil {
		return nil, err
	}
	v, err := decodeNonce(p.Body, p.base())
	return v, asError(err)
}

// ---------------------------------------------------------------------------
// Notify (§3.10).

// Notify is a Notify payload. SPI is empty, or the 4-octet SPI of the AH or
// ESP SA it is about (REKEY_SA, CHILD_SA_NOT_FOUND, INVALID_SELECTORS), or
// an 8-octet IKE SPI; Protocol is to be ignored when SPI is empty.
type Notify struct {
	Protocol Protocol
	Type     NotifyType
	SPI      []byte
	Data     []byte
}

func decodeNotify(b []byte, base int) (Notify, *DecodeError) {
	if len(b) < 4 {
		return Notify{}, shortErr(base, PayloadNotify, 4, len(b), "protocol, SPI size and notify type")
	}
	spiSize := int(b[1])
	n := Notify{Protocol: Protocol(b[0]), Type: NotifyType(binary.BigEndian.Uint16(b[2:]))}
	if spiSize > len(b)-4 {
		return Notify{}, syntaxErr(base+1, PayloadNotify, ErrTruncated, "SPI size %d, %d octets left", spiSize, len(b)-4)
	}
	if err := checkSPISize(n.Protocol, spiSize, spiNotify, base, PayloadNotify); err != nil {
		return Notify{}, err
	}
	if n.Type == NotifyNone {
		return Notify{}, syntaxErr(base+2, PayloadNotify, ErrInvalid, "notify type 0")
	}
	if spiSize > 0 {
		n.SPI = b[4 : 4+spiSize]
	}
	if len(b) > 4+spiSize {
		n.Data = b[4+spiSize:]
	}
	// The data lengths RFC 7296 fixes, checked here so the engine can use
	// them as they are.
	bad := false
	switch n.Type {
	case NotifyCookie:
		bad = len(n.Data) < 1 || len(n.Data) > MaxCookieLen
	case NotifyNATDetectionSourceIP, NotifyNATDetectionDestinationIP:
		bad = len(n.Data) != NATDetectionLen
	case NotifyInvalidKEPayload:
		bad = len(n.Data) != 2
	}
	if bad {
		return Notify{}, syntaxErr(base-2, PayloadNotify, ErrBadLength, "%v with %d octets of data", n.Type, len(n.Data))
	}
	return n, nil
}

// spiUse is where an SPI size is checked: the rules differ (§3.3.1, §3.10,
// §3.11).
type spiUse uint8

const (
	spiProposal spiUse = iota // IKE: 0 (IKE_SA_INIT) or 8 (rekey); AH, ESP: 4
	spiNotify                 // empty with any protocol (then ignored); IKE: 8; AH, ESP: 4
	spiDelete                 // IKE: 0 (the SPIs are the header's); AH, ESP: 4
)

// checkSPISize checks an SPI size against its protocol; the protocol octet
// is at base and the SPI size at base+1.
func checkSPISize(proto Protocol, size int, use spiUse, base int, pt PayloadType) *DecodeError {
	if use == spiNotify && size == 0 {
		return nil
	}
	ok := false
	switch proto {
	case ProtocolIKE:
		ok = size == 8 && use != spiDelete || size == 0 && use != spiNotify
	case ProtocolAH, ProtocolESP:
		ok = size == ChildSPILen
	default:
		return syntaxErr(base, pt, ErrInvalid, "protocol %d", uint8(proto))
	}
	if !ok {
		return syntaxErr(base+1, pt, ErrInvalid, "SPI size %d for %v", size, proto)
	}
	return nil
}

// Notify decodes a Notify payload.
func (p *Payload) Notify() (Notify, error) {
	if err := p.want(PayloadNotify); err != nil {
		return Notify{}, err
	}
	v, err := decodeNotify(p.Body, p.base())
	return v, asError(err)
}

// Group returns the D-H group an INVALID_KE_PAYLOAD notification asks for.
func (n *Notify) Group() (DHGroup, bool) {
	if n.Type != NotifyInvalidKEPayload || len(n.Data) != 2 {
		return 0, false
	}
	return DHGroup(binary.BigEndian.Uint16(n.Data)), true
}

// AppendBody appends the payload body.
func (n *Notify) AppendBody(dst []byte) ([]byte, error) {
	if len(n.SPI) > 0xff {
		return dst, fmt.Errorf("%w: notify SPI of %d octets", ErrTooLong, len(n.SPI))
	}
	dst = append(dst, byte(n.Protocol), byte(len(n.SPI)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(n.Type))
	dst = append(dst, n.SPI...)
	return append(dst, n.Data...), nil
}

// ---------------------------------------------------------------------------
// Delete (§3.11).

// Delete is a Delete payload: the IKE SA itself (ProtocolIKE, no SPIs), or
// SPIs of AH or ESP SAs, concatenated (SPISize octets each).
type Delete struct {
	Protocol Protocol
	SPISize  uint8
	SPIs     []byte
}

// Count is the number of SPIs.
func (d *Delete) Count() int {
	if d.SPISize == 0 {
		return 0
	}
	return len(d.SPIs) / int(d.SPISize)
}

// SPI returns the i-th SPI.
func (d *Delete) SPI(i int) []byte {
	n := int(d.SPISize)
	return d.SPIs[i*n : (i+1)*n : (i+1)*n]
}

// ChildSPI returns the i-th SPI of an AH or ESP delete as a number.
func (d *Delete) ChildSPI(i int) uint32 { return binary.BigEndian.Uint32(d.SPI(i)) }

func decodeDelete(b []byte, base int) (Delete, *DecodeError) {
	if len(b) < 4 {
		return Delete{}, shortErr(base, PayloadDelete, 4, len(b), "protocol, SPI size and SPI count")
	}
	d := Delete{Protocol: Protocol(b[0]), SPISize: b[1]}
	num := int(binary.BigEndian.Uint16(b[2:]))
	if err := checkSPISize(d.Protocol, int(d.SPISize), spiDelete, base, PayloadDelete); err != nil {
		return Delete{}, err
	}
	if d.Protocol == ProtocolIKE && num != 0 {
		return Delete{}, syntaxErr(base+2, PayloadDelete, ErrInvalid, "%d SPIs to delete the IKE SA, want 0", num)
	}
	if want := num * int(d.SPISize); want != len(b)-4 {
		return Delete{}, syntaxErr(base+2, PayloadDelete, ErrBadLength, "%d SPIs of %d octets in %d octets", num, d.SPISize, len(b)-4)
	}
	if len(b) > 4 {
		d.SPIs = b[4:]
	}
	return d, nil
}

// Delete decodes a Delete payload.
func (p *Payload) Delete() (Delete, error) {
	if err := p.want(PayloadDelete); err != nil {
		return Delete{}, err
	}
	v, err := decodeDelete(p.Body, p.base())
	return v, asError(err)
}

// AppendBody appends the payload body.
func (d *Delete) AppendBody(dst []byte) ([]byte, error) {
	n := d.Count()
	if n > 0xffff {
		return dst, fmt.Errorf("%w: %d SPIs", ErrTooLong, n)
	}
	dst = append(dst, byte(d.Protocol), d.SPISize)
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	return append(dst, d.SPIs...), nil
}

// ---------------------------------------------------------------------------
// Vendor ID (§3.12), EAP (§3.16): opaque.

// VendorID returns a Vendor ID payload's data.
func (p *Payload) VendorID() ([]byte, error) {
	if err := p.want(PayloadVendorID); err != nil {
		return nil, err
	}
	return p.Body, nil
}

const eapHdrLen = 4 // Code, Identifier, Length

func decodeEAP(b []byte, base int) ([]byte, *DecodeError) {
	if len(b) < eapHdrLen {
		return nil, shortErr(base, PayloadEAP, eapHdrLen, len(b), "the EAP header")
	}
	if n := int(binary.BigEndian.Uint16(b[2:])); n != len(b) {
		return nil, syntaxErr(base+2, PayloadEAP, ErrBadLength, "EAP length %d in a %d-octet payload body", n, len(b))
	}
	return b, nil
}

// EAP returns an EAP payload's message (RFC 3748 format; its Length field
// is checked against the payload).
func (p *Payload) EAP() ([]byte, error) {
	if err := p.want(PayloadEAP); err != nil {
		return nil, err
	}
	v, err := decodeEAP(p.Body, p.base())
	return v, asError(err)
}

// ---------------------------------------------------------------------------
// CP (§3.15).

// CP is a Configuration payload; its attributes are kept raw (Decode checks
// that their lengths add up), All iterates over them.
type CP struct {
	Type       CFGType
	Attributes []byte
	// Reserved holds the 3 reserved octets, kept for re-encoding.
	Reserved [3]byte
}

// CPAttribute is one configuration attribute.
type CPAttribute struct {
	Type     uint16 // 15 bits
	Reserved bool   // the R bit, sent as 0
	Value    []byte
}

func decodeCP(b []byte, base int) (CP, *DecodeError) {
	if len(b) < 4 {
		return CP{}, shortErr(base, PayloadCP, 4, len(b), "the CFG type and reserved field")
	}
	c := CP{Type: CFGType(b[0]), Reserved: [3]byte(b[1:4])}
	if c.Type == 0 {
		return CP{}, syntaxErr(base, PayloadCP, ErrInvalid, "CFG type 0")
	}
	for off := 4; off < len(b); {
		if len(b)-off < 4 {
			return CP{}, syntaxErr(base+off, PayloadCP, ErrTruncated, "attribute header needs 4 octets, %d left", len(b)-off)
		}
		n := int(binary.BigEndian.Uint16(b[off+2:]))
		if n > len(b)-off-4 {
			return CP{}, syntaxErr(base+off+2, PayloadCP, ErrTruncated, "attribute length %d, %d octets left", n, len(b)-off-4)
		}
		off += 4 + n
	}
	if len(b) > 4 {
		c.Attributes = b[4:]
	}
	return c, nil
}

// CP decodes a CP payload.
func (p *Payload) CP() (CP, error) {
	if err := p.want(PayloadCP); err != nil {
		return CP{}, err
	}
	v, err := decodeCP(p.Body, p.base())
	return v, asError(err)
}

// All iterates over the attributes; it stops at the first one that does not
// fit (never the case in a decoded payload).
func (c *CP) All() iter.Seq[CPAttribute] {
	return func(yield func(CPAttribute) bool) {
		b := c.Attributes
		for len(b) >= 4 {
			n := int(binary.BigEndian.Uint16(b[2:]))
			if n > len(b)-4 {
				return
			}
			w := binary.BigEndian.Uint16(b)
			if !yield(CPAttribute{Type: w & 0x7fff, Reserved: w&0x8000 != 0, Value: b[4 : 4+n : 4+n]}) {
				return
			}
			b = b[4+n:]
		}
	}
}

// AppendCPAttribute appends one configuration attribute to the raw list dst.
func AppendCPAttribute(dst []byte, a CPAttribute) ([]byte, error) {
	if a.Type > 0x7fff || len(a.Value) > 0xffff {
		return dst, fmt.Errorf("%w: CP attribute type %d, %d octets", ErrTooLong, a.Type, len(a.Value))
	}
	w := a.Type
	if a.Reserved {
		w |= 0x8000
	}
	dst = binary.BigEndian.AppendUint16(dst, w)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(a.Value)))
	return append(dst, a.Value...), nil
}

// AppendBody appends the payload body.
func (c *CP) AppendBody(dst []byte) ([]byte, error) {
	dst = append(dst, byte(c.Type), c.Reserved[0], c.Reserved[1], c.Reserved[2])
	return append(dst, c.Attributes...), nil
}

// ---------------------------------------------------------------------------
// SKF (RFC 7383 §2.5).

func decodeFragment(b []byte, base int) (Fragment, *DecodeError) {
	if len(b) < fragmentHdrLen {
		return Fragment{}, shortErr(base, PayloadSKF, fragmentHdrLen, len(b), "fragment number and total")
	}
	f := Fragment{Number: binary.BigEndian.Uint16(b), Total: binary.BigEndian.Uint16(b[2:]), Body: b[fragmentHdrLen:]}
	if f.Number == 0 || f.Total == 0 || f.Number > f.Total {
		return Fragment{}, syntaxErr(base, PayloadSKF, ErrInvalid, "fragment %d of %d", f.Number, f.Total)
	}
	return f, nil
}
