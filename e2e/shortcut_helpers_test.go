package e2e

// Helpers of the phase-2/3 (shortcut) end-to-end tests: the spokes' NHRP
// cache and routes as the CLI shows them, waits for a direct path, proofs
// that the hub relays nothing, and a second tcpdump capture.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/lab"
)

const (
	// directLimit bounds the wait for a shortcut while pinging. A
	// resolution that failed is not retried for 10 s (the negative cache)
	// and the hub redirects at most 4 times per 5 s per flow: 25 s covers
	// one failed round.
	directLimit = 25 * time.Second
	// purgeLimit bounds the wait for a peer's purge to reach a spoke.
	purgeLimit = 2 * time.Second
)

// Flows between LAN hosts and the shortcut each one makes its source
// spoke install (phase 3: a route for the destination's LAN via the
// owner; phase 2: a resolved mapping for the next hop).
var (
	flow12 = lab.ShortcutCheck{From: lab.HostLAN1, Spoke: lab.Spoke1, PeerSpoke: lab.Spoke2, Dst: "10.1.2.10", Prefix: "10.1.2.0/24", Via: "10.0.0.12", Label: "host-lan1 -> host-lan2"}
	flow21 = lab.ShortcutCheck{From: lab.HostLAN2, Spoke: lab.Spoke2, PeerSpoke: lab.Spoke1, Dst: "10.1.1.10", Prefix: "10.1.1.0/24", Via: "10.0.0.11", Label: "host-lan2 -> host-lan1"}
	flow13 = lab.ShortcutCheck{From: lab.HostLAN1, Spoke: lab.Spoke1, PeerSpoke: lab.Spoke3, Dst: "10.1.3.10", Prefix: "10.1.3.0/24", Via: "10.0.0.13", Label: "host-lan1 -> host-lan3 (NAT)"}
	flow31 = lab.ShortcutCheck{From: lab.HostLAN3, Spoke: lab.Spoke3, PeerSpoke: lab.Spoke1, Dst: "10.1.1.10", Prefix: "10.1.1.0/24", Via: "10.0.0.11", Label: "host-lan3 (NAT) -> host-lan1"}
)

func hostOf(spoke string) string {
	d, _ := lab.DaemonByName(spoke)
	return d.Host
}

// newShortcutLab is newLab plus, when t fails, every daemon's `show nhrp`
// and `show routes` (newLab's own dump adds the log tails and show dmvpn).
func newShortcutLab(t *testing.T, tag byte, o lab.Options) *env {
	t.Helper()
	e := newLab(t, tag, o)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for _, d := range lab.Daemons {
			if !e.l.Running(d.Name) {
				continue
			}
			for _, view := range []string{"nhrp", "routes", "stats"} {
				b, err := e.l.Show(ctx, d.Name, view, false)
				if err != nil {
					b = []byte(err.Error())
				}
				t.Logf("--- %s: show %s\n%s", d.Name, view, b)
			}
		}
	})
	return e
}

// routes returns node's `show routes --json`.
func (e *env) routes(node string) ([]api.Route, error) {
	var rs []api.Route
	ctx, cancel := e.timeout(10 * time.Second)
	defer cancel()
	if err := e.l.ShowJSON(ctx, node, "routes", &rs); err != nil {
		return nil, err
	}
	return rs, nil
}

// nhrpCache returns node's `show nhrp --json`.
func (e *env) nhrpCache(node string) ([]api.NHRPEntry, error) {
	var es []api.NHRPEntry
	ctx, cancel := e.timeout(10 * time.Second)
	defer cancel()
	if err := e.l.ShowJSON(ctx, node, "nhrp", &es); err != nil {
		return nil, err
	}
	return es, nil
}

// nhrpEntry returns node's cache entry for protocol address proto.
func (e *env) nhrpEntry(node, proto string) (api.NHRPEntry, bool, error) {
	es, err := e.nhrpCache(node)
	if err != nil {
		return api.NHRPEntry{}, false, err
	}
	for _, x := range es {
		if x.Protocol == proto {
			return x, true, nil
		}
	}
	return api.NHRPEntry{}, false, nil
}

func entriesString(es []api.NHRPEntry) string {
	var v []string
	for _, x := range es {
		v = append(v, fmt.Sprintf("%s=%s/%s/%s", x.Protocol, x.Type, x.NBMA, x.Transport))
	}
	return "[" + strings.Join(v, " ") + "]"
}

func routesString(rs []api.Route) string {
	var v []string
	for _, r := range rs {
		best := ""
		if r.Best {
			best = "*"
		}
		v = append(v, fmt.Sprintf("%s via %s (%s)%s", r.Prefix, r.NextHop, r.Source, best))
	}
	return "[" + strings.Join(v, ", ") + "]"
}

// hasShortcut reports whether c.Spoke has resolved c (lab.HasShortcut).
func (e *env) hasShortcut(c lab.ShortcutCheck) (bool, error) {
	ctx, cancel := e.timeout(10 * time.Second)
	defer cancel()
	return e.l.HasShortcut(ctx, c.Spoke, c)
}

// shortcutGone checks that spoke has neither an nhrp route via peer nor a
// cache entry for peer.
func (e *env) shortcutGone(spoke, peer string) error {
	rs, err := e.routes(spoke)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if r.Source == "nhrp" && r.NextHop == peer {
			return fmt.Errorf("%s still routes %s via %s (nhrp): %s", spoke, r.Prefix, peer, routesString(rs))
		}
	}
	x, ok, err := e.nhrpEntry(spoke, peer)
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("%s still maps %s: %s %s (%s)", spoke, peer, x.Type, x.NBMA, x.Transport)
	}
	return nil
}

