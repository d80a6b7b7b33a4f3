// Package ratelog bounds what hostile input can make a daemon log: each
// message (its text is the key) is logged at most Burst times per Interval;
// the rest are counted, and the next line logged for that message carries
// the count as "suppressed". The set of keys is bounded too: past MaxKeys
// distinct messages, the others share one budget.
//
// Time is passed in (the NHRP engine is sans-IO and tests use a fake
// clock). A Limiter is safe for concurrent use.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Defaults for the zero fields of New's arguments.
const (
	DefaultInterval = 10 * time.Second
	DefaultBurst    = 5
	MaxKeys         = 256
	overflowKey     = "\x00other"
)

type window struct {
	start      time.Time
	logged     int
	suppressed uint64
}

// Limiter rate-limits log lines per message.
type Limiter struct {
	log      *slog.Logger
	interval time.Duration
	burst    int

	mu   sync.Mutex
	keys map[string]*window
	// Suppressed counts every line not logged, over the limiter's life.
	total uint64
}

// New returns a limiter logging to log, at most burst lines per message
// per interval (zero: the defaults).
func New(log *slog.Logger, interval time.Duration, burst int) *Limiter {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	return &Limiter{log: log, interval: interval, burst: burst, keys: map[string]*window{}}
}

// Log logs msg at level with args unless msg has used its budget for the
// current interval.
func (l *Limiter) Log(now time.Time, level slog.Level, msg string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.mu.Lock()
	key := msg
	w, ok := l.keys[key]
	if !ok {
		if len(l.keys) >= MaxKeys {
			key = overflowKey
			w = l.keys[key]
		}
		if w == nil {
			w = &window{start: now}
			l.keys[key] = w
		}
	}
	if now.Sub(w.start) >= l.interval || now.Before(w.start) {
		w.start, w.logged = now, 0
	}
	if w.logged >= l.burst {
		w.suppressed++
		l.total++
		l.mu.Unlock()
		return
	}
	w.logged++
	n := w.suppressed
	w.suppressed = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Log(context.Background(), level, msg, args...)
}

// Warn is Log at slog.LevelWarn.
func (l *Limiter) Warn(now time.Time, msg string, args ...any) {
	l.Log(now, slog.LevelWarn, msg, args...)
}

// Info is Log at slog.LevelInfo.
func (l *Limiter) Info(now time.Time, msg string, args ...any) {
	l.Log(now, slog.LevelInfo, msg, args...)
}

// Debug is Log at slog.LevelDebug.
func (l *Limiter) Debug(now time.Time, msg string, args ...any) {
	l.Log(now, slog.LevelDebug, msg, args...)
}

// Suppressed is how many lines the limiter has dropped.
func (l *Limiter) Suppressed() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}
