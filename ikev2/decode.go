package ikev2

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// DecodeError says what was wrong with a message, where, and how a receiver
// would answer it.
type DecodeError struct {
	// Offset is the byte offset of the offending field from the start of
	// the IKE header, or from the start of the decrypted payloads when
	// Inner is set.
	Offset int
	// Notify is the error notification a receiver answers with
	// (INVALID_SYNTAX, INVALID_MAJOR_VERSION, UNSUPPORTED_CRITICAL_PAYLOAD),
	// or NotifyNone when the message must be dropped silently (shorter than
	// an IKE header: there is nobody to answer). Whether to answer at all is
	// the engine's decision (RFC 7296 §2.21: never for an unauthenticated
	// message once an SA exists, for one).
	Notify NotifyType
	// Payload is the type of the payload the error is in (PayloadNone for
	// the header). With UNSUPPORTED_CRITICAL_PAYLOAD it is the unsupported
	// type, which goes into the notification's one octet of data.
	Payload PayloadType
	// Inner is set for errors in the payloads inside an SK payload.
	Inner bool
	Err   error
}

func (e *DecodeError) Error() string {
	where := "offset"
	if e.Inner {
		where = "decrypted offset"
	}
	if e.Payload != PayloadNone {
		return fmt.Sprintf("ikev2: %s %d: %v payload: %v", where, e.Offset, e.Payload, e.Err)
	}
	return fmt.Sprintf("ikev2: %s %d: %v", where, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Sentinel causes wrapped in a DecodeError.
var (
	// ErrTruncated: a field or structure runs past the end of its parent.
	ErrTruncated = errors.New("truncated")
	// ErrBadLength: a length field is below its minimum, or a structure
	// leaves bytes its parent does not account for.
	ErrBadLength = errors.New("bad length")
	// ErrVersion: the major version is not 2.
	ErrVersion = errors.New("unsupported major version")
	// ErrCritical: a payload of an unknown type has the critical bit set.
	ErrCritical = errors.New("unsupported critical payload")
	// ErrTooMany: more payloads, proposals, transforms, attributes or
	// selectors than this codec keeps (MaxPayloads, ...).
	ErrTooMany = errors.New("too many")
	// ErrInvalid: a field holds a value the RFCs forbid (an SPI size for
	// the protocol, a nonce length, proposal numbering, a misplaced SK
	// payload ...).
	ErrInvalid = errors.New("invalid value")
)

// ErrWrongType is returned by a Payload accessor called on a payload of
// another type.
var ErrWrongType = errors.New("ikev2: wrong payload type")

func decodeErr(off int, notify NotifyType, pt PayloadType, cause error, format string, args ...any) *DecodeError {
	err := cause
	if format != "" {
		err = fmt.Errorf("%w: "+format, append([]any{cause}, args...)...)
	}
	return &DecodeError{Offset: off, Notify: notify, Payload: pt, Err: err}
}

// syntaxErr is an INVALID_SYNTAX error inside payload pt.
func syntaxErr(off int, pt PayloadType, cause error, format string, args ...any) *DecodeError {
	return decodeErr(off, NotifyInvalidSyntax, pt, cause, format, args...)
}

// Header is the IKE header (RFC 7296 §3.1).
type Header struct {
	InitiatorSPI SPI
	ResponderSPI SPI // zero in the first message of an IKE_SA_INIT
	// NextPayload is the type of the first payload, as decoded; the
	// Builder writes the type of the first payload it is given.
	NextPayload PayloadType
	// MinorVersion is the low half of the version octet. RFC 7296 says to
	// send 0 and ignore it on receipt; it is kept for re-encoding.
	MinorVersion uint8
	Exchange     ExchangeType
	Flags        Flags
	MessageID    uint32
	// Length is the message length as decoded; the Builder computes it.
	Length uint32
}

// IsResponse reports whether the R flag is set.
func (h *Header) IsResponse() bool { return h.Flags&FlagResponse != 0 }

// IsInitiator reports whether the I flag is set: the sender is the original
// initiator of the IKE SA.
func (h *Header) IsInitiator() bool { return h.Flags&FlagInitiator != 0 }

// DecodeHeader decodes the IKE header at the start of b, the UDP payload (on
// port 4500, after the non-ESP marker): at least HeaderLen octets, major
// version 2, and a Length equal to len(b). On an error past the first
// HeaderLen octets the returned header is filled in, so the receiver can
// still find the SA and answer.
func DecodeHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, decodeErr(0, NotifyNone, PayloadNone, ErrTruncated, "%d octets, the IKE header needs %d", len(b), HeaderLen)
	}
	h.InitiatorSPI = SPI(binary.BigEndian.Uint64(b[0:]))
	h.ResponderSPI = SPI(binary.BigEndian.Uint64(b[8:]))
	h.NextPayload = PayloadType(b[16])
	h.MinorVersion = b[17] & 0x0f
	h.Exchange = ExchangeType(b[18])
	h.Flags = Flags(b[19])
	h.MessageID = binary.BigEndian.Uint32(b[20:])
	h.Length = binary.BigEndian.Uint32(b[24:])
	if major := b[17] >> 4; major != MajorVersion {
		return h, decodeErr(17, NotifyInvalidMajorVersion, PayloadNone, ErrVersion, "version %d.%d", major, h.MinorVersion)
	}
	switch n := h.Length; {
	case n < HeaderLen:
		return h, syntaxErr(24, PayloadNone, ErrBadLength, "message length %d is below the %d-octet header", n, HeaderLen)
	case uint64(n) > uint64(len(b)):
		return h, syntaxErr(24, PayloadNone, ErrTruncated, "message length %d, datagram %d octets", n, len(b))
	case uint64(n) < uint64(len(b)):
		return h, syntaxErr(24, PayloadNone, ErrBadLength, "message length %d, datagram %d octets", n, len(b))
	}
	return h, nil
}

