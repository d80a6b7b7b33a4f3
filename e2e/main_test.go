package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
)

// helperEnv, when set, makes the test binary a helper program instead of a
// test run (see TestHelperProcess); its value is the helper's role.
const helperEnv = "DMVPN_E2E_HELPER"

// buildTimeout bounds the one `go build` of the daemon.
const buildTimeout = 5 * time.Minute

var (
	dmvpnBin string // the daemon binary TestMain built
	buildErr error  // why it could not be built
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		// Re-executed inside a namespace as a helper: no build, just
		// TestHelperProcess (selected by -test.run).
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "dmvpn-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Without root every test skips (or, under DMVPN_E2E=1, fails) before
	// it needs the binary; do not spend a build on that.
	if os.Geteuid() == 0 {
		dmvpnBin, buildErr = buildDaemon(dir)
	} else {
		buildErr = fmt.Errorf("not built: not root")
	}
	return m.Run()
}

// buildDaemon builds github.com/dmvpn/dmvpn/cmd/dmvpn into dir, bounded.
func buildDaemon(dir string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			gobin = filepath.Join(root, "bin", "go")
		} else {
			return "", fmt.Errorf("go is not on PATH: %w", err)
		}
	}
	out := filepath.Join(dir, "dmvpn")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", out, "github.com/dmvpn/dmvpn/cmd/dmvpn")
	cmd.WaitDelay = 5 * time.Second
	t0 := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build github.com/dmvpn/dmvpn/cmd/dmvpn: %w (%v): %s", err, ctx.Err(), strings.TrimSpace(string(b)))
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s in %v\n", out, time.Since(t0).Round(time.Millisecond))
	return out, nil
}

// requireDaemon returns the daemon binary or fails t.
func requireDaemon(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	if buildErr != nil {
		t.Fatalf("the dmvpn binary: %v", buildErr)
	}
	return dmvpnBin
}
