package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/ikev2"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

const (
	hubAddr   = "192.0.2.1"
	spokeAddr = "198.51.100.1"
)

var hubEP = ap(hubAddr + ":500")

func cbcSuite(g ...ikecrypto.Group) []IKEProposal {
	return []IKEProposal{{Encryption: ikecrypto.EncrAESCBC, KeyBits: 256,
		Integrity: []ikecrypto.Integrity{ikecrypto.IntegHMACSHA512256}, PRF: []ikecrypto.PRF{ikecrypto.PRFHMACSHA2512}, Groups: g}}
}

func gcmSuite(g ...ikecrypto.Group) []IKEProposal {
	return []IKEProposal{{Encryption: ikecrypto.EncrAESGCM16, KeyBits: 256,
		PRF: []ikecrypto.PRF{ikecrypto.PRFHMACSHA2256}, Groups: g}}
}

// scenario is one row: configurations, how the network misbehaves, what
// happens, what both sides must end up with.
type scenario struct {
	name       string
	init, resp func(c *Config)
	setup      func(n *testNet, i, r *node)
	act        func(t *testing.T, n *testNet, i, r *node)
	check      func(t *testing.T, n *testNet, i, r *node)
}

// establish is the default act: the spoke initiates to the hub.
func establish(t *testing.T, n *testNet, i, r *node) {
	if err := i.eng.Initiate(n.now, hubEP); err != nil {
		t.Fatal(err)
	}
	n.runFor(30 * time.Second)
}

// isUp is the default check: one SA each, agreeing, keys that work.
func isUp(t *testing.T, n *testNet, i, r *node) {
	t.Helper()
	checkPair(t, i, r)
	if len(i.of(IKESAUp)) != 1 || len(r.of(IKESAUp)) != 1 || len(i.of(IKESAFailed))+len(r.of(IKESAFailed)) != 0 {
		t.Fatalf("events: initiator %v, responder %v", types(i.events), types(r.events))
	}
	if c := i.liveChildren()[0]; c.Mode != Transport || c.Local != ad(spokeAddr) || c.Remote != ad(hubAddr) {
		t.Fatalf("initiator's Child SA %+v", c)
	}
}

// failed checks that nothing is up on either side and the initiator's
// attempt failed with a reason containing want.
func failed(want string) func(t *testing.T, n *testNet, i, r *node) {
	return func(t *testing.T, n *testNet, i, r *node) {
		t.Helper()
		if len(i.eng.SAs()) != 0 || len(r.eng.SAs()) != 0 {
			t.Fatalf("SAs left: initiator %+v, responder %+v", i.eng.SAs(), r.eng.SAs())
		}
		if len(i.liveChildren()) != 0 || len(r.liveChildren()) != 0 {
			t.Fatal("Child SAs left up")
		}
		f := i.of(IKESAFailed)
		if len(f) != 1 || !strings.Contains(f[0].Reason, want) {
			t.Fatalf("initiator events %v (%+v), want one failure with %q", types(i.events), f, want)
		}
	}
}

func types(evs []Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.Type.String()+"("+ev.Reason+")")
	}
	return strings.Join(s, " ")
}

// lossOnce drops the k-th datagram (0: the first IKE_SA_INIT request).
func lossOnce(k int) func(n *testNet, i, r *node) {
	return func(n *testNet, i, r *node) {
		seen := 0
		n.filter = func(f *frame) verdict {
			seen++
			if seen == k+1 {
				return dropIt
			}
			return deliver
		}
	}
}

