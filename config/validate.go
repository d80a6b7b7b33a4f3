package config

import (
	"fmt"
	"net/netip"

	"github.com/dmvpn/dmvpn/nbma"
)

// validate checks what involves more than one field. It runs after
// applyDefaults and skips fields that failed to parse (left zero), so one
// mistake is reported once.
func (p *parser) validate(c *Config) {
	t := &c.Tunnel
	udp := t.Transport == nbma.TransportUDP

	if t.Source.IsValid() && t.Source.Is6() && t.Transport == nbma.TransportGRE {
		p.errorf(p.at("tunnel.source"), "tunnel.source",
			"%s is IPv6, but transport gre carries GRE over IPv4 only (valid: an IPv4 address, or tunnel.transport: udp)", t.Source)
	}
	if t.Address.IsValid() && t.Address.Addr().Is6() && t.MTU != 0 && t.MTU < MinMTUIPv6 && p.has("tunnel.mtu") {
		p.errorf(p.at("tunnel.mtu"), "tunnel.mtu",
			"%d is below %d, the IPv6 minimum, and tunnel.address is IPv6 (valid: an integer %d..%d)", t.MTU, MinMTUIPv6, MinMTUIPv6, MaxMTU)
	}
	if t.Transport == nbma.TransportGRE && p.has("tunnel.udp-port") {
		p.onlyUDP("tunnel.udp-port")
	}

	h := &c.NHRP
	if p.has("nhrp.registration-timeout") && h.RegistrationTimeout != 0 && h.Holdtime != 0 && h.RegistrationTimeout >= h.Holdtime {
		p.errorf(p.at("nhrp.registration-timeout"), "nhrp.registration-timeout",
			"%s is not shorter than nhrp.holdtime %s, so registrations would expire before they are refreshed (valid: %s)",
			h.RegistrationTimeout, h.Holdtime, validRegTime)
	}

	if p.has("nhrp.authentication") && p.has("nhrp.authentication-keys") {
		p.errorf(p.at("nhrp.authentication-keys"), "nhrp.authentication-keys",
			"set together with nhrp.authentication (valid: one of them: authentication for Cisco's clear text, authentication-keys for keyed HMAC-SHA-256)")
	}

	keyIDs := make(map[uint16]bool)
	for i, k := range h.AuthenticationKeys {
		if k.ID == 0 {
			continue // absent or invalid: already reported
		}
		path := indexPath("nhrp.authentication-keys", i) + ".id"
		if keyIDs[k.ID] {
			p.errorf(p.at(path), path, "key ID %d appears twice (valid: each ID once)", k.ID)
		}
		keyIDs[k.ID] = true
	}

	nhsAddr := make(map[netip.Addr]int)
	nhsEndpoint := make(map[netip.AddrPort]int)
	for i, s := range h.NHS {
		path := indexPath("nhrp.nhs", i)
		p.overlay(s.Address, path+".address", t)
		p.nbma(s.NBMA, s.Port, path+".nbma", t)
		if t.Transport == nbma.TransportGRE && p.has(path+".port") {
			p.onlyUDP(path + ".port")
		}
		if s.Address.IsValid() {
			if j, dup := nhsAddr[s.Address]; dup {
				p.errorf(p.at(path+".address"), path+".address",
					"%s is already nhrp.nhs[%d] (line %d) (valid: each NHS once)", s.Address, j, p.at(indexPath("nhrp.nhs", j)).Line)
			} else {
				nhsAddr[s.Address] = i
			}
		}
		if s.NBMA.IsValid() && (!udp || s.Port != 0) {
			ep := s.Endpoint()
			if j, dup := nhsEndpoint[ep]; dup {
				p.errorf(p.at(path+".nbma"), path+".nbma",
					"%s is already the NBMA address of nhrp.nhs[%d] (line %d) (valid: each NHS once, at its own NBMA address%s)",
					s.NBMA, j, p.at(indexPath("nhrp.nhs", j)).Line, portHint(udp))
			} else {
				nhsEndpoint[ep] = i
			}
		}
	}

	mapAddr := make(map[netip.Addr]int)
	for i, m := range h.Map {
		path := indexPath("nhrp.map", i)
		p.overlay(m.Address, path+".address", t)
		p.nbma(m.NBMA, m.Port, path+".nbma", t)
		if t.Transport == nbma.TransportGRE && p.has(path+".port") {
			p.onlyUDP(path + ".port")
		}
		if !m.Address.IsValid() {
			continue
		}
		if j, dup := mapAddr[m.Address]; dup {
			p.errorf(p.at(path+".address"), path+".address",
				"%s is already mapped by nhrp.map[%d] (line %d) (valid: one mapping per address)", m.Address, j, p.at(indexPath("nhrp.map", j)).Line)
			continue
		}
		mapAddr[m.Address] = i
		if j, ok := nhsAddr[m.Address]; ok && m.NBMA.IsValid() && h.NHS[j].NBMA.IsValid() && m.Endpoint() != h.NHS[j].Endpoint() {
			p.errorf(p.at(path+".nbma"), path+".nbma",
				"%s contradicts nhrp.nhs[%d] (line %d), which puts %s at %s (valid: %s, or remove this mapping)",
				endpoint(m.Endpoint()), j, p.at(indexPath("nhrp.nhs", j)).Line, m.Address, endpoint(h.NHS[j].Endpoint()), endpoint(h.NHS[j].Endpoint()))
		}
	}

	routes := make(map[netip.Prefix]int)
	for i, r := range c.Routes {
		path := indexPath("routes", i)
		p.overlay(r.Via, path+".via", t)
		if !r.Prefix.IsValid() {
			continue
		}
		if t.Address.IsValid() {
			subnet := t.Subnet()
			if r.Prefix.Addr().Is4() != subnet.Addr().Is4() {
				p.errorf(p.at(path+".prefix"), path+".prefix", "%s is %s but tunnel.address %s is %s (valid: an %s prefix)",
					r.Prefix, family(r.Prefix.Addr()), t.Address, family(t.Address.Addr()), family(t.Address.Addr()))
				continue
			}
			if r.Prefix.Bits() >= subnet.Bits() && subnet.Contains(r.Prefix.Addr()) {
				p.errorf(p.at(path+".prefix"), path+".prefix",
					"%s is inside the tunnel subnet %s, which is directly connected (valid: a prefix outside %s)", r.Prefix, subnet, subnet)
				continue
			}
		}
		if j, dup := routes[r.Prefix]; dup {
			p.errorf(p.at(path+".prefix"), path+".prefix",
				"%s is already routed by routes[%d] (line %d) (valid: one route per prefix)", r.Prefix, j, p.at(indexPath("routes", j)).Line)
			continue
		}
		routes[r.Prefix] = i
	}
}

