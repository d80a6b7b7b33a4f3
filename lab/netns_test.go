package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// testNamespace creates a bare namespace (lo up) for t and deletes it when
// t ends.
func testNamespace(t *testing.T, tag byte) string {
	t.Helper()
	requireLab(t)
	ns := testPrefix(tag) + "-ns"
	_ = DeleteNamespace(ns) // left by a killed run
	if err := NewNamespace(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := DeleteNamespace(ns); err != nil {
			t.Error(err)
		}
		if nsExists(ns) {
			t.Errorf("%s still exists", ns)
		}
	})
	if err := InNamespace(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// NewNamespace makes what `ip netns` makes, InNamespace works inside it and
// leaves the caller where it was, and a second NewNamespace of the name
// fails.
func TestNamespaceLifecycle(t *testing.T) {
	ns := testNamespace(t, 'n')
	if got, err := ListNamespaces(); err != nil || !slices.Contains(got, ns) {
		t.Errorf("ListNamespaces = %v, %v; lacks %s", got, err, ns)
	}
	if err := NewNamespace(ns); err == nil {
		t.Error("second NewNamespace: no error")
	}
	var self, inside syscall.Stat_t
	if err := syscall.Stat("/proc/thread-self/ns/net", &self); err != nil {
		t.Fatal(err)
	}
	var want syscall.Stat_t
	if err := syscall.Stat(netnsDir+"/"+ns, &want); err != nil {
		t.Fatal(err)
	}
	var links []string
	if err := InNamespace(ns, func() error {
		if err := syscall.Stat("/proc/thread-self/ns/net", &inside); err != nil {
			return err
		}
		ls, err := netlink.LinkList()
		for _, l := range ls {
			links = append(links, l.Attrs().Name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside.Ino != want.Ino || inside.Ino == self.Ino {
		t.Errorf("InNamespace ran in netns %d, want %d (caller's: %d)", inside.Ino, want.Ino, self.Ino)
	}
	if fmt.Sprint(links) != "[lo]" {
		t.Errorf("links in a new namespace = %v, want [lo]", links)
	}
	// Many goroutines: none of them ends up in the namespace.
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			_ = InNamespace(ns, func() error { return nil })
			var st syscall.Stat_t
			if syscall.Stat("/proc/thread-self/ns/net", &st) == nil && st.Ino == want.Ino {
				t.Error("a goroutine came back inside the namespace")
			}
		})
	}
	wg.Wait()
	if ip, err := exec.LookPath("ip"); err == nil {
		// Interoperable with iproute2, when it is there.
		if out, err := exec.Command(ip, "netns", "exec", ns, "ip", "-o", "link", "show", "lo").CombinedOutput(); err != nil || !strings.Contains(string(out), "lo:") {
			t.Errorf("ip netns exec %s: %v %s", ns, err, out)
		}
	}
	if err := InNamespace("nonexistent-ns-x", func() error { return nil }); err == nil {
		t.Error("InNamespace of a missing namespace: no error")
	}
	if err := InNamespace("../x", func() error { return nil }); err == nil {
		t.Error("InNamespace(../x): no error")
	}
}

// NamespaceCommand: the program runs in the namespace with its own PID (the
// re-exec execs it in place), sees the namespace's devices in /sys, gets
// the caller's Env, needs nothing on PATH, and ctx kills it.
func TestNamespaceCommand(t *testing.T) {
	ns := testNamespace(t, 'c')
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir()) // no tool at all
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var want syscall.Stat_t
	if err := syscall.Stat(netnsDir+"/"+ns, &want); err != nil {
		t.Fatal(err)
	}
	cmd := NamespaceCommand(ctx, ns, self, "whoami")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	t0 := time.Now()
	out, err := cmd.Output()
	t.Logf("whoami in %s took %v: %s", ns, time.Since(t0).Round(time.Microsecond), out)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), fmt.Sprintf("pid=%d netns=%d sys=lo", cmd.Process.Pid, want.Ino); got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	// Exit status and output come through.
	cmd = NamespaceCommand(ctx, ns, self, "no-such-mode")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "unknown mode") {
		t.Errorf("unknown mode: %v %q", err, out)
	}
	// A program that is not there fails at Start, as with exec.Command.
	if err := NamespaceCommand(ctx, ns, "no-such-program-x").Run(); err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("missing program: %v", err)
	}
	if err := NamespaceCommand(ctx, ns).Run(); err == nil {
		t.Error("empty command: no error")
	}
	// A namespace that is not there: the re-exec says so.
	cmd = NamespaceCommand(ctx, "nonexistent-ns-x", self, "whoami")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "nonexistent-ns-x") {
		t.Errorf("missing namespace: %v %q", err, out)
	}

	// ctx ends the program.
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	cmd = NamespaceCommand(sctx, ns, self, "sleep", "30")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	t0 = time.Now()
	if err := cmd.Run(); err == nil || time.Since(t0) > 5*time.Second {
		t.Errorf("sleep under a 300ms context: %v after %v", err, time.Since(t0))
	}
}

