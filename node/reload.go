package node

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/nhrp/engine"
)

// Live reload. A reload re-reads the configuration file, validates it fully
// (config.Load), and applies the difference to the running node: NHSes
// added or removed (the others keep their registrations), static mappings,
// static routes (FIB and kernel), NHRP timers, flags and limits, secrets and
// keys (the old ones accepted for engine.AuthGrace), the log level,
// metrics.peer-limit. What
// cannot change in a running node (the tunnel itself, the node's name and
// API socket, the cache's bounds, a hub becoming a spoke) is refused with
// the reason, and nothing is applied: the running configuration stays.

// ErrNotLive is wrapped by the error Reload returns when the new
// configuration changes something that needs a restart.
var ErrNotLive = errors.New("these changes need a restart")

// fixedFields are the fields a running node cannot change, by their YAML
// names.
var fixedFields = []struct {
	name string
	get  func(c *config.Config) any
}{
	{"name", func(c *config.Config) any { return c.Name }},
	{"api-socket", func(c *config.Config) any { return c.APISocket }},
	{"tunnel.device", func(c *config.Config) any { return c.Tunnel.Device }},
	{"tunnel.address", func(c *config.Config) any { return c.Tunnel.Address }},
	{"tunnel.source", func(c *config.Config) any { return c.Tunnel.Source }},
	{"tunnel.key", func(c *config.Config) any { return c.Tunnel.Key }},
	{"tunnel.mtu", func(c *config.Config) any { return c.Tunnel.MTU }},
	{"tunnel.transport", func(c *config.Config) any { return c.Tunnel.Transport }},
	{"tunnel.udp-port", func(c *config.Config) any { return c.Tunnel.UDPPort }},
	{"nhrp.network-id", func(c *config.Config) any { return c.NHRP.NetworkID }},
	{"nhrp.max-entries", func(c *config.Config) any { return c.NHRP.MaxEntries }},
	{"nhrp.max-entries-per-nbma", func(c *config.Config) any { return c.NHRP.MaxEntriesPerNBMA }},
	{"role (nhrp.nhs empty: hub; not empty: spoke)", func(c *config.Config) any { return c.IsHub() }},
	{"ipsec", func(c *config.Config) any { return c.IPsec }},
	{"bgp (other than networks and neighbors)", func(c *config.Config) any {
		b := c.BGP
		b.Networks, b.Neighbors = nil, nil
		return b
	}},
}

// liveOnly returns a copy of c without the fields Reload can apply, so what
// is left must be equal for a reload to go ahead (fields added to the
// configuration later are fixed until Reload learns them).
func liveOnly(c *config.Config) config.Config {
	x := *c
	x.LogLevel, x.LogLevels = 0, nil
	x.Routes = nil
	x.Hooks = nil
	x.Metrics.PeerLimit = 0
	x.BGP.Networks, x.BGP.Neighbors = nil, nil
	h := &x.NHRP
	h.Holdtime, h.RegistrationTimeout, h.MaxHoldtime = 0, 0, 0
	h.Authentication, h.AuthenticationKeys, h.AuthenticationMaxSkew = "", nil, 0
	h.NHS, h.Map = nil, nil
	h.Shortcut, h.Redirect, h.Unique = false, false, false
	h.MaxSend, h.MaxReceive = config.Rate{}, config.Rate{}
	return x
}

// Reload re-reads the node's configuration file and applies it (see
// Apply). It returns what changed.
func (n *Node) Reload() ([]string, error) {
	if n.opts.ConfigPath == "" {
		return nil, errors.New("reload: the node was not started from a configuration file")
	}
	cfg, err := config.Load(n.opts.ConfigPath)
	if err != nil {
		n.log.Error("reload refused: the configuration does not validate; still running the previous one", "config", n.opts.ConfigPath, "err", err)
		return nil, fmt.Errorf("reload refused, still running the previous configuration: %w", err)
	}
	return n.Apply(cfg)
}

