package node

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/clock"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/nbma"
)

// switchover measures one phase 3 switch-over on a network running on real
// time: spoke1 streams packets to a fresh host behind spoke2 every gap; the
// result is the time from the first packet the hub relays (and redirects)
// to the first packet spoke2 receives straight from spoke1, and how many
// packets did not arrive.
type switchover struct {
	tn          *testNet
	hub, s1, s2 *testNode
	relayed     atomic.Int64 // unix ns of the first data packet hub -> spoke2
	direct      atomic.Int64 // unix ns of the first data packet spoke1 -> spoke2
}

func newSwitchover(t testing.TB) *switchover {
	tn := newTestNetOn(t, clock.Real{}, nil)
	sw := &switchover{tn: tn}
	sw.hub = tn.start(phase3Hub(), "10.1.0.0/24")
	sw.s1 = tn.start(phase3Spoke(1, "198.51.100.1", "gre"), "10.1.1.0/24")
	sw.s2 = tn.start(phase3Spoke(2, "198.51.100.65", "gre"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return registered(sw.s1) && registered(sw.s2) })
	s1, s2, hub := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.65"), netip.MustParseAddr("192.0.2.1")
	tn.net.SetFilter(func(from, to netip.AddrPort, _ nbma.Transport, pkt []byte) bool {
		if to.Addr() != s2 {
			return true
		}
		h, _, err := gre.Decode(pkt)
		if err != nil || h.Protocol == gre.ProtoNHRP {
			return true
		}
		now := time.Now().UnixNano()
		switch from.Addr() {
		case hub:
			sw.relayed.CompareAndSwap(0, now)
		case s1:
			sw.direct.CompareAndSwap(0, now)
		}
		return true
	})
	return sw
}

// run does one switch-over toward host 10.1.2.host and returns its time and
// the packets lost.
func (sw *switchover) run(t testing.TB, host int, gap time.Duration) (time.Duration, int) {
	sw.s1.n.Engine().ClearShortcuts()
	sw.s2.n.Engine().ClearShortcuts()
	sw.relayed.Store(0)
	sw.direct.Store(0)
	dst := netip.AddrFrom4([4]byte{10, 1, 2, byte(host)})
	src := netip.MustParseAddr("10.1.1.10")
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
		sw.s1.tun.Outbound <- echo(dst, src)
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