// Payload is one payload of a chain as it is on the wire. Body refers into
// the decoded bytes; the typed accessors (SA, KE, Notify, ...) decode it.
type Payload struct {
	Type PayloadType
	// Next is the Next Payload field as decoded: the type of the following
	// payload, or for SK and SKF the type of the first payload inside. The
	// Builder computes it, except for SK and SKF.
	Next     PayloadType
	Critical bool
	// Reserved holds the 7 reserved bits after the critical bit, kept for
	// re-encoding.
	Reserved uint8
	// Offset is the offset of the generic payload header from the start of
	// the message (or of the decrypted chain).
	Offset int
	// Body is the payload after its generic header.
	Body []byte
}

// Len is the payload's length on the wire, header included.
func (p *Payload) Len() int { return PayloadHeaderLen + len(p.Body) }

// Message is a decoded IKE message. Decode fills it from a datagram; every
// slice in it refers into that datagram, which must not change while the
// Message is in use. A Message can be reused: decoding into it again
// allocates nothing once its slices have grown.
type Message struct {
	Header Header
	// Payloads is the outer chain, in wire order. It keeps payloads of
	// unknown types without the critical bit (the engine ignores them) so
	// that a decoded message re-encodes to the same bytes.
	Payloads []Payload
	// Inner is the chain inside the SK payload, after DecodeInner.
	Inner []Payload
	// Raw is the whole message, header included. The AUTH payload signs
	// the first message of the exchange as sent (RFC 7296 §2.15): for a
	// received IKE_SA_INIT this is it.
	Raw []byte
}

// Decode decodes the IKE message b (the UDP payload; on port 4500 after the
// non-ESP marker, see FromNATT). It checks the header (DecodeHeader), walks
// the payload chain and checks the content of every payload type it knows,
// so that a decoded message's typed accessors cannot fail. The chain ends
// with a payload whose Next Payload is 0, or with an SK or SKF payload,
// which must be last; the payloads must fill the message exactly.
//
// Decode never reads outside b, never panics and never modifies b. On an
// error after the header, m.Header is valid (so the receiver can answer with
// the notification the *DecodeError names) and m.Payloads holds the payloads
// decoded before the error.
func (m *Message) Decode(b []byte) error {
	m.Payloads = m.Payloads[:0]
	m.Inner = m.Inner[:0]
	m.Raw = nil
	h, err := DecodeHeader(b)
	m.Header = h
	if err != nil {
		return err
	}
	m.Raw = b[:h.Length]
	m.Payloads, err = walk(m.Payloads, m.Raw, HeaderLen, h.NextPayload, false)
	return err
}

