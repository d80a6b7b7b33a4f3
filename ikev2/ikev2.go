// Package ikev2 encodes and decodes IKEv2 messages (RFC 7296): the IKE
// header, the generic payload chain with its critical bit, and every payload
// of RFC 7296 §3 as typed values, plus the Encrypted Fragment payload of RFC
// 7383. It is step one of dmvpn's own IKEv2; the keys, ciphers and integrity
// checks of the SK payload live in ikev2/crypto, the exchanges in an engine.
//
// The package is a pure codec: no I/O, no protocol state, no clock.
//
// Decoding. Message.Decode checks a whole datagram: the header (major
// version 2, the length against the datagram), the payload chain (every
// length within its parent, at most MaxPayloads payloads, an unknown payload
// with the critical bit set refused, one without it kept and skipped) and the
// inside of every payload it knows (proposals, transforms, attributes,
// selectors, SPI sizes, nonce lengths ...), so a message that decodes can be
// used without further length checks. Payloads refer into the datagram;
// decoding into a reused Message allocates nothing. The typed accessors of
// Payload (SA, KE, Notify, ...) turn a payload into its Go value, again
// without copying bytes. Every failure is a *DecodeError that says what, at
// which offset, and which error notification (INVALID_SYNTAX,
// INVALID_MAJOR_VERSION, UNSUPPORTED_CRITICAL_PAYLOAD) a receiver would
// answer with.
//
// Encoding. A Builder appends a message to a caller's buffer payload by
// payload, filling in every Next Payload field and length; it refuses to
// write what Decode would refuse. With a buffer of enough capacity it
// allocates nothing. AppendMessage re-emits a decoded payload list.
//
// Encryption. The SK payload is exposed as it is on the wire: the type of
// its first inner payload, the associated data (the message up to the end of
// the SK header) and IV ‖ ciphertext ‖ ICV. Once ikev2/crypto has decrypted
// it, Message.DecodeInner (or DecodeChain, for reassembled fragments) decodes
// the inner payloads with the same walker and the same checks.
//
// Names. String methods print what TShark 4.0 prints for the same value
// (exchange types, notify types, transform IDs, ...), so logs and captures
// read alike; payload types use RFC 7296's notation (SA, KE, IDi, N, SK, ...)
// instead, as every log line carries a list of them.
package ikev2

import "fmt"

// Wire layout.
const (
	// HeaderLen is the length of the IKE header (RFC 7296 §3.1).
	HeaderLen = 28
	// PayloadHeaderLen is the length of the generic payload header (§3.2).
	PayloadHeaderLen = 4
	// MajorVersion is the only major version this codec speaks.
	MajorVersion = 2

	criticalBit     = 0x80
	reservedMask    = 0x7f
	proposalHdrLen  = 8
	transformHdrLen = 8
	attrHdrLen      = 4
	tsHdrLen        = 8 // IP selectors: type, protocol, length, ports
	tsTypeHdrLen    = 4 // every selector: type, octet 1, length
	moreProposals   = 2 // Last Substruc of a proposal followed by another
	moreTransforms  = 3 // Last Substruc of a transform followed by another
	attrTVBit       = 0x8000
	attrTypeMask    = 0x7fff
	maxPayloadLen   = 0xffff
)

// Bounds on what one message may hold. They are well above what real peers
// send (the busiest SA payloads in the conformance captures have 12
// proposals, or 68 transforms in all) and keep the scratch slices of a
// reused Message, SA or TrafficSelectors small.
const (
	// MaxPayloads is the most payloads one chain (the message, or the
	// inside of one SK payload) may have.
	MaxPayloads = 64
	// MaxProposals is the most proposals in one SA payload.
	MaxProposals = 64
	// MaxTransforms is the most transforms in one SA payload, all proposals
	// together.
	MaxTransforms = 256
	// MaxAttributes is the most transform attributes in one SA payload.
	MaxAttributes = 256
	// MaxSelectors is the most traffic selectors in one TS payload.
	MaxSelectors = 64
	// MinNonceLen and MaxNonceLen bound the Nonce payload's data (§3.9).
	MinNonceLen = 16
	MaxNonceLen = 256
	// MaxCookieLen bounds the COOKIE notification's data (§2.6: 1 to 64).
	MaxCookieLen = 64
	// NATDetectionLen is the length of NAT_DETECTION_*_IP data: a SHA-1
	// digest (§2.23).
	NATDetectionLen = 20
)

