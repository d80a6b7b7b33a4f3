package ikecrypto

import (
	"encoding/binary"
	"fmt"
)

// Nonce bounds of RFC 7296 §3.9.
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

// CheckNonce reports whether a nonce received in a Nonce payload is usable
// with prf: 16 to 256 octets and at least half the PRF's key size (RFC 7296
// §2.10, §3.9). The key-derivation functions themselves only insist on what
// they need to compute (for AES-XCBC, 8 octets of each nonce), so that the
// published test vectors with short nonces run through them; the IKE state
// machine calls CheckNonce on what peers send.
func CheckNonce(p PRF, nonce []byte) error {
	size, _, _, err := p.info()
	if err != nil {
		return err
	}
	if len(nonce) < MinNonceLen || len(nonce) > MaxNonceLen || len(nonce) < (p.KeyLen()+1)/2 {
		return fmt.Errorf("%w: %d octets (%v wants %d to %d)", ErrNonce, len(nonce), p, max(MinNonceLen, (size+1)/2), MaxNonceLen)
	}
	return nil
}

// SKEYSEED computes the seed of a new IKE SA's keys (RFC 7296 §2.14):
//
//	SKEYSEED = prf(Ni | Nr, g^ir)
//
// gir is the Diffie-Hellman shared secret exactly as Shared returned it
// (fixed length, leading zeros kept). For a PRF with a fixed key size
// (AES-XCBC) the key is the first half-key of Ni followed by the first
// half-key of Nr, as §2.14 says; for HMAC it is all of Ni | Nr.
func SKEYSEED(p PRF, ni, nr, gir []byte) ([]byte, error) {
	size, _, fixed, err := p.info()
	if err != nil {
		return nil, err
	}
	if !fixed {
		key := make([]byte, 0, len(ni)+len(nr))
		key = append(append(key, ni...), nr...)
		defer clear(key)
		return p.Compute(key, gir)
	}
	half := p.KeyLen() / 2
	if len(ni) < half || len(nr) < half {
		return nil, fmt.Errorf("%w: %v needs %d octets of each nonce, have %d and %d", ErrNonce, p, half, len(ni), len(nr))
	}
	key := make([]byte, 0, size)
	key = append(append(key, ni[:half]...), nr[:half]...)
	defer clear(key)
	return p.Compute(key, gir)
}

// RekeySKEYSEED computes the SKEYSEED of an IKE SA made by rekeying another
// (RFC 7296 §2.18), with the old SA's SK_d, the new exchange's shared
// secret and nonces:
//
//	SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
func RekeySKEYSEED(p PRF, oldSKd, gir, ni, nr []byte) ([]byte, error) {
	if len(oldSKd) == 0 {
		return nil, fmt.Errorf("%w: empty SK_d", ErrKeyLength)
	}
	return p.Compute(oldSKd, gir, ni, nr)
}

// IKEKeys are the seven keys of an IKE SA, in the order prf+ produces them
// (RFC 7296 §2.14). All share one backing array; Clear zeroes it.
type IKEKeys struct {
	// SKd derives Child SA keys and the next IKE SA's SKEYSEED.
	SKd []byte
	// SKai, SKar: integrity of the SK payloads the initiator, the responder
	// send (empty with AEAD transforms).
	SKai, SKar []byte
	// SKei, SKer: their encryption (AEAD: key ‖ 4-octet salt).
	SKei, SKer []byte
	// SKpi, SKpr: the keys of the AUTH payloads' MACedID (§2.15).
	SKpi, SKpr []byte
}

// Clear zeroes the keys (when the IKE SA is gone).
func (k *IKEKeys) Clear() {
	for _, b := range [][]byte{k.SKd, k.SKai, k.SKar, k.SKei, k.SKer, k.SKpi, k.SKpr} {
		clear(b)
	}
}

// IKEKeysLen is how much prf+ output an IKE SA with suite s takes: SK_d,
// SK_pi and SK_pr of the PRF's key length, both SK_a and both SK_e.
func IKEKeysLen(s Suite) (int, error) {
	tp, err := s.Transform.params()
	if err != nil {
		return 0, err
	}
	if err := s.PRF.Valid(); err != nil {
		return 0, err
	}
	return 3*s.PRF.KeyLen() + 2*tp.intKeyLen + 2*tp.encKeyLen, nil
}

