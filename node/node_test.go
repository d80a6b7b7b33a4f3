package node

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/dmvpn/dmvpn/clock"
	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/localroute"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp/cache"
	"github.com/dmvpn/dmvpn/underlay"
	"github.com/dmvpn/dmvpn/underlay/memnet"
)

// testNet is a whole DMVPN network in one process: nodes on memnet, their
// overlays on channel TUNs, time on a fake clock.
type testNet struct {
	t     testing.TB
	clk   *clock.Fake
	rclk  clock.Clock
	net   *memnet.Network
	nodes map[string]*testNode
}

type testNode struct {
	name   string
	n      *Node
	tun    *tuntest.ChannelTUN
	cancel context.CancelFunc
	done   chan error
	logs   *logBuffer
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestNet(t testing.TB) *testNet {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return newTestNetOn(t, clk, clk)
}

// newTestNetOn runs the network on the given clock (clock.Real for timing
// measurements); fake is the same clock when it is a Fake, else nil.
func newTestNetOn(t testing.TB, clk clock.Clock, fake *clock.Fake) *testNet {
	tn := &testNet{t: t, clk: fake, rclk: clk, net: memnet.New(clk), nodes: map[string]*testNode{}}
	t.Cleanup(func() {
		for _, n := range tn.nodes {
			n.stop(t)
			if t.Failed() {
				t.Logf("%s log:\n%s", n.name, n.logs.String())
			}
		}
	})
	return tn
}

const hubYAML = `
name: hub
tunnel:
  address: 10.0.0.1/24
  source: 192.0.2.1
  key: 42
nhrp:
  network-id: 1
  holdtime: 30s
  authentication: lab
routes:
  - {prefix: 10.1.1.0/24, via: 10.0.0.11}
  - {prefix: 10.1.2.0/24, via: 10.0.0.12}
  - {prefix: 10.1.3.0/24, via: 10.0.0.13}
`

func spokeYAML(i int, source, transport string, key int, auth string) string {
	return fmt.Sprintf(`
name: spoke%d
tunnel:
  address: 10.0.0.1%d/24
  source: %s
  key: %d
  transport: %s
nhrp:
  network-id: 1
  holdtime: 30s
  authentication: %s
  nhs:
    - {address: 10.0.0.1, nbma: 192.0.2.1}
routes:
  - {prefix: 10.1.0.0/16, via: 10.0.0.1}
`, i, i, source, key, transport, auth)
}

func (tn *testNet) start(yaml string, lans ...string) *testNode {
	tn.t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		tn.t.Fatal(err)
	}
	logs := &logBuffer{}
	ct := tuntest.NewChannelTUN()
	var host []netip.Prefix
	for _, l := range lans {
		host = append(host, netip.MustParsePrefix(l))
	}
	n, err := New(cfg, Options{
		Device: ct.TUN(),
		Host:   localroute.NewStatic(host...),
		Listen: func(local netip.AddrPort, t nbma.Transport) (underlay.Conn, error) {
			return tn.net.Listen(local, t)
		},
		ListenIPsec: func(local netip.AddrPort, t nbma.Transport) (underlay.Conn, error) {
			return tn.net.Listen(local, t)
		},
		Clock: tn.rclk,
		Log:   slog.New(slog.NewTextHandler(io.MultiWriter(logs), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		tn.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tnode := &testNode{name: cfg.Name, n: n, tun: ct, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { tnode.done <- n.Run(ctx) }()
	tn.nodes[cfg.Name] = tnode
	return tnode
}

func (n *testNode) stop(t testing.TB) {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.done:
		if err != nil {
			t.Errorf("%s: Run: %v", n.name, err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("%s did not stop", n.name)
	}
}

// advance moves the fake clock forward one second at a time, letting the
// nodes' loops run between steps, as real time would.
func (tn *testNet) advance(d time.Duration) {
	for step := time.Second; d > 0; d -= step {
		tn.clk.Advance(min(step, d))
		time.Sleep(3 * time.Millisecond)
	}
}

// eventually polls cond for up to 5 s of real time.
// expectProbesThenPurge waits for the hub's two liveness probes of a
// registrant that left (after before probes in all), moving the fake clock
// between them and past the last.
func expectProbesThenPurge(t *testing.T, tn *testNet, hub *testNode, before uint64) {
	t.Helper()
	eventually(t, "first probe", func() bool { return hub.n.Engine().Stats().ProbesSent > before })
	tn.clk.Advance(time.Second)
	eventually(t, "second probe", func() bool { return hub.n.Engine().Stats().ProbesSent > before+1 })
	tn.clk.Advance(time.Second)
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func registered(n *testNode) bool {
	for _, s := range n.n.Engine().NHSStatus() {
		if s.State != "up" {
			return false
		}
	}
	return true
}

// ping injects an ICMP echo from src to dst into from's overlay, as the
// kernel would, and waits for it to come out of to's overlay.
func ping(t *testing.T, from, to *testNode, src, dst string) {
	t.Helper()
	pkt := echo(netip.MustParseAddr(dst), netip.MustParseAddr(src))
	select {
	case from.tun.Outbound <- pkt:
	case <-time.After(2 * time.Second):
		t.Fatalf("%s's overlay did not take the packet", from.name)
	}
	deadline := time.After(2 * time.Second)
	for {
		select {
		case got := <-to.tun.Inbound:
			if len(got) >= 20 && netip.AddrFrom4([4]byte(got[16:20])) == netip.MustParseAddr(dst) &&
				netip.AddrFrom4([4]byte(got[12:16])) == netip.MustParseAddr(src) {
				return
			}
		case <-deadline:
			t.Fatalf("ping %s -> %s (%s -> %s) never arrived", src, dst, from.name, to.name)
		}
	}
}

// echo builds an ICMP echo request from src to dst with valid checksums
// (tuntest.Ping's IPv4 checksum is not complemented).
func echo(dst, src netip.Addr) []byte {
	pkt := make([]byte, 20+8+4)
	icmp := pkt[20:]
	icmp[0] = 8
	binary.BigEndian.PutUint32(icmp[8:], 0x05390000)
	binary.BigEndian.PutUint16(icmp[2:], inet.Checksum(icmp))
	inet.PutIPv4Header(pkt, src, dst, inet.ProtoICMP, len(icmp), 1)
	return pkt
}

func TestPhase1HubAndSpokesWithNAT(t *testing.T) {
	tn := newTestNet(t)
	if err := tn.net.AddNAT(netip.MustParsePrefix("192.168.3.0/24"), netip.MustParseAddr("198.51.100.129"), memnet.NATModeUDPOnly); err != nil {
		t.Fatal(err)
	}
	hub := tn.start(hubYAML, "10.1.0.0/24")
	s1 := tn.start(spokeYAML(1, "198.51.100.1", "gre", 42, "lab"), "10.1.1.0/24")
	s2 := tn.start(spokeYAML(2, "198.51.100.65", "gre", 42, "lab"), "10.1.2.0/24")
	s3 := tn.start(spokeYAML(3, "192.168.3.2", "udp", 42, "lab"), "10.1.3.0/24")
	for _, s := range []*testNode{s1, s2, s3} {
		eventually(t, s.name+" registered", func() bool { return registered(s) })
	}
	eventually(t, "hub knows 3 spokes", func() bool { return hub.n.Cache().Len() == 3 })

	e3, _ := hub.n.Cache().Get(netip.MustParseAddr("10.0.0.13"))
	if !e3.NAT || e3.NBMA.Addr() != netip.MustParseAddr("198.51.100.129") || e3.NBMA.Port() == 0 || e3.Transport != nbma.TransportUDP {
		t.Fatalf("spoke3 entry at the hub: %+v", e3)
	}
	d := hub.n.DMVPN()
	attrs := map[string]string{}
	for _, p := range d.Peers {
		attrs[p.PeerTunnel] = p.Attributes + "/" + p.State
	}
	if attrs["10.0.0.11"] != "D/UP" || attrs["10.0.0.12"] != "D/UP" || attrs["10.0.0.13"] != "DN/UP" {
		t.Fatalf("hub show dmvpn attributes %v", attrs)
	}

	// LAN to LAN through the hub, in both directions, and across the NAT.
	ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
	ping(t, s2, s1, "10.1.2.10", "10.1.1.10")
	ping(t, s3, s1, "10.1.3.10", "10.1.1.10")
	ping(t, s1, s3, "10.1.1.10", "10.1.3.10")
	ping(t, s1, hub, "10.1.1.10", "10.0.0.1")
	if got := hub.n.Plane().Stats().Hairpinned; got != 4 {
		t.Fatalf("hub hairpinned %d packets, want 4", got)
	}
	// show stats has each underlay socket's counters.
	u := hub.n.Stats().Underlay
	if u["gre"]["sent"] == 0 || u["gre"]["received"] == 0 || u["udp"]["sent"] == 0 || u["udp"]["received"] == 0 {
		t.Fatalf("hub underlay stats %v", u)
	}
}

// TestRelayedPacketTTL checks the hub behaves as a router: TTL is
// decremented and the IPv4 checksum stays valid.
func TestRelayedPacketTTL(t *testing.T) {
	tn := newTestNet(t)
	tn.start(hubYAML, "10.1.0.0/24")
	s1 := tn.start(spokeYAML(1, "198.51.100.1", "gre", 42, "lab"), "10.1.1.0/24")
	s2 := tn.start(spokeYAML(2, "198.51.100.65", "gre", 42, "lab"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return registered(s1) && registered(s2) })
	pkt := echo(netip.MustParseAddr("10.1.2.10"), netip.MustParseAddr("10.1.1.10"))
	ttl := pkt[8]
	s1.tun.Outbound <- pkt
	select {
	case got := <-s2.tun.Inbound:
		if got[8] != ttl-1 {
			t.Fatalf("TTL %d, want %d", got[8], ttl-1)
		}
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(got[i:]))
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		if sum != 0xffff {
			t.Fatalf("IPv4 header checksum broken after relay: %x", got[:20])
		}
	case <-time.After(2 * time.Second):
		t.Fatal("not relayed")
	}
}

func TestWrongKeyAndWrongAuthenticationRefused(t *testing.T) {
	tn := newTestNet(t)
	hub := tn.start(hubYAML, "10.1.0.0/24")
	badKey := tn.start(spokeYAML(1, "198.51.100.1", "gre", 43, "lab"), "10.1.1.0/24")
	badAuth := tn.start(spokeYAML(2, "198.51.100.65", "gre", 42, "nope"), "10.1.2.0/24")

	eventually(t, "auth failure reported", func() bool {
		return badAuth.n.Engine().NHSStatus()[0].State == "error"
	})
	st := badAuth.n.DMVPN().Peers[0]
	if st.State != "ERROR" || !strings.Contains(st.Reason, "authentication failure") {
		t.Fatalf("bad-auth spoke show dmvpn: %+v", st)
	}
	if !strings.Contains(badAuth.logs.String(), "authentication failure") {
		t.Fatalf("bad-auth spoke log says nothing about authentication:\n%s", badAuth.logs.String())
	}
	if !strings.Contains(hub.logs.String(), "authentication failure") {
		t.Fatal("hub log says nothing about authentication")
	}

	// The wrong key never reaches NHRP at the hub: it is dropped, counted
	// and logged, and the spoke keeps retrying with backoff.
	eventually(t, "key mismatch counted", func() bool { return hub.n.Plane().Stats().KeyMismatch > 0 })
	for i := uint64(2); i <= 4; i++ {
		tn.clk.Advance(8 * time.Second)
		eventually(t, "retry counted", func() bool { return hub.n.Plane().Stats().KeyMismatch >= i })
	}
	if !strings.Contains(hub.logs.String(), "wrong tunnel key") || !strings.Contains(hub.logs.String(), "key=43") {
		t.Fatalf("hub log does not explain the key mismatch:\n%s", hub.logs.String())
	}
	p := badKey.n.DMVPN().Peers[0]
	if p.State != "NHRP" || !strings.Contains(p.Reason, "no reply") {
		t.Fatalf("bad-key spoke show dmvpn: %+v", p)
	}
	if hub.n.Cache().Len() != 0 {
		t.Fatalf("hub registered a refused spoke: %+v", hub.n.Cache().All())
	}
}

func TestStoppedSpokePurgedOrExpired(t *testing.T) {
	tn := newTestNet(t)
	hub := tn.start(hubYAML, "10.1.0.0/24")
	s1 := tn.start(spokeYAML(1, "198.51.100.1", "gre", 42, "lab"), "10.1.1.0/24")
	s2 := tn.start(spokeYAML(2, "198.51.100.65", "gre", 42, "lab"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return hub.n.Cache().Len() == 2 })

	// A clean stop purges as soon as the hub's liveness probes of the
	// registrant (1 s apart) go unanswered.
	probes := hub.n.Engine().Stats().ProbesSent
	s1.stop(t)
	expectProbesThenPurge(t, tn, hub, probes)
	eventually(t, "spoke1 purged", func() bool {
		_, ok := hub.n.Cache().Get(netip.MustParseAddr("10.0.0.11"))
		return !ok
	})
	if hub.n.Engine().Stats().PurgesReceived != 1 {
		t.Fatalf("stats %+v", hub.n.Engine().Stats())
	}

	// A spoke that vanishes (its packets stop arriving) expires with its
	// holding time, not before.
	tn.net.SetFilter(func(from, to netip.AddrPort, _ nbma.Transport, _ []byte) bool {
		return from.Addr() != netip.MustParseAddr("198.51.100.65")
	})
	tn.clk.Advance(25 * time.Second)
	time.Sleep(20 * time.Millisecond)
	if _, ok := hub.n.Cache().Get(netip.MustParseAddr("10.0.0.12")); !ok {
		t.Fatal("spoke2 expired before its holding time")
	}
	tn.clk.Advance(6 * time.Second)
	eventually(t, "spoke2 expired", func() bool {
		_, ok := hub.n.Cache().Get(netip.MustParseAddr("10.0.0.12"))
		return !ok
	})
	_ = s2
}

func TestHubRestartSpokesReregister(t *testing.T) {

	tn := newTestNet(t)
	hub := tn.start(hubYAML, "10.1.0.0/24")
	s1 := tn.start(spokeYAML(1, "198.51.100.1", "gre", 42, "lab"), "10.1.1.0/24")
	s2 := tn.start(spokeYAML(2, "198.51.100.65", "gre", 42, "lab"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return registered(s1) && registered(s2) && hub.n.Cache().Len() == 2 })
	ping(t, s1, s2, "10.1.1.10", "10.1.2.10")

	hub.stop(t)
	delete(tn.nodes, "hub")
	hub = tn.start(hubYAML, "10.1.0.0/24")
	if hub.n.Cache().Len() != 0 {
		t.Fatal("new hub starts with state")
	}
	// Spokes refresh every holdtime/3 = 10 s.
	for i := 0; i < 15 && hub.n.Cache().Len() < 2; i++ {
		tn.advance(time.Second)
	}
	eventually(t, "spokes re-registered within 15 s", func() bool { return hub.n.Cache().Len() == 2 })
	ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
	ping(t, s2, s1, "10.1.2.10", "10.1.1.10")
	for _, e := range hub.n.Cache().All() {
		if e.Type != cache.Dynamic {
			t.Fatalf("entry %+v", e)
		}
	}
}

func TestMulticastReplicatedToRegisteredSpokes(t *testing.T) {
	tn := newTestNet(t)
	hub := tn.start(hubYAML, "10.1.0.0/24")
	s1 := tn.start(spokeYAML(1, "198.51.100.1", "gre", 42, "lab"), "10.1.1.0/24")
	s2 := tn.start(spokeYAML(2, "198.51.100.65", "gre", 42, "lab"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return hub.n.Cache().Len() == 2 })
	// An OSPF-style hello to 224.0.0.5 from the hub reaches both spokes.
	pkt := echo(netip.MustParseAddr("224.0.0.5"), netip.MustParseAddr("10.0.0.1"))
	hub.tun.Outbound <- pkt
	for _, s := range []*testNode{s1, s2} {
		select {
		case got := <-s.tun.Inbound:
			if netip.AddrFrom4([4]byte(got[16:20])) != netip.MustParseAddr("224.0.0.5") {
				t.Fatalf("%s got %x", s.name, got[:20])
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s did not get the multicast", s.name)
		}
	}
	if hub.n.Plane().Stats().Multicast != 2 {
		t.Fatalf("multicast copies %d", hub.n.Plane().Stats().Multicast)
	}
}
