package engine

// Handshakes per second at a hub: full IKE_SA_INIT + IKE_AUTH exchanges
// (first Child SA included) answered by one responder engine (one engine,
// one mutex, as in the node), driven in process.
//
// BenchmarkHandshake is the hub's side alone: only the responder's
// HandlePacket calls are timed. Handshakes run in batches of
// benchBatch spokes; for each batch, with the timer stopped, fresh
// initiator engines make their IKE_SA_INIT requests, then (timed) every
// core the benchmark runs with (-cpu) hands the requests to the responder
// in parallel; untimed again, the initiators turn the answers into
// IKE_AUTH requests; timed, the responder handles those in parallel;
// untimed, the initiators check the answers (their ChildSAUp: every
// handshake must complete on both sides). So ns/op is the hub's wall
// time per handshake with that many cores, handshakes/s its inverse:
// what a hub with -cpu cores sustains when the spokes' work is done
// elsewhere, as it is in a network. Spoke j of a batch always has the
// same address, so from the second batch on its handshake replaces the
// previous one's SA (INITIAL_CONTACT): the responder holds about
// benchBatch SAs, a hub of that many spokes re-keying from scratch.
//
// BenchmarkHandshakePair times both sides together: each goroutine runs
// initiator and responder of its handshakes in turn (the older figure,
// the initiators' cost included: about half of it).
//
//	go test ./ikev2/engine -run '^$' -bench Handshake -cpu 1,2 -benchmem

