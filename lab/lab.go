// Package lab builds a DMVPN test lab on this machine out of network
// namespaces and runs one dmvpn daemon per node in it.
//
// The topology is a hub and three spokes, each with one LAN host behind it,
// all hanging off an "internet" router namespace; spoke3 sits behind a NAT
// namespace (nat3) that masquerades and, in the default udp-only mode, drops
// IP protocols 47 (GRE) and 50 (ESP), so spoke3 must use GRE-in-UDP:
//
//	host-lan0 10.1.0.10 -- hub    10.1.0.1 | wan0 192.0.2.1/24     --.
//	host-lan1 10.1.1.10 -- spoke1 10.1.1.1 | wan0 198.51.100.1/26  --+-- inet
//	host-lan2 10.1.2.10 -- spoke2 10.1.2.1 | wan0 198.51.100.65/26 --+
//	host-lan3 10.1.3.10 -- spoke3 10.1.3.1 | wan0 192.168.3.2/24     |
//	                         nat3 192.168.3.1 | wan0 198.51.100.129/26 --'
//
// Namespaces are named "<prefix>-<node>" (prefix "dmvpn" by default), so
// labs with different prefixes run side by side. The overlay is 10.0.0.0/24:
// hub .1, spokeN .1N. LAN-to-LAN traffic is not routable until the overlay
// carries it.
//
// The same API serves `dmvpn lab` (see Run) and end-to-end tests in other
// packages: Up, WriteConfigs, Start/Stop/StartAll, Exec, Ping, Show, Down.
// The lab runs no external tool: namespaces, links, addresses, routes and
// sysctls go through netlink and /proc (netns.go, topology.go), nat3's NAT
// and the optional loss through nftables' netlink API, pings are the lab's
// own ICMP echoes (ping.go), and programs start inside a namespace through a
// re-exec of the running binary (NamespaceCommand). Named namespaces follow
// iproute2's convention (/var/run/netns), so `ip netns exec` works on them.
// Every command runs under a deadline, and Down kills only the processes the
// lab started (by PID, checked against the process start time so a reused
// PID is never hit) plus whatever still runs inside the lab's namespaces. A
// state file (Dir/state.json) lets another process, such as `dmvpn lab
// down`, tear the lab down.
//
// Everything needs root (see CheckRoot) and what Preflight checks.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// NAT modes of nat3.
const (
	// NATUDPOnly masquerades and drops IP protocols 47 and 50: only UDP,
	// TCP and ICMP cross, like a home router without GRE/IPsec passthrough.
	NATUDPOnly = "udp-only"
	// NATPermissive is plain masquerade; it passes GRE for one inside host.
	NATPermissive = "permissive"
)

// Defaults.
const (
	DefaultPrefix   = "dmvpn"
	DefaultRunDir   = "/run/dmvpn-lab" // Dir defaults to DefaultRunDir/<prefix>
	DefaultHoldtime = 60 * time.Second
	DefaultPhase    = 1
	// StateFile is the name of the state file inside Dir.
	StateFile = "state.json"
)

// Bounds on external work.
const (
	cmdTimeout      = 15 * time.Second // any single command without a caller deadline
	upTimeout       = 60 * time.Second // whole topology build
	downTimeout     = 30 * time.Second // whole teardown
	defaultStopWait = 5 * time.Second  // SIGTERM -> SIGKILL
	killWait        = 2 * time.Second  // after SIGKILL
	startGrace      = 300 * time.Millisecond
)

