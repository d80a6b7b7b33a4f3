package e2e

// The attacker of the attack tests (attack_test.go): a helper program, like
// the TCP echo helpers of helper_test.go, that runs inside the lab's
// attacker namespace (lab.Options.Attacker) as
//
//	ip netns exec <prefix>-attacker <test binary> -test.run=^TestAttackerHelperProcess$ -- SECS
//
// with DMVPN_E2E_HELPER=attacker and an attackPlan (JSON) on its stdin. It
// builds every packet with the project's own codecs (nhrp.Packet.AppendEncode,
// gre.Encapsulate, the IPv4 and UDP headers of internal/inet), sends them
// from a raw IPv4 socket with IP_HDRINCL (so the outer source address may be
// forged: the lab's inet router has rp_filter=0), over raw GRE (IP protocol
// 47) or GRE-in-UDP (port 4754), with the lab's GRE key; then, if asked, it
// listens for the NHRP packets the lab sends back to the attacker's own
// address and reports them. Its last line on stdout is "result <JSON>"
// (attackResult). SECS bounds the whole run.
//
// Every datagram it sends has the IPv4 identification attackIPID, so that
// captures on the victims' wires can tell the attacker's packets, forged
// source or not, from the daemons' own.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
	"github.com/dmvpn/dmvpn/nhrp"
)

// attackerRole is the DMVPN_E2E_HELPER value of the attacker.
const attackerRole = "attacker"

// attackIPID marks the attacker's datagrams (IPv4 identification).
const attackIPID = 0xa77a

// attackPlan is what the attacker does, in order: every shot, then the
// flood (if any), then it listens for Listen seconds.
type attackPlan struct {
	Shots  []attackShot `json:"shots"`
	Flood  *floodSpec   `json:"flood,omitempty"`
	Listen float64      `json:"listen"`
}

// attackShot is one NHRP packet sent once, or once per request ID.
type attackShot struct {
	Label string `json:"label"`
	// Src is the outer IPv4 source; the zero Addr is the attacker's own.
	Src netip.Addr `json:"src"`
	// Dst is the victim's NBMA address.
	Dst netip.Addr `json:"dst"`
	// Transport is "gre" (IP protocol 47) or "udp" (GRE-in-UDP 4754).
	Transport string `json:"transport"`
	// Packet is encoded as given (checksum, size and offsets computed by
	// the codec), except for RequestID when IDFrom/IDTo/RandomIDs ask for
	// copies.
	Packet nhrp.Packet `json:"packet"`
	// IDFrom..IDTo (IDTo > 0): one copy per request ID in the range;
	// RandomIDs: that many more copies with random request IDs.
	IDFrom    uint32 `json:"id_from,omitempty"`
	IDTo      uint32 `json:"id_to,omitempty"`
	RandomIDs int    `json:"random_ids,omitempty"`
}

// floodSpec is the Resolution Request flood: Count requests to Dst from
// invented requesters, each with its own random source protocol address
// (OnSubnetPct percent of them on the tunnel subnet, the rest anywhere),
// random claimed NBMA address and random request ID; HubOwnedPct percent ask
// for an address on the hub's LAN (the hub answers them itself), the rest
// for one on spoke2's (the hub forwards them to spoke2). SpoofPct percent
// go out with a random forged outer source (and claim it as their NBMA
// address), the rest from the attacker's own address.
type floodSpec struct {
	Count       int        `json:"count"`
	Seed        uint64     `json:"seed"`
	Dst         netip.Addr `json:"dst"`
	OnSubnetPct int        `json:"on_subnet_pct"`
	HubOwnedPct int        `json:"hub_owned_pct"`
	SpoofPct    int        `json:"spoof_pct"`
}

// attackResult is the attacker's report.
type attackResult struct {
	Sent       map[string]int `json:"sent"` // datagrams, by shot label ("flood" for the flood)
	SendErrors int            `json:"send_errors"`
	FirstError string         `json:"first_error,omitempty"`
	// FloodStart and FloodEnd are Unix nanoseconds around the flood.
	FloodStart int64        `json:"flood_start,omitempty"`
	FloodEnd   int64        `json:"flood_end,omitempty"`
	NHRPBytes  map[int]int  `json:"nhrp_bytes,omitempty"` // encoded NHRP size, by shot index
	Received   []attackRecv `json:"received"`
}

// attackRecv is one NHRP packet the attacker received.
type attackRecv struct {
	From      string   `json:"from"`
	Transport string   `json:"transport"`
	Type      int      `json:"type"`
	RequestID uint32   `json:"request_id"`
	Code      uint16   `json:"code"`       // Error/Traffic Indication code
	CIECodes  []uint8  `json:"cie_codes"`  // types 1-6
	CIEProtos []string `json:"cie_protos"` // types 1-6
	SrcProto  string   `json:"src_proto"`
	DstProto  string   `json:"dst_proto"`
}

