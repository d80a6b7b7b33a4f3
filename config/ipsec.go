package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/dmvpn/dmvpn/esp"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
	"github.com/dmvpn/dmvpn/ipsec/replay"
	"github.com/dmvpn/dmvpn/nbma"
)

// Limits and defaults of the ipsec section.
const (
	MaxPSKLen          = 512
	MaxIPsecPeers      = 4096
	MaxIPsecProposals  = 16  // 16 IKE proposals of at most 13 transforms stay under ikev2.MaxTransforms (256)
	MaxIPsecIDLen      = 255 // an FQDN's limit; key IDs are held to it too
	MaxKeyLogPathLen   = 4095
	MinReplayWindow    = replay.MinSize
	MaxReplayWindow    = 65536
	DefaultIKELifetime = 86400 * time.Second // Cisco's IKEv2 profile
	DefaultLifetime    = 3600 * time.Second  // Cisco's IPsec profile
	DefaultLifetimeKB  = 4_608_000           // Cisco's IPsec profile
	DefaultDPD         = 10 * time.Second
	DefaultReplay      = replay.DefaultSize
	DefaultNATKeep     = 20 * time.Second // RFC 3948 §4
	// IPsecUDPPort is the port of ESP-in-UDP (RFC 3948): with ipsec it is
	// the UDP transport's port, whatever tunnel.transport says.
	IPsecUDPPort = 4500
)

// The default proposals, written as in the file. They are what the IKEv2
// engine offers when the file gives none (engine.DefaultIKEProposals and
// DefaultESPProposals; ipsec_test.go checks that they agree), so that
// `dmvpn config check` and docs/CONFIG.md can say what is offered.
var (
	// DefaultIKEProposalNames: Cisco IOS XE's IKEv2 smart default, then
	// AES-GCM-256 as strongSwan usually offers it.
	DefaultIKEProposalNames = []string{"aes256-sha512-sha384-prfsha512-prfsha384-ecp256-modp2048", "aes256gcm16-prfsha256-ecp256-x25519"}
	// DefaultESPProposalNames: Cisco's default transform set (esp-aes
	// esp-sha-hmac), then AES-GCM-128 and -256; ESN preferred, no ESN
	// accepted.
	DefaultESPProposalNames = []string{"aes128-sha1-esn-noesn", "aes128gcm16-esn-noesn", "aes256gcm16-esn-noesn"}
)