func TestScenarios(t *testing.T) {
	var rows []scenario
	// Every group with the CBC suite, the GCM suite with its groups.
	for _, g := range []ikecrypto.Group{ikecrypto.GroupMODP2048, ikecrypto.GroupECP256, ikecrypto.GroupECP384,
		ikecrypto.GroupECP521, ikecrypto.GroupCurve25519} {
		rows = append(rows, scenario{name: "establish/cbc-sha512/" + g.String(),
			init: func(c *Config) { c.IKEProposals = cbcSuite(g) }, resp: func(c *Config) { c.IKEProposals = cbcSuite(g) }})
	}
	for _, g := range []ikecrypto.Group{ikecrypto.GroupECP256, ikecrypto.GroupCurve25519} {
		rows = append(rows, scenario{name: "establish/gcm256/" + g.String(),
			init: func(c *Config) { c.IKEProposals = gcmSuite(g) }, resp: func(c *Config) { c.IKEProposals = gcmSuite(g) }})
	}
	// Every ESP transform, ESN on and off.
	for _, p := range []ESPProposal{
		{Encryption: esp.EncrAESCBC, KeyBits: 128, Integrity: []esp.Integrity{esp.IntegHMACSHA1_96}, ESN: []bool{false}},
		{Encryption: esp.EncrAESCBC, KeyBits: 256, Integrity: []esp.Integrity{esp.IntegHMACSHA256128}, ESN: []bool{true}},
		{Encryption: esp.EncrAESGCM16, KeyBits: 128, ESN: []bool{true}},
		{Encryption: esp.EncrAESGCM16, KeyBits: 256, ESN: []bool{false}},
	} {
		rows = append(rows, scenario{name: fmt.Sprintf("establish/esp/%v/esn=%v", esp.Transform{Encryption: p.Encryption, KeyBits: p.KeyBits}, p.ESN[0]),
			init: func(c *Config) { c.ESPProposals = []ESPProposal{p} },
			resp: func(c *Config) { c.ESPProposals = []ESPProposal{p} },
			check: func(t *testing.T, n *testNet, i, r *node) {
				isUp(t, n, i, r)
				if c := i.liveChildren()[0]; c.ESN != p.ESN[0] || c.Transform.Encryption != p.Encryption || c.Transform.KeyBits != p.KeyBits {
					t.Fatalf("negotiated %+v", c)
				}
			}})
	}
	rows = append(rows,
		scenario{name: "defaults pick Cisco's smart default",
			check: func(t *testing.T, n *testNet, i, r *node) {
				isUp(t, n, i, r)
				s := i.established()[0].Suite
				if s.Encryption != ikecrypto.EncrAESCBC || s.KeyBits != 256 || s.Integrity != ikecrypto.IntegHMACSHA512256 || s.PRF != ikecrypto.PRFHMACSHA2512 {
					t.Fatalf("suite %v", s)
				}
				if c := i.liveChildren()[0]; c.Transform != esp.CBC128SHA1 || !c.ESN {
					t.Fatalf("child %+v", c)
				}
			}},
		scenario{name: "INVALID_KE_PAYLOAD then retry",
			init: func(c *Config) { c.IKEProposals = cbcSuite(ikecrypto.GroupCurve25519, ikecrypto.GroupECP256) },
			resp: func(c *Config) { c.IKEProposals = cbcSuite(ikecrypto.GroupECP256) },
			check: func(t *testing.T, n *testNet, i, r *node) {
				isUp(t, n, i, r)
				if s := r.eng.Stats(); s.InvalidKESent != 1 {
					t.Fatalf("INVALID_KE sent %d times", s.InvalidKESent)
				}
				if got := len(i.sentOf(ikev2.ExchangeIKESAInit, false)); got != 2 {
					t.Fatalf("%d IKE_SA_INIT requests", got)
				}
			}},
		scenario{name: "INVALID_KE_PAYLOAD for a group not configured",
			init: func(c *Config) { c.IKEProposals = gcmSuite(ikecrypto.GroupCurve25519) },
			resp: func(c *Config) {
				c.IKEProposals = []IKEProposal{gcmSuite(ikecrypto.GroupECP256)[0], gcmSuite(ikecrypto.GroupCurve25519)[0]}
				c.IKEProposals[0].Groups = []ikecrypto.Group{ikecrypto.GroupECP256, ikecrypto.GroupCurve25519}
			},
			// The responder prefers the KE's group when it may: no round trip.
			check: isUp},
		scenario{name: "no proposal chosen",
			init: func(c *Config) { c.IKEProposals = gcmSuite(ikecrypto.GroupECP256) },
			resp: func(c *Config) { c.IKEProposals = cbcSuite(ikecrypto.GroupECP256) },
			check: func(t *testing.T, n *testNet, i, r *node) {
				failed("NO_PROPOSAL_CHOSEN")(t, n, i, r)
				if r.eng.Stats().NoProposalSent != 1 {
					t.Fatal("no NO_PROPOSAL_CHOSEN sent")
				}
			}},
		scenario{name: "no ESP proposal chosen: IKE SA up, Child SA refused",
			init: func(c *Config) {
				c.ESPProposals = []ESPProposal{{Encryption: esp.EncrAESGCM16, KeyBits: 128, ESN: []bool{true}}}
			},
			resp: func(c *Config) {
				c.ESPProposals = []ESPProposal{{Encryption: esp.EncrAESGCM16, KeyBits: 256, ESN: []bool{true}}}
			},
			check: func(t *testing.T, n *testNet, i, r *node) {
				if len(i.established()) != 1 || len(r.established()) != 1 || len(i.liveChildren())+len(r.liveChildren()) != 0 {
					t.Fatalf("initiator %v, responder %v", types(i.events), types(r.events))
				}
				f := i.of(ChildSAFailed)
				if len(f) != 1 || !strings.Contains(f[0].Reason, "NO_PROPOSAL_CHOSEN") {
					t.Fatalf("initiator events %v", types(i.events))
				}
			}},
		scenario{name: "wrong PSK at the initiator",
			init:  func(c *Config) { c.PSK = []byte("not the cloud secret") },
			check: authFailedBoth},
		scenario{name: "wrong PSK at the responder",
			resp:  func(c *Config) { c.PSK = []byte("not the cloud secret") },
			check: authFailedBoth},
		scenario{name: "per-peer PSK",
			init:  func(c *Config) { c.PSK = nil; c.Peers = map[netip.Addr]Peer{ad(hubAddr): {PSK: []byte("pairwise")}} },
			resp:  func(c *Config) { c.Peers = map[netip.Addr]Peer{ad(spokeAddr): {PSK: []byte("pairwise")}} },
			check: isUp},
		scenario{name: "identities: FQDN and KEY_ID checked",
			init: func(c *Config) { c.LocalID = FQDNID("spoke1.example"); c.RemoteID = KeyID([]byte("hub")) },
			resp: func(c *Config) { c.LocalID = KeyID([]byte("hub")); c.RemoteID = FQDNID("spoke1.example") },
			check: func(t *testing.T, n *testNet, i, r *node) {
				isUp(t, n, i, r)
				if got := r.of(IKESAUp)[0].RemoteID; !got.Equal(FQDNID("spoke1.example")) {
					t.Fatalf("responder sees %v", got)
				}
				if got := i.of(IKESAUp)[0].RemoteID; !got.Equal(KeyID([]byte("hub"))) {
					t.Fatalf("initiator sees %v", got)
				}
			}},
		scenario{name: "wrong identity at the responder's check",
			init:  func(c *Config) { c.LocalID = FQDNID("spoke2.example") },
			resp:  func(c *Config) { c.Peers = map[netip.Addr]Peer{ad(spokeAddr): {RemoteID: FQDNID("spoke1.example")}} },
			check: authFailedBoth},
		scenario{name: "wrong identity at the initiator's check",
			init: func(c *Config) { c.RemoteID = AddrID(ad("192.0.2.99")) },
			check: func(t *testing.T, n *testNet, i, r *node) {
				failed("identity")(t, n, i, r)
				// The responder was up, then told by AUTHENTICATION_FAILED.
				if len(r.of(IKESAUp)) != 1 || len(r.of(IKESADown)) != 1 || len(r.of(ChildSADown)) != 1 {
					t.Fatalf("responder events %v", types(r.events))
				}
			}},
		scenario{name: "initiator behind NAT floats to 4500",
			setup: func(n *testNet, i, r *node) { n.behindNAT(i, "203.0.113.7") },
			check: func(t *testing.T, n *testNet, i, r *node) {
				checkPair(t, i, r)
				ie, re := i.of(IKESAUp)[0], r.of(IKESAUp)[0]
				if ie.NAT != (NAT{Local: true}) || re.NAT != (NAT{Remote: true}) {
					t.Fatalf("NAT: initiator %+v, responder %+v", ie.NAT, re.NAT)
				}
				ci, cr := i.liveChildren()[0], r.liveChildren()[0]
				if !ci.UDPEncap || !cr.UDPEncap || ci.Peer != ap(hubAddr+":4500") || cr.Peer.Addr() != ad("203.0.113.7") {
					t.Fatalf("ESP endpoints: initiator %+v, responder %+v", ci, cr)
				}
				// IKE_AUTH went over 4500 with the marker.
				auth := i.sentOf(ikev2.ExchangeIKEAuth, false)
				if len(auth) != 1 || !auth[0].natt || auth[0].to != ap(hubAddr+":4500") {
					t.Fatalf("IKE_AUTH sent %+v", auth)
				}
			}},
		scenario{name: "responder behind NAT",
			setup: func(n *testNet, i, r *node) {
				n.behindNAT(r, "203.0.113.9")
				// A port forward for 500 and 4500, as a hub behind NAT has.
				for _, p := range []uint16{500, 4500} {
					in, out := netip.AddrPortFrom(r.addr, p), ap(fmt.Sprintf("203.0.113.9:%d", p))
					n.natOut[in], n.natBack[out] = out, in
				}
			},
			act: func(t *testing.T, n *testNet, i, r *node) {
				if err := i.eng.Initiate(n.now, ap("203.0.113.9:500")); err != nil {
					t.Fatal(err)
				}
				n.runFor(30 * time.Second)
			},
			check: func(t *testing.T, n *testNet, i, r *node) {
				checkPair(t, i, r)
				if ie, re := i.of(IKESAUp)[0], r.of(IKESAUp)[0]; ie.NAT != (NAT{Remote: true}) || re.NAT != (NAT{Local: true}) {
					t.Fatalf("NAT: initiator %+v, responder %+v", ie.NAT, re.NAT)
				}
			}},
		scenario{name: "duplicated datagrams",
			setup: func(n *testNet, i, r *node) { n.filter = func(*frame) verdict { return duplicate } },
			check: func(t *testing.T, n *testNet, i, r *node) {
				isUp(t, n, i, r)
				if s := r.eng.Stats(); s.Reanswered != 2 {
					t.Fatalf("responder re-answered %d requests, want 2", s.Reanswered)
				}
			}},
		scenario{name: "old datagrams replayed after the handshake",
			act: func(t *testing.T, n *testNet, i, r *node) {
				establish(t, n, i, r)
				for _, f := range append([]frame(nil), n.log...) {
					n.deliverFrame(f)
				}
				n.runFor(time.Minute)
			},
			check: func(t *testing.T, n *testNet, i, r *node) {
				isUp(t, n, i, r)
				if s := r.eng.Stats(); s.Dropped[DropOutOfWindow] == 0 || s.HalfOpen != 0 {
					t.Fatalf("responder stats %+v", s)
				}
			}},
	)
	for k := range 4 {
		rows = append(rows, scenario{name: fmt.Sprintf("lost once: datagram %d", k), setup: lossOnce(k),
			check: func(t *testing.T, n *testNet, i, r *node) {
				isUp(t, n, i, r)
				if s := i.eng.Stats(); s.Retransmitted != 1 {
					t.Fatalf("initiator retransmitted %d times", s.Retransmitted)
				}
			}})
	}
	for _, sc := range rows {
		t.Run(sc.name, func(t *testing.T) {
			n := newNet(t)
			ic, rc := Config{}, Config{}
			if sc.init != nil {
				sc.init(&ic)
			}
			if sc.resp != nil {
				sc.resp(&rc)
			}
			r := n.add(hubAddr, rc)
			i := n.add(spokeAddr, ic)
			if sc.setup != nil {
				sc.setup(n, i, r)
			}
			act := sc.act
			if act == nil {
				act = establish
			}
			act(t, n, i, r)
			check := sc.check
			if check == nil {
				check = isUp
			}
			check(t, n, i, r)
		})
	}
}

