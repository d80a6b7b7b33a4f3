package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/esp"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
	"github.com/dmvpn/dmvpn/ipsec/replay"
)

// ipsecSpoke is a spoke with one NHS and one static mapping; tests append
// an ipsec section (line 13 on).
const ipsecSpoke = "name: s1\ntunnel:\n  address: 10.0.0.11/24\n  source: 198.51.100.1\nnhrp:\n  network-id: 1\n" +
	"  nhs:\n    - address: 10.0.0.1\n      nbma: 192.0.2.1\n  map:\n    - address: 10.0.0.2\n      nbma: 192.0.2.2\n"

// TestIPsecSchemaDefaults: with an ipsec section, every ipsec field with a
// default or derived tag has it, and every other one left out is zero
// (TestSchemaDefaults skips ipsec, which its file leaves out).
func TestIPsecSchemaDefaults(t *testing.T) {
	c, err := Parse("s.yaml", []byte(ipsecSpoke+"ipsec:\n  psk: cloud secret\n  peers:\n    - address: 192.0.2.9\n      remote-id: fqdn:x\n"))
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{"ipsec.psk": true, "ipsec.peers[].remote-id": true}
	n := 0
	schemaFields(func(path string, f *fieldSpec) {
		if !strings.HasPrefix(path, "ipsec.") || f.sub != nil || present[path] || f.required != "" {
			return
		}
		n++
		v := fieldValue(t, c, path)
		switch {
		case f.hasDef:
			if !reflect.DeepEqual(v.Interface(), f.defVal.Interface()) {
				t.Errorf("%s = %v, want its default %s", path, v, f.def)
			}
		case f.derived != "":
			if v.IsZero() {
				t.Errorf("%s has a derived default (%s) but is zero", path, f.derived)
			}
		case !v.IsZero():
			t.Errorf("%s = %v without a default tag", path, v)
		}
	})
	if n < 14 {
		t.Errorf("%d ipsec fields checked", n)
	}
	s := c.IPsec
	if s.IKELifetime != DefaultIKELifetime || s.Lifetime != DefaultLifetime || s.LifetimeKB != DefaultLifetimeKB ||
		s.DPD != DefaultDPD || s.ReplayWindow != DefaultReplay || s.NATKeepalive != DefaultNATKeep {
		t.Errorf("defaults differ from the Default constants: %+v", s)
	}
	// The replay window's bounds are ones ipsec/replay accepts.
	for _, size := range []int{MinReplayWindow, DefaultReplay, MaxReplayWindow} {
		if _, err := replay.New(size, true); err != nil {
			t.Errorf("replay.New(%d): %v", size, err)
		}
	}
}

