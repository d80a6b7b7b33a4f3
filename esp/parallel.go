package esp

import (
	"encoding/binary"
)

// Sealing and opening on several goroutines at once.
//
// Seal and Open serialise on the SA's mutex because their nonce, AAD and
// HMAC scratch is the SA's. The AEAD transforms need nothing else that is
// not safe for concurrent use (crypto/cipher's AES-GCM and
// ChaCha20-Poly1305 are), so with the scratch supplied by the caller — one
// Scratch per goroutine, allocated once — SealWith only reserves its
// sequence number atomically and OpenWith only takes the mutex around the
// replay window's Check and Accept, not around the cryptography. That lets
// a data plane spread one SA's packets over its cores (a single flow is a
// single SA). AES-CBC + HMAC keeps the serialised path: its CBC mode and
// HMAC state are the SA's.
//
// Sequence numbers are handed out in the order SealWith calls reserve
// them, so a caller that seals a batch in parallel may send it with
// numbers slightly out of order (never repeated); the receiver's replay
// window (1,024 by default) is what absorbs that, as for any reordering on
// the network.

// Scratch is one goroutine's space for SealWith and OpenWith.
type Scratch struct {
	nonce [saltLen + aeadIVLen]byte
	aad   [12]byte
}

// Concurrent reports whether SealWith and OpenWith run in parallel on this
// SA (the AEAD transforms); otherwise they serialise like Seal and Open.
func (sa *SA) Concurrent() bool { return sa.aead != nil && sa.ivHook == nil }

// SealWith is Seal with the caller's scratch: safe to call from several
// goroutines at once on one SA, each with its own Scratch.
func (sa *SA) SealWith(s *Scratch, buf []byte, off, n int, nextHeader byte) (start, length int, err error) {
	if !sa.Concurrent() {
		return sa.Seal(buf, off, n, nextHeader)
	}
	pad, end, err := sa.sealLayout(buf, off, n)
	if err != nil {
		return 0, 0, err
	}
	if sa.overLimit() {
		return 0, 0, ErrLifetimeExpired
	}
	seq, err := sa.reserveSeq()
	if err != nil {
		return 0, 0, err
	}
	start, iv := sa.frame(buf, off, n, pad, end, nextHeader, seq)
	binary.BigEndian.PutUint64(iv, seq)
	copy(s.nonce[:saltLen], sa.salt[:])
	copy(s.nonce[saltLen:], iv)
	icv := sa.p.icvLen
	pt := buf[off : end : end+icv]
	sa.aead.Seal(pt[:0], s.nonce[:], pt, sa.aadInto(&s.aad, seq))
	sa.packets.Add(1)
	sa.bytes.Add(uint64(n))
	return start, end + icv - start, nil
}

// OpenWith is Open with the caller's scratch: safe to call from several
// goroutines at once on one SA, each with its own Scratch; the replay
// window is checked and updated under the SA's mutex, the ICV verified and
// the payload decrypted outside it.
func (sa *SA) OpenWith(s *Scratch, pkt []byte) (off, n int, nextHeader byte, err error) {
	if !sa.Concurrent() {
		return sa.Open(pkt)
	}
	hdr, ctLen, err := sa.openLayout(pkt)
	if err != nil {
		return 0, 0, 0, err
	}
	if sa.overLimit() {
		return 0, 0, 0, ErrLifetimeExpired
	}
	sa.mu.Lock()
	seq, rerr := sa.window.Check(binary.BigEndian.Uint32(pkt[4:]))
	sa.mu.Unlock()
	if rerr != nil {
		return 0, 0, 0, replayError(rerr)
	}
	ct := pkt[hdr : hdr+ctLen]
	copy(s.nonce[:saltLen], sa.salt[:])
	copy(s.nonce[saltLen:], pkt[HeaderFixedLen:hdr])
	if _, err := sa.aead.Open(ct[:0], s.nonce[:], pkt[hdr:], sa.aadInto(&s.aad, seq)); err != nil {
		return 0, 0, 0, ErrAuth
	}
	sa.mu.Lock()
	aerr := sa.window.Accept(seq)
	sa.mu.Unlock()
	if aerr != nil {
		return 0, 0, 0, replayError(aerr)
	}
	return sa.unpad(ct, hdr)
}

// aadInto builds the AEAD's additional data in a (RFC 4106 §5, RFC 7634
// §2.1): the SA's own scratch for Seal/Open, the caller's for
// SealWith/OpenWith.
func (sa *SA) aadInto(a *[12]byte, seq uint64) []byte {
	binary.BigEndian.PutUint32(a[:], sa.spi)
	if sa.esn {
		binary.BigEndian.PutUint64(a[4:], seq)
		return a[:12]
	}
	binary.BigEndian.PutUint32(a[4:], uint32(seq))
	return a[:8]
}
