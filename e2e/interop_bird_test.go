package e2e

// BIRD 2 interop end to end: BIRD peers with our BGP speaker over the
// overlay, once as a spoke behind our spoke1's tunnel (our hub reflects),
// once as the hub's route reflector for our spokes. Either way BIRD puts
// what it learns into the kernel on dmvpn0, and our daemon in the same
// namespace follows those routes (FIB source kernel) and forwards on them.

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
)

// birdTimers keep a BIRD session quick to come up and to notice a lost
// peer: the lab's own hold time and connect retry (lab.BGPHoldTime,
// lab.BGPConnectRetry), a first connect 1 s after start (BIRD's default is
// 5 s) and a 1 s wait after an error (default 60 s, which would outlive
// the test after one refused connection).
const birdTimers = `hold time 9; keepalive time 3; connect retry time 2;
  connect delay time 1; error wait time 1, 5;`

// birdSpokeConf is BIRD as spoke1's router: it announces spoke1's LAN to
// our hub (iBGP over the tunnel from spoke1's overlay address) and puts
// what the hub reflects into the kernel.
//
//   - direct: the hub is on dmvpn0's subnet, so the session is single hop
//     and BIRD's default for it is `gateway direct`: a next hop such as
//     10.0.0.12 is resolved on the interface that holds its subnet and the
//     kernel gets `via 10.0.0.12 dev dmvpn0`, which our spoke1 follows. (A
//     multihop iBGP session defaults to `gateway recursive`, which needs
//     an IGP route to the next hop in BIRD's table; a kernel device route
//     is not one.)
//   - protocol direct on lan0 only: the LAN is the one route announced;
//     the tunnel subnet and the underlay must not be.
//   - the kernel gets only what BGP learned (the BIRD README's gotcha:
//     never export the kernel's own routes back to the peer).
const birdSpokeConf = `# BIRD 2 as spoke1's router (dmvpn e2e TestInteropBIRDSpoke)
router id 10.0.0.11;
log "{{dir}}/bird.log" all;
protocol device { scan time 2; }
protocol direct lan { ipv4; interface "lan0"; }
protocol kernel { scan time 2; ipv4 { import none; export where source = RTS_BGP; }; }
protocol bgp hub {
  local 10.0.0.11 as 65000;
  neighbor 10.0.0.1 as 65000;
  direct;
  ` + birdTimers + `
  debug { states, events };
  ipv4 { import all; export where source = RTS_DEVICE; gateway direct; };
}
`

// birdHubConf is BIRD as the hub's router: a route reflector accepting
// iBGP sessions from anywhere on the tunnel subnet (dynamic BGP, BIRD
// 2.0.5 and later: `neighbor range`; the spawned sessions are named
// spoke1, spoke2, ... in the order they connect, not by our spoke names).
// Reflected routes keep their next hop (BIRD never rewrites it towards an
// iBGP peer unless told to), so the spokes resolve each other with NHRP
// (phase 2); the hub's own LAN goes out with the hub as next hop.
const birdHubConf = `# BIRD 2 as the hub's route reflector (dmvpn e2e TestInteropBIRDHub)
router id 10.0.0.1;
log "{{dir}}/bird.log" all;
protocol device { scan time 2; }
protocol direct lan { ipv4; interface "lan0"; }
protocol kernel { scan time 2; ipv4 { import none; export where source = RTS_BGP; }; }
protocol bgp spokes {
  local 10.0.0.1 as 65000;
  neighbor range 10.0.0.0/24 as 65000;
  dynamic name "spoke";
  direct;
  rr client;
  ` + birdTimers + `
  debug { states, events };
  ipv4 { import all; export where source ~ [RTS_BGP, RTS_DEVICE]; gateway direct; };
}
`

// bird is one BIRD 2 daemon a test runs in a lab namespace, with its own
// config, control socket, pid file and log in a directory of the test's.
type bird struct {
	e    *env
	node string
	dir  string
	ctl  string
	pgid int
	out  *syncBuffer // bird's stdout and stderr
	done chan struct{}
	err  error // Wait's result, set before done closes
}

