package e2e

// The lab with IPsec on (what `dmvpn lab` runs by default): every tunnel
// protected by IKEv2 + ESP, raw ESP between the nodes on the internet and
// ESP-in-UDP with spoke3 behind its NAT. A capture of the underlay holds
// ESP and IKE and never clear-text GRE; tshark, given the nodes' key logs,
// decrypts it and finds the NHRP and inner packets, with 0 Malformed.

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/ikev2"
	ikeengine "github.com/dmvpn/dmvpn/ikev2/engine"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
	"github.com/dmvpn/dmvpn/nhrp"
)

// superDatagram is tshark's filter for a GSO super-datagram as a capture
// on the sender sees it (longer than the lab's 1,500-byte underlay MTU).
const superDatagram = "udp.length > 1480"

// ipsecFilter captures everything IPsec and GRE could use on the underlay.
const ipsecFilter = "ip proto 47 or ip proto 50 or udp port 500 or udp port 4500 or udp port 4754"

func (e *env) showIPsec(node string) api.IPsec {
	e.t.Helper()
	ctx, cancel := e.timeout(10 * time.Second)
	defer cancel()
	var x api.IPsec
	if err := e.l.ShowJSON(ctx, node, "ipsec", &x); err != nil {
		e.t.Fatal(err)
	}
	return x
}

// Phase 1 over IPsec: every spoke registers over its SA, LAN to LAN
// through the hub works (pings and 1 MiB TCP echoes, so full-size packets
// cross ESP), show ipsec and show dmvpn say what protects each peer.
func TestIPsecLabPhase1(t *testing.T) {
	testenv.RequireRoot(t)
	e := newShortcutLab(t, 'P', lab.Options{Phase: 1, IPsec: true})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	e.pingAll(3, reachLimit,
		pingCheck{lab.HostLAN1, lab.HostLAN2}, pingCheck{lab.HostLAN2, lab.HostLAN1},
		pingCheck{lab.HostLAN1, lab.HostLAN3}, pingCheck{lab.HostLAN3, lab.HostLAN1},
		pingCheck{lab.HostLAN3, lab.HostLAN0})
	e.tcpEcho(lab.HostLAN1, lab.HostLAN3, 1<<20)
	e.tcpEcho(lab.HostLAN2, lab.HostLAN1, 1<<20)
	ctx, cancel := e.timeout(10 * time.Second)
	defer cancel()
	if err := e.l.CheckIPsec(ctx); err != nil {
		t.Fatal(err)
	}
	x := e.showIPsec(lab.Hub)
	if len(x.IKE) != 3 || len(x.Child) != 3 {
		t.Fatalf("the hub has %d IKE SAs and %d Child SAs, want 3 and 3: %+v", len(x.IKE), len(x.Child), x)
	}
	for _, c := range x.Child {
		if c.Mode != "transport" || c.Transform != "aes-gcm-128" || c.AuthFailures != 0 || c.ReplayDrops != 0 {
			t.Errorf("hub Child SA %+v", c)
		}
		t.Logf("hub Child SA: peer %s %s %s %s in %s out %s, %d/%d packets", c.Peer, c.Mode, c.Encap, c.Transform,
			c.InboundSPI, c.OutboundSPI, c.InPackets, c.OutPackets)
	}
	for _, s := range x.IKE {
		if s.State != "established" || s.Initiator {
			t.Errorf("hub IKE SA %+v: want established, the spoke the initiator", s)
		}
	}
	d, err := e.show(lab.Hub)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Peers {
		if p.Crypto != "up" {
			t.Errorf("show dmvpn at the hub: %s crypto %q, want up", p.PeerTunnel, p.Crypto)
		}
	}
	if n := x.Counters["clear_gre_dropped"]; n != 0 {
		t.Errorf("the hub dropped %d clear-text GRE packets", n)
	}
}

