package ikecrypto

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"math/big"
)

// Group is a Diffie-Hellman group (Transform Type 4, IANA numbers).
type Group uint16

// Diffie-Hellman groups.
const (
	GroupMODP2048   Group = 14 // 2048-bit MODP, RFC 3526 §3
	GroupECP256     Group = 19 // 256-bit random ECP (NIST P-256), RFC 5903
	GroupECP384     Group = 20 // 384-bit random ECP (NIST P-384), RFC 5903
	GroupECP521     Group = 21 // 521-bit random ECP (NIST P-521), RFC 5903
	GroupCurve25519 Group = 31 // Curve25519, RFC 8031
)

// Groups lists the groups this package implements, in the order of a
// sensible proposal: fast and strong first, MODP for old peers last.
func Groups() []Group {
	return []Group{GroupCurve25519, GroupECP256, GroupECP384, GroupECP521, GroupMODP2048}
}

func (g Group) String() string {
	switch g {
	case GroupMODP2048:
		return "modp2048"
	case GroupECP256:
		return "ecp256"
	case GroupECP384:
		return "ecp384"
	case GroupECP521:
		return "ecp521"
	case GroupCurve25519:
		return "curve25519"
	}
	return fmt.Sprintf("group-%d", uint16(g))
}

// modp2048P is the prime of RFC 3526 §3, 2^2048 - 2^1984 - 1 + 2^64 *
// { [2^1918 pi] + 124476 }, written out as the RFC prints it (the tests
// recompute it from that formula).
const modp2048P = "" +
	"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1" +
	"29024E088A67CC74020BBEA63B139B22514A08798E3404DD" +
	"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245" +
	"E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
	"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D" +
	"C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F" +
	"83655D23DCA3AD961C62F356208552BB9ED529077096966D" +
	"670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B" +
	"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9" +
	"DE2BCBF6955817183995497CEA956AE515D2261898FA0510" +
	"15728E5A8AACAA68FFFFFFFFFFFFFFFF"

const modpLen = 2048 / 8

// modpExpLen is the length of a MODP private exponent: 256 bits, twice the
// 2048-bit group's ~112-bit strength (RFC 3526 §8 suggests 2x; NIST SP
// 800-56A asks for at least 224). A full-length exponent would cost eight
// times as much for no strength the group has.
const modpExpLen = 32

var (
	modpP, modpPMinus1, modpG *big.Int
)

func init() {
	modpP, _ = new(big.Int).SetString(modp2048P, 16)
	modpPMinus1 = new(big.Int).Sub(modpP, big.NewInt(1))
	modpG = big.NewInt(2)
}

// curve returns the crypto/ecdh curve of an elliptic-curve group.
func (g Group) curve() ecdh.Curve {
	switch g {
	case GroupECP256:
		return ecdh.P256()
	case GroupECP384:
		return ecdh.P384()
	case GroupECP521:
		return ecdh.P521()
	case GroupCurve25519:
		return ecdh.X25519()
	}
	return nil
}

// coordLen is the length of one field element: an ECP coordinate, the
// X25519 u-coordinate, the MODP value.
func (g Group) coordLen() int {
	switch g {
	case GroupMODP2048:
		return modpLen
	case GroupECP256, GroupCurve25519:
		return 32
	case GroupECP384:
		return 48
	case GroupECP521:
		return 66
	}
	return 0
}

// Valid reports whether g is a group this package implements.
func (g Group) Valid() error {
	if g.coordLen() == 0 {
		return fmt.Errorf("%w: %v", ErrGroup, g)
	}
	return nil
}

// PublicLen is the length of the Key Exchange Data of the KE payload: the
// MODP value left-padded to the prime's length (RFC 7296 §3.4), x ‖ y for
// ECP (RFC 5903 §7), the u-coordinate for Curve25519 (RFC 8031 §2).
func (g Group) PublicLen() int {
	switch g {
	case GroupECP256, GroupECP384, GroupECP521:
		return 2 * g.coordLen()
	}
	return g.coordLen()
}

// SharedLen is the length of the shared secret g^ir: the prime's length for
// MODP (left-padded), the x coordinate for ECP (RFC 5903 §7), 32 for
// Curve25519.
func (g Group) SharedLen() int { return g.coordLen() }

// PrivateKey is one side's ephemeral Diffie-Hellman key of one exchange.
type PrivateKey struct {
	group Group
	ec    *ecdh.PrivateKey // ECP and Curve25519
	x     *big.Int         // MODP exponent
	pub   []byte           // the KE payload's data
}

// Group is the key's group.
func (k *PrivateKey) Group() Group { return k.group }

// Public returns the Key Exchange Data to send, PublicLen octets. The slice
// is the key's own: do not modify it.
func (k *PrivateKey) Public() []byte { return k.pub }

// maxKeyTries bounds the rejection sampling of GenerateKey: a NIST scalar
// drawn from the right number of bits is below the order with probability
// above 1/2 (P-521 after masking; ~1 for P-256 and P-384), so 64 failures
// in a row mean a broken random source.
const maxKeyTries = 64

