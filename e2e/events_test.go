package e2e

// dmvpn events and hooks on the real lab. `dmvpn events --json` streams
// from the hub, spoke1 and spoke2 while the lab comes up, spoke1 gets a
// shortcut to spoke2, and spoke2 stops: each stream must carry its node's
// story in order (spoke1: NHS up, shortcut up, the purge and shortcut down;
// the hub: three registrations accepted, one each, then spoke2's purge and
// its removal once probed; spoke2: its shutdown, after which its stream
// ends by itself). A hook on the hub runs this test binary (the helper
// role hook-env) for each registration: its DMVPN_* variables must
// describe the spoke, and an argument a shell would expand stays literal.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
)

// eventStream is a `dmvpn events --json --history 256` run against a lab
// daemon, its lines collected as they come.
type eventStream struct {
	e      *env
	node   string
	cmd    *exec.Cmd
	out    *syncBuffer
	errOut *syncBuffer
	done   chan struct{}
	err    error // Wait's, once done is closed
}

// streamEvents starts `dmvpn events --json --history 256 -c <node's config>`
// once node's API answers (the history holds everything since the node
// started), and stops it by PID when the test ends if it has not ended.
func (e *env) streamEvents(node string) *eventStream {
	e.t.Helper()
	if err := e.poll(10*time.Second, 50*time.Millisecond, func() error { _, err := e.show(node); return err }); err != nil {
		e.t.Fatalf("%s's API: %v", node, err)
	}
	s := &eventStream{e: e, node: node, out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.CommandContext(e.ctx, e.l.Options().Binary, "events", "--json", "--history", "256", "-c", e.l.ConfigPath(node))
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.errOut
	s.cmd.Env = append(os.Environ(), e.l.Options().Env...)
	s.cmd.WaitDelay = time.Second
	if err := s.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-s.done:
			return
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM) // this PID only
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// events parses what the stream has printed so far.
func (s *eventStream) events() ([]events.Event, error) {
	var v []events.Event
	for _, line := range strings.Split(s.out.String(), "\n") {
		if line == "" {
			continue
		}
		var ev events.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			return v, fmt.Errorf("%s's stream: %v: %q", s.node, err, line)
		}
		v = append(v, ev)
	}
	return v, nil
}

// brief is "type peer" per event (for messages).
func brief(evs []events.Event) string {
	var v []string
	for _, e := range evs {
		v = append(v, strings.TrimSpace(string(e.Type)+" "+e.Peer))
	}
	return "[" + strings.Join(v, ", ") + "]"
}

// match is one expected event: its type, peer and (when set) a pattern
// its NBMA address, prefix and reason must match.
type match struct {
	typ                  events.Type
	peer                 string
	nbma, prefix, reason string // regexps; "" matches anything
}

func (m match) ok(e events.Event) bool {
	re := func(pat, s string) bool { return pat == "" || regexp.MustCompile(pat).MatchString(s) }
	return e.Type == m.typ && e.Peer == m.peer && re(m.nbma, e.NBMA) && re(m.prefix, e.Prefix) && re(m.reason, e.Reason)
}

func (m match) String() string { return strings.TrimSpace(string(m.typ) + " " + m.peer) }

// inOrder reports whether evs contains want as a subsequence; it returns
// the index in evs of each match.
func inOrder(evs []events.Event, want ...match) ([]int, error) {
	var at []int
	i := 0
	for _, w := range want {
		for i < len(evs) && !w.ok(evs[i]) {
			i++
		}
		if i == len(evs) {
			return at, fmt.Errorf("no %s after %v in %s", w, at, brief(evs))
		}
		at = append(at, i)
		i++
	}
	return at, nil
}

// waitFor polls the stream (bounded) until it holds want in order.
func (s *eventStream) waitFor(limit time.Duration, want ...match) []events.Event {
	s.e.t.Helper()
	var evs []events.Event
	err := s.e.poll(limit, 50*time.Millisecond, func() error {
		var err error
		if evs, err = s.events(); err != nil {
			return err
		}
		_, err = inOrder(evs, want...)
		return err
	})
	if err != nil {
		s.e.t.Fatalf("%s's events after %v: %v (stderr: %s)", s.node, limit, err, strings.TrimSpace(s.errOut.String()))
	}
	return evs
}

func count(evs []events.Event, typ events.Type, peer string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ && e.Peer == peer {
			n++
		}
	}
	return n
}

