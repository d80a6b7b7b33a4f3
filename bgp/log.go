package bgp

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/dmvpn/dmvpn/internal/ratelog"
)

// gobgpLog adapts GoBGP's slog output to ours. GoBGP logs a great deal at
// Info and Debug (every session, every UPDATE at Debug); we pass on only
// Warn and above, through a rate limiter because a peer can provoke them
// (malformed UPDATEs, prefix limits), with component "bgp" and
// source "gobgp".
//
// Two lower lines are worth catching, because GoBGP tells nobody else why
// an active session does not come up: a failed connection attempt ("failed
// to connect" at Debug, with the dial error: refused, or a timeout when the
// peer is down or the TCP MD5 passwords differ), and a NOTIFICATION we send
// while opening a session ("sent notification" at Info: our check of the
// neighbor's OPEN failed, e.g. bad peer AS), which GoBGP's dialer does
// without any state change or event. Both come from the per-neighbor
// logger (With Topic=Peer, Key=address), so only handlers derived with
// those attributes report Debug and Info as enabled: GoBGP's other calls
// (the server's and the tables') stay as cheap as if they were off. The
// per-neighbor ones build a slog.Record that is dropped at once (one per
// UPDATE sent or received, about 100 ns).
type gobgpLog struct {
	shared *gobgpLogShared
	attrs  []slog.Attr // accumulated With attributes, passed on with each line
	group  string
	peer   string // Key attribute of a per-neighbor logger
}

type gobgpLogShared struct {
	out      *slog.Logger
	limit    *ratelog.Limiter
	onDial   func(peer, err string)           // a failed connection attempt to peer
	onNotify func(peer string, code, sub int) // we sent peer a NOTIFICATION
	stopping atomic.Bool                      // Stop is running: its expected complaint is noise
}

func newGobgpLog(out *slog.Logger, onDial func(peer, err string), onNotify func(peer string, code, sub int)) (*slog.Logger, *gobgpLogShared) {
	sh := &gobgpLogShared{
		out:      out,
		limit:    ratelog.New(out, ratelog.DefaultInterval, ratelog.DefaultBurst),
		onDial:   onDial,
		onNotify: onNotify,
	}
	return slog.New(&gobgpLog{shared: sh}), sh
}

func (h *gobgpLog) Enabled(ctx context.Context, l slog.Level) bool {
	if l >= slog.LevelWarn {
		return h.shared.out.Enabled(ctx, l)
	}
	return h.peer != "" && (l == slog.LevelDebug || l == slog.LevelInfo)
}

func (h *gobgpLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		if h.peer == "" {
			return nil
		}
		switch {
		case r.Message == "failed to connect" && h.shared.onDial != nil:
			var msg string
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "Error" {
					msg = a.Value.String()
					return false
				}
				return true
			})
			h.shared.onDial(h.peer, msg)
		case r.Message == "sent notification" && h.shared.onNotify != nil:
			code, sub := -1, -1
			r.Attrs(func(a slog.Attr) bool {
				switch a.Key {
				case "Code":
					code = int(a.Value.Int64())
				case "Subcode":
					sub = int(a.Value.Int64())
				}
				return true
			})
			if code >= 0 && sub >= 0 {
				h.shared.onNotify(h.peer, code, sub)
			}
		}
		return nil
	}
	if h.shared.stopping.Load() && r.Message == "failed to stop BGP server" {
		// Stop calls GoBGP's StopBgp (to choose whether to send a Cease)
		// and then its Stop (the only way to end its BFD goroutine), which
		// calls StopBgp again and complains that it is not running.
		return nil
	}
	args := make([]any, 0, 2*(len(h.attrs)+r.NumAttrs())+2)
	args = append(args, "source", "gobgp")
	for _, a := range h.attrs {
		args = append(args, a)
	}
	r.Attrs(func(a slog.Attr) bool {
		if h.group != "" {
			a.Key = h.group + "." + a.Key
		}
		args = append(args, a)
		return true
	})
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	h.shared.limit.Log(t, r.Level, r.Message, args...)
	return nil
}

func (h *gobgpLog) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	topicPeer := false
	key := ""
	for _, a := range n.attrs {
		switch a.Key {
		case "Topic":
			topicPeer = a.Value.String() == "Peer"
		case "Key":
			key = a.Value.String()
		}
	}
	if topicPeer {
		n.peer = key
	}
	return &n
}

func (h *gobgpLog) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	if n.group != "" {
		name = n.group + "." + name
	}
	n.group = name
	return &n
}
