package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dmvpn/dmvpn/nbma"
)

// The schema is the Go structs themselves: every exported field of Config
// and of the structs under it carries its YAML name and what the parser
// needs in struct tags, and nothing else lists the fields.
//
//	yaml:"holdtime"      the key (yaml:"-" for a field the file cannot set)
//	required:"HINT"      the field must be present; HINT ends the "missing
//	                     required field" error
//	default:"600s"       the value of a field left out, written as in the
//	                     file and parsed by the field's own decoder when the
//	                     schema is built (a default that does not parse
//	                     panics: no default can be lost silently)
//	default-if:"udp"     the default applies only under that condition
//	derived:"TEXT"       the default is computed (applyDerived); TEXT is
//	                     what docs/CONFIG.md says it is
//	valid:"TEXT"         what would be valid, for error messages
//	range:"MIN..MAX"     bounds of an integer or duration (durations whole
//	                     seconds); zero:"true" also accepts 0
//	check:"NAME"         the value has its own decoder, checks[NAME]
//	max:"N" item:"WORD"  at most N list entries ("one WORD too many")
//
// Each value is decoded by checks[check], else by the decoder for its Go
// type (typeDecoders), else by its kind (integers, bools), else, for a
// struct or a list of structs, field by field. Checks that involve more
// than one field are in validate.go.

// structSpec describes one struct type: the fields of one YAML mapping.
type structSpec struct {
	fields   []*fieldSpec
	names    []string // YAML names, in struct order ("valid here: ...")
	required []string // YAML names of required fields
}

// fieldSpec describes one field.
type fieldSpec struct {
	name      string // YAML name
	index     int    // struct field index
	typ       reflect.Type
	required  string // hint, "" for an optional field
	def       string // default, as written in a file; see hasDef
	hasDef    bool
	defIf     string // condition of the default ("udp"), or ""
	defVal    reflect.Value
	derived   string
	valid     string
	check     decoder // checks[tag check], or nil
	min, max  int64   // range; for durations, in nanoseconds
	hasRange  bool
	zero      bool
	maxItems  int
	item      string
	sub       *structSpec // for a struct, or a list of structs
	list      bool        // a list of structs
	goName    string
	checkName string
}

// decoder parses the value n of the field f at path into v (settable). On
// failure it records an error and leaves v alone.
type decoder func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value)

// conditions under which a default-if default applies.
var conditions = map[string]func(c *Config) bool{
	"udp": func(c *Config) bool { return c.Tunnel.Transport == nbma.TransportUDP },
}

var configSchema = sync.OnceValue(func() *structSpec { return buildSpec(reflect.TypeFor[Config](), "") })

// buildSpec reads the tags of struct type t (at YAML path, for messages).
// It panics on a tag it cannot use: the schema is wrong, not the file.
func buildSpec(t reflect.Type, path string) *structSpec {
	s := new(structSpec)
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name := sf.Tag.Get("yaml")
		if name == "-" {
			continue
		}
		where := t.Name() + "." + sf.Name
		if name == "" {
			panic("config: " + where + " has no yaml tag")
		}
		f := &fieldSpec{name: name, index: i, typ: sf.Type, goName: where}
		f.required = sf.Tag.Get("required")
		if _, ok := sf.Tag.Lookup("required"); ok && f.required == "" {
			panic("config: " + where + ": required needs a hint")
		}
		f.def, f.hasDef = sf.Tag.Lookup("default")
		f.defIf = sf.Tag.Get("default-if")
		if f.defIf != "" && conditions[f.defIf] == nil {
			panic(fmt.Sprintf("config: %s: unknown default-if %q", where, f.defIf))
		}
		f.derived = sf.Tag.Get("derived")
		f.valid = sf.Tag.Get("valid")
		f.zero = sf.Tag.Get("zero") == "true"
		f.item = sf.Tag.Get("item")
		if m := sf.Tag.Get("max"); m != "" {
			n, err := strconv.Atoi(m)
			if err != nil || f.item == "" {
				panic("config: " + where + ": max needs an integer and item")
			}
			f.maxItems = n
		}
		if r := sf.Tag.Get("range"); r != "" {
			f.min, f.max = parseRange(where, r, sf.Type == durationType)
			f.hasRange = true
		}
		if c := sf.Tag.Get("check"); c != "" {
			if f.check = checks[c]; f.check == nil {
				panic(fmt.Sprintf("config: %s: unknown check %q", where, c))
			}
			f.checkName = c
		}
		child := join(path, name)
		switch {
		case f.check != nil || typeDecoders[sf.Type] != nil:
		case sf.Type.Kind() == reflect.Struct:
			f.sub = buildSpec(sf.Type, child)
		case sf.Type.Kind() == reflect.Slice && sf.Type.Elem().Kind() == reflect.Struct:
			f.sub, f.list = buildSpec(sf.Type.Elem(), child+"[]"), true
		case kindDecoder(sf.Type) == nil:
			panic(fmt.Sprintf("config: %s: no decoder for %s", where, sf.Type))
		}
		if f.check == nil && (isInt(sf.Type) && typeDecoders[sf.Type] == nil || sf.Type == durationType) && !f.hasRange {
			panic("config: " + where + " needs a range")
		}
		if f.hasDef {
			f.defVal = defaultValue(f, child)
		}
		s.fields = append(s.fields, f)
		s.names = append(s.names, name)
		if f.required != "" {
			s.required = append(s.required, name)
		}
	}
	return s
}

