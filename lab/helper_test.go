package lab

// The test binary doubles as the small programs the lab tests run inside the
// namespaces: re-executed with DMVPN_LAB_TEST_HELPER=1, TestMain dispatches
// on its arguments instead of running tests. Every mode is bounded.
//
//	run -c FILE               a fake dmvpn daemon (see fakeDaemon)
//	show WHAT [--json] -c F   a fake `dmvpn show`
//	udp-recv PORT SECS        print the first datagram's source, echo it, exit
//	udp-send DST LPORT SECS   send from LPORT until an echo comes back
//	raw-recv PROTO SECS       count raw IPv4 packets of PROTO per source
//	raw-send PROTO DST COUNT  send COUNT raw packets (GRE with key 42)
//	stubborn SECS             ignore SIGTERM, sleep
//	sleep SECS                sleep
//	whoami                    print pid=, netns= (inode), sys= (/sys/class/net)

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"go.yaml.in/yaml/v3"
)

const helperEnv = "DMVPN_LAB_TEST_HELPER"

func helperMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "helper: no mode")
		return 2
	}
	secs := func(i int) time.Duration {
		if len(args) <= i {
			return 5 * time.Second
		}
		f, err := strconv.ParseFloat(args[i], 64)
		if err != nil || f <= 0 || f > 120 {
			return 5 * time.Second
		}
		return time.Duration(f * float64(time.Second))
	}
	switch args[0] {
	case "run":
		if len(args) != 3 || args[1] != "-c" {
			fmt.Fprintln(os.Stderr, "usage: run -c FILE")
			return 2
		}
		return fakeDaemon(args[2])
	case "show":
		return fakeShow(args[1:])
	case "udp-recv":
		return udpRecv(args[1], secs(2))
	case "udp-send":
		return udpSend(args[1], args[2], secs(3))
	case "raw-recv":
		return rawRecv(args[1], secs(2))
	case "raw-send":
		n, _ := strconv.Atoi(args[3])
		return rawSend(args[1], args[2], n)
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(secs(1))
		return 0
	case "sleep":
		fmt.Println("ready")
		time.Sleep(secs(1))
		return 0
	case "whoami":
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
			fmt.Println("error", err)
			return 1
		}
		var devs []string
		if ents, err := os.ReadDir("/sys/class/net"); err == nil {
			for _, e := range ents {
				devs = append(devs, e.Name())
			}
		}
		fmt.Printf("pid=%d netns=%d sys=%s\n", os.Getpid(), st.Ino, strings.Join(devs, ","))
		return 0
	}
	fmt.Fprintf(os.Stderr, "helper: unknown mode %q\n", args[0])
	return 2
}

func readNodeConfig(path string) (NodeConfig, error) {
	var c NodeConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func fakeShow(args []string) int {
	cfg := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-c" {
			cfg = args[i+1]
		}
	}
	c, err := readNodeConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := os.Stat(c.APISocket); err != nil {
		fmt.Fprintf(os.Stderr, "fake show: api-socket: %v\n", err)
		return 1
	}
	fmt.Printf("fake show %s for %s (overlay %s, transport %s)\n", args[0], c.Name, c.Tunnel.Address, c.Tunnel.Transport)
	return 0
}

