// Package overlay creates and configures the tunnel's overlay device: a
// Linux TUN (wireguard-go's tun package, with virtio-net offloads kept on)
// whose address, MTU and routes are set over netlink.
package overlay

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/tun"
)

// Device is a configured TUN device.
type Device struct {
	tun.Device
	name   string
	link   netlink.Link
	routes []netip.Prefix
}

// Create makes the TUN device name with the given MTU, assigns addr (the
// overlay address with the tunnel subnet's length), brings it up and routes
// each prefix in routes into it. The kernel then hands dmvpn every packet
// for the tunnel subnet and those prefixes.
func Create(name string, mtu int, addr netip.Prefix, routes []netip.Prefix) (*Device, error) {
	dev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("overlay: create TUN %q: %w", name, err)
	}
	d := &Device{Device: dev, name: name}
	if err := d.configure(mtu, addr, routes); err != nil {
		dev.Close()
		return nil, err
	}
	return d, nil
}

func (d *Device) configure(mtu int, addr netip.Prefix, routes []netip.Prefix) error {
	link, err := netlink.LinkByName(d.name)
	if err != nil {
		return fmt.Errorf("overlay: %s: %w", d.name, err)
	}
	d.link = link
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("overlay: %s: set mtu %d: %w", d.name, mtu, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}}
	if err := netlink.AddrReplace(link, a); err != nil {
		return fmt.Errorf("overlay: %s: add address %s: %w", d.name, addr, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
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
func (d *Device) Index() int { return d.link.Attrs().Index }

// AddRoute routes prefix into the device.
func (d *Device) AddRoute(prefix netip.Prefix) error {
	prefix = prefix.Masked()
	r := &netlink.Route{
		LinkIndex: d.link.Attrs().Index,
		Dst:       &net.IPNet{IP: prefix.Addr().AsSlice(), Mask: net.CIDRMask(prefix.Bits(), prefix.Addr().BitLen())},
		Scope:     netlink.SCOPE_LINK,
		Protocol:  netlink.RouteProtocol(0x44), // "dmvpn" in `ip route` (unassigned protocol number)
	}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("overlay: %s: route %s: %w", d.name, prefix, err)
	}
	d.routes = append(d.routes, prefix)
	return nil
}

// DeleteRoute removes a route added with AddRoute.
func (d *Device) DeleteRoute(prefix netip.Prefix) error {
	prefix = prefix.Masked()
	r := &netlink.Route{
		LinkIndex: d.link.Attrs().Index,
		Dst:       &net.IPNet{IP: prefix.Addr().AsSlice(), Mask: net.CIDRMask(prefix.Bits(), prefix.Addr().BitLen())},
		Scope:     netlink.SCOPE_LINK,
	}
	return netlink.RouteDel(r)
}

// Close removes the routes and the device.
func (d *Device) Close() error {
	// Routes go first so nothing is routed into a closing device; the
	// kernel would drop them with the device anyway, so errors (a route
	// already gone) do not matter.
	for _, r := range d.routes {
		_ = d.DeleteRoute(r)
	}
	return d.Device.Close()
}
