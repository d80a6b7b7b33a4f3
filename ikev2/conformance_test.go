package ikev2_test

// Conformance against the real captures kept outside the repo in
// <repo>/../shared/captures (see INDEX.md there), with the fields TShark 4.0
// decoded from them in NAME.ike.tsv. For every frame we find IKE the way a
// receiver would (UDP 500, or UDP 4500 behind the non-ESP marker, IPv4
// fragments reassembled), check that the frames are exactly those TShark
// lists, decode each with the codec and compare every column TShark has,
// then re-encode the message (raw payloads, and again from the typed values)
// and require the same bytes.
//
// How TShark 4.0 lists an IKEv2 message, which confHave follows: the Next
// Payload, payload type and length lists run in wire order and descend into
// the SA payload, whose proposals count as payloads of type 2 (their Last
// Substruc, 0 or 2, as Next Payload) and whose transforms as type 3 (Last
// Substruc 0 or 3), with their IDs in no column (isakmp.tf.id is IKEv1's);
// the SK payload shows its Next field (the first inner
// type) and isakmp.enc.data (as 1); SPI sizes are those of proposals,
// notifications and deletes, in wire order.
//
// Frames the codec refuses are those TShark calls malformed and the ones in
// confRejected, each with the reason; their header fields are still
// compared.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/dmvpn/dmvpn/ikev2"
	"github.com/dmvpn/dmvpn/internal/capturetest"
)

// confRejection is how the codec refuses a frame TShark decodes without
// calling it malformed.
type confRejection struct {
	err     error
	offset  int
	notify  ikev2.NotifyType
	payload ikev2.PayloadType
	why     string
}

var confRejected = map[string]map[int]confRejection{
	"tcpdump_isakmp4500": func() map[int]confRejection {
		// IKEv1 (Main Mode, Quick Mode): version 1.0.
		m := map[int]confRejection{}
		for _, n := range []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 16, 20, 21, 30, 35} {
			m[n] = confRejection{ikev2.ErrVersion, 17, ikev2.NotifyInvalidMajorVersion, ikev2.PayloadNone, "IKEv1"}
		}
		return m
	}(),
	// Crafted by tcpdump's tests: an ID_IPV4_ADDR of one octet (payload
	// length 9) followed by 39 octets the message length covers but no
	// payload does.
	"tcpdump_ikev2-id-normal": {1: {ikev2.ErrBadLength, 30, ikev2.NotifyInvalidSyntax, ikev2.PayloadIDi, "IPv4 ID of 1 octet"}},
	// The same with payload length 5: shorter than the ID payload's fixed
	// part.
	"tcpdump_ikev2-id-short": {1: {ikev2.ErrTruncated, 30, ikev2.NotifyInvalidSyntax, ikev2.PayloadIDi, "ID payload of 5 octets"}},
	// The fuzzed IKE_SA_INIT that crashed tcpdump (TShark: malformed): its
	// third transform's Last Substruc is 46, neither 0 nor 3.
	"tcpdump_ikev2pI2-segfault": {1: {ikev2.ErrInvalid, 56, ikev2.NotifyInvalidSyntax, ikev2.PayloadSA, "fuzzed transform header"}},
	// An IKE_AUTH whose only payload has the private type 127 (not
	// critical, so skipped) with Next Payload IDi, but nothing follows it:
	// the chain promises a payload the message does not have.
	"ndpi_ipsec_isakmp_esp_ikev2": {192: {ikev2.ErrTruncated, 812, ikev2.NotifyInvalidSyntax, ikev2.PayloadIDi, "private payload 127, then nothing"}},
}

