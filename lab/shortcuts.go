package lab

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dmvpn/dmvpn/api"
)

// ShortcutCheck is one spoke-to-spoke flow `dmvpn lab` expects to move to a
// direct path in phases 2 and 3.
type ShortcutCheck struct {
	From, Spoke, PeerSpoke, Dst, Prefix, Via, Label string
}

// ShortcutChecks: host-lan1 to host-lan2 (both on raw GRE) and to host-lan3
// (behind the NAT, over GRE-in-UDP).
var ShortcutChecks = []ShortcutCheck{
	{HostLAN1, Spoke1, Spoke2, "10.1.2.10", "10.1.2.0/24", "10.0.0.12", "host-lan1 -> host-lan2"},
	{HostLAN1, Spoke1, Spoke3, "10.1.3.10", "10.1.3.0/24", "10.0.0.13", "host-lan1 -> host-lan3 (NAT)"},
}

// HubRelayed returns how many packets the hub has relayed spoke to spoke.
func (l *Lab) HubRelayed(ctx context.Context) (uint64, error) {
	st, err := l.Stats(ctx, Hub)
	return st.DataPlane["hairpinned"], err
}

// Stats returns a node's counters.
func (l *Lab) Stats(ctx context.Context, node string) (api.Stats, error) {
	var st api.Stats
	err := l.ShowJSON(ctx, node, "stats", &st)
	return st, err
}

// HasShortcut reports whether node has resolved c: a shortcut route for the
// prefix (phase 3) or a resolved mapping for the next hop (phase 2).
func (l *Lab) HasShortcut(ctx context.Context, node string, c ShortcutCheck) (bool, error) {
	if l.opts.Phase == 3 {
		var rs []api.Route
		if err := l.ShowJSON(ctx, node, "routes", &rs); err != nil {
			return false, err
		}
		for _, r := range rs {
			if r.Prefix == c.Prefix && r.NextHop == c.Via && r.Source == "nhrp" && r.Best {
				return true, nil
			}
		}
		return false, nil
	}
	var es []api.NHRPEntry
	if err := l.ShowJSON(ctx, node, "nhrp", &es); err != nil {
		return false, err
	}
	for _, e := range es {
		if e.Protocol == c.Via && e.Type == "resolved" {
			return true, nil
		}
	}
	return false, nil
}

// demoShortcuts shows phases 2 and 3 at work: traffic first crosses the
// hub (which redirects, in phase 3), the spoke resolves, and once the
// shortcut is up the hub relays none of it.
func (l *Lab) demoShortcuts(ctx context.Context, out io.Writer, fail func(string, ...any)) {
	if l.opts.Phase < 2 {
		return
	}
	what := "resolution of the next hop"
	if l.opts.Phase == 3 {
		what = "redirect (Traffic Indication), resolution, shortcut route"
	}
	fmt.Fprintf(out, "\nphase %d: %s\n", l.opts.Phase, what)
	for _, c := range ShortcutChecks {
		ok := false
		deadline := time.Now().Add(10 * time.Second)
		for !ok && time.Now().Before(deadline) && ctx.Err() == nil {
			_ = l.Ping(ctx, c.From, c.Dst, 1)
			ok, _ = l.HasShortcut(ctx, c.Spoke, c)
		}
		if !ok {
			fail("%-48s no shortcut within 10 s", c.Label+": shortcut")
			continue
		}
		before, err1 := l.HubRelayed(ctx)
		res, perr := l.PingStats(ctx, c.From, c.Dst, 10)
		after, err2 := l.HubRelayed(ctx)
		switch {
		case perr != nil || err1 != nil || err2 != nil:
			fail("%-48s %s %v %v", c.Label+": direct", res, err1, err2)
		case after != before:
			fail("%-48s the hub still relayed %d packets", c.Label+": direct", after-before)
		default:
			fmt.Fprintf(out, "PASS %-48s %s, hub relayed none of them\n", c.Label+": direct", res)
		}
	}
	if st, err := l.Stats(ctx, Hub); err == nil && l.opts.Phase == 3 {
		fmt.Fprintf(out, "  hub: %d Traffic Indications sent, %d packets relayed spoke to spoke in all\n",
			st.NHRP["redirects_sent"], st.DataPlane["hairpinned"])
	}
	for _, view := range []string{"nhrp", "routes"} {
		fmt.Fprintf(out, "\n=== spoke1: dmvpn show %s -c %s\n", view, l.ConfigPath(Spoke1))
		if b, err := l.Show(ctx, Spoke1, view, false); err == nil {
			out.Write(b)
		} else {
			fail("show %s on spoke1: %v", view, strings.TrimSpace(err.Error()))
		}
	}
}
