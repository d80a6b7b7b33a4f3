package e2e

// The daemon as a process: start-up failures say why and exit non-zero
// without a panic, a second `dmvpn run` with the same configuration is
// refused while the first keeps running, SIGHUP reloads and is survived,
// SIGTERM exits 0. Each test runs the real binary in a network namespace of
// its own, created and deleted by the test.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
	"github.com/vishvananda/netlink"
)

// procBudget bounds everything one process test does.
const procBudget = time.Minute

// procNBMA is the node's NBMA address: on lo in the test's namespace when
// the test wants it local, absent when it wants it missing.
const procNBMA = "192.0.2.1"

// procNetns is a network namespace for one test: lo up and, if local,
// procNBMA on lo. It is deleted when t ends. (The lab's netlink helpers,
// no iproute2.)
func procNetns(t *testing.T, tag byte, local bool) string {
	t.Helper()
	testenv.RequireRoot(t)
	ns := prefix(tag) + "-proc"
	_ = lab.DeleteNamespace(ns) // left by an earlier, killed run
	if err := lab.NewNamespace(ns); err != nil {
		testenv.Unavailable(t, "cannot create a network namespace: "+err.Error())
	}
	t.Cleanup(func() {
		if err := lab.DeleteNamespace(ns); err != nil {
			t.Errorf("delete namespace: %v", err)
		}
	})
	err := lab.InNamespace(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("lo up: %w", err)
		}
		if local {
			a, err := netlink.ParseAddr(procNBMA + "/32")
			if err != nil {
				return err
			}
			if err := netlink.AddrAdd(lo, a); err != nil {
				return fmt.Errorf("%s on lo: %w", procNBMA, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("namespace %s: %v", ns, err)
	}
	return ns
}

// procDir is a directory for the test's config and API socket, short
// enough for sun_path (see shortRunDir).
func procDir(t *testing.T, tag byte) string {
	t.Helper()
	dir := t.TempDir()
	if len(filepath.Join(dir, "hub1.sock")) > 100 {
		dir = filepath.Join(shortRunDir, prefix(tag)+"-proc")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = os.RemoveAll(dir)
			_ = os.Remove(shortRunDir) // only if empty
		})
	}
	return dir
}

// procConfig writes a hub's config with the given api-socket into dir.
func procConfig(t *testing.T, dir, socket string) string {
	t.Helper()
	cfg := fmt.Sprintf(`name: hub1
api-socket: %s
tunnel:
  device: dmvpnp0
  address: 10.0.0.1/24
  source: %s
  key: 42
nhrp:
  network-id: 1
  holdtime: 60s
`, socket, procNBMA)
	path := filepath.Join(dir, "hub1.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// daemon is a `dmvpn run` started by a test.
type daemon struct {
	cmd  *exec.Cmd
	out  *syncBuffer // stdout and stderr
	done chan struct{}
	err  error // Wait's, once done is closed
}

// startDaemon starts `dmvpn run -c cfg` in namespace ns. It is killed (by
// its PID) when t ends if it is still running.
func startDaemon(t *testing.T, ns, cfg string) *daemon {
	t.Helper()
	bin := requireDaemon(t)
	// The lab's re-exec joins ns and execs the daemon in place: the PID is
	// the daemon's.
	d := &daemon{cmd: lab.NamespaceCommand(context.Background(), ns, bin, "run", "-c", cfg), out: new(syncBuffer), done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.WaitDelay = 5 * time.Second
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
			return
		default:
		}
		_ = d.cmd.Process.Kill()
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			t.Errorf("daemon PID %d: not reaped 10s after SIGKILL", d.cmd.Process.Pid)
		}
		t.Logf("daemon PID %d killed; its output:\n%s", d.cmd.Process.Pid, d.out)
	})
	return d
}

// wait waits up to limit for the daemon to exit and returns its exit code.
func (d *daemon) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(limit):
		t.Fatalf("dmvpn run still running %v after it should have exited; output:\n%s", limit, d.out)
	}
	var ee *exec.ExitError
	switch {
	case d.err == nil:
		return 0
	case errors.As(d.err, &ee) && ee.Exited():
		return ee.ExitCode()
	}
	t.Fatalf("dmvpn run: %v (not a normal exit); output:\n%s", d.err, d.out)
	return -1
}

func (d *daemon) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// show runs `dmvpn show dmvpn -c cfg` (bounded); the API socket is a file,
// so it answers from any namespace.
func show(ctx context.Context, cfg string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, dmvpnBin, "show", "dmvpn", "-c", cfg)
	cmd.WaitDelay = time.Second
	b, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dmvpn show dmvpn: %v: %s", err, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// pollUntil calls f until it returns nil, at most until limit passes or
// ctx ends; it returns f's last error.
func pollUntil(ctx context.Context, limit time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %v: %w", limit, err)
		case <-tick.C:
		}
	}
}

// waitAPI waits until d's API answers, failing t if d exits first.
func waitAPI(t *testing.T, ctx context.Context, d *daemon, cfg string) string {
	t.Helper()
	var view string
	err := pollUntil(ctx, 20*time.Second, func() error {
		if !d.running() {
			return errors.New("the daemon exited")
		}
		var err error
		view, err = show(ctx, cfg)
		return err
	})
	if err != nil {
		t.Fatalf("API of PID %d: %v; output:\n%s", d.cmd.Process.Pid, err, d.out)
	}
	return view
}

// noPanic fails t if out looks like a Go panic or a goroutine dump.
func noPanic(t *testing.T, what, out string) {
	t.Helper()
	for _, bad := range []string{"panic", "goroutine ", "runtime error", "SIGSEGV"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s: output contains %q:\n%s", what, bad, out)
		}
	}
}