// Port is IKE's UDP port (RFC 7296 §2); NATTPort (natt.go) is the one for
// NAT traversal.
const Port = 500

// SPI is an IKE SA's Security Parameter Index, an opaque 8-octet value.
type SPI uint64

func (s SPI) String() string { return fmt.Sprintf("%016x", uint64(s)) }

// PayloadType is the type of a payload, the value of a Next Payload field.
type PayloadType uint8

// Payload types, RFC 7296 §3.2 and IANA's IKEv2 Payload Types registry.
const (
	PayloadNone     PayloadType = 0
	PayloadSA       PayloadType = 33 // Security Association
	PayloadKE       PayloadType = 34 // Key Exchange
	PayloadIDi      PayloadType = 35 // Identification - Initiator
	PayloadIDr      PayloadType = 36 // Identification - Responder
	PayloadCERT     PayloadType = 37 // Certificate
	PayloadCERTREQ  PayloadType = 38 // Certificate Request
	PayloadAUTH     PayloadType = 39 // Authentication
	PayloadNonce    PayloadType = 40 // Ni, Nr
	PayloadNotify   PayloadType = 41 // N
	PayloadDelete   PayloadType = 42 // D
	PayloadVendorID PayloadType = 43 // V
	PayloadTSi      PayloadType = 44 // Traffic Selector - Initiator
	PayloadTSr      PayloadType = 45 // Traffic Selector - Responder
	PayloadSK       PayloadType = 46 // Encrypted and Authenticated
	PayloadCP       PayloadType = 47 // Configuration
	PayloadEAP      PayloadType = 48 // Extensible Authentication
	PayloadGSPM     PayloadType = 49 // Generic Secure Password Method (RFC 6467)
	PayloadSKF      PayloadType = 53 // Encrypted and Authenticated Fragment (RFC 7383)
	PayloadPS       PayloadType = 54 // Puzzle Solution (RFC 8019)
)

var payloadNames = map[PayloadType]string{
	PayloadNone: "NONE", PayloadSA: "SA", PayloadKE: "KE", PayloadIDi: "IDi", PayloadIDr: "IDr",
	PayloadCERT: "CERT", PayloadCERTREQ: "CERTREQ", PayloadAUTH: "AUTH", PayloadNonce: "Nonce",
	PayloadNotify: "N", PayloadDelete: "D", PayloadVendorID: "V", PayloadTSi: "TSi", PayloadTSr: "TSr",
	PayloadSK: "SK", PayloadCP: "CP", PayloadEAP: "EAP", PayloadGSPM: "GSPM", PayloadSKF: "SKF",
	PayloadPS: "PS",
}

// String is RFC 7296's notation (Table in §3.2), "payload N" otherwise.
func (t PayloadType) String() string {
	if s, ok := payloadNames[t]; ok {
		return s
	}
	return fmt.Sprintf("payload %d", uint8(t))
}

// Known reports whether Decode understands payloads of this type: it checks
// their content, and an unknown type with the critical bit set makes Decode
// fail with UNSUPPORTED_CRITICAL_PAYLOAD.
func (t PayloadType) Known() bool {
	return t >= PayloadSA && t <= PayloadEAP || t == PayloadSKF
}

// ExchangeType is the exchange a message belongs to.
type ExchangeType uint8

// Exchange types, RFC 7296 §3.1 and IANA.
const (
	ExchangeIKESAInit        ExchangeType = 34
	ExchangeIKEAuth          ExchangeType = 35
	ExchangeCreateChildSA    ExchangeType = 36
	ExchangeInformational    ExchangeType = 37
	ExchangeIKESessionResume ExchangeType = 38 // RFC 5723
	ExchangeIKEIntermediate  ExchangeType = 43 // RFC 9242
	ExchangeIKEFollowupKE    ExchangeType = 44 // RFC 9370
)

