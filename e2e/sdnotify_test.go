package e2e

// The daemon under a service manager (packaging/systemd/dmvpn@.service,
// Type=notify): READY=1 once the node is up, STOPPING=1 on SIGTERM, through
// $NOTIFY_SOCKET, which the test plays the part of systemd for.

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProcessSdNotify: READY=1 comes when the node is up, so that what
// systemd starts after it (or an admin right after "systemctl start")
// finds the device and the API; STOPPING=1 comes on SIGTERM, before the
// clean exit.
func TestProcessSdNotify(t *testing.T) {
	requireDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), procBudget)
	defer cancel()
	ns := procNetns(t, 'y', true)
	dir := procDir(t, 'y')
	cfg := procConfig(t, dir, filepath.Join(dir, "hub1.sock"))

	// The notify socket is a file, so the daemon reaches it from its
	// namespace; the daemon inherits NOTIFY_SOCKET from the test.
	sockPath := filepath.Join(dir, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	t.Setenv("NOTIFY_SOCKET", sockPath)

	d := startDaemon(t, ns, cfg)
	next := func(what string) string {
		t.Helper()
		if err := sock.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := sock.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s from PID %d: %v; output:\n%s", what, d.cmd.Process.Pid, err, d.out)
		}
		return string(buf[:n])
	}

	ready := next("READY=1")
	t.Logf("notify: %q", ready)
	if !strings.HasPrefix(ready, "READY=1\n") || !strings.Contains(ready, "STATUS=hub hub1 up: 10.0.0.1/24 on dmvpnp0") {
		t.Errorf("first notification %q, want READY=1 and the hub's STATUS", ready)
	}
	// Ready means ready: no polling from here.
	if !deviceExists(ctx, ns, "dmvpnp0") {
		t.Error("READY=1 before the device dmvpnp0 exists")
	}
	if view, err := show(ctx, cfg); err != nil || !strings.Contains(view, "Type:Hub") {
		t.Errorf("show dmvpn right after READY=1: %v\n%s", err, view)
	}

	if err := syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopping := next("STOPPING=1")
	t.Logf("notify: %q", stopping)
	if !strings.HasPrefix(stopping, "STOPPING=1\n") {
		t.Errorf("notification after SIGTERM %q, want STOPPING=1", stopping)
	}
	if code := d.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; output:\n%s", code, d.out)
	}
	noPanic(t, "dmvpn run", d.out.String())
	if strings.Contains(d.out.String(), "sd_notify failed") {
		t.Errorf("sd_notify failures logged:\n%s", d.out)
	}
	// Exactly one of each: nothing more arrives.
	if err := sock.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if n, err := sock.Read(make([]byte, 4096)); err == nil {
		t.Errorf("an extra notification after exit (%d bytes)", n)
	}
}
