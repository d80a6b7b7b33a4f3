package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	sigTERM = syscall.SIGTERM
	sigKILL = syscall.SIGKILL
)

// proc is a daemon the lab started. cmd and done are nil when the lab was
// attached with Open (another process is, or was, the parent).
type proc struct {
	node  string
	pid   int
	start uint64   // /proc/<pid>/stat starttime: tells a reused PID apart
	argv  []string // what runs in the namespace (not the re-exec's arguments)
	cmd   *exec.Cmd
	done  chan struct{} // closed once reaped
	werr  error         // exit status, valid after done
}

// alive reports whether the process still runs (zombies count as dead).
func (p *proc) alive() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
		}
	}
	return pidAlive(p.pid, p.start)
}

// state is Dir/state.json.
type state struct {
	Prefix     string               `json:"prefix"`
	Dir        string               `json:"dir"`
	Phase      int                  `json:"phase"`
	Binary     string               `json:"binary,omitempty"`
	Namespaces []string             `json:"namespaces"`
	Procs      map[string]procState `json:"procs"`
	Updated    time.Time            `json:"updated"`
}

type procState struct {
	PID   int      `json:"pid"`
	Start uint64   `json:"start"` // clock ticks after boot, from /proc/<pid>/stat
	Argv  []string `json:"argv,omitempty"`
}

func (l *Lab) saveState() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.saveStateLocked()
}

func (l *Lab) saveStateLocked() error {
	st := state{
		Prefix:     l.opts.Prefix,
		Dir:        l.opts.Dir,
		Phase:      l.opts.Phase,
		Binary:     l.opts.Binary,
		Namespaces: l.Namespaces(),
		Procs:      map[string]procState{},
		Updated:    time.Now().UTC(),
	}
	for node, p := range l.procs {
		if p.start != 0 && p.alive() {
			ps := procState{PID: p.pid, Start: p.start}
			ps.Argv = p.argv
			st.Procs[node] = ps
		}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(l.opts.Dir, StateFile)
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("lab: state: %w", err)
	}
	return nil
}

func loadState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("lab: %s: %w", filepath.Join(dir, StateFile), err)
	}
	return st, nil
}

// Start starts the daemon of node (hub, spoke1, spoke2 or spoke3) in its
// namespace: `<Binary> run -c <Dir>/<node>.yaml` through NamespaceCommand
// (the equivalent of `ip netns exec <ns> ...`, without ip), with
// stdout and stderr appended to <Dir>/<node>.log. It writes the node's
// config if it is not there yet. The daemon gets its own session, so it
// outlives the caller (for `dmvpn lab --keep`) and a terminal's Ctrl-C does
// not reach it directly. Start returns an error, with the log's tail, if the
// daemon exits within a short grace period.
func (l *Lab) Start(node string) error {
	if err := l.spawn(node); err != nil {
		return err
	}
	return l.checkEarlyExit([]string{node})
}

// StartAll starts the hub, then every spoke.
func (l *Lab) StartAll() error {
	var started []string
	for _, d := range Daemons {
		if err := l.spawn(d.Name); err != nil {
			return err
		}
		started = append(started, d.Name)
	}
	return l.checkEarlyExit(started)
}

func (l *Lab) spawn(node string) error {
	if _, ok := DaemonByName(node); !ok {
		return fmt.Errorf("lab: %q is not a dmvpn node (want hub, spoke1, spoke2 or spoke3)", node)
	}
	if l.opts.Binary == "" {
		return errors.New("lab: Options.Binary (the dmvpn executable) is not set")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return errors.New("lab: already down")
	}
	if p := l.procs[node]; p != nil && p.alive() {
		return fmt.Errorf("lab: %s already runs (pid %d)", node, p.pid)
	}
	if _, err := os.Stat(l.ConfigPath(node)); err != nil {
		if err := l.writeConfig(node); err != nil {
			return err
		}
	}
	logf, err := os.OpenFile(l.LogPath(node), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer logf.Close() // the child has its own copy
	argv := []string{l.opts.Binary, "run", "-c", l.ConfigPath(node)}
	fmt.Fprintf(logf, "=== %s lab: in namespace %s: %s\n", time.Now().Format(time.RFC3339), l.Namespace(node), strings.Join(argv, " "))
	cmd := NamespaceCommand(context.Background(), l.Namespace(node), argv...)
	cmd.WaitDelay = 0
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), l.opts.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: starting %s: %w", node, err)
	}
	// The re-exec joins the namespace and execs the daemon in place, so
	// this PID is the daemon's.
	p := &proc{node: node, pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	p.start, _ = procStartTime(p.pid)
	go func() {
		p.werr = cmd.Wait()
		close(p.done)
	}()
	l.procs[node] = p
	p.argv = argv
	l.logf("started %s (pid %d) in %s: %s", node, p.pid, l.Namespace(node), strings.Join(argv, " "))
	return l.saveStateLocked()
}