func TestEventsStreamShortcutAndPurge(t *testing.T) {
	testenv.RequireRoot(t)
	e := newShortcutLab(t, 'v', lab.Options{Phase: 3})
	e.startAll()
	hub, s1, s2 := e.streamEvents(lab.Hub), e.streamEvents(lab.Spoke1), e.streamEvents(lab.Spoke2)
	e.waitHubPeersUp(registerLimit, allSpokes...)
	e.waitDirect(flow12, directLimit)
	s1.waitFor(5*time.Second,
		match{typ: events.NodeUp, reason: "^spoke$"},
		match{typ: events.NHSUp, peer: "10.0.0.1", nbma: `^192\.0\.2\.1$`},
		match{typ: events.ShortcutUp, peer: "10.0.0.12", nbma: `^198\.51\.100\.65$`, prefix: `^10\.1\.2\.0/24$`, reason: `^resolved 10\.1\.2\.10$`})

	e.stopSpoke2Purged()
	evs := s1.waitFor(10*time.Second,
		match{typ: events.NHSUp, peer: "10.0.0.1"},
		match{typ: events.ShortcutUp, peer: "10.0.0.12"},
		match{typ: events.PurgeReceived, peer: "10.0.0.12", nbma: `^198\.51\.100\.65$`},
		match{typ: events.ShortcutDown, peer: "10.0.0.12", nbma: `^198\.51\.100\.65$`, prefix: `^10\.1\.2\.0/24$`, reason: `^purged by 198\.51\.100\.65$`})
	if n := count(evs, events.ShortcutUp, "10.0.0.12"); n != 1 {
		t.Errorf("spoke1 reported %d shortcut-up for spoke2, want 1: %s", n, brief(evs))
	}
	if n := count(evs, events.NHSUp, "10.0.0.1"); n != 1 {
		t.Errorf("spoke1 reported nhs-up %d times (refreshes are not events): %s", n, brief(evs))
	}
	t.Logf("spoke1's events: %s", brief(evs))

	evs = hub.waitFor(10*time.Second,
		match{typ: events.NodeUp, reason: "^hub$"},
		match{typ: events.PurgeReceived, peer: "10.0.0.12", nbma: `^198\.51\.100\.65$`},
		match{typ: events.RegistrationRemoved, peer: "10.0.0.12", nbma: `^198\.51\.100\.65$`, reason: `^purged; the registrant no longer answers$`})
	at, _ := inOrder(evs, match{typ: events.PurgeReceived, peer: "10.0.0.12"})
	for _, sp := range []struct{ peer, nbma string }{{"10.0.0.11", `^198\.51\.100\.1$`}, {"10.0.0.12", `^198\.51\.100\.65$`}, {"10.0.0.13", `^198\.51\.100\.129:\d+$`}} {
		if n := count(evs[:at[0]], events.RegistrationAccepted, sp.peer); n != 1 {
			t.Errorf("the hub accepted %s %d times before the purge, want once: %s", sp.peer, n, brief(evs))
		}
		if _, err := inOrder(evs, match{typ: events.RegistrationAccepted, peer: sp.peer, nbma: sp.nbma}); err != nil {
			t.Errorf("hub: %v", err)
		}
	}
	if _, err := inOrder(evs, match{typ: events.RegistrationAccepted, peer: "10.0.0.13", reason: `^behind NAT: claims 192\.168\.3\.2$`}); err != nil {
		t.Errorf("spoke3's registration does not say it is NATed: %v", err)
	}
	for i, ev := range evs {
		if ev.Node != lab.Hub || ev.Seq != uint64(i+1) || ev.Time.IsZero() {
			t.Errorf("hub event %d: %+v (want node hub, seq %d, a time)", i, ev, i+1)
		}
	}
	t.Logf("hub's events: %s", brief(evs))

	// spoke2's stream told its shutdown, then ended by itself: exit 0.
	select {
	case <-s2.done:
	case <-time.After(10 * time.Second):
		t.Fatal("spoke2's event stream did not end when spoke2 stopped")
	}
	if s2.err != nil || !strings.Contains(s2.errOut.String(), "the node stopped") {
		t.Errorf("spoke2's dmvpn events: %v, stderr %q", s2.err, s2.errOut.String())
	}
	evs, err := s2.events()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inOrder(evs,
		match{typ: events.NHSUp, peer: "10.0.0.1"},
		match{typ: events.PurgeSent, peer: "10.0.0.12", nbma: `^198\.51\.100\.1$`},
		match{typ: events.PurgeSent, peer: "10.0.0.12", nbma: `^192\.0\.2\.1$`, reason: "deregistering"},
		match{typ: events.NHSDown, peer: "10.0.0.1", reason: "^shut down$"},
		match{typ: events.NodeDown}); err != nil || evs[len(evs)-1].Type != events.NodeDown {
		t.Errorf("spoke2's last events: %v: %s", err, brief(evs))
	}
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke3)
}

