package localroute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// The mirror against a real kernel, in a network namespace the test
// creates: "tun0" stands for the overlay device (a veth: what matters is
// its interface index), "lan0" for a LAN.

// netns runs f on a goroutine whose OS thread has moved into a new network
// namespace, and waits for it. Handles and subscriptions f opens stay in
// that namespace for their whole life; the thread is never unlocked, so the
// runtime discards it.
func inNetns(t *testing.T, f func() error) {
	t.Helper()
	testenv.RequireRoot(t)
	res := make(chan error, 1)
	unavailable := make(chan bool, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			unavailable <- err == unix.EPERM
			res <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		unavailable <- false
		res <- f()
	}()
	select {
	case err := <-res:
		if <-unavailable && err != nil {
			testenv.Unavailable(t, err.Error())
		}
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out setting up the network namespace")
	}
}

type family struct {
	name    string
	subnet  string // the tunnel subnet
	tunAddr string
	offAddr string // another subnet on tun0: a gateway there is off the tunnel subnet
	lanAddr string
	gw      func(i int) string // a gateway on the tunnel subnet
	offGW   string
	lanGW   string
	dst     func(i int) string // destination prefixes
}

var families = []family{
	{
		name: "ipv4", subnet: "10.0.0.0/24", tunAddr: "10.0.0.11/24", offAddr: "172.16.0.11/24", lanAddr: "192.168.1.1/24",
		gw: func(i int) string { return fmt.Sprintf("10.0.0.%d", i) }, offGW: "172.16.0.1", lanGW: "192.168.1.2",
		dst: func(i int) string { return fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256) },
	},
	{
		name: "ipv6", subnet: "2001:db8::/64", tunAddr: "2001:db8::11/64", offAddr: "2001:db8:ac::11/64", lanAddr: "2001:db8:f::1/64",
		gw: func(i int) string { return fmt.Sprintf("2001:db8::%x", i) }, offGW: "2001:db8:ac::1", lanGW: "2001:db8:f::2",
		dst: func(i int) string { return fmt.Sprintf("2001:db8:%x::/48", 0x1000+i) },
	},
}

// recorder keeps what OnOverlayRoute reported: the sequence and the set.
type recorder struct {
	mu     sync.Mutex
	seq    []string
	set    map[netip.Prefix]OverlayRoute
	notify chan struct{}
	// gate blocks every callback until release closes it (set before the
	// mirror starts, never changed: no race with the mirror's goroutine).
	gate    chan struct{}
	release func()
}

func newRecorder(gated bool) *recorder {
	r := &recorder{set: map[netip.Prefix]OverlayRoute{}, notify: make(chan struct{}, 1), gate: make(chan struct{})}
	r.release = sync.OnceFunc(func() { close(r.gate) })
	if !gated {
		r.release()
	}
	return r
}

func (r *recorder) on(o OverlayRoute, present bool) {
	<-r.gate
	r.mu.Lock()
	if present {
		r.set[o.Prefix] = o
		r.seq = append(r.seq, fmt.Sprintf("+%s via %s proto %d", o.Prefix, o.Gateway, o.Protocol))
	} else {
		delete(r.set, o.Prefix)
		r.seq = append(r.seq, fmt.Sprintf("-%s", o.Prefix))
	}
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// wait waits (bounded) until cond holds over the recorder.
func (r *recorder) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.notify:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("%s: timed out; reported so far:\n%s", what, strings.Join(r.seq, "\n"))
		}
	}
}

// lab is one namespace with tun0, lan0 and a mirror.
type lab struct {
	t      *testing.T
	f      family
	h      *netlink.Handle
	tun    netlink.Link
	lan    netlink.Link
	k      *Kernel
	rec    *recorder
	cancel context.CancelFunc
	seen   int // how much of rec.seq earlier checks consumed
}

