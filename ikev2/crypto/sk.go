package ikecrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// ivSetter is the CBC BlockMode crypto/cipher returns, whose IV can be set
// per message, so that one encrypter and one decrypter serve every message
// (package esp relies on the same method).
type ivSetter interface {
	cipher.BlockMode
	SetIV([]byte)
}

// SK protects the SK (and SKF) payloads of one direction of an IKE SA: the
// initiator seals with (SK_ei, SK_ai) and opens with (SK_er, SK_ar), the
// responder the other way round, so each side holds two. The keyed cipher
// and MAC state is made once here; Seal and Open then allocate nothing.
//
// An SK is made by NewSK and is safe for concurrent use (Seal and Open
// serialize on its mutex).
// For the AEAD transforms the IV is a counter, so only one SK may ever seal
// with a given key: make one per key and direction.
type SK struct {
	mu sync.Mutex
	t  Transform
	p  params

	aead  cipher.AEAD
	nonce [saltLen + aeadIVLen]byte // salt ‖ IV
	iv    uint64                    // AEAD: the last IV sealed with

	enc, dec ivSetter
	mac      hash.Hash
	sum      [64]byte
	rand     io.Reader // CBC IVs
}

// NewSK keys an SK for transform t: encKey is SK_e (EncKeyLen octets,
// salt last for AEAD), integKey SK_a (IntegKeyLen octets, empty for AEAD).
// The keys are copied into the cipher state.
func NewSK(t Transform, encKey, integKey []byte) (*SK, error) {
	p, err := t.params()
	if err != nil {
		return nil, err
	}
	if len(encKey) != p.encKeyLen || len(integKey) != p.intKeyLen {
		return nil, fmt.Errorf("%w: %v takes %d+%d key octets, have %d+%d", ErrTransform, t, p.encKeyLen, p.intKeyLen, len(encKey), len(integKey))
	}
	c := &SK{t: t, p: p, rand: rand.Reader}
	switch t.Encryption {
	case EncrAESGCM16:
		k, s := encKey[:len(encKey)-saltLen], encKey[len(encKey)-saltLen:]
		b, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("%w: %v: %v", ErrTransform, t, err)
		}
		if c.aead, err = cipher.NewGCM(b); err != nil {
			return nil, fmt.Errorf("%w: %v: %v", ErrTransform, t, err)
		}
		copy(c.nonce[:saltLen], s)
	case EncrChaCha20Poly1305:
		k, s := encKey[:len(encKey)-saltLen], encKey[len(encKey)-saltLen:]
		if c.aead, err = chacha20poly1305.New(k); err != nil {
			return nil, fmt.Errorf("%w: %v: %v", ErrTransform, t, err)
		}
		copy(c.nonce[:saltLen], s)
	case EncrAESCBC:
		b, err := aes.NewCipher(encKey)
		if err != nil {
			return nil, fmt.Errorf("%w: %v: %v", ErrTransform, t, err)
		}
		var iv [aes.BlockSize]byte
		var ok1, ok2 bool
		c.enc, ok1 = cipher.NewCBCEncrypter(b, iv[:]).(ivSetter)
		c.dec, ok2 = cipher.NewCBCDecrypter(b, iv[:]).(ivSetter)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: %v: crypto/cipher's CBC cannot change its IV", ErrTransform, t)
		}
		h, _, _ := t.Integrity.hash()
		c.mac = hmac.New(h, integKey)
	}
	return c, nil
}

// Transform is the SK's transform.
func (c *SK) Transform() Transform { return c.t }

// Seal encrypts and authenticates an SK payload in place (RFC 7296 §3.14;
// RFC 5282 §3 and RFC 7634 §3 for the AEAD transforms). The caller lays
// the message out in msg and leaves room:
//
//	msg[0:28]                 IKE header (Length is set by Seal)
//	msg[28:skOff]             unencrypted payloads, if any
//	msg[skOff:skOff+4]        SK payload header: Next Payload (the first
//	                          inner payload's type) and the C bit are the
//	                          caller's; Payload Length is set by Seal
//	msg[skOff+4:+IVLen]       room for the IV
//	next n octets             the inner payloads, in clear
//	then Overhead(n)−IVLen    room for padding, Pad Length and the ICV
//
// The message starts at the IKE header: a non-ESP marker (UDP 4500) goes in
// front of msg, not in it. Seal writes the IV (16 random octets for
// AES-CBC; for the AEAD transforms an 8-octet counter, unique per key as
// RFC 5282 §3.1 demands), minimal padding and the Pad Length, both Length
// fields, encrypts, and computes the ICV: for AES-CBC HMAC over the whole
// message from the first octet of the IKE header through the Pad Length;
// for the AEAD transforms the tag, with AAD = everything before the IV
// (IKE header ‖ unencrypted payloads ‖ SK header) and nonce = salt ‖ IV.
// It returns the message's length: the message is msg[:m].
//
// Seal fails, touching nothing, with ErrNoRoom when msg is too short, and
// ErrBadLength when skOff leaves no room for the IKE header or the SK
// payload would be longer than its 16-bit Length.
func (c *SK) Seal(msg []byte, skOff, n int) (m int, err error) {
	return c.seal(msg, skOff, SKHeaderLen, n)
}

// SealFragment is Seal for an Encrypted Fragment payload (SKF, RFC 7383
// §2.5): its header is 8 octets (Fragment Number and Total Fragments, the
// caller's, follow the generic header) and all of it is in the AAD.
func (c *SK) SealFragment(msg []byte, skfOff, n int) (m int, err error) {
	return c.seal(msg, skfOff, SKFHeaderLen, n)
}

