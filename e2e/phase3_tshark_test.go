package e2e

// tshark as the oracle on the phase-3 control plane: every Traffic
// Indication, Resolution Request and Reply, Purge Request and Reply and
// Error Indication the lab's daemons send decodes cleanly.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
)

// What tsFrames reads in `tshark -V` (4.0) output, besides tshark_test.go's.
var (
	tsIPv4RE     = regexp.MustCompile(`(?m)^Internet Protocol Version 4, Src: ([0-9.]+), Dst: ([0-9.]+)`)
	tsNHRPCodeRE = regexp.MustCompile(`NHRP Packet Type: NHRP [A-Za-z ]+ \((\d+)\)`)
	tsErrCodeRE  = regexp.MustCompile(`Error Code: ([^\n]+)`)
	tsExpertRE   = regexp.MustCompile(`\[Expert Info \((?:Warning|Error)/[A-Za-z ]+\): [^\]\n]*\]`)
)

// NHRP packet types (RFC 2332).
const (
	nhrpResolutionRequest = 1
	nhrpResolutionReply   = 2
	nhrpPurgeRequest      = 5
	nhrpPurgeReply        = 6
	nhrpErrorIndication   = 7
	nhrpTrafficIndication = 8
)

// tsFrame is what one frame of `tshark -V` says.
type tsFrame struct {
	head     string // "Frame N: ..."
	text     string // the whole tree
	over     string // gre or udp
	src, dst string // outer IPv4 addresses
	nhrp     int    // NHRP packet type, 0: data
}

func (f tsFrame) String() string {
	what := "data"
	if f.nhrp != 0 {
		what = fmt.Sprintf("NHRP type %d", f.nhrp)
	}
	return fmt.Sprintf("%s %s -> %s over %s", what, f.src, f.dst, f.over)
}

// tsFrames splits `tshark -V` output into frames and fails t for each one
// that is Malformed, carries an expert warning or error, has an NHRP
// checksum that is not [correct], or a GRE key other than the lab's. Each
// kind of problem is shown once with the frame's full tree.
func tsFrames(t *testing.T, name, out string) []tsFrame {
	t.Helper()
	starts := tsFrameRE.FindAllStringIndex(out, -1)
	if len(starts) == 0 {
		t.Fatalf("%s: tshark shows no frame:\n%.2000s", name, out)
	}
	var frames []tsFrame
	bad := 0
	shown := map[string]bool{} // each kind of problem is shown once in full
	report := func(frame, head, problem string) {
		bad++
		switch {
		case bad > 20:
		case shown[problem]:
			t.Errorf("%s: %s: %s", name, head, problem)
		default:
			shown[problem] = true
			t.Errorf("%s: %s: %s\n%s", name, head, problem, frame)
		}
	}
	for i, s := range starts {
		end := len(out)
		if i+1 < len(starts) {
			end = starts[i+1][0]
		}
		text := out[s[0]:end]
		f := tsFrame{text: text}
		f.head, _, _ = strings.Cut(text, "\n")
		m := tsProtosRE.FindStringSubmatch(text)
		if m == nil {
			report(text, f.head, "no protocol list")
			continue
		}
		protos := m[1]
		switch {
		case strings.Contains(protos, ":udp:gre"):
			f.over = "udp"
		case strings.Contains(protos, ":ip:gre"):
			f.over = "gre"
		default:
			report(text, f.head, "neither GRE nor GRE-in-UDP: "+protos)
			continue
		}
		if ip := tsIPv4RE.FindStringSubmatch(text); ip != nil {
			f.src, f.dst = ip[1], ip[2]
		}
		// TCP's sequence analysis (group Sequence: retransmissions,
		// D-SACK of the BGP sessions inside the tunnel) is about the
		// kernels' TCP, not about what we encode.
		experts := slices.DeleteFunc(tsExpertRE.FindAllString(text, -1), func(x string) bool { return strings.Contains(x, "/Sequence)") })
		if len(experts) > 0 {
			report(text, f.head, strings.Join(experts, " "))
		} else if strings.Contains(text, "Malformed") {
			report(text, f.head, `"Malformed"`)
		}
		if keys := tsGREKeyRE.FindAllStringSubmatch(text, -1); len(keys) != 1 || keys[0][1] != fmt.Sprintf("%08x", lab.TunnelKey) {
			report(text, f.head, fmt.Sprintf("GRE keys %v, want one, %#08x", keys, lab.TunnelKey))
		}
		if strings.HasSuffix(protos, ":nhrp") || strings.Contains(protos, ":nhrp:") {
			typ := tsNHRPCodeRE.FindStringSubmatch(text) // the first: an indication's quoted packet follows
			if typ == nil {
				report(text, f.head, "NHRP without a packet type")
				continue
			}
			f.nhrp, _ = strconv.Atoi(typ[1])
			sums := tsChecksumRE.FindAllStringSubmatch(text, -1)
			if len(sums) == 0 {
				report(text, f.head, "NHRP without a checksum")
			}
			for _, c := range sums {
				if c[1] != "correct" {
					report(text, f.head, "NHRP checksum ["+c[1]+"]")
				}
			}
		} else if !strings.Contains(protos, ":gre:ip:") {
			report(text, f.head, "neither NHRP nor IPv4 in GRE: "+protos)
			continue
		}
		frames = append(frames, f)
	}
	if bad > 20 {
		t.Errorf("%s: ... %d problems in all", name, bad)
	}
	return frames
}

