// Package overlay creates and configures the tunnel's overlay device: a
// Linux TUN (wireguard-go's tun package, with virtio-net offloads kept on)
// whose address, MTU and routes are set over netlink.
//
// Routes the device installs (configured static routes, and the routes the
// node learns over BGP) carry RouteProtocol, so `ip route` shows them as
// ours, other daemons and our own kernel mirror (localroute) can tell them
// apart, and deleting one never removes another daemon's route of the same
// prefix.
package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// RouteProtocol is the kernel route protocol (rtm_protocol) of every route
// dmvpn installs: 0x44 = 68, unassigned in the kernel's and iproute2's
// lists (`ip route` prints "proto 68" unless a line "68 dmvpn" in
// /etc/iproute2/rt_protos or rt_protos.d names it). The node hands it to
// localroute, which ignores routes with this protocol when it reports other
// daemons' overlay routes. Untyped, so it fits netlink.RouteProtocol and
// plain ints alike.
const RouteProtocol = 0x44

// ErrClosed is returned by AddRoute after Close.
var ErrClosed = errors.New("overlay: device closed")

// ErrRouteExists means the kernel already has a route for the prefix with
// the same metric (and TOS) that is not ours: another daemon's, or one an
// operator added. AddRoute leaves it alone rather than replacing it, so a
// learned route can never take over, say, the host's own LAN route.
var ErrRouteExists = errors.New("a route for this prefix and metric that is not dmvpn's exists")

// RouteError is a failed route change, with what was asked.
type RouteError struct {
	Device string
	Op     string // "add" or "delete"
	Prefix netip.Prefix
	Err    error
}

func (e *RouteError) Error() string {
	return fmt.Sprintf("overlay: %s: %s route %s: %v", e.Device, e.Op, e.Prefix, e.Err)
}

func (e *RouteError) Unwrap() error { return e.Err }

// Device is a configured TUN device. AddRoute, DeleteRoute and Close may be
// called from any goroutines.
type Device struct {
	tun.Device
	name  string
	index int
	// h is a netlink handle opened where the device was created: every
	// route change goes to the device's network namespace, whichever
	// thread makes it.
	h *netlink.Handle

	mu     sync.Mutex // guards routes, discard and closed, and serializes h
	routes map[netip.Prefix]struct{}
	// discard are the unreachable routes of summaries (AddDiscardRoute);
	// they name no device, so Close removes them itself.
	discard map[netip.Prefix]struct{}
	closed  bool
}

// Create makes the TUN device name with the given MTU, assigns addr (the
// overlay address with the tunnel subnet's length), brings it up and routes
// each prefix in routes into it. The kernel then hands dmvpn every packet
// for the tunnel subnet and those prefixes. The device and its routes
// belong to the calling thread's network namespace.
func Create(name string, mtu int, addr netip.Prefix, routes []netip.Prefix) (*Device, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("overlay: netlink: %w", err)
	}
	dev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("overlay: create TUN %q: %w", name, err)
	}
	d := &Device{Device: dev, name: name, h: h, routes: map[netip.Prefix]struct{}{}}
	if err := d.configure(mtu, addr, routes); err != nil {
		dev.Close()
		h.Close()
		return nil, err
	}
	return d, nil
}

func (d *Device) configure(mtu int, addr netip.Prefix, routes []netip.Prefix) error {
	link, err := d.h.LinkByName(d.name)
	if err != nil {
		return fmt.Errorf("overlay: %s: %w", d.name, err)
	}
	d.index = link.Attrs().Index
	if err := d.h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("overlay: %s: set mtu %d: %w", d.name, mtu, err)
	}
	a := &netlink.Addr{IPNet: ipNet(addr)}
	if err := d.h.AddrReplace(link, a); err != nil {
		return fmt.Errorf("overlay: %s: add address %s: %w", d.name, addr, err)
	}
	if err := d.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("overlay: %s: set up: %w", d.name, err)
	}
	for _, r := range routes {
		if err := d.AddRoute(r); err != nil {
			return err
		}
	}
	return nil
}

// Index is the device's interface index.
func (d *Device) Index() int { return d.index }

// route is the kernel route for prefix into the device.
func (d *Device) route(prefix netip.Prefix) *netlink.Route {
	return &netlink.Route{
		LinkIndex: d.index,
		Dst:       ipNet(prefix),
		Scope:     netlink.SCOPE_LINK,
		Protocol:  netlink.RouteProtocol(RouteProtocol),
	}
}

