package e2e

// Interop of our IKEv2 engine (ikev2/engine) with strongSwan 5.9.8's charon,
// both roles, end to end: genuine UDP sockets in two namespaces (the harness is
// ike_helpers_test.go). charon here is kernel-libipsec (userspace ESP,
// always ESP in UDP 4500: it fakes a NAT to force the encapsulation, and
// tunnel mode only), so our engine proposes GRE between the hosts with
// USE_TRANSPORT_MODE and must fall back to tunnel mode. What is checked, as
// an engineer would at both ends:
//
//   - our IKESAUp and ChildSAUp events, and charon's `swanctl --list-sas`:
//     the IKE SA ESTABLISHED and the CHILD_SA INSTALLED with the same SPIs
//     (our inbound is its outbound), algorithms, identities, selectors;
//   - the keys agree: one ESP packet sealed with our outbound SA is
//     accepted by charon (its packets-in counts it, a forged one is not
//     counted, and the GRE packet inside reaches charon's namespace), and
//     a GRE packet sent in charon's namespace comes to us as ESP that our
//     inbound SA opens;
//   - deletes both ways, and dead peer detection against a stopped charon;
//   - tshark decodes every IKE message of the capture with 0 Malformed.

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/ikev2/engine"
	"github.com/dmvpn/dmvpn/internal/testenv"
)

// upLimit bounds an IKE_SA_INIT + IKE_AUTH between the namespaces (a few
// milliseconds when it works; retransmissions would take seconds).
const upLimit = 10 * time.Second

// strongSwan's names for our algorithms.
var (
	swanEncr = map[esp.Encryption]string{esp.EncrAESCBC: "AES_CBC", esp.EncrAESGCM16: "AES_GCM_16",
		esp.EncrChaCha20Poly1305: "CHACHA20_POLY1305"}
	swanInteg = map[esp.Integrity]string{esp.IntegHMACSHA1_96: "HMAC_SHA1_96", esp.IntegHMACSHA256128: "HMAC_SHA2_256_128",
		esp.IntegHMACSHA384192: "HMAC_SHA2_384_192", esp.IntegHMACSHA512256: "HMAC_SHA2_512_256"}
	swanPRF = map[string]string{"prf-hmac-sha256": "PRF_HMAC_SHA2_256", "prf-hmac-sha384": "PRF_HMAC_SHA2_384",
		"prf-hmac-sha512": "PRF_HMAC_SHA2_512", "prf-hmac-sha1": "PRF_HMAC_SHA1"}
)

// TestIKEStrongSwanResponder: our engine initiates, charon answers. IKE
// AES-CBC-256/HMAC-SHA-512/ECP-256 (our first proposal, charon's first),
// FQDN identities, ESP AES-CBC-128/HMAC-SHA1-96 (Cisco's default transform
// set), tunnel mode after charon ignored USE_TRANSPORT_MODE.
func TestIKEStrongSwanResponder(t *testing.T) {
	e := newIKEEnv(t, 'Q')
	testenv.RequireTool(t, "tshark")
	sw := e.startCharon(swanConn{LocalID: "swan.test", RemoteID: "dmvpn.test",
		Proposals: "aes256-sha512-ecp256, aes256gcm16-prfsha256-x25519", ESPProposals: "aes128-sha1, aes128gcm16"})
	ours := e.startOurs(engine.Config{PSK: []byte(ikePSK), LocalID: engine.FQDNID("dmvpn.test"),
		RemoteID: engine.FQDNID("swan.test")})
	dump := e.startTcpdump()

	t0 := time.Now()
	if err := ours.eng.Initiate(t0, netip.AddrPortFrom(ikeSwanAddr, 500)); err != nil {
		t.Fatal(err)
	}
	ours.poke()
	ike, i := ours.waitEvent(e, engine.IKESAUp, 0, upLimit)
	child, _ := ours.waitEvent(e, engine.ChildSAUp, i, upLimit)
	t.Logf("IKE SA and Child SA up in %v", time.Since(t0).Round(time.Microsecond))
	if !ike.Initiator || ike.RemoteID.String() != "swan.test" {
		t.Errorf("IKESAUp: initiator %v, remote id %q; want us the initiator, swan.test", ike.Initiator, ike.RemoteID)
	}
	// charon fakes a NAT to force UDP encapsulation (libipsec has no raw
	// ESP): we see the peer as translated, and float to 4500.
	if !ike.NAT.Remote || ike.Peer != netip.AddrPortFrom(ikeSwanAddr, 4500) {
		t.Errorf("IKESAUp: NAT %+v, peer %v; want the peer's NAT detected and the SA on %v:4500", ike.NAT, ike.Peer, ikeSwanAddr)
	}
	s := e.checkAgree(sw, ours, ike, child, "ECP_256")
	if s.LocalID != "swan.test" || s.RemoteID != "dmvpn.test" {
		t.Errorf("charon's identities: local %q remote %q, want swan.test and dmvpn.test", s.LocalID, s.RemoteID)
	}
	e.checkESP(sw, ours, child.Child)

	dump.stop()
	e.checkCapture(dump.pcap, ike, child.Child)
}

