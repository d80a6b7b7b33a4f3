package hooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/events"
)

// The test binary is also the hooks' program (os/exec's own pattern): with
// helperEnv set it runs helper(ROLE ARGS...) from the arguments after "--".
const helperEnv = "DMVPN_HOOKS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		args := os.Args
		for i, a := range args {
			if a == "--" {
				args = args[i+1:]
				break
			}
		}
		if err := helper(args); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helper roles, each bounded:
//
//	dump FILE ARGS...   write {"args": os.Args, "env": os.Environ()} to FILE
//	block DIR           start a child (same process group), write
//	                    DIR/running-PID and DIR/child-PID, wait for DIR/release
//	sleep               sleep 60 s (the child)
//	fail                print "boom" on stderr, exit 3
func helper(args []string) error {
	if len(args) == 0 {
		return errors.New("no role")
	}
	switch args[0] {
	case "dump":
		b, _ := json.Marshal(map[string][]string{"args": os.Args, "env": os.Environ()})
		tmp := args[1] + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return err
		}
		fmt.Println("dumped")
		return os.Rename(tmp, args[1])
	case "block":
		dir := args[1]
		self, _ := os.Executable()
		child := exec.Command(self, "-test.run=^$", "--", "sleep")
		if err := child.Start(); err != nil {
			return err
		}
		_ = os.WriteFile(filepath.Join(dir, "child-"+strconv.Itoa(child.Process.Pid)), nil, 0o600)
		_ = os.WriteFile(filepath.Join(dir, "running-"+strconv.Itoa(os.Getpid())), nil, 0o600)
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(dir, "release")); err == nil {
				_ = child.Process.Kill()
				_ = child.Wait()
				return nil
			}
		}
		return errors.New("never released")
	case "sleep":
		time.Sleep(60 * time.Second)
		return nil
	case "fail":
		fmt.Fprintln(os.Stderr, "boom")
		os.Exit(3)
	}
	return fmt.Errorf("unknown role %q", args[0])
}

// hook returns a hook running this binary as helper role with args.
func hook(t *testing.T, role string, args ...string) Hook {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Hook{Name: "hooks[0]", Path: self, Argv0: "hook-helper", Args: append([]string{"-test.run=^$", "--", role}, args...)}
}

func baseEnv(extra ...string) []string {
	return append(append(os.Environ(), helperEnv+"=1"), extra...)
}

