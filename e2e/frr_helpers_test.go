package e2e

// FRR (Debian's frr 8.4) run by hand in the lab's namespaces, for the
// interop tests in interop_frr_test.go: zebra plus one protocol daemon
// (bgpd, ospfd, ripd or eigrpd) per node, each instance in a directory of
// its own, queried with vtysh.
//
// The invocation, per daemon, in the node's namespace (found by trial on
// FRR 8.4.4; every path explicit so that instances never share a file):
//
//	/usr/lib/frr/DAEMON -u frr -g frr -P 0 -z DIR/zserv.api \
//	    --vty_socket DIR -i DIR/DAEMON.pid -f DIR/DAEMON.conf \
//	    --log file:DIR/DAEMON.log --log-level debug
//
//   - -u frr -g frr: as root the daemons refuse to start ("user(root) is
//     not part of vty group frrvty"); they start as root, keep the
//     capabilities they need and drop to frr, so DIR belongs to frr.
//   - -P 0: no TCP vty (it would listen on 2601.. in every namespace).
//   - -z: zebra's API socket, the same path for zebra and its clients.
//   - --vty_socket DIR: each daemon's vty socket, DIR/DAEMON.vty; vtysh
//     --vty_socket DIR talks to the instance from any namespace (they are
//     files), `vtysh --vty_socket DIR -c 'show ...'`.
//   - no -N: a pathspace would make FRR create /var/run/frr/NAME, a
//     directory nobody removes; with every path given it needs none.
//   - no -d: the daemon stays in the foreground, so the PID the test
//     started is the daemon and its process group is the test's to kill.
//   - --log file: logging is set before the config is read, so errors in
//     it are in the log too.
//
// One file is shared whatever the options: ospfd writes its graceful
// restart state to /var/run/frr/ospfd-gr.json on exit (FRR 8.4 puts it
// there even with -N). It lists no instance here (none of these configs
// asks for graceful restart), and ospfd at start-up acts only on an entry
// for its own instance, so it is left alone.
//
// zebra must be up before the protocol daemon connects to it (they retry,
// but only every few seconds): startFRR waits for zebra's vty socket,
// which zebra opens after its API socket. zebra installs the protocol's
// routes into the namespace's kernel (proto bgp/ospf/rip/eigrp) and
// removes them when it or the protocol daemon stops.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
)

// frrSbin is where Debian installs the FRR daemons.
const frrSbin = "/usr/lib/frr"

// frrStopWait bounds the wait for a daemon to exit on SIGTERM.
const frrStopWait = 10 * time.Second

// frrRequire fails (DMVPN_E2E=1) or skips t unless FRR's vtysh, zebra and
// the daemons are installed and the frr user exists; it returns that
// user's uid and gid.
func frrRequire(t *testing.T, daemons ...string) (uid, gid int) {
	t.Helper()
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("vtysh"); err != nil {
		testenv.Unavailable(t, "vtysh is not installed (apt-get install frr)")
	}
	for _, d := range append([]string{"zebra"}, daemons...) {
		if _, err := os.Stat(filepath.Join(frrSbin, d)); err != nil {
			testenv.Unavailable(t, fmt.Sprintf("FRR's %s is not installed (apt-get install frr): %v", d, err))
		}
	}
	u, err := user.Lookup("frr")
	if err != nil {
		testenv.Unavailable(t, fmt.Sprintf("no frr user (apt-get install frr): %v", err))
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("frr user %+v: %v", u, err)
	}
	return uid, gid
}

// frr is one FRR instance in a lab node: zebra and one protocol daemon.
type frr struct {
	e     *env
	node  string
	dir   string
	procs map[string]*frrProc // by daemon name
	order []string            // start order: zebra first
}

// frrProc is one running FRR daemon.
type frrProc struct {
	name string
	pgid int
	out  *syncBuffer // stdout and stderr (little: the log has the rest)
	done chan struct{}
	err  error // Wait's result, set before done closes
}

// startFRR starts zebra and daemon (config conf) in node's namespace, in a
// new directory that belongs to the frr user, and waits (bounded) until
// both answer on their vty sockets. They are stopped when the test ends
// (the protocol daemon first); if the test failed, the output of shows
// (vtysh commands) and each daemon's log tail are logged first.
func (e *env) startFRR(node, daemon, conf string, shows ...string) *frr {
	e.t.Helper()
	uid, gid := frrRequire(e.t, daemon)
	// Not t.TempDir: its parents are 0700 root, which frr cannot cross.
	dir, err := os.MkdirTemp("", "dmvpn-frr-"+node+"-")
	if err != nil {
		e.t.Fatal(err)
	}
	// Registered first, so it runs after the daemons stopped.
	e.t.Cleanup(func() { _ = os.RemoveAll(dir) })
	// sun_path is 108 bytes.
	if s := filepath.Join(dir, daemon+".vty"); len(s) > 100 {
		e.t.Fatalf("FRR's socket path %s is too long for a unix socket: set TMPDIR shorter", s)
	}
	if err := errors.Join(os.Chmod(dir, 0o755), os.Chown(dir, uid, gid)); err != nil {
		e.t.Fatal(err)
	}
	f := &frr{e: e, node: node, dir: dir, procs: map[string]*frrProc{}}
	for _, d := range []struct{ name, conf string }{
		{"zebra", "hostname " + node + "\n"},
		{daemon, conf},
	} {
		path := filepath.Join(dir, d.name+".conf")
		if err := os.WriteFile(path, []byte(d.conf), 0o644); err != nil {
			e.t.Fatal(err)
		}
		if err := os.Chown(path, uid, gid); err != nil {
			e.t.Fatal(err)
		}
		f.start(d.name)
	}
	e.t.Cleanup(func() { f.dumpOnFailure(shows) }) // runs before the stops
	return f
}

