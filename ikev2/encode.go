package ikev2

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Builder appends one IKE message (NewMessage) or one bare payload chain
// (NewChain: the inside of an SK payload) to a caller's buffer. Each method
// appends one payload; the Builder writes the generic header, puts the
// payload's type into the previous Next Payload field (or the IKE header's)
// and its length into its own, and checks the payload as Decode would,
// refusing what Decode would refuse. Finish writes the message length.
//
// Errors are sticky: the first one is kept, later payloads are ignored, and
// Finish returns it, so a message is built without checking every call.
// Nothing is allocated when dst has the capacity for the whole message.
//
// Payloads are written with the critical bit clear, as RFC 7296 §2.5 asks
// for the payload types it defines; Payload writes one exactly as given.
type Builder struct {
	buf    []byte
	start  int // of the message (or chain) in buf
	header bool
	next   int // index in buf of the Next Payload octet to fill, -1 for none
	first  PayloadType
	n      int
	sealed PayloadType // SK or SKF once one is added: it must be last
	err    error
}

// NewMessage starts a message with header h after dst's contents. The
// header's NextPayload and Length are ignored: the Builder computes them.
func NewMessage(dst []byte, h *Header) Builder {
	b := Builder{buf: dst, start: len(dst), header: true, next: len(dst) + 16}
	if h.MinorVersion > 0x0f {
		b.err = fmt.Errorf("%w: minor version %d in 4 bits", ErrTooLong, h.MinorVersion)
	}
	b.buf = binary.BigEndian.AppendUint64(b.buf, uint64(h.InitiatorSPI))
	b.buf = binary.BigEndian.AppendUint64(b.buf, uint64(h.ResponderSPI))
	b.buf = append(b.buf, 0, MajorVersion<<4|h.MinorVersion&0x0f, byte(h.Exchange), byte(h.Flags))
	b.buf = binary.BigEndian.AppendUint32(b.buf, h.MessageID)
	b.buf = binary.BigEndian.AppendUint32(b.buf, 0)
	return b
}

// NewChain starts a bare payload chain after dst's contents: the plaintext
// of an SK payload, whose Next field is then First.
func NewChain(dst []byte) Builder {
	return Builder{buf: dst, start: len(dst), next: -1}
}

// First is the type of the first payload added (PayloadNone if none).
func (b *Builder) First() PayloadType { return b.first }

// Err is the first error so far.
func (b *Builder) Err() error { return b.err }

// Finish completes the message and returns dst with it appended, or dst
// unchanged and the first error.
func (b *Builder) Finish() ([]byte, error) {
	if b.err != nil {
		return b.buf[:b.start], b.err
	}
	if b.header {
		n := len(b.buf) - b.start
		if uint64(n) > math.MaxUint32 {
			return b.buf[:b.start], fmt.Errorf("%w: message of %d octets", ErrTooLong, n)
		}
		binary.BigEndian.PutUint32(b.buf[b.start+24:], uint32(n))
	}
	return b.buf, nil
}

// begin appends the generic header of a payload of type t, links it into
// the chain and returns its index in buf, or -1 after an error.
func (b *Builder) begin(t PayloadType, critical bool, reserved uint8) int {
	switch {
	case b.err != nil:
		return -1
	case b.sealed != PayloadNone:
		b.err = fmt.Errorf("%w: %v after %v", ErrAfterEncrypted, t, b.sealed)
		return -1
	case b.n == MaxPayloads:
		b.err = fmt.Errorf("ikev2: %w: more than %d payloads", ErrTooMany, MaxPayloads)
		return -1
	case !b.header && (t == PayloadSK || t == PayloadSKF):
		b.err = fmt.Errorf("ikev2: %w: %v inside an encrypted payload", ErrInvalid, t)
		return -1
	case reserved > reservedMask:
		b.err = fmt.Errorf("%w: reserved bits 0x%02x of a %v payload", ErrTooLong, reserved, t)
		return -1
	}
	if b.next >= 0 {
		b.buf[b.next] = byte(t)
	}
	if b.n == 0 {
		b.first = t
	}
	at := len(b.buf)
	flags := reserved
	if critical {
		flags |= criticalBit
	}
	b.buf = append(b.buf, 0, flags, 0, 0)
	b.next = at
	b.n++
	return at
}

