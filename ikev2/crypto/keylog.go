package ikecrypto

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Key logs let Wireshark (and tcpdump) decrypt captures of our own traffic:
// a debugging aid an operator turns on, never on by default, since the
// lines hold live keys.
//
// Wireshark reads them as UAT files in its profile directory, one record a
// line, fields separated by commas, strings in double quotes, byte fields as
// bare hex (epan/uat.c):
//
//	ikev2_decryption_table (packet-isakmp.c): Initiator's SPI, Responder's
//	  SPI, SK_ei, SK_er, encryption algorithm, SK_ai, SK_ar, integrity
//	  algorithm
//	esp_sa (packet-ipsec.c): protocol, source, destination, SPI, encryption
//	  algorithm, encryption key, authentication algorithm, authentication key
//	  (all strings; keys as "0x…")
//
// The algorithm fields are Wireshark's display names, listed below. tcpdump
// (-E file) takes one line per direction of an IKE SA instead:
//
//	ikev2 I|R 0x<SPIi> 0x<SPIr> <integ>:0x<SK_a> <encr>:0x<SK_e>

// maxKeyLogLine bounds a line a parser accepts: a record with the longest
// keys is under 400 characters.
const maxKeyLogLine = 4096

// maxKeyLogEntries bounds what ParseTcpdumpIKE collects from one file.
const maxKeyLogEntries = 1 << 16

// IKEKeyLog is what it takes to decrypt one IKE SA's SK payloads.
type IKEKeyLog struct {
	SPIi, SPIr uint64
	Transform  Transform
	SKei, SKer []byte
	SKai, SKar []byte // empty for AEAD transforms
}

// NewIKEKeyLog takes the keys of an IKE SA as DeriveIKEKeys made them.
func NewIKEKeyLog(spiI, spiR uint64, t Transform, k IKEKeys) IKEKeyLog {
	return IKEKeyLog{SPIi: spiI, SPIr: spiR, Transform: t, SKei: k.SKei, SKer: k.SKer, SKai: k.SKai, SKar: k.SKar}
}

// ESPKeyLog is what it takes to decrypt one ESP SA (one direction).
type ESPKeyLog struct {
	Src, Dst  netip.Addr
	SPI       uint32
	Transform Transform // the ESP transform; package esp's numbers are the same
	EncKey    []byte    // AEAD: key ‖ salt
	IntegKey  []byte    // empty for AEAD transforms
}

// Wireshark's names (packet-isakmp.c vs_ikev2_encr_algs / vs_ikev2_auth_algs,
// packet-ipsec.c esp_encryption_type_vals / esp_authentication_type_vals).
var (
	wsIKEEncr = map[Transform]string{
		{Encryption: EncrAESCBC, KeyBits: 128}:   "AES-CBC-128 [RFC3602]",
		{Encryption: EncrAESCBC, KeyBits: 192}:   "AES-CBC-192 [RFC3602]",
		{Encryption: EncrAESCBC, KeyBits: 256}:   "AES-CBC-256 [RFC3602]",
		{Encryption: EncrAESGCM16, KeyBits: 128}: "AES-GCM-128 with 16 octet ICV [RFC5282]",
		{Encryption: EncrAESGCM16, KeyBits: 192}: "AES-GCM-192 with 16 octet ICV [RFC5282]",
		{Encryption: EncrAESGCM16, KeyBits: 256}: "AES-GCM-256 with 16 octet ICV [RFC5282]",
	}
	wsIKEInteg = map[Integrity]string{
		IntegNone:          "NONE [RFC4306]",
		IntegHMACSHA1_96:   "HMAC_SHA1_96 [RFC2404]",
		IntegHMACSHA256128: "HMAC_SHA2_256_128 [RFC4868]",
		IntegHMACSHA384192: "HMAC_SHA2_384_192 [RFC4868]",
		IntegHMACSHA512256: "HMAC_SHA2_512_256 [RFC4868]",
	}
	// ESP names carry no key size: Wireshark takes it from the key.
	wsESPEncr = map[Encryption]string{
		EncrAESCBC:   "AES-CBC [RFC3602]",
		EncrAESGCM16: "AES-GCM with 16 octet ICV [RFC4106]",
		// Wireshark 4.2 and later; 4.0 does not decrypt ChaCha20 ESP.
		EncrChaCha20Poly1305: "ChaCha20 with Poly1305 [RFC7634]",
	}
	wsESPInteg = map[Integrity]string{
		IntegNone:          "NULL",
		IntegHMACSHA1_96:   "HMAC-SHA-1-96 [RFC2404]",
		IntegHMACSHA256128: "HMAC-SHA-256-128 [RFC4868]",
		IntegHMACSHA384192: "HMAC-SHA-384-192 [RFC4868]",
		IntegHMACSHA512256: "HMAC-SHA-512-256 [RFC4868]",
	}
	// tcpdump's names are OpenSSL's (EVP_get_cipherbyname/digestbyname).
	tdEncr = map[Transform]string{
		{Encryption: EncrAESCBC, KeyBits: 128}: "aes128",
		{Encryption: EncrAESCBC, KeyBits: 192}: "aes192",
		{Encryption: EncrAESCBC, KeyBits: 256}: "aes256",
	}
	tdInteg = map[Integrity]string{
		IntegHMACSHA1_96:   "sha1",
		IntegHMACSHA256128: "sha256",
		IntegHMACSHA384192: "sha384",
		IntegHMACSHA512256: "sha512",
	}
)

