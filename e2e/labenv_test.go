package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
)

// testBudget bounds everything one test does with its lab.
const testBudget = 2 * time.Minute

// shortRunDir holds the lab's files when t.TempDir() is too long for the
// API sockets' sun_path (107 bytes).
const shortRunDir = "/run/dmvpn-e2e"

// spokes are the spokes' overlay addresses, by node.
var spokes = map[string]string{lab.Spoke1: "10.0.0.11", lab.Spoke2: "10.0.0.12", lab.Spoke3: "10.0.0.13"}

// env is one test's lab.
type env struct {
	t   *testing.T
	l   *lab.Lab
	ctx context.Context
}

// prefix is "e<tag><3 base-36 digits of the PID>": unique per test (tag)
// and per test process, and short enough that "<prefix>-host-lan0" fits
// the 15 characters the lab's own tests keep namespace names to.
func prefix(tag byte) string {
	s := strconv.FormatInt(int64(os.Getpid()%(36*36*36)), 36)
	return "e" + string(tag) + strings.Repeat("0", 3-len(s)) + s
}

type tlog struct{ t *testing.T }

func (w tlog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// newLab builds a lab for t (prefix tag, options o with Prefix, Dir, Binary
// and Log filled in) and writes the daemons' configs; it starts no daemon.
// The lab is torn down when t ends, however it ends; if t failed, each
// daemon's log tail and `show dmvpn` are logged first.
func newLab(t *testing.T, tag byte, o lab.Options) *env {
	t.Helper()
	o.Binary = requireDaemon(t)
	if err := lab.Preflight(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	o.Prefix = prefix(tag)
	o.Dir = t.TempDir()
	if len(filepath.Join(o.Dir, "spoke1.sock")) > 100 {
		o.Dir = filepath.Join(shortRunDir, o.Prefix)
		t.Cleanup(func() {
			_ = os.RemoveAll(o.Dir)
			_ = os.Remove(shortRunDir) // only if empty
		})
	}
	o.Log = tlog{t}

	ctx, cancel := context.WithTimeout(context.Background(), testBudget)
	t.Cleanup(cancel)
	var l *lab.Lab
	t.Cleanup(func() {
		if l == nil {
			dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
			defer dcancel()
			if err := lab.Teardown(dctx, o); err != nil {
				t.Errorf("teardown: %v", err)
			}
			return
		}
		// Down reports daemons that needed SIGKILL or exited non-zero
		// on SIGTERM: a daemon that does not shut down cleanly is a
		// failure too.
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
		for _, ns := range l.Namespaces() {
			if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
				t.Errorf("namespace %s left after Down", ns)
			}
		}
	})
	var err error
	l, err = lab.Up(ctx, o)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	e := &env{t: t, l: l, ctx: ctx}
	t.Cleanup(e.dumpOnFailure) // runs before the teardown above
	if err := l.WriteConfigs(); err != nil {
		t.Fatal(err)
	}
	return e
}

// dumpOnFailure logs every daemon's log tail and view when t failed.
func (e *env) dumpOnFailure() {
	if !e.t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, d := range lab.Daemons {
		view := "(not running)"
		if e.l.Running(d.Name) {
			b, err := e.l.Show(ctx, d.Name, "dmvpn", false)
			view = string(b)
			if err != nil {
				view = err.Error()
			}
		}
		e.t.Logf("--- %s: last lines of %s\n%s\n--- %s: show dmvpn\n%s", d.Name, e.l.LogPath(d.Name), e.l.Tail(d.Name, 40), d.Name, view)
	}
}

// startAll starts the hub and the spokes.
func (e *env) startAll() {
	e.t.Helper()
	if err := e.l.StartAll(); err != nil {
		e.t.Fatalf("start: %v", err)
	}
}

// requireRunning fails t if any of nodes' daemons exited.
func (e *env) requireRunning(nodes ...string) {
	e.t.Helper()
	for _, n := range nodes {
		if exited, err := e.l.Exited(n); exited {
			e.t.Fatalf("daemon %s exited (%v)", n, err)
		} else if !e.l.Running(n) {
			e.t.Fatalf("daemon %s is not running", n)
		}
	}
}

// show returns node's `show dmvpn --json`.
func (e *env) show(node string) (api.DMVPN, error) {
	var d api.DMVPN
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	err := e.l.ShowJSON(ctx, node, "dmvpn", &d)
	return d, err
}

// stats returns node's `show stats`.
func (e *env) stats(node string) api.Stats {
	e.t.Helper()
	var s api.Stats
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := e.l.ShowJSON(ctx, node, "stats", &s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

func peer(d api.DMVPN, tunnel string) (api.Peer, bool) {
	for _, p := range d.Peers {
		if p.PeerTunnel == tunnel {
			return p, true
		}
	}
	return api.Peer{}, false
}

func tunnels(d api.DMVPN) []string {
	var v []string
	for _, p := range d.Peers {
		v = append(v, p.PeerTunnel+"="+p.State)
	}
	return v
}

// poll calls f every interval until it returns nil or limit passes (or the
// test's budget runs out); it returns f's last error.
func (e *env) poll(limit, interval time.Duration, f func() error) error {
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

// hubPeersUp checks that the hub lists exactly the spokes nodes, all UP.
func (e *env) hubPeersUp(nodes ...string) (api.DMVPN, error) {
	d, err := e.show(lab.Hub)
	if err != nil {
		return d, err
	}
	if len(d.Peers) != len(nodes) {
		return d, fmt.Errorf("hub lists %v, want %d peers (%v)", tunnels(d), len(nodes), nodes)
	}
	for _, n := range nodes {
		p, ok := peer(d, spokes[n])
		if !ok {
			return d, fmt.Errorf("hub does not list %s (%s): %v", n, spokes[n], tunnels(d))
		}
		if p.State != "UP" {
			return d, fmt.Errorf("hub lists %s in state %s (%s)", n, p.State, p.Reason)
		}
	}
	return d, nil
}

// waitHubPeersUp waits (bounded) until the hub lists exactly nodes, all UP.
func (e *env) waitHubPeersUp(limit time.Duration, nodes ...string) api.DMVPN {
	e.t.Helper()
	var d api.DMVPN
	t0 := time.Now()
	err := e.poll(limit, 100*time.Millisecond, func() error {
		var err error
		d, err = e.hubPeersUp(nodes...)
		return err
	})
	if err != nil {
		e.t.Fatalf("after %v: %v", limit, err)
	}
	e.t.Logf("hub lists %v after %v", tunnels(d), time.Since(t0).Round(time.Millisecond))
	return d
}

// waitPing waits (bounded) until one echo from host from to dst answers.
func (e *env) waitPing(from, dst string, limit time.Duration) error {
	return e.poll(limit, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(e.ctx, 3*time.Second)
		defer cancel()
		return e.l.Ping(ctx, from, dst, 1)
	})
}

// pingCheck is one ping check between LAN hosts.
type pingCheck struct{ from, to string }

func (c pingCheck) String() string { return c.from + " -> " + c.to }

func (c pingCheck) dst() string {
	a, _ := lab.HostAddr(c.to)
	return a.String()
}

// pingAll first waits (bounded) until every check answers once, then sends
// count echoes per check and requires every one of them to come back.
func (e *env) pingAll(count int, limit time.Duration, checks ...pingCheck) {
	e.t.Helper()
	errs := make([]error, len(checks))
	res := make([]lab.PingResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.waitPing(c.from, c.dst(), limit); err != nil {
				errs[i] = fmt.Errorf("%s: not reachable within %v: %w", c, limit, err)
				return
			}
			r, err := e.l.PingStats(e.ctx, c.from, c.dst(), count)
			res[i] = r
			if err == nil && r.Received != r.Sent {
				err = fmt.Errorf("lost echoes")
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: %s: %w", c, r, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		e.t.Fatal(err)
	}
	for i, c := range checks {
		e.t.Logf("ping %s (%s): %s", c, c.dst(), res[i])
	}
}

// unreachable checks, in parallel, that one echo per check gets no answer.
func (e *env) unreachable(checks ...pingCheck) {
	e.t.Helper()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if e.l.Ping(e.ctx, c.from, c.dst(), 2) == nil {
				errs[i] = fmt.Errorf("%s answered; it must not be reachable", c)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		e.t.Error(err)
	}
}

// tcpEcho runs the bounded TCP echo of size bytes between LAN hosts.
func (e *env) tcpEcho(from, to string, size int) {
	e.t.Helper()
	msg, err := tcpEcho(e.ctx, e.l, from, to, size, 20*time.Second)
	if err != nil {
		e.t.Fatalf("TCP echo: %v", err)
	}
	e.t.Logf("TCP echo %s", msg)
}

// logHas waits (bounded) until node's log contains every one of want in a
// single line, and returns that line.
func (e *env) logHas(node string, limit time.Duration, want ...string) (string, error) {
	var line string
	err := e.poll(limit, 100*time.Millisecond, func() error {
		b, err := os.ReadFile(e.l.LogPath(node))
		if err != nil {
			return err
		}
	lines:
		for _, l := range strings.Split(string(b), "\n") {
			for _, w := range want {
				if !strings.Contains(l, w) {
					continue lines
				}
			}
			line = l
			return nil
		}
		return fmt.Errorf("%s's log has no line with all of %q", node, want)
	})
	return line, err
}

// tunGone waits (bounded) until node's TUN device no longer exists.
func (e *env) tunGone(node string, limit time.Duration) error {
	return e.poll(limit, 50*time.Millisecond, func() error {
		ok, err := e.l.HasLink(node, lab.IfTunnel)
		if err != nil || !ok {
			return err
		}
		return fmt.Errorf("%s still has %s", node, lab.IfTunnel)
	})
}

// timeout returns a context bounded by d and by the test's budget.
func (e *env) timeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(e.ctx, d)
}

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
