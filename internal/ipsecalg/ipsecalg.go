// Package ipsecalg holds what ESP (package esp) and IKEv2 (ikev2/crypto)
// share about the IPsec integrity algorithms, numbered as IKEv2's
// Transform Type 3 numbers them (IANA "Transform Type 3 - Integrity
// Algorithm Transform IDs"), so that both derive the same key and ICV
// lengths from one table.
package ipsecalg

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"hash"
)

// HMAC integrity algorithm IDs.
const (
	HMACSHA1_96    = 2  // RFC 2404
	HMACSHA256_128 = 12 // RFC 4868
	HMACSHA384_192 = 13 // RFC 4868
	HMACSHA512_256 = 14 // RFC 4868
)

// HMAC returns the hash of the HMAC integrity algorithm id, its key length
// (as long as the hash output: RFC 2404 §3, RFC 4868 §2.1.1) and its ICV
// length (the HMAC output truncated to half: RFC 2404's 96 of SHA-1's 160
// bits, RFC 4868 §2.3); ok is false for any other id.
func HMAC(id uint16) (h func() hash.Hash, keyLen, icvLen int, ok bool) {
	switch id {
	case HMACSHA1_96:
		return sha1.New, sha1.Size, 12, true
	case HMACSHA256_128:
		return sha256.New, sha256.Size, 16, true
	case HMACSHA384_192:
		return sha512.New384, sha512.Size384, 24, true
	case HMACSHA512_256:
		return sha512.New, sha512.Size, 32, true
	}
	return nil, 0, 0, false
}

// Integrity checks the integrity algorithm id of a transform whose cipher
// is a combined-mode one (aead) or not, and returns its key and ICV
// lengths (0, 0 for none with an AEAD). A CBC cipher needs an integrity
// algorithm (RFC 8221 §5, RFC 8247 §2: CBC without integrity MUST NOT be
// used); a combined-mode one takes none (RFC 7296 §3.3). The error says
// which rule failed; callers wrap it with their transform.
func Integrity(id uint16, aead bool) (keyLen, icvLen int, err error) {
	if id == 0 {
		if !aead {
			return 0, 0, errors.New("AES-CBC needs an integrity algorithm")
		}
		return 0, 0, nil
	}
	_, keyLen, icvLen, ok := HMAC(id)
	switch {
	case !ok:
		return 0, 0, errors.New("unsupported integrity algorithm")
	case aead:
		return 0, 0, errors.New("a combined-mode algorithm takes no integrity algorithm")
	}
	return keyLen, icvLen, nil
}
