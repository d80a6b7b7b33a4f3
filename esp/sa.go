package esp

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash"
	"math"
	"sync"
	"sync/atomic"

	"github.com/dmvpn/dmvpn/ipsec/replay"
)

// Config describes one SA (one direction of a Child SA).
type Config struct {
	// SPI is the Security Parameters Index in the packets: the one the
	// receiver chose. 0 is reserved (RFC 4303 §2.1) and refused.
	SPI       uint32
	Transform Transform
	// EncKey is Transform.EncKeyLen() octets (AES key ‖ salt for the AEAD
	// transforms); IntegKey is Transform.IntegKeyLen() octets (none for the
	// AEAD transforms). Both are copied into the cipher state.
	EncKey, IntegKey []byte
	// ESN: 64-bit extended sequence numbers (RFC 4303 §2.2.1), as IKEv2
	// negotiated them.
	ESN bool
	// ReplayWindow is the inbound anti-replay window in packets: a power of
	// two in [replay.MinSize, replay.MaxSize], 0 for replay.DefaultSize
	// (1,024). Unused outbound.
	ReplayWindow int
	Lifetime     Lifetime
}

// Lifetime holds an SA's packet and octet limits (0: no limit). Octets are
// payload octets (what Seal was given, what Open returned). Soft limits say
// when to start a rekey, hard ones when the SA stops working; time limits
// are the caller's.
type Lifetime struct {
	SoftPackets, HardPackets uint64
	SoftBytes, HardBytes     uint64
}

// ivSetter is the CBC BlockMode that crypto/cipher returns, whose IV can be
// set per packet (crypto/tls relies on the same method).
type ivSetter interface {
	cipher.BlockMode
	SetIV([]byte)
}

// suite is an SA's transform made concrete: its sizes and its keyed
// cipher and MAC state.
type suite struct {
	params
	aead    cipher.AEAD  // AEAD transforms
	block   cipher.Block // CBC transforms
	salt    []byte       // AEAD nonce prefix
	newHash func() hash.Hash
	intKey  []byte
}

// SA is one IPsec ESP security association, outbound (Seal) or inbound
// (Open). It is safe for concurrent use; see the package documentation.
type SA struct {
	mu sync.Mutex

	spi       uint32
	transform Transform
	outbound  bool
	esn       bool
	p         params
	lifetime  Lifetime

	aead cipher.AEAD
	cbc  ivSetter // encrypter (outbound) or decrypter (inbound)
	mac  hash.Hash

	window *replay.Window // inbound

	seq     atomic.Uint64 // outbound: the last sequence number used
	maxSeq  uint64        // the last usable one: 2³²−1, or 2⁶⁴−1 with ESN
	softSeq uint64        // SoftExpired from this one on
	packets atomic.Uint64
	bytes   atomic.Uint64

	// salt is the AEAD's nonce salt (the last octets of the key), read by
	// SealWith/OpenWith without the mutex: it never changes.
	salt [saltLen]byte

	// Scratch, so that nothing escapes per packet.
	nonce [saltLen + aeadIVLen]byte // salt ‖ IV
	aad   [12]byte                  // SPI ‖ [Seq-high ‖] Seq-low
	hi    [4]byte                   // Seq-high, appended to the HMAC input
	sum   [64]byte                  // HMAC output

	// ivHook, for known-answer tests only, writes a chosen IV.
	ivHook func(iv []byte)
}

// NewOutbound returns an SA that seals packets.
func NewOutbound(c Config) (*SA, error) { return newFromConfig(c, true) }

// NewInbound returns an SA that opens packets, with its anti-replay window.
func NewInbound(c Config) (*SA, error) { return newFromConfig(c, false) }

