// Package config loads a node's configuration: one strict YAML file per node,
// with Cisco-like names a network engineer recognises (tunnel source, GRE
// key, NHRP network-id, holdtime, nhs, map, shortcut, redirect).
//
// Parsing is strict: unknown fields, duplicate fields, values of the wrong
// type and values out of range are all refused. Every error names the file,
// line and column, the field path (for example nhrp.nhs[1].nbma) and what
// would be valid, and all errors are reported at once, sorted by line:
//
//	spoke1.yaml:7:14: tunnel.transport: "tcp" is not valid (valid: gre, udp)
//	spoke1.yaml:3:1: unknown field "tunel" (valid here: name, log-level, log-format, log-levels, api-socket, tunnel, nhrp, routes, bgp, ipsec, metrics, hooks; did you mean "tunnel"?)
//
// Defaults are applied after parsing, so a *Config returned by Load or Parse
// is complete. docs/CONFIG.md is the reference for every field.
package config

import (
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/dmvpn/dmvpn/nbma"
)

// Defaults applied to fields the file leaves out.
const (
	DefaultLogLevel   = slog.LevelInfo
	DefaultSocketDir  = "/run/dmvpn" // api-socket is DefaultSocketDir/<name>.sock
	DefaultDevice     = "dmvpn0"
	DefaultMTU        = 1400
	DefaultTransport  = nbma.TransportGRE
	DefaultUDPPort    = 4754 // RFC 8086 GRE-in-UDP
	DefaultHoldtime   = 600 * time.Second
	DefaultMaxPackets = 10000
	DefaultMaxPer     = 10 * time.Second
	// DefaultMaxHoldtime caps peers' holding times: Cisco's default
	// holding time, so Cisco spokes keep theirs.
	DefaultMaxHoldtime       = 7200 * time.Second
	DefaultMaxEntries        = 100_000
	DefaultMaxEntriesPerNBMA = 256
	DefaultAuthMaxSkew       = 60 * time.Second
	MinAuthKeyLen            = 16
)

// DefaultMaxReceive is the per-source NHRP receive limit: far above what
// an honest spoke sends (a registration every holdtime/3, a resolution per
// new destination), far below a flood.
var DefaultMaxReceive = Rate{Packets: 100, Interval: time.Second}

// LogComponents are the components log-levels may name (internal/logging
// uses the same names).
var LogComponents = []string{"nhrp", "dataplane", "node", "localroute", "api", "bgp", "ipsec", "metrics", "events", "capture"}

// Limits checked by Parse.
const (
	MaxNameLen   = 63 // a DNS label
	MaxDeviceLen = 15 // Linux IFNAMSIZ (16) less the NUL
	MinMTU       = 576
	MinMTUIPv6   = 1280 // RFC 8200: an IPv6 link carries at least 1280 bytes
	MaxMTU       = 9000
	MinHoldtime  = time.Second
	MaxHoldtime  = 65535 * time.Second // NHRP holding time is 16 bits of seconds
	MaxAuthLen   = 8                   // Cisco "ip nhrp authentication", bytes
	MaxSocketLen = 107                 // sun_path is 108 bytes including the NUL
)

