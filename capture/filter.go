package capture

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/dmvpn/dmvpn/gre"
)

// FilterHelp describes the filter language, for the CLI's help.
const FilterHelp = `A filter is a few words, in the spirit of tcpdump's (but not BPF):

  host ADDR, src host ADDR, dst host ADDR   an IPv4/IPv6 address (the word host may go:
                                            "src 10.1.1.10", or just "10.1.1.10")
  net PREFIX, src net PREFIX, dst net ...   an address in a prefix ("10.1.0.0/16")
  port N, src port N, dst port N            a TCP or UDP port
  proto NAME|NUMBER                         an IP protocol: icmp, icmp6, tcp, udp, gre,
                                            esp, or a number; the word proto may go
  ip, ip6                                   IPv4, IPv6
  nhrp                                      NHRP (carried by GRE)
  inbound, outbound                         from the tunnel / into it
  EXPR and EXPR, EXPR or EXPR, not EXPR, ( EXPR )   also &&, ||, !; and binds tighter

On the outer side a primitive matches the outer header (the NBMA addresses, gre or udp
with its ports) or the packet inside the GRE header (nhrp, or the inner IPv4/IPv6
packet): "--outer host 10.1.2.10" shows the GRE packets carrying that LAN host.`

// Filter is a parsed capture filter. The zero value (and nil) matches
// everything.
type Filter struct {
	root *fnode
	text string
}

type fop uint8

const (
	fAnd fop = iota
	fOr
	fNot
	fHost
	fNet
	fPort
	fProto
	fIPv4
	fIPv6
	fNHRP
	fDir
)

// Which end of a packet a host, net or port primitive looks at.
const (
	endAny uint8 = iota
	endSrc
	endDst
)

type fnode struct {
	op     fop
	a, b   *fnode
	end    uint8
	prefix netip.Prefix // host (a /32 or /128), net
	num    uint16       // port, protocol number
	dir    Dir
}

// IP protocol names the filter knows.
var protoNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "icmp6": 58, "ipv6-icmp": 58, "sctp": 132}

// ParseFilter parses a filter (FilterHelp). An empty text matches
// everything.
func ParseFilter(text string) (*Filter, error) {
	toks := tokenize(text)
	f := &Filter{text: strings.Join(toks, " ")}
	if len(toks) == 0 {
		return f, nil
	}
	p := &fparser{toks: toks}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, fmt.Errorf("filter: unexpected %q", p.toks[p.i])
	}
	f.root = n
	return f, nil
}

// String is the filter's text, normalized (one space between words).
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	return f.text
}

