package bgp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{AS: 65000, RouterID: netip.MustParseAddr("10.0.0.1")}
}

func TestConfigDefaults(t *testing.T) {
	c, err := validConfig().normalize()
	if err != nil {
		t.Fatal(err)
	}
	if c.HoldTime != 90*time.Second || c.Keepalive != 30*time.Second || c.ConnectRetry != 5*time.Second ||
		c.RestartTime != 120*time.Second || c.MaxPrefixes != 10000 || c.ListenPort != 179 || c.Log == nil {
		t.Errorf("defaults: %+v", c)
	}
	c = validConfig()
	c.HoldTime = 9 * time.Second
	if c, err = c.normalize(); err != nil || c.Keepalive != 3*time.Second {
		t.Errorf("keepalive with hold time 9s: %v, %v; want 3s", c.Keepalive, err)
	}
	c = validConfig()
	c.ListenPort = -1
	c.Networks = []netip.Prefix{netip.MustParsePrefix("10.1.2.3/24")}
	c.Neighbors = []Neighbor{{Address: netip.MustParseAddr("::ffff:10.0.0.2"), AS: 1}}
	if c, err = c.normalize(); err != nil || c.ListenPort != -1 || c.Networks[0] != netip.MustParsePrefix("10.1.2.0/24") ||
		c.Neighbors[0].Address != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("normalize: %+v, %v", c, err)
	}
}

func TestConfigErrors(t *testing.T) {
	n := func(a string, as uint32) Neighbor { return Neighbor{Address: netip.MustParseAddr(a), AS: as} }
	many := make([]Neighbor, MaxNeighbors+1)
	for i := range many {
		many[i] = n(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String(), 1)
	}
	for _, tc := range []struct {
		field  string
		change func(*Config)
	}{
		{"AS", func(c *Config) { c.AS = 0 }},
		{"RouterID", func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") }},
		{"RouterID", func(c *Config) { c.RouterID = netip.Addr{} }},
		{"ListenPort", func(c *Config) { c.ListenPort = 70000 }},
		{"ListenPort", func(c *Config) {
			c.ListenPort = -1
			c.Dynamic = []DynamicRange{{Prefix: netip.MustParsePrefix("10.0.0.0/24")}}
		}},
		{"BindDevice", func(c *Config) { c.BindDevice = strings.Repeat("x", 16) }},
		{"LocalAddress", func(c *Config) { c.LocalAddress = netip.IPv4Unspecified() }},
		{"Password", func(c *Config) { c.Password = strings.Repeat("p", MaxPasswordLen+1) }},
		{"HoldTime", func(c *Config) { c.HoldTime = 2 * time.Second }},
		{"HoldTime", func(c *Config) { c.HoldTime = 3500 * time.Millisecond }},
		{"Keepalive", func(c *Config) { c.HoldTime, c.Keepalive = 3*time.Second, 2*time.Second }},
		{"ConnectRetry", func(c *Config) { c.ConnectRetry = 2 * time.Hour }},
		{"RestartTime", func(c *Config) { c.RestartTime = 4096 * time.Second }},
		{"Neighbors", func(c *Config) { c.Neighbors = many }},
		{"Neighbors[0].Address", func(c *Config) { c.Neighbors = []Neighbor{{AS: 1}} }},
		{"Neighbors[0].AS", func(c *Config) { c.Neighbors = []Neighbor{n("10.0.0.2", 0)} }},
		{"Neighbors[1].Address", func(c *Config) { c.Neighbors = []Neighbor{n("10.0.0.2", 1), n("10.0.0.2", 2)} }},
		{"Neighbors[0].Description", func(c *Config) {
			c.Neighbors = []Neighbor{{Address: netip.MustParseAddr("10.0.0.2"), AS: 1, Description: strings.Repeat("d", 81)}}
		}},
		{"Dynamic[0].Prefix", func(c *Config) { c.Dynamic = []DynamicRange{{}} }},
		{"Dynamic[1].Prefix", func(c *Config) {
			c.Dynamic = []DynamicRange{{Prefix: netip.MustParsePrefix("10.0.0.0/24")}, {Prefix: netip.MustParsePrefix("10.0.0.9/24")}}
		}},
		{"Dynamic", func(c *Config) { c.Dynamic = make([]DynamicRange, MaxDynamicRanges+1) }},
		{"Networks[1]", func(c *Config) {
			c.Networks = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.1.2.0/16")}
		}},
		{"Aggregates[0]", func(c *Config) { c.Aggregates = []netip.Prefix{{}} }},
		{"Aggregates", func(c *Config) { c.Aggregates = make([]netip.Prefix, MaxPrefixList+1) }},
	} {
		c := validConfig()
		tc.change(&c)
		_, err := c.normalize()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, ErrConfig) {
			t.Errorf("want an error in %s, got %v", tc.field, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "bgp: config: "+tc.field+": ") || ce.Reason == "" {
			t.Errorf("error text %q", err)
		}
	}
}
