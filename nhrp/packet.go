// Package nhrp encodes and decodes NHRP packets (RFC 2332) with the
// extensions Cisco IOS, FRR and OpenNHRP put on the wire: the Traffic
// Indication used for DMVPN phase 3 redirects, the Cisco NAT address
// extension and Cisco's plain-text authentication.
//
// The package is a pure codec: it does no I/O and holds no protocol state.
// Decoding into a reused Packet allocates nothing; addresses are netip.Addr
// values and opaque fields are sub-slices of the input. Encoding writes into a
// caller's buffer and computes the packet size, extension offset and checksum.
package nhrp

import (
	"fmt"
	"net/netip"
)

// Type is the NHRP packet type (op.type).
type Type uint8

// Packet types, RFC 2332 §5.2 and draft-detienne-dmvpn-01 for 8.
const (
	TypeResolutionRequest   Type = 1
	TypeResolutionReply     Type = 2
	TypeRegistrationRequest Type = 3
	TypeRegistrationReply   Type = 4
	TypePurgeRequest        Type = 5
	TypePurgeReply          Type = 6
	TypeErrorIndication     Type = 7
	TypeTrafficIndication   Type = 8 // Cisco DMVPN phase 3 redirect
)

var typeNames = [...]string{
	TypeResolutionRequest:   "Resolution Request",
	TypeResolutionReply:     "Resolution Reply",
	TypeRegistrationRequest: "Registration Request",
	TypeRegistrationReply:   "Registration Reply",
	TypePurgeRequest:        "Purge Request",
	TypePurgeReply:          "Purge Reply",
	TypeErrorIndication:     "Error Indication",
	TypeTrafficIndication:   "Traffic Indication",
}

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// HasCIEs reports whether packets of this type carry a request ID, flags and
// CIEs in their mandatory part (types 1-6); Error and Traffic Indications
// carry a code and a copy of another packet instead.
func (t Type) HasCIEs() bool { return t >= TypeResolutionRequest && t <= TypePurgeReply }

// Address family numbers (IANA) for the afn field.
const (
	AFNIPv4 uint16 = 1
	AFNIPv6 uint16 = 2
)

// Protocol types (short form Ethertypes) for the pro.type field.
const (
	ProtoIPv4 uint16 = 0x0800
	ProtoIPv6 uint16 = 0x86DD
	ProtoSNAP uint16 = 0x0080 // the protocol is identified by pro.snap
)

// Flags of the mandatory part, by packet type [RFC2332 §5.2; Cisco].
const (
	// Resolution Request/Reply.
	FlagResolutionQ uint16 = 0x8000 // source is a router
	FlagResolutionA uint16 = 0x4000 // authoritative
	FlagResolutionD uint16 = 0x2000 // destination is stable
	FlagResolutionU uint16 = 0x1000 // unique
	FlagResolutionS uint16 = 0x0800 // source is stable
	// Registration Request/Reply.
	FlagRegistrationU uint16 = 0x8000 // unique
	// Purge Request/Reply.
	FlagPurgeN uint16 = 0x8000 // no reply expected
	// FlagCiscoNAT is Cisco's "NAT" flag, set by a sender that knows or
	// suspects it is behind NAT (used in Resolution and Registration).
	FlagCiscoNAT uint16 = 0x0002
)

// CIECode is the result code of a Client Information Entry.
type CIECode uint8

// CIE codes, RFC 2332 §5.2.0.1 and §5.2.2.
const (
	CodeSuccess                 CIECode = 0
	CodeAdministrativelyProhib  CIECode = 4
	CodeInsufficientResources   CIECode = 5
	CodeNoBindingExists         CIECode = 12
	CodeBindingNotUnique        CIECode = 13
	CodeUniqueAddressRegistered CIECode = 14
)

func (c CIECode) String() string {
	switch c {
	case CodeSuccess:
		return "success"
	case CodeAdministrativelyProhib:
		return "administratively prohibited"
	case CodeInsufficientResources:
		return "insufficient resources"
	case CodeNoBindingExists:
		return "no interworking layer address to internetworking layer address binding exists"
	case CodeBindingNotUnique:
		return "binding exists but is not unique"
	case CodeUniqueAddressRegistered:
		return "unique internetworking layer address already registered"
	}
	return fmt.Sprintf("code %d", uint8(c))
}

