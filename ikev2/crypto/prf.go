package ikecrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/subtle"
	"fmt"
	"hash"
)

// PRFPlusMaxBlocks is the most prf+ can produce: its counter is one octet
// that starts at 1 (RFC 7296 §2.13), so 255 outputs of the PRF.
const PRFPlusMaxBlocks = 255

// newMAC returns the PRF keyed with key, as a hash.Hash: Write the data,
// Sum the output. Any key length is accepted: HMAC takes any (RFC 2104),
// and AES-XCBC-PRF-128 pads or hashes the key to 128 bits (RFC 4434 §2).
func (p PRF) newMAC(key []byte) (hash.Hash, error) {
	_, newHash, _, err := p.info()
	if err != nil {
		return nil, err
	}
	if p == PRFAES128XCBC {
		return newXCBCPRF(key), nil
	}
	return hmac.New(newHash, key), nil
}

// Compute returns prf(key, data[0] ‖ data[1] ‖ …): the parts are
// concatenated without being copied together.
func (p PRF) Compute(key []byte, data ...[]byte) ([]byte, error) {
	h, err := p.newMAC(key)
	if err != nil {
		return nil, err
	}
	for _, d := range data {
		h.Write(d)
	}
	return h.Sum(nil), nil
}

// PRFPlus returns the first n octets of prf+(key, seed[0] ‖ seed[1] ‖ …)
// (RFC 7296 §2.13):
//
//	prf+ (K,S) = T1 | T2 | T3 | T4 | ...
//	T1 = prf (K, S | 0x01), T2 = prf (K, T1 | S | 0x02), …
//
// More than 255 blocks cannot be made (the counter is one octet): asking for
// more is ErrPRFPlusLimit, never a wrapped counter.
func PRFPlus(p PRF, key []byte, n int, seed ...[]byte) ([]byte, error) {
	size, _, _, err := p.info()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > PRFPlusMaxBlocks*size {
		return nil, fmt.Errorf("%w: %d octets of %v, at most %d", ErrPRFPlusLimit, n, p, PRFPlusMaxBlocks*size)
	}
	h, err := p.newMAC(key)
	if err != nil {
		return nil, err
	}
	blocks := (n + size - 1) / size
	out := make([]byte, 0, blocks*size)
	var ctr [1]byte
	for i := 1; i <= blocks; i++ {
		h.Reset()
		if i > 1 {
			h.Write(out[len(out)-size:])
		}
		for _, s := range seed {
			h.Write(s)
		}
		ctr[0] = byte(i)
		h.Write(ctr[:])
		out = h.Sum(out)
	}
	// The tail beyond n is key material nobody asked for: clear it.
	clear(out[n:])
	return out[:n:n], nil
}

// xcbc is AES-XCBC-MAC (RFC 3566) with the whole 128-bit output, as
// AES-XCBC-PRF-128 uses it (RFC 4434), behind the hash.Hash interface so that
// prf+ and the PRF helpers treat it like HMAC.
type xcbc struct {
	k1     cipher.Block
	k2, k3 [aes.BlockSize]byte
	e      [aes.BlockSize]byte // the CBC state over the blocks processed
	buf    [aes.BlockSize]byte // the pending block, never processed until more data arrives
	n      int                 // octets in buf
}

// newXCBCPRF keys AES-XCBC-PRF-128: a 128-bit key is used as it is, a shorter
// one padded with zeros, a longer one replaced by AES-XCBC-MAC under the
// all-zero key of itself (RFC 4434 §2).
func newXCBCPRF(key []byte) *xcbc {
	var k [aes.BlockSize]byte
	switch {
	case len(key) <= aes.BlockSize:
		copy(k[:], key)
	default:
		z := newXCBC(k[:])
		z.Write(key)
		z.Sum(k[:0])
	}
	return newXCBC(k[:])
}

// newXCBC derives K1, K2, K3 from a 128-bit key (RFC 3566 §4).
func newXCBC(key []byte) *xcbc {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic("ikecrypto: AES-XCBC key is not 128 bits") // unreachable: callers pass 16 octets
	}
	var x xcbc
	var c [aes.BlockSize]byte
	for i, dst := range [][]byte{c[:], x.k2[:], x.k3[:]} {
		var in [aes.BlockSize]byte
		for j := range in {
			in[j] = byte(i + 1)
		}
		b.Encrypt(dst, in[:])
	}
	x.k1, _ = aes.NewCipher(c[:])
	return &x
}

func (x *xcbc) Size() int      { return aes.BlockSize }
func (x *xcbc) BlockSize() int { return aes.BlockSize }
func (x *xcbc) Reset()         { x.e, x.n = [aes.BlockSize]byte{}, 0 }

func (x *xcbc) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if x.n == aes.BlockSize {
			// More data follows, so the buffered block is not the last.
			subtle.XORBytes(x.e[:], x.e[:], x.buf[:])
			x.k1.Encrypt(x.e[:], x.e[:])
			x.n = 0
		}
		c := copy(x.buf[x.n:], p)
		x.n += c
		p = p[c:]
	}
	return n, nil
}

// Sum appends the MAC of what was written; the state is unchanged.
func (x *xcbc) Sum(b []byte) []byte {
	var last [aes.BlockSize]byte
	copy(last[:], x.buf[:x.n])
	k := &x.k2
	if x.n < aes.BlockSize {
		// RFC 3566 §4 (b): pad with 10* and use K3 (also for no data).
		last[x.n] = 0x80
		k = &x.k3
	}
	subtle.XORBytes(last[:], last[:], x.e[:])
	subtle.XORBytes(last[:], last[:], k[:])
	x.k1.Encrypt(last[:], last[:])
	return append(b, last[:]...)
}
