package config

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dmvpn/dmvpn/events"
)

// Hook runs a command for events (Cisco's EEM applets, nhrpd's event
// scripts), with the event's details in DMVPN_* environment variables
// (docs/CONFIG.md, package events/hooks).
type Hook struct {
	// Events are the event types it runs for. YAML event, required: one
	// name (shortcut-up), a list of names, or "*" for every type, which
	// leaves Events nil.
	Events []string `yaml:"event" check:"events" required:"the event(s) it runs for, e.g. event: shortcut-up, or \"*\""`
	// Command is the program and its arguments, run as they are, without
	// a shell. YAML command, required: a list of 1 to 64 strings; the
	// first an absolute path or a program name without '/', looked up on
	// PATH when the node starts (ResolveHooks).
	Command []string `yaml:"command" check:"command" required:"the program and its arguments, e.g. command: [/usr/local/bin/notify, --level, info]"`
	// Timeout is how long the command may run before its process group
	// is killed. YAML timeout, whole seconds from 1s to 300s; default 10s.
	Timeout time.Duration `yaml:"timeout" range:"1s..300s" valid:"whole seconds from 1s to 300s, e.g. 10s" default:"10s"`
	// Path is the program ResolveHooks found; "" before.
	Path string `yaml:"-"`
	// at is where command[0] is in the file, for ResolveHooks' errors.
	at Error
}

// Bounds of hooks.
const (
	DefaultHookTimeout = 10 * time.Second
	MaxHookTimeout     = 300 * time.Second
	MaxHooks           = 64
	MaxHookArgs        = 64
	MaxHookArgLen      = 4096
)

const (
	validCommand = "the program and its arguments as a list, e.g. [/usr/local/bin/notify, --level, info]; it is run without a shell"
	validProgram = "an absolute path such as /usr/local/bin/notify, or a program name found on PATH"
)

// validEvents lists the event names a hook may name.
func validEvents() string {
	return strings.Join(events.Names(), ", ") + `, or "*" for every event`
}

// parsed records where the hook's program is, for ResolveHooks' errors.
func (h *Hook) parsed(p *parser, path string) {
	ip := indexPath(path+".command", 0)
	if n := p.nodes[ip]; n != nil && h.Command != nil {
		h.at = Error{File: p.file, Line: n.Line, Column: n.Column, Path: ip}
	}
}

// hookEvents parses event: a name, "*", or a list of names.
func (p *parser) hookEvents(n *yaml.Node, path string) []string {
	if n.Kind == yaml.SequenceNode {
		if len(n.Content) == 0 {
			p.errorf(n, path, "is an empty list (valid: %s)", validEvents())
			return nil
		}
		var out []string
		seen := map[string]int{}
		for i, e := range n.Content {
			e = resolve(e)
			ip := indexPath(path, i)
			s, ok := p.str(e, ip, validEvents())
			if !ok {
				continue
			}
			if s == "*" {
				p.errorf(e, ip, `"*" means every event, so it stands alone (valid: event: "*", or a list of names)`)
				continue
			}
			if j, dup := seen[s]; dup {
				p.errorf(e, ip, "%s is already %s[%d] (valid: each event once)", quote(s), path, j)
				continue
			}
			if p.eventName(e, ip, s) {
				seen[s] = i
				out = append(out, s)
			}
		}
		return out
	}
	s, ok := p.str(n, path, validEvents())
	if !ok || s == "*" {
		return nil
	}
	if p.eventName(n, path, s) {
		return []string{s}
	}
	return nil
}

// eventName checks one event name.
func (p *parser) eventName(n *yaml.Node, path, s string) bool {
	info, ok := events.Lookup(s)
	switch {
	case !ok:
		hint := ""
		if g := events.Suggest(s); g != "" {
			hint = fmt.Sprintf("; did you mean %q?", g)
		}
		p.errorf(n, path, "unknown event %s (valid: %s%s)", quote(s), validEvents(), hint)
		return false
	case info.Reserved:
		p.errorf(n, path, "%s is %s, so a hook on it would never run (valid: %s)", quote(s), info.Doc, validEvents())
		return false
	}
	return true
}

