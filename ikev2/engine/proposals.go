package engine

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/ikev2"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// IKEProposal is one proposal for the IKE SA: an encryption algorithm with
// its key size, and the integrity algorithms (none for AEAD), PRFs and
// Diffie-Hellman groups acceptable with it, each in order of preference.
type IKEProposal struct {
	Encryption ikecrypto.Encryption
	KeyBits    int
	Integrity  []ikecrypto.Integrity
	PRF        []ikecrypto.PRF
	Groups     []ikecrypto.Group
}

// ESPProposal is one proposal for a Child SA: an ESP encryption algorithm
// with its key size, the integrity algorithms (none for AEAD) and the
// extended-sequence-number choices acceptable with it, in order of
// preference.
type ESPProposal struct {
	Encryption esp.Encryption
	KeyBits    int
	Integrity  []esp.Integrity
	ESN        []bool
}

// DefaultIKEProposals are Cisco IOS XE's IKEv2 smart default (AES-CBC-256,
// SHA-512/384 for integrity and PRF, groups 19 and 14), so that a Cisco
// router left on defaults agrees, then AES-GCM-256 with PRF SHA-256 and
// groups 19 and 31 (strongSwan's usual choice).
func DefaultIKEProposals() []IKEProposal {
	return []IKEProposal{
		{Encryption: ikecrypto.EncrAESCBC, KeyBits: 256,
			Integrity: []ikecrypto.Integrity{ikecrypto.IntegHMACSHA512256, ikecrypto.IntegHMACSHA384192},
			PRF:       []ikecrypto.PRF{ikecrypto.PRFHMACSHA2512, ikecrypto.PRFHMACSHA2384},
			Groups:    []ikecrypto.Group{ikecrypto.GroupECP256, ikecrypto.GroupMODP2048}},
		{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 256,
			PRF:    []ikecrypto.PRF{ikecrypto.PRFHMACSHA2256},
			Groups: []ikecrypto.Group{ikecrypto.GroupECP256, ikecrypto.GroupCurve25519}},
	}
}

// DefaultESPProposals are Cisco's default transform set (`esp-aes
// esp-sha-hmac`: AES-CBC-128 with HMAC-SHA1-96), then AES-GCM-128 and -256;
// each with and without extended sequence numbers.
func DefaultESPProposals() []ESPProposal {
	both := []bool{true, false}
	return []ESPProposal{
		{Encryption: esp.EncrAESCBC, KeyBits: 128, Integrity: []esp.Integrity{esp.IntegHMACSHA1_96}, ESN: both},
		{Encryption: esp.EncrAESGCM16, KeyBits: 128, ESN: both},
		{Encryption: esp.EncrAESGCM16, KeyBits: 256, ESN: both},
	}
}

// checkIKEProposals refuses proposals ikecrypto cannot run.
func checkIKEProposals(ps []IKEProposal) error {
	if len(ps) == 0 || len(ps) > ikev2.MaxProposals {
		return fmt.Errorf("ikev2 engine: %d IKE proposals, want 1 to %d", len(ps), ikev2.MaxProposals)
	}
	for i, p := range ps {
		t := ikecrypto.Transform{Encryption: p.Encryption, KeyBits: p.KeyBits}
		if t.AEAD() {
			if len(p.Integrity) != 0 {
				return fmt.Errorf("ikev2 engine: IKE proposal %d: an AEAD cipher takes no integrity algorithm", i+1)
			}
			if err := t.Valid(); err != nil {
				return fmt.Errorf("ikev2 engine: IKE proposal %d: %w", i+1, err)
			}
		} else {
			if len(p.Integrity) == 0 {
				return fmt.Errorf("ikev2 engine: IKE proposal %d: %v needs an integrity algorithm", i+1, t)
			}
			for _, in := range p.Integrity {
				t.Integrity = in
				if err := t.Valid(); err != nil {
					return fmt.Errorf("ikev2 engine: IKE proposal %d: %w", i+1, err)
				}
			}
		}
		if len(p.PRF) == 0 || len(p.Groups) == 0 {
			return fmt.Errorf("ikev2 engine: IKE proposal %d needs a PRF and a group", i+1)
		}
		for _, f := range p.PRF {
			if err := f.Valid(); err != nil {
				return fmt.Errorf("ikev2 engine: IKE proposal %d: %w", i+1, err)
			}
		}
		for _, g := range p.Groups {
			if err := g.Valid(); err != nil {
				return fmt.Errorf("ikev2 engine: IKE proposal %d: %w", i+1, err)
			}
		}
	}
	return nil
}

