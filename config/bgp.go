package config

import (
	"net/netip"
	"reflect"
	"time"

	"go.yaml.in/yaml/v3"
)

// Limits of the bgp section.
const (
	MaxBGPPasswordLen = 80 // RFC 2385 TCP MD5: Linux's TCP_MD5SIG_MAXKEYLEN
	MaxBGPNeighbors   = 1024
	MaxPrefixList     = 1024
)

// BGP is the built-in BGP speaker, running over the overlay device with the
// node's tunnel address (YAML bgp, optional: a node without it runs no
// BGP). A hub is a route reflector that accepts sessions from its
// dynamic-neighbors ranges (by default the whole tunnel subnet, iBGP), so
// adding a spoke changes nothing at the hub; a spoke peers with every NHS.
// Learned best paths become FIB routes (source bgp) and kernel routes on
// the overlay device.
type BGP struct {
	// AS is this node's autonomous system number. YAML as, required in a
	// bgp section, 1..4294967295 (4-octet AS numbers are fine).
	AS uint32 `yaml:"as" range:"1..4294967295" valid:"an AS number 1..4294967295" required:"this node's AS number, e.g. as: 65000"`
	// RouterID is the BGP identifier. YAML router-id, an IPv4 address;
	// default the tunnel address when it is IPv4.
	RouterID netip.Addr `yaml:"router-id" valid:"an IPv4 address, e.g. 10.0.0.1" derived:"tunnel.address when it is IPv4 (required otherwise)"`
	// Port is the TCP port BGP listens on (a hub) and connects to. YAML
	// port, 1..65535; default 179.
	Port uint16 `yaml:"port" range:"1..65535" valid:"a TCP port 1..65535" default:"179"`
	// HoldTime is the hold time offered in OPEN. YAML hold-time, whole
	// seconds 3s..65535s; default 90s.
	HoldTime time.Duration `yaml:"hold-time" range:"3s..65535s" valid:"whole seconds from 3s to 65535s, e.g. 90s" default:"90s"`
	// Keepalive is the keepalive interval. YAML keepalive, whole seconds,
	// 1s up to a third of hold-time; default hold-time/3.
	Keepalive time.Duration `yaml:"keepalive" range:"1s..21845s" valid:"whole seconds from 1s to a third of hold-time, e.g. 30s" derived:"hold-time/3"`
	// ConnectRetry is how long an active session waits between attempts.
	// YAML connect-retry, 2s..3600s (GoBGP waits at least 2s); default 5s.
	ConnectRetry time.Duration `yaml:"connect-retry" range:"2s..3600s" valid:"whole seconds from 2s to 3600s, e.g. 5s" default:"5s"`
	// Password turns on TCP MD5 signatures (RFC 2385, Cisco "neighbor
	// password") on every session, static and dynamic. YAML password,
	// 1..80 bytes; optional. It is never printed.
	Password string `yaml:"password" check:"bgp-password"`
	// GracefulRestart advertises graceful restart (RFC 4724): peers keep
	// our routes for restart-time while we restart. YAML
	// graceful-restart; default false.
	GracefulRestart bool `yaml:"graceful-restart" default:"false"`
	// RestartTime is the graceful restart time advertised. YAML
	// restart-time, 1s..4095s; default 120s.
	RestartTime time.Duration `yaml:"restart-time" range:"1s..4095s" valid:"whole seconds from 1s to 4095s, e.g. 120s" default:"120s"`
	// MaxPrefixes bounds the prefixes accepted from one neighbor; beyond
	// it the session is closed (Cisco "neighbor maximum-prefix"). YAML
	// max-prefixes, 1..1000000; default 10000.
	MaxPrefixes uint32 `yaml:"max-prefixes" range:"1..1000000" valid:"an integer 1..1000000" default:"10000"`
	// PeerNHS makes a spoke open a session to every NHS's overlay address
	// (with nhs-as). YAML peer-nhs; default true.
	PeerNHS bool `yaml:"peer-nhs" default:"true"`
	// NHSAS is the NHSes' AS number. YAML nhs-as, 1..4294967295; default
	// as (iBGP to the hub).
	NHSAS uint32 `yaml:"nhs-as" range:"1..4294967295" valid:"an AS number 1..4294967295" derived:"as"`
	// Neighbors are further sessions this node opens (Cisco "neighbor ...
	// remote-as"). YAML neighbors, a list of {address, as, description}.
	Neighbors []BGPNeighbor `yaml:"neighbors" valid:"a list of neighbors, each with address and as" max:"1024" item:"neighbor"`
	// DynamicNeighbors are the ranges a hub accepts sessions from without
	// per-peer configuration (Cisco "bgp listen range"), each with the AS
	// the peers must have. YAML dynamic-neighbors, a list of {prefix, as};
	// default at a hub: the tunnel subnet with as (iBGP spokes). A spoke
	// has none unless given.
	DynamicNeighbors []BGPDynamic `yaml:"dynamic-neighbors" valid:"a list of ranges, each with prefix and as" max:"64" item:"range" derived:"at a hub, [{prefix: <tunnel subnet>, as: <as>}]"`
	// RouteReflector makes the dynamic and iBGP neighbors route
	// reflector clients (RFC 4456), so spokes learn each other's routes.
	// YAML route-reflector; default true at a hub, false at a spoke.
	RouteReflector bool `yaml:"route-reflector" derived:"true at a hub, false at a spoke"`
	// NextHopSelf sends routes to dynamic neighbors with this node as
	// next hop (phase 3, with aggregates); otherwise the next hop is left
	// unchanged, so spokes resolve each other with NHRP (phase 2). YAML
	// next-hop-self; default false.
	NextHopSelf bool `yaml:"next-hop-self" default:"false"`
	// Aggregates are summaries originated with this node as next hop;
	// routes inside one are not sent to dynamic neighbors (summary-only,
	// phase 3). YAML aggregates, a list of prefixes.
	Aggregates []netip.Prefix `yaml:"aggregates" check:"prefix-list" valid:"a list of prefixes such as [10.128.0.0/9]"`
	// Networks are originated with this node's tunnel address as next hop
	// (Cisco "network"): a spoke's LANs. YAML networks, a list of
	// prefixes.
	Networks []netip.Prefix `yaml:"networks" check:"prefix-list" valid:"a list of prefixes such as [10.1.0.0/24]"`
	// Redistribute announces routes from other sources. YAML
	// redistribute, optional.
	Redistribute BGPRedistribute `yaml:"redistribute"`
}

