package engine

// State-machine fuzzing: arbitrary sequences of packets, clock steps and
// API calls go into a hub engine and a spoke engine; after every step the
// invariants below are checked. The packets are built by the harness from
// the fuzzer's bytes (so they decode, carry valid authentication when the
// engine wants it, and reuse the request IDs the engine just sent, which
// is what reaches the reply and Error Indication paths), or passed raw.
//
//	go test ./nhrp/engine -run '^$' -fuzz FuzzHubEngine -fuzztime 10m
//	go test ./nhrp/engine -run '^$' -fuzz FuzzSpokeEngine -fuzztime 10m

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/localroute"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

// Bounds the fuzzed engines run with: small, so the fuzzer reaches them.
const (
	fuzzMaxEntries = 48
	fuzzMaxPerNBMA = 6
	fuzzMaxHold    = 300 * time.Second
)

var (
	fuzzHub    = ap("192.0.2.1:0")
	fuzzSpoke1 = ap("198.51.100.1:0")
	fuzzSpoke2 = ap("198.51.100.65:0")
	// Where packets may come from: the NHS (GRE and UDP), the spokes, an
	// attacker, a NAT.
	fuzzFrom = []netip.AddrPort{fuzzHub, ap("192.0.2.1:4754"), fuzzSpoke1, fuzzSpoke2, ap("203.0.113.66:4754"),
		ap("203.0.113.66:0"), ap("198.51.100.129:4754"), ap("198.51.100.129:9000")}
	fuzzProto = []netip.Addr{ad("10.0.0.1"), ad("10.0.0.11"), ad("10.0.0.12"), ad("10.0.0.13"), ad("10.0.0.0"),
		ad("10.0.0.255"), ad("10.1.1.10"), ad("10.1.2.10"), ad("10.1.0.10"), ad("192.0.2.99"), ad("10.0.0.99"),
		{}, ad("::1"), ad("10.1.2.200")}
	fuzzNBMA = []netip.Addr{fuzzHub.Addr(), fuzzSpoke1.Addr(), fuzzSpoke2.Addr(), ad("203.0.113.66"),
		ad("198.51.100.129"), ad("192.168.3.2"), {}}
	fuzzHMACKeys = []nhrp.HMACKey{{ID: 2, Secret: []byte("fuzz-secret-0123456789")}}
)

// fuzzRec records what the engine sends.
type fuzzRec struct {
	sent  [][]byte
	to    []netip.AddrPort
	ids   []uint32
	fails int
}

func (r *fuzzRec) SendNHRP(to netip.AddrPort, _ nbma.Transport, pkt []byte) {
	var p nhrp.Packet
	if err := p.Decode(pkt); err != nil {
		r.fails++
	} else if p.Type.HasCIEs() {
		r.ids = append(r.ids, p.RequestID)
		if len(r.ids) > 16 {
			r.ids = r.ids[1:]
		}
	}
	r.sent = append(r.sent, append([]byte(nil), pkt...))
	r.to = append(r.to, to)
	if len(r.sent) > 16 {
		r.sent, r.to = r.sent[1:], r.to[1:]
	}
}

type fuzzReader struct{ b []byte }

func (r *fuzzReader) u8() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}
func (r *fuzzReader) u16() uint16 { return uint16(r.u8())<<8 | uint16(r.u8()) }
func (r *fuzzReader) proto() netip.Addr {
	i := int(r.u8())
	if i < len(fuzzProto) {
		return fuzzProto[i]
	}
	return netip.AddrFrom4([4]byte{10, byte(i % 3), 0, byte(i)})
}
func (r *fuzzReader) nbma() netip.Addr { return fuzzNBMA[int(r.u8())%len(fuzzNBMA)] }

func (r *fuzzReader) cie() nhrp.CIE {
	return nhrp.CIE{Code: nhrp.CIECode(r.u8() % 16), PrefixLength: r.u8() % 40, MTU: 1400, HoldingTime: r.u16(),
		NBMA: r.nbma(), Protocol: r.proto()}
}

type fuzzHarness struct {
	t    *testing.T
	role string
	eng  *Engine
	c    *cache.Cache
	rec  *fuzzRec
	now  time.Time
	auth byte // 0 none, 1 Cisco, 2 HMAC
	keys *nhrp.HMACKeys
	seq  uint64
	rt   *fib.Table
}

