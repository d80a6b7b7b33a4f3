// Package hooks runs a command per event (Cisco's EEM applets, nhrpd's
// event scripts): the program and its arguments as configured, never
// through a shell, with what happened in environment variables:
//
//	DMVPN_EVENT   the event type, e.g. shortcut-up
//	DMVPN_SEQ     its sequence number on the node
//	DMVPN_TIME    when, RFC 3339 with nanoseconds
//	DMVPN_NODE    the node's name
//	DMVPN_PEER    the overlay address it is about (NHS, registrant, owner)
//	DMVPN_NBMA    that peer's NBMA address (or where a purge came from/went)
//	DMVPN_PREFIX  a shortcut's route(s)
//	DMVPN_REASON  why, in words
//	DMVPN_CODE    an NHRP CIE or Error Indication code, or empty
//
// Every one is set (empty when it does not apply), so a hook never sees a
// value inherited from the daemon's environment; values have control
// characters replaced by spaces and are at most MaxValue bytes. The rest of
// the environment is the daemon's, less NOTIFY_SOCKET.
//
// Posting an event never blocks: at most MaxRunning hooks run at once, the
// rest wait in a bounded queue, and what does not fit is dropped and
// counted. A hook that outlives its timeout is killed with its whole
// process group. Its standard output and error (at most MaxOutput bytes)
// go to the log, rate-limited.
package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/internal/ratelog"
)

// Bounds.
const (
	DefaultMaxRunning = 4
	DefaultMaxQueued  = 64
	// MaxValue bounds each DMVPN_* value.
	MaxValue = 1024
	// MaxOutput bounds what is kept of a run's standard output and error.
	MaxOutput = 4096
	// DefaultTimeout is a hook's timeout when none is set.
	DefaultTimeout = 10 * time.Second
	// waitDelay bounds the wait for a hook's output after it exits (a
	// background child keeping the pipe open) or is killed.
	waitDelay = time.Second
)

// Hook is one configured command.
type Hook struct {
	// Name identifies the hook in logs, e.g. "hooks[0]".
	Name string
	// Events are the types it runs for; empty: every type.
	Events []events.Type
	// Path is the program (absolute, resolved at start-up); Args its
	// arguments; Argv0 what it gets as argv[0] (the command as written).
	Path  string
	Argv0 string
	Args  []string
	// Timeout kills the hook's process group when it runs longer;
	// zero: DefaultTimeout.
	Timeout time.Duration
}

func (h *Hook) wants(t events.Type) bool {
	if len(h.Events) == 0 {
		return t != events.Dropped
	}
	for _, x := range h.Events {
		if x == t {
			return true
		}
	}
	return false
}

// Config configures a Runner.
type Config struct {
	Hooks      []Hook
	MaxRunning int // zero: DefaultMaxRunning
	MaxQueued  int // zero: DefaultMaxQueued
	// Env is the environment hooks start from; nil: os.Environ().
	Env []string
	Log *slog.Logger
}

// Stats counts what the runner did.
type Stats struct {
	Started, Succeeded, Failed, TimedOut uint64
	// Dropped counts runs not started because the queue was full (or
	// the runner was stopping).
	Dropped uint64
	Running int
	Queued  int
}

// Runner runs hooks for events.
type Runner struct {
	hooks []Hook
	max   int
	env   []string
	log   *slog.Logger
	rlog  *ratelog.Limiter

	jobs   chan job
	ctx    context.Context // cancelled to kill what runs
	kill   context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	stats  Stats
	start  sync.Once
	closed bool
}

type job struct {
	h  *Hook
	ev events.Event
}

// New returns a runner for cfg; Start starts its workers.
func New(cfg Config) *Runner {
	if cfg.MaxRunning <= 0 {
		cfg.MaxRunning = DefaultMaxRunning
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = DefaultMaxQueued
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	var base []string
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == "NOTIFY_SOCKET" {
			continue // systemd's: a hook is not the service
		}
		base = append(base, kv)
	}
	ctx, kill := context.WithCancel(context.Background())
	r := &Runner{max: cfg.MaxRunning, env: base, log: cfg.Log,
		rlog: ratelog.New(cfg.Log, 0, 0), jobs: make(chan job, cfg.MaxQueued), ctx: ctx, kill: kill}
	r.SetHooks(cfg.Hooks)
	return r
}

// SetHooks replaces the hooks (a reload); runs already queued or started
// keep the hook they were queued with.
func (r *Runner) SetHooks(hs []Hook) {
	hs = append([]Hook(nil), hs...)
	for i := range hs {
		if hs[i].Timeout <= 0 {
			hs[i].Timeout = DefaultTimeout
		}
		if hs[i].Argv0 == "" {
			hs[i].Argv0 = hs[i].Path
		}
	}
	r.mu.Lock()
	r.hooks = hs
	r.mu.Unlock()
}

// Start starts the workers (once).
func (r *Runner) Start() {
	r.start.Do(func() {
		for i := 0; i < r.max; i++ {
			r.wg.Add(1)
			go r.worker()
		}
	})
}

