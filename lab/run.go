package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// Check is one LAN-to-LAN reachability check: ping Dst from From's
// namespace.
type Check struct {
	From  string
	Dst   netip.Addr
	Label string
}

// Checks are the reachability checks of `dmvpn lab`: every LAN host from
// host-lan1, and host-lan1 from host-lan3, which sits behind the NAT.
var Checks = []Check{
	{HostLAN1, ip("10.1.0.10"), "host-lan1 -> host-lan0 (hub LAN)"},
	{HostLAN1, ip("10.1.2.10"), "host-lan1 -> host-lan2 (spoke2 LAN)"},
	{HostLAN1, ip("10.1.3.10"), "host-lan1 -> host-lan3 (spoke3 LAN, behind NAT)"},
	{HostLAN3, ip("10.1.1.10"), "host-lan3 -> host-lan1 (from behind NAT)"},
}

// RunOptions configures Run.
type RunOptions struct {
	// Keep leaves the lab up when Run returns (after success or failure,
	// not after an interrupt).
	Keep bool
	// Wait bounds how long Run waits for the first replies (default 20s).
	Wait time.Duration
	// Count is the number of echoes per check once reachable (default 3).
	Count int
	// Out receives the report (default os.Stdout).
	Out io.Writer
}

// ErrChecksFailed is returned (wrapped) by Run when a check failed.
var ErrChecksFailed = errors.New("lab checks failed")

// Run is `dmvpn lab`: it builds the lab, writes the configs, starts a daemon
// per node, waits (bounded) until the LAN hosts reach each other through the
// hub, prints a PASS/FAIL line per check, prints `show dmvpn` of every node
// and tears everything down unless ro.Keep. On failure it prints the last
// lines of every node's log. opts.Binary must be the dmvpn executable.
// Cancelling ctx (Ctrl-C) stops the wait and tears down.
func Run(ctx context.Context, opts Options, ro RunOptions) (err error) {
	out := ro.Out
	if out == nil {
		out = os.Stdout
	}
	if ro.Wait <= 0 {
		ro.Wait = 20 * time.Second
	}
	if ro.Count <= 0 {
		ro.Count = 3
	}
	if opts.Binary == "" {
		return errors.New("lab: Options.Binary (the dmvpn executable) is not set")
	}
	if err := CheckRoot(); err != nil {
		return err
	}
	if err := Preflight(); err != nil {
		return err
	}
	if opts.Log == nil {
		opts.Log = prefixWriter{out, "  "}
	}
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "dmvpn lab: hub + 3 spokes (spoke3 behind NAT, %s) in namespaces %s-*, phase %d, files in %s\n",
		o.NATMode, o.Prefix, o.Phase, o.Dir)
	l, err := Up(ctx, o)
	if err != nil {
		return err
	}
	failed := 0
	defer func() {
		if ro.Keep && ctx.Err() == nil {
			explain(out, l)
			return
		}
		if ctx.Err() != nil {
			fmt.Fprintln(out, "interrupted: tearing the lab down")
		}
		if derr := l.Down(); derr != nil {
			fmt.Fprintf(out, "teardown: %v\n", derr)
		}
		fmt.Fprintf(out, "lab %q torn down (use --keep to leave it up)\n", o.Prefix)
	}()
	fail := func(format string, args ...any) {
		failed++
		fmt.Fprintf(out, "FAIL "+format+"\n", args...)
	}

	if err := l.WriteConfigs(); err != nil {
		return err
	}
	var cfgs []string
	for _, d := range Daemons {
		c, _ := l.Config(d.Name)
		cfgs = append(cfgs, fmt.Sprintf("%s.yaml (%s, %s)", d.Name, c.Tunnel.Address, c.Tunnel.Transport))
	}
	fmt.Fprintf(out, "  configs in %s: %s\n", o.Dir, strings.Join(cfgs, ", "))
	fmt.Fprintf(out, "  nodes on raw GRE also listen on GRE-in-UDP port 4754, which spoke3 (behind the NAT) uses\n")
	if err := l.StartAll(); err != nil {
		// The log tails follow at the end; keep the first line of each.
		for _, line := range strings.Split(err.Error(), "\n") {
			if strings.HasPrefix(line, "lab: ") {
				line, _, _ = strings.Cut(line, "; last lines of")
				fail("%s", strings.TrimPrefix(line, "lab: "))
			}
		}
	} else {
		fmt.Fprintf(out, "  waiting up to %v for LAN-to-LAN reachability through the hub ...\n", ro.Wait)
		t0 := time.Now()
		l.waitReachable(ctx, ro.Wait)
		if ctx.Err() != nil {
			return fmt.Errorf("lab interrupted: %w", ctx.Err())
		}
		fmt.Fprintf(out, "  waited %v\n", time.Since(t0).Round(10*time.Millisecond))
		results := make([]PingResult, len(Checks))
		errs := make([]error, len(Checks))
		var wg sync.WaitGroup
		for i, c := range Checks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = l.PingStats(ctx, c.From, c.Dst.String(), ro.Count)
			}()
		}
		wg.Wait()
		for i, c := range Checks {
			if errs[i] != nil {
				fail("%-48s %s", c.Label, results[i])
			} else {
				fmt.Fprintf(out, "PASS %-48s %s\n", c.Label, results[i])
			}
		}
		if failed == 0 {
			l.demoShortcuts(ctx, out, fail)
		}
		for _, d := range Daemons {
			if exited, werr := l.Exited(d.Name); exited {
				fail("daemon %s exited (%v)", d.Name, werr)
			}
		}
	}
	for _, d := range Daemons {
		fmt.Fprintf(out, "\n=== %s: dmvpn show dmvpn -c %s\n", d.Name, l.ConfigPath(d.Name))
		b, err := l.Show(ctx, d.Name, "dmvpn", false)
		if err != nil {
			fail("show dmvpn on %s: %v", d.Name, err)
			continue
		}
		out.Write(b)
	}
	if o.IPsec {
		fmt.Fprintf(out, "\n=== hub: dmvpn show ipsec -c %s\n", l.ConfigPath(Hub))
		b, err := l.Show(ctx, Hub, "ipsec", false)
		if err != nil {
			fail("show ipsec on the hub: %v", err)
		} else {
			out.Write(b)
		}
		if err := l.CheckIPsec(ctx); err != nil {
			fail("%v", err)
		} else {
			fmt.Fprintf(out, "PASS every spoke has an IPsec SA with the hub carrying traffic (spoke3 over ESP-in-UDP), no clear-text GRE received\n")
		}
	}
	if !o.StaticRoutes {
		for _, what := range []string{"bgp", "bgp routes"} {
			fmt.Fprintf(out, "\n=== hub: dmvpn show %s -c %s\n", what, l.ConfigPath(Hub))
			b, err := l.Show(ctx, Hub, what, false)
			if err != nil {
				fail("show %s on the hub: %v", what, err)
				continue
			}
			out.Write(b)
		}
		if err := l.CheckBGP(ctx); err != nil {
			fail("%v", err)
		} else {
			fmt.Fprintf(out, "PASS the hub has a BGP session with every spoke and their LANs in its FIB, learned over BGP\n")
		}
	}
	if failed > 0 {
		for _, d := range Daemons {
			fmt.Fprintf(out, "\n--- last lines of %s\n%s\n", l.LogPath(d.Name), indent(l.Tail(d.Name, 20)))
		}
		fmt.Fprintf(out, "\n%d check(s) failed\n", failed)
		return fmt.Errorf("%w: %d", ErrChecksFailed, failed)
	}
	fmt.Fprintf(out, "\nall checks passed\n")
	return nil
}

