package ikev2

import "fmt"

// TransformType is the type of a transform (RFC 7296 §3.3.2).
type TransformType uint8

// Transform types.
const (
	TransformENCR  TransformType = 1 // encryption algorithm
	TransformPRF   TransformType = 2 // pseudorandom function
	TransformINTEG TransformType = 3 // integrity algorithm
	TransformDH    TransformType = 4 // Diffie-Hellman group (Key Exchange Method, RFC 9370)
	TransformESN   TransformType = 5 // extended sequence numbers
)

func (t TransformType) String() string {
	switch t {
	case TransformENCR:
		return "Encryption Algorithm (ENCR)"
	case TransformPRF:
		return "Pseudo-random Function (PRF)"
	case TransformINTEG:
		return "Integrity Algorithm (INTEG)"
	case TransformDH:
		return "Diffie-Hellman Group (D-H)"
	case TransformESN:
		return "Extended Sequence Numbers (ESN)"
	}
	return fmt.Sprintf("transform type %d", uint8(t))
}

// EncrID is the ID of an ENCR transform.
type EncrID uint16

// Encryption algorithms (IANA "Transform Type 1").
const (
	Encr3DES             EncrID = 3
	EncrNull             EncrID = 11
	EncrAESCBC           EncrID = 12 // Key Length attribute: 128, 192 or 256
	EncrAESCTR           EncrID = 13
	EncrAESCCM8          EncrID = 14
	EncrAESCCM12         EncrID = 15
	EncrAESCCM16         EncrID = 16
	EncrAESGCM8          EncrID = 18
	EncrAESGCM12         EncrID = 19
	EncrAESGCM16         EncrID = 20 // Key Length attribute: 128, 192 or 256
	EncrNullAuthAESGMAC  EncrID = 21
	EncrCamelliaCBC      EncrID = 23
	EncrChaCha20Poly1305 EncrID = 28 // no Key Length attribute (RFC 7634)
)

var encrNames = map[EncrID]string{
	1: "ENCR_DES_IV64", 2: "ENCR_DES", Encr3DES: "ENCR_3DES", 4: "ENCR_RC5", 5: "ENCR_IDEA",
	6: "ENCR_CAST", 7: "ENCR_BLOWFISH", 8: "ENCR_3IDEA", 9: "ENCR_DES_IV32",
	EncrNull: "ENCR_NULL", EncrAESCBC: "ENCR_AES_CBC", EncrAESCTR: "ENCR_AES_CTR",
	EncrAESCCM8: "ENCR_AES-CCM_8", EncrAESCCM12: "ENCR-AES-CCM_12", EncrAESCCM16: "ENCR-AES-CCM_16",
	EncrAESGCM8: "AES-GCM with a 8 octet ICV", EncrAESGCM12: "AES-GCM with a 12 octet ICV",
	EncrAESGCM16: "AES-GCM with a 16 octet ICV", EncrNullAuthAESGMAC: "ENCR_NULL_AUTH_AES_GMAC",
	EncrCamelliaCBC: "ENCR_CAMELLIA_CBC", 24: "ENCR_CAMELLIA_CTR",
	25: "ENCR_CAMELLIA_CCM with an 8-octet ICV", 26: "ENCR_CAMELLIA_CCM with a 12-octet ICV",
	27: "ENCR_CAMELLIA_CCM with a 16-octet ICV", EncrChaCha20Poly1305: "ENCR_CHACHA20_POLY1305",
}

// String is TShark's name (its spelling, odd hyphens included).
func (id EncrID) String() string {
	if s, ok := encrNames[id]; ok {
		return s
	}
	return fmt.Sprintf("ENCR %d", uint16(id))
}

// PRFID is the ID of a PRF transform.
type PRFID uint16

// Pseudorandom functions.
const (
	PRFHMACMD5     PRFID = 1
	PRFHMACSHA1    PRFID = 2
	PRFAES128XCBC  PRFID = 4
	PRFHMACSHA2256 PRFID = 5
	PRFHMACSHA2384 PRFID = 6
	PRFHMACSHA2512 PRFID = 7
	PRFAES128CMAC  PRFID = 8
)