func authFailedBoth(t *testing.T, n *testNet, i, r *node) {
	t.Helper()
	failed("authentication failed")(t, n, i, r)
	f := r.of(IKESAFailed)
	if len(f) != 1 || !strings.Contains(f[0].Reason, "authentication failed") || len(r.of(IKESAUp)) != 0 {
		t.Fatalf("responder events %v", types(r.events))
	}
	if r.eng.Stats().AuthFailures != 1 {
		t.Fatal("responder did not count the failure")
	}
}

func TestIPv6(t *testing.T) {
	n := newNet(t)
	r := n.add("2001:db8::1", Config{})
	i := n.add("2001:db8::2", Config{})
	if err := i.eng.Initiate(n.now, ap("[2001:db8::1]:500")); err != nil {
		t.Fatal(err)
	}
	n.runFor(10 * time.Second)
	checkPair(t, i, r)
	c := i.liveChildren()[0]
	if c.Local != ad("2001:db8::2") || c.Remote != ad("2001:db8::1") || c.Mode != Transport {
		t.Fatalf("child %+v", c)
	}
	if id := r.of(IKESAUp)[0].RemoteID; id.Type != ikev2.IDIPv6Addr || id.String() != "2001:db8::2" {
		t.Fatalf("identity %v", id)
	}
}

