// Command labup brings the dmvpn netns lab up for a benchmark and leaves it
// running, or takes it down again. It is bench/throughput.sh's handle on the
// lab package: unlike `dmvpn lab --keep`, it sets the transport of every
// node, runs no checks beyond the one path the benchmark uses, and prints
// the daemons' PIDs so the caller can account their CPU time.
//
//	labup up   -prefix P -binary /path/to/dmvpn -transport gre|udp [-phase 1] [-ipsec] [-to spoke2|spoke3] [-dir D] [-wait 30s]
//	labup down -prefix P [-dir D]
//
// "up" builds the lab (tearing down any older lab with the same prefix),
// writes the configs, starts hub and spokes, waits (bounded) until
// host-lan1 pings the target host (host-lan2) through the hub, and prints
// one line
//
//	hub=PID spoke1=PID spoke2=PID spoke3=PID [sa=ENCAP,...]
//
// then exits with the lab still up (the daemons run in their own
// sessions). On failure it prints the daemons' log tails, tears the lab down and exits
// non-zero. "down" is lab.Teardown: it stops the recorded daemons by PID,
// kills what still runs in the lab's namespaces and deletes them.
//
// With -transport gre the hub, spoke1 and spoke2 use raw GRE (spoke3 stays
// on GRE-in-UDP: its NAT drops GRE); with -transport udp every node uses
// GRE-in-UDP. -to spoke3 makes host-lan3 (behind spoke3, behind nat3) the
// target instead of host-lan2.
//
// With -ipsec every tunnel is protected by IKEv2 and ESP (lab.Options.IPsec:
// the lab's PSK, AES-128-GCM ESP, key logs in the lab directory), GRE
// travelling in raw ESP (IP protocol 50) or in ESP-in-UDP (port 4500).
// Which one is IKE's choice, not the transport's: it encapsulates in UDP
// only where it detects a NAT, so between spoke1, the hub and spoke2 the
// SAs are raw ESP even with -transport udp, and only spoke3's are
// ESP-in-UDP. "up" then also waits until every hop of the measured path
// (spoke1 -> hub -> target in phase 1, spoke1 -> target in phases 2 and 3)
// has a current SA that carried traffic both ways, so the benchmark
// measures encrypted traffic with no IKE in it, and appends each hop's
// encapsulation to the PID line: "sa=esp,esp-in-udp". Needs root.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/lab"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		err = down(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "labup: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: labup up -prefix P -binary DMVPN -transport gre|udp [-phase 1] [-ipsec] [-to spoke2|spoke3] [-dir D] [-wait 30s]\n       labup down -prefix P [-dir D]")
	os.Exit(2)
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	prefix := fs.String("prefix", "dmvbench", "namespace prefix of the lab")
	dir := fs.String("dir", "", "lab directory (default /run/dmvpn-lab/<prefix>)")
	binary := fs.String("binary", "", "the dmvpn executable to run in the lab")
	transport := fs.String("transport", "gre", "gre: hub, spoke1, spoke2 on raw GRE; udp: every node on GRE-in-UDP")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for host-lan1 -> target reachability (and the shortcut, and the SAs)")
	phase := fs.Int("phase", 1, "DMVPN phase of the configs (1: spoke-to-spoke through the hub; 2, 3: direct once NHRP has resolved, which labup waits for)")
	withIPsec := fs.Bool("ipsec", false, "protect every tunnel with IKEv2 and ESP (gre: raw ESP; udp: ESP on the UDP transport, 4500)")
	to := fs.String("to", lab.Spoke2, "the spoke whose LAN host the benchmark sends to: spoke2 (on the internet) or spoke3 (behind nat3)")
	_ = fs.Parse(args)
	var target lab.Daemon
	for _, d := range lab.Daemons {
		if d.Name == *to && d.Name != lab.Hub && d.Name != lab.Spoke1 {
			target = d
		}
	}
	if target.Name == "" {
		return fmt.Errorf("-to %q: want spoke2 or spoke3", *to)
	}
	if *binary == "" {
		return fmt.Errorf("-binary is required")
	}
	var tr map[string]string
	switch *transport {
	case "gre":
		tr = map[string]string{lab.Hub: "gre", lab.Spoke1: "gre", lab.Spoke2: "gre"}
	case "udp":
		tr = map[string]string{lab.Hub: "udp", lab.Spoke1: "udp", lab.Spoke2: "udp", lab.Spoke3: "udp"}
	default:
		return fmt.Errorf("-transport %q: want gre or udp", *transport)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := lab.Up(ctx, lab.Options{
		Prefix:    *prefix,
		Dir:       *dir,
		Binary:    *binary,
		Transport: tr,
		Phase:     *phase,
		IPsec:     *withIPsec,
		Log:       os.Stderr,
	})
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			for _, d := range lab.Daemons {
				fmt.Fprintf(os.Stderr, "--- last lines of %s\n%s\n", l.LogPath(d.Name), l.Tail(d.Name, 15))
			}
			if derr := l.Down(); derr != nil {
				fmt.Fprintf(os.Stderr, "labup: teardown: %v\n", derr)
			}
		}
	}()
	if err := l.WriteConfigs(); err != nil {
		return err
	}
	if err := l.StartAll(); err != nil {
		return err
	}
	dst := target.HostAddr
	wctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	t0 := time.Now()
	for {
		pctx, pcancel := context.WithTimeout(wctx, 3*time.Second)
		perr := l.Ping(pctx, lab.HostLAN1, dst.String(), 1)
		pcancel()
		if perr == nil {
			break
		}
		for _, d := range lab.Daemons {
			if exited, werr := l.Exited(d.Name); exited {
				return fmt.Errorf("daemon %s exited (%v)", d.Name, werr)
			}
		}
		if wctx.Err() != nil {
			return fmt.Errorf("host-lan1 -> %s not reachable within %v: %v", dst, *wait, perr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	mode := *transport
	if *withIPsec {
		mode += "+ipsec"
	}
	fmt.Fprintf(os.Stderr, "labup: %s lab %q up, host-lan1 -> %s reachable after %v\n",
		mode, l.Prefix(), target.Host, time.Since(t0).Round(10*time.Millisecond))
	if *phase >= 2 {
		// Phases 2 and 3: wait until spoke1 has resolved the target (the path
		// the benchmark then measures is direct: one tunnel hop).
		var c lab.ShortcutCheck
		for _, sc := range lab.ShortcutChecks {
			if sc.PeerSpoke == target.Name {
				c = sc
			}
		}
		if c.Spoke == "" {
			return fmt.Errorf("phase %d: the lab checks no shortcut to %s", *phase, target.Name)
		}
		for {
			_ = l.Ping(wctx, c.From, c.Dst, 1)
			if ok, _ := l.HasShortcut(wctx, c.Spoke, c); ok {
				break
			}
			if wctx.Err() != nil {
				return fmt.Errorf("phase %d: spoke1 did not resolve spoke2 within %v", *phase, *wait)
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Fprintf(os.Stderr, "labup: phase %d shortcut spoke1 -> %s up after %v\n", *phase, target.Name, time.Since(t0).Round(10*time.Millisecond))
	}
	// With IPsec every hop of the measured path must have a current SA
	// that carried traffic both ways (so the runs contain no IKE): in
	// phase 1 spoke1 -> hub -> target, in phases 2 and 3 spoke1 ->
	// target. Their encapsulations go on the output line (sa=): IKE
	// chooses ESP-in-UDP only where it detects a NAT, whatever the
	// transport.
	var encaps []string
	if *withIPsec {
		hops := [][2]lab.Daemon{{lab.Daemons[1], target}}
		if *phase < 2 {
			hops = [][2]lab.Daemon{{lab.Daemons[1], lab.Daemons[0]}, {lab.Daemons[0], target}}
		}
		for _, h := range hops {
			peer := h[1].WAN.Addr()
			if h[1].PublicNBMA.IsValid() {
				peer = h[1].PublicNBMA
			}
			c, err := waitSA(wctx, l, h[0].Name, peer, dst)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "labup: SA %s -> %s (%s): %s %s %s, SPIs in %s out %s\n",
				h[0].Name, h[1].Name, c.Peer, c.Encap, c.Mode, c.Transform, c.InboundSPI, c.OutboundSPI)
			encaps = append(encaps, c.Encap)
		}
	}
	pids := l.PIDs()
	var b strings.Builder
	for i, d := range lab.Daemons {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", d.Name, pids[d.Name])
	}
	if len(encaps) > 0 {
		fmt.Fprintf(&b, " sa=%s", strings.Join(encaps, ","))
	}
	fmt.Println(b.String())
	ok = true
	return nil
}

// waitSA waits (until ctx ends) for node to have a current Child SA with
// peer that carried packets both ways, pinging dst meanwhile, and returns
// it.
func waitSA(ctx context.Context, l *lab.Lab, node string, peer, dst netip.Addr) (api.ChildSA, error) {
	last := "no answer from show ipsec"
	for {
		var x api.IPsec
		err := l.ShowJSON(ctx, node, "ipsec", &x)
		if err != nil {
			if ctx.Err() != nil {
				return api.ChildSA{}, fmt.Errorf("%s has no current SA with %s carrying traffic (%s)", node, peer, last)
			}
			return api.ChildSA{}, fmt.Errorf("show ipsec --json on %s: %w", node, err)
		}
		last = fmt.Sprintf("%d Child SAs, none current with %s", len(x.Child), peer)
		for _, c := range x.Child {
			p, perr := netip.ParseAddrPort(c.Peer)
			if perr != nil || p.Addr() != peer || c.State != "current" {
				continue
			}
			if c.InPackets > 0 && c.OutPackets > 0 {
				return c, nil
			}
			last = fmt.Sprintf("SA with %s: %d packets in, %d out", c.Peer, c.InPackets, c.OutPackets)
		}
		// Traffic on the path, for the packet counters (and, in phase 3,
		// for the redirect that brings the shortcut's SA up).
		_ = l.Ping(ctx, lab.HostLAN1, dst.String(), 1)
		if ctx.Err() != nil {
			return api.ChildSA{}, fmt.Errorf("%s has no current SA with %s carrying traffic (%s)", node, peer, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func down(args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	prefix := fs.String("prefix", "dmvbench", "namespace prefix of the lab")
	dir := fs.String("dir", "", "lab directory (default /run/dmvpn-lab/<prefix>)")
	_ = fs.Parse(args)
	o := lab.Options{Prefix: *prefix, Dir: *dir}
	if up, err := lab.Exists(o); err != nil || !up {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	return lab.Teardown(ctx, o)
}
