package ikev2

import (
	"encoding/binary"
	"fmt"
)

// SA is a Security Association payload (RFC 7296 §3.3): proposals, each a
// set of transforms. Decoding into a reused SA (Payload.SA) reuses its
// slices, so it allocates nothing once they have grown; the Transforms and
// Attributes of a decoded SA's proposals are then sub-slices of the SA's own
// scratch and are overwritten by the next decode.
type SA struct {
	Proposals []Proposal

	// Scratch for decoding.
	transforms []Transform
	attrs      []Attribute
}

// Proposal is one proposal of an SA payload.
type Proposal struct {
	// Number is the proposal number: 1 for the first proposal of a
	// request, one more for each next; in a response, the number of the
	// proposal accepted (§3.3.1).
	Number   uint8
	Protocol Protocol
	// SPI is empty for the IKE SA of an IKE_SA_INIT, 8 octets for a new
	// IKE SA (rekey), 4 for AH and ESP.
	SPI        []byte
	Transforms []Transform
	// Reserved holds the reserved octet, kept for re-encoding.
	Reserved uint8
}

// Transform returns the proposal's first transform of type t.
func (p *Proposal) Transform(t TransformType) (*Transform, bool) {
	for i := range p.Transforms {
		if p.Transforms[i].Type == t {
			return &p.Transforms[i], true
		}
	}
	return nil, false
}

// ChildSPI returns the SPI of an AH or ESP proposal as a number.
func (p *Proposal) ChildSPI() (uint32, bool) {
	if len(p.SPI) != ChildSPILen {
		return 0, false
	}
	return binary.BigEndian.Uint32(p.SPI), true
}

// saCounts is what scanSA found: how much scratch a decode needs.
type saCounts struct{ proposals, transforms, attrs int }

// decodeSA checks an SA payload body and, with sa, decodes it into sa.
func decodeSA(b []byte, base int, sa *SA) *DecodeError {
	c, err := scanSA(b, base, nil)
	if err != nil || sa == nil {
		return err
	}
	// Size the scratch first: filling it then never reallocates, so the
	// sub-slices handed out stay valid.
	sa.Proposals = grow(sa.Proposals, c.proposals)
	sa.transforms = grow(sa.transforms, c.transforms)
	sa.attrs = grow(sa.attrs, c.attrs)
	_, err = scanSA(b, base, sa)
	return err
}

// grow returns s emptied, with room for n elements.
func grow[T any](s []T, n int) []T {
	clear(s[:cap(s)]) // drop references into the previous message
	if cap(s) < n {
		return make([]T, 0, n)
	}
	return s[:0]
}

// scanSA walks an SA payload body, checking every proposal, transform and
// attribute; with fill it appends them to fill's slices, which must have
// the room the first pass counted.
func scanSA(b []byte, base int, fill *SA) (saCounts, *DecodeError) {
	var c saCounts
	if len(b) == 0 {
		return c, syntaxErr(base-2, PayloadSA, ErrBadLength, "no proposals")
	}
	prevNum := 0
	for off := 0; off < len(b); {
		at := base + off
		if c.proposals == MaxProposals {
			return c, syntaxErr(at, PayloadSA, ErrTooMany, "more than %d proposals", MaxProposals)
		}
		if len(b)-off < proposalHdrLen {
			return c, syntaxErr(at, PayloadSA, ErrTruncated, "proposal header needs %d octets, %d left", proposalHdrLen, len(b)-off)
		}
		h := b[off:]
		last, plen, num := h[0], int(binary.BigEndian.Uint16(h[2:])), int(h[4])
		proto, spiSize, nt := Protocol(h[5]), int(h[6]), int(h[7])
		if plen < proposalHdrLen {
			return c, syntaxErr(at+2, PayloadSA, ErrBadLength, "proposal length %d is below its %d-octet header", plen, proposalHdrLen)
		}
		if plen > len(b)-off {
			return c, syntaxErr(at+2, PayloadSA, ErrTruncated, "proposal length %d, %d octets left", plen, len(b)-off)
		}
		switch end := off+plen == len(b); {
		case last != 0 && last != moreProposals:
			return c, syntaxErr(at, PayloadSA, ErrInvalid, "proposal's Last Substruc %d, want 0 or %d", last, moreProposals)
		case last == 0 && !end:
			return c, syntaxErr(at+2, PayloadSA, ErrBadLength, "last proposal ends %d octets before the SA payload", len(b)-off-plen)
		case last == moreProposals && end:
			return c, syntaxErr(at, PayloadSA, ErrTruncated, "proposal says more follow, the SA payload ends")
		}
		// §3.3.1: numbered from 1, each one more than the previous. A
		// response carries the accepted proposal's number alone.
		if num == 0 || prevNum != 0 && num != prevNum+1 {
			return c, syntaxErr(at+4, PayloadSA, ErrInvalid, "proposal number %d after %d", num, prevNum)
		}
		prevNum = num
		if err := checkSPISize(proto, spiSize, spiProposal, at+5, PayloadSA); err != nil {
			return c, err
		}
		if nt == 0 {
			return c, syntaxErr(at+7, PayloadSA, ErrInvalid, "proposal %d has no transforms", num)
		}
		if proposalHdrLen+spiSize > plen {
			return c, syntaxErr(at+6, PayloadSA, ErrTruncated, "SPI size %d in a %d-octet proposal", spiSize, plen)
		}
		var p *Proposal
		if fill != nil {
			fill.Proposals = append(fill.Proposals, Proposal{
				Number:   uint8(num),
				Protocol: proto,
				Reserved: h[1],
			})
			p = &fill.Proposals[len(fill.Proposals)-1]
			if spiSize > 0 {
				p.SPI = h[proposalHdrLen : proposalHdrLen+spiSize : proposalHdrLen+spiSize]
			}
		}
		first := 0
		if fill != nil {
			first = len(fill.transforms)
		}
		if err := scanTransforms(h[proposalHdrLen+spiSize:plen], at+proposalHdrLen+spiSize, nt, &c, fill); err != nil {
			return c, err
		}
		if p != nil {
			p.Transforms = fill.transforms[first:len(fill.transforms):len(fill.transforms)]
		}
		c.proposals++
		off += plen
	}
	return c, nil
}