func TestConformanceCaptures(t *testing.T) {
	dir := capturetest.Dir(t)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".ike.tsv"); ok {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s holds no .ike.tsv", dir)
	}
	var total confTotals
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			path := ""
			for _, ext := range []string{".pcap", ".pcapng"} {
				if p := filepath.Join(dir, name+ext); confExists(p) {
					path = p
				}
			}
			if path == "" {
				t.Fatalf("no capture for %s.ike.tsv", name)
			}
			total.add(confRunCapture(t, name, path, filepath.Join(dir, name+".ike.tsv")))
		})
	}
	t.Logf("%d captures: %d IKE frames compared with TShark; %d decoded and re-encoded byte for byte (%d with an SK or SKF payload); %d refused as expected",
		len(names), total.frames, total.decoded, total.encrypted, total.refused)
	for name, m := range confRejected {
		if confExists(filepath.Join(dir, name+".ike.tsv")) && total.seenRejected[name] != len(m) {
			t.Errorf("%s: %d of the %d expected refusals seen", name, total.seenRejected[name], len(m))
		}
	}
	if confExists(filepath.Join(dir, "ndpi_ipsec_isakmp_esp_ikev2.ike.tsv")) && total.decoded < 500 {
		t.Errorf("only %d frames decoded; the captures hold over 500 IKEv2 messages", total.decoded)
	}
}

type confTotals struct {
	frames, decoded, encrypted, refused int
	seenRejected                        map[string]int
}

func (c *confTotals) add(o confTotals) {
	c.frames += o.frames
	c.decoded += o.decoded
	c.encrypted += o.encrypted
	c.refused += o.refused
	if c.seenRejected == nil {
		c.seenRejected = map[string]int{}
	}
	for k, v := range o.seenRejected {
		c.seenRejected[k] += v
	}
}

func confExists(p string) bool { _, err := os.Stat(p); return err == nil }

// confIKE is one IKE message found in a frame.
type confIKE struct {
	src, dst     netip.Addr
	sport, dport int
	msg          []byte
}