func newFuzzHarness(t *testing.T, role string, auth byte) *fuzzHarness {
	h := &fuzzHarness{t: t, role: role, rec: &fuzzRec{}, now: t0, auth: auth % 3}
	h.c = cache.NewWithLimits(cache.Limits{MaxEntries: fuzzMaxEntries, MaxPerNBMA: fuzzMaxPerNBMA})
	h.rt = fib.New()
	h.rt.Add(fib.Route{Prefix: pfx("10.0.0.0/24"), Source: fib.SourceConnected})
	cfg := Config{MTU: 1400, Holdtime: 60 * time.Second, MaxHoldtime: fuzzMaxHold, Transport: nbma.TransportGRE,
		Routes: h.rt, Unique: true, MaxReceive: Rate{Packets: 200, Interval: time.Second}, Seed: [32]byte{1}}
	if role == "hub" {
		cfg.Address, cfg.NBMA, cfg.Server, cfg.Redirect = pfx("10.0.0.1/24"), fuzzHub.Addr(), true, true
		cfg.Host = localroute.NewStatic(pfx("10.1.0.0/24"))
		h.rt.Add(fib.Route{Prefix: pfx("10.1.2.0/24"), NextHop: ad("10.0.0.12"), Source: fib.SourceStatic})
		h.rt.Add(fib.Route{Prefix: pfx("10.1.1.0/24"), NextHop: ad("10.0.0.11"), Source: fib.SourceStatic})
	} else {
		cfg.Address, cfg.NBMA, cfg.Shortcut = pfx("10.0.0.11/24"), fuzzSpoke1.Addr(), true
		cfg.Host = localroute.NewStatic(pfx("10.1.1.0/24"))
		cfg.NHS = []NHS{{Protocol: ad("10.0.0.1"), NBMA: fuzzHub, Transport: nbma.TransportGRE}}
		h.rt.Add(fib.Route{Prefix: pfx("10.1.0.0/16"), NextHop: ad("10.0.0.1"), Source: fib.SourceStatic})
	}
	switch h.auth {
	case 1:
		cfg.Authentication = []byte("lab")
	case 2:
		k, err := nhrp.NewHMACKeys(fuzzHMACKeys)
		if err != nil {
			t.Fatal(err)
		}
		cfg.HMAC = k
		if h.keys, err = nhrp.NewHMACKeys(fuzzHMACKeys); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(cfg, h.c, h.rec, quiet())
	if err != nil {
		t.Fatal(err)
	}
	h.eng = e
	e.Start(h.now)
	return h
}

// packet builds an NHRP packet from the fuzzer's bytes. When it answers
// one of the engine's own requests it also returns where that request went,
// so the step can make the answer come from there.
func (h *fuzzHarness) packet(r *fuzzReader) ([]byte, netip.AddrPort) {
	mode := r.u8()
	var answerFrom netip.AddrPort
	if mode%8 == 7 { // raw bytes, checksum fixed so decoding goes further
		n := int(r.u8())
		raw := append([]byte(nil), r.b[:min(n, len(r.b))]...)
		r.b = r.b[min(n, len(r.b)):]
		if len(raw) >= 20 {
			binary.BigEndian.PutUint16(raw[10:], uint16(len(raw)))
			raw[12], raw[13] = 0, 0
			sum := inet.Checksum(raw)
			binary.BigEndian.PutUint16(raw[12:], sum)
		}
		return raw, answerFrom
	}
	p := &nhrp.Packet{Type: nhrp.Type(1 + r.u8()%8), HopCount: r.u8(), Flags: r.u16(),
		SrcNBMA: r.nbma(), SrcProto: r.proto(), DstProto: r.proto()}
	// Answer mode: the skeleton of the reply to a request the engine sent
	// (same ID, source and destination), with fuzzed CIEs.
	var asked nhrp.Packet
	answer := false
	if mode&0x08 != 0 && len(h.rec.sent) > 0 {
		i := int(r.u8()) % len(h.rec.sent)
		if asked.Decode(h.rec.sent[i]) == nil && (asked.Type == nhrp.TypeResolutionRequest || asked.Type == nhrp.TypeRegistrationRequest || asked.Type == nhrp.TypePurgeRequest) {
			answer = true
			p.Type, p.SrcNBMA, p.SrcProto, p.DstProto = asked.Type+1, asked.SrcNBMA, asked.SrcProto, asked.DstProto
			answerFrom = h.rec.to[i]
		}
	}
	if p.HopCount == 0 && mode&0x10 == 0 {
		p.HopCount = 255
	}
	switch id := r.u8(); {
	case answer:
		p.RequestID = asked.RequestID
	case id < 160 && len(h.rec.ids) > 0:
		p.RequestID = h.rec.ids[int(id)%len(h.rec.ids)] // answer something we asked
	default:
		p.RequestID = uint32(id)
	}
	if p.SrcProto.Is6() != p.DstProto.Is6() {
		p.DstProto = p.SrcProto
	}
	switch p.Type {
	case nhrp.TypeTrafficIndication:
		p.Code = uint16(r.u8() % 2)
		p.Payload = ipPacket(r.proto4(), r.proto4())
	case nhrp.TypeErrorIndication:
		p.Code = uint16(r.u8() % 16)
		if len(h.rec.sent) > 0 {
			p.Payload = h.rec.sent[int(r.u8())%len(h.rec.sent)]
			if n := int(r.u8()); n < len(p.Payload) && mode&0x20 != 0 {
				p.Payload = p.Payload[:n] // a cut copy
			}
		}
	default:
		for n := int(r.u8() % 4); n > 0; n-- {
			c := r.cie()
			if answer && c.Code%4 != 0 {
				c.Code = nhrp.CodeSuccess // mostly positive answers
				c.PrefixLength = 16 + c.PrefixLength%17
			}
			p.CIEs = append(p.CIEs, c)
		}
		if answer && len(p.CIEs) == 0 {
			p.CIEs = append(p.CIEs, nhrp.CIE{PrefixLength: 24, HoldingTime: 60, NBMA: r.nbma(), Protocol: r.proto()})
		}
	}
	if p.Type != nhrp.TypeErrorIndication {
		if mode&1 != 0 {
			fwd := nhrp.NewCIEExtension(nhrp.ExtForwardTransitNHS)
			if mode&2 != 0 {
				fwd.CIEs = []nhrp.CIE{r.cie()}
			}
			p.Extensions = append(p.Extensions, nhrp.NewCIEExtension(nhrp.ExtResponderAddress), fwd)
		}
		if mode&4 != 0 {
			p.Extensions = append(p.Extensions, nhrp.NewNATAddress(r.cie(), r.cie()))
		}
		switch h.auth {
		case 1:
			a, _ := nhrp.NewCiscoAuthentication([]byte("lab"))
			p.Extensions = append(p.Extensions, a)
		case 2:
			p.Extensions = append(p.Extensions, h.keys.NewAuthentication(ad(r.proto4())))
		}
		p.Extensions = append(p.Extensions, nhrp.NewEnd())
	}
	b, err := p.AppendEncode(nil)
	if err != nil {
		return nil, answerFrom
	}
	if h.auth == 2 && p.Type != nhrp.TypeErrorIndication {
		h.seq = max(h.seq+1, uint64(h.now.UnixNano()))
		if mode&0x40 != 0 && h.seq > uint64(time.Second) {
			h.seq -= uint64(time.Second) // reordered or replayed
		}
		if err := h.keys.Sign(b, h.seq); err != nil {
			return nil, answerFrom
		}
	}
	return b, answerFrom
}

func (r *fuzzReader) proto4() string {
	a := r.proto()
	if !a.Is4() {
		return "10.1.2.10"
	}
	return a.String()
}

// step runs one operation from the fuzzer's bytes.
func (h *fuzzHarness) step(r *fuzzReader) string {
	op := r.u8()
	switch {
	case op < 200:
		from := fuzzFrom[int(r.u8())%len(fuzzFrom)]
		t := nbma.TransportGRE
		if from.Port() != 0 {
			t = nbma.TransportUDP
		}
		pkt, answerFrom := h.packet(r)
		if answerFrom.IsValid() && op < 120 {
			from, t = answerFrom, nbma.TransportGRE // from where the request went
			if from.Port() != 0 {
				t = nbma.TransportUDP
			}
		}
		before := h.nhsState()
		h.eng.HandlePacket(h.now, from, t, pkt)
		if h.role == "spoke" && from.Addr() != fuzzHub.Addr() {
			if after := h.nhsState(); after != before && (after == StateError || after == StateRefused) {
				return fmt.Sprintf("a packet from %v moved the NHS from %s to %s", from, before, after)
			}
		}
	case op < 230:
		h.now = h.now.Add(time.Duration(r.u8()) * 100 * time.Millisecond)
		h.eng.Tick(h.now)
	case op < 240:
		if next := h.eng.NextDeadline(); !next.IsZero() && next.After(h.now) {
			h.now = next
			h.eng.Tick(h.now)
		}
	case op < 248:
		h.eng.Resolve(h.now, r.proto())
	case op < 254:
		h.eng.Redirect(h.now, fuzzFrom[int(r.u8())%len(fuzzFrom)], nbma.TransportGRE, ipPacket(r.proto4(), r.proto4()))
	case op == 254:
		h.eng.ClearShortcuts()
	default:
		// A route changes (a BGP summary withdrawn, another daemon's
		// route replacing it, a narrower one appearing) and the node
		// tells the engine: the route watch.
		p := fuzzRoutePrefixes[int(r.u8())%len(fuzzRoutePrefixes)]
		src := []fib.Source{fib.SourceStatic, fib.SourceKernel, fib.SourceBGP}[int(r.u8())%3]
		if r.u8()%2 == 0 {
			h.rt.Delete(p, src)
		} else {
			h.rt.Add(fib.Route{Prefix: p, NextHop: fuzzHub.Addr(), Source: src})
		}
		h.eng.RoutesChanged(h.now, []netip.Prefix{p})
	}
	return h.check()
}

// fuzzRoutePrefixes are the prefixes the route-change operation adds and
// removes: the summary, a spoke's LAN, and narrower and wider neighbours.
var fuzzRoutePrefixes = []netip.Prefix{pfx("10.1.0.0/16"), pfx("10.1.2.0/24"), pfx("10.1.0.0/17"), pfx("10.1.2.0/25"), pfx("10.0.0.0/8")}

func (h *fuzzHarness) nhsState() string {
	if st := h.eng.NHSStatus(); len(st) > 0 {
		return st[0].State
	}
	return ""
}

// check returns the first invariant that does not hold, or "".
func (h *fuzzHarness) check() string {
	e := h.eng
	if h.rec.fails > 0 {
		return "the engine sent a packet that does not decode"
	}
	if n := h.c.Len(); n > fuzzMaxEntries {
		return fmt.Sprintf("cache has %d entries, limit %d", n, fuzzMaxEntries)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.pending) > maxPending || len(e.probes) > maxProbes || len(e.pendingByID) != len(e.pending) || len(e.probeByID) != len(e.probes) {
		return fmt.Sprintf("tables: pending %d/%d probes %d/%d", len(e.pending), len(e.pendingByID), len(e.probes), len(e.probeByID))
	}
	if live := e.timers.Live(); live > 4*(h.c.Len()+len(e.pending)+len(e.probes))+8 {
		return fmt.Sprintf("%d live timers for %d entries", live, h.c.Len())
	}
	if e.timers.HeapLen() > 4096 {
		return fmt.Sprintf("%d timers in the heap", e.timers.HeapLen())
	}
	nhsSeen := false
	for _, c := range h.c.All() {
		if !c.Expires.IsZero() && c.Expires.Sub(h.now) > fuzzMaxHold+incompleteHold {
			return fmt.Sprintf("entry %v held for %v, cap %v", c.Protocol, c.Expires.Sub(h.now), fuzzMaxHold)
		}
		switch c.Type {
		case cache.Dynamic:
			if h.role != "hub" {
				return fmt.Sprintf("a spoke holds a registration: %+v", c)
			}
			if !e.onSubnet(c.Protocol) {
				return fmt.Sprintf("registration of %v, not usable on the tunnel", c.Protocol)
			}
		case cache.Resolved:
			if h.role == "hub" {
				return fmt.Sprintf("the hub learned a resolved mapping: %+v", c)
			}
			if !e.onSubnet(c.Protocol) || e.isNHSAddr(c.Protocol) {
				return fmt.Sprintf("a mapping for %v, not a peer on the tunnel", c.Protocol)
			}
		case cache.Static:
			if c.NHS {
				nhsSeen = true
			}
		}
	}
	if h.role == "spoke" && !nhsSeen {
		return "the NHS's static entry is gone"
	}
	for _, r := range h.rt.Routes() {
		if r.Source != fib.SourceNHRP {
			continue
		}
		if h.role == "hub" {
			return fmt.Sprintf("the hub installed a shortcut %+v", r)
		}
		if r.Prefix.Overlaps(pfx("10.0.0.0/24")) || !pfx("10.1.0.0/16").Contains(r.Prefix.Addr()) || r.Prefix.Bits() < 16 {
			return fmt.Sprintf("shortcut %v reaches beyond the route it refines", r.Prefix)
		}
		if c, ok := h.c.Get(r.NextHop); !ok || c.Type != cache.Resolved {
			return fmt.Sprintf("shortcut %v via %v with no mapping for it", r.Prefix, r.NextHop)
		}
		if _, ok := e.shortcuts[r.NextHop][r.Prefix]; !ok {
			return fmt.Sprintf("shortcut %v via %v missing from the index", r.Prefix, r.NextHop)
		}
		// Route watch: a shortcut lives only while a route it refines
		// does, no narrower than it.
		refined := false
		for _, u := range h.rt.Routes() {
			if u.Source != fib.SourceNHRP && u.Source != fib.SourceConnected && u.Prefix.Bits() <= r.Prefix.Bits() && u.Prefix.Contains(r.Prefix.Addr()) {
				refined = true
			}
		}
		if !refined {
			return fmt.Sprintf("shortcut %v outlived every route it could refine", r.Prefix)
		}
	}
	return ""
}

func fuzzEngine(f *testing.F, role string) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		r := &fuzzReader{b: data[1:]}
		h := newFuzzHarness(t, role, data[0])
		for i := 0; len(r.b) > 0 && i < 256; i++ {
			if why := h.step(r); why != "" {
				t.Fatalf("step %d: %s", i, why)
			}
		}
	})
}