// deviceExists reports whether link name exists in ns.
func deviceExists(ctx context.Context, ns, name string) bool {
	found := false
	_ = lab.InNamespace(ns, func() error {
		_, err := netlink.LinkByName(name)
		found = err == nil
		return nil
	})
	return found && ctx.Err() == nil
}

// TestProcessStartupFailure: start-up failures exit non-zero, promptly,
// with the cause and without a panic.
func TestProcessStartupFailure(t *testing.T) {
	requireDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), procBudget)
	defer cancel()
	ns := procNetns(t, 'f', false) // tunnel.source is not on this host
	dir := procDir(t, 'f')

	t.Run("source not on the host", func(t *testing.T) {
		cfg := procConfig(t, dir, filepath.Join(dir, "hub1.sock"))
		d := startDaemon(t, ns, cfg)
		if code := d.wait(t, 20*time.Second); code == 0 {
			t.Fatalf("dmvpn run exited 0; output:\n%s", d.out)
		}
		out := d.out.String()
		t.Logf("output: %s", strings.TrimSpace(out))
		noPanic(t, "dmvpn run", out)
		for _, want := range []string{"dmvpn: ", procNBMA, "cannot assign requested address"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if deviceExists(ctx, ns, "dmvpnp0") {
			t.Error("device dmvpnp0 left behind after a failed start")
		}
		for _, f := range []string{"hub1.sock", "hub1.sock.lock"} {
			if _, err := os.Lstat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s after a failed start: %v, want it removed", f, err)
			}
		}
	})

	t.Run("API socket cannot listen", func(t *testing.T) {
		// A non-empty directory where the socket should be: the lock
		// next to it works, the listen cannot.
		sock := filepath.Join(dir, "busy.sock")
		if err := os.MkdirAll(filepath.Join(sock, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := procConfig(t, dir, sock)
		d := startDaemon(t, ns, cfg)
		if code := d.wait(t, 20*time.Second); code == 0 {
			t.Fatalf("dmvpn run exited 0; output:\n%s", d.out)
		}
		out := d.out.String()
		t.Logf("output: %s", strings.TrimSpace(out))
		noPanic(t, "dmvpn run", out)
		if want := "dmvpn: api: listen " + sock + ": "; !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
		if strings.Contains(out, "dmvpn node up") {
			t.Errorf("the node came up without its API:\n%s", out)
		}
	})
}

// TestProcessLockAndSignals: a second instance is refused with the lock
// message while the first keeps running; SIGHUP reloads and is survived;
// SIGTERM exits 0 and cleans up.
func TestProcessLockAndSignals(t *testing.T) {
	requireDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), procBudget)
	defer cancel()
	ns := procNetns(t, 'p', true)
	dir := procDir(t, 'p')
	sock := filepath.Join(dir, "hub1.sock")
	cfg := procConfig(t, dir, sock)

	first := startDaemon(t, ns, cfg)
	pid := first.cmd.Process.Pid
	view := waitAPI(t, ctx, first, cfg)
	if !strings.Contains(view, "Type:Hub") {
		t.Errorf("show dmvpn of the first daemon:\n%s", view)
	}

	// (b) The second instance: refused, naming the lock file and PID.
	second := startDaemon(t, ns, cfg)
	if code := second.wait(t, 20*time.Second); code == 0 {
		t.Fatalf("second dmvpn run exited 0; output:\n%s", second.out)
	}
	out := second.out.String()
	t.Logf("second instance: %s", strings.TrimSpace(out))
	noPanic(t, "second dmvpn run", out)
	for _, want := range []string{
		"dmvpn: another dmvpn is already running with this configuration",
		sock + ".lock is locked by PID " + strconv.Itoa(pid),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("second instance's output lacks %q:\n%s", want, out)
		}
	}
	if !first.running() {
		t.Fatalf("the first daemon exited when the second started; output:\n%s", first.out)
	}
	if _, err := show(ctx, cfg); err != nil {
		t.Fatalf("the first daemon's API after the second was refused: %v", err)
	}

	// (c) SIGHUP: the configuration is re-read (unchanged here), the
	// daemon keeps running.
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	const reload = "reload: nothing changed"
	if err := pollUntil(ctx, 10*time.Second, func() error {
		if !first.running() {
			return errors.New("the daemon exited")
		}
		if !strings.Contains(first.out.String(), reload) {
			return fmt.Errorf("no %q in its log", reload)
		}
		return nil
	}); err != nil {
		t.Fatalf("after SIGHUP: %v; output:\n%s", err, first.out)
	}
	if _, err := show(ctx, cfg); err != nil {
		t.Fatalf("API after SIGHUP: %v; output:\n%s", err, first.out)
	}
	if !first.running() {
		t.Fatalf("the daemon exited after SIGHUP; output:\n%s", first.out)
	}

	// SIGTERM: a clean exit 0 that removes the device and the socket.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := first.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; output:\n%s", code, first.out)
	}
	noPanic(t, "dmvpn run", first.out.String())
	if !strings.Contains(first.out.String(), "dmvpn node down") {
		t.Errorf("no clean shutdown in the log:\n%s", first.out)
	}
	if deviceExists(ctx, ns, "dmvpnp0") {
		t.Error("device dmvpnp0 left after SIGTERM")
	}
	for _, f := range []string{sock, sock + ".lock"} {
		if _, err := os.Lstat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after SIGTERM: %v, want it removed", f, err)
		}
	}

	// The lock went with the process: the next start takes it.
	again := startDaemon(t, ns, cfg)
	waitAPI(t, ctx, again, cfg)
	if err := syscall.Kill(again.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := again.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("restarted daemon: exit code %d after SIGTERM; output:\n%s", code, again.out)
	}
}
