package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/dmvpn/dmvpn/capture"
	"github.com/dmvpn/dmvpn/internal/inet"
)

// captureProvider is fakeProvider with a data plane of one tap.
type captureProvider struct {
	fakeProvider
	mu  sync.Mutex
	tap *capture.Tap
}

func (p *captureProvider) StartCapture(o capture.Options) (*capture.Session, error) {
	o.Device, o.Node = "dmvpn0", "hub"
	return capture.Start(o, func(t *capture.Tap) (func(), error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.tap != nil {
			return nil, errors.New("dataplane: too many captures running")
		}
		p.tap = t
		return func() { p.mu.Lock(); p.tap = nil; p.mu.Unlock() }, nil
	})
}

func (p *captureProvider) attached() *capture.Tap {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tap
}

func icmpPacket(src, dst string) []byte {
	b := make([]byte, 28)
	inet.PutIPv4Header(b, netip.MustParseAddr(src), netip.MustParseAddr(dst), inet.ProtoICMP, 8, 1)
	b[20] = 8
	return b
}

func serveCapture(t *testing.T, p Provider) (*Client, context.CancelFunc, chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, l, p) }()
	return NewClient(sock), cancel, done
}

func packets(t *testing.T, b []byte) [][]byte {
	t.Helper()
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var v [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return v
		}
		if err != nil {
			t.Fatal(err)
		}
		v = append(v, data)
	}
}

// GET /v1/capture streams pcapng from the moment Capture returns: the
// packets the filter passes, until count; the result comes as a trailer.
func TestCaptureRoundTrip(t *testing.T) {
	p := &captureProvider{}
	c, _, _ := serveCapture(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	s, err := c.Capture(ctx, CaptureQuery{Points: []string{"inner"}, Filter: "icmp and host 10.1.2.10", Count: 2}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID == "" || s.Info != `hub: inner on dmvpn0; filter "icmp and host 10.1.2.10"; snaplen 65535; 2 packets` {
		t.Errorf("id %q info %q", s.ID, s.Info)
	}
	tap := p.attached()
	if tap == nil {
		t.Fatal("no tap attached once Capture returned")
	}
	want := icmpPacket("10.1.1.10", "10.1.2.10")
	tap.Inner(capture.Out, time.Now().UnixNano(), icmpPacket("10.1.1.10", "10.1.3.10")) // filtered out
	tap.Inner(capture.Out, time.Now().UnixNano(), want)
	tap.Inner(capture.In, time.Now().UnixNano(), icmpPacket("10.1.2.10", "10.1.1.10"))
	res, err := s.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Captured != 2 || res.Seen != 3 || res.Dropped != 0 {
		t.Errorf("result %+v", res)
	}
	got := packets(t, out.Bytes())
	if len(got) != 2 || !bytes.Equal(got[0], want) {
		t.Errorf("%d packets in the file", len(got))
	}
	if p.attached() != nil {
		t.Error("tap still attached")
	}
}

// A capture without a limit runs until stopped: POST
// /v1/capture/{id}/stop ends it cleanly (result and all); while it runs a
// second capture is refused with the data plane's reason; bad queries are
// refused with theirs.
func TestCaptureStopBusyAndBadQueries(t *testing.T) {
	p := &captureProvider{}
	c, _, _ := serveCapture(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	s, err := c.Capture(ctx, CaptureQuery{Points: []string{"outer", "inner"}}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Capture(ctx, CaptureQuery{}, io.Discard); err == nil || !strings.Contains(err.Error(), "too many captures") {
		t.Errorf("second capture: %v", err)
	}
	p.attached().Inner(capture.Out, 1, icmpPacket("10.1.1.10", "10.1.2.10"))
	if err := c.StopCapture(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	res, err := s.Wait()
	if err != nil || res.Captured != 1 {
		t.Fatalf("result %+v, %v", res, err)
	}
	if n := len(packets(t, out.Bytes())); n != 1 {
		t.Errorf("%d packets", n)
	}
	if err := c.StopCapture(ctx, s.ID); err == nil {
		t.Error("stopping a finished capture succeeded")
	}
	for q, want := range map[string]CaptureQuery{
		"unknown word":   {Filter: "frobnicate"},
		"point \"side\"": {Points: []string{"side"}},
		"snaplen":        {SnapLen: 70000},
		"count":          {Count: -1},
	} {
		if _, err := c.Capture(ctx, want, io.Discard); err == nil || !strings.Contains(err.Error(), q) {
			t.Errorf("%+v: %v, want %q", want, err, q)
		}
	}
}

// The daemon shutting down ends a running capture with its result.
func TestCaptureEndsOnShutdown(t *testing.T) {
	p := &captureProvider{}
	c, stop, done := serveCapture(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := c.Capture(ctx, CaptureQuery{Points: []string{"control"}}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if res, err := s.Wait(); err != nil || res.Captured != 0 {
		t.Errorf("result %+v, %v", res, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A provider without captures answers 404.
	c2, _, _ := serveCapture(t, &fakeProvider{})
	if _, err := c2.Capture(ctx, CaptureQuery{}, io.Discard); err == nil || !strings.Contains(err.Error(), "cannot capture") {
		t.Errorf("no capture support: %v", err)
	}
}