func (id PRFID) String() string {
	switch id {
	case PRFHMACMD5:
		return "PRF_HMAC_MD5"
	case PRFHMACSHA1:
		return "PRF_HMAC_SHA1"
	case 3:
		return "PRF_HMAC_TIGER"
	case PRFAES128XCBC:
		return "PRF_AES128_XCBC" // TShark 4.0: "PRF_AES128_CBC"
	case PRFHMACSHA2256:
		return "PRF_HMAC_SHA2_256"
	case PRFHMACSHA2384:
		return "PRF_HMAC_SHA2_384"
	case PRFHMACSHA2512:
		return "PRF_HMAC_SHA2_512"
	case PRFAES128CMAC:
		return "PRF_AES128_CMAC" // TShark 4.0: "PRF_AES128_CMAC6"
	}
	return fmt.Sprintf("PRF %d", uint16(id))
}

// IntegID is the ID of an INTEG transform.
type IntegID uint16

// Integrity algorithms (RFC 7296, RFC 4868 for SHA-2).
const (
	IntegNone           IntegID = 0 // with an AEAD cipher
	IntegHMACMD596      IntegID = 1
	IntegHMACSHA196     IntegID = 2
	IntegAESXCBC96      IntegID = 5
	IntegAESCMAC96      IntegID = 8
	IntegHMACSHA2256128 IntegID = 12
	IntegHMACSHA2384192 IntegID = 13
	IntegHMACSHA2512256 IntegID = 14
)

var integNames = map[IntegID]string{
	IntegNone: "NONE", IntegHMACMD596: "AUTH_HMAC_MD5_96", IntegHMACSHA196: "AUTH_HMAC_SHA1_96",
	3: "AUTH_DES_MAC", 4: "AUTH_KPDK_MD5", IntegAESXCBC96: "AUTH_AES_XCBC_96",
	6: "AUTH_HMAC_MD5_128", 7: "AUTH_HMAC_SHA1_160", IntegAESCMAC96: "AUTH_AES_CMAC_96",
	9: "AUTH_AES_128_GMAC", 10: "AUTH_AES_192_GMAC", 11: "AUTH_AES_256_GMAC",
	IntegHMACSHA2256128: "AUTH_HMAC_SHA2_256_128", IntegHMACSHA2384192: "AUTH_HMAC_SHA2_384_192",
	IntegHMACSHA2512256: "AUTH_HMAC_SHA2_512_256",
}

func (id IntegID) String() string {
	if s, ok := integNames[id]; ok {
		return s
	}
	return fmt.Sprintf("INTEG %d", uint16(id))
}

// DHGroup is the ID of a D-H transform and the group of a KE payload.
type DHGroup uint16

// Diffie-Hellman groups (RFC 7296 App. B, RFC 3526, RFC 5903, RFC 8031).
const (
	DHNone       DHGroup = 0 // in a Child SA proposal: no PFS
	DHMODP768    DHGroup = 1
	DHMODP1024   DHGroup = 2
	DHMODP1536   DHGroup = 5
	DHMODP2048   DHGroup = 14
	DHMODP3072   DHGroup = 15
	DHMODP4096   DHGroup = 16
	DHMODP6144   DHGroup = 17
	DHMODP8192   DHGroup = 18
	DHECP256     DHGroup = 19
	DHECP384     DHGroup = 20
	DHECP521     DHGroup = 21
	DHCurve25519 DHGroup = 31
	DHCurve448   DHGroup = 32
)

var dhNames = map[DHGroup]string{
	DHNone: "NONE", DHMODP768: "Default 768-bit MODP group", DHMODP1024: "Alternate 1024-bit MODP group",
	DHMODP1536: "1536 bit MODP group", DHMODP2048: "2048 bit MODP group", DHMODP3072: "3072 bit MODP group",
	DHMODP4096: "4096 bit MODP group", DHMODP6144: "6144 bit MODP group", DHMODP8192: "8192 bit MODP group",
	DHECP256: "256-bit random ECP group", DHECP384: "384-bit random ECP group", DHECP521: "521-bit random ECP group",
	22: "1024-bit MODP Group with 160-bit Prime Order Subgroup",
	23: "2048-bit MODP Group with 224-bit Prime Order Subgroup",
	24: "2048-bit MODP Group with 256-bit Prime Order Subgroup",
	25: "192-bit Random ECP Group", 26: "224-bit Random ECP Group",
	27: "224-bit Brainpool ECP group", 28: "256-bit Brainpool ECP group",
	29: "384-bit Brainpool ECP group", 30: "512-bit Brainpool ECP group",
	DHCurve25519: "Curve25519", DHCurve448: "Curve448",
}

// String is TShark's name, except for 0 ("NONE", as RFC 7296 names it;
// TShark says "UNDEFINED - 0").
func (g DHGroup) String() string {
	if s, ok := dhNames[g]; ok {
		return s
	}
	return fmt.Sprintf("DH group %d", uint16(g))
}

