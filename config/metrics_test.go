package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestMetricsListen(t *testing.T) {
	c, err := Parse("f.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Listen.IsValid() {
		t.Errorf("default metrics.listen = %v, want none", c.Metrics.Listen)
	}
	for in, want := range map[string]string{
		"127.0.0.1:9273":    "127.0.0.1:9273",
		"0.0.0.0:9273":      "0.0.0.0:9273",
		`"[::]:9273"`:       "[::]:9273", // quoted: [ starts a YAML list
		`'[2001:db8::1]:1'`: "[2001:db8::1]:1",
		"192.0.2.1:65535":   "192.0.2.1:65535",
	} {
		c, err := Parse("f.yaml", []byte(base+"metrics:\n  listen: "+in+"\n"))
		if err != nil {
			t.Errorf("listen %s: %v", in, err)
			continue
		}
		if c.Metrics.Listen != netip.MustParseAddrPort(want) {
			t.Errorf("listen %s = %v, want %s", in, c.Metrics.Listen, want)
		}
	}
	// An empty section is the default.
	if c, err := Parse("f.yaml", []byte(base+"metrics:\n")); err != nil || c.Metrics.Listen.IsValid() {
		t.Errorf("empty metrics section: %v, %+v", err, c)
	}
}

func TestMetricsErrors(t *testing.T) {
	const valid = "(valid: an IP address and TCP port such as 127.0.0.1:9273, 0.0.0.0:9273 (every address) or [::1]:9273"
	for _, tt := range []struct{ yaml, want string }{
		{"metrics:\n  listen: :9273\n", `8:11: metrics.listen: ":9273" has no address ` + valid + `)`},
		{"metrics:\n  listen: 127.0.0.1\n", `8:11: metrics.listen: "127.0.0.1" has no port ` + valid + `)`},
		{"metrics:\n  listen: localhost:9273\n", `8:11: metrics.listen: "localhost:9273" is not valid ` + valid + `)`},
		{"metrics:\n  listen: 127.0.0.1:0\n", `8:11: metrics.listen: "127.0.0.1:0" has port 0 ` + valid + `; port 1..65535)`},
		{"metrics:\n  listen: 127.0.0.1:65536\n", `8:11: metrics.listen: "127.0.0.1:65536" is not valid ` + valid + `)`},
		{"metrics:\n  listen: \"[fe80::1%eth0]:9273\"\n", `8:11: metrics.listen: "[fe80::1%eth0]:9273" has a zone ` + valid + `)`},
		{"metrics:\n  listen: \"[::ffff:192.0.2.1]:9273\"\n", `8:11: metrics.listen: "[::ffff:192.0.2.1]:9273" is an IPv4-mapped IPv6 address (valid: the IPv4 form 192.0.2.1:9273)`},
		{"metrics:\n  listen: 224.0.0.1:9273\n", `8:11: metrics.listen: "224.0.0.1:9273" is not a unicast address ` + valid + `)`},
		{"metrics:\n  listen:\n", `8:3: metrics.listen: has no value ` + valid + `)`},
		{"metrics:\n  listen: [127.0.0.1:9273]\n", `8:11: metrics.listen: expected a single value, got a list ` + valid + `)`},
		{"metrics:\n  lisen: 127.0.0.1:9273\n", `8:3: metrics: unknown field "lisen" (valid here: listen, peer-limit; did you mean "listen"?)`},
		{"metrics: 127.0.0.1:9273\n", `7:10: metrics: expected a mapping of fields, got the value "127.0.0.1:9273" (valid here: listen, peer-limit)`},
		{"metrics:\n  peer-limit: -1\n", `8:15: metrics.peer-limit: "-1" is not valid (valid: an integer 0..100000)`},
		{"metrics:\n  peer-limit: 100001\n", `8:15: metrics.peer-limit: "100001" is not valid (valid: an integer 0..100000)`},
		{"metrics:\n  peer-limit: ten\n", `8:15: metrics.peer-limit: "ten" is not valid (valid: an integer 0..100000)`},
		{"metrics:\n  listen: 127.0.0.1:9273\n  listen: 127.0.0.1:9274\n", `9:3: metrics: duplicate field "listen" (first at line 8; valid: each field once)`},
	} {
		_, err := Parse("f.yaml", []byte(base+tt.yaml))
		if err == nil {
			t.Errorf("%q: no error", tt.yaml)
			continue
		}
		if got := strings.TrimPrefix(err.Error(), "f.yaml:"); got != tt.want {
			t.Errorf("%q:\n got %s\nwant %s", tt.yaml, got, tt.want)
		}
	}
}

func TestMetricsPeerLimit(t *testing.T) {
	c, err := Parse("f.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics.PeerLimit != 0 {
		t.Errorf("default metrics.peer-limit = %d, want 0", c.Metrics.PeerLimit)
	}
	for in, want := range map[string]int{"0": 0, "1": 1, "50": 50, "100000": 100000} {
		c, err := Parse("f.yaml", []byte(base+"metrics:\n  peer-limit: "+in+"\n"))
		if err != nil {
			t.Errorf("peer-limit %s: %v", in, err)
			continue
		}
		if c.Metrics.PeerLimit != want || c.Metrics.Listen.IsValid() {
			t.Errorf("peer-limit %s = %+v, want %d", in, c.Metrics, want)
		}
	}
	c, err = Parse("f.yaml", []byte(base+"metrics:\n  listen: 127.0.0.1:9273\n  peer-limit: 20\n"))
	if err != nil || c.Metrics.PeerLimit != 20 || c.Metrics.Listen != netip.MustParseAddrPort("127.0.0.1:9273") {
		t.Errorf("listen and peer-limit: %v, %+v", err, c)
	}
}