func confRunCapture(t *testing.T, name, path, tsvPath string) confTotals {
	tot := confTotals{seenRejected: map[string]int{}}
	frames, err := capturetest.ReadFrames(path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := capturetest.ReadTSV(tsvPath)
	if err != nil {
		t.Fatal(err)
	}
	found := map[int]*confIKE{}
	reasm := confReassembler{}
	for _, f := range frames {
		e, err := confFindIKE(f, &reasm)
		if err != nil {
			t.Errorf("frame %d: %v", f.Num, err)
			continue
		}
		if e != nil {
			found[f.Num] = e
		}
	}
	var got, want []int
	for n := range found {
		got = append(got, n)
	}
	for n := range rows {
		want = append(want, n)
	}
	sort.Ints(got)
	sort.Ints(want)
	if !slices.Equal(got, want) {
		t.Errorf("frames holding IKE: ours %v, TShark's %v", got, want)
	}

	var m ikev2.Message // reused for every frame, as a receiver would
	for _, n := range got {
		e, row := found[n], rows[n]
		if row == nil {
			continue
		}
		tot.frames++
		in := bytes.Clone(e.msg)
		derr := m.Decode(e.msg)
		if !bytes.Equal(in, e.msg) {
			t.Fatalf("frame %d: Decode modified the message", n)
		}
		have := map[string]string{
			"ip.src": e.src.String(), "ip.dst": e.dst.String(),
			"udp.srcport": strconv.Itoa(e.sport), "udp.dstport": strconv.Itoa(e.dport),
		}
		malformed := row["_ws.malformed"] != ""
		rej, expectRejected := confRejected[name][n]
		if derr != nil {
			var de *ikev2.DecodeError
			if !errors.As(derr, &de) {
				t.Errorf("frame %d: Decode error %T %v is not a *ikev2.DecodeError", n, derr, derr)
				continue
			}
			switch {
			case expectRejected:
				if !errors.Is(derr, rej.err) || de.Offset != rej.offset || de.Notify != rej.notify || de.Payload != rej.payload {
					t.Errorf("frame %d (%s): Decode: %v (notify %v, payload %v), want %v at offset %d, notify %v, payload %v",
						n, rej.why, derr, de.Notify, de.Payload, rej.err, rej.offset, rej.notify, rej.payload)
				}
				tot.seenRejected[name]++
			case malformed:
				t.Logf("frame %d: refused, TShark calls it malformed too: %v", n, derr)
			default:
				t.Errorf("frame %d: Decode: %v (TShark decodes it)", n, derr)
			}
			tot.refused++
			// The header is decoded even so (when there is one).
			if len(e.msg) >= ikev2.HeaderLen {
				confHeaderFields(have, &m.Header)
				// Header keeps the minor version only; TShark
				// shows the octet.
				have["isakmp.version"] = fmt.Sprintf("0x%02x", e.msg[17])
				if np := strings.SplitN(row["isakmp.nextpayload"], "|", 2)[0]; np != have["isakmp.nextpayload"] {
					t.Errorf("frame %d: first next payload: ours %s, TShark %s", n, have["isakmp.nextpayload"], np)
				}
				for _, col := range []string{"isakmp.ispi", "isakmp.rspi", "isakmp.version", "isakmp.exchangetype", "isakmp.flags", "isakmp.messageid", "isakmp.length", "ip.src", "ip.dst", "udp.srcport", "udp.dstport"} {
					if have[col] != row[col] {
						t.Errorf("frame %d: %s: ours %q, TShark %q", n, col, have[col], row[col])
					}
				}
			}
			continue
		}
		if expectRejected {
			t.Errorf("frame %d: decoded, expected a refusal (%s)", n, rej.why)
		}
		if malformed {
			t.Errorf("frame %d: TShark calls it malformed (%s), the codec accepts it", n, row["_ws.expert.message"])
		}
		tot.decoded++
		if confHave(t, n, have, &m) {
			tot.encrypted++
		}
		for col, v := range row {
			switch col {
			case "frame.number", "_ws.malformed", "_ws.expert.message":
				continue
			}
			if have[col] != v {
				t.Errorf("frame %d: %s: ours %q, TShark %q", n, col, have[col], v)
			}
		}
		confReencode(t, n, &m)
	}
	return tot
}

func confHeaderFields(have map[string]string, h *ikev2.Header) {
	have["isakmp.ispi"] = h.InitiatorSPI.String()
	have["isakmp.rspi"] = h.ResponderSPI.String()
	have["isakmp.nextpayload"] = strconv.Itoa(int(h.NextPayload))
	// The major version is 2 whenever the header decodes; otherwise
	// DecodeHeader failed on it and the value is not ours to report.
	have["isakmp.version"] = fmt.Sprintf("0x%x%x", ikev2.MajorVersion, h.MinorVersion)
	have["isakmp.exchangetype"] = strconv.Itoa(int(h.Exchange))
	have["isakmp.flags"] = fmt.Sprintf("0x%02x", uint8(h.Flags))
	have["isakmp.messageid"] = fmt.Sprintf("0x%08x", h.MessageID)
	have["isakmp.length"] = strconv.Itoa(int(h.Length))
}

// confHave fills in TShark's columns from the decoded message and reports
// whether it is encrypted.
func confHave(t *testing.T, frame int, have map[string]string, m *ikev2.Message) (encrypted bool) {
	t.Helper()
	confHeaderFields(have, &m.Header)
	var next, types, lens, notify, fragNum, fragTotal, protoID, spiSize, tfType, dh, idType, auth, tsType, delProto, enc []string
	next = append(next, strconv.Itoa(int(m.Header.NextPayload)))
	d := func(v int) string { return strconv.Itoa(v) }
	var sa ikev2.SA
	var ts ikev2.TrafficSelectors
	for i := range m.Payloads {
		p := &m.Payloads[i]
		next = append(next, d(int(p.Next)))
		types = append(types, d(int(p.Type)))
		lens = append(lens, d(p.Len()))
		var err error
		switch p.Type {
		case ikev2.PayloadSA:
			if err = p.SA(&sa); err != nil {
				break
			}
			for pi, pr := range sa.Proposals {
				last := 2
				if pi == len(sa.Proposals)-1 {
					last = 0
				}
				next = append(next, d(last))
				types = append(types, "2")
				plen := 8 + len(pr.SPI)
				for _, tr := range pr.Transforms {
					plen += confTransformLen(&tr)
				}
				lens = append(lens, d(plen))
				protoID = append(protoID, d(int(pr.Protocol)))
				spiSize = append(spiSize, d(len(pr.SPI)))
				for ti, tr := range pr.Transforms {
					last := 3
					if ti == len(pr.Transforms)-1 {
						last = 0
					}
					next = append(next, d(last))
					types = append(types, "3")
					lens = append(lens, d(confTransformLen(&tr)))
					tfType = append(tfType, d(int(tr.Type)))
				}
			}
		case ikev2.PayloadKE:
			var ke ikev2.KE
			if ke, err = p.KE(); err == nil {
				dh = append(dh, d(int(ke.Group)))
			}
		case ikev2.PayloadIDi, ikev2.PayloadIDr:
			var id ikev2.ID
			if id, err = p.ID(); err == nil {
				idType = append(idType, d(int(id.Type)))
			}
		case ikev2.PayloadAUTH:
			var a ikev2.Auth
			if a, err = p.Auth(); err == nil {
				auth = append(auth, d(int(a.Method)))
			}
		case ikev2.PayloadNotify:
			var nt ikev2.Notify
			if nt, err = p.Notify(); err == nil {
				notify = append(notify, d(int(nt.Type)))
				spiSize = append(spiSize, d(len(nt.SPI)))
			}
		case ikev2.PayloadDelete:
			var del ikev2.Delete
			if del, err = p.Delete(); err == nil {
				delProto = append(delProto, d(int(del.Protocol)))
				spiSize = append(spiSize, d(int(del.SPISize)))
			}
		case ikev2.PayloadTSi, ikev2.PayloadTSr:
			if err = p.TrafficSelectors(&ts); err == nil {
				for _, s := range ts.Selectors {
					tsType = append(tsType, d(int(s.Type)))
				}
			}
		case ikev2.PayloadSK:
			enc = append(enc, "1")
			encrypted = true
			e, ok := m.Encrypted()
			if !ok || e.First != p.Next || !bytes.Equal(e.Body, p.Body) || len(e.Associated) != p.Offset+ikev2.PayloadHeaderLen || !bytes.Equal(e.Associated, m.Raw[:len(e.Associated)]) {
				t.Errorf("frame %d: Encrypted() = %v, %v does not describe the SK payload at %d", frame, e, ok, p.Offset)
			}
		case ikev2.PayloadSKF:
			encrypted = true
			f, ok := m.Fragment()
			if !ok || len(f.Associated) != p.Offset+ikev2.PayloadHeaderLen+4 {
				t.Errorf("frame %d: Fragment() = %+v, %v does not describe the SKF payload at %d", frame, f, ok, p.Offset)
			}
			fragNum = append(fragNum, d(int(f.Number)))
			fragTotal = append(fragTotal, d(int(f.Total)))
		}
		if err != nil {
			t.Errorf("frame %d: %v payload at %d: accessor fails on a decoded message: %v", frame, p.Type, p.Offset, err)
		}
	}
	j := func(v []string) string { return strings.Join(v, "|") }
	have["isakmp.nextpayload"] = j(next)
	have["isakmp.typepayload"] = j(types)
	have["isakmp.payloadlength"] = j(lens)
	have["isakmp.notify.msgtype"] = j(notify)
	have["isakmp.frag.number"] = j(fragNum)
	have["isakmp.frag.total"] = j(fragTotal)
	have["isakmp.prop.protoid"] = j(protoID)
	have["isakmp.spisize"] = j(spiSize)
	have["isakmp.tf.type"] = j(tfType)
	// TShark 4.0 fills isakmp.tf.id for IKEv1 only; an IKEv2 transform's
	// ID goes to isakmp.tf.id.encr, .prf, ... (TestTshark checks those).
	have["isakmp.tf.id"] = ""
	have["isakmp.key_exchange.dh_group"] = j(dh)
	have["isakmp.id.type"] = j(idType)
	have["isakmp.auth.method"] = j(auth)
	have["isakmp.ts.type"] = j(tsType)
	have["isakmp.delete.protoid"] = j(delProto)
	have["isakmp.enc.data"] = j(enc)
	return encrypted
}

func confTransformLen(t *ikev2.Transform) int {
	n := 8
	for _, a := range t.Attributes {
		n += 4
		if !a.TV {
			n += len(a.Data)
		}
	}
	return n
}

// confReencode re-encodes a decoded message twice, from the raw payloads
// and from the typed values, and wants the received bytes both times.
func confReencode(t *testing.T, frame int, m *ikev2.Message) {
	t.Helper()
	raw, err := ikev2.AppendMessage(nil, &m.Header, m.Payloads)
	if err != nil {
		t.Errorf("frame %d: AppendMessage: %v", frame, err)
	} else if !bytes.Equal(raw, m.Raw) {
		t.Errorf("frame %d: AppendMessage differs from the received message:\n got  %x\n want %x", frame, raw, m.Raw)
	}
	typed, err := typedReencode(m)
	if err != nil {
		t.Errorf("frame %d: re-encoding the typed values: %v", frame, err)
	} else if !bytes.Equal(typed, m.Raw) {
		t.Errorf("frame %d: typed re-encoding differs from the received message:\n got  %x\n want %x", frame, typed, m.Raw)
	}
}

// ---------------------------------------------------------------------------
// Reading captures.

// confFindIKE returns the IKE message a frame carries, or nil: UDP with port
// 500 at either end, or 4500 at either end with the non-ESP marker (what
// TShark's UDPENCAP dissector does). IPv4 fragments are reassembled; the
// message belongs to the frame that completes it, as in TShark.
func confFindIKE(f capturetest.Frame, r *confReassembler) (*confIKE, error) {
	ip, err := capturetest.LinkToIPv4(f.Link, f.Data)
	if err != nil || ip == nil {
		return nil, err
	}
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return nil, nil
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ihl < 20 || total < ihl || total > len(ip) || ip[9] != 17 {
		return nil, nil
	}
	src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	udp := ip[ihl:total]
	if fo := binary.BigEndian.Uint16(ip[6:]); fo&0x3fff != 0 { // MF or an offset
		udp = r.add(confFragKey{src, dst, binary.BigEndian.Uint16(ip[4:])}, int(fo&0x1fff)*8, fo&0x2000 != 0, udp)
		if udp == nil {
			return nil, nil
		}
	}
	if len(udp) < 8 {
		return nil, nil
	}
	sport, dport := int(binary.BigEndian.Uint16(udp)), int(binary.BigEndian.Uint16(udp[2:]))
	ulen := int(binary.BigEndian.Uint16(udp[4:]))
	if ulen < 8 || ulen > len(udp) {
		return nil, fmt.Errorf("UDP length %d in %d octets", ulen, len(udp))
	}
	payload := udp[8:ulen]
	e := &confIKE{src: src, dst: dst, sport: sport, dport: dport}
	switch {
	case sport == ikev2.NATTPort || dport == ikev2.NATTPort:
		msg, ok := ikev2.FromNATT(payload)
		if !ok {
			return nil, nil // ESP or a keepalive
		}
		e.msg = msg
	case sport == ikev2.Port || dport == ikev2.Port:
		e.msg = payload
	default:
		return nil, nil
	}
	return e, nil
}

type confFragKey struct {
	src, dst netip.Addr
	id       uint16
}

type confFrag struct {
	off  int
	data []byte
}

// confReassembler puts IPv4 fragments back together, bounded: 64 datagrams
// in progress, 64 fragments and 64 KiB each.
type confReassembler struct {
	m map[confFragKey][]confFrag
	// last marks datagrams whose last fragment (MF clear) has arrived.
	last map[confFragKey]int
}

func (r *confReassembler) add(k confFragKey, off int, more bool, data []byte) []byte {
	if r.m == nil {
		r.m, r.last = map[confFragKey][]confFrag{}, map[confFragKey]int{}
	}
	if _, ok := r.m[k]; !ok && len(r.m) >= 64 {
		return nil
	}
	if len(r.m[k]) >= 64 || off+len(data) > 0xffff {
		delete(r.m, k)
		delete(r.last, k)
		return nil
	}
	r.m[k] = append(r.m[k], confFrag{off, bytes.Clone(data)})
	if !more {
		r.last[k] = off + len(data)
	}
	end, ok := r.last[k]
	if !ok {
		return nil
	}
	frags := r.m[k]
	sort.Slice(frags, func(i, j int) bool { return frags[i].off < frags[j].off })
	out := make([]byte, 0, end)
	for _, f := range frags {
		if f.off != len(out) {
			return nil // a hole (or an overlap): wait for more
		}
		out = append(out, f.data...)
	}
	if len(out) != end {
		return nil
	}
	delete(r.m, k)
	delete(r.last, k)
	return out
}
