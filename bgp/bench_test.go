package bgp

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// The hub benchmark: one hub, benchNeighbors dynamic neighbors. The
// neighbors are not GoBGP speakers (a thousand of those would measure
// GoBGP a thousand times over, in the hub's process) but a small client
// on GoBGP's packet codec, each opening a session from its own address in
// 127/8, sending OPEN, KEEPALIVEs and one UPDATE with its /24, reading
// and discarding what the hub sends, and reconnecting when the hub
// restarts. They run in a child process (this test binary re-executed
// into TestBenchHarness), so the hub's heap is measured alone.
//
//	go test ./bgp -run '^$' -bench Hub -benchtime 1x
//
// With DMVPN_BGP_HEAPPROFILE=FILE the hub's heap profile once converged is
// written to FILE (go tool pprof -sample_index=inuse_space);
// DMVPN_BGP_NEIGHBORS=N runs N neighbors instead of 1,000.
//
// Goal (later): 10,000 neighbors on two cores.
const (
	benchDefault = 1000
	benchGoal    = 10000
	benchTimeout = 5 * time.Minute
	harnessEnv   = "DMVPN_BGP_HARNESS"   // hub address:port,count
	neighborsEnv = "DMVPN_BGP_NEIGHBORS" // another neighbor count, up to 60,000
)

// benchNeighbors is the neighbor count: benchDefault, or $DMVPN_BGP_NEIGHBORS.
var benchNeighbors = func() int {
	if n, err := strconv.Atoi(os.Getenv(neighborsEnv)); err == nil && n > 0 && n <= 60000 {
		return n
	}
	return benchDefault
}()

var benchHub = netip.MustParseAddr("127.63.0.1")

// benchSource is the address of client i: 127.64.0.0/16 upwards.
func benchSource(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 64, byte(i/250 + 1), byte(i%250 + 1)})
}

// benchPrefix is client i's LAN, inside 10.0.0.0/8.
func benchPrefix(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
}

func BenchmarkHub(b *testing.B) {
	for _, mode := range []struct {
		name  string
		phase func(*Config)
	}{
		// Phase 3: the spokes get the aggregate only, one route each.
		{"phase3", func(c *Config) {
			c.Aggregates = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
			c.NextHopSelf = true
		}},
		// Phase 2: full reflection, every spoke gets every other's route:
		// N×(N−1) path advertisements.
		{"phase2", func(*Config) {}},
	} {
		b.Run(fmt.Sprintf("%s/neighbors=%d", mode.name, benchNeighbors), func(b *testing.B) {
			benchHubRun(b, mode.phase)
		})
	}
}

func benchHubRun(b *testing.B, phase func(*Config)) {
	port := freePort(b)
	cfg := Config{
		AS: 65000, RouterID: benchHub,
		ListenAddress: benchHub, ListenPort: port,
		Dynamic:        []DynamicRange{{Prefix: netip.MustParsePrefix("127.64.0.0/16"), AS: 65000}},
		RouteReflector: true,
		Log:            testLog(b),
	}
	phase(&cfg)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapAlloc
	goroutinesBefore := runtime.NumGoroutine()

	t0 := time.Now()
	hub, err := Start(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { hub.Stop() }()
	stopHarness := startHarness(b, netip.AddrPortFrom(benchHub, uint16(port)), benchNeighbors)
	defer stopHarness()
	v := newView(hub)
	benchConverge(b, v, "initial convergence")
	initial := time.Since(t0)

	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	perNeighbor := float64(int64(ms.HeapAlloc)-int64(heapBefore)) / float64(benchNeighbors)
	if f := os.Getenv("DMVPN_BGP_HEAPPROFILE"); f != "" {
		// The hub's heap once converged, for go tool pprof.
		if w, err := os.Create(f); err == nil {
			pprof.Lookup("heap").WriteTo(w, 0)
			w.Close()
		}
	}

	b.ResetTimer()
	var restarts, stops time.Duration
	var retained int64
	for range b.N {
		t := time.Now()
		hub.Stop()
		stops += time.Since(t)
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		retained += int64(ms.HeapAlloc) - int64(heapBefore)
		b.StartTimer()
		start := time.Now()
		hub, err = Start(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		v = newView(hub)
		benchConverge(b, v, "convergence after a restart")
		restarts += time.Since(start)
	}
	b.StopTimer()
	converge := restarts.Seconds() / float64(b.N)

	runtime.GC()
	runtime.ReadMemStats(&ms)
	leaked := runtime.NumGoroutine() - goroutinesBefore - 1 // the harness's waiter
	b.ReportMetric(perNeighbor, "heap-B/neighbor")
	b.ReportMetric(initial.Seconds(), "initial-s")
	b.ReportMetric(converge, "restart-converge-s")
	b.ReportMetric(stops.Seconds()/float64(b.N), "stop-s")
	b.ReportMetric(float64(retained)/float64(b.N)/float64(benchNeighbors), "retained-after-stop-B/neighbor")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d dynamic neighbors, %d prefixes: initial convergence %.2fs, after a hub restart (Stop+Start) %.2fs (mean of %d); "+
		"hub heap %.0f B per neighbor once converged (%.1f MiB); %d goroutines more than before the hub started, with the hub running "+
		"(GoBGP runs 4 per session and leaks one per dynamic session ended); goal: %d neighbors on two cores",
		benchNeighbors, benchNeighbors, initial.Seconds(), converge, b.N, perNeighbor, perNeighbor*float64(benchNeighbors)/(1<<20),
		leaked, benchGoal)
}

// benchConverge waits until every neighbor is Established and the hub has
// every neighbor's prefix.
func benchConverge(b *testing.B, v *view, what string) {
	b.Helper()
	deadline := time.NewTimer(benchTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		v.drain()
		st := v.s.Stats()
		if st.Established == benchNeighbors && len(v.m) == benchNeighbors {
			return
		}
		select {
		case <-v.s.Changes():
		case <-tick.C:
		case <-deadline.C:
			b.Fatalf("%s: not within %v: %d Established, %d prefixes", what, benchTimeout, st.Established, len(v.m))
		}
	}
}

// startHarness runs the clients in a child process until the returned
// function is called.
func startHarness(b *testing.B, hub netip.AddrPort, n int) func() {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchHarness$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", harnessEnv, hub, n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			stdin.Close() // the harness stops when its stdin closes
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					b.Errorf("harness: %v", err)
				}
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-done
				b.Errorf("harness did not stop")
			}
		})
	}
}

