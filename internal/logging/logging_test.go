package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestPerComponentLevelsAndFormats(t *testing.T) {
	var buf bytes.Buffer
	lv := NewLevels(slog.LevelInfo, map[string]slog.Level{NHRP: slog.LevelDebug, DataPlane: slog.LevelError})
	h, err := New(&buf, "json", lv)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(h).With("node", "hub")
	nhrp, dp, node := For(log, NHRP), For(log, DataPlane), For(log, Node)
	nhrp.Debug("resolution sent", "target", "10.1.2.10")
	dp.Warn("key mismatch")
	dp.Error("write failed")
	node.Debug("hidden")
	node.Info("up")
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		lines = append(lines, m)
	}
	var got []string
	for _, m := range lines {
		got = append(got, m["component"].(string)+":"+m["msg"].(string))
	}
	want := []string{"nhrp:resolution sent", "dataplane:write failed", "node:up"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("logged %v, want %v", got, want)
	}
	// A reload changes the levels of loggers that exist.
	buf.Reset()
	lv.Set(slog.LevelWarn, nil)
	nhrp.Info("now hidden")
	dp.Warn("now shown")
	if s := buf.String(); strings.Contains(s, "now hidden") || !strings.Contains(s, "now shown") {
		t.Fatalf("after Set: %s", s)
	}
	if _, err := New(&buf, "xml", lv); err == nil {
		t.Fatal("xml accepted")
	}
	buf.Reset()
	th, _ := New(&buf, "text", lv)
	slog.New(th).Warn("plain", ComponentKey, DataPlane)
	if !strings.Contains(buf.String(), "component=dataplane") {
		t.Fatalf("text: %s", buf.String())
	}
}
