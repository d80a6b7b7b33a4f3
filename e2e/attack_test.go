package e2e

// The attack suite: an attacker on the Internet side of the phase-3 lab
// (lab.Options.Attacker: namespace "attacker", 203.0.113.66, hanging off
// the inet router, which does not filter forged source addresses) who knows
// the GRE key and the NHRP authentication secret, and sends NHRP packets
// built with the project's own codecs (attacker_helper_test.go). Each test
// brings up a phase-3 lab, waits for the registrations and the spoke1 <->
// spoke2 shortcut, plays one attack, proves with a capture decoded by tshark
// that the attacker's packets reached the victim's wire as valid NHRP, and
// then requires (afterAttack) that
//
//   - every daemon still runs and answers `show dmvpn`;
//   - no node maps anything to an NBMA address the attacker made up (its
//     own 203.0.113.66 or an invented one), nor an overlay address to
//     another node's NBMA address, nor an address that is nobody's;
//   - no node has a route the attacker fed it (10.1.2.0/25, or an nhrp
//     route other than LAN N via spoke N);
//   - host-lan1 still reaches host-lan2 (pings and a TCP echo).
//
// The daemons' drop counters (`show stats`: "nhrp_dropped", by reason) are
// logged, not asserted: the outcomes above are what counts.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
	"github.com/dmvpn/dmvpn/nhrp"
)

// NHRP packet types not in phase3_tshark_test.go's list.
const (
	nhrpRegistrationRequest = 3
	nhrpRegistrationReply   = 4
)

var (
	attackerIP = lab.AttackerWAN.Addr() // 203.0.113.66
	hubNBMA    = netip.MustParseAddr(hubIP)
	s1NBMA     = netip.MustParseAddr(s1IP)
	s2NBMA     = netip.MustParseAddr(s2IP)
	hubTunnel  = netip.MustParseAddr("10.0.0.1")
	s1Tunnel   = netip.MustParseAddr("10.0.0.11")
	s2Tunnel   = netip.MustParseAddr("10.0.0.12")
	nobody     = netip.MustParseAddr("10.0.0.99") // on the tunnel subnet, nobody's
	// forgedPrefix is what the forged Resolution Replies advertise.
	forgedPrefix = "10.1.2.0/25"
)

// legitNBMA is the NBMA address each overlay address may be mapped to
// (spoke3: its NAT's public address, with a port).
var legitNBMA = map[string]string{
	"10.0.0.1":  hubIP,
	"10.0.0.11": s1IP,
	"10.0.0.12": s2IP,
	"10.0.0.13": natIP,
}

// legitClaimed is every NBMA address a daemon of the lab claims.
var legitClaimed = map[string]bool{hubIP: true, s1IP: true, s2IP: true, natIP: true, "192.168.3.2": true}

// legitShortcuts is every nhrp route a node may hold: LAN N via its owner.
var legitShortcuts = map[string]string{
	"10.1.0.0/24": "10.0.0.1",
	"10.1.1.0/24": "10.0.0.11",
	"10.1.2.0/24": "10.0.0.12",
	"10.1.3.0/24": "10.0.0.13",
}

// attackAuth is the lab's authentication extension, which the attacker
// knows.
func attackAuth(t *testing.T) nhrp.Extension {
	t.Helper()
	a, err := nhrp.NewCiscoAuthentication([]byte(lab.Authentication))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// requestExtensions is what a Cisco request carries: Responder Address,
// Forward and Reverse Transit NHS Records, authentication, a NAT address
// extension (with nat's CIEs; empty when none) and End.
func requestExtensions(t *testing.T, nat ...nhrp.CIE) []nhrp.Extension {
	auth := attackAuth(t)
	n := nhrp.NewNATAddress(nat...)
	return nhrp.StandardRequestExtensions(nil, &auth, &n)
}

// authAndEnd is the extension list of purges and indications.
func authAndEnd(t *testing.T) []nhrp.Extension {
	return []nhrp.Extension{attackAuth(t), nhrp.NewEnd()}
}

// newAttackLab builds a phase-3 lab with the attacker node, starts the
// daemons and waits for every registration and the spoke1 <-> spoke2
// shortcut (proved by pings the hub does not relay).
func newAttackLab(t *testing.T, tag byte) *env {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "tcpdump")
	testenv.RequireTool(t, "tshark")
	testenv.RequireTool(t, "timeout")
	testenv.RequireTool(t, "ping") // the flood test's background pings (startPing); the lab needs none
	e := newShortcutLab(t, tag, lab.Options{Phase: 3, Attacker: true})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	e.establishDirect()
	return e
}

// --- what the captures say ---

// attackFrames decodes c's capture with tshark and returns the frames the
// attacker sent (IPv4 identification attackIPID), by NHRP packet type; how
// many of them carry a correct NHRP checksum (tshark verifies it); and how
// many tshark calls malformed (tshark 4.0 says so of any Error Indication
// with extensions, and of one quoting a cut packet, which are attacks
// here). c must be stopped.
func (e *env) attackFrames(c *capture) (byType map[int]int, checksumOK, malformed int) {
	e.t.Helper()
	ctx, cancel := e.timeout(60 * time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tshark", "-n", "-r", c.pcap, "-Y", fmt.Sprintf("ip.id == %#04x", attackIPID),
		"-T", "fields", "-E", "occurrence=f", "-e", "nhrp.hdr.op.type", "-e", "nhrp.hdr.chksum.status", "-e", "_ws.malformed")
	cmd.WaitDelay = time.Second
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("tshark -r %s: %v: %s", c.pcap, err, stderr.String())
	}
	byType = map[int]int{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 3 || f[0] == "" {
			continue
		}
		typ, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		byType[typ]++
		// tshark -T fields prints a checksum status as its number: 1 is
		// PROTO_CHECKSUM_E_GOOD. The first occurrence is the outer
		// packet's (an Error Indication quotes another).
		if f[1] == "1" || strings.EqualFold(f[1], "good") {
			checksumOK++
		}
		if f[2] != "" {
			malformed++
		}
	}
	return byType, checksumOK, malformed
}