// fakeDaemon stands in for `dmvpn run -c FILE` so the lab's own machinery
// (namespaces, NAT, process handling, Run's checks) is tested without the
// real daemon. It is deliberately not DMVPN: every node carries overlay
// packets over UDP 4754 with a one-byte header ('H' hello carrying the
// sender's tunnel address, 'D' data); spokes send everything to the hub,
// which learns each spoke's address and port from its hellos (so spoke3
// works from behind the NAT) and forwards by its configured routes. Like the
// real daemon it owns a TUN device and its routes, and exits 0 on SIGTERM.
func fakeDaemon(cfgPath string) int {
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "fake dmvpn: "+format+"\n", args...)
	}
	c, err := readNodeConfig(cfgPath)
	if err != nil {
		logf("%v", err)
		return 1
	}
	self, err := netip.ParsePrefix(c.Tunnel.Address)
	if err != nil {
		logf("%v", err)
		return 1
	}
	tun, err := openTUN(c.Tunnel.Device)
	if err != nil {
		logf("tun: %v", err)
		return 1
	}
	type route struct {
		p   netip.Prefix
		via netip.Addr
	}
	var routes []route
	// Address, MTU, up and routes through netlink, as the real daemon does
	// (the process runs inside its namespace).
	link, err := netlink.LinkByName(c.Tunnel.Device)
	if err == nil {
		var a *netlink.Addr
		if a, err = netlink.ParseAddr(c.Tunnel.Address); err == nil {
			err = netlink.AddrAdd(link, a)
		}
	}
	if err == nil {
		err = netlink.LinkSetMTU(link, c.Tunnel.MTU)
	}
	if err == nil {
		err = netlink.LinkSetUp(link)
	}
	if err != nil {
		logf("%s: %v", c.Tunnel.Device, err)
		return 1
	}
	for _, r := range c.Routes {
		p, err := netip.ParsePrefix(r.Prefix)
		if err != nil {
			logf("%v", err)
			return 1
		}
		via := netip.MustParseAddr(r.Via)
		dst := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: via.AsSlice()}); err != nil {
			logf("route %s via %s: %v", r.Prefix, r.Via, err)
			return 1
		}
		routes = append(routes, route{p, via})
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].p.Bits() > routes[j].p.Bits() })
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: 4754})
	if err != nil {
		logf("udp: %v", err)
		return 1
	}
	// The api-socket, so `show` has something to find.
	ln, err := net.Listen("unix", c.APISocket)
	if err != nil {
		logf("api-socket: %v", err)
		return 1
	}
	logf("%s up: %s on %s, %d routes", c.Name, c.Tunnel.Address, c.Tunnel.Device, len(routes))

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	var stopping atomic.Bool
	go func() {
		s := <-sigs
		stopping.Store(true)
		logf("%s: %v, cleaning up", c.Name, s)
		ln.Close() // removes the socket file
		tun.Close()
		os.Exit(0)
	}()

	isHub := len(c.NHRP.NHS) == 0
	var hub netip.AddrPort
	if !isHub {
		hub = netip.AddrPortFrom(netip.MustParseAddr(c.NHRP.NHS[0].NBMA), 4754)
		hello := append([]byte{'H'}, self.Addr().AsSlice()...)
		go func() {
			for {
				_, _ = conn.WriteToUDPAddrPort(hello, hub)
				time.Sleep(300 * time.Millisecond)
			}
		}()
	}
	var mu sync.Mutex
	peers := map[netip.Addr]netip.AddrPort{}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				logf("udp read: %v", err)
				os.Exit(1)
			}
			switch {
			case n == 5 && buf[0] == 'H':
				a := netip.AddrFrom4([4]byte(buf[1:5]))
				mu.Lock()
				if peers[a] != from {
					logf("%s: peer %s at %s", c.Name, a, from)
				}
				peers[a] = from
				mu.Unlock()
			case n > 1 && buf[0] == 'D':
				_, _ = tun.Write(buf[1:n])
			}
		}
	}()
	buf := make([]byte, 65536)
	for {
		n, err := tun.Read(buf[1:])
		if err != nil && stopping.Load() {
			select {} // the signal handler exits 0
		}
		if err != nil {
			logf("tun read: %v", err)
			return 1
		}
		pkt := buf[1 : 1+n]
		if n < 20 || pkt[0]>>4 != 4 {
			continue
		}
		buf[0] = 'D'
		if !isHub {
			_, _ = conn.WriteToUDPAddrPort(buf[:1+n], hub)
			continue
		}
		dst := netip.AddrFrom4([4]byte(pkt[16:20]))
		next := dst
		if !self.Contains(dst) {
			next = netip.Addr{}
			for _, r := range routes {
				if r.p.Contains(dst) {
					next = r.via
					break
				}
			}
		}
		mu.Lock()
		to, ok := peers[next]
		mu.Unlock()
		if ok {
			_, _ = conn.WriteToUDPAddrPort(buf[:1+n], to)
		}
	}
}

// openTUN attaches to the TUN device name with a blocking descriptor that
// never meets the poller: registered before TUNSETIFF, a TUN descriptor
// reports EPOLLERR, and Go would then fail every read with "not pollable".
func openTUN(name string) (*os.File, error) {
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var ifr [40]byte
	copy(ifr[:15], name)
	binary.NativeEndian.PutUint16(ifr[16:], 0x0001|0x1000) // IFF_TUN | IFF_NO_PI
	const tunsetiff = 0x400454ca
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunsetiff, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		syscall.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %v", name, e)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}

func udpRecv(port string, wait time.Duration) int {
	p, _ := strconv.Atoi(port)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: p})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready")
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, from, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		fmt.Println("timeout", err)
		return 1
	}
	fmt.Printf("from=%s payload=%q\n", from, buf[:n])
	_, _ = conn.WriteToUDPAddrPort(buf[:n], from)
	return 0
}

func udpSend(dst, lport string, wait time.Duration) int {
	to, err := netip.ParseAddrPort(dst)
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	p, _ := strconv.Atoi(lport)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: p})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	deadline := time.Now().Add(wait)
	buf := make([]byte, 2048)
	for time.Now().Before(deadline) {
		_, _ = conn.WriteToUDPAddrPort([]byte("hello"), to)
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err == nil {
			fmt.Printf("echo from=%s payload=%q\n", from, buf[:n])
			return 0
		}
	}
	fmt.Println("no echo")
	return 1
}

func rawRecv(proto string, wait time.Duration) int {
	conn, err := net.ListenPacket("ip4:"+proto, "0.0.0.0")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready")
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	counts := map[string]int{}
	buf := make([]byte, 65536)
	for {
		_, from, err := conn.ReadFrom(buf)
		if err != nil {
			break
		}
		counts[from.String()]++
	}
	var srcs []string
	for s := range counts {
		srcs = append(srcs, s)
	}
	sort.Strings(srcs)
	for _, s := range srcs {
		fmt.Printf("from=%s count=%d\n", s, counts[s])
	}
	fmt.Println("done")
	return 0
}

func rawSend(proto, dst string, count int) int {
	conn, err := net.Dial("ip4:"+proto, dst)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	// GRE with the key bit, protocol IPv4, key 42, and a token payload.
	pkt := []byte{0x20, 0x00, 0x08, 0x00, 0, 0, 0, 42, 0x45, 0, 0, 20}
	for i := 0; i < count; i++ {
		if _, err := conn.Write(pkt); err != nil {
			fmt.Println("error", err)
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Println("sent", count)
	return 0
}
