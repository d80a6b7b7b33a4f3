//go:build linux

package overlay

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// inNetns runs f on a goroutine whose OS thread has been moved into a new
// network namespace, and waits for it. Devices and netlink handles f creates
// belong to that namespace for their whole life, whichever thread later uses
// them. The thread is never unlocked, so the runtime discards it instead of
// reusing it; the namespace goes with the last handle and device in it.
func inNetns(t *testing.T, f func() error) {
	t.Helper()
	testenv.RequireRoot(t)
	type result struct {
		err         error
		unavailable bool
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			res <- result{fmt.Errorf("unshare(CLONE_NEWNET): %w", err), err == unix.EPERM}
			return
		}
		res <- result{f(), false}
	}()
	select {
	case r := <-res:
		if r.unavailable {
			testenv.Unavailable(t, r.err.Error())
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out setting up the network namespace")
	}
}

// nsSetup creates, in a new namespace, the TUN device "dmvpn0" (address
// addr, routes) and a LAN device "lan0" with 192.168.1.1/24 and 2001:db8:f::1/64,
// and returns the device and a netlink handle into the namespace.
func nsSetup(t *testing.T, addr netip.Prefix, routes ...netip.Prefix) (*Device, *netlink.Handle, netlink.Link) {
	t.Helper()
	var (
		d   *Device
		h   *netlink.Handle
		lan netlink.Link
	)
	inNetns(t, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("no TUN: %w", err)
		}
		unix.Close(fd)
		if h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return err
		}
		// A veth pair (no dummy module on every kernel), both ends up.
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0"}, PeerName: "lan1"}); err != nil {
			return err
		}
		peer, err := h.LinkByName("lan1")
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(peer); err != nil {
			return err
		}
		if lan, err = h.LinkByName("lan0"); err != nil {
			return err
		}
		for _, a := range []string{"192.168.1.1/24", "2001:db8:f::1/64"} {
			if err := h.AddrAdd(lan, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix(a)), Flags: unix.IFA_F_NODAD}); err != nil {
				return err
			}
		}
		if err := h.LinkSetUp(lan); err != nil {
			return err
		}
		d, err = Create("dmvpn0", 1400, addr, routes)
		return err
	})
	t.Cleanup(func() {
		d.Close()
		h.Close()
	})
	return d, h, lan
}

// kroute is a kernel route as a test checks it.
type kroute struct {
	Prefix   netip.Prefix
	Link     int
	Protocol int
	Scope    netlink.Scope
}

// routesTo lists the kernel's main-table routes for prefix, both families.
func routesTo(t *testing.T, h *netlink.Handle, prefix netip.Prefix) []kroute {
	t.Helper()
	rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []kroute
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		a, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		if p := netip.PrefixFrom(a.Unmap(), ones); p == prefix {
			out = append(out, kroute{Prefix: p, Link: r.LinkIndex, Protocol: int(r.Protocol), Scope: r.Scope})
		}
	}
	return out
}

