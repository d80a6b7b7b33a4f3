package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHooks(t *testing.T) {
	c, err := Parse("f.yaml", []byte(base+`hooks:
  - event: shortcut-up
    command: [/usr/local/bin/notify, --level, info, "$(not a shell)", ""]
    timeout: 30s
  - event: [nhs-up, nhs-down]
    command: [logger, -t, dmvpn]
  - event: "*"
    command:
      - /bin/true
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Hook{
		{Events: []string{"shortcut-up"}, Command: []string{"/usr/local/bin/notify", "--level", "info", "$(not a shell)", ""}, Timeout: 30 * time.Second},
		{Events: []string{"nhs-up", "nhs-down"}, Command: []string{"logger", "-t", "dmvpn"}, Timeout: DefaultHookTimeout},
		{Events: nil, Command: []string{"/bin/true"}, Timeout: DefaultHookTimeout},
	}
	if len(c.Hooks) != len(want) {
		t.Fatalf("hooks %+v", c.Hooks)
	}
	for i := range want {
		got := c.Hooks[i]
		got.at = Error{}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("hooks[%d] = %+v, want %+v", i, got, want[i])
		}
	}
	if c.Hooks[1].at.Line != 12 || c.Hooks[1].at.Column != 15 || c.Hooks[1].at.Path != "hooks[1].command[0]" {
		t.Errorf("command position %+v", c.Hooks[1].at)
	}
	// None is the default; an empty list is none.
	for _, y := range []string{base, base + "hooks:\n", base + "hooks: []\n"} {
		if c, err := Parse("f.yaml", []byte(y)); err != nil || c.Hooks != nil {
			t.Errorf("%q: %v %+v", y, err, c)
		}
	}
}

func TestHookErrors(t *testing.T) {
	const events = "nhs-up, nhs-down, nhs-refused, nhs-error, registration-accepted, registration-refused, registration-expired, registration-removed, shortcut-up, shortcut-down, purge-received, purge-sent, node-up, node-down, error, bgp-up, bgp-down, sa-up, sa-down, sa-rekeyed, or \"*\" for every event"
	const command = "the program and its arguments as a list, e.g. [/usr/local/bin/notify, --level, info]; it is run without a shell"
	for _, tt := range []struct{ yaml, want string }{
		{"hooks:\n  - event: shortcut-upp\n    command: [/bin/true]\n",
			`8:12: hooks[0].event: unknown event "shortcut-upp" (valid: ` + events + `; did you mean "shortcut-up"?)`},
		{"hooks:\n  - event: [nhs-up, nhs_down]\n    command: [/bin/true]\n",
			`8:21: hooks[0].event[1]: unknown event "nhs_down" (valid: ` + events + `; did you mean "nhs-down"?)`},
		{"hooks:\n  - event: [nhs-up, \"*\"]\n    command: [/bin/true]\n",
			`8:21: hooks[0].event[1]: "*" means every event, so it stands alone (valid: event: "*", or a list of names)`},
		{"hooks:\n  - event: [nhs-up, nhs-up]\n    command: [/bin/true]\n",
			`8:21: hooks[0].event[1]: "nhs-up" is already hooks[0].event[0] (valid: each event once)`},
		{"hooks:\n  - event: []\n    command: [/bin/true]\n",
			`8:12: hooks[0].event: is an empty list (valid: ` + events + `)`},
		{"hooks:\n  - event: nhs-up\n    command: /usr/bin/logger -t dmvpn\n",
			`9:14: hooks[0].command: "/usr/bin/logger -t dmvpn" is one string; a hook's command is not run by a shell (valid: ` + command + `)`},
		{"hooks:\n  - event: nhs-up\n    command: /usr/bin/logger\n",
			`9:14: hooks[0].command: expected a list, got the value "/usr/bin/logger" (valid: ` + command + `)`},
		{"hooks:\n  - event: nhs-up\n    command: []\n",
			`9:14: hooks[0].command: is an empty list (valid: ` + command + `)`},
		{"hooks:\n  - event: nhs-up\n    command: [bin/notify]\n",
			`9:15: hooks[0].command[0]: "bin/notify" is a relative path (valid: an absolute path such as /usr/local/bin/notify, or a program name found on PATH)`},
		{"hooks:\n  - event: nhs-up\n    command: [\"\"]\n",
			`9:15: hooks[0].command[0]: is empty (valid: an absolute path such as /usr/local/bin/notify, or a program name found on PATH)`},
		{"hooks:\n  - event: nhs-up\n    command: [/bin/echo, \"a\\0b\"]\n",
			`9:26: hooks[0].command[1]: contains a NUL byte (valid: text without NUL)`},
		{"hooks:\n  - event: nhs-up\n    command: [/bin/echo, [a]]\n",
			`9:26: hooks[0].command[1]: expected a single value, got a list (valid: a string (an argument))`},
		{"hooks:\n  - event: nhs-up\n    command: [/bin/true]\n    timeout: 0s\n",
			`10:14: hooks[0].timeout: "0s" is not valid (valid: whole seconds from 1s to 300s, e.g. 10s)`},
		{"hooks:\n  - event: nhs-up\n    command: [/bin/true]\n    timeout: 301s\n",
			`10:14: hooks[0].timeout: "301s" is not valid (valid: whole seconds from 1s to 300s, e.g. 10s)`},
		{"hooks:\n  - event: nhs-up\n",
			`8:5: hooks[0]: missing required field "command" (the program and its arguments, e.g. command: [/usr/local/bin/notify, --level, info])`},
		{"hooks:\n  - command: [/bin/true]\n",
			`8:5: hooks[0]: missing required field "event" (the event(s) it runs for, e.g. event: shortcut-up, or "*")`},
		{"hooks:\n  - event: nhs-up\n    comand: [/bin/true]\n",
			`8:5: hooks[0]: missing required field "command" (the program and its arguments, e.g. command: [/usr/local/bin/notify, --level, info])` +
				"\nf.yaml:" + `9:5: hooks[0]: unknown field "comand" (valid here: event, command, timeout; did you mean "command"?)`},
		{"hooks:\n  event: nhs-up\n",
			`8:3: hooks: expected a list, got a mapping of fields (valid: a list of hooks, each with event, command and optionally timeout)`},
	} {
		_, err := Parse("f.yaml", []byte(base+tt.yaml))
		if err == nil {
			t.Errorf("%q: no error", tt.yaml)
			continue
		}
		if got := strings.TrimPrefix(err.Error(), "f.yaml:"); got != tt.want {
			t.Errorf("%q:\n got %s\nwant %s", tt.yaml, got, tt.want)
		}
	}
	// Bounds: arguments and hooks.
	long := base + "hooks:\n  - event: nhs-up\n    command: [/bin/echo" + strings.Repeat(", x", MaxHookArgs) + "]\n"
	if _, err := Parse("f.yaml", []byte(long)); err == nil || !strings.Contains(err.Error(), "has 65 elements (valid: at most 64, the program and its arguments)") {
		t.Errorf("65 arguments: %v", err)
	}
	many := base + "hooks:\n" + strings.Repeat("  - {event: nhs-up, command: [/bin/true]}\n", MaxHooks+1)
	if _, err := Parse("f.yaml", []byte(many)); err == nil || !strings.Contains(err.Error(), "72:5: hooks[64]: one hook too many (valid: at most 64 hooks)") {
		t.Errorf("65 hooks: %v", err)
	}
}

func TestResolveHooks(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "prog")
	if err := os.WriteFile(prog, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":/nonexistent")
	c, err := Parse("f.yaml", []byte(base+`hooks:
  - event: nhs-up
    command: [prog, --x]
  - event: nhs-up
    command: [`+prog+`]
  - event: nhs-up
    command: [no-such-program]
  - event: nhs-up
    command: [`+filepath.Join(dir, "missing")+`]
  - event: nhs-up
    command: [`+plain+`]
  - event: nhs-up
    command: [`+dir+`]
`))
	if err != nil {
		t.Fatal(err)
	}
	err = c.ResolveHooks()
	if c.Hooks[0].Path != prog || c.Hooks[1].Path != prog {
		t.Errorf("resolved %q, %q; want %q", c.Hooks[0].Path, c.Hooks[1].Path, prog)
	}
	want := []string{
		`f.yaml:13:15: hooks[2].command[0]: "no-such-program" is not on PATH (PATH="` + dir + `:/nonexistent") (valid: an absolute path such as /usr/local/bin/notify, or a program name found on PATH)`,
		`f.yaml:15:15: hooks[3].command[0]: "` + dir + `/missing" does not exist (valid: an absolute path such as /usr/local/bin/notify, or a program name found on PATH)`,
		`f.yaml:17:15: hooks[4].command[0]: "` + plain + `" is not an executable file (valid: an absolute path such as /usr/local/bin/notify, or a program name found on PATH)`,
		`f.yaml:19:15: hooks[5].command[0]: "` + dir + `" is not an executable file (valid: an absolute path such as /usr/local/bin/notify, or a program name found on PATH)`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Line != 13 {
		t.Errorf("not *Error values: %#v", err)
	}
	// "." on PATH does not count (exec.ErrDot).
	t.Setenv("PATH", ".")
	t.Chdir(dir)
	c, _ = Parse("f.yaml", []byte(base+"hooks:\n  - event: nhs-up\n    command: [prog]\n"))
	if err := c.ResolveHooks(); err == nil {
		t.Errorf("a program found through . on PATH: %+v", c.Hooks[0])
	}
}
