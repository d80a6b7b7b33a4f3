package bgp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"
)

// Bounds of a Config. What a peer sends is bounded by MaxPrefixes per
// neighbor; what the node configures is bounded here, so that a typo in a
// generated configuration cannot make the speaker build a policy of a
// million statements.
const (
	MaxNeighbors     = 1024 // active (static) neighbors
	MaxDynamicRanges = 64   // passive ranges
	MaxPrefixList    = 1024 // networks, and aggregates, each
	MaxAnnounced     = 65536
	MaxPasswordLen   = 80 // Linux's TCP_MD5SIG_MAXKEYLEN
	MaxDescription   = 80

	DefaultHoldTime     = 90 * time.Second
	DefaultKeepalive    = 30 * time.Second
	DefaultConnectRetry = 5 * time.Second
	DefaultRestartTime  = 120 * time.Second
	DefaultMaxPrefixes  = 10000
	DefaultPort         = 179

	// MinConnectRetry is what GoBGP v4.8.0 actually waits at least between
	// two connection attempts (its minConnectRetryInterval): a smaller
	// ConnectRetry is accepted and behaves as 2s. The first attempt after a
	// neighbor is added goes out after 1.5–2s (GoBGP jitters it), and after
	// a session drops GoBGP holds the neighbor in Idle for 5s first.
	MinConnectRetry = 2 * time.Second
)

// Config configures a Speaker. The zero value of every optional field means
// "the default" or "off", as documented per field.
type Config struct {
	// AS is our AS number, 1..4294967295 (4-octet AS numbers are fine).
	AS uint32
	// RouterID is the BGP identifier, an IPv4 address (RFC 6286 allows any
	// 32-bit value, but GoBGP insists on IPv4 notation).
	RouterID netip.Addr

	// ListenAddress is the address the listener binds; invalid means every
	// address (0.0.0.0 and ::).
	ListenAddress netip.Addr
	// ListenPort is the listener's TCP port: 0 means 179, a negative value
	// means no listener at all (a spoke, which only opens sessions, needs
	// none). A hub needs one for its dynamic neighbors.
	ListenPort int32
	// BindDevice pins the listener and every active session to one network
	// device (SO_BINDTODEVICE): the overlay TUN, so that BGP runs over the
	// tunnel and never leaks onto the underlay. "" = not bound.
	BindDevice string
	// LocalAddress is the source of the sessions we open to neighbors of
	// its address family (normally our overlay address); invalid = the
	// kernel's choice. Our announcements carry each session's local address
	// as next hop, so on a spoke this is the address other spokes resolve
	// with NHRP.
	LocalAddress netip.Addr

	// Neighbors are the sessions we open (a spoke's NHSes; optional at a
	// hub). At most MaxNeighbors, one per address.
	Neighbors []Neighbor
	// Dynamic are the ranges we accept sessions from without per-peer
	// configuration (a hub's tunnel subnet). Such sessions are passive only:
	// GoBGP never dials them. At most MaxDynamicRanges.
	Dynamic []DynamicRange

	// RouteReflector makes dynamic and static iBGP neighbors route
	// reflector clients (RFC 4456), so that a hub reflects one spoke's
	// routes to the others.
	RouteReflector bool
	// NextHopSelf sends routes to dynamic neighbors with this speaker as
	// next hop (phase 3). Otherwise the next hop is left as it was learned,
	// for eBGP spokes too (phase 2: spokes resolve it with NHRP).
	NextHopSelf bool
	// Aggregates are originated with our next hop. Routes inside one
	// (more-specifics) are not sent to dynamic neighbors: summary-only. We
	// still learn and use them ourselves. An aggregate is originated
	// whether or not a more-specific route exists.
	Aggregates []netip.Prefix
	// Networks are originated with our next hop (Cisco "network").
	Networks []netip.Prefix

	// HoldTime, Keepalive and ConnectRetry are whole seconds; zero means
	// 90s, 30s (HoldTime/3 when HoldTime is set) and 5s. HoldTime is 3s to
	// 65535s (RFC 4271: never 1s or 2s), Keepalive 1s up to HoldTime/3,
	// ConnectRetry 1s to 3600s; see MinConnectRetry for what GoBGP makes
	// of short retries.
	HoldTime, Keepalive, ConnectRetry time.Duration
	// Password turns on TCP MD5 signatures (RFC 2385) on every session,
	// static and dynamic; at most MaxPasswordLen bytes. A peer with another
	// password never gets past the TCP handshake (the kernel drops its
	// segments), which shows as a connection timeout in LastError.
	Password string
	// GracefulRestart advertises graceful restart (RFC 4724) with
	// RestartTime (whole seconds up to 4095s; zero = 120s), and makes Stop
	// close the sessions without a Cease, so that peers keep our routes
	// while we restart.
	GracefulRestart bool
	RestartTime     time.Duration
	// MaxPrefixes bounds the prefixes one neighbor may send per address
	// family; zero = DefaultMaxPrefixes. Beyond it GoBGP closes the session
	// with a Cease (maximum number of prefixes reached): a static neighbor
	// then stays down until the neighbor list changes or we restart, a
	// dynamic one may reconnect.
	MaxPrefixes uint32

	// Log receives our log lines (component "bgp") and GoBGP's warnings and
	// errors (rate-limited); nil = slog.Default().
	Log *slog.Logger
	// OnSession, if set, is told when a session reaches Established (up)
	// and when an Established session goes down, with the reason in
	// words (as NeighborStatus.LastError). It is called from GoBGP's
	// watch goroutine, never concurrently with itself: it must not block
	// (the node posts an event and returns).
	OnSession func(neighbor netip.Addr, as uint32, dynamic, up bool, reason string)
}