func newLab(t *testing.T, f family, gated bool, before func(l *lab) error, opts KernelOptions) *lab {
	l := &lab{t: t, f: f, rec: newRecorder(gated)}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	inNetns(t, func() error {
		var err error
		if l.h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return err
		}
		veth := func(name string, addrs ...string) (netlink.Link, error) {
			if err := l.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
				return nil, err
			}
			for _, n := range []string{name + "p", name} {
				ln, err := l.h.LinkByName(n)
				if err != nil {
					return nil, err
				}
				if err := l.h.LinkSetUp(ln); err != nil {
					return nil, err
				}
			}
			ln, err := l.h.LinkByName(name)
			if err != nil {
				return nil, err
			}
			for _, a := range addrs {
				p := netip.MustParsePrefix(a)
				if err := l.h.AddrAdd(ln, &netlink.Addr{IPNet: ipnet(p), Flags: unix.IFA_F_NODAD}); err != nil {
					return nil, fmt.Errorf("address %s: %w", a, err)
				}
			}
			return ln, nil
		}
		if l.tun, err = veth("tun0", f.tunAddr, f.offAddr); err != nil {
			return err
		}
		if l.lan, err = veth("lan0", f.lanAddr); err != nil {
			return err
		}
		if before != nil {
			if err := before(l); err != nil {
				return err
			}
		}
		opts.Subnet = netip.MustParsePrefix(f.subnet)
		opts.OwnProtocol = own
		opts.OnOverlayRoute = l.rec.on
		l.k, err = NewKernelWithOptions(ctx, l.tun.Attrs().Index, opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
		return err
	})
	t.Cleanup(func() {
		l.rec.release()
		cancel()
		select {
		case <-l.k.Done():
		case <-time.After(10 * time.Second):
			t.Error("the mirror did not stop")
		}
		l.h.Close()
	})
	return l
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func ip(s string) net.IP { return netip.MustParseAddr(s).AsSlice() }

// route is a main-table route to dst with the given protocol.
func (l *lab) route(dst string, proto int, link netlink.Link, gw string) *netlink.Route {
	r := &netlink.Route{Dst: ipnet(netip.MustParsePrefix(dst)), Protocol: netlink.RouteProtocol(proto), LinkIndex: link.Attrs().Index}
	if gw != "" {
		r.Gw = ip(gw)
	}
	return r
}

func (l *lab) do(what string, err error) {
	l.t.Helper()
	if err != nil {
		l.t.Fatalf("%s: %v", what, err)
	}
}