// fuzzSeeds are step sequences that reach the interesting paths: the
// zero-CIE registration that used to panic, a registration, a resolution
// answered with a request ID the engine sent, a purge, a redirect.
func fuzzSeeds() [][]byte {
	reg := func(cies byte) []byte { // deliver from the attacker: a Registration Request
		return []byte{0, 4, 0, 2 /*type 3*/, 255, 0x80, 0, 3 /*nbma*/, 2 /*10.0.0.12*/, 0 /*dst hub*/, 200, cies,
			0, 32, 0, 0xff, 0xff, 3, 2}
	}
	return [][]byte{
		append([]byte{1}, reg(0)...),
		append([]byte{1}, reg(1)...),
		append([]byte{2}, reg(1)...),
		append([]byte{0}, append(reg(1), 220, 255, 235, 220, 50)...),
		// A resolution reply from the hub answering the last request ID.
		{1, 247, 7 /*10.1.2.10*/, 0, 0, 1 /*type 2*/, 255, 0, 0, 0, 1, 7, 0, 1, 0, 24, 0, 0x0e, 0x10, 2, 2, 220, 30},
		// A purge from spoke1's endpoint for its own binding, then time.
		{1, 0, 2, 0, 4 /*type 5*/, 255, 0x80, 0, 1, 1, 0, 1, 1, 0, 32, 0, 0, 1, 1, 220, 20, 220, 20, 220, 20},
		// A Traffic Indication from the NHS.
		{1, 0, 0, 0, 7 /*type 8*/, 1, 0, 0, 0, 0, 1, 200, 0, 6, 7},
		// A resolution of 10.1.2.10 answered by the NHS for spoke2's LAN
		// (answer mode): a shortcut 10.1.2.0/24 via 10.0.0.12.
		{0, 240, 7, 0, 0, 8, 1, 255, 0, 0, 0, 0, 0, 1, 0, 1, 0, 24, 0, 60, 2, 2},
		// An Error Indication echoing what we sent.
		{2, 0, 0, 0, 6 /*type 7*/, 255, 0, 0, 0, 0, 1, 200, 11, 0, 0},
	}
}