func (t ExchangeType) String() string {
	switch t {
	case ExchangeIKESAInit:
		return "IKE_SA_INIT"
	case ExchangeIKEAuth:
		return "IKE_AUTH"
	case ExchangeCreateChildSA:
		return "CREATE_CHILD_SA"
	case ExchangeInformational:
		return "INFORMATIONAL"
	case ExchangeIKESessionResume:
		return "IKE_SESSION_RESUME"
	case ExchangeIKEIntermediate:
		return "IKE_INTERMEDIATE"
	case ExchangeIKEFollowupKE:
		return "IKE_FOLLOWUP_KE"
	}
	return fmt.Sprintf("exchange %d", uint8(t))
}

// Flags is the flags octet of the IKE header. The bits other than I, V and
// R are reserved; Decode keeps them so a message re-encodes as received.
type Flags uint8

// Header flags, RFC 7296 §3.1.
const (
	FlagInitiator Flags = 0x08 // I: sent by the original initiator of the IKE SA
	FlagVersion   Flags = 0x10 // V: the sender can speak a higher major version
	FlagResponse  Flags = 0x20 // R: this message is a response
)

func (f Flags) String() string {
	s := ""
	for _, b := range []struct {
		f    Flags
		name string
	}{{FlagInitiator, "I"}, {FlagVersion, "V"}, {FlagResponse, "R"}} {
		if f&b.f != 0 {
			s += b.name
		}
	}
	if r := f &^ (FlagInitiator | FlagVersion | FlagResponse); r != 0 {
		s += fmt.Sprintf("+0x%02x", uint8(r))
	}
	if s == "" {
		return "-"
	}
	return s
}

// Protocol is the protocol of a proposal, notification or delete (§3.3.1).
type Protocol uint8

// Protocol IDs.
const (
	ProtocolNone Protocol = 0 // notifications not about an SA
	ProtocolIKE  Protocol = 1
	ProtocolAH   Protocol = 2
	ProtocolESP  Protocol = 3
)

func (p Protocol) String() string {
	switch p {
	case ProtocolNone:
		return "RESERVED"
	case ProtocolIKE:
		return "IKE"
	case ProtocolAH:
		return "AH"
	case ProtocolESP:
		return "ESP"
	}
	return fmt.Sprintf("protocol %d", uint8(p))
}

// ChildSPILen is the SPI size of AH and ESP; IKE SPIs are 8 octets.
const ChildSPILen = 4

// IDType is the type of an Identification payload (§3.5).
type IDType uint8

// Identification types.
const (
	IDIPv4Addr   IDType = 1  // ID_IPV4_ADDR: 4 octets
	IDFQDN       IDType = 2  // ID_FQDN
	IDRFC822Addr IDType = 3  // ID_RFC822_ADDR
	IDIPv6Addr   IDType = 5  // ID_IPV6_ADDR: 16 octets
	IDDERASN1DN  IDType = 9  // ID_DER_ASN1_DN
	IDDERASN1GN  IDType = 10 // ID_DER_ASN1_GN
	IDKeyID      IDType = 11 // ID_KEY_ID
	IDFCName     IDType = 12 // ID_FC_NAME (RFC 4595)
	IDNull       IDType = 13 // ID_NULL (RFC 7619)
)

func (t IDType) String() string {
	switch t {
	case IDIPv4Addr:
		return "IPV4_ADDR"
	case IDFQDN:
		return "FQDN"
	case IDRFC822Addr:
		return "ID_RFC822_ADDR"
	case IDIPv6Addr:
		return "IPV6_ADDR"
	case IDDERASN1DN:
		return "DER_ASN1_DN"
	case IDDERASN1GN:
		return "DER_ASN1_GN"
	case IDKeyID:
		return "KEY_ID"
	case IDFCName:
		return "ID_FC_NAME"
	case IDNull:
		return "ID_NULL"
	}
	return fmt.Sprintf("ID type %d", uint8(t))
}

// AuthMethod is the method of an Authentication payload (§3.8).
type AuthMethod uint8

// Authentication methods, RFC 7296, RFC 4754, RFC 6467, RFC 7619, RFC 7427.
const (
	AuthRSASignature     AuthMethod = 1
	AuthSharedKeyMIC     AuthMethod = 2
	AuthDSSSignature     AuthMethod = 3
	AuthECDSASHA256P256  AuthMethod = 9
	AuthECDSASHA384P384  AuthMethod = 10
	AuthECDSASHA512P521  AuthMethod = 11
	AuthGenericPassword  AuthMethod = 12
	AuthNull             AuthMethod = 13
	AuthDigitalSignature AuthMethod = 14
)