// start starts one daemon (as its own process group, so that stopping it
// stops nothing else: other tests run FRR too) and waits for its vty.
func (f *frr) start(name string) {
	e := f.e
	e.t.Helper()
	argv := []string{filepath.Join(frrSbin, name),
		"-u", "frr", "-g", "frr", "-P", "0",
		"-z", filepath.Join(f.dir, "zserv.api"),
		"--vty_socket", f.dir,
		"-i", filepath.Join(f.dir, name+".pid"),
		"-f", filepath.Join(f.dir, name+".conf"),
		"--log", "file:" + filepath.Join(f.dir, name+".log"), "--log-level", "debug",
	}
	cmd := e.l.Command(e.ctx, f.node, argv...)
	p := &frrProc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("%s in %s: %v", name, f.node, err)
	}
	p.pgid = cmd.Process.Pid
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	f.procs[name] = p
	f.order = append(f.order, name)
	e.t.Cleanup(func() { f.stopProc(p) })
	t0 := time.Now()
	vty := filepath.Join(f.dir, name+".vty")
	if err := e.poll(10*time.Second, 20*time.Millisecond, func() error {
		if err := p.exited(); err != nil {
			return err
		}
		c, err := net.DialTimeout("unix", vty, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		e.t.Fatalf("FRR %s in %s not up: %v; log:\n%s", name, f.node, err, f.logTail(name, 20))
	}
	e.t.Logf("FRR %s up in %s after %v (pid %d, %s)", name, f.node, time.Since(t0).Round(time.Millisecond), p.pgid, f.dir)
}

// exited returns an error if the daemon is no longer running.
func (p *frrProc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v: %s", p.name, p.err, strings.TrimSpace(p.out.String()))
	default:
		return nil
	}
}

// running checks that every daemon of the instance still runs.
func (f *frr) running() error {
	var errs []error
	for _, n := range f.order {
		if err := f.procs[n].exited(); err != nil {
			errs = append(errs, fmt.Errorf("FRR in %s: %w", f.node, err))
		}
	}
	return errors.Join(errs...)
}

// stop stops daemon (SIGTERM, bounded, then SIGKILL) and waits for it.
func (f *frr) stop(daemon string) {
	f.e.t.Helper()
	f.stopProc(f.procs[daemon])
}

func (f *frr) stopProc(p *frrProc) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(frrStopWait):
		f.e.t.Errorf("FRR %s in %s did not stop on SIGTERM within %v", p.name, f.node, frrStopWait)
		_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
		<-p.done // WaitDelay bounds it
	}
}

