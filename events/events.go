// Package events is what a node reports as it happens: an NHS coming up or
// going down, a registration accepted or refused, a shortcut up or down, a
// purge, an error. The NHRP engine emits Events through one callback
// (engine.Config.OnEvent), under its lock; the node posts them to a Bus,
// which stamps them with a sequence number, keeps the last ones (History)
// and hands them to its subscribers: `dmvpn events` (GET /v1/events on the
// API socket) and the hook runner (package events/hooks).
//
// Publishing never blocks and costs the same whoever listens: every
// subscriber has a bounded queue, and one that does not keep up loses
// events, and is told so by a Dropped marker carrying the count, where
// the gap is. Events are rare by design (state changes, never a refresh),
// so a node emits a handful per peer per holding time.
package events

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dmvpn/dmvpn/internal/textdist"
)

// Type names what happened.
type Type string

// Event types. Peer, NBMA, Prefix, Reason and Code mean, per type:
const (
	// NHSUp: our registration with an NHS was accepted (a spoke). Peer
	// and NBMA are the NHS's. Not repeated on refreshes.
	NHSUp Type = "nhs-up"
	// NHSDown: a registration that was up is gone: it expired without a
	// successful refresh, or the node shut down. Reason says which.
	NHSDown Type = "nhs-down"
	// NHSRefused: the NHS refused our registration; Code is the CIE code
	// (e.g. 14: unique address already registered), Reason its meaning.
	NHSRefused Type = "nhs-refused"
	// NHSError: the NHS answered our registration with an Error
	// Indication; Code is its error code.
	NHSError Type = "nhs-error"

	// RegistrationAccepted: a hub accepted a new binding (not a refresh):
	// Peer is the registrant's overlay address, NBMA where it registered
	// from, Reason "nat" when it is behind NAT.
	RegistrationAccepted Type = "registration-accepted"
	// RegistrationRefused: a hub refused a registration; Code is the CIE
	// code it answered with, Reason why.
	RegistrationRefused Type = "registration-refused"
	// RegistrationExpired: a binding's holding time ran out unrefreshed.
	RegistrationExpired Type = "registration-expired"
	// RegistrationRemoved: a binding was removed because its registrant
	// purged or withdrew it, or another NBMA address claimed it, and the
	// registrant did not answer the liveness probe. Reason says which.
	RegistrationRemoved Type = "registration-removed"

	// ShortcutUp: a resolution was answered and installed (a spoke): Peer
	// is the owner (next hop), NBMA where it is reached, Prefix the
	// shortcut route (phase 3; empty for a next-hop mapping, phase 2).
	// Not repeated when a shortcut in use is refreshed.
	ShortcutUp Type = "shortcut-up"
	// ShortcutDown: a shortcut went: purged by its peer or the NHS,
	// expired, evicted, dead (the direct path passes no traffic), moved,
	// or cleared. Peer and NBMA are the owner's, Prefix the routes that
	// went with it (comma-separated), Reason why.
	ShortcutDown Type = "shortcut-down"

	// PurgeReceived: a Purge Request arrived. Peer is the (first) address
	// it purges, NBMA where it came from. Acting on it may follow
	// (shortcut-down; registration-removed after a probe).
	PurgeReceived Type = "purge-received"
	// PurgeSent: this node sent a Purge Request: Peer is the address
	// purged, NBMA where it went.
	PurgeSent Type = "purge-sent"

	// NodeUp: the node started (its device, sockets and API are up).
	NodeUp Type = "node-up"
	// NodeDown: the node is stopping, after it deregistered.
	NodeDown Type = "node-down"
	// Error: something went wrong that stops part of the node (the data
	// plane); Reason says what.
	Error Type = "error"

	// BGPUp: a BGP session reached Established. Peer is the neighbor,
	// Reason "dynamic" for one accepted from a dynamic-neighbors range.
	BGPUp Type = "bgp-up"
	// BGPDown: an Established BGP session went down; Reason says why (a
	// NOTIFICATION, the hold timer, the connection closed).
	BGPDown Type = "bgp-down"

	// SAUp: an IPsec Child SA with a peer is up (NBMA is the peer's
	// endpoint; Reason: mode, transform, SPIs, ESP-in-UDP).
	SAUp Type = "sa-up"
	// SADown: a peer's Child SA went (deleted, dead peer, lifetime,
	// failed rekey) or its IKE SA never came up (Reason says which);
	// when it was the last, the peer's NHRP state goes too.
	SADown Type = "sa-down"
	// SARekeyed: a Child SA was replaced by a new one (Reason: the new
	// SPIs and the inbound SPI it replaces); traffic never stopped.
	SARekeyed Type = "sa-rekeyed"

	// Dropped is not an event but a marker in one subscriber's stream:
	// Dropped events were lost there because it did not keep up.
	Dropped Type = "dropped"
)

