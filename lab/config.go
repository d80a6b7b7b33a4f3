package lab

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// NodeConfig is the dmvpn configuration the lab writes for one node. It
// mirrors the daemon's YAML (keys in the yaml tags) and holds only the keys
// the lab sets; Options.Tweak may change it before it is written.
type NodeConfig struct {
	Name      string        `yaml:"name"`
	APISocket string        `yaml:"api-socket"`
	Tunnel    TunnelConfig  `yaml:"tunnel"`
	NHRP      NHRPConfig    `yaml:"nhrp"`
	Routes    []RouteConfig `yaml:"routes,omitempty"`
	BGP       *BGPConfig    `yaml:"bgp,omitempty"`
	IPsec     *IPsecConfig  `yaml:"ipsec,omitempty"`
	Metrics   MetricsConfig `yaml:"metrics,omitempty"`
}

// IPsecConfig is the ipsec: section (nil: clear GRE).
type IPsecConfig struct {
	PSK          string        `yaml:"psk"`
	ESPProposals []string      `yaml:"esp-proposals,omitempty,flow"`
	DPD          time.Duration `yaml:"dpd,omitempty"`
	LifetimeKB   uint64        `yaml:"lifetime-kilobytes,omitempty"`
	KeyLog       string        `yaml:"key-log,omitempty"`
}

// BGPConfig is the bgp: section (nil: no BGP).
type BGPConfig struct {
	AS           uint32           `yaml:"as"`
	HoldTime     time.Duration    `yaml:"hold-time,omitempty"`
	ConnectRetry time.Duration    `yaml:"connect-retry,omitempty"`
	NextHopSelf  bool             `yaml:"next-hop-self,omitempty"`
	Aggregates   []string         `yaml:"aggregates,omitempty,flow"`
	Networks     []string         `yaml:"networks,omitempty,flow"`
	PeerNHS      *bool            `yaml:"peer-nhs,omitempty"`
	Redistribute *BGPRedistribute `yaml:"redistribute,omitempty"`
	Neighbors    []BGPNeighbor    `yaml:"neighbors,omitempty"`
}

// BGPRedistribute is bgp.redistribute.
type BGPRedistribute struct {
	Connected bool     `yaml:"connected,omitempty"`
	Prefixes  []string `yaml:"prefixes,omitempty,flow"`
}

// BGPNeighbor is one entry of bgp.neighbors.
type BGPNeighbor struct {
	Address string `yaml:"address"`
	AS      uint32 `yaml:"as"`
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
	// AS is the lab's BGP AS: every node in it (iBGP, the hub a route
	// reflector for the tunnel subnet).
	AS = 65000
	// BGPHoldTime and BGPConnectRetry are short so a lab converges in
	// seconds and a stopped spoke is withdrawn quickly.
	BGPHoldTime     = 9 * time.Second
	BGPConnectRetry = 2 * time.Second
	// PSK is the lab cloud's IKEv2 pre-shared key.
	PSK = "dmvpn-lab-cloud-key"
	// ESPProposal is the lab's ESP transform: AES-128-GCM, the fast one
	// (the default proposals start with Cisco's AES-CBC + HMAC-SHA1),
	// without extended sequence numbers like Cisco's default (and so that
	// tshark 4.0, whose esp_sa table has no ESN column, decrypts it).
	ESPProposal = "aes128gcm16-noesn"
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
	if l.opts.IPsec {
		// Every SA's keys go to <node>.keys, so that a capture of the
		// lab's underlay can be decrypted (tshark, Wireshark).
		c.IPsec = &IPsecConfig{PSK: PSK, ESPProposals: []string{ESPProposal}, KeyLog: l.KeyLogPath(d.Name)}
	}
	route := func(p netip.Prefix, via netip.Addr) RouteConfig {
		return RouteConfig{Prefix: p.Masked().String(), Via: via.String()}
	}
	if !l.opts.StaticRoutes {
		// BGP: each node announces its own LAN; the hub reflects (phase
		// 2) or sends only the summary with itself as next hop.
		c.BGP = &BGPConfig{AS: AS, HoldTime: BGPHoldTime, ConnectRetry: BGPConnectRetry,
			Networks: []string{d.LAN.Masked().String()}}
		if d.IsHub() {
			c.NHRP.Redirect = l.opts.Phase == 3
			if l.opts.Phase != 2 {
				c.BGP.Aggregates = []string{LANSuperNet.String()}
				c.BGP.NextHopSelf = true
			}
		} else {
			c.NHRP.NHS = []NHSConfig{{Address: hub.Overlay.Addr().String(), NBMA: hub.WAN.Addr().String()}}
			c.NHRP.Shortcut = l.opts.Phase == 3
		}
		if l.opts.Tweak != nil {
			l.opts.Tweak(d.Name, &c)
		}
		return c, nil
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

// Marshal renders c as the daemon's YAML (yaml.Marshal of c, so the keys
// are the yaml tags above), after a comment header.
func (c NodeConfig) Marshal(comment string) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(strings.TrimSpace(comment), "\n") {
		if line != "" {
			fmt.Fprintf(&b, "# %s\n", line)
		}
	}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		panic(fmt.Sprintf("lab: marshal config: %v", err)) // plain strings and numbers: cannot fail
	}
	enc.Close()
	return b.Bytes()
}
