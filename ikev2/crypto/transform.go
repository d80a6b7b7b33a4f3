package ikecrypto

import (
	"crypto/aes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/dmvpn/dmvpn/internal/ipsecalg"
)

// The algorithm identifiers below are IANA's "IKEv2 Parameters" Transform
// IDs, so a negotiated transform maps onto them without a table. They are
// this package's own constants for now (it does not import the ikev2
// codec); they have the same numbers as package esp's and as the codec's and
// are to be unified with them.

// Encryption is an encryption algorithm for the SK payload (Transform Type 1).
type Encryption uint16

// Encryption algorithms.
const (
	EncrAESCBC           Encryption = 12 // ENCR_AES_CBC, RFC 3602, with an integrity algorithm
	EncrAESGCM16         Encryption = 20 // ENCR_AES_GCM_16, RFC 5282, 16-octet ICV
	EncrChaCha20Poly1305 Encryption = 28 // ENCR_CHACHA20_POLY1305, RFC 7634
)

// Integrity is an integrity algorithm for the SK payload (Transform Type 3).
type Integrity uint16

// Integrity algorithms. IntegNone goes with the combined-mode (AEAD)
// algorithms, which authenticate by themselves (RFC 7296 §3.3).
const (
	IntegNone          Integrity = 0  // NONE
	IntegHMACSHA1_96   Integrity = 2  // AUTH_HMAC_SHA1_96, RFC 2404
	IntegHMACSHA256128 Integrity = 12 // AUTH_HMAC_SHA2_256_128, RFC 4868
	IntegHMACSHA384192 Integrity = 13 // AUTH_HMAC_SHA2_384_192, RFC 4868
	IntegHMACSHA512256 Integrity = 14 // AUTH_HMAC_SHA2_512_256, RFC 4868
)

// PRF is a pseudorandom function (Transform Type 2).
type PRF uint16

// Pseudorandom functions.
const (
	PRFHMACSHA1    PRF = 2 // PRF_HMAC_SHA1, RFC 2104; for old peers
	PRFAES128XCBC  PRF = 4 // PRF_AES128_XCBC, RFC 4434: the fixed-key PRF of RFC 7296 §2.14
	PRFHMACSHA2256 PRF = 5 // PRF_HMAC_SHA2_256, RFC 4868
	PRFHMACSHA2384 PRF = 6 // PRF_HMAC_SHA2_384, RFC 4868
	PRFHMACSHA2512 PRF = 7 // PRF_HMAC_SHA2_512, RFC 4868
)

// Transform is how SK payloads are protected: an encryption algorithm with
// its key size and, for AES-CBC, an integrity algorithm.
type Transform struct {
	Encryption Encryption
	// KeyBits is the cipher key size, salt excluded (the Key Length
	// attribute): 128, 192 or 256 for AES; 256 (or 0) for
	// ChaCha20-Poly1305, which has no Key Length attribute.
	KeyBits   int
	Integrity Integrity
}

// Suite is what an IKE SA negotiates for itself: the SK payload's protection
// and the PRF. The Diffie-Hellman group is used once, before the keys exist,
// and is not part of it.
type Suite struct {
	Transform
	PRF PRF
}

func (t Transform) String() string {
	var s string
	switch t.Encryption {
	case EncrAESCBC:
		s = fmt.Sprintf("aes-cbc-%d", t.KeyBits)
	case EncrAESGCM16:
		s = fmt.Sprintf("aes-gcm-%d", t.KeyBits)
	case EncrChaCha20Poly1305:
		s = "chacha20-poly1305"
	default:
		s = fmt.Sprintf("encr-%d/%d", uint16(t.Encryption), t.KeyBits)
	}
	switch t.Integrity {
	case IntegNone:
	case IntegHMACSHA1_96:
		s += "/hmac-sha1-96"
	case IntegHMACSHA256128:
		s += "/hmac-sha256-128"
	case IntegHMACSHA384192:
		s += "/hmac-sha384-192"
	case IntegHMACSHA512256:
		s += "/hmac-sha512-256"
	default:
		s += fmt.Sprintf("/integ-%d", uint16(t.Integrity))
	}
	return s
}

