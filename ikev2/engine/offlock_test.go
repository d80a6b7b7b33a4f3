package engine

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/ikev2"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// The responder's D-H, SKEYSEED and AUTH computations run without the
// engine's lock (offLock): these tests drive HandlePacket concurrently and
// interleave other calls in the window between compute and commit.

// Many spokes' handshakes at once, from several goroutines: every one
// completes on both sides, with Child SA keys that work together, and the
// responder's tables hold exactly one IKE SA and one Child SA per spoke.
func TestOffLockConcurrentHandshakes(t *testing.T) {
	const spokes, workers = 48, 4
	ike := cbcSuite(ikecrypto.GroupECP256)
	hub := benchHub{}
	list := make([]*benchSpoke, spokes)
	for j := range list {
		a := netip.AddrFrom4([4]byte{10, 3, 0, byte(j + 1)})
		list[j] = &benchSpoke{addr: a, from: netip.AddrPortFrom(a, ikev2.Port)}
		hub[a] = list[j]
	}
	var rUp []*ChildSA // appended by OnEvent, under the responder's lock
	r, err := New(Config{Local: ad(hubAddr), PSK: []byte("cloud secret"), IKEProposals: ike,
		InitRate: Rate{Packets: 1 << 20, Interval: time.Second}, CookieThreshold: 1 << 20,
		OnEvent: func(ev Event) {
			if ev.Type == ChildSAUp {
				rUp = append(rUp, ev.Child)
			}
		}}, hub, quiet())
	if err != nil {
		t.Fatal(err)
	}
	iUp := make([]*ChildSA, spokes)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := w; j < spokes; j += workers {
				sp := list[j]
				i, err := New(Config{Local: sp.addr, PSK: []byte("cloud secret"), IKEProposals: ike,
					OnEvent: func(ev Event) {
						if ev.Type == ChildSAUp {
							iUp[j] = ev.Child
						}
					}}, &sp.out, quiet())
				if err != nil {
					t.Error(err)
					return
				}
				if err := i.Initiate(t0, hubEP); err != nil {
					t.Error(err)
					return
				}
				for round := 0; round < 4; round++ {
					for _, d := range sp.out.pkts {
						r.HandlePacket(t0, sp.from, d.pkt)
					}
					sp.out.pkts = sp.out.pkts[:0]
					sp.mu.Lock()
					in := sp.in.pkts
					sp.in.pkts = nil
					sp.mu.Unlock()
					for _, d := range in {
						i.HandlePacket(t0, hubEP, d.pkt)
					}
				}
			}
		})
	}
	wg.Wait()
	st := r.Stats()
	if st.IKESAs != spokes || st.ChildSAs != spokes || st.HalfOpen != 0 || st.Established != spokes || len(rUp) != spokes {
		t.Fatalf("responder: %d IKE SAs, %d Child SAs, %d half open, %d established, %d ChildSAUp; want %d each and none half open",
			st.IKESAs, st.ChildSAs, st.HalfOpen, st.Established, len(rUp), spokes)
	}
	byIn := map[uint32]*ChildSA{}
	for _, c := range rUp {
		if byIn[c.Inbound.SPI] != nil {
			t.Fatalf("inbound SPI %08x given twice", c.Inbound.SPI)
		}
		byIn[c.Inbound.SPI] = c
	}
	for j, c := range iUp {
		if c == nil {
			t.Fatalf("spoke %d: no Child SA up", j)
		}
		rc := byIn[c.Outbound.SPI]
		if rc == nil || rc.Remote != list[j].addr {
			t.Fatalf("spoke %d: the responder has no Child SA with it for SPI %08x", j, c.Outbound.SPI)
		}
		espRoundTrip(t, c, rc)
		espRoundTrip(t, rc, c)
	}
}

// nextFrame takes the oldest datagram off the test network's queue.
func nextFrame(t *testing.T, n *testNet) frame {
	t.Helper()
	if len(n.queue) == 0 {
		t.Fatal("no datagram queued")
	}
	f := n.queue[0]
	n.queue = n.queue[1:]
	return f
}