// Post queues a run of every hook that wants ev. It never blocks: a run
// that does not fit in the queue is dropped, counted and logged
// (rate-limited). It may be called under other locks.
func (r *Runner) Post(ev events.Event) {
	r.mu.Lock()
	hs := r.hooks // replaced whole by SetHooks, never changed in place
	r.mu.Unlock()
	for i := range hs {
		h := &hs[i]
		if !h.wants(ev.Type) {
			continue
		}
		ok := false
		r.mu.Lock() // a leaf lock: the send does not wait
		if !r.closed {
			select {
			case r.jobs <- job{h: h, ev: ev}:
				ok = true
			default:
			}
		}
		if !ok {
			r.stats.Dropped++
		}
		r.mu.Unlock()
		if !ok {
			r.rlog.Warn(time.Now(), "hook: not run, too many hooks waiting", "hook", h.Name, "event", ev.Type, "seq", ev.Seq,
				"running", r.max, "queued", cap(r.jobs))
		}
	}
}

// Close stops taking events, lets what is running and queued finish for at
// most grace, then kills what still runs and drops what still waits.
func (r *Runner) Close(grace time.Duration) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	close(r.jobs)
	r.mu.Unlock()
	r.Start() // so the queue drains even if Start was never called
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		r.kill()
		<-done
	}
	r.kill()
}

// Stats returns the counters.
func (r *Runner) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Queued = len(r.jobs)
	return s
}

func (r *Runner) worker() {
	defer r.wg.Done()
	for j := range r.jobs {
		if r.ctx.Err() != nil {
			r.mu.Lock()
			r.stats.Dropped++
			r.mu.Unlock()
			continue
		}
		r.run(j)
	}
}

// Env returns the DMVPN_* variables for ev, sanitised, each one set.
func Env(ev events.Event) []string {
	code := ""
	if ev.Code != 0 {
		code = strconv.Itoa(ev.Code)
	}
	t := ""
	if !ev.Time.IsZero() {
		t = ev.Time.Format(time.RFC3339Nano)
	}
	kv := [...][2]string{
		{"DMVPN_EVENT", string(ev.Type)}, {"DMVPN_SEQ", strconv.FormatUint(ev.Seq, 10)}, {"DMVPN_TIME", t},
		{"DMVPN_NODE", ev.Node}, {"DMVPN_PEER", ev.Peer}, {"DMVPN_NBMA", ev.NBMA}, {"DMVPN_PREFIX", ev.Prefix},
		{"DMVPN_REASON", ev.Reason}, {"DMVPN_CODE", code},
	}
	out := make([]string, len(kv))
	for i, p := range kv {
		out[i] = p[0] + "=" + Sanitize(p[1])
	}
	return out
}

// Sanitize makes s safe as an environment value: valid UTF-8, no NUL or
// other control characters (replaced by spaces), at most MaxValue bytes.
func Sanitize(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > MaxValue {
		cut := MaxValue
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// output keeps the first MaxOutput bytes written to it and counts the rest.
type output struct {
	mu   sync.Mutex
	b    bytes.Buffer
	more int
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	room := MaxOutput - o.b.Len()
	if room >= len(p) {
		o.b.Write(p)
	} else {
		o.b.Write(p[:max(room, 0)])
		o.more += len(p) - max(room, 0)
	}
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := strings.TrimRight(strings.ToValidUTF8(o.b.String(), "?"), "\n")
	if o.more > 0 {
		s += fmt.Sprintf(" …(%d bytes more)", o.more)
	}
	return s
}

func (r *Runner) run(j job) {
	h := j.h
	ctx, cancel := context.WithTimeout(r.ctx, h.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.Path, h.Args...)
	cmd.Args[0] = h.Argv0
	cmd.Env = append(append(make([]string, 0, len(r.env)+9), r.env...), Env(j.ev)...)
	cmd.Dir = "/"
	out := &output{}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so a timeout kills whatever it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay

	r.mu.Lock()
	r.stats.Started++
	r.stats.Running++
	r.mu.Unlock()
	t0 := time.Now()
	err := cmd.Run()
	took := time.Since(t0)
	r.mu.Lock()
	r.stats.Running--
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	switch {
	case timedOut:
		r.stats.TimedOut++
	case err != nil:
		r.stats.Failed++
	default:
		r.stats.Succeeded++
	}
	r.mu.Unlock()

	args := []any{"hook", h.Name, "event", j.ev.Type, "seq", j.ev.Seq, "command", h.Path, "took", took.Round(time.Millisecond)}
	if s := out.String(); s != "" {
		args = append(args, "output", s)
	}
	now := time.Now()
	switch {
	case timedOut:
		r.rlog.Warn(now, "hook: timed out, killed its process group", append(args, "timeout", h.Timeout)...)
	case r.ctx.Err() != nil:
		r.rlog.Warn(now, "hook: killed, the node is stopping", args...)
	case err != nil:
		r.rlog.Warn(now, "hook: failed", append(args, "err", err)...)
	case out.String() != "":
		r.rlog.Info(now, "hook: ran", args...)
	default:
		r.rlog.Debug(now, "hook: ran", args...)
	}
}