// Phase 3 over IPsec, captured: the shortcuts bring up spoke-to-spoke SAs
// (with spoke3 over ESP-in-UDP through its NAT), the hub relays nothing
// once they are up, the underlay carries no clear GRE, and tshark with the
// key logs decrypts every ESP packet to GRE, NHRP and the inner traffic.
func TestIPsecLabPhase3CaptureDecrypts(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "tshark")
	testenv.RequireTool(t, "tcpdump")
	e := newShortcutLab(t, 'U', lab.Options{Phase: 3, IPsec: true})
	hubCap := e.startTcpdumpFilter(lab.Hub, 120, ipsecFilter)
	s1Cap := e.startTcpdumpFilter(lab.Spoke1, 120, ipsecFilter)
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	e.waitDirect(flow12, directLimit)
	e.waitDirect(flow21, directLimit)
	e.waitDirect(flow13, directLimit)
	e.provedDirect(5, 256<<10, flow12, flow21, flow13)
	for _, n := range []string{lab.Spoke1, lab.Spoke2, lab.Spoke3} {
		x := e.showIPsec(n)
		peers := map[string]string{}
		for _, c := range x.Child {
			if c.State == "current" {
				peers[c.Peer] = c.Encap
			}
		}
		t.Logf("%s Child SAs: %v", n, peers)
		if n == lab.Spoke1 && (peers["198.51.100.65:0"] != "esp" || peers[lab.NAT3Public.String()+":4500"] != "esp-in-udp") {
			t.Errorf("spoke1's current SAs %v: want raw ESP with spoke2, ESP-in-UDP with spoke3 via %s", peers, lab.NAT3Public)
		}
	}
	hubCap.stop()
	s1Cap.stop()

	for _, pcap := range []string{hubCap.pcap, s1Cap.pcap} {
		name := filepath.Base(pcap)
		if rows := e.tsharkFields(pcap, "gre", "frame.number"); len(rows) != 0 {
			t.Errorf("%s: %d clear-text GRE frames on the underlay", name, len(rows))
		}
		esp := len(e.tsharkFields(pcap, "esp", "frame.number"))
		ike := len(e.tsharkFields(pcap, "isakmp", "frame.number"))
		if esp == 0 || ike == 0 {
			t.Errorf("%s: %d ESP and %d IKE frames, want both", name, esp, ike)
		}
		t.Logf("%s: %d ESP frames, %d IKE messages, no GRE", name, esp, ike)
	}
	if n := len(e.tsharkFields(hubCap.pcap, "udp.port == 4500 && esp", "frame.number")); n == 0 {
		t.Errorf("no ESP-in-UDP (spoke3) in the hub's capture")
	}

	// Decrypt with the key logs of every node.
	cfg := e.wiresharkKeys()
	for _, pcap := range []string{hubCap.pcap, s1Cap.pcap} {
		name := filepath.Base(pcap)
		esp := len(e.tsharkFieldsEnv(cfg, pcap, "esp", "frame.number"))
		// UDP GSO: the capture sees a run of ESP-in-UDP datagrams as the
		// one super-datagram the kernel segments later (on the wire they
		// are separate); tshark can open only the first ESP packet of it.
		super := len(e.tsharkFieldsEnv(cfg, pcap, superDatagram, "frame.number"))
		undecrypted := e.tsharkFieldsEnv(cfg, pcap, "esp && !gre && !("+superDatagram+")", "frame.number", "esp.spi")
		nhrp := e.tsharkFieldsEnv(cfg, pcap, "esp && gre && nhrp", "nhrp.hdr.op.type")
		icmp := len(e.tsharkFieldsEnv(cfg, pcap, "esp && gre && icmp", "frame.number"))
		tcp := len(e.tsharkFieldsEnv(cfg, pcap, "esp && gre && tcp", "frame.number"))
		auth := e.tsharkFieldsEnv(cfg, pcap, "isakmp.typepayload == 44", "frame.number") // TSi, inside SK
		if len(undecrypted) != 0 {
			t.Errorf("%s: %d of %d ESP frames not decrypted with the key logs, first %v", name, len(undecrypted), esp, undecrypted[0])
		}
		if len(nhrp) == 0 || icmp == 0 || tcp == 0 || len(auth) == 0 {
			t.Errorf("%s decrypted: %d NHRP, %d ICMP, %d TCP, %d IKE_AUTH with traffic selectors; want all", name, len(nhrp), icmp, tcp, len(auth))
		}
		types := map[string]int{}
		for _, r := range nhrp {
			for _, ty := range strings.Split(r[0], ",") {
				types[ty]++
			}
		}
		t.Logf("%s decrypted: %d ESP frames (%d of them GSO super-datagrams) -> NHRP by type %v, %d ICMP, %d TCP; %d IKE messages with traffic selectors",
			name, esp, super, types, icmp, tcp, len(auth))
		if rows := e.tsharkFieldsEnv(cfg, pcap, "_ws.malformed && !("+superDatagram+")", "frame.number", "frame.protocols"); len(rows) != 0 {
			t.Errorf("%s decrypted: %d Malformed frames, first %v", name, len(rows), rows[0])
		}
		if rows := e.tsharkFieldsEnv(cfg, pcap, "_ws.expert.severity >= warning && !tcp.analysis && !("+superDatagram+")", "frame.number", "_ws.expert.message"); len(rows) != 0 {
			t.Errorf("%s decrypted: %d frames with expert warnings, first %v", name, len(rows), rows[0])
		}
	}
}

