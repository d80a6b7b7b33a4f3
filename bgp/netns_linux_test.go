//go:build linux

package bgp

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const netnsEnv = "DMVPN_BGP_NETNS"

// IPv6 sessions and routes, with every socket bound to a device
// (BindDevice) as over the overlay TUN. GoBGP opens its own sockets on its
// own goroutines, so the test re-executes itself in a new network
// namespace (CLONE_NEWNET) whose lo carries the speakers' addresses
// (documentation addresses: GoBGP refuses ::1 as a next hop).
func TestIPv6BoundToDevice(t *testing.T) {
	if os.Getenv(netnsEnv) == "" {
		testenv.RequireRoot(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestIPv6BoundToDevice$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		out, err := cmd.CombinedOutput()
		if err != nil {
			if strings.Contains(err.Error(), "operation not permitted") {
				testenv.Unavailable(t, "cannot create a network namespace: "+err.Error())
			}
			t.Fatalf("in a new network namespace: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "--- PASS: TestIPv6BoundToDevice") {
			t.Fatalf("the test did not run in the namespace:\n%s", out)
		}
		return
	}

	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	// Not a dummy device: this kernel may lack the module. Local traffic
	// goes over lo anyway.
	dev := lo
	a6 := func(h byte) netip.Addr { return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: h}) }
	for h := byte(1); h <= 3; h++ {
		ip := a6(h)
		err := netlink.AddrAdd(dev, &netlink.Addr{IPNet: netlink.NewIPNet(ip.AsSlice()), Flags: unix.IFA_F_NODAD})
		if err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	hc := Config{
		AS: 65000, RouterID: addr(1, 1), ListenAddress: a6(1), ListenPort: port, BindDevice: "lo",
		Dynamic:        []DynamicRange{{Prefix: netip.MustParsePrefix("2001:db8::/64")}},
		RouteReflector: true,
		HoldTime:       testHold, Keepalive: testKeepalive, ConnectRetry: testRetry,
		Log: testLog(t),
	}
	hub := start(t, hc)
	lan6 := func(h byte) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, h}), 48)
	}
	views := map[byte]*view{}
	for h := byte(2); h <= 3; h++ {
		c := Config{
			AS: 65000, RouterID: addr(1, h), ListenPort: -1, LocalAddress: a6(h), BindDevice: "lo",
			Neighbors: []Neighbor{{Address: a6(1), AS: 65000, Port: uint16(port)}},
			Networks:  []netip.Prefix{lan6(h), lan(1, h)}, // the IPv4 one has no IPv6 session to go over
			HoldTime:  testHold, Keepalive: testKeepalive, ConnectRetry: testRetry,
			Log: testLog(t),
		}
		views[h] = newView(start(t, c))
	}
	for h, v := range views {
		o := 5 - h
		v.wait(t, "IPv6 spokes learn each other's prefix with the announcer's IPv6 address as next hop", func(m map[netip.Prefix]Route) bool {
			return hasVia(m, lan6(o), a6(o))
		})
		if _, ok := v.m[lan(1, o)]; ok {
			t.Errorf("an IPv4 prefix crossed an IPv6 session: %s", fmtRoutes(v.m))
		}
	}
	n, ok := neighbor(hub, a6(2))
	if !ok || n.State != StateEstablished || !n.Dynamic || n.LocalAddress != a6(1) {
		t.Errorf("hub's view of the IPv6 spoke: %+v", n)
	}
}
