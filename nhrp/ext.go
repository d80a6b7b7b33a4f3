package nhrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// NewEnd returns the End of Extensions extension, with the compulsory bit set
// as Cisco and FRR send it.
func NewEnd() Extension { return Extension{Compulsory: true, Type: ExtEnd} }

// NewCIEExtension returns a compulsory extension of a CIE-carrying type
// (Responder Address, Forward/Reverse Transit NHS Record).
func NewCIEExtension(t ExtensionType, cies ...CIE) Extension {
	return Extension{Compulsory: true, Type: t, CIEs: cies}
}

// NewNATAddress returns Cisco's NAT address extension (type 9, not
// compulsory, as IOS sends it).
func NewNATAddress(cies ...CIE) Extension {
	return Extension{Type: ExtNATAddress, CIEs: cies}
}

// CiscoAuthSPI is the value of the 32-bit "type" Cisco, FRR and OpenNHRP put
// before a plain-text password; read as RFC 2332's layout it is reserved 0,
// SPI 1.
const CiscoAuthSPI uint16 = 1

// MaxCiscoAuthLen is the longest plain-text password IOS puts on the wire.
const MaxCiscoAuthLen = 8

// ErrAuthTooLong is returned for a Cisco password longer than 8 bytes.
var ErrAuthTooLong = errors.New("nhrp: Cisco authentication string longer than 8 bytes")

// NewCiscoAuthentication returns the authentication extension (type 7,
// compulsory) in Cisco's plain-text form: 0x00000001 then the secret.
func NewCiscoAuthentication(secret []byte) (Extension, error) {
	if len(secret) > MaxCiscoAuthLen {
		return Extension{}, ErrAuthTooLong
	}
	return NewAuthentication(CiscoAuthSPI, secret), nil
}

// NewAuthentication returns an RFC 2332 §5.3.4 authentication extension:
// reserved(2), SPI(2), then data (for the RFC's form, the source address
// followed by the authentication data).
func NewAuthentication(spi uint16, data []byte) Extension {
	v := make([]byte, 4+len(data))
	binary.BigEndian.PutUint16(v[2:], spi)
	copy(v[4:], data)
	return Extension{Compulsory: true, Type: ExtAuthentication, Data: v}
}

// Authentication is the decoded value of an authentication extension.
type Authentication struct {
	Reserved uint16
	SPI      uint16
	// Data follows the SPI: the password in Cisco's form; the source
	// address then the authentication data in the RFC's.
	Data []byte
}

// Authentication decodes e's value. It fails when e is not type 7 or is
// shorter than its 4-byte header.
func (e *Extension) Authentication() (Authentication, error) {
	if e.Type != ExtAuthentication {
		return Authentication{}, fmt.Errorf("nhrp: %v is not an authentication extension", e.Type)
	}
	if len(e.Data) < 4 {
		return Authentication{}, fmt.Errorf("nhrp: authentication extension of %d bytes, need 4", len(e.Data))
	}
	return Authentication{
		Reserved: binary.BigEndian.Uint16(e.Data),
		SPI:      binary.BigEndian.Uint16(e.Data[2:]),
		Data:     e.Data[4:],
	}, nil
}

// CiscoSecret returns the plain-text password when a is in Cisco's form.
func (a Authentication) CiscoSecret() ([]byte, bool) {
	if a.Reserved != 0 || a.SPI != CiscoAuthSPI {
		return nil, false
	}
	return a.Data, true
}

// NewVendorPrivate returns a Vendor-Private extension (type 8, not
// compulsory): a 3-byte IEEE OUI then vendor data (RFC 2332 §5.3.5).
func NewVendorPrivate(oui [3]byte, data []byte) Extension {
	v := make([]byte, 3+len(data))
	copy(v, oui[:])
	copy(v[3:], data)
	return Extension{Type: ExtVendorPrivate, Data: v}
}

// VendorPrivate splits a Vendor-Private extension's value into OUI and data.
func (e *Extension) VendorPrivate() (oui [3]byte, data []byte, err error) {
	if e.Type != ExtVendorPrivate || len(e.Data) < 3 {
		return oui, nil, fmt.Errorf("nhrp: not a vendor-private extension with an OUI (%v, %d bytes)", e.Type, len(e.Data))
	}
	copy(oui[:], e.Data)
	return oui, e.Data[3:], nil
}

// StandardRequestExtensions is the extension list Cisco IOS puts on its
// requests: empty Responder Address and Forward/Reverse Transit NHS Records,
// the optional authentication, the optional NAT address extension and End.
// It appends to dst so callers can reuse storage.
func StandardRequestExtensions(dst []Extension, auth *Extension, nat *Extension) []Extension {
	dst = append(dst,
		NewCIEExtension(ExtResponderAddress),
		NewCIEExtension(ExtForwardTransitNHS),
		NewCIEExtension(ExtReverseTransitNHS))
	if auth != nil {
		dst = append(dst, *auth)
	}
	if nat != nil {
		dst = append(dst, *nat)
	}
	return append(dst, NewEnd())
}

// SelfCIE is a convenience for the CIE that describes a node itself (a
// Responder Address or transit NHS record).
func SelfCIE(nbma, proto netip.Addr, mtu, holdtime uint16) CIE {
	return CIE{Code: CodeSuccess, PrefixLength: uint8(proto.BitLen()), MTU: mtu, HoldingTime: holdtime, NBMA: nbma, Protocol: proto}
}
