package main

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// greEcho returns a GRE packet (key 42) carrying an ICMP echo request
// src -> dst with sequence number seq.
func greEcho(src, dst string, seq int) []byte {
	p := []byte{0x20, 0, 0x08, 0, 0, 0, 0, 42}
	ip := make([]byte, 20+64)
	ip[0], ip[2], ip[3], ip[9] = 0x45, 0, byte(len(ip)), 1
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	echoRequest(ip[20:], 7, uint16(seq))
	return append(p, ip...)
}

func TestParseTshark(t *testing.T) {
	super := append(greEcho("10.1.1.20", "10.1.2.20", 5), greEcho("10.1.1.20", "10.1.2.20", 6)...)
	lines := []string{
		// raw GRE, relayed by the hub
		"1764043200.000100000\t192.0.2.1,10.1.1.20\t198.51.100.65,10.1.2.20\t8\t0\t\t\t",
		// the Resolution Request the hub forwards, then spoke2's Reply
		"1764043200.000400000\t192.0.2.1\t198.51.100.65\t\t\t1\t10.1.2.20\t",
		"1764043200.000500000\t198.51.100.65\t198.51.100.1\t\t\t2\t10.1.2.20\t",
		// a Traffic Indication carrying an echo request: not data
		"1764043200.000600000\t192.0.2.1,10.1.1.20\t198.51.100.65,10.1.2.20\t8\t0\t8\t\t",
		// GRE-in-UDP super-datagram of two requests, straight from spoke1
		"1764043200.0009\t198.51.100.1,10.1.1.20\t198.51.100.65,10.1.2.20\t8\t5\t\t\t" + hex.EncodeToString(super),
	}
	evs, err := parseTshark(strings.NewReader(strings.Join(lines, "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 {
		t.Fatalf("got %d events, want 5: %+v", len(evs), evs)
	}
	if evs[0].t != 1764043200000100000 || evs[0].kind != kindData || evs[0].seq != 0 || evs[0].segments != 1 {
		t.Errorf("event 0: %+v", evs[0])
	}
	if evs[1].kind != kindResReq || evs[2].kind != kindResRep || evs[2].target != netip.MustParseAddr("10.1.2.20") {
		t.Errorf("NHRP events: %+v %+v", evs[1], evs[2])
	}
	if evs[3].seq != 5 || evs[4].seq != 6 || evs[4].segments != 2 || evs[4].t != 1764043200000900000 {
		t.Errorf("super-datagram events: %+v %+v", evs[3], evs[4])
	}

	n := nbma{hub: netip.MustParseAddr("192.0.2.1"), spoke1: netip.MustParseAddr("198.51.100.1"), spoke2: netip.MustParseAddr("198.51.100.65")}
	spec := runSpec{idx: 1, src: netip.MustParseAddr("10.1.1.20"), dst: netip.MustParseAddr("10.1.2.20"),
		from: 1764043199000000000, to: 1764043201000000000, sent: 7, received: 7}
	rs := assign(evs, []runSpec{spec}, n)
	r := rs[0]
	if d, ok := r.switchover(); !ok || d != 800*time.Microsecond {
		t.Errorf("switch-over %v %v, want 800µs", d, ok)
	}
	if r.relayed != 1 || r.direct != 2 || r.arrived != 3 || r.inSuper != 2 || r.resReq == 0 || r.resRep == 0 {
		t.Errorf("run: %+v", r)
	}
	s := summarize(rs)
	if s.switched != 1 || s.forwardLost != 4 || len(s.toRequest) != 1 || s.toRequest[0] != 300*time.Microsecond {
		t.Errorf("summary: %+v", s)
	}
}

func TestPercentile(t *testing.T) {
	var v []time.Duration
	for i := 1; i <= 100; i++ {
		v = append(v, time.Duration(i))
	}
	if p := percentile(v, 0.5); p != 50 {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(v, 0.99); p != 99 {
		t.Errorf("p99 = %v", p)
	}
	if p := percentile(v[:1], 0.99); p != 1 {
		t.Errorf("p99 of one = %v", p)
	}
}

func TestChecksum(t *testing.T) {
	p := make([]byte, 64)
	echoRequest(p, 0x1234, 9)
	if inetChecksum(p) != 0 {
		t.Errorf("checksum does not verify")
	}
}