// wiresharkKeys writes a Wireshark configuration with the lab nodes' key
// logs split into the two tables (esp_sa records start with "IPv4" or
// "IPv6") and ESP decryption on; it returns the environment for tshark.
func (e *env) wiresharkKeys() []string {
	e.t.Helper()
	dir := e.t.TempDir()
	var espTable, ikeTable strings.Builder
	for _, d := range lab.Daemons {
		b, err := os.ReadFile(e.l.KeyLogPath(d.Name))
		if err != nil {
			e.t.Fatalf("key log of %s: %v", d.Name, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			switch {
			case strings.HasPrefix(line, `"IPv`):
				fmt.Fprintln(&espTable, line)
			case line != "" && !strings.HasPrefix(line, "#"):
				fmt.Fprintln(&ikeTable, line)
			}
		}
	}
	if espTable.Len() == 0 || ikeTable.Len() == 0 {
		e.t.Fatalf("key logs: %d bytes of esp_sa, %d of ikev2_decryption_table records", espTable.Len(), ikeTable.Len())
	}
	for name, body := range map[string]string{
		"esp_sa": espTable.String(), "ikev2_decryption_table": ikeTable.String(),
		"preferences": "esp.enable_encryption_decode: TRUE\nesp.enable_authentication_check: TRUE\n" +
			// Sequence analysis would report the datagrams a GSO
			// super-datagram hides as missing; our counters say what is.
			"esp.do_esp_sequence_analysis: FALSE\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			e.t.Fatal(err)
		}
	}
	return []string{"WIRESHARK_CONFIG_DIR=" + dir, "HOME=" + dir}
}