// waitReachable polls every check with single pings until all answer, a
// daemon exits, the time is up or ctx ends.
func (l *Lab) waitReachable(ctx context.Context, wait time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	pending := map[int]bool{}
	for i := range Checks {
		pending[i] = true
	}
	for len(pending) > 0 && ctx.Err() == nil {
		var round []int
		for i := range pending {
			round = append(round, i)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, i := range round {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
				defer pcancel()
				if l.Ping(pctx, Checks[i].From, Checks[i].Dst.String(), 1) == nil {
					mu.Lock()
					delete(pending, i)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for _, d := range Daemons {
			if exited, _ := l.Exited(d.Name); exited {
				return
			}
		}
		if len(pending) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

func explain(out io.Writer, l *Lab) {
	p := l.Prefix()
	down := "dmvpn lab down"
	if p != DefaultPrefix {
		down += " --prefix " + p
	}
	if l.Dir() != defaultDir(p) {
		down += " --dir " + l.Dir()
	}
	fmt.Fprintf(out, "\nThe lab is still up (--keep). Explore it (ip and ping: iproute2, iputils-ping):\n")
	rows := [][2]string{
		{"ip netns exec " + l.Namespace(HostLAN1) + " ping 10.1.2.10", "host-lan1 -> host-lan2"},
		{"ip netns exec " + l.Namespace(HostLAN3) + " ping 10.1.1.10", "host-lan3 (behind NAT) -> host-lan1"},
		{"dmvpn show dmvpn -c " + l.ConfigPath(Hub), "the hub's view"},
		{"dmvpn show nhrp -c " + l.ConfigPath(Spoke1), "spoke1's NHRP cache"},
		{"ip netns exec " + l.Namespace(Hub) + " ip route", "the hub's routes (TUN " + IfTunnel + ")"},
		{"tail -f " + l.LogPath(Spoke3), "a daemon's log"},
		{"ip netns list | grep '^" + p + "-'", "the namespaces"},
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	for _, r := range rows {
		fmt.Fprintf(out, "  %-*s  # %s\n", width, r[0], r[1])
	}
	fmt.Fprintf(out, "Tear it down:\n  %s\n", down)
}

func defaultDir(prefix string) string { return DefaultRunDir + "/" + prefix }

// prefixWriter indents every line written to it. Callers write whole lines.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	s := strings.TrimSuffix(string(b), "\n")
	_, err := io.WriteString(p.w, p.prefix+strings.ReplaceAll(s, "\n", "\n"+p.prefix)+"\n")
	return len(b), err
}
