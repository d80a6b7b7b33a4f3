package main

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// tsharkFields are the columns analyse reads, in order. With
// `-E occurrence=a` a field present in several layers (ip.src: the outer
// and the inner IPv4 header of a GRE packet) prints all of them, comma
// separated, outermost first.
var tsharkFields = []string{
	"frame.time_epoch", "ip.src", "ip.dst", "icmp.type", "icmp.seq",
	"nhrp.hdr.op.type", "nhrp.dst.prot.addr", "udp.payload",
}

// GRE-in-UDP is sent with UDP GSO: one captured frame may be a
// super-datagram of several GRE packets of which tshark dissects only the
// first, so for UDP frames parseTshark walks udp.payload itself (see
// greSegments); the frame's timestamp holds for every packet in it.

// tsharkFilter keeps echo requests and NHRP Resolution Requests and Replies.
// (A Traffic Indication carries the packet that caused it, which tshark
// dissects as ICMP too: parseTshark tells it apart by its NHRP type.)
const tsharkFilter = "icmp.type == 8 || nhrp.hdr.op.type == 1 || nhrp.hdr.op.type == 2"

// Kinds of captured packet.
const (
	kindData   = iota // an ICMP echo request inside GRE (or GRE-in-UDP)
	kindResReq        // NHRP Resolution Request
	kindResRep        // NHRP Resolution Reply
)

// event is one captured packet of interest.
type event struct {
	t                  int64 // unix ns, from the capture
	kind               int
	outerSrc, outerDst netip.Addr
	innerSrc, innerDst netip.Addr // kindData
	seq                int        // kindData
	segments           int        // kindData: packets in the captured frame (> 1: a UDP GSO super-datagram)
	target             netip.Addr // NHRP: the destination protocol address resolved
}

// parseTshark reads `tshark -T fields -E separator=/t -E occurrence=a` lines
// with tsharkFields.
func parseTshark(r io.Reader) ([]event, error) {
	var evs []event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Split(sc.Text(), "\t")
		if len(f) < len(tsharkFields) {
			continue
		}
		t, err := parseEpoch(f[0])
		if err != nil {
			return nil, fmt.Errorf("tshark line %d: %w", line, err)
		}
		srcs, dsts := addrs(f[1]), addrs(f[2])
		if len(srcs) == 0 || len(dsts) == 0 {
			continue
		}
		ev := event{t: t, outerSrc: srcs[0], outerDst: dsts[0]}
		switch op := first(f[5]); op {
		case "1", "2":
			ev.kind = kindResReq
			if op == "2" {
				ev.kind = kindResRep
			}
			a, err := netip.ParseAddr(first(f[6]))
			if err != nil {
				continue
			}
			ev.target = a
		case "":
			ev.kind = kindData
			if payload := first(f[7]); payload != "" {
				b, err := hex.DecodeString(strings.ReplaceAll(payload, ":", ""))
				if err != nil {
					return nil, fmt.Errorf("tshark line %d: udp.payload: %w", line, err)
				}
				segs := greSegments(b)
				for _, sg := range segs {
					if sg.icmpType == 8 {
						ev.innerSrc, ev.innerDst, ev.seq = sg.src, sg.dst, sg.seq
						ev.segments = len(segs)
						evs = append(evs, ev)
					}
				}
				continue
			}
			if first(f[3]) != "8" || len(srcs) < 2 || len(dsts) < 2 {
				continue
			}
			ev.innerSrc, ev.innerDst = srcs[1], dsts[1]
			ev.segments = 1
			ev.seq, err = strconv.Atoi(first(f[4]))
			if err != nil {
				ev.seq = -1
			}
		default:
			continue // a Traffic Indication or another NHRP packet
		}
		evs = append(evs, ev)
	}
	return evs, sc.Err()
}

// segment is one GRE packet of a GRE-in-UDP datagram (or super-datagram).
type segment struct {
	src, dst netip.Addr
	icmpType int // -1: not ICMP
	seq      int
}