// TestIPsecDefaults: the whole section as a hub with only a psk gets it,
// and a node without the section has none.
func TestIPsecDefaults(t *testing.T) {
	c, err := Parse("hub.yaml", []byte(bgpHub+"ipsec:\n  psk: cloud secret\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := IPsec{PSK: "cloud secret", LocalID: IPsecID{Kind: IDAddress, Addr: a("192.0.2.1")}, Mode: "transport",
		IKELifetime: 24 * time.Hour, Lifetime: time.Hour, LifetimeKB: 4608000, DPD: 10 * time.Second,
		ReplayWindow: 1024, NATKeepalive: 20 * time.Second}
	if !reflect.DeepEqual(c.IPsec, want) {
		t.Errorf("ipsec = %+v\nwant %+v", c.IPsec, want)
	}
	if !c.IPsec.Enabled() || c.IPsec.TunnelMode() || c.IPsec.PFS != 0 || c.IPsec.IKEProposals != nil || c.IPsec.ESPProposals != nil {
		t.Errorf("ipsec %+v: want enabled, transport mode, no PFS, the engine's proposals", c.IPsec)
	}
	if got := c.IPsec.IKEProposalNames(); !reflect.DeepEqual(got, DefaultIKEProposalNames) {
		t.Errorf("IKEProposalNames() = %v", got)
	}
	if got := c.IPsec.ESPProposalNames(); !reflect.DeepEqual(got, DefaultESPProposalNames) {
		t.Errorf("ESPProposalNames() = %v", got)
	}

	none, err := Parse("none.yaml", []byte(bgpHub))
	if err != nil {
		t.Fatal(err)
	}
	if none.IPsec.Enabled() || !reflect.DeepEqual(none.IPsec, IPsec{}) {
		t.Errorf("no ipsec section: %+v", none.IPsec)
	}
	if got := none.IPsec.Summary(); got != "no ipsec (GRE in clear text)" {
		t.Errorf("Summary() = %q", got)
	}
}

// TestIPsecValues: every field set, overriding its default.
func TestIPsecValues(t *testing.T) {
	c, err := Parse("s.yaml", []byte(ipsecSpoke+`ipsec:
  peers:
    - address: 192.0.2.1
      psk: hub key
    - address: 192.0.2.2
      psk: "other key"
      remote-id: "keyid:spoke2"
    - address: 192.0.2.7
      remote-id: 2001:db8::7
  local-id: fqdn:spoke1.example
  remote-id: "fqdn:*.example"
  ike-proposals: [aes128-sha256-ecp256, aes256gcm16-prfsha384-x25519]
  esp-proposals: [aes256-sha512-sha256-noesn, chacha20poly1305-noesn-esn]
  mode: tunnel
  ike-lifetime: 8h
  lifetime: 120
  lifetime-kilobytes: 0
  dpd: 0s
  replay-window: 65536
  nat-keepalive: 0
  pfs: ecp384
  key-log: /var/lib/dmvpn/keys.log
`))
	if err != nil {
		t.Fatal(err)
	}
	want := IPsec{
		Peers: []IPsecPeer{
			{Address: a("192.0.2.1"), PSK: "hub key"},
			{Address: a("192.0.2.2"), PSK: "other key", RemoteID: IPsecID{Kind: IDKeyID, Name: "spoke2"}},
			{Address: a("192.0.2.7"), RemoteID: IPsecID{Kind: IDAddress, Addr: a("2001:db8::7")}},
		},
		LocalID:  IPsecID{Kind: IDFQDN, Name: "spoke1.example"},
		RemoteID: IPsecID{Kind: IDFQDN, Name: "*.example"},
		IKEProposals: []IKEProposal{
			{Encryption: ikecrypto.EncrAESCBC, KeyBits: 128, Integrity: []ikecrypto.Integrity{ikecrypto.IntegHMACSHA256128},
				PRF: []ikecrypto.PRF{ikecrypto.PRFHMACSHA2256}, Groups: []ikecrypto.Group{ikecrypto.GroupECP256}, Text: "aes128-sha256-ecp256"},
			{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 256, PRF: []ikecrypto.PRF{ikecrypto.PRFHMACSHA2384},
				Groups: []ikecrypto.Group{ikecrypto.GroupCurve25519}, Text: "aes256gcm16-prfsha384-x25519"},
		},
		ESPProposals: []ESPProposal{
			{Encryption: esp.EncrAESCBC, KeyBits: 256, Integrity: []esp.Integrity{esp.IntegHMACSHA512256, esp.IntegHMACSHA256128},
				ESN: []bool{false}, Text: "aes256-sha512-sha256-noesn"},
			{Encryption: esp.EncrChaCha20Poly1305, KeyBits: 256, ESN: []bool{false, true}, Text: "chacha20poly1305-noesn-esn"},
		},
		Mode: "tunnel", IKELifetime: 8 * time.Hour, Lifetime: 120 * time.Second, ReplayWindow: 65536,
		PFS: ikecrypto.GroupECP384, KeyLog: "/var/lib/dmvpn/keys.log",
	}
	if !reflect.DeepEqual(c.IPsec, want) {
		t.Errorf("ipsec = %+v\nwant %+v", c.IPsec, want)
	}
	if !c.IPsec.TunnelMode() {
		t.Error("mode: tunnel, TunnelMode() false")
	}
	if got := c.IPsec.IKEProposalNames(); !reflect.DeepEqual(got, []string{"aes128-sha256-ecp256", "aes256gcm16-prfsha384-x25519"}) {
		t.Errorf("IKEProposalNames() = %v", got)
	}
	sum := c.IPsec.Summary()
	for _, w := range []string{"ipsec tunnel mode", "3 peers", "local-id fqdn:spoke1.example", "remote-id fqdn:*.example",
		"ike aes128-sha256-ecp256 aes256gcm16-prfsha384-x25519, esp aes256-sha512-sha256-noesn chacha20poly1305-noesn-esn,", "KEY LOG /var/lib/dmvpn/keys.log"} {
		if !strings.Contains(sum, w) {
			t.Errorf("Summary() = %q, lacks %q", sum, w)
		}
	}
	if strings.Contains(sum, "cloud psk") || strings.Contains(sum, "(default)") {
		t.Errorf("Summary() = %q: no cloud psk here, no default proposals", sum)
	}
}

// TestIPsecDefaultProposals: the names config check and the docs give for
// "absent" parse to what the IKEv2 engine offers then, as its doc says:
// engine.DefaultIKEProposals (Cisco IOS XE's smart default, then
// AES-GCM-256 with PRF SHA-256 and groups 19, 31) and DefaultESPProposals
// (AES-CBC-128 with HMAC-SHA1-96, AES-GCM-128, AES-GCM-256, each with and
// without ESN). config does not import the engine (nor do its tests, so
// that they do not depend on its state); the node, which converts these
// to the engine's types, is where the two meet.
func TestIPsecDefaultProposals(t *testing.T) {
	list := func(names []string) string { return "[" + strings.Join(names, ", ") + "]" }
	c, err := Parse("hub.yaml", []byte(bgpHub+"ipsec:\n  psk: k\n  ike-proposals: "+list(DefaultIKEProposalNames)+
		"\n  esp-proposals: "+list(DefaultESPProposalNames)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	ike := []IKEProposal{
		{Encryption: ikecrypto.EncrAESCBC, KeyBits: 256,
			Integrity: []ikecrypto.Integrity{ikecrypto.IntegHMACSHA512256, ikecrypto.IntegHMACSHA384192},
			PRF:       []ikecrypto.PRF{ikecrypto.PRFHMACSHA2512, ikecrypto.PRFHMACSHA2384},
			Groups:    []ikecrypto.Group{ikecrypto.GroupECP256, ikecrypto.GroupMODP2048}},
		{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 256,
			PRF:    []ikecrypto.PRF{ikecrypto.PRFHMACSHA2256},
			Groups: []ikecrypto.Group{ikecrypto.GroupECP256, ikecrypto.GroupCurve25519}},
	}
	both := []bool{true, false}
	espP := []ESPProposal{
		{Encryption: esp.EncrAESCBC, KeyBits: 128, Integrity: []esp.Integrity{esp.IntegHMACSHA1_96}, ESN: both},
		{Encryption: esp.EncrAESGCM16, KeyBits: 128, ESN: both},
		{Encryption: esp.EncrAESGCM16, KeyBits: 256, ESN: both},
	}
	for i := range ike {
		ike[i].Text = DefaultIKEProposalNames[i]
	}
	for i := range espP {
		espP[i].Text = DefaultESPProposalNames[i]
	}
	if !reflect.DeepEqual(c.IPsec.IKEProposals, ike) {
		t.Errorf("DefaultIKEProposalNames parse to\n%+v\nwant the engine's defaults\n%+v", c.IPsec.IKEProposals, ike)
	}
	if !reflect.DeepEqual(c.IPsec.ESPProposals, espP) {
		t.Errorf("DefaultESPProposalNames parse to\n%+v\nwant the engine's defaults\n%+v", c.IPsec.ESPProposals, espP)
	}
}

// TestIPsecProposalParser is the proposal grammar, valid and invalid,
// with the error's column at the offending word.
func TestIPsecProposalParser(t *testing.T) {
	ike := func(s string) (IKEProposal, error) {
		c, err := Parse("p.yaml", []byte(bgpHub+"ipsec:\n  psk: k\n  ike-proposals: ["+s+"]\n"))
		if err != nil {
			return IKEProposal{}, err
		}
		return c.IPsec.IKEProposals[0], nil
	}
	espP := func(s string) (ESPProposal, error) {
		c, err := Parse("p.yaml", []byte(bgpHub+"ipsec:\n  psk: k\n  esp-proposals: ["+s+"]\n"))
		if err != nil {
			return ESPProposal{}, err
		}
		return c.IPsec.ESPProposals[0], nil
	}
	I := ikecrypto.IntegHMACSHA256128
	for _, tt := range []struct {
		in   string
		want IKEProposal
	}{
		{"aes256-sha512-sha384-ecp256-modp2048", IKEProposal{Encryption: ikecrypto.EncrAESCBC, KeyBits: 256,
			Integrity: []ikecrypto.Integrity{ikecrypto.IntegHMACSHA512256, ikecrypto.IntegHMACSHA384192},
			PRF:       []ikecrypto.PRF{ikecrypto.PRFHMACSHA2512, ikecrypto.PRFHMACSHA2384},
			Groups:    []ikecrypto.Group{ikecrypto.GroupECP256, ikecrypto.GroupMODP2048}}},
		{"aes128-sha256-prfsha512-ecp521-ecp384", IKEProposal{Encryption: ikecrypto.EncrAESCBC, KeyBits: 128,
			Integrity: []ikecrypto.Integrity{I}, PRF: []ikecrypto.PRF{ikecrypto.PRFHMACSHA2512},
			Groups: []ikecrypto.Group{ikecrypto.GroupECP521, ikecrypto.GroupECP384}}},
		{"aes128gcm16-prfsha256-curve25519", IKEProposal{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 128,
			PRF: []ikecrypto.PRF{ikecrypto.PRFHMACSHA2256}, Groups: []ikecrypto.Group{ikecrypto.GroupCurve25519}}},
		{"chacha20poly1305-prfsha256-prfsha512-x25519", IKEProposal{Encryption: ikecrypto.EncrChaCha20Poly1305, KeyBits: 256,
			PRF: []ikecrypto.PRF{ikecrypto.PRFHMACSHA2256, ikecrypto.PRFHMACSHA2512}, Groups: []ikecrypto.Group{ikecrypto.GroupCurve25519}}},
	} {
		got, err := ike(tt.in)
		tt.want.Text = tt.in
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ike %s = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, tt := range []struct {
		in   string
		want ESPProposal
	}{
		{"aes128-sha1", ESPProposal{Encryption: esp.EncrAESCBC, KeyBits: 128, Integrity: []esp.Integrity{esp.IntegHMACSHA1_96}, ESN: []bool{true, false}}},
		{"aes256-sha384-esn", ESPProposal{Encryption: esp.EncrAESCBC, KeyBits: 256, Integrity: []esp.Integrity{esp.IntegHMACSHA384192}, ESN: []bool{true}}},
		{"aes128gcm16", ESPProposal{Encryption: esp.EncrAESGCM16, KeyBits: 128, ESN: []bool{true, false}}},
		{"aes256gcm16-noesn", ESPProposal{Encryption: esp.EncrAESGCM16, KeyBits: 256, ESN: []bool{false}}},
	} {
		got, err := espP(tt.in)
		tt.want.Text = tt.in
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("esp %s = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}

	// Errors: line 9 is the list; the string starts at column 19.
	for _, tt := range []struct{ ike, in, want string }{
		{"ike", "des-sha256-ecp256", `9:19: ipsec.ike-proposals[0]: "des-sha256-ecp256": unknown encryption "des" (valid: aes128, aes256, aes128gcm16, aes256gcm16, chacha20poly1305)`},
		{"ike", "aes256-md5-ecp256", `9:26: ipsec.ike-proposals[0]: "aes256-md5-ecp256": unknown integrity "md5" (valid: sha256, sha384, sha512)`},
		{"ike", "aes256-ecp256", `9:26: ipsec.ike-proposals[0]: "aes256-ecp256": aes256 needs an integrity algorithm (valid: sha256, sha384, sha512)`},
		{"ike", "aes256-sha256", `9:26: ipsec.ike-proposals[0]: "aes256-sha256": no Diffie-Hellman group (valid: modp2048, ecp256, ecp384, ecp521, x25519, at the end)`},
		{"ike", "aes256gcm16-sha256-ecp256", `9:31: ipsec.ike-proposals[0]: "aes256gcm16-sha256-ecp256": aes256gcm16 is an AEAD cipher, so it takes no integrity algorithm "sha256"`},
		{"ike", "aes256gcm16-ecp256", `9:31: ipsec.ike-proposals[0]: "aes256gcm16-ecp256": aes256gcm16 is an AEAD cipher, so it needs a PRF before the groups (valid: prfsha256, prfsha384, prfsha512)`},
		{"ike", "aes256gcm16-prfmd5-ecp256", `9:31: ipsec.ike-proposals[0]: "aes256gcm16-prfmd5-ecp256": unknown PRF "prfmd5" (valid: prfsha256, prfsha384, prfsha512)`},
		{"ike", "aes256-sha256-ecp256-modp1024", `9:40: ipsec.ike-proposals[0]: "aes256-sha256-ecp256-modp1024": unknown group "modp1024" (valid: modp2048, ecp256, ecp384, ecp521, x25519)`},
		{"ike", "aes256-sha256-ecp256-sha384", `9:40: ipsec.ike-proposals[0]: "aes256-sha256-ecp256-sha384": integrity "sha384" after a PRF or group`},
		{"ike", "aes256-sha256-ecp256-prfsha256", `9:40: ipsec.ike-proposals[0]: "aes256-sha256-ecp256-prfsha256": PRF "prfsha256" after a group`},
		{"ike", "aes256-sha256-sha256-ecp256", `9:33: ipsec.ike-proposals[0]: "aes256-sha256-sha256-ecp256": "sha256" appears twice (valid: each algorithm once)`},
		{"ike", "aes256-sha256-x25519-curve25519", `9:40: ipsec.ike-proposals[0]: "aes256-sha256-x25519-curve25519": "curve25519" is a group already given`},
		{"ike", "aes256-sha256-foo", `9:33: ipsec.ike-proposals[0]: "aes256-sha256-foo": unknown algorithm "foo" (valid: integrity sha256, sha384, sha512, PRF prfsha256, prfsha384, prfsha512 or group`},
		{"ike", "aes256--ecp256", `9:26: ipsec.ike-proposals[0]: "aes256--ecp256": an empty word`},
		{"ike", "aes256-sha256-ecp256, aes256-sha256-ecp256", `9:41: ipsec.ike-proposals[1]: "aes256-sha256-ecp256" is already ipsec.ike-proposals[0] (valid: each proposal once)`},
		{"esp", "aes128-md5", `9:26: ipsec.esp-proposals[0]: "aes128-md5": unknown integrity "md5" (valid: sha1, sha256, sha384, sha512)`},
		{"esp", "aes128", `9:19: ipsec.esp-proposals[0]: "aes128": aes128 needs an integrity algorithm (valid: sha1, sha256, sha384, sha512)`},
		{"esp", "aes128-esn", `9:26: ipsec.esp-proposals[0]: "aes128-esn": aes128 needs an integrity algorithm`},
		{"esp", "aes128gcm16-sha1", `9:31: ipsec.esp-proposals[0]: "aes128gcm16-sha1": aes128gcm16 is an AEAD cipher, so it takes no integrity algorithm "sha1"`},
		{"esp", "aes128gcm16-foo", `9:31: ipsec.esp-proposals[0]: "aes128gcm16-foo": unknown word "foo" (valid: esn, noesn)`},
		{"esp", "aes128-sha1-esn-sha256", `9:35: ipsec.esp-proposals[0]: "aes128-sha1-esn-sha256": integrity "sha256" after esn or noesn`},
		{"esp", "aes128-sha1-esn-esn", `9:35: ipsec.esp-proposals[0]: "aes128-sha1-esn-esn": "esn" appears twice`},
		{"esp", "aes128-sha1-foo", `9:31: ipsec.esp-proposals[0]: "aes128-sha1-foo": unknown word "foo" (valid: integrity sha1, sha256, sha384, sha512, or esn, noesn)`},
		{"esp", "ecp256", `9:19: ipsec.esp-proposals[0]: "ecp256": unknown encryption "ecp256"`},
		{"esp", `"aes128-md5"`, `9:27: ipsec.esp-proposals[0]: "aes128-md5": unknown integrity "md5"`},
	} {
		var err error
		if tt.ike == "ike" {
			_, err = ike(tt.in)
		} else {
			_, err = espP(tt.in)
		}
		if err == nil || !strings.Contains(err.Error(), "p.yaml:"+tt.want) {
			t.Errorf("%s %s: error %v\nwant one containing p.yaml:%s", tt.ike, tt.in, err, tt.want)
		}
	}
	many := strings.Repeat("aes128gcm16, ", 16) + "aes256gcm16"
	if _, err := espP(many); err == nil || !strings.Contains(err.Error(), "ipsec.esp-proposals: has 17 proposals (valid: at most 16)") {
		t.Errorf("17 proposals: %v", err)
	}
}

// TestIPsecErrors: every other error path, file:line:column: field: what
// is wrong (valid: ...).
func TestIPsecErrors(t *testing.T) {
	long := strings.Repeat("k", 513)
	for _, tt := range []struct{ name, base, ipsec, want string }{
		{"hub without psk", bgpHub, "ipsec:\n  dpd: 10s\n", `f.yaml:8:3: ipsec.psk: missing: a hub is contacted by spokes it has no peers entry for, so it needs the cloud's key (valid: psk: a pre-shared key of 1 to 512 bytes)`},
		{"empty section at a hub", bgpHub, "ipsec:\n", `f.yaml:7:7: ipsec.psk: missing: a hub`},
		{"spoke nhs without key", ipsecSpoke, "ipsec:\n  peers:\n    - address: 192.0.2.2\n      psk: k\n", `f.yaml:14:3: ipsec.psk: missing, and nhrp.nhs[0] (192.0.2.1) has no psk in ipsec.peers (valid: psk: the cloud's key, or a peers entry with psk for every NHS and static mapping)`},
		{"spoke map without key", ipsecSpoke, "ipsec:\n  peers:\n    - address: 192.0.2.1\n      psk: k\n    - address: 192.0.2.2\n      remote-id: fqdn:x\n", `ipsec.psk: missing, and nhrp.map[0] (192.0.2.2) has no psk in ipsec.peers`},
		{"psk empty", bgpHub, "ipsec:\n  psk: \"\"\n", `f.yaml:8:8: ipsec.psk: is empty (valid: a pre-shared key of 1 to 512 bytes)`},
		{"psk null", bgpHub, "ipsec:\n  psk:\n", `f.yaml:8:7: ipsec.psk: is empty (valid: a pre-shared key of 1 to 512 bytes)`},
		{"psk long", bgpHub, "ipsec:\n  psk: " + long + "\n", `f.yaml:8:8: ipsec.psk: is 513 bytes long (valid: a pre-shared key of 1 to 512 bytes)`},
		{"psk list", bgpHub, "ipsec:\n  psk: [a, b]\n", `f.yaml:8:8: ipsec.psk: expected a single value, got a list (valid: a pre-shared key of 1 to 512 bytes)`},
		{"peer psk long", bgpHub, "ipsec:\n  psk: k\n  peers:\n    - address: 192.0.2.7\n      psk: " + long + "\n", `f.yaml:11:12: ipsec.peers[0].psk: is 513 bytes long`},
		{"peer address missing", bgpHub, "ipsec:\n  psk: k\n  peers:\n    - psk: x\n", `f.yaml:10:7: ipsec.peers[0]: missing required field "address" (the peer's NBMA address, e.g. address: 192.0.2.7)`},
		{"peer address name", bgpHub, "ipsec:\n  psk: k\n  peers:\n    - address: hub.example\n      psk: x\n", `f.yaml:10:16: ipsec.peers[0].address: "hub.example" is not valid (valid: the peer's NBMA address as an IP address literal, e.g. 192.0.2.7)`},
		{"peer address prefix", bgpHub, "ipsec:\n  psk: k\n  peers:\n    - address: 192.0.2.0/24\n      psk: x\n", `ipsec.peers[0].address: "192.0.2.0/24" is a prefix`},
		{"peer twice", bgpHub, "ipsec:\n  psk: k\n  peers:\n    - address: 192.0.2.7\n      psk: x\n    - address: 192.0.2.7\n      psk: y\n", `f.yaml:12:16: ipsec.peers[1].address: 192.0.2.7 is already ipsec.peers[0] (line 10) (valid: each peer once)`},
		{"peer family", bgpHub, "ipsec:\n  psk: k\n  peers:\n    - address: 2001:db8::7\n      psk: x\n", `f.yaml:10:16: ipsec.peers[0].address: 2001:db8::7 is IPv6 but tunnel.source 192.0.2.1 is IPv4 (valid: the peer's IPv4 NBMA address)`},
		{"peer self", bgpHub, "ipsec:\n  psk: k\n  peers:\n    - address: 192.0.2.1\n      psk: x\n", `f.yaml:10:16: ipsec.peers[0].address: 192.0.2.1 is this node's own tunnel.source (valid: the peer's NBMA address)`},
		{"peer sets nothing", bgpHub, "ipsec:\n  psk: k\n  peers:\n    - address: 192.0.2.7\n", `f.yaml:10:7: ipsec.peers[0]: sets nothing for 192.0.2.7 (valid: give psk or remote-id, or remove the entry)`},
		{"peer unknown field", bgpHub, "ipsec:\n  psk: k\n  peers:\n    - address: 192.0.2.7\n      key: x\n", `f.yaml:11:7: ipsec.peers[0]: unknown field "key" (valid here: address, psk, remote-id)`},
		{"unknown field", bgpHub, "ipsec:\n  psk: k\n  pre-shared-key: x\n", `f.yaml:9:3: ipsec: unknown field "pre-shared-key" (valid here: psk, peers, local-id, remote-id, ike-proposals, esp-proposals, mode, ike-lifetime, lifetime, lifetime-kilobytes, dpd, replay-window, nat-keepalive, pfs, key-log)`},
		{"local-id kind", bgpHub, "ipsec:\n  psk: k\n  local-id: email:a@b\n", `f.yaml:9:13: ipsec.local-id: "email:a@b" is not valid (valid: address (tunnel.source), fqdn:NAME, keyid:TEXT or an IP address)`},
		{"local-id empty name", bgpHub, "ipsec:\n  psk: k\n  local-id: \"fqdn:\"\n", `f.yaml:9:13: ipsec.local-id: "fqdn:" has no name after "fqdn:" (valid: fqdn:1 to 255 bytes without spaces or control characters)`},
		{"local-id space", bgpHub, "ipsec:\n  psk: k\n  local-id: \"fqdn:a b\"\n", `ipsec.local-id: "fqdn:a b" has a space or control character at byte 2 of the name (valid: fqdn:1 to 255 bytes`},
		{"local-id long", bgpHub, "ipsec:\n  psk: k\n  local-id: keyid:" + strings.Repeat("x", 256) + "\n", `ipsec.local-id: "keyid:xxx`},
		{"local-id family", bgpHub, "ipsec:\n  psk: k\n  local-id: 2001:db8::1\n", `f.yaml:9:13: ipsec.local-id: 2001:db8::1 is IPv6 but tunnel.source 192.0.2.1 is IPv4 (valid: address, or an IPv4 address)`},
		{"local-id multicast", bgpHub, "ipsec:\n  psk: k\n  local-id: 224.0.0.1\n", `ipsec.local-id: "224.0.0.1" is a multicast address`},
		{"remote-id address word", bgpHub, "ipsec:\n  psk: k\n  remote-id: address\n", `f.yaml:9:14: ipsec.remote-id: "address" is only for local-id (valid: fqdn:NAME, keyid:TEXT or an IP address)`},
		{"peer remote-id", bgpHub, "ipsec:\n  psk: k\n  peers:\n    - address: 192.0.2.7\n      remote-id: spoke7\n", `f.yaml:11:18: ipsec.peers[0].remote-id: "spoke7" is not valid (valid: fqdn:NAME, keyid:TEXT or an IP address)`},
		{"mode", bgpHub, "ipsec:\n  psk: k\n  mode: aggressive\n", `f.yaml:9:9: ipsec.mode: "aggressive" is not valid (valid: transport, tunnel)`},
		{"ike-lifetime short", bgpHub, "ipsec:\n  psk: k\n  ike-lifetime: 60s\n", `f.yaml:9:17: ipsec.ike-lifetime: "60s" is not valid (valid: whole seconds from 120s to 86400s, e.g. 24h)`},
		{"lifetime long", bgpHub, "ipsec:\n  psk: k\n  lifetime: 25h\n", `f.yaml:9:13: ipsec.lifetime: "25h" is not valid (valid: whole seconds from 120s to 86400s, e.g. 1h)`},
		{"lifetime fraction", bgpHub, "ipsec:\n  psk: k\n  lifetime: 3600.5s\n", `ipsec.lifetime: "3600.5s" is not valid`},
		{"kilobytes small", bgpHub, "ipsec:\n  psk: k\n  lifetime-kilobytes: 100\n", `f.yaml:9:23: ipsec.lifetime-kilobytes: "100" is not valid (valid: 0 (no limit) or an integer 2560..4294967295, in kilobytes)`},
		{"kilobytes big", bgpHub, "ipsec:\n  psk: k\n  lifetime-kilobytes: 4294967296\n", `ipsec.lifetime-kilobytes: "4294967296" is not valid`},
		{"kilobytes quoted", bgpHub, "ipsec:\n  psk: k\n  lifetime-kilobytes: \"4608000\"\n", `ipsec.lifetime-kilobytes: "4608000" is quoted`},
		{"dpd short", bgpHub, "ipsec:\n  psk: k\n  dpd: 1s\n", `f.yaml:9:8: ipsec.dpd: "1s" is not valid (valid: 0s (off), or whole seconds from 2s to 3600s, e.g. 10s)`},
		{"dpd long", bgpHub, "ipsec:\n  psk: k\n  dpd: 2h\n", `ipsec.dpd: "2h" is not valid`},
		{"replay not power", bgpHub, "ipsec:\n  psk: k\n  replay-window: 1000\n", `f.yaml:9:18: ipsec.replay-window: 1000 is not a power of two (valid: a power of two from 64 to 65536, e.g. 1024)`},
		{"replay small", bgpHub, "ipsec:\n  psk: k\n  replay-window: 32\n", `ipsec.replay-window: "32" is not valid (valid: a power of two from 64 to 65536, e.g. 1024)`},
		{"replay big", bgpHub, "ipsec:\n  psk: k\n  replay-window: 131072\n", `ipsec.replay-window: "131072" is not valid`},
		{"keepalive short", bgpHub, "ipsec:\n  psk: k\n  nat-keepalive: 1s\n", `f.yaml:9:18: ipsec.nat-keepalive: "1s" is not valid (valid: 0s (off), or whole seconds from 5s to 3600s, e.g. 20s)`},
		{"pfs", bgpHub, "ipsec:\n  psk: k\n  pfs: modp1024\n", `f.yaml:9:8: ipsec.pfs: "modp1024" is not valid (valid: none, modp2048, ecp256, ecp384, ecp521, x25519)`},
		{"key-log relative", bgpHub, "ipsec:\n  psk: k\n  key-log: keys.log\n", `f.yaml:9:12: ipsec.key-log: "keys.log" is not valid (valid: an absolute file path of at most 4095 bytes, e.g. /var/lib/dmvpn/keys.log)`},
		{"key-log dir", bgpHub, "ipsec:\n  psk: k\n  key-log: /tmp/\n", `ipsec.key-log: "/tmp/" is not valid`},
		{"key-log long", bgpHub, "ipsec:\n  psk: k\n  key-log: /" + strings.Repeat("x", 4095) + "\n", `ipsec.key-log: "/xxx`},
		{"proposals not a list", bgpHub, "ipsec:\n  psk: k\n  ike-proposals: aes256-sha256-ecp256\n", `f.yaml:9:18: ipsec.ike-proposals: expected a list, got the value "aes256-sha256-ecp256" (valid: a list of up to 16 proposals`},
		{"section not a mapping", bgpHub, "ipsec: on\n", `f.yaml:7:8: ipsec: expected a mapping of fields, got the value "on"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tt.base+tt.ipsec))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v\nwant one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "kkkk") {
				t.Errorf("the psk is repeated: %v", err)
			}
		})
	}
}

// TestIPsecUDP: with ipsec the UDP transport is ESP-in-UDP on 4500, so
// the GRE-in-UDP ports say 4500, and other explicit ones are refused.
func TestIPsecUDP(t *testing.T) {
	udp := strings.Replace(ipsecSpoke, "  source: 198.51.100.1\n", "  source: 198.51.100.1\n  transport: udp\n", 1)
	c, err := Parse("u.yaml", []byte(udp+"ipsec:\n  psk: k\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tunnel.UDPPort != 4500 || c.NHRP.NHS[0].Port != 4500 || c.NHRP.Map[0].Port != 4500 {
		t.Errorf("ports: tunnel %d, nhs %d, map %d; want 4500", c.Tunnel.UDPPort, c.NHRP.NHS[0].Port, c.NHRP.Map[0].Port)
	}
	if got := c.Tunnel.LocalEndpoint(); got != netip.MustParseAddrPort("198.51.100.1:4500") {
		t.Errorf("LocalEndpoint() = %v", got)
	}
	explicit := strings.Replace(udp, "  transport: udp\n", "  transport: udp\n  udp-port: 4500\n", 1)
	if _, err := Parse("u.yaml", []byte(explicit+"ipsec:\n  psk: k\n")); err != nil {
		t.Errorf("udp-port: 4500 with ipsec: %v", err)
	}
	for _, tt := range []struct{ from, to, want string }{
		{"  transport: udp\n", "  transport: udp\n  udp-port: 4754\n",
			"u.yaml:6:13: tunnel.udp-port: 4754 is not used with ipsec: the UDP transport is then ESP-in-UDP on port 4500 (valid: remove it, or 4500)"},
		{"      nbma: 192.0.2.1\n", "      nbma: 192.0.2.1\n      port: 4755\n",
			"u.yaml:11:13: nhrp.nhs[0].port: 4755 is not used with ipsec: the UDP transport is then ESP-in-UDP on port 4500 (valid: remove it, or 4500)"},
		{"      nbma: 192.0.2.2\n", "      nbma: 192.0.2.2\n      port: 14754\n",
			"nhrp.map[0].port: 14754 is not used with ipsec"},
	} {
		_, err := Parse("u.yaml", []byte(strings.Replace(udp, tt.from, tt.to, 1)+"ipsec:\n  psk: k\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v\nwant one containing %q", err, tt.want)
		}
	}
	// Without ipsec the same ports are fine: GRE-in-UDP.
	c, err = Parse("u.yaml", []byte(strings.Replace(udp, "  transport: udp\n", "  transport: udp\n  udp-port: 4754\n", 1)))
	if err != nil || c.Tunnel.UDPPort != 4754 || c.NHRP.NHS[0].Port != 4754 {
		t.Errorf("without ipsec: %v, %+v", err, c)
	}
}

// TestIPsecSecretsNotPrinted: no key appears in error messages, in the
// config check summary, or when the Config is printed or encoded.
func TestIPsecSecretsNotPrinted(t *testing.T) {
	const cloud, peer = "Cloud-Secret-7f3a", "Peer-Secret-91bc"
	c, err := Parse("s.yaml", []byte(ipsecSpoke+"ipsec:\n  psk: "+cloud+"\n  peers:\n    - address: 192.0.2.1\n      psk: "+peer+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.IPsec.PSK) != cloud || string(c.IPsec.Peers[0].PSK) != peer {
		t.Fatalf("keys %q %q", string(c.IPsec.PSK), string(c.IPsec.Peers[0].PSK))
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"Summary": c.IPsec.Summary(), "%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", *c), "%#v": fmt.Sprintf("%#v", *c),
		"%s": fmt.Sprintf("%s", c.IPsec.PSK), "%q": fmt.Sprintf("%q", c.IPsec.Peers[0].PSK), "json": string(js),
	}
	for what, out := range outputs {
		if strings.Contains(out, cloud) || strings.Contains(out, peer) || strings.Contains(out, "Secret-") {
			t.Errorf("%s shows a key: %s", what, out)
		}
	}
	if !strings.Contains(outputs["%+v"], "<secret>") || !strings.Contains(outputs["Summary"], "cloud psk") {
		t.Errorf("%%+v = %s\nSummary = %s", outputs["%+v"], outputs["Summary"])
	}
	// Wrong in every way a key can be: still not repeated.
	for _, bad := range []string{"psk: " + strings.Repeat(cloud, 40), "psk: [" + cloud + "]", "psk: {" + cloud + ": 1}",
		"peers:\n    - address: 192.0.2.1\n      psk: " + strings.Repeat(peer, 40)} {
		_, err := Parse("s.yaml", []byte(ipsecSpoke+"ipsec:\n  "+bad+"\n"))
		if err == nil {
			t.Errorf("%s: no error", bad)
			continue
		}
		if strings.Contains(err.Error(), cloud) || strings.Contains(err.Error(), peer) {
			t.Errorf("%s: the key is repeated: %v", bad, err)
		}
	}
}

// FuzzIPsecProposal: any proposal string is refused with an error or
// parsed into a proposal the codecs implement, keeping its text.
func FuzzIPsecProposal(f *testing.F) {
	for _, s := range append(append([]string{"aes128-md5", "aes256gcm16-sha256-ecp256", "--", "aes256-sha256-x25519-curve25519"},
		DefaultIKEProposalNames...), DefaultESPProposalNames...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := strconv.Quote(s)
		c, err := Parse("f.yaml", []byte(bgpHub+"ipsec:\n  psk: k\n  ike-proposals: ["+v+"]\n"))
		if err == nil {
			p := c.IPsec.IKEProposals[0]
			if p.Text != s || checkIKE(p) != nil || len(p.Groups) == 0 || len(p.PRF) == 0 {
				t.Errorf("ike %q accepted as %+v", s, p)
			}
		}
		c, err = Parse("f.yaml", []byte(bgpHub+"ipsec:\n  psk: k\n  esp-proposals: ["+v+"]\n"))
		if err == nil {
			p := c.IPsec.ESPProposals[0]
			tr := esp.Transform{Encryption: p.Encryption, KeyBits: p.KeyBits}
			if len(p.Integrity) > 0 {
				tr.Integrity = p.Integrity[0]
			}
			if p.Text != s || tr.Valid() != nil || len(p.ESN) == 0 || len(p.ESN) > 2 {
				t.Errorf("esp %q accepted as %+v", s, p)
			}
		}
	})
}
