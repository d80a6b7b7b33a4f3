package e2e

// dmvpn capture on the real lab: the daemon's own taps, written as pcapng
// over the API socket, read by tshark. A control capture on the hub sees
// the spokes register; an inner capture on spoke1 and an outer capture on
// the hub see a known number of pings host-lan1 -> host-lan2 (relayed by
// the hub). tshark must read every file with 0 Malformed frames, and find
// the echoes: inner as IPv4/ICMP crossing spoke1's TUN, outer as GRE with
// the lab's key carrying them, from spoke1 into the hub and from the hub
// to spoke2.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
)

// dmvpnCapture is a `dmvpn capture` the test runs against a lab daemon.
type dmvpnCapture struct {
	node, name, file string
	cmd              *exec.Cmd
	stderr           *syncBuffer
	done             chan struct{}
	err              error // Wait's, once done is closed
}

// startDmvpnCapture runs `dmvpn capture -c <node's config> ARGS -w FILE`
// (with stdout set: -w -, to it) and returns once it prints that it is
// capturing (the daemon has attached the tap: from then on every packet is
// copied), bounded.
func (e *env) startDmvpnCapture(node, name string, stdout *os.File, args ...string) *dmvpnCapture {
	e.t.Helper()
	c := &dmvpnCapture{node: node, name: name, file: filepath.Join(e.t.TempDir(), node+"-"+name+".pcapng"),
		stderr: &syncBuffer{}, done: make(chan struct{})}
	argv := append([]string{"capture", "-c", e.l.ConfigPath(node)}, args...)
	if stdout != nil {
		c.file = "-"
	}
	argv = append(argv, "-w", c.file)
	c.cmd = exec.CommandContext(e.ctx, e.l.Options().Binary, argv...)
	c.cmd.Stdout = stdout
	c.cmd.Env = append(os.Environ(), e.l.Options().Env...)
	c.cmd.WaitDelay = time.Second
	pipe, err := c.cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for n := 0; sc.Scan(); n++ {
			if n == 0 {
				first <- sc.Text()
			}
			fmt.Fprintln(c.stderr, sc.Text())
		}
		close(first)
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	e.t.Cleanup(func() { c.stop(e.t) }) // by PID, bounded, however the test ends
	select {
	case line, ok := <-first:
		if !ok || !strings.HasPrefix(line, "capturing ") {
			<-c.done
			e.t.Fatalf("dmvpn capture on %s (%s): %q, then exited (%v): %s", node, name, line, c.err, c.stderr.String())
		}
		e.t.Logf("dmvpn capture on %s: %s", node, line)
	case <-time.After(15 * time.Second):
		e.t.Fatalf("dmvpn capture on %s (%s): not capturing within 15s: %s", node, name, c.stderr.String())
	}
	return c
}

var capturedRE = regexp.MustCompile(`(?m)^(\d+) packets captured\n(\d+) packets seen by the tap\n(\d+) packets dropped by buffer$`)

// stop ends the capture as Ctrl-C does (SIGINT to its PID: the daemon ends
// it cleanly and the file gets its statistics), bounded, and returns the
// counts it printed.
func (c *dmvpnCapture) stop(t *testing.T) (captured, seen, dropped int) {
	t.Helper()
	select {
	case <-c.done:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
			t.Errorf("dmvpn capture on %s (%s) did not stop on SIGINT within 15s", c.node, c.name)
		}
	}
	out := c.stderr.String()
	if c.err != nil {
		t.Errorf("dmvpn capture on %s (%s): %v: %s", c.node, c.name, c.err, out)
	}
	m := capturedRE.FindStringSubmatch(out)
	if m == nil {
		t.Errorf("dmvpn capture on %s (%s) printed no counts: %q", c.node, c.name, out)
		return 0, 0, 0
	}
	fmt.Sscan(m[1], &captured)
	fmt.Sscan(m[2], &seen)
	fmt.Sscan(m[3], &dropped)
	return captured, seen, dropped
}

// tsharkFields runs `tshark -n -r FILE [-Y FILTER] -T fields -e F...` and
// returns one []string per frame.
func (e *env) tsharkFields(file, filter string, fields ...string) [][]string {
	e.t.Helper()
	return e.tsharkFieldsEnv(nil, file, filter, fields...)
}

