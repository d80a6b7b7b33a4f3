package esp

import (
	"crypto/des"
	"crypto/hmac"
	"crypto/md5"
)

// Hooks for the tests in package esp_test (this file is compiled only into
// the test binary).

// SetTestIV makes Seal write iv as the IV of every packet instead of the
// sequence number (AEAD) or random octets (CBC): known-answer vectors come
// with their IVs. Never do this outside a test: a repeated AEAD IV under
// one key is fatal.
func SetTestIV(sa *SA, iv []byte) {
	iv = append([]byte(nil), iv...)
	sa.ivHook = func(b []byte) { copy(b, iv) }
}

// SetNextSeq makes the next packet Seal sends carry sequence number seq.
func SetNextSeq(sa *SA, seq uint64) { sa.seq.Store(seq - 1) }

// AcceptSeq moves an inbound SA's replay window as if a packet with
// sequence number seq had been received, so a test can start it anywhere in
// the 64-bit space.
func AcceptSeq(sa *SA, seq uint64) error {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.window.Accept(seq)
}

// ICV is the truncated HMAC that an SA with transform t computes over data,
// through the same code as Seal and Open (for the RFC 2202, 4231 and 4868
// vectors, whose keys are not all as long as the SA's would be).
func ICV(t Transform, key, data []byte) []byte {
	h, _, n := t.Integrity.hash()
	sa := &SA{p: params{icvLen: n}, mac: hmac.New(h, key)}
	return append([]byte(nil), sa.icv(data, 0)...)
}

// Legacy is the transform of the FreeS/WAN test captures in tcpdump's test
// suite: 3DES-CBC (RFC 2451) with HMAC-MD5-96 (RFC 2403), which RFC 8221
// forbids and this package does not offer; tests build it from the same
// SA code to open those captures.
var Legacy = Transform{Encryption: 3, KeyBits: 192, Integrity: 1}

// NewLegacy returns a Legacy SA with a 24-octet 3DES key and a 16-octet
// HMAC-MD5 key.
func NewLegacy(c Config, outbound bool) (*SA, error) {
	b, err := des.NewTripleDESCipher(c.EncKey)
	if err != nil {
		return nil, err
	}
	c.Transform = Legacy
	s := suite{
		params:  params{encKeyLen: 24, intKeyLen: 16, ivLen: des.BlockSize, align: des.BlockSize, icvLen: 12},
		block:   b,
		newHash: md5.New,
		intKey:  c.IntegKey,
	}
	return newSA(c, s, outbound)
}