// PingNamespace: replies counted per ping even when several run at once in
// one namespace, no reply is a result, not an error.
func TestPingNamespace(t *testing.T) {
	ns := testNamespace(t, 'p')
	t.Setenv("PATH", t.TempDir()) // no ping(8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			r, err := PingNamespace(ctx, ns, "127.0.0.1", PingOptions{Count: 5, Interval: 20 * time.Millisecond})
			if err != nil || r.Sent != 5 || r.Received != 5 || r.AvgRTT <= 0 || r.AvgRTT > time.Second {
				t.Errorf("ping 127.0.0.1: %+v %v", r, err)
			}
			if !strings.Contains(r.Output, "5 packets transmitted, 5 received, 0% packet loss") {
				t.Errorf("transcript:\n%s", r.Output)
			}
		})
	}
	wg.Wait()
	// No route: every request fails to send.
	r, err := PingNamespace(ctx, ns, "192.0.2.99", PingOptions{Count: 2, Interval: 10 * time.Millisecond, Timeout: 100 * time.Millisecond})
	if err == nil || r.Received != 0 {
		t.Errorf("ping without a route: %+v %v", r, err)
	}
	if _, err := PingNamespace(ctx, ns, "not-an-address", PingOptions{}); err == nil {
		t.Error("ping not-an-address: no error")
	}
	// A context that ends first is an error.
	sctx, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer scancel()
	if r, err := PingNamespace(sctx, ns, "127.0.0.1", PingOptions{Count: 10}); err == nil {
		t.Errorf("ping outliving its context: %+v", r)
	}
}

// LossPct: the inet router drops about that share of what it forwards, in
// each direction, and nothing it delivers to itself.
func TestLoss(t *testing.T) {
	requireLab(t)
	l := upLab(t, Options{Prefix: testPrefix('l'), LossPct: 50})
	ctx := bounded(t, time.Minute)
	o := PingOptions{Count: 60, Interval: 10 * time.Millisecond, Timeout: 500 * time.Millisecond}
	// Forwarded twice (there and back): about 25% come back.
	r, err := PingNamespace(ctx, l.Namespace(Spoke1), "192.0.2.1", o)
	if err != nil || r.Received < 2 || r.Received > 40 {
		t.Errorf("spoke1 -> hub through 50%% loss: %s, %v; want about 15 of 60", r, err)
	}
	t.Logf("spoke1 -> hub through 50%% loss each way: %s", r)
	// The router's own address: not forwarded, not dropped.
	o.Count = 20
	if r, err := PingNamespace(ctx, l.Namespace(Spoke1), "198.51.100.62", o); err != nil || r.Received != 20 {
		t.Errorf("spoke1 -> its gateway: %s, %v; want 20 of 20", r, err)
	}
}
