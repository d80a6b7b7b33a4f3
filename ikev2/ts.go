package ikev2

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// TrafficSelectors is a TSi or TSr payload (RFC 7296 §3.13). Decoding into a
// reused value (Payload.TrafficSelectors) reuses Selectors.
type TrafficSelectors struct {
	Selectors []TrafficSelector
	// Reserved holds the 3 reserved octets, kept for re-encoding.
	Reserved [3]byte
}

// TrafficSelector is one selector: an address range, an IP protocol (0 for
// any) and a port range (0-65535 for any; OPAQUE is 65535-0, §3.13.1).
//
// Selectors of other types (RFC 4595's Fibre Channel ranges, RFC 9478's
// security labels) have no ports or addresses: Protocol holds their octet
// 1 and Data the octets after the selector length, raw.
type TrafficSelector struct {
	Type      TSType
	Protocol  uint8
	StartPort uint16
	EndPort   uint16
	// Start and End are the address range of a TS_IPV4_ADDR_RANGE (IPv4
	// addresses) or TS_IPV6_ADDR_RANGE (16-octet addresses).
	Start, End netip.Addr
	// Data is the rest of a selector of another type.
	Data []byte
}

// HostSelector is the selector of one address and one IP protocol, any port:
// what DMVPN's transport-mode Child SAs use with protocol 47 (GRE).
func HostSelector(a netip.Addr, protocol uint8) TrafficSelector {
	t := TSIPv6AddrRange
	if a.Is4() {
		t = TSIPv4AddrRange
	}
	return TrafficSelector{Type: t, Protocol: protocol, StartPort: 0, EndPort: 0xffff, Start: a, End: a}
}

func (ts *TrafficSelector) len() int {
	switch ts.Type {
	case TSIPv4AddrRange:
		return tsHdrLen + 8
	case TSIPv6AddrRange:
		return tsHdrLen + 32
	}
	return tsTypeHdrLen + len(ts.Data)
}

// decodeTS checks a TS payload body and, with ts, decodes it into ts.
func decodeTS(b []byte, base int, pt PayloadType, ts *TrafficSelectors) *DecodeError {
	if len(b) < 4 {
		return shortErr(base, pt, 4, len(b), "the selector count and reserved field")
	}
	count := int(b[0])
	if count > MaxSelectors {
		return syntaxErr(base, pt, ErrTooMany, "%d traffic selectors, at most %d", count, MaxSelectors)
	}
	if ts != nil {
		ts.Selectors = grow(ts.Selectors, count)
		ts.Reserved = [3]byte(b[1:4])
	}
	off := 4
	for i := 0; i < count; i++ {
		at := base + off
		if len(b)-off < tsTypeHdrLen {
			return syntaxErr(at, pt, ErrTruncated, "selector %d of %d: header needs %d octets, %d left", i+1, count, tsTypeHdrLen, len(b)-off)
		}
		h := b[off:]
		s := TrafficSelector{Type: TSType(h[0]), Protocol: h[1]}
		slen := int(binary.BigEndian.Uint16(h[2:]))
		min := tsTypeHdrLen
		if s.Type == TSIPv4AddrRange || s.Type == TSIPv6AddrRange {
			min = tsHdrLen
		}
		if slen < min {
			return syntaxErr(at+2, pt, ErrBadLength, "selector length %d is below its %d-octet header", slen, min)
		}
		if slen > len(b)-off {
			return syntaxErr(at+2, pt, ErrTruncated, "selector length %d, %d octets left", slen, len(b)-off)
		}
		switch s.Type {
		case TSIPv4AddrRange, TSIPv6AddrRange:
			n := 4
			if s.Type == TSIPv6AddrRange {
				n = 16
			}
			if slen != tsHdrLen+2*n {
				return syntaxErr(at+2, pt, ErrBadLength, "%v of length %d, want %d", s.Type, slen, tsHdrLen+2*n)
			}
			s.StartPort, s.EndPort = binary.BigEndian.Uint16(h[4:]), binary.BigEndian.Uint16(h[6:])
			v := h[tsHdrLen:slen]
			if n == 4 {
				s.Start, s.End = netip.AddrFrom4([4]byte(v)), netip.AddrFrom4([4]byte(v[4:]))
			} else {
				s.Start, s.End = netip.AddrFrom16([16]byte(v)), netip.AddrFrom16([16]byte(v[16:]))
			}
		default:
			if slen > tsTypeHdrLen {
				s.Data = h[tsTypeHdrLen:slen:slen]
			}
		}
		if ts != nil {
			ts.Selectors = append(ts.Selectors, s)
		}
		off += slen
	}
	if off != len(b) {
		return syntaxErr(base+off, pt, ErrBadLength, "%d octets after the %d traffic selectors", len(b)-off, count)
	}
	return nil
}

// TrafficSelectors decodes a TSi or TSr payload into ts, reusing its slice.
func (p *Payload) TrafficSelectors(ts *TrafficSelectors) error {
	if p.Type != PayloadTSi && p.Type != PayloadTSr {
		return fmt.Errorf("%w: %v, not TSi or TSr", ErrWrongType, p.Type)
	}
	return asError(decodeTS(p.Body, p.base(), p.Type, ts))
}

// AppendBody appends the payload body.
func (ts *TrafficSelectors) AppendBody(dst []byte) ([]byte, error) {
	if len(ts.Selectors) > 0xff {
		return dst, fmt.Errorf("%w: %d traffic selectors", ErrTooLong, len(ts.Selectors))
	}
	dst = append(dst, byte(len(ts.Selectors)), ts.Reserved[0], ts.Reserved[1], ts.Reserved[2])
	for i := range ts.Selectors {
		s := &ts.Selectors[i]
		n := s.len()
		if n > maxPayloadLen {
			return dst, fmt.Errorf("%w: traffic selector of %d octets", ErrTooLong, n)
		}
		dst = append(dst, byte(s.Type), s.Protocol)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
		if s.Type == TSIPv4AddrRange || s.Type == TSIPv6AddrRange {
			dst = binary.BigEndian.AppendUint16(dst, s.StartPort)
			dst = binary.BigEndian.AppendUint16(dst, s.EndPort)
		}
		switch s.Type {
		case TSIPv4AddrRange:
			if !s.Start.Is4() || !s.End.Is4() {
				return dst, fmt.Errorf("ikev2: %v with addresses %v-%v", s.Type, s.Start, s.End)
			}
			a, z := s.Start.As4(), s.End.As4()
			dst = append(append(dst, a[:]...), z[:]...)
		case TSIPv6AddrRange:
			if !s.Start.Is6() || !s.End.Is6() {
				return dst, fmt.Errorf("ikev2: %v with addresses %v-%v", s.Type, s.Start, s.End)
			}
			a, z := s.Start.As16(), s.End.As16()
			dst = append(append(dst, a[:]...), z[:]...)
		default:
			dst = append(dst, s.Data...)
		}
	}
	return dst, nil
}