func newFromConfig(c Config, outbound bool) (*SA, error) {
	p, err := c.Transform.params()
	if err != nil {
		return nil, err
	}
	if len(c.EncKey) != p.encKeyLen {
		return nil, fmt.Errorf("%w: %v takes a %d-octet encryption key, got %d", ErrConfig, c.Transform, p.encKeyLen, len(c.EncKey))
	}
	if len(c.IntegKey) != p.intKeyLen {
		return nil, fmt.Errorf("%w: %v takes a %d-octet integrity key, got %d", ErrConfig, c.Transform, p.intKeyLen, len(c.IntegKey))
	}
	aead, block, salt, err := c.Transform.newCipher(c.EncKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	s := suite{params: p, aead: aead, block: block, salt: salt, intKey: c.IntegKey}
	if !p.aead {
		s.newHash, _, _ = c.Transform.Integrity.hash()
	}
	return newSA(c, s, outbound)
}

// newSA builds an SA from a suite (also used by tests for legacy
// algorithms that the public API does not offer).
func newSA(c Config, s suite, outbound bool) (*SA, error) {
	if c.SPI == 0 {
		return nil, fmt.Errorf("%w: SPI 0 is reserved (RFC 4303 §2.1)", ErrConfig)
	}
	lt := c.Lifetime
	if (lt.HardPackets != 0 && lt.SoftPackets > lt.HardPackets) || (lt.HardBytes != 0 && lt.SoftBytes > lt.HardBytes) {
		return nil, fmt.Errorf("%w: soft lifetime above the hard one: %+v", ErrConfig, lt)
	}
	sa := &SA{
		spi:       c.SPI,
		transform: c.Transform,
		outbound:  outbound,
		esn:       c.ESN,
		p:         s.params,
		lifetime:  lt,
		aead:      s.aead,
		maxSeq:    math.MaxUint32,
	}
	if c.ESN {
		sa.maxSeq = math.MaxUint64
	}
	sa.softSeq = sa.maxSeq - sa.maxSeq/8
	copy(sa.nonce[:], s.salt)
	copy(sa.salt[:], s.salt)
	if s.block != nil {
		iv := make([]byte, s.block.BlockSize())
		var m cipher.BlockMode
		if outbound {
			m = cipher.NewCBCEncrypter(s.block, iv)
		} else {
			m = cipher.NewCBCDecrypter(s.block, iv)
		}
		var ok bool
		if sa.cbc, ok = m.(ivSetter); !ok {
			return nil, fmt.Errorf("%w: the CBC mode of %T cannot take a new IV", ErrConfig, s.block)
		}
		sa.mac = hmac.New(s.newHash, s.intKey)
	}
	if !outbound {
		w, err := replay.New(c.ReplayWindow, c.ESN)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		sa.window = w
	}
	return sa, nil
}

// SPI is the SA's SPI.
func (sa *SA) SPI() uint32 { return sa.spi }

// Transform is the SA's transform.
func (sa *SA) Transform() Transform { return sa.transform }

// ESN reports whether the SA uses 64-bit sequence numbers.
func (sa *SA) ESN() bool { return sa.esn }

// Outbound reports whether the SA seals (true) or opens (false).
func (sa *SA) Outbound() bool { return sa.outbound }

// Seq is, outbound, the last sequence number sent (0 before the first);
// inbound, the highest one accepted.
func (sa *SA) Seq() uint64 {
	if sa.outbound {
		return sa.seq.Load()
	}
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.window.Top()
}

// Usage is how many packets and payload octets the SA sealed or opened.
func (sa *SA) Usage() (packets, bytes uint64) { return sa.packets.Load(), sa.bytes.Load() }

// Lifetime is the SA's configured limits.
func (sa *SA) Lifetime() Lifetime { return sa.lifetime }

// SoftExpired reports whether the SA should be replaced: a soft limit is
// reached, or (outbound) 7/8 of the sequence number space is used, or it is
// hard expired.
func (sa *SA) SoftExpired() bool {
	lt := &sa.lifetime
	p, b := sa.packets.Load(), sa.bytes.Load()
	return (lt.SoftPackets != 0 && p >= lt.SoftPackets) || (lt.SoftBytes != 0 && b >= lt.SoftBytes) ||
		(sa.outbound && sa.seq.Load() >= sa.softSeq) || sa.HardExpired()
}

// HardExpired reports whether the SA reached a hard limit: Seal and Open
// refuse every packet, and it should be deleted. An outbound SA whose
// sequence numbers are exhausted is hard expired too.
func (sa *SA) HardExpired() bool {
	lt := &sa.lifetime
	return (lt.HardPackets != 0 && sa.packets.Load() >= lt.HardPackets) ||
		(lt.HardBytes != 0 && sa.bytes.Load() >= lt.HardBytes) ||
		(sa.outbound && sa.seq.Load() >= sa.maxSeq)
}

func (sa *SA) overLimit() bool {
	lt := &sa.lifetime
	return (lt.HardPackets != 0 && sa.packets.Load() >= lt.HardPackets) ||
		(lt.HardBytes != 0 && sa.bytes.Load() >= lt.HardBytes)
}

// HeaderLen is the headroom Seal needs before the payload.
func (sa *SA) HeaderLen() int { return HeaderFixedLen + sa.p.ivLen }

// TrailerLen is the tailroom Seal needs after a payload of n octets.
func (sa *SA) TrailerLen(n int) int { return padLen(n, sa.p.align) + TrailerFixedLen + sa.p.icvLen }

// Seal turns the payload buf[off:off+n] into an ESP packet in place: it
// writes the ESP header (SPI, sequence number, IV) into the HeaderLen octets
// before off, the padding, Pad Length (nextHeader: the payload's protocol)
// and ICV after it, and encrypts. The ESP packet is buf[start:start+length].
// On error nothing is written and no sequence number is used.
func (sa *SA) Seal(buf []byte, off, n int, nextHeader byte) (start, length int, err error) {
	pad, end, err := sa.sealLayout(buf, off, n)
	if err != nil {
		return 0, 0, err
	}
	p := &sa.p

	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.overLimit() {
		return 0, 0, ErrLifetimeExpired
	}
	seq, err := sa.reserveSeq()
	if err != nil {
		return 0, 0, err
	}
	start, iv := sa.frame(buf, off, n, pad, end, nextHeader, seq)

	if sa.aead != nil {
		if sa.ivHook != nil {
			sa.ivHook(iv)
		} else {
			binary.BigEndian.PutUint64(iv, seq)
		}
		copy(sa.nonce[saltLen:], iv)
		pt := buf[off : end : end+p.icvLen] // the tag goes right after
		sa.aead.Seal(pt[:0], sa.nonce[:], pt, sa.aadInto(&sa.aad, seq))
	} else {
		if sa.ivHook != nil {
			sa.ivHook(iv)
		} else {
			_, _ = rand.Read(iv) // never fails (it crashes the program instead)
		}
		sa.cbc.SetIV(iv)
		sa.cbc.CryptBlocks(buf[off:end], buf[off:end])
		copy(buf[end:], sa.icv(buf[start:end], uint32(seq>>32)))
	}
	sa.packets.Add(1)
	sa.bytes.Add(uint64(n))
	return start, end + p.icvLen - start, nil
}

// sealLayout checks that Seal (or SealWith) may build an ESP packet around
// buf[off:off+n] and returns the padding and the end of the ciphertext.
func (sa *SA) sealLayout(buf []byte, off, n int) (pad, end int, err error) {
	if !sa.outbound {
		return 0, 0, ErrDirection
	}
	p := &sa.p
	if off < 0 || n < 0 || off > len(buf) || n > len(buf)-off {
		return 0, 0, ErrBadLength
	}
	if off < HeaderFixedLen+p.ivLen {
		return 0, 0, ErrNoHeadroom
	}
	pad = padLen(n, p.align)
	if len(buf)-off-n < pad+TrailerFixedLen+p.icvLen {
		return 0, 0, ErrNoTailroom
	}
	return pad, off + n + pad + TrailerFixedLen, nil
}

// frame writes the ESP header (SPI, the low half of seq) and the trailer
// (padding, Pad Length, Next Header) around buf[off:off+n], and returns
// where the packet starts and its IV field, for the cipher to fill.
func (sa *SA) frame(buf []byte, off, n, pad, end int, nextHeader byte, seq uint64) (start int, iv []byte) {
	start = off - HeaderFixedLen - sa.p.ivLen
	binary.BigEndian.PutUint32(buf[start:], sa.spi)
	binary.BigEndian.PutUint32(buf[start+4:], uint32(seq))
	t := buf[off+n : end]
	for i := range pad {
		t[i] = byte(i + 1)
	}
	t[pad] = byte(pad)
	t[pad+1] = nextHeader
	return start, buf[start+HeaderFixedLen : off]
}

// reserveSeq takes the next outbound sequence number (atomically: SealWith
// takes them without the mutex), or fails when the space is used up.
func (sa *SA) reserveSeq() (uint64, error) {
	for {
		cur := sa.seq.Load()
		if cur >= sa.maxSeq {
			return 0, ErrSeqExhausted
		}
		if sa.seq.CompareAndSwap(cur, cur+1) {
			return cur + 1, nil
		}
	}
}

// Open verifies and decrypts the ESP packet pkt (from the SPI to the end of
// the ICV) in place. The inner packet is pkt[off:off+n] and nextHeader its
// protocol. In order: the length, the SPI, the replay window (Check), the
// ICV, the window update (Accept), then the padding.
func (sa *SA) Open(pkt []byte) (off, n int, nextHeader byte, err error) {
	hdr, ctLen, err := sa.openLayout(pkt)
	if err != nil {
		return 0, 0, 0, err
	}

	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.overLimit() {
		return 0, 0, 0, ErrLifetimeExpired
	}
	seq, rerr := sa.window.Check(binary.BigEndian.Uint32(pkt[4:]))
	if rerr != nil {
		return 0, 0, 0, replayError(rerr)
	}
	ct := pkt[hdr : hdr+ctLen]
	if sa.aead != nil {
		copy(sa.nonce[saltLen:], pkt[HeaderFixedLen:hdr])
		if _, err := sa.aead.Open(ct[:0], sa.nonce[:], pkt[hdr:], sa.aadInto(&sa.aad, seq)); err != nil {
			return 0, 0, 0, ErrAuth
		}
	} else {
		if !hmac.Equal(sa.icv(pkt[:hdr+ctLen], uint32(seq>>32)), pkt[hdr+ctLen:]) {
			return 0, 0, 0, ErrAuth
		}
		sa.cbc.SetIV(pkt[HeaderFixedLen:hdr])
		sa.cbc.CryptBlocks(ct, ct)
	}
	if err := sa.window.Accept(seq); err != nil {
		return 0, 0, 0, replayError(err)
	}
	return sa.unpad(ct, hdr)
}

// openLayout checks pkt before Open (or OpenWith) looks inside: the
// direction, the length the transform needs, the SPI; it returns the
// header and ciphertext lengths.
func (sa *SA) openLayout(pkt []byte) (hdr, ctLen int, err error) {
	if sa.outbound {
		return 0, 0, ErrDirection
	}
	p := &sa.p
	hdr = HeaderFixedLen + p.ivLen
	ctLen = len(pkt) - hdr - p.icvLen
	if p.aead {
		if ctLen < TrailerFixedLen {
			return 0, 0, ErrTruncated
		}
	} else {
		if ctLen < p.align {
			return 0, 0, ErrTruncated
		}
		if ctLen%p.align != 0 {
			return 0, 0, ErrBadLength
		}
	}
	if binary.BigEndian.Uint32(pkt) != sa.spi {
		return 0, 0, ErrSPIMismatch
	}
	return hdr, ctLen, nil
}

// unpad checks the decrypted trailer of ct (padding 1, 2, 3, …, RFC 4303
// §2.4), counts the packet and returns the inner packet's place and Next
// Header.
func (sa *SA) unpad(ct []byte, hdr int) (off, n int, nextHeader byte, err error) {
	ctLen := len(ct)
	pad := int(ct[ctLen-2])
	if pad > ctLen-TrailerFixedLen {
		return 0, 0, 0, ErrBadPadding
	}
	n = ctLen - TrailerFixedLen - pad
	for i, b := range ct[n : n+pad] {
		if b != byte(i+1) {
			return 0, 0, 0, ErrBadPadding
		}
	}
	sa.packets.Add(1)
	sa.bytes.Add(uint64(n))
	return hdr, n, ct[ctLen-1], nil
}

func replayError(err error) Error {
	if err == replay.ErrReplayed {
		return ErrReplayed
	}
	return ErrTooOld
}

// icv is the truncated HMAC of data, followed with ESN by the high half of
// the sequence number (RFC 4303 §3.3.2.1: it is authenticated, not sent).
func (sa *SA) icv(data []byte, hi uint32) []byte {
	sa.mac.Reset()
	sa.mac.Write(data)
	if sa.esn {
		binary.BigEndian.PutUint32(sa.hi[:], hi)
		sa.mac.Write(sa.hi[:])
	}
	return sa.mac.Sum(sa.sum[:0])[:sa.p.icvLen]
}