func (r attackRecv) String() string {
	s := fmt.Sprintf("%s from %s over %s, src %s dst %s", nhrp.Type(r.Type), r.From, r.Transport, r.SrcProto, r.DstProto)
	if nhrp.Type(r.Type).HasCIEs() {
		var codes []string
		for _, c := range r.CIECodes {
			codes = append(codes, fmt.Sprintf("%d (%v)", c, nhrp.CIECode(c)))
		}
		s += fmt.Sprintf(", request ID %d, CIE codes [%s] for %v", r.RequestID, strings.Join(codes, ", "), r.CIEProtos)
	} else {
		s += fmt.Sprintf(", code %d", r.Code)
	}
	return s
}

// TestAttackerHelperProcess is not a test: it is the attacker's entry point
// (see the top of this file) and does nothing in a normal test run.
func TestAttackerHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != attackerRole {
		testenv.RequireRoot(t)
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	if err := attackerMain(args, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", attackerRole, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func attackerMain(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: attacker SECS < plan.json")
	}
	deadline, err := helperDeadline(args[0])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var plan attackPlan
	if err := json.NewDecoder(stdin).Decode(&plan); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	res := attackResult{Sent: map[string]int{}, NHRPBytes: map[int]int{}, Received: []attackRecv{}}

	// Listen first, so that no answer is missed.
	var rx *attackListener
	if plan.Listen > 0 {
		if rx, err = listenAsAttacker(); err != nil {
			return err
		}
		defer rx.close()
	}
	s, err := newRawSender()
	if err != nil {
		return err
	}
	defer s.close()
	own := lab.AttackerWAN.Addr()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0xa77a))
	var buf []byte
	for i := range plan.Shots {
		sh := &plan.Shots[i]
		src := sh.Src
		if !src.IsValid() {
			src = own
		}
		ids := []uint32{sh.Packet.RequestID}
		if sh.IDTo > 0 || sh.RandomIDs > 0 {
			ids = ids[:0]
			for id := sh.IDFrom; sh.IDTo > 0 && id <= sh.IDTo; id++ {
				ids = append(ids, id)
			}
			for range sh.RandomIDs {
				ids = append(ids, rng.Uint32())
			}
		}
		for j, id := range ids {
			if j%256 == 0 && ctx.Err() != nil {
				return fmt.Errorf("shot %q: %w after %d of %d", sh.Label, ctx.Err(), j, len(ids))
			}
			sh.Packet.RequestID = id
			if buf, err = sh.Packet.AppendEncode(buf[:0]); err != nil {
				return fmt.Errorf("shot %q: encode: %w", sh.Label, err)
			}
			res.NHRPBytes[i] = len(buf)
			if err := s.send(src, sh.Dst, sh.Transport, buf); err != nil {
				res.SendErrors++
				if res.FirstError == "" {
					res.FirstError = fmt.Sprintf("shot %q: %v", sh.Label, err)
				}
				continue
			}
			res.Sent[sh.Label]++
		}
	}
	if f := plan.Flood; f != nil {
		res.FloodStart = time.Now().UnixNano()
		n, err := flood(ctx, s, f, own, &res)
		res.FloodEnd = time.Now().UnixNano()
		res.Sent["flood"] = n
		if err != nil {
			return err
		}
	}
	if rx != nil {
		listenCtx, lcancel := context.WithTimeout(ctx, time.Duration(plan.Listen*float64(time.Second)))
		res.Received = rx.collect(listenCtx)
		lcancel()
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "result %s\n", b)
	return err
}