// checkKeys verifies that the keys fit the transform, so that a log line is
// never silently useless.
func checkKeys(t Transform, enc, integ [][]byte) error {
	p, err := t.params()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrKeyLog, err)
	}
	for _, k := range enc {
		if len(k) != p.encKeyLen {
			return fmt.Errorf("%w: %v encryption key of %d octets, want %d", ErrKeyLog, t, len(k), p.encKeyLen)
		}
	}
	for _, k := range integ {
		if len(k) != p.intKeyLen {
			return fmt.Errorf("%w: %v integrity key of %d octets, want %d", ErrKeyLog, t, len(k), p.intKeyLen)
		}
	}
	return nil
}

// AppendWireshark appends the ikev2_decryption_table record of l and a
// newline. AES-CBC and AES-GCM are named; ChaCha20-Poly1305 has no name in
// Wireshark's IKEv2 table, which is ErrKeyLog.
func (l *IKEKeyLog) AppendWireshark(dst []byte) ([]byte, error) {
	if err := checkKeys(l.Transform, [][]byte{l.SKei, l.SKer}, [][]byte{l.SKai, l.SKar}); err != nil {
		return dst, err
	}
	encr, ok := wsIKEEncr[Transform{Encryption: l.Transform.Encryption, KeyBits: l.Transform.KeyBits}]
	if !ok {
		return dst, fmt.Errorf("%w: Wireshark cannot decrypt IKEv2 with %v", ErrKeyLog, l.Transform)
	}
	integ := wsIKEInteg[l.Transform.Integrity]
	dst = fmt.Appendf(dst, "%016x,%016x,%x,%x,%q,%x,%x,%q\n", l.SPIi, l.SPIr, l.SKei, l.SKer, encr, l.SKai, l.SKar, integ)
	return dst, nil
}

// AppendTcpdump appends tcpdump's two lines for l (initiator, responder).
// tcpdump decrypts AES-CBC only: anything else is ErrKeyLog.
func (l *IKEKeyLog) AppendTcpdump(dst []byte) ([]byte, error) {
	if err := checkKeys(l.Transform, [][]byte{l.SKei, l.SKer}, [][]byte{l.SKai, l.SKar}); err != nil {
		return dst, err
	}
	encr, ok1 := tdEncr[Transform{Encryption: l.Transform.Encryption, KeyBits: l.Transform.KeyBits}]
	integ, ok2 := tdInteg[l.Transform.Integrity]
	if !ok1 || !ok2 {
		return dst, fmt.Errorf("%w: tcpdump cannot decrypt IKEv2 with %v", ErrKeyLog, l.Transform)
	}
	dst = fmt.Appendf(dst, "ikev2 I 0x%016x 0x%016x %s:0x%x %s:0x%x\n", l.SPIi, l.SPIr, integ, l.SKai, encr, l.SKei)
	dst = fmt.Appendf(dst, "ikev2 R 0x%016x 0x%016x %s:0x%x %s:0x%x\n", l.SPIi, l.SPIr, integ, l.SKar, encr, l.SKer)
	return dst, nil
}

// AppendWireshark appends the esp_sa record of l and a newline.
func (l *ESPKeyLog) AppendWireshark(dst []byte) ([]byte, error) {
	if err := checkKeys(l.Transform, [][]byte{l.EncKey}, [][]byte{l.IntegKey}); err != nil {
		return dst, err
	}
	if !l.Src.IsValid() || !l.Dst.IsValid() || l.Src.Unmap().Is4() != l.Dst.Unmap().Is4() {
		return dst, fmt.Errorf("%w: ESP SA addresses %v and %v", ErrKeyLog, l.Src, l.Dst)
	}
	proto := "IPv6"
	if l.Src.Unmap().Is4() {
		proto = "IPv4"
	}
	encr := wsESPEncr[l.Transform.Encryption]
	integ := wsESPInteg[l.Transform.Integrity]
	dst = fmt.Appendf(dst, "%q,%q,%q,\"0x%08x\",%q,\"0x%x\",%q,\"0x%x\"\n",
		proto, l.Src.Unmap().String(), l.Dst.Unmap().String(), l.SPI, encr, l.EncKey, integ, l.IntegKey)
	return dst, nil
}

