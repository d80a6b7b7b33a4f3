package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// minimal is the smallest valid file: every other field gets its default.
const minimal = "name: s1\ntunnel:\n  address: 10.0.0.11/24\n  source: 198.51.100.1\n  transport: udp\nnhrp:\n  network-id: 1\n" +
	"  nhs:\n    - address: 10.0.0.1\n      nbma: 192.0.2.1\n  map:\n    - address: 10.0.0.2\n      nbma: 192.0.2.2\n" +
	"hooks:\n  - event: node-up\n    command: [/bin/true]\n" +
	"bgp:\n  as: 65001\n  neighbors:\n    - address: 10.0.0.5\n      as: 65005\n"

// fieldValue returns the value at the generic path of a field of c (list
// entries: the first).
func fieldValue(t *testing.T, c *Config, path string) reflect.Value {
	t.Helper()
	v := reflect.ValueOf(c).Elem()
	s := configSchema()
	for _, part := range strings.Split(path, ".") {
		name, isList := strings.CutSuffix(part, "[]")
		var f *fieldSpec
		for _, g := range s.fields {
			if g.name == name {
				f = g
			}
		}
		if f == nil {
			t.Fatalf("%s: no field %q", path, name)
		}
		v = v.Field(f.index)
		if isList {
			if v.Len() == 0 {
				t.Fatalf("%s: %s is empty in the test file", path, name)
			}
			v = v.Index(0)
		}
		s = f.sub
	}
	return v
}

// TestSchemaDefaults: every field with a default or derived tag has it
// after parsing a file that leaves it out, and every field left zero has
// neither (so no default is applied without the schema saying so).
func TestSchemaDefaults(t *testing.T) {
	c, err := Parse("min.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{"name": true, "tunnel": true, "tunnel.address": true, "tunnel.source": true, "tunnel.transport": true,
		"nhrp": true, "nhrp.network-id": true, "nhrp.nhs": true, "nhrp.map": true, "hooks": true,
		"bgp": true, "bgp.as": true, "bgp.neighbors": true,
		// Derived from the role: a spoke (this file) has no dynamic
		// neighbors and is no route reflector.
		"bgp.dynamic-neighbors": true, "bgp.dynamic-neighbors[].as": true, "bgp.route-reflector": true}
	n := 0
	schemaFields(func(path string, f *fieldSpec) {
		n++
		// ipsec is absent here (it changes the udp ports), so it is zero:
		// TestIPsecSchemaDefaults checks its defaults.
		if f.sub != nil || present[path] || strings.Contains(path, "[].") && f.required != "" || strings.HasPrefix(path, "hooks[].") && f.name != "timeout" ||
			strings.HasPrefix(path, "ipsec.") {
			return
		}
		v := fieldValue(t, c, path)
		switch {
		case f.hasDef:
			if !reflect.DeepEqual(v.Interface(), f.defVal.Interface()) {
				t.Errorf("%s = %v, want its default %s", path, v, f.def)
			}
		case f.derived != "":
			if v.IsZero() {
				t.Errorf("%s has a derived default (%s) but is zero", path, f.derived)
			}
		case !v.IsZero():
			t.Errorf("%s = %v without a default tag", path, v)
		}
	})
	if n < 40 {
		t.Errorf("the schema has %d fields", n)
	}
	// The exported constants say the same as the tags.
	if c.Tunnel.MTU != DefaultMTU || c.Tunnel.Device != DefaultDevice || c.Tunnel.UDPPort != DefaultUDPPort ||
		c.NHRP.Holdtime != DefaultHoldtime || c.NHRP.MaxSend != (Rate{DefaultMaxPackets, DefaultMaxPer}) ||
		c.NHRP.MaxReceive != DefaultMaxReceive || c.NHRP.MaxEntries != DefaultMaxEntries ||
		c.NHRP.MaxEntriesPerNBMA != DefaultMaxEntriesPerNBMA || c.NHRP.AuthenticationMaxSkew != DefaultAuthMaxSkew ||
		c.LogLevel != DefaultLogLevel || c.Hooks[0].Timeout != DefaultHookTimeout {
		t.Errorf("defaults differ from the Default constants: %+v", c)
	}
	if f := fieldSpecAt(t, "hooks"); f.maxItems != MaxHooks {
		t.Errorf("hooks max %d, MaxHooks %d", f.maxItems, MaxHooks)
	}
	if f := fieldSpecAt(t, "nhrp.registration-timeout"); f.valid != validRegTime {
		t.Errorf("registration-timeout valid tag %q differs from validRegTime", f.valid)
	}
}

func fieldSpecAt(t *testing.T, path string) *fieldSpec {
	t.Helper()
	var found *fieldSpec
	schemaFields(func(p string, f *fieldSpec) {
		if p == path {
			found = f
		}
	})
	if found == nil {
		t.Fatalf("no field %s", path)
	}
	return found
}

