package nhrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/dmvpn/dmvpn/internal/inet"
)

// DecodeError says what was wrong with a packet and where. Code is the Error
// Indication code a receiver should answer with (RFC 2332 §5.2.7), or 0 when
// the packet must be dropped silently (bad checksum, too short to answer).
type DecodeError struct {
	Offset int       // byte offset in the NHRP packet
	Code   ErrorCode // Error Indication code to send, 0 for none
	Err    error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("nhrp: offset %d: %v", e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Sentinel causes wrapped in a DecodeError.
var (
	ErrTruncated              = errors.New("truncated")
	ErrBadChecksum            = errors.New("bad checksum")
	ErrBadVersion             = errors.New("unsupported version")
	ErrUnknownType            = errors.New("unknown packet type")
	ErrBadAddress             = errors.New("unsupported address")
	ErrBadExtensionOffset     = errors.New("bad extension offset")
	ErrBadCIE                 = errors.New("CIE does not fit")
	ErrBadExtension           = errors.New("bad extension")
	ErrUnrecognizedCompulsory = errors.New("unrecognized compulsory extension")
)

func decodeErr(off int, code ErrorCode, err error, format string, args ...any) error {
	if format != "" {
		err = fmt.Errorf("%w: "+format, append([]any{err}, args...)...)
	}
	return &DecodeError{Offset: off, Code: code, Err: err}
}

// Decode parses one NHRP packet from b into p, reusing p's slices. Opaque
// fields (subaddresses, payload, extension data) are sub-slices of b.
//
// Decode never reads past b and never panics. Bytes past the packet size are
// ignored (link-layer padding). When the packet holds an unrecognized
// compulsory extension, p is fully decoded and the error is a *DecodeError
// with Code ErrUnrecognizedExtension and the extension's offset, so the
// receiver can answer with an Error Indication.
func (p *Packet) Decode(b []byte) error {
	p.reset()
	if len(b) < fixedHeaderLen {
		return decodeErr(0, errSilentDiscard, ErrTruncated, "%d bytes, fixed header needs %d", len(b), fixedHeaderLen)
	}
	p.AddressFamily = binary.BigEndian.Uint16(b[0:])
	p.ProtocolType = binary.BigEndian.Uint16(b[2:])
	copy(p.ProtocolSNAP[:], b[4:9])
	p.HopCount = b[9]
	p.PacketSize = binary.BigEndian.Uint16(b[10:])
	p.Checksum = binary.BigEndian.Uint16(b[12:])
	p.ExtensionOffset = binary.BigEndian.Uint16(b[14:])
	p.Version = b[16]
	p.Type = Type(b[17])
	shtl, sstl := b[18], b[19]

	size := int(p.PacketSize)
	if size < fixedHeaderLen+mandatoryHeaderLen || size > len(b) {
		return decodeErr(10, errSilentDiscard, ErrTruncated, "packet size %d, have %d bytes", size, len(b))
	}
	b = b[:size]
	if inet.Checksum(b) != 0 {
		return decodeErr(12, errSilentDiscard, ErrBadChecksum, "0x%04x", p.Checksum)
	}
	if p.Version != defaultVersion {
		return decodeErr(16, ErrProtocolError, ErrBadVersion, "%d", p.Version)
	}
	// 0 is reserved in both fields; Encode reads 0 as "derive from the
	// addresses", so accepting it would not round-trip.
	if p.AddressFamily == 0 {
		return decodeErr(0, ErrProtocolError, ErrBadAddress, "address family 0 is reserved")
	}
	if p.ProtocolType == 0 {
		return decodeErr(2, ErrProtocolError, ErrBadAddress, "protocol type 0 is reserved")
	}
	if p.Type < TypeResolutionRequest || p.Type > TypeTrafficIndication {
		return decodeErr(17, ErrProtocolError, ErrUnknownType, "%d", uint8(p.Type))
	}
	if shtl&(typeLenTypeBit|typeLenReservedBit) != 0 || sstl&(typeLenTypeBit|typeLenReservedBit) != 0 {
		return decodeErr(18, ErrProtocolError, ErrBadAddress, "NBMA type/length 0x%02x/0x%02x: only NSAP-format IP addresses", shtl, sstl)
	}

	// Mandatory part.
	off := fixedHeaderLen
	m := b[off:]
	srcProtoLen, dstProtoLen := int(m[0]), int(m[1])
	p.Flags = binary.BigEndian.Uint16(m[2:])
	if p.Type.HasCIEs() {
		p.RequestID = binary.BigEndian.Uint32(m[4:])
	} else {
		p.Code = binary.BigEndian.Uint16(m[4:])
		p.ErrorOffset = binary.BigEndian.Uint16(m[6:])
	}
	off += mandatoryHeaderLen

	var err error
	var sub []byte
	if p.SrcNBMA, off, err = readAddr(b, off, int(shtl), "source NBMA address"); err != nil {
		return err
	}
	if sub, off, err = readBytes(b, off, int(sstl), "source NBMA subaddress"); err != nil {
		return err
	}
	p.SrcNBMASubaddress = sub
	if p.SrcProto, off, err = readAddr(b, off, srcProtoLen, "source protocol address"); err != nil {
		return err
	}
	if p.DstProto, off, err = readAddr(b, off, dstProtoLen, "destination protocol address"); err != nil {
		return err
	}

	end := size
	if eo := int(p.ExtensionOffset); eo != 0 {
		if eo < off || eo > size {
			return decodeErr(14, ErrProtocolError, ErrBadExtensionOffset, "%d outside %d..%d", eo, off, size)
		}
		end = eo
	}
	if p.Type.HasCIEs() {
		for off < end {
			var c CIE
			if c, off, err = readCIE(b[:end], off); err != nil {
				return err
			}
			p.CIEs = append(p.CIEs, c)
		}
	} else if off < end {
		p.Payload = b[off:end]
	}

	if p.ExtensionOffset == 0 {
		return nil
	}
	return p.decodeExtensions(b, end)
}

func (p *Packet) decodeExtensions(b []byte, off int) error {
	var unknown error
	for off < len(b) {
		if len(b)-off < extHeaderLen {
			return decodeErr(off, ErrInvalidExtension, ErrTruncated, "extension header needs %d bytes, %d left", extHeaderLen, len(b)-off)
		}
		w := binary.BigEndian.Uint16(b[off:])
		n := int(binary.BigEndian.Uint16(b[off+2:]))
		e := Extension{
			Compulsory: w&extCompulsoryBit != 0,
			U:          w&extUnusedBit != 0,
			Type:       ExtensionType(w & extTypeMask),
		}
		start := off
		off += extHeaderLen
		if n > len(b)-off {
			return decodeErr(start+2, ErrInvalidExtension, ErrBadExtension, "%v length %d, %d bytes left", e.Type, n, len(b)-off)
		}
		val := b[off : off+n]
		sp := span{start: len(p.extCIEs)}
		if e.Type.carriesCIEs() {
			for pos := 0; pos < len(val); {
				c, next, err := readCIE(val, pos)
				if err != nil {
					var de *DecodeError
					if errors.As(err, &de) {
						de.Offset += off
						de.Code = ErrInvalidExtension
					}
					return err
				}
				p.extCIEs = append(p.extCIEs, c)
				pos = next
			}
		} else if n > 0 {
			e.Data = val
		}
		if e.Type == ExtEnd && n != 0 {
			return decodeErr(start+2, ErrInvalidExtension, ErrBadExtension, "end of extensions with length %d", n)
		}
		sp.end = len(p.extCIEs)
		p.spans = append(p.spans, sp)
		p.Extensions = append(p.Extensions, e)
		if unknown == nil && e.Compulsory && !e.Type.Known() {
			unknown = decodeErr(start, ErrUnrecognizedExtension, ErrUnrecognizedCompulsory, "type 0x%04x", uint16(e.Type))
		}
		off += n
		if e.Type == ExtEnd {
			break // RFC 2332 §5.3.0: nothing follows End of Extensions
		}
	}
	// CIE slices are assigned only now: appending to extCIEs above may move
	// its backing array.
	for i := range p.Extensions {
		if s := p.spans[i]; s.end > s.start {
			p.Extensions[i].CIEs = p.extCIEs[s.start:s.end:s.end]
		}
	}
	return unknown
}

// reset empties p for a new Decode, keeping its slices' capacity.
func (p *Packet) reset() {
	cies, exts, ecies, spans := p.CIEs[:0], p.Extensions[:0], p.extCIEs[:0], p.spans[:0]
	clear(exts[:cap(exts)])
	*p = Packet{CIEs: cies, Extensions: exts, extCIEs: ecies, spans: spans}
}

func readBytes(b []byte, off, n int, what string) ([]byte, int, error) {
	if n > len(b)-off {
		return nil, off, decodeErr(off, ErrProtocolError, ErrTruncated, "%s of %d bytes, %d left", what, n, len(b)-off)
	}
	if n == 0 {
		return nil, off, nil
	}
	return b[off : off+n], off + n, nil
}

func readAddr(b []byte, off, n int, what string) (netip.Addr, int, error) {
	v, next, err := readBytes(b, off, n, what)
	if err != nil {
		return netip.Addr{}, off, err
	}
	switch n {
	case 0:
		return netip.Addr{}, next, nil
	case 4:
		return netip.AddrFrom4([4]byte(v)), next, nil
	case 16:
		return netip.AddrFrom16([16]byte(v)), next, nil
	}
	return netip.Addr{}, off, decodeErr(off, ErrProtocolError, ErrBadAddress, "%s length %d (want 0, 4 or 16)", what, n)
}

// readCIE parses the CIE at b[off:]; it must end within b.
func readCIE(b []byte, off int) (CIE, int, error) {
	var c CIE
	if len(b)-off < cieHeaderLen {
		return c, off, decodeErr(off, ErrProtocolError, ErrBadCIE, "CIE header needs %d bytes, %d left", cieHeaderLen, len(b)-off)
	}
	h := b[off:]
	c.Code = CIECode(h[0])
	c.PrefixLength = h[1]
	c.Unused = binary.BigEndian.Uint16(h[2:])
	c.MTU = binary.BigEndian.Uint16(h[4:])
	c.HoldingTime = binary.BigEndian.Uint16(h[6:])
	ntl, stl, plen := h[8], h[9], int(h[10])
	c.Preference = h[11]
	if ntl&(typeLenTypeBit|typeLenReservedBit) != 0 || stl&(typeLenTypeBit|typeLenReservedBit) != 0 {
		return c, off, decodeErr(off+8, ErrProtocolError, ErrBadAddress, "CIE NBMA type/length 0x%02x/0x%02x", ntl, stl)
	}
	off += cieHeaderLen
	var err error
	if c.NBMA, off, err = readAddr(b, off, int(ntl), "CIE client NBMA address"); err != nil {
		return c, off, err
	}
	if c.NBMASubaddress, off, err = readBytes(b, off, int(stl), "CIE client NBMA subaddress"); err != nil {
		return c, off, err
	}
	if c.Protocol, off, err = readAddr(b, off, plen, "CIE client protocol address"); err != nil {
		return c, off, err
	}
	return c, off, nil
}