func tokenize(s string) []string {
	var toks []string
	cur := strings.Builder{}
	flush := func() {
		if cur.Len() > 0 {
			toks = append(toks, cur.String())
			cur.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			flush()
		case c == '(' || c == ')':
			flush()
			toks = append(toks, string(c))
		case c == '!' && (i+1 == len(s) || s[i+1] != '='):
			flush()
			toks = append(toks, "!")
		case (c == '&' || c == '|') && i+1 < len(s) && s[i+1] == c:
			flush()
			toks = append(toks, s[i:i+2])
			i++
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return toks
}

type fparser struct {
	toks []string
	i    int
}

func (p *fparser) peek() string {
	if p.i < len(p.toks) {
		return strings.ToLower(p.toks[p.i])
	}
	return ""
}

func (p *fparser) next() (string, error) {
	if p.i >= len(p.toks) {
		if p.i == 0 {
			return "", fmt.Errorf("filter: empty")
		}
		return "", fmt.Errorf("filter: unexpected end after %q", p.toks[p.i-1])
	}
	p.i++
	return p.toks[p.i-1], nil
}

func (p *fparser) or() (*fnode, error) {
	a, err := p.and()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t == "or" || t == "||"; t = p.peek() {
		p.i++
		b, err := p.and()
		if err != nil {
			return nil, err
		}
		a = &fnode{op: fOr, a: a, b: b}
	}
	return a, nil
}

func (p *fparser) and() (*fnode, error) {
	a, err := p.unary()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t == "and" || t == "&&"; t = p.peek() {
		p.i++
		b, err := p.unary()
		if err != nil {
			return nil, err
		}
		a = &fnode{op: fAnd, a: a, b: b}
	}
	return a, nil
}

func (p *fparser) unary() (*fnode, error) {
	switch p.peek() {
	case "not", "!":
		p.i++
		a, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &fnode{op: fNot, a: a}, nil
	case "(":
		p.i++
		a, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("filter: missing )")
		}
		p.i++
		return a, nil
	}
	return p.primitive()
}

func (p *fparser) primitive() (*fnode, error) {
	w, err := p.next()
	if err != nil {
		return nil, err
	}
	word := strings.ToLower(w)
	end := endAny
	if word == "src" || word == "dst" {
		end = endSrc
		if word == "dst" {
			end = endDst
		}
		if w, err = p.next(); err != nil {
			return nil, err
		}
		word = strings.ToLower(w)
		switch word {
		case "host", "net", "port":
		default: // "src 10.1.1.10"
			return hostOrNet(w, end)
		}
	}
	switch word {
	case "host", "net":
		a, err := p.next()
		if err != nil {
			return nil, err
		}
		n, err := hostOrNet(a, end)
		if err != nil {
			return nil, err
		}
		if (word == "host") != (n.op == fHost) {
			return nil, fmt.Errorf("filter: %s %s: want %s", word, a, map[bool]string{true: "an address", false: "a prefix"}[word == "host"])
		}
		return n, nil
	case "port":
		a, err := p.next()
		if err != nil {
			return nil, err
		}
		v, err := strconv.ParseUint(a, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("filter: port %q: want a number 0-65535", a)
		}
		return &fnode{op: fPort, end: end, num: uint16(v)}, nil
	case "proto":
		a, err := p.next()
		if err != nil {
			return nil, err
		}
		return protoNode(a)
	case "ip", "ipv4":
		return &fnode{op: fIPv4}, nil
	case "ip6", "ipv6":
		return &fnode{op: fIPv6}, nil
	case "nhrp":
		return &fnode{op: fNHRP}, nil
	case "inbound", "in":
		return &fnode{op: fDir, dir: In}, nil
	case "outbound", "out":
		return &fnode{op: fDir, dir: Out}, nil
	case "and", "or", "&&", "||", ")":
		return nil, fmt.Errorf("filter: unexpected %q", w)
	}
	if _, ok := protoNames[word]; ok {
		return protoNode(word)
	}
	if n, err := hostOrNet(w, endAny); err == nil {
		return n, nil
	}
	return nil, fmt.Errorf("filter: unknown word %q (see dmvpn help capture)", w)
}

func hostOrNet(s string, end uint8) (*fnode, error) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return &fnode{op: fHost, end: end, prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	if pf, err := netip.ParsePrefix(s); err == nil {
		return &fnode{op: fNet, end: end, prefix: pf.Masked()}, nil
	}
	return nil, fmt.Errorf("filter: %q is not an IP address or prefix", s)
}

func protoNode(s string) (*fnode, error) {
	if v, ok := protoNames[strings.ToLower(s)]; ok {
		return &fnode{op: fProto, num: uint16(v)}, nil
	}
	if strings.EqualFold(s, "nhrp") {
		return &fnode{op: fNHRP}, nil
	}
	v, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return nil, fmt.Errorf("filter: proto %q: want icmp, icmp6, tcp, udp, gre, esp, sctp, nhrp or a number 0-255", s)
	}
	return &fnode{op: fProto, num: uint16(v)}, nil
}

// ipLayer is what the filter looks at in one IP header.
type ipLayer struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
	ports        bool
}

// view is a packet as the filter sees it: up to two IP layers (outer and
// inner), whether it is NHRP, its direction.
type view struct {
	layers [2]ipLayer
	n      int
	gre    bool // an outer packet: GRE, raw or in UDP
	nhrp   bool
	dir    Dir
}

