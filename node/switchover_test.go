package node

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/clock"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/nbma"

	ikeengine "github.com/dmvpn/dmvpn/ikev2/engine"
)

// switchover measures one phase 3 switch-over on a network running on real
// time: spoke1 streams packets to a fresh host behind spoke2 every gap; the
// result is the time from the first packet the hub relays (and redirects)
// to the first packet spoke2 receives straight from spoke1, and how many
// packets did not arrive.
//
// With IPsec (newSwitchoverIPsec) the spokes have no SA with each other
// when a run starts, so the switch-over includes the IKE exchanges that
// bring it up (IKE_SA_INIT and IKE_AUTH, spoke2 initiating: its Resolution
// Reply to spoke1 waits for the SA), and the first direct packet is the
// first one on the new SA.
type switchover struct {
	tn          *testNet
	hub, s1, s2 *testNode
	ipsec       bool
	relayed     atomic.Int64 // unix ns of the first data packet hub -> spoke2
	direct      atomic.Int64 // unix ns of the first data packet spoke1 -> spoke2
	// With IPsec: the SPI of the first direct packet, and the unix ns of
	// the first and the last IKE message between the spokes before it.
	directSPI         atomic.Uint32
	ikeFirst, ikeLast atomic.Int64
}

var (
	swSpoke1 = netip.MustParseAddr("198.51.100.1")
	swSpoke2 = netip.MustParseAddr("198.51.100.65")
	swHub    = netip.MustParseAddr("192.0.2.1")
)

// swDataLen is the length of the packets the IPsec runs stream: ESP hides
// which datagrams carry data, so the filter tells them from NHRP (all far
// shorter) by size.
const swDataLen = 1000

func newSwitchover(t testing.TB) *switchover {
	tn := newTestNetOn(t, clock.Real{}, nil)
	sw := &switchover{tn: tn}
	sw.hub = tn.start(phase3Hub(), "10.1.0.0/24")
	sw.s1 = tn.start(phase3Spoke(1, swSpoke1.String(), "gre"), "10.1.1.0/24")
	sw.s2 = tn.start(phase3Spoke(2, swSpoke2.String(), "gre"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return registered(sw.s1) && registered(sw.s2) })
	tn.net.SetFilter(func(from, to netip.AddrPort, _ nbma.Transport, pkt []byte) bool {
		if to.Addr() != swSpoke2 {
			return true
		}
		h, _, err := gre.Decode(pkt)
		if err != nil || h.Protocol == gre.ProtoNHRP {
			return true
		}
		sw.saw(from.Addr(), 0)
		return true
	})
	return sw
}

// swESP is the lab's ESP proposal (AES-128-GCM, no ESN): the one the
// throughput benchmark measures.
const swESP = "  esp-proposals: [aes128gcm16-noesn]\n"

func newSwitchoverIPsec(t testing.TB) *switchover {
	tn := newTestNetOn(t, clock.Real{}, nil)
	sw := &switchover{tn: tn, ipsec: true}
	sw.hub = tn.start(withIPsec(phase3Hub(), swESP), "10.1.0.0/24")
	sw.s1 = tn.start(withIPsec(phase3Spoke(1, swSpoke1.String(), "gre"), swESP), "10.1.1.0/24")
	sw.s2 = tn.start(withIPsec(phase3Spoke(2, swSpoke2.String(), "gre"), swESP), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return registered(sw.s1) && registered(sw.s2) })
	tn.net.SetFilter(func(from, to netip.AddrPort, tr nbma.Transport, pkt []byte) bool {
		spokes := from.Addr() == swSpoke1 && to.Addr() == swSpoke2 || from.Addr() == swSpoke2 && to.Addr() == swSpoke1
		switch {
		case tr == nbma.TransportUDP:
			// IKE (500, or 4500 after a float) between the spokes,
			// until the first direct packet.
			if spokes && sw.direct.Load() == 0 {
				now := time.Now().UnixNano()
				sw.ikeFirst.CompareAndSwap(0, now)
				sw.ikeLast.Store(now)
			}
		case to.Addr() == swSpoke2 && len(pkt) >= swDataLen:
			// Raw ESP long enough to be a data packet (SPI first).
			sw.saw(from.Addr(), binary.BigEndian.Uint32(pkt))
		}
		return true
	})
	return sw
}