// decodeCommand decodes command: a list of strings, the first a program.
func decodeCommand(p *parser, n *yaml.Node, path string, f *fieldSpec, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		if n.Kind == yaml.ScalarNode && !isNull(n) && strings.ContainsAny(n.Value, " \t") {
			p.errorf(n, path, "%s is one string; a hook's command is not run by a shell (valid: %s)", quote(n.Value), validCommand)
			return
		}
		if isNull(n) {
			p.errorf(n, path, "has no value (valid: %s)", validCommand)
			return
		}
		p.errorf(n, path, "expected a list, got %s (valid: %s)", kindName(n), validCommand)
		return
	}
	if len(n.Content) == 0 {
		p.errorf(n, path, "is an empty list (valid: %s)", validCommand)
		return
	}
	if len(n.Content) > MaxHookArgs {
		p.errorf(n, path, "has %d elements (valid: at most %d, the program and its arguments)", len(n.Content), MaxHookArgs)
		return
	}
	var argv []string
	bad := false
	for i, e := range n.Content {
		e = resolve(e)
		ip := indexPath(path, i)
		var s string
		var ok bool
		if i == 0 {
			s, ok = p.str(e, ip, validProgram)
		} else {
			s, ok = p.scalar(e, ip, "a string (an argument)")
		}
		switch {
		case !ok:
			bad = true
			continue
		case strings.ContainsRune(s, 0):
			p.errorf(e, ip, "contains a NUL byte (valid: text without NUL)")
			bad = true
			continue
		case len(s) > MaxHookArgLen:
			q, _ := quoteCut(s)
			p.errorf(e, ip, "%s is %d bytes long (valid: at most %d bytes)", q, len(s), MaxHookArgLen)
			bad = true
			continue
		}
		if i == 0 {
			if !strings.HasPrefix(s, "/") && strings.Contains(s, "/") {
				p.errorf(e, ip, "%s is a relative path (valid: %s)", quote(s), validProgram)
				bad = true
				continue
			}
			p.nodes[ip] = e
		}
		argv = append(argv, s)
	}
	if !bad {
		v.Set(reflect.ValueOf(argv))
	}
}

// ResolveHooks finds each hook's program as `dmvpn run` does at start-up:
// a name is looked up on PATH (this process's, now), and the result or an
// absolute path must be an executable file. It sets Hook.Path and returns
// one *Error per program it cannot find or run (errors.Join), with the
// file, line and column of the command.
func (c *Config) ResolveHooks() error {
	var errs []error
	for i := range c.Hooks {
		h := &c.Hooks[i]
		if len(h.Command) == 0 {
			continue
		}
		path, why := lookProgram(h.Command[0])
		if why != "" {
			e := h.at
			e.Msg = why
			errs = append(errs, &e)
			continue
		}
		h.Path = path
	}
	return errors.Join(errs...)
}

// lookProgram finds name (absolute, or on PATH) or says why not.
func lookProgram(name string) (string, string) {
	if filepath.IsAbs(name) {
		fi, err := os.Stat(name)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return "", fmt.Sprintf("%s does not exist (valid: %s)", quote(name), validProgram)
		case err != nil:
			return "", fmt.Sprintf("%s: %v (valid: %s)", quote(name), err, validProgram)
		case fi.IsDir() || fi.Mode()&0o111 == 0:
			return "", fmt.Sprintf("%s is not an executable file (valid: %s)", quote(name), validProgram)
		}
		return filepath.Clean(name), ""
	}
	path, err := exec.LookPath(name)
	if err == nil && !filepath.IsAbs(path) {
		err = exec.ErrDot
	}
	if err != nil {
		env, _ := quoteCut(os.Getenv("PATH"))
		return "", fmt.Sprintf("%s is not on PATH (PATH=%s) (valid: %s)", quote(name), env, validProgram)
	}
	return path, ""
}