// AddRoute routes prefix (IPv4 or IPv6) into the device. It is idempotent:
// adding a prefix that is routed already changes nothing. It never replaces
// a route of the same prefix and metric that is not ours (ErrRouteExists,
// in a *RouteError); one of ours left by an earlier run is taken over.
func (d *Device) AddRoute(prefix netip.Prefix) error {
	if !prefix.IsValid() {
		return &RouteError{Device: d.name, Op: "add", Prefix: prefix, Err: errors.New("invalid prefix")}
	}
	prefix = prefix.Masked()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return &RouteError{Device: d.name, Op: "add", Prefix: prefix, Err: ErrClosed}
	}
	_, ours := d.routes[prefix]
	// Create, never replace: a replace would overwrite whatever route has
	// this prefix and metric, the host's connected LAN route included.
	err := d.h.RouteAdd(d.route(prefix))
	if errors.Is(err, unix.EEXIST) {
		if ours {
			return nil // still there
		}
		// Ours from an earlier run (the delete matches our protocol
		// only), or someone else's, which stays.
		if d.h.RouteDel(d.route(prefix)) != nil {
			return &RouteError{Device: d.name, Op: "add", Prefix: prefix, Err: ErrRouteExists}
		}
		err = d.h.RouteAdd(d.route(prefix))
	}
	if err != nil {
		return &RouteError{Device: d.name, Op: "add", Prefix: prefix, Err: err}
	}
	d.routes[prefix] = struct{}{}
	return nil
}

// DeleteRoute removes the route for prefix that AddRoute installed (only
// ours: another daemon's route of the same prefix stays) and forgets it, so
// Close does not try again. A route that is already gone is not an error.
func (d *Device) DeleteRoute(prefix netip.Prefix) error {
	if !prefix.IsValid() {
		return nil
	}
	prefix = prefix.Masked()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil // Close removed it, with the device
	}
	return d.deleteLocked(prefix)
}

func (d *Device) deleteLocked(prefix netip.Prefix) error {
	err := d.h.RouteDel(d.route(prefix))
	if err != nil && !errors.Is(err, unix.ESRCH) {
		// Still there, as far as we know: Close tries again.
		return &RouteError{Device: d.name, Op: "delete", Prefix: prefix, Err: err}
	}
	delete(d.routes, prefix)
	return nil
}

// discardRoute is the kernel route that discards prefix: type unreachable
// (the kernel answers ICMP destination unreachable, as a Cisco summary's
// Null0 route does), our protocol, no device.
func discardRoute(prefix netip.Prefix) *netlink.Route {
	return &netlink.Route{
		Dst:      ipNet(prefix),
		Type:     unix.RTN_UNREACHABLE,
		Protocol: netlink.RouteProtocol(RouteProtocol),
	}
}

// AddDiscardRoute installs an unreachable route for prefix, a summary this
// node announces (bgp.aggregates): traffic for the parts of the summary no
// more specific route covers is refused here instead of following the
// host's default route out of the underlay, in clear, to wherever it leads
// (Cisco installs the same for aggregate-address: "is a summary, Null0").
// Idempotent; a route of the same prefix that is not ours stays
// (ErrRouteExists). Close removes it.
func (d *Device) AddDiscardRoute(prefix netip.Prefix) error {
	if !prefix.IsValid() {
		return &RouteError{Device: d.name, Op: "add discard", Prefix: prefix, Err: errors.New("invalid prefix")}
	}
	prefix = prefix.Masked()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return &RouteError{Device: d.name, Op: "add discard", Prefix: prefix, Err: ErrClosed}
	}
	if _, ok := d.discard[prefix]; ok {
		return nil
	}
	err := d.h.RouteAdd(discardRoute(prefix))
	if errors.Is(err, unix.EEXIST) {
		// Ours from an earlier run (the delete matches our protocol and
		// type only), or someone else's, which stays.
		if d.h.RouteDel(discardRoute(prefix)) != nil {
			return &RouteError{Device: d.name, Op: "add discard", Prefix: prefix, Err: ErrRouteExists}
		}
		err = d.h.RouteAdd(discardRoute(prefix))
	}
	if err != nil {
		return &RouteError{Device: d.name, Op: "add discard", Prefix: prefix, Err: err}
	}
	if d.discard == nil {
		d.discard = make(map[netip.Prefix]struct{})
	}
	d.discard[prefix] = struct{}{}
	return nil
}

// Routes returns the prefixes routed into the device, in no order.
func (d *Device) Routes() []netip.Prefix {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]netip.Prefix, 0, len(d.routes))
	for p := range d.routes {
		out = append(out, p)
	}
	return out
}

// Close removes the routes and the device. Later calls do nothing; AddRoute
// fails with ErrClosed after it.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	// Routes go first so nothing is routed into a closing device; the
	// kernel would drop them with the device anyway, so errors (a route
	// already gone) do not matter.
	for p := range d.routes {
		_ = d.deleteLocked(p)
	}
	for p := range d.discard {
		_ = d.h.RouteDel(discardRoute(p)) // not tied to the device: remove it ourselves
	}
	d.h.Close()
	d.mu.Unlock()
	return d.Device.Close()
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