// saw records a data packet arriving at spoke2 from a (spi: its ESP SPI,
// with IPsec).
func (sw *switchover) saw(from netip.Addr, spi uint32) {
	now := time.Now().UnixNano()
	switch from {
	case swHub:
		sw.relayed.CompareAndSwap(0, now)
	case swSpoke1:
		if sw.direct.CompareAndSwap(0, now) {
			sw.directSPI.Store(spi)
		}
	}
}

// spokeSAs reports whether either spoke still has an IKE SA or a current
// Child SA with the other.
func (sw *switchover) spokeSAs() bool {
	for _, p := range []struct {
		n     *testNode
		other netip.Addr
	}{{sw.s1, swSpoke2}, {sw.s2, swSpoke1}} {
		if p.n.n.ipsec.layer.Up(netip.AddrPortFrom(p.other, 0)) {
			return true
		}
		for _, sa := range p.n.n.ipsec.ike.SAs() {
			if sa.Peer.Addr() == p.other {
				return true
			}
		}
	}
	return false
}

// dropSpokeSAs deletes the spokes' IKE SA with each other (and with it the
// Child SAs and the shortcuts through them: engine.PeerLost), as `clear`
// on one of them would, and waits until both sides have let go.
func (sw *switchover) dropSpokeSAs(t testing.TB) {
	for _, p := range []struct {
		n     *testNode
		other netip.Addr
	}{{sw.s1, swSpoke2}, {sw.s2, swSpoke1}} {
		err := p.n.n.ipsec.ike.Delete(time.Now(), netip.AddrPortFrom(p.other, IKEPort), "switch-over benchmark")
		if errors.Is(err, ikeengine.ErrNoSA) {
			continue // the other side may hold it (or nobody)
		}
		if err != nil {
			t.Fatalf("%s: delete the IKE SA with %v: %v", p.n.name, p.other, err)
		}
		p.n.n.poke() // sends the Delete, hands the lost peer to NHRP
		break        // the peer deletes its side when the Delete arrives
	}
	eventually(t, "no SA between the spokes", func() bool { return !sw.spokeSAs() })
}

// swIKEPace spaces the IPsec runs: each brings up a new IKE SA between the
// same two spokes, and the IKE engine accepts at most 20 IKE_SA_INITs a
// second from one address (ikev2/engine Config.InitRate); back-to-back
// runs would measure that limiter (a dropped IKE_SA_INIT, retransmitted
// after 500 ms) instead of the switch-over.
const swIKEPace = 60 * time.Millisecond

// run does one switch-over toward host 10.1.2.host and returns its time and
// the packets lost.
func (sw *switchover) run(t testing.TB, host int, gap time.Duration) (time.Duration, int) {
	if sw.ipsec {
		sw.dropSpokeSAs(t)
	}
	sw.s1.n.Engine().ClearShortcuts()
	sw.s2.n.Engine().ClearShortcuts()
	sw.relayed.Store(0)
	sw.direct.Store(0)
	sw.directSPI.Store(0)
	sw.ikeFirst.Store(0)
	sw.ikeLast.Store(0)
	dst := netip.AddrFrom4([4]byte{10, 1, 2, byte(host)})
	src := netip.MustParseAddr("10.1.1.10")
	pkt := func() []byte { return echo(dst, src) }
	if sw.ipsec {
		pkt = func() []byte { return echoSized(dst, src, swDataLen) }
	}
	received := make(chan struct{}, 1024)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-sw.s2.tun.Inbound:
				received <- struct{}{}
			case <-done:
				return
			}
		}
	}()
	sent := 0
	deadline := time.Now().Add(2 * time.Second)
	for sw.direct.Load() == 0 || sent < 10 {
		if time.Now().After(deadline) {
			close(done)
			t.Fatalf("no direct packet within 2 s (sent %d)", sent)
		}
		sw.s1.tun.Outbound <- pkt()
		sent++
		time.Sleep(gap)
	}
	got := 0
	wait := time.After(time.Second)
	for got < sent {
		select {
		case <-received:
			got++
		case <-wait:
			close(done)
			return time.Duration(sw.direct.Load() - sw.relayed.Load()), sent - got
		}
	}
	close(done)
	return time.Duration(sw.direct.Load() - sw.relayed.Load()), sent - got
}

