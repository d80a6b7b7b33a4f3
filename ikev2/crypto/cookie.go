package ikecrypto

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"net/netip"
	"sync"
)

// CookieLen is the length of the COOKIE notification data CookieJar makes:
// a 4-octet secret version and a 32-octet MAC (RFC 7296 §2.6 allows 1 to 64).
const CookieLen = 4 + sha256.Size

// CookieJar makes and checks the stateless cookies of RFC 7296 §2.6:
//
//	Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
//
// Hash(… | secret) is HMAC-SHA-256 keyed with the secret, the standard keyed
// form of what the RFC sketches; IPi is always 16 octets (IPv4 as
// IPv4-mapped) and SPIi 8, so the fields cannot slide into one another. A
// responder under load answers an IKE_SA_INIT without a valid cookie with a
// cookie and keeps nothing; the initiator's retry carries it back.
//
// The secret rotates when the caller says (Rotate, on a timer: every few
// minutes, more often under attack); cookies of the current and the
// previous secret are accepted, so a retry that straddles a rotation still
// works. Safe for concurrent use; make one with NewCookieJar (the zero value
// has no secret).
type CookieJar struct {
	mu        sync.Mutex
	rand      io.Reader
	cur, prev cookieSecret
	buf       [16 + 8]byte
	sum       [sha256.Size]byte
}

type cookieSecret struct {
	version uint32
	mac     hash.Hash // nil: none yet
}

// NewCookieJar makes a jar with a fresh secret read from rnd (crypto/rand
// when nil).
func NewCookieJar(rnd io.Reader) (*CookieJar, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	j := &CookieJar{rand: rnd}
	if err := j.Rotate(); err != nil {
		return nil, err
	}
	return j, nil
}

// Rotate makes a new current secret; the current one becomes the previous
// and the previous is forgotten, with every cookie made from it.
func (j *CookieJar) Rotate() error {
	var secret [32]byte
	defer clear(secret[:])
	if _, err := io.ReadFull(j.rand, secret[:]); err != nil {
		return fmt.Errorf("%w: cookie secret: %v", ErrRandom, err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.prev = j.cur
	j.cur = cookieSecret{version: j.cur.version + 1, mac: hmac.New(sha256.New, secret[:])}
	return nil
}

// compute returns the MAC of the cookie fields under s, in j.sum (j.mu held).
func (j *CookieJar) compute(s *cookieSecret, ni []byte, ip netip.Addr, spiI uint64) []byte {
	a := ip.Unmap().As16()
	copy(j.buf[:16], a[:])
	binary.BigEndian.PutUint64(j.buf[16:], spiI)
	s.mac.Reset()
	s.mac.Write(ni)
	s.mac.Write(j.buf[:])
	return s.mac.Sum(j.sum[:0])
}

// Append appends the cookie for an initiator's IKE_SA_INIT (its nonce data,
// its address as seen by us, its SPI) to dst.
func (j *CookieJar) Append(dst, ni []byte, ip netip.Addr, spiI uint64) []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	dst = binary.BigEndian.AppendUint32(dst, j.cur.version)
	return append(dst, j.compute(&j.cur, ni, ip, spiI)...)
}

// Check verifies the cookie an initiator sent back with the same nonce,
// address and SPI, in constant time once the secret is chosen (its version
// is public: it travels in the clear). It returns nil or ErrCookie.
func (j *CookieJar) Check(cookie, ni []byte, ip netip.Addr, spiI uint64) error {
	if len(cookie) != CookieLen {
		return ErrCookie
	}
	v := binary.BigEndian.Uint32(cookie)
	j.mu.Lock()
	defer j.mu.Unlock()
	var s *cookieSecret
	switch {
	case j.cur.mac != nil && v == j.cur.version:
		s = &j.cur
	case j.prev.mac != nil && v == j.prev.version:
		s = &j.prev
	default:
		return ErrCookie
	}
	if subtle.ConstantTimeCompare(j.compute(s, ni, ip, spiI), cookie[4:]) != 1 {
		return ErrCookie
	}
	return nil
}