// Options configures a lab. The zero value is a phase-1 lab with prefix
// "dmvpn" in /run/dmvpn-lab/dmvpn, with no daemon binary (topology only).
type Options struct {
	// Prefix names the namespaces "<Prefix>-<node>". Letters, digits, '-'
	// and '_'; at most 32 characters.
	Prefix string
	// Dir holds the configs (<node>.yaml), logs (<node>.log), API sockets
	// (<node>.sock) and state.json. Default /run/dmvpn-lab/<Prefix>. Down
	// removes only the files the lab writes there, then Dir if it is empty.
	Dir string
	// Binary is the dmvpn executable started as `Binary run -c <node>.yaml`
	// and used for `Binary show ...`. Needed by Start and Show only.
	Binary string
	// Env is added to the environment of the daemons and of Show.
	Env []string
	// Phase selects the routing in the configs: 1 (default): spokes route
	// 10.1.0.0/16 via the hub; 2: spokes route each remote LAN via its own
	// spoke's tunnel address; 3: like 1, plus redirect on the hub and
	// shortcut on the spokes. With BGP (the default) the routes are learned:
	// every node announces its LAN, the hub reflects them with their next
	// hop unchanged (phase 2) or sends only the summary 10.1.0.0/16 with
	// itself as next hop (phases 1 and 3).
	Phase int
	// StaticRoutes writes the routes above into the configs as static
	// routes and runs no BGP (the lab as it was before BGP).
	StaticRoutes bool
	// IPsec protects every tunnel with IKEv2 and ESP (a pre-shared key
	// for the cloud; raw ESP for the spokes that can, ESP-in-UDP for
	// spoke3 behind its NAT), and writes every node's keys to
	// KeyLogPath. `dmvpn lab` turns it on unless --no-ipsec.
	IPsec bool
	// Transport overrides a node's transport ("gre" or "udp"), by node name.
	// Defaults: hub, spoke1, spoke2 gre; spoke3 udp.
	Transport map[string]string
	// Holdtime is nhrp.holdtime in every config (default 60s).
	Holdtime time.Duration
	// NATMode is NATUDPOnly (default) or NATPermissive.
	NATMode string
	// LossPct, when > 0, makes the inet router drop that percentage of the
	// packets it forwards, in each direction (nftables numgen).
	LossPct int
	// UnderlayMTU of the veth links (default 1500).
	UnderlayMTU int
	// StopTimeout bounds the wait between SIGTERM and SIGKILL (default 5s).
	StopTimeout time.Duration
	// Tweak, if set, may change a node's config before it is written.
	Tweak func(node string, c *NodeConfig)
	// Log receives progress lines (nil: none).
	Log io.Writer
	// Attacker adds the node "attacker" (see Attacker): a namespace on the
	// inet router at 203.0.113.66 for tests that play an attacker.
	Attacker bool
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)

func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(o.Prefix) {
		return o, fmt.Errorf("lab: prefix %q: want 1-32 letters, digits, '-' or '_', starting with a letter or digit", o.Prefix)
	}
	if o.Dir == "" {
		o.Dir = filepath.Join(DefaultRunDir, o.Prefix)
	}
	if abs, err := filepath.Abs(o.Dir); err == nil {
		o.Dir = abs
	}
	if o.Phase == 0 {
		o.Phase = DefaultPhase
	}
	if o.Phase < 1 || o.Phase > 3 {
		return o, fmt.Errorf("lab: phase %d: want 1, 2 or 3", o.Phase)
	}
	for n, t := range o.Transport {
		if _, ok := DaemonByName(n); !ok {
			return o, fmt.Errorf("lab: transport override for %q: not a dmvpn node (hub, spoke1, spoke2, spoke3)", n)
		}
		if t != "gre" && t != "udp" {
			return o, fmt.Errorf("lab: transport %q for %s: want gre or udp", t, n)
		}
	}
	if o.Holdtime == 0 {
		o.Holdtime = DefaultHoldtime
	}
	if o.Holdtime < time.Second {
		return o, fmt.Errorf("lab: holdtime %v: want at least 1s", o.Holdtime)
	}
	switch o.NATMode {
	case "":
		o.NATMode = NATUDPOnly
	case NATUDPOnly, NATPermissive:
	default:
		return o, fmt.Errorf("lab: NAT mode %q: want %s or %s", o.NATMode, NATUDPOnly, NATPermissive)
	}
	if o.LossPct < 0 || o.LossPct > 100 {
		return o, fmt.Errorf("lab: loss %d%%: want 0-100", o.LossPct)
	}
	if o.UnderlayMTU == 0 {
		o.UnderlayMTU = 1500
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = defaultStopWait
	}
	// sun_path is 108 bytes including the NUL.
	if s := filepath.Join(o.Dir, "spoke1.sock"); len(s) > 107 {
		return o, fmt.Errorf("lab: dir %q is too long for a unix socket path (%d > 107 bytes)", o.Dir, len(s))
	}
	return o, nil
}