// checkESPProposals refuses proposals package esp cannot run.
func checkESPProposals(ps []ESPProposal) error {
	if len(ps) == 0 || len(ps) > ikev2.MaxProposals {
		return fmt.Errorf("ikev2 engine: %d ESP proposals, want 1 to %d", len(ps), ikev2.MaxProposals)
	}
	for i, p := range ps {
		t := esp.Transform{Encryption: p.Encryption, KeyBits: p.KeyBits}
		integ := p.Integrity
		if t.AEAD() {
			if len(integ) != 0 {
				return fmt.Errorf("ikev2 engine: ESP proposal %d: an AEAD cipher takes no integrity algorithm", i+1)
			}
			integ = []esp.Integrity{esp.IntegNone}
		} else if len(integ) == 0 {
			return fmt.Errorf("ikev2 engine: ESP proposal %d: %v needs an integrity algorithm", i+1, t)
		}
		for _, in := range integ {
			t.Integrity = in
			if err := t.Valid(); err != nil {
				return fmt.Errorf("ikev2 engine: ESP proposal %d: %w", i+1, err)
			}
		}
		if len(p.ESN) == 0 || len(p.ESN) > 2 {
			return fmt.Errorf("ikev2 engine: ESP proposal %d: ESN takes one or two choices", i+1)
		}
	}
	return nil
}

func encrTransform(id uint16, bits int) ikev2.Transform {
	t := ikev2.Transform{Type: ikev2.TransformENCR, ID: id}
	// ChaCha20-Poly1305 has no Key Length attribute (RFC 7634 §2).
	if ikev2.EncrID(id) != ikev2.EncrChaCha20Poly1305 {
		t.Attributes = []ikev2.Attribute{ikev2.KeyLength(uint16(bits))}
	}
	return t
}

// ikeSAPayload is the SA payload of our IKE_SA_INIT request, or with a
// non-zero spi (the new SA's, ours) of our IKE SA rekey request.
func ikeSAPayload(ps []IKEProposal, spi uint64) *ikev2.SA {
	sa := &ikev2.SA{}
	for i, p := range ps {
		pr := ikev2.Proposal{Number: uint8(i + 1), Protocol: ikev2.ProtocolIKE, SPI: ikeSPIBytes(spi)}
		pr.Transforms = append(pr.Transforms, encrTransform(uint16(p.Encryption), p.KeyBits))
		for _, f := range p.PRF {
			pr.Transforms = append(pr.Transforms, ikev2.Transform{Type: ikev2.TransformPRF, ID: uint16(f)})
		}
		for _, in := range p.Integrity {
			pr.Transforms = append(pr.Transforms, ikev2.Transform{Type: ikev2.TransformINTEG, ID: uint16(in)})
		}
		for _, g := range p.Groups {
			pr.Transforms = append(pr.Transforms, ikev2.Transform{Type: ikev2.TransformDH, ID: uint16(g)})
		}
		sa.Proposals = append(sa.Proposals, pr)
	}
	return sa
}

// ikeSPIBytes is an IKE SPI as a proposal carries it: none in
// IKE_SA_INIT (0), 8 octets in a rekey.
func ikeSPIBytes(spi uint64) []byte {
	if spi == 0 {
		return nil
	}
	return binary.BigEndian.AppendUint64(nil, spi)
}

// ikeChoice is a negotiated IKE SA: the suite and the group; in a rekey,
// the SPI the peer's proposal carried.
type ikeChoice struct {
	number  uint8
	suite   ikecrypto.Suite
	group   ikecrypto.Group
	peerSPI uint64
}

// payload is the SA payload answering with c; spi is ours in a rekey.
func (c *ikeChoice) payload(spi uint64) *ikev2.SA {
	pr := ikev2.Proposal{Number: c.number, Protocol: ikev2.ProtocolIKE, SPI: ikeSPIBytes(spi)}
	pr.Transforms = append(pr.Transforms, encrTransform(uint16(c.suite.Encryption), c.suite.KeyBits),
		ikev2.Transform{Type: ikev2.TransformPRF, ID: uint16(c.suite.PRF)})
	if !c.suite.AEAD() {
		pr.Transforms = append(pr.Transforms, ikev2.Transform{Type: ikev2.TransformINTEG, ID: uint16(c.suite.Integrity)})
	}
	pr.Transforms = append(pr.Transforms, ikev2.Transform{Type: ikev2.TransformDH, ID: uint16(c.group)})
	return &ikev2.SA{Proposals: []ikev2.Proposal{pr}}
}