// requireAttackFrames stops c and fails t unless its capture holds at least
// atLeast frames from the attacker of each NHRP type in want, every one of
// them NHRP with a correct checksum (tshark decodes and verifies them).
func (e *env) requireAttackFrames(c *capture, atLeast int, want ...int) {
	e.t.Helper()
	closing := c.stop()
	byType, ok, malformed := e.attackFrames(c)
	total := 0
	var parts []string
	for typ, n := range byType {
		total += n
		parts = append(parts, fmt.Sprintf("%v: %d", nhrp.Type(typ), n))
	}
	sort.Strings(parts)
	e.t.Logf("capture on %s's wan0: %d NHRP frames from the attacker (IP id %#04x), %d with a correct NHRP checksum, %d called malformed by tshark: %s; tcpdump: %s",
		c.node, total, attackIPID, ok, malformed, strings.Join(parts, ", "), lastLine(closing))
	for _, typ := range want {
		if byType[typ] < atLeast {
			e.t.Errorf("the capture on %s's wan0 holds %d %v frames from the attacker, want at least %d: did the attack reach its victim?",
				c.node, byType[typ], nhrp.Type(typ), atLeast)
		}
	}
	if ok != total {
		e.t.Errorf("tshark found the NHRP checksum of %d of the attacker's %d frames on %s's wire wrong: the attack did not test what it should",
			total-ok, total, c.node)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[i+1:])
	}
	return s
}

// dataFramesFrom counts the GRE (or GRE-in-UDP) data packets (inner IPv4)
// from src in c's capture. c must be stopped.
func (e *env) dataFramesFrom(c *capture, src string) int {
	e.t.Helper()
	ctx, cancel := e.timeout(60 * time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tshark", "-n", "-r", c.pcap, "-Y", fmt.Sprintf("ip.src == %s && gre.proto == 0x0800", src),
		"-T", "fields", "-e", "frame.number")
	cmd.WaitDelay = time.Second
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("tshark -r %s: %v: %s", c.pcap, err, stderr.String())
	}
	return len(strings.Fields(string(out)))
}

// startWideCapture is startCapture (shortcut_helpers_test.go) for bursts:
// tcpdump's --immediate-mode ring holds only a few full-size frames, so the
// attacker's bursts (thousands of datagrams in a few milliseconds) would be
// "dropped by kernel" before tcpdump reads them. A 512-byte snapshot (every
// NHRP packet here is shorter) and a 64 MiB buffer keep them all.
func (e *env) startWideCapture(node string) *capture {
	e.t.Helper()
	return e.startTcpdump(node, 110, "-s", "512", "-B", "65536")
}

// --- what the daemons say ---

// showJSON runs `show what --json` on node into v, without failing t.
func (e *env) showJSON(node, what string, v any) error {
	ctx, cancel := e.timeout(15 * time.Second)
	defer cancel()
	return e.l.ShowJSON(ctx, node, what, v)
}

// statsOf returns node's counters without failing t.
func (e *env) statsOf(node string) (api.Stats, error) {
	var st api.Stats
	err := e.showJSON(node, "stats", &st)
	return st, err
}

// logDropped logs each running daemon's NHRP counters and, once the
// daemon has them, its "nhrp_dropped" counters by reason.
func (e *env) logDropped(label string) {
	e.t.Helper()
	for _, d := range lab.Daemons {
		if !e.l.Running(d.Name) {
			continue
		}
		var raw map[string]json.RawMessage
		if err := e.showJSON(d.Name, "stats", &raw); err != nil {
			e.t.Logf("%s: %s: show stats: %v", label, d.Name, err)
			continue
		}
		var nh map[string]uint64
		_ = json.Unmarshal(raw["nhrp"], &nh)
		dropped := "(no nhrp_dropped counters in show stats)"
		if b, ok := raw["nhrp_dropped"]; ok {
			var m map[string]uint64
			if json.Unmarshal(b, &m) == nil {
				dropped = "nhrp_dropped " + countsString(m)
			} else {
				dropped = "nhrp_dropped " + string(b)
			}
		}
		e.t.Logf("%s: %s: nhrp %s; %s", label, d.Name, countsString(nh), dropped)
	}
}