// Neighbor is a session we open.
type Neighbor struct {
	Address     netip.Addr
	AS          uint32 // 1..4294967295; ours = iBGP
	Port        uint16 // 0 = 179
	Description string // at most MaxDescription bytes, shown in NeighborStatus
}

// DynamicRange is a range of addresses we accept sessions from.
//
// AS 0 accepts any AS: GoBGP then skips the AS check of the peer's OPEN
// and decides per session, from the AS the peer announces, whether it is
// iBGP (our AS) or eBGP — so one range serves a cloud where every spoke has
// its own AS. A non-zero AS is enforced: a peer announcing another one is
// refused with a NOTIFICATION (bad peer AS). Ranges may be listed several
// times with different prefixes; the longest matching prefix wins.
type DynamicRange struct {
	Prefix netip.Prefix
	AS     uint32
}

// ConfigError says which field of a Config is wrong and why.
type ConfigError struct {
	Field  string // e.g. "Neighbors[2].AS"
	Reason string
}

func (e *ConfigError) Error() string { return "bgp: config: " + e.Field + ": " + e.Reason }

// ErrConfig is what errors.Is finds in every *ConfigError.
var ErrConfig = errors.New("bgp: invalid config")

// Is makes errors.Is(err, ErrConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

func cfgErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// normalize checks c and returns a copy with the defaults filled in and the
// prefixes masked, so that the rest of the package never sees an invalid
// or unbounded value.
func (c Config) normalize() (Config, error) {
	if c.AS == 0 {
		return c, cfgErr("AS", "missing (valid: 1..4294967295)")
	}
	if !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		return c, cfgErr("RouterID", "%v is not a usable IPv4 address (GoBGP requires an IPv4 router ID)", c.RouterID)
	}
	if c.ListenPort > 65535 {
		return c, cfgErr("ListenPort", "%d is not a TCP port (valid: <0 none, 0 = 179, 1..65535)", c.ListenPort)
	}
	if c.ListenPort == 0 {
		c.ListenPort = DefaultPort
	}
	if c.ListenAddress.IsValid() && c.ListenAddress.Zone() != "" {
		return c, cfgErr("ListenAddress", "%v has a zone; use BindDevice", c.ListenAddress)
	}
	if len(c.BindDevice) > 15 { // IFNAMSIZ-1
		return c, cfgErr("BindDevice", "%q is longer than a Linux device name (15 bytes)", c.BindDevice)
	}
	if c.LocalAddress.IsValid() && (c.LocalAddress.IsUnspecified() || c.LocalAddress.Zone() != "") {
		return c, cfgErr("LocalAddress", "%v is not a usable source address", c.LocalAddress)
	}
	if len(c.Password) > MaxPasswordLen {
		return c, cfgErr("Password", "%d bytes (valid: at most %d, RFC 2385 keys as Linux takes them)", len(c.Password), MaxPasswordLen)
	}

	var err error
	if c.HoldTime, err = wholeSeconds("HoldTime", c.HoldTime, DefaultHoldTime, 3*time.Second, 65535*time.Second); err != nil {
		return c, err
	}
	defKeep := DefaultKeepalive
	if c.HoldTime != DefaultHoldTime {
		defKeep = max(time.Second, (c.HoldTime / 3).Truncate(time.Second))
	}
	if c.Keepalive, err = wholeSeconds("Keepalive", c.Keepalive, defKeep, time.Second, c.HoldTime/3); err != nil {
		return c, err
	}
	if c.ConnectRetry, err = wholeSeconds("ConnectRetry", c.ConnectRetry, DefaultConnectRetry, time.Second, time.Hour); err != nil {
		return c, err
	}
	if c.RestartTime, err = wholeSeconds("RestartTime", c.RestartTime, DefaultRestartTime, time.Second, 4095*time.Second); err != nil {
		return c, err
	}
	if c.MaxPrefixes == 0 {
		c.MaxPrefixes = DefaultMaxPrefixes
	}

	if len(c.Neighbors) > MaxNeighbors {
		return c, cfgErr("Neighbors", "%d neighbors (valid: at most %d)", len(c.Neighbors), MaxNeighbors)
	}
	c.Neighbors = slices.Clone(c.Neighbors)
	seen := make(map[netip.Addr]int, len(c.Neighbors))
	for i := range c.Neighbors {
		n := &c.Neighbors[i]
		field := fmt.Sprintf("Neighbors[%d]", i)
		if err := n.check(field); err != nil {
			return c, err
		}
		if j, dup := seen[n.Address]; dup {
			return c, cfgErr(field+".Address", "%v is already Neighbors[%d]", n.Address, j)
		}
		seen[n.Address] = i
	}

	if len(c.Dynamic) > MaxDynamicRanges {
		return c, cfgErr("Dynamic", "%d ranges (valid: at most %d)", len(c.Dynamic), MaxDynamicRanges)
	}
	c.Dynamic = slices.Clone(c.Dynamic)
	seenRange := make(map[netip.Prefix]int, len(c.Dynamic))
	for i := range c.Dynamic {
		d := &c.Dynamic[i]
		field := fmt.Sprintf("Dynamic[%d].Prefix", i)
		if !d.Prefix.IsValid() || d.Prefix.Addr().Zone() != "" {
			return c, cfgErr(field, "%v is not a prefix", d.Prefix)
		}
		d.Prefix = d.Prefix.Masked()
		if j, dup := seenRange[d.Prefix]; dup {
			return c, cfgErr(field, "%v is already Dynamic[%d]", d.Prefix, j)
		}
		seenRange[d.Prefix] = i
	}
	if len(c.Dynamic) > 0 && c.ListenPort < 0 {
		return c, cfgErr("ListenPort", "negative (no listener), but Dynamic ranges need one")
	}

	if c.Networks, err = prefixList("Networks", c.Networks); err != nil {
		return c, err
	}
	if c.Aggregates, err = prefixList("Aggregates", c.Aggregates); err != nil {
		return c, err
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c, nil
}