// encrMatches reports whether the transform is the cipher enc of bits.
func encrMatches(t *ikev2.Transform, enc uint16, bits int) bool {
	if t.Type != ikev2.TransformENCR || t.ID != enc {
		return false
	}
	kl, ok := t.KeyLength()
	if ikev2.EncrID(enc) == ikev2.EncrChaCha20Poly1305 {
		return !ok || kl == 256
	}
	return ok && int(kl) == bits
}

// knownTypes reports whether every transform of p has a type in allowed:
// RFC 7296 §3.3.6 says a proposal with a transform type we do not know is
// to be rejected, not partly accepted.
func knownTypes(p *ikev2.Proposal, allowed ...ikev2.TransformType) bool {
	for i := range p.Transforms {
		if !slices.Contains(allowed, p.Transforms[i].Type) {
			return false
		}
	}
	return true
}

// firstOf returns the first transform of type tt in p (in the peer's order
// of preference) whose ID is in ours.
func firstOf[T ~uint16](p *ikev2.Proposal, tt ikev2.TransformType, ours []T) (T, bool) {
	for i := range p.Transforms {
		t := &p.Transforms[i]
		if t.Type == tt && len(t.Attributes) == 0 && slices.Contains(ours, T(t.ID)) {
			return T(t.ID), true
		}
	}
	return 0, false
}

// selectIKE picks, as a responder, the first of the peer's proposals we
// accept, with the first transform of each type in the peer's order that
// our matching proposal allows. The group is the one the KE payload used
// when acceptable (no INVALID_KE_PAYLOAD round trip), else the peer's
// first acceptable one. rekey: the proposals of a CREATE_CHILD_SA, each
// with the new SA's 8-octet SPI (none in IKE_SA_INIT).
func selectIKE(ours []IKEProposal, sa *ikev2.SA, keGroup ikev2.DHGroup, rekey bool) (ikeChoice, bool) {
	for pi := range sa.Proposals {
		p := &sa.Proposals[pi]
		if p.Protocol != ikev2.ProtocolIKE || !ikeSPIOK(p, rekey) ||
			!knownTypes(p, ikev2.TransformENCR, ikev2.TransformPRF, ikev2.TransformINTEG, ikev2.TransformDH) {
			continue
		}
		for _, q := range ours {
			c, ok := matchIKE(p, q, keGroup)
			if ok {
				if rekey {
					c.peerSPI = binary.BigEndian.Uint64(p.SPI)
				}
				return c, true
			}
		}
	}
	return ikeChoice{}, false
}

// ikeSPIOK: no SPI in IKE_SA_INIT, a non-zero 8-octet one in a rekey.
func ikeSPIOK(p *ikev2.Proposal, rekey bool) bool {
	if !rekey {
		return len(p.SPI) == 0
	}
	return len(p.SPI) == 8 && binary.BigEndian.Uint64(p.SPI) != 0
}

func matchIKE(p *ikev2.Proposal, q IKEProposal, keGroup ikev2.DHGroup) (ikeChoice, bool) {
	c := ikeChoice{number: p.Number}
	found := false
	for i := range p.Transforms {
		if encrMatches(&p.Transforms[i], uint16(q.Encryption), q.KeyBits) {
			found = true
			break
		}
	}
	if !found {
		return c, false
	}
	c.suite.Transform = ikecrypto.Transform{Encryption: q.Encryption, KeyBits: q.KeyBits}
	if c.suite.AEAD() {
		// RFC 7296 §3.3: with an AEAD cipher the integrity transform is
		// absent or NONE.
		for i := range p.Transforms {
			if t := &p.Transforms[i]; t.Type == ikev2.TransformINTEG && t.ID != uint16(ikev2.IntegNone) {
				return c, false
			}
		}
	} else {
		in, ok := firstOf(p, ikev2.TransformINTEG, q.Integrity)
		if !ok {
			return c, false
		}
		c.suite.Integrity = in
	}
	f, ok := firstOf(p, ikev2.TransformPRF, q.PRF)
	if !ok {
		return c, false
	}
	c.suite.PRF = f
	if g := ikecrypto.Group(keGroup); slices.Contains(q.Groups, g) {
		if _, ok := firstOf(p, ikev2.TransformDH, []ikecrypto.Group{g}); ok {
			c.group = g
			return c, true
		}
	}
	g, ok := firstOf(p, ikev2.TransformDH, q.Groups)
	if !ok {
		return c, false
	}
	c.group = g
	return c, true
}