// BGPNeighbor is a configured BGP session.
type BGPNeighbor struct {
	// Address is the neighbor's address, normally an overlay address.
	// YAML address, required.
	Address netip.Addr `yaml:"address" valid:"an IP address, e.g. 10.0.0.1" required:"the neighbor's address, e.g. address: 10.0.0.1"`
	// AS is the neighbor's AS. YAML as, required, 1..4294967295.
	AS uint32 `yaml:"as" range:"1..4294967295" valid:"an AS number 1..4294967295" required:"the neighbor's AS number, e.g. as: 65000"`
	// Description is shown by show bgp. YAML description, optional.
	Description string `yaml:"description" check:"description"`
}

// BGPDynamic is a range of addresses a hub accepts sessions from.
type BGPDynamic struct {
	// Prefix is the range. YAML prefix, required.
	Prefix netip.Prefix `yaml:"prefix" check:"route-prefix" required:"the range, e.g. prefix: 10.0.0.0/24"`
	// AS is the AS the peers in the range must have. YAML as,
	// 1..4294967295; absent: any AS (each spoke in its own AS is eBGP,
	// one in ours iBGP).
	AS uint32 `yaml:"as" range:"1..4294967295" valid:"an AS number 1..4294967295, or leave it out for any AS"`
}

// BGPRedistribute selects routes announced besides bgp.networks.
type BGPRedistribute struct {
	// Connected announces the host's routes that do not go into the
	// tunnel (its LANs) and fall inside prefixes; never the default
	// route, the tunnel subnet or a route to an NBMA address. YAML
	// connected; default false.
	Connected bool `yaml:"connected" default:"false"`
	// Prefixes filters connected: a route is announced only when it lies
	// inside one of them (a prefix list with "le 32"). YAML prefixes,
	// a list of prefixes; required with connected.
	Prefixes []netip.Prefix `yaml:"prefixes" check:"prefix-list" valid:"a list of prefixes such as [10.0.0.0/8]"`
}