// With IPsec on, clear text changes nothing: an attacker's clear-text GRE
// Registration Request for spoke2's address, spoofed from spoke2's NBMA
// address, is dropped and counted at the hub, which keeps spoke2's binding
// (learned over its SA), and LAN-to-LAN traffic goes on.
func TestIPsecClearTextGREDropped(t *testing.T) {
	testenv.RequireRoot(t)
	e := newShortcutLab(t, 'Y', lab.Options{Phase: 1, IPsec: true, Attacker: true})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	before, ok, err := e.nhrpEntry(lab.Hub, "10.0.0.12")
	if err != nil || !ok {
		t.Fatalf("the hub has no entry for spoke2: %v", err)
	}
	reg := nhrp.Packet{
		HopCount: 255, Type: nhrp.TypeRegistrationRequest, Flags: nhrp.FlagRegistrationU | nhrp.FlagCiscoNAT, RequestID: 9,
		SrcNBMA: attackerIP, SrcProto: s2Tunnel, DstProto: hubTunnel,
		CIEs:       []nhrp.CIE{{PrefixLength: 32, MTU: lab.TunnelMTU, HoldingTime: 65535}},
		Extensions: requestExtensions(t),
	}
	e.mustAttack(attackPlan{Shots: []attackShot{
		{Label: "clear-text registration of 10.0.0.12 (spoofed from spoke2)", Src: s2NBMA, Dst: hubNBMA, Transport: "gre", Packet: reg},
		{Label: "clear-text registration of 10.0.0.12 (attacker's own address)", Dst: hubNBMA, Transport: "gre", Packet: reg},
	}}, 20*time.Second)
	if err := e.poll(5*time.Second, 50*time.Millisecond, func() error {
		if n := e.showIPsec(lab.Hub).Counters["clear_gre_dropped"]; n < 2 {
			return fmt.Errorf("the hub counted %d clear-text GRE packets, want 2", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	after, ok, err := e.nhrpEntry(lab.Hub, "10.0.0.12")
	if err != nil || !ok || after.NBMA != before.NBMA || !after.Created.Equal(before.Created) {
		t.Fatalf("spoke2's binding at the hub changed: %+v -> %+v (%v)", before, after, err)
	}
	e.pingAll(3, reachLimit, pingCheck{lab.HostLAN1, lab.HostLAN2})
	t.Logf("hub: clear_gre_dropped %d, spoke2 still at %s", e.showIPsec(lab.Hub).Counters["clear_gre_dropped"], after.NBMA)
}

// floodSender keeps what an engine sends (ike-flood builds its requests
// with our own initiator, so each is a well-formed IKE_SA_INIT).
type floodSender struct{ msgs [][]byte }

func (s *floodSender) SendIKE(_ netip.AddrPort, _ bool, pkt []byte) {
	s.msgs = append(s.msgs, append([]byte(nil), pkt...))
}

// ikeFlood is the helper role ike-flood TARGET N SECS (helper_test.go).
func ikeFlood(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("want TARGET N SECS, got %q", args)
	}
	target, err := netip.ParseAddr(args[0])
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 1 || n > 100000 {
		return fmt.Errorf("bad count %q", args[1])
	}
	deadline, err := helperDeadline(args[2])
	if err != nil {
		return err
	}
	to := netip.AddrPortFrom(target, 500)
	fs := &floodSender{}
	for range n {
		e, err := ikeengine.New(ikeengine.Config{Local: lab.AttackerWAN.Addr(), PSK: []byte("a guess")}, fs, nil)
		if err != nil {
			return err
		}
		if err := e.Initiate(time.Now(), to); err != nil {
			return err
		}
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return err
	}
	defer c.Close()
	var answers, cookies atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			answers.Add(1)
			var m ikev2.Message
			if m.Decode(buf[:k]) == nil {
				for i := range m.Payloads {
					if nt, err := m.Payloads[i].Notify(); err == nil && nt.Type == ikev2.NotifyCookie {
						cookies.Add(1)
					}
				}
			}
		}
	}()
	dst := net.UDPAddrFromAddrPort(to)
	for _, m := range fs.msgs {
		if time.Now().After(deadline) {
			break
		}
		if _, err := c.WriteToUDP(m, dst); err != nil {
			return err
		}
	}
	// Answers still in flight count for half a second more.
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	<-done
	fmt.Printf("sent %d answers %d cookies %d\n", len(fs.msgs), answers.Load(), cookies.Load())
	return nil
}

// An IKE_SA_INIT flood at the hub (3,000 new initiators from one source
// in a second or two) costs it only bounded state: per-source rate
// limiting and cookies refuse what is over; the spokes' SAs and traffic
// are untouched and the hub keeps every daemon alive.
func TestIPsecIKEFloodAtHub(t *testing.T) {
	testenv.RequireRoot(t)
	e := newShortcutLab(t, 'Z', lab.Options{Phase: 1, IPsec: true, Attacker: true})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	ctx, cancel := e.timeout(60 * time.Second)
	defer cancel()
	cmd, err := helperCmd(ctx, e.l, lab.Attacker, "ike-flood", hubIP, "3000", "30")
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ike-flood: %v: %s", err, out)
	}
	t.Logf("attacker: %s", strings.TrimSpace(string(out)))
	if err := e.stayAlive(time.Second); err != nil {
		t.Fatal(err)
	}
	x := e.showIPsec(lab.Hub)
	established, other := 0, 0
	for _, s := range x.IKE {
		if s.State == "established" {
			established++
		} else {
			other++
		}
	}
	dropped := x.Counters["ike_dropped_rate_limited"] + x.Counters["ike_dropped_half_open_full"] + x.Counters["ike_dropped_table_full"]
	t.Logf("hub after the flood: %d established IKE SAs, %d half-open, received %d, dropped by the bounds %d, cookies sent %d",
		established, other, x.Counters["ike_received"], dropped, x.Counters["ike_cookies_sent"])
	if established != 3 {
		t.Errorf("the hub has %d established IKE SAs after the flood, want the spokes' 3", established)
	}
	if other > 64 {
		t.Errorf("the hub keeps %d half-open SAs from one source", other)
	}
	if dropped+x.Counters["ike_cookies_sent"] == 0 {
		t.Errorf("the hub refused none of the flood: %v", x.Counters)
	}
	e.pingAll(3, reachLimit, pingCheck{lab.HostLAN1, lab.HostLAN2}, pingCheck{lab.HostLAN3, lab.HostLAN1})
}

