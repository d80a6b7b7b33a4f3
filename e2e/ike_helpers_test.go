package e2e

// The harness of the strongSwan interop tests (ike_strongswan_test.go): two
// network namespaces joined by a veth, our IKEv2 engine driven on real UDP
// sockets in one of them, strongSwan's charon in the other.
//
//	<prefix>-ike  veth ike-d 192.0.2.1/24  our engine: UDP 500 and 4500
//	<prefix>-swan veth ike-s 192.0.2.2/24  charon (kernel-libipsec: ESP in
//	                                       userspace, its TUN ipsec0), vici
//	                                       socket in the test's directory
//
// charon runs as its own process group and is stopped by PID; the
// namespaces go when the test ends, and the test fails if any process was
// left in them.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/ikev2/engine"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
)

// charonPath is where Debian's strongswan-charon puts the daemon (it is
// not on PATH).
const charonPath = "/usr/lib/ipsec/charon"

// The two ends of the veth.
var (
	ikeOurAddr  = netip.MustParseAddr("192.0.2.1")
	ikeSwanAddr = netip.MustParseAddr("192.0.2.2")
)

const (
	ikeOurIf  = "ike-d"
	ikeSwanIf = "ike-s"
	// ikeBudget bounds one interop test (each should take well under
	// 30 s when things work).
	ikeBudget = 90 * time.Second
)

// ikeEnv is one interop test's pair of namespaces.
type ikeEnv struct {
	t    *testing.T
	ctx  context.Context
	ours string // our engine's namespace
	swan string // charon's namespace
	dir  string // the test's files (configs, logs, sockets)
}

// requireStrongSwan checks what the tests need from the machine.
func requireStrongSwan(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	if st, err := os.Stat(charonPath); err != nil || st.Mode()&0o111 == 0 {
		testenv.Unavailable(t, charonPath+" is not installed (apt-get install strongswan-charon strongswan-swanctl "+
			"libcharon-extra-plugins libstrongswan-standard-plugins libstrongswan-extra-plugins)")
	}
	testenv.RequireTool(t, "swanctl")
	for _, p := range []string{"libstrongswan-kernel-libipsec.so", "libstrongswan-openssl.so", "libstrongswan-curve25519.so"} {
		if _, err := os.Stat("/usr/lib/ipsec/plugins/" + p); err != nil {
			testenv.Unavailable(t, "strongSwan plugin "+p+" is missing (apt-get install libcharon-extra-plugins "+
				"libstrongswan-standard-plugins libstrongswan-extra-plugins)")
		}
	}
}

// newIKEEnv makes the two namespaces (tag: the test's lab tag) and the veth
// between them, both ends up; they are deleted when t ends.
func newIKEEnv(t *testing.T, tag byte) *ikeEnv {
	t.Helper()
	requireStrongSwan(t)
	ctx, cancel := context.WithTimeout(context.Background(), ikeBudget)
	t.Cleanup(cancel)
	dir := t.TempDir()
	if len(filepath.Join(dir, "charon.vici")) > 100 { // sun_path is 108 bytes
		d, err := os.MkdirTemp("", "swan-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(d) })
		dir = d
	}
	p := prefix(tag)
	e := &ikeEnv{t: t, ctx: ctx, ours: p + "-ike", swan: p + "-swan", dir: dir}
	for _, ns := range []string{e.ours, e.swan} {
		_ = lab.DeleteNamespace(ns) // a crashed earlier run of this PID's prefix
		if err := lab.NewNamespace(ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if pids := nsPIDs(ns); len(pids) > 0 {
				t.Errorf("processes %v left in namespace %s", pids, ns)
			}
			if err := lab.DeleteNamespace(ns); err != nil {
				t.Error(err)
			}
		})
	}
	fd, err := unix.Open("/var/run/netns/"+e.swan, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	err = lab.InNamespace(e.ours, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ikeOurIf}, PeerName: ikeSwanIf,
			PeerNamespace: netlink.NsFd(fd)}); err != nil {
			return fmt.Errorf("veth: %w", err)
		}
		return nsUp(ikeOurIf, ikeOurAddr)
	})
	if err == nil {
		err = lab.InNamespace(e.swan, func() error { return nsUp(ikeSwanIf, ikeSwanAddr) })
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := e.waitCarrier(); err != nil {
		t.Fatal(err)
	}
	return e
}

