package main

// The command tree in-process (no build, no root): config check, version,
// completion, and the documentation every command must carry.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// execute runs the dmvpn command tree with args and returns what it wrote.
func execute(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd(&out, &errOut)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The example configs the package installs, and the config package's own.
var goodConfigs = map[string]string{
	"../../packaging/etc/hub.yaml.example":   "hub hub1: tunnel 10.0.0.1/24 on dmvpn0, source 192.0.2.1, transport gre, bgp as 65000 (dynamic neighbors from 10.0.0.0/24), api-socket /run/dmvpn/hub1.sock",
	"../../packaging/etc/spoke.yaml.example": "spoke spoke1: tunnel 10.0.0.11/24 on dmvpn0, source 198.51.100.1, transport gre, nhs 10.0.0.1 at 192.0.2.1, bgp as 65000, api-socket /run/dmvpn/spoke1.sock",
	"../../config/testdata/spoke-udp6.yaml":  "transport udp port ",
}

func TestConfigCheckOK(t *testing.T) {
	for file, summary := range goodConfigs {
		t.Run(filepath.Base(file), func(t *testing.T) {
			out, errOut, err := execute(t, "config", "check", file)
			if err != nil {
				t.Fatalf("config check %s: %v; stderr:\n%s", file, err, errOut)
			}
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			if len(lines) != 2 || lines[0] != file+": ok" || !strings.Contains(lines[1], summary) {
				t.Errorf("config check %s printed:\n%s\nwant %q and a summary containing %q", file, out, file+": ok", summary)
			}
			if errOut != "" {
				t.Errorf("stderr: %q", errOut)
			}
		})
	}
}

func TestConfigCheckErrors(t *testing.T) {
	bad := writeFile(t, "spoke1.yaml", `name: spoke1
tunel:
  address: 10.0.0.11/24
tunnel:
  address: 10.0.0.11/24
  source: 198.51.100.1
  transport: tcp
nhrp:
  network-id: 1
routes:
  - prefix: 10.1.0.1/16
    via: 10.0.0.1
`)
	good := "../../packaging/etc/hub.yaml.example"
	out, errOut, err := execute(t, "config", "check", good, bad)
	if !errors.Is(err, errReported) {
		t.Fatalf("config check of an invalid file: err %v, want errReported (exit 1, already printed)", err)
	}
	// The valid file still gets its ok; the invalid one every error, in
	// file:line:column: field: message form, and a count.
	if !strings.HasPrefix(out, good+": ok\n") {
		t.Errorf("stdout:\n%s\nwant %s: ok first", out, good)
	}
	want := []string{
		bad + `:2:1: unknown field "tunel" (valid here: `,
		bad + `:7:14: tunnel.transport: "tcp" is not valid (valid: gre, udp)`,
		bad + `:11:13: routes[0].prefix: "10.1.0.1/16" has host bits set (valid: 10.1.0.0/16)`,
		bad + ": 3 errors",
	}
	lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("stderr has %d lines, want %d:\n%s", len(lines), len(want), errOut)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("stderr line %d:\n  %s\nwant it to start with\n  %s", i+1, lines[i], w)
		}
	}
	if strings.Contains(out, bad) {
		t.Errorf("stdout mentions the invalid file:\n%s", out)
	}
}

func TestConfigCheckMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, errOut, err := execute(t, "config", "check", missing)
	if !errors.Is(err, errReported) {
		t.Fatalf("err %v, want errReported", err)
	}
	if !strings.Contains(errOut, "no such file or directory") || !strings.HasSuffix(errOut, missing+": 1 error\n") {
		t.Errorf("stderr:\n%s", errOut)
	}
}

func TestConfigCheckNeedsAFile(t *testing.T) {
	if _, _, err := execute(t, "config", "check"); err == nil || errors.Is(err, errReported) {
		t.Fatalf("config check with no file: err %v, want a usage error", err)
	}
}

