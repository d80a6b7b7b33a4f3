package e2e

// Phase-1 DMVPN end to end: the real daemon on the namespace lab. Every
// spoke routes the other LANs (10.1.0.0/16) via the hub, so spoke-to-spoke
// traffic is relayed (hairpinned) by the hub; spoke3 sits behind nat3,
// which drops GRE, and uses GRE-in-UDP.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
)

const (
	// registerLimit bounds the wait for registrations after a start.
	registerLimit = 20 * time.Second
	// reachLimit bounds the wait for a first echo between LAN hosts.
	reachLimit = 20 * time.Second
	// shortHold is the holding time of the tests that watch refreshes and
	// expiry: the spokes refresh every 2s.
	shortHold = 6 * time.Second
	// echoSize is what the TCP echo checks send (and get back).
	echoSize = 1 << 20
)

var allSpokes = []string{lab.Spoke1, lab.Spoke2, lab.Spoke3}

// LAN host to LAN host through the hub: ping and a 1 MiB TCP echo, spoke to
// spoke (relayed by the hub) and spoke to the hub's LAN.
func TestPhase1LANToLANThroughHub(t *testing.T) {
	testenv.RequireRoot(t)
	e := newLab(t, 'l', lab.Options{})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)

	before := e.stats(lab.Hub).DataPlane["hairpinned"]
	e.pingAll(5, reachLimit,
		pingCheck{lab.HostLAN1, lab.HostLAN2},
		pingCheck{lab.HostLAN2, lab.HostLAN1},
		pingCheck{lab.HostLAN1, lab.HostLAN0},
	)
	// host-lan1 <-> host-lan2: 5 requests and 5 replies each way, all
	// relayed by the hub (and whatever the first waitPing sent).
	after := e.stats(lab.Hub).DataPlane["hairpinned"]
	if after-before < 20 {
		t.Errorf("the hub hairpinned %d packets during the spoke-to-spoke pings, want >= 20", after-before)
	}

	for _, c := range []pingCheck{
		{lab.HostLAN1, lab.HostLAN2},
		{lab.HostLAN2, lab.HostLAN1},
		{lab.HostLAN1, lab.HostLAN0},
	} {
		e.tcpEcho(c.from, c.to, echoSize)
	}
	// 1 MiB each way between spoke LANs in segments of at most the
	// tunnel's MTU (1400) is well over 1000 relayed packets.
	relayed := e.stats(lab.Hub).DataPlane["hairpinned"] - after
	if relayed < 1000 {
		t.Errorf("the hub hairpinned %d packets during the spoke-to-spoke TCP echoes, want >= 1000", relayed)
	}
	t.Logf("hub hairpinned %d packets during the TCP echoes", relayed)
	for _, n := range allSpokes {
		if st := e.stats(n); st.DataPlane["write_errors"] != 0 {
			t.Errorf("%s: %d underlay/TUN write errors", n, st.DataPlane["write_errors"])
		}
	}
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// spoke3, behind nat3 (UDP only), registers over GRE-in-UDP, the hub
// records the address and port the NAT gave it, and its LAN is reachable
// both ways.
func TestPhase1NATSpokeRegistersAndIsReachable(t *testing.T) {
	testenv.RequireRoot(t)
	e := newLab(t, 'n', lab.Options{})
	e.startAll()
	d := e.waitHubPeersUp(registerLimit, allSpokes...)

	natted := regexp.MustCompile(`^198\.51\.100\.129:\d+$`)
	for _, n := range allSpokes {
		p, _ := peer(d, spokes[n])
		dm, _ := lab.DaemonByName(n)
		switch n {
		case lab.Spoke3:
			if !p.NAT || !strings.Contains(p.Attributes, "N") || !natted.MatchString(p.PeerNBMA) ||
				p.Transport != "udp" || p.ClaimedNBMA != dm.WAN.Addr().String() || p.Type != "dynamic" {
				t.Errorf("hub's row for spoke3: %+v; want nat=true, attributes with N, peer_nbma 198.51.100.129:<port>, transport udp, claimed_nbma %s, type dynamic", p, dm.WAN.Addr())
			}
		default:
			if p.NAT || strings.Contains(p.Attributes, "N") || p.PeerNBMA != dm.WAN.Addr().String() || p.Transport != "gre" || p.ClaimedNBMA != "" {
				t.Errorf("hub's row for %s: %+v; want nat=false, peer_nbma %s, transport gre", n, p, dm.WAN.Addr())
			}
		}
	}
	// spoke3 learns how the hub sees it.
	s3, err := e.show(lab.Spoke3)
	if err != nil {
		t.Fatal(err)
	}
	if len(s3.Peers) != 1 || s3.Peers[0].State != "UP" || !strings.Contains(s3.Peers[0].Reason, "the NHS sees us as 198.51.100.129") {
		t.Errorf("spoke3's show dmvpn: %+v; want its NHS UP and \"the NHS sees us as 198.51.100.129\"", s3.Peers)
	}

	e.pingAll(5, reachLimit,
		pingCheck{lab.HostLAN1, lab.HostLAN3},
		pingCheck{lab.HostLAN3, lab.HostLAN1},
		pingCheck{lab.HostLAN3, lab.HostLAN0},
	)
	e.tcpEcho(lab.HostLAN3, lab.HostLAN1, echoSize)
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// A spoke with the wrong tunnel key and one with the wrong authentication
// string are refused, and the logs and views say why.
func TestPhase1WrongKeyAndAuthenticationRefused(t *testing.T) {
	testenv.RequireRoot(t)
	e := newLab(t, 'k', lab.Options{Tweak: func(node string, c *lab.NodeConfig) {
		switch node {
		case lab.Spoke1:
			c.Tunnel.Key = lab.TunnelKey + 1
		case lab.Spoke2:
			c.NHRP.Authentication = "wrong"
		}
	}})
	e.startAll()
	// spoke3 is configured right: it registers, so the hub works.
	e.waitHubPeersUp(registerLimit, lab.Spoke3)

	// Wrong authentication: the hub answers with an Error Indication
	// (code 11), which the spoke shows and logs.
	err := e.poll(15*time.Second, 100*time.Millisecond, func() error {
		d, err := e.show(lab.Spoke2)
		if err != nil {
			return err
		}
		if len(d.Peers) != 1 || d.Peers[0].State != "ERROR" || !strings.Contains(d.Peers[0].Reason, "authentication failure") {
			return fmt.Errorf("spoke2's show dmvpn: %+v; want state ERROR, reason with \"authentication failure\"", d.Peers)
		}
		t.Logf("spoke2 (wrong authentication) shows: state %s, reason %q", d.Peers[0].State, d.Peers[0].Reason)
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if line, err := e.logHas(lab.Spoke2, 5*time.Second, "authentication failure"); err != nil {
		t.Error(err)
	} else {
		t.Logf("spoke2 log: %s", line)
	}
	if line, err := e.logHas(lab.Hub, 5*time.Second, "authentication failure", "from=198.51.100.65:"); err != nil {
		t.Error(err)
	} else {
		t.Logf("hub log: %s", line)
	}

	// Wrong key: the hub drops the packets before NHRP sees them, so the
	// spoke hears nothing; the hub's log says why, with both keys.
	want := "no reply from NHS yet (check reachability, tunnel key and transport)"
	err = e.poll(15*time.Second, 100*time.Millisecond, func() error {
		d, err := e.show(lab.Spoke1)
		if err != nil {
			return err
		}
		if len(d.Peers) != 1 || d.Peers[0].State != "NHRP" || d.Peers[0].Reason != want {
			return fmt.Errorf("spoke1's show dmvpn: %+v; want state NHRP, reason %q", d.Peers, want)
		}
		t.Logf("spoke1 (wrong key) shows: state %s, reason %q", d.Peers[0].State, d.Peers[0].Reason)
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if line, err := e.logHas(lab.Hub, 5*time.Second, "wrong tunnel key", "from=198.51.100.1:", "key=43", "expected=42"); err != nil {
		t.Error(err)
	} else {
		t.Logf("hub log: %s", line)
	}
	if _, err := e.logHas(lab.Spoke1, 0, "registered with NHS"); err == nil {
		t.Error("spoke1 (wrong key) logged a registration")
	}
	t.Logf("spoke1 (wrong key) log:\n%s", e.l.Tail(lab.Spoke1, 5))

	// The hub lists neither; refused spokes carry no LAN traffic.
	if _, err := e.hubPeersUp(lab.Spoke3); err != nil {
		t.Error(err)
	}
	st := e.stats(lab.Hub)
	if st.DataPlane["key_mismatch"] == 0 || st.NHRP["auth_failures"] == 0 || st.NHRP["error_indications_sent"] == 0 || st.NHRP["registrations_accepted"] == 0 {
		t.Errorf("hub counters: key_mismatch %d, auth_failures %d, error_indications_sent %d, registrations_accepted %d; want all > 0",
			st.DataPlane["key_mismatch"], st.NHRP["auth_failures"], st.NHRP["error_indications_sent"], st.NHRP["registrations_accepted"])
	}
	e.unreachable(
		pingCheck{lab.HostLAN1, lab.HostLAN0},
		pingCheck{lab.HostLAN2, lab.HostLAN0},
	)
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// The hub restarts (a new process, empty cache): the spokes re-register at
// their next refresh and traffic flows again.
func TestPhase1HubRestartSpokesReregister(t *testing.T) {
	testenv.RequireRoot(t)
	e := newLab(t, 'r', lab.Options{Holdtime: shortHold})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	checks := []pingCheck{
		{lab.HostLAN1, lab.HostLAN2},
		{lab.HostLAN3, lab.HostLAN1},
		{lab.HostLAN2, lab.HostLAN0},
	}
	e.pingAll(3, reachLimit, checks...)

	oldPID := e.l.PID(lab.Hub)
	if err := e.l.Stop(lab.Hub); err != nil {
		t.Fatalf("stop hub: %v", err)
	}
	if err := e.tunGone(lab.Hub, 2*time.Second); err != nil {
		t.Error(err)
	}
	if err := e.l.Start(lab.Hub); err != nil {
		t.Fatalf("restart hub: %v", err)
	}
	if e.l.PID(lab.Hub) == oldPID {
		t.Fatalf("hub restarted with the same pid %d", oldPID)
	}
	t0 := time.Now()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	// Refresh every holdtime/3; allow a retry and some scheduling slack.
	if took := time.Since(t0); took > shortHold/3+3*time.Second {
		t.Errorf("re-registration took %v, want about the refresh interval %v", took, shortHold/3)
	}
	e.pingAll(3, reachLimit, checks...)
	e.tcpEcho(lab.HostLAN1, lab.HostLAN2, echoSize/4)
	for _, n := range allSpokes {
		d, err := e.show(n)
		if err != nil || len(d.Peers) != 1 || d.Peers[0].State != "UP" {
			t.Errorf("%s after the hub restart: %+v %v", n, d.Peers, err)
		}
	}
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// A spoke that stops cleanly is purged from the hub at once; one that is
// killed (no purge) stays until its holding time runs out, and not less.
func TestPhase1StoppedSpokeLeavesHub(t *testing.T) {
	testenv.RequireRoot(t)
	e := newLab(t, 's', lab.Options{Holdtime: shortHold})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)

	// Clean stop: SIGTERM, the spoke sends a Purge Request.
	t0 := time.Now()
	if err := e.l.Stop(lab.Spoke1); err != nil {
		t.Fatalf("stop spoke1: %v", err)
	}
	// The hub honours the purge once spoke1 fails its liveness probes
	// (2 × 1 s): a purge's source address proves nothing.
	err := e.poll(4*time.Second, 50*time.Millisecond, func() error {
		_, err := e.hubPeersUp(lab.Spoke2, lab.Spoke3)
		return err
	})
	if err != nil {
		t.Fatalf("spoke1 not purged from the hub within 4s of its stop: %v", err)
	}
	t.Logf("spoke1 purged from the hub %v after the stop began", time.Since(t0).Round(time.Millisecond))
	if line, err := e.logHas(lab.Hub, 2*time.Second, "msg=purged", "component=nhrp", "protocol=10.0.0.11"); err != nil {
		t.Error(err)
	} else {
		t.Logf("hub log: %s", line)
	}
	if err := e.tunGone(lab.Spoke1, 2*time.Second); err != nil {
		t.Error(err)
	}

	// SIGKILL: no purge; the hub keeps the entry for its holding time.
	pid := e.l.PID(lab.Spoke2)
	if pid == 0 || !e.l.Running(lab.Spoke2) {
		t.Fatal("spoke2 does not run")
	}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !strings.Contains(string(cmdline), "spoke2.yaml") {
		t.Fatalf("pid %d is not spoke2's daemon: %q %v", pid, cmdline, err)
	}
	// The last refresh was at most holdtime/3 ago: the entry must last at
	// least 2/3 of the holding time from now, and go within it plus slack.
	kill := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := e.poll(5*time.Second, 20*time.Millisecond, func() error {
		if e.l.Running(lab.Spoke2) {
			return fmt.Errorf("spoke2 (pid %d) survives SIGKILL", pid)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The TUN goes with the process.
	if err := e.tunGone(lab.Spoke2, 2*time.Second); err != nil {
		t.Error(err)
	}
	var gone time.Duration
	checkedHalf := false
	err = e.poll(shortHold+4*time.Second, 100*time.Millisecond, func() error {
		el := time.Since(kill)
		d, err := e.show(lab.Hub)
		if err != nil {
			return err
		}
		p, listed := peer(d, spokes[lab.Spoke2])
		if listed {
			if p.State != "UP" {
				t.Errorf("hub lists killed spoke2 as %s (%s)", p.State, p.Reason)
			}
			if el >= shortHold/2 {
				checkedHalf = true
			}
			return fmt.Errorf("the hub still lists spoke2 %v after the kill", el.Round(time.Millisecond))
		}
		gone = el
		return nil
	})
	if err != nil {
		t.Fatalf("%v (holding time %v)", err, shortHold)
	}
	t.Logf("killed spoke2 expired from the hub %v after SIGKILL (holding time %v)", gone.Round(time.Millisecond), shortHold)
	if !checkedHalf || gone < shortHold/2 {
		t.Errorf("killed spoke2 left the hub %v after SIGKILL, before half its holding time %v", gone, shortHold)
	}
	if gone < shortHold-shortHold/3-500*time.Millisecond {
		t.Errorf("killed spoke2 left the hub %v after SIGKILL; its last refresh was at most %v before, so it must stay at least %v", gone, shortHold/3, shortHold-shortHold/3)
	}
	if line, err := e.logHas(lab.Hub, 2*time.Second, "expired", "protocol=10.0.0.12"); err != nil {
		t.Error(err)
	} else {
		t.Logf("hub log: %s", line)
	}
	st := e.stats(lab.Hub)
	if st.NHRP["purges_received"] < 1 || st.NHRP["expired_entries"] < 1 {
		t.Errorf("hub counters: purges_received %d, expired_entries %d; want >= 1 each", st.NHRP["purges_received"], st.NHRP["expired_entries"])
	}
	// spoke3 is untouched by all this.
	if _, err := e.hubPeersUp(lab.Spoke3); err != nil {
		t.Error(err)
	}
	e.requireRunning(lab.Hub, lab.Spoke3)
}

// tshark as the oracle on real traffic: everything on the hub's wan0 while
// the spokes register, refresh, carry pings and purge decodes cleanly, and
// the registrations are there over GRE and over UDP 4754.
func TestPhase1WireDecodesCleanlyInTshark(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "tcpdump")
	testenv.RequireTool(t, "tshark")
	testenv.RequireTool(t, "timeout")
	// The lab's own configs, unchanged: the acceptance point is that the
	// lab's registration traffic decodes with 0 Malformed. (tshark reads
	// the auth extension the RFC 2332 way and calls a Cisco secret under
	// 4 bytes "Incomplete"; the lab's is 8, Cisco's maximum.)
	e := newLab(t, 'w', lab.Options{Holdtime: shortHold})
	pcap := t.TempDir() + "/hub-wan0.pcap"

	// Capture from before the first registration; `timeout` bounds it.
	// --immediate-mode: without it, packets still in the kernel's capture
	// block when tcpdump is stopped are lost (the Purge Requests, last).
	capture := e.l.Command(e.ctx, lab.Hub, "timeout", "60", "tcpdump", "-Z", "root", "--immediate-mode", "-U", "-n", "-i", lab.IfWAN,
		"-w", pcap, "ip proto 47 or udp port 4754")
	var capErr syncBuffer
	capture.Stderr = &capErr
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	capDone := make(chan struct{})
	go func() {
		_ = capture.Wait() // stopped by a signal: the status says nothing
		close(capDone)
	}()
	t.Cleanup(func() {
		select {
		case <-capDone:
			return
		default:
		}
		_ = capture.Process.Signal(syscall.SIGTERM)
		select {
		case <-capDone:
		case <-time.After(5 * time.Second):
			_ = capture.Process.Kill()
			<-capDone // WaitDelay bounds it
		}
	})
	if err := e.poll(10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(capErr.String(), "listening on") {
			return fmt.Errorf("tcpdump did not start: %q", capErr.String())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	e.pingAll(2, reachLimit,
		pingCheck{lab.HostLAN1, lab.HostLAN2},
		pingCheck{lab.HostLAN1, lab.HostLAN3},
	)
	// At least one refresh per spoke (every holdtime/3).
	if err := e.poll(3*shortHold, 200*time.Millisecond, func() error {
		if n := e.stats(lab.Hub).NHRP["registrations_accepted"]; n < 6 {
			return fmt.Errorf("the hub accepted %d registrations, want >= 6 (3 spokes, registration and a refresh each)", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Clean stops add Purge Requests to the capture.
	for _, n := range allSpokes {
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
	_ = capture.Process.Signal(syscall.SIGTERM)
	select {
	case <-capDone:
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump did not stop: %s", capErr.String())
	}
	t.Logf("tcpdump: %s", strings.TrimSpace(capErr.String()))

	tsCtx, cancel := e.timeout(60 * time.Second)
	defer cancel()
	ts := exec.CommandContext(tsCtx, "tshark", "-n", "-r", pcap, "-V")
	ts.WaitDelay = time.Second
	var tsErr bytes.Buffer
	ts.Stderr = &tsErr
	out, err := ts.Output()
	if err != nil {
		t.Fatalf("tshark -r %s -V: %v: %s", pcap, err, tsErr.String())
	}
	sum := checkTshark(t, string(out))
	t.Logf("tshark: %s", sum)
	if t.Failed() {
		keep := fmt.Sprintf("%s/dmvpn-e2e-%s.pcap", os.TempDir(), e.l.Prefix())
		if b, err := os.ReadFile(pcap); err == nil && os.WriteFile(keep, b, 0o644) == nil {
			t.Logf("capture kept in %s", keep)
		}
	}
}