// sync waits until every notification caused so far has been handled (a
// sentinel route's addition and deletion come after them on the same
// socket), then checks that exactly want was reported since the last check.
func (l *lab) sync(want ...string) {
	l.t.Helper()
	sentinel := l.f.dst(255)
	r := l.route(sentinel, unix.RTPROT_STATIC, l.tun, l.f.gw(254))
	l.do("sentinel", l.h.RouteAdd(r))
	l.do("sentinel delete", l.h.RouteDel(r))
	end := "-" + netip.MustParsePrefix(sentinel).String()
	l.rec.wait(l.t, "sentinel", func() bool {
		return len(l.rec.seq) > l.seen && l.rec.seq[len(l.rec.seq)-1] == end
	})
	l.rec.mu.Lock()
	got := slices.Clone(l.rec.seq[l.seen : len(l.rec.seq)-2])
	l.seen = len(l.rec.seq)
	l.rec.mu.Unlock()
	if !slices.Equal(got, want) {
		l.t.Fatalf("reported:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestKernelOverlayRoutes(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			const bgp, ospf = unix.RTPROT_BGP, unix.RTPROT_OSPF
			d := func(i int) string { return netip.MustParsePrefix(f.dst(i)).String() }
			// A route there before the mirror starts is reported at start.
			l := newLab(t, f, false, func(l *lab) error {
				return l.h.RouteAdd(l.route(f.dst(0), ospf, l.tun, f.gw(9)))
			}, KernelOptions{})
			l.rec.mu.Lock()
			if got := strings.Join(l.rec.seq, ";"); got != fmt.Sprintf("+%s via %s proto %d", d(0), f.gw(9), ospf) {
				t.Fatalf("at start: %q", got)
			}
			l.seen = len(l.rec.seq)
			l.rec.mu.Unlock()

			l.do("add", l.h.RouteAdd(l.route(f.dst(1), bgp, l.tun, f.gw(1))))
			l.sync(fmt.Sprintf("+%s via %s proto %d", d(1), f.gw(1), bgp))

			l.do("replace", l.h.RouteReplace(l.route(f.dst(1), bgp, l.tun, f.gw(2))))
			l.sync(fmt.Sprintf("+%s via %s proto %d", d(1), f.gw(2), bgp))

			l.do("replace off the subnet", l.h.RouteReplace(l.route(f.dst(1), bgp, l.tun, f.offGW)))
			l.sync("-" + d(1))

			l.do("replace back", l.h.RouteReplace(l.route(f.dst(1), bgp, l.tun, f.gw(3))))
			l.do("replace via the LAN", l.h.RouteReplace(l.route(f.dst(1), bgp, l.lan, f.lanGW)))
			l.sync(fmt.Sprintf("+%s via %s proto %d", d(1), f.gw(3), bgp), "-"+d(1))
			if _, ok := l.k.Local(netip.MustParsePrefix(f.dst(1)).Addr().Next()); !ok {
				t.Fatal("a route out of the LAN is not local")
			}

			// ECMP (OSPF): the first next hop through the overlay device
			// with a gateway on the subnet.
			mp := l.route(f.dst(2), ospf, l.tun, "")
			mp.LinkIndex = 0
			mp.MultiPath = []*netlink.NexthopInfo{
				{LinkIndex: l.lan.Attrs().Index, Gw: ip(f.lanGW)},
				{LinkIndex: l.tun.Attrs().Index, Gw: ip(f.gw(4))},
				{LinkIndex: l.tun.Attrs().Index, Gw: ip(f.gw(5))},
			}
			l.do("multipath", l.h.RouteAdd(mp))
			l.sync(fmt.Sprintf("+%s via %s proto %d", d(2), f.gw(4), ospf))

			// Our own protocol is never reported; it is via the tunnel.
			l.do("ours", l.h.RouteAdd(l.route(f.dst(3), own, l.tun, f.gw(6))))
			l.sync()
			if _, ok := l.k.Local(netip.MustParsePrefix(f.dst(3)).Addr().Next()); ok {
				t.Fatal("our route into the tunnel counts as local")
			}
			// A device route (no gateway) is not an overlay route.
			l.do("device route", l.h.RouteAdd(l.route(f.dst(4), unix.RTPROT_STATIC, l.tun, "")))
			l.sync()

			l.do("delete multipath", l.h.RouteDel(mp))
			if f.name == "ipv6" {
				// IPv6 deletes the siblings one by one, as asked: for a
				// moment only the last is left.
				l.sync(fmt.Sprintf("+%s via %s proto %d", d(2), f.gw(5), ospf), "-"+d(2))
			} else {
				l.sync("-" + d(2))
			}
			if _, ok := l.k.Local(netip.MustParseAddr(f.lanGW).Next()); !ok {
				t.Fatal("the LAN is not local")
			}
			if _, ok := l.k.Local(netip.MustParsePrefix(f.dst(0)).Addr().Next()); ok {
				t.Fatal("an overlay route counts as local")
			}

			// The overlay device goes down: IPv4 flushes its routes
			// without a word (the mirror reloads on the link change),
			// IPv6 announces it; either way they are gone.
			l.do("tun0 down", l.h.LinkSetDown(l.tun))
			l.rec.wait(t, "routes gone with the device", func() bool { return len(l.rec.set) == 0 })
			if s := l.k.Stats(); s.OverlayRoutes != 0 || (f.name == "ipv4" && s.Resyncs < 2) {
				// (IPv4 says nothing: only a reload can have found out.)
				t.Fatalf("stats after the link went down: %+v", s)
			}
			if _, ok := l.k.Local(netip.MustParsePrefix(f.dst(0)).Addr().Next()); ok {
				t.Fatal("a flushed overlay route still shadows the table")
			}
		})
	}
}