// acceptedIKE checks, as the initiator, the responder's choice: exactly one
// proposal, one transform of each type, all of it inside our proposal of
// that number (rekey: with the responder's SPI of the new SA).
func acceptedIKE(ours []IKEProposal, sa *ikev2.SA, rekey bool) (ikeChoice, error) {
	if len(sa.Proposals) != 1 {
		return ikeChoice{}, fmt.Errorf("%d proposals in the response, want 1", len(sa.Proposals))
	}
	p := &sa.Proposals[0]
	if p.Protocol != ikev2.ProtocolIKE || !ikeSPIOK(p, rekey) || p.Number == 0 || int(p.Number) > len(ours) {
		return ikeChoice{}, fmt.Errorf("proposal %d (%v) is not one we sent", p.Number, p.Protocol)
	}
	var count [6]int
	for i := range p.Transforms {
		tt := p.Transforms[i].Type
		if tt < ikev2.TransformENCR || tt > ikev2.TransformDH {
			return ikeChoice{}, fmt.Errorf("transform type %v in an IKE proposal", tt)
		}
		count[tt]++
	}
	q := ours[p.Number-1]
	c, ok := matchIKE(p, q, 0)
	aead := c.suite.AEAD()
	if !ok || count[ikev2.TransformENCR] != 1 || count[ikev2.TransformPRF] != 1 || count[ikev2.TransformDH] != 1 ||
		(!aead && count[ikev2.TransformINTEG] != 1) || (aead && count[ikev2.TransformINTEG] > 1) {
		return ikeChoice{}, fmt.Errorf("proposal %d chosen with transforms we did not offer", p.Number)
	}
	if rekey {
		c.peerSPI = binary.BigEndian.Uint64(p.SPI)
	}
	return c, nil
}

// espSAPayload is the SA payload of our IKE_AUTH or Child SA rekey
// request, SPI our inbound; pfs, when set, is the D-H group each proposal
// asks for (a rekey with a KE payload).
func espSAPayload(ps []ESPProposal, spi uint32, pfs ikecrypto.Group) *ikev2.SA {
	sa := &ikev2.SA{}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], spi)
	for i, p := range ps {
		pr := ikev2.Proposal{Number: uint8(i + 1), Protocol: ikev2.ProtocolESP, SPI: b[:]}
		pr.Transforms = append(pr.Transforms, encrTransform(uint16(p.Encryption), p.KeyBits))
		for _, in := range p.Integrity {
			pr.Transforms = append(pr.Transforms, ikev2.Transform{Type: ikev2.TransformINTEG, ID: uint16(in)})
		}
		if pfs != 0 {
			pr.Transforms = append(pr.Transforms, ikev2.Transform{Type: ikev2.TransformDH, ID: uint16(pfs)})
		}
		for _, e := range p.ESN {
			pr.Transforms = append(pr.Transforms, ikev2.Transform{Type: ikev2.TransformESN, ID: esnID(e)})
		}
		sa.Proposals = append(sa.Proposals, pr)
	}
	return sa
}

func esnID(on bool) uint16 {
	if on {
		return uint16(ikev2.ESNYes)
	}
	return uint16(ikev2.ESNNo)
}

// espChoice is a negotiated Child SA transform.
type espChoice struct {
	number    uint8
	index     int // of the proposal in the peer's SA payload
	transform esp.Transform
	esn       bool
	peerSPI   uint32          // the SPI in the peer's proposal: its inbound SA, our outbound
	dh        ikecrypto.Group // a rekey's PFS group (0: none)
}

func (c *espChoice) payload(spi uint32) *ikev2.SA {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], spi)
	pr := ikev2.Proposal{Number: c.number, Protocol: ikev2.ProtocolESP, SPI: b[:]}
	pr.Transforms = append(pr.Transforms, encrTransform(uint16(c.transform.Encryption), c.transform.KeyBits))
	if !c.transform.AEAD() {
		pr.Transforms = append(pr.Transforms, ikev2.Transform{Type: ikev2.TransformINTEG, ID: uint16(c.transform.Integrity)})
	}
	if c.dh != 0 {
		pr.Transforms = append(pr.Transforms, ikev2.Transform{Type: ikev2.TransformDH, ID: uint16(c.dh)})
	}
	pr.Transforms = append(pr.Transforms, ikev2.Transform{Type: ikev2.TransformESN, ID: esnID(c.esn)})
	return &ikev2.SA{Proposals: []ikev2.Proposal{pr}}
}