// flood sends f.Count Resolution Requests as fast as the socket takes them.
func flood(ctx context.Context, s *rawSender, f *floodSpec, own netip.Addr, res *attackResult) (int, error) {
	rng := rand.New(rand.NewPCG(f.Seed, f.Seed^0x5eed))
	auth, err := nhrp.NewCiscoAuthentication([]byte(lab.Authentication))
	if err != nil {
		return 0, err
	}
	p := nhrp.Packet{
		HopCount: 255, Type: nhrp.TypeResolutionRequest,
		Flags:      nhrp.FlagResolutionQ | nhrp.FlagResolutionS | nhrp.FlagCiscoNAT,
		DstProto:   lab.Daemons[0].Overlay.Addr(),
		CIEs:       []nhrp.CIE{{PrefixLength: 32, MTU: lab.TunnelMTU, HoldingTime: 7200}},
		Extensions: nhrp.StandardRequestExtensions(nil, &auth, nil),
	}
	randAddr := func() netip.Addr {
		for {
			v := rng.Uint32()
			a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			// a unicast address outside the lab's own ranges
			if b := a.As4(); b[0] == 0 || b[0] == 127 || b[0] >= 224 || b[0] == 10 || b[0] == 192 || b[0] == 198 || b[0] == 203 {
				continue
			}
			return a
		}
	}
	var buf []byte
	sent := 0
	for i := range f.Count {
		if i%256 == 0 && ctx.Err() != nil {
			return sent, fmt.Errorf("flood: %w after %d of %d", ctx.Err(), i, f.Count)
		}
		if rng.IntN(100) < f.OnSubnetPct {
			p.SrcProto = netip.AddrFrom4([4]byte{10, 0, 0, byte(20 + rng.IntN(230))}) // .20-.249: nobody's
		} else {
			p.SrcProto = randAddr()
		}
		if rng.IntN(100) < f.HubOwnedPct {
			p.DstProto = netip.AddrFrom4([4]byte{10, 1, 0, byte(2 + rng.IntN(250))})
		} else {
			p.DstProto = netip.AddrFrom4([4]byte{10, 1, 2, byte(2 + rng.IntN(250))})
		}
		src := own
		p.SrcNBMA = randAddr()
		if rng.IntN(100) < f.SpoofPct {
			src = p.SrcNBMA
		}
		p.RequestID = rng.Uint32()
		if buf, err = p.AppendEncode(buf[:0]); err != nil {
			return sent, fmt.Errorf("flood: encode: %w", err)
		}
		if err := s.send(src, f.Dst, "gre", buf); err != nil {
			res.SendErrors++
			if res.FirstError == "" {
				res.FirstError = fmt.Sprintf("flood: %v", err)
			}
			continue
		}
		sent++
	}
	return sent, nil
}

// rawSender sends hand-made IPv4 datagrams (IP_HDRINCL).
type rawSender struct {
	fd  int
	buf []byte
}

func newRawSender() (*rawSender, error) {
	// IPPROTO_RAW implies IP_HDRINCL: we write the IPv4 header, source
	// address included.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<20)
	return &rawSender{fd: fd, buf: make([]byte, 2048)}, nil
}

func (s *rawSender) close() { _ = syscall.Close(s.fd) }

// headroom in front of the NHRP packet: IPv4 + UDP + GRE with a key.
const attackHeadroom = inet.IPv4HeaderLen + inet.UDPHeaderLen + 8

// send wraps an NHRP packet in GRE (the lab's key, protocol 0x2001), then
// UDP to port 4754 when transport is "udp", then IPv4 from src to dst.
func (s *rawSender) send(src, dst netip.Addr, transport string, pkt []byte) error {
	need := attackHeadroom + len(pkt)
	if cap(s.buf) < need {
		s.buf = make([]byte, need)
	}
	b := s.buf[:need]
	copy(b[attackHeadroom:], pkt)
	h := gre.Header{KeyPresent: true, Key: lab.TunnelKey, Protocol: gre.ProtoNHRP}
	start, err := gre.Encapsulate(b, attackHeadroom, &h)
	if err != nil {
		return err
	}
	proto := uint8(inet.ProtoGRE)
	switch transport {
	case "gre":
	case "udp":
		n := len(b) - start
		start -= inet.UDPHeaderLen
		// a fixed source port in the ephemeral range; checksum 0 (allowed
		// for GRE-in-UDP over IPv4)
		inet.PutUDPHeader(b[start:], 49152+attackIPID%16384, gre.UDPPort, n)
		proto = inet.ProtoUDP
	default:
		return fmt.Errorf("transport %q: want gre or udp", transport)
	}
	start -= inet.IPv4HeaderLen
	inet.PutIPv4Header(b[start:], src, dst, proto, len(b)-start-inet.IPv4HeaderLen, attackIPID)
	sa := &syscall.SockaddrInet4{Addr: dst.As4()}
	for {
		err = syscall.Sendto(s.fd, b[start:], 0, sa)
		if err != syscall.EINTR {
			return err
		}
	}
}

// attackListener receives what the lab sends to the attacker's address:
// raw GRE and GRE-in-UDP (port 4754).
type attackListener struct {
	gre, udp net.PacketConn
}

func listenAsAttacker() (*attackListener, error) {
	g, err := net.ListenPacket("ip4:47", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("listen raw GRE: %w", err)
	}
	u, err := net.ListenPacket("udp4", fmt.Sprintf(":%d", gre.UDPPort))
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("listen GRE-in-UDP: %w", err)
	}
	return &attackListener{gre: g, udp: u}, nil
}