// tsharkFieldsEnv is tsharkFields with extra environment variables (a
// WIRESHARK_CONFIG_DIR with key tables).
func (e *env) tsharkFieldsEnv(env []string, file, filter string, fields ...string) [][]string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer cancel()
	args := []string{"-n", "-r", file}
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	args = append(args, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,")
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.CommandContext(ctx, "tshark", args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("tshark %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	var rows [][]string
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if l != "" {
			rows = append(rows, strings.Split(l, "|"))
		}
	}
	return rows
}

// noMalformed checks that tshark finds no Malformed frame, and no expert
// warning or error, in file.
func (e *env) noMalformed(file string) {
	e.t.Helper()
	if rows := e.tsharkFields(file, "_ws.malformed", "frame.number", "frame.protocols"); len(rows) != 0 {
		e.t.Errorf("%s: %d Malformed frames, first %v", filepath.Base(file), len(rows), rows[0])
	}
	// TCP's sequence analysis (retransmissions, D-SACK, zero windows of the
	// BGP sessions inside the tunnel) is about the kernels' TCP, not about
	// what we encode: it does not count.
	if rows := e.tsharkFields(file, "_ws.expert.severity >= warning && !tcp.analysis", "frame.number", "_ws.expert.message"); len(rows) != 0 {
		e.t.Errorf("%s: %d frames with expert warnings or errors, first %v", filepath.Base(file), len(rows), rows[0])
	}
}

// tshark's epb_flags direction: 1 inbound, 2 outbound.
const (
	tsInbound  = "0x00000001"
	tsOutbound = "0x00000002"
)

func TestCaptureLab(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "tshark")
	const pings = 20
	e := newLab(t, 'c', lab.Options{})

	// The hub first, with a control capture, then the spokes: it sees
	// their registrations.
	if err := e.l.Start(lab.Hub); err != nil {
		t.Fatal(err)
	}
	if err := e.poll(10*time.Second, 50*time.Millisecond, func() error { _, err := e.show(lab.Hub); return err }); err != nil {
		t.Fatalf("the hub's API: %v", err)
	}
	ctl := e.startDmvpnCapture(lab.Hub, "control", nil, "--control")
	for _, s := range allSpokes {
		if err := e.l.Start(s); err != nil {
			t.Fatal(err)
		}
	}
	e.waitHubPeersUp(registerLimit, allSpokes...)
	dst, _ := lab.HostAddr(lab.HostLAN2)
	if err := e.waitPing(lab.HostLAN1, dst.String(), reachLimit); err != nil {
		t.Fatalf("host-lan1 -> host-lan2: %v", err)
	}

	inner := e.startDmvpnCapture(lab.Spoke1, "inner", nil, "--inner", "icmp")
	outer := e.startDmvpnCapture(lab.Hub, "outer", nil, "--outer")
	r, err := e.l.PingStats(e.ctx, lab.HostLAN1, dst.String(), pings)
	if err != nil || r.Received != pings {
		t.Fatalf("%d pings host-lan1 -> host-lan2: %s, %v", pings, r, err)
	}
	t.Logf("ping host-lan1 -> host-lan2: %s", r)
	for _, c := range []*dmvpnCapture{inner, outer, ctl} {
		captured, seen, dropped := c.stop(t)
		t.Logf("%s on %s: %d packets captured, %d seen by the tap, %d dropped by buffer", c.name, c.node, captured, seen, dropped)
		if dropped != 0 {
			t.Errorf("%s on %s dropped %d packets", c.name, c.node, dropped)
		}
	}
	defer func() {
		if t.Failed() {
			for _, c := range []*dmvpnCapture{inner, outer, ctl} {
				keep := filepath.Join(os.TempDir(), fmt.Sprintf("dmvpn-e2e-%s-%s-%s.pcapng", e.l.Prefix(), c.node, c.name))
				if b, err := os.ReadFile(c.file); err == nil && os.WriteFile(keep, b, 0o644) == nil {
					t.Logf("capture kept in %s", keep)
				}
			}
		}
	}()
	for _, c := range []*dmvpnCapture{inner, outer, ctl} {
		e.noMalformed(c.file)
	}
	s1LAN, _ := lab.HostAddr(lab.HostLAN1)
	src, dstS := s1LAN.String(), dst.String()

	// Inner, on spoke1: the echo requests leave through the TUN
	// (outbound), the replies come in through it, as IPv4/ICMP on the
	// interface named after the device.
	reqs, reps := 0, 0
	for _, row := range e.tsharkFields(inner.file, "", "frame.interface_name", "frame.packet_flags_direction", "frame.protocols", "ip.src", "ip.dst", "icmp.type") {
		if row[0] != lab.IfTunnel || !strings.HasPrefix(row[2], "raw:ip:icmp") {
			t.Errorf("inner frame %v: want interface %s, raw:ip:icmp", row, lab.IfTunnel)
			continue
		}
		switch {
		case row[1] == tsOutbound && row[3] == src && row[4] == dstS && row[5] == "8":
			reqs++
		case row[1] == tsInbound && row[3] == dstS && row[4] == src && row[5] == "0":
			reps++
		default:
			t.Errorf("inner frame %v: not an echo %s -> %s (out) or its reply (in)", row, src, dstS)
		}
	}
	t.Logf("spoke1 inner: %d echo requests out, %d replies in", reqs, reps)
	if reqs < pings || reps < pings {
		t.Errorf("spoke1 inner: %d requests and %d replies, want >= %d each", reqs, reps, pings)
	}

	// Outer, on the hub: every frame is GRE (raw or in UDP) with the
	// lab's key, cleanly decoded (tsFrames); the echo requests arrive
	// from spoke1 and leave, relayed, to spoke2 as IP / GRE / IP / ICMP.
	frames := tsFrames(t, "hub outer", e.tsharkV(outer.file))
	t.Logf("hub outer: %s", tsSummary(frames))
	in, out := 0, 0
	for _, row := range e.tsharkFields(outer.file, "icmp.type == 8", "frame.interface_name", "frame.packet_flags_direction", "frame.protocols", "ip.src", "ip.dst", "gre.key") {
		if row[0] != lab.IfTunnel+"-nbma" || !strings.HasPrefix(row[2], "raw:ip:gre:ip:icmp") || row[5] != fmt.Sprintf("0x%08x", lab.TunnelKey) {
			t.Errorf("outer frame %v: want %s-nbma, raw:ip:gre:ip:icmp, key %d", row, lab.IfTunnel, lab.TunnelKey)
			continue
		}
		switch {
		case row[1] == tsInbound && row[3] == s1IP+","+src && row[4] == hubIP+","+dstS:
			in++
		case row[1] == tsOutbound && row[3] == hubIP+","+src && row[4] == s2IP+","+dstS:
			out++
		default:
			t.Errorf("outer frame %v: not spoke1 -> hub (in) or hub -> spoke2 (out) carrying %s -> %s", row, src, dstS)
		}
	}
	t.Logf("hub outer: %d echo requests in from spoke1, %d relayed out to spoke2", in, out)
	if in < pings || out < pings {
		t.Errorf("hub outer: %d requests in and %d out, want >= %d each", in, out, pings)
	}
	e.requireFrames(
		wantFrame{"echo data spoke1 -> hub", frames, 0, s1IP, hubIP, "gre"},
		wantFrame{"echo data hub -> spoke2", frames, 0, hubIP, s2IP, "gre"},
	)

	// Control, on the hub: NHRP only; every spoke's Registration Request
	// (spoke3's over GRE-in-UDP, through its NAT) and the hub's replies.
	cframes := tsFrames(t, "hub control", e.tsharkV(ctl.file))
	t.Logf("hub control: %s", tsSummary(cframes))
	for _, f := range cframes {
		if f.nhrp == 0 {
			t.Errorf("control capture holds data: %s", f)
		}
	}
	const regRequest, regReply = 3, 4
	e.requireFrames(
		wantFrame{"spoke1's Registration Request", cframes, regRequest, s1IP, hubIP, "gre"},
		wantFrame{"spoke2's Registration Request", cframes, regRequest, s2IP, hubIP, "gre"},
		wantFrame{"spoke3's Registration Request (NAT)", cframes, regRequest, natIP, hubIP, "udp"},
		wantFrame{"the Registration Reply to spoke1", cframes, regReply, hubIP, s1IP, "gre"},
		wantFrame{"the Registration Reply to spoke3 (NAT)", cframes, regReply, hubIP, natIP, "udp"},
	)

	// -w - | tshark -r -: spoke2's inner side, streamed through a pipe
	// that tshark reads while the capture runs; --count ends both.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer tcancel()
	ts := exec.CommandContext(tctx, "tshark", "-n", "-l", "-r", "-", "-T", "fields", "-E", "separator=|",
		"-e", "frame.packet_flags_direction", "-e", "ip.src", "-e", "ip.dst", "-e", "icmp.type", "-e", "_ws.malformed")
	ts.Stdin = pr
	ts.WaitDelay = time.Second
	var tsOut, tsErr bytes.Buffer
	ts.Stdout, ts.Stderr = &tsOut, &tsErr
	if err := ts.Start(); err != nil {
		t.Fatal(err)
	}
	piped := e.startDmvpnCapture(lab.Spoke2, "pipe", pw, "--inner", "--count", "4", "icmp")
	pr.Close()
	pw.Close()
	if r, err := e.l.PingStats(e.ctx, lab.HostLAN1, dstS, 2); err != nil || r.Received != 2 {
		t.Fatalf("2 pings: %s, %v", r, err)
	}
	select {
	case <-piped.done: // --count 4: two requests in, two replies out
	case <-time.After(15 * time.Second):
		t.Errorf("the piped capture did not end after --count 4")
	}
	if captured, _, _ := piped.stop(t); captured != 4 {
		t.Errorf("piped capture: %d packets, want 4", captured)
	}
	if err := ts.Wait(); err != nil {
		t.Fatalf("tshark -r -: %v: %s", err, tsErr.String())
	}
	wantRows := map[string]int{tsInbound + "|" + src + "|" + dstS + "|8|": 2, tsOutbound + "|" + dstS + "|" + src + "|0|": 2}
	got := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(tsOut.String()), "\n") {
		got[l]++
	}
	if fmt.Sprint(got) != fmt.Sprint(wantRows) {
		t.Errorf("tshark -r - read %v, want %v", got, wantRows)
	} else {
		t.Logf("dmvpn capture -w - | tshark -r -: %v", got)
	}
}