func TestRoutesIPv4AndIPv6(t *testing.T) {
	for _, tc := range []struct {
		name   string
		addr   string
		routes []string
	}{
		{"ipv4", "10.0.0.11/24", []string{"10.1.0.0/16", "10.2.0.0/16"}},
		{"ipv6", "2001:db8::11/64", []string{"2001:db8:1::/48", "2001:db8:2::/48"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := netip.MustParsePrefix
			d, h, lan := nsSetup(t, p(tc.addr), p(tc.routes[0]))
			r0, r1 := p(tc.routes[0]), p(tc.routes[1])
			ours := []kroute{{Prefix: r0, Link: d.Index(), Protocol: RouteProtocol, Scope: netlink.SCOPE_LINK}}
			if r0.Addr().Is6() {
				ours[0].Scope = netlink.SCOPE_UNIVERSE // IPv6 routes have no scope
			}
			if got := routesTo(t, h, r0); !slices.Equal(got, ours) {
				t.Fatalf("after Create: kernel has %+v, want %+v", got, ours)
			}

			// Adding again changes nothing: no duplicate, no error.
			for range 3 {
				if err := d.AddRoute(r0); err != nil {
					t.Fatal(err)
				}
			}
			if got := routesTo(t, h, r0); !slices.Equal(got, ours) {
				t.Fatalf("after adding it again: %+v", got)
			}

			// Someone deletes ours; adding it again puts it back.
			if err := h.RouteDel(d.route(r0)); err != nil {
				t.Fatal(err)
			}
			if err := d.AddRoute(r0); err != nil {
				t.Fatal(err)
			}
			if got := routesTo(t, h, r0); !slices.Equal(got, ours) {
				t.Fatalf("after it was deleted behind our back: %+v", got)
			}

			// Another daemon's route of the same prefix (another metric)
			// through our device survives our delete.
			theirs := &netlink.Route{LinkIndex: d.Index(), Dst: ipNet(r0), Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_BGP, Priority: 20}
			if err := h.RouteAdd(theirs); err != nil {
				t.Fatal(err)
			}
			if err := d.DeleteRoute(r0); err != nil {
				t.Fatal(err)
			}
			got := routesTo(t, h, r0)
			if len(got) != 1 || got[0].Protocol != unix.RTPROT_BGP {
				t.Fatalf("after DeleteRoute: %+v, want only the BGP route", got)
			}
			if err := d.DeleteRoute(r0); err != nil {
				t.Fatalf("deleting a route already gone: %v", err)
			}
			if slices.Contains(d.Routes(), r0) {
				t.Fatal("DeleteRoute did not forget the prefix")
			}

			// A route of the same prefix and metric that is not ours
			// (the host's LAN route) is not replaced.
			lanRoute := &netlink.Route{LinkIndex: lan.Attrs().Index, Dst: ipNet(r1), Protocol: unix.RTPROT_STATIC}
			if r1.Addr().Is6() {
				lanRoute.Priority = 1024 // what ours gets by default
			}
			if err := h.RouteAdd(lanRoute); err != nil {
				t.Fatal(err)
			}
			err := d.AddRoute(r1)
			var re *RouteError
			if !errors.Is(err, ErrRouteExists) || !errors.As(err, &re) || re.Prefix != r1 || re.Op != "add" {
				t.Fatalf("AddRoute over the LAN route: %v", err)
			}
			if got := routesTo(t, h, r1); len(got) != 1 || got[0].Link != lan.Attrs().Index {
				t.Fatalf("the LAN route was touched: %+v", got)
			}
			if err := h.RouteDel(lanRoute); err != nil {
				t.Fatal(err)
			}

			// One of ours left by an earlier run is taken over.
			if err := h.RouteAdd(d.route(r1)); err != nil {
				t.Fatal(err)
			}
			if err := d.AddRoute(r1); err != nil {
				t.Fatalf("taking over our stale route: %v", err)
			}
			want1 := []kroute{{Prefix: r1, Link: d.Index(), Protocol: RouteProtocol, Scope: ours[0].Scope}}
			if got := routesTo(t, h, r1); !slices.Equal(got, want1) {
				t.Fatalf("after taking over: %+v", got)
			}
			if rs := d.Routes(); len(rs) != 1 || rs[0] != r1 {
				t.Fatalf("Routes() = %v, want [%v]", rs, r1)
			}

			// Close removes ours, leaves the rest, and refuses more.
			if err := h.RouteAdd(&netlink.Route{LinkIndex: lan.Attrs().Index, Dst: ipNet(r0), Protocol: unix.RTPROT_STATIC}); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if len(d.Routes()) != 0 {
				t.Fatalf("Close left %v", d.Routes())
			}
			if got := routesTo(t, h, r1); len(got) != 0 {
				t.Fatalf("after Close: %+v", got)
			}
			if got := routesTo(t, h, r0); len(got) != 1 || got[0].Link != lan.Attrs().Index {
				t.Fatalf("Close touched another device's route: %+v", got)
			}
			if err := d.AddRoute(r0); !errors.Is(err, ErrClosed) {
				t.Fatalf("AddRoute after Close: %v", err)
			}
			if err := d.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

// TestCloseWhileAdding: AddRoute and DeleteRoute from several goroutines
// while Close runs from another (go test -race); afterwards no route of
// ours is left and every call either succeeded before Close or failed
// with ErrClosed.
func TestCloseWhileAdding(t *testing.T) {
	d, h, _ := nsSetup(t, netip.MustParsePrefix("10.0.0.11/24"))
	const workers, each = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*2)
	start := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range each {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(10 + w), byte(i), 0}), 24)
				if err := d.AddRoute(p); err != nil && !errors.Is(err, ErrClosed) {
					errs <- err
				}
				if i%3 == 0 {
					if err := d.DeleteRoute(p); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	close(start)
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	wg.Wait()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 0 {
		t.Fatalf("%d routes of ours left after Close, e.g. %v", len(rs), rs[0])
	}
	if len(d.Routes()) != 0 {
		t.Fatalf("Close left %d prefixes", len(d.Routes()))
	}
}

// TestDiscardRoute: a summary's unreachable route goes in once, carries our
// protocol, does not hide a more specific route into the device, and Close
// removes it (it is tied to no device).
func TestDiscardRoute(t *testing.T) {
	p := netip.MustParsePrefix
	summary, lan := p("10.1.0.0/16"), p("10.1.2.0/24")
	d, h, _ := nsSetup(t, p("10.0.0.1/24"), lan)
	for range 2 {
		if err := d.AddDiscardRoute(summary); err != nil {
			t.Fatal(err)
		}
	}
	list := func() []netlink.Route {
		rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		var out []netlink.Route
		for _, r := range rs {
			if r.Dst != nil && r.Dst.String() == summary.String() {
				out = append(out, r)
			}
		}
		return out
	}
	rs := list()
	if len(rs) != 1 || rs[0].Type != unix.RTN_UNREACHABLE || int(rs[0].Protocol) != RouteProtocol {
		t.Fatalf("discard routes for %s: %+v, want one unreachable route with protocol %d", summary, rs, RouteProtocol)
	}
	// A destination inside the summary that a more specific route covers
	// still goes into the device; one that none covers is unreachable.
	got, err := h.RouteGet(netip.MustParseAddr("10.1.2.10").AsSlice())
	if err != nil || len(got) == 0 || got[0].LinkIndex != d.Index() {
		t.Errorf("10.1.2.10 resolves to %+v (%v), want the device", got, err)
	}
	if _, err := h.RouteGet(netip.MustParseAddr("10.1.9.10").AsSlice()); err == nil {
		t.Errorf("10.1.9.10, inside the summary and covered by nothing else, resolves: want unreachable")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if rs := list(); len(rs) != 0 {
		t.Errorf("after Close: %+v", rs)
	}
}