// A responder configured for tunnel mode refuses transport: the SA is a
// tunnel-mode SA on both sides, and says so.
func TestTunnelModeFallback(t *testing.T) {
	n := newNet(t)
	r := n.add(hubAddr, Config{TunnelMode: true})
	i := n.add(spokeAddr, Config{})
	if err := i.eng.Initiate(n.now, hubEP); err != nil {
		t.Fatal(err)
	}
	n.runFor(10 * time.Second)
	checkPair(t, i, r)
	if ci, cr := i.liveChildren()[0], r.liveChildren()[0]; ci.Mode != Tunnel || cr.Mode != Tunnel {
		t.Fatalf("modes %v %v", ci.Mode, cr.Mode)
	}
}

// A responder that is asked for selectors other than GRE between the hosts
// answers TS_UNACCEPTABLE.
func TestTSUnacceptable(t *testing.T) {
	n := newNet(t)
	r := n.add(hubAddr, Config{})
	i := n.add(spokeAddr, Config{})
	// The initiator claims an address of the other family for its end of
	// the selectors (and NAT detection sees a translation, so any one host
	// of the right family would have done).
	i.eng.cfg.Local = ad("2001:db8::7")
	if err := i.eng.Initiate(n.now, hubEP); err != nil {
		t.Fatal(err)
	}
	n.runFor(10 * time.Second)
	f := i.of(ChildSAFailed)
	if len(f) != 1 || !strings.Contains(f[0].Reason, "TS_UNACCEPTABLE") || len(i.liveChildren())+len(r.liveChildren()) != 0 {
		t.Fatalf("initiator %v; responder %v", types(i.events), types(r.events))
	}
}