func (m AuthMethod) String() string {
	switch m {
	case AuthRSASignature:
		return "RSA Digital Signature"
	case AuthSharedKeyMIC:
		return "Shared Key Message Integrity Code"
	case AuthDSSSignature:
		return "DSS Digital Signature"
	case AuthECDSASHA256P256:
		return "ECDSA with SHA-256 on the P-256 curve"
	case AuthECDSASHA384P384:
		return "ECDSA with SHA-384 on the P-384 curve"
	case AuthECDSASHA512P521:
		return "ECDSA with SHA-512 on the P-521 curve"
	case AuthGenericPassword:
		return "Generic Secure Password Authentication Method"
	case AuthNull:
		return "NULL Authentication"
	case AuthDigitalSignature:
		return "Digital Signature"
	}
	return fmt.Sprintf("auth method %d", uint8(m))
}

// CertEncoding is the encoding of a Certificate or Certificate Request
// payload (§3.6).
type CertEncoding uint8

// Certificate encodings (the common ones; any value decodes).
const (
	CertPKCS7X509     CertEncoding = 1
	CertPGP           CertEncoding = 2
	CertDNSSignedKey  CertEncoding = 3
	CertX509Signature CertEncoding = 4
	CertKerberos      CertEncoding = 6
	CertCRL           CertEncoding = 7
	CertARL           CertEncoding = 8
	CertSPKI          CertEncoding = 9
	CertX509Attribute CertEncoding = 10
	CertRawRSAKey     CertEncoding = 11
	CertHashURLX509   CertEncoding = 12
	CertHashURLBundle CertEncoding = 13
	CertOCSPContent   CertEncoding = 14 // RFC 4806
	CertRawPublicKey  CertEncoding = 15 // RFC 7670
)

func (e CertEncoding) String() string {
	switch e {
	case CertPKCS7X509:
		return "PKCS #7 wrapped X.509 certificate"
	case CertPGP:
		return "PGP Certificate"
	case CertDNSSignedKey:
		return "DNS Signed Key"
	case CertX509Signature:
		return "X.509 Certificate - Signature"
	case CertKerberos:
		return "Kerberos Tokens"
	case CertCRL:
		return "Certificate Revocation List (CRL)"
	case CertARL:
		return "Authority Revocation List (ARL)"
	case CertSPKI:
		return "SPKI Certificate"
	case CertX509Attribute:
		return "X.509 Certificate - Attribute"
	case CertRawRSAKey:
		return "Raw RSA Key"
	case CertHashURLX509:
		return "Hash and URL of X.509 certificate"
	case CertHashURLBundle:
		return "Hash and URL of X.509 bundle"
	case CertOCSPContent:
		return "OCSP Content"
	case CertRawPublicKey:
		return "Raw Public Key"
	}
	return fmt.Sprintf("cert encoding %d", uint8(e))
}

// TSType is the type of a traffic selector (§3.13.1).
type TSType uint8

// Traffic selector types.
const (
	TSIPv4AddrRange TSType = 7 // 4-octet addresses, selector length 16
	TSIPv6AddrRange TSType = 8 // 16-octet addresses, selector length 40
)

func (t TSType) String() string {
	switch t {
	case TSIPv4AddrRange:
		return "TS_IPV4_ADDR_RANGE"
	case TSIPv6AddrRange:
		return "TS_IPV6_ADDR_RANGE"
	}
	return fmt.Sprintf("TS type %d", uint8(t))
}

// CFGType is the type of a Configuration payload (§3.15).
type CFGType uint8

// Configuration payload types.
const (
	CFGRequest CFGType = 1
	CFGReply   CFGType = 2
	CFGSet     CFGType = 3
	CFGAck     CFGType = 4
)

func (t CFGType) String() string {
	switch t {
	case CFGRequest:
		return "CFG_REQUEST"
	case CFGReply:
		return "CFG_REPLY"
	case CFGSet:
		return "CFG_SET"
	case CFGAck:
		return "CFG_ACK"
	}
	return fmt.Sprintf("CFG type %d", uint8(t))
}