// nsUp brings lo and ifname up with addr/24 (in the calling thread's
// namespace) and turns reverse-path filtering off: charon's TUN delivers
// packets from our address, which the veth's route points elsewhere.
func nsUp(ifname string, addr netip.Addr) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(addr.String() + "/24")
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, a); err != nil {
		return err
	}
	for _, k := range []string{"all", "default"} {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+k+"/rp_filter", []byte("0\n"), 0); err != nil {
			return err
		}
	}
	return netlink.LinkSetUp(link)
}

// waitCarrier waits until both veth ends are operationally up (until then
// a veth drops what it is given).
func (e *ikeEnv) waitCarrier() error {
	return e.poll(10*time.Second, 20*time.Millisecond, func() error {
		for _, x := range [][2]string{{e.ours, ikeOurIf}, {e.swan, ikeSwanIf}} {
			var state netlink.LinkOperState
			if err := lab.InNamespace(x[0], func() error {
				l, err := netlink.LinkByName(x[1])
				if err == nil {
					state = l.Attrs().OperState
				}
				return err
			}); err != nil {
				return err
			}
			if state != netlink.OperUp {
				return fmt.Errorf("%s/%s is %v", x[0], x[1], state)
			}
		}
		return nil
	})
}

// poll calls f every interval until it returns nil or limit (or the test's
// budget) passes; it returns f's last error.
func (e *ikeEnv) poll(limit, interval time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(e.ctx, limit)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(interval):
		}
	}
}

// nsPIDs lists the processes whose network namespace is the named one.
func nsPIDs(ns string) []int {
	var want unix.Stat_t
	if unix.Stat("/var/run/netns/"+ns, &want) != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+d.Name()+"/ns/net", &st) == nil && st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids
}

// tcpdump captures IKE and ESP-in-UDP (UDP 500 and 4500) on our veth end
// until stop (or t's end).
type tcpdump struct {
	pcap string
	cmd  *exec.Cmd
	err  *syncBuffer
	done chan struct{}
	once sync.Once
}