// startBIRD writes conf (with {{dir}} replaced by the instance's
// directory) and starts `bird -f` in node's namespace as its own process
// group; it waits (bounded) until birdc answers. The daemon is stopped
// when the test ends, and if the test failed its `show protocols all`,
// `show route all` and log tail are logged first.
func (e *env) startBIRD(node, conf string) *bird {
	e.t.Helper()
	testenv.RequireTool(e.t, "bird")
	testenv.RequireTool(e.t, "birdc")
	dir := e.t.TempDir()
	if len(filepath.Join(dir, "bird.ctl")) > 100 { // sun_path is 108 bytes
		d, err := os.MkdirTemp("", "bird-")
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { _ = os.RemoveAll(d) })
		dir = d
	}
	path := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(conf, "{{dir}}", dir)), 0o644); err != nil {
		e.t.Fatal(err)
	}
	b := &bird{e: e, node: node, dir: dir, ctl: filepath.Join(dir, "bird.ctl"), out: &syncBuffer{}, done: make(chan struct{})}
	cmd := e.l.Command(e.ctx, node, "bird", "-f", "-c", path, "-s", b.ctl, "-P", filepath.Join(dir, "bird.pid"))
	cmd.Stdout, cmd.Stderr = b.out, b.out
	// Its own process group, so that stopping it stops nothing else
	// (other tests run BIRD too).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("bird in %s: %v", node, err)
	}
	b.pgid = cmd.Process.Pid
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
	e.t.Cleanup(b.stop)
	e.t.Cleanup(b.dumpOnFailure) // runs before stop
	t0 := time.Now()
	if err := e.poll(10*time.Second, 50*time.Millisecond, func() error {
		select {
		case <-b.done:
			return fmt.Errorf("bird in %s exited: %v: %s", node, b.err, b.out.String())
		default:
		}
		out, err := b.birdc("show", "status")
		if err == nil && !strings.Contains(out, "Daemon is up and running") {
			err = fmt.Errorf("birdc show status: %s", out)
		}
		return err
	}); err != nil {
		e.t.Fatalf("bird in %s not up: %v", node, err)
	}
	e.t.Logf("bird up in %s after %v (%s)", node, time.Since(t0).Round(time.Millisecond), dir)
	return b
}

