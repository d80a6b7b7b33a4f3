package main

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/capture"
	"github.com/dmvpn/dmvpn/internal/inet"
)

// captureDaemon is an API server whose data plane is one tap, announced on
// attached when a capture starts.
type captureDaemon struct {
	attached chan *capture.Tap
}

func (captureDaemon) DMVPN() api.DMVPN      { return api.DMVPN{} }
func (captureDaemon) NHRP() []api.NHRPEntry { return nil }
func (captureDaemon) Routes() []api.Route   { return nil }
func (captureDaemon) Stats() api.Stats      { return api.Stats{} }
func (captureDaemon) ClearNHRP() int        { return 0 }
func (d captureDaemon) StartCapture(o capture.Options) (*capture.Session, error) {
	o.Device, o.Node = "dmvpn0", "spoke1"
	return capture.Start(o, func(t *capture.Tap) (func(), error) {
		d.attached <- t
		return func() {}, nil
	})
}

// dmvpn capture writes what the daemon streams to -w FILE and prints the
// counts when the capture ends (here: --count).
func TestCaptureCommand(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	l, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := captureDaemon{attached: make(chan *capture.Tap, 1)}
	go func() { _ = api.ServeListener(ctx, l, d) }()

	file := filepath.Join(dir, "out.pcapng")
	type result struct {
		stderr string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		_, stderr, err := execute(t, "capture", "-s", sock, "--outer", "--inner", "--count", "2", "icmp", "and", "dst", "10.1.2.10", "-w", file)
		done <- result{stderr, err}
	}()
	var tap *capture.Tap
	select {
	case tap = <-d.attached:
	case r := <-done:
		t.Fatalf("capture ended before it started: %v\n%s", r.err, r.stderr)
	case <-ctx.Done():
		t.Fatal("no capture started")
	}
	icmp := make([]byte, 28)
	inet.PutIPv4Header(icmp, netip.MustParseAddr("10.1.1.10"), netip.MustParseAddr("10.1.2.10"), inet.ProtoICMP, 8, 1)
	icmp[20] = 8
	for range 3 {
		tap.Inner(capture.Out, time.Now().UnixNano(), icmp)
	}
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("capture did not end after --count 2")
	}
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r.stderr)
	}
	for _, want := range []string{`capturing spoke1: inner on dmvpn0, outer on dmvpn0-nbma; filter "icmp and dst 10.1.2.10"; snaplen 65535; 2 packets`,
		"2 packets captured\n", "packets seen by the tap\n", "0 packets dropped by buffer\n"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, _, err := rd.ReadPacketData(); err != nil {
			break
		}
		n++
	}
	if n != 2 || rd.NInterfaces() != 2 {
		t.Errorf("%d packets, %d interfaces", n, rd.NInterfaces())
	}
}

func TestCaptureCommandErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		err  string
	}{
		{[]string{"capture", "-s", "/nonexistent.sock"}, "-w FILE"},
		{[]string{"capture", "-s", "/nonexistent.sock", "-w", "-", "frobnicate"}, `unknown word "frobnicate"`},
		{[]string{"capture", "-w", "-"}, "say which node"},
		{[]string{"capture", "-s", "/nonexistent.sock", "-w", "-"}, "cannot reach the dmvpn daemon"},
	} {
		_, _, err := execute(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%v: %v, want %q", c.args, err, c.err)
		}
	}
	if _, err := os.Stat("-"); !errors.Is(err, os.ErrNotExist) {
		t.Error("-w - made a file called -")
	}
}
