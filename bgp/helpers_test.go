package bgp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Every test stops what it starts; goleak checks GoBGP's goroutines end
// with Stop — all but one kind: GoBGP v4.8.0 leaks the goroutine of a
// neighbor's outgoing queue (an eapache InfiniteChannel), with whatever is
// queued, when a session ends with UPDATEs still queued — every time for
// a dynamic neighbor, whose queue is never drained — because its
// cleanInfiniteChannel drains the queue without waiting after closing it.
// TestGoroutinesAfterStop bounds those, so that the exception hides
// nothing else.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, ignoreGoBGPQueueLeak) }

var ignoreGoBGPQueueLeak = goleak.IgnoreTopFunction("github.com/eapache/channels.(*InfiniteChannel).infiniteBuffer")

// Short timers so that sessions come up and fail within seconds.
const (
	testHold      = 3 * time.Second
	testKeepalive = time.Second
	testRetry     = 2 * time.Second // GoBGP's minimum (MinConnectRetry)
	testDeadline  = 30 * time.Second
)

// testLog logs to the test's output when -v and BGP_TEST_LOG are set,
// else nowhere.
func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("BGP_TEST_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// freePort returns a TCP port free on every address (bound to the
// wildcard, then released), for one test's speakers to share.
func freePort(t testing.TB) int32 {
	t.Helper()
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// addr is 127.net.0.host: each test uses its own 127.net.0.0/24.
func addr(net, host byte) netip.Addr { return netip.AddrFrom4([4]byte{127, net, 0, host}) }

func rangeOf(net byte) netip.Prefix { return netip.PrefixFrom(addr(net, 0), 24) }

func lan(net, host byte) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, net, host, 0}), 24)
}

// hubConfig is a route-reflector hub at 127.net.0.1 accepting the range
// 127.net.0.0/24 with rangeAS (0: any).
func hubConfig(t testing.TB, net byte, port int32, rangeAS uint32) Config {
	return Config{
		AS: 65000, RouterID: addr(net, 1),
		ListenAddress: addr(net, 1), ListenPort: port,
		Dynamic:        []DynamicRange{{Prefix: rangeOf(net), AS: rangeAS}},
		RouteReflector: true,
		HoldTime:       testHold, Keepalive: testKeepalive, ConnectRetry: testRetry,
		Log: testLog(t),
	}
}

// spokeConfig is a spoke at 127.net.0.host in as, peering with the hub and
// originating its LAN 10.net.host.0/24.
func spokeConfig(t testing.TB, net, host byte, as uint32, port int32) Config {
	return Config{
		AS: as, RouterID: addr(net, host),
		ListenPort: -1, LocalAddress: addr(net, host),
		Neighbors: []Neighbor{{Address: addr(net, 1), AS: 65000, Port: uint16(port), Description: "hub"}},
		Networks:  []netip.Prefix{lan(net, host)},
		HoldTime:  testHold, Keepalive: testKeepalive, ConnectRetry: testRetry,
		Log: testLog(t),
	}
}

func start(t testing.TB, c Config) *Speaker {
	t.Helper()
	s, err := Start(context.Background(), c)
	if err != nil {
		t.Fatalf("Start(%v): %v", c.RouterID, err)
	}
	t.Cleanup(s.Stop)
	return s
}

// view is what a consumer of Drain has built: the learned best paths.
type view struct {
	s *Speaker
	m map[netip.Prefix]Route
}

func newView(s *Speaker) *view { return &view{s: s, m: map[netip.Prefix]Route{}} }

func (v *view) drain() {
	v.s.Drain(func(p netip.Prefix, r Route, present bool) {
		if present {
			v.m[p] = r
		} else {
			delete(v.m, p)
		}
	})
}

// wait drains v until cond holds, woken by Changes (and, for conditions
// that also look at sessions, a 100 ms tick), failing at the deadline with
// what it has.
func (v *view) wait(t testing.TB, what string, cond func(map[netip.Prefix]Route) bool) {
	t.Helper()
	deadline := time.NewTimer(testDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		v.drain()
		if cond(v.m) {
			return
		}
		select {
		case <-v.s.Changes():
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s: not within %v; routes at %v: %s", what, testDeadline, v.s.cfg.RouterID, fmtRoutes(v.m))
		}
	}
}

func fmtRoutes(m map[netip.Prefix]Route) string {
	var b strings.Builder
	for p, r := range m {
		fmt.Fprintf(&b, "[%v via %v from %v as %v] ", p, r.NextHop, r.Neighbor, r.ASPath)
	}
	return b.String()
}

// waitCond polls cond every 50 ms until it holds or the deadline passes.
func waitCond(t testing.TB, what string, cond func() bool, detail func() string) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, testDeadline, detail())
		}
		<-tick.C
	}
}

func neighbor(s *Speaker, a netip.Addr) (NeighborStatus, bool) {
	for _, n := range s.Neighbors() {
		if n.Address == a {
			return n, true
		}
	}
	return NeighborStatus{}, false
}

func fmtNeighbors(s *Speaker) func() string {
	return func() string {
		var b strings.Builder
		for _, n := range s.Neighbors() {
			fmt.Fprintf(&b, "[%v as %d %v dyn=%v err=%q] ", n.Address, n.AS, n.State, n.Dynamic, n.LastError)
		}
		return b.String()
	}
}

func established(s *Speaker, a netip.Addr) func() bool {
	return func() bool {
		n, ok := neighbor(s, a)
		return ok && n.State == StateEstablished
	}
}
