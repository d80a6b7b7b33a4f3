package engine

// Handshakes per second at a responder: IKE_SA_INIT + IKE_AUTH (first Child
// SA included), with initiators driven in process, one fresh initiator
// engine per handshake. With -cpu 2 the initiators of one goroutine run
// while the responder serves another (the responder is one engine, one
// mutex, as in the node). The initiators' work is inside the timing too:
// the figure is handshakes per second of the whole pair, so the
// responder's own ceiling is higher.
//
//	go test ./ikev2/engine -run '^$' -bench Handshake -cpu 1,2

import (
	"net/netip"
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

// benchRouter is the responder's Sender: answers go to the inbox of the
// goroutine whose initiator has the address (the responder sends from
// within HandlePacket, on that goroutine).
type benchRouter struct{ m sync.Map }

func (r *benchRouter) SendIKE(to netip.AddrPort, natt bool, pkt []byte) {
	if v, ok := r.m.Load(to.Addr()); ok {
		ib := v.(*benchInbox)
		ib.pkts = append(ib.pkts, benchDgram{natt, append([]byte(nil), pkt...)})
	}
}

func (ib *benchInbox) SendIKE(_ netip.AddrPort, natt bool, pkt []byte) {
	ib.pkts = append(ib.pkts, benchDgram{natt, append([]byte(nil), pkt...)})
}

func BenchmarkHandshake(b *testing.B) {
	for _, s := range []struct {
		name string
		ike  []IKEProposal
	}{
		{"cbc256-sha512-ecp256", cbcSuite(ikecrypto.GroupECP256)},
		{"gcm256-curve25519", gcmSuite(ikecrypto.GroupCurve25519)},
	} {
		b.Run(s.name, func(b *testing.B) {
			router := &benchRouter{}
			var ups atomic.Int64
			r, err := New(Config{Local: ad(hubAddr), PSK: []byte("cloud secret"), IKEProposals: s.ike,
				MaxIKESAs: 1 << 20, MaxHalfOpen: 1 << 20, CookieThreshold: 1 << 20,
				InitRate: Rate{Packets: 1 << 30, Interval: time.Second},
				OnEvent: func(ev Event) {
					if ev.Type == ChildSAUp {
						ups.Add(1)
					}
				}}, router, quiet())
			if err != nil {
				b.Fatal(err)
			}
			var gid atomic.Int32
			var inResponder atomic.Int64 // nanoseconds spent in the responder's HandlePacket
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				g := gid.Add(1)
				addr := netip.AddrFrom4([4]byte{10, 1, byte(g >> 8), byte(g)})
				inbox := &benchInbox{}
				router.m.Store(addr, inbox)
				from := netip.AddrPortFrom(addr, ikev2.Port)
				now := t0
				for pb.Next() {
					out := &benchInbox{}
					up := false
					i, err := New(Config{Local: addr, PSK: []byte("cloud secret"), IKEProposals: s.ike,
						OnEvent: func(ev Event) { up = up || ev.Type == ChildSAUp }}, out, quiet())
					if err != nil {
						b.Error(err)
						return
					}
					if err := i.Initiate(now, hubEP); err != nil {
						b.Error(err)
						return
					}
					for round := 0; round < 8 && len(out.pkts)+len(inbox.pkts) > 0; round++ {
						t := time.Now()
						for _, d := range out.pkts {
							r.HandlePacket(now, from, d.pkt)
						}
						inResponder.Add(int64(time.Since(t)))
						out.pkts = out.pkts[:0]
						for _, d := range inbox.pkts {
							i.HandlePacket(now, hubEP, d.pkt)
						}
						inbox.pkts = inbox.pkts[:0]
					}
					if !up {
						b.Error("handshake did not complete")
						return
					}
				}
			})
			el := time.Since(start)
			b.ReportMetric(float64(b.N)/el.Seconds(), "handshakes/s")
			// The responder's side alone: handshakes per second of time
			// inside its HandlePacket (lock waits included).
			b.ReportMetric(float64(b.N)/time.Duration(inResponder.Load()).Seconds(), "responder-handshakes/s")
			if got := ups.Load(); got != int64(b.N) {
				b.Fatalf("%d Child SAs up at the responder for %d handshakes", got, b.N)
			}
		})
	}
}
