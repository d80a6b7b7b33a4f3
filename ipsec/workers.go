package ipsec

import (
	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/underlay"
)

// Crypto workers: one batch's sealing or opening spread over the cores,
// without reordering anything.
//
// A batch (what one TUN read or one recvmmsg returned) is cut into chunks
// of at least minChunk datagrams; the calling goroutine hands all but one
// chunk to the pool's workers (without waiting: a busy pool means the
// caller does the work itself), works on the last chunk, and waits for the
// others. The datagrams then leave (or go to the data plane) in the order
// they came: a flow is never reordered, as with wireguard-go's
// encryption queues. Each worker has its own esp.Scratch, so one SA (one
// flow) is sealed on all cores at once (esp.SA.SealWith); AES-CBC + HMAC
// SAs serialise on their own mutex inside esp, whoever calls.
//
// With one core (Workers 1) there is no pool and nothing changes.

// minChunk is the fewest datagrams worth handing to another core: below
// it the hand-off costs more than the crypto it moves.
const minChunk = 8

// op is one datagram's crypto: seal (out set) or open (pkt set).
type op struct {
	sa *childSA
	// seal: the GRE datagram at buf[off:off+n] (tunnel header already in
	// place), next header nh; the result in out, ok.
	buf    []byte
	off, n int
	nh     byte
	out    underlay.Datagram
	// open: the ESP packet; the result offsets and next header.
	pkt     []byte
	ioff, m int
	err     error
	ok      bool
}

func (o *op) run(s *esp.Scratch) {
	if o.pkt != nil {
		o.ioff, o.m, o.nh, o.err = o.sa.in.OpenWith(s, o.pkt)
		o.ok = o.err == nil
		return
	}
	start, length, err := o.sa.out.SealWith(s, o.buf, o.off, o.n, o.nh)
	o.err = err
	if err != nil {
		return
	}
	o.out = underlay.Datagram{Buf: o.buf, Off: start, Len: length, Peer: o.sa.sendTo()}
	o.ok = true
}

// chunk is a slice of a batch's ops for one worker.
type chunk struct {
	ops  []op
	done chan struct{}
}

type pool struct {
	jobs chan *chunk
	stop chan struct{}
}

func newPool(workers int) *pool {
	p := &pool{jobs: make(chan *chunk, workers), stop: make(chan struct{})}
	for range workers {
		go p.worker()
	}
	return p
}

func (p *pool) worker() {
	var s esp.Scratch
	for {
		select {
		case c := <-p.jobs:
			for i := range c.ops {
				c.ops[i].run(&s)
			}
			c.done <- struct{}{}
		case <-p.stop:
			return
		}
	}
}

// batchCrypto is one caller's scratch for runAll: its chunks and their
// completion channels, allocated once.
type batchCrypto struct {
	chunks []chunk
	s      esp.Scratch
}

// runAll runs every op, spread over the pool when the batch is big enough.
func (l *Layer) runAll(b *batchCrypto, ops []op) {
	p := l.pool
	k := 1
	if p != nil {
		k = min(len(ops)/minChunk, cap(p.jobs)+1)
	}
	if k <= 1 {
		for i := range ops {
			ops[i].run(&b.s)
		}
		return
	}
	for len(b.chunks) < k {
		b.chunks = append(b.chunks, chunk{done: make(chan struct{}, 1)})
	}
	size := (len(ops) + k - 1) / k
	for i := 0; i < k-1; i++ {
		c := &b.chunks[i]
		c.ops = ops[i*size : min((i+1)*size, len(ops))]
		select {
		case p.jobs <- c:
		default: // the workers are busy with someone else's batch
			for j := range c.ops {
				c.ops[j].run(&b.s)
			}
			c.ops = nil
		}
	}
	last := ops[(k-1)*size:]
	for i := range last {
		last[i].run(&b.s)
	}
	for i := 0; i < k-1; i++ {
		if b.chunks[i].ops != nil {
			<-b.chunks[i].done
			b.chunks[i].ops = nil
		}
	}
}