func (c *SK) seal(msg []byte, skOff, hdrLen, n int) (int, error) {
	p := &c.p
	if skOff < IKEHeaderLen || skOff > len(msg) || n < 0 || n > len(msg) {
		return 0, ErrBadLength
	}
	ivOff := skOff + hdrLen
	ptOff := ivOff + p.ivLen
	pad := padLen(n, p.block)
	ctLen := n + pad + 1
	end := ptOff + ctLen + p.icvLen
	if end > len(msg) {
		return 0, ErrNoRoom
	}
	if end-skOff > math.MaxUint16 || uint64(end) > math.MaxUint32 {
		return 0, ErrBadLength
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	iv := msg[ivOff:ptOff]
	if p.aead {
		if c.iv == math.MaxUint64 {
			return 0, ErrIVExhausted
		}
		c.iv++
		binary.BigEndian.PutUint64(iv, c.iv)
	} else if _, err := io.ReadFull(c.rand, iv); err != nil {
		return 0, ErrRandom
	}
	// Padding may hold anything (§3.14); zeros.
	clear(msg[ptOff+n : ptOff+n+pad])
	msg[ptOff+n+pad] = byte(pad)
	binary.BigEndian.PutUint16(msg[skOff+2:], uint16(end-skOff))
	binary.BigEndian.PutUint32(msg[24:], uint32(end))

	ct := msg[ptOff : ptOff+ctLen]
	if p.aead {
		copy(c.nonce[saltLen:], iv)
		c.aead.Seal(ct[:0], c.nonce[:], ct, msg[:ivOff])
		return end, nil
	}
	c.enc.SetIV(iv)
	c.enc.CryptBlocks(ct, ct)
	c.mac.Reset()
	c.mac.Write(msg[:end-p.icvLen])
	copy(msg[end-p.icvLen:end], c.mac.Sum(c.sum[:0]))
	return end, nil
}

// Open verifies and decrypts, in place, the SK payload at msg[skOff:] of a
// received message; msg is exactly the message, from the first octet of the
// IKE header (no non-ESP marker) to the end of the datagram. The inner
// payloads are msg[off:off+n] (n may be 0: an empty SK payload, as in a
// liveness check). Every length is checked before it is used:
//
//   - skOff below the IKE header, or the IKE header's Length not len(msg),
//     or the SK payload's Length not reaching exactly the end (it must be
//     the last payload, §3.14): ErrBadLength;
//   - too short for the header, the IV, a Pad Length octet and the ICV:
//     ErrTruncated; an AES-CBC ciphertext not a multiple of 16: ErrBadLength;
//   - an ICV (HMAC, compared in constant time, before decrypting; or the
//     AEAD tag) that does not verify: ErrIntegrity;
//   - a Pad Length reaching into or past the first octet of the plaintext:
//     ErrBadPadding.
//
// Open never panics on any input. After an error msg may have been changed
// (an AEAD clears what it decrypted when the tag does not match).
func (c *SK) Open(msg []byte, skOff int) (off, n int, err error) {
	return c.open(msg, skOff, SKHeaderLen)
}

// OpenFragment is Open for an Encrypted Fragment payload (SKF, RFC 7383
// §2.5), whose 8-octet header is all in the AAD.
func (c *SK) OpenFragment(msg []byte, skfOff int) (off, n int, err error) {
	return c.open(msg, skfOff, SKFHeaderLen)
}

func (c *SK) open(msg []byte, skOff, hdrLen int) (int, int, error) {
	p := &c.p
	m := len(msg)
	if skOff < IKEHeaderLen || skOff > m {
		if m < IKEHeaderLen {
			return 0, 0, ErrTruncated
		}
		return 0, 0, ErrBadLength
	}
	if m-skOff < hdrLen {
		return 0, 0, ErrTruncated
	}
	if uint64(binary.BigEndian.Uint32(msg[24:28])) != uint64(m) ||
		int(binary.BigEndian.Uint16(msg[skOff+2:skOff+4])) != m-skOff {
		return 0, 0, ErrBadLength
	}
	ivOff := skOff + hdrLen
	ptOff := ivOff + p.ivLen
	ctLen := m - ptOff - p.icvLen
	if ctLen < 1 {
		return 0, 0, ErrTruncated
	}
	if ctLen%p.block != 0 {
		return 0, 0, ErrBadLength
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	iv := msg[ivOff:ptOff]
	ct := msg[ptOff : ptOff+ctLen]
	if p.aead {
		copy(c.nonce[saltLen:], iv)
		if _, err := c.aead.Open(ct[:0], c.nonce[:], msg[ptOff:], msg[:ivOff]); err != nil {
			return 0, 0, ErrIntegrity
		}
	} else {
		c.mac.Reset()
		c.mac.Write(msg[:m-p.icvLen])
		if !hmac.Equal(c.mac.Sum(c.sum[:0])[:p.icvLen], msg[m-p.icvLen:]) {
			return 0, 0, ErrIntegrity
		}
		c.dec.SetIV(iv)
		c.dec.CryptBlocks(ct, ct)
	}
	pad := int(ct[ctLen-1])
	if pad >= ctLen {
		return 0, 0, ErrBadPadding
	}
	return ptOff, ctLen - 1 - pad, nil
}