func (s Suite) String() string { return s.Transform.String() + "/" + s.PRF.String() }

func (p PRF) String() string {
	switch p {
	case PRFHMACSHA1:
		return "prf-hmac-sha1"
	case PRFAES128XCBC:
		return "prf-aes128-xcbc"
	case PRFHMACSHA2256:
		return "prf-hmac-sha256"
	case PRFHMACSHA2384:
		return "prf-hmac-sha384"
	case PRFHMACSHA2512:
		return "prf-hmac-sha512"
	}
	return fmt.Sprintf("prf-%d", uint16(p))
}

// Sizes on the wire.
const (
	// IKEHeaderLen is the fixed IKE header (RFC 7296 §3.1).
	IKEHeaderLen = 28
	// SKHeaderLen is the generic payload header in front of the SK
	// payload's IV; SKFHeaderLen adds the Fragment Number and Total
	// Fragments of an Encrypted Fragment payload (RFC 7383 §2.5).
	SKHeaderLen  = 4
	SKFHeaderLen = 8
	// saltLen: RFC 5282 §7.1 and RFC 7634 §4: the last 4 octets of each
	// SK_e are the salt, the first third of the nonce.
	saltLen = 4
	// aeadIVLen is the explicit IV of GCM and ChaCha20-Poly1305 (RFC 5282
	// §3.1, RFC 7634 §3); aeadICVLen their tag.
	aeadIVLen  = 8
	aeadICVLen = 16
)

// params is what a transform looks like on the wire and in the KEYMAT.
type params struct {
	aead      bool
	encKeyLen int // SK_e octets, salt included
	intKeyLen int // SK_a octets
	ivLen     int
	block     int // the ciphertext is a multiple of it (1: no alignment)
	icvLen    int
}

func (t Transform) params() (params, error) {
	var p params
	switch t.Encryption {
	case EncrAESCBC:
		if t.KeyBits != 128 && t.KeyBits != 192 && t.KeyBits != 256 {
			return p, fmt.Errorf("%w: %v: AES-CBC key size must be 128, 192 or 256 bits", ErrTransform, t)
		}
		p = params{encKeyLen: t.KeyBits / 8, ivLen: aes.BlockSize, block: aes.BlockSize}
	case EncrAESGCM16:
		if t.KeyBits != 128 && t.KeyBits != 192 && t.KeyBits != 256 {
			return p, fmt.Errorf("%w: %v: AES-GCM key size must be 128, 192 or 256 bits", ErrTransform, t)
		}
		// RFC 5282 §3: no alignment; we send no padding (Pad Length 0).
		p = params{aead: true, encKeyLen: t.KeyBits/8 + saltLen, ivLen: aeadIVLen, block: 1, icvLen: aeadICVLen}
	case EncrChaCha20Poly1305:
		if t.KeyBits != 256 && t.KeyBits != 0 {
			return p, fmt.Errorf("%w: %v: ChaCha20-Poly1305 keys are 256 bits", ErrTransform, t)
		}
		p = params{aead: true, encKeyLen: chacha20poly1305.KeySize + saltLen, ivLen: aeadIVLen, block: 1, icvLen: aeadICVLen}
	default:
		return p, fmt.Errorf("%w: %v: unsupported encryption algorithm", ErrTransform, t)
	}
	keyLen, icvLen, err := ipsecalg.Integrity(uint16(t.Integrity), p.aead)
	if err != nil {
		return p, fmt.Errorf("%w: %v: %v", ErrTransform, t, err)
	}
	if !p.aead { // an AEAD's ICV is its tag, set above
		p.intKeyLen, p.icvLen = keyLen, icvLen
	}
	return p, nil
}

