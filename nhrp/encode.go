package nhrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/dmvpn/dmvpn/internal/inet"
)

// Encoding errors.
var (
	ErrBufferTooSmall = errors.New("nhrp: buffer too small")
	ErrTooLarge       = errors.New("nhrp: packet larger than 65535 bytes")
	ErrFieldTooLong   = errors.New("nhrp: field longer than 63 bytes")
)

// Len is the encoded length of p.
func (p *Packet) Len() int {
	n := fixedHeaderLen + mandatoryHeaderLen + p.mandatoryAddrLen()
	if p.Type.HasCIEs() {
		for i := range p.CIEs {
			n += p.CIEs[i].Len()
		}
	} else {
		n += len(p.Payload)
	}
	for i := range p.Extensions {
		n += p.Extensions[i].Len()
	}
	return n
}

func (p *Packet) mandatoryAddrLen() int {
	return addrLen(p.SrcNBMA) + len(p.SrcNBMASubaddress) + addrLen(p.SrcProto) + addrLen(p.DstProto)
}

// AppendEncode appends the encoded packet to dst, growing it if needed.
func (p *Packet) AppendEncode(dst []byte) ([]byte, error) {
	n := p.Len()
	start := len(dst)
	if cap(dst)-start < n {
		grown := make([]byte, start, start+n)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+n]
	if _, err := p.Encode(dst[start:]); err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// Encode writes p into b and returns the number of bytes written. It fills in
// the packet size, the extension offset (0 when there are no extensions) and
// the checksum; AddressFamily, ProtocolType and Version default from the
// addresses (and 1) when zero. Extensions are written in order, exactly as
// given: callers end the list with ExtEnd (NewEnd) as RFC 2332 §5.3 asks.
func (p *Packet) Encode(b []byte) (int, error) {
	n := p.Len()
	if n > 0xffff {
		return 0, ErrTooLarge
	}
	if len(b) < n {
		return 0, fmt.Errorf("%w: need %d, have %d", ErrBufferTooSmall, n, len(b))
	}
	if len(p.SrcNBMASubaddress) > maxAddrLen {
		return 0, fmt.Errorf("%w: source NBMA subaddress", ErrFieldTooLong)
	}
	b = b[:n]

	afn := p.AddressFamily
	if afn == 0 {
		afn = afnOf(p.SrcNBMA)
	}
	pt := p.ProtocolType
	if pt == 0 {
		pt = protoOf(p.SrcProto, p.DstProto)
	}
	ver := p.Version
	if ver == 0 {
		ver = defaultVersion
	}
	binary.BigEndian.PutUint16(b[0:], afn)
	binary.BigEndian.PutUint16(b[2:], pt)
	copy(b[4:9], p.ProtocolSNAP[:])
	b[9] = p.HopCount
	binary.BigEndian.PutUint16(b[10:], uint16(n))
	binary.BigEndian.PutUint16(b[12:], 0)
	binary.BigEndian.PutUint16(b[14:], 0)
	b[16] = ver
	b[17] = byte(p.Type)
	b[18] = byte(addrLen(p.SrcNBMA))
	b[19] = byte(len(p.SrcNBMASubaddress))

	m := b[fixedHeaderLen:]
	m[0] = byte(addrLen(p.SrcProto))
	m[1] = byte(addrLen(p.DstProto))
	binary.BigEndian.PutUint16(m[2:], p.Flags)
	if p.Type.HasCIEs() {
		binary.BigEndian.PutUint32(m[4:], p.RequestID)
	} else {
		binary.BigEndian.PutUint16(m[4:], p.Code)
		binary.BigEndian.PutUint16(m[6:], p.ErrorOffset)
	}
	off := fixedHeaderLen + mandatoryHeaderLen
	off = putAddr(b, off, p.SrcNBMA)
	off += copy(b[off:], p.SrcNBMASubaddress)
	off = putAddr(b, off, p.SrcProto)
	off = putAddr(b, off, p.DstProto)

	if p.Type.HasCIEs() {
		for i := range p.CIEs {
			var err error
			if off, err = putCIE(b, off, &p.CIEs[i]); err != nil {
				return 0, err
			}
		}
	} else {
		off += copy(b[off:], p.Payload)
	}

	if len(p.Extensions) > 0 {
		binary.BigEndian.PutUint16(b[14:], uint16(off))
	}
	for i := range p.Extensions {
		e := &p.Extensions[i]
		w := uint16(e.Type) & extTypeMask
		if e.Compulsory {
			w |= extCompulsoryBit
		}
		if e.U {
			w |= extUnusedBit
		}
		binary.BigEndian.PutUint16(b[off:], w)
		binary.BigEndian.PutUint16(b[off+2:], uint16(e.Len()-extHeaderLen))
		off += extHeaderLen
		if e.Type.carriesCIEs() {
			for j := range e.CIEs {
				var err error
				if off, err = putCIE(b, off, &e.CIEs[j]); err != nil {
					return 0, err
				}
			}
		} else {
			off += copy(b[off:], e.Data)
		}
	}
	binary.BigEndian.PutUint16(b[12:], inet.Checksum(b))
	return n, nil
}

func putAddr(b []byte, off int, a netip.Addr) int {
	switch {
	case !a.IsValid():
		return off
	case a.Is4():
		v := a.As4()
		return off + copy(b[off:], v[:])
	default:
		v := a.As16()
		return off + copy(b[off:], v[:])
	}
}

func putCIE(b []byte, off int, c *CIE) (int, error) {
	if len(c.NBMASubaddress) > maxAddrLen {
		return 0, fmt.Errorf("%w: CIE client NBMA subaddress", ErrFieldTooLong)
	}
	h := b[off:]
	h[0] = byte(c.Code)
	h[1] = c.PrefixLength
	binary.BigEndian.PutUint16(h[2:], c.Unused)
	binary.BigEndian.PutUint16(h[4:], c.MTU)
	binary.BigEndian.PutUint16(h[6:], c.HoldingTime)
	h[8] = byte(addrLen(c.NBMA))
	h[9] = byte(len(c.NBMASubaddress))
	h[10] = byte(addrLen(c.Protocol))
	h[11] = c.Preference
	off += cieHeaderLen
	off = putAddr(b, off, c.NBMA)
	off += copy(b[off:], c.NBMASubaddress)
	off = putAddr(b, off, c.Protocol)
	return off, nil
}

func afnOf(a netip.Addr) uint16 {
	if a.Is6() && !a.Is4In6() {
		return AFNIPv6
	}
	return AFNIPv4
}

func protoOf(src, dst netip.Addr) uint16 {
	a := src
	if !a.IsValid() {
		a = dst
	}
	if a.Is6() {
		return ProtoIPv6
	}
	return ProtoIPv4
}
