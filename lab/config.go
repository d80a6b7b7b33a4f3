package lab

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// NodeConfig is the dmvpn configuration the lab writes for one node. It
// mirrors the daemon's YAML (keys in the yaml tags) and holds only the keys
// the lab sets; Options.Tweak may change it before it is written.
type NodeConfig struct {
	Name      string        `yaml:"name"`
	APISocket string        `yaml:"api-socket"`
	Tunnel    TunnelConfig  `yaml:"tunnel"`
	NHRP      NHRPConfig    `yaml:"nhrp"`
	Routes    []RouteConfig `yaml:"routes"`
	Metrics   MetricsConfig `yaml:"metrics,omitempty"`
}

// MetricsConfig is the metrics: section, written only when Listen is set.
type MetricsConfig struct {
	Listen string `yaml:"listen,omitempty"` // ADDR:PORT
}

// TunnelConfig is the tunnel: section.
type TunnelConfig struct {
	Device    string `yaml:"device"`
	Address   string `yaml:"address"` // overlay address with prefix length
	Source    string `yaml:"source"`  // NBMA address of this node
	Key       uint32 `yaml:"key"`
	MTU       int    `yaml:"mtu"`
	Transport string `yaml:"transport"` // gre | udp
}

// NHRPConfig is the nhrp: section.
type NHRPConfig struct {
	NetworkID      uint32        `yaml:"network-id"`
	Holdtime       time.Duration `yaml:"holdtime"`
	Authentication string        `yaml:"authentication"`
	NHS            []NHSConfig   `yaml:"nhs,omitempty"`
	Redirect       bool          `yaml:"redirect"`
	Shortcut       bool          `yaml:"shortcut"`
}

// NHSConfig is one entry of nhrp.nhs.
type NHSConfig struct {
	Address string `yaml:"address"` // the NHS's overlay address
	NBMA    string `yaml:"nbma"`    // the NHS's NBMA address
}

// RouteConfig is one entry of routes.
type RouteConfig struct {
	Prefix string `yaml:"prefix"`
	Via    string `yaml:"via"`
}

// Lab-wide overlay parameters.
const (
	TunnelKey = 42
	TunnelMTU = 1400
	NetworkID = 1
	// Authentication is 8 bytes, Cisco's maximum. (tshark reads the
	// extension the RFC 2332 way and calls one shorter than 4 bytes of
	// secret "Incomplete": keep lab captures clean.)
	Authentication = "dmvpnlab"
)

// Config returns the configuration of daemon node name for this lab's
// options (phase, transports, holdtime), after Options.Tweak.
func (l *Lab) Config(name string) (NodeConfig, error) {
	d, ok := DaemonByName(name)
	if !ok {
		return NodeConfig{}, fmt.Errorf("lab: %q is not a dmvpn node (want one of hub, spoke1, spoke2, spoke3)", name)
	}
	hub := Daemons[0]
	c := NodeConfig{
		Name:      d.Name,
		APISocket: l.SocketPath(d.Name),
		Tunnel: TunnelConfig{
			Device:    IfTunnel,
			Address:   d.Overlay.String(),
			Source:    d.WAN.Addr().String(),
			Key:       TunnelKey,
			MTU:       TunnelMTU,
			Transport: d.Transport,
		},
		NHRP: NHRPConfig{
			NetworkID:      NetworkID,
			Holdtime:       l.opts.Holdtime,
			Authentication: Authentication,
		},
	}
	if t, ok := l.opts.Transport[d.Name]; ok {
		c.Tunnel.Transport = t
	}
	route := func(p netip.Prefix, via netip.Addr) RouteConfig {
		return RouteConfig{Prefix: p.Masked().String(), Via: via.String()}
	}
	if d.IsHub() {
		c.NHRP.Redirect = l.opts.Phase == 3
		for _, s := range Daemons[1:] {
			c.Routes = append(c.Routes, route(s.LAN, s.Overlay.Addr()))
		}
	} else {
		c.NHRP.NHS = []NHSConfig{{Address: hub.Overlay.Addr().String(), NBMA: hub.WAN.Addr().String()}}
		c.NHRP.Shortcut = l.opts.Phase == 3
		switch l.opts.Phase {
		case 2:
			// Phase 2: every remote LAN via its own spoke's tunnel address;
			// the spoke resolves that next hop with NHRP and goes direct.
			for _, o := range Daemons {
				if o.Name != d.Name {
					c.Routes = append(c.Routes, route(o.LAN, o.Overlay.Addr()))
				}
			}
		default:
			// Phases 1 and 3: the summary via the hub (phase 3: the hub's
			// redirect makes the spoke install shortcuts).
			c.Routes = []RouteConfig{route(LANSuperNet, hub.Overlay.Addr())}
		}
	}
	if l.opts.Tweak != nil {
		l.opts.Tweak(d.Name, &c)
	}
	return c, nil
}

