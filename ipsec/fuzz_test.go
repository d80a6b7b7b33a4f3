package ipsec_test

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/clock"
	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/ipsec"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/underlay"
)

var errEmpty = errors.New("nothing queued")

// pollConn is a chanConn whose ReadBatch does not wait: with nothing
// queued it fails with errEmpty, so a fuzz step can see that nothing came
// through.
type pollConn struct{ chanConn }

func (c *pollConn) ReadBatch(ds []underlay.Datagram) (int, error) {
	select {
	case x := <-c.in:
		ds[0].Len = copy(ds[0].Buf[ds[0].Off:], x.pkt)
		ds[0].Peer = x.peer
		return 1, nil
	default:
		return 0, errEmpty
	}
}

// FuzzInbound drives a receiving Layer with sequences of genuine, replayed,
// misdirected, corrupted and made-up ESP datagrams, interleaved with rekeys
// (a new SA installed, the old one retired and, later, expired). Invariants:
// only what the peer sealed is delivered, each at most once, attributed to
// the peer; the counters add up; nothing panics.
func FuzzInbound(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 2, 1, 0, 2, 3, 3, 5, 4, 0, 0, 5, 6, 0, 7})
	f.Add([]byte{0, 1, 0, 1, 0, 1, 4, 2, 2, 0, 5, 1, 6, 7, 0, 3})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 512 {
			return
		}
		clk := clock.NewFake(time.Unix(1e9, 0))
		out := &chanConn{t: nbma.TransportGRE}
		a := ipsec.New(ipsec.Config{Local: addrA, Raw: out, Now: clk.Now})
		in := &pollConn{chanConn{t: nbma.TransportGRE, in: make(chan rxd, 4)}}
		b := ipsec.New(ipsec.Config{Local: addrB, Raw: in, Now: clk.Now})
		spiA, spiB := uint32(0x1000), uint32(0x2000)
		ca, cb := childPair(esp.GCM128, addrA, addrB, spiA, spiB, false, false)
		if a.Install(ca, ipsec.Now) != nil || b.Install(cb, ipsec.Now) != nil {
			t.Fatal("install")
		}
		peerA := netip.AddrPortFrom(addrA, 0)
		var wire [][]byte // what A sealed, in order
		sealed := map[string]bool{}
		delivered := map[string]bool{}
		ds := make([]underlay.Datagram, 4)
		for i := range ds {
			ds[i].Buf = make([]byte, 4096)
		}
		deliver := func(from netip.AddrPort, pkt []byte) {
			in.in <- rxd{from, append([]byte(nil), pkt...)}
			for i := range ds {
				ds[i].Off = 56
			}
			n, err := b.Face(nbma.TransportGRE).ReadBatch(ds)
			if err != nil && !errors.Is(err, errEmpty) {
				t.Fatal(err)
			}
			for _, d := range ds[:n] {
				_, inner, err := gre.Decode(d.Payload())
				body := string(inner)
				switch {
				case err != nil:
					t.Fatalf("delivered a non-GRE datagram: %v", err)
				case !sealed[body]:
					t.Fatalf("delivered %q, which A never sealed", body)
				case delivered[body]:
					t.Fatalf("delivered %q twice", body)
				case d.Peer != peerA:
					t.Fatalf("delivered from %v, want %v", d.Peer, peerA)
				}
				delivered[body] = true
			}
		}
		pick := func(k int) []byte {
			if len(wire) == 0 {
				return nil
			}
			return wire[k%len(wire)]
		}
		for i := 0; i < len(ops); i++ {
			arg := 0
			if i+1 < len(ops) {
				arg = int(ops[i+1])
			}
			switch ops[i] % 8 {
			case 0: // A seals one more and it arrives
				body := fmt.Sprint("pkt-", len(wire))
				sealed[body] = true
				out.sent = out.sent[:0]
				if n, _ := a.Face(nbma.TransportGRE).WriteBatch([]underlay.Datagram{greDatagram(ca.Key(), body)}); n != 1 || len(out.sent) != 1 {
					t.Fatalf("A's WriteBatch sent %d", len(out.sent))
				}
				wire = append(wire, out.sent[0])
				deliver(peerA, out.sent[0])
			case 1: // an old one again (replay), or a late one
				if p := pick(arg); p != nil {
					deliver(peerA, p)
				}
				i++
			case 2: // a genuine one from elsewhere
				if p := pick(arg); p != nil {
					deliver(netip.AddrPortFrom(addrC, 0), p)
				}
				i++
			case 3: // corrupted
				if p := pick(arg); p != nil {
					q := append([]byte(nil), p...)
					q[arg%len(q)] ^= byte(1 + arg>>3)
					deliver(peerA, q)
				}
				i++
			case 4: // made up from the input
				end := min(len(ops), i+1+arg%64)
				deliver(peerA, ops[i+1:end])
				i = end - 1
			case 5: // rekey: new SA pair, A switches, B retires the old
				spiA, spiB = spiA+1, spiB+1
				na, nb := childPair(esp.GCM128, addrA, addrB, spiA, spiB, false, false)
				if b.Install(nb, ipsec.Now) != nil || a.Install(na, ipsec.Now) != nil {
					t.Fatal("rekey install")
				}
				a.Remove(ca.In.SPI)
				b.Remove(cb.In.SPI)
				ca, cb = na, nb
			case 6: // time passes: lingering SAs expire
				clk.Advance(ipsec.DefaultLinger)
				a.Expire(clk.Now())
				b.Expire(clk.Now())
			case 7: // a datagram of the wrong encapsulation is ignored by the raw face: nothing to do
			}
		}
		st := b.Stats()
		if int(st.Opened) != len(delivered) {
			t.Fatalf("Opened %d, delivered %d", st.Opened, len(delivered))
		}
	})
}