// TestIKEStrongSwanInitiator: charon initiates (`swanctl --initiate`),
// our engine answers. IKE AES-GCM-256/PRF-SHA-256/Curve25519 (charon's
// first proposal, our second), IPv4 address identities, ESP AES-GCM-128,
// tunnel mode (charon does not ask for transport). Then, on that SA:
// charon's liveness checks (dpd_delay 1s) are answered. (Rekeys:
// TestIKEStrongSwanRekey.)
func TestIKEStrongSwanInitiator(t *testing.T) {
	e := newIKEEnv(t, 'R')
	sw := e.startCharon(swanConn{LocalID: ikeSwanAddr.String(), RemoteID: ikeOurAddr.String(),
		Proposals: "aes256gcm16-prfsha256-x25519, aes256-sha512-ecp256", ESPProposals: "aes128gcm16, aes128-sha1",
		DPDDelay: "1s"})
	ours := e.startOurs(engine.Config{PSK: []byte(ikePSK), RemoteID: engine.AddrID(ikeSwanAddr)})

	t0 := time.Now()
	if out, err := sw.swanctl("--initiate", "--child", "gre", "--timeout", "10"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ike, i := ours.waitEvent(e, engine.IKESAUp, 0, upLimit)
	child, _ := ours.waitEvent(e, engine.ChildSAUp, i, upLimit)
	t.Logf("charon's initiation done, our SAs up, in %v", time.Since(t0).Round(time.Millisecond))
	if ike.Initiator || !ike.RemoteID.Equal(engine.AddrID(ikeSwanAddr)) {
		t.Errorf("IKESAUp: initiator %v, remote id %v; want charon the initiator, %v", ike.Initiator, ike.RemoteID, ikeSwanAddr)
	}
	if !ike.NAT.Remote || ike.Peer != netip.AddrPortFrom(ikeSwanAddr, 4500) {
		t.Errorf("IKESAUp: NAT %+v, peer %v; want charon's faked NAT seen and its float to 4500 followed", ike.NAT, ike.Peer)
	}
	s := e.checkAgree(sw, ours, ike, child, "CURVE_25519")
	if s.LocalID != ikeSwanAddr.String() || s.RemoteID != ikeOurAddr.String() {
		t.Errorf("charon's identities: local %q remote %q, want %v and %v", s.LocalID, s.RemoteID, ikeSwanAddr, ikeOurAddr)
	}
	e.checkESP(sw, ours, child.Child)

	// charon's DPD: two liveness checks (empty INFORMATIONAL requests)
	// answered, none retransmitted.
	if err := e.poll(5*time.Second, 50*time.Millisecond, func() error {
		reqs, answered, retrans := sw.dpdSeen()
		if answered < 2 {
			return fmt.Errorf("charon's log: %d DPD requests, %d answered, %d retransmissions", reqs, answered, retrans)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if reqs, answered, retrans := sw.dpdSeen(); retrans != 0 || answered+1 < reqs {
		t.Errorf("charon's DPD: %d requests, %d answered, %d retransmissions", reqs, answered, retrans)
	}
	if st := ours.eng.Stats(); st.Reanswered != 0 || st.IKESAs != 1 || st.Dropped != [len(st.Dropped)]uint64{} {
		t.Errorf("our engine after charon's DPD: %+v", st)
	}

}

// TestIKEStrongSwanDelete: deletes both ways, Child SA then IKE SA. Our
// DeleteChild makes charon drop the CHILD_SA and keep the IKE SA, our
// Delete (with the endpoint our events name) makes it drop the IKE SA;
// then, on a new pair, charon's `swanctl --terminate --child` and
// `--terminate --ike` make our engine report ChildSADown and IKESADown.
func TestIKEStrongSwanDelete(t *testing.T) {
	e := newIKEEnv(t, 'S')
	sw := e.startCharon(swanConn{LocalID: "swan.test", RemoteID: "dmvpn.test",
		Proposals: "aes256-sha512-ecp256", ESPProposals: "aes128-sha1"})
	ours := e.startOurs(engine.Config{PSK: []byte(ikePSK), LocalID: engine.FQDNID("dmvpn.test")})
	swan := netip.AddrPortFrom(ikeSwanAddr, 500)
	establish := func() (engine.Event, engine.Event) {
		t.Helper()
		mark := len(ours.snapshot())
		if err := ours.eng.Initiate(time.Now(), swan); err != nil {
			t.Fatal(err)
		}
		ours.poke()
		ike, i := ours.waitEvent(e, engine.IKESAUp, mark, upLimit)
		child, _ := ours.waitEvent(e, engine.ChildSAUp, i, upLimit)
		e.checkAgree(sw, ours, ike, child, "ECP_256")
		return ike, child
	}
	// childGone waits until charon lists the IKE SA without a CHILD_SA,
	// and checks ours still holds it.
	childGone := func(ike engine.Event, who string) {
		t.Helper()
		if err := e.swanWait(sw, 5*time.Second, func(sas []swanIKE) error {
			if len(sas) != 1 || sas[0].State != "ESTABLISHED" || len(sas[0].Children) != 0 ||
				sas[0].SPIi != uint64(ike.SPIi) {
				return fmt.Errorf("charon lists %+v, want the IKE SA %v/%v ESTABLISHED without a CHILD_SA", sas, ike.SPIi, ike.SPIr)
			}
			return nil
		}); err != nil {
			t.Fatalf("after %s: %v", who, err)
		}
		if sas := ours.eng.SAs(); len(sas) != 1 || sas[0].State != "established" || sas[0].NumChildren != 0 {
			t.Fatalf("after %s our engine holds %+v, want the IKE SA established without a Child SA", who, sas)
		}
	}
	checkDown := func(got engine.Event, want engine.Event, reason string) {
		t.Helper()
		if got.SPIi != want.SPIi || got.SPIr != want.SPIr || !strings.Contains(got.Reason, reason) {
			t.Errorf("%s for %v/%v (%q), want %v/%v (%q)", got.Type, got.SPIi, got.SPIr, got.Reason, want.SPIi, want.SPIr, reason)
		}
		if want.Child != nil && (got.Child == nil || got.Child.Inbound.SPI != want.Child.Inbound.SPI ||
			got.Child.Outbound.SPI != want.Child.Outbound.SPI) {
			t.Errorf("%s for Child SA %+v, want in %08x out %08x", got.Type, got.Child, want.Child.Inbound.SPI, want.Child.Outbound.SPI)
		}
	}

	// 1. Ours: DeleteChild, then Delete with the endpoint IKESAUp named.
	ike, child := establish()
	mark := len(ours.snapshot())
	t0 := time.Now()
	if err := ours.eng.DeleteChild(t0, child.Child.Inbound.SPI, "test: delete child"); err != nil {
		t.Fatal(err)
	}
	ours.poke()
	cdown, _ := ours.waitEvent(e, engine.ChildSADown, mark, time.Second)
	checkDown(cdown, child, "test: delete child")
	childGone(ike, "our DeleteChild")
	t.Logf("our DeleteChild: charon lists its IKE SA without CHILD_SA after %v", time.Since(t0).Round(time.Millisecond))

	mark = len(ours.snapshot())
	t0 = time.Now()
	if err := ours.eng.Delete(t0, ike.Peer, "test: delete"); err != nil {
		t.Fatalf("Delete(%v), the peer of our IKESAUp: %v", ike.Peer, err)
	}
	ours.poke()
	down, _ := ours.waitEvent(e, engine.IKESADown, mark, time.Second)
	checkDown(down, ike, "test: delete")
	if err := e.swanWait(sw, 5*time.Second, func(sas []swanIKE) error {
		if len(sas) != 0 {
			return fmt.Errorf("charon still lists %+v", sas)
		}
		return nil
	}); err != nil {
		t.Fatalf("after our Delete: %v", err)
	}
	t.Logf("our Delete: charon lists no SA after %v", time.Since(t0).Round(time.Millisecond))
	if err := e.poll(5*time.Second, 20*time.Millisecond, func() error {
		if sas := ours.eng.SAs(); len(sas) != 0 {
			return fmt.Errorf("our engine still holds %+v", sas)
		}
		return nil
	}); err != nil {
		t.Fatalf("charon did not answer our Delete: %v", err)
	}

	// 2. charon: terminate the CHILD_SA, then the IKE SA, of a new pair.
	ike, child = establish()
	mark = len(ours.snapshot())
	t0 = time.Now()
	if out, err := sw.swanctl("--terminate", "--child", "gre", "--timeout", "5"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	cdown, _ = ours.waitEvent(e, engine.ChildSADown, mark, 5*time.Second)
	checkDown(cdown, child, "deleted by the peer")
	childGone(ike, "charon's terminate --child")
	t.Logf("charon's terminate --child: our ChildSADown after %v", time.Since(t0).Round(time.Millisecond))

	mark = len(ours.snapshot())
	t0 = time.Now()
	if out, err := sw.swanctl("--terminate", "--ike", "dmvpn", "--timeout", "5"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	down, _ = ours.waitEvent(e, engine.IKESADown, mark, 5*time.Second)
	checkDown(down, ike, "deleted by the peer")
	t.Logf("charon's terminate --ike: our IKESADown after %v (%q)", time.Since(t0).Round(time.Millisecond), down.Reason)
	if evs := ours.snapshot()[mark:]; len(evs) != 1 {
		t.Errorf("events after the IKE SA's terminate: %d, want IKESADown alone (its Child SA was gone)", len(evs))
	}
	if sas := ours.eng.SAs(); len(sas) != 0 {
		t.Errorf("our engine still holds %+v", sas)
	}
	if sas, err := sw.listSAs(); err != nil || len(sas) != 0 {
		t.Errorf("charon lists %+v (%v) after its terminate", sas, err)
	}
}

// TestIKEStrongSwanDPD: with a 1 s DPD interval our liveness checks are
// answered while charon runs; once charon is stopped (SIGSTOP) the engine
// declares it dead within interval + the retransmissions (200 ms base,
// 3 tries: 1.4 s).
func TestIKEStrongSwanDPD(t *testing.T) {
	e := newIKEEnv(t, 'T')
	sw := e.startCharon(swanConn{LocalID: "swan.test", RemoteID: "dmvpn.test",
		Proposals: "aes256gcm16-prfsha256-x25519", ESPProposals: "aes128gcm16"})
	const dpd, base, tries = time.Second, 200 * time.Millisecond, 3
	ours := e.startOurs(engine.Config{PSK: []byte(ikePSK), LocalID: engine.FQDNID("dmvpn.test"),
		DPDInterval: dpd, RetransmitBase: base, RetransmitTries: tries})
	if err := ours.eng.Initiate(time.Now(), netip.AddrPortFrom(ikeSwanAddr, 500)); err != nil {
		t.Fatal(err)
	}
	ours.poke()
	ike, i := ours.waitEvent(e, engine.IKESAUp, 0, upLimit)
	child, _ := ours.waitEvent(e, engine.ChildSAUp, i, upLimit)
	e.checkAgree(sw, ours, ike, child, "CURVE_25519")

	// Alive: two liveness checks answered, nothing retransmitted, the SA
	// stays. (charon sends none of its own: no dpd_delay.)
	st0 := ours.eng.Stats()
	if err := e.poll(4*dpd, 20*time.Millisecond, func() error {
		st := ours.eng.Stats()
		if st.Received-st0.Received >= 2 && st.Sent-st0.Sent >= 2 {
			return nil
		}
		return fmt.Errorf("sent %d, received %d since the SA came up", st.Sent-st0.Sent, st.Received-st0.Received)
	}); err != nil {
		t.Fatalf("no liveness checks answered: %v", err)
	}
	if st := ours.eng.Stats(); st.Retransmitted != 0 || st.Dead != 0 || st.IKESAs != 1 {
		t.Fatalf("while charon runs: %+v", st)
	}
	if sas, err := sw.listSAs(); err != nil || len(sas) != 1 || sas[0].State != "ESTABLISHED" {
		t.Fatalf("charon after our liveness checks: %+v (%v)", sas, err)
	}

	// Dead: charon stops answering.
	mark := len(ours.snapshot())
	if err := sw.signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	limit := dpd + base*(1<<tries-1)
	_, j := ours.waitEvent(e, engine.ChildSADown, mark, limit+2*time.Second)
	down, _ := ours.waitEvent(e, engine.IKESADown, j, time.Second)
	took := time.Since(t0)
	t.Logf("charon stopped: IKESADown after %v (%q)", took.Round(time.Millisecond), down.Reason)
	if !strings.Contains(down.Reason, "dead peer") || down.SPIi != ike.SPIi {
		t.Errorf("IKESADown %v/%v %q, want the SA %v/%v with a dead peer", down.SPIi, down.SPIr, down.Reason, ike.SPIi, ike.SPIr)
	}
	if took > limit+time.Second {
		t.Errorf("declared dead after %v, want within %v (DPD %v, retransmissions %v)", took, limit, dpd, limit-dpd)
	}
	if st := ours.eng.Stats(); st.Dead != 1 || st.Retransmitted != tries-1 || st.IKESAs != 0 {
		t.Errorf("after the dead peer: %+v; want 1 dead, %d retransmissions, no SA", st, tries-1)
	}
	if err := sw.signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// logCount counts the lines of charon's log that contain all of want.
func (c *charon) logCount(want ...string) int {
	b, _ := os.ReadFile(filepath.Join(c.dir, "charon.log"))
	n := 0
lines:
	for _, l := range strings.Split(string(b), "\n") {
		for _, w := range want {
			if !strings.Contains(l, w) {
				continue lines
			}
		}
		n++
	}
	return n
}

var (
	dpdRequestRE  = regexp.MustCompile(`generating INFORMATIONAL request (\d+) \[ \]`)
	dpdResponseRE = regexp.MustCompile(`parsed INFORMATIONAL response (\d+) \[ \]`)
)

// dpdSeen reads charon's log: its liveness checks (empty INFORMATIONAL
// requests), how many of them were answered (an empty response with the
// same message ID), and its retransmissions.
func (c *charon) dpdSeen() (requests, answered, retransmits int) {
	b, _ := os.ReadFile(filepath.Join(c.dir, "charon.log"))
	ids := map[string]bool{}
	for _, m := range dpdRequestRE.FindAllSubmatch(b, -1) {
		ids[string(m[1])] = true
	}
	for _, m := range dpdResponseRE.FindAllSubmatch(b, -1) {
		if ids[string(m[1])] {
			answered++
		}
	}
	return len(ids), answered, c.logCount("retransmit")
}

// swanWait polls charon's list-sas (bounded) until f accepts it.
func (e *ikeEnv) swanWait(sw *charon, limit time.Duration, f func([]swanIKE) error) error {
	return e.poll(limit, 20*time.Millisecond, func() error {
		sas, err := sw.listSAs()
		if err != nil {
			return err
		}
		return f(sas)
	})
}

// checkAgree checks that charon lists exactly the IKE SA and Child SA of
// our events: same SPIs (its inbound is our outbound), same algorithms,
// the DH group wantDH, tunnel mode in UDP, GRE between the hosts. It
// returns charon's IKE SA.
func (e *ikeEnv) checkAgree(sw *charon, ours *ikePeer, ike, child engine.Event, wantDH string) swanIKE {
	e.t.Helper()
	c := child.Child
	if c.Mode != engine.Tunnel || !c.UDPEncap || c.Local != ikeOurAddr || c.Remote != ikeSwanAddr ||
		c.Peer != netip.AddrPortFrom(ikeSwanAddr, 4500) {
		e.t.Errorf("our Child SA: mode %v, UDP encapsulation %v, GRE %v -> %v, ESP to %v; want tunnel (charon cannot "+
			"install transport), in UDP, %v -> %v, %v:4500", c.Mode, c.UDPEncap, c.Local, c.Remote, c.Peer,
			ikeOurAddr, ikeSwanAddr, ikeSwanAddr)
	}
	var s swanIKE
	if err := e.poll(5*time.Second, 20*time.Millisecond, func() error {
		sas, err := sw.listSAs()
		if err != nil {
			return err
		}
		if len(sas) != 1 || sas[0].State != "ESTABLISHED" || len(sas[0].Children) != 1 || sas[0].Children[0].State != "INSTALLED" {
			return fmt.Errorf("charon lists %+v, want one ESTABLISHED IKE SA with one INSTALLED CHILD_SA", sas)
		}
		s = sas[0]
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	var suite string
	for _, st := range ours.eng.SAs() {
		if st.SPIi == ike.SPIi && st.SPIr == ike.SPIr {
			suite = st.Suite.PRF.String()
			if want := swanEncr[esp.Encryption(st.Suite.Encryption)]; s.Encr != want || s.KeySize != st.Suite.KeyBits {
				e.t.Errorf("IKE cipher: charon %s-%d, ours %v", s.Encr, s.KeySize, st.Suite)
			}
			if want := swanInteg[esp.Integrity(st.Suite.Integrity)]; s.Integ != want {
				e.t.Errorf("IKE integrity: charon %q, ours %v", s.Integ, st.Suite)
			}
		}
	}
	if suite == "" {
		e.t.Fatalf("our engine lists no SA %v/%v: %+v", ike.SPIi, ike.SPIr, ours.eng.SAs())
	}
	if s.PRF != swanPRF[suite] || s.DH != wantDH {
		e.t.Errorf("IKE PRF and group: charon %s %s, ours %s %s", s.PRF, s.DH, suite, wantDH)
	}
	if s.SPIi != uint64(ike.SPIi) || s.SPIr != uint64(ike.SPIr) || s.Initiator == ike.Initiator {
		e.t.Errorf("IKE SA: charon %016x/%016x (charon initiator %v), ours %v/%v (we initiator %v)",
			s.SPIi, s.SPIr, s.Initiator, ike.SPIi, ike.SPIr, ike.Initiator)
	}
	if s.LocalPort != 4500 || s.RemotePort != 4500 || !s.NATFake {
		e.t.Errorf("charon's IKE SA on ports %d -> %d (faked NAT %v), want 4500 both, faked", s.LocalPort, s.RemotePort, s.NATFake)
	}
	k := s.Children[0]
	if k.SPIIn != c.Outbound.SPI || k.SPIOut != c.Inbound.SPI {
		e.t.Errorf("CHILD_SA SPIs: charon in %08x out %08x, ours in %08x out %08x", k.SPIIn, k.SPIOut, c.Inbound.SPI, c.Outbound.SPI)
	}
	if k.Mode != "TUNNEL" || k.Protocol != "ESP" || !k.Encap {
		e.t.Errorf("CHILD_SA: charon has %s %s encap %v, want TUNNEL ESP in UDP", k.Mode, k.Protocol, k.Encap)
	}
	if k.Encr != swanEncr[c.Transform.Encryption] || k.KeySize != c.Transform.KeyBits ||
		k.Integ != swanInteg[c.Transform.Integrity] || k.ESN != c.ESN {
		e.t.Errorf("CHILD_SA algorithms: charon %s-%d %q ESN %v, ours %v ESN %v", k.Encr, k.KeySize, k.Integ, k.ESN, c.Transform, c.ESN)
	}
	wantL, wantR := ikeSwanAddr.String()+"/32[gre]", ikeOurAddr.String()+"/32[gre]"
	if len(k.LocalTS) != 1 || k.LocalTS[0] != wantL || len(k.RemoteTS) != 1 || k.RemoteTS[0] != wantR {
		e.t.Errorf("CHILD_SA selectors: charon %v === %v, want %s === %s", k.LocalTS, k.RemoteTS, wantL, wantR)
	}
	e.t.Logf("charon agrees: IKE %016x_i %016x_r %s-%d/%s/%s/%s; CHILD_SA %s in %08x out %08x %s-%d/%s, %s === %s",
		s.SPIi, s.SPIr, s.Encr, s.KeySize, s.Integ, s.PRF, s.DH, k.Mode, k.SPIIn, k.SPIOut, k.Encr, k.KeySize, k.Integ,
		strings.Join(k.LocalTS, ","), strings.Join(k.RemoteTS, ","))
	return s
}

// checkESP proves that our Child SA keys are charon's, both ways.
//
// Ours to charon: tunnel-mode ESP-in-UDP packets, each carrying a GRE
// packet from our address to charon's: a real one (sequence number 1), a
// forged one (2: our SA with one key bit flipped), a real one (3). charon
// must count exactly the two real ones, with the inner packets' bytes
// (libipsec counts after the ICV verified), and hand their GRE packets,
// not the forged one, to its namespace, where a raw socket reads them.
// (The sequence numbers run on, so tshark's ESP sequence analysis of the
// capture sees no gap or repeat.)
//
// charon to us: a GRE packet sent from charon's namespace to our address
// goes through its route into libipsec's TUN and comes to our UDP 4500 as
// ESP on our inbound SPI; our inbound SA opens it to that GRE packet.
func (e *ikeEnv) checkESP(sw *charon, ours *ikePeer, c *engine.ChildSA) {
	e.t.Helper()
	raw, err := openRawGRE(e.swan, ikeSwanAddr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer raw.Close()

	greWith := func(tag string) []byte {
		b := make([]byte, 4+16)
		binary.BigEndian.PutUint16(b[2:], 0x0800) // GRE v0, IPv4 payload
		copy(b[4:], tag)
		_, _ = rand.Read(b[4+len(tag):])
		return b
	}
	out, err := esp.NewOutbound(c.OutboundConfig())
	if err != nil {
		e.t.Fatal(err)
	}
	bad := c.OutboundConfig()
	bad.EncKey = bytes.Clone(bad.EncKey)
	if len(bad.IntegKey) > 0 {
		bad.IntegKey = bytes.Clone(bad.IntegKey)
		bad.IntegKey[0] ^= 1
	} else {
		bad.EncKey[0] ^= 1
	}
	forger, err := esp.NewOutbound(bad)
	if err != nil {
		e.t.Fatal(err)
	}
	to := netip.AddrPortFrom(ikeSwanAddr, 4500)
	send := func(sa *esp.SA, gre []byte, transmit bool) int {
		inner := ipv4Packet(ikeOurAddr, ikeSwanAddr, 47, 1, gre)
		pkt, err := sealTunnel(sa, inner)
		if err != nil {
			e.t.Fatal(err)
		}
		if transmit {
			if _, err := ours.c4500.WriteToUDPAddrPort(pkt, to); err != nil {
				e.t.Fatal(err)
			}
		}
		return len(inner)
	}
	first, forged, second := greWith("ours-1"), greWith("forged"), greWith("ours-3")
	var innerBytes uint64
	innerBytes += uint64(send(out, first, true))
	send(forger, forged, false) // the forger's sequence number 1, not sent
	send(forger, forged, true)  // 2
	send(out, second, false)    // ours 2, not sent
	innerBytes += uint64(send(out, second, true))
	for _, want := range [][]byte{first, second} {
		got, err := raw.recvUntil(ikeOurAddr, 5*time.Second, func(b []byte) bool {
			return bytes.Equal(b, first) || bytes.Equal(b, second) || bytes.Equal(b, forged)
		})
		if err != nil {
			e.t.Fatalf("the GRE packets we sealed did not reach charon's namespace: %v", err)
		}
		if !bytes.Equal(got, want) {
			e.t.Fatalf("charon delivered %x, want %x (the forged one is %x)", got, want, forged)
		}
	}
	var k swanChild
	if err := e.poll(5*time.Second, 20*time.Millisecond, func() error {
		sas, err := sw.listSAs()
		if err != nil {
			return err
		}
		if len(sas) != 1 || len(sas[0].Children) != 1 {
			return fmt.Errorf("charon lists %+v", sas)
		}
		k = sas[0].Children[0]
		if k.PacketsIn < 2 {
			return fmt.Errorf("CHILD_SA packets-in %d", k.PacketsIn)
		}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	if k.PacketsIn != 2 || k.BytesIn != innerBytes {
		e.t.Errorf("CHILD_SA: charon counts %d packets in, %d bytes; want our 2 real ones, %d bytes, not the forged one",
			k.PacketsIn, k.BytesIn, innerBytes)
	}
	e.t.Logf("ours -> charon: ESP %08x accepted (packets-in %d, bytes-in %d), the forged one refused; GRE delivered in charon's namespace",
		c.Outbound.SPI, k.PacketsIn, k.BytesIn)

	// Back: GRE from charon's namespace, ESP to us.
	back := greWith("charon")
	if _, err := raw.c.WriteToIP(back, ipAddr(ikeOurAddr)); err != nil {
		e.t.Fatal(err)
	}
	in, err := esp.NewInbound(c.InboundConfig())
	if err != nil {
		e.t.Fatal(err)
	}
	timeout := time.After(5 * time.Second)
	for {
		var d espDatagram
		select {
		case d = <-ours.esp:
		case <-timeout:
			e.t.Fatalf("no ESP from charon within 5s for the GRE packet sent in its namespace")
		}
		spi, seq, err := esp.ParseHeader(d.pkt)
		if err != nil || spi != c.Inbound.SPI {
			e.t.Errorf("ESP from %v with SPI %08x: not our inbound %08x", d.from, spi, c.Inbound.SPI)
			continue
		}
		if d.from != to {
			e.t.Errorf("ESP from %v, want %v", d.from, to)
		}
		off, n, nh, err := in.Open(d.pkt)
		if err != nil {
			e.t.Fatalf("charon's ESP (SPI %08x seq %d) does not open with our inbound SA: %v", spi, seq, err)
		}
		ip := d.pkt[off : off+n]
		if nh != esp.NextHeaderIPv4 || len(ip) < 20 || ip[9] != 47 ||
			netip.AddrFrom4([4]byte(ip[12:16])) != ikeSwanAddr || netip.AddrFrom4([4]byte(ip[16:20])) != ikeOurAddr {
			e.t.Fatalf("charon's ESP opened to next header %d, %x; want IPv4 GRE %v -> %v", nh, ip, ikeSwanAddr, ikeOurAddr)
		}
		if hl := int(ip[0]&0xf) * 4; !bytes.Equal(ip[hl:], back) {
			e.t.Fatalf("charon's ESP carries %x, want the GRE packet %x", ip[hl:], back)
		}
		e.t.Logf("charon -> ours: ESP %08x seq %d opened with our inbound SA to the GRE packet sent in charon's namespace", spi, seq)
		break
	}
	if err := e.poll(5*time.Second, 20*time.Millisecond, func() error {
		sas, err := sw.listSAs()
		if err == nil && (len(sas) != 1 || len(sas[0].Children) != 1 || sas[0].Children[0].PacketsOut != 1) {
			err = fmt.Errorf("charon lists %+v, want packets-out 1", sas)
		}
		return err
	}); err != nil {
		e.t.Error(err)
	}
}

// checkCapture reads the tcpdump capture with tshark: IKE_SA_INIT request
// and response on UDP 500, IKE_AUTH on 4500 behind the non-ESP marker,
// with our SPIs; ESP in UDP on both SPIs; 0 Malformed, no expert
// warnings.
func (e *ikeEnv) checkCapture(pcap string, ike engine.Event, c *engine.ChildSA) {
	e.t.Helper()
	te := &env{t: e.t, ctx: e.ctx}
	rows := te.tsharkFields(pcap, "isakmp", "udp.srcport", "udp.dstport", "isakmp.exchangetype", "isakmp.ispi", "isakmp.rspi", "isakmp.flags")
	var seen []string
	count := map[string]int{}
	for _, r := range rows {
		if len(r) < 6 {
			e.t.Fatalf("tshark row %v", r)
		}
		seen = append(seen, strings.Join(r, " "))
		if !strings.EqualFold(r[3], ike.SPIi.String()) {
			e.t.Errorf("IKE message with initiator SPI %s, want %v", r[3], ike.SPIi)
		}
		count[r[0]+">"+r[1]+" "+r[2]]++
	}
	for _, want := range []string{"500>500 34", "4500>4500 35"} {
		if count[want] != 2 {
			e.t.Errorf("capture: %d IKE messages %q, want a request and a response; tshark saw:\n%s", count[want], want,
				strings.Join(seen, "\n"))
		}
	}
	espRows := te.tsharkFields(pcap, "esp", "esp.spi")
	spis := map[string]int{}
	for _, r := range espRows {
		spis[strings.ToLower(r[0])]++
	}
	for _, spi := range []uint32{c.Outbound.SPI, c.Inbound.SPI} {
		if spis[fmt.Sprintf("0x%08x", spi)] == 0 {
			e.t.Errorf("capture: no ESP with SPI %08x (tshark saw %v)", spi, spis)
		}
	}
	te.noMalformed(pcap)
	e.t.Logf("tshark: %d IKE messages (%v), %d ESP in UDP %v, 0 Malformed", len(rows), count, len(espRows), spis)
}

func ipAddr(a netip.Addr) *net.IPAddr { return &net.IPAddr{IP: a.AsSlice()} }

// TestIKEStrongSwanRekey: rekeys under traffic, both roles. ESP flows
// both ways every 10 ms (ours sealed with the outbound SA our events say
// is in use, GRE inside; charon's from GRE sent in its namespace), while
// charon rekeys the CHILD_SA and the IKE SA (swanctl --rekey) and we do
// (RekeyChild, RekeyIKE). After each rekey both sides list the same new
// SPIs; at the end every packet sent either way was received.
func TestIKEStrongSwanRekey(t *testing.T) {
	for _, role := range []string{"charon initiates", "we initiate"} {
		t.Run(role, func(t *testing.T) {
			tag := byte('U')
			if role == "we initiate" {
				tag = 'V'
			}
			e := newIKEEnv(t, tag)
			sw := e.startCharon(swanConn{LocalID: "swan.test", RemoteID: "dmvpn.test",
				Proposals: "aes256gcm16-prfsha256-x25519", ESPProposals: "aes128gcm16"})
			ours := e.startOurs(engine.Config{PSK: []byte(ikePSK), LocalID: engine.FQDNID("dmvpn.test")})
			ike, child := e.establish(sw, ours, role == "charon initiates")
			e.checkAgree(sw, ours, ike, child, "CURVE_25519")
			tr := e.startTraffic(sw, ours)
			steps := []struct {
				name string
				do   func() error
				ike  bool
			}{
				{"charon rekeys the CHILD_SA", func() error { _, err := sw.swanctl("--rekey", "--child", "gre"); return err }, false},
				{"charon rekeys the IKE SA", func() error { _, err := sw.swanctl("--rekey", "--ike", "dmvpn"); return err }, true},
				{"we rekey the Child SA", func() error { return ours.eng.RekeyChild(time.Now(), tr.currentIn()) }, false},
				{"we rekey the IKE SA", func() error { return ours.eng.RekeyIKE(time.Now(), ike.Peer) }, true},
			}
			for _, st := range steps {
				time.Sleep(300 * time.Millisecond) // traffic on the SAs before (the flow, not a synchronisation)
				mark := len(ours.snapshot())
				before := tr.currentIn()
				t0 := time.Now()
				if err := st.do(); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				ours.poke()
				if st.ike {
					ev, _ := ours.waitEvent(e, engine.IKESARekeyed, mark, 10*time.Second)
					if ev.OldSPIi != ike.SPIi || ev.SPIi == ike.SPIi {
						t.Fatalf("%s: IKESARekeyed %v/%v from %v/%v, want from %v/%v", st.name, ev.SPIi, ev.SPIr, ev.OldSPIi, ev.OldSPIr, ike.SPIi, ike.SPIr)
					}
					ike = ev
				} else {
					down, _ := ours.waitEvent(e, engine.ChildSADown, mark, 10*time.Second)
					if down.Child.Inbound.SPI != before || down.Reason != "rekeyed" || down.Child.ReplacedBy == 0 {
						t.Fatalf("%s: ChildSADown %08x %q replaced by %08x, want %08x rekeyed", st.name, down.Child.Inbound.SPI,
							down.Reason, down.Child.ReplacedBy, before)
					}
				}
				e.agreeNow(sw, ours, tr, ike)
				t.Logf("%s: done after %v; both list IKE %v/%v, CHILD_SA in %08x out %08x", st.name,
					time.Since(t0).Round(time.Millisecond), ike.SPIi, ike.SPIr, tr.currentIn(), tr.currentOut())
			}
			time.Sleep(300 * time.Millisecond)
			tr.stopAndCheck(e)
			if st := ours.eng.Stats(); st.ChildRekeys != 2 || st.IKERekeys != 2 || st.Dead != 0 {
				t.Errorf("our stats %+v: want 2 Child SA and 2 IKE SA rekeys", st)
			}
		})
	}
}

// TestIKEStrongSwanRekeyByTime: rekeys by time under traffic for 14 s:
// charon's IKE SA rekey_time of 6 s (it rekeys the IKE SA twice), our
// Child SA lifetime of 10 s (we rekey the Child SA at 8 to 9 s, charon's
// own CHILD_SA rekey_time being 30 s); nothing lost, the same SPIs.
// (With charon rekeying both by short times, its kernel-libipsec lets a
// CHILD_SA expire when its rekey job fires during its own IKE SA rekey:
// charon's, not ours to test.)
func TestIKEStrongSwanRekeyByTime(t *testing.T) {
	e := newIKEEnv(t, 'W')
	sw := e.startCharon(swanConn{LocalID: "swan.test", RemoteID: "dmvpn.test",
		Proposals: "aes256-sha512-ecp256", ESPProposals: "aes128-sha1",
		RekeyTime: "6s", ChildRekeyTime: "30s", ChildLifeTime: "40s"})
	ours := e.startOurs(engine.Config{PSK: []byte(ikePSK), LocalID: engine.FQDNID("dmvpn.test"),
		ChildLifetime: 10 * time.Second, IKELifetime: 30 * time.Second})
	ike, child := e.establish(sw, ours, false)
	e.checkAgree(sw, ours, ike, child, "ECP_256")
	tr := e.startTraffic(sw, ours)
	time.Sleep(14 * time.Second) // the traffic runs; the rekeys happen by time
	tr.stopAndCheck(e)
	st := ours.eng.Stats()
	if st.ChildRekeys < 1 || st.IKERekeys < 2 || st.Dead != 0 {
		t.Fatalf("in 14 s: %+v; want at least 1 Child SA rekey (ours) and 2 IKE SA rekeys (charon's)", st)
	}
	var last engine.Event
	for _, ev := range ours.snapshot() {
		if ev.Type == engine.IKESAUp || ev.Type == engine.IKESARekeyed {
			last = ev
		}
	}
	e.agreeNow(sw, ours, tr, last)
	t.Logf("in 14 s: %d Child SA rekeys, %d IKE SA rekeys, %d collisions", st.ChildRekeys, st.IKERekeys, st.RekeyCollisions)
}

// establish brings a pair up (charon initiating, or us) and returns our
// IKESAUp and ChildSAUp.
func (e *ikeEnv) establish(sw *charon, ours *ikePeer, charonInitiates bool) (engine.Event, engine.Event) {
	e.t.Helper()
	if charonInitiates {
		if out, err := sw.swanctl("--initiate", "--child", "gre", "--timeout", "10"); err != nil {
			e.t.Fatalf("%v\n%s", err, out)
		}
	} else {
		if err := ours.eng.Initiate(time.Now(), netip.AddrPortFrom(ikeSwanAddr, 500)); err != nil {
			e.t.Fatal(err)
		}
		ours.poke()
	}
	ike, i := ours.waitEvent(e, engine.IKESAUp, 0, upLimit)
	child, _ := ours.waitEvent(e, engine.ChildSAUp, i, upLimit)
	return ike, child
}

// agreeNow waits until charon lists exactly one IKE SA, with our current
// SPIs, and one INSTALLED CHILD_SA whose SPIs are those our traffic uses.
func (e *ikeEnv) agreeNow(sw *charon, ours *ikePeer, tr *traffic, ike engine.Event) {
	e.t.Helper()
	if err := e.swanWait(sw, 10*time.Second, func(sas []swanIKE) error {
		in, out := tr.currentIn(), tr.currentOut()
		if len(sas) != 1 || sas[0].SPIi != uint64(ike.SPIi) || sas[0].SPIr != uint64(ike.SPIr) || len(sas[0].Children) != 1 ||
			sas[0].Children[0].State != "INSTALLED" || sas[0].Children[0].SPIIn != out || sas[0].Children[0].SPIOut != in {
			return fmt.Errorf("charon lists %+v; we have IKE %v/%v, Child SA in %08x out %08x", sas, ike.SPIi, ike.SPIr, in, out)
		}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	for _, s := range ours.eng.SAs() {
		if s.SPIi != ike.SPIi || s.State != "established" || s.NumChildren != 1 || s.Children[0].InboundSPI != tr.currentIn() {
			e.t.Fatalf("our engine lists %+v, want only IKE %v/%v with Child SA %08x", ours.eng.SAs(), ike.SPIi, ike.SPIr, tr.currentIn())
		}
	}
}

// traffic is the test's data plane: our ESP to charon every 10 ms on the
// outbound SA our events say is in use, GRE from charon's namespace to us
// every 10 ms (charon's ESP opened with the inbound SAs our events
// installed, kept 5 s after their ChildSADown), each packet numbered.
type traffic struct {
	ours *ikePeer
	raw  *rawGRE
	stop chan struct{}
	wg   sync.WaitGroup

	mu                     sync.Mutex
	in                     map[uint32]*esp.SA
	out                    map[uint32]*esp.SA // by inbound SPI
	outSPI                 map[uint32]uint32
	cur                    uint32 // inbound SPI of the SA in use
	seen                   int
	sentOurs, sentSwan     int
	gotAtSwan, gotAtOurs   map[uint32]bool
	openErrs, sendErrs     int
	firstOpenErr, firstErr string
}

func (e *ikeEnv) startTraffic(sw *charon, ours *ikePeer) *traffic {
	e.t.Helper()
	raw, err := openRawGRE(e.swan, ikeSwanAddr)
	if err != nil {
		e.t.Fatal(err)
	}
	tr := &traffic{ours: ours, raw: raw, stop: make(chan struct{}), in: map[uint32]*esp.SA{}, out: map[uint32]*esp.SA{},
		outSPI: map[uint32]uint32{}, gotAtSwan: map[uint32]bool{}, gotAtOurs: map[uint32]bool{}}
	tr.follow()
	if tr.cur == 0 {
		e.t.Fatal("no Child SA to send on")
	}
	tr.wg.Add(3)
	go tr.send()
	go tr.recvSwan()
	go tr.recvOurs()
	e.t.Cleanup(tr.halt)
	return tr
}

// follow applies our new events (under tr.mu or before the goroutines).
func (tr *traffic) follow() {
	evs := tr.ours.snapshot()
	for ; tr.seen < len(evs); tr.seen++ {
		ev := evs[tr.seen]
		c := ev.Child
		switch ev.Type {
		case engine.ChildSAUp:
			in, err1 := esp.NewInbound(c.InboundConfig())
			out, err2 := esp.NewOutbound(c.OutboundConfig())
			if err1 != nil || err2 != nil {
				tr.firstErr = fmt.Sprint(err1, err2)
				continue
			}
			tr.in[c.Inbound.SPI], tr.out[c.Inbound.SPI], tr.outSPI[c.Inbound.SPI] = in, out, c.Outbound.SPI
			if !c.Standby {
				tr.cur = c.Inbound.SPI
			}
		case engine.ChildSAActive:
			tr.cur = c.Inbound.SPI
		case engine.ChildSADown:
			spi := c.Inbound.SPI
			if spi == tr.cur {
				tr.firstErr = fmt.Sprintf("ChildSADown (%s) of the SA in use %08x", ev.Reason, spi)
			}
			time.AfterFunc(5*time.Second, func() {
				tr.mu.Lock()
				delete(tr.in, spi)
				tr.mu.Unlock()
			})
		}
	}
}

func (tr *traffic) currentIn() uint32 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.follow()
	return tr.cur
}

func (tr *traffic) currentOut() uint32 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.follow()
	return tr.outSPI[tr.cur]
}

func numbered(tag string, n int) []byte {
	b := make([]byte, 4+len(tag)+4)
	binary.BigEndian.PutUint16(b[2:], 0x0800)
	copy(b[4:], tag)
	binary.BigEndian.PutUint32(b[4+len(tag):], uint32(n))
	return b
}

func (tr *traffic) send() {
	defer tr.wg.Done()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	to := netip.AddrPortFrom(ikeSwanAddr, 4500)
	for n := 1; ; n++ {
		select {
		case <-tr.stop:
			return
		case <-tick.C:
		}
		tr.mu.Lock()
		tr.follow()
		sa := tr.out[tr.cur]
		pkt, err := sealTunnel(sa, ipv4Packet(ikeOurAddr, ikeSwanAddr, 47, uint16(n), numbered("ours", n)))
		tr.sentOurs++
		tr.mu.Unlock()
		if err == nil {
			_, err = tr.ours.c4500.WriteToUDPAddrPort(pkt, to)
		}
		if _, err2 := tr.raw.c.WriteToIP(numbered("swan", n), ipAddr(ikeOurAddr)); err2 != nil && err == nil {
			err = err2
		}
		tr.mu.Lock()
		tr.sentSwan++
		if err != nil {
			tr.sendErrs++
		}
		tr.mu.Unlock()
	}
}

// recvSwan counts our GRE packets delivered in charon's namespace.
func (tr *traffic) recvSwan() {
	defer tr.wg.Done()
	buf := make([]byte, 65535)
	for {
		_ = tr.raw.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, from, err := tr.raw.c.ReadFromIP(buf)
		select {
		case <-tr.stop:
			if err != nil {
				return
			}
		default:
		}
		if err != nil {
			continue
		}
		if a, ok := netip.AddrFromSlice(from.IP); ok && a.Unmap() == ikeOurAddr && n == 12 && string(buf[4:8]) == "ours" {
			tr.mu.Lock()
			tr.gotAtSwan[binary.BigEndian.Uint32(buf[8:12])] = true
			tr.mu.Unlock()
		}
	}
}

// recvOurs opens charon's ESP with our inbound SAs.
func (tr *traffic) recvOurs() {
	defer tr.wg.Done()
	for {
		var d espDatagram
		select {
		case <-tr.stop:
			return
		case d = <-tr.ours.esp:
		}
		spi, _, err := esp.ParseHeader(d.pkt)
		tr.mu.Lock()
		tr.follow()
		sa := tr.in[spi]
		if err == nil && sa == nil {
			err = fmt.Errorf("no inbound SA %08x", spi)
		}
		var off, n int
		if err == nil {
			off, n, _, err = sa.Open(d.pkt)
		}
		if err == nil {
			ip := d.pkt[off : off+n]
			if hl := int(ip[0]&0xf) * 4; len(ip) == hl+12 && string(ip[hl+4:hl+8]) == "swan" {
				tr.gotAtOurs[binary.BigEndian.Uint32(ip[hl+8:])] = true
			}
		} else {
			tr.openErrs++
			if tr.firstOpenErr == "" {
				tr.firstOpenErr = err.Error()
			}
		}
		tr.mu.Unlock()
	}
}

func (tr *traffic) halt() {
	select {
	case <-tr.stop:
		return
	default:
	}
	close(tr.stop)
	tr.wg.Wait()
	tr.raw.Close()
}

// stopAndCheck stops sending, waits for what is in flight, and checks
// that every packet sent either way arrived.
func (tr *traffic) stopAndCheck(e *ikeEnv) {
	e.t.Helper()
	close(tr.stop)
	tr.wg.Wait()
	tr.stop = make(chan struct{})
	tr.mu.Lock()
	sentOurs, sentSwan := tr.sentOurs, tr.sentSwan
	tr.mu.Unlock()
	// Drain: the receivers again, until everything is in or 3 s pass.
	tr.wg.Add(2)
	go tr.recvSwan()
	go tr.recvOurs()
	_ = e.poll(3*time.Second, 20*time.Millisecond, func() error {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if len(tr.gotAtSwan) < sentOurs || len(tr.gotAtOurs) < sentSwan {
			return fmt.Errorf("in flight")
		}
		return nil
	})
	tr.halt()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	e.t.Logf("traffic: ours -> charon %d sent, %d received; charon -> ours %d sent, %d opened; %d open errors (%s), %d send errors",
		sentOurs, len(tr.gotAtSwan), sentSwan, len(tr.gotAtOurs), tr.openErrs, tr.firstOpenErr, tr.sendErrs)
	if len(tr.gotAtSwan) != sentOurs || len(tr.gotAtOurs) != sentSwan || tr.openErrs != 0 || tr.sendErrs != 0 || tr.firstErr != "" {
		var lostOurs, lostSwan []int
		for n := 1; n <= sentOurs; n++ {
			if !tr.gotAtSwan[uint32(n)] && len(lostOurs) < 20 {
				lostOurs = append(lostOurs, n)
			}
		}
		for n := 1; n <= sentSwan; n++ {
			if !tr.gotAtOurs[uint32(n)] && len(lostSwan) < 20 {
				lostSwan = append(lostSwan, n)
			}
		}
		e.t.Errorf("packets lost across the rekeys: ours %v, charon's %v (%s)", lostOurs, lostSwan, tr.firstErr)
	}
}