// hash returns the hash of an HMAC integrity algorithm, its key length (the
// hash's output: RFC 2404 §3, RFC 4868 §2.1.1) and its ICV length (half of
// it: RFC 2404's 96 of 160 bits, RFC 4868 §2.3).
func (in Integrity) hash() (h func() hash.Hash, keyLen, icvLen int) {
	h, keyLen, icvLen, _ = ipsecalg.HMAC(uint16(in))
	return h, keyLen, icvLen
}

// Valid reports whether t is a transform this package implements.
func (t Transform) Valid() error { _, err := t.params(); return err }

// AEAD reports whether t is a combined-mode algorithm.
func (t Transform) AEAD() bool { p, _ := t.params(); return p.aead }

// EncKeyLen is the length of SK_ei and SK_er: the cipher key, and for the
// AEAD transforms the 4-octet salt behind it (RFC 5282 §7.1, RFC 7634 §4).
func (t Transform) EncKeyLen() int { p, _ := t.params(); return p.encKeyLen }

// IntegKeyLen is the length of SK_ai and SK_ar (0 for AEAD transforms).
func (t Transform) IntegKeyLen() int { p, _ := t.params(); return p.intKeyLen }

// IVLen is the length of the IV in front of the ciphertext: 16 for AES-CBC,
// 8 for the AEAD transforms.
func (t Transform) IVLen() int { p, _ := t.params(); return p.ivLen }

// ICVLen is the length of the Integrity Checksum Data at the end.
func (t Transform) ICVLen() int { p, _ := t.params(); return p.icvLen }

// PadLen is the padding Seal puts behind n octets of inner payloads: the
// least that makes payloads ‖ padding ‖ Pad Length a multiple of the block
// (16 for AES-CBC; none for the AEAD transforms).
func (t Transform) PadLen(n int) int {
	p, _ := t.params()
	return padLen(n, p.block)
}

func padLen(n, block int) int {
	if block <= 1 {
		return 0
	}
	return (block - (n+1)%block) % block
}

// Overhead is how many octets Seal adds to n octets of inner payloads behind
// the SK payload header: IV, padding, Pad Length and ICV.
func (t Transform) Overhead(n int) int {
	p, _ := t.params()
	return p.ivLen + padLen(n, p.block) + 1 + p.icvLen
}

// prf describes a PRF: its output size, the key length RFC 7296 §2.13 asks
// for when prf+ makes a key for it (SK_d, SK_pi, SK_pr), and whether its key
// is fixed-size (§2.14).
func (p PRF) info() (size int, newHash func() hash.Hash, fixedKey bool, err error) {
	switch p {
	case PRFHMACSHA1:
		return sha1.Size, sha1.New, false, nil
	case PRFAES128XCBC:
		return aes.BlockSize, nil, true, nil
	case PRFHMACSHA2256:
		return sha256.Size, sha256.New, false, nil
	case PRFHMACSHA2384:
		return sha512.Size384, sha512.New384, false, nil
	case PRFHMACSHA2512:
		return sha512.Size, sha512.New, false, nil
	}
	return 0, nil, false, fmt.Errorf("%w: %v", ErrPRF, p)
}

// Valid reports whether p is a PRF this package implements.
func (p PRF) Valid() error { _, _, _, err := p.info(); return err }

// Size is the PRF's output length in octets (0 if p is not implemented).
func (p PRF) Size() int { n, _, _, _ := p.info(); return n }

// KeyLen is the length of the keys prf+ derives for this PRF (SK_d, SK_pi,
// SK_pr): its preferred key size, which RFC 7296 §2.13 and RFC 4868 §2.1.2
// set to the output size for every PRF here (16 for AES-XCBC).
func (p PRF) KeyLen() int { return p.Size() }

// FixedKey reports whether the PRF takes a fixed-size key (AES-XCBC), for
// which SKEYSEED is keyed with the first halves of the nonces (§2.14).
func (p PRF) FixedKey() bool { _, _, f, _ := p.info(); return f }