// greSegments walks the GRE packets of a UDP payload: a UDP GSO
// super-datagram is equal-sized datagrams back to back, each one GRE packet
// (header, then an IPv4 packet whose total length ends it). It stops at
// anything else (NHRP, IPv6, a truncated packet).
func greSegments(p []byte) []segment {
	var v []segment
	for off := 0; off+4 <= len(p); {
		flags, proto := p[off], binary.BigEndian.Uint16(p[off+2:])
		h := 4
		for _, bit := range []byte{0x80, 0x20, 0x10} { // checksum, key, sequence
			if flags&bit != 0 {
				h += 4
			}
		}
		if proto != 0x0800 || off+h+20 > len(p) {
			break
		}
		ip := p[off+h:]
		ihl, total := int(ip[0]&0x0f)*4, int(binary.BigEndian.Uint16(ip[2:]))
		if ip[0]>>4 != 4 || ihl < 20 || total < ihl || total > len(ip) {
			break
		}
		sg := segment{
			src:      netip.AddrFrom4([4]byte(ip[12:16])),
			dst:      netip.AddrFrom4([4]byte(ip[16:20])),
			icmpType: -1, seq: -1,
		}
		if ip[9] == 1 && total >= ihl+8 {
			sg.icmpType = int(ip[ihl])
			sg.seq = int(binary.BigEndian.Uint16(ip[ihl+6:]))
		}
		v = append(v, sg)
		off += h + total
	}
	return v
}

func first(s string) string {
	s, _, _ = strings.Cut(s, ",")
	return s
}

func addrs(s string) []netip.Addr {
	var v []netip.Addr
	for _, p := range strings.Split(s, ",") {
		if a, err := netip.ParseAddr(p); err == nil {
			v = append(v, a)
		}
	}
	return v
}

// parseEpoch parses "1764043200.123456789" exactly (float64 would round
// off the nanoseconds).
func parseEpoch(s string) (int64, error) {
	sec, frac, _ := strings.Cut(s, ".")
	si, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad timestamp %q", s)
	}
	if len(frac) > 9 {
		frac = frac[:9]
	}
	frac += strings.Repeat("0", 9-len(frac))
	fi, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad timestamp %q", s)
	}
	return si*1e9 + fi, nil
}

// nbma names the three underlay addresses the analysis tells apart.
type nbma struct{ hub, spoke1, spoke2 netip.Addr }

// runSpec is one run as the driver saw it.
type runSpec struct {
	idx            int
	src, dst       netip.Addr // inner addresses of the stream
	from, to       int64      // unix ns: the capture window that belongs to this run
	firstSend      int64      // unix ns of the first request (sender's clock = capture's clock)
	sent, received int        // echo requests sent, replies received
}

// runResult is one run as the capture on spoke2's underlay link saw it.
type runResult struct {
	runSpec
	relayed, direct    int   // echo requests to spoke2 from the hub / straight from spoke1
	relayedAfterDirect int   // relayed ones captured after the first direct one
	arrived            int   // distinct requests that reached spoke2's link
	inSuper            int   // requests captured inside a UDP GSO super-datagram
	firstRelayed       int64 // 0: none
	firstDirect        int64 // 0: none
	resReq             int64 // first Resolution Request for dst toward spoke2 (forwarded by the hub)
	resRep             int64 // first Resolution Reply for dst from spoke2
	resReqs, resReps   int   // how many of each were captured
}

// switchover is first direct − first relayed; ok is false when the run
// has no relayed or no direct packet.
func (r runResult) switchover() (time.Duration, bool) {
	if r.firstRelayed == 0 || r.firstDirect == 0 {
		return 0, false
	}
	return time.Duration(r.firstDirect - r.firstRelayed), true
}

func (r runResult) lost() int { return r.sent - r.received }