// tsSummary counts frames by String().
func tsSummary(frames []tsFrame) string {
	n := map[string]int{}
	for _, f := range frames {
		n[f.String()]++
	}
	var v []string
	for k, c := range n {
		v = append(v, fmt.Sprintf("%s: %d", k, c))
	}
	sort.Strings(v)
	return fmt.Sprintf("%d frames: %s", len(frames), strings.Join(v, "; "))
}

// tsFind returns the frames of NHRP type typ (0: data) from src to dst
// (empty: any) over over (empty: any).
func tsFind(frames []tsFrame, typ int, src, dst, over string) []tsFrame {
	var v []tsFrame
	for _, f := range frames {
		if f.nhrp == typ && (src == "" || f.src == src) && (dst == "" || f.dst == dst) && (over == "" || f.over == over) {
			v = append(v, f)
		}
	}
	return v
}

// tsharkV decodes pcap with `tshark -n -V`, bounded.
func (e *env) tsharkV(pcap string) string {
	e.t.Helper()
	ctx, cancel := e.timeout(60 * time.Second)
	defer cancel()
	ts := exec.CommandContext(ctx, "tshark", "-n", "-r", pcap, "-V")
	ts.WaitDelay = time.Second
	var stderr bytes.Buffer
	ts.Stderr = &stderr
	out, err := ts.Output()
	if err != nil {
		e.t.Fatalf("tshark -r %s -V: %v: %s", pcap, err, stderr.String())
	}
	return string(out)
}

// wantFrame is one kind of frame a capture must hold.
type wantFrame struct {
	what           string
	frames         []tsFrame
	typ            int // NHRP type, 0: data
	src, dst, over string
}

func (e *env) requireFrames(ws ...wantFrame) {
	e.t.Helper()
	for _, w := range ws {
		if n := len(tsFind(w.frames, w.typ, w.src, w.dst, w.over)); n == 0 {
			e.t.Errorf("tshark saw no %s (NHRP type %d, %s -> %s over %s)", w.what, w.typ, w.src, w.dst, w.over)
		}
	}
}

// keepCaptures copies the captures to the temp dir when t failed.
func (e *env) keepCaptures(cs ...*capture) {
	if !e.t.Failed() {
		return
	}
	for _, c := range cs {
		keep := fmt.Sprintf("%s/dmvpn-e2e-%s-%s.pcap", os.TempDir(), e.l.Prefix(), c.node)
		if b, err := os.ReadFile(c.pcap); err == nil && os.WriteFile(keep, b, 0o644) == nil {
			e.t.Logf("capture kept in %s", keep)
		}
	}
}

// The lab's underlay addresses, as tshark shows them.
const (
	hubIP = "192.0.2.1"
	s1IP  = "198.51.100.1"
	s2IP  = "198.51.100.65"
	natIP = "198.51.100.129" // spoke3, behind nat3
)

