// Package ikecrypto is the cryptography of IKEv2 (RFC 7296) on byte
// strings: the PRFs and prf+, the IKE SA and Child SA keys, Diffie-Hellman,
// the protection of SK payloads, pre-shared-key AUTH, NAT detection hashes,
// stateless cookies, and key-log lines for Wireshark and tcpdump. It holds
// no IKE state and parses no IKE payload: the message codec (package ikev2)
// and the state machine call it with the octets they have. No sockets, no
// clock, no goroutines, no logging.
//
// # Keys, start to finish
//
//	priv, _ := GroupCurve25519.GenerateKey(nil)        // KE payload: priv.Public()
//	gir, err := priv.Shared(peerKE)                    // RFC 6989 checks; fixed length
//	seed, _ := SKEYSEED(suite.PRF, ni, nr, gir)        // prf(Ni | Nr, g^ir), §2.14
//	keys, _ := DeriveIKEKeys(suite, seed, ni, nr, spiI, spiR)
//	out, _ := NewSK(suite.Transform, keys.SKei, keys.SKai) // initiator's side
//	in, _ := NewSK(suite.Transform, keys.SKer, keys.SKar)
//	auth, _ := PSKAuth(suite.PRF, psk, msg1, nr, keys.SKpi, idiBody)
//	child, _ := ChildKeymat(suite.PRF, keys.SKd, nil, ni, nr, espT.EncKeyLen(), espT.IntegKeyLen())
//
// Nonces and shared secrets stay byte strings of their exact length from
// the wire to the PRF: a number type would drop leading zero octets and
// derive wrong keys in one exchange of 256.
//
// # The SK payload in the buffer
//
// Seal and Open work in place on the whole message, IKE header first:
//
//	| IKE header | unencrypted payloads | SK hdr | IV | inner payloads | padding | PL | ICV |
//	0            28                     skOff    +4   +IVLen                          end
//	|<------------------- AAD (AEAD) ------------------>|
//	|<-------------------- HMAC (AES-CBC) ------------------------------------->|
//
// Seal fills in the IV, padding, Pad Length, both Length fields and the ICV
// (the caller leaves room: Transform.Overhead); Open checks every length
// against the octets before it touches them and returns where the inner
// payloads are. Neither allocates.
//
// # What is not constant-time
//
// MODP arithmetic uses math/big, whose Exp is not constant-time. The keys
// are ephemeral (one exchange), which leaves an attacker one timing sample
// per key; the elliptic-curve groups (crypto/ecdh) are constant-time and are
// preferred in Groups.
package ikecrypto