// DecodeInner decodes the payloads inside the message's SK payload: plain is
// the decrypted content (padding and pad length removed by ikev2/crypto),
// and the first payload's type is the SK payload's Next field. The result is
// in m.Inner; the checks are Decode's, and nested SK or SKF payloads are
// refused. Error offsets count from the start of plain.
func (m *Message) DecodeInner(plain []byte) error {
	m.Inner = m.Inner[:0]
	sk := m.Find(PayloadSK)
	if sk == nil {
		return &DecodeError{Offset: HeaderLen, Notify: NotifyInvalidSyntax, Err: fmt.Errorf("%w: the message has no SK payload", ErrInvalid)}
	}
	var err error
	m.Inner, err = DecodeChain(m.Inner, plain, sk.Next)
	return err
}

// DecodeChain decodes a chain of decrypted payloads starting with a payload
// of type first, appending them to dst: the inside of an SK payload, or the
// reassembled content of SKF fragments (RFC 7383 §2.6: first is the first
// fragment's Next field). The checks are Decode's; SK and SKF payloads
// inside are refused. Error offsets count from the start of chain and have
// Inner set.
func DecodeChain(dst []Payload, chain []byte, first PayloadType) ([]Payload, error) {
	return walk(dst, chain, 0, first, true)
}

// walk decodes the chain in b starting at off with a payload of type next.
func walk(dst []Payload, b []byte, off int, next PayloadType, inner bool) ([]Payload, error) {
	fail := func(e *DecodeError) ([]Payload, error) {
		e.Inner = inner
		return dst, e
	}
	n := 0
	for next != PayloadNone {
		if n == MaxPayloads {
			return fail(syntaxErr(off, next, ErrTooMany, "more than %d payloads", MaxPayloads))
		}
		if len(b)-off < PayloadHeaderLen {
			return fail(syntaxErr(off, next, ErrTruncated, "payload header needs %d octets, %d left", PayloadHeaderLen, len(b)-off))
		}
		plen := int(binary.BigEndian.Uint16(b[off+2:]))
		if plen < PayloadHeaderLen {
			return fail(syntaxErr(off+2, next, ErrBadLength, "payload length %d is below the %d-octet header", plen, PayloadHeaderLen))
		}
		if plen > len(b)-off {
			return fail(syntaxErr(off+2, next, ErrTruncated, "payload length %d, %d octets left", plen, len(b)-off))
		}
		p := Payload{
			Type:     next,
			Next:     PayloadType(b[off]),
			Critical: b[off+1]&criticalBit != 0,
			Reserved: b[off+1] & reservedMask,
			Offset:   off,
			Body:     b[off+PayloadHeaderLen : off+plen : off+plen],
		}
		if !next.Known() {
			if p.Critical {
				e := decodeErr(off+1, NotifyUnsupportedCriticalPayload, next, ErrCritical, "type %d", uint8(next))
				return fail(e)
			}
		} else if err := validate(&p); err != nil {
			return fail(err)
		}
		if (next == PayloadSK || next == PayloadSKF) && inner {
			return fail(syntaxErr(off, next, ErrInvalid, "an encrypted payload inside an encrypted payload"))
		}
		dst = append(dst, p)
		n++
		off += plen
		next = p.Next
		if p.Type == PayloadSK || p.Type == PayloadSKF {
			// Its Next field names the first inner payload: nothing
			// follows it in this chain (RFC 7296 §3.14, RFC 7383 §2.5).
			if off != len(b) {
				return fail(syntaxErr(off, PayloadNone, ErrBadLength, "%d octets after the %v payload, which must be last", len(b)-off, p.Type))
			}
			return dst, nil
		}
	}
	if off != len(b) {
		return fail(syntaxErr(off, PayloadNone, ErrBadLength, "%d octets after the last payload", len(b)-off))
	}
	return dst, nil
}