// TestSchemaTags: bad tags are refused when the schema is built.
func TestSchemaTags(t *testing.T) {
	type good struct {
		A int `yaml:"a" range:"1..2" valid:"1 or 2" default:"2"`
	}
	if s := buildSpec(reflect.TypeFor[good](), ""); s.fields[0].defVal.Int() != 2 {
		t.Errorf("default %v", s.fields[0].defVal)
	}
	for _, typ := range []reflect.Type{
		reflect.TypeFor[struct {
			A int `yaml:"a" range:"1..2" default:"3"`
		}](),
		reflect.TypeFor[struct {
			A int `yaml:"a"`
		}](),
		reflect.TypeFor[struct {
			A int `range:"1..2"`
		}](),
		reflect.TypeFor[struct {
			A string `yaml:"a" check:"nosuch"`
		}](),
		reflect.TypeFor[struct {
			A string `yaml:"a" check:"name" default-if:"tcp"`
		}](),
		reflect.TypeFor[struct {
			A bool `yaml:"a" default:"yes"`
		}](),
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%v: no panic", typ)
				}
			}()
			buildSpec(typ, "")
		}()
	}
}

// TestDocFields checks docs/CONFIG.md against the schema: every field has a
// row in its section's table giving its default (or "required", or
// "none..."), no row names a field the schema lacks, and the defaults at
// a glance name only schema fields and every field with a default.
func TestDocFields(t *testing.T) {
	doc, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	fieldsAt := strings.Index(text, "\n## Fields\n")
	glanceAt := strings.Index(text, "\n## Defaults at a glance\n")
	if fieldsAt < 0 || glanceAt < fieldsAt {
		t.Fatal("docs/CONFIG.md lacks ## Fields or ## Defaults at a glance")
	}
	heading := regexp.MustCompile("^#{3,4} (?:Top level|`([a-z.\\-\\[\\]]+)`)$")
	row := regexp.MustCompile("^\\| `([a-z-]+)` \\| ([^|]*) \\|")
	rows := map[string]string{}
	prefix := ""
	for _, line := range strings.Split(text[fieldsAt:glanceAt], "\n") {
		if m := heading.FindStringSubmatch(line); m != nil {
			prefix = m[1]
			continue
		}
		if m := row.FindStringSubmatch(line); m != nil {
			path := join(prefix, m[1])
			if _, dup := rows[path]; dup {
				t.Errorf("docs/CONFIG.md: %s has two rows", path)
			}
			rows[path] = strings.ReplaceAll(strings.TrimSpace(m[2]), "`", "")
		}
	}
	withDefault := map[string]bool{}
	schemaFields(func(path string, f *fieldSpec) {
		cell, ok := rows[path]
		delete(rows, path)
		switch {
		case !ok:
			t.Errorf("docs/CONFIG.md has no row for %s", path)
		case f.required != "":
			if cell != "required" {
				t.Errorf("docs/CONFIG.md: %s is required, not %q", path, cell)
			}
		case f.hasDef:
			withDefault[path] = true
			if !regexp.MustCompile(`(^|\W)` + regexp.QuoteMeta(f.def) + `(\W|$)`).MatchString(cell) {
				t.Errorf("docs/CONFIG.md: %s defaults to %s, not %q", path, f.def, cell)
			}
			if f.defIf != "" && !strings.Contains(cell, "with "+f.defIf) {
				t.Errorf("docs/CONFIG.md: %s defaults to %s only with %s, not %q", path, f.def, f.defIf, cell)
			}
		case f.derived != "":
			withDefault[path] = true
			if !strings.Contains(cell, f.derived) {
				t.Errorf("docs/CONFIG.md: %s defaults to %s, not %q", path, f.derived, cell)
			}
		case !strings.HasPrefix(cell, "none"):
			t.Errorf("docs/CONFIG.md: %s has no default, not %q", path, cell)
		}
	})
	for path := range rows {
		t.Errorf("docs/CONFIG.md documents %s, which is not a field", path)
	}

	glance := text[glanceAt:]
	name := regexp.MustCompile("`([a-z][a-z.\\-\\[\\]]*)`")
	for _, line := range strings.Split(glance, "\n") {
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " |")
		for _, m := range name.FindAllStringSubmatch(first, -1) {
			if !isSchemaPath(m[1]) {
				t.Errorf("docs/CONFIG.md defaults at a glance: %s is not a field", m[1])
			}
		}
	}
	for path := range withDefault {
		if !strings.Contains(glance, "`"+path+"`") {
			t.Errorf("docs/CONFIG.md defaults at a glance lacks %s", path)
		}
	}
}

func isSchemaPath(path string) bool {
	found := false
	schemaFields(func(p string, f *fieldSpec) { found = found || p == path })
	return found
}