// assign sorts the events into runs: by inner destination (data) or
// resolved address (NHRP) and the run's time window.
func assign(evs []event, specs []runSpec, n nbma) []runResult {
	res := make([]runResult, len(specs))
	byDst := map[netip.Addr][]int{}
	for i, s := range specs {
		res[i].runSpec = s
		byDst[s.dst] = append(byDst[s.dst], i)
	}
	find := func(a netip.Addr, t int64) *runResult {
		for _, i := range byDst[a] {
			if t >= specs[i].from && t <= specs[i].to {
				return &res[i]
			}
		}
		return nil
	}
	seen := map[*runResult]map[int]bool{}
	slices.SortStableFunc(evs, func(a, b event) int { return cmpInt64(a.t, b.t) })
	for _, ev := range evs {
		switch ev.kind {
		case kindData:
			r := find(ev.innerDst, ev.t)
			if r == nil || ev.outerDst != n.spoke2 || ev.innerSrc != r.src {
				continue
			}
			switch ev.outerSrc {
			case n.hub:
				r.relayed++
				if r.firstRelayed == 0 {
					r.firstRelayed = ev.t
				}
				if r.firstDirect != 0 {
					r.relayedAfterDirect++
				}
			case n.spoke1:
				r.direct++
				if r.firstDirect == 0 {
					r.firstDirect = ev.t
				}
			default:
				continue
			}
			if ev.segments > 1 {
				r.inSuper++
			}
			if seen[r] == nil {
				seen[r] = map[int]bool{}
			}
			if ev.seq >= 0 && !seen[r][ev.seq] {
				seen[r][ev.seq] = true
				r.arrived++
			}
		case kindResReq:
			if r := find(ev.target, ev.t); r != nil && ev.outerDst == n.spoke2 {
				r.resReqs++
				if r.resReq == 0 {
					r.resReq = ev.t
				}
			}
		case kindResRep:
			if r := find(ev.target, ev.t); r != nil && ev.outerSrc == n.spoke2 {
				r.resReps++
				if r.resRep == 0 {
					r.resRep = ev.t
				}
			}
		}
	}
	return res
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// percentile is the nearest-rank percentile (p in 0..1) of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(len(sorted)-1, i))]
}

// summary is what the benchmark prints.
type summary struct {
	runs, switched      int
	times               []time.Duration // sorted switch-over times of the runs that switched
	sent, received      int
	forwardLost         int // requests that never reached spoke2's link
	relayedAfterDirect  int
	inSuper             int
	toRequest, answer   []time.Duration // sorted breakdown: first relayed → request at spoke2, request → reply
	toDirect, toHub     []time.Duration // reply → first direct; first request sent → first relayed
	relayedPerRun       []int
	resReqs, resReps    int // Resolution Requests toward / Replies from spoke2, all runs
	noRelayed, noDirect int
}

func summarize(rs []runResult) summary {
	var s summary
	s.runs = len(rs)
	for _, r := range rs {
		s.sent += r.sent
		s.received += r.received
		s.forwardLost += r.sent - r.arrived
		s.relayedAfterDirect += r.relayedAfterDirect
		s.inSuper += r.inSuper
		s.resReqs += r.resReqs
		s.resReps += r.resReps
		if r.firstRelayed == 0 {
			s.noRelayed++
		}
		if r.firstDirect == 0 {
			s.noDirect++
		}
		d, ok := r.switchover()
		if !ok {
			continue
		}
		s.switched++
		s.times = append(s.times, d)
		s.relayedPerRun = append(s.relayedPerRun, r.relayed)
		if r.firstSend != 0 {
			s.toHub = append(s.toHub, time.Duration(r.firstRelayed-r.firstSend))
		}
		if r.resReq != 0 && r.resRep != 0 && r.resReq >= r.firstRelayed && r.resRep >= r.resReq && r.firstDirect >= r.resRep {
			s.toRequest = append(s.toRequest, time.Duration(r.resReq-r.firstRelayed))
			s.answer = append(s.answer, time.Duration(r.resRep-r.resReq))
			s.toDirect = append(s.toDirect, time.Duration(r.firstDirect-r.resRep))
		}
	}
	for _, v := range [][]time.Duration{s.times, s.toRequest, s.answer, s.toDirect, s.toHub} {
		slices.Sort(v)
	}
	slices.Sort(s.relayedPerRun)
	return s
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64) + " ms" }