// TestKernelOverflowResync: the callback blocks while thousands of routes
// are added, so the kernel's queue to the mirror overflows; the mirror
// subscribes again, reloads, and ends up reporting exactly the table.
func TestKernelOverflowResync(t *testing.T) {
	f := families[0]
	l := newLab(t, f, true, nil, KernelOptions{recvBuf: 4096})
	const n = 3000
	// The first route's report blocks the mirror; the rest pile up.
	for i := range n {
		dst := fmt.Sprintf("10.%d.%d.0/24", 100+i/250, i%250)
		l.do("add", l.h.RouteAdd(l.route(dst, unix.RTPROT_BGP, l.tun, f.gw(1+i%200))))
	}
	l.rec.release()
	l.rec.wait(t, "every route reported", func() bool { return len(l.rec.set) == n })
	// And it keeps following the table after that: the overflowed
	// subscription is dead, so this comes through a new one.
	l.do("delete", l.h.RouteDel(l.route("10.100.0.0/24", unix.RTPROT_BGP, l.tun, f.gw(1))))
	l.rec.wait(t, "delete after the resync", func() bool { return len(l.rec.set) == n-1 })
	if s := l.k.Stats(); s.Lost == 0 || s.Resyncs < 2 || s.OverlayRoutes != n-1 {
		t.Fatalf("stats: %+v, want a lost subscription, a resync and %d routes", s, n-1)
	}
	if _, ok := l.rec.set[netip.MustParsePrefix("10.100.0.0/24")]; ok {
		t.Fatal("the deleted route is still reported")
	}
}

func TestKernelOptionsChecked(t *testing.T) {
	_, err := NewKernelWithOptions(context.Background(), 1, KernelOptions{OnOverlayRoute: func(OverlayRoute, bool) {}}, nil)
	var e *Error
	if err == nil || !strings.Contains(err.Error(), "Subnet") || !errors.As(err, &e) {
		t.Fatalf("missing subnet accepted: %v", err)
	}
}

// TestMain checks that the mirrors the tests start leave no goroutine
// behind (their subscriptions' readers included).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestKernelLocalRoutes: OnLocalRoute hears of a prefix when the route the
// kernel uses for it leaves through another device than the overlay, and
// again when it goes into the overlay or is deleted; routes into the
// overlay are never local.
func TestKernelLocalRoutes(t *testing.T) {
	f := families[0]
	var mu sync.Mutex
	local := map[netip.Prefix]bool{}
	var seq []string
	changed := make(chan struct{}, 1)
	on := func(p netip.Prefix, is bool) {
		mu.Lock()
		if is {
			local[p] = true
			seq = append(seq, "+"+p.String())
		} else {
			delete(local, p)
			seq = append(seq, "-"+p.String())
		}
		mu.Unlock()
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	l := newLab(t, f, false, nil, KernelOptions{OnLocalRoute: on})
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			mu.Lock()
			ok := cond()
			mu.Unlock()
			if ok {
				return
			}
			select {
			case <-changed:
			case <-deadline:
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: timed out; reported %v", what, seq)
			}
		}
	}
	lanNet := netip.MustParsePrefix(f.lanAddr).Masked()
	wait("the LAN's connected route is local at start", func() bool { return local[lanNet] })
	dst := netip.MustParsePrefix(f.dst(7))
	l.do("add via the LAN", l.h.RouteAdd(l.route(f.dst(7), unix.RTPROT_STATIC, l.lan, f.lanGW)))
	wait("a route via the LAN becomes local", func() bool { return local[dst] })
	l.do("replace into the overlay", l.h.RouteReplace(l.route(f.dst(7), unix.RTPROT_BGP, l.tun, f.gw(1))))
	wait("a route moved into the overlay is no longer local", func() bool { return !local[dst] })
	l.do("back via the LAN", l.h.RouteReplace(l.route(f.dst(7), unix.RTPROT_STATIC, l.lan, f.lanGW)))
	wait("local again", func() bool { return local[dst] })
	l.do("delete", l.h.RouteDel(l.route(f.dst(7), unix.RTPROT_STATIC, l.lan, f.lanGW)))
	wait("deleted: not local", func() bool { return !local[dst] })
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, s := range seq {
		if s[1:] == dst.String() {
			n++
		}
	}
	if n != 4 {
		t.Errorf("%s reported %d times, want 4 (+ - + -): %v", dst, n, seq)
	}
}