// A half-open SA deleted while its keys are computed: the answer is never
// sent, nothing is left of it, and the initiator's retransmission makes a
// fresh one that comes up.
func TestOffLockSARemovedWhileComputing(t *testing.T) {
	n := newNet(t)
	r := n.add(hubAddr, Config{})
	i := n.add(spokeAddr, Config{})
	spokeEP := ap(spokeAddr + ":500")
	var delErr error
	deleted := false
	r.eng.afterCompute = func() {
		if !deleted {
			deleted = true
			delErr = r.eng.Delete(n.now, spokeEP, "operator")
		}
	}
	if err := i.eng.Initiate(n.now, hubEP); err != nil {
		t.Fatal(err)
	}
	n.deliverFrame(nextFrame(t, n))
	if !deleted || delErr != nil {
		t.Fatalf("Delete of the half-open SA while its keys were computed: ran %v, %v", deleted, delErr)
	}
	if got := r.sentOf(ikev2.ExchangeIKESAInit, true); len(got) != 0 {
		t.Fatalf("%d IKE_SA_INIT answers for an SA deleted before they were made", len(got))
	}
	if st := r.eng.Stats(); st.IKESAs != 0 || st.HalfOpen != 0 || len(r.eng.SAs()) != 0 {
		t.Fatalf("left behind: %d IKE SAs, %d half open, %+v", st.IKESAs, st.HalfOpen, r.eng.SAs())
	}
	n.runFor(5 * time.Second)
	checkPair(t, i, r)
}

// Retransmissions that arrive while the answer is computed are dropped
// (as unexpected: the answer is on its way), one answer goes out; a later
// retransmission of IKE_AUTH gets the same answer again.
func TestOffLockRetransmissionWhileComputing(t *testing.T) {
	n := newNet(t)
	r := n.add(hubAddr, Config{})
	i := n.add(spokeAddr, Config{})
	var again *frame
	r.eng.afterCompute = func() {
		if again != nil {
			f := again
			again = nil
			r.eng.HandlePacket(n.now, f.from, f.pkt)
		}
	}
	if err := i.eng.Initiate(n.now, hubEP); err != nil {
		t.Fatal(err)
	}
	for k, ex := range []ikev2.ExchangeType{ikev2.ExchangeIKESAInit, ikev2.ExchangeIKEAuth} {
		req := nextFrame(t, n)
		if h := req.header(); h.Exchange != ex || h.IsResponse() {
			t.Fatalf("queued %v, want the %v request", h.Exchange, ex)
		}
		again = &req
		n.deliverFrame(req)
		if again != nil {
			t.Fatalf("%v: nothing was computed without the lock", ex)
		}
		if d := r.eng.Stats().Dropped[DropUnexpected]; d != uint64(k+1) {
			t.Fatalf("%v: %d datagrams dropped as unexpected, want %d (the copy)", ex, d, k+1)
		}
		if got := r.sentOf(ex, true); len(got) != 1 {
			t.Fatalf("%v: %d answers, want 1", ex, len(got))
		}
		if ex == ikev2.ExchangeIKEAuth {
			r.eng.HandlePacket(n.now, req.from, req.pkt)
			got := r.sentOf(ex, true)
			if st := r.eng.Stats(); st.Reanswered != 1 || len(got) != 2 || string(got[0].pkt) != string(got[1].pkt) {
				t.Fatalf("late IKE_AUTH copy: reanswered %d, %d answers (want the same one twice)", st.Reanswered, len(got))
			}
			n.queue = n.queue[:len(n.queue)-1] // the second copy of the answer
		}
		n.deliverFrame(nextFrame(t, n))
	}
	n.runFor(time.Second)
	checkPair(t, i, r)
}

// RFC 6989: a KE payload that is no point on the curve is refused after
// the lock was released as before: counted, unanswered, nothing kept.
func TestOffLockBadKE(t *testing.T) {
	n := newNet(t)
	cfg := Config{IKEProposals: cbcSuite(ikecrypto.GroupECP256)}
	r := n.add(hubAddr, cfg)
	i := n.add(spokeAddr, cfg)
	if err := i.eng.Initiate(n.now, hubEP); err != nil {
		t.Fatal(err)
	}
	f := nextFrame(t, n)
	var m ikev2.Message
	if err := m.Decode(f.pkt); err != nil {
		t.Fatal(err)
	}
	ke, err := m.Find(ikev2.PayloadKE).KE()
	if err != nil || len(ke.Data) != 64 {
		t.Fatalf("KE %v, %d octets", err, len(ke.Data))
	}
	ke.Data[63] ^= 1 // y no longer matches x: off the curve
	n.deliverFrame(f)
	st := r.eng.Stats()
	if st.Dropped[DropBadKE] != 1 || st.IKESAs != 0 || st.HalfOpen != 0 || len(r.sent) != 0 {
		t.Fatalf("bad KE: dropped %d as bad_ke, %d IKE SAs, %d half open, %d sent", st.Dropped[DropBadKE], st.IKESAs,
			st.HalfOpen, len(r.sent))
	}
}