func countsString(m map[string]uint64) string {
	var keys []string
	for k, v := range m {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var v []string
	for _, k := range keys {
		v = append(v, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return "{" + strings.Join(v, " ") + "}"
}

// panicLines returns the first lines of a Go panic in node's log, if any.
func (e *env) panicLines(node string) string {
	b, err := os.ReadFile(e.l.LogPath(node))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.Index(s, "panic: ")
	if i < 0 {
		i = strings.Index(s, "fatal error: ")
	}
	if i < 0 {
		return ""
	}
	lines := strings.SplitN(s[i:], "\n", 13)
	return strings.Join(lines[:min(len(lines), 12)], "\n")
}

// daemonsAlive checks that every daemon runs and answers `show dmvpn`.
func (e *env) daemonsAlive() []error {
	var errs []error
	for _, d := range lab.Daemons {
		if exited, werr := e.l.Exited(d.Name); exited || !e.l.Running(d.Name) {
			msg := fmt.Sprintf("daemon %s (pid %d) died (%v)", d.Name, e.l.PID(d.Name), werr)
			if p := e.panicLines(d.Name); p != "" {
				msg += ":\n" + p
			}
			errs = append(errs, fmt.Errorf("%s", msg))
			continue
		}
		if _, err := e.show(d.Name); err != nil {
			errs = append(errs, fmt.Errorf("daemon %s runs but does not answer show dmvpn: %v", d.Name, err))
		}
	}
	return errs
}

// stayAlive checks, polling for the whole window, that every daemon keeps
// running; it returns the first death it sees.
func (e *env) stayAlive(window time.Duration) error {
	var dead error
	end := time.Now().Add(window)
	_ = e.poll(window+time.Second, 100*time.Millisecond, func() error {
		for _, d := range lab.Daemons {
			if !e.l.Running(d.Name) {
				dead = fmt.Errorf("daemon %s died", d.Name)
				return nil
			}
		}
		if time.Now().Before(end) {
			return fmt.Errorf("watching")
		}
		return nil
	})
	return dead
}

// forgedMappings returns the cache entries of node that map an address
// the attacker claimed or made up: an NBMA or claimed NBMA address no
// daemon of the lab has, an overlay address at another node's NBMA address,
// or an overlay address that is nobody's. Entries without an NBMA address
// (negative, incomplete) map nothing.
func forgedMappings(es []api.NHRPEntry) []string {
	var bad []string
	host := func(s string) string {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().String()
		}
		return s
	}
	for _, x := range es {
		nbma := host(x.NBMA)
		if nbma == "" || nbma == "invalid IP" {
			continue
		}
		claimed := host(x.ClaimedNBMA)
		want, known := legitNBMA[x.Protocol]
		switch {
		case !known, nbma != want, claimed != "" && claimed != "invalid IP" && !legitClaimed[claimed]:
			bad = append(bad, fmt.Sprintf("%s -> %s (claimed %s, %s, %s)", x.Protocol, x.NBMA, x.ClaimedNBMA, x.Type, x.Transport))
		}
	}
	return bad
}

// forgedRoutes returns node's routes the attacker fed it.
func forgedRoutes(rs []api.Route) []string {
	var bad []string
	for _, r := range rs {
		switch {
		case r.Prefix == forgedPrefix:
			bad = append(bad, fmt.Sprintf("%s via %s (%s)", r.Prefix, r.NextHop, r.Source))
		case r.Source == "nhrp" && legitShortcuts[r.Prefix] != r.NextHop:
			bad = append(bad, fmt.Sprintf("%s via %s (%s)", r.Prefix, r.NextHop, r.Source))
		}
	}
	return bad
}

func firstN(v []string, n int) string {
	if len(v) <= n {
		return strings.Join(v, "; ")
	}
	return strings.Join(v[:n], "; ") + fmt.Sprintf("; ... %d in all", len(v))
}

// noForgery checks every running daemon's cache and routes.
func (e *env) noForgery() []error {
	var errs []error
	for _, d := range lab.Daemons {
		if !e.l.Running(d.Name) {
			continue
		}
		var es []api.NHRPEntry
		if err := e.showJSON(d.Name, "nhrp", &es); err != nil {
			errs = append(errs, err)
		} else if bad := forgedMappings(es); len(bad) > 0 {
			errs = append(errs, fmt.Errorf("%s holds %d forged NHRP mappings: %s", d.Name, len(bad), firstN(bad, 8)))
		}
		var rs []api.Route
		if err := e.showJSON(d.Name, "routes", &rs); err != nil {
			errs = append(errs, err)
		} else if bad := forgedRoutes(rs); len(bad) > 0 {
			errs = append(errs, fmt.Errorf("%s holds forged routes: %s (all: %s)", d.Name, firstN(bad, 8), routesString(rs)))
		}
	}
	return errs
}

// trafficFlows checks host-lan1 -> host-lan2: reachable within reachLimit,
// then 5 pings out of 5 and a 256 KiB TCP echo.
func (e *env) trafficFlows() []error {
	dst := flow12.Dst
	if err := e.waitPing(lab.HostLAN1, dst, reachLimit); err != nil {
		return []error{fmt.Errorf("host-lan1 -> host-lan2 (%s): not reachable within %v: %v", dst, reachLimit, err)}
	}
	var errs []error
	r, err := e.l.PingStats(e.ctx, lab.HostLAN1, dst, 5)
	if err != nil || r.Received != r.Sent {
		errs = append(errs, fmt.Errorf("host-lan1 -> host-lan2: %s (%v)", r, err))
	} else {
		e.t.Logf("ping host-lan1 -> host-lan2: %s", r)
	}
	msg, err := tcpEcho(e.ctx, e.l, lab.HostLAN1, lab.HostLAN2, 256<<10, 20*time.Second)
	if err != nil {
		errs = append(errs, fmt.Errorf("TCP echo host-lan1 -> host-lan2: %v", err))
	} else {
		e.t.Logf("TCP echo %s", msg)
	}
	return errs
}

// afterAttack runs the checks every attack ends with (see the top of this
// file) and reports each failure.
func (e *env) afterAttack(label string) {
	e.t.Helper()
	e.logDropped(label)
	alive := e.daemonsAlive()
	for _, err := range alive {
		e.t.Errorf("%s: %v", label, err)
	}
	for _, err := range e.noForgery() {
		e.t.Errorf("%s: %v", label, err)
	}
	if len(alive) > 0 {
		// Traffic checks would only time out on the dead daemon.
		e.t.Errorf("%s: spoke-to-spoke traffic not checked: a daemon died", label)
		return
	}
	for _, err := range e.trafficFlows() {
		e.t.Errorf("%s: %v", label, err)
	}
}

// cacheEntries returns node's cache, or fails t.
func (e *env) cacheEntries(node string) []api.NHRPEntry {
	e.t.Helper()
	var es []api.NHRPEntry
	if err := e.showJSON(node, "nhrp", &es); err != nil {
		e.t.Fatal(err)
	}
	return es
}

// --- the attacks ---

// zeroCIERegistration is a Registration Request without a single CIE:
// with the lab's authentication and Cisco's usual extensions it is 76
// bytes of NHRP.
func zeroCIERegistration(t *testing.T, dst netip.Addr) nhrp.Packet {
	p := nhrp.Packet{
		HopCount: 255, Type: nhrp.TypeRegistrationRequest, Flags: nhrp.FlagRegistrationU | nhrp.FlagCiscoNAT, RequestID: 1,
		SrcNBMA: attackerIP, SrcProto: netip.MustParseAddr("10.0.0.77"), DstProto: dst,
		Extensions: requestExtensions(t),
	}
	if n := p.Len(); n != 76 {
		t.Fatalf("the zero-CIE Registration Request is %d bytes, want 76", n)
	}
	return p
}

// Attack 1: a Registration Request with zero CIEs, to the hub and to
// spoke1, over raw GRE and over GRE-in-UDP. A daemon that indexes the
// first CIE without looking dies of it.
func TestAttackZeroCIERegistration(t *testing.T) {
	testenv.RequireRoot(t)
	for _, v := range []struct{ victim, transport string }{
		{lab.Hub, "gre"}, {lab.Hub, "udp"}, {lab.Spoke1, "gre"}, {lab.Spoke1, "udp"},
	} {
		t.Run(v.victim+"/"+v.transport, func(t *testing.T) {
			e := newAttackLab(t, 'c')
			d, _ := lab.DaemonByName(v.victim)
			c := e.startWideCapture(v.victim)
			p := zeroCIERegistration(t, d.Overlay.Addr())
			res := e.mustAttack(attackPlan{Shots: []attackShot{{
				Label: "zero-CIE Registration Request", Dst: d.WAN.Addr(), Transport: v.transport, Packet: p,
			}}}, 20*time.Second)
			t.Logf("sent a %d-byte Registration Request with no CIE to %s (%s) over %s", res.NHRPBytes[0], v.victim, d.WAN.Addr(), v.transport)
			if err := e.stayAlive(2 * time.Second); err != nil {
				t.Errorf("within 2 s of the zero-CIE Registration Request: %v", err)
			}
			e.requireAttackFrames(c, 1, nhrpRegistrationRequest)
			e.afterAttack("after the zero-CIE Registration Request to " + v.victim + " over " + v.transport)
		})
	}
}

// Attack 2: a Registration Request to a spoke (not a server), claiming
// spoke2's overlay address at the attacker's NBMA address for 65535 s,
// unique. spoke1 must not map spoke2 to the attacker: its traffic for
// host-lan2 keeps reaching spoke2, and none of it reaches the attacker.
func TestAttackRegistrationAtSpoke(t *testing.T) {
	e := newAttackLab(t, 'g')
	s1Cap := e.startWideCapture(lab.Spoke1)
	attCap := e.startWideCapture(lab.Attacker)
	reg := nhrp.Packet{
		HopCount: 255, Type: nhrp.TypeRegistrationRequest, Flags: nhrp.FlagRegistrationU | nhrp.FlagCiscoNAT, RequestID: 7,
		SrcNBMA: attackerIP, SrcProto: s2Tunnel, DstProto: s1Tunnel,
		CIEs:       []nhrp.CIE{{PrefixLength: 32, MTU: lab.TunnelMTU, HoldingTime: 65535}},
		Extensions: requestExtensions(t),
	}
	res := e.mustAttack(attackPlan{Listen: 2, Shots: []attackShot{
		{Label: "registration of 10.0.0.12 at spoke1 (gre)", Dst: s1NBMA, Transport: "gre", Packet: reg},
		{Label: "registration of 10.0.0.12 at spoke1 (udp)", Dst: s1NBMA, Transport: "udp", Packet: reg},
	}}, 20*time.Second)
	for _, r := range res.Received {
		if r.Type == nhrpRegistrationReply && len(r.CIECodes) > 0 && r.CIECodes[0] == 0 {
			t.Errorf("spoke1 accepted the attacker's registration of 10.0.0.12: %s", r)
		}
	}

	// host-lan1 -> host-lan2 for 3 s while the attacker's wire is watched.
	r, err := e.l.PingStats(e.ctx, lab.HostLAN1, flow12.Dst, 15)
	if err != nil || r.Received != r.Sent {
		t.Errorf("host-lan1 -> host-lan2 after the forged registration: %s (%v)", r, err)
	} else {
		t.Logf("host-lan1 -> host-lan2 after the forged registration: %s", r)
	}
	t.Logf("tcpdump on the attacker: %s", lastLine(attCap.stop()))
	if n := e.dataFramesFrom(attCap, s1IP); n > 0 {
		t.Errorf("the attacker received %d tunnelled data packets from spoke1: spoke1 sends spoke2's traffic to the attacker", n)
	} else {
		t.Logf("the attacker received no tunnelled data from spoke1")
	}
	for _, x := range e.cacheEntries(lab.Spoke1) {
		if x.Type == "dynamic" {
			t.Errorf("spoke1 (a spoke, not a server) holds a registration: %s -> %s (%s, holding %s)", x.Protocol, x.NBMA, x.Type, x.HoldingTime)
		}
	}
	e.requireAttackFrames(s1Cap, 1, nhrpRegistrationRequest)
	e.afterAttack("after the registration at spoke1")
}

// forgedReply is a Resolution Reply to spoke1 for a request of its own,
// from an owner at the attacker's NBMA address advertising 10.1.2.0/25.
func forgedReply(t *testing.T, owner netip.Addr) nhrp.Packet {
	self := nhrp.SelfCIE(attackerIP, owner, lab.TunnelMTU, 65535)
	return nhrp.Packet{
		HopCount: 255, Type: nhrp.TypeResolutionReply,
		Flags:   nhrp.FlagResolutionQ | nhrp.FlagResolutionA | nhrp.FlagResolutionD | nhrp.FlagResolutionS | nhrp.FlagCiscoNAT,
		SrcNBMA: s1NBMA, SrcProto: s1Tunnel, DstProto: netip.MustParseAddr("10.1.2.10"),
		CIEs: []nhrp.CIE{{PrefixLength: 25, MTU: lab.TunnelMTU, HoldingTime: 65535, NBMA: attackerIP, Protocol: owner}},
		Extensions: []nhrp.Extension{
			nhrp.NewCIEExtension(nhrp.ExtResponderAddress, self),
			nhrp.NewCIEExtension(nhrp.ExtForwardTransitNHS),
			nhrp.NewCIEExtension(nhrp.ExtReverseTransitNHS),
			attackAuth(t), nhrp.NewEnd(),
		},
	}
}

// forgedRedirect is a Traffic Indication to spoke1 for a packet from
// host-lan1 to dst.
func forgedRedirect(t *testing.T, dst string) nhrp.Packet {
	return nhrp.Packet{
		HopCount: 1, Type: nhrp.TypeTrafficIndication, Code: nhrp.TrafficCodeRedirect,
		SrcNBMA: attackerIP, SrcProto: hubTunnel, DstProto: netip.MustParseAddr("10.1.1.10"),
		Payload:    ipv4Payload(netip.MustParseAddr("10.1.1.10"), netip.MustParseAddr(dst)),
		Extensions: authAndEnd(t),
	}
}

// Attack 3: forged Traffic Indications to spoke1 (from the attacker's own
// address), each followed by Resolution Replies sprayed over request IDs
// 1..2000 and 200 random ones, claiming 10.1.2.0/25 is at the attacker
// (owner 10.0.0.12, spoke2's address, or 10.0.0.99, nobody's), from the
// attacker's address and from the hub's (forged). spoke1 must install
// neither the route nor a mapping to the attacker.
func TestAttackForgedResolutionReplies(t *testing.T) {
	e := newAttackLab(t, 'f')
	c := e.startWideCapture(lab.Spoke1)
	var shots []attackShot
	round := func(dst string, owner, src netip.Addr) {
		from := "the attacker"
		if src.IsValid() {
			from = src.String() + " (forged)"
		}
		shots = append(shots,
			attackShot{Label: "Traffic Indication for " + dst, Dst: s1NBMA, Transport: "gre", Packet: forgedRedirect(t, dst)},
			attackShot{Label: fmt.Sprintf("Resolution Replies %s via %s from %s", forgedPrefix, owner, from), Src: src, Dst: s1NBMA,
				Transport: "gre", Packet: forgedReply(t, owner), IDFrom: 1, IDTo: 2000, RandomIDs: 200})
	}
	// 10.1.2.10 is covered by the shortcut; 10.1.9.x routes via the hub
	// and is nobody's, so each such redirect opens a resolution at spoke1.
	round("10.1.2.10", s2Tunnel, netip.Addr{})
	round("10.1.9.10", nobody, netip.Addr{})
	round("10.1.9.11", s2Tunnel, netip.Addr{})
	round("10.1.9.12", s2Tunnel, hubNBMA)
	round("10.1.9.13", nobody, hubNBMA)
	e.mustAttack(attackPlan{Shots: shots}, 60*time.Second)
	if err := e.stayAlive(time.Second); err != nil {
		t.Error(err)
	}

	rs, err := e.routes(lab.Spoke1)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Prefix == forgedPrefix {
			t.Errorf("spoke1 installed the forged route %s via %s (%s)", r.Prefix, r.NextHop, r.Source)
		}
	}
	for _, x := range e.cacheEntries(lab.Spoke1) {
		if strings.HasPrefix(x.NBMA, attackerIP.String()) || x.Protocol == nobody.String() {
			t.Errorf("spoke1 maps %s -> %s (%s): forged by the attacker's Resolution Reply", x.Protocol, x.NBMA, x.Type)
		}
	}
	e.requireAttackFrames(c, 4, nhrpTrafficIndication, nhrpResolutionReply)
	e.afterAttack("after the forged redirects and Resolution Replies")
}

// Attack 4: a Purge Request for 10.0.0.11 sent to the hub from spoke1's
// address (forged), then a unique Registration of 10.0.0.11 from the
// attacker's own address. The hub must keep 10.0.0.11 at spoke1 (it may
// take up to about 3 s to check with spoke1 first) and refuse the
// attacker's registration; spoke1's LAN stays reachable via the hub.
func TestAttackSpoofedPurge(t *testing.T) {
	e := newAttackLab(t, 'u')
	c := e.startWideCapture(lab.Hub)
	purges0 := e.stats(lab.Hub).NHRP["purges_received"]
	rx0 := e.stats(lab.Hub).NHRP["received"]
	purge := nhrp.Packet{
		HopCount: 255, Type: nhrp.TypePurgeRequest, RequestID: 0x5eed,
		SrcNBMA: s1NBMA, SrcProto: s1Tunnel, DstProto: hubTunnel,
		CIEs:       []nhrp.CIE{{PrefixLength: 32, Protocol: s1Tunnel}},
		Extensions: authAndEnd(t),
	}
	e.mustAttack(attackPlan{Shots: []attackShot{
		{Label: "Purge Request for 10.0.0.11 from 198.51.100.1 (forged)", Src: s1NBMA, Dst: hubNBMA, Transport: "gre", Packet: purge},
	}}, 20*time.Second)
	// The hub has read it once it counts it (as a purge, or as anything).
	if err := e.poll(5*time.Second, 50*time.Millisecond, func() error {
		st, err := e.statsOf(lab.Hub)
		if err != nil {
			return err
		}
		if st.NHRP["purges_received"] > purges0 {
			return nil
		}
		if st.NHRP["received"] > rx0 {
			return nil // counted, though not as a purge (the fix may drop it earlier)
		}
		return fmt.Errorf("the hub counted neither a purge nor any NHRP packet")
	}); err != nil {
		t.Logf("after the forged purge: %v", err)
	}

	reg := nhrp.Packet{
		HopCount: 255, Type: nhrp.TypeRegistrationRequest, Flags: nhrp.FlagRegistrationU | nhrp.FlagCiscoNAT, RequestID: 0xbad,
		SrcNBMA: attackerIP, SrcProto: s1Tunnel, DstProto: hubTunnel,
		CIEs:       []nhrp.CIE{{PrefixLength: 32, MTU: lab.TunnelMTU, HoldingTime: 7200}},
		Extensions: requestExtensions(t, nhrp.CIE{PrefixLength: 32, MTU: lab.TunnelMTU, NBMA: hubNBMA, Protocol: hubTunnel}),
	}
	register := func(when string) {
		res := e.mustAttack(attackPlan{Listen: 1.5, Shots: []attackShot{
			{Label: "unique registration of 10.0.0.11 " + when, Dst: hubNBMA, Transport: "gre", Packet: reg},
		}}, 20*time.Second)
		replied := false
		for _, r := range res.Received {
			if r.Type != nhrpRegistrationReply || r.From != hubIP {
				continue
			}
			replied = true
			for _, code := range r.CIECodes {
				if code == 0 {
					t.Errorf("the hub accepted the attacker's registration of 10.0.0.11 %s: %s", when, r)
				}
			}
		}
		if !replied {
			t.Logf("the hub did not answer the attacker's registration %s (silently refused)", when)
		}
	}
	register("after the forged purge")

	// The hub keeps 10.0.0.11 -> 198.51.100.1 through a 5 s window (it
	// may probe spoke1 for up to ~3 s), and after one more registration.
	mapped := func() error {
		x, ok, err := e.nhrpEntry(lab.Hub, s1Tunnel.String())
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("the hub lost its mapping of 10.0.0.11 (spoke1)")
		case x.NBMA != s1IP || x.Type != "dynamic":
			return fmt.Errorf("the hub maps 10.0.0.11 -> %s (%s, claimed %s), want 198.51.100.1 (dynamic)", x.NBMA, x.Type, x.ClaimedNBMA)
		}
		return nil
	}
	stays := func(window time.Duration) {
		var broke error
		end := time.Now().Add(window)
		_ = e.poll(window+5*time.Second, 100*time.Millisecond, func() error {
			if err := mapped(); err != nil {
				broke = err
				return nil
			}
			if time.Now().Before(end) {
				return fmt.Errorf("watching")
			}
			return nil
		})
		if broke != nil {
			t.Error(broke)
		}
	}
	stays(5 * time.Second)
	register("5 s later")
	stays(time.Second)

	// spoke1's LAN from the hub's LAN (the hub's own mapping) and from
	// host-lan2.
	for _, from := range []string{lab.HostLAN0, lab.HostLAN2} {
		if err := e.waitPing(from, "10.1.1.10", 10*time.Second); err != nil {
			t.Errorf("%s -> host-lan1 after the forged purge: %v", from, err)
		} else if r, err := e.l.PingStats(e.ctx, from, "10.1.1.10", 5); err != nil || r.Received != r.Sent {
			t.Errorf("%s -> host-lan1 after the forged purge: %s (%v)", from, r, err)
		} else {
			t.Logf("%s -> host-lan1: %s", from, r)
		}
	}
	e.requireAttackFrames(c, 1, nhrpPurgeRequest, nhrpRegistrationRequest)
	e.afterAttack("after the forged purge and the attacker's registration")
}