// dhGroups lists the D-H transform IDs of a proposal (0 is NONE).
func dhGroups(p *ikev2.Proposal) []ikecrypto.Group {
	var out []ikecrypto.Group
	for i := range p.Transforms {
		if t := &p.Transforms[i]; t.Type == ikev2.TransformDH && len(out) < 16 {
			out = append(out, ikecrypto.Group(t.ID))
		}
	}
	return out
}

func matchESP(p *ikev2.Proposal, q ESPProposal) (espChoice, bool) {
	c := espChoice{number: p.Number}
	spi, ok := p.ChildSPI()
	if !ok || spi == 0 {
		return c, false
	}
	c.peerSPI = spi
	found := false
	for i := range p.Transforms {
		if encrMatches(&p.Transforms[i], uint16(q.Encryption), q.KeyBits) {
			found = true
			break
		}
	}
	if !found {
		return c, false
	}
	c.transform = esp.Transform{Encryption: q.Encryption, KeyBits: q.KeyBits}
	if c.transform.AEAD() {
		for i := range p.Transforms {
			if t := &p.Transforms[i]; t.Type == ikev2.TransformINTEG && t.ID != uint16(ikev2.IntegNone) {
				return c, false
			}
		}
	} else {
		in, ok := firstOf(p, ikev2.TransformINTEG, q.Integrity)
		if !ok {
			return c, false
		}
		c.transform.Integrity = in
	}
	// No ESN transform at all means no ESN (RFC 7296 §3.3.2 makes it
	// mandatory for ESP, but older peers leave it out).
	hasESN := false
	for i := range p.Transforms {
		t := &p.Transforms[i]
		if t.Type != ikev2.TransformESN {
			continue
		}
		hasESN = true
		if t.ID > uint16(ikev2.ESNYes) {
			continue
		}
		if on := t.ID == uint16(ikev2.ESNYes); slices.Contains(q.ESN, on) {
			c.esn = on
			return c, true
		}
	}
	if !hasESN && slices.Contains(q.ESN, false) {
		return c, true
	}
	return c, false
}

// selectESP picks, as a responder, the first of the peer's ESP proposals
// we accept. D-H transforms are ignored: the first Child SA takes its keys
// from the IKE SA (RFC 7296 §1.2), there is no PFS to negotiate.
func selectESP(ours []ESPProposal, sa *ikev2.SA) (espChoice, bool) {
	for pi := range sa.Proposals {
		p := &sa.Proposals[pi]
		if p.Protocol != ikev2.ProtocolESP ||
			!knownTypes(p, ikev2.TransformENCR, ikev2.TransformINTEG, ikev2.TransformDH, ikev2.TransformESN) {
			continue
		}
		for _, q := range ours {
			if c, ok := matchESP(p, q); ok {
				c.index = pi
				return c, true
			}
		}
	}
	return espChoice{}, false
}

// acceptedESP checks, as the initiator, the responder's Child SA choice.
func acceptedESP(ours []ESPProposal, sa *ikev2.SA) (espChoice, error) {
	if len(sa.Proposals) != 1 {
		return espChoice{}, fmt.Errorf("%d proposals in the response, want 1", len(sa.Proposals))
	}
	p := &sa.Proposals[0]
	if p.Protocol != ikev2.ProtocolESP || p.Number == 0 || int(p.Number) > len(ours) {
		return espChoice{}, fmt.Errorf("proposal %d (%v) is not one we sent", p.Number, p.Protocol)
	}
	var count [6]int
	for i := range p.Transforms {
		tt := p.Transforms[i].Type
		if tt < ikev2.TransformENCR || tt > ikev2.TransformESN {
			return espChoice{}, fmt.Errorf("transform type %v in an ESP proposal", tt)
		}
		count[tt]++
	}
	c, ok := matchESP(p, ours[p.Number-1])
	aead := c.transform.AEAD()
	if !ok || count[ikev2.TransformENCR] != 1 || count[ikev2.TransformESN] > 1 || count[ikev2.TransformDH] > 1 ||
		(!aead && count[ikev2.TransformINTEG] != 1) || (aead && count[ikev2.TransformINTEG] > 1) {
		return espChoice{}, fmt.Errorf("proposal %d chosen with transforms we did not offer", p.Number)
	}
	return c, nil
}
