package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/dmvpn/dmvpn/internal/textdist"
	"github.com/dmvpn/dmvpn/nbma"
)

// Error is one problem in a configuration file.
type Error struct {
	File   string
	Line   int    // 1-based; 0 if unknown
	Column int    // 1-based; 0 if unknown
	Path   string // field path such as "nhrp.nhs[1].nbma"; "" for the top level
	Msg    string // what is wrong and what would be valid
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// parser walks a yaml.Node tree, filling a Config and collecting errors.
type parser struct {
	file  string
	root  *yaml.Node
	errs  []*Error
	nodes map[string]*yaml.Node // field path → value node, for every field present
	keys  map[string]*yaml.Node // field path → key node
	given map[any]bool          // the address of every struct field present
}

func newParser(file string) *parser {
	return &parser{
		file:  file,
		nodes: make(map[string]*yaml.Node),
		keys:  make(map[string]*yaml.Node),
		given: make(map[any]bool),
	}
}

// errorf records an error at n (the file as a whole if n is nil).
func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	e := &Error{File: p.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

// invalid records the usual "value is not valid (valid: ...)" error.
func (p *parser) invalid(n *yaml.Node, path, valid string) {
	p.errorf(n, path, "%s is not valid (valid: %s)", quote(n.Value), valid)
}

// Limits on what Load reads and what an error message repeats.
const (
	// MaxFileSize is the largest configuration file Load accepts: 1 MiB,
	// thousands of times a real node's configuration.
	MaxFileSize = 1 << 20
	// maxQuoted is how many bytes of a value an error message repeats:
	// more than the longest valid value of any field (api-socket, 107
	// bytes), so a value just too long is still shown whole.
	maxQuoted = 128
)

// readLimited reads the configuration file f (named path), refusing one
// larger than MaxFileSize before reading it when its size is known, and
// after MaxFileSize+1 bytes when it is not (a pipe).
func readLimited(path string, f *os.File) ([]byte, error) {
	tooLarge := func(size string) error {
		return &Error{File: path, Msg: fmt.Sprintf("the file is %s, too large for a configuration (valid: at most %d bytes, 1 MiB)", size, MaxFileSize)}
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, tooLarge(fmt.Sprintf("%d bytes", fi.Size()))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, tooLarge(fmt.Sprintf("more than %d bytes", MaxFileSize))
	}
	return data, nil
}

// quote quotes a value from the file for an error message, as %q does,
// but keeps at most maxQuoted bytes of it: a longer value is cut (at a
// UTF-8 boundary) and followed by "…" and its length, as in
// "aaaa…" (52428800 bytes).
func quote(s string) string {
	q, cut := quoteCut(s)
	if cut {
		q += fmt.Sprintf(" (%d bytes)", len(s))
	}
	return q
}

// quoteCut is quote without the length, for messages that give it anyway;
// it reports whether s was cut.
func quoteCut(s string) (string, bool) {
	if len(s) <= maxQuoted {
		return strconv.Quote(s), false
	}
	cut := maxQuoted
	for i := 0; i < utf8.UTFMax-1 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return strconv.Quote(s[:cut] + "…"), true
}

// maxLibMsg bounds a YAML library message repeated in an error: some
// repeat text from the file (an unknown anchor's name).
const maxLibMsg = 200

// clip cuts the message m to maxLibMsg bytes, at a UTF-8 boundary.
func clip(m string) string {
	if len(m) <= maxLibMsg {
		return m
	}
	cut := maxLibMsg
	for i := 0; i < utf8.UTFMax-1 && !utf8.RuneStart(m[cut]); i++ {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", m[:cut], len(m))
}

// err returns the collected errors, sorted by position, joined.
func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool {
		a, b := p.errs[i], p.errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// has reports whether the field at path is present in the file.
func (p *parser) has(path string) bool { return p.nodes[path] != nil }

// at returns the node to blame for the field at path: its value if present,
// else the value of the nearest enclosing field present, else the document.
func (p *parser) at(path string) *yaml.Node {
	for path != "" {
		if n := p.nodes[path]; n != nil {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return p.root
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parse decodes data and returns the configuration with defaults applied.
func (p *parser) parse(data []byte) *Config {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			p.empty()
		} else {
			p.syntaxError(err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errorf(&extra, "", "a second YAML document (valid: exactly one document per file)")
		return nil
	} else if err != io.EOF {
		p.syntaxError(err)
		return nil
	}
	if len(doc.Content) == 0 {
		p.empty()
		return nil
	}
	p.root = resolve(doc.Content[0])
	if isNull(p.root) {
		p.empty()
		return nil
	}
	c := new(Config)
	p.mapping(p.root, "", configSchema(), reflect.ValueOf(c).Elem())
	p.applyDefaults(c)
	p.validate(c)
	p.validateBGP(c)
	p.validateIPsec(c)
	return c
}

func (p *parser) empty() {
	p.errorf(nil, "", "the file is empty (required: %s)", strings.Join(configSchema().required, ", "))
}

// syntaxError records an error from the YAML parser, whose messages read
// "yaml: line N: what".
func (p *parser) syntaxError(err error) {
	msg := err.Error()
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: "YAML syntax: " + clip(m[2])})
		return
	}
	p.errs = append(p.errs, &Error{File: p.file, Msg: "YAML syntax: " + clip(strings.TrimPrefix(msg, "yaml: "))})
}

// resolve follows aliases (*anchor) to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func indexPath(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping of fields"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return "the value " + quote(n.Value)
	}
	return "something else"
}

// scalar checks that n is a single value and returns its text.
func (p *parser) scalar(n *yaml.Node, path, valid string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, path, "expected a single value, got %s (valid: %s)", kindName(n), valid)
		return "", false
	}
	if isNull(n) {
		at := n
		if k := p.keys[path]; k != nil && k.Line == n.Line {
			at = k // "key:" with nothing after it: blame the key
		}
		p.errorf(at, path, "has no value (valid: %s)", valid)
		return "", false
	}
	return n.Value, true
}