// Attack 5: Error Indications (code 11, authentication failure) to
// spoke1 from the hub's address (forged), quoting a fabricated Registration
// Request of spoke1: with guessed request IDs 1..64 (without and with the
// lab's authentication extension), with request ID 0, and cut short. After
// each variant spoke1's registration with the hub must stay UP (checked at
// every look for 3 s).
func TestAttackSpoofedErrorIndication(t *testing.T) {
	e := newAttackLab(t, 'j')
	offending := func(id uint32) []byte {
		p := nhrp.Packet{
			HopCount: 255, Type: nhrp.TypeRegistrationRequest, Flags: nhrp.FlagCiscoNAT, RequestID: id,
			SrcNBMA: s1NBMA, SrcProto: s1Tunnel, DstProto: hubTunnel,
			CIEs:       []nhrp.CIE{{PrefixLength: 32, MTU: lab.TunnelMTU, HoldingTime: uint16(lab.DefaultHoldtime / time.Second)}},
			Extensions: requestExtensions(t, nhrp.CIE{PrefixLength: 32, MTU: lab.TunnelMTU, NBMA: hubNBMA, Protocol: hubTunnel}),
		}
		b, err := p.AppendEncode(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ei := func(label string, payload []byte, auth bool) attackShot {
		p := nhrp.Packet{
			HopCount: 255, Type: nhrp.TypeErrorIndication, Code: uint16(nhrp.ErrAuthenticationFailure),
			ErrorOffset: 28, SrcNBMA: hubNBMA, SrcProto: hubTunnel, DstProto: s1Tunnel, Payload: payload,
		}
		if auth {
			p.Extensions = authAndEnd(t)
		}
		return attackShot{Label: label, Src: hubNBMA, Dst: s1NBMA, Transport: "gre", Packet: p}
	}
	guessed := func(auth bool) []attackShot {
		var v []attackShot
		for id := uint32(1); id <= 64; id++ {
			v = append(v, ei("Error Indications quoting request IDs 1-64", offending(id), auth))
		}
		return v
	}
	nhsUp := func() (api.Peer, error) {
		d, err := e.show(lab.Spoke1)
		if err != nil {
			return api.Peer{}, err
		}
		p, ok := peer(d, hubTunnel.String())
		if !ok {
			return p, fmt.Errorf("spoke1 does not list its NHS: %v", tunnels(d))
		}
		if p.State != "UP" {
			return p, fmt.Errorf("spoke1's registration with the hub is %s (%s)", p.State, p.Reason)
		}
		return p, nil
	}
	for _, v := range []struct {
		name  string
		shots []attackShot
	}{
		{"guessed request IDs", guessed(false)},
		{"guessed request IDs, authenticated", guessed(true)},
		{"request ID 0", []attackShot{ei("Error Indication quoting request ID 0", offending(0), false)}},
		{"cut offending packet", []attackShot{ei("Error Indication quoting 28 bytes of a request", offending(1)[:28], false)}},
	} {
		t.Run(v.name, func(t *testing.T) {
			se := *e
			se.t = t
			// A previous variant may have knocked the registration down;
			// spoke1 re-registers after its backoff.
			if err := se.poll(30*time.Second, 100*time.Millisecond, func() error { _, err := nhsUp(); return err }); err != nil {
				t.Fatalf("before the attack: %v", err)
			}
			c := se.startWideCapture(lab.Spoke1)
			se.mustAttack(attackPlan{Shots: v.shots}, 20*time.Second)
			var broke error
			end := time.Now().Add(3 * time.Second)
			_ = se.poll(8*time.Second, 100*time.Millisecond, func() error {
				if _, err := nhsUp(); err != nil {
					broke = err
					return nil
				}
				if time.Now().Before(end) {
					return fmt.Errorf("watching")
				}
				return nil
			})
			if broke != nil {
				t.Errorf("after %d forged Error Indications (%s): %v", len(v.shots), v.name, broke)
			} else {
				t.Logf("spoke1's registration with the hub stayed UP for 3 s after %d forged Error Indications (%s)", len(v.shots), v.name)
			}
			se.requireAttackFrames(c, len(v.shots), nhrpErrorIndication)
		})
	}
	e.afterAttack("after the forged Error Indications")
}

// --- attack 6: the flood ---

// floodCount is how many Resolution Requests the flood sends.
const floodCount = 20000

// Bounds of the flood test.
const (
	floodMaxLoss    = 5.0       // percent of pings lost during the flood
	floodMaxEntries = 10000     // NHRP cache entries on the hub or spoke2
	floodMaxRSS     = 100 << 20 // bytes, each daemon
)

// bgPing is a ping running in the background: one line per echo, with
// timestamps (-D) and "no answer yet" lines (-O).
type bgPing struct {
	label    string
	interval time.Duration
	cmd      *exec.Cmd
	out      *syncBuffer
	done     chan error
}

func (e *env) startPing(from, dst, label string, interval time.Duration) *bgPing {
	e.t.Helper()
	p := &bgPing{label: label, interval: interval, out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = e.l.Command(e.ctx, from, "ping", "-n", "-D", "-O", "-W", "1", "-w", "90",
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), dst)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	pid := p.cmd.Process.Pid
	go func() { p.done <- p.cmd.Wait() }()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			// ours, by PID (`ip netns exec` runs ping in its place)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := e.poll(10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(p.out.String(), " bytes from ") {
			return fmt.Errorf("%s: no echo reply within 10 s: %q", label, p.out.String())
		}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// stop ends the ping with SIGINT (it prints its summary) and waits.
func (p *bgPing) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.done:
		p.done <- err
		return nil
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("%s: ping did not stop on SIGINT", p.label)
	}
}