func FuzzHubEngine(f *testing.F)   { fuzzEngine(f, "hub") }
func FuzzSpokeEngine(f *testing.F) { fuzzEngine(f, "spoke") }

// TestFuzzSeedsReachTheFindings checks that the harness's seeds drive the
// engine down the paths of the review's findings (so the fuzzer starts
// from them): the zero-CIE registration, and a registration at a spoke.
func TestFuzzSeedsReachTheFindings(t *testing.T) {
	seeds := fuzzSeeds()
	run := func(role string, seed []byte) *fuzzHarness {
		h := newFuzzHarness(t, role, seed[0])
		r := &fuzzReader{b: seed[1:]}
		for len(r.b) > 0 {
			if why := h.step(r); why != "" {
				t.Fatal(why)
			}
		}
		return h
	}
	if h := run("hub", seeds[0]); h.eng.Stats().Dropped[DropNoCIE] != 1 {
		t.Fatalf("seed 0 does not reach the zero-CIE registration: %+v", h.eng.Stats().Dropped)
	}
	if h := run("spoke", seeds[1]); h.eng.Stats().Dropped[DropNotServer] != 1 {
		t.Fatalf("seed 1 does not reach a registration at a spoke: %+v", h.eng.Stats().Dropped)
	}
	if h := run("spoke", seeds[7]); len(h.eng.shortcuts[ad("10.0.0.12")]) != 1 {
		t.Fatalf("seed 7 does not install a shortcut: %+v", h.rt.Routes())
	}
	if h := run("hub", seeds[1]); h.eng.Stats().RegistrationsAccepted != 1 {
		t.Fatalf("seed 1 does not register at the hub: %+v", h.eng.Stats())
	}
}
