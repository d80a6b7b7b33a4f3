package config

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/nbma"
)

func key(k uint32) *uint32 { return &k }

var (
	a  = netip.MustParseAddr
	pf = netip.MustParsePrefix
)

func TestLoadExamples(t *testing.T) {
	tests := []struct {
		file string
		hub  bool
		want Config
	}{
		{
			file: "testdata/hub.yaml",
			hub:  true,
			want: Config{
				Name:      "hub1",
				LogLevel:  slog.LevelInfo,
				LogFormat: "text",
				APISocket: "/run/dmvpn/hub1.sock",
				Tunnel: Tunnel{
					Device:    "dmvpn0",
					Address:   pf("10.0.0.1/24"),
					Source:    a("192.0.2.1"),
					Key:       key(42),
					MTU:       1400,
					Transport: nbma.TransportGRE,
				},
				NHRP: NHRP{
					NetworkID:           1,
					Holdtime:            600 * time.Second,
					RegistrationTimeout: 200 * time.Second,
					Authentication:      "s3cret",
					Map: []StaticMap{
						{Address: a("10.0.0.2"), NBMA: a("192.0.2.2"), Multicast: true},
					},
					Redirect:   true,
					Unique:     true,
					MaxSend:    Rate{Packets: 10000, Interval: 10 * time.Second},
					MaxReceive: DefaultMaxReceive, MaxHoldtime: DefaultMaxHoldtime, MaxEntries: DefaultMaxEntries,
					MaxEntriesPerNBMA: DefaultMaxEntriesPerNBMA, AuthenticationMaxSkew: DefaultAuthMaxSkew,
				},
				Routes: []Route{{Prefix: pf("10.2.0.0/16"), Via: a("10.0.0.2")}},
			},
		},
		{
			file: "testdata/spoke.yaml",
			want: Config{
				Name:      "spoke1",
				LogLevel:  slog.LevelDebug,
				LogFormat: "text",
				APISocket: "/run/dmvpn/spoke1.sock",
				Tunnel: Tunnel{
					Device:    "dmvpn0",
					Address:   pf("10.0.0.11/24"),
					Source:    a("198.51.100.1"),
					Key:       key(42),
					MTU:       1400,
					Transport: nbma.TransportGRE,
				},
				NHRP: NHRP{
					NetworkID:           1,
					Holdtime:            600 * time.Second,
					RegistrationTimeout: 200 * time.Second,
					Authentication:      "s3cret",
					NHS: []NHS{
						{Address: a("10.0.0.1"), NBMA: a("192.0.2.1")},
						{Address: a("10.0.0.2"), NBMA: a("192.0.2.2")},
					},
					Shortcut:   true,
					Unique:     true,
					MaxSend:    Rate{Packets: 10000, Interval: 10 * time.Second},
					MaxReceive: DefaultMaxReceive, MaxHoldtime: DefaultMaxHoldtime, MaxEntries: DefaultMaxEntries,
					MaxEntriesPerNBMA: DefaultMaxEntriesPerNBMA, AuthenticationMaxSkew: DefaultAuthMaxSkew,
				},
				Routes: []Route{
					{Prefix: pf("10.1.0.0/16"), Via: a("10.0.0.1")},
					{Prefix: pf("0.0.0.0/0"), Via: a("10.0.0.1")},
				},
				Metrics: Metrics{Listen: netip.MustParseAddrPort("127.0.0.1:9273")},
			},
		},
		{
			file: "testdata/spoke-udp6.yaml",
			want: Config{
				Name:      "spoke6",
				LogLevel:  slog.LevelInfo,
				LogFormat: "text",
				APISocket: "/run/dmvpn/spoke6.sock",
				Tunnel: Tunnel{
					Device:    "dmvpn0",
					Address:   pf("2001:db8:100::11/64"),
					Source:    a("2001:db8:ffff::11"),
					MTU:       1400,
					Transport: nbma.TransportUDP,
					UDPPort:   14754,
				},
				NHRP: NHRP{
					NetworkID:           7,
					Holdtime:            300 * time.Second,
					RegistrationTimeout: 100 * time.Second,
					NHS: []NHS{
						{Address: a("2001:db8:100::1"), NBMA: a("2001:db8:ffff::1"), Port: 4754},
						{Address: a("2001:db8:100::2"), NBMA: a("2001:db8:ffff::2"), Port: 4755},
					},
					Map: []StaticMap{
						{Address: a("2001:db8:100::3"), NBMA: a("2001:db8:ffff::3"), Port: 4754},
					},
					Shortcut:   true,
					Unique:     true,
					MaxSend:    Rate{Packets: 10000, Interval: 10 * time.Second},
					MaxReceive: DefaultMaxReceive, MaxHoldtime: DefaultMaxHoldtime, MaxEntries: DefaultMaxEntries,
					MaxEntriesPerNBMA: DefaultMaxEntriesPerNBMA, AuthenticationMaxSkew: DefaultAuthMaxSkew,
				},
				Routes: []Route{{Prefix: pf("2001:db8:1::/48"), Via: a("2001:db8:100::1")}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := Load(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*c, tt.want) {
				t.Errorf("Load(%s) =\n%+v\nwant\n%+v", tt.file, *c, tt.want)
			}
			if c.IsHub() != tt.hub {
				t.Errorf("IsHub() = %v, want %v", c.IsHub(), tt.hub)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("min.yaml", []byte(`
name: s1
tunnel:
  address: 10.0.0.11/24
  source: 198.51.100.1
nhrp:
  network-id: 1
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Name:      "s1",
		LogLevel:  slog.LevelInfo,
		LogFormat: "text",
		APISocket: "/run/dmvpn/s1.sock",
		Tunnel: Tunnel{
			Device:    "dmvpn0",
			Address:   pf("10.0.0.11/24"),
			Source:    a("198.51.100.1"),
			MTU:       1400,
			Transport: nbma.TransportGRE,
		},
		NHRP: NHRP{
			NetworkID:           1,
			Holdtime:            600 * time.Second,
			RegistrationTimeout: 200 * time.Second,
			Unique:              true,
			MaxSend:             Rate{Packets: 10000, Interval: 10 * time.Second},
			MaxReceive:          DefaultMaxReceive, MaxHoldtime: DefaultMaxHoldtime, MaxEntries: DefaultMaxEntries,
			MaxEntriesPerNBMA: DefaultMaxEntriesPerNBMA, AuthenticationMaxSkew: DefaultAuthMaxSkew,
		},
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", *c, want)
	}
	if !c.IsHub() {
		t.Error("a node without nhs is not a hub")
	}
	if got := c.NHRP.MaxSend.String(); got != "10000/10s" {
		t.Errorf("MaxSend.String() = %q", got)
	}
	if got := c.Tunnel.Subnet(); got != pf("10.0.0.0/24") {
		t.Errorf("Subnet() = %v", got)
	}
}

// TestDefaultsUDP checks the defaults that depend on the transport, and the
// values that override defaults.
func TestDefaultsUDP(t *testing.T) {
	c, err := Parse("udp.yaml", []byte(`
name: s1
tunnel:
  address: 10.0.0.11/24
  source: 198.51.100.1
  transport: udp
nhrp:
  network-id: 1
  holdtime: 90
  registration-timeout: 20s
  unique: false
  max-send: 100/1m
  nhs:
    - address: 10.0.0.1
      nbma: 192.0.2.1
  map:
    - address: 10.0.0.2
      nbma: 192.0.2.2
      port: 10000
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tunnel.UDPPort != 4754 || c.NHRP.NHS[0].Port != 4754 || c.NHRP.Map[0].Port != 10000 {
		t.Errorf("ports: tunnel %d, nhs %d, map %d; want 4754, 4754, 10000", c.Tunnel.UDPPort, c.NHRP.NHS[0].Port, c.NHRP.Map[0].Port)
	}
	if got, want := c.Tunnel.LocalEndpoint(), netip.MustParseAddrPort("198.51.100.1:4754"); got != want {
		t.Errorf("LocalEndpoint() = %v, want %v", got, want)
	}
	if got, want := c.NHRP.NHS[0].Endpoint(), netip.MustParseAddrPort("192.0.2.1:4754"); got != want {
		t.Errorf("NHS Endpoint() = %v, want %v", got, want)
	}
	if c.NHRP.Holdtime != 90*time.Second || c.NHRP.RegistrationTimeout != 20*time.Second {
		t.Errorf("holdtime %v, registration-timeout %v; want 1m30s, 20s", c.NHRP.Holdtime, c.NHRP.RegistrationTimeout)
	}
	if c.NHRP.Unique {
		t.Error("unique: false ignored")
	}
	if c.NHRP.MaxSend != (Rate{100, time.Minute}) {
		t.Errorf("max-send = %v", c.NHRP.MaxSend)
	}
	if c.IsHub() {
		t.Error("a node with nhs is a hub")
	}
}

// base is a valid spoke configuration; error cases build on it.
const base = `name: s1
tunnel:
  address: 10.0.0.11/24
  source: 198.51.100.1
nhrp:
  network-id: 1
`

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every error, in order, without the "f.yaml:" prefix
	}{
		// Structure.
		{"empty file", ``, []string{
			`the file is empty (required: name, tunnel, nhrp)`,
		}},
		{"comments only", "# nothing\n", []string{
			`the file is empty (required: name, tunnel, nhrp)`,
		}},
		// yaml.v3 gives the line where the construct with the error
		// starts, 0-based for parser errors: here the flow list on line 3.
		{"syntax", "name: s1\ntunnel:\n  address: [10.0.0.1\n", []string{
			`2: YAML syntax: did not find expected ',' or ']'`,
		}},
		{"two documents", base + "---\nname: s2\n", []string{
			`7:1: a second YAML document (valid: exactly one document per file)`,
		}},
		{"root is a list", "- name: s1\n", []string{
			`1:1: expected a mapping of fields, got a list (valid here: name, log-level, log-format, log-levels, api-socket, tunnel, nhrp, routes, bgp, ipsec, metrics, hooks)`,
		}},
		{"section is a scalar", "name: s1\ntunnel: dmvpn0\nnhrp:\n  network-id: 1\n", []string{
			`2:9: tunnel: expected a mapping of fields, got the value "dmvpn0" (valid here: device, address, source, key, mtu, transport, udp-port)`,
		}},
		{"list is a mapping", base + "  nhs:\n    address: 10.0.0.1\n    nbma: 192.0.2.1\n", []string{
			`8:5: nhrp.nhs: expected a list, got a mapping of fields (valid: a list of hubs, each with address, nbma and optionally port)`,
		}},
		{"scalar is a list", base + "  holdtime: [600s]\n", []string{
			`7:13: nhrp.holdtime: expected a single value, got a list (valid: whole seconds from 1s to 65535s, as a duration such as 600s or 10m, or an integer number of seconds)`,
		}},
		{"no value", base + "  holdtime:\n", []string{
			`7:3: nhrp.holdtime: has no value (valid: whole seconds from 1s to 65535s, as a duration such as 600s or 10m, or an integer number of seconds)`,
		}},

		// Unknown and duplicate fields.
		{"unknown top-level field with suggestion", base + "tunel:\n  mtu: 1400\n", []string{
			`7:1: unknown field "tunel" (valid here: name, log-level, log-format, log-levels, api-socket, tunnel, nhrp, routes, bgp, ipsec, metrics, hooks; did you mean "tunnel"?)`,
		}},
		{"unknown field, separator slip", "log_level: debug\n" + base, []string{
			`1:1: unknown field "log_level" (valid here: name, log-level, log-format, log-levels, api-socket, tunnel, nhrp, routes, bgp, ipsec, metrics, hooks; did you mean "log-level"?)`,
		}},
		{"unknown nested field with suggestion", base + "  holdtim: 600s\n", []string{
			`7:3: nhrp: unknown field "holdtim" (valid here: network-id, holdtime, registration-timeout, authentication, authentication-keys, authentication-max-skew, nhs, map, shortcut, redirect, unique, max-send, max-receive, max-holdtime, max-entries, max-entries-per-nbma; did you mean "holdtime"?)`,
		}},
		{"unknown field in a list entry", base + "  nhs:\n    - address: 10.0.0.1\n      nbma: 192.0.2.1\n      multicast: true\n", []string{
			`10:7: nhrp.nhs[0]: unknown field "multicast" (valid here: address, nbma, port)`,
		}},
		{"unknown field without suggestion", base + "ospf:\n  area: 0\n", []string{
			`7:1: unknown field "ospf" (valid here: name, log-level, log-format, log-levels, api-socket, tunnel, nhrp, routes, bgp, ipsec, metrics, hooks)`,
		}},
		{"duplicate top-level field", base + "name: s2\n", []string{
			`7:1: duplicate field "name" (first at line 1; valid: each field once)`,
		}},
		{"duplicate nested field", base + "  network-id: 2\n", []string{
			`7:3: nhrp: duplicate field "network-id" (first at line 6; valid: each field once)`,
		}},

		// Required fields.
		{"missing name and nhrp", "tunnel:\n  address: 10.0.0.11/24\n  source: 198.51.100.1\n", []string{
			`1:1: missing required field "name" (the node's name, e.g. name: spoke1)`,
			`1:1: missing required field "nhrp" (a section with at least network-id)`,
		}},
		{"missing tunnel fields", "name: s1\ntunnel:\n  mtu: 1400\nnhrp:\n  network-id: 1\n", []string{
			`2:1: tunnel: missing required field "address" (this node's overlay address with the tunnel subnet length, e.g. address: 10.0.0.11/24)`,
			`2:1: tunnel: missing required field "source" (this node's NBMA address, e.g. source: 198.51.100.1)`,
		}},
		{"empty section", "name: s1\ntunnel:\n  address: 10.0.0.11/24\n  source: 198.51.100.1\nnhrp:\n", []string{
			`5:1: nhrp: missing required field "network-id" (an integer 1..4294967295, e.g. network-id: 1)`,
		}},
		{"missing nhs nbma", base + "  nhs:\n    - address: 10.0.0.1\n", []string{
			`8:7: nhrp.nhs[0]: missing required field "nbma" (the hub's NBMA address, e.g. nbma: 192.0.2.1)`,
		}},
		{"missing route via", base + "routes:\n  - prefix: 10.1.0.0/16\n", []string{
			`8:5: routes[0]: missing required field "via" (the next hop on the tunnel subnet, e.g. via: 10.0.0.1)`,
		}},

		// Single values.
		{"name uppercase", "name: Spoke1\ntunnel:\n  address: 10.0.0.11/24\n  source: 198.51.100.1\nnhrp:\n  network-id: 1\n", []string{
			`1:7: name: "Spoke1" is not valid (valid: 1 to 63 characters from a-z, 0-9 and '-', not starting with '-', e.g. spoke1)`,
		}},
		{"log-level", base + "log-level: verbose\n", []string{
			`7:12: log-level: "verbose" is not valid (valid: debug, info, warn, error)`,
		}},
		{"api-socket too long", base + "api-socket: /" + strings.Repeat("x", 107) + "\n", []string{
			`7:13: api-socket: "/` + strings.Repeat("x", 107) + `" is not valid (valid: a Unix socket path of at most 107 bytes, e.g. /run/dmvpn/spoke1.sock)`,
		}},
		{"transport", strings.Replace(base, "  source: 198.51.100.1\n", "  source: 198.51.100.1\n  transport: tcp\n", 1), []string{
			`5:14: tunnel.transport: "tcp" is not valid (valid: gre, udp)`,
		}},
	}
	// Cases that edit the tunnel section: the lines given are inserted
	// after "  source: 198.51.100.1" (line 4), so the first is line 5.
	tunnelCases := []struct {
		name  string
		lines string
		want  []string
	}{
		{"device too long", "  device: dmvpn-hub-to-spokes\n", []string{
			`5:11: tunnel.device: "dmvpn-hub-to-spokes" is 19 bytes long (valid: a Linux interface name of 1 to 15 bytes without '/', ':' or whitespace, e.g. dmvpn0)`,
		}},
		{"device with slash", "  device: gre/0\n", []string{
			`5:11: tunnel.device: "gre/0" contains '/', ':' or whitespace (valid: a Linux interface name of 1 to 15 bytes without '/', ':' or whitespace, e.g. dmvpn0)`,
		}},
		{"device with space", "  device: \"dmvpn 0\"\n", []string{
			`5:11: tunnel.device: "dmvpn 0" contains '/', ':' or whitespace (valid: a Linux interface name of 1 to 15 bytes without '/', ':' or whitespace, e.g. dmvpn0)`,
		}},
		{"key too big", "  key: 4294967296\n", []string{
			`5:8: tunnel.key: "4294967296" is not valid (valid: an integer 0..4294967295)`,
		}},
		{"key negative", "  key: -1\n", []string{
			`5:8: tunnel.key: "-1" is not valid (valid: an integer 0..4294967295)`,
		}},
		{"key quoted", "  key: \"42\"\n", []string{
			`5:8: tunnel.key: "42" is quoted, which makes it a string (valid: an integer 0..4294967295, without quotes)`,
		}},
		{"key float", "  key: 4.2\n", []string{
			`5:8: tunnel.key: "4.2" is not valid (valid: an integer 0..4294967295)`,
		}},
		{"key word", "  key: secret\n", []string{
			`5:8: tunnel.key: "secret" is not valid (valid: an integer 0..4294967295)`,
		}},
		{"mtu too small", "  mtu: 500\n", []string{
			`5:8: tunnel.mtu: "500" is not valid (valid: an integer 576..9000, at least 1280 with an IPv6 tunnel.address)`,
		}},
		{"mtu too big", "  mtu: 9001\n", []string{
			`5:8: tunnel.mtu: "9001" is not valid (valid: an integer 576..9000, at least 1280 with an IPv6 tunnel.address)`,
		}},
		{"udp-port with gre", "  udp-port: 4754\n", []string{
			`5:13: tunnel.udp-port: is only used with tunnel.transport udp, and the transport is gre (valid: remove it, or set tunnel.transport: udp)`,
		}},
		{"udp-port zero", "  transport: udp\n  udp-port: 0\n", []string{
			`6:13: tunnel.udp-port: "0" is not valid (valid: a UDP port 1..65535)`,
		}},
	}
	for _, tc := range tunnelCases {
		tests = append(tests, struct {
			name string
			yaml string
			want []string
		}{tc.name, strings.Replace(base, "  source: 198.51.100.1\n", "  source: 198.51.100.1\n"+tc.lines, 1), tc.want})
	}
	// Whole files, for cases that change the required fields.
	tests = append(tests, []struct {
		name string
		yaml string
		want []string
	}{
		{"address without length", "name: s1\ntunnel:\n  address: 10.0.0.11\n  source: 198.51.100.1\nnhrp:\n  network-id: 1\n", []string{
			`3:12: tunnel.address: "10.0.0.11" has no subnet length (valid: this node's overlay address with the tunnel subnet length, e.g. 10.0.0.11/24 or 2001:db8:100::11/64, e.g. 10.0.0.11/24)`,
		}},
		{"address is the network address", "name: s1\ntunnel:\n  address: 10.0.0.0/24\n  source: 198.51.100.1\nnhrp:\n  network-id: 1\n", []string{
			`3:12: tunnel.address: "10.0.0.0/24" is the network address of 10.0.0.0/24 (valid: a host address in 10.0.0.0/24, e.g. 10.0.0.1/24)`,
		}},
		{"address is the broadcast address", "name: s1\ntunnel:\n  address: 10.0.0.255/24\n  source: 198.51.100.1\nnhrp:\n  network-id: 1\n", []string{
			`3:12: tunnel.address: "10.0.0.255/24" is the broadcast address of 10.0.0.0/24 (valid: a host address in 10.0.0.0/24, e.g. 10.0.0.1/24)`,
		}},
		{"source is an interface name", "name: s1\ntunnel:\n  address: 10.0.0.11/24\n  source: eth0\nnhrp:\n  network-id: 1\n", []string{
			`4:11: tunnel.source: "eth0" is not valid (valid: this node's NBMA address as an IP address literal, e.g. 198.51.100.1)`,
		}},
		{"source is a prefix", "name: s1\ntunnel:\n  address: 10.0.0.11/24\n  source: 198.51.100.1/24\nnhrp:\n  network-id: 1\n", []string{
			`4:11: tunnel.source: "198.51.100.1/24" is a prefix (valid: this node's NBMA address as an IP address literal, e.g. 198.51.100.1, without /24)`,
		}},
		{"source is multicast", "name: s1\ntunnel:\n  address: 10.0.0.11/24\n  source: 239.1.1.1\nnhrp:\n  network-id: 1\n", []string{
			`4:11: tunnel.source: "239.1.1.1" is a multicast address (valid: this node's NBMA address as an IP address literal, e.g. 198.51.100.1)`,
		}},
		{"IPv6 source with transport gre", "name: s1\ntunnel:\n  address: 10.0.0.11/24\n  source: 2001:db8::11\nnhrp:\n  network-id: 1\n", []string{
			`4:11: tunnel.source: 2001:db8::11 is IPv6, but transport gre carries GRE over IPv4 only (valid: an IPv4 address, or tunnel.transport: udp)`,
		}},
		{"network-id zero", strings.Replace(base, "network-id: 1", "network-id: 0", 1), []string{
			`6:15: nhrp.network-id: "0" is not valid (valid: an integer 1..4294967295)`,
		}},
		{"udp: nhs is this node's endpoint, another port is not", "name: s1\ntunnel:\n  address: 10.0.0.11/24\n  source: 198.51.100.1\n  transport: udp\nnhrp:\n  network-id: 1\n  nhs:\n    - address: 10.0.0.1\n      nbma: 198.51.100.1\n    - address: 10.0.0.2\n      nbma: 198.51.100.1\n      port: 4755\n", []string{
			`10:13: nhrp.nhs[0].nbma: 198.51.100.1 is this node's own tunnel.source and tunnel.udp-port (198.51.100.1:4754) (valid: the peer's NBMA address)`,
		}},
		{"udp: map contradicts nhs port", "name: s1\ntunnel:\n  address: 10.0.0.11/24\n  source: 198.51.100.1\n  transport: udp\nnhrp:\n  network-id: 1\n  nhs:\n    - address: 10.0.0.1\n      nbma: 192.0.2.1\n      port: 4755\n  map:\n    - address: 10.0.0.1\n      nbma: 192.0.2.1\n", []string{
			`14:13: nhrp.map[0].nbma: 192.0.2.1:4754 contradicts nhrp.nhs[0] (line 9), which puts 10.0.0.1 at 192.0.2.1:4755 (valid: 192.0.2.1:4755, or remove this mapping)`,
		}},
		{"IPv6 overlay mtu", "name: s1\ntunnel:\n  address: 2001:db8::11/64\n  source: 198.51.100.1\n  mtu: 1200\nnhrp:\n  network-id: 1\n", []string{
			`5:8: tunnel.mtu: 1200 is below 1280, the IPv6 minimum, and tunnel.address is IPv6 (valid: an integer 1280..9000)`,
		}},
	}...)
	// Cases that append to the nhrp section (lines 7 on).
	nhrpCases := []struct {
		name  string
		lines string
		want  []string
	}{
		{"holdtime zero", "  holdtime: 0s\n", []string{
			`7:13: nhrp.holdtime: "0s" is not valid (valid: whole seconds from 1s to 65535s, as a duration such as 600s or 10m, or an integer number of seconds)`,
		}},
		{"holdtime too long", "  holdtime: 65536\n", []string{
			`7:13: nhrp.holdtime: "65536" is not valid (valid: whole seconds from 1s to 65535s, as a duration such as 600s or 10m, or an integer number of seconds)`,
		}},
		{"holdtime fraction", "  holdtime: 1.5s\n", []string{
			`7:13: nhrp.holdtime: "1.5s" is not valid (valid: whole seconds from 1s to 65535s, as a duration such as 600s or 10m, or an integer number of seconds)`,
		}},
		{"holdtime float", "  holdtime: 1.5\n", []string{
			`7:13: nhrp.holdtime: "1.5" is not valid (valid: whole seconds from 1s to 65535s, as a duration such as 600s or 10m, or an integer number of seconds)`,
		}},
		{"registration-timeout not below holdtime", "  holdtime: 60s\n  registration-timeout: 1m\n", []string{
			`8:25: nhrp.registration-timeout: 1m0s is not shorter than nhrp.holdtime 1m0s, so registrations would expire before they are refreshed (valid: 0s for holdtime/3, or whole seconds from 1s to less than nhrp.holdtime, e.g. 200s)`,
		}},
		{"registration-timeout against default holdtime", "  registration-timeout: 601\n", []string{
			`7:25: nhrp.registration-timeout: 10m1s is not shorter than nhrp.holdtime 10m0s, so registrations would expire before they are refreshed (valid: 0s for holdtime/3, or whole seconds from 1s to less than nhrp.holdtime, e.g. 200s)`,
		}},
		{"authentication too long", "  authentication: 123456789\n", []string{
			`7:19: nhrp.authentication: is 9 bytes long (valid: a string of 1 to 8 bytes; Cisco sends at most 8)`,
		}},
		{"authentication empty", "  authentication: \"\"\n", []string{
			`7:19: nhrp.authentication: is empty (valid: a string of 1 to 8 bytes)`,
		}},
		{"shortcut yes", "  shortcut: yes\n", []string{
			`7:13: nhrp.shortcut: "yes" is not valid (valid: true, false)`,
		}},
		{"max-send without interval", "  max-send: 100\n", []string{
			`7:13: nhrp.max-send: "100" is not valid (valid: PACKETS/INTERVAL with 1..65535 packets and an interval of whole seconds from 1s to 65535s, e.g. 10000/10s)`,
		}},
		{"max-send zero", "  max-send: 0/10s\n", []string{
			`7:13: nhrp.max-send: "0/10s" is not valid (valid: PACKETS/INTERVAL with 1..65535 packets and an interval of whole seconds from 1s to 65535s, e.g. 10000/10s)`,
		}},
		{"nhs outside the tunnel subnet", "  nhs:\n    - address: 10.0.1.1\n      nbma: 192.0.2.1\n", []string{
			`8:16: nhrp.nhs[0].address: 10.0.1.1 is outside the tunnel subnet 10.0.0.0/24 (tunnel.address 10.0.0.11/24) (valid: an address in 10.0.0.0/24)`,
		}},
		{"nhs of the other family", "  nhs:\n    - address: 2001:db8::1\n      nbma: 192.0.2.1\n", []string{
			`8:16: nhrp.nhs[0].address: 2001:db8::1 is IPv6 but tunnel.address 10.0.0.11/24 is IPv4 (valid: an IPv4 address in 10.0.0.0/24)`,
		}},
		{"nhs nbma of the other family", "  nhs:\n    - address: 10.0.0.1\n      nbma: 2001:db8::1\n", []string{
			`9:13: nhrp.nhs[0].nbma: 2001:db8::1 is IPv6 but tunnel.source 198.51.100.1 is IPv4 (valid: an IPv4 address)`,
		}},
		{"nhs is this node", "  nhs:\n    - address: 10.0.0.11\n      nbma: 198.51.100.1\n", []string{
			`8:16: nhrp.nhs[0].address: 10.0.0.11 is this node's own tunnel.address (valid: another node's address in 10.0.0.0/24)`,
			`9:13: nhrp.nhs[0].nbma: 198.51.100.1 is this node's own tunnel.source (valid: the peer's NBMA address)`,
		}},
		{"nhs is the broadcast address", "  nhs:\n    - address: 10.0.0.255\n      nbma: 192.0.2.1\n", []string{
			`8:16: nhrp.nhs[0].address: 10.0.0.255 is the broadcast address of the tunnel subnet 10.0.0.0/24 (valid: a host address in 10.0.0.0/24)`,
		}},
		{"duplicate nhs", "  nhs:\n    - address: 10.0.0.1\n      nbma: 192.0.2.1\n    - address: 10.0.0.1\n      nbma: 192.0.2.2\n", []string{
			`10:16: nhrp.nhs[1].address: 10.0.0.1 is already nhrp.nhs[0] (line 8) (valid: each NHS once)`,
		}},
		{"duplicate nhs nbma", "  nhs:\n    - address: 10.0.0.1\n      nbma: 192.0.2.1\n    - address: 10.0.0.2\n      nbma: 192.0.2.1\n", []string{
			`11:13: nhrp.nhs[1].nbma: 192.0.2.1 is already the NBMA address of nhrp.nhs[0] (line 8) (valid: each NHS once, at its own NBMA address)`,
		}},
		{"nhs port with gre", "  nhs:\n    - address: 10.0.0.1\n      nbma: 192.0.2.1\n      port: 4754\n", []string{
			`10:13: nhrp.nhs[0].port: is only used with tunnel.transport udp, and the transport is gre (valid: remove it, or set tunnel.transport: udp)`,
		}},
		{"nhs nbma IPv4-mapped and with a zone", "  nhs:\n    - address: 10.0.0.1\n      nbma: ::ffff:192.0.2.1\n    - address: 10.0.0.2\n      nbma: fe80::1%eth0\n", []string{
			`9:13: nhrp.nhs[0].nbma: "::ffff:192.0.2.1" is an IPv4-mapped IPv6 address (valid: the IPv4 form 192.0.2.1)`,
			`11:13: nhrp.nhs[1].nbma: "fe80::1%eth0" has a zone (valid: an NBMA address as an IP address literal, e.g. 192.0.2.1)`,
		}},
		{"nhs nbma is a name", "  nhs:\n    - address: 10.0.0.1\n      nbma: hub1.example.net\n", []string{
			`9:13: nhrp.nhs[0].nbma: "hub1.example.net" is not valid (valid: an NBMA address as an IP address literal, e.g. 192.0.2.1)`,
		}},
		{"duplicate map", "  map:\n    - address: 10.0.0.2\n      nbma: 192.0.2.2\n    - address: 10.0.0.2\n      nbma: 192.0.2.3\n", []string{
			`10:16: nhrp.map[1].address: 10.0.0.2 is already mapped by nhrp.map[0] (line 8) (valid: one mapping per address)`,
		}},
		{"map contradicts nhs", "  nhs:\n    - address: 10.0.0.1\n      nbma: 192.0.2.1\n  map:\n    - address: 10.0.0.1\n      nbma: 192.0.2.9\n", []string{
			`12:13: nhrp.map[0].nbma: 192.0.2.9 contradicts nhrp.nhs[0] (line 8), which puts 10.0.0.1 at 192.0.2.1 (valid: 192.0.2.1, or remove this mapping)`,
		}},
		{"map multicast not a bool", "  map:\n    - address: 10.0.0.2\n      nbma: 192.0.2.2\n      multicast: dynamic\n", []string{
			`10:18: nhrp.map[0].multicast: "dynamic" is not valid (valid: true, false)`,
		}},
	}
	for _, tc := range nhrpCases {
		tests = append(tests, struct {
			name string
			yaml string
			want []string
		}{tc.name, base + tc.lines, tc.want})
	}
	// Routes (lines 7 on).
	routeCases := []struct {
		name  string
		lines string
		want  []string
	}{
		{"route with host bits", "routes:\n  - prefix: 10.1.0.1/16\n    via: 10.0.0.1\n", []string{
			`8:13: routes[0].prefix: "10.1.0.1/16" has host bits set (valid: 10.1.0.0/16)`,
		}},
		{"route without length", "routes:\n  - prefix: 10.1.0.1\n    via: 10.0.0.1\n", []string{
			`8:13: routes[0].prefix: "10.1.0.1" has no prefix length (valid: a destination prefix such as 10.1.0.0/16; a single host is 10.1.0.1/32)`,
		}},
		{"route inside the tunnel subnet", "routes:\n  - prefix: 10.0.0.128/25\n    via: 10.0.0.1\n", []string{
			`8:13: routes[0].prefix: 10.0.0.128/25 is inside the tunnel subnet 10.0.0.0/24, which is directly connected (valid: a prefix outside 10.0.0.0/24)`,
		}},
		{"route of the other family", "routes:\n  - prefix: 2001:db8:1::/48\n    via: 10.0.0.1\n", []string{
			`8:13: routes[0].prefix: 2001:db8:1::/48 is IPv6 but tunnel.address 10.0.0.11/24 is IPv4 (valid: an IPv4 prefix)`,
		}},
		{"route via outside the tunnel subnet", "routes:\n  - prefix: 10.1.0.0/16\n    via: 192.0.2.1\n", []string{
			`9:10: routes[0].via: 192.0.2.1 is outside the tunnel subnet 10.0.0.0/24 (tunnel.address 10.0.0.11/24) (valid: an address in 10.0.0.0/24)`,
		}},
		{"route via this node", "routes:\n  - prefix: 10.1.0.0/16\n    via: 10.0.0.11\n", []string{
			`9:10: routes[0].via: 10.0.0.11 is this node's own tunnel.address (valid: another node's address in 10.0.0.0/24)`,
		}},
		{"duplicate route", "routes:\n  - prefix: 10.1.0.0/16\n    via: 10.0.0.1\n  - prefix: 10.1.0.0/16\n    via: 10.0.0.2\n", []string{
			`10:13: routes[1].prefix: 10.1.0.0/16 is already routed by routes[0] (line 8) (valid: one route per prefix)`,
		}},
		{"routes is a mapping", "routes:\n  prefix: 10.1.0.0/16\n", []string{
			`8:3: routes: expected a list, got a mapping of fields (valid: a list of routes, each with prefix and via)`,
		}},
	}
	for _, tc := range routeCases {
		tests = append(tests, struct {
			name string
			yaml string
			want []string
		}{tc.name, base + tc.lines, tc.want})
	}

	seen := make(map[string]bool)
	for _, tt := range tests {
		if seen[tt.name] {
			t.Fatalf("duplicate test name %q", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("f.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if c != nil {
				t.Errorf("config %+v returned with an error", c)
			}
			got := strings.Split(err.Error(), "\n")
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = "f.yaml:" + w
			}
			if strings.HasPrefix(tt.want[0], "the file") {
				want[0] = "f.yaml: " + tt.want[0]
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestAllErrors checks that every problem is reported, not only the first,
// sorted by line, and that each is an *Error with its parts.
func TestAllErrors(t *testing.T) {
	_, err := Parse("spoke1.yaml", []byte(`name: spoke1
routes:
  - prefix: 10.1.0.1/16
    via: 10.0.0.1
tunel:
  address: 10.0.0.11/24
nhrp:
  network-id: 1
  nhs:
    - address: 10.0.0.1
      nbma: 192.0.2.1
    - address: 10.0.0.2
      nbma: 2001:db8::2
tunnel:
  address: 10.0.0.11/24
  source: 198.51.100.1
  transport: tcp
`))
	want := []string{
		`spoke1.yaml:3:13: routes[0].prefix: "10.1.0.1/16" has host bits set (valid: 10.1.0.0/16)`,
		`spoke1.yaml:5:1: unknown field "tunel" (valid here: name, log-level, log-format, log-levels, api-socket, tunnel, nhrp, routes, bgp, ipsec, metrics, hooks; did you mean "tunnel"?)`,
		`spoke1.yaml:13:13: nhrp.nhs[1].nbma: 2001:db8::2 is IPv6 but tunnel.source 198.51.100.1 is IPv4 (valid: an IPv4 address)`,
		`spoke1.yaml:17:14: tunnel.transport: "tcp" is not valid (valid: gre, udp)`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var errs []*Error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("%v is a %T, not an *Error", e, e)
		}
		errs = append(errs, ce)
	}
	got := *errs[2]
	wantErr := Error{File: "spoke1.yaml", Line: 13, Column: 13, Path: "nhrp.nhs[1].nbma",
		Msg: "2001:db8::2 is IPv6 but tunnel.source 198.51.100.1 is IPv4 (valid: an IPv4 address)"}
	if got != wantErr {
		t.Errorf("errs[2] = %+v, want %+v", got, wantErr)
	}
}

func TestIntegerForms(t *testing.T) {
	for _, tt := range []struct {
		text string
		want uint32
	}{{"42", 42}, {"0x2a", 42}, {"08", 8}, {"1_000", 1000}, {"4294967295", 4294967295}, {"0", 0}} {
		c, err := Parse("f.yaml", []byte(strings.Replace(base, "  source: 198.51.100.1\n", "  source: 198.51.100.1\n  key: "+tt.text+"\n", 1)))
		if err != nil {
			t.Errorf("key: %s: %v", tt.text, err)
			continue
		}
		if c.Tunnel.Key == nil || *c.Tunnel.Key != tt.want {
			t.Errorf("key: %s = %v, want %d", tt.text, c.Tunnel.Key, tt.want)
		}
	}
}

func TestAuthenticationNotEchoed(t *testing.T) {
	_, err := Parse("f.yaml", []byte(base+"  authentication: topsecret-password\n"))
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("error %v: want an error that does not contain the secret", err)
	}
}

func TestAliases(t *testing.T) {
	c, err := Parse("f.yaml", []byte(base+`  nhs:
    - address: 10.0.0.1
      nbma: &hub 192.0.2.1
  map:
    - address: 10.0.0.1
      nbma: *hub
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.NHRP.Map[0].NBMA != a("192.0.2.1") {
		t.Errorf("alias: map nbma %v", c.NHRP.Map[0].NBMA)
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load("testdata/does-not-exist.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
}

func TestSuggest(t *testing.T) {
	top := []string{"name", "log-level", "log-format", "log-levels", "api-socket", "tunnel", "nhrp", "routes", "metrics"}
	for _, tt := range []struct{ in, want string }{
		{"tunel", "tunnel"},
		{"Tunnel", "tunnel"},
		{"log_level", "log-level"},
		{"logLevel", "log-level"},
		{"route", "routes"},
		{"nrhp", "nhrp"},
		{"apisocket", "api-socket"},
		{"bgp", ""},
		{"x", ""},
	} {
		if got := suggest(tt.in, top); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestDocExamples parses every ```yaml block of docs/CONFIG.md, so the
// reference cannot drift from the parser.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) < 2 {
		t.Fatalf("docs/CONFIG.md has %d yaml examples, want at least a hub and a spoke", len(blocks))
	}
	for _, f := range []string{"testdata/hub.yaml", "testdata/spoke.yaml", "testdata/spoke-udp6.yaml"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(doc), "```yaml\n"+string(data)+"```") {
			t.Errorf("docs/CONFIG.md does not show %s as it is", f)
		}
	}
	for i, b := range blocks {
		if _, err := Parse("docs/CONFIG.md example", b[1]); err != nil {
			t.Errorf("example %d:\n%s\n%v", i+1, b[1], err)
		}
	}
}