// Config is one node's configuration.
type Config struct {
	// Name identifies the node in logs and in show output. YAML name,
	// required: 1 to 63 characters from a-z, 0-9 and '-', not starting
	// with '-'.
	Name string `yaml:"name" check:"name" required:"the node's name, e.g. name: spoke1"`
	// LogLevel is the least severe level logged. YAML log-level: debug,
	// info, warn or error; default info.
	LogLevel slog.Level `yaml:"log-level" default:"info"`
	// LogFormat is how log lines are written to standard error: text
	// (key=value, the default) or json (one object per line). YAML
	// log-format.
	LogFormat string `yaml:"log-format" check:"log-format" default:"text"`
	// LogLevels overrides LogLevel per component (the "component"
	// attribute of every log line: nhrp, dataplane, node, localroute,
	// api, bgp, metrics, events, capture). YAML log-levels, a mapping such as
	// {nhrp: debug, dataplane: warn}; optional.
	LogLevels map[string]slog.Level `yaml:"log-levels"`
	// APISocket is the path of the Unix socket that `dmvpn show` talks to.
	// YAML api-socket; default /run/dmvpn/<name>.sock.
	APISocket string `yaml:"api-socket" check:"api-socket" derived:"/run/dmvpn/<name>.sock"`
	// Tunnel is the multipoint GRE interface (YAML tunnel, required).
	Tunnel Tunnel `yaml:"tunnel" required:"a section with at least address and source"`
	// NHRP is the NHRP client and server configuration (YAML nhrp,
	// required).
	NHRP NHRP `yaml:"nhrp" required:"a section with at least network-id"`
	// Routes are static routes into the overlay (YAML routes, optional).
	Routes []Route `yaml:"routes" valid:"a list of routes, each with prefix and via"`
	// BGP is the built-in BGP speaker (YAML bgp, optional; see BGP).
	BGP BGP `yaml:"bgp"`
	// IPsec protects the tunnel with IKEv2 and ESP (YAML ipsec, optional;
	// see IPsec). Without it GRE goes in clear text.
	IPsec IPsec `yaml:"ipsec"`
	// Metrics configures the Prometheus endpoint (YAML metrics,
	// optional).
	Metrics Metrics `yaml:"metrics"`
	// Hooks run commands for events (YAML hooks, optional; see Hook).
	Hooks []Hook `yaml:"hooks" valid:"a list of hooks, each with event, command and optionally timeout" max:"64" item:"hook"`
}

// Metrics configures Prometheus metrics. `dmvpn show metrics` reads them
// over the API socket whatever this says.
type Metrics struct {
	// Listen is where `dmvpn run` serves GET /metrics over HTTP for
	// scraping. YAML listen, optional: an IP address and TCP port such as
	// 127.0.0.1:9273 or [::]:9273 (port 1..65535; 0.0.0.0 or :: for every
	// address); the zero value (the default) serves no TCP endpoint.
	Listen netip.AddrPort `yaml:"listen"`
	// PeerLimit is how many peers get per-peer series
	// (dmvpn_peer_*_total{peer, nbma}): the busiest ones by packets when
	// there are more. YAML peer-limit, 0..100000; default 0, no per-peer
	// series, so a hub's series do not grow with its spokes unless asked.
	// It changes live (reload).
	PeerLimit int `yaml:"peer-limit" range:"0..100000" valid:"an integer 0..100000" default:"0"`
}

// IsHub reports whether the node is a hub (an NHRP server): a node that
// lists no nhs. A node with one or more nhs is a spoke.
func (c *Config) IsHub() bool { return len(c.NHRP.NHS) == 0 }

// Tunnel is the multipoint GRE interface (Cisco "interface Tunnel").
type Tunnel struct {
	// Device is the name of the TUN device. YAML device; default dmvpn0;
	// at most 15 bytes, without '/', ':' or whitespace, not "." or "..".
	Device string `yaml:"device" check:"device" default:"dmvpn0"`
	// Address is this node's overlay address together with the tunnel
	// subnet's length, e.g. 10.0.0.11/24 (Cisco "ip address" on the
	// tunnel). YAML address, required, IPv4 or IPv6. Address.Masked() is
	// the tunnel subnet; see Subnet.
	Address netip.Prefix `yaml:"address" check:"tunnel-address" required:"this node's overlay address with the tunnel subnet length, e.g. address: 10.0.0.11/24"`
	// Source is this node's NBMA (underlay) address (Cisco "tunnel
	// source"). YAML source, required, an IP address literal.
	Source netip.Addr `yaml:"source" valid:"this node's NBMA address as an IP address literal, e.g. 198.51.100.1" required:"this node's NBMA address, e.g. source: 198.51.100.1"`
	// Key is the GRE key (Cisco "tunnel key"), or nil for none. YAML key,
	// optional, 0..4294967295.
	Key *uint32 `yaml:"key" range:"0..4294967295" valid:"an integer 0..4294967295"`
	// MTU is the TUN device's MTU. YAML mtu; default 1400; 576..9000, and
	// at least 1280 when Address is IPv6.
	MTU int `yaml:"mtu" range:"576..9000" valid:"an integer 576..9000, at least 1280 with an IPv6 tunnel.address" default:"1400"`
	// Transport is how GRE is carried on the NBMA network. YAML
	// transport: gre (IP protocol 47, IPv4 only, Cisco's wire format) or
	// udp (GRE-in-UDP, RFC 8086); default gre.
	Transport nbma.Transport `yaml:"transport" default:"gre"`
	// UDPPort is the local GRE-in-UDP port. YAML udp-port, only with
	// transport udp; default 4754. It is 0 with transport gre.
	UDPPort uint16 `yaml:"udp-port" range:"1..65535" valid:"a UDP port 1..65535" default:"4754" default-if:"udp"`
}