// Info describes an event type.
type Info struct {
	Type Type
	// Reserved types are never emitted yet.
	Reserved bool
	Doc      string
}

var infos = []Info{
	{NHSUp, false, "registration with an NHS accepted"},
	{NHSDown, false, "registration with an NHS lost (expired, shut down)"},
	{NHSRefused, false, "the NHS refused our registration (Code: CIE code)"},
	{NHSError, false, "the NHS sent an Error Indication about our registration"},
	{RegistrationAccepted, false, "hub: a new binding"},
	{RegistrationRefused, false, "hub: a registration refused (Code: CIE code)"},
	{RegistrationExpired, false, "hub: a binding expired"},
	{RegistrationRemoved, false, "hub: a binding purged, withdrawn or moved, after the registrant failed its probe"},
	{ShortcutUp, false, "a shortcut (resolved mapping, phase 3 route) installed"},
	{ShortcutDown, false, "a shortcut removed (purged, expired, evicted, dead path, moved, cleared)"},
	{PurgeReceived, false, "a Purge Request received"},
	{PurgeSent, false, "a Purge Request sent"},
	{NodeUp, false, "the node started"},
	{NodeDown, false, "the node is stopping"},
	{Error, false, "part of the node stopped on an error"},
	{BGPUp, false, "a BGP session reached Established"},
	{BGPDown, false, "an Established BGP session went down (Reason: why)"},
	{SAUp, false, "an IPsec Child SA with a peer is up (NBMA: the peer)"},
	{SADown, false, "a peer's IPsec SA went, or never came up (Reason: why)"},
	{SARekeyed, false, "an IPsec Child SA was replaced by a rekey"},
}

// Types returns every event type (reserved ones included, the Dropped
// marker not), in a fixed order.
func Types() []Info { return append([]Info(nil), infos...) }

// Lookup returns the description of the event type named name.
func Lookup(name string) (Info, bool) {
	for _, i := range infos {
		if string(i.Type) == name {
			return i, true
		}
	}
	return Info{}, false
}

// Names returns the names of the types that are emitted (not reserved).
func Names() []string {
	var v []string
	for _, i := range infos {
		if !i.Reserved {
			v = append(v, string(i.Type))
		}
	}
	return v
}

// Event is one thing that happened. Fields that do not apply are empty.
type Event struct {
	// Seq numbers the node's events from 1 (0 for a Dropped marker): a
	// gap means events were lost.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Type Type      `json:"type"`
	Node string    `json:"node,omitempty"`
	// Peer is the overlay address the event is about (an NHS, a
	// registrant, a shortcut's owner, the address purged).
	Peer string `json:"peer,omitempty"`
	// NBMA is the NBMA address (address, or address:port for
	// GRE-in-UDP) of Peer, or where a purge came from or went to.
	NBMA   string `json:"nbma,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Code is an NHRP CIE code or Error Indication code; 0: none.
	Code int `json:"code,omitempty"`
	// Dropped is, in a Dropped marker, how many events were lost.
	Dropped uint64 `json:"dropped,omitempty"`
}

// Fields returns the event's non-empty fields besides Seq, Time and Type,
// as name and value pairs in a fixed order (the text form, hooks'
// environment).
func (e Event) Fields() [][2]string {
	var v [][2]string
	add := func(k, s string) {
		if s != "" {
			v = append(v, [2]string{k, s})
		}
	}
	add("node", e.Node)
	add("peer", e.Peer)
	add("nbma", e.NBMA)
	add("prefix", e.Prefix)
	if e.Code != 0 {
		add("code", strconv.Itoa(e.Code))
	}
	add("reason", e.Reason)
	if e.Dropped != 0 {
		add("dropped", strconv.FormatUint(e.Dropped, 10))
	}
	return v
}

// String is the event in one line of text: time, type, then key=value for
// each field (values with spaces or quotes quoted), as `dmvpn events`
// prints it.
func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.Time.Format("2006-01-02T15:04:05.000Z07:00"))
	fmt.Fprintf(&b, " %-21s", e.Type)
	for _, f := range e.Fields() {
		b.WriteString(" ")
		b.WriteString(f[0])
		b.WriteString("=")
		if strings.ContainsAny(f[1], " \"=\\") || strings.IndexFunc(f[1], func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			b.WriteString(strconv.Quote(f[1]))
		} else {
			b.WriteString(f[1])
		}
	}
	return strings.TrimRight(b.String(), " ")
}

// Suggest returns the event name closest to name (a typo), or "".
func Suggest(name string) string {
	best, bestD := "", 4
	names := Names()
	sort.Strings(names)
	for _, n := range names {
		if d := textdist.Levenshtein(strings.ReplaceAll(strings.ToLower(name), "_", "-"), n); d < bestD && d <= len(n)/2 {
			best, bestD = n, d
		}
	}
	return best
}