// str parses a string. Any scalar is taken as its literal text, so
// "authentication: 1234" is the string "1234".
func (p *parser) str(n *yaml.Node, path, valid string) (string, bool) {
	s, ok := p.scalar(n, path, valid)
	if ok && s == "" {
		p.errorf(n, path, "is empty (valid: %s)", valid)
		return "", false
	}
	return s, ok
}

// parseInt parses the text of a YAML integer: decimal (a leading 0 does not
// make it octal), or 0x, 0o, 0b prefixed; '_' separators are allowed.
func parseInt(s string) (int64, error) {
	s = strings.ReplaceAll(s, "_", "")
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		v, err = strconv.ParseInt(s, 0, 64)
	}
	return v, err
}

// integer parses an integer in min..max. valid describes the valid values.
func (p *parser) integer(n *yaml.Node, path string, min, max int64, valid string) (int64, bool) {
	if _, ok := p.scalar(n, path, valid); !ok {
		return 0, false
	}
	v, err := parseInt(n.Value)
	if err == nil && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		p.errorf(n, path, "%s is quoted, which makes it a string (valid: %s, without quotes)", quote(n.Value), valid)
		return 0, false
	}
	// The tag is not checked: YAML calls 08 a float, but it is plainly 8.
	if err != nil || v < min || v > max {
		p.invalid(n, path, valid)
		return 0, false
	}
	return v, true
}

// boolean parses true or false.
func (p *parser) boolean(n *yaml.Node, path string) (bool, bool) {
	const valid = "true, false"
	if _, ok := p.scalar(n, path, valid); !ok {
		return false, false
	}
	var b bool
	if n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		p.invalid(n, path, valid)
		return false, false
	}
	return b, true
}

// durationText parses a Go duration ("600s", "10m") or a plain integer
// number of seconds.
func durationText(s string) (time.Duration, bool) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		if v > int64(time.Duration(1<<63-1)/time.Second) || v < -int64(time.Duration(1<<63-1)/time.Second) {
			return 0, false
		}
		return time.Duration(v) * time.Second, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

