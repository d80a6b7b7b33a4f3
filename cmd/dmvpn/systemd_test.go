package main

// sd_notify and the systemd unit, packaging/systemd/dmvpn@.service.

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/internal/testenv"
)

// notifySocket listens where sd_notify will send, as systemd does, and
// points NOTIFY_SOCKET at it for the test.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify datagram: %v", err)
	}
	return string(buf[:n])
}

func TestSdNotify(t *testing.T) {
	c := notifySocket(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	cfg, err := config.Load("../../packaging/etc/hub.yaml.example")
	if err != nil {
		t.Fatal(err)
	}
	sdNotify(log, "READY=1\nSTATUS="+readyStatus(cfg))
	if got, want := readNotify(t, c), "READY=1\nSTATUS=hub hub1 up: 10.0.0.1/24 on dmvpn0, source 192.0.2.1, transport gre"; got != want {
		t.Errorf("datagram %q, want %q", got, want)
	}
	sdNotify(log, "STOPPING=1")
	if got := readNotify(t, c); got != "STOPPING=1" {
		t.Errorf("datagram %q, want STOPPING=1", got)
	}
	if logs.Len() != 0 {
		t.Errorf("logged: %s", logs.String())
	}

	// Not under systemd: nothing is sent and nothing is logged.
	t.Setenv("NOTIFY_SOCKET", "")
	sdNotify(log, "READY=1")
	if logs.Len() != 0 {
		t.Errorf("logged without NOTIFY_SOCKET: %s", logs.String())
	}

	// A socket that is gone: a warning, not a failure.
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	sdNotify(log, "READY=1")
	if !strings.Contains(logs.String(), "sd_notify failed") {
		t.Errorf("no warning for an unreachable NOTIFY_SOCKET; logged %q", logs.String())
	}
}

const unitFile = "../../packaging/systemd/dmvpn@.service"

// parseUnit reads a unit file into section → key → values (a key may
// repeat), joining continuation lines.
func parseUnit(t *testing.T, r io.Reader) map[string]map[string][]string {
	t.Helper()
	unit := map[string]map[string][]string{}
	var section, pending string
	s := bufio.NewScanner(r)
	for n := 1; s.Scan(); n++ {
		line := pending + s.Text()
		pending = ""
		if strings.HasSuffix(line, `\`) {
			pending = strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			unit[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not KEY=VALUE in a section: %q", unitFile, n, line)
			}
			k = strings.TrimSpace(k)
			unit[section][k] = append(unit[section][k], strings.TrimSpace(v))
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return unit
}

// TestSystemdUnit checks the unit's directives: readiness, the command
// lines (against the real command tree), and the hardening.
func TestSystemdUnit(t *testing.T) {
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := parseUnit(t, f)
	want := map[string]map[string]string{
		"Unit": {
			"After": "network-online.target",
			"Wants": "network-online.target",
		},
		"Service": {
			"Type":                     "notify",
			"NotifyAccess":             "main",
			"ExecStartPre":             "/usr/bin/dmvpn config check /etc/dmvpn/%i.yaml",
			"ExecStart":                "/usr/bin/dmvpn run -c /etc/dmvpn/%i.yaml",
			"Restart":                  "on-failure",
			"RuntimeDirectory":         "dmvpn",
			"RuntimeDirectoryPreserve": "yes",
			"CapabilityBoundingSet":    "CAP_NET_ADMIN CAP_NET_RAW",
			"AmbientCapabilities":      "CAP_NET_ADMIN CAP_NET_RAW",
			"NoNewPrivileges":          "yes",
			"ProtectSystem":            "strict",
			"ProtectHome":              "yes",
			"PrivateTmp":               "yes",
			"DevicePolicy":             "closed",
			"DeviceAllow":              "/dev/net/tun rw",
			"ProtectKernelTunables":    "yes",
			"ProtectKernelModules":     "yes",
			"ProtectControlGroups":     "yes",
			"RestrictAddressFamilies":  "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
			"RestrictNamespaces":       "yes",
			"RestrictSUIDSGID":         "yes",
			"LockPersonality":          "yes",
			"MemoryDenyWriteExecute":   "yes",
			"SystemCallArchitectures":  "native",
		},
		"Install": {
			"WantedBy": "multi-user.target",
		},
	}
	for section, keys := range want {
		for k, v := range keys {
			got := unit[section][k]
			if len(got) != 1 || got[0] != v {
				t.Errorf("[%s] %s = %q, want exactly %q", section, k, got, v)
			}
		}
	}
	if got := unit["Service"]["SystemCallFilter"]; len(got) == 0 || got[0] != "@system-service" {
		t.Errorf("[Service] SystemCallFilter = %q, want @system-service first", got)
	}
	// Nothing may widen the sandbox again.
	for _, k := range []string{"User", "DynamicUser", "ReadWritePaths", "PrivateDevices", "PrivateNetwork", "PrivateUsers", "ExecReload"} {
		if v, ok := unit["Service"][k]; ok {
			t.Errorf("[Service] %s = %q: not expected (see the unit's comments)", k, v)
		}
	}
	// The command lines are ones this binary accepts, and the API socket
	// default lies in the RuntimeDirectory that ProtectSystem=strict leaves
	// writable.
	for _, k := range []string{"ExecStartPre", "ExecStart"} {
		args := strings.Fields(strings.ReplaceAll(unit["Service"][k][0], "%i", "spoke1"))
		if args[0] != "/usr/bin/dmvpn" {
			t.Errorf("%s runs %s", k, args[0])
		}
		if err := validateArgs(args[1:]); err != nil {
			t.Errorf("%s: %q: %v", k, args, err)
		}
	}
	if dir := "/run/" + unit["Service"]["RuntimeDirectory"][0]; config.DefaultSocketDir != dir {
		t.Errorf("config.DefaultSocketDir %s is not the RuntimeDirectory %s", config.DefaultSocketDir, dir)
	}
}

// TestSystemdAnalyzeVerify runs systemd's own checker on the unit, for an
// instance, in a scratch root that has the system's units and a stand-in
// /usr/bin/dmvpn (verify checks that ExecStart's binary exists). It needs
// no running systemd.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze := testenv.RequireTool(t, "systemd-analyze")
	root := t.TempDir()
	units := "/usr/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(units, "sysinit.target")); err != nil {
		testenv.Unavailable(t, "no systemd units in "+units+": "+err.Error())
	}
	for _, d := range []string{"usr/lib/systemd", "usr/bin", "etc/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := exec.Command("cp", "-a", units, filepath.Join(root, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, b)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/dmvpn"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/systemd/system/dmvpn@.service"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, analyze, "verify", "--root="+root, "dmvpn@spoke1.service")
	out, err := cmd.CombinedOutput()
	// verify prints nothing for a clean unit; any line is a complaint.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify dmvpn@spoke1.service: %v:\n%s", err, out)
	}
}