// birdc runs `birdc -s CTL args...` (bounded) and returns its output. It
// runs in the test's own namespace: the control socket is a file.
func (b *bird) birdc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(b.e.ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "birdc", append([]string{"-s", b.ctl}, args...)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("birdc %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// running returns an error (with its output) if bird has exited.
func (b *bird) running() error {
	select {
	case <-b.done:
		return fmt.Errorf("bird in %s exited: %v: %s", b.node, b.err, b.out.String())
	default:
		return nil
	}
}

// stop ends bird (SIGTERM to its process group, bounded, then SIGKILL).
// BIRD withdraws its routes from the kernel and sends its peers a Cease on
// the way out.
func (b *bird) stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = syscall.Kill(-b.pgid, syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		b.e.t.Errorf("bird in %s did not stop on SIGTERM within 10s", b.node)
		_ = syscall.Kill(-b.pgid, syscall.SIGKILL)
		<-b.done // WaitDelay bounds it
	}
}

func (b *bird) dumpOnFailure() {
	if !b.e.t.Failed() {
		return
	}
	for _, q := range [][]string{{"show", "protocols", "all"}, {"show", "route", "all"}} {
		out, err := b.birdc(q...)
		if err != nil {
			out += err.Error()
		}
		b.e.t.Logf("--- bird in %s: birdc %s\n%s", b.node, strings.Join(q, " "), out)
	}
	log, _ := os.ReadFile(filepath.Join(b.dir, "bird.log"))
	lines := strings.Split(strings.TrimRight(string(log), "\n"), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	b.e.t.Logf("--- bird in %s: last lines of bird.log\n%s\n--- bird's output: %s", b.node, strings.Join(lines, "\n"), b.out.String())
}

// birdBGP is one BGP protocol as `birdc show protocols all` shows it.
type birdBGP struct {
	Name     string // protocol name (hub; spoke1, spoke2 ... for dynamic ones)
	State    string // BGP state: Established, Active, Connect, ...
	Neighbor string // Neighbor address
	Imported int    // Routes: N imported
	Exported int    // Routes: N exported
}

var (
	birdProtoHead = regexp.MustCompile(`^(\S+)\s+BGP\s`)
	birdRoutes    = regexp.MustCompile(`Routes:\s+(\d+) imported, (?:\d+ filtered, )?(\d+) exported`)
)

// bgpSessions parses `show protocols all` into its BGP protocols (a
// dynamic range's template is left out: it has no neighbor address).
func (b *bird) bgpSessions() ([]birdBGP, error) {
	out, err := b.birdc("show", "protocols", "all")
	if err != nil {
		return nil, err
	}
	var v []birdBGP
	var cur *birdBGP
	flush := func() {
		if cur != nil && cur.Neighbor != "" && !strings.Contains(cur.Neighbor, "/") {
			v = append(v, *cur)
		}
		cur = nil
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] != ' ' && line[0] != '\t' {
			flush()
			if m := birdProtoHead.FindStringSubmatch(line); m != nil {
				cur = &birdBGP{Name: m[1]}
			}
			continue
		}
		if cur == nil {
			continue
		}
		f := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(f, "BGP state:"):
			cur.State = strings.TrimSpace(strings.TrimPrefix(f, "BGP state:"))
		case strings.HasPrefix(f, "Neighbor address:"):
			cur.Neighbor = strings.TrimSpace(strings.TrimPrefix(f, "Neighbor address:"))
		case birdRoutes.MatchString(f):
			m := birdRoutes.FindStringSubmatch(f)
			fmt.Sscan(m[1], &cur.Imported)
			fmt.Sscan(m[2], &cur.Exported)
		}
	}
	flush()
	return v, nil
}

// established checks that bird has exactly one Established BGP session
// with each of neighbors and no other session.
func (b *bird) established(neighbors ...string) ([]birdBGP, error) {
	if err := b.running(); err != nil {
		return nil, err
	}
	ss, err := b.bgpSessions()
	if err != nil {
		return nil, err
	}
	up := map[string]int{}
	var all []string
	for _, s := range ss {
		all = append(all, fmt.Sprintf("%s(%s)=%s", s.Name, s.Neighbor, s.State))
		if s.State == "Established" {
			up[s.Neighbor]++
		}
	}
	for _, n := range neighbors {
		if up[n] != 1 {
			return ss, fmt.Errorf("bird in %s: BGP sessions %v, want one Established with %s", b.node, all, n)
		}
	}
	if len(ss) != len(neighbors) {
		return ss, fmt.Errorf("bird in %s: BGP sessions %v, want only %v", b.node, all, neighbors)
	}
	return ss, nil
}

// birdRoute is a route of bird's table: the protocol it came from and its
// next hop.
type birdRoute struct {
	Proto, Via, Iface string
}

var (
	birdRouteHead = regexp.MustCompile(`^(\d+\.\d+\.\d+\.\d+/\d+)\s+`)
	birdRouteFrom = regexp.MustCompile(`\bunicast \[(\S+)`)
	birdRouteVia  = regexp.MustCompile(`^\s+via (\S+) on (\S+)`)
)

// routes parses `birdc show route` into prefix -> the best route first,
// then the others, as bird lists them.
func (b *bird) routes() (map[string][]birdRoute, error) {
	out, err := b.birdc("show", "route")
	if err != nil {
		return nil, err
	}
	rs := map[string][]birdRoute{}
	prefix := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := birdRouteHead.FindStringSubmatch(line); m != nil {
			prefix = m[1]
		}
		if m := birdRouteFrom.FindStringSubmatch(line); m != nil && prefix != "" {
			rs[prefix] = append(rs[prefix], birdRoute{Proto: m[1]})
			continue
		}
		if m := birdRouteVia.FindStringSubmatch(line); m != nil && len(rs[prefix]) > 0 {
			r := &rs[prefix][len(rs[prefix])-1]
			r.Via, r.Iface = m[1], m[2]
		}
	}
	return rs, nil
}