// Rekeys under load in the lab: with the smallest byte lifetime
// (lifetime-kilobytes 2560: a soft limit every ~2.2 MB, reached by both
// ends of an SA at nearly the same moment), 24 MiB of TCP echoes across
// the direct spoke1 <-> spoke2 and spoke1 <-> spoke3 (NAT) paths go
// through many Child SA rekeys, simultaneous ones included, and arrive
// intact; the SAs keep working afterwards.
func TestIPsecRekeysUnderLoad(t *testing.T) {
	testenv.RequireRoot(t)
	e := newShortcutLab(t, 'K', lab.Options{Phase: 3, IPsec: true, Tweak: func(_ string, c *lab.NodeConfig) {
		c.IPsec.LifetimeKB = 2560
	}})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	e.waitDirect(flow12, directLimit)
	e.waitDirect(flow13, directLimit)
	for range 3 {
		e.tcpEcho(lab.HostLAN1, lab.HostLAN2, 4<<20)
		e.tcpEcho(lab.HostLAN1, lab.HostLAN3, 4<<20)
	}
	rekeys := 0
	for _, n := range []string{lab.Spoke1, lab.Spoke2, lab.Spoke3} {
		x := e.showIPsec(n)
		rekeys += int(x.Counters["ike_child_rekeys"])
		t.Logf("%s: %d Child SA rekeys, %d collisions; ESP drops: replay %d, auth %d, unknown SPI %d", n,
			x.Counters["ike_child_rekeys"], x.Counters["ike_rekey_collisions"], x.Counters["esp_replayed"], x.Counters["esp_auth_failed"], x.Counters["esp_unknown_spi"])
	}
	if rekeys < 6 {
		t.Errorf("%d Child SA rekeys in 24 MiB with a 2.5 MB lifetime", rekeys)
	}
	e.provedDirect(3, 0, flow12, flow13)
}