// GenerateKey makes a fresh key pair, reading the private value from rnd
// (crypto/rand when nil). The result depends only on the bytes read, so a
// test gets the same key from the same reader; crypto/ecdh's own
// GenerateKey ignores its reader since Go 1.26, hence the scalars are drawn
// here and handed to NewPrivateKey.
func (g Group) GenerateKey(rnd io.Reader) (*PrivateKey, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if err := g.Valid(); err != nil {
		return nil, err
	}
	var buf [66]byte // the longest scalar (P-521)
	n := modpExpLen
	if g != GroupMODP2048 {
		n = g.coordLen()
	}
	s := buf[:n]
	defer clear(s)
	for range maxKeyTries {
		if _, err := io.ReadFull(rnd, s); err != nil {
			return nil, fmt.Errorf("%w: %v key: %v", ErrRandom, g, err)
		}
		if g == GroupECP521 {
			// The order is a 521-bit number: keep 521 bits of 528.
			s[0] &= 0x01
		}
		k, err := NewPrivateKey(g, s)
		if err == nil {
			return k, nil
		}
		// Out of range (zero, ≥ the order, or an exponent < 2): draw again.
	}
	return nil, fmt.Errorf("%w: no valid %v scalar in %d tries", ErrRandom, g, maxKeyTries)
}

// NewPrivateKey makes a key from a given private value: a big-endian scalar
// of coordLen octets for ECP (below the order, not zero), 32 octets for
// Curve25519 (clamped by X25519 itself), a big-endian exponent of up to 256
// octets, at least 2, for MODP. For known-answer tests and for GenerateKey.
func NewPrivateKey(g Group, priv []byte) (*PrivateKey, error) {
	if err := g.Valid(); err != nil {
		return nil, err
	}
	k := &PrivateKey{group: g}
	if g == GroupMODP2048 {
		if len(priv) == 0 || len(priv) > modpLen {
			return nil, fmt.Errorf("%w: %v exponent of %d octets", ErrKeyLength, g, len(priv))
		}
		k.x = new(big.Int).SetBytes(priv)
		if k.x.Cmp(modpG) < 0 || k.x.Cmp(modpPMinus1) >= 0 {
			return nil, fmt.Errorf("%w: %v exponent out of range", ErrKeyLength, g)
		}
		y := new(big.Int).Exp(modpG, k.x, modpP)
		k.pub = y.FillBytes(make([]byte, modpLen))
		return k, nil
	}
	ec, err := g.curve().NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("%w: %v private key: %v", ErrKeyLength, g, err)
	}
	k.ec = ec
	pub := ec.PublicKey().Bytes()
	if g != GroupCurve25519 {
		// crypto/ecdh encodes 0x04 ‖ x ‖ y (SEC 1); IKEv2 sends x ‖ y.
		pub = pub[1:]
	}
	k.pub = pub
	return k, nil
}

// Shared computes g^ir from the peer's Key Exchange Data, after RFC 6989's
// checks (§2.1, §2.3): the value is exactly PublicLen octets; a MODP value
// satisfies 1 < y < p−1 (for this safe-prime group that excludes the only
// small subgroup); an ECP value is a point on the curve (crypto/ecdh checks,
// and the point at infinity has no x ‖ y encoding); Curve25519 must not give
// the all-zero secret (RFC 8031 §2.3). The result has exactly SharedLen
// octets, leading zeros kept: it is a byte string, never a number, from here
// on.
func (k *PrivateKey) Shared(peer []byte) ([]byte, error) {
	g := k.group
	if len(peer) != g.PublicLen() {
		return nil, fmt.Errorf("%w: %v value of %d octets, want %d", ErrPeerPublic, g, len(peer), g.PublicLen())
	}
	switch g {
	case GroupMODP2048:
		y := new(big.Int).SetBytes(peer)
		if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(modpPMinus1) >= 0 {
			return nil, fmt.Errorf("%w: %v value not in (1, p-1)", ErrPeerPublic, g)
		}
		z := new(big.Int).Exp(y, k.x, modpP)
		return z.FillBytes(make([]byte, modpLen)), nil
	case GroupCurve25519:
		pub, err := g.curve().NewPublicKey(peer)
		if err != nil {
			return nil, fmt.Errorf("%w: %v: %v", ErrPeerPublic, g, err)
		}
		z, err := k.ec.ECDH(pub)
		if err != nil || subtle.ConstantTimeCompare(z, make([]byte, len(z))) == 1 {
			// crypto/ecdh refuses the all-zero result itself; the compare
			// keeps RFC 8031's MUST here whatever the library does.
			return nil, fmt.Errorf("%w: %v (low-order peer value)", ErrZeroShared, g)
		}
		return z, nil
	default:
		var buf [1 + 2*66]byte
		enc := append(append(buf[:0], 0x04), peer...)
		pub, err := g.curve().NewPublicKey(enc)
		if err != nil {
			return nil, fmt.Errorf("%w: %v: %v", ErrPeerPublic, g, err)
		}
		z, err := k.ec.ECDH(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: %v: %v", ErrPeerPublic, g, err)
		}
		return z, nil
	}
}