// Subnet returns the tunnel subnet, Address masked to its length.
func (t *Tunnel) Subnet() netip.Prefix { return t.Address.Masked() }

// LocalEndpoint returns the local NBMA endpoint: Source and UDPPort (port 0
// with transport gre), as underlay.Conn.LocalAddr reports it.
func (t *Tunnel) LocalEndpoint() netip.AddrPort { return netip.AddrPortFrom(t.Source, t.UDPPort) }

// NHRP configures the NHRP client (NHC) and server (NHS).
type NHRP struct {
	// NetworkID is the NHRP network identifier (Cisco "ip nhrp
	// network-id"). YAML network-id, required, 1..4294967295. It is
	// local: it never goes on the wire, and it need not match other nodes.
	NetworkID uint32 `yaml:"network-id" range:"1..4294967295" valid:"an integer 1..4294967295" required:"an integer 1..4294967295, e.g. network-id: 1"`
	// Holdtime is the holding time advertised in this node's NHRP packets
	// (Cisco "ip nhrp holdtime"). YAML holdtime, a Go duration (600s,
	// 10m) or an integer number of seconds; default 600s; whole seconds,
	// 1s..65535s.
	Holdtime time.Duration `yaml:"holdtime" range:"1s..65535s" valid:"whole seconds from 1s to 65535s, as a duration such as 600s or 10m, or an integer number of seconds" default:"600s"`
	// RegistrationTimeout is how often a spoke refreshes its registration
	// with each NHS (Cisco "ip nhrp registration timeout"). YAML
	// registration-timeout, optional, like holdtime; 0s or absent means
	// Holdtime/3, otherwise whole seconds from 1s to less than Holdtime.
	// After Parse it is never 0.
	RegistrationTimeout time.Duration `yaml:"registration-timeout" range:"1s..65534s" zero:"true" valid:"0s for holdtime/3, or whole seconds from 1s to less than nhrp.holdtime, e.g. 200s" derived:"holdtime/3"`
	// Authentication is the NHRP authentication string, sent in plain
	// text as Cisco does (Cisco "ip nhrp authentication"). YAML
	// authentication, optional, 1..8 bytes; "" means none.
	Authentication string `yaml:"authentication" check:"authentication"`
	// AuthenticationKeys turn on keyed NHRP authentication instead of
	// Cisco's clear text: every packet carries an RFC 2332 authentication
	// extension with a key ID, a sequence number (the sender's clock) and
	// an HMAC-SHA-256 over the whole packet, and packets without a valid
	// one, or replayed, are dropped. The first key signs; every key is
	// accepted (rollover). YAML authentication-keys, a list of {id:
	// 2..65535, secret: at least 16 bytes}; not together with
	// authentication. Every node of the cloud needs the same keys.
	AuthenticationKeys []AuthKey `yaml:"authentication-keys" valid:"a list of keys, each with id (2..65535) and secret (at least 16 bytes); the first signs"`
	// AuthenticationMaxSkew is how far a keyed packet's sequence number
	// may be from our clock (replays older than this are refused even
	// after a restart). YAML authentication-max-skew, 1s..1h; default 60s.
	AuthenticationMaxSkew time.Duration `yaml:"authentication-max-skew" range:"1s..1h" valid:"a duration from 1s to 1h, e.g. 60s" default:"60s"`
	// NHS lists the next-hop servers (hubs) this node registers with
	// (Cisco "ip nhrp nhs ... nbma ..."). YAML nhs; empty makes the node
	// a hub.
	NHS []NHS `yaml:"nhs" valid:"a list of hubs, each with address, nbma and optionally port"`
	// Map lists static overlay-to-NBMA mappings (Cisco "ip nhrp map").
	// YAML map, optional.
	Map []StaticMap `yaml:"map" valid:"a list of static mappings, each with address, nbma and optionally port and multicast"`
	// Shortcut makes this node install NHRP shortcut routes when it gets
	// a Traffic Indication, phase 3 (Cisco "ip nhrp shortcut"). YAML
	// shortcut; default false; normally set on spokes.
	Shortcut bool `yaml:"shortcut" default:"false"`
	// Redirect makes this node send Traffic Indications for traffic it
	// forwards back out of the tunnel, phase 3 (Cisco "ip nhrp
	// redirect"). YAML redirect; default false; normally set on hubs.
	Redirect bool `yaml:"redirect" default:"false"`
	// Unique sets the Unique flag on registrations, so an NHS refuses a
	// registration of the same address from another NBMA address until
	// the old one expires (Cisco "ip nhrp registration no-unique" turns
	// it off). YAML unique; default true.
	Unique bool `yaml:"unique" default:"true"`
	// MaxSend limits the NHRP control packets this node sends (Cisco "ip
	// nhrp max-send"). YAML max-send, "PACKETS/INTERVAL" such as
	// "10000/10s"; default 10000/10s; 1..65535 packets, interval like
	// holdtime (1s..65535s).
	MaxSend Rate `yaml:"max-send" default:"10000/10s"`
	// MaxReceive limits the NHRP packets accepted from one NBMA address
	// (an NHS's excepted); the rest are dropped and counted. YAML
	// max-receive, like max-send; default 100/1s.
	MaxReceive Rate `yaml:"max-receive" default:"100/1s"`
	// MaxHoldtime caps the holding time of every entry learned from a
	// peer (registrations, resolutions), whatever the peer asks for; the
	// Registration Reply tells the spoke what was granted. YAML
	// max-holdtime, like holdtime; default the larger of 7200s and
	// holdtime.
	MaxHoldtime time.Duration `yaml:"max-holdtime" range:"1s..65535s" valid:"whole seconds from 1s to 65535s, as a duration such as 600s or 10m, or an integer number of seconds" derived:"the larger of 7200s and holdtime"`
	// MaxEntries bounds the NHRP cache; when it is full, learned entries
	// (shortcuts) are evicted oldest-unused first, and registrations
	// beyond it are refused (insufficient resources). YAML max-entries,
	// 16..10000000; default 100000.
	MaxEntries int `yaml:"max-entries" range:"16..10000000" valid:"an integer 16..10000000" default:"100000"`
	// MaxEntriesPerNBMA bounds the cache entries mapping to one NBMA
	// address (whatever the port). YAML max-entries-per-nbma,
	// 1..10000000; default 256.
	MaxEntriesPerNBMA int `yaml:"max-entries-per-nbma" range:"1..10000000" valid:"an integer 1..10000000" default:"256"`
}