// A phase-3 run that triggers every kind of resolution traffic, captured on
// the hub's wan0 and on spoke1's (which sees the owners' direct replies):
// redirects and resolutions spoke1 <-> spoke2 (GRE) and spoke1 <-> spoke3
// (GRE-in-UDP, behind NAT), spoke2's clean stop (its Purge Requests, which
// need no reply, the hub's purge of spoke1's shortcut and spoke1's Purge
// Reply), then every spoke's clean stop. tshark must decode all of it: 0
// Malformed, no expert warning or error, every NHRP checksum correct.
// (Error Indications: TestPhase3ErrorIndicationDecodesCleanlyInTshark.)
func TestPhase3WireDecodesCleanlyInTshark(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "tcpdump")
	testenv.RequireTool(t, "tshark")
	testenv.RequireTool(t, "timeout")
	e := newShortcutLab(t, 't', lab.Options{Phase: 3})
	hubCap := e.startCapture(lab.Hub)
	s1Cap := e.startCapture(lab.Spoke1)
	defer e.keepCaptures(hubCap, s1Cap)

	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	for _, c := range []lab.ShortcutCheck{flow12, flow21, flow13, flow31} {
		e.waitDirect(c, directLimit)
	}
	e.provedDirect(2, 0, flow12, flow13)

	// spoke2 stops cleanly: Purge Requests (N flag: no reply) to the hub
	// and to spoke1; the hub purges spoke1's shortcut too, and that one
	// spoke1 answers.
	e.stopSpoke2Purged()
	if err := e.poll(2*time.Second, 50*time.Millisecond, func() error {
		if n := e.stats(lab.Spoke1).NHRP["purges_received"]; n < 2 {
			return fmt.Errorf("spoke1 received %d Purge Requests, want 2 (spoke2's and the hub's)", n)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// Clean stops: Purge Requests over GRE and over UDP.
	for _, n := range []string{lab.Spoke1, lab.Spoke3} {
		if err := e.l.Stop(n); err != nil {
			t.Errorf("stop %s: %v", n, err)
		}
	}
	if err := e.poll(3*time.Second, 50*time.Millisecond, func() error {
		_, err := e.hubPeersUp()
		return err
	}); err != nil {
		t.Errorf("after stopping every spoke: %v", err)
	}
	t.Logf("tcpdump on the hub: %s", hubCap.stop())
	t.Logf("tcpdump on spoke1: %s", s1Cap.stop())

	hub := tsFrames(t, "hub wan0", e.tsharkV(hubCap.pcap))
	t.Logf("hub wan0: %s", tsSummary(hub))
	s1 := tsFrames(t, "spoke1 wan0", e.tsharkV(s1Cap.pcap))
	t.Logf("spoke1 wan0: %s", tsSummary(s1))

	e.requireFrames(
		wantFrame{"Traffic Indication to spoke1", hub, nhrpTrafficIndication, hubIP, s1IP, "gre"},
		wantFrame{"Traffic Indication to spoke3 (NAT)", hub, nhrpTrafficIndication, hubIP, natIP, "udp"},
		wantFrame{"spoke1's Resolution Request", hub, nhrpResolutionRequest, s1IP, hubIP, "gre"},
		wantFrame{"Resolution Request forwarded to spoke2", hub, nhrpResolutionRequest, hubIP, s2IP, "gre"},
		wantFrame{"Resolution Request forwarded to spoke3 (NAT)", hub, nhrpResolutionRequest, hubIP, natIP, "udp"},
		wantFrame{"spoke3's Resolution Request (NAT)", hub, nhrpResolutionRequest, natIP, hubIP, "udp"},
		wantFrame{"spoke1's answer to NATed spoke3, through the hub", hub, nhrpResolutionReply, s1IP, hubIP, "gre"},
		wantFrame{"that answer relayed to spoke3 (NAT)", hub, nhrpResolutionReply, hubIP, natIP, "udp"},
		wantFrame{"spoke2's direct Resolution Reply to spoke1", s1, nhrpResolutionReply, s2IP, s1IP, "gre"},
		wantFrame{"spoke3's direct Resolution Reply to spoke1 (NAT)", s1, nhrpResolutionReply, natIP, s1IP, "udp"},
		wantFrame{"spoke2's Purge Request to the hub", hub, nhrpPurgeRequest, s2IP, hubIP, "gre"},
		wantFrame{"spoke2's Purge Request to spoke1", s1, nhrpPurgeRequest, s2IP, s1IP, "gre"},
		wantFrame{"the hub's Purge Request to spoke1", hub, nhrpPurgeRequest, hubIP, s1IP, "gre"},
		wantFrame{"spoke1's Purge Reply to the hub", hub, nhrpPurgeReply, s1IP, hubIP, "gre"},
		wantFrame{"spoke3's Purge Request (NAT)", hub, nhrpPurgeRequest, natIP, hubIP, "udp"},
		wantFrame{"direct data spoke1 -> spoke2", s1, 0, s1IP, s2IP, "gre"},
		wantFrame{"direct data spoke2 -> spoke1", s1, 0, s2IP, s1IP, "gre"},
		wantFrame{"direct data spoke1 -> spoke3 (NAT)", s1, 0, s1IP, natIP, "udp"},
		wantFrame{"direct data spoke3 -> spoke1 (NAT)", s1, 0, natIP, s1IP, "udp"},
	)
	// The Purge Requests sent on shutdown expect no reply (N flag); the
	// hub's purge of a holder does.
	// (tshark 4.0 labels the N bit, "no reply expected", "Expected Purge
	// Reply".)
	for _, f := range tsFind(hub, nhrpPurgeRequest, "", "", "") {
		noReply := strings.Contains(f.text, "Expected Purge Reply: True")
		if fromHub := f.src == hubIP; noReply == fromHub {
			t.Errorf("%s: %s with the N (no reply) flag %v", f.head, f, noReply)
		}
	}
}

// A spoke with the wrong authentication (8 bytes, like the lab's) is
// answered with an Error Indication, code 11; tshark must decode it (and
// the rest of the capture on the hub's wan0) cleanly. tshark 4.0 calls any
// extension after an Error Indication's quoted packet Malformed
// ("Extensions not allowed per RFC2332 section 5.2.7"), so the Error
// Indication must carry none (not even our authentication).
func TestPhase3ErrorIndicationDecodesCleanlyInTshark(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "tcpdump")
	testenv.RequireTool(t, "tshark")
	testenv.RequireTool(t, "timeout")
	e := newShortcutLab(t, 'i', lab.Options{Phase: 3, Tweak: func(node string, c *lab.NodeConfig) {
		if node == lab.Spoke2 {
			c.NHRP.Authentication = "wrongpw8"
		}
	}})
	hubCap := e.startCapture(lab.Hub)
	defer e.keepCaptures(hubCap)

	e.startAll()
	e.waitHubPeersUp(registerLimit, lab.Spoke1, lab.Spoke3)
	if err := e.poll(10*time.Second, 100*time.Millisecond, func() error {
		d, err := e.show(lab.Spoke2)
		if err != nil {
			return err
		}
		if len(d.Peers) != 1 || d.Peers[0].State != "ERROR" || !strings.Contains(d.Peers[0].Reason, "authentication failure") {
			return fmt.Errorf("spoke2's show dmvpn: %+v; want state ERROR, \"authentication failure\"", d.Peers)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if n := e.stats(lab.Hub).NHRP["error_indications_sent"]; n == 0 {
		t.Errorf("the hub sent no Error Indication")
	}
	t.Logf("tcpdump on the hub: %s", hubCap.stop())

	hub := tsFrames(t, "hub wan0", e.tsharkV(hubCap.pcap))
	t.Logf("hub wan0: %s", tsSummary(hub))
	e.requireFrames(wantFrame{"Error Indication to spoke2", hub, nhrpErrorIndication, hubIP, s2IP, "gre"})
	for _, f := range tsFind(hub, nhrpErrorIndication, hubIP, s2IP, "") {
		if m := tsErrCodeRE.FindStringSubmatch(f.text); m == nil || !strings.Contains(m[1], "(11)") {
			t.Errorf("%s: Error Indication without code 11 (authentication failure): %q", f.head, m)
		} else {
			t.Logf("%s: %s: Error Code: %s", f.head, f, m[1])
		}
	}
}