func TestVersion(t *testing.T) {
	out, _, err := execute(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	// A test binary has no -X stamp and no VCS settings: "devel".
	tail := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if !strings.HasPrefix(out, "dmvpn devel (") || !strings.HasSuffix(out, tail) {
		t.Errorf("version printed %q, want dmvpn devel (... %s", out, tail)
	}

	out, _, err = execute(t, "version", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var b buildInfo
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatalf("version --json: %v:\n%s", err, out)
	}
	if b.Version == "" || b.Go != runtime.Version() || b.OS != runtime.GOOS || b.Arch != runtime.GOARCH {
		t.Errorf("version --json = %+v", b)
	}
}

func TestDescribeBuild(t *testing.T) {
	vcs := []debug.BuildSetting{
		{Key: "-trimpath", Value: "true"},
		{Key: "GOARCH", Value: "arm64"},
		{Key: "GOOS", Value: "linux"},
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-11-01T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	for _, tc := range []struct {
		name    string
		stamped string
		bi      *debug.BuildInfo
		want    buildInfo
		line    string
	}{{
		name: "no build info",
		want: buildInfo{Version: "devel", Go: "go1.26.8", OS: "linux", Arch: "amd64"},
		line: "dmvpn devel (go1.26.8 linux/amd64)",
	}, {
		name: "go build in a checkout",
		bi:   &debug.BuildInfo{GoVersion: "go1.26.7", Main: debug.Module{Path: "github.com/dmvpn/dmvpn", Version: "(devel)"}, Settings: vcs},
		want: buildInfo{Version: "devel", Commit: "0123456789abcdef0123456789abcdef01234567", CommitTime: "2026-11-01T10:00:00Z",
			Modified: true, Go: "go1.26.7", OS: "linux", Arch: "arm64"},
		line: "dmvpn devel (commit 0123456789ab, modified; go1.26.7 linux/arm64)",
	}, {
		name: "go install at a version",
		bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/dmvpn/dmvpn", Version: "v0.4.0"}},
		want: buildInfo{Version: "v0.4.0", Go: "go1.26.8", OS: "linux", Arch: "amd64"},
		line: "dmvpn v0.4.0 (go1.26.8 linux/amd64)",
	}, {
		name:    "release build stamped with -X",
		stamped: "v0.4.0-3-g0123456",
		bi:      &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/dmvpn/dmvpn", Version: "v0.0.0-20261101100000-0123456789ab"}, Settings: vcs[:6]},
		want: buildInfo{Version: "v0.4.0-3-g0123456", Commit: "0123456789abcdef0123456789abcdef01234567", CommitTime: "2026-11-01T10:00:00Z",
			Go: "go1.26.8", OS: "linux", Arch: "arm64"},
		line: "dmvpn v0.4.0-3-g0123456 (commit 0123456789ab; go1.26.8 linux/arm64)",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := describeBuild(tc.stamped, tc.bi, "go1.26.8", "linux", "amd64")
			if got != tc.want {
				t.Errorf("describeBuild = %+v\nwant %+v", got, tc.want)
			}
			if got.String() != tc.line {
				t.Errorf("String() = %q\nwant %q", got.String(), tc.line)
			}
		})
	}
}

func TestCompletion(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash": "# bash completion V2 for dmvpn",
		"zsh":  "#compdef dmvpn",
		"fish": "complete -c dmvpn ",
	} {
		t.Run(shell, func(t *testing.T) {
			out, _, err := execute(t, "completion", shell)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, marker) || len(out) < 1000 {
				t.Errorf("completion %s: %d bytes without %q:\n%.300s", shell, len(out), marker, out)
			}
		})
	}
	// The completion engine behind those scripts knows our commands.
	out, _, err := execute(t, cobra.ShellCompRequestCmd, "show", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, view := range []string{"dmvpn", "nhrp", "routes", "stats"} {
		if !regexp.MustCompile(`(?m)^` + view + `\b`).MatchString(out) {
			t.Errorf("completing 'dmvpn show ' does not offer %s:\n%s", view, out)
		}
	}
}

// walk calls f for every command the user can see, root included.
func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, sub := range c.Commands() {
		if !sub.Hidden {
			walk(sub, f)
		}
	}
}

// TestEveryCommandDocumented: man-style help everywhere. Every command has
// a Short, a Long and an Example, and every example that runs dmvpn names a
// real command with flags and arguments it accepts.
func TestEveryCommandDocumented(t *testing.T) {
	var names []string
	walk(newRootCmd(io.Discard, io.Discard), func(c *cobra.Command) {
		name := c.CommandPath()
		names = append(names, name)
		if strings.TrimSpace(c.Short) == "" {
			t.Errorf("%s: no Short", name)
		}
		if strings.TrimSpace(c.Long) == "" {
			t.Errorf("%s: no Long", name)
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s: no Example", name)
		}
		for _, line := range strings.Split(c.Example, "\n") {
			checkExample(t, name, line)
		}
	})
	for _, want := range []string{"dmvpn run", "dmvpn show", "dmvpn clear", "dmvpn config check", "dmvpn lab down",
		"dmvpn version", "dmvpn completion bash", "dmvpn completion zsh", "dmvpn completion fish", "dmvpn help"} {
		if !contains(names, want) {
			t.Errorf("no command %q in the tree %v", want, names)
		}
	}
	// The help command renders all of it.
	out, _, err := execute(t, "help", "config", "check")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Usage:\n  dmvpn config check FILE...", "Examples:\n  dmvpn config check /etc/dmvpn/spoke1.yaml"} {
		if !strings.Contains(out, want) {
			t.Errorf("dmvpn help config check lacks %q:\n%s", want, out)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkExample parses each "dmvpn ..." command of an example line (after
// sudo, between pipes and &&) against a fresh command tree.
func checkExample(t *testing.T, where, line string) {
	t.Helper()
	for _, part := range regexp.MustCompile(`\|\||&&|\||;`).Split(line, -1) {
		fields := strings.Fields(part)
		if len(fields) > 0 && fields[0] == "sudo" {
			fields = fields[1:]
		}
		if len(fields) == 0 || fields[0] != "dmvpn" {
			continue
		}
		var args []string
		for _, f := range fields[1:] {
			if strings.HasPrefix(f, ">") || strings.HasPrefix(f, "#") {
				break
			}
			args = append(args, f)
		}
		if err := validateArgs(args); err != nil {
			t.Errorf("%s: example %q: %v", where, strings.TrimSpace(part), err)
		}
	}
}

// validateArgs finds the command args name and checks its flags and
// arguments as Execute would, without running it.
func validateArgs(args []string) error {
	root := newRootCmd(io.Discard, io.Discard)
	c, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if err := c.ParseFlags(rest); err != nil {
		return err
	}
	if err := c.ValidateRequiredFlags(); err != nil {
		return err
	}
	return c.ValidateArgs(c.Flags().Args())
}