func (l *Lab) checkEarlyExit(nodes []string) error {
	time.Sleep(startGrace)
	var errs []error
	for _, n := range nodes {
		l.mu.Lock()
		p := l.procs[n]
		l.mu.Unlock()
		if p != nil && !p.alive() {
			errs = append(errs, fmt.Errorf("lab: %s exited right after start (%v); last lines of %s:\n%s", n, p.exitErr(), l.LogPath(n), indent(l.Tail(n, 15))))
		}
	}
	return errors.Join(errs...)
}

func (p *proc) exitErr() error {
	if p.done == nil {
		return errors.New("exited")
	}
	select {
	case <-p.done:
		if p.werr == nil {
			return errors.New("exit status 0")
		}
		return p.werr
	default:
		return errors.New("running")
	}
}

// Stop sends SIGTERM to node's daemon, waits up to Options.StopTimeout for
// it to exit, then sends SIGKILL. It returns an error if the daemon needed
// SIGKILL or, when this process started it, exited with a non-zero status.
func (l *Lab) Stop(node string) error {
	l.mu.Lock()
	p := l.procs[node]
	l.mu.Unlock()
	if p == nil {
		return fmt.Errorf("lab: %s was not started", node)
	}
	err := stopProc(p, l.opts.StopTimeout)
	l.mu.Lock()
	if l.procs[node] == p {
		delete(l.procs, node)
	}
	if !l.down {
		_ = l.saveStateLocked()
	}
	l.mu.Unlock()
	return err
}

// stopAll stops every daemon concurrently; the errors are per daemon.
func (l *Lab) stopAll() []error {
	l.mu.Lock()
	var ps []*proc
	for _, p := range l.procs {
		ps = append(ps, p)
	}
	l.procs = map[string]*proc{}
	l.mu.Unlock()
	return stopProcs(ps, l.opts.StopTimeout)
}

func stopProcs(ps []*proc, wait time.Duration) []error {
	sort.Slice(ps, func(i, j int) bool { return ps[i].node < ps[j].node })
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = stopProc(p, wait)
		}()
	}
	wg.Wait()
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

// stopProc: SIGTERM, bounded wait, SIGKILL, bounded wait. Never signals a
// PID whose start time no longer matches (the process is gone and the PID
// reused).
func stopProc(p *proc, wait time.Duration) error {
	if !p.alive() {
		return nil
	}
	signalPID(p.pid, p.start, sigTERM)
	if waitDead(p, wait) {
		if p.done != nil && p.werr != nil {
			return fmt.Errorf("lab: %s (pid %d) exited after SIGTERM with %v", p.node, p.pid, p.werr)
		}
		return nil
	}
	signalPID(p.pid, p.start, sigKILL)
	if !waitDead(p, killWait) {
		return fmt.Errorf("lab: %s (pid %d) survived SIGKILL", p.node, p.pid)
	}
	return fmt.Errorf("lab: %s (pid %d) did not exit within %v of SIGTERM; killed", p.node, p.pid, wait)
}

func waitDead(p *proc, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	if p.done != nil {
		select {
		case <-p.done:
			return true
		case <-deadline.C:
			return false
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if !pidAlive(p.pid, p.start) {
			return true
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return !pidAlive(p.pid, p.start)
		}
	}
}

// signalPID signals pid if it still is the process that started at start
// (0: do not check).
func signalPID(pid int, start uint64, sig syscall.Signal) {
	if pid <= 1 || pid == os.Getpid() {
		return
	}
	if !pidAlive(pid, start) {
		return
	}
	_ = syscall.Kill(pid, sig)
}

// pidAlive reports whether pid runs, is not a zombie and (if start != 0)
// started at start.
func pidAlive(pid int, start uint64) bool {
	st, state, err := procStat(pid)
	if err != nil || state == 'Z' || state == 'X' {
		return false
	}
	return start == 0 || st == start
}

func procStartTime(pid int) (uint64, error) {
	st, _, err := procStat(pid)
	return st, err
}

// procStat returns starttime (field 22) and state (field 3) of
// /proc/<pid>/stat.
func procStat(pid int) (uint64, byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // comm may contain spaces and ')'
	if i < 0 {
		return 0, 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("bad /proc/%d/stat: %w", pid, err)
	}
	return st, f[0][0], nil
}

// PID returns the PID of node's daemon, or 0 if the lab did not start it.
func (l *Lab) PID(node string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.procs[node]; p != nil {
		return p.pid
	}
	return 0
}

// PIDs returns the PIDs of the daemons the lab started, by node.
func (l *Lab) PIDs() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[string]int{}
	for n, p := range l.procs {
		m[n] = p.pid
	}
	return m
}

// Running reports whether node's daemon runs.
func (l *Lab) Running(node string) bool {
	l.mu.Lock()
	p := l.procs[node]
	l.mu.Unlock()
	return p != nil && p.alive()
}

// Exited reports whether node's daemon, started by this lab, has exited,
// and how (nil: exit status 0).
func (l *Lab) Exited(node string) (bool, error) {
	l.mu.Lock()
	p := l.procs[node]
	l.mu.Unlock()
	if p == nil || p.alive() {
		return false, nil
	}
	if p.done != nil {
		return true, p.werr
	}
	return true, nil
}

// Tail returns the last n lines of node's log.
func (l *Lab) Tail(node string, n int) string {
	b, err := os.ReadFile(l.LogPath(node))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
