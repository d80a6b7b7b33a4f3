package ipsec_test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/clock"
	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/ipsec"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/underlay"
)

// batchConn hands ReadBatch everything queued at once (like recvmmsg) and
// keeps what WriteBatch sends, in order.
type batchConn struct {
	chanConn
	mu2    sync.Mutex
	queued []rxd
}

func (c *batchConn) ReadBatch(ds []underlay.Datagram) (int, error) {
	c.mu2.Lock()
	defer c.mu2.Unlock()
	n := 0
	for n < len(ds) && len(c.queued) > 0 {
		x := c.queued[0]
		c.queued = c.queued[1:]
		ds[n].Len = copy(ds[n].Buf[ds[n].Off:], x.pkt)
		ds[n].Peer = x.peer
		n++
	}
	if n == 0 {
		return 0, errEmpty
	}
	return n, nil
}

// With crypto workers a batch is sealed on several cores and still leaves,
// and is delivered, in its order; every packet opens intact (one SA, one
// flow). Run with -race.
func TestWorkersKeepOrder(t *testing.T) {
	for _, tr := range []esp.Transform{esp.GCM128, esp.CBC128SHA1} {
		t.Run(tr.String(), func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1e9, 0))
			out := &chanConn{t: nbma.TransportGRE}
			a := ipsec.New(ipsec.Config{Local: addrA, Raw: out, Now: clk.Now, Workers: 4})
			defer a.Close()
			in := &batchConn{chanConn: chanConn{t: nbma.TransportGRE}}
			b := ipsec.New(ipsec.Config{Local: addrB, Raw: in, Now: clk.Now, Workers: 4})
			defer b.Close()
			ca, cb := childPair(tr, addrA, addrB, 0x1001, 0x2002, false, false)
			a.Install(ca, ipsec.Now)
			b.Install(cb, ipsec.Now)
			const n = 200
			ds := make([]underlay.Datagram, n)
			for i := range ds {
				ds[i] = greDatagram(ca.Key(), fmt.Sprintf("packet %03d", i))
			}
			send(t, a.Face(nbma.TransportGRE), ds...)
			if len(out.sent) != n {
				t.Fatalf("sent %d of %d", len(out.sent), n)
			}
			for _, p := range out.sent {
				in.queued = append(in.queued, rxd{netip.AddrPortFrom(addrA, 0), p})
			}
			rd := make([]underlay.Datagram, n)
			for i := range rd {
				rd[i].Buf = make([]byte, 2048)
				rd[i].Off = 56
			}
			k, err := b.Face(nbma.TransportGRE).ReadBatch(rd)
			if err != nil || k != n {
				t.Fatalf("ReadBatch = %d, %v; want %d", k, err, n)
			}
			for i, d := range rd[:k] {
				_, inner, err := gre.Decode(d.Payload())
				if err != nil || string(inner) != fmt.Sprintf("packet %03d", i) {
					t.Fatalf("datagram %d: %q, %v", i, inner, err)
				}
			}
		})
	}
}

// BenchmarkWorkers: one flow (one SA), batches of 64 1,400-byte datagrams
// sealed (and opened) by the caller alone or spread over the cores.
// `go test ./ipsec -run '^$' -bench Workers -cpu 2`.
func BenchmarkWorkers(b *testing.B) {
	for _, workers := range []int{1, 2} {
		for _, dir := range []string{"seal", "open"} {
			b.Run(fmt.Sprintf("%s/workers=%d", dir, workers), func(b *testing.B) {
				clk := clock.NewFake(time.Unix(1e9, 0))
				out := &chanConn{t: nbma.TransportGRE, noKeep: dir == "seal"}
				a := ipsec.New(ipsec.Config{Local: addrA, Raw: out, Now: clk.Now, Workers: workers})
				defer a.Close()
				in := &batchConn{chanConn: chanConn{t: nbma.TransportGRE}}
				rx := ipsec.New(ipsec.Config{Local: addrB, Raw: in, Now: clk.Now, Workers: workers})
				defer rx.Close()
				c, cb := childPair(esp.GCM128, addrA, addrB, 0x1001, 0x2002, false, false)
				cb.In.ReplayWindow = 1 << 20
				a.Install(c, ipsec.Now)
				rx.Install(cb, ipsec.Now)
				const batch = 64
				ds := make([]underlay.Datagram, batch)
				for i := range ds {
					ds[i] = greDatagram(c.Key(), string(make([]byte, 1400)))
				}
				offs := make([]int, batch)
				lens := make([]int, batch)
				for i := range ds {
					offs[i], lens[i] = ds[i].Off, ds[i].Len
				}
				f := a.Face(nbma.TransportGRE)
				b.SetBytes(int64(batch * 1408))
				if dir == "seal" {
					for b.Loop() {
						for i := range ds {
							ds[i].Off, ds[i].Len = offs[i], lens[i]
						}
						f.WriteBatch(ds)
					}
					return
				}
				// Open: seal enough batches first, then time the reads.
				rd := make([]underlay.Datagram, batch)
				for i := range rd {
					rd[i].Buf = make([]byte, 2048)
				}
				rf := rx.Face(nbma.TransportGRE)
				from := netip.AddrPortFrom(addrA, 0)
				for b.Loop() {
					b.StopTimer()
					out.sent = out.sent[:0]
					for i := range ds {
						ds[i].Off, ds[i].Len = offs[i], lens[i]
					}
					f.WriteBatch(ds)
					for _, p := range out.sent {
						in.queued = append(in.queued, rxd{from, p})
					}
					for i := range rd {
						rd[i].Off = 56
					}
					b.StartTimer()
					if n, err := rf.ReadBatch(rd); err != nil || n != batch {
						b.Fatalf("ReadBatch = %d, %v", n, err)
					}
				}
			})
		}
	}
}