// scanTransforms walks the nt transforms of one proposal in b.
func scanTransforms(b []byte, base, nt int, c *saCounts, fill *SA) *DecodeError {
	off := 0
	for i := 0; i < nt; i++ {
		at := base + off
		if c.transforms == MaxTransforms {
			return syntaxErr(at, PayloadSA, ErrTooMany, "more than %d transforms", MaxTransforms)
		}
		if len(b)-off < transformHdrLen {
			return syntaxErr(at, PayloadSA, ErrTruncated, "transform %d of %d: header needs %d octets, %d left", i+1, nt, transformHdrLen, len(b)-off)
		}
		h := b[off:]
		last, tlen := h[0], int(binary.BigEndian.Uint16(h[2:]))
		if tlen < transformHdrLen {
			return syntaxErr(at+2, PayloadSA, ErrBadLength, "transform length %d is below its %d-octet header", tlen, transformHdrLen)
		}
		if tlen > len(b)-off {
			return syntaxErr(at+2, PayloadSA, ErrTruncated, "transform length %d, %d octets left in the proposal", tlen, len(b)-off)
		}
		want := byte(moreTransforms)
		if i == nt-1 {
			want = 0
		}
		if last != want {
			return syntaxErr(at, PayloadSA, ErrInvalid, "transform %d of %d has Last Substruc %d, want %d", i+1, nt, last, want)
		}
		var t *Transform
		if fill != nil {
			fill.transforms = append(fill.transforms, Transform{
				Type:     TransformType(h[4]),
				ID:       binary.BigEndian.Uint16(h[6:]),
				Reserved: [2]byte{h[1], h[5]},
			})
			t = &fill.transforms[len(fill.transforms)-1]
		}
		firstAttr := 0
		if fill != nil {
			firstAttr = len(fill.attrs)
		}
		if err := scanAttributes(h[transformHdrLen:tlen], at+transformHdrLen, c, fill); err != nil {
			return err
		}
		if t != nil && len(fill.attrs) > firstAttr {
			t.Attributes = fill.attrs[firstAttr:len(fill.attrs):len(fill.attrs)]
		}
		c.transforms++
		off += tlen
	}
	if off != len(b) {
		return syntaxErr(base+off, PayloadSA, ErrBadLength, "%d octets after the proposal's %d transforms", len(b)-off, nt)
	}
	return nil
}