// endpoint formats an NBMA endpoint: the address alone when the port is 0
// (transport gre), else address:port.
func endpoint(ep netip.AddrPort) string {
	if ep.Port() == 0 {
		return ep.Addr().String()
	}
	return ep.String()
}

func portHint(udp bool) string {
	if udp {
		return " and port"
	}
	return ""
}

// onlyUDP refuses a port field given with transport gre.
func (p *parser) onlyUDP(path string) {
	p.errorf(p.at(path), path, "is only used with tunnel.transport udp, and the transport is gre (valid: remove it, or set tunnel.transport: udp)")
}

// overlay checks that a, the overlay address at path (an NHS, a static
// mapping or a next hop), is another node's address on the tunnel subnet.
func (p *parser) overlay(a netip.Addr, path string, t *Tunnel) {
	if !a.IsValid() || !t.Address.IsValid() {
		return
	}
	subnet := t.Subnet()
	at := p.at(path)
	switch {
	case a.Is4() != subnet.Addr().Is4():
		p.errorf(at, path, "%s is %s but tunnel.address %s is %s (valid: an %s address in %s)",
			a, family(a), t.Address, family(t.Address.Addr()), family(t.Address.Addr()), subnet)
	case !subnet.Contains(a):
		p.errorf(at, path, "%s is outside the tunnel subnet %s (tunnel.address %s) (valid: an address in %s)", a, subnet, t.Address, subnet)
	case a == t.Address.Addr():
		p.errorf(at, path, "%s is this node's own tunnel.address (valid: another node's address in %s)", a, subnet)
	case a.Is4() && subnet.Bits() <= 30 && (a == subnet.Addr() || a == lastAddr(subnet)):
		what := "network"
		if a != subnet.Addr() {
			what = "broadcast"
		}
		p.errorf(at, path, "%s is the %s address of the tunnel subnet %s (valid: a host address in %s)", a, what, subnet, subnet)
	}
}

// nbma checks that a (with port, 0 for gre), the NBMA address at path, is
// in the family of tunnel.source and is not this node's own endpoint.
func (p *parser) nbma(a netip.Addr, port uint16, path string, t *Tunnel) {
	if !a.IsValid() || !t.Source.IsValid() {
		return
	}
	at := p.at(path)
	switch {
	case a.Is4() != t.Source.Is4():
		p.errorf(at, path, "%s is %s but tunnel.source %s is %s (valid: an %s address)",
			a, family(a), t.Source, family(t.Source), family(t.Source))
	case a == t.Source && port == t.UDPPort:
		ep := "tunnel.source"
		if t.Transport == nbma.TransportUDP {
			ep = fmt.Sprintf("tunnel.source and tunnel.udp-port (%s)", t.LocalEndpoint())
		}
		p.errorf(at, path, "%s is this node's own %s (valid: the peer's NBMA address)", a, ep)
	}
}
