package node

import (
	"fmt"
	"slices"
	"time"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/events/hooks"
)

var _ api.EventsProvider = (*Node)(nil)

// hookGrace is how long a stopping node lets its hooks (node-down's among
// them) finish before it kills them.
const hookGrace = 2 * time.Second

// emit is the engine's OnEvent and the node's own: it names the node,
// publishes the event (the bus never waits) and queues the hooks that want
// it (the runner never waits either). It runs under the engine's lock.
func (n *Node) emit(ev events.Event) {
	ev.Node = n.cfg.Name
	ev = n.bus.Publish(ev)
	n.hooks.Post(ev)
}

// Events is the node's event bus.
func (n *Node) Events() *events.Bus { return n.bus }

// SubscribeEvents starts an event stream (GET /v1/events) with the last
// history events.
func (n *Node) SubscribeEvents(history int) (*events.Sub, error) { return n.bus.Subscribe(history) }

// HookStats returns the hook runner's counters.
func (n *Node) HookStats() hooks.Stats { return n.hooks.Stats() }

// hookSpecs turns the configuration's hooks (resolved: Path set) into the
// runner's.
func hookSpecs(cfg *config.Config) []hooks.Hook {
	var hs []hooks.Hook
	for i, h := range cfg.Hooks {
		x := hooks.Hook{Name: fmt.Sprintf("hooks[%d]", i), Path: h.Path, Argv0: h.Command[0],
			Args: slices.Clone(h.Command[1:]), Timeout: h.Timeout}
		for _, e := range h.Events {
			x.Events = append(x.Events, events.Type(e))
		}
		hs = append(hs, x)
	}
	return hs
}

// sameHooks reports whether two configurations have the same hooks, as
// written (not where their programs were found).
func sameHooks(a, b []config.Hook) bool {
	return slices.EqualFunc(a, b, func(x, y config.Hook) bool {
		return slices.Equal(x.Events, y.Events) && slices.Equal(x.Command, y.Command) && x.Timeout == y.Timeout
	})
}

// applyHooks is the hooks' part of a reload: when they changed, their
// programs are looked up again (an error refuses the reload) and the
// runner takes the new list; runs already started finish as they were.
// It returns the change to report, and a function that applies it (called
// once nothing else can refuse the reload).
func (n *Node) applyHooks(old, cfg *config.Config) (string, func(), error) {
	if sameHooks(old.Hooks, cfg.Hooks) {
		for i := range cfg.Hooks { // keep what start-up found
			cfg.Hooks[i].Path = old.Hooks[i].Path
		}
		return "", func() {}, nil
	}
	if err := cfg.ResolveHooks(); err != nil {
		return "", nil, fmt.Errorf("reload refused, still running the previous configuration: hooks: %w", err)
	}
	specs := hookSpecs(cfg)
	return fmt.Sprintf("hooks: %d (was %d)", len(cfg.Hooks), len(old.Hooks)), func() { n.hooks.SetHooks(specs) }, nil
}

// eventStats is `show stats`' events section.
func (n *Node) eventStats() map[string]uint64 {
	b, h := n.bus.Stats(), n.hooks.Stats()
	return map[string]uint64{
		"published": b.Published, "lost": b.Lost, "subscribers": uint64(b.Subscribers),
		"hooks_started": h.Started, "hooks_succeeded": h.Succeeded, "hooks_failed": h.Failed,
		"hooks_timed_out": h.TimedOut, "hooks_dropped": h.Dropped,
	}
}
