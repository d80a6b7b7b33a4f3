package ratelog

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestBurstThenSuppressedCount(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), 10*time.Second, 3)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 50000; i++ {
		l.Warn(t0.Add(time.Duration(i)*time.Microsecond), "refused", "i", i)
	}
	if n := strings.Count(buf.String(), "\n"); n != 3 {
		t.Fatalf("%d lines logged, want 3:\n%s", n, buf.String())
	}
	l.Warn(t0.Add(10*time.Second), "refused", "i", -1)
	last := lastLine(buf.String())
	if !strings.Contains(last, "suppressed=49997") {
		t.Fatalf("next line does not carry the count: %s", last)
	}
	if l.Suppressed() != 49997 {
		t.Fatalf("total %d", l.Suppressed())
	}
	// Another message has its own budget.
	l.Warn(t0.Add(10*time.Second), "other")
	if !strings.Contains(lastLine(buf.String()), "other") {
		t.Fatal("second message suppressed")
	}
}

func TestKeysBounded(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute, 1)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 10*MaxKeys; i++ {
		l.Warn(t0, fmt.Sprint("m", i))
	}
	if len(l.keys) > MaxKeys+1 {
		t.Fatalf("%d keys", len(l.keys))
	}
	if n := strings.Count(buf.String(), "\n"); n > MaxKeys+1 {
		t.Fatalf("%d lines", n)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