// ErrorCode is the code of an Error Indication, RFC 2332 §5.2.7.
type ErrorCode uint16

// Error Indication codes.
const (
	ErrUnrecognizedExtension   ErrorCode = 1
	ErrLoopDetected            ErrorCode = 3
	ErrProtocolAddrUnreachable ErrorCode = 6
	ErrProtocolError           ErrorCode = 7
	ErrSDUSizeExceeded         ErrorCode = 8
	ErrInvalidExtension        ErrorCode = 9
	ErrInvalidResolutionReply  ErrorCode = 10
	ErrAuthenticationFailure   ErrorCode = 11
	ErrHopCountExceeded        ErrorCode = 15
)

// errSilentDiscard marks decode errors that must not be answered with an
// Error Indication (e.g. a bad checksum: RFC 2332 §5.3.4 and §5.2 drop them).
const errSilentDiscard ErrorCode = 0

// TrafficCodeRedirect is the Traffic Indication code for an NHRP traffic
// redirect (draft-detienne-dmvpn-01 §4).
const TrafficCodeRedirect uint16 = 0

// Wire layout constants.
const (
	defaultVersion     uint8 = 1
	fixedHeaderLen           = 20
	mandatoryHeaderLen       = 8
	cieHeaderLen             = 12
	extHeaderLen             = 4
	maxAddrLen               = 0x3f // 6-bit length fields
	typeLenTypeBit           = 0x40 // E.164 when set
	typeLenReservedBit       = 0x80
	extCompulsoryBit         = 0x8000
	extUnusedBit             = 0x4000
	extTypeMask              = 0x3fff
)

func (c ErrorCode) String() string {
	switch c {
	case ErrUnrecognizedExtension:
		return "unrecognized extension"
	case ErrLoopDetected:
		return "loop detected"
	case ErrProtocolAddrUnreachable:
		return "protocol address unreachable"
	case ErrProtocolError:
		return "protocol error"
	case ErrSDUSizeExceeded:
		return "SDU size exceeded"
	case ErrInvalidExtension:
		return "invalid extension"
	case ErrInvalidResolutionReply:
		return "invalid resolution reply"
	case ErrAuthenticationFailure:
		return "authentication failure"
	case ErrHopCountExceeded:
		return "hop count exceeded"
	}
	return fmt.Sprintf("error %d", uint16(c))
}

// CIE is a Client Information Entry.
type CIE struct {
	Code         CIECode
	PrefixLength uint8
	// Unused holds the 16 unused bits after the prefix length, kept so a
	// decoded CIE re-encodes to the same bytes.
	Unused      uint16
	MTU         uint16
	HoldingTime uint16 // seconds
	Preference  uint8
	// NBMA is the client's NBMA address; the zero Addr encodes as length 0.
	NBMA netip.Addr
	// NBMASubaddress is opaque and usually empty.
	NBMASubaddress []byte
	// Protocol is the client's protocol address; the zero Addr encodes as
	// length 0 (an unspecified 0.0.0.0 is a distinct, 4-byte value).
	Protocol netip.Addr
}

// Len is the encoded length of the CIE.
func (c *CIE) Len() int {
	return cieHeaderLen + addrLen(c.NBMA) + len(c.NBMASubaddress) + addrLen(c.Protocol)
}

// ExtensionType is the 14-bit type of an extension.
type ExtensionType uint16

// Extension types, RFC 2332 §5.3 and Cisco's NAT address.
const (
	ExtEnd               ExtensionType = 0
	ExtResponderAddress  ExtensionType = 3
	ExtForwardTransitNHS ExtensionType = 4
	ExtReverseTransitNHS ExtensionType = 5
	ExtAuthentication    ExtensionType = 7
	ExtVendorPrivate     ExtensionType = 8
	ExtNATAddress        ExtensionType = 9 // Cisco; RFC 2735 reused 9 for device capabilities
)