// Enabled reports whether the node runs BGP.
func (b *BGP) Enabled() bool { return b.AS != 0 }

// decodePrefixList decodes a YAML sequence of prefixes.
func decodePrefixList(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "expected a list, got %s (valid: %s)", kindName(n), f.valid)
		return
	}
	if len(n.Content) > MaxPrefixList {
		p.errorf(n, path, "has %d prefixes (valid: at most %d)", len(n.Content), MaxPrefixList)
		return
	}
	out := make([]netip.Prefix, 0, len(n.Content))
	seen := make(map[netip.Prefix]int)
	for i, e := range n.Content {
		e = resolve(e)
		ip := indexPath(path, i)
		p.nodes[ip] = e
		var pf netip.Prefix
		decodeRoutePrefix(p, e, ip, f, reflect.ValueOf(&pf).Elem())
		if !pf.IsValid() {
			continue
		}
		if j, dup := seen[pf]; dup {
			p.errorf(e, ip, "%s is already %s (valid: each prefix once)", pf, indexPath(path, j))
			continue
		}
		seen[pf] = i
		out = append(out, pf)
	}
	if len(out) > 0 {
		v.Set(reflect.ValueOf(out))
	}
}

func decodeBGPPassword(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	if s, ok := p.str(n, path, validBGPPassword); ok {
		if len(s) == 0 || len(s) > MaxBGPPasswordLen {
			p.errorf(n, path, "is %d bytes long (valid: %s)", len(s), validBGPPassword)
			return
		}
		v.SetString(s)
	}
}

func decodeDescription(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	if s, ok := p.str(n, path, validDescription); ok {
		if len(s) > 80 {
			p.errorf(n, path, "is %d bytes long (valid: %s)", len(s), validDescription)
			return
		}
		v.SetString(s)
	}
}

const (
	validBGPPassword = "a TCP MD5 password of 1 to 80 bytes"
	validDescription = "text of at most 80 bytes"
)

// applyBGPDerived fills in the bgp defaults computed from other fields.
func (p *parser) applyBGPDerived(c *Config) {
	b := &c.BGP
	if !b.Enabled() {
		// No BGP: no defaults either, so a config without a bgp
		// section is the zero BGP.
		*b = BGP{}
		return
	}
	if !b.RouterID.IsValid() && c.Tunnel.Address.IsValid() && c.Tunnel.Address.Addr().Is4() {
		b.RouterID = c.Tunnel.Address.Addr()
	}
	if b.Keepalive == 0 {
		b.Keepalive = (b.HoldTime / 3).Truncate(time.Second)
	}
	if b.NHSAS == 0 {
		b.NHSAS = b.AS
	}
	if !p.given[&b.RouteReflector] {
		b.RouteReflector = c.IsHub()
	}
	if !p.given[&b.DynamicNeighbors] && c.IsHub() && c.Tunnel.Address.IsValid() {
		b.DynamicNeighbors = []BGPDynamic{{Prefix: c.Tunnel.Subnet(), AS: b.AS}}
	}
}