// KeyExchangeLen is the length of the Key Exchange Data of a KE payload for
// group g: the prime's length for MODP groups, x ‖ y without the 0x04 point
// prefix for ECP groups (RFC 5903 §7), the u coordinate for Curve25519 and
// Curve448 (RFC 8031). ok is false for groups this table does not know;
// Decode checks the length of the groups it knows.
func (g DHGroup) KeyExchangeLen() (n int, ok bool) {
	switch g {
	case DHMODP768:
		return 96, true
	case DHMODP1024, 22:
		return 128, true
	case DHMODP1536:
		return 192, true
	case DHMODP2048, 23, 24:
		return 256, true
	case DHMODP3072:
		return 384, true
	case DHMODP4096:
		return 512, true
	case DHMODP6144:
		return 768, true
	case DHMODP8192:
		return 1024, true
	case DHECP256, 28:
		return 64, true
	case DHECP384, 29:
		return 96, true
	case DHECP521:
		return 132, true
	case 25:
		return 48, true
	case 26, 27:
		return 56, true
	case 30:
		return 128, true
	case DHCurve25519:
		return 32, true
	case DHCurve448:
		return 56, true
	}
	return 0, false
}

// ESNID is the ID of an ESN transform.
type ESNID uint16

// Extended sequence numbers.
const (
	ESNNo  ESNID = 0
	ESNYes ESNID = 1
)

func (id ESNID) String() string {
	switch id {
	case ESNNo:
		return "No Extended Sequence Numbers"
	case ESNYes:
		return "Extended Sequence Numbers"
	}
	return fmt.Sprintf("ESN %d", uint16(id))
}

// AttributeType is the 15-bit type of a transform attribute (§3.3.5).
type AttributeType uint16

// AttrKeyLength is the only attribute RFC 7296 defines: the key length in
// bits, in TV format.
const AttrKeyLength AttributeType = 14

func (t AttributeType) String() string {
	if t == AttrKeyLength {
		return "Key Length"
	}
	return fmt.Sprintf("attribute %d", uint16(t))
}

// Attribute is one transform attribute. TV attributes (the AF bit set) carry
// a 2-octet Value; TLV attributes carry Data, a sub-slice of the message
// when decoded.
type Attribute struct {
	Type  AttributeType
	TV    bool
	Value uint16 // TV format only
	Data  []byte // TLV format only
}

// KeyLength returns a Key Length attribute of bits.
func KeyLength(bits uint16) Attribute {
	return Attribute{Type: AttrKeyLength, TV: true, Value: bits}
}

func (a *Attribute) len() int {
	if a.TV {
		return attrHdrLen
	}
	return attrHdrLen + len(a.Data)
}

// Transform is one transform of a proposal. ID is read according to Type:
// EncrID, PRFID, IntegID, DHGroup or ESNID.
type Transform struct {
	Type TransformType
	ID   uint16
	// Attributes in wire order; a Key Length is usually the only one.
	Attributes []Attribute
	// Reserved holds the two reserved octets (offsets 1 and 5), kept so a
	// decoded transform re-encodes to the same bytes; zero when sending.
	Reserved [2]byte
}

// KeyLength returns the value of the transform's Key Length attribute.
func (t *Transform) KeyLength() (bits uint16, ok bool) {
	for i := range t.Attributes {
		if a := &t.Attributes[i]; a.Type == AttrKeyLength && a.TV {
			return a.Value, true
		}
	}
	return 0, false
}

// Name is the transform ID's name for its type ("ENCR_AES_CBC", ...).
func (t *Transform) Name() string {
	switch t.Type {
	case TransformENCR:
		return EncrID(t.ID).String()
	case TransformPRF:
		return PRFID(t.ID).String()
	case TransformINTEG:
		return IntegID(t.ID).String()
	case TransformDH:
		return DHGroup(t.ID).String()
	case TransformESN:
		return ESNID(t.ID).String()
	}
	return fmt.Sprintf("%v ID %d", t.Type, t.ID)
}

// String is the name followed by the key length, if any: "ENCR_AES_CBC/256".
func (t Transform) String() string {
	if bits, ok := t.KeyLength(); ok {
		return fmt.Sprintf("%s/%d", t.Name(), bits)
	}
	return t.Name()
}

func (t *Transform) len() int {
	n := transformHdrLen
	for i := range t.Attributes {
		n += t.Attributes[i].len()
	}
	return n
}
