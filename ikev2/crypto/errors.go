package ikecrypto

// Error is why an operation of this package failed. The values are distinct,
// compare with == or errors.Is (the key-derivation, DH and key-log functions
// wrap them with context; Seal and Open return them bare, so that a hostile
// packet costs no allocation), and can index a counter array (ErrorCount
// entries, 0 unused).
type Error uint8

const (
	// ErrTruncated: the message is too short for what it claims to hold
	// (an IKE header, the SK payload header, IV and ICV).
	ErrTruncated Error = iota + 1
	// ErrBadLength: a length disagrees with the bytes: the IKE header's or
	// the SK payload's Length field, a CBC ciphertext that is not a whole
	// number of blocks, a message longer than its length fields can say.
	ErrBadLength
	// ErrIntegrity: the ICV (HMAC or AEAD tag) does not verify: a forged,
	// corrupted or wrongly keyed message.
	ErrIntegrity
	// ErrBadPadding: authentic but malformed: the Pad Length runs into or
	// past the start of the plaintext.
	ErrBadPadding
	// ErrNoRoom: Seal's buffer cannot hold the IV, the padding and the ICV.
	ErrNoRoom
	// ErrIVExhausted: an AEAD key has sealed 2⁶⁴−1 messages; the IKE SA must
	// be rekeyed (a counter IV never repeats).
	ErrIVExhausted
	// ErrTransform: an encryption or integrity algorithm, key size or
	// combination this package does not implement, or a key of the wrong
	// length.
	ErrTransform
	// ErrPRF: a pseudorandom function this package does not implement.
	ErrPRF
	// ErrPRFPlusLimit: prf+ was asked for more than 255 blocks of output
	// (RFC 7296 §2.13: the counter is one octet).
	ErrPRFPlusLimit
	// ErrGroup: a Diffie-Hellman group this package does not implement.
	ErrGroup
	// ErrPeerPublic: the peer's KE value fails RFC 6989's checks (wrong
	// length, 1 < y < p−1 for MODP, not a point on the curve).
	ErrPeerPublic
	// ErrZeroShared: X25519 gave the all-zero secret (a low-order peer
	// value; RFC 8031 §2.3).
	ErrZeroShared
	// ErrRandom: the random source failed or gave no usable key after many
	// tries.
	ErrRandom
	// ErrNonce: a nonce is outside RFC 7296 §3.9's bounds or too short for
	// the PRF's fixed key.
	ErrNonce
	// ErrKeyLength: a key (a pre-shared key, SK_d, SK_p) is empty or the
	// wrong length for its use.
	ErrKeyLength
	// ErrAuthMismatch: a pre-shared-key AUTH payload does not verify.
	ErrAuthMismatch
	// ErrCookie: a COOKIE does not verify (unknown secret version, wrong
	// length, or a MAC that does not match).
	ErrCookie
	// ErrKeyLog: a malformed key-log line, or an algorithm the key-log
	// format has no name for.
	ErrKeyLog

	// ErrorCount is one more than the largest Error.
	ErrorCount = int(ErrKeyLog) + 1
)

var errorText = [ErrorCount]string{
	ErrTruncated:    "ikev2 crypto: message too short",
	ErrBadLength:    "ikev2 crypto: bad length",
	ErrIntegrity:    "ikev2 crypto: integrity check failed",
	ErrBadPadding:   "ikev2 crypto: bad padding",
	ErrNoRoom:       "ikev2 crypto: no room for IV, padding and ICV",
	ErrIVExhausted:  "ikev2 crypto: IVs exhausted, rekey the IKE SA",
	ErrTransform:    "ikev2 crypto: unsupported transform",
	ErrPRF:          "ikev2 crypto: unsupported PRF",
	ErrPRFPlusLimit: "ikev2 crypto: prf+ output longer than 255 blocks",
	ErrGroup:        "ikev2 crypto: unsupported Diffie-Hellman group",
	ErrPeerPublic:   "ikev2 crypto: invalid peer public value",
	ErrZeroShared:   "ikev2 crypto: all-zero shared secret",
	ErrRandom:       "ikev2 crypto: random source failed",
	ErrNonce:        "ikev2 crypto: bad nonce length",
	ErrKeyLength:    "ikev2 crypto: bad key length",
	ErrAuthMismatch: "ikev2 crypto: AUTH does not verify",
	ErrCookie:       "ikev2 crypto: cookie does not verify",
	ErrKeyLog:       "ikev2 crypto: bad key log line",
}

func (e Error) Error() string {
	if int(e) < len(errorText) && errorText[e] != "" {
		return errorText[e]
	}
	return "ikev2 crypto: unknown error"
}