func TestInitiateTwice(t *testing.T) {
	n := newNet(t)
	n.add(hubAddr, Config{})
	i := n.add(spokeAddr, Config{})
	if err := i.eng.Initiate(n.now, hubEP); err != nil {
		t.Fatal(err)
	}
	if err := i.eng.Initiate(n.now, hubEP); !errors.Is(err, ErrExists) {
		t.Fatalf("second Initiate: %v", err)
	}
	n.runFor(5 * time.Second)
	if err := i.eng.Initiate(n.now, hubEP); !errors.Is(err, ErrExists) {
		t.Fatalf("Initiate with an SA up: %v", err)
	}
}

// The initiator's retransmissions follow 0.5, 1, 2, 4, 8 s exactly, then
// the attempt fails.
func TestRetransmitSchedule(t *testing.T) {
	n := newNet(t)
	i := n.add(spokeAddr, Config{})
	if err := i.eng.Initiate(n.now, hubEP); err != nil {
		t.Fatal(err)
	}
	n.runFor(time.Minute)
	var at []time.Duration
	for _, f := range i.sent {
		at = append(at, f.at.Sub(t0))
	}
	want := []time.Duration{0, 500 * time.Millisecond, 1500 * time.Millisecond, 3500 * time.Millisecond, 7500 * time.Millisecond}
	if fmt.Sprint(at) != fmt.Sprint(want) {
		t.Fatalf("sent at %v, want %v", at, want)
	}
	f := i.of(IKESAFailed)
	if len(f) != 1 || f[0].Time.Sub(t0) != 15500*time.Millisecond || len(i.eng.SAs()) != 0 {
		t.Fatalf("failure %+v", f)
	}
}
