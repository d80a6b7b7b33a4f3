package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/vishvananda/netlink"
	"go.yaml.in/yaml/v3"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// --- tests that need nothing from the machine ---

func TestNamesFit(t *testing.T) {
	var ifs []string
	for _, v := range append(underlayLinks, lanLinks()...) {
		ifs = append(ifs, v.ifA, v.ifB)
	}
	ifs = append(ifs, IfTunnel, attackerLink.ifA, attackerLink.ifB)
	for _, n := range ifs {
		if len(n) > 15 {
			t.Errorf("interface name %q is longer than 15 characters", n)
		}
	}
	if got := Namespaces("")[0]; got != "dmvpn-inet" {
		t.Errorf("default namespace = %q, want dmvpn-inet", got)
	}
	for _, ns := range append(namespaces(testPrefix('t')), nsName(testPrefix('t'), Attacker)) {
		if len(ns) > 15 {
			t.Errorf("test namespace %q is longer than 15 characters", ns)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	bad := []Options{
		{Prefix: "../x"},
		{Prefix: "a b"},
		{Prefix: strings.Repeat("p", 33)},
		{Phase: 4},
		{Transport: map[string]string{"spoke1": "esp"}},
		{Transport: map[string]string{"inet": "udp"}},
		{Holdtime: time.Millisecond},
		{NATMode: "open"},
		{LossPct: 101},
		{Dir: "/" + strings.Repeat("d", 100)},
	}
	for _, o := range bad {
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Prefix != "dmvpn" || o.Dir != "/run/dmvpn-lab/dmvpn" || o.Phase != 1 || o.Holdtime != 60*time.Second || o.NATMode != NATUDPOnly {
		t.Errorf("defaults = %+v", o)
	}
}

func TestCheckRootMessage(t *testing.T) {
	if err := checkUID(0); err != nil {
		t.Fatalf("root: %v", err)
	}
	err := checkUID(1000)
	if err == nil {
		t.Fatal("non-root: no error")
	}
	for _, want := range []string{"root", "sudo dmvpn lab", "namespaces", "TUN", "raw", "nftables", "go test ./...", "skips"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q:\n%v", want, err)
		}
	}
}

// configs decodes every node's YAML strictly (unknown keys refused), as the
// daemon will.
func configs(t *testing.T, o Options) map[string]NodeConfig {
	t.Helper()
	o, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{opts: o}
	m := map[string]NodeConfig{}
	for _, d := range Daemons {
		c, err := l.Config(d.Name)
		if err != nil {
			t.Fatal(err)
		}
		text := c.Marshal("comment line 1\ncomment line 2")
		var back NodeConfig
		dec := yaml.NewDecoder(bytes.NewReader(text))
		dec.KnownFields(true)
		if err := dec.Decode(&back); err != nil {
			t.Fatalf("%s: %v\n%s", d.Name, err, text)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("%s: YAML round trip\n got %+v\nwant %+v\n%s", d.Name, back, c, text)
		}
		if d.IsHub() && strings.Contains(string(text), "nhs") {
			t.Errorf("hub config has nhs:\n%s", text)
		}
		m[d.Name] = back
	}
	return m
}

func routesOf(c NodeConfig) string {
	var s []string
	for _, r := range c.Routes {
		s = append(s, r.Prefix+">"+r.Via)
	}
	return strings.Join(s, " ")
}

func TestConfigs(t *testing.T) {
	c := configs(t, Options{Dir: "/run/x", StaticRoutes: true})
	hub, s1, s3 := c[Hub], c[Spoke1], c[Spoke3]
	if hub.Tunnel.Address != "10.0.0.1/24" || hub.Tunnel.Source != "192.0.2.1" || hub.Tunnel.Transport != "gre" || len(hub.NHRP.NHS) != 0 {
		t.Errorf("hub = %+v", hub)
	}
	if hub.APISocket != "/run/x/hub.sock" || hub.Tunnel.Key != 42 || hub.Tunnel.MTU != 1400 || hub.NHRP.Holdtime != time.Minute {
		t.Errorf("hub = %+v", hub)
	}
	if got, want := routesOf(hub), "10.1.1.0/24>10.0.0.11 10.1.2.0/24>10.0.0.12 10.1.3.0/24>10.0.0.13"; got != want {
		t.Errorf("hub routes = %s, want %s", got, want)
	}
	if s1.Tunnel.Address != "10.0.0.11/24" || s1.Tunnel.Source != "198.51.100.1" || s1.Tunnel.Transport != "gre" {
		t.Errorf("spoke1 = %+v", s1)
	}
	if len(s1.NHRP.NHS) != 1 || s1.NHRP.NHS[0] != (NHSConfig{"10.0.0.1", "192.0.2.1"}) {
		t.Errorf("spoke1 nhs = %+v", s1.NHRP.NHS)
	}
	if got := routesOf(s1); got != "10.1.0.0/16>10.0.0.1" {
		t.Errorf("spoke1 routes = %s", got)
	}
	if s3.Tunnel.Transport != "udp" || s3.Tunnel.Source != "192.168.3.2" || s3.Tunnel.Address != "10.0.0.13/24" {
		t.Errorf("spoke3 = %+v", s3)
	}
	for _, n := range []string{Hub, Spoke1, Spoke2, Spoke3} {
		if c[n].NHRP.Redirect || c[n].NHRP.Shortcut {
			t.Errorf("phase 1 %s has redirect/shortcut", n)
		}
	}

	c3 := configs(t, Options{Phase: 3, StaticRoutes: true, Holdtime: 90 * time.Second, Transport: map[string]string{Spoke1: "udp"}})
	if !c3[Hub].NHRP.Redirect || c3[Hub].NHRP.Shortcut || !c3[Spoke2].NHRP.Shortcut || c3[Spoke2].NHRP.Redirect {
		t.Errorf("phase 3 redirect/shortcut wrong: hub %+v spoke2 %+v", c3[Hub].NHRP, c3[Spoke2].NHRP)
	}
	if got := routesOf(c3[Spoke2]); got != "10.1.0.0/16>10.0.0.1" {
		t.Errorf("phase 3 spoke2 routes = %s", got)
	}
	if c3[Spoke1].Tunnel.Transport != "udp" || c3[Spoke1].NHRP.Holdtime != 90*time.Second {
		t.Errorf("overrides not applied: %+v", c3[Spoke1])
	}

	c2 := configs(t, Options{Phase: 2, StaticRoutes: true})
	if got, want := routesOf(c2[Spoke2]), "10.1.0.0/24>10.0.0.1 10.1.1.0/24>10.0.0.11 10.1.3.0/24>10.0.0.13"; got != want {
		t.Errorf("phase 2 spoke2 routes = %s, want %s", got, want)
	}

	tw := configs(t, Options{StaticRoutes: true, Tweak: func(node string, c *NodeConfig) {
		c.NHRP.Authentication = `we"ird: yes`
		if node == Spoke2 {
			c.Routes = nil
		}
	}})
	if tw[Spoke1].NHRP.Authentication != `we"ird: yes` || len(tw[Spoke2].Routes) != 0 {
		t.Errorf("tweak not applied: %+v %+v", tw[Spoke1].NHRP, tw[Spoke2].Routes)
	}
}

// TestBGPConfigs: with BGP (the default) no config carries a static route;
// every node announces its LAN; the hub sends the summary with itself as
// next hop in phases 1 and 3 and reflects next hops unchanged in phase 2.
func TestBGPConfigs(t *testing.T) {
	for _, phase := range []int{1, 2, 3} {
		c := configs(t, Options{Phase: phase})
		for _, d := range Daemons {
			nc := c[d.Name]
			if len(nc.Routes) != 0 {
				t.Errorf("phase %d %s: static routes %s", phase, d.Name, routesOf(nc))
			}
			if nc.BGP == nil || nc.BGP.AS != AS || !reflect.DeepEqual(nc.BGP.Networks, []string{d.LAN.Masked().String()}) {
				t.Errorf("phase %d %s: bgp %+v", phase, d.Name, nc.BGP)
				continue
			}
			summary := d.IsHub() && phase != 2
			if nc.BGP.NextHopSelf != summary || (len(nc.BGP.Aggregates) == 1) != summary {
				t.Errorf("phase %d %s: next-hop-self %v aggregates %v", phase, d.Name, nc.BGP.NextHopSelf, nc.BGP.Aggregates)
			}
		}
	}
}

// TestMarshalQuoting: strings YAML could misread (as a bool, number,
// null, comment or mapping) survive Marshal; plain ones stay plain.
func TestMarshalQuoting(t *testing.T) {
	for _, s := range []string{"lab", "yes", "No", "42", "0x10", "1.5", "", "a b", `q"q`, "x:y", "-", "#c", "10.0.0.1", "10.1.0.0/16", "/run/a b/x.sock", "tab\there", ".inf", "line\nbreak"} {
		c := NodeConfig{Name: s, APISocket: s, NHRP: NHRPConfig{Authentication: s}}
		text := c.Marshal("quoting")
		var back NodeConfig
		if err := yaml.Unmarshal(text, &back); err != nil || back.Name != s || back.APISocket != s || back.NHRP.Authentication != s {
			t.Errorf("%q -> %s -> %+v, %v", s, text, back, err)
		}
	}
	text := string(NodeConfig{Name: "lab", Tunnel: TunnelConfig{Address: "10.0.0.1/24", Source: "10.0.0.1"}}.Marshal("a\nb"))
	for _, want := range []string{"# a\n# b\nname: lab\n", "\n  address: 10.0.0.1/24\n", "\n  source: 10.0.0.1\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("Marshal lacks %q:\n%s", want, text)
		}
	}
}

func TestProcStat(t *testing.T) {
	st, state, err := procStat(os.Getpid())
	if err != nil || st == 0 || state != 'R' && state != 'S' {
		t.Fatalf("procStat(self) = %d %c %v", st, state, err)
	}
	if pidAlive(os.Getpid(), st+1) {
		t.Error("pidAlive with a wrong start time = true")
	}
}

// startHelper runs the test binary in a helper mode, in the root namespace.
func startHelper(t *testing.T, args ...string) (*exec.Cmd, *proc) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	readLines(stdout).wait(t, "ready", 10*time.Second)
	st, err := procStartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, &proc{node: args[0], pid: cmd.Process.Pid, start: st}
}