// validateBGP checks what in the bgp section involves more than one field.
func (p *parser) validateBGP(c *Config) {
	b := &c.BGP
	if !b.Enabled() {
		return
	}
	if p.has("bgp.router-id") && b.RouterID.IsValid() && !b.RouterID.Is4() {
		p.errorf(p.at("bgp.router-id"), "bgp.router-id", "%s is not IPv4 (valid: an IPv4 address, e.g. 10.0.0.1)", b.RouterID)
	}
	if !b.RouterID.IsValid() && c.Tunnel.Address.IsValid() && !p.has("bgp.router-id") {
		p.errorf(p.at("bgp"), "bgp.router-id", "missing: tunnel.address is IPv6, so there is no IPv4 address to take as the BGP identifier (valid: router-id: an IPv4 address)")
	}
	if b.Keepalive != 0 && b.HoldTime != 0 && b.Keepalive*3 > b.HoldTime && p.has("bgp.keepalive") {
		p.errorf(p.at("bgp.keepalive"), "bgp.keepalive", "%s is more than a third of bgp.hold-time %s (valid: at most %s)", b.Keepalive, b.HoldTime, (b.HoldTime / 3).Truncate(time.Second))
	}
	sameFamily := func(pf netip.Prefix, path string) bool {
		if c.Tunnel.Address.IsValid() && pf.Addr().Is4() != c.Tunnel.Address.Addr().Is4() {
			p.errorf(p.at(path), path, "%s is %s but tunnel.address %s is %s (valid: an %s prefix)",
				pf, family(pf.Addr()), c.Tunnel.Address, family(c.Tunnel.Address.Addr()), family(c.Tunnel.Address.Addr()))
			return false
		}
		return true
	}
	subnet := c.Tunnel.Subnet()
	for i, pf := range b.Networks {
		path := indexPath("bgp.networks", i)
		if sameFamily(pf, path) && c.Tunnel.Address.IsValid() && pf.Overlaps(subnet) {
			p.errorf(p.at(path), path, "%s overlaps the tunnel subnet %s, which every node has connected (valid: a LAN prefix outside it)", pf, subnet)
		}
	}
	for i, pf := range b.Aggregates {
		path := indexPath("bgp.aggregates", i)
		if sameFamily(pf, path) && c.Tunnel.Address.IsValid() && pf.Bits() >= subnet.Bits() && subnet.Contains(pf.Addr()) {
			p.errorf(p.at(path), path, "%s is inside the tunnel subnet %s (valid: a summary of LAN prefixes)", pf, subnet)
		}
	}
	for i, pf := range b.Redistribute.Prefixes {
		sameFamily(pf, indexPath("bgp.redistribute.prefixes", i))
	}
	if b.Redistribute.Connected && len(b.Redistribute.Prefixes) == 0 {
		p.errorf(p.at("bgp.redistribute.connected"), "bgp.redistribute.connected",
			"is true but bgp.redistribute.prefixes is empty (valid: list the prefixes LAN routes may be announced from, e.g. prefixes: [10.0.0.0/8])")
	}
	seen := make(map[netip.Addr]int)
	for i, nb := range b.Neighbors {
		path := indexPath("bgp.neighbors", i) + ".address"
		if !nb.Address.IsValid() {
			continue
		}
		if nb.Address == c.Tunnel.Address.Addr() {
			p.errorf(p.at(path), path, "%s is this node's own tunnel.address (valid: another router's address)", nb.Address)
		}
		if j, dup := seen[nb.Address]; dup {
			p.errorf(p.at(path), path, "%s is already bgp.neighbors[%d] (valid: each neighbor once)", nb.Address, j)
		}
		seen[nb.Address] = i
		if b.PeerNHS {
			for _, s := range c.NHRP.NHS {
				if s.Address == nb.Address {
					p.errorf(p.at(path), path, "%s is an NHS, which bgp.peer-nhs already peers with (valid: remove it, or set peer-nhs: false)", nb.Address)
				}
			}
		}
	}
	for i, d := range b.DynamicNeighbors {
		path := indexPath("bgp.dynamic-neighbors", i) + ".prefix"
		if d.Prefix.IsValid() {
			sameFamily(d.Prefix, path)
		}
	}
}