// defaultValue parses the default of f with f's decoder.
func defaultValue(f *fieldSpec, path string) reflect.Value {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(f.def), &doc); err != nil || len(doc.Content) != 1 {
		panic(fmt.Sprintf("config: %s: default %q is not one YAML value", f.goName, f.def))
	}
	v := reflect.New(f.typ).Elem()
	p := newParser("default")
	p.value(doc.Content[0], path, f, v)
	if len(p.errs) > 0 {
		panic(fmt.Sprintf("config: %s: default %q: %v", f.goName, f.def, p.err()))
	}
	return v
}

func parseRange(where, r string, dur bool) (int64, int64) {
	lo, hi, ok := strings.Cut(r, "..")
	parse := func(s string) int64 {
		if dur {
			d, err := time.ParseDuration(s)
			if err != nil {
				panic("config: " + where + ": bad range " + r)
			}
			return int64(d)
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			panic("config: " + where + ": bad range " + r)
		}
		return v
	}
	if !ok {
		panic("config: " + where + ": bad range " + r)
	}
	return parse(lo), parse(hi)
}

var durationType = reflect.TypeFor[time.Duration]()

func isInt(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Uint16, reflect.Uint32:
		return t != durationType
	}
	return false
}

// typeDecoders decode the Go types that need more than their kind.
var typeDecoders = map[reflect.Type]decoder{
	durationType: func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		if d, ok := p.duration(n, path, time.Duration(f.min), time.Duration(f.max), f.zero, f.valid); ok {
			v.SetInt(int64(d))
		}
	},
	reflect.TypeFor[Rate](): func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		if r, ok := p.rate(n, path); ok {
			v.Set(reflect.ValueOf(r))
		}
	},
	reflect.TypeFor[netip.Addr](): func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		if a, ok := p.addr(n, path, f.valid); ok {
			v.Set(reflect.ValueOf(a))
		}
	},
	reflect.TypeFor[netip.AddrPort](): decodeListen,
	reflect.TypeFor[slog.Level](): func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		if l, ok := p.level(n, path); ok {
			v.Set(reflect.ValueOf(l))
		}
	},
	reflect.TypeFor[map[string]slog.Level](): decodeLogLevels,
	reflect.TypeFor[nbma.Transport](): func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
		names := make([]string, len(transports))
		for i, tr := range transports {
			names[i] = tr.String()
		}
		valid := strings.Join(names, ", ")
		if s, ok := p.str(n, path, valid); ok {
			tr, err := nbma.ParseTransport(s)
			if err != nil {
				p.invalid(n, path, valid)
				return
			}
			v.Set(reflect.ValueOf(tr))
		}
	},
}

// kindDecoder returns the decoder for integers (in the field's range, a
// pointer allocated) and booleans, or nil.
func kindDecoder(t reflect.Type) decoder {
	switch {
	case t.Kind() == reflect.Bool:
		return func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
			if b, ok := p.boolean(n, path); ok {
				v.SetBool(b)
			}
		}
	case isInt(t):
		return func(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
			i, ok := p.integer(n, path, f.min, f.max, f.valid)
			if !ok {
				return
			}
			if v.Kind() == reflect.Pointer {
				v.Set(reflect.New(v.Type().Elem()))
				v = v.Elem()
			}
			if v.CanInt() {
				v.SetInt(i)
			} else {
				v.SetUint(uint64(i))
			}
		}
	}
	return nil
}

// value decodes n, the value of field f at path, into v.
func (p *parser) value(n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	switch {
	case f.check != nil:
		f.check(p, n, path, f, v)
	case typeDecoders[f.typ] != nil:
		typeDecoders[f.typ](p, n, path, f, v)
	case f.list:
		p.list(n, path, f, v)
	case f.sub != nil:
		p.mapping(n, path, f.sub, v)
	default:
		kindDecoder(f.typ)(p, n, path, f, v)
	}
}

// afterParse is implemented by a struct that does something once all its
// fields are parsed (Hook records where its command is).
type afterParse interface{ parsed(p *parser, path string) }

// mapping decodes the YAML mapping n at path into the struct v of spec s.
func (p *parser) mapping(n *yaml.Node, path string, s *structSpec, v reflect.Value) {
	ok := p.fields(n, path, s.names, s.required, func(name string) string {
		return s.fields[slices.Index(s.names, name)].required
	}, func(i int, n *yaml.Node, child string) {
		f := s.fields[i]
		fv := v.Field(f.index)
		p.given[fv.Addr().Interface()] = true
		p.value(n, child, f, fv)
	})
	if a, isA := v.Addr().Interface().(afterParse); isA && ok {
		a.parsed(p, path)
	}
}