// AuthKey is one key of keyed NHRP authentication.
type AuthKey struct {
	// ID goes on the wire (the extension's SPI): 2..65535.
	ID uint16 `yaml:"id" range:"2..65535" valid:"an integer 2..65535 (1 is Cisco's clear-text form)" required:"an integer 2..65535, e.g. id: 2"`
	// Secret is the HMAC key, at least 16 bytes.
	Secret string `yaml:"secret" check:"secret" required:"the HMAC key, at least 16 bytes, e.g. secret: 0123456789abcdef"`
}

// NHS is a next-hop server (hub) a spoke registers with.
type NHS struct {
	// Address is the NHS's overlay address. YAML address, required;
	// inside the tunnel subnet.
	Address netip.Addr `yaml:"address" valid:"an overlay address in the tunnel subnet, e.g. 10.0.0.1" required:"the hub's overlay address, e.g. address: 10.0.0.1"`
	// NBMA is the NHS's NBMA address. YAML nbma, required; the same
	// address family as tunnel.source.
	NBMA netip.Addr `yaml:"nbma" valid:"an NBMA address as an IP address literal, e.g. 192.0.2.1" required:"the hub's NBMA address, e.g. nbma: 192.0.2.1"`
	// Port is the NHS's GRE-in-UDP port. YAML port, only with transport
	// udp; default 4754. It is 0 with transport gre.
	Port uint16 `yaml:"port" range:"1..65535" valid:"a UDP port 1..65535" default:"4754" default-if:"udp"`
}

