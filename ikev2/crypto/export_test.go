package ikecrypto

import "io"

// Test hooks: they reach the keyed state an SK made, so that the published
// primitive vectors (which fix IVs that Seal chooses itself) run through the
// same cipher, MAC and nonce assembly Seal and Open use.

// SetNextIV makes the next AEAD IV Seal uses v.
func (c *SK) SetNextIV(v uint64) { c.iv = v - 1 }

// SetRand replaces the source of AES-CBC IVs.
func (c *SK) SetRand(r io.Reader) { c.rand = r }

// SealAEAD is the AEAD step of Seal with a given IV and AAD:
// ciphertext ‖ tag under nonce = salt ‖ iv.
func (c *SK) SealAEAD(iv, aad, plain []byte) []byte {
	copy(c.nonce[saltLen:], iv)
	return c.aead.Seal(nil, c.nonce[:], plain, aad)
}

// EncryptCBC is the CBC step of Seal with a given IV.
func (c *SK) EncryptCBC(iv, plain []byte) []byte {
	out := append([]byte(nil), plain...)
	c.enc.SetIV(iv)
	c.enc.CryptBlocks(out, out)
	return out
}

// ICV is the truncated HMAC Seal appends, over data.
func (c *SK) ICV(data []byte) []byte {
	c.mac.Reset()
	c.mac.Write(data)
	return c.mac.Sum(nil)[:c.p.icvLen]
}