// IPsec protects every GRE packet of the tunnel with ESP, keyed by IKEv2
// with pre-shared keys (Cisco "tunnel protection ipsec profile"). YAML
// ipsec, optional: a node without it sends GRE in clear text, as before,
// and its IPsec is the zero value (Enabled is false).
type IPsec struct {
	// PSK is the cloud's pre-shared key, used with every peer that
	// peers does not give its own (Cisco "crypto ikev2 keyring" with
	// "peer ... address 0.0.0.0 0.0.0.0"). YAML psk, 1..512 bytes;
	// required at a hub, and at a spoke unless every NHS and static
	// mapping has a key in peers. It is never printed.
	PSK Secret `yaml:"psk" check:"ipsec-psk"`
	// Peers are per-peer settings, by the peer's NBMA address (the
	// address its IKE messages come from: the public one behind NAT).
	// YAML peers, a list of {address, psk, remote-id}.
	Peers []IPsecPeer `yaml:"peers" valid:"a list of peers, each with address and psk or remote-id" max:"4096" item:"peer"`
	// LocalID is the identity this node authenticates with. YAML
	// local-id: address (ID_IPV4_ADDR/ID_IPV6_ADDR of tunnel.source),
	// fqdn:NAME, keyid:TEXT or an IP address; default address.
	LocalID IPsecID `yaml:"local-id" check:"ipsec-local-id" derived:"address (tunnel.source)"`
	// RemoteID, when set, is the identity every peer must authenticate
	// with (peers may override it). YAML remote-id: fqdn:NAME,
	// keyid:TEXT or an IP address; absent: any identity (the PSK is the
	// proof).
	RemoteID IPsecID `yaml:"remote-id" check:"ipsec-remote-id"`
	// IKEProposals are the IKE SA proposals, in order of preference.
	// YAML ike-proposals, a list of 1..16 strings such as
	// aes256-sha512-prfsha512-ecp256; absent: nil, the engine's defaults
	// (DefaultIKEProposalNames).
	IKEProposals []IKEProposal `yaml:"ike-proposals" check:"ike-proposals"`
	// ESPProposals are the Child SA proposals, in order of preference.
	// YAML esp-proposals, a list of 1..16 strings such as aes128-sha1
	// or aes256gcm16-noesn; absent: nil, the engine's defaults
	// (DefaultESPProposalNames).
	ESPProposals []ESPProposal `yaml:"esp-proposals" check:"esp-proposals"`
	// Mode is the IPsec mode asked for: transport (DMVPN's, Cisco's
	// "mode transport") or tunnel (for peers that cannot do transport
	// mode). YAML mode; default transport. Parse sets it whenever the
	// section is present, so it is also what Enabled looks at.
	Mode string `yaml:"mode" check:"ipsec-mode" default:"transport"`
	// IKELifetime is the IKE SA's lifetime (Cisco "lifetime" in the IKEv2
	// profile). YAML ike-lifetime, whole seconds 120s..86400s; default
	// 86400s. It need not be longer than lifetime.
	IKELifetime time.Duration `yaml:"ike-lifetime" range:"120s..86400s" valid:"whole seconds from 120s to 86400s, e.g. 24h" default:"86400s"`
	// Lifetime is the Child SA's lifetime (Cisco "set security-association
	// lifetime seconds"). YAML lifetime, whole seconds 120s..86400s;
	// default 3600s.
	Lifetime time.Duration `yaml:"lifetime" range:"120s..86400s" valid:"whole seconds from 120s to 86400s, e.g. 1h" default:"3600s"`
	// LifetimeKB is the Child SA's traffic limit in kilobytes (1,024
	// octets; Cisco "set security-association lifetime kilobytes"). YAML
	// lifetime-kilobytes, 0 (no limit) or 2560..4294967295; default
	// 4608000.
	LifetimeKB uint64 `yaml:"lifetime-kilobytes" check:"lifetime-kilobytes" default:"4608000"`
	// DPD is the liveness check interval: an SA whose peer sent nothing
	// for this long is probed (Cisco "dpd 10 ... on-demand"). YAML dpd, 0s
	// (off) or whole seconds 2s..3600s; default 10s.
	DPD time.Duration `yaml:"dpd" range:"2s..3600s" zero:"true" valid:"0s (off), or whole seconds from 2s to 3600s, e.g. 10s" default:"10s"`
	// ReplayWindow is the anti-replay window of inbound SAs, in packets.
	// YAML replay-window, a power of two 64..65536; default 1024.
	ReplayWindow int `yaml:"replay-window" check:"replay-window" default:"1024"`
	// NATKeepalive is the interval of NAT keepalives (RFC 3948) sent while
	// behind NAT (Cisco "crypto ikev2 nat keepalive"). YAML nat-keepalive,
	// 0s (off) or whole seconds 5s..3600s; default 20s.
	NATKeepalive time.Duration `yaml:"nat-keepalive" range:"5s..3600s" zero:"true" valid:"0s (off), or whole seconds from 5s to 3600s, e.g. 20s" default:"20s"`
	// PFS is the Diffie-Hellman group of Child SA rekeys (Cisco "set
	// pfs"), or 0 for none. YAML pfs: none, modp2048, ecp256, ecp384,
	// ecp521 or x25519; default none.
	PFS ikecrypto.Group `yaml:"pfs" check:"pfs" default:"none"`
	// KeyLog is a file the node appends the IKE and ESP keys of every SA
	// to, in Wireshark's formats, for debugging. Anyone who can read it
	// can decrypt the traffic. YAML key-log, an absolute path; optional.
	KeyLog string `yaml:"key-log" check:"key-log"`
}

// IPsecPeer is what is configured for one peer.
type IPsecPeer struct {
	// Address is the peer's NBMA address. YAML address, required; the
	// family of tunnel.source; each peer once.
	Address netip.Addr `yaml:"address" valid:"the peer's NBMA address as an IP address literal, e.g. 192.0.2.7" required:"the peer's NBMA address, e.g. address: 192.0.2.7"`
	// PSK replaces IPsec.PSK for this peer. YAML psk, 1..512 bytes;
	// optional. It is never printed.
	PSK Secret `yaml:"psk" check:"ipsec-psk"`
	// RemoteID replaces IPsec.RemoteID for this peer. YAML remote-id, as
	// ipsec.remote-id; optional.
	RemoteID IPsecID `yaml:"remote-id" check:"ipsec-remote-id"`
}

// IPsecID kinds.
const (
	IDAddress = "address" // ID_IPV4_ADDR or ID_IPV6_ADDR: Addr
	IDFQDN    = "fqdn"    // ID_FQDN: Name
	IDKeyID   = "keyid"   // ID_KEY_ID: Name, as octets
)

// IPsecID is an IKE identity as the file gives it; the node converts it
// to the engine's. The zero value (Kind "") is no identity.
type IPsecID struct {
	Kind string // IDAddress, IDFQDN, IDKeyID or ""
	Addr netip.Addr
	Name string
}

// IsZero reports whether no identity is set.
func (id IPsecID) IsZero() bool { return id.Kind == "" }

// String returns the identity in its config spelling.
func (id IPsecID) String() string {
	switch id.Kind {
	case IDAddress:
		if id.Addr.IsValid() {
			return id.Addr.String()
		}
		return IDAddress
	case IDFQDN, IDKeyID:
		return id.Kind + ":" + id.Name
	}
	return ""
}