// Lab is a running (or attached) lab.
type Lab struct {
	opts Options

	mu    sync.Mutex
	procs map[string]*proc // by node, daemons started by this lab
	down  bool
}

// Up builds the lab: it first tears down any lab with the same prefix (and
// its state in Dir), then creates the namespaces, links, routes and NAT, and
// records them in Dir/state.json. It starts no daemon (see WriteConfigs and
// StartAll). On error everything built so far is removed.
func Up(ctx context.Context, opts Options) (*Lab, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := CheckRoot(); err != nil {
		return nil, err
	}
	if err := Preflight(); err != nil {
		return nil, err
	}
	l := &Lab{opts: o, procs: map[string]*proc{}}
	tctx, tcancel := context.WithTimeout(ctx, downTimeout)
	err = teardown(tctx, o)
	tcancel()
	if err != nil {
		return nil, fmt.Errorf("lab: removing the previous lab %q: %w", o.Prefix, err)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	// Record the namespaces before creating them, so that `dmvpn lab down`
	// can clean up after a build that died half way.
	if err := l.saveState(); err != nil {
		return nil, err
	}
	bctx, cancel := context.WithTimeout(ctx, upTimeout)
	defer cancel()
	t0 := time.Now()
	if err := l.build(bctx); err != nil {
		dctx, dcancel := context.WithTimeout(context.Background(), downTimeout)
		defer dcancel()
		_ = teardown(dctx, o)
		return nil, fmt.Errorf("lab: building %q: %w", o.Prefix, err)
	}
	l.logf("lab %q up: %d namespaces in %v (NAT: %s, nftables)", o.Prefix, len(l.Namespaces()), time.Since(t0).Round(time.Millisecond), o.NATMode)
	return l, nil
}

// Open attaches to a lab that another process brought up, from its state
// file. The daemons it started can be stopped (by PID) but not waited for.
func Open(opts Options) (*Lab, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := loadState(o.Dir)
	if err != nil {
		return nil, err
	}
	if st.Prefix != o.Prefix {
		return nil, fmt.Errorf("lab: %s belongs to prefix %q, not %q", filepath.Join(o.Dir, StateFile), st.Prefix, o.Prefix)
	}
	if o.Binary == "" {
		o.Binary = st.Binary
	}
	if opts.Phase == 0 && st.Phase != 0 {
		o.Phase = st.Phase
	}
	l := &Lab{opts: o, procs: map[string]*proc{}}
	for node, ps := range st.Procs {
		if ps.Start != 0 {
			l.procs[node] = &proc{node: node, pid: ps.PID, start: ps.Start}
		}
	}
	return l, nil
}

// Teardown removes the lab named by opts (Prefix, Dir) whether or not this
// process built it: it stops the daemons recorded in the state file (by PID,
// SIGTERM then SIGKILL), kills whatever else runs in the lab's namespaces,
// deletes the namespaces and removes the lab's files from Dir. It is a no-op
// when nothing is there.
func Teardown(ctx context.Context, opts Options) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	if err := CheckRoot(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, downTimeout)
	defer cancel()
	return teardown(ctx, o)
}

// Exists reports whether anything of the lab named by opts (Prefix, Dir) is
// on this machine: its state file or any of its namespaces.
func Exists(opts Options) (bool, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return false, err
	}
	if _, err := os.Stat(filepath.Join(o.Dir, StateFile)); err == nil {
		return true, nil
	}
	for _, n := range allNodes() {
		if nsExists(nsName(o.Prefix, n)) {
			return true, nil
		}
	}
	return false, nil
}