// duration parses a duration of whole seconds in min..max, also accepting 0
// if zero is set.
func (p *parser) duration(n *yaml.Node, path string, min, max time.Duration, zero bool, valid string) (time.Duration, bool) {
	if _, ok := p.scalar(n, path, valid); !ok {
		return 0, false
	}
	d, ok := durationText(n.Value)
	if !ok {
		p.invalid(n, path, valid)
		return 0, false
	}
	if d == 0 && zero {
		return 0, true
	}
	if d < min || d > max || d%time.Second != 0 {
		p.invalid(n, path, valid)
		return 0, false
	}
	return d, true
}

// unicast reports why a is not usable as a unicast peer address, or "".
func unicastProblem(a netip.Addr) string {
	switch {
	case a.Zone() != "":
		return "has a zone"
	case a.Is4In6():
		return "is an IPv4-mapped IPv6 address"
	case a.IsUnspecified():
		return "is the unspecified address"
	case a.IsMulticast():
		return "is a multicast address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "is the broadcast address"
	}
	return ""
}

// addr parses a unicast IP address literal (IPv4 or IPv6). valid describes
// a valid value, e.g. "an IPv4 or IPv6 address such as 192.0.2.1".
func (p *parser) addr(n *yaml.Node, path, valid string) (netip.Addr, bool) {
	s, ok := p.str(n, path, valid)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		if pf, perr := netip.ParsePrefix(s); perr == nil {
			p.errorf(n, path, "%s is a prefix (valid: %s, without /%d)", quote(s), valid, pf.Bits())
		} else {
			p.invalid(n, path, valid)
		}
		return netip.Addr{}, false
	}
	if why := unicastProblem(a); why != "" {
		if a.Is4In6() {
			valid = "the IPv4 form " + a.Unmap().String()
		}
		p.errorf(n, path, "%s %s (valid: %s)", quote(s), why, valid)
		return netip.Addr{}, false
	}
	return a, true
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

var (
	nameRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	logLevels = []struct {
		name  string
		level slog.Level
	}{{"debug", slog.LevelDebug}, {"info", slog.LevelInfo}, {"warn", slog.LevelWarn}, {"error", slog.LevelError}}
	transports = []nbma.Transport{nbma.TransportGRE, nbma.TransportUDP}
)

// Valid values shared with validate.go and the decoders below.
const (
	validName     = "1 to 63 characters from a-z, 0-9 and '-', not starting with '-', e.g. spoke1"
	validSocket   = "a Unix socket path of at most 107 bytes, e.g. /run/dmvpn/spoke1.sock"
	validRegTime  = "0s for holdtime/3, or whole seconds from 1s to less than nhrp.holdtime, e.g. 200s"
	validMaxSend  = "PACKETS/INTERVAL with 1..65535 packets and an interval of whole seconds from 1s to 65535s, e.g. 10000/10s"
	validListen   = "an IP address and TCP port such as 127.0.0.1:9273, 0.0.0.0:9273 (every address) or [::1]:9273"
	validDevice   = "a Linux interface name of 1 to 15 bytes without '/', ':' or whitespace, e.g. dmvpn0"
	validTunAddr  = "this node's overlay address with the tunnel subnet length, e.g. 10.0.0.11/24 or 2001:db8:100::11/64"
	validPrefix   = "a destination prefix such as 10.1.0.0/16"
	validAuth     = "a string of 1 to 8 bytes"
	validSecret   = "a string of at least 16 bytes"
	validLogFmt   = "text or json"
	validLogFmtIs = "text, json"
)

// checks are the decoders named by check tags: values whose rules their
// Go type does not say.
var checks map[string]decoder

func init() {
	checks = map[string]decoder{
		"name":           checkString(validName, func(s string) bool { return len(s) <= MaxNameLen && nameRe.MatchString(s) }),
		"api-socket":     checkString(validSocket, func(s string) bool { return len(s) <= MaxSocketLen && !strings.ContainsRune(s, 0) }),
		"log-format":     decodeLogFormat,
		"device":         decodeDevice,
		"tunnel-address": decodeTunnelAddress,
		"route-prefix":   decodeRoutePrefix,
		"authentication": decodeAuthentication,
		"secret":         decodeSecret,
		"events": func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
			v.Set(reflect.ValueOf(p.hookEvents(n, path)))
		},
		"command":      decodeCommand,
		"prefix-list":  decodePrefixList,
		"bgp-password": decodeBGPPassword,
		"description":  decodeDescription,
	}
	for name, d := range ipsecChecks() {
		checks[name] = d
	}
}

