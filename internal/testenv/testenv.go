// Package testenv decides whether a test that needs something from the
// machine (a tool such as tshark, root, network namespaces) runs, skips with a
// reason, or fails. With DMVPN_E2E=1 (set by .ci/run) a missing requirement is
// a failure, never a skip, so CI cannot pass by skipping the end-to-end tests.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing requirements must fail the test (CI).
func Strict() bool { return os.Getenv("DMVPN_E2E") == "1" }

// Unavailable skips t with reason, or fails it when Strict.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("DMVPN_E2E=1 but this test cannot run: %s", reason)
	}
	t.Skipf("skipped: %s (set DMVPN_E2E=1 to make this a failure)", reason)
}

// RequireTool returns the path of the named executable, or skips/fails t.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, name+" is not installed (apt-get install "+debianPackage(name)+")")
	}
	return p
}

// RequireRoot skips/fails t unless it runs as root (needed for network
// namespaces, TUN devices and raw sockets).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root for network namespaces, TUN and raw sockets (run: sudo go test ./...)")
	}
}

func debianPackage(tool string) string {
	switch tool {
	case "ip":
		return "iproute2"
	case "ping":
		return "iputils-ping"
	case "nft":
		return "nftables"
	case "systemd-analyze":
		return "systemd"
	case "bird", "birdc":
		return "bird2"
	case "vtysh":
		return "frr"
	case "swanctl":
		return "strongswan-swanctl"
	}
	return tool
}