// logBuffer is a log destination safe to read while hooks write to it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// waitFor polls cond every 10 ms for at most limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The event's details arrive in DMVPN_* variables, sanitised, every one set
// (an inherited value never leaks through); the arguments are passed as
// they are, with no shell to expand them; NOTIFY_SOCKET is not passed on.
func TestEnvironmentAndNoShell(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "dump.json")
	marker := filepath.Join(dir, "pwned")
	tricky := []string{"$(touch " + marker + ")", "`touch " + marker + "`", "a b; touch " + marker, "$DMVPN_PEER", ""}
	h := hook(t, "dump", append([]string{out}, tricky...)...)
	h.Events = []events.Type{events.ShortcutUp}
	log, logs := testLog()
	r := New(Config{Hooks: []Hook{h}, Env: baseEnv("DMVPN_PREFIX=inherited", "NOTIFY_SOCKET=/run/systemd/notify", "KEEP=me"), Log: log})
	r.Start()
	defer r.Close(5 * time.Second)

	r.Post(events.Event{Seq: 3, Type: events.NHSUp, Peer: "10.0.0.1"}) // not this hook's
	long := strings.Repeat("é", 2000)                                  // 4000 bytes
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	r.Post(events.Event{Seq: 4, Time: at, Type: events.ShortcutUp, Node: "spoke1", Peer: "10.0.0.12\nEVIL=1",
		NBMA: "198.51.100.65\x00x", Reason: long, Code: 14})
	waitFor(t, 10*time.Second, "the hook wrote nothing", func() bool { _, err := os.Stat(out); return err == nil })
	var got struct{ Args, Env []string }
	b, err := os.ReadFile(out)
	if err != nil || json.Unmarshal(b, &got) != nil {
		t.Fatalf("dump: %v %s", err, b)
	}
	if want := append([]string{"hook-helper", "-test.run=^$", "--", "dump", out}, tricky...); fmt.Sprintf("%q", got.Args) != fmt.Sprintf("%q", want) {
		t.Errorf("argv\n got %q\nwant %q", got.Args, want)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("an argument was run by a shell: %s exists", marker)
	}
	env := map[string]string{}
	for _, kv := range got.Env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := env[k]; dup {
			t.Errorf("%s set twice", k)
		}
		env[k] = v
	}
	reason := strings.Repeat("é", MaxValue/2)
	for k, want := range map[string]string{
		"DMVPN_EVENT": "shortcut-up", "DMVPN_SEQ": "4", "DMVPN_TIME": "2026-01-02T03:04:05.000000006Z", "DMVPN_NODE": "spoke1",
		"DMVPN_PEER": "10.0.0.12 EVIL=1", "DMVPN_NBMA": "198.51.100.65 x", "DMVPN_PREFIX": "", "DMVPN_REASON": reason,
		"DMVPN_CODE": "14", "KEEP": "me",
	} {
		if v, ok := env[k]; !ok || v != want {
			t.Errorf("%s = %q (set: %v), want %q", k, v, ok, want)
		}
	}
	if _, ok := env["NOTIFY_SOCKET"]; ok {
		t.Error("NOTIFY_SOCKET passed to the hook")
	}
	if _, ok := env["EVIL"]; ok {
		t.Error("a value's newline made a variable")
	}
	waitFor(t, 5*time.Second, "no success counted", func() bool { return r.Stats().Succeeded == 1 })
	if st := r.Stats(); st.Started != 1 || st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v (the nhs-up event must not run a shortcut-up hook)", st)
	}
	waitFor(t, 5*time.Second, "output not logged", func() bool { return strings.Contains(logs.String(), "output=dumped") })
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: a zombie is dead, waiting for its reaper.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func pids(t *testing.T, dir, prefix string) []int {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, prefix+"*"))
	var v []int
	for _, f := range m {
		p, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(f), prefix))
		if err == nil {
			v = append(v, p)
		}
	}
	return v
}

// A hook that outlives its timeout is killed with everything in its
// process group, and counted.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	h := hook(t, "block", dir)
	h.Timeout = 300 * time.Millisecond
	log, logs := testLog()
	r := New(Config{Hooks: []Hook{h}, Env: baseEnv(), Log: log})
	r.Start()
	defer r.Close(5 * time.Second)
	r.Post(events.Event{Type: events.NHSDown})
	waitFor(t, 10*time.Second, "the hook did not start", func() bool {
		return len(pids(t, dir, "running-")) == 1 && len(pids(t, dir, "child-")) == 1
	})
	waitFor(t, 10*time.Second, "no timeout counted", func() bool { return r.Stats().TimedOut == 1 })
	all := append(pids(t, dir, "running-"), pids(t, dir, "child-")...)
	waitFor(t, 5*time.Second, fmt.Sprintf("processes %v still alive", all), func() bool {
		for _, p := range all {
			if alive(p) {
				return false
			}
		}
		return true
	})
	if st := r.Stats(); st.Running != 0 || st.Succeeded != 0 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "hook: timed out, killed its process group") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// At most MaxRunning run; MaxQueued wait; the rest are dropped and counted.