// checkString decodes a non-empty string for which ok holds.
func checkString(valid string, ok func(string) bool) decoder {
	return func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		if s, isStr := p.str(n, path, valid); isStr {
			if !ok(s) {
				p.invalid(n, path, valid)
				return
			}
			v.SetString(s)
		}
	}
}

func decodeLogFormat(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	if s, ok := p.str(n, path, validLogFmt); ok {
		if s != "text" && s != "json" {
			p.invalid(n, path, validLogFmtIs)
			return
		}
		v.SetString(s)
	}
}

// level parses a log level name.
func (p *parser) level(n *yaml.Node, path string) (slog.Level, bool) {
	names := make([]string, len(logLevels))
	for i, l := range logLevels {
		names[i] = l.name
	}
	valid := strings.Join(names, ", ")
	s, ok := p.str(n, path, valid)
	if !ok {
		return 0, false
	}
	for _, l := range logLevels {
		if s == l.name {
			return l.level, true
		}
	}
	p.invalid(n, path, valid)
	return 0, false
}

// decodeLogLevels decodes log-levels: a mapping from LogComponents to levels.
func decodeLogLevels(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	p.fields(n, path, LogComponents, nil, nil, func(i int, n *yaml.Node, path string) {
		if l, ok := p.level(n, path); ok {
			if v.IsNil() {
				v.Set(reflect.ValueOf(map[string]slog.Level{}))
			}
			v.SetMapIndex(reflect.ValueOf(LogComponents[i]), reflect.ValueOf(l))
		}
	})
}

func decodeListen(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	s, ok := p.str(n, path, validListen)
	if !ok {
		return
	}
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil && strings.HasPrefix(s, ":"):
		p.errorf(n, path, "%s has no address (valid: %s)", quote(s), validListen)
	case err != nil:
		if _, aerr := netip.ParseAddr(s); aerr == nil {
			p.errorf(n, path, "%s has no port (valid: %s)", quote(s), validListen)
		} else {
			p.invalid(n, path, validListen)
		}
	case ap.Port() == 0:
		p.errorf(n, path, "%s has port 0 (valid: %s; port 1..65535)", quote(s), validListen)
	case ap.Addr().Zone() != "":
		p.errorf(n, path, "%s has a zone (valid: %s)", quote(s), validListen)
	case ap.Addr().Is4In6():
		p.errorf(n, path, "%s is an IPv4-mapped IPv6 address (valid: the IPv4 form %s)", quote(s), netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	case ap.Addr().IsMulticast() || ap.Addr() == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		p.errorf(n, path, "%s is not a unicast address (valid: %s)", quote(s), validListen)
	default:
		v.Set(reflect.ValueOf(ap))
	}
}

func decodeDevice(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	s, ok := p.str(n, path, validDevice)
	if !ok {
		return
	}
	switch {
	case len(s) > MaxDeviceLen:
		q, _ := quoteCut(s)
		p.errorf(n, path, "%s is %d bytes long (valid: %s)", q, len(s), validDevice)
	case s == "." || s == "..":
		p.invalid(n, path, validDevice)
	case strings.ContainsAny(s, "/:") || strings.IndexFunc(s, isSpace) >= 0:
		p.errorf(n, path, "%s contains '/', ':' or whitespace (valid: %s)", quote(s), validDevice)
	default:
		v.SetString(s)
	}
}