// uatFields splits a UAT record: comma-separated fields, each a quoted
// string (with \" \\ and \xHH escapes) or a bare run of hex digits.
func uatFields(line string) ([]string, error) {
	if len(line) > maxKeyLogLine {
		return nil, fmt.Errorf("%w: line of %d characters", ErrKeyLog, len(line))
	}
	line = strings.TrimRight(line, "\r\n")
	var out []string
	for i := 0; ; {
		var f strings.Builder
		if i < len(line) && line[i] == '"' {
			i++
			for {
				if i >= len(line) {
					return nil, fmt.Errorf("%w: unterminated string", ErrKeyLog)
				}
				c := line[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' {
					if i+1 >= len(line) {
						return nil, fmt.Errorf("%w: dangling escape", ErrKeyLog)
					}
					switch line[i+1] {
					case '"', '\\':
						f.WriteByte(line[i+1])
						i += 2
					case 'x':
						if i+4 > len(line) {
							return nil, fmt.Errorf("%w: short \\x escape", ErrKeyLog)
						}
						v, err := strconv.ParseUint(line[i+2:i+4], 16, 8)
						if err != nil {
							return nil, fmt.Errorf("%w: bad \\x escape", ErrKeyLog)
						}
						f.WriteByte(byte(v))
						i += 4
					default:
						return nil, fmt.Errorf("%w: unknown escape \\%c", ErrKeyLog, line[i+1])
					}
					continue
				}
				f.WriteByte(c)
				i++
			}
		} else {
			j := strings.IndexByte(line[i:], ',')
			if j < 0 {
				j = len(line) - i
			}
			f.WriteString(line[i : i+j])
			i += j
		}
		out = append(out, f.String())
		if i == len(line) {
			return out, nil
		}
		if line[i] != ',' {
			return nil, fmt.Errorf("%w: junk after field %d", ErrKeyLog, len(out))
		}
		i++
	}
}

func lookup[K comparable](m map[K]string, name string) (K, bool) {
	for k, v := range m {
		if v == name {
			return k, true
		}
	}
	var zero K
	return zero, false
}

func parseHexKey(s, what string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not hex", ErrKeyLog, what)
	}
	return b, nil
}

func parseSPI64(s string) (uint64, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(s) != 16 {
		return 0, fmt.Errorf("%w: IKE SPI %q is not 16 hex digits", ErrKeyLog, s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: IKE SPI %q", ErrKeyLog, s)
	}
	return v, nil
}

// ParseWiresharkIKE reads one ikev2_decryption_table record.
func ParseWiresharkIKE(line string) (IKEKeyLog, error) {
	var l IKEKeyLog
	f, err := uatFields(line)
	if err != nil {
		return l, err
	}
	if len(f) != 8 {
		return l, fmt.Errorf("%w: %d fields, want 8", ErrKeyLog, len(f))
	}
	if l.SPIi, err = parseSPI64(f[0]); err != nil {
		return l, err
	}
	if l.SPIr, err = parseSPI64(f[1]); err != nil {
		return l, err
	}
	encr, ok := lookup(wsIKEEncr, f[4])
	if !ok {
		return l, fmt.Errorf("%w: unknown encryption algorithm %q", ErrKeyLog, f[4])
	}
	integ, ok := lookup(wsIKEInteg, f[7])
	if !ok {
		return l, fmt.Errorf("%w: unknown integrity algorithm %q", ErrKeyLog, f[7])
	}
	l.Transform = Transform{Encryption: encr.Encryption, KeyBits: encr.KeyBits, Integrity: integ}
	for _, k := range []struct {
		dst   *[]byte
		field int
	}{{&l.SKei, 2}, {&l.SKer, 3}, {&l.SKai, 5}, {&l.SKar, 6}} {
		if *k.dst, err = parseHexKey(f[k.field], "key"); err != nil {
			return l, err
		}
	}
	if err := checkKeys(l.Transform, [][]byte{l.SKei, l.SKer}, [][]byte{l.SKai, l.SKar}); err != nil {
		return l, err
	}
	return l, nil
}

// ParseWiresharkESP reads one esp_sa record. Wildcard addresses ("*") are
// not ours to write and are refused.
func ParseWiresharkESP(line string) (ESPKeyLog, error) {
	var l ESPKeyLog
	f, err := uatFields(line)
	if err != nil {
		return l, err
	}
	if len(f) != 8 {
		return l, fmt.Errorf("%w: %d fields, want 8", ErrKeyLog, len(f))
	}
	if l.Src, err = netip.ParseAddr(f[1]); err != nil {
		return l, fmt.Errorf("%w: source %q", ErrKeyLog, f[1])
	}
	if l.Dst, err = netip.ParseAddr(f[2]); err != nil {
		return l, fmt.Errorf("%w: destination %q", ErrKeyLog, f[2])
	}
	if want := map[bool]string{true: "IPv4", false: "IPv6"}[l.Src.Is4()]; f[0] != want || l.Src.Is4() != l.Dst.Is4() {
		return l, fmt.Errorf("%w: protocol %q for %v and %v", ErrKeyLog, f[0], l.Src, l.Dst)
	}
	spi, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(f[3], "0x"), "0X"), 16, 32)
	if err != nil {
		return l, fmt.Errorf("%w: SPI %q", ErrKeyLog, f[3])
	}
	l.SPI = uint32(spi)
	encr, ok := lookup(wsESPEncr, f[4])
	if !ok {
		return l, fmt.Errorf("%w: unknown encryption algorithm %q", ErrKeyLog, f[4])
	}
	integ, ok := lookup(wsESPInteg, f[6])
	if !ok {
		return l, fmt.Errorf("%w: unknown authentication algorithm %q", ErrKeyLog, f[6])
	}
	if l.EncKey, err = parseHexKey(f[5], "encryption key"); err != nil {
		return l, err
	}
	if l.IntegKey, err = parseHexKey(f[7], "authentication key"); err != nil {
		return l, err
	}
	// The ESP names carry no key size: it is the key's.
	bits := 8 * len(l.EncKey)
	if encr != EncrAESCBC {
		bits -= 8 * saltLen
	}
	l.Transform = Transform{Encryption: encr, KeyBits: bits, Integrity: integ}
	if err := checkKeys(l.Transform, [][]byte{l.EncKey}, [][]byte{l.IntegKey}); err != nil {
		return l, err
	}
	return l, nil
}