// echoSized is echo with an ICMP payload that makes the IPv4 packet n
// octets long.
func echoSized(dst, src netip.Addr, n int) []byte {
	pkt := make([]byte, n)
	icmp := pkt[20:]
	icmp[0] = 8
	binary.BigEndian.PutUint32(icmp[4:], 0x05390000)
	binary.BigEndian.PutUint16(icmp[2:], inet.Checksum(icmp))
	inet.PutIPv4Header(pkt, src, dst, inet.ProtoICMP, len(icmp), 1)
	return pkt
}

// TestSwitchoverLosesNothing checks the behaviour the benchmark measures:
// the stream moves to the direct path and no packet is lost on the way.
func TestSwitchoverLosesNothing(t *testing.T) {
	sw := newSwitchover(t)
	for i := 0; i < 5; i++ {
		d, lost := sw.run(t, 20+i, 200*time.Microsecond)
		if lost != 0 || d <= 0 {
			t.Fatalf("run %d: switch-over %v, %d packets lost", i, d, lost)
		}
	}
}

// BenchmarkSwitchover reports the phase 3 switch-over time (first packet
// the hub redirects to first packet on the direct path) at p50 and p99 over
// b.N runs (use -benchtime=100x or more), and the packets lost meanwhile.
// Goal (shared/reference/performance.md): p50 <= 5 ms, nothing lost.
func BenchmarkSwitchover(b *testing.B) {
	sw := newSwitchover(b)
	var times []time.Duration
	lost := 0
	i := 0
	for b.Loop() {
		d, l := sw.run(b, 20+i%200, 100*time.Microsecond)
		times = append(times, d)
		lost += l
		i++
	}
	slices.Sort(times)
	pct := func(p float64) time.Duration { return times[min(len(times)-1, int(p*float64(len(times))))] }
	b.ReportMetric(float64(pct(0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(pct(0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(lost), "lost-pkts")
	b.ReportMetric(float64(len(times)), "runs")
	b.Logf("switch-over over %d runs: p50 %v, p99 %v, max %v, packets lost %d", len(times), pct(0.50), pct(0.99), times[len(times)-1], lost)
}

// TestSwitchoverIPsecLosesNothing checks the IPsec variant measures what
// it says: each run starts with no SA between the spokes, brings one up
// with IKE before the first direct packet, sends that packet on the new
// SA (an SPI spoke2 did not have before the run, now its SA with spoke1),
// and loses nothing.
func TestSwitchoverIPsecLosesNothing(t *testing.T) {
	sw := newSwitchoverIPsec(t)
	seen := map[uint32]bool{}
	for i := 0; i < 3; i++ {
		d, lost := sw.run(t, 20+i, 200*time.Microsecond)
		spi, ike0, ike1 := sw.directSPI.Load(), sw.ikeFirst.Load(), sw.ikeLast.Load()
		if lost != 0 || d <= 0 {
			t.Fatalf("run %d: switch-over %v, %d packets lost", i, d, lost)
		}
		if ike0 == 0 || ike0 < sw.relayed.Load() || ike1 > sw.direct.Load() {
			t.Fatalf("run %d: IKE between the spokes at %d..%d, relayed %d, direct %d", i, ike0, ike1, sw.relayed.Load(), sw.direct.Load())
		}
		if spi == 0 || seen[spi] {
			t.Fatalf("run %d: first direct packet on SPI %#x (earlier runs: %v)", i, spi, seen)
		}
		seen[spi] = true
		found := false
		for _, sa := range sw.s2.n.ipsec.layer.SAs() {
			found = found || sa.InboundSPI == spi && sa.Peer.Addr() == swSpoke1
		}
		if !found {
			t.Fatalf("run %d: SPI %#x of the first direct packet is not spoke2's SA with spoke1: %+v", i, spi, sw.s2.n.ipsec.layer.SAs())
		}
	}
	if st := sw.s2.n.ipsec.layer.Stats(); st.AuthFailed != 0 || st.Replayed != 0 {
		t.Fatalf("spoke2 ESP drops: %+v", st)
	}
}

// BenchmarkSwitchoverIPsec is BenchmarkSwitchover with IPsec, the spokes
// starting every run without an SA between them: the time runs from the
// first packet the hub redirects to the first packet on the direct path
// over the new SA, so it includes IKE_SA_INIT and IKE_AUTH between the
// spokes (their part is reported as ike-p50-µs, first to last IKE message).
// Goal (issue): p50 <= 5 ms, p99 <= 20 ms, nothing lost.
func BenchmarkSwitchoverIPsec(b *testing.B) {
	sw := newSwitchoverIPsec(b)
	var times, ikes []time.Duration
	lost := 0
	i := 0
	var last time.Time
	for b.Loop() {
		// Pacing of the load, not synchronisation: see swIKEPace.
		time.Sleep(time.Until(last.Add(swIKEPace)))
		last = time.Now()
		d, l := sw.run(b, 20+i%200, 100*time.Microsecond)
		times = append(times, d)
		ikes = append(ikes, time.Duration(sw.ikeLast.Load()-sw.ikeFirst.Load()))
		lost += l
		i++
	}
	slow := 0
	for _, d := range times {
		if d > 20*time.Millisecond {
			slow++
		}
	}
	// What IKE did meanwhile: a slow run is one whose IKE waited for a
	// retransmission (the engine's first is after 500 ms).
	ike := map[string]uint64{}
	for _, n := range []*testNode{sw.s1, sw.s2} {
		for k, v := range n.n.IPsec().Counters {
			if v != 0 && (strings.HasPrefix(k, "ike_dropped") || k == "ike_retransmitted" || k == "ike_collisions" || k == "ike_failed" || k == "esp_queue_drops" || k == "esp_wait_expired") {
				ike[k] += v
			}
		}
	}
	slices.Sort(times)
	slices.Sort(ikes)
	pct := func(v []time.Duration, p float64) time.Duration { return v[min(len(v)-1, int(p*float64(len(v))))] }
	b.ReportMetric(float64(pct(times, 0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(pct(times, 0.99).Microseconds()), "p99-µs")
	b.ReportMetric(float64(pct(ikes, 0.50).Microseconds()), "ike-p50-µs")
	b.ReportMetric(float64(lost), "lost-pkts")
	b.ReportMetric(float64(len(times)), "runs")
	b.ReportMetric(float64(slow), "runs>20ms")
	b.Logf("spokes' IKE/ESP trouble counters over the runs: %v", ike)
	b.Logf("IPsec switch-over over %d runs: p50 %v, p99 %v, max %v (IKE between the spokes p50 %v, p99 %v), packets lost %d; goal p50 <= 5ms, p99 <= 20ms, 0 lost",
		len(times), pct(times, 0.50), pct(times, 0.99), times[len(times)-1], pct(ikes, 0.50), pct(ikes, 0.99), lost)
}