var (
	pingSummaryRE  = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	pingReplyRE    = regexp.MustCompile(`(?m)^\[(\d+\.\d+)\] \d+ bytes from [^:]+: icmp_seq=(\d+) .*time=([\d.]+) ms`)
	pingNoAnswerRE = regexp.MustCompile(`(?m)^\[(\d+\.\d+)\] no answer yet for icmp_seq=(\d+)`)
)

// pingLoss is what a background ping saw: overall, and for the echoes
// sent between from and to.
type pingLoss struct {
	sent, received         int
	inWindow, lostInWindow int
	windowStart, windowEnd time.Time
}

func (l pingLoss) overall() float64 {
	if l.sent == 0 {
		return 100
	}
	return 100 * float64(l.sent-l.received) / float64(l.sent)
}

func (l pingLoss) window() float64 {
	if l.inWindow == 0 {
		return 100
	}
	return 100 * float64(l.lostInWindow) / float64(l.inWindow)
}

func (l pingLoss) String() string {
	return fmt.Sprintf("%d/%d echoes answered (%.1f%% lost); during the flood window (%d ms): %d/%d lost (%.1f%%)",
		l.received, l.sent, l.overall(), l.windowEnd.Sub(l.windowStart).Milliseconds(), l.lostInWindow, l.inWindow, l.window())
}