// Down stops the daemons, tears the lab down (see Teardown) and waits, with
// a bound, until it is gone.
func (l *Lab) Down() error {
	ctx, cancel := context.WithTimeout(context.Background(), downTimeout)
	defer cancel()
	l.mu.Lock()
	l.down = true
	l.mu.Unlock()
	var errs []error
	for _, err := range l.stopAll() {
		// A daemon that needed SIGKILL or exited non-zero is worth
		// reporting, but teardown goes on.
		errs = append(errs, err)
	}
	if err := teardown(ctx, l.opts); err != nil {
		errs = append(errs, err)
	}
	l.logf("lab %q down", l.opts.Prefix)
	return errors.Join(errs...)
}

// teardown: recorded PIDs, then namespace PIDs, then namespaces, then files.
func teardown(ctx context.Context, o Options) error {
	var errs []error
	if st, err := loadState(o.Dir); err == nil && st.Prefix == o.Prefix {
		var ps []*proc
		for node, p := range st.Procs {
			if p.Start != 0 { // without a start time the PID cannot be told from a reused one
				ps = append(ps, &proc{node: node, pid: p.PID, start: p.Start})
			}
		}
		// Errors (a daemon that needed SIGKILL) matter to Stop and Down;
		// here it is cleanup, and the namespace sweep below follows.
		_ = stopProcs(ps, o.StopTimeout)
	} else if err == nil {
		return fmt.Errorf("lab: %s belongs to the lab %q, not %q; give each lab its own dir", filepath.Join(o.Dir, StateFile), st.Prefix, o.Prefix)
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	var present []string
	for _, n := range allNodes() {
		if ns := nsName(o.Prefix, n); nsExists(ns) {
			present = append(present, ns)
		}
	}
	if len(present) > 0 {
		killNamespacePIDs(ctx, present)
		for _, ns := range present {
			if err := DeleteNamespace(ns); err != nil && nsExists(ns) {
				errs = append(errs, err)
			}
		}
	}
	removeFiles(o.Dir)
	return errors.Join(errs...)
}

// killNamespacePIDs is the fallback that catches processes the lab did not
// record (helpers, shells a user started while exploring): SIGTERM, a
// bounded wait, SIGKILL.
func killNamespacePIDs(ctx context.Context, namespaces []string) {
	list := func() []int {
		var pids []int
		for _, ns := range namespaces {
			v, _ := netnsPIDs(ns)
			pids = append(pids, v...)
		}
		return pids
	}
	pids := list()
	if len(pids) == 0 {
		return
	}
	for _, pid := range pids {
		signalPID(pid, 0, sigTERM)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		alive := false
		for _, pid := range pids {
			if pidAlive(pid, 0) {
				alive = true
				break
			}
		}
		if !alive {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range list() {
		signalPID(pid, 0, sigKILL)
	}
}

// removeFiles deletes what the lab writes in dir, then dir if empty.
func removeFiles(dir string) {
	for _, d := range Daemons {
		for _, ext := range []string{".yaml", ".log", ".sock", ".sock.lock", ".keys"} {
			_ = os.Remove(filepath.Join(dir, d.Name+ext))
		}
	}
	_ = os.Remove(filepath.Join(dir, StateFile))
	_ = os.Remove(filepath.Join(dir, StateFile+".tmp"))
	_ = os.Remove(dir) // only if empty
}

// WriteConfigs writes Dir/<node>.yaml for the hub and every spoke.
func (l *Lab) WriteConfigs() error {
	for _, d := range Daemons {
		if err := l.writeConfig(d.Name); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) writeConfig(node string) error {
	c, err := l.Config(node)
	if err != nil {
		return err
	}
	comment := fmt.Sprintf("dmvpn lab %q, node %s, phase %d; written by `dmvpn lab`, removed by `dmvpn lab down`.", l.opts.Prefix, node, l.opts.Phase)
	switch {
	case node == Hub:
		comment += "\nThe hub's transport is gre; as a hub it also listens on GRE-in-UDP port 4754,\nwhich spoke3 (behind nat3, which drops GRE) uses."
	case c.Tunnel.Transport == "udp":
		comment += "\nGRE-in-UDP (port 4754): " + node + " sits behind nat3, which masquerades and drops IP protocols 47 and 50."
	}
	if err := os.WriteFile(l.ConfigPath(node), c.Marshal(comment), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// Prefix returns the namespace prefix.
func (l *Lab) Prefix() string { return l.opts.Prefix }

// Dir returns the directory of configs, logs, sockets and state.
func (l *Lab) Dir() string { return l.opts.Dir }

// Options returns the lab's options with defaults filled in.
func (l *Lab) Options() Options { return l.opts }

// Namespace returns the network namespace of node.
func (l *Lab) Namespace(node string) string { return nsName(l.opts.Prefix, node) }

// Namespaces returns every namespace of the lab.
func (l *Lab) Namespaces() []string {
	v := namespaces(l.opts.Prefix)
	if l.opts.Attacker {
		v = append(v, nsName(l.opts.Prefix, Attacker))
	}
	return v
}

// ConfigPath returns Dir/<node>.yaml.
func (l *Lab) ConfigPath(node string) string { return filepath.Join(l.opts.Dir, node+".yaml") }

// LogPath returns Dir/<node>.log (the daemon's stdout and stderr).
func (l *Lab) LogPath(node string) string { return filepath.Join(l.opts.Dir, node+".log") }

// KeyLogPath returns Dir/<node>.keys, the node's IPsec key log (with
// Options.IPsec): Wireshark's ikev2_decryption_table and esp_sa records.
func (l *Lab) KeyLogPath(node string) string { return filepath.Join(l.opts.Dir, node+".keys") }

// SocketPath returns Dir/<node>.sock, the daemon's api-socket.
func (l *Lab) SocketPath(node string) string { return filepath.Join(l.opts.Dir, node+".sock") }

func nsName(prefix, node string) string { return prefix + "-" + node }

func namespaces(prefix string) []string {
	var v []string
	for _, n := range Nodes {
		v = append(v, nsName(prefix, n))
	}
	return v
}

// Namespaces returns the namespace names of a lab with the given prefix.
func Namespaces(prefix string) []string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return namespaces(prefix)
}

func (l *Lab) logf(format string, args ...any) {
	if l.opts.Log != nil {
		fmt.Fprintf(l.opts.Log, format+"\n", args...)
	}
}

// CheckRoot returns a clear error when the process is not root.
func CheckRoot() error { return checkUID(os.Geteuid()) }

func checkUID(uid int) error {
	if uid == 0 {
		return nil
	}
	return errors.New(`the DMVPN lab needs root.
It creates network namespaces and veth links, the daemons open TUN devices and
raw GRE sockets, and nat3 gets nftables NAT rules; all of it stays inside the
lab's own namespaces.
Run it as root:   sudo dmvpn lab        (or: sudo "$(command -v dmvpn)" lab)
Tear it down:     sudo dmvpn lab down
Without root, "go test ./..." skips the namespace tests (DMVPN_E2E=1 makes
them fail instead).`)
}

// Preflight checks what the lab needs from the kernel besides root: network
// namespaces and TUN devices. It needs no external tool (no ip, nft or
// ping): the lab does all of that itself.
func Preflight() error {
	var problems []string
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		problems = append(problems, "/proc/self/ns/net is absent: the kernel needs network namespaces (CONFIG_NET_NS) and /proc mounted")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		problems = append(problems, "/dev/net/tun is absent: the kernel needs CONFIG_TUN (or: mkdir -p /dev/net && mknod /dev/net/tun c 10 200)")
	}
	if len(problems) > 0 {
		return fmt.Errorf("lab preflight: %s", strings.Join(problems, "; "))
	}
	return nil
}