// hasRoute checks that bird's best route for prefix came from a BGP
// protocol among protos (any, if none given) and goes via nextHop on
// dmvpn0.
func (b *bird) hasRoute(prefix, nextHop string, protos ...string) error {
	rs, err := b.routes()
	if err != nil {
		return err
	}
	v := rs[prefix]
	if len(v) == 0 {
		return fmt.Errorf("bird in %s has no route %s (routes: %v)", b.node, prefix, rs)
	}
	best := v[0]
	if best.Via != nextHop || best.Iface != lab.IfTunnel {
		return fmt.Errorf("bird in %s routes %s via %s on %s (from %s), want via %s on %s", b.node, prefix, best.Via, best.Iface, best.Proto, nextHop, lab.IfTunnel)
	}
	if len(protos) > 0 && !slices.Contains(protos, best.Proto) {
		return fmt.Errorf("bird in %s has %s from %s, want it from %v", b.node, prefix, best.Proto, protos)
	}
	return nil
}

// birdOurNeighbor returns node's (our daemon's) BGP session with addr.
func (e *env) birdOurNeighbor(node, addr string) (api.BGPNeighbor, error) {
	b, err := e.bgpView(node)
	if err != nil {
		return api.BGPNeighbor{}, err
	}
	for _, n := range b.Neighbors {
		if n.Address == addr {
			return n, nil
		}
	}
	return api.BGPNeighbor{}, fmt.Errorf("%s has no BGP neighbor %s (%s)", node, addr, neighborStates(b))
}

// birdOurSession checks that node's BGP session with addr is Established
// and has received at least one prefix.
func (e *env) birdOurSession(node, addr string) error {
	n, err := e.birdOurNeighbor(node, addr)
	if err != nil {
		return err
	}
	if n.State != "Established" || n.Received == 0 {
		return fmt.Errorf("%s's BGP session with %s: %s, %d prefixes received (last error %q), want Established with prefixes", node, addr, n.State, n.Received, n.LastError)
	}
	return nil
}

// birdWaitTunnelAddr waits (bounded) until node's daemon has its overlay
// address on dmvpn0: BIRD needs it there before its sessions can start.
func (e *env) birdWaitTunnelAddr(node string) {
	e.t.Helper()
	d, _ := lab.DaemonByName(node)
	e.waitFor(10*time.Second, node+" has "+d.Overlay.String()+" on "+lab.IfTunnel, func() error {
		as, err := e.l.Addrs(node, lab.IfTunnel)
		if err != nil {
			return err
		}
		for _, a := range as {
			if a == d.Overlay {
				return nil
			}
		}
		return fmt.Errorf("%s has %v on %s", node, as, lab.IfTunnel)
	})
}

