// Package logging is the daemon's slog set-up: a text or JSON handler with
// a default level and per-component levels. Every subsystem logs through a
// logger carrying its component as an attribute (component=nhrp,
// dataplane, node, ...), never as a message prefix, so a log pipeline can
// filter on it and an operator can turn one subsystem to debug
// (log-levels: {nhrp: debug}) without drowning in the others.
//
// The levels live behind atomic values, so a reload changes them for
// loggers that already exist.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
)

// ComponentKey is the attribute that names a subsystem.
const ComponentKey = "component"

// Components a node logs under.
const (
	NHRP      = "nhrp"      // the NHRP engine
	DataPlane = "dataplane" // packet forwarding
	Node      = "node"      // assembly, control loop, reload
	Route     = "localroute"
	API       = "api"
	BGP       = "bgp"   // the BGP speaker and the routes it installs
	IPsec     = "ipsec" // IKEv2 and the ESP layer
)

// Components lists the known component names (for validation).
var Components = []string{NHRP, DataPlane, Node, Route, API, BGP, IPsec, "metrics", "events", "capture"}

// Levels is the default level and the per-component overrides; safe for
// concurrent use, changed by Set.
type Levels struct {
	def  slog.LevelVar
	comp atomic.Pointer[map[string]slog.Level]
}

// NewLevels returns levels with default def and overrides per component.
func NewLevels(def slog.Level, per map[string]slog.Level) *Levels {
	l := &Levels{}
	l.Set(def, per)
	return l
}

// Set replaces the default and the overrides.
func (l *Levels) Set(def slog.Level, per map[string]slog.Level) {
	m := make(map[string]slog.Level, len(per))
	for k, v := range per {
		m[k] = v
	}
	l.def.Set(def)
	l.comp.Store(&m)
}

// For returns the level that applies to component c ("" for none).
func (l *Levels) For(c string) slog.Level {
	if v, ok := (*l.comp.Load())[c]; ok {
		return v
	}
	return l.def.Level()
}

// Default returns the default level.
func (l *Levels) Default() slog.Level { return l.def.Level() }

// New returns a handler writing format ("text" or "json") to w, filtered
// by levels.
func New(w io.Writer, format string, levels *Levels) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: slog.LevelDebug - 4} // filtering is ours
	var h slog.Handler
	switch format {
	case "", "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("logging: format %q (valid: text, json)", format)
	}
	return &handler{inner: h, levels: levels}, nil
}

// handler filters records by the level of the component its logger
// carries.
type handler struct {
	inner     slog.Handler
	levels    *Levels
	component string
}

func (h *handler) Enabled(_ context.Context, lvl slog.Level) bool {
	return lvl >= h.levels.For(h.component)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if h.component == "" {
		// A component given on the record itself (log.Info(msg,
		// "component", c)) counts too.
		c := ""
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == ComponentKey {
				c = a.Value.String()
				return false
			}
			return true
		})
		if c != "" && r.Level < h.levels.For(c) {
			return nil
		}
	}
	return h.inner.Handle(ctx, r)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := h.component
	for _, a := range attrs {
		if a.Key == ComponentKey {
			c = a.Value.String()
		}
	}
	return &handler{inner: h.inner.WithAttrs(attrs), levels: h.levels, component: c}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{inner: h.inner.WithGroup(name), levels: h.levels, component: h.component}
}

// For returns log with component c.
func For(log *slog.Logger, c string) *slog.Logger { return log.With(ComponentKey, c) }