func (e *ikeEnv) startTcpdump() *tcpdump {
	e.t.Helper()
	testenv.RequireTool(e.t, "tcpdump")
	c := &tcpdump{pcap: filepath.Join(e.dir, "ike.pcap"), err: &syncBuffer{}, done: make(chan struct{})}
	c.cmd = lab.NamespaceCommand(e.ctx, e.ours, "tcpdump", "-Z", "root", "--immediate-mode", "-U", "-n",
		"-i", ikeOurIf, "-w", c.pcap, "udp port 500 or udp port 4500")
	c.cmd.Stderr = c.err
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		_ = c.cmd.Wait() // ended by a signal: the status says nothing
		close(c.done)
	}()
	e.t.Cleanup(c.stop)
	if err := e.poll(10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(c.err.String(), "listening on") {
			return fmt.Errorf("tcpdump did not start: %q", c.err.String())
		}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// stop ends tcpdump (SIGTERM to its process group; bounded).
func (c *tcpdump) stop() {
	c.once.Do(func() {
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	})
}

// ---- charon ----

// swanConf is charon's strongswan.conf (one instance per namespace): an
// explicit plugin list (nothing from /etc/strongswan.d), kernel-libipsec
// before kernel-netlink so that the userspace ESP takes the IPsec role and
// netlink keeps routes and addresses, its own vici socket and log.
//
// allow_peer_ts: our traffic selectors are GRE between the two IKE hosts;
// libipsec installs the route for such a selector (table 220, via its TUN)
// only when told to. With it, charon's own IKE and ESP datagrams would
// follow that route into the TUN too, so they are marked (socket-default's
// fwmark) and the marked ones skip table 220 (kernel-netlink's !mark). So
// a GRE packet sent from charon's namespace to our address leaves as ESP.
const swanConf = `charon {
  load_modular = no
  load = random nonce openssl aes sha1 sha2 hmac gmp curve25519 kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
  port = 500
  port_nat_t = 4500
  install_routes = yes
  retransmit_tries = 3
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  plugins {
    vici { socket = unix://{{dir}}/charon.vici }
    kernel-libipsec { allow_peer_ts = yes }
    socket-default { fwmark = 0x5a }
    kernel-netlink { fwmark = !0x5a }
  }
  filelog {
    e2e {
      path = {{dir}}/charon.log
      time_format = %T
      ike_name = yes
      flush_line = yes
      default = 1
      ike = 2
      cfg = 2
      knl = 2
      esp = 2
      net = 1
      enc = 1
    }
  }
  syslog {
    daemon { default = -1 }
  }
}
`

// swanConn is what differs between the tests' charon connections.
type swanConn struct {
	LocalID, RemoteID string // charon's own id and ours, as swanctl.conf writes them
	Proposals         string // IKE
	ESPProposals      string
	DPDDelay          string // "" : none
	// RekeyTime (IKE SA) and ChildRekeyTime, with ChildLifeTime: charon's
	// own rekeying by time; "": charon's defaults (4 h, 1 h: never within
	// a test), so that only the rekeys a test asks for happen.
	RekeyTime, ChildRekeyTime, ChildLifeTime string
}

// swanctlConf is the connection "dmvpn" with the Child SA "gre": GRE
// between the two IKE hosts (dynamic[gre] on both sides), tunnel mode (what
// kernel-libipsec can install), PSK.
func (c swanConn) swanctlConf() string {
	dpd := ""
	if c.DPDDelay != "" {
		dpd = "\n    dpd_delay = " + c.DPDDelay
	}
	if c.RekeyTime != "" {
		// over_time (the hard lifetime past rekey_time) as long again:
		// charon's default, 10 %, leaves its own rekey no time.
		dpd += "\n    rekey_time = " + c.RekeyTime + "\n    over_time = " + c.RekeyTime
	}
	child := ""
	if c.ChildRekeyTime != "" {
		child += "\n        rekey_time = " + c.ChildRekeyTime
	}
	if c.ChildLifeTime != "" {
		child += "\n        life_time = " + c.ChildLifeTime
	}
	return fmt.Sprintf(`connections {
  dmvpn {
    version = 2
    local_addrs = %s
    remote_addrs = %s
    proposals = %s
    reauth_time = 0
    unique = never%s
    local {
      auth = psk
      id = %s
    }
    remote {
      auth = psk
      id = %s
    }
    children {
      gre {
        local_ts = dynamic[gre]
        remote_ts = dynamic[gre]
        mode = tunnel
        esp_proposals = %s%s
        start_action = none
        dpd_action = clear
      }
    }
  }
}
secrets {
  ike-dmvpn {
    id-1 = %s
    id-2 = %s
    secret = "%s"
  }
}
`, ikeSwanAddr, ikeOurAddr, c.Proposals, dpd, c.LocalID, c.RemoteID, c.ESPProposals, child, c.LocalID, c.RemoteID, ikePSK)
}

// ikePSK is the pre-shared key of both sides.
const ikePSK = "dmvpn-e2e-strongswan-psk"

// charon is one charon daemon in the test's strongSwan namespace.
type charon struct {
	e    *ikeEnv
	dir  string
	vici string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // Wait's, once done is closed
}

// startCharon starts charon in e.swan with conn loaded and waits (bounded)
// until it has loaded it. It is stopped when t ends (and on failure its
// log and list-sas are logged first).
func (e *ikeEnv) startCharon(conn swanConn) *charon {
	e.t.Helper()
	d := filepath.Join(e.dir, "charon")
	if err := os.MkdirAll(filepath.Join(d, "run"), 0o755); err != nil {
		e.t.Fatal(err)
	}
	conf := filepath.Join(d, "strongswan.conf")
	if err := os.WriteFile(conf, []byte(strings.ReplaceAll(swanConf, "{{dir}}", d)), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "swanctl.conf"), []byte(conn.swanctlConf()), 0o600); err != nil {
		e.t.Fatal(err)
	}
	c := &charon{e: e, dir: d, vici: "unix://" + filepath.Join(d, "charon.vici"), out: &syncBuffer{}, done: make(chan struct{})}
	// charon writes its PID to /var/run/charon.pid, a path compiled in:
	// it gets a /run of its own (the re-exec that enters the namespace has
	// already given it a private mount namespace, so the bind mount is
	// seen by charon only and goes with it).
	c.cmd = lab.NamespaceCommand(e.ctx, e.swan, "sh", "-c", `mount --bind "$1/run" /run && exec "$2"`, "sh", d, charonPath)
	c.cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+conf)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.cmd.Cancel = func() error { return syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL) }
	if err := c.cmd.Start(); err != nil {
		e.t.Fatalf("charon: %v", err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	e.t.Cleanup(c.stop)
	e.t.Cleanup(c.dumpOnFailure) // runs before stop
	t0 := time.Now()
	if err := e.poll(10*time.Second, 50*time.Millisecond, func() error {
		if err := c.running(); err != nil {
			return err
		}
		_, err := c.swanctl("--stats")
		return err
	}); err != nil {
		e.t.Fatalf("charon not up: %v", err)
	}
	if out, err := c.swanctl("--load-all", "--noprompt", "--file", filepath.Join(d, "swanctl.conf")); err != nil ||
		!strings.Contains(out, "successfully loaded 1 connections") {
		e.t.Fatalf("swanctl --load-all: %v: %s", err, out)
	}
	e.t.Logf("charon up in %s after %v (pid %d, %s)", e.swan, time.Since(t0).Round(time.Millisecond), c.cmd.Process.Pid, d)
	return c
}

// swanctl runs swanctl against this charon (bounded) and returns its
// output. It runs in the test's own namespace: the vici socket is a file.
func (c *charon) swanctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(c.e.ctx, 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "swanctl", append(args, "--uri", c.vici)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("swanctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// running returns an error if charon has exited.
func (c *charon) running() error {
	select {
	case <-c.done:
		return fmt.Errorf("charon exited: %v: %s", c.err, c.out.String())
	default:
		return nil
	}
}

// signal sends sig to charon's process group.
func (c *charon) signal(sig syscall.Signal) error { return syscall.Kill(-c.cmd.Process.Pid, sig) }

// stop ends charon: SIGCONT (a test may have stopped it), SIGTERM, bounded,
// then SIGKILL.
func (c *charon) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.signal(syscall.SIGCONT)
	_ = c.signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.e.t.Errorf("charon did not stop on SIGTERM within 10s")
		_ = c.signal(syscall.SIGKILL)
		<-c.done
	}
}

func (c *charon) dumpOnFailure() {
	if !c.e.t.Failed() {
		return
	}
	if c.running() == nil {
		out, err := c.swanctl("--list-sas")
		if err != nil {
			out += err.Error()
		}
		c.e.t.Logf("--- charon: swanctl --list-sas\n%s", out)
	}
	c.e.t.Logf("--- charon: last lines of %s\n%s\n--- charon's output: %s", filepath.Join(c.dir, "charon.log"),
		tailFile(filepath.Join(c.dir, "charon.log"), 120), c.out.String())
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		// The tests' own polling (swanctl --list-sas) and per-packet ESP lines say nothing.
		if !strings.Contains(l, "[CFG] vici client") && !strings.Contains(l, "[ESP] ") {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- swanctl --list-sas --raw ----

// viciSection is one section of a vici message as swanctl --raw prints it:
// key=value pairs, lists (key=[a b]) and nested sections (name {...}).
type viciSection struct {
	Name  string
	Vals  map[string]string
	Lists map[string][]string
	Subs  []*viciSection
}

// sub returns the nested section named name.
func (s *viciSection) sub(name string) *viciSection {
	for _, c := range s.Subs {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// parseVici parses swanctl's --raw output: one line per message, e.g.
//
//	list-sa event {dmvpn {uniqueid=1 version=2 state=ESTABLISHED ... child-sas {gre-1 {spi-in=c3e5... }}}}
//
// Each line's outermost section is returned (named by the words before its
// brace).
func parseVici(out string) ([]*viciSection, error) {
	var msgs []*viciSection
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		i := strings.IndexByte(line, '{')
		if i < 0 {
			continue
		}
		toks := viciTokens(line[i:])
		root := &viciSection{Name: strings.TrimSpace(line[:i])}
		pos, err := parseViciBody(toks, 1, root) // after the opening brace
		if err != nil {
			return nil, fmt.Errorf("%w in %q", err, line)
		}
		if pos != len(toks) {
			return nil, fmt.Errorf("trailing tokens in %q", line)
		}
		msgs = append(msgs, root)
	}
	return msgs, nil
}

// viciTokens splits on spaces, keeping "{" and "}" as tokens (list items
// such as 192.0.2.1/32[gre] keep their brackets).
func viciTokens(s string) []string {
	var toks []string
	cur := strings.Builder{}
	flush := func() {
		if cur.Len() > 0 {
			toks = append(toks, cur.String())
			cur.Reset()
		}
	}
	for _, r := range s {
		switch r {
		case ' ', '\t':
			flush()
		case '{', '}':
			flush()
			toks = append(toks, string(r))
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	return toks
}

func parseViciBody(toks []string, pos int, s *viciSection) (int, error) {
	s.Vals, s.Lists = map[string]string{}, map[string][]string{}
	for pos < len(toks) {
		tok := toks[pos]
		switch {
		case tok == "}":
			return pos + 1, nil
		case pos+1 < len(toks) && toks[pos+1] == "{":
			c := &viciSection{Name: tok}
			var err error
			if pos, err = parseViciBody(toks, pos+2, c); err != nil {
				return pos, err
			}
			s.Subs = append(s.Subs, c)
		case strings.Contains(tok, "=["):
			// A list: key=[a b c], items with brackets of their own
			// (a/32[gre]); it ends where the brackets balance.
			key, rest, _ := strings.Cut(tok, "=")
			depth, first := 0, true
			for {
				depth += strings.Count(rest, "[") - strings.Count(rest, "]")
				item := rest
				if depth == 0 {
					item = strings.TrimSuffix(item, "]")
				}
				if first {
					item, first = strings.TrimPrefix(item, "["), false
				}
				if item != "" {
					s.Lists[key] = append(s.Lists[key], item)
				}
				pos++
				if depth == 0 {
					break
				}
				if pos == len(toks) || toks[pos] == "}" {
					return pos, errors.New("unterminated list")
				}
				rest = toks[pos]
			}
			if _, ok := s.Lists[key]; !ok {
				s.Lists[key] = nil
			}
		default:
			k, v, ok := strings.Cut(tok, "=")
			if !ok {
				return pos, fmt.Errorf("unexpected token %q", tok)
			}
			s.Vals[k] = v
			pos++
		}
	}
	return pos, errors.New("unterminated section")
}

// swanIKE is one IKE SA in charon's list-sas.
type swanIKE struct {
	Name, State                  string
	SPIi, SPIr                   uint64
	Initiator                    bool // charon is the initiator
	Encr, Integ, PRF, DH         string
	KeySize                      int
	LocalID, RemoteID            string
	LocalHost, RemoteHost        string
	LocalPort, RemotePort        int
	NATRemote, NATLocal, NATFake bool
	Children                     []swanChild
	Raw                          *viciSection
}

// swanChild is one CHILD_SA in charon's list-sas.
type swanChild struct {
	Name, State, Mode, Protocol string
	Encap                       bool
	SPIIn, SPIOut               uint32
	Encr, Integ                 string
	KeySize                     int
	ESN                         bool
	BytesIn, PacketsIn          uint64
	BytesOut, PacketsOut        uint64
	LocalTS, RemoteTS           []string
}

func hexU64(s string) uint64 { v, _ := strconv.ParseUint(s, 16, 64); return v }
func decU64(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }

// listSAs returns charon's IKE SAs (swanctl --list-sas --raw).
func (c *charon) listSAs() ([]swanIKE, error) {
	out, err := c.swanctl("--list-sas", "--raw")
	if err != nil {
		return nil, err
	}
	msgs, err := parseVici(out)
	if err != nil {
		return nil, err
	}
	var v []swanIKE
	for _, m := range msgs {
		for _, s := range m.Subs {
			ike := swanIKE{Name: s.Name, State: s.Vals["state"], SPIi: hexU64(s.Vals["initiator-spi"]),
				SPIr: hexU64(s.Vals["responder-spi"]), Initiator: s.Vals["initiator"] == "yes",
				Encr: s.Vals["encr-alg"], Integ: s.Vals["integ-alg"], PRF: s.Vals["prf-alg"], DH: s.Vals["dh-group"],
				LocalID: s.Vals["local-id"], RemoteID: s.Vals["remote-id"],
				LocalHost: s.Vals["local-host"], RemoteHost: s.Vals["remote-host"],
				NATRemote: s.Vals["nat-remote"] == "yes", NATLocal: s.Vals["nat-local"] == "yes",
				NATFake: s.Vals["nat-fake"] == "yes", Raw: s}
			ike.KeySize, _ = strconv.Atoi(s.Vals["encr-keysize"])
			ike.LocalPort, _ = strconv.Atoi(s.Vals["local-port"])
			ike.RemotePort, _ = strconv.Atoi(s.Vals["remote-port"])
			if cs := s.sub("child-sas"); cs != nil {
				for _, ch := range cs.Subs {
					k := swanChild{Name: ch.Vals["name"], State: ch.Vals["state"], Mode: ch.Vals["mode"],
						Protocol: ch.Vals["protocol"], Encap: ch.Vals["encap"] == "yes",
						SPIIn: uint32(hexU64(ch.Vals["spi-in"])), SPIOut: uint32(hexU64(ch.Vals["spi-out"])),
						Encr: ch.Vals["encr-alg"], Integ: ch.Vals["integ-alg"], ESN: ch.Vals["esn"] == "1" || ch.Vals["esn"] == "yes",
						BytesIn: decU64(ch.Vals["bytes-in"]), PacketsIn: decU64(ch.Vals["packets-in"]),
						BytesOut: decU64(ch.Vals["bytes-out"]), PacketsOut: decU64(ch.Vals["packets-out"]),
						LocalTS: ch.Lists["local-ts"], RemoteTS: ch.Lists["remote-ts"]}
					k.KeySize, _ = strconv.Atoi(ch.Vals["encr-keysize"])
					ike.Children = append(ike.Children, k)
				}
			}
			v = append(v, ike)
		}
	}
	return v, nil
}

// ---- our engine on real sockets ----

// ikePeer is our engine in e.ours: bound to UDP 500 and 4500 on
// ikeOurAddr, a reader goroutine per socket feeding it (IKE on 4500 behind
// the non-ESP marker; ESP there goes to ESP instead), a driver goroutine
// calling Tick at NextDeadline. Events are recorded.
type ikePeer struct {
	t          *testing.T
	eng        *engine.Engine
	c500       *net.UDPConn
	c4500      *net.UDPConn
	kick       chan struct{}
	stopc      chan struct{}
	wg         sync.WaitGroup
	logBuf     *syncBuffer
	esp        chan espDatagram // ESP received on 4500 (bounded: full drops)
	mu         sync.Mutex
	events     []engine.Event
	sendErrs   int
	keepalives int
}

// espDatagram is one ESP-in-UDP datagram received on our UDP 4500.
type espDatagram struct {
	from netip.AddrPort
	pkt  []byte
}

// startOurs opens the sockets in e.ours and starts the engine with cfg
// (Local is set here; OnEvent is the recorder). It stops when t ends.
func (e *ikeEnv) startOurs(cfg engine.Config) *ikePeer {
	e.t.Helper()
	p := &ikePeer{t: e.t, kick: make(chan struct{}, 1), stopc: make(chan struct{}), logBuf: &syncBuffer{},
		esp: make(chan espDatagram, 64)}
	err := lab.InNamespace(e.ours, func() error {
		var err error
		if p.c500, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ikeOurAddr, 500))); err != nil {
			return err
		}
		p.c4500, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ikeOurAddr, 4500)))
		return err
	})
	if err != nil {
		if p.c500 != nil {
			p.c500.Close()
		}
		e.t.Fatal(err)
	}
	cfg.Local = ikeOurAddr
	cfg.OnEvent = func(ev engine.Event) {
		p.mu.Lock()
		p.events = append(p.events, ev)
		p.mu.Unlock()
	}
	log := slog.New(slog.NewTextHandler(p.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p.eng, err = engine.New(cfg, p, log)
	if err != nil {
		p.c500.Close()
		p.c4500.Close()
		e.t.Fatal(err)
	}
	p.wg.Add(3)
	go p.read(p.c500, false)
	go p.read(p.c4500, true)
	go p.drive()
	e.t.Cleanup(p.stop)
	e.t.Cleanup(func() {
		if e.t.Failed() {
			e.t.Logf("--- our engine: events\n%s\n--- our engine: stats %+v\n--- our engine: log\n%s",
				p.eventsString(), p.eng.Stats(), p.logBuf.String())
		}
	})
	return p
}

// SendIKE is the engine's Sender: UDP 500 or 4500, from our address.
func (p *ikePeer) SendIKE(to netip.AddrPort, natt bool, pkt []byte) {
	c := p.c500
	if natt {
		c = p.c4500
	}
	if _, err := c.WriteToUDPAddrPort(pkt, to); err != nil {
		p.mu.Lock()
		p.sendErrs++
		p.mu.Unlock()
		fmt.Fprintf(p.logBuf, "send to %v: %v\n", to, err)
	}
}

// read feeds one socket's datagrams to the engine until the socket closes.
func (p *ikePeer) read(c *net.UDPConn, natt bool) {
	defer p.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		pkt := buf[:n]
		now := time.Now()
		switch {
		case !natt:
			p.eng.HandlePacket(now, from, pkt)
		case esp.ClassifyUDP(pkt) == esp.UDPESP:
			if spi, _, err := esp.ParseHeader(pkt); err == nil {
				p.eng.Traffic(now, spi)
			}
			select {
			case p.esp <- espDatagram{from: from, pkt: bytes.Clone(pkt)}:
			default:
			}
		case esp.ClassifyUDP(pkt) == esp.UDPKeepalive:
			// NAT keepalives are the data plane's to ignore, as in the
			// node; the engine would count them as not IKE.
			p.mu.Lock()
			p.keepalives++
			p.mu.Unlock()
		default: // IKE behind the marker, or junk: the engine sorts them
			p.eng.HandlePacketNATT(now, from, pkt)
		}
		p.poke()
	}
}

// poke makes the driver look at NextDeadline again (a packet or an API
// call may have armed a timer).
func (p *ikePeer) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// drive runs the engine's timers.
func (p *ikePeer) drive() {
	defer p.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := time.Hour
		if d := p.eng.NextDeadline(); !d.IsZero() {
			wait = max(time.Until(d), 0)
		}
		timer.Reset(wait)
		select {
		case <-p.stopc:
			return
		case <-p.kick:
		case <-timer.C:
			p.eng.Tick(time.Now())
		}
	}
}