// ParseTcpdumpIKE reads a tcpdump secrets file (-E file) and returns its
// IKEv2 SAs, one per pair of "ikev2 I" and "ikev2 R" lines with the same
// SPIs, in the order the SAs first appear. Blank lines, comments (#)
// and tcpdump's ESP lines are skipped; an SA missing one direction, or
// given one twice, is ErrKeyLog.
func ParseTcpdumpIKE(r io.Reader) ([]IKEKeyLog, error) {
	type half struct {
		t          Transform
		enc, integ []byte
	}
	type spis struct{ i, r uint64 }
	type pair struct {
		i, r *half
	}
	var order []spis
	pairs := map[spis]*pair{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxKeyLogLine)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if f[0] != "ikev2" {
			continue
		}
		if len(f) != 6 || (f[1] != "I" && f[1] != "R") {
			return nil, fmt.Errorf("%w: line %d: want ikev2 I|R SPIi SPIr integ:key encr:key", ErrKeyLog, ln)
		}
		var k spis
		var err error
		if k.i, err = parseSPI64(f[2]); err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		if k.r, err = parseSPI64(f[3]); err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		in, ik, ok1 := strings.Cut(f[4], ":")
		en, ek, ok2 := strings.Cut(f[5], ":")
		integ, ok3 := lookup(tdInteg, in)
		encr, ok4 := lookup(tdEncr, en)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return nil, fmt.Errorf("%w: line %d: unknown algorithm %q or %q", ErrKeyLog, ln, f[4], f[5])
		}
		h := &half{t: Transform{Encryption: encr.Encryption, KeyBits: encr.KeyBits, Integrity: integ}}
		if h.integ, err = parseHexKey(ik, "integrity key"); err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		if h.enc, err = parseHexKey(ek, "encryption key"); err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		if err := checkKeys(h.t, [][]byte{h.enc}, [][]byte{h.integ}); err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		p := pairs[k]
		if p == nil {
			if len(pairs) >= maxKeyLogEntries {
				return nil, fmt.Errorf("%w: more than %d IKE SAs", ErrKeyLog, maxKeyLogEntries)
			}
			p = &pair{}
			pairs[k] = p
			order = append(order, k)
		}
		slot := &p.i
		if f[1] == "R" {
			slot = &p.r
		}
		if *slot != nil {
			return nil, fmt.Errorf("%w: line %d: %s keys of SA %016x/%016x given twice", ErrKeyLog, ln, f[1], k.i, k.r)
		}
		*slot = h
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyLog, err)
	}
	out := make([]IKEKeyLog, 0, len(order))
	for _, k := range order {
		p := pairs[k]
		if p.i == nil || p.r == nil || p.i.t != p.r.t {
			return nil, fmt.Errorf("%w: SA %016x/%016x lacks a direction or mixes algorithms", ErrKeyLog, k.i, k.r)
		}
		out = append(out, IKEKeyLog{SPIi: k.i, SPIr: k.r, Transform: p.i.t,
			SKei: p.i.enc, SKai: p.i.integ, SKer: p.r.enc, SKar: p.r.integ})
	}
	return out, nil
}