func (l *attackListener) close() {
	l.gre.Close()
	l.udp.Close()
}

// collect reads NHRP packets from both sockets until ctx is done.
func (l *attackListener) collect(ctx context.Context) []attackRecv {
	out := make(chan attackRecv, 64)
	done := make(chan struct{})
	read := func(c net.PacketConn, transport string) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 65536)
		for {
			dl, _ := ctx.Deadline()
			_ = c.SetReadDeadline(dl)
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return // the deadline
			}
			h, payload, err := gre.Decode(buf[:n])
			if err != nil || !h.KeyPresent || h.Key != lab.TunnelKey || h.Protocol != gre.ProtoNHRP {
				continue
			}
			var p nhrp.Packet
			if p.Decode(payload) != nil {
				continue
			}
			r := attackRecv{From: from.String(), Transport: transport, Type: int(p.Type), RequestID: p.RequestID,
				Code: p.Code, SrcProto: p.SrcProto.String(), DstProto: p.DstProto.String(),
				CIECodes: []uint8{}, CIEProtos: []string{}}
			if p.Type.HasCIEs() {
				for _, c := range p.CIEs {
					r.CIECodes = append(r.CIECodes, uint8(c.Code))
					r.CIEProtos = append(r.CIEProtos, c.Protocol.String())
				}
			} else {
				r.RequestID = 0
			}
			select {
			case out <- r:
			case <-ctx.Done():
				return
			}
		}
	}
	go read(l.gre, "gre")
	go read(l.udp, "udp")
	var got []attackRecv
	for running := 2; running > 0; {
		select {
		case r := <-out:
			if len(got) < 1000 {
				got = append(got, r)
			}
		case <-done:
			running--
		}
	}
	for {
		select {
		case r := <-out:
			if len(got) < 1000 {
				got = append(got, r)
			}
		default:
			return got
		}
	}
}

// --- the test side ---

// runAttacker runs plan in the attacker namespace, bounded by limit, and
// returns its report.
func (e *env) runAttacker(plan attackPlan, limit time.Duration) (attackResult, error) {
	var res attackResult
	ctx, cancel := e.timeout(limit + 5*time.Second)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	in, err := json.Marshal(plan)
	if err != nil {
		return res, err
	}
	secs := fmt.Sprintf("%.1f", limit.Seconds())
	cmd := e.l.Command(ctx, lab.Attacker, self, "-test.run=^TestAttackerHelperProcess$", "--", secs)
	cmd.Env = append(os.Environ(), helperEnv+"="+attackerRole)
	cmd.Stdin = strings.NewReader(string(in))
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return res, err
	}
	pid := cmd.Process.Pid
	e.t.Cleanup(func() {
		// By PID: the helper is ours; Wait below has normally reaped it
		// and then there is nothing to kill.
		if cmd.ProcessState == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	werr := cmd.Wait()
	var line string
	sc := bufio.NewScanner(strings.NewReader(stdout.String()))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "result ") {
			line = strings.TrimPrefix(sc.Text(), "result ")
		}
	}
	if werr != nil || line == "" {
		return res, fmt.Errorf("attacker: %v: %s %s", werr, strings.TrimSpace(stderr.String()), strings.TrimSpace(stdout.String()))
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return res, fmt.Errorf("attacker's result: %w: %s", err, line)
	}
	if res.SendErrors > 0 {
		e.t.Logf("attacker: %d send errors, the first: %s", res.SendErrors, res.FirstError)
	}
	return res, nil
}

// mustAttack is runAttacker that fails t on error and logs what was sent.
func (e *env) mustAttack(plan attackPlan, limit time.Duration) attackResult {
	e.t.Helper()
	res, err := e.runAttacker(plan, limit)
	if err != nil {
		e.t.Fatal(err)
	}
	total := 0
	for _, n := range res.Sent {
		total += n
	}
	if total == 0 {
		e.t.Fatalf("the attacker sent nothing: %+v", res)
	}
	e.t.Logf("attacker sent %d datagrams: %v", total, res.Sent)
	for _, r := range res.Received {
		e.t.Logf("attacker received: %s", r)
	}
	return res
}

// ipv4Payload is the start of an IPv4 packet from src to dst (for a
// Traffic Indication's copy of the redirected packet): 20 bytes of header
// and 44 of ICMP echo, 64 bytes as the hub sends.
func ipv4Payload(src, dst netip.Addr) []byte {
	b := make([]byte, 64)
	inet.PutIPv4Header(b, src, dst, inet.ProtoICMP, len(b)-inet.IPv4HeaderLen, 1)
	b[20] = 8 // echo request
	binary.BigEndian.PutUint16(b[24:], 0x1234)
	return b
}