func (t ExtensionType) String() string {
	switch t {
	case ExtEnd:
		return "End of Extensions"
	case ExtResponderAddress:
		return "Responder Address"
	case ExtForwardTransitNHS:
		return "Forward Transit NHS Record"
	case ExtReverseTransitNHS:
		return "Reverse Transit NHS Record"
	case ExtAuthentication:
		return "Authentication"
	case ExtVendorPrivate:
		return "Vendor-Private"
	case ExtNATAddress:
		return "Cisco NAT Address"
	}
	return fmt.Sprintf("extension 0x%04x", uint16(t))
}

// Known reports whether this codec understands the extension type; an
// unknown compulsory extension makes Decode report ErrUnrecognizedExtension.
func (t ExtensionType) Known() bool {
	switch t {
	case ExtEnd, ExtResponderAddress, ExtForwardTransitNHS, ExtReverseTransitNHS,
		ExtAuthentication, ExtVendorPrivate, ExtNATAddress:
		return true
	}
	return false
}

// carriesCIEs reports whether the extension value is a list of CIEs.
func (t ExtensionType) carriesCIEs() bool {
	switch t {
	case ExtResponderAddress, ExtForwardTransitNHS, ExtReverseTransitNHS, ExtNATAddress:
		return true
	}
	return false
}

// Extension is one NHRP extension. Responder Address, Forward and Reverse
// Transit NHS Record and Cisco NAT Address carry CIEs; every other type
// (Authentication, Vendor-Private, unknown ones) carries its value as Data,
// re-emitted unchanged.
type Extension struct {
	Compulsory bool
	// U is the RFC's "u" bit (unused, sent as zero), kept for re-encoding.
	U    bool
	Type ExtensionType
	CIEs []CIE
	Data []byte
}

// Len is the encoded length of the extension, header included.
func (e *Extension) Len() int {
	if e.Type.carriesCIEs() {
		n := extHeaderLen
		for i := range e.CIEs {
			n += e.CIEs[i].Len()
		}
		return n
	}
	return extHeaderLen + len(e.Data)
}

// Packet is one NHRP packet of any type. Which fields of the mandatory part
// are meaningful depends on Type: RequestID, Flags and CIEs for types 1-6;
// Code, ErrorOffset and Payload for types 7 (Error Indication) and 8 (Traffic
// Indication).
type Packet struct {
	// Fixed header.
	AddressFamily uint16 // afn; 0 on encode means "from SrcNBMA"
	ProtocolType  uint16 // pro.type; 0 on encode means "from the protocol addresses"
	ProtocolSNAP  [5]byte
	HopCount      uint8
	Version       uint8 // 0 on encode means 1
	Type          Type

	// Mandatory part.
	Flags     uint16 // types 1-6; unused (kept) in 7 and 8
	RequestID uint32 // types 1-6
	// Code is the error code of an Error Indication or the traffic code of
	// a Traffic Indication (0 = redirect).
	Code uint16
	// ErrorOffset is the offset in the offending packet of an Error
	// Indication; in a Traffic Indication these 16 bits are unused.
	ErrorOffset uint16

	SrcNBMA           netip.Addr
	SrcNBMASubaddress []byte
	SrcProto          netip.Addr
	DstProto          netip.Addr

	CIEs []CIE
	// Payload is the offending packet (Error Indication) or the start of
	// the data packet that triggered a Traffic Indication.
	Payload []byte

	Extensions []Extension

	// Values read by Decode; Encode computes its own.
	PacketSize      uint16
	Checksum        uint16
	ExtensionOffset uint16

	// scratch reused across Decode calls so decoding allocates nothing.
	extCIEs []CIE
	spans   []span
}

type span struct{ start, end int }

// Extension returns the first extension of type t, or nil.
func (p *Packet) Extension(t ExtensionType) *Extension {
	for i := range p.Extensions {
		if p.Extensions[i].Type == t {
			return &p.Extensions[i]
		}
	}
	return nil
}

func addrLen(a netip.Addr) int {
	switch {
	case !a.IsValid():
		return 0
	case a.Is4():
		return 4
	default:
		return 16
	}
}