// Endpoint returns the NHS's NBMA endpoint, as underlay.Datagram.Peer
// expects it (port 0 with transport gre).
func (n NHS) Endpoint() netip.AddrPort { return netip.AddrPortFrom(n.NBMA, n.Port) }

// StaticMap is a static NHRP mapping (Cisco "ip nhrp map").
type StaticMap struct {
	// Address is the peer's overlay address. YAML address, required;
	// inside the tunnel subnet.
	Address netip.Addr `yaml:"address" valid:"an overlay address in the tunnel subnet, e.g. 10.0.0.1" required:"the peer's overlay address, e.g. address: 10.0.0.2"`
	// NBMA is the peer's NBMA address. YAML nbma, required; the same
	// address family as tunnel.source.
	NBMA netip.Addr `yaml:"nbma" valid:"an NBMA address as an IP address literal, e.g. 192.0.2.1" required:"the peer's NBMA address, e.g. nbma: 192.0.2.2"`
	// Port is the peer's GRE-in-UDP port. YAML port, only with transport
	// udp; default 4754. It is 0 with transport gre.
	Port uint16 `yaml:"port" range:"1..65535" valid:"a UDP port 1..65535" default:"4754" default-if:"udp"`
	// Multicast also replicates overlay multicast and broadcast to this
	// peer (Cisco "ip nhrp map multicast"). YAML multicast; default false.
	Multicast bool `yaml:"multicast" default:"false"`
}

// Endpoint returns the peer's NBMA endpoint (port 0 with transport gre).
func (m StaticMap) Endpoint() netip.AddrPort { return netip.AddrPortFrom(m.NBMA, m.Port) }

// Route is a static route into the overlay.
type Route struct {
	// Prefix is the destination. YAML prefix, required; masked (no host
	// bits), the same family as tunnel.address, not inside the tunnel
	// subnet (that is connected).
	Prefix netip.Prefix `yaml:"prefix" check:"route-prefix" required:"the destination, e.g. prefix: 10.1.0.0/16"`
	// Via is the next hop. YAML via, required; an address on the tunnel
	// subnet other than this node's own.
	Via netip.Addr `yaml:"via" valid:"a next hop in the tunnel subnet, e.g. 10.0.0.1" required:"the next hop on the tunnel subnet, e.g. via: 10.0.0.1"`
}

// Rate is a packet rate limit: at most Packets packets every Interval.
type Rate struct {
	Packets  int
	Interval time.Duration
}

// String returns the rate in its config spelling, e.g. "10000/10s".
func (r Rate) String() string { return strconv.Itoa(r.Packets) + "/" + r.Interval.String() }

// Load reads and parses the configuration file at path. See Parse.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := readLimited(path, f) // at most MaxFileSize bytes
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse parses and validates a configuration and applies the defaults.
// filename is used only in error messages. On failure it returns nil and an
// error that joins (errors.Join) one *Error per problem, sorted by line.
func Parse(filename string, data []byte) (*Config, error) {
	p := newParser(filename)
	c := p.parse(data)
	if err := p.err(); err != nil {
		return nil, err
	}
	return c, nil
}