// IKEProposal is one IKE SA proposal, the shape of engine.IKEProposal:
// an encryption algorithm with its key size, then the integrity
// algorithms (none for AEAD), PRFs and groups acceptable with it, in
// order of preference.
type IKEProposal struct {
	Encryption ikecrypto.Encryption
	KeyBits    int
	Integrity  []ikecrypto.Integrity
	PRF        []ikecrypto.PRF
	Groups     []ikecrypto.Group
	// Text is the proposal as written in the file, for show.
	Text string
}

// ESPProposal is one Child SA proposal, the shape of engine.ESPProposal:
// an ESP encryption algorithm with its key size, the integrity algorithms
// (none for AEAD) and the ESN choices (true: extended sequence numbers),
// in order of preference.
type ESPProposal struct {
	Encryption esp.Encryption
	KeyBits    int
	Integrity  []esp.Integrity
	ESN        []bool
	// Text is the proposal as written in the file, for show.
	Text string
}

// Secret is a key from the file. It formats as "<secret>" (fmt's verbs
// %v and %s, %#v, JSON and other text encodings), so printing a Config or
// an error built from one never shows it; string(s) is the key.
type Secret string

const redacted = "<secret>"

func (s Secret) String() string   { return redacted }
func (s Secret) GoString() string { return strconv.Quote(redacted) }

// MarshalText keeps the key out of JSON and YAML renderings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Enabled reports whether the node protects its tunnel with IPsec.
func (s *IPsec) Enabled() bool { return s.Mode != "" }

// TunnelMode reports whether tunnel mode is configured.
func (s *IPsec) TunnelMode() bool { return s.Mode == "tunnel" }

// IKEProposalNames returns the IKE proposals as written, or the defaults'
// names when the file gives none.
func (s *IPsec) IKEProposalNames() []string {
	if len(s.IKEProposals) == 0 {
		return DefaultIKEProposalNames
	}
	out := make([]string, len(s.IKEProposals))
	for i, p := range s.IKEProposals {
		out[i] = p.Text
	}
	return out
}

// ESPProposalNames returns the ESP proposals as written, or the defaults'
// names when the file gives none.
func (s *IPsec) ESPProposalNames() []string {
	if len(s.ESPProposals) == 0 {
		return DefaultESPProposalNames
	}
	out := make([]string, len(s.ESPProposals))
	for i, p := range s.ESPProposals {
		out[i] = p.Text
	}
	return out
}

