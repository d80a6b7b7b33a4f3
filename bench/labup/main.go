// Command labup brings the dmvpn netns lab up for a benchmark and leaves it
// running, or takes it down again. It is bench/throughput.sh's handle on the
// lab package: unlike `dmvpn lab --keep`, it sets the transport of every
// node, runs no checks beyond the one path the benchmark uses, and prints
// the daemons' PIDs so the caller can account their CPU time.
//
//	labup up   -prefix P -binary /path/to/dmvpn -transport gre|udp [-phase 1] [-dir D] [-wait 30s]
//	labup down -prefix P [-dir D]
//
// "up" builds the lab (tearing down any older lab with the same prefix),
// writes the configs, starts hub and spokes, waits (bounded) until
// host-lan1 pings host-lan2 through the hub, and prints one line
//
//	hub=PID spoke1=PID spoke2=PID spoke3=PID
//
// then exits with the lab still up (the daemons run in their own sessions).
// On failure it prints the daemons' log tails, tears the lab down and exits
// non-zero. "down" is lab.Teardown: it stops the recorded daemons by PID,
// kills what still runs in the lab's namespaces and deletes them.
//
// With -transport gre the hub, spoke1 and spoke2 use raw GRE (spoke3 stays
// on GRE-in-UDP: its NAT drops GRE); with -transport udp every node uses
// GRE-in-UDP. Needs root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

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
	fmt.Fprintln(os.Stderr, "usage: labup up -prefix P -binary DMVPN -transport gre|udp [-phase 1] [-dir D] [-wait 30s]\n       labup down -prefix P [-dir D]")
	os.Exit(2)
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	prefix := fs.String("prefix", "dmvbench", "namespace prefix of the lab")
	dir := fs.String("dir", "", "lab directory (default /run/dmvpn-lab/<prefix>)")
	binary := fs.String("binary", "", "the dmvpn executable to run in the lab")
	transport := fs.String("transport", "gre", "gre: hub, spoke1, spoke2 on raw GRE; udp: every node on GRE-in-UDP")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for host-lan1 -> host-lan2 reachability")
	phase := fs.Int("phase", 1, "DMVPN phase of the configs (1: spoke-to-spoke through the hub; 2, 3: direct once NHRP has resolved, which labup waits for)")
	_ = fs.Parse(args)
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
	dst, _ := lab.HostAddr(lab.HostLAN2)
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
	fmt.Fprintf(os.Stderr, "labup: %s lab %q up, host-lan1 -> host-lan2 reachable after %v\n",
		*transport, l.Prefix(), time.Since(t0).Round(10*time.Millisecond))
	if *phase >= 2 {
		// Phases 2 and 3: wait until spoke1 has resolved spoke2 (the path
		// the benchmark then measures is direct: one tunnel hop).
		c := lab.ShortcutChecks[0]
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
		fmt.Fprintf(os.Stderr, "labup: phase %d shortcut spoke1 -> spoke2 up after %v\n", *phase, time.Since(t0).Round(10*time.Millisecond))
	}
	pids := l.PIDs()
	var b strings.Builder
	for i, d := range lab.Daemons {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", d.Name, pids[d.Name])
	}
	fmt.Println(b.String())
	ok = true
	return nil
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