func (n *Neighbor) check(field string) error {
	if !n.Address.IsValid() || n.Address.IsUnspecified() || n.Address.IsMulticast() {
		return cfgErr(field+".Address", "%v is not a unicast address", n.Address)
	}
	if n.Address.Is4In6() {
		n.Address = n.Address.Unmap()
	}
	if n.AS == 0 {
		return cfgErr(field+".AS", "missing (valid: 1..4294967295)")
	}
	if len(n.Description) > MaxDescription {
		return cfgErr(field+".Description", "%d bytes (valid: at most %d)", len(n.Description), MaxDescription)
	}
	return nil
}

// wholeSeconds applies a default to d and checks it is a whole number of
// seconds in [lo, hi]: GoBGP's timers are integral seconds, and rounding
// silently would make the configured and the negotiated values differ.
func wholeSeconds(field string, d, def, lo, hi time.Duration) (time.Duration, error) {
	if d == 0 {
		d = def
	}
	if d%time.Second != 0 {
		return d, cfgErr(field, "%v is not a whole number of seconds", d)
	}
	if d < lo || d > hi {
		return d, cfgErr(field, "%v (valid: %v to %v)", d, lo, hi)
	}
	return d, nil
}

func prefixList(field string, l []netip.Prefix) ([]netip.Prefix, error) {
	if len(l) > MaxPrefixList {
		return nil, cfgErr(field, "%d prefixes (valid: at most %d)", len(l), MaxPrefixList)
	}
	out := make([]netip.Prefix, 0, len(l))
	seen := make(map[netip.Prefix]int, len(l))
	for i, p := range l {
		f := fmt.Sprintf("%s[%d]", field, i)
		if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return nil, cfgErr(f, "%v is not a prefix", p)
		}
		p = p.Masked()
		if j, dup := seen[p]; dup {
			return nil, cfgErr(f, "%v is already %s[%d]", p, field, j)
		}
		seen[p] = i
		out = append(out, p)
	}
	return out, nil
}
