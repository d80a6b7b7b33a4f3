// Command switchover measures the phase 3 switch-over in the netns lab: the
// time from the first packet the hub relays (and redirects) to the first
// packet on the direct spoke1 → spoke2 path, at p50 and p99 over many runs,
// and the packets lost meanwhile.
//
//	go run ./bench/switchover [-runs 100] [-transport gre|udp] [-keep] [-v]
//
// It needs root, tcpdump, tshark and timeout. It builds dmvpn (or takes
// -binary), brings the lab up in phase 3 under its own namespace prefix,
// waits until host-lan1 reaches host-lan2, adds the /32 aliases
// 10.1.2.20.. on host-lan2 (and 10.1.1.20.. on host-lan1, the sources) and
// starts one tcpdump on the inet router's interface toward spoke2
// (to-spoke2): every packet for spoke2 crosses it, relayed by the hub
// (outer source 192.0.2.1) or straight from spoke1 (198.51.100.1).
//
// Run i clears the NHRP cache of spoke1 and spoke2 (`dmvpn clear nhrp`),
// so the path starts at the hub, then streams -count ICMP echo requests,
// one every -gap, from 10.1.1.(20+i) on host-lan1 to 10.1.2.(20+i) on
// host-lan2 (fresh addresses each run: the hub rate-limits redirects per
// source and destination). The sender is this program, re-executed in
// host-lan1's namespace; it counts the replies. After the last run the
// capture is read with tshark: per run, the switch-over is the capture
// time of the first request from spoke1 minus that of the first request
// from the hub (one capture point, one clock); lost is requests sent minus
// replies received. The breakdown splits it at the Resolution Request the
// hub forwards to spoke2 and spoke2's Resolution Reply, which cross the
// same link.
//
// The lab is torn down at the end (and on Ctrl-C) unless -keep.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dmvpn/dmvpn/lab"
)

// captureIf is the inet router's veth toward spoke2 (lab/topology.go,
// underlayLinks).
const captureIf = "to-spoke2"

// Alias addresses: 10.1.2.(aliasBase+k) on host-lan2, 10.1.1.(aliasBase+k)
// on host-lan1, k < maxAliases. Runs beyond maxAliases reuse them (by then
// the hub's redirect budget for each pair has refilled).
const (
	aliasBase  = 20
	maxAliases = 200
)

// goal is the target of shared/reference/performance.md.
var goal = struct {
	p50, p99 time.Duration
}{5 * time.Millisecond, 20 * time.Millisecond}

type options struct {
	runs      int
	transport string
	keep      bool
	verbose   bool
	binary    string
	prefix    string
	dir       string
	count     int
	gap       time.Duration
	pause     time.Duration
	replyWait time.Duration
	wait      time.Duration
	pcap      string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == senderArg {
		os.Exit(runSender(os.Args[2:]))
	}
	var o options
	flag.IntVar(&o.runs, "runs", 100, "number of switch-overs to measure")
	flag.StringVar(&o.transport, "transport", "gre", "gre: hub, spoke1, spoke2 on raw GRE; udp: every node on GRE-in-UDP")
	flag.BoolVar(&o.keep, "keep", false, "leave the lab (and the capture file) in place")
	flag.BoolVar(&o.verbose, "v", false, "print a line per run")
	flag.StringVar(&o.binary, "binary", "", "the dmvpn executable (default: go build ./cmd/dmvpn into a temporary directory)")
	flag.StringVar(&o.prefix, "prefix", "", "namespace prefix of the lab (default: swo<pid>)")
	flag.StringVar(&o.dir, "dir", "", "lab directory (default /run/dmvpn-lab/<prefix>)")
	flag.IntVar(&o.count, "count", 500, "echo requests per run")
	flag.DurationVar(&o.gap, "gap", 200*time.Microsecond, "time between echo requests")
	flag.DurationVar(&o.pause, "pause", 100*time.Millisecond, "pause between runs")
	flag.DurationVar(&o.replyWait, "reply-wait", time.Second, "how long a run waits for replies after its last request")
	flag.DurationVar(&o.wait, "wait", 30*time.Second, "how long to wait for the lab to carry traffic")
	flag.StringVar(&o.pcap, "pcap", "", "write the capture here and keep it (default: a temporary file, removed unless -keep)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "switchover: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "switchover: %v\n", err)
		os.Exit(1)
	}
}