// end fills in the length of the payload begun at at and checks it.
func (b *Builder) end(at int, t PayloadType, err error) {
	if err == nil {
		if n := len(b.buf) - at; n > maxPayloadLen {
			err = fmt.Errorf("%w: %v payload of %d octets", ErrTooLong, t, n)
		}
	}
	if err == nil {
		binary.BigEndian.PutUint16(b.buf[at+2:], uint16(len(b.buf)-at))
		if t.Known() {
			p := Payload{Type: t, Next: PayloadType(b.buf[at]), Offset: at - b.start, Body: b.buf[at+PayloadHeaderLen:]}
			if derr := validate(&p); derr != nil {
				err = derr
			}
		}
	}
	if err != nil {
		b.err = fmt.Errorf("ikev2: encoding the %v payload: %w", t, err)
	}
}

func (b *Builder) bytes(t PayloadType, v []byte) {
	at := b.begin(t, false, 0)
	if at < 0 {
		return
	}
	b.buf = append(b.buf, v...)
	b.end(at, t, nil)
}

// Payload appends p as it is: type, critical and reserved bits, body, and
// for SK and SKF the Next field (the first inner payload's type).
func (b *Builder) Payload(p *Payload) {
	at := b.begin(p.Type, p.Critical, p.Reserved)
	if at < 0 {
		return
	}
	if p.Type == PayloadSK || p.Type == PayloadSKF {
		b.buf[at] = byte(p.Next)
		b.sealed = p.Type
	}
	b.buf = append(b.buf, p.Body...)
	b.end(at, p.Type, nil)
}

// SA appends an SA payload.
func (b *Builder) SA(sa *SA) {
	at := b.begin(PayloadSA, false, 0)
	if at < 0 {
		return
	}
	var err error
	b.buf, err = sa.AppendBody(b.buf)
	b.end(at, PayloadSA, err)
}

// KE appends a KE payload.
func (b *Builder) KE(ke *KE) {
	at := b.begin(PayloadKE, false, 0)
	if at < 0 {
		return
	}
	var err error
	b.buf, err = ke.AppendBody(b.buf)
	b.end(at, PayloadKE, err)
}

// IDi appends an IDi payload.
func (b *Builder) IDi(id *ID) { b.id(PayloadIDi, id) }

// IDr appends an IDr payload.
func (b *Builder) IDr(id *ID) { b.id(PayloadIDr, id) }

func (b *Builder) id(t PayloadType, id *ID) {
	at := b.begin(t, false, 0)
	if at < 0 {
		return
	}
	var err error
	b.buf, err = id.AppendBody(b.buf)
	b.end(at, t, err)
}

// Cert appends a CERT payload.
func (b *Builder) Cert(c *Cert) { b.cert(PayloadCERT, c) }

// CertReq appends a CERTREQ payload.
func (b *Builder) CertReq(c *Cert) { b.cert(PayloadCERTREQ, c) }

func (b *Builder) cert(t PayloadType, c *Cert) {
	at := b.begin(t, false, 0)
	if at < 0 {
		return
	}
	var err error
	b.buf, err = c.AppendBody(b.buf)
	b.end(at, t, err)
}

// Auth appends an AUTH payload.
func (b *Builder) Auth(a *Auth) {
	at := b.begin(PayloadAUTH, false, 0)
	if at < 0 {
		return
	}
	var err error
	b.buf, err = a.AppendBody(b.buf)
	b.end(at, PayloadAUTH, err)
}

// Nonce appends a Nonce payload.
func (b *Builder) Nonce(nonce []byte) { b.bytes(PayloadNonce, nonce) }

// Notify appends a Notify payload.
func (b *Builder) Notify(n *Notify) {
	at := b.begin(PayloadNotify, false, 0)
	if at < 0 {
		return
	}
	var err error
	b.buf, err = n.AppendBody(b.buf)
	b.end(at, PayloadNotify, err)
}