// validate checks the body of a payload of a known type; the error's
// offsets are absolute (p.Offset is).
func validate(p *Payload) *DecodeError {
	base := p.Offset + PayloadHeaderLen
	var err *DecodeError
	switch p.Type {
	case PayloadSA:
		err = decodeSA(p.Body, base, nil)
	case PayloadKE:
		_, err = decodeKE(p.Body, base)
	case PayloadIDi, PayloadIDr:
		_, err = decodeID(p.Body, base, p.Type)
	case PayloadCERT, PayloadCERTREQ:
		_, err = decodeCert(p.Body, base, p.Type)
	case PayloadAUTH:
		_, err = decodeAuth(p.Body, base)
	case PayloadNonce:
		_, err = decodeNonce(p.Body, base)
	case PayloadNotify:
		_, err = decodeNotify(p.Body, base)
	case PayloadDelete:
		_, err = decodeDelete(p.Body, base)
	case PayloadTSi, PayloadTSr:
		err = decodeTS(p.Body, base, p.Type, nil)
	case PayloadCP:
		_, err = decodeCP(p.Body, base)
	case PayloadEAP:
		_, err = decodeEAP(p.Body, base)
	case PayloadSKF:
		_, err = decodeFragment(p.Body, base)
	case PayloadVendorID, PayloadSK:
		// Opaque: a vendor's bytes; IV ‖ ciphertext ‖ ICV, checked by
		// ikev2/crypto.
	}
	return err
}

// Find returns the first payload of type t in the outer chain, or nil.
func (m *Message) Find(t PayloadType) *Payload { return Find(m.Payloads, t) }

// Find returns the first payload of type t in ps, or nil.
func Find(ps []Payload, t PayloadType) *Payload {
	for i := range ps {
		if ps[i].Type == t {
			return &ps[i]
		}
	}
	return nil
}

// FindNotify returns the first Notify payload of type t in ps.
func FindNotify(ps []Payload, t NotifyType) (Notify, bool) {
	for i := range ps {
		if ps[i].Type != PayloadNotify {
			continue
		}
		if n, err := ps[i].Notify(); err == nil && n.Type == t {
			return n, true
		}
	}
	return Notify{}, false
}

// Encrypted is the content of the message's SK payload, as ikev2/crypto
// needs it.
type Encrypted struct {
	// First is the type of the first payload inside (the SK payload's
	// Next field).
	First PayloadType
	// Associated is the message from the IKE header through the SK
	// payload's generic header: the associated data of an AEAD cipher (RFC
	// 5282 §5.1), and the start of what an integrity check covers (RFC
	// 7296 §3.14: everything up to the ICV).
	Associated []byte
	// Body is IV ‖ ciphertext (with padding and pad length) ‖ ICV.
	Body []byte
}

// Encrypted returns the message's SK payload, if it has one. (ikev2/crypto's
// Open and Seal take the SK payload's offset, Find(PayloadSK).Offset, and
// m.Raw, and decrypt in place.)
func (m *Message) Encrypted() (Encrypted, bool) {
	p := m.Find(PayloadSK)
	if p == nil {
		return Encrypted{}, false
	}
	end := p.Offset + PayloadHeaderLen
	return Encrypted{First: p.Next, Associated: m.Raw[:end:end], Body: p.Body}, true
}

// Fragment is the content of an SKF payload (RFC 7383 §2.5).
type Fragment struct {
	// First is the type of the first inner payload in fragment 1, and
	// should be 0 in the others (RFC 7383 says so, and strongSwan ignores
	// it there: so does the engine).
	First  PayloadType
	Number uint16 // 1 ... Total
	Total  uint16
	// Associated is the message from the IKE header through Total
	// Fragments: the associated data of an AEAD cipher, and the start of
	// what an integrity check covers.
	Associated []byte
	// Body is IV ‖ ciphertext ‖ ICV.
	Body []byte
}

// Fragment returns the message's SKF payload, if it has one.
func (m *Message) Fragment() (Fragment, bool) {
	p := m.Find(PayloadSKF)
	if p == nil || len(p.Body) < fragmentHdrLen {
		return Fragment{}, false
	}
	end := p.Offset + PayloadHeaderLen + fragmentHdrLen
	return Fragment{
		First:      p.Next,
		Number:     binary.BigEndian.Uint16(p.Body),
		Total:      binary.BigEndian.Uint16(p.Body[2:]),
		Associated: m.Raw[:end:end],
		Body:       p.Body[fragmentHdrLen:],
	}, true
}