// fields walks the YAML mapping n at path: each key must be one of names
// and appear once, and every name in required must be present (hint gives
// the end of the message). A null value (an empty section) counts as an
// empty mapping. It calls each with the index in names of every key, and
// reports whether n was a mapping.
func (p *parser) fields(n *yaml.Node, path string, names, required []string, hint func(string) string, each func(i int, n *yaml.Node, path string)) bool {
	if n.Kind != yaml.MappingNode && !isNull(n) {
		p.errorf(n, path, "expected a mapping of fields, got %s (valid here: %s)", kindName(n), strings.Join(names, ", "))
		return false
	}
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, path, "a field name must be a plain word, got %s (valid here: %s)", kindName(k), strings.Join(names, ", "))
			continue
		}
		idx := slices.Index(names, k.Value)
		if idx < 0 {
			h := ""
			if s := suggest(k.Value, names); s != "" {
				h = fmt.Sprintf("; did you mean %q?", s)
			}
			p.errorf(k, path, "unknown field %s (valid here: %s%s)", quote(k.Value), strings.Join(names, ", "), h)
			continue
		}
		if first := seen[k.Value]; first != nil {
			p.errorf(k, path, "duplicate field %s (first at line %d; valid: each field once)", quote(k.Value), first.Line)
			continue
		}
		seen[k.Value] = k
		child := join(path, k.Value)
		p.nodes[child], p.keys[child] = v, k
		each(idx, v, child)
	}
	for _, r := range required {
		if seen[r] == nil {
			at := n
			if k := p.keys[path]; k != nil {
				at = k
			}
			p.errorf(at, path, "missing required field %q (%s)", r, hint(r))
		}
	}
	return true
}

// list decodes the YAML sequence n at path, the list of structs f, into v.
// A null value (an empty list) counts as an empty list.
func (p *parser) list(n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "expected a list, got %s (valid: %s)", kindName(n), f.valid)
		return
	}
	count := len(n.Content)
	if f.maxItems > 0 {
		count = min(count, f.maxItems)
	}
	if count == 0 {
		return // an empty list is a nil slice, as when the field is left out
	}
	// Made at its final length, so the elements do not move (p.given
	// holds their fields' addresses).
	s := reflect.MakeSlice(f.typ, count, count)
	for i, e := range n.Content {
		e = resolve(e)
		ip := indexPath(path, i)
		p.nodes[ip] = e
		if i >= count {
			p.errorf(e, ip, "one %s too many (valid: at most %d %ss)", f.item, f.maxItems, f.item)
			continue
		}
		p.mapping(e, ip, f.sub, s.Index(i))
	}
	v.Set(s)
}

// applyDefaults fills in every field with a default that the file left
// out (fields present but invalid are left alone: their error is already
// recorded), then the computed ones.
func (p *parser) applyDefaults(c *Config) {
	v := reflect.ValueOf(c).Elem()
	p.defaults(configSchema(), v, "")
	for name, cond := range conditions {
		if cond(c) {
			p.defaults(configSchema(), v, name)
		}
	}
	p.applyDerived(c)
}

// defaults applies, in struct v of spec s and under it, the defaults of
// the fields whose default-if is cond ("" for unconditional ones).
func (p *parser) defaults(s *structSpec, v reflect.Value, cond string) {
	for _, f := range s.fields {
		fv := v.Field(f.index)
		switch {
		case f.list:
			for i := range fv.Len() {
				p.defaults(f.sub, fv.Index(i), cond)
			}
		case f.sub != nil:
			p.defaults(f.sub, fv, cond)
		case f.hasDef && f.defIf == cond && !p.given[fv.Addr().Interface()]:
			fv.Set(f.defVal)
		}
	}
}

// applyDerived sets the defaults computed from other fields: the fields
// tagged derived.
func (p *parser) applyDerived(c *Config) {
	if !p.given[&c.APISocket] && c.Name != "" {
		c.APISocket = DefaultSocketDir + "/" + c.Name + ".sock"
	}
	n := &c.NHRP
	if n.RegistrationTimeout == 0 {
		n.RegistrationTimeout = n.Holdtime / 3
	}
	if !p.given[&n.MaxHoldtime] {
		n.MaxHoldtime = max(DefaultMaxHoldtime, n.Holdtime)
	}
	p.applyBGPDerived(c)
	p.applyIPsecDerived(c)
}

// schemaFields calls fn for every field of the schema, with its generic
// path (nhrp.nhs[].port), parents before their fields.
func schemaFields(fn func(path string, f *fieldSpec)) {
	var walk func(s *structSpec, path string)
	walk = func(s *structSpec, path string) {
		for _, f := range s.fields {
			child := join(path, f.name)
			fn(child, f)
			if f.list {
				walk(f.sub, child+"[]")
			} else if f.sub != nil {
				walk(f.sub, child)
			}
		}
	}
	walk(configSchema(), "")
}