// Summary is what `dmvpn config check` says about IPsec, in one clause;
// never a key:
//
//	ipsec transport mode, cloud psk, 1 peer, local-id 198.51.100.1, ike aes256-sha512-...-modp2048 (default), ...
func (s *IPsec) Summary() string {
	if !s.Enabled() {
		return "no ipsec (GRE in clear text)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ipsec %s mode", s.Mode)
	if s.PSK != "" {
		b.WriteString(", cloud psk")
	}
	if n := len(s.Peers); n > 0 {
		fmt.Fprintf(&b, ", %d peer%s", n, plural(n))
	}
	fmt.Fprintf(&b, ", local-id %s", s.LocalID)
	if !s.RemoteID.IsZero() {
		fmt.Fprintf(&b, ", remote-id %s", s.RemoteID)
	}
	def := func(given bool) string {
		if given {
			return ""
		}
		return " (default)"
	}
	fmt.Fprintf(&b, ", ike %s%s, esp %s%s", strings.Join(s.IKEProposalNames(), " "), def(len(s.IKEProposals) > 0),
		strings.Join(s.ESPProposalNames(), " "), def(len(s.ESPProposals) > 0))
	if s.KeyLog != "" {
		fmt.Fprintf(&b, ", KEY LOG %s (keys written in clear)", s.KeyLog)
	}
	return b.String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Valid values of the ipsec section, for error messages.
const (
	validPSK      = "a pre-shared key of 1 to 512 bytes"
	validLocalID  = "address (tunnel.source), fqdn:NAME, keyid:TEXT or an IP address"
	validRemoteID = "fqdn:NAME, keyid:TEXT or an IP address"
	validIDName   = "1 to 255 bytes without spaces or control characters"
	validMode     = "transport, tunnel"
	validKB       = "0 (no limit) or an integer 2560..4294967295, in kilobytes"
	validReplay   = "a power of two from 64 to 65536, e.g. 1024"
	validKeyLog   = "an absolute file path of at most 4095 bytes, e.g. /var/lib/dmvpn/keys.log"
)

// ipsecChecks are the decoders of the ipsec section's check tags (added
// to checks by parse.go).
func ipsecChecks() map[string]decoder {
	checks := map[string]decoder{}
	checks["ipsec-psk"] = decodePSK
	checks["ipsec-local-id"] = func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		if id, ok := p.ipsecID(n, path, true); ok {
			v.Set(reflect.ValueOf(id))
		}
	}
	checks["ipsec-remote-id"] = func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		if id, ok := p.ipsecID(n, path, false); ok {
			v.Set(reflect.ValueOf(id))
		}
	}
	checks["ike-proposals"] = func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		p.proposals(n, path, "an IKE proposal such as aes256-sha512-prfsha512-ecp256", func(e *yaml.Node, ip, s string) bool {
			pr, ok := p.ikeProposal(e, ip, s)
			if ok {
				v.Set(reflect.Append(v, reflect.ValueOf(pr)))
			}
			return ok
		})
	}
	checks["esp-proposals"] = func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		p.proposals(n, path, "an ESP proposal such as aes128-sha1 or aes256gcm16", func(e *yaml.Node, ip, s string) bool {
			pr, ok := p.espProposal(e, ip, s)
			if ok {
				v.Set(reflect.Append(v, reflect.ValueOf(pr)))
			}
			return ok
		})
	}
	checks["ipsec-mode"] = func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		if s, ok := p.str(n, path, validMode); ok {
			if s != "transport" && s != "tunnel" {
				p.invalid(n, path, validMode)
				return
			}
			v.SetString(s)
		}
	}
	checks["lifetime-kilobytes"] = func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		if i, ok := p.integer(n, path, 0, 1<<32-1, validKB); ok {
			if i != 0 && i < 2560 {
				p.invalid(n, path, validKB)
				return
			}
			v.SetUint(uint64(i))
		}
	}
	checks["replay-window"] = func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		if i, ok := p.integer(n, path, MinReplayWindow, MaxReplayWindow, validReplay); ok {
			if i&(i-1) != 0 {
				p.errorf(n, path, "%d is not a power of two (valid: %s)", i, validReplay)
				return
			}
			v.SetInt(i)
		}
	}
	checks["pfs"] = func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		valid := "none, " + groupWords.list()
		s, ok := p.str(n, path, valid)
		if !ok {
			return
		}
		if s == "none" {
			v.SetUint(0)
			return
		}
		g, found := groupWords.find(s)
		if !found {
			p.invalid(n, path, valid)
			return
		}
		v.SetUint(uint64(g))
	}
	checks["key-log"] = func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		s, ok := p.str(n, path, validKeyLog)
		if !ok {
			return
		}
		switch {
		case len(s) > MaxKeyLogPathLen:
			q, _ := quoteCut(s)
			p.errorf(n, path, "%s is %d bytes long (valid: %s)", q, len(s), validKeyLog)
		case strings.ContainsRune(s, 0) || !filepath.IsAbs(s) || strings.HasSuffix(s, "/"):
			p.invalid(n, path, validKeyLog)
		default:
			v.SetString(s)
		}
	}
	return checks
}

// decodePSK decodes a pre-shared key. Neither it nor any other message
// repeats the key: only its length.
func decodePSK(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, path, "expected a single value, got %s (valid: %s)", kindNameSecret(n), validPSK)
		return
	}
	if isNull(n) || n.Value == "" {
		p.errorf(n, path, "is empty (valid: %s)", validPSK)
		return
	}
	if len(n.Value) > MaxPSKLen {
		p.errorf(n, path, "is %d bytes long (valid: %s)", len(n.Value), validPSK)
		return
	}
	v.SetString(n.Value)
}

// kindNameSecret is kindName without the value.
func kindNameSecret(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return "a value"
	}
	return kindName(n)
}

// ipsecID parses an identity; local allows the word address.
func (p *parser) ipsecID(n *yaml.Node, path string, local bool) (IPsecID, bool) {
	valid := validRemoteID
	if local {
		valid = validLocalID
	}
	s, ok := p.str(n, path, valid)
	if !ok {
		return IPsecID{}, false
	}
	if s == IDAddress {
		if !local {
			p.errorf(n, path, "%s is only for local-id (valid: %s)", quote(s), valid)
			return IPsecID{}, false
		}
		return IPsecID{Kind: IDAddress}, true
	}
	if kind, name, found := strings.Cut(s, ":"); found && (kind == IDFQDN || kind == IDKeyID) {
		bad := strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8RuneError })
		switch {
		case name == "":
			p.errorf(n, path, "%s has no name after %q (valid: %s:%s)", quote(s), kind+":", kind, validIDName)
		case len(name) > MaxIPsecIDLen:
			q, _ := quoteCut(s)
			p.errorf(n, path, "%s has a name of %d bytes (valid: %s:%s)", q, len(name), kind, validIDName)
		case bad >= 0:
			p.errorf(n, path, "%s has a space or control character at byte %d of the name (valid: %s:%s)", quote(s), bad+1, kind, validIDName)
		default:
			return IPsecID{Kind: kind, Name: name}, true
		}
		return IPsecID{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		p.invalid(n, path, valid)
		return IPsecID{}, false
	}
	if why := unicastProblem(a); why != "" {
		p.errorf(n, path, "%s %s (valid: %s)", quote(s), why, valid)
		return IPsecID{}, false
	}
	return IPsecID{Kind: IDAddress, Addr: a}, true
}