// BIRD as a spoke router against our hub. In spoke1's namespace our
// daemon runs the tunnel without BGP and BIRD runs BGP: it peers with our
// hub (a route reflector), announces spoke1's LAN and installs the other
// LANs into the kernel on dmvpn0 via their spokes; our spoke1 follows
// those routes and resolves the next hop with NHRP, so host-lan1 reaches
// host-lan2 directly. When BIRD stops, its routes leave our hub, the
// kernel and our spoke1's FIB.
func TestInteropBIRDSpoke(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "bird")
	testenv.RequireTool(t, "birdc")
	e := newShortcutLab(t, 'I', lab.Options{Phase: 2, Tweak: func(node string, c *lab.NodeConfig) {
		if node == lab.Spoke1 {
			c.BGP = nil // BIRD is spoke1's BGP speaker
		}
	}})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	e.birdWaitTunnelAddr(lab.Spoke1)
	b := e.startBIRD(lab.Spoke1, birdSpokeConf)

	e.waitFor(bgpLimit, "BIRD (spoke1) and our hub Established", func() error {
		if _, err := b.established("10.0.0.1"); err != nil {
			return err
		}
		return e.birdOurSession(lab.Hub, "10.0.0.11")
	})
	if n, err := e.birdOurNeighbor(lab.Hub, "10.0.0.11"); err != nil {
		t.Error(err)
	} else if !n.Dynamic || n.AS != lab.AS {
		t.Errorf("our hub's session with BIRD: %+v, want a dynamic iBGP neighbor (AS %d)", n, lab.AS)
	}
	e.waitFor(bgpLimit, "our hub installed BIRD's 10.1.1.0/24 via 10.0.0.11, and BIRD learned the other LANs from it", func() error {
		return firstErr(e.learned(lab.Hub, "10.1.1.0/24", "10.0.0.11"),
			e.learned(lab.Spoke2, "10.1.1.0/24", "10.0.0.11"),
			b.hasRoute("10.1.2.0/24", "10.0.0.12", "hub"),
			b.hasRoute("10.1.3.0/24", "10.0.0.13", "hub"),
			b.hasRoute("10.1.0.0/24", "10.0.0.1", "hub"))
	})
	if ss, err := b.established("10.0.0.1"); err != nil {
		t.Error(err)
	} else if ss[0].Imported < 3 || ss[0].Exported != 1 {
		t.Errorf("BIRD's session with our hub: %+v, want the 3 other LANs imported and only spoke1's LAN exported", ss[0])
	} else {
		t.Logf("BIRD's session: %+v", ss[0])
	}
	e.waitFor(bgpLimit, "BIRD put the LANs into spoke1's kernel on dmvpn0 and our spoke1 follows them", func() error {
		return firstErr(e.kernelRouteBy(lab.Spoke1, "10.1.2.0/24", "10.0.0.12", unix.RTPROT_BIRD),
			e.kernelRouteBy(lab.Spoke1, "10.1.3.0/24", "10.0.0.13", unix.RTPROT_BIRD),
			e.kernelRouteBy(lab.Spoke1, "10.1.0.0/24", "10.0.0.1", unix.RTPROT_BIRD),
			e.followsKernel(lab.Spoke1, "10.1.2.0/24", "10.0.0.12"),
			e.followsKernel(lab.Spoke1, "10.1.3.0/24", "10.0.0.13"),
			e.followsKernel(lab.Spoke1, "10.1.0.0/24", "10.0.0.1"))
	})
	// What BIRD must not announce: the tunnel subnet, the underlay, or
	// what it learned from the hub (iBGP split horizon).
	if hb, err := e.bgpView(lab.Hub); err == nil {
		for _, r := range hb.Routes {
			if r.Neighbor == "10.0.0.11" && r.Prefix != "10.1.1.0/24" {
				t.Errorf("our hub got %s (next hop %s) from BIRD: BIRD must announce spoke1's LAN only", r.Prefix, r.NextHop)
			}
		}
	}

	e.pingAll(3, reachLimit,
		pingCheck{lab.HostLAN1, lab.HostLAN2}, pingCheck{lab.HostLAN2, lab.HostLAN1},
		pingCheck{lab.HostLAN1, lab.HostLAN0}, pingCheck{lab.HostLAN0, lab.HostLAN1})
	e.waitDirect(flow12, directLimit)
	e.provedDirect(3, 0, flow12)

	// BIRD goes: its Cease takes spoke1's LAN off our hub, and the kernel
	// routes it installed go with it, so our spoke1 drops them too.
	b.stop()
	e.waitFor(bgpLimit, "BIRD's routes left our hub, spoke2 and our spoke1's FIB", func() error {
		if err := firstErr(e.forgotten(lab.Hub, "10.1.1.0/24"), e.forgotten(lab.Spoke2, "10.1.1.0/24")); err != nil {
			return err
		}
		for _, p := range []string{"10.1.2.0/24", "10.1.3.0/24", "10.1.0.0/24"} {
			if r, ok, err := e.routeVia(lab.Spoke1, p); err != nil || ok {
				return fmt.Errorf("spoke1 still routes %s: %+v (%v)", p, r, err)
			}
		}
		return nil
	})
	if n, err := e.birdOurNeighbor(lab.Hub, "10.0.0.11"); err == nil && n.State == "Established" {
		t.Errorf("our hub still has an Established session with BIRD after it stopped: %+v", n)
	}
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// BIRD as the hub's route reflector for our spokes. In the hub's
// namespace our daemon runs the tunnel (the NHS) without BGP and BIRD
// accepts the spokes' sessions from a dynamic range, reflects their LANs
// with the next hop unchanged and puts them into the hub's kernel, where
// our hub follows them. The spokes' BGP is ours (peer-nhs). The hub's
// underlay capture shows every BGP message between BIRD and our spokes
// decoding cleanly.
func TestInteropBIRDHub(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "bird")
	testenv.RequireTool(t, "birdc")
	testenv.RequireTool(t, "tshark")
	testenv.RequireTool(t, "tcpdump")
	e := newShortcutLab(t, 'J', lab.Options{Phase: 2, Tweak: func(node string, c *lab.NodeConfig) {
		if node == lab.Hub {
			c.BGP = nil // BIRD is the hub's BGP speaker
		}
	}})
	capt := e.startCapture(lab.Hub)
	// The hub's tunnel first, then BIRD on it, then the spokes: their
	// first connection then finds BIRD listening (no refused attempts in
	// the capture).
	if err := e.l.Start(lab.Hub); err != nil {
		t.Fatal(err)
	}
	e.birdWaitTunnelAddr(lab.Hub)
	b := e.startBIRD(lab.Hub, birdHubConf)
	for _, s := range allSpokes {
		if err := e.l.Start(s); err != nil {
			t.Fatal(err)
		}
	}
	e.waitHubPeersUp(registerLimit, allSpokes...)

	e.waitFor(bgpLimit, "BIRD (hub) Established with the three spokes, and they with it", func() error {
		if _, err := b.established("10.0.0.11", "10.0.0.12", "10.0.0.13"); err != nil {
			return err
		}
		return firstErr(e.birdOurSession(lab.Spoke1, "10.0.0.1"), e.birdOurSession(lab.Spoke2, "10.0.0.1"), e.birdOurSession(lab.Spoke3, "10.0.0.1"))
	})
	if ss, err := b.established("10.0.0.11", "10.0.0.12", "10.0.0.13"); err == nil {
		t.Logf("BIRD's sessions: %+v", ss)
	}
	e.waitFor(bgpLimit, "the spokes learned each other's LANs from BIRD via the owning spoke", func() error {
		return firstErr(
			e.learned(lab.Spoke1, "10.1.2.0/24", "10.0.0.12"), e.learned(lab.Spoke1, "10.1.3.0/24", "10.0.0.13"),
			e.learned(lab.Spoke2, "10.1.1.0/24", "10.0.0.11"), e.learned(lab.Spoke2, "10.1.3.0/24", "10.0.0.13"),
			e.learned(lab.Spoke3, "10.1.1.0/24", "10.0.0.11"), e.learned(lab.Spoke3, "10.1.2.0/24", "10.0.0.12"),
			e.learned(lab.Spoke1, "10.1.0.0/24", "10.0.0.1"), e.learned(lab.Spoke2, "10.1.0.0/24", "10.0.0.1"))
	})
	for _, s := range allSpokes {
		if bv, err := e.bgpView(s); err == nil {
			for _, r := range bv.Routes {
				if r.Best && r.Neighbor == "10.0.0.1" && len(r.ASPath) != 0 {
					t.Errorf("%s: %s from BIRD has AS path %v, want none (iBGP)", s, r.Prefix, r.ASPath)
				}
			}
		}
	}
	e.waitFor(bgpLimit, "BIRD put the spokes' LANs into the hub's kernel on dmvpn0 and our hub follows them", func() error {
		return firstErr(
			b.hasRoute("10.1.1.0/24", "10.0.0.11"), b.hasRoute("10.1.2.0/24", "10.0.0.12"), b.hasRoute("10.1.3.0/24", "10.0.0.13"),
			e.kernelRouteBy(lab.Hub, "10.1.1.0/24", "10.0.0.11", unix.RTPROT_BIRD),
			e.kernelRouteBy(lab.Hub, "10.1.2.0/24", "10.0.0.12", unix.RTPROT_BIRD),
			e.kernelRouteBy(lab.Hub, "10.1.3.0/24", "10.0.0.13", unix.RTPROT_BIRD),
			e.followsKernel(lab.Hub, "10.1.1.0/24", "10.0.0.11"),
			e.followsKernel(lab.Hub, "10.1.2.0/24", "10.0.0.12"),
			e.followsKernel(lab.Hub, "10.1.3.0/24", "10.0.0.13"))
	})

	e.pingAll(3, reachLimit,
		pingCheck{lab.HostLAN0, lab.HostLAN1}, pingCheck{lab.HostLAN1, lab.HostLAN0},
		pingCheck{lab.HostLAN0, lab.HostLAN3}, pingCheck{lab.HostLAN1, lab.HostLAN2})
	e.waitDirect(flow12, directLimit)
	e.provedDirect(3, 0, flow12)
	if err := b.running(); err != nil {
		t.Fatal(err)
	}

	capt.stop()
	types := map[string]map[string]int{} // inner source -> BGP type -> count
	for _, row := range e.tsharkFields(capt.pcap, "bgp", "ip.src", "bgp.type") {
		src := birdInner(row[0])
		if types[src] == nil {
			types[src] = map[string]int{}
		}
		for _, ty := range strings.Split(row[1], ",") {
			types[src][ty]++
		}
	}
	t.Logf("BGP messages by inner source and type (1 OPEN, 2 UPDATE, 4 KEEPALIVE): %v", types)
	for _, src := range []string{"10.0.0.1", "10.0.0.11", "10.0.0.12", "10.0.0.13"} {
		// BIRD sends an OPEN per session; each of our spokes sends one.
		opens := 1
		if src == "10.0.0.1" {
			opens = 3
		}
		if m := types[src]; m["1"] < opens || m["2"] < 1 || m["4"] < 1 {
			t.Errorf("BGP from %s in the hub's underlay capture: %v, want at least %d OPEN, an UPDATE and a KEEPALIVE", src, m, opens)
		}
	}
	// BIRD's reflection on the wire: spoke2's LAN sent to the others with
	// spoke2 still the next hop.
	rows := e.tsharkFields(capt.pcap, "bgp.type == 2 && ip.src == 10.0.0.1 && bgp.nlri_prefix == 10.1.2.0", "ip.dst", "bgp.update.path_attribute.next_hop")
	to := map[string]bool{}
	for _, r := range rows {
		if !strings.Contains(r[1], "10.0.0.12") {
			t.Errorf("BIRD's UPDATE for 10.1.2.0/24 to %s has next hop %q, want 10.0.0.12 (unchanged by the reflector)", r[0], r[1])
		}
		to[birdInner(r[0])] = true
	}
	if !to["10.0.0.11"] || !to["10.0.0.13"] {
		t.Errorf("BIRD's UPDATEs for 10.1.2.0/24 went to %v, want spoke1 and spoke3", slices.Sorted(maps.Keys(to)))
	}
	e.noMalformed(capt.pcap)
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}

// birdInner picks the overlay address out of a tshark ip.src/ip.dst
// field with every IP layer's value ("192.0.2.1,10.0.0.1": outer, inner).
func birdInner(field string) string {
	v := strings.Split(field, ",")
	return v[len(v)-1]
}