import (
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/ikev2"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

type benchDgram struct {
	natt bool
	pkt  []byte
}

type benchInbox struct{ pkts []benchDgram }

func (ib *benchInbox) SendIKE(_ netip.AddrPort, natt bool, pkt []byte) {
	ib.pkts = append(ib.pkts, benchDgram{natt, append([]byte(nil), pkt...)})
}

var benchSuites = []struct {
	name string
	ike  []IKEProposal
}{
	{"cbc256-sha512-ecp256", cbcSuite(ikecrypto.GroupECP256)},
	{"gcm256-curve25519", gcmSuite(ikecrypto.GroupCurve25519)},
}

// benchBatch is how many handshakes run through each phase at once.
const benchBatch = 256

// benchSpoke is one initiator of a batch and what the responder sent it.
type benchSpoke struct {
	addr netip.Addr
	from netip.AddrPort
	eng  *Engine
	out  benchInbox // the initiator's datagrams, to the responder
	mu   sync.Mutex // the responder's sends to this spoke
	in   benchInbox
	up   bool // ChildSAUp at the initiator
}

// benchHub is the responder's Sender: answers go to the spoke with the
// address (read-only map during the timed phases).
type benchHub map[netip.Addr]*benchSpoke

func (h benchHub) SendIKE(to netip.AddrPort, natt bool, pkt []byte) {
	if s := h[to.Addr()]; s != nil {
		s.mu.Lock()
		s.in.SendIKE(to, natt, pkt)
		s.mu.Unlock()
	}
}

func newBenchResponder(b *testing.B, s Sender, ike []IKEProposal, ups *atomic.Int64) *Engine {
	r, err := New(Config{Local: ad(hubAddr), PSK: []byte("cloud secret"), IKEProposals: ike,
		MaxIKESAs: 1 << 20, MaxHalfOpen: 1 << 20, CookieThreshold: 1 << 20,
		InitRate: Rate{Packets: 1 << 30, Interval: time.Second},
		OnEvent: func(ev Event) {
			if ev.Type == ChildSAUp {
				ups.Add(1)
			}
		}}, s, quiet())
	if err != nil {
		b.Fatal(err)
	}
	return r
}

func BenchmarkHandshake(b *testing.B) {
	for _, s := range benchSuites {
		b.Run(s.name, func(b *testing.B) {
			spokes := make([]*benchSpoke, benchBatch)
			hub := benchHub{}
			for j := range spokes {
				a := netip.AddrFrom4([4]byte{10, 1, byte(j >> 8), byte(j)})
				spokes[j] = &benchSpoke{addr: a, from: netip.AddrPortFrom(a, ikev2.Port)}
				hub[a] = spokes[j]
			}
			var ups atomic.Int64
			r := newBenchResponder(b, hub, s.ike, &ups)
			workers := runtime.GOMAXPROCS(0)
			// serve hands each spoke's datagrams to the responder, spread
			// over the workers.
			serve := func(batch []*benchSpoke) {
				var next atomic.Int64
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for {
							j := int(next.Add(1)) - 1
							if j >= len(batch) {
								return
							}
							sp := batch[j]
							for _, d := range sp.out.pkts {
								r.HandlePacket(t0, sp.from, d.pkt)
							}
							sp.out.pkts = sp.out.pkts[:0]
						}
					})
				}
				wg.Wait()
			}
			// answer lets the initiators handle what the responder sent.
			answer := func(batch []*benchSpoke) {
				for _, sp := range batch {
					for _, d := range sp.in.pkts {
						sp.eng.HandlePacket(t0, hubEP, d.pkt)
					}
					sp.in.pkts = sp.in.pkts[:0]
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.StopTimer()
			for done := 0; done < b.N; {
				batch := spokes[:min(benchBatch, b.N-done)]
				for _, sp := range batch {
					sp.up = false
					sp.eng, sp.out.pkts = nil, sp.out.pkts[:0]
					e, err := New(Config{Local: sp.addr, PSK: []byte("cloud secret"), IKEProposals: s.ike,
						OnEvent: func(ev Event) { sp.up = sp.up || ev.Type == ChildSAUp }}, &sp.out, quiet())
					if err != nil {
						b.Fatal(err)
					}
					sp.eng = e
					if err := e.Initiate(t0, hubEP); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				serve(batch) // IKE_SA_INIT
				b.StopTimer()
				answer(batch)
				b.StartTimer()
				serve(batch) // IKE_AUTH
				b.StopTimer()
				answer(batch)
				for j, sp := range batch {
					if !sp.up || len(sp.out.pkts) != 0 {
						b.Fatalf("handshake %d: not up at the initiator (%d datagrams left)", done+j, len(sp.out.pkts))
					}
				}
				done += len(batch)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
			if got := ups.Load(); got != int64(b.N) {
				b.Fatalf("%d Child SAs up at the responder for %d handshakes", got, b.N)
			}
			if st := r.Stats(); st.IKESAs > benchBatch || st.HalfOpen != 0 {
				b.Fatalf("responder holds %d IKE SAs (%d half open), want at most %d established", st.IKESAs,
					st.HalfOpen, benchBatch)
			}
		})
	}
}

func BenchmarkHandshakePair(b *testing.B) {
	for _, s := range benchSuites {
		b.Run(s.name, func(b *testing.B) {
			hub := benchHub{}
			var hubMu sync.Mutex // the map grows as goroutines start
			var ups atomic.Int64
			var gid atomic.Int32
			r := newBenchResponder(b, benchHubLocked{&hubMu, hub}, s.ike, &ups)
			start := time.Now()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				g := gid.Add(1)
				sp := &benchSpoke{addr: netip.AddrFrom4([4]byte{10, 2, byte(g >> 8), byte(g)})}
				sp.from = netip.AddrPortFrom(sp.addr, ikev2.Port)
				hubMu.Lock()
				hub[sp.addr] = sp
				hubMu.Unlock()
				for pb.Next() {
					sp.up = false
					i, err := New(Config{Local: sp.addr, PSK: []byte("cloud secret"), IKEProposals: s.ike,
						OnEvent: func(ev Event) { sp.up = sp.up || ev.Type == ChildSAUp }}, &sp.out, quiet())
					if err != nil {
						b.Error(err)
						return
					}
					if err := i.Initiate(t0, hubEP); err != nil {
						b.Error(err)
						return
					}
					for round := 0; round < 8 && len(sp.out.pkts)+len(sp.in.pkts) > 0; round++ {
						for _, d := range sp.out.pkts {
							r.HandlePacket(t0, sp.from, d.pkt)
						}
						sp.out.pkts = sp.out.pkts[:0]
						for _, d := range sp.in.pkts {
							i.HandlePacket(t0, hubEP, d.pkt)
						}
						sp.in.pkts = sp.in.pkts[:0]
					}
					if !sp.up {
						b.Error("handshake did not complete")
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
			if got := ups.Load(); got != int64(b.N) {
				b.Fatalf("%d Child SAs up at the responder for %d handshakes", got, b.N)
			}
		})
	}
}

// benchHubLocked is benchHub for a map that grows while the responder
// sends.
type benchHubLocked struct {
	mu *sync.Mutex
	h  benchHub
}

func (h benchHubLocked) SendIKE(to netip.AddrPort, natt bool, pkt []byte) {
	h.mu.Lock()
	s := h.h[to.Addr()]
	h.mu.Unlock()
	if s != nil {
		s.mu.Lock()
		s.in.SendIKE(to, natt, pkt)
		s.mu.Unlock()
	}
}