func unixTime(s string) time.Time {
	f, _ := strconv.ParseFloat(s, 64)
	return time.Unix(0, int64(f*1e9))
}

// loss reads p's output (after stop): each echo's send time is its reply's
// timestamp minus its round trip, or for an unanswered one, the time ping
// said "no answer yet" minus one interval; echoes with neither get the
// time of the last known one plus the intervals between.
func (p *bgPing) loss(from, to time.Time) pingLoss {
	out := p.out.String()
	l := pingLoss{windowStart: from, windowEnd: to}
	if m := pingSummaryRE.FindStringSubmatch(out); m != nil {
		l.sent, _ = strconv.Atoi(m[1])
		l.received, _ = strconv.Atoi(m[2])
	}
	sentAt := map[int]time.Time{}
	answered := map[int]bool{}
	for _, m := range pingReplyRE.FindAllStringSubmatch(out, -1) {
		seq, _ := strconv.Atoi(m[2])
		rtt, _ := strconv.ParseFloat(m[3], 64)
		sentAt[seq] = unixTime(m[1]).Add(-time.Duration(rtt * float64(time.Millisecond)))
		answered[seq] = true
	}
	for _, m := range pingNoAnswerRE.FindAllStringSubmatch(out, -1) {
		seq, _ := strconv.Atoi(m[2])
		if _, ok := sentAt[seq]; !ok {
			sentAt[seq] = unixTime(m[1]).Add(-p.interval)
		}
	}
	var last time.Time
	for seq := 1; seq <= l.sent; seq++ {
		at, ok := sentAt[seq]
		if !ok {
			if last.IsZero() {
				continue
			}
			at = last.Add(p.interval)
		}
		last = at
		if at.Before(from) || at.After(to) {
			continue
		}
		l.inWindow++
		if !answered[seq] {
			l.lostInWindow++
		}
	}
	return l
}