// lines delivers the lines of a reader (a helper's stdout) one by one.
type lines chan string

func readLines(r io.Reader) lines {
	ch := make(lines, 1000)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	return ch
}

// wait returns the first line starting with want, bounded.
func (ls lines) wait(t *testing.T, want string, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	var seen []string
	for {
		select {
		case s, ok := <-ls:
			if !ok {
				t.Fatalf("waiting for %q: EOF after %q", want, seen)
			}
			if strings.HasPrefix(s, want) {
				return s
			}
			seen = append(seen, s)
		case <-timeout:
			t.Fatalf("no %q within %v (seen %q)", want, d, seen)
		}
	}
}

// rest returns the remaining lines until EOF, bounded.
func (ls lines) rest(t *testing.T, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	var b strings.Builder
	for {
		select {
		case s, ok := <-ls:
			if !ok {
				return b.String()
			}
			b.WriteString(s + "\n")
		case <-timeout:
			t.Fatalf("no EOF within %v (seen %q)", d, b.String())
		}
	}
}

func TestStopEscalatesToKill(t *testing.T) {
	// Parent of the helper, waiting for it: like Lab.Start.
	cmd, p := startHelper(t, "stubborn", "30")
	p.cmd, p.done = cmd, make(chan struct{})
	go func() { p.werr = cmd.Wait(); close(p.done) }()
	t0 := time.Now()
	err := stopProc(p, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("stopProc = %v, want a 'killed' error", err)
	}
	if p.alive() || time.Since(t0) > 3*time.Second {
		t.Errorf("alive=%v after %v", p.alive(), time.Since(t0))
	}

	// Attached (no cmd), as `dmvpn lab down` from another process: polls
	// /proc; a zombie counts as gone.
	cmd2, p2 := startHelper(t, "stubborn", "30")
	defer cmd2.Wait()
	if err := stopProc(p2, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("attached stopProc = %v, want a 'killed' error", err)
	}
	if p2.alive() {
		t.Error("attached helper still alive")
	}

	// SIGTERM that is honoured: no error.
	cmd3, p3 := startHelper(t, "sleep", "30")
	p3.cmd, p3.done = cmd3, make(chan struct{})
	go func() { p3.werr = cmd3.Wait(); close(p3.done) }()
	if err := stopProc(p3, 2*time.Second); err == nil || !strings.Contains(err.Error(), "terminated") {
		// The sleep helper does not handle SIGTERM, so it dies of it; the
		// real daemon exits 0 and Stop returns nil.
		t.Errorf("stopProc(sleep) = %v, want 'exited after SIGTERM with signal: terminated'", err)
	}
}