func decodeTunnelAddress(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	const valid = validTunAddr
	s, ok := p.str(n, path, valid)
	if !ok {
		return
	}
	pf, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil && a.Zone() == "" {
			bits := 24
			if a.Is6() {
				bits = 64
			}
			p.errorf(n, path, "%s has no subnet length (valid: %s, e.g. %s/%d)", quote(s), valid, a, bits)
		} else {
			p.invalid(n, path, valid)
		}
		return
	}
	a := pf.Addr()
	if why := unicastProblem(a); why != "" || a.IsLoopback() {
		if why == "" {
			why = "is a loopback address"
		}
		p.errorf(n, path, "%s %s (valid: %s)", quote(s), why, valid)
		return
	}
	if a.Is4() && pf.Bits() <= 30 {
		last := lastAddr(pf.Masked())
		if a == pf.Masked().Addr() || a == last {
			what := "network"
			if a == last {
				what = "broadcast"
			}
			p.errorf(n, path, "%s is the %s address of %s (valid: a host address in %s, e.g. %s/%d)",
				quote(s), what, pf.Masked(), pf.Masked(), pf.Masked().Addr().Next(), pf.Bits())
			return
		}
	}
	v.Set(reflect.ValueOf(pf))
}

func decodeRoutePrefix(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	s, ok := p.str(n, path, validPrefix)
	if !ok {
		return
	}
	pf, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil && a.Zone() == "" {
			p.errorf(n, path, "%s has no prefix length (valid: %s; a single host is %s)", quote(s), validPrefix, netip.PrefixFrom(a, a.BitLen()))
		} else {
			p.invalid(n, path, validPrefix)
		}
		return
	}
	if pf.Addr().Is4In6() {
		p.errorf(n, path, "%s is an IPv4-mapped IPv6 prefix (valid: %s)", quote(s), validPrefix)
		return
	}
	if m := pf.Masked(); m != pf {
		p.errorf(n, path, "%s has host bits set (valid: %s)", quote(s), m)
		return
	}
	v.Set(reflect.ValueOf(pf))
}

func decodeAuthentication(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	if s, ok := p.str(n, path, validAuth); ok {
		if len(s) > MaxAuthLen {
			p.errorf(n, path, "is %d bytes long (valid: %s; Cisco sends at most 8)", len(s), validAuth)
			return
		}
		v.SetString(s)
	}
}

func decodeSecret(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	if s, ok := p.str(n, path, validSecret); ok {
		if len(s) < MinAuthKeyLen {
			p.errorf(n, path, "is %d bytes long (valid: %s)", len(s), validSecret)
			return
		}
		v.SetString(s)
	}
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}

// lastAddr returns the last address of the masked prefix pf.
func lastAddr(pf netip.Prefix) netip.Addr {
	b := pf.Addr().As16()
	n := 128 - pf.Bits()
	if pf.Addr().Is4() {
		n = 32 - pf.Bits()
	}
	for i := 15; n > 0; i-- {
		m := n
		if m > 8 {
			m = 8
		}
		b[i] |= byte(1<<m - 1)
		n -= m
	}
	a := netip.AddrFrom16(b)
	if pf.Addr().Is4() {
		a = a.Unmap()
	}
	return a
}

// rate parses "PACKETS/INTERVAL" (max-send, max-receive).
func (p *parser) rate(n *yaml.Node, path string) (Rate, bool) {
	s, ok := p.str(n, path, validMaxSend)
	if !ok {
		return Rate{}, false
	}
	count, per, found := strings.Cut(s, "/")
	if !found {
		p.invalid(n, path, validMaxSend)
		return Rate{}, false
	}
	c, err := strconv.Atoi(strings.TrimSpace(count))
	d, dok := durationText(strings.TrimSpace(per))
	if err != nil || c < 1 || c > 65535 || !dok || d < time.Second || d > 65535*time.Second || d%time.Second != 0 {
		p.invalid(n, path, validMaxSend)
		return Rate{}, false
	}
	return Rate{Packets: c, Interval: d}, true
}

// suggest returns the name in valid that s was most likely meant to be, or
// "". It catches case and separator slips (log_level, networkId) and typos
// within a small edit distance.
func suggest(s string, valid []string) string {
	norm := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '-' || r == '_' || r == ' ' {
				return -1
			}
			return r
		}, strings.ToLower(s))
	}
	if len(s) > 4*maxQuoted {
		return "" // no field name is anywhere near this long
	}
	ns := norm(s)
	for _, v := range valid {
		if norm(v) == ns {
			return v
		}
	}
	best, bestDist := "", 3
	for _, v := range valid {
		if d := textdist.Levenshtein(ns, norm(v)); d < bestDist && d <= len(v)/2 {
			best, bestDist = v, d
		}
	}
	return best
}
