package api

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// BGP is `show bgp`: the built-in speaker's sessions and its table, like
// Cisco's "show bgp summary" and "show bgp".
type BGP struct {
	Enabled   bool          `json:"enabled"`
	AS        uint32        `json:"as,omitempty"`
	RouterID  string        `json:"router_id,omitempty"`
	Neighbors []BGPNeighbor `json:"neighbors"`
	Routes    []BGPRoute    `json:"routes"`
}

// BGPNeighbor is one session.
type BGPNeighbor struct {
	Address     string    `json:"address"`
	AS          uint32    `json:"as"`
	Description string    `json:"description,omitempty"`
	Dynamic     bool      `json:"dynamic"` // accepted from a dynamic-neighbors range
	State       string    `json:"state"`   // Idle, Connect, Active, OpenSent, OpenConfirm, Established
	Since       time.Time `json:"since,omitzero"`
	UpDown      string    `json:"updn"`
	Received    uint64    `json:"prefixes_received"`
	Accepted    uint64    `json:"prefixes_accepted"`
	Advertised  uint64    `json:"prefixes_sent"`
	// LastError says why the session is not up (or last went down): a
	// refused connection, a NOTIFICATION received or sent, a hold timer.
	LastError string `json:"last_error,omitempty"`
}

// BGPRoute is one path of the BGP table.
type BGPRoute struct {
	Prefix   string   `json:"prefix"`
	NextHop  string   `json:"next_hop"`
	Neighbor string   `json:"neighbor,omitempty"` // empty: originated here
	ASPath   []uint32 `json:"as_path"`
	Best     bool     `json:"best"`
	// Installed: the path is the node's FIB route for the prefix (a
	// learned best path whose next hop is on the tunnel subnet).
	Installed bool   `json:"installed"`
	Note      string `json:"note,omitempty"` // why a best path is not installed
}

// BGPProvider is a Provider with a BGP speaker (package node implements
// it): GET /v1/bgp. Without it, /v1/bgp answers 404.
type BGPProvider interface {
	Provider
	BGP() BGP
}

// RenderBGP writes `show bgp`: the summary and why a session is down.
func RenderBGP(w io.Writer, b BGP, now time.Time) {
	if !b.Enabled {
		fmt.Fprintln(w, "BGP is not configured (no bgp section)")
		return
	}
	fmt.Fprintf(w, "BGP router identifier %s, local AS number %d\n", b.RouterID, b.AS)
	best := 0
	for _, r := range b.Routes {
		if r.Best {
			best++
		}
	}
	fmt.Fprintf(w, "%d paths, %d best\n\n", len(b.Routes), best)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Neighbor\tAS\tState\tUp/Down\tPfxRcd\tPfxAcc\tPfxSnt\tDescription\t")
	for _, n := range b.Neighbors {
		desc := n.Description
		if n.Dynamic {
			desc = strings.TrimSpace("*dynamic " + desc)
		}
		updn := n.UpDown
		if !n.Since.IsZero() {
			updn = UpDown(now.Sub(n.Since))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%s\t\n", n.Address, n.AS, n.State, updn, n.Received, n.Accepted, n.Advertised, desc)
	}
	tw.Flush()
	for _, n := range b.Neighbors {
		if n.State != "Established" && n.LastError != "" {
			fmt.Fprintf(w, "%s: %s: %s\n", n.Address, n.State, n.LastError)
		}
	}
}

// RenderBGPRoutes writes `show bgp routes`: every path with its next hop;
// '*' best, '>' installed in the FIB, 'i' originated here.
func RenderBGPRoutes(w io.Writer, b BGP) {
	if !b.Enabled {
		fmt.Fprintln(w, "BGP is not configured (no bgp section)")
		return
	}
	fmt.Fprintln(w, "Status: * best, > installed in the FIB, l local (originated here)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tPrefix\tNext hop\tFrom\tAS path\tNote\t")
	for _, r := range b.Routes {
		st := ""
		if r.Best {
			st += "*"
		}
		if r.Installed {
			st += ">"
		}
		from := r.Neighbor
		if from == "" {
			st += "l"
			from = "local"
		}
		path := make([]string, len(r.ASPath))
		for i, a := range r.ASPath {
			path[i] = fmt.Sprint(a)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", st, r.Prefix, r.NextHop, from, strings.Join(path, " "), r.Note)
	}
	tw.Flush()
}