// scanAttributes walks the attributes of one transform in b: every length
// within the transform (free5gc issue 940 read past it).
func scanAttributes(b []byte, base int, c *saCounts, fill *SA) *DecodeError {
	keyLength := false
	for off := 0; off < len(b); {
		at := base + off
		if c.attrs == MaxAttributes {
			return syntaxErr(at, PayloadSA, ErrTooMany, "more than %d attributes", MaxAttributes)
		}
		if len(b)-off < attrHdrLen {
			return syntaxErr(at, PayloadSA, ErrTruncated, "attribute header needs %d octets, %d left in the transform", attrHdrLen, len(b)-off)
		}
		w, v := binary.BigEndian.Uint16(b[off:]), binary.BigEndian.Uint16(b[off+2:])
		a := Attribute{Type: AttributeType(w & attrTypeMask), TV: w&attrTVBit != 0}
		n := attrHdrLen
		if a.TV {
			a.Value = v
		} else {
			if int(v) > len(b)-off-attrHdrLen {
				return syntaxErr(at+2, PayloadSA, ErrTruncated, "attribute length %d, %d octets left in the transform", v, len(b)-off-attrHdrLen)
			}
			n += int(v)
			if v > 0 {
				a.Data = b[off+attrHdrLen : off+n : off+n]
			}
		}
		if a.Type == AttrKeyLength {
			// §3.3.5: Key Length is a TV attribute, and one is
			// enough.
			if !a.TV {
				return syntaxErr(at, PayloadSA, ErrInvalid, "Key Length attribute in TLV format")
			}
			if keyLength {
				return syntaxErr(at, PayloadSA, ErrInvalid, "second Key Length attribute")
			}
			keyLength = true
		}
		if fill != nil {
			fill.attrs = append(fill.attrs, a)
		}
		c.attrs++
		off += n
	}
	return nil
}

// SA decodes an SA payload into sa, reusing its slices.
func (p *Payload) SA(sa *SA) error {
	if err := p.want(PayloadSA); err != nil {
		return err
	}
	return asError(decodeSA(p.Body, p.base(), sa))
}

// AppendBody appends the payload body. It writes the Last Substruc
// markers, lengths, SPI sizes and transform counts; what the proposals say
// (numbers, SPI sizes for the protocol, ...) is checked by the Builder.
func (sa *SA) AppendBody(dst []byte) ([]byte, error) {
	for i := range sa.Proposals {
		p := &sa.Proposals[i]
		if len(p.SPI) > 0xff || len(p.Transforms) > 0xff {
			return dst, fmt.Errorf("%w: proposal %d: SPI of %d octets, %d transforms", ErrTooLong, p.Number, len(p.SPI), len(p.Transforms))
		}
		last := byte(moreProposals)
		if i == len(sa.Proposals)-1 {
			last = 0
		}
		start := len(dst)
		dst = append(dst, last, p.Reserved, 0, 0, p.Number, byte(p.Protocol), byte(len(p.SPI)), byte(len(p.Transforms)))
		dst = append(dst, p.SPI...)
		for j := range p.Transforms {
			t := &p.Transforms[j]
			last := byte(moreTransforms)
			if j == len(p.Transforms)-1 {
				last = 0
			}
			tstart := len(dst)
			dst = append(dst, last, t.Reserved[0], 0, 0, byte(t.Type), t.Reserved[1])
			dst = binary.BigEndian.AppendUint16(dst, t.ID)
			for k := range t.Attributes {
				a := &t.Attributes[k]
				if uint16(a.Type) > attrTypeMask || !a.TV && len(a.Data) > 0xffff {
					return dst, fmt.Errorf("%w: attribute type %d with %d octets", ErrTooLong, a.Type, len(a.Data))
				}
				if a.TV {
					dst = binary.BigEndian.AppendUint16(dst, uint16(a.Type)|attrTVBit)
					dst = binary.BigEndian.AppendUint16(dst, a.Value)
				} else {
					dst = binary.BigEndian.AppendUint16(dst, uint16(a.Type))
					dst = binary.BigEndian.AppendUint16(dst, uint16(len(a.Data)))
					dst = append(dst, a.Data...)
				}
			}
			if n := len(dst) - tstart; n > maxPayloadLen {
				return dst, fmt.Errorf("%w: transform of %d octets", ErrTooLong, n)
			}
			binary.BigEndian.PutUint16(dst[tstart+2:], uint16(len(dst)-tstart))
		}
		if n := len(dst) - start; n > maxPayloadLen {
			return dst, fmt.Errorf("%w: proposal of %d octets", ErrTooLong, n)
		}
		binary.BigEndian.PutUint16(dst[start+2:], uint16(len(dst)-start))
	}
	return dst, nil
}