func TestPIDReuseGuard(t *testing.T) {
	cmd, p := startHelper(t, "sleep", "30")
	defer cmd.Wait()
	signalPID(p.pid, p.start+1, sigKILL) // a different process with the same PID
	time.Sleep(100 * time.Millisecond)
	if !pidAlive(p.pid, p.start) {
		t.Fatal("signalPID hit a process whose start time does not match")
	}
	signalPID(p.pid, p.start, sigKILL)
	if !waitDead(p, 2*time.Second) {
		t.Fatal("not killed")
	}
}

// --- tests that build namespaces (root) ---

// testPrefix is short enough that "<prefix>-host-lan0" fits 15 characters,
// and unique per test process.
func testPrefix(tag byte) string {
	s := strconv.FormatInt(int64(os.Getpid()%(36*36*36)), 36)
	return "d" + string(tag) + strings.Repeat("0", 3-len(s)) + s
}

func requireLab(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	if err := Preflight(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
}

type tlog struct{ t *testing.T }

func (w tlog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// upLab brings a lab up and guarantees teardown however the test ends.
func upLab(t *testing.T, o Options) *Lab {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Log == nil {
		o.Log = tlog{t}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := Teardown(ctx, o); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := Up(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func labNamespacesPresent(t *testing.T, prefix string) []string {
	t.Helper()
	all, err := ListNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	var v []string
	for _, ns := range all {
		if strings.HasPrefix(ns, prefix+"-") {
			v = append(v, ns)
		}
	}
	return v
}

func bounded(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestTopology(t *testing.T) {
	requireLab(t)
	prefix := testPrefix('t')
	l := upLab(t, Options{Prefix: prefix})
	ctx := bounded(t, 2*time.Minute)

	if got := labNamespacesPresent(t, prefix); len(got) != len(Nodes) {
		t.Fatalf("namespaces = %v, want %d", got, len(Nodes))
	}
	for _, n := range []string{Hub, Spoke3, HostLAN2} {
		out, err := l.Exec(ctx, n, "cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/all/rp_filter", "/proc/sys/net/ipv4/conf/wan0/rp_filter")
		if n == HostLAN2 {
			out, err = l.Exec(ctx, n, "cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/all/rp_filter", "/proc/sys/net/ipv4/conf/eth0/rp_filter")
		}
		if err != nil || strings.Fields(string(out))[0] != "1" || strings.Fields(string(out))[1] != "0" || strings.Fields(string(out))[2] != "0" {
			t.Errorf("%s sysctls ip_forward/rp_filter = %q, %v", n, out, err)
		}
	}
	if err := l.Do(Hub, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if lo.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("lo is down: %v", lo.Attrs().Flags)
		}
		return nil
	}); err != nil {
		t.Errorf("lo in hub: %v", err)
	}
	if got, err := l.Addrs(Spoke3, IfWAN); err != nil || len(got) != 1 || got[0].String() != "192.168.3.2/24" {
		t.Errorf("spoke3 %s addresses = %v, %v", IfWAN, got, err)
	}
	if ok, err := l.HasLink(NAT3, IfLAN); !ok || err != nil {
		t.Errorf("nat3 has %s: %v %v", IfLAN, ok, err)
	}
	if ok, err := l.HasLink(Hub, "nope0"); ok || err != nil {
		t.Errorf("hub has nope0: %v %v", ok, err)
	}

	ping := []struct {
		from, dst string
		ok        bool
		what      string
	}{
		{Spoke1, "192.0.2.1", true, "spoke1 -> hub wan (underlay)"},
		{Spoke2, "198.51.100.1", true, "spoke2 -> spoke1 wan (underlay)"},
		{Spoke3, "192.0.2.1", true, "spoke3 (behind NAT) -> hub wan"},
		{Hub, "192.168.3.2", false, "hub -> spoke3's private address"},
		{HostLAN1, "10.1.1.1", true, "host-lan1 -> its gateway spoke1"},
		{HostLAN0, "10.1.0.1", true, "host-lan0 -> its gateway hub"},
		{HostLAN1, "10.1.2.10", false, "host-lan1 -> host-lan2 before any overlay"},
		{HostLAN3, "10.1.0.10", false, "host-lan3 -> host-lan0 before any overlay"},
		{HostLAN0, "10.1.3.10", false, "host-lan0 -> host-lan3 before any overlay"},
	}
	var wg sync.WaitGroup
	for _, p := range ping {
		wg.Add(1)
		go func() { // the negative ones each wait out ping's 1s timeout
			defer wg.Done()
			err := l.Ping(ctx, p.from, p.dst, 1)
			if (err == nil) != p.ok {
				t.Errorf("%s: reachable=%v, want %v (%v)", p.what, err == nil, p.ok, err)
			}
		}()
	}
	wg.Wait()

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := func(node string, args ...string) *exec.Cmd {
		cmd := l.Command(ctx, node, append([]string{self}, args...)...)
		cmd.Env = append(os.Environ(), helperEnv+"=1")
		return cmd
	}

	// NAT: UDP from spoke3 reaches the hub from nat3's public address, and
	// the reply comes back (the hub answers what it observed).
	recv := helper(Hub, "udp-recv", "4754", "5")
	recvPipe, _ := recv.StdoutPipe()
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	recvOut := readLines(recvPipe)
	recvOut.wait(t, "ready", 10*time.Second)
	send, err := helper(Spoke3, "udp-send", "192.0.2.1:4754", "4754", "4").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(send), "echo from=192.0.2.1:4754") {
		t.Errorf("spoke3 udp-send: %v %q", err, send)
	}
	from := recvOut.wait(t, "from=", 10*time.Second)
	if !strings.HasPrefix(from, "from=198.51.100.129:") {
		t.Errorf("hub saw UDP from spoke3 as %q, want from=198.51.100.129:<port>", from)
	}
	_ = recv.Wait()

	// NAT drops raw GRE: the hub's raw socket sees spoke1's GRE but none
	// from spoke3, and nat3's drop counter counts it.
	rawr := helper(Hub, "raw-recv", "47", "2.5")
	rawPipe, _ := rawr.StdoutPipe()
	if err := rawr.Start(); err != nil {
		t.Fatal(err)
	}
	rawOut := readLines(rawPipe)
	rawOut.wait(t, "ready", 10*time.Second)
	for _, n := range []string{Spoke1, Spoke3} {
		if out, err := helper(n, "raw-send", "47", "192.0.2.1", "3").CombinedOutput(); err != nil {
			t.Errorf("%s raw-send: %v %s", n, err, out)
		}
	}
	got := rawOut.rest(t, 10*time.Second)
	_ = rawr.Wait()
	if !strings.Contains(got, "from=198.51.100.1 count=3") {
		t.Errorf("hub raw GRE receiver: want 3 packets from spoke1, got:\n%s", got)
	}
	if strings.Contains(got, "198.51.100.129") || strings.Contains(got, "192.168.3.2") {
		t.Errorf("GRE from spoke3 crossed the NAT:\n%s", got)
	}
	if n, err := l.NATDropped(); err != nil {
		t.Errorf("nat3 drop counter: %v", err)
	} else if n < 3 {
		t.Errorf("nat3 dropped %d GRE packets, want >= 3", n)
	}

	// A process the lab did not start, inside a lab namespace: Down must
	// find it by its network namespace (what `ip netns pids` does).
	stray := helper(HostLAN2, "sleep", "60")
	strayOut, _ := stray.StdoutPipe()
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	readLines(strayOut).wait(t, "ready", 10*time.Second)
	strayStart, _ := procStartTime(stray.Process.Pid)
	reaped := make(chan struct{})
	go func() { _ = stray.Wait(); close(reaped) }()

	// Up again with the same prefix replaces the lab (idempotent cleanup).
	t0 := time.Now()
	l2, err := Up(ctx, l.Options())
	if err != nil {
		t.Fatalf("second Up: %v", err)
	}
	t.Logf("rebuild took %v", time.Since(t0))
	select {
	case <-reaped:
	case <-time.After(10 * time.Second):
		t.Error("the stray process survived the rebuild")
	}
	if err := l2.Ping(ctx, Spoke1, "192.0.2.1", 1); err != nil {
		t.Errorf("after rebuild: %v", err)
	}

	if err := l2.Down(); err != nil {
		t.Errorf("Down: %v", err)
	}
	if got := labNamespacesPresent(t, prefix); len(got) != 0 {
		t.Errorf("namespaces left after Down: %v", got)
	}
	if pidAlive(stray.Process.Pid, strayStart) {
		t.Error("stray pid alive after Down")
	}
	if _, err := os.Stat(l.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Down left %s: %v", l.Dir(), err)
	}
}

// fakeOpts runs the test binary as the daemon (see fakeDaemon).
func fakeOpts(t *testing.T, tag byte) Options {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Options{Prefix: testPrefix(tag), Dir: t.TempDir(), Binary: self, Env: []string{helperEnv + "=1"}, Log: tlog{t},
		// The fake daemon routes what the config says: static routes.
		StaticRoutes: true}
}

func TestDaemonsStartStop(t *testing.T) {
	requireLab(t)
	l := upLab(t, fakeOpts(t, 'd'))
	ctx := bounded(t, 2*time.Minute)
	if err := l.WriteConfigs(); err != nil {
		t.Fatal(err)
	}
	if err := l.StartAll(); err != nil {
		t.Fatal(err)
	}
	pids := l.PIDs()
	if len(pids) != 4 {
		t.Fatalf("PIDs = %v", pids)
	}
	st, err := loadState(l.Dir())
	if err != nil || len(st.Procs) != 4 || st.Procs[Spoke3].PID != pids[Spoke3] || st.Prefix != l.Prefix() {
		t.Fatalf("state = %+v, %v", st, err)
	}
	// The daemon runs inside its namespace and owns the TUN there (once
	// it got that far: a busy machine may take longer than Start's grace).
	var got []netip.Prefix
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got, err = l.Addrs(Spoke2, IfTunnel)
		if err == nil && len(got) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || len(got) != 1 || got[0].String() != "10.0.0.12/24" {
		t.Errorf("spoke2 %s: %v %v", IfTunnel, got, err)
	}
	if err := waitPing(ctx, l, HostLAN1, "10.1.3.10", 15*time.Second); err != nil {
		t.Fatalf("host-lan1 -> host-lan3 over the fake overlay: %v\n%s\n%s", err, l.Tail(Hub, 10), l.Tail(Spoke3, 10))
	}
	if err := l.Start(Spoke2); err == nil {
		t.Error("second Start of a running node: no error")
	}

	// Stop: SIGTERM, the daemon cleans up and exits 0.
	if err := l.Stop(Spoke2); err != nil {
		t.Errorf("Stop(spoke2) = %v", err)
	}
	if pidAlive(pids[Spoke2], 0) {
		t.Error("spoke2 still alive after Stop")
	}
	if !strings.Contains(l.Tail(Spoke2, 3), "cleaning up") {
		t.Errorf("spoke2 log tail:\n%s", l.Tail(Spoke2, 3))
	}
	if ok, err := l.HasLink(Spoke2, IfTunnel); ok || err != nil {
		t.Errorf("spoke2's TUN outlived the daemon (%v)", err)
	}
	if st, _ := loadState(l.Dir()); len(st.Procs) != 3 {
		t.Errorf("state after Stop has %d procs, want 3", len(st.Procs))
	}
	if l.Ping(ctx, HostLAN1, "10.1.2.10", 1) == nil {
		t.Error("host-lan2 reachable with spoke2 stopped")
	}
	if err := l.Start(Spoke2); err != nil {
		t.Fatalf("restart spoke2: %v", err)
	}
	if err := waitPing(ctx, l, HostLAN1, "10.1.2.10", 15*time.Second); err != nil {
		t.Errorf("after restart: %v", err)
	}
	out, err := l.Show(ctx, Spoke3, "dmvpn", true)
	if err != nil || !strings.Contains(string(out), "fake show dmvpn for spoke3") {
		t.Errorf("Show = %q, %v", out, err)
	}

	all := l.PIDs()
	if err := l.Down(); err != nil {
		t.Errorf("Down: %v", err)
	}
	for n, pid := range all {
		if pidAlive(pid, 0) {
			t.Errorf("%s (pid %d) alive after Down", n, pid)
		}
	}
	if got := labNamespacesPresent(t, l.Prefix()); len(got) != 0 {
		t.Errorf("namespaces left: %v", got)
	}
	if err := l.Start(Hub); err == nil {
		t.Error("Start after Down: no error")
	}
}

func waitPing(ctx context.Context, l *Lab, from, dst string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		err := l.Ping(ctx, from, dst, 1)
		if err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRunKeepThenTeardown is `dmvpn lab --keep` followed by `dmvpn lab
// down` from another process (Teardown from the state file), with the fake
// daemon, and with nothing on PATH: the lab runs no ip, nft or ping.
func TestRunKeepThenTeardown(t *testing.T) {
	requireLab(t)
	t.Setenv("PATH", t.TempDir())
	o := fakeOpts(t, 'r')
	// Phase 1: the fake daemon forwards but does not resolve shortcuts;
	// phases 2 and 3 run against the real daemon in ../e2e.
	o.Phase = 1
	o.Holdtime = 45 * time.Second
	o.Log = nil
	t.Cleanup(func() { _ = Teardown(context.Background(), o) })
	var buf bytes.Buffer
	err := Run(bounded(t, 2*time.Minute), o, RunOptions{Keep: true, Wait: 15 * time.Second, Out: &buf})
	t.Logf("Run output:\n%s", buf.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	report := buf.String()
	if n := strings.Count(report, "\nPASS "); n != len(Checks) {
		t.Errorf("%d PASS lines, want %d", n, len(Checks))
	}
	for _, want := range []string{"rtt avg", "fake show dmvpn for hub", "fake show dmvpn for spoke3", "all checks passed", "dmvpn lab down --prefix " + o.Prefix, "ip netns exec " + o.Prefix + "-host-lan1 ping 10.1.2.10", "listen on GRE-in-UDP port 4754"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(report, "FAIL") {
		t.Error("report has FAIL")
	}

	// --keep: the lab and its daemons are still there, and another
	// process can find them.
	l, err := Open(Options{Prefix: o.Prefix, Dir: o.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if l.Options().Binary != o.Binary || l.Options().Phase != 1 {
		t.Errorf("Open: options %+v", l.Options())
	}
	pids := l.PIDs()
	if len(pids) != 4 {
		t.Fatalf("state PIDs = %v", pids)
	}
	for n := range pids {
		if !l.Running(n) {
			t.Errorf("%s not running after Run --keep", n)
		}
	}
	c, err := readNodeConfig(l.ConfigPath(Hub))
	if err != nil || c.NHRP.Redirect || c.NHRP.Holdtime != 45*time.Second {
		t.Errorf("hub config written by Run: %+v %v", c.NHRP, err)
	}

	if err := Teardown(bounded(t, time.Minute), Options{Prefix: o.Prefix, Dir: o.Dir}); err != nil {
		t.Errorf("Teardown: %v", err)
	}
	for n, pid := range pids {
		if pidAlive(pid, 0) {
			t.Errorf("%s (pid %d) alive after Teardown", n, pid)
		}
	}
	if got := labNamespacesPresent(t, o.Prefix); len(got) != 0 {
		t.Errorf("namespaces left: %v", got)
	}
	if _, err := os.Stat(o.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Teardown left %s: %v", o.Dir, err)
	}
}

// TestRunReportsFailure: a daemon that cannot work (spoke1 told to use a
// config the fake rejects) makes Run fail, print FAIL lines and log tails,
// and still tear everything down.
func TestRunReportsFailure(t *testing.T) {
	requireLab(t)
	o := fakeOpts(t, 'f')
	o.Log = nil
	o.Tweak = func(node string, c *NodeConfig) {
		if node == Spoke1 {
			c.Tunnel.Address = "not-an-address"
		}
	}
	t.Cleanup(func() { _ = Teardown(context.Background(), o) })
	var buf bytes.Buffer
	err := Run(bounded(t, 2*time.Minute), o, RunOptions{Wait: 3 * time.Second, Out: &buf})
	t.Logf("Run output:\n%s", buf.String())
	if !errors.Is(err, ErrChecksFailed) {
		t.Fatalf("Run = %v, want ErrChecksFailed", err)
	}
	for _, want := range []string{"FAIL", "spoke1 exited right after start", "last lines of", "torn down"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if got := labNamespacesPresent(t, o.Prefix); len(got) != 0 {
		t.Errorf("namespaces left: %v", got)
	}
}