// Match reports whether the packet (as the ring holds it) passes the filter.
func (f *Filter) Match(m *Meta, data []byte) bool {
	if f == nil || f.root == nil {
		return true
	}
	var v view
	v.dir = m.Dir
	if m.Point == Inner {
		if l, _, ok := decodeIP(data); ok {
			v.layers[0], v.n = l, 1
		}
	} else {
		src, dst := m.Local, m.Peer
		if m.Dir == In {
			src, dst = dst, src
		}
		l := ipLayer{src: src.Addr().Unmap(), dst: dst.Addr().Unmap(), proto: 47}
		if m.UDP {
			l.proto, l.sport, l.dport, l.ports = 17, src.Port(), dst.Port(), true
		}
		v.layers[0], v.n, v.gre = l, 1, true
		if h, payload, err := gre.Decode(data); err == nil {
			switch h.Protocol {
			case gre.ProtoNHRP:
				v.nhrp = true
			case gre.ProtoIPv4, gre.ProtoIPv6:
				if l, _, ok := decodeIP(payload); ok {
					v.layers[1], v.n = l, 2
				}
			}
		}
	}
	return f.root.eval(&v)
}

func (n *fnode) eval(v *view) bool {
	switch n.op {
	case fAnd:
		return n.a.eval(v) && n.b.eval(v)
	case fOr:
		return n.a.eval(v) || n.b.eval(v)
	case fNot:
		return !n.a.eval(v)
	case fNHRP:
		return v.nhrp
	case fDir:
		return v.dir == n.dir
	case fProto:
		if n.num == 47 && v.gre { // GRE-in-UDP is GRE too
			return true
		}
	}
	for i := 0; i < v.n; i++ {
		if n.layer(&v.layers[i]) {
			return true
		}
	}
	return false
}

func (n *fnode) layer(l *ipLayer) bool {
	switch n.op {
	case fHost, fNet:
		return (n.end != endDst && n.prefix.Contains(l.src)) || (n.end != endSrc && n.prefix.Contains(l.dst))
	case fPort:
		return l.ports && ((n.end != endDst && l.sport == n.num) || (n.end != endSrc && l.dport == n.num))
	case fProto:
		return l.proto == uint8(n.num) && (n.num != 1 || l.src.Is4()) && (n.num != 58 || l.src.Is6())
	case fIPv4:
		return l.src.Is4()
	case fIPv6:
		return l.src.Is6()
	}
	return false
}

// decodeIP reads an IPv4 or IPv6 header (IPv6: through the usual extension
// headers) and, for the first fragment of TCP, UDP or SCTP, the ports.
func decodeIP(b []byte) (ipLayer, []byte, bool) {
	var l ipLayer
	if len(b) < 1 {
		return l, nil, false
	}
	var payload []byte
	first := true
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0x0f) * 4
		if len(b) < 20 || ihl < 20 || len(b) < ihl {
			return l, nil, false
		}
		l.src = netip.AddrFrom4([4]byte(b[12:16]))
		l.dst = netip.AddrFrom4([4]byte(b[16:20]))
		l.proto = b[9]
		first = binary.BigEndian.Uint16(b[6:8])&0x1fff == 0
		payload = b[ihl:]
	case 6:
		if len(b) < 40 {
			return l, nil, false
		}
		l.src = netip.AddrFrom16([16]byte(b[8:24]))
		l.dst = netip.AddrFrom16([16]byte(b[24:40]))
		nh, rest := b[6], b[40:]
	ext:
		for range 8 {
			switch nh {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(rest) < 8 {
					break ext
				}
				hl := (int(rest[1]) + 1) * 8
				if len(rest) < hl {
					break ext
				}
				nh, rest = rest[0], rest[hl:]
			case 44: // fragment
				if len(rest) < 8 {
					break ext
				}
				first = binary.BigEndian.Uint16(rest[2:4])&0xfff8 == 0
				nh, rest = rest[0], rest[8:]
			default:
				break ext
			}
		}
		l.proto, payload = nh, rest
	default:
		return l, nil, false
	}
	if first && len(payload) >= 4 && (l.proto == 6 || l.proto == 17 || l.proto == 132) {
		l.sport = binary.BigEndian.Uint16(payload[0:2])
		l.dport = binary.BigEndian.Uint16(payload[2:4])
		l.ports = true
	}
	return l, payload, true
}
