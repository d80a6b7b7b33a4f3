package capture

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/inet"
)

// fakePlane records the taps attached to it.
type fakePlane struct {
	mu   sync.Mutex
	taps []*Tap
}

func (f *fakePlane) attach(t *Tap) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.taps) > 0 {
		return nil, errors.New("busy")
	}
	f.taps = append(f.taps, t)
	return func() { f.mu.Lock(); f.taps = nil; f.mu.Unlock() }, nil
}

func (f *fakePlane) tap() *Tap {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.taps) == 0 {
		return nil
	}
	return f.taps[0]
}

// syncBuf is a bytes.Buffer a test may read while Run writes to it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) Bytes() []byte               { s.mu.Lock(); defer s.mu.Unlock(); return bytes.Clone(s.b.Bytes()) }

func readAll(t *testing.T, b []byte) (n int, ifaces []pcapgo.NgInterface) {
	t.Helper()
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d packets: %v", n, err)
		}
		n++
	}
	for i := range r.NInterfaces() {
		intf, _ := r.Interface(i)
		ifaces = append(ifaces, intf)
	}
	return n, ifaces
}

// A session writes the packets its filter passes until Count, then
// detaches its tap and reports what it saw.
func TestSessionCountAndFilter(t *testing.T) {
	fp := &fakePlane{}
	flt, err := ParseFilter("icmp")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(Options{Points: PointInner | PointOuter, Filter: flt, Count: 3, Device: "dmvpn0"}, fp.attach)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(Options{Points: PointInner}, fp.attach); err == nil {
		t.Fatal("second tap attached to a busy plane")
	}
	icmp := ipv4(t, "10.1.1.10", "10.1.2.10", inet.ProtoICMP)
	tcp := ipv4(t, "10.1.1.10", "10.1.2.10", inet.ProtoTCP)
	tap := fp.tap()
	tap.Inner(Out, 1, tcp)
	tap.Inner(Out, 2, icmp)
	tap.Outer(In, 3, false, local, peer, greBytes(gre.ProtoIPv4, tcp))
	tap.Outer(In, 4, false, local, peer, greBytes(gre.ProtoIPv4, icmp))
	var out syncBuf
	done := make(chan Result, 1)
	go func() {
		res, err := s.Run(context.Background(), &out, nil)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	tap.Inner(In, 5, icmp) // the third match ends the capture
	var res Result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after Count packets")
	}
	if fp.tap() != nil {
		t.Error("tap still attached after Run")
	}
	if res.Captured != 3 || res.Seen != 5 || res.Dropped != 0 {
		t.Errorf("result %+v", res)
	}
	n, ifaces := readAll(t, out.Bytes())
	if n != 3 || len(ifaces) != 2 || ifaces[1].Statistics.PacketsReceived != 2 {
		t.Errorf("file: %d packets, interfaces %+v", n, ifaces)
	}
	if res.String() != "3 packets captured, 5 seen by the tap, 0 dropped by buffer" {
		t.Errorf("%q", res.String())
	}
}

// Cancelling a capture (the client went away, or asked to stop) still
// writes what the ring held and the drop counts; so does Duration.
func TestSessionStopsAndReportsDrops(t *testing.T) {
	fp := &fakePlane{}
	s, err := Start(Options{Points: PointControl, Slots: 4}, fp.attach)
	if err != nil {
		t.Fatal(err)
	}
	nhrp := greBytes(gre.ProtoNHRP, registration(t))
	for range 10 { // 4 fit, 6 are dropped
		fp.tap().Outer(Out, 1, true, local, peer, nhrp)
	}
	fp.tap().Outer(Out, 1, true, local, peer, greBytes(gre.ProtoIPv4, ipv4(t, "10.1.1.10", "10.1.2.10", 1))) // not control
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuf
	flushed := make(chan struct{}, 100)
	done := make(chan Result, 1)
	go func() {
		res, err := s.Run(ctx, &out, func() { flushed <- struct{}{} })
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	<-flushed // the header at least
	cancel()
	res := <-done
	if res.Captured != 4 || res.Dropped != 6 || res.Seen != 4 {
		t.Errorf("result %+v", res)
	}
	n, ifaces := readAll(t, out.Bytes())
	if n != 4 || len(ifaces) != 1 || ifaces[0].Name != "dmvpn-nbma" || ifaces[0].Statistics.PacketsDropped != 6 {
		t.Errorf("file: %d packets, interfaces %+v", n, ifaces)
	}

	s, err = Start(Options{Points: PointInner, Duration: 50 * time.Millisecond}, fp.attach)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := s.Run(context.Background(), io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el < 50*time.Millisecond || el > 10*time.Second {
		t.Errorf("a 50ms capture took %v", el)
	}
	if _, err := Start(Options{}, fp.attach); !errors.Is(err, ErrNoPoint) {
		t.Errorf("no point: %v", err)
	}
}

// A writer that fails (the client is gone) ends the capture with its error.
func TestSessionWriteError(t *testing.T) {
	fp := &fakePlane{}
	s, err := Start(Options{Points: PointInner}, fp.attach)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("broken pipe")
	_, err = s.Run(context.Background(), failWriter{boom}, nil)
	if !errors.Is(err, boom) || fp.tap() != nil {
		t.Fatalf("err %v, tap %v", err, fp.tap())
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }
