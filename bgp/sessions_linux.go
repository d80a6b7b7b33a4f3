package bgp

import (
	"encoding/hex"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// shutdownSessions shuts down (shutdown(2), SHUT_RDWR) every TCP
// connection of this process that is one of our BGP sessions: accepted on
// our listener, or opened to one of our neighbors. It returns how many.
//
// Why: GoBGP's StopBgp, even asked to allow graceful restart, deletes the
// neighbors one by one, and deleting one withdraws its routes from the
// sessions still open — a hub would withdraw spoke A's routes from spoke B
// before closing B's session, which defeats graceful restart. With every
// session shut down first, nothing more can be written to any of them:
// the neighbors see the connection end (a FIN, no NOTIFICATION) and keep
// our routes as stale (RFC 4724 helper), and GoBGP, reading end-of-file,
// treats each neighbor as restarting itself, keeping its routes instead of
// propagating their loss.
//
// GoBGP does not expose its connections, so they are found by descriptor
// in /proc/self/fd: each candidate is duplicated first (so the socket
// checked is the one shut even if the number is reused meanwhile), then
// matched by its local and remote address.
func shutdownSessions(c *Config, neighbors []Neighbor) int {
	return shutdownSockets(c, neighbors, false)
}

// shutdownListeners shuts down our listening sockets, so that GoBGP's
// accept loops end and no connection is accepted while the speaker stops
// (GoBGP v4.8.0 can crash handing a late connection to a neighbor whose
// configuration it already cleared). GoBGP closes them itself later.
func shutdownListeners(c *Config) int {
	if c.ListenPort <= 0 {
		return 0
	}
	return shutdownSockets(c, nil, true)
}

func shutdownSockets(c *Config, neighbors []Neighbor, listeners bool) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			continue
		}
		if isOurs(d, c, neighbors, listeners) && unix.Shutdown(d, unix.SHUT_RDWR) == nil {
			n++
		}
		unix.Close(d)
	}
	return n
}

// isOurs reports whether fd is one of our sessions, or with listeners one
// of our listening sockets.
func isOurs(fd int, c *Config, neighbors []Neighbor, listeners bool) bool {
	if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_STREAM {
		return false
	}
	if p, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || p != unix.IPPROTO_TCP {
		return false
	}
	lsa, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	la, ok := sockAddr(lsa)
	if !ok {
		return false
	}
	if listeners {
		acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		return err == nil && acc == 1 && la.Port() == uint16(c.ListenPort) &&
			(!c.ListenAddress.IsValid() || la.Addr() == c.ListenAddress)
	}
	rsa, err := unix.Getpeername(fd) // fails for listeners
	if err != nil {
		return false
	}
	ra, ok := sockAddr(rsa)
	if !ok {
		return false
	}
	if c.ListenPort > 0 && la.Port() == uint16(c.ListenPort) &&
		(!c.ListenAddress.IsValid() || la.Addr() == c.ListenAddress) {
		return true
	}
	for _, nb := range neighbors {
		port := nb.Port
		if port == 0 {
			port = DefaultPort
		}
		if ra != netip.AddrPortFrom(nb.Address, port) {
			continue
		}
		if lo := c.LocalAddress; !lo.IsValid() || lo.Is4() != nb.Address.Is4() || la.Addr() == lo {
			return true
		}
	}
	return false
}

func sockAddr(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)), true
	}
	return netip.AddrPort{}, false
}

// finWait bounds how long shutdown waits for the FINs of the sessions it
// shut down to be acknowledged.
const finWait = time.Second

// waitFINsAcked waits, at most limit, until no TCP socket of this network
// namespace with a BGP port on one side and one of our addresses on ours
// is still waiting for its FIN to be acknowledged (FIN_WAIT1, CLOSING,
// LAST_ACK). Why: the node stops its data plane and removes the overlay
// device right after the speaker stops; a FIN still queued in the device
// then never leaves, and the neighbor keeps the session (and our routes)
// until its hold timer expires, seconds later, instead of withdrawing them
// at once. It reports whether they all were.
func waitFINsAcked(c *Config, limit time.Duration) bool {
	ours := func(a netip.Addr) bool {
		return (c.LocalAddress.IsValid() && a == c.LocalAddress) || (c.ListenAddress.IsValid() && a == c.ListenAddress) ||
			(!c.LocalAddress.IsValid() && !c.ListenAddress.IsValid())
	}
	port := uint16(DefaultPort)
	if c.ListenPort > 0 {
		port = uint16(c.ListenPort)
	}
	deadline := time.Now().Add(limit)
	for {
		if !finPending(ours, port) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond) // polling the kernel's table: no event to wait on
	}
}

// finPending reads /proc/net/tcp and tcp6 for a socket in FIN_WAIT1 (04),
// LAST_ACK (09) or CLOSING (0B) with port on either side and a local
// address ours accepts.
func finPending(ours func(netip.Addr) bool, port uint16) bool {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		for _, l := range lines[min(1, len(lines)):] { // the first line is the header
			fs := strings.Fields(l)
			if len(fs) < 4 {
				continue
			}
			switch fs[3] {
			case "04", "09", "0B":
			default:
				continue
			}
			la, lok := procAddr(fs[1])
			ra, rok := procAddr(fs[2])
			if lok && rok && ours(la.Addr()) && (la.Port() == port || ra.Port() == port) {
				return true
			}
		}
	}
	return false
}

// procAddr parses an address of /proc/net/tcp: hex address (32-bit words
// in host byte order, little-endian here) ':' hex port.
func procAddr(s string) (netip.AddrPort, bool) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(hexAddr)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, false
	}
	p, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	for i := 0; i+4 <= len(raw); i += 4 { // each 32-bit word is in host (little-endian) order
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), true
}