const utf8RuneError = '\uFFFD'

// proposals walks a list of proposal strings: at most MaxIPsecProposals,
// each once; each parses one (and appends it on success).
func (p *parser) proposals(n *yaml.Node, path, valid string, each func(e *yaml.Node, ip, s string) bool) {
	if isNull(n) {
		return
	}
	valid = "a list of up to 16 proposals, each " + valid
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "expected a list, got %s (valid: %s)", kindName(n), valid)
		return
	}
	if len(n.Content) > MaxIPsecProposals {
		p.errorf(n, path, "has %d proposals (valid: at most %d)", len(n.Content), MaxIPsecProposals)
		return
	}
	seen := make(map[string]int)
	for i, e := range n.Content {
		e = resolve(e)
		ip := indexPath(path, i)
		p.nodes[ip] = e
		s, ok := p.str(e, ip, valid)
		if !ok {
			continue
		}
		if j, dup := seen[s]; dup {
			p.errorf(e, ip, "%s is already %s (valid: each proposal once)", quote(s), indexPath(path, j))
			continue
		}
		if each(e, ip, s) {
			seen[s] = i
		}
	}
}

// words maps the words of a proposal to algorithm values.
type words[T comparable] []struct {
	word string
	val  T
}

func (w words[T]) find(s string) (T, bool) {
	for _, e := range w {
		if e.word == s {
			return e.val, true
		}
	}
	var zero T
	return zero, false
}

func (w words[T]) list() string {
	out := make([]string, 0, len(w))
	for i, e := range w {
		if i > 0 && w[i-1].val == e.val {
			continue // an alias (curve25519 after x25519)
		}
		out = append(out, e.word)
	}
	return strings.Join(out, ", ")
}

// encrWord is an encryption word: the algorithm, key size, AEAD.
type encrWord struct {
	ike  ikecrypto.Encryption
	esp  esp.Encryption
	bits int
	aead bool
}

var (
	encrWords = words[encrWord]{
		{"aes128", encrWord{ikecrypto.EncrAESCBC, esp.EncrAESCBC, 128, false}},
		{"aes256", encrWord{ikecrypto.EncrAESCBC, esp.EncrAESCBC, 256, false}},
		{"aes128gcm16", encrWord{ikecrypto.EncrAESGCM16, esp.EncrAESGCM16, 128, true}},
		{"aes256gcm16", encrWord{ikecrypto.EncrAESGCM16, esp.EncrAESGCM16, 256, true}},
		{"chacha20poly1305", encrWord{ikecrypto.EncrChaCha20Poly1305, esp.EncrChaCha20Poly1305, 256, true}},
	}
	ikeIntegWords = words[ikecrypto.Integrity]{
		{"sha256", ikecrypto.IntegHMACSHA256128},
		{"sha384", ikecrypto.IntegHMACSHA384192},
		{"sha512", ikecrypto.IntegHMACSHA512256},
	}
	// prfOfInteg is the PRF an integrity word stands for when no prf word
	// is given (strongSwan's rule).
	prfOfInteg = map[ikecrypto.Integrity]ikecrypto.PRF{
		ikecrypto.IntegHMACSHA256128: ikecrypto.PRFHMACSHA2256,
		ikecrypto.IntegHMACSHA384192: ikecrypto.PRFHMACSHA2384,
		ikecrypto.IntegHMACSHA512256: ikecrypto.PRFHMACSHA2512,
	}
	prfWords = words[ikecrypto.PRF]{
		{"prfsha256", ikecrypto.PRFHMACSHA2256},
		{"prfsha384", ikecrypto.PRFHMACSHA2384},
		{"prfsha512", ikecrypto.PRFHMACSHA2512},
	}
	groupWords = words[ikecrypto.Group]{
		{"modp2048", ikecrypto.GroupMODP2048},
		{"ecp256", ikecrypto.GroupECP256},
		{"ecp384", ikecrypto.GroupECP384},
		{"ecp521", ikecrypto.GroupECP521},
		{"x25519", ikecrypto.GroupCurve25519},
		{"curve25519", ikecrypto.GroupCurve25519},
	}
	espIntegWords = words[esp.Integrity]{
		{"sha1", esp.IntegHMACSHA1_96},
		{"sha256", esp.IntegHMACSHA256128},
		{"sha384", esp.IntegHMACSHA384192},
		{"sha512", esp.IntegHMACSHA512256},
	}
)