// Posting never waits.
func TestConcurrencyAndQueueBounded(t *testing.T) {
	dir := t.TempDir()
	h := hook(t, "block", dir)
	h.Timeout = time.Minute
	log, logs := testLog()
	r := New(Config{Hooks: []Hook{h}, Env: baseEnv(), Log: log, MaxRunning: 2, MaxQueued: 5})
	defer r.Close(5 * time.Second)
	t0 := time.Now()
	for i := 0; i < 7; i++ { // before Start: 5 queue, 2 do not fit
		r.Post(events.Event{Seq: uint64(i + 1), Type: events.PurgeReceived})
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("posting took %v", d)
	}
	if st := r.Stats(); st.Dropped != 2 || st.Queued != 5 {
		t.Fatalf("before start: %+v", st)
	}
	if !strings.Contains(logs.String(), "hook: not run, too many hooks waiting") {
		t.Errorf("drop not logged:\n%s", logs.String())
	}
	r.Start()
	waitFor(t, 10*time.Second, "two hooks did not start", func() bool { return len(pids(t, dir, "running-")) == 2 })
	// Both workers are blocked: nothing else can start, three still wait.
	if st := r.Stats(); st.Running != 2 || st.Queued != 3 || st.Started != 2 {
		t.Fatalf("with two blocked: %+v", st)
	}
	if n := len(pids(t, dir, "running-")); n != 2 {
		t.Fatalf("%d hooks running, want 2", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "not all ran", func() bool { return r.Stats().Succeeded == 5 })
	if st := r.Stats(); st.Started != 5 || st.Running != 0 || st.Queued != 0 || st.Dropped != 2 {
		t.Errorf("at the end: %+v", st)
	}
}

// A failing hook is counted and its output logged; Close kills what still
// runs after the grace period and drops what waits; after Close, Post drops.
func TestFailureAndClose(t *testing.T) {
	dir := t.TempDir()
	log, logs := testLog()
	fail := hook(t, "fail")
	fail.Events = []events.Type{events.Error}
	block := hook(t, "block", dir)
	block.Name, block.Events, block.Timeout = "hooks[1]", []events.Type{events.NodeDown}, time.Minute
	r := New(Config{Hooks: []Hook{fail, block}, Env: baseEnv(), Log: log, MaxRunning: 1})
	r.Start()
	r.Post(events.Event{Type: events.Error, Reason: "data plane stopped"})
	waitFor(t, 10*time.Second, "no failure counted", func() bool { return r.Stats().Failed == 1 })
	waitFor(t, 5*time.Second, "failure not logged", func() bool {
		s := logs.String()
		return strings.Contains(s, "hook: failed") && strings.Contains(s, "output=boom") && strings.Contains(s, "exit status 3")
	})
	r.Post(events.Event{Type: events.NodeDown})
	r.Post(events.Event{Type: events.NodeDown}) // waits behind the first
	waitFor(t, 10*time.Second, "the hook did not start", func() bool { return len(pids(t, dir, "running-")) == 1 })
	t0 := time.Now()
	r.Close(200 * time.Millisecond)
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
	for _, p := range append(pids(t, dir, "running-"), pids(t, dir, "child-")...) {
		waitFor(t, 5*time.Second, fmt.Sprintf("pid %d survived Close", p), func() bool { return !alive(p) })
	}
	st := r.Stats()
	if st.Started != 2 || st.Dropped != 1 {
		t.Errorf("after close: %+v", st)
	}
	r.Post(events.Event{Type: events.NodeDown})
	if r.Stats().Dropped != 2 {
		t.Errorf("post after close: %+v", r.Stats())
	}
	if !strings.Contains(logs.String(), "hook: killed, the node is stopping") {
		t.Errorf("log:\n%s", logs.String())
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           "plain",
		"a\nb\r\tc\x00d":  "a b  c d",
		"del\x7f":         "del ",
		"bad\xffutf8":     "bad?utf8",
		"":                "",
		"10.0.0.1=a=b $x": "10.0.0.1=a=b $x",
	} {
		if got := Sanitize(in); got != want {
			t.Errorf("Sanitize(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Sanitize(strings.Repeat("x", 5000)); len(got) != MaxValue {
		t.Errorf("long value: %d bytes", len(got))
	}
	if got := Sanitize(strings.Repeat("€", 1000)); len(got) > MaxValue || !strings.HasPrefix(got, "€") || strings.ToValidUTF8(got, "") != got {
		t.Errorf("long UTF-8 value cut badly: %d bytes", len(got))
	}
}