// vtysh runs `vtysh --vty_socket DIR -c CMD...` (bounded) and returns its
// output. It runs in the test's own namespace: the vty sockets are files.
func (f *frr) vtysh(cmds ...string) (string, error) {
	ctx, cancel := context.WithTimeout(f.e.ctx, 10*time.Second)
	defer cancel()
	args := []string{"--vty_socket", f.dir}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	cmd := exec.CommandContext(ctx, "vtysh", args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh in %s -c %q: %w: %s", f.node, cmds, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// json runs a vtysh show command that ends in "json" and decodes it.
func (f *frr) json(cmd string, v any) error {
	out, err := f.vtysh(cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("vtysh in %s -c %q: %w: %s", f.node, cmd, err, out)
	}
	return nil
}

// logTail returns the last n lines of daemon's log.
func (f *frr) logTail(daemon string, n int) string {
	b, err := os.ReadFile(filepath.Join(f.dir, daemon+".log"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logHas reports the first line of daemon's log containing s.
func (f *frr) logHas(daemon, s string) (string, bool) {
	b, _ := os.ReadFile(filepath.Join(f.dir, daemon+".log"))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			return l, true
		}
	}
	return "", false
}

func (f *frr) dumpOnFailure(shows []string) {
	if !f.e.t.Failed() {
		return
	}
	for _, c := range append([]string{"show ip route"}, shows...) {
		out, err := f.vtysh(c)
		if err != nil {
			out += err.Error()
		}
		f.e.t.Logf("--- FRR in %s: %s\n%s", f.node, c, out)
	}
	for _, n := range f.order {
		p := f.procs[n]
		f.e.t.Logf("--- FRR in %s: last lines of %s.log (running: %v)\n%s\n--- its output: %s",
			f.node, n, p.exited() == nil, f.logTail(n, 40), strings.TrimSpace(p.out.String()))
	}
}

// frrBGPPeer is one peer of `show bgp summary json` (ipv4Unicast.peers).
type frrBGPPeer struct {
	State  string `json:"state"`
	PfxRcd int    `json:"pfxRcd"`
	PfxSnt int    `json:"pfxSnt"`
}

// bgpPeers returns the IPv4 unicast peers of `show bgp summary json`.
func (f *frr) bgpPeers() (map[string]frrBGPPeer, error) {
	var s struct {
		IPv4 struct {
			Peers map[string]frrBGPPeer `json:"peers"`
		} `json:"ipv4Unicast"`
	}
	err := f.json("show bgp summary json", &s)
	return s.IPv4.Peers, err
}

// bgpEstablished checks that FRR's BGP sessions with peers are Established
// and have received at least one prefix each.
func (f *frr) bgpEstablished(peers ...string) error {
	ps, err := f.bgpPeers()
	if err != nil {
		return err
	}
	for _, a := range peers {
		p, ok := ps[a]
		if !ok {
			return fmt.Errorf("FRR in %s has no BGP peer %s: %+v", f.node, a, ps)
		}
		if p.State != "Established" || p.PfxRcd == 0 {
			return fmt.Errorf("FRR in %s: BGP peer %s is %s with %d prefixes received, want Established with prefixes", f.node, a, p.State, p.PfxRcd)
		}
	}
	return nil
}

// ospfNeighbors returns `show ip ospf neighbor json`: router ID -> state
// ("Full/DR", ...) and the neighbor's interface address.
func (f *frr) ospfNeighbors() (map[string][2]string, error) {
	var s struct {
		Neighbors map[string][]struct {
			NbrState string `json:"nbrState"`
			State    string `json:"state"` // older releases
			Address  string `json:"ifaceAddress"`
		} `json:"neighbors"`
	}
	if err := f.json("show ip ospf neighbor json", &s); err != nil {
		return nil, err
	}
	out := map[string][2]string{}
	for id, v := range s.Neighbors {
		for _, n := range v {
			st := n.NbrState
			if st == "" {
				st = n.State
			}
			out[id] = [2]string{st, n.Address}
		}
	}
	return out, nil
}

// ospfFull checks that FRR's OSPF lists exactly the neighbors want (router
// ID -> state, e.g. "Full/DR"), at the address equal to the router ID (the
// lab's router IDs are the tunnel addresses).
func (f *frr) ospfFull(want map[string]string) error {
	got, err := f.ospfNeighbors()
	if err != nil {
		return err
	}
	if len(got) != len(want) {
		return fmt.Errorf("FRR in %s: OSPF neighbors %v, want %v", f.node, got, want)
	}
	for id, st := range want {
		if g, ok := got[id]; !ok || g[0] != st || g[1] != id {
			return fmt.Errorf("FRR in %s: OSPF neighbor %s is %v (present %v), want %s at %s; all: %v", f.node, id, g, ok, st, id, got)
		}
	}
	return nil
}

// frrInstalled is frrKernelRoute and frrFollowed: zebra put prefix via gw
// into node's kernel with proto and our daemon there routes it the same.
func (e *env) frrInstalled(node, prefix, gw string, proto int) error {
	return firstErr(e.kernelRouteBy(node, prefix, gw, proto), e.followsKernel(node, prefix, gw))
}

// frrOurSession checks that our daemon on node has an Established BGP
// session with addr (dynamic: accepted from a listen range) that has
// received at least one prefix.
func (e *env) frrOurSession(node, addr string, dynamic bool) error {
	b, err := e.bgpView(node)
	if err != nil {
		return err
	}
	for _, n := range b.Neighbors {
		if n.Address != addr {
			continue
		}
		if n.State != "Established" || n.Received == 0 || n.Dynamic != dynamic {
			return fmt.Errorf("%s's BGP session with %s: %s, dynamic %v, %d prefixes received (last error %q), want Established, dynamic %v, with prefixes",
				node, addr, n.State, n.Dynamic, n.Received, n.LastError, dynamic)
		}
		return nil
	}
	return fmt.Errorf("%s has no BGP neighbor %s (%s)", node, addr, neighborStates(b))
}

// frrCountTypes counts the values of field (comma-separated per frame
// when a frame carries several messages) over the frames matching filter.
func (e *env) frrCountTypes(pcap, filter, field string) map[string]int {
	e.t.Helper()
	n := map[string]int{}
	for _, row := range e.tsharkFields(pcap, filter, field) {
		for _, v := range strings.Split(row[0], ",") {
			n[v]++
		}
	}
	return n
}