// DeriveIKEKeys splits the keys of an IKE SA out of SKEYSEED (RFC 7296
// §2.14):
//
//	{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
//	        = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
//
// with the lengths of the suite: SK_d, SK_pi and SK_pr the PRF's key length;
// SK_a the integrity key (none for AEAD); SK_e the cipher key, plus the salt
// for AEAD (RFC 5282 §7.1, RFC 7634 §4). The SPIs are the IKE header's, in
// network order; for a rekeyed IKE SA they are the new SA's, from the
// CREATE_CHILD_SA exchange (§2.18).
func DeriveIKEKeys(s Suite, skeyseed, ni, nr []byte, spiI, spiR uint64) (IKEKeys, error) {
	var k IKEKeys
	n, err := IKEKeysLen(s)
	if err != nil {
		return k, err
	}
	if len(skeyseed) == 0 {
		return k, fmt.Errorf("%w: empty SKEYSEED", ErrKeyLength)
	}
	var spis [16]byte
	binary.BigEndian.PutUint64(spis[:8], spiI)
	binary.BigEndian.PutUint64(spis[8:], spiR)
	km, err := PRFPlus(s.PRF, skeyseed, n, ni, nr, spis[:])
	if err != nil {
		return k, err
	}
	tp, _ := s.Transform.params()
	take := func(l int) []byte {
		b := km[:l:l]
		km = km[l:]
		return b
	}
	pk := s.PRF.KeyLen()
	k.SKd = take(pk)
	k.SKai, k.SKar = take(tp.intKeyLen), take(tp.intKeyLen)
	k.SKei, k.SKer = take(tp.encKeyLen), take(tp.encKeyLen)
	k.SKpi, k.SKpr = take(pk), take(pk)
	return k, nil
}

// ChildKeys is the KEYMAT of one Child SA split by direction (RFC 7296
// §2.17). "Initiator" is the initiator of the exchange that created the
// Child SA (IKE_AUTH or CREATE_CHILD_SA), not necessarily of the IKE SA.
type ChildKeys struct {
	// InitEnc, InitInteg protect what the initiator sends: the SA whose
	// SPI the responder chose.
	InitEnc, InitInteg []byte
	// RespEnc, RespInteg protect what the responder sends.
	RespEnc, RespInteg []byte
}

// Clear zeroes the keys once they are installed in the SAs.
func (k *ChildKeys) Clear() {
	for _, b := range [][]byte{k.InitEnc, k.InitInteg, k.RespEnc, k.RespInteg} {
		clear(b)
	}
}

// ChildKeymat derives the keys of a Child SA (RFC 7296 §2.17):
//
//	KEYMAT = prf+(SK_d, Ni | Nr)                 (no PFS: gir nil)
//	KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr)    (CREATE_CHILD_SA with KE)
//
// taken as the initiator's encryption key, its integrity key, then the
// responder's; encLen and integLen are the ESP transform's lengths
// (esp.Transform.EncKeyLen and IntegKeyLen; their sum is its KeymatLen).
// Ni and Nr are the IKE_SA_INIT nonces for the first Child SA and the
// CREATE_CHILD_SA nonces for later ones.
func ChildKeymat(p PRF, skd, gir, ni, nr []byte, encLen, integLen int) (ChildKeys, error) {
	var k ChildKeys
	if len(skd) == 0 {
		return k, fmt.Errorf("%w: empty SK_d", ErrKeyLength)
	}
	if encLen <= 0 || integLen < 0 {
		return k, fmt.Errorf("%w: Child SA key lengths %d and %d", ErrKeyLength, encLen, integLen)
	}
	km, err := PRFPlus(p, skd, 2*(encLen+integLen), gir, ni, nr)
	if err != nil {
		return k, err
	}
	take := func(l int) []byte {
		b := km[:l:l]
		km = km[l:]
		return b
	}
	k.InitEnc, k.InitInteg = take(encLen), take(integLen)
	k.RespEnc, k.RespInteg = take(encLen), take(integLen)
	return k, nil
}