// Delete appends a Delete payload.
func (b *Builder) Delete(d *Delete) {
	at := b.begin(PayloadDelete, false, 0)
	if at < 0 {
		return
	}
	var err error
	b.buf, err = d.AppendBody(b.buf)
	b.end(at, PayloadDelete, err)
}

// VendorID appends a Vendor ID payload.
func (b *Builder) VendorID(v []byte) { b.bytes(PayloadVendorID, v) }

// TSi appends a TSi payload.
func (b *Builder) TSi(ts *TrafficSelectors) { b.ts(PayloadTSi, ts) }

// TSr appends a TSr payload.
func (b *Builder) TSr(ts *TrafficSelectors) { b.ts(PayloadTSr, ts) }

func (b *Builder) ts(t PayloadType, ts *TrafficSelectors) {
	at := b.begin(t, false, 0)
	if at < 0 {
		return
	}
	var err error
	b.buf, err = ts.AppendBody(b.buf)
	b.end(at, t, err)
}

// CP appends a CP payload.
func (b *Builder) CP(c *CP) {
	at := b.begin(PayloadCP, false, 0)
	if at < 0 {
		return
	}
	var err error
	b.buf, err = c.AppendBody(b.buf)
	b.end(at, PayloadCP, err)
}

// EAP appends an EAP payload carrying the EAP message m.
func (b *Builder) EAP(m []byte) { b.bytes(PayloadEAP, m) }

// Encrypted appends an SK payload, which must be the last, whose inner chain
// starts with a payload of type first, with an n-octet body of zeros for IV
// ‖ ciphertext ‖ ICV. It returns the body's offset from the start of the
// message: after Finish, every length in the message is final, so
// ikev2/crypto can take the bytes before the body as associated data and
// seal the body in place.
func (b *Builder) Encrypted(first PayloadType, n int) (bodyOffset int) {
	if n < 0 || n > maxPayloadLen-PayloadHeaderLen {
		if b.err == nil {
			b.err = fmt.Errorf("%w: SK body of %d octets", ErrTooLong, n)
		}
		return -1
	}
	at := b.begin(PayloadSK, false, 0)
	if at < 0 {
		return -1
	}
	b.buf[at] = byte(first)
	b.sealed = PayloadSK
	b.buf = append(b.buf, make([]byte, n)...)
	b.end(at, PayloadSK, nil)
	return at + PayloadHeaderLen - b.start
}

// Fragment appends an SKF payload (RFC 7383), which must be the last:
// fragment number of total, the first inner payload's type in fragment 1
// (PayloadNone in the others), and an n-octet body of zeros for IV ‖
// ciphertext ‖ ICV, whose offset from the start of the message it returns
// (the associated data ends there).
func (b *Builder) Fragment(first PayloadType, number, total uint16, n int) (bodyOffset int) {
	if n < 0 || n > maxPayloadLen-PayloadHeaderLen-fragmentHdrLen {
		if b.err == nil {
			b.err = fmt.Errorf("%w: SKF body of %d octets", ErrTooLong, n)
		}
		return -1
	}
	at := b.begin(PayloadSKF, false, 0)
	if at < 0 {
		return -1
	}
	b.buf[at] = byte(first)
	b.sealed = PayloadSKF
	b.buf = binary.BigEndian.AppendUint16(b.buf, number)
	b.buf = binary.BigEndian.AppendUint16(b.buf, total)
	b.buf = append(b.buf, make([]byte, n)...)
	b.end(at, PayloadSKF, nil)
	return at + PayloadHeaderLen + fragmentHdrLen - b.start
}

// AppendMessage appends the message with header h and the payloads as
// they are (Builder.Payload), computing the Next Payload fields and the
// lengths: a decoded message re-encodes to the bytes it was decoded from.
func AppendMessage(dst []byte, h *Header, payloads []Payload) ([]byte, error) {
	b := NewMessage(dst, h)
	for i := range payloads {
		b.Payload(&payloads[i])
	}
	return b.Finish()
}
