package ikev2_test

import (
	"testing"

	"github.com/dmvpn/dmvpn/ikev2"
)

// benchSAInit is what an engine does with a received IKE_SA_INIT: decode
// into a reused Message, then read every payload's typed value into reused
// scratch.
type benchSAInit struct {
	m  ikev2.Message
	sa ikev2.SA
}

func (s *benchSAInit) run(b []byte) error {
	if err := s.m.Decode(b); err != nil {
		return err
	}
	for i := range s.m.Payloads {
		p := &s.m.Payloads[i]
		var err error
		switch p.Type {
		case ikev2.PayloadSA:
			err = p.SA(&s.sa)
		case ikev2.PayloadKE:
			_, err = p.KE()
		case ikev2.PayloadNonce:
			_, err = p.Nonce()
		case ikev2.PayloadNotify:
			_, err = p.Notify()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// benchEncoder builds katSAInit from values prepared once, into a reused
// buffer: what an engine does per message.
type benchEncoder struct {
	h          ikev2.Header
	sa         *ikev2.SA
	ke         ikev2.KE
	nonce      []byte
	natS, natD ikev2.Notify
	buf        []byte
}

func newBenchEncoder() *benchEncoder {
	return &benchEncoder{
		h:     katHeader(),
		sa:    katSA(),
		ke:    ikev2.KE{Group: ikev2.DHECP256, Data: katSeq(0, 64)},
		nonce: katSeq(0xa0, 32),
		natS:  ikev2.Notify{Type: ikev2.NotifyNATDetectionSourceIP, Data: katRepeat(0x11, 20)},
		natD:  ikev2.Notify{Type: ikev2.NotifyNATDetectionDestinationIP, Data: katRepeat(0x22, 20)},
		buf:   make([]byte, 0, 2048),
	}
}

func (e *benchEncoder) run() ([]byte, error) {
	b := ikev2.NewMessage(e.buf[:0], &e.h)
	b.SA(e.sa)
	b.KE(&e.ke)
	b.Nonce(e.nonce)
	b.Notify(&e.natS)
	b.Notify(&e.natD)
	return b.Finish()
}

func BenchmarkDecodeIKESAInit(b *testing.B) {
	wire := katBytes(b, katSAInit)
	var m ikev2.Message
	b.ReportAllocs()
	b.SetBytes(int64(len(wire)))
	for b.Loop() {
		if err := m.Decode(wire); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeIKESAInitTyped(b *testing.B) {
	wire := katBytes(b, katSAInit)
	var s benchSAInit
	b.ReportAllocs()
	b.SetBytes(int64(len(wire)))
	for b.Loop() {
		if err := s.run(wire); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeIKESAInit(b *testing.B) {
	e := newBenchEncoder()
	b.ReportAllocs()
	b.SetBytes(240)
	for b.Loop() {
		if _, err := e.run(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestZeroAllocs pins the benchmarks' claim: decoding into a reused
// Message, the typed accessors with reused scratch, and building into a
// buffer with room allocate nothing.
func TestZeroAllocs(t *testing.T) {
	wire := katBytes(t, katSAInit)
	var s benchSAInit
	if err := s.run(wire); err != nil { // grow the scratch once
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := s.m.Decode(wire); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Decode: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := s.run(wire); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Decode and typed accessors: %v allocations", n)
	}
	e := newBenchEncoder()
	if n := testing.AllocsPerRun(100, func() {
		out, err := e.run()
		if err != nil || len(out) != len(wire) {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Builder: %v allocations", n)
	}
}