// waitDirect pings c.Dst from c.From, one echo at a time, until c.Spoke
// has the shortcut, within limit; it returns how long that took.
func (e *env) waitDirect(c lab.ShortcutCheck, limit time.Duration) time.Duration {
	e.t.Helper()
	t0 := time.Now()
	pings := 0
	err := e.poll(limit, 0, func() error {
		ok, err := e.hasShortcut(c)
		if err != nil || ok {
			return err
		}
		ctx, cancel := e.timeout(3 * time.Second)
		defer cancel()
		pings++
		_ = e.l.Ping(ctx, c.From, c.Dst, 1)
		return fmt.Errorf("%s: %s has no shortcut via %s after %d pings", c.Label, c.Spoke, c.Via, pings)
	})
	if err != nil {
		e.t.Fatalf("within %v: %v", limit, err)
	}
	took := time.Since(t0)
	e.t.Logf("%s: %s went direct via %s after %v (%d single pings)", c.Label, c.Spoke, c.Via, took.Round(time.Millisecond), pings)
	return took
}

// hairpinned returns the hub's count of packets relayed spoke to spoke.
func (e *env) hairpinned() uint64 {
	e.t.Helper()
	return e.stats(lab.Hub).DataPlane["hairpinned"]
}

// provedDirect runs count pings per flow and, when echo > 0, a TCP echo of
// echo bytes per flow, and fails t if the hub relayed any packet meanwhile.
func (e *env) provedDirect(count, echo int, flows ...lab.ShortcutCheck) {
	e.t.Helper()
	var checks []pingCheck
	for _, c := range flows {
		checks = append(checks, pingCheck{c.From, hostOf(c.PeerSpoke)})
	}
	before := e.hairpinned()
	e.pingAll(count, reachLimit, checks...)
	mid := e.hairpinned()
	if mid != before {
		e.t.Errorf("the hub relayed %d packets during the pings on the direct path (%v)", mid-before, checks)
	}
	if echo == 0 {
		return
	}
	for _, c := range checks {
		e.tcpEcho(c.from, c.to, echo)
	}
	if after := e.hairpinned(); after != mid {
		e.t.Errorf("the hub relayed %d packets during the TCP echoes on the direct path (%v)", after-mid, checks)
	} else {
		e.t.Logf("the hub relayed none of %d pings per flow and %d-byte TCP echoes (hairpinned stays %d)", count, echo, after)
	}
}

// logSize is the current length of node's log, for logSince.
func (e *env) logSize(node string) int64 {
	fi, err := os.Stat(e.l.LogPath(node))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince waits (bounded) until a line of node's log written after offset
// contains every one of want, and returns it.
func (e *env) logSince(node string, offset int64, limit time.Duration, want ...string) (string, error) {
	var line string
	err := e.poll(limit, 100*time.Millisecond, func() error {
		b, err := os.ReadFile(e.l.LogPath(node))
		if err != nil {
			return err
		}
		if int64(len(b)) < offset {
			offset = 0
		}
	lines:
		for _, l := range strings.Split(string(b[offset:]), "\n") {
			for _, w := range want {
				if !strings.Contains(l, w) {
					continue lines
				}
			}
			line = l
			return nil
		}
		return fmt.Errorf("%s's log has no new line with all of %q", node, want)
	})
	return line, err
}

// capture is one tcpdump on a node's wan0 (GRE and GRE-in-UDP only).
type capture struct {
	e    *env
	node string
	pcap string
	sig  func(os.Signal) error
	kill func() error
	err  *syncBuffer
	done chan struct{}
	once sync.Once
}

// startCapture starts tcpdump on node's wan0 writing to a file in t's temp
// dir, waits until it listens, and stops it when t ends if not before.
// --immediate-mode: packets still in the kernel's capture block when
// tcpdump stops would be lost otherwise.
func (e *env) startCapture(node string) *capture {
	e.t.Helper()
	return e.startTcpdump(node, 90)
}

// startTcpdump is startCapture with a time limit (seconds) and extra
// tcpdump options.
func (e *env) startTcpdump(node string, limit int, opts ...string) *capture {
	e.t.Helper()
	return e.startTcpdumpFilter(node, limit, "ip proto 47 or udp port 4754", opts...)
}

// startTcpdumpFilter is startTcpdump with a capture filter.
func (e *env) startTcpdumpFilter(node string, limit int, filter string, opts ...string) *capture {
	e.t.Helper()
	pcap := e.t.TempDir() + "/" + node + "-wan0.pcap"
	args := append([]string{"timeout", fmt.Sprint(limit), "tcpdump", "-Z", "root", "--immediate-mode", "-U", "-n"}, opts...)
	args = append(args, "-i", lab.IfWAN, "-w", pcap, filter)
	cmd := e.l.Command(e.ctx, node, args...)
	c := &capture{e: e, node: node, pcap: pcap, err: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = c.err
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	c.sig, c.kill = cmd.Process.Signal, cmd.Process.Kill
	go func() {
		_ = cmd.Wait() // stopped by a signal: the status says nothing
		close(c.done)
	}()
	e.t.Cleanup(func() { c.stop() })
	if err := e.poll(10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(c.err.String(), "listening on") {
			return fmt.Errorf("tcpdump in %s did not start: %q", node, c.err.String())
		}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// stop ends the capture (bounded) and returns tcpdump's closing words.
func (c *capture) stop() string {
	c.once.Do(func() {
		_ = c.sig(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = c.kill()
			<-c.done // WaitDelay bounds it
		}
	})
	return strings.TrimSpace(c.err.String())
}