func (p *ikePeer) stop() {
	select {
	case <-p.stopc:
		return
	default:
	}
	close(p.stopc)
	p.c500.Close()
	p.c4500.Close()
	p.wg.Wait()
}

// snapshot returns the events so far.
func (p *ikePeer) snapshot() []engine.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]engine.Event(nil), p.events...)
}

func (p *ikePeer) eventsString() string {
	var b strings.Builder
	for _, ev := range p.snapshot() {
		fmt.Fprintf(&b, "%s %s peer=%v spis=%v/%v initiator=%v id=%v nat=%+v reason=%q", ev.Time.Format("15:04:05.000"),
			ev.Type, ev.Peer, ev.SPIi, ev.SPIr, ev.Initiator, ev.RemoteID, ev.NAT, ev.Reason)
		if c := ev.Child; c != nil {
			fmt.Fprintf(&b, " child in=%08x out=%08x mode=%v encap=%v %v esn=%v", c.Inbound.SPI, c.Outbound.SPI,
				c.Mode, c.UDPEncap, c.Transform, c.ESN)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// waitEvent waits (bounded) for the first event of type typ at index from
// or later in the record, and returns it with its index.
func (p *ikePeer) waitEvent(e *ikeEnv, typ engine.EventType, from int, limit time.Duration) (engine.Event, int) {
	e.t.Helper()
	var got engine.Event
	idx := -1
	err := e.poll(limit, 10*time.Millisecond, func() error {
		evs := p.snapshot()
		for i := from; i < len(evs); i++ {
			if evs[i].Type == typ {
				got, idx = evs[i], i
				return nil
			}
			if t := evs[i].Type; t == engine.IKESAFailed || t == engine.ChildSAFailed {
				return fmt.Errorf("%s: %s", t, evs[i].Reason)
			}
		}
		return fmt.Errorf("no %s event yet", typ)
	})
	if err != nil {
		e.t.Fatalf("waiting %v for %s: %v\nevents:\n%s", limit, typ, err, p.eventsString())
	}
	return got, idx
}

// ---- ESP ----

// ipv4Packet builds an IPv4 header (with checksum) in front of payload.
func ipv4Packet(src, dst netip.Addr, proto byte, id uint16, payload []byte) []byte {
	b := make([]byte, 20+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], id)
	b[8] = 64
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	copy(b[20:], payload)
	return b
}

// sealTunnel seals inner (an IPv4 packet) in tunnel mode with sa and
// returns the ESP packet (the UDP payload on 4500).
func sealTunnel(sa *esp.SA, inner []byte) ([]byte, error) {
	buf := make([]byte, esp.MaxHeaderLen+len(inner)+esp.MaxTrailerLen)
	copy(buf[esp.MaxHeaderLen:], inner)
	start, n, err := sa.Seal(buf, esp.MaxHeaderLen, len(inner), esp.NextHeaderIPv4)
	if err != nil {
		return nil, err
	}
	return buf[start : start+n], nil
}

// rawGRE is a raw IPv4 socket for GRE (protocol 47) opened in a namespace:
// it receives every GRE packet delivered there (without the IPv4 header)
// and sends GRE with a kernel-built header.
type rawGRE struct {
	c *net.IPConn
}

func openRawGRE(ns string, local netip.Addr) (*rawGRE, error) {
	var r rawGRE
	err := lab.InNamespace(ns, func() error {
		var err error
		r.c, err = net.ListenIP("ip4:47", &net.IPAddr{IP: local.AsSlice()})
		return err
	})
	return &r, err
}

// recvUntil returns the first packet from src whose payload satisfies
// match, waiting at most limit.
func (r *rawGRE) recvUntil(src netip.Addr, limit time.Duration, match func([]byte) bool) ([]byte, error) {
	deadline := time.Now().Add(limit)
	buf := make([]byte, 65535)
	for {
		if err := r.c.SetReadDeadline(deadline); err != nil {
			return nil, err
		}
		n, from, err := r.c.ReadFromIP(buf)
		if err != nil {
			return nil, err
		}
		if a, ok := netip.AddrFromSlice(from.IP); ok && a.Unmap() == src && match(buf[:n]) {
			return bytes.Clone(buf[:n]), nil
		}
	}
}

func (r *rawGRE) Close() error { return r.c.Close() }

// TestParseVici pins the parser on swanctl 5.9.8's --raw output (no root
// needed): nested sections, lists whose items carry brackets, and a list
// of two.
func TestParseVici(t *testing.T) {
	out := "list-sa event {dmvpn {uniqueid=1 state=ESTABLISHED initiator-spi=5e2c1a6105267485 child-sas " +
		"{gre-1 {name=gre spi-in=1757ad1d packets-in=3 local-ts=[192.0.2.2/32[gre]] remote-ts=[10.0.0.0/24 10.1.0.0/16[tcp/80]] empty=[]}}}}\n" +
		"list-sas reply {}\n"
	msgs, err := parseVici(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Name != "list-sa event" || len(msgs[0].Subs) != 1 {
		t.Fatalf("messages %+v", msgs)
	}
	ike := msgs[0].Subs[0]
	if ike.Name != "dmvpn" || ike.Vals["state"] != "ESTABLISHED" || hexU64(ike.Vals["initiator-spi"]) != 0x5e2c1a6105267485 {
		t.Fatalf("IKE SA %+v", ike)
	}
	ch := ike.sub("child-sas").sub("gre-1")
	if ch == nil || ch.Vals["spi-in"] != "1757ad1d" || decU64(ch.Vals["packets-in"]) != 3 {
		t.Fatalf("child %+v", ch)
	}
	if l := ch.Lists["local-ts"]; len(l) != 1 || l[0] != "192.0.2.2/32[gre]" {
		t.Errorf("local-ts %q", l)
	}
	if l := ch.Lists["remote-ts"]; len(l) != 2 || l[0] != "10.0.0.0/24" || l[1] != "10.1.0.0/16[tcp/80]" {
		t.Errorf("remote-ts %q", l)
	}
	if l, ok := ch.Lists["empty"]; !ok || len(l) != 0 {
		t.Errorf("empty %q %v", l, ok)
	}
	for _, bad := range []string{"x {a=[b c}", "x {a=1", "x {junk}"} {
		if _, err := parseVici(bad); err == nil {
			t.Errorf("parseVici(%q) accepted", bad)
		}
	}
}