func (o *options) check() error {
	if o.runs < 1 {
		return fmt.Errorf("-runs %d: want at least 1", o.runs)
	}
	if o.transport != "gre" && o.transport != "udp" {
		return fmt.Errorf("-transport %q: want gre or udp", o.transport)
	}
	if o.count < 2 || o.count > 65536 {
		return fmt.Errorf("-count %d: want 2..65536", o.count)
	}
	if o.gap <= 0 {
		return fmt.Errorf("-gap %v: want > 0", o.gap)
	}
	if o.prefix == "" {
		o.prefix = "swo" + strconv.Itoa(os.Getpid())
	}
	return nil
}

func run(o options) (err error) {
	if err := o.check(); err != nil {
		return err
	}
	if err := lab.CheckRoot(); err != nil {
		return err
	}
	for _, t := range [][2]string{{"tcpdump", "tcpdump"}, {"tshark", "tshark"}, {"timeout", "coreutils"}} {
		if _, err := exec.LookPath(t[0]); err != nil {
			return fmt.Errorf("%s is missing (apt-get install %s)", t[0], t[1])
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tmp, err := os.MkdirTemp("", "dmvpn-switchover-")
	if err != nil {
		return err
	}
	keepTmp := false
	defer func() {
		if !keepTmp {
			os.RemoveAll(tmp)
		}
	}()
	if o.binary == "" {
		o.binary = filepath.Join(tmp, "dmvpn")
		logf("building dmvpn into %s", o.binary)
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		cmd := exec.CommandContext(bctx, "go", "build", "-o", o.binary, "github.com/dmvpn/dmvpn/cmd/dmvpn")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		err := cmd.Run()
		cancel()
		if err != nil {
			return fmt.Errorf("go build ./cmd/dmvpn: %w", err)
		}
	} else if o.binary, err = filepath.Abs(o.binary); err != nil {
		return err
	}
	pcap := o.pcap
	if pcap == "" {
		pcap = filepath.Join(tmp, "switchover.pcap")
	} else if pcap, err = filepath.Abs(pcap); err != nil {
		return err
	}

	tr := map[string]string{lab.Hub: "gre", lab.Spoke1: "gre", lab.Spoke2: "gre"}
	if o.transport == "udp" {
		tr = map[string]string{lab.Hub: "udp", lab.Spoke1: "udp", lab.Spoke2: "udp", lab.Spoke3: "udp"}
	}
	l, err := lab.Up(ctx, lab.Options{
		Prefix:    o.prefix,
		Dir:       o.dir,
		Binary:    o.binary,
		Phase:     3,
		Transport: tr,
		Log:       prefixed{os.Stderr},
	})
	if err != nil {
		return err
	}
	var capture *capture
	defer func() {
		if capture != nil {
			capture.stop()
		}
		if err != nil && ctx.Err() == nil {
			for _, d := range lab.Daemons[:3] {
				fmt.Fprintf(os.Stderr, "--- last lines of %s\n%s\n", l.LogPath(d.Name), l.Tail(d.Name, 15))
			}
		}
		if o.keep && ctx.Err() == nil {
			keepTmp = true
			fmt.Fprintf(os.Stderr, "lab %q left up (-keep); dmvpn is %s; tear it down with:\n  go run ./bench/labup down -prefix %s", l.Prefix(), o.binary, l.Prefix())
			if o.dir != "" {
				fmt.Fprintf(os.Stderr, " -dir %s", l.Dir())
			}
			fmt.Fprintln(os.Stderr)
			return
		}
		if derr := l.Down(); derr != nil {
			fmt.Fprintf(os.Stderr, "switchover: teardown: %v\n", derr)
		}
	}()

	if err := l.WriteConfigs(); err != nil {
		return err
	}
	if err := l.StartAll(); err != nil {
		return err
	}
	if err := waitReachable(ctx, l, o.wait); err != nil {
		return err
	}
	nAlias := min(o.runs, maxAliases)
	if err := addAliases(ctx, l, nAlias); err != nil {
		return err
	}
	if out, err := l.Exec(ctx, lab.Inet, "ip", "link", "show", captureIf); err != nil {
		return fmt.Errorf("no %s in %s: %v %s", captureIf, l.Namespace(lab.Inet), err, out)
	}
	perRun := time.Duration(o.count)*o.gap + o.replyWait + o.pause + 2*time.Second
	bound := time.Duration(o.runs)*perRun + 2*time.Minute
	capture, err = startCapture(ctx, l, pcap, bound)
	if err != nil {
		return err
	}
	hubBefore, _ := l.Stats(ctx, lab.Hub)

	logf("%d runs: %d echo requests every %v per run, %s transport, capture on %s/%s",
		o.runs, o.count, o.gap, o.transport, l.Namespace(lab.Inet), captureIf)
	var specs []runSpec
	t0 := time.Now()
	for i := 0; i < o.runs && ctx.Err() == nil; i++ {
		k := i % maxAliases
		src := netip.AddrFrom4([4]byte{10, 1, 1, byte(aliasBase + k)})
		dst := netip.AddrFrom4([4]byte{10, 1, 2, byte(aliasBase + k)})
		for _, n := range []string{lab.Spoke1, lab.Spoke2} {
			if err := clearNHRP(ctx, o.binary, l.ConfigPath(n)); err != nil {
				if ctx.Err() != nil {
					return errors.New("interrupted")
				}
				return fmt.Errorf("run %d: %w", i+1, err)
			}
		}
		res, err := send(ctx, l, exe, src, dst, o)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		specs = append(specs, runSpec{
			idx: i + 1, src: src, dst: dst,
			from:      res.FirstNS - int64(50*time.Millisecond),
			to:        res.LastNS + int64(o.replyWait) + int64(100*time.Millisecond),
			firstSend: res.FirstNS,
			sent:      res.Sent, received: res.Received,
		})
		if (i+1)%25 == 0 {
			logf("%d/%d runs (%v)", i+1, o.runs, time.Since(t0).Round(time.Second))
		}
		select {
		case <-ctx.Done():
		case <-time.After(o.pause):
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	hubAfter, _ := l.Stats(ctx, lab.Hub)
	time.Sleep(300 * time.Millisecond) // the last packets reach the file
	dropped, err := capture.stop()
	capture = nil
	if err != nil {
		return err
	}

	evs, err := readCapture(ctx, pcap)
	if err != nil {
		return err
	}
	n := nbma{hub: nbmaOf(lab.Hub), spoke1: nbmaOf(lab.Spoke1), spoke2: nbmaOf(lab.Spoke2)}
	rs := assign(evs, specs, n)
	s := summarize(rs)
	report(os.Stdout, o, s, rs, dropped, hubAfter.NHRP["redirects_sent"]-hubBefore.NHRP["redirects_sent"])
	if o.keep || o.pcap != "" {
		logf("capture kept: %s", pcap)
	}
	if s.switched < s.runs {
		return fmt.Errorf("%d of %d runs did not switch over (no relayed or no direct packet captured)", s.runs-s.switched, s.runs)
	}
	return nil
}

func nbmaOf(node string) netip.Addr {
	d, _ := lab.DaemonByName(node)
	return d.PublicNBMA
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "switchover: "+format+"\n", args...)
}

type prefixed struct{ w io.Writer }

func (p prefixed) Write(b []byte) (int, error) {
	_, err := fmt.Fprintf(p.w, "switchover: %s", b)
	return len(b), err
}

// waitReachable waits (bounded) until host-lan1 pings host-lan2 through the
// hub, which needs both spokes registered.
func waitReachable(ctx context.Context, l *lab.Lab, wait time.Duration) error {
	dst, _ := lab.HostAddr(lab.HostLAN2)
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t0 := time.Now()
	for {
		pctx, pcancel := context.WithTimeout(wctx, 3*time.Second)
		perr := l.Ping(pctx, lab.HostLAN1, dst.String(), 1)
		pcancel()
		if perr == nil {
			logf("host-lan1 -> host-lan2 reachable after %v", time.Since(t0).Round(10*time.Millisecond))
			return nil
		}
		for _, d := range lab.Daemons {
			if exited, werr := l.Exited(d.Name); exited {
				return fmt.Errorf("daemon %s exited (%v)", d.Name, werr)
			}
		}
		if wctx.Err() != nil {
			return fmt.Errorf("host-lan1 -> %s not reachable within %v: %v", dst, wait, perr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// addAliases puts 10.1.2.(20+k)/32 on host-lan2 and 10.1.1.(20+k)/32 on
// host-lan1, and pins the spokes' neighbour entries for them, so no run
// waits for ARP on a LAN (that is not part of the switch-over).
func addAliases(ctx context.Context, l *lab.Lab, n int) error {
	for _, side := range []struct {
		host, spoke string
		third       byte
	}{{lab.HostLAN2, lab.Spoke2, 2}, {lab.HostLAN1, lab.Spoke1, 1}} {
		mac, err := l.Exec(ctx, side.host, "cat", "/sys/class/net/"+lab.IfHost+"/address")
		if err != nil {
			return err
		}
		var addrs, neighs strings.Builder
		for k := 0; k < n; k++ {
			a := netip.AddrFrom4([4]byte{10, 1, side.third, byte(aliasBase + k)})
			fmt.Fprintf(&addrs, "address replace %s/32 dev %s\n", a, lab.IfHost)
			fmt.Fprintf(&neighs, "neigh replace %s lladdr %s dev %s nud permanent\n", a, strings.TrimSpace(string(mac)), lab.IfLAN)
		}
		for _, b := range []struct{ node, cmds string }{{side.host, addrs.String()}, {side.spoke, neighs.String()}} {
			bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			cmd := l.Command(bctx, b.node, "ip", "-batch", "-")
			cmd.Stdin = strings.NewReader(b.cmds)
			out, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				return fmt.Errorf("ip -batch in %s: %v: %s", l.Namespace(b.node), err, out)
			}
		}
	}
	logf("aliases 10.1.2.%d-%d on host-lan2, 10.1.1.%d-%d on host-lan1", aliasBase, aliasBase+n-1, aliasBase, aliasBase+n-1)
	return nil
}

func clearNHRP(ctx context.Context, binary, config string) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, binary, "clear", "nhrp", "-c", config)
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s clear nhrp -c %s: %v: %s", binary, config, err, bytes.TrimSpace(out))
	}
	return nil
}

// send runs the stream sender in host-lan1's namespace.
func send(ctx context.Context, l *lab.Lab, exe string, src, dst netip.Addr, o options) (sendResult, error) {
	var res sendResult
	sctx, cancel := context.WithTimeout(ctx, time.Duration(o.count)*o.gap+o.replyWait+15*time.Second)
	defer cancel()
	cmd := l.Command(sctx, lab.HostLAN1, exe, senderArg,
		"-src", src.String(), "-dst", dst.String(), "-count", strconv.Itoa(o.count),
		"-gap", o.gap.String(), "-wait", o.replyWait.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return res, fmt.Errorf("sender %s -> %s: %v: %s", src, dst, err, bytes.TrimSpace(stderr.Bytes()))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		return res, fmt.Errorf("sender %s -> %s: %v: %q", src, dst, err, out)
	}
	if res.SendErrors > 0 {
		logf("sender %s -> %s: %d send errors", src, dst, res.SendErrors)
	}
	return res, nil
}

// capture is the tcpdump this program started (under timeout(1), which
// passes our SIGTERM on to it and bounds it if we die).
type capture struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

func startCapture(ctx context.Context, l *lab.Lab, pcap string, bound time.Duration) (*capture, error) {
	cmd := l.Command(context.WithoutCancel(ctx), lab.Inet, "timeout", "--kill-after=5",
		strconv.Itoa(int(bound.Seconds())), "tcpdump", "-i", captureIf, "-n", "-Z", "root",
		"--immediate-mode", "-U", "-B", "16384", "-w", pcap,
		"ip proto 47 or udp port 4754")
	sb := &syncBuffer{listening: make(chan struct{})}
	cmd.Stderr = sb
	cmd.Stdout = io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // no terminal Ctrl-C: we stop it
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tcpdump: %w", err)
	}
	c := &capture{cmd: cmd, stderr: sb, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	select {
	case <-sb.listening:
		return c, nil
	case err := <-c.done:
		c.done <- err
		return nil, fmt.Errorf("tcpdump exited: %v: %s", err, sb.String())
	case <-time.After(10 * time.Second):
		c.stop()
		return nil, fmt.Errorf("tcpdump did not start listening within 10 s: %s", sb.String())
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

var droppedRE = regexp.MustCompile(`(\d+) packets? dropped by kernel`)

// stop sends SIGTERM to the timeout(1) process we started (it passes it on
// to tcpdump), waits (bounded) and returns how many packets the kernel
// dropped. It is safe to call twice.
func (c *capture) stop() (int, error) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM) // an error if it has exited already
	var err error
	select {
	case err = <-c.done:
		c.done <- err
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		return 0, fmt.Errorf("tcpdump did not exit within 10 s of SIGTERM: %s", c.stderr.String())
	}
	out := c.stderr.String()
	if m := droppedRE.FindStringSubmatch(out); m != nil {
		d, _ := strconv.Atoi(m[1])
		return d, nil
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return 0, fmt.Errorf("tcpdump: %v: %s", err, out)
	}
	return 0, nil
}

type syncBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	listening chan struct{} // closed once tcpdump says "listening on"
	closed    bool
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if !b.closed && strings.Contains(b.buf.String(), "listening on") {
		b.closed = true
		close(b.listening)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(b.buf.String())
}

// readCapture runs tshark over the capture and parses its fields.
func readCapture(ctx context.Context, pcap string) ([]event, error) {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	args := []string{"-r", pcap, "-n", "-d", "udp.port==4754,gre", "-Y", tsharkFilter,
		"-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	cmd := exec.CommandContext(tctx, "tshark", args...)
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tshark -r %s: %v: %s", pcap, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return parseTshark(bytes.NewReader(out))
}

func report(w io.Writer, o options, s summary, rs []runResult, dropped int, redirects uint64) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	name := map[string]string{"gre": "raw GRE", "udp": "GRE-in-UDP"}[o.transport]
	if o.verbose {
		for _, r := range rs {
			fmt.Fprintf(bw, "run %3d %s -> %s: ", r.idx, r.src, r.dst)
			if d, ok := r.switchover(); ok {
				fmt.Fprintf(bw, "switch-over %s", ms(d))
				if r.resReq != 0 && r.resRep != 0 {
					fmt.Fprintf(bw, " (request at spoke2 +%s, reply +%s, direct +%s)",
						ms(time.Duration(r.resReq-r.firstRelayed)), ms(time.Duration(r.resRep-r.resReq)), ms(time.Duration(r.firstDirect-r.resRep)))
				}
			} else {
				fmt.Fprintf(bw, "no switch-over (relayed %v, direct %v)", r.firstRelayed != 0, r.firstDirect != 0)
			}
			fmt.Fprintf(bw, "; relayed %d, direct %d, relayed after direct %d; resolution requests %d; sent %d, replies %d, lost %d, reached spoke2 %d\n",
				r.relayed, r.direct, r.relayedAfterDirect, r.resReqs, r.sent, r.received, r.lost(), r.arrived)
		}
	}
	fmt.Fprintf(bw, "phase 3 switch-over in the lab, %s: %d runs (%d switched), %d echo requests every %v per run, load avg %s\n",
		name, s.runs, s.switched, o.count, o.gap, loadavg())
	if len(s.times) > 0 {
		fmt.Fprintf(bw, "switch-over (first relayed -> first direct at spoke2's link): p50 %s  p99 %s  max %s  min %s\n",
			ms(percentile(s.times, 0.50)), ms(percentile(s.times, 0.99)), ms(s.times[len(s.times)-1]), ms(s.times[0]))
	}
	lostRuns := 0
	for _, r := range rs {
		if r.lost() > 0 {
			lostRuns++
		}
	}
	fmt.Fprintf(bw, "packets lost: %d of %d (requests sent - replies received, %d runs with loss); requests that never reached spoke2: %d\n",
		s.sent-s.received, s.sent, lostRuns, s.forwardLost)
	if len(s.toRequest) > 0 {
		fmt.Fprintf(bw, "breakdown, median over %d runs: first relayed -> Resolution Request at spoke2 %s; -> spoke2's Reply %s; -> first direct %s\n",
			len(s.toRequest), ms(percentile(s.toRequest, 0.5)), ms(percentile(s.answer, 0.5)), ms(percentile(s.toDirect, 0.5)))
		fmt.Fprintf(bw, "           p99:                  %s; %s; %s\n",
			ms(percentile(s.toRequest, 0.99)), ms(percentile(s.answer, 0.99)), ms(percentile(s.toDirect, 0.99)))
	}
	if len(s.relayedPerRun) > 0 {
		fmt.Fprintf(bw, "relayed by the hub per run: median %d, max %d; relayed packets captured after the first direct one: %d; first request sent -> first relayed at spoke2's link: median %s\n",
			s.relayedPerRun[len(s.relayedPerRun)/2], s.relayedPerRun[len(s.relayedPerRun)-1], s.relayedAfterDirect, ms(percentile(s.toHub, 0.5)))
	}
	fmt.Fprintf(bw, "Resolution Requests for the streams' destinations reaching spoke2: %d, Replies from spoke2: %d (%d runs)\n", s.resReqs, s.resReps, s.runs)
	fmt.Fprintf(bw, "hub Traffic Indications sent: %d (both directions); requests captured inside UDP GSO super-datagrams: %d; capture: %d packets dropped by the kernel\n", redirects, s.inSuper, dropped)
	if len(s.times) > 0 {
		p50, p99 := percentile(s.times, 0.50), percentile(s.times, 0.99)
		verdict := "met"
		if p50 > goal.p50 || p99 > goal.p99 || s.sent != s.received || s.switched < s.runs {
			verdict = "NOT met"
		}
		fmt.Fprintf(bw, "goal (p50 <= %v, p99 <= %v, nothing lost, without IKEv2): %s\n", goal.p50, goal.p99, verdict)
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