// hookEnv is the helper role run by the hub's hook: it writes its argv and
// DMVPN_* variables to DIR/hook-<DMVPN_SEQ>.json.
func hookEnv(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("usage: hook-env DIR [ARGS...]")
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "DMVPN_") {
			env[k] = v
		}
	}
	b, err := json.Marshal(map[string]any{"args": args, "env": env})
	if err != nil {
		return err
	}
	f := filepath.Join(args[0], "hook-"+env["DMVPN_SEQ"]+".json")
	if err := os.WriteFile(f+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(f+".tmp", f)
}

func TestEventsHookOnTheHub(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	e := newLab(t, 'h', lab.Options{Env: []string{helperEnv + "=hook-env"}})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	literal := "$(touch " + marker + ")"
	hook := fmt.Sprintf("hooks:\n  - event: registration-accepted\n    command: [%q, %q, %q, %q, %q]\n    timeout: 10s\n",
		self, "-test.run=^TestHelperProcess$", "--", dir, literal)
	f, err := os.OpenFile(e.l.ConfigPath(lab.Hub), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(hook); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)

	type run struct {
		Args []string
		Env  map[string]string
	}
	var runs []run
	if err := e.poll(10*time.Second, 50*time.Millisecond, func() error {
		files, _ := filepath.Glob(filepath.Join(dir, "hook-*.json"))
		if len(files) < 3 {
			return fmt.Errorf("%d hook runs recorded, want 3 (hub log: %s)", len(files), e.l.Tail(lab.Hub, 5))
		}
		runs = nil
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			var r run
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("%s: %v", f, err)
			}
			runs = append(runs, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Env["DMVPN_PEER"] < runs[j].Env["DMVPN_PEER"] })
	nbma := map[string]*regexp.Regexp{"10.0.0.11": exactly("198.51.100.1"), "10.0.0.12": exactly("198.51.100.65"),
		"10.0.0.13": regexp.MustCompile(`^198\.51\.100\.129:\d+$`)}
	want := []string{"10.0.0.11", "10.0.0.12", "10.0.0.13"}
	for i, r := range runs {
		env := r.Env
		if len(runs) != 3 || env["DMVPN_PEER"] != want[i] {
			t.Fatalf("hook runs for %v, want one per spoke %v", runs, want)
		}
		if env["DMVPN_EVENT"] != "registration-accepted" || env["DMVPN_NODE"] != "hub" || !nbma[want[i]].MatchString(env["DMVPN_NBMA"]) ||
			env["DMVPN_PREFIX"] != "" || env["DMVPN_CODE"] != "" {
			t.Errorf("hook run for %s: %v", want[i], env)
		}
		if seq, err := strconv.Atoi(env["DMVPN_SEQ"]); err != nil || seq < 2 {
			t.Errorf("DMVPN_SEQ %q", env["DMVPN_SEQ"])
		}
		if ts, err := time.Parse(time.RFC3339Nano, env["DMVPN_TIME"]); err != nil || time.Since(ts) > time.Minute {
			t.Errorf("DMVPN_TIME %q: %v", env["DMVPN_TIME"], err)
		}
		if fmt.Sprint(r.Args) != fmt.Sprint([]string{dir, literal}) {
			t.Errorf("hook arguments %q, want %q", r.Args, []string{dir, literal})
		}
		t.Logf("hook run: %v", env)
	}
	if r := runs[2].Env["DMVPN_REASON"]; r != "behind NAT: claims 192.168.3.2" {
		t.Errorf("spoke3's DMVPN_REASON %q", r)
	}
	for _, r := range runs[:2] {
		if r.Env["DMVPN_REASON"] != "" {
			t.Errorf("DMVPN_REASON %q for a spoke not behind NAT", r.Env["DMVPN_REASON"])
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("a hook argument went through a shell: %s exists", marker)
	}
	if err := e.poll(5*time.Second, 50*time.Millisecond, func() error {
		st := e.stats(lab.Hub).Events
		if st["hooks_succeeded"] != 3 || st["hooks_failed"]+st["hooks_timed_out"]+st["hooks_dropped"] != 0 {
			return fmt.Errorf("hub's hook counters %v", st)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
}