// TestBenchHarness is the child process of BenchmarkHub: n clients of the
// hub, until stdin closes.
func TestBenchHarness(t *testing.T) {
	spec := os.Getenv(harnessEnv)
	if spec == "" {
		t.Skip("the client side of BenchmarkHub, run by it")
	}
	hubS, nS, _ := strings.Cut(spec, ",")
	hub, err := netip.ParseAddrPort(hubS)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(nS)
	if err != nil || n <= 0 || n > 60000 {
		t.Fatalf("bad client count %q", nS)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { benchClient(ctx, hub, benchSource(i), benchPrefix(i)) })
	}
	io.Copy(io.Discard, os.Stdin)
	cancel()
	wg.Wait()
}

// benchClient keeps one session to the hub up, reconnecting after
// 100–300 ms whenever it ends.
func benchClient(ctx context.Context, hub netip.AddrPort, src netip.Addr, prefix netip.Prefix) {
	for ctx.Err() == nil {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 2 * time.Second}
		if conn, err := d.DialContext(ctx, "tcp4", hub.String()); err == nil {
			benchSession(ctx, conn, src, prefix)
			conn.Close()
		}
		backoff := time.NewTimer(time.Duration(100+rand.IntN(200)) * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-backoff.C:
		}
		backoff.Stop()
	}
}

func benchSession(ctx context.Context, conn net.Conn, src netip.Addr, prefix netip.Prefix) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	caps := []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC), bgp.NewCapRouteRefresh(), bgp.NewCapFourOctetASNumber(65000),
	}
	const hold = 90
	open, err := bgp.NewBGPOpenMessage(65000, hold, src, []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if err != nil {
		panic(err)
	}
	if !benchWrite(conn, open) {
		return
	}
	r := bufio.NewReaderSize(conn, 4096)
	m, err := benchRead(r, true)
	if err != nil || m.Header.Type != bgp.BGP_MSG_OPEN {
		return
	}
	if !benchWrite(conn, bgp.NewBGPKeepAliveMessage()) {
		return
	}
	nlri, _ := bgp.NewIPAddrPrefix(prefix)
	nh, _ := bgp.NewPathAttributeNextHop(src)
	update := bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeAsPath(nil),
		nh,
		bgp.NewPathAttributeLocalPref(100),
	}, []bgp.PathNLRI{{NLRI: nlri}})
	if !benchWrite(conn, update) {
		return
	}
	// Keepalives at a third of the hold time, from another goroutine;
	// this one reads and discards until the session ends.
	kctx, kcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(hold / 3 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-kctx.Done():
				return
			case <-t.C:
				if !benchWrite(conn, bgp.NewBGPKeepAliveMessage()) {
					return
				}
			}
		}
	})
	for {
		if _, err := benchRead(r, false); err != nil {
			break
		}
	}
	kcancel()
	conn.Close()
	wg.Wait()
}

func benchWrite(conn net.Conn, m *bgp.BGPMessage) bool {
	b, err := m.Serialize()
	if err != nil {
		panic(err)
	}
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Write(b)
	return err == nil
}

// benchRead reads one message; it is parsed only when parse is set (the
// hub's OPEN), else skipped.
func benchRead(r *bufio.Reader, parse bool) (*bgp.BGPMessage, error) {
	hdr, err := r.Peek(bgp.BGP_HEADER_LENGTH)
	if err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[16:18]))
	if n < bgp.BGP_HEADER_LENGTH || n > bgp.BGP_MAX_EXTENDED_MESSAGE_LENGTH {
		return nil, fmt.Errorf("bad message length %d", n)
	}
	if !parse {
		_, err := r.Discard(n)
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return bgp.ParseBGPMessage(buf)
}
