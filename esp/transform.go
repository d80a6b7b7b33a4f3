package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/dmvpn/dmvpn/internal/ipsecalg"
)

// Encryption is an ESP encryption algorithm, numbered as IKEv2 numbers it
// (Transform Type 1, IANA "IKEv2 Parameters"), so IKE can map a negotiated
// transform onto it directly.
type Encryption uint16

// Encryption algorithms.
const (
	EncrAESCBC           Encryption = 12 // RFC 3602, with a separate integrity algorithm
	EncrAESGCM16         Encryption = 20 // RFC 4106, 16-octet ICV
	EncrChaCha20Poly1305 Encryption = 28 // RFC 7634
)

// Integrity is an ESP integrity algorithm (IKEv2 Transform Type 3).
type Integrity uint16

// Integrity algorithms. IntegNone goes with the combined-mode (AEAD)
// encryption algorithms, which authenticate by themselves.
const (
	IntegNone          Integrity = 0
	IntegHMACSHA1_96   Integrity = 2  // RFC 2404
	IntegHMACSHA256128 Integrity = 12 // RFC 4868
	IntegHMACSHA384192 Integrity = 13 // RFC 4868
	IntegHMACSHA512256 Integrity = 14 // RFC 4868
)

// Transform is an ESP transform: an encryption algorithm with its key size
// and, for AES-CBC, an integrity algorithm.
type Transform struct {
	Encryption Encryption
	// KeyBits is the cipher key size, salt excluded: 128 or 256 for AES,
	// 256 (or 0) for ChaCha20-Poly1305.
	KeyBits   int
	Integrity Integrity
}

// The transforms this package implements. CBC128SHA1 is Cisco's default
// transform set (esp-aes esp-sha-hmac); CBC256SHA512 is close to IOS XE's
// IKEv2 smart default.
var (
	GCM128           = Transform{Encryption: EncrAESGCM16, KeyBits: 128}
	GCM256           = Transform{Encryption: EncrAESGCM16, KeyBits: 256}
	ChaCha20Poly1305 = Transform{Encryption: EncrChaCha20Poly1305, KeyBits: 256}
	CBC128SHA1       = Transform{Encryption: EncrAESCBC, KeyBits: 128, Integrity: IntegHMACSHA1_96}
	CBC128SHA256     = Transform{Encryption: EncrAESCBC, KeyBits: 128, Integrity: IntegHMACSHA256128}
	CBC256SHA1       = Transform{Encryption: EncrAESCBC, KeyBits: 256, Integrity: IntegHMACSHA1_96}
	CBC256SHA256     = Transform{Encryption: EncrAESCBC, KeyBits: 256, Integrity: IntegHMACSHA256128}
	CBC256SHA384     = Transform{Encryption: EncrAESCBC, KeyBits: 256, Integrity: IntegHMACSHA384192}
	CBC256SHA512     = Transform{Encryption: EncrAESCBC, KeyBits: 256, Integrity: IntegHMACSHA512256}
)

// Transforms lists every supported combination of algorithm and key size
// with each integrity algorithm (for tests and for building proposals).
func Transforms() []Transform {
	ts := []Transform{GCM128, GCM256, ChaCha20Poly1305}
	for _, bits := range []int{128, 256} {
		for _, in := range []Integrity{IntegHMACSHA1_96, IntegHMACSHA256128, IntegHMACSHA384192, IntegHMACSHA512256} {
			ts = append(ts, Transform{Encryption: EncrAESCBC, KeyBits: bits, Integrity: in})
		}
	}
	return ts
}

