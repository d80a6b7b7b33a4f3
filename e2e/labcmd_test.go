package e2e

// The README's first command, as a new user on a fresh machine runs it:
// `dmvpn lab` with nothing on PATH (so no ip, nft, iptables or ping). The
// lab builds its namespaces, links, routes and NAT through netlink and
// nftables' netlink API, pings with its own ICMP echoes and starts the
// daemons by re-executing itself; .ci/run runs the same through `go run`.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
)

func TestLabCommandWithoutTools(t *testing.T) {
	bin := requireDaemon(t)
	if err := lab.Preflight(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	pfx := prefix('w')
	dir := t.TempDir()
	if len(filepath.Join(dir, "spoke1.sock")) > 100 {
		dir = filepath.Join(shortRunDir, pfx)
		t.Cleanup(func() {
			_ = os.RemoveAll(dir)
			_ = os.Remove(shortRunDir) // only if empty
		})
	}
	o := lab.Options{Prefix: pfx, Dir: dir}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := lab.Teardown(ctx, o); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})

	empty := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+empty)

	ctx, cancel := context.WithTimeout(context.Background(), testBudget)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "lab", "--prefix", pfx, "--dir", dir)
	cmd.Env = env
	// On timeout, SIGTERM: the lab tears itself down, as after Ctrl-C.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("PATH=%s dmvpn lab --prefix %s --dir %s (%v):\n%s", empty, pfx, dir, time.Since(t0).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("dmvpn lab without ip, nft, iptables, ping on PATH: %v", err)
	}
	report := string(out)
	// The ping checks, the IPsec check and the BGP check: IPsec is on
	// by default.
	if n := strings.Count(report, "\nPASS "); n != len(lab.Checks)+2 {
		t.Errorf("%d PASS lines, want %d", n, len(lab.Checks)+2)
	}
	if !strings.Contains(report, "=== hub: dmvpn show ipsec -c") || !strings.Contains(report, "esp-in-udp") ||
		!strings.Contains(report, "established") {
		t.Error("report lacks the hub's show ipsec with established IKE SAs and spoke3's ESP-in-UDP SA")
	}
	if !strings.Contains(report, "=== hub: dmvpn show bgp -c") || !strings.Contains(report, "Established") {
		t.Error("report lacks the hub's show bgp with Established sessions")
	}
	for _, bad := range []string{"FAIL", "missing", "executable file not found"} {
		if strings.Contains(report, bad) {
			t.Errorf("report contains %q", bad)
		}
	}
	if !strings.Contains(report, "all checks passed") || !strings.Contains(report, "torn down") {
		t.Error("report lacks \"all checks passed\" or \"torn down\"")
	}
	if up, err := lab.Exists(o); up || err != nil {
		t.Errorf("lab %s left behind after dmvpn lab (%v)", pfx, err)
	}
}
