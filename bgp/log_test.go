package bgp

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestGobgpLog(t *testing.T) {
	var buf bytes.Buffer
	out := slog.New(slog.NewTextHandler(&buf, nil)).With("component", "bgp")
	type dial struct{ peer, err string }
	var dials []dial
	var notes [][3]int
	l, sh := newGobgpLog(out,
		func(p, e string) { dials = append(dials, dial{p, e}) },
		func(p string, c, s int) { notes = append(notes, [3]int{len(p), c, s}) })

	l.Info("Add a peer group configuration", slog.String("Topic", "Peer"))
	l.Debug("failed to connect", slog.String("Error", "not from a neighbor logger"))
	if buf.Len() != 0 || len(dials) != 0 {
		t.Fatalf("GoBGP's info and debug lines leaked: %q %v", buf.String(), dials)
	}
	if l.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("Debug enabled on the server logger: every GoBGP debug call would build a record")
	}

	peer := l.With(slog.String("Topic", "Peer"), slog.String("Key", "10.0.0.1"))
	if !peer.Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("Debug must be enabled on neighbor loggers to see failed connections")
	}
	peer.Debug("failed to connect", slog.String("Error", "dial tcp 10.0.0.1:179: connect: connection refused"))
	peer.Info("sent notification", slog.String("State", "BGP_FSM_OPENSENT"), slog.Int("Code", 2), slog.Int("Subcode", 2), slog.Any("Data", []byte(nil)))
	peer.Debug("received update", slog.Any("nlri", nil))
	if len(dials) != 1 || dials[0].peer != "10.0.0.1" || !strings.Contains(dials[0].err, "connection refused") {
		t.Errorf("dial failures: %+v", dials)
	}
	if len(notes) != 1 || notes[0] != [3]int{len("10.0.0.1"), 2, 2} {
		t.Errorf("notifications: %+v", notes)
	}
	if buf.Len() != 0 {
		t.Errorf("caught lines were also logged: %q", buf.String())
	}

	peer.WithGroup("g").Warn("prefix limit reached", slog.String("Family", "ipv4-unicast"))
	line := buf.String()
	for _, want := range []string{"level=WARN", "component=bgp", "source=gobgp", "Topic=Peer", "Key=10.0.0.1", "g.Family=ipv4-unicast", `msg="prefix limit reached"`} {
		if !strings.Contains(line, want) {
			t.Errorf("forwarded line %q lacks %s", line, want)
		}
	}

	// A peer can provoke warnings: they are rate-limited per message.
	buf.Reset()
	for i := 0; i < 1000; i++ {
		l.Warn("Session will be reset due to malformed BGP update message")
	}
	if n := strings.Count(buf.String(), "\n"); n > 5 {
		t.Errorf("%d lines for 1000 identical warnings", n)
	}

	buf.Reset()
	sh.stopping.Store(true)
	l.Error("failed to stop BGP server", slog.String("Topic", "BgpServer"))
	l.Error("something else")
	if strings.Contains(buf.String(), "failed to stop") || !strings.Contains(buf.String(), "something else") {
		t.Errorf("while stopping: %q", buf.String())
	}
}