// Marshal renders c as the daemon's YAML, with a comment header.
func (c NodeConfig) Marshal(comment string) []byte {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(comment), "\n") {
		if line != "" {
			fmt.Fprintf(&b, "# %s\n", line)
		}
	}
	fmt.Fprintf(&b, "name: %s\n", yamlString(c.Name))
	fmt.Fprintf(&b, "api-socket: %s\n", yamlString(c.APISocket))
	b.WriteString("tunnel:\n")
	fmt.Fprintf(&b, "  device: %s\n", yamlString(c.Tunnel.Device))
	fmt.Fprintf(&b, "  address: %s\n", yamlString(c.Tunnel.Address))
	fmt.Fprintf(&b, "  source: %s\n", yamlString(c.Tunnel.Source))
	fmt.Fprintf(&b, "  key: %d\n", c.Tunnel.Key)
	fmt.Fprintf(&b, "  mtu: %d\n", c.Tunnel.MTU)
	fmt.Fprintf(&b, "  transport: %s\n", yamlString(c.Tunnel.Transport))
	b.WriteString("nhrp:\n")
	fmt.Fprintf(&b, "  network-id: %d\n", c.NHRP.NetworkID)
	fmt.Fprintf(&b, "  holdtime: %s\n", yamlDuration(c.NHRP.Holdtime))
	fmt.Fprintf(&b, "  authentication: %s\n", yamlString(c.NHRP.Authentication))
	if len(c.NHRP.NHS) > 0 {
		b.WriteString("  nhs:\n")
		for _, n := range c.NHRP.NHS {
			fmt.Fprintf(&b, "    - address: %s\n      nbma: %s\n", yamlString(n.Address), yamlString(n.NBMA))
		}
	}
	fmt.Fprintf(&b, "  redirect: %t\n", c.NHRP.Redirect)
	fmt.Fprintf(&b, "  shortcut: %t\n", c.NHRP.Shortcut)
	if len(c.Routes) == 0 {
		b.WriteString("routes: []\n")
	} else {
		b.WriteString("routes:\n")
		for _, r := range c.Routes {
			fmt.Fprintf(&b, "  - prefix: %s\n    via: %s\n", yamlString(r.Prefix), yamlString(r.Via))
		}
	}
	if c.Metrics.Listen != "" {
		fmt.Fprintf(&b, "metrics:\n  listen: %s\n", yamlString(c.Metrics.Listen))
	}
	return []byte(b.String())
}

var plainYAML = regexp.MustCompile(`^[A-Za-z0-9_./][A-Za-z0-9_./:-]*$`)

// yamlString writes s as a plain scalar when that cannot be misread (as a
// bool, number or null), else double-quoted.
func yamlString(s string) string {
	switch strings.ToLower(s) {
	case "", "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", ".inf", ".nan":
		return quoteYAML(s)
	}
	if !plainYAML.MatchString(s) {
		return quoteYAML(s)
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return quoteYAML(s)
	}
	if _, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64); err == nil {
		return quoteYAML(s)
	}
	return s
}

func quoteYAML(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func yamlDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}