// wordAt returns a node for the error about the word at byte off of the
// proposal n: n's line, its column moved to the word where the text is
// the value as written (plain or quoted on one line).
func wordAt(n *yaml.Node, off int) *yaml.Node {
	w := *n
	switch n.Style {
	case 0, yaml.FlowStyle:
		w.Column += off
	case yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		if !strings.ContainsAny(n.Value, `'"\`) {
			w.Column += off + 1
		}
	}
	return &w
}

// splitWords splits a proposal at '-', with each word's byte offset.
func splitWords(s string) (ws []string, offs []int) {
	off := 0
	for _, w := range strings.Split(s, "-") {
		ws = append(ws, w)
		offs = append(offs, off)
		off += len(w) + 1
	}
	return ws, offs
}

// ikeProposal parses ENCR[-INTEG...][-PRF...]-GROUP... .
func (p *parser) ikeProposal(n *yaml.Node, path, s string) (IKEProposal, bool) {
	const shape = "ENCRYPTION[-INTEGRITY...][-PRF...]-GROUP..., e.g. aes256-sha512-prfsha512-ecp256 or aes256gcm16-prfsha256-x25519"
	ws, offs := splitWords(s)
	fail := func(i int, format string, args ...any) (IKEProposal, bool) {
		p.errorf(wordAt(n, offs[i]), path, "%s: %s", quote(s), fmt.Sprintf(format, args...))
		return IKEProposal{}, false
	}
	e, ok := encrWords.find(ws[0])
	if !ok {
		return fail(0, "unknown encryption %s (valid: %s)", quote(ws[0]), encrWords.list())
	}
	pr := IKEProposal{Encryption: e.ike, KeyBits: e.bits, Text: s}
	const (
		inInteg = iota
		inPRF
		inGroup
	)
	stage := inInteg
	seen := map[string]bool{}
	for i := 1; i < len(ws); i++ {
		w := ws[i]
		if seen[w] {
			return fail(i, "%s appears twice (valid: each algorithm once)", quote(w))
		}
		seen[w] = true
		if in, ok := ikeIntegWords.find(w); ok {
			switch {
			case e.aead:
				return fail(i, "%s is an AEAD cipher, so it takes no integrity algorithm %s (valid: %s)", ws[0], quote(w), "a PRF "+prfWords.list()+", then groups")
			case stage > inInteg:
				return fail(i, "integrity %s after a PRF or group (valid: %s)", quote(w), shape)
			}
			pr.Integrity = append(pr.Integrity, in)
			continue
		}
		if f, ok := prfWords.find(w); ok {
			if stage > inPRF {
				return fail(i, "PRF %s after a group (valid: %s)", quote(w), shape)
			}
			if !e.aead && len(pr.Integrity) == 0 {
				return fail(i, "%s needs an integrity algorithm before the PRF (valid: %s)", ws[0], ikeIntegWords.list())
			}
			stage = inPRF
			pr.PRF = append(pr.PRF, f)
			continue
		}
		if g, ok := groupWords.find(w); ok {
			switch {
			case !e.aead && len(pr.Integrity) == 0:
				return fail(i, "%s needs an integrity algorithm (valid: %s)", ws[0], ikeIntegWords.list())
			case e.aead && len(pr.PRF) == 0:
				return fail(i, "%s is an AEAD cipher, so it needs a PRF before the groups (valid: %s)", ws[0], prfWords.list())
			}
			if seenGroup(pr.Groups, g) {
				return fail(i, "%s is a group already given (valid: each algorithm once)", quote(w))
			}
			stage = inGroup
			pr.Groups = append(pr.Groups, g)
			continue
		}
		// An unknown word: say what was expected there.
		switch {
		case w == "":
			return fail(i, "an empty word (valid: %s)", shape)
		case !e.aead && len(pr.Integrity) == 0:
			return fail(i, "unknown integrity %s (valid: %s)", quote(w), ikeIntegWords.list())
		case e.aead && len(pr.PRF) == 0:
			return fail(i, "unknown PRF %s (valid: %s)", quote(w), prfWords.list())
		case stage == inGroup:
			return fail(i, "unknown group %s (valid: %s)", quote(w), groupWords.list())
		default:
			return fail(i, "unknown algorithm %s (valid: %s)", quote(w), ikeWordsAfter(e.aead, stage))
		}
	}
	last := len(ws) - 1
	switch {
	case !e.aead && len(pr.Integrity) == 0:
		return fail(last, "%s needs an integrity algorithm (valid: %s)", ws[0], shape)
	case e.aead && len(pr.PRF) == 0:
		return fail(last, "%s is an AEAD cipher, so it needs a PRF (valid: %s)", ws[0], shape)
	case len(pr.Groups) == 0:
		return fail(last, "no Diffie-Hellman group (valid: %s, at the end)", groupWords.list())
	}
	if len(pr.PRF) == 0 {
		for _, in := range pr.Integrity {
			pr.PRF = append(pr.PRF, prfOfInteg[in])
		}
	}
	if err := checkIKE(pr); err != nil {
		return fail(0, "not supported: %v", err)
	}
	return pr, true
}

func ikeWordsAfter(aead bool, stage int) string {
	switch {
	case stage == 0 && !aead:
		return "integrity " + ikeIntegWords.list() + ", PRF " + prfWords.list() + " or group " + groupWords.list()
	default:
		return "PRF " + prfWords.list() + " or group " + groupWords.list()
	}
}

func seenGroup(gs []ikecrypto.Group, g ikecrypto.Group) bool {
	for _, h := range gs {
		if h == g {
			return true
		}
	}
	return false
}

// checkIKE asks ikecrypto whether it implements every combination.
func checkIKE(pr IKEProposal) error {
	t := ikecrypto.Transform{Encryption: pr.Encryption, KeyBits: pr.KeyBits}
	integ := pr.Integrity
	if t.AEAD() {
		integ = []ikecrypto.Integrity{ikecrypto.IntegNone}
	}
	for _, in := range integ {
		t.Integrity = in
		if err := t.Valid(); err != nil {
			return err
		}
	}
	for _, f := range pr.PRF {
		if err := f.Valid(); err != nil {
			return err
		}
	}
	for _, g := range pr.Groups {
		if err := g.Valid(); err != nil {
			return err
		}
	}
	return nil
}

// espProposal parses ENCR[-INTEG...][-esn][-noesn].
func (p *parser) espProposal(n *yaml.Node, path, s string) (ESPProposal, bool) {
	const shape = "ENCRYPTION[-INTEGRITY...][-esn][-noesn], e.g. aes128-sha1, aes256-sha256-esn or aes256gcm16"
	ws, offs := splitWords(s)
	fail := func(i int, format string, args ...any) (ESPProposal, bool) {
		p.errorf(wordAt(n, offs[i]), path, "%s: %s", quote(s), fmt.Sprintf(format, args...))
		return ESPProposal{}, false
	}
	e, ok := encrWords.find(ws[0])
	if !ok {
		return fail(0, "unknown encryption %s (valid: %s)", quote(ws[0]), encrWords.list())
	}
	pr := ESPProposal{Encryption: e.esp, KeyBits: e.bits, Text: s}
	seen := map[string]bool{}
	for i := 1; i < len(ws); i++ {
		w := ws[i]
		if seen[w] {
			return fail(i, "%s appears twice (valid: each word once)", quote(w))
		}
		seen[w] = true
		if in, ok := espIntegWords.find(w); ok {
			switch {
			case e.aead:
				return fail(i, "%s is an AEAD cipher, so it takes no integrity algorithm %s (valid: %s)", ws[0], quote(w), shape)
			case len(pr.ESN) > 0:
				return fail(i, "integrity %s after esn or noesn (valid: %s)", quote(w), shape)
			}
			pr.Integrity = append(pr.Integrity, in)
			continue
		}
		if w == "esn" || w == "noesn" {
			if !e.aead && len(pr.Integrity) == 0 {
				return fail(i, "%s needs an integrity algorithm (valid: %s)", ws[0], espIntegWords.list())
			}
			pr.ESN = append(pr.ESN, w == "esn")
			continue
		}
		switch {
		case w == "":
			return fail(i, "an empty word (valid: %s)", shape)
		case !e.aead && len(pr.Integrity) == 0:
			return fail(i, "unknown integrity %s (valid: %s)", quote(w), espIntegWords.list())
		case e.aead || len(pr.ESN) > 0:
			return fail(i, "unknown word %s (valid: esn, noesn)", quote(w))
		default:
			return fail(i, "unknown word %s (valid: integrity %s, or esn, noesn)", quote(w), espIntegWords.list())
		}
	}
	if !e.aead && len(pr.Integrity) == 0 {
		return fail(len(ws)-1, "%s needs an integrity algorithm (valid: %s)", ws[0], espIntegWords.list())
	}
	if len(pr.ESN) == 0 {
		pr.ESN = []bool{true, false}
	}
	t := esp.Transform{Encryption: pr.Encryption, KeyBits: pr.KeyBits}
	integ := pr.Integrity
	if t.AEAD() {
		integ = []esp.Integrity{esp.IntegNone}
	}
	for _, in := range integ {
		t.Integrity = in
		if err := t.Valid(); err != nil {
			return fail(0, "not supported: %v", err)
		}
	}
	return pr, true
}

// applyIPsecDerived fills in the ipsec defaults computed from other
// fields, and the ports IPsec fixes.
func (p *parser) applyIPsecDerived(c *Config) {
	s := &c.IPsec
	if !p.has("ipsec") {
		// No IPsec: no defaults either, so a config without an ipsec
		// section is the zero IPsec.
		*s = IPsec{}
		return
	}
	if s.LocalID.Kind == "" && !p.given[&s.LocalID] || s.LocalID.Kind == IDAddress && !s.LocalID.Addr.IsValid() {
		s.LocalID = IPsecID{Kind: IDAddress, Addr: c.Tunnel.Source}
	}
	if c.Tunnel.Transport != nbma.TransportUDP {
		return
	}
	// With IPsec the UDP transport is ESP-in-UDP (RFC 3948) on 4500:
	// the GRE-in-UDP ports are not used, so they say 4500 (explicit
	// other values are refused in validateIPsec).
	if !p.has("tunnel.udp-port") {
		c.Tunnel.UDPPort = IPsecUDPPort
	}
	for i := range c.NHRP.NHS {
		if !p.has(indexPath("nhrp.nhs", i) + ".port") {
			c.NHRP.NHS[i].Port = IPsecUDPPort
		}
	}
	for i := range c.NHRP.Map {
		if !p.has(indexPath("nhrp.map", i) + ".port") {
			c.NHRP.Map[i].Port = IPsecUDPPort
		}
	}
}

// validateIPsec checks what in the ipsec section involves more than one
// field, or other sections.
func (p *parser) validateIPsec(c *Config) {
	s := &c.IPsec
	if !s.Enabled() {
		return
	}
	t := &c.Tunnel
	if t.Transport == nbma.TransportUDP {
		port := func(path string, v uint16) {
			if p.has(path) && v != 0 && v != IPsecUDPPort {
				p.errorf(p.at(path), path, "%d is not used with ipsec: the UDP transport is then ESP-in-UDP on port %d (valid: remove it, or %d)", v, IPsecUDPPort, IPsecUDPPort)
			}
		}
		port("tunnel.udp-port", t.UDPPort)
		for i, h := range c.NHRP.NHS {
			port(indexPath("nhrp.nhs", i)+".port", h.Port)
		}
		for i, m := range c.NHRP.Map {
			port(indexPath("nhrp.map", i)+".port", m.Port)
		}
	}
	if s.LocalID.Kind == IDAddress && p.has("ipsec.local-id") && t.Source.IsValid() && s.LocalID.Addr.IsValid() && s.LocalID.Addr.Is4() != t.Source.Is4() {
		// Allowed by IKE, but almost always a slip; say so.
		p.errorf(p.at("ipsec.local-id"), "ipsec.local-id", "%s is %s but tunnel.source %s is %s (valid: address, or an %s address)",
			s.LocalID.Addr, family(s.LocalID.Addr), t.Source, family(t.Source), family(t.Source))
	}
	peers := make(map[netip.Addr]int)
	for i, pe := range s.Peers {
		path := indexPath("ipsec.peers", i)
		if !pe.Address.IsValid() {
			continue
		}
		ap := path + ".address"
		switch {
		case t.Source.IsValid() && pe.Address.Is4() != t.Source.Is4():
			p.errorf(p.at(ap), ap, "%s is %s but tunnel.source %s is %s (valid: the peer's %s NBMA address)",
				pe.Address, family(pe.Address), t.Source, family(t.Source), family(t.Source))
		case pe.Address == t.Source:
			p.errorf(p.at(ap), ap, "%s is this node's own tunnel.source (valid: the peer's NBMA address)", pe.Address)
		}
		if j, dup := peers[pe.Address]; dup {
			p.errorf(p.at(ap), ap, "%s is already ipsec.peers[%d] (line %d) (valid: each peer once)", pe.Address, j, p.at(indexPath("ipsec.peers", j)).Line)
			continue
		}
		peers[pe.Address] = i
		if pe.PSK == "" && pe.RemoteID.IsZero() && !p.has(path+".psk") && !p.has(path+".remote-id") {
			p.errorf(p.at(path), path, "sets nothing for %s (valid: give psk or remote-id, or remove the entry)", pe.Address)
		}
	}
	if s.PSK != "" || p.has("ipsec.psk") {
		return
	}
	// No cloud key: every peer this node is configured to talk to needs
	// its own. A hub is called by spokes it does not know.
	if c.IsHub() {
		p.errorf(p.at("ipsec"), "ipsec.psk", "missing: a hub is contacted by spokes it has no peers entry for, so it needs the cloud's key (valid: psk: a pre-shared key of 1 to 512 bytes)")
		return
	}
	hasKey := func(a netip.Addr) bool {
		j, ok := peers[a]
		return ok && s.Peers[j].PSK != ""
	}
	for i, h := range c.NHRP.NHS {
		if h.NBMA.IsValid() && !hasKey(h.NBMA) {
			p.errorf(p.at("ipsec"), "ipsec.psk", "missing, and nhrp.nhs[%d] (%s) has no psk in ipsec.peers (valid: psk: the cloud's key, or a peers entry with psk for every NHS and static mapping)", i, h.NBMA)
			return
		}
	}
	for i, m := range c.NHRP.Map {
		if m.NBMA.IsValid() && !hasKey(m.NBMA) {
			p.errorf(p.at("ipsec"), "ipsec.psk", "missing, and nhrp.map[%d] (%s) has no psk in ipsec.peers (valid: psk: the cloud's key, or a peers entry with psk for every NHS and static mapping)", i, m.NBMA)
			return
		}
	}
}