func (t Transform) String() string {
	var s string
	switch t.Encryption {
	case EncrAESGCM16:
		s = fmt.Sprintf("aes-gcm-%d", t.KeyBits)
	case EncrChaCha20Poly1305:
		s = "chacha20-poly1305"
	case EncrAESCBC:
		s = fmt.Sprintf("aes-cbc-%d", t.KeyBits)
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

// Sizes on the wire.
const (
	// HeaderFixedLen is the SPI and the sequence number.
	HeaderFixedLen = 8
	// TrailerFixedLen is the Pad Length and Next Header octets.
	TrailerFixedLen = 2
	// MaxHeaderLen is the largest HeaderLen of any transform (AES-CBC:
	// 8 + a 16-octet IV).
	MaxHeaderLen = HeaderFixedLen + aes.BlockSize
	// MaxTrailerLen is the largest TrailerLen of any transform and payload
	// (AES-CBC with HMAC-SHA-512-256: 15 octets of padding, 2, a 32-octet
	// ICV).
	MaxTrailerLen = aes.BlockSize - 1 + TrailerFixedLen + 32
	// saltLen: RFC 4106 §8.1 and RFC 7634 §2: the last 4 octets of the
	// encryption key material are the salt, the first half of the nonce.
	saltLen = 4
	// aeadIVLen is the explicit IV of GCM and ChaCha20-Poly1305 (RFC 4106
	// §3.1, RFC 7634 §2).
	aeadIVLen  = 8
	aeadICVLen = 16
)

// params is what a transform looks like on the wire.
type params struct {
	aead      bool
	encKeyLen int // KEYMAT octets for encryption, salt included
	intKeyLen int
	ivLen     int
	align     int // the ciphertext (payload ‖ padding ‖ 2) is a multiple of it
	icvLen    int
}

func (t Transform) params() (params, error) {
	var p params
	switch t.Encryption {
	case EncrAESGCM16:
		if t.KeyBits != 128 && t.KeyBits != 256 {
			return p, fmt.Errorf("%w: %v: AES-GCM key size must be 128 or 256 bits", ErrTransform, t)
		}
		p = params{aead: true, encKeyLen: t.KeyBits/8 + saltLen, ivLen: aeadIVLen, align: 4, icvLen: aeadICVLen}
	case EncrChaCha20Poly1305:
		if t.KeyBits != 256 && t.KeyBits != 0 {
			return p, fmt.Errorf("%w: %v: ChaCha20-Poly1305 keys are 256 bits", ErrTransform, t)
		}
		p = params{aead: true, encKeyLen: chacha20poly1305.KeySize + saltLen, ivLen: aeadIVLen, align: 4, icvLen: aeadICVLen}
	case EncrAESCBC:
		if t.KeyBits != 128 && t.KeyBits != 256 {
			return p, fmt.Errorf("%w: %v: AES-CBC key size must be 128 or 256 bits", ErrTransform, t)
		}
		p = params{encKeyLen: t.KeyBits / 8, ivLen: aes.BlockSize, align: aes.BlockSize}
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

// hash returns the hash of an HMAC integrity algorithm, its key length (as
// long as the hash output: RFC 2404 §3, RFC 4868 §2.1.1) and its ICV length
// (the HMAC output truncated to half: RFC 2404's 96 of SHA-1's 160 bits,
// RFC 4868 §2.3).
func (in Integrity) hash() (h func() hash.Hash, keyLen, icvLen int) {
	h, keyLen, icvLen, _ = ipsecalg.HMAC(uint16(in))
	return h, keyLen, icvLen
}

// Valid reports whether t is a transform this package implements.
func (t Transform) Valid() error { _, err := t.params(); return err }

// AEAD reports whether t is a combined-mode algorithm (AES-GCM,
// ChaCha20-Poly1305).
func (t Transform) AEAD() bool { p, _ := t.params(); return p.aead }

// EncKeyLen is the length of the encryption key Config.EncKey must hold:
// for AES-GCM and ChaCha20-Poly1305 the cipher key and the 4-octet salt
// (RFC 4106 §8.1, RFC 7634 §2), in that order, as IKEv2 derives them.
func (t Transform) EncKeyLen() int { p, _ := t.params(); return p.encKeyLen }

// IntegKeyLen is the length of the integrity key (0 for AEAD transforms).
func (t Transform) IntegKeyLen() int { p, _ := t.params(); return p.intKeyLen }

// KeymatLen is how much KEYMAT IKEv2 takes for one direction of a Child SA
// with this transform: the encryption key, then the integrity key (RFC 7296
// §2.17).
func (t Transform) KeymatLen() int { p, _ := t.params(); return p.encKeyLen + p.intKeyLen }

// IVLen is the length of the explicit IV sent after the sequence number.
func (t Transform) IVLen() int { p, _ := t.params(); return p.ivLen }

// ICVLen is the length of the Integrity Check Value at the end.
func (t Transform) ICVLen() int { p, _ := t.params(); return p.icvLen }

// HeaderLen is the headroom Seal needs in front of the payload: SPI,
// sequence number and IV. 16 for AEAD transforms, 24 for AES-CBC.
func (t Transform) HeaderLen() int { p, _ := t.params(); return HeaderFixedLen + p.ivLen }

// PadLen is the padding Seal adds behind a payload of n octets: the least
// that makes payload ‖ padding ‖ Pad Length ‖ Next Header a multiple of the
// cipher's block size (16 for AES-CBC; 4 for AEAD transforms, RFC 4303
// §2.4's alignment).
func (t Transform) PadLen(n int) int {
	p, _ := t.params()
	return padLen(n, p.align)
}

func padLen(n, align int) int {
	if align == 0 {
		return 0
	}
	return (align - (n+TrailerFixedLen)%align) % align
}

// TrailerLen is the tailroom Seal needs behind a payload of n octets:
// padding, Pad Length, Next Header and ICV.
func (t Transform) TrailerLen(n int) int {
	p, _ := t.params()
	return padLen(n, p.align) + TrailerFixedLen + p.icvLen
}

// MaxTrailerLen is the tailroom that fits any payload: TrailerLen with the
// most padding.
func (t Transform) MaxTrailerLen() int {
	p, _ := t.params()
	return p.align - 1 + TrailerFixedLen + p.icvLen
}

// Overhead is how much longer Seal makes a payload of n octets: the ESP
// packet is n + Overhead(n) octets (before any outer IP or UDP header).
func (t Transform) Overhead(n int) int { return t.HeaderLen() + t.TrailerLen(n) }

// MaxPayload is the largest payload whose ESP packet fits in size octets
// (the MTU less the outer headers), or 0 when none does.
func (t Transform) MaxPayload(size int) int {
	p, err := t.params()
	if err != nil {
		return 0
	}
	room := size - HeaderFixedLen - p.ivLen - p.icvLen
	if room < TrailerFixedLen {
		return 0
	}
	return room/p.align*p.align - TrailerFixedLen
}

// newCipher builds the encryption state of t from its key.
func (t Transform) newCipher(key []byte) (aead cipher.AEAD, block cipher.Block, salt []byte, err error) {
	switch t.Encryption {
	case EncrAESGCM16:
		k, s := key[:len(key)-saltLen], key[len(key)-saltLen:]
		b, err := aes.NewCipher(k)
		if err != nil {
			return nil, nil, nil, err
		}
		g, err := cipher.NewGCM(b)
		return g, nil, s, err
	case EncrChaCha20Poly1305:
		k, s := key[:len(key)-saltLen], key[len(key)-saltLen:]
		c, err := chacha20poly1305.New(k)
		return c, nil, s, err
	case EncrAESCBC:
		b, err := aes.NewCipher(key)
		return nil, b, nil, err
	}
	return nil, nil, nil, ErrTransform
}