// Apply makes cfg the running configuration, or refuses it (ErrNotLive)
// and changes nothing.
func (n *Node) Apply(cfg *config.Config) ([]string, error) {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	old := n.live
	var fixed []string
	for _, f := range fixedFields {
		if !reflect.DeepEqual(f.get(old), f.get(cfg)) {
			fixed = append(fixed, fmt.Sprintf("%s (%v → %v)", f.name, f.get(old), f.get(cfg)))
		}
	}
	if len(fixed) == 0 && !reflect.DeepEqual(liveOnly(old), liveOnly(cfg)) {
		fixed = append(fixed, "a setting that cannot change live (metrics, or another field added since)")
	}
	if len(fixed) > 0 {
		err := fmt.Errorf("reload refused, still running the previous configuration: %w: %s", ErrNotLive, strings.Join(fixed, "; "))
		n.log.Error("reload refused", "config", n.opts.ConfigPath, "err", err)
		return nil, err
	}

	hooksChanged, applyHooks, err := n.applyHooks(old, cfg)
	if err != nil {
		n.log.Error("reload refused", "config", n.opts.ConfigPath, "err", err)
		return nil, err
	}
	live, err := engineLive(old, cfg)
	if err != nil {
		return nil, err
	}
	changed, err := n.engine.Reconfigure(n.clk.Now(), live)
	if err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	n.plane.SetNHS(nhsAddresses(cfg))
	changed = append(changed, n.applyRoutes(old.Routes, cfg.Routes)...)
	changed = append(changed, n.applyBGP(old, cfg)...)
	if applyHooks(); hooksChanged != "" {
		changed = append(changed, hooksChanged)
	}
	if old.LogLevel != cfg.LogLevel || !maps.Equal(old.LogLevels, cfg.LogLevels) {
		if n.opts.Levels != nil {
			n.opts.Levels.Set(cfg.LogLevel, cfg.LogLevels)
			changed = append(changed, fmt.Sprintf("log-level %v, log-levels %v (was %v, %v)", cfg.LogLevel, cfg.LogLevels, old.LogLevel, old.LogLevels))
		} else {
			changed = append(changed, "log-level: not applied (the node's logger has fixed levels)")
		}
	}
	if old.Metrics.PeerLimit != cfg.Metrics.PeerLimit {
		n.peerLimit.Store(int64(cfg.Metrics.PeerLimit))
		changed = append(changed, fmt.Sprintf("metrics.peer-limit %d (was %d)", cfg.Metrics.PeerLimit, old.Metrics.PeerLimit))
	}
	n.live = cfg
	n.poke() // new deadlines (an added NHS, a shorter refresh)
	if len(changed) == 0 {
		n.log.Info("reload: nothing changed", "config", n.opts.ConfigPath)
	}
	for _, c := range changed {
		n.log.Info("reload: "+c, "config", n.opts.ConfigPath)
	}
	return changed, nil
}

// engineLive is the engine's part of cfg.
func engineLive(old, cfg *config.Config) (engine.Live, error) {
	h := &cfg.NHRP
	l := engine.Live{
		Holdtime: h.Holdtime, RegistrationInterval: h.RegistrationTimeout, MaxHoldtime: h.MaxHoldtime,
		Unique: h.Unique, Shortcut: h.Shortcut, Redirect: h.Redirect,
		MaxSend:        engine.Rate{Packets: h.MaxSend.Packets, Interval: h.MaxSend.Interval},
		MaxReceive:     engine.Rate{Packets: h.MaxReceive.Packets, Interval: h.MaxReceive.Interval},
		Authentication: []byte(h.Authentication), HMACMaxSkew: h.AuthenticationMaxSkew,
		AuthChanged: old.NHRP.Authentication != h.Authentication || !slices.Equal(old.NHRP.AuthenticationKeys, h.AuthenticationKeys) ||
			old.NHRP.AuthenticationMaxSkew != h.AuthenticationMaxSkew,
	}
	k, err := hmacKeys(cfg)
	if err != nil {
		return l, fmt.Errorf("reload: %w", err)
	}
	l.HMAC = k
	l.NHS, l.Static = enginePeers(cfg)
	return l, nil
}

// routeDevice is the overlay device's kernel route control (absent in
// tests that run without a kernel device).
type routeDevice interface {
	AddRoute(netip.Prefix) error
	DeleteRoute(netip.Prefix) error
}

// applyRoutes moves the static routes from old to want, in the FIB and in
// the kernel, touching only those that differ.
func (n *Node) applyRoutes(old, want []config.Route) []string {
	var changed []string
	var prefixes []netip.Prefix
	was := map[netip.Prefix]netip.Addr{}
	for _, r := range old {
		was[r.Prefix] = r.Via
	}
	keep := map[netip.Prefix]bool{}
	for _, r := range want {
		keep[r.Prefix] = true
		via, had := was[r.Prefix]
		if had && via == r.Via {
			continue
		}
		n.fib.Add(fib.Route{Prefix: r.Prefix, NextHop: r.Via, Source: fib.SourceStatic})
		n.syncKernelRoute(r.Prefix)
		prefixes = append(prefixes, r.Prefix)
		changed = append(changed, fmt.Sprintf("routes: %v via %v", r.Prefix, r.Via))
	}
	for _, r := range old {
		if keep[r.Prefix] {
			continue
		}
		n.fib.Delete(r.Prefix, fib.SourceStatic)
		n.syncKernelRoute(r.Prefix)
		prefixes = append(prefixes, r.Prefix)
		changed = append(changed, fmt.Sprintf("routes: removed %v", r.Prefix))
	}
	n.routesChanged(prefixes)
	return changed
}