// rssSampler records each daemon's largest VmRSS while it runs.
type rssSampler struct {
	mu   sync.Mutex
	max  map[string]uint64 // bytes
	stop chan struct{}
	done chan struct{}
}

// procStatusKB reads a "Key:   N kB" line of /proc/PID/status.
func procStatusKB(pid int, key string) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, key)
}

func (e *env) sampleRSS(every time.Duration) *rssSampler {
	s := &rssSampler{max: map[string]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	pids := e.l.PIDs()
	sample := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for n, pid := range pids {
			if kb, err := procStatusKB(pid, "VmRSS"); err == nil && kb*1024 > s.max[n] {
				s.max[n] = kb * 1024
			}
		}
	}
	sample()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				sample()
				return
			case <-e.ctx.Done():
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return s
}

func (s *rssSampler) finish() map[string]uint64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

// Attack 6: 20,000 Resolution Requests to the hub from invented requesters
// (random source protocol addresses, a few on the tunnel subnet; random
// claimed NBMA addresses; half of them from forged random outer sources),
// for addresses on the hub's LAN (answered by the hub) and on spoke2's
// (forwarded to spoke2), as fast as the attacker can send, while host-lan1
// pings host-lan2 over the shortcut and host-lan1 pings host-lan0 through
// the hub every 50 ms. At most 5 % of those echoes may be lost during the
// flood, none 5 s after it; the hub's and spoke2's caches stay within
// 10,000 entries and every daemon within 100 MB of resident memory.
func TestAttackResolutionFlood(t *testing.T) {
	e := newAttackLab(t, 'o')
	c := e.startWideCapture(lab.Hub)
	rss := e.sampleRSS(100 * time.Millisecond)
	rxHub0 := e.stats(lab.Hub).NHRP["received"]

	const interval = 50 * time.Millisecond
	pings := []*bgPing{
		e.startPing(lab.HostLAN1, flow12.Dst, "host-lan1 -> host-lan2 (shortcut)", interval),
		e.startPing(lab.HostLAN1, "10.1.0.10", "host-lan1 -> host-lan0 (through the hub)", interval),
	}
	res := e.mustAttack(attackPlan{Flood: &floodSpec{
		Count: floodCount, Seed: 0xf100d, Dst: hubNBMA, OnSubnetPct: 5, HubOwnedPct: 60, SpoofPct: 50,
	}}, 60*time.Second)
	floodStart, floodEnd := time.Unix(0, res.FloodStart), time.Unix(0, res.FloodEnd)
	took := floodEnd.Sub(floodStart)
	t.Logf("the attacker sent %d Resolution Requests in %v (%.0f/s)", res.Sent["flood"], took.Round(time.Millisecond),
		float64(res.Sent["flood"])/took.Seconds())

	// Keep pinging 2 s past the flood (an observation window, polled),
	// following the hub's NHRP counter as it works through the backlog.
	watch := func(until time.Time, what string) {
		var seen []string
		last := uint64(0)
		_ = e.poll(time.Until(until)+5*time.Second, 250*time.Millisecond, func() error {
			var st api.Stats
			if e.l.Running(lab.Hub) && e.showJSON(lab.Hub, "stats", &st) == nil && st.NHRP["received"] != last {
				last = st.NHRP["received"]
				seen = append(seen, fmt.Sprintf("+%v: %d", time.Since(floodEnd).Round(100*time.Millisecond), last-rxHub0))
			}
			if time.Now().Before(until) {
				return fmt.Errorf("watching")
			}
			return nil
		})
		t.Logf("%s: NHRP packets the hub received since the flood began, by time after its end: %s", what, firstN(seen, 20))
	}
	watch(floodEnd.Add(2*time.Second), "during the pings")
	for _, p := range pings {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
		l := p.loss(floodStart, floodEnd.Add(time.Second))
		t.Logf("%s during the flood: %s", p.label, l)
		if l.sent == 0 || l.inWindow == 0 {
			t.Errorf("%s: no echo measured during the flood: %q", p.label, lastLine(p.out.String()))
		} else if l.window() > floodMaxLoss || l.overall() > floodMaxLoss {
			t.Errorf("%s lost %.1f%% of its echoes during the flood (%.1f%% overall), want at most %.0f%%", p.label, l.window(), l.overall(), floodMaxLoss)
		}
	}
	if errs := e.daemonsAlive(); len(errs) > 0 {
		for _, err := range errs {
			t.Error(err)
		}
		t.FailNow()
	}

	// 5 s after the flood: nothing lost.
	watch(floodEnd.Add(5*time.Second), "until 5 s after the flood")
	for _, dst := range []string{flow12.Dst, "10.1.0.10"} {
		r, err := e.l.PingStats(e.ctx, lab.HostLAN1, dst, 20)
		if err != nil || r.Received != r.Sent {
			t.Errorf("host-lan1 -> %s 5 s after the flood: %s (%v); want no loss", dst, r, err)
		} else {
			t.Logf("host-lan1 -> %s 5 s after the flood: %s", dst, r)
		}
	}
	for _, n := range []string{lab.Hub, lab.Spoke2} {
		if st, err := e.statsOf(n); err == nil {
			for tr, m := range st.Underlay {
				t.Logf("%s: underlay %s counters after the flood: %s", n, tr, countsString(m))
			}
		}
		es := e.cacheEntries(n)
		types := map[string]uint64{}
		for _, x := range es {
			types[x.Type]++
		}
		t.Logf("%s's NHRP cache after the flood: %d entries %s", n, len(es), countsString(types))
		if len(es) > floodMaxEntries {
			t.Errorf("%s's NHRP cache holds %d entries after the flood, want at most %d", n, len(es), floodMaxEntries)
		}
	}
	peak := rss.finish()
	for _, d := range lab.Daemons {
		hwm, _ := procStatusKB(e.l.PID(d.Name), "VmHWM")
		t.Logf("%s: largest VmRSS seen %.1f MB (VmHWM %.1f MB)", d.Name, float64(peak[d.Name])/(1<<20), float64(hwm)/1024)
		if peak[d.Name] > floodMaxRSS {
			t.Errorf("%s's resident memory reached %.1f MB during the flood, want at most %d MB", d.Name, float64(peak[d.Name])/(1<<20), floodMaxRSS>>20)
		}
	}
	e.requireAttackFrames(c, floodCount/20, nhrpResolutionRequest)
	e.afterAttack("after the flood")
}
