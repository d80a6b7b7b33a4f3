package bgp

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
)

func TestNotificationCode(t *testing.T) {
	for _, tc := range []struct {
		msg       string
		code, sub uint8
		ok        bool
	}{
		{"notification-received code 2(open) subcode 2(bad peer as)", 2, 2, true},
		{"notification-sent code 6(cease) subcode 1(maximum number of prefixes reached)", 6, 1, true},
		{"hold-timer-expired", 0, 0, false},
		{"code 999(x) subcode 1(y)", 0, 0, false},
		{"", 0, 0, false},
	} {
		c, s, ok := notificationCode(tc.msg)
		if c != tc.code || s != tc.sub || ok != tc.ok {
			t.Errorf("notificationCode(%q) = %d, %d, %v", tc.msg, c, s, ok)
		}
	}
}

func TestDownReasons(t *testing.T) {
	c := &Config{AS: 65000, RouterID: netip.MustParseAddr("10.0.0.1"), MaxPrefixes: 100,
		Dynamic: []DynamicRange{{Prefix: netip.MustParsePrefix("10.0.0.0/16"), AS: 65001}, {Prefix: netip.MustParsePrefix("10.0.5.0/24"), AS: 65005}}}
	tb := newPeerTable(c)
	static := &peerTrack{addr: netip.MustParseAddr("10.9.0.1"), static: true, n: Neighbor{AS: 65099}}
	dyn := &peerTrack{addr: netip.MustParseAddr("10.0.5.7"), dynamic: true}
	for _, tc := range []struct {
		p    *peerTrack
		old  State
		st   apiutil.PeerState
		want string // "" = not a failure
	}{
		{static, StateEstablished, apiutil.PeerState{DisconnectReason: api.PeerState_DISCONNECT_REASON_HOLD_TIMER_EXPIRED}, "hold timer expired"},
		{static, StateEstablished, apiutil.PeerState{DisconnectReason: api.PeerState_DISCONNECT_REASON_NOTIFICATION_RECEIVED,
			DisconnectMessage: "notification-received code 6(cease) subcode 3(peer deconfigured)"}, "peer de-configured"},
		{static, StateOpenConfirm, apiutil.PeerState{DisconnectReason: api.PeerState_DISCONNECT_REASON_NOTIFICATION_RECEIVED,
			DisconnectMessage: "notification-received code 2(open) subcode 2(bad peer as)"}, "does not expect our AS 65000"},
		{static, StateOpenSent, apiutil.PeerState{DisconnectReason: api.PeerState_DISCONNECT_REASON_BAD_PEER_AS}, "other than 65099"},
		{dyn, StateOpenSent, apiutil.PeerState{DisconnectReason: api.PeerState_DISCONNECT_REASON_BAD_PEER_AS}, "other than 65005"},
		{static, StateOpenSent, apiutil.PeerState{DisconnectReason: api.PeerState_DISCONNECT_REASON_INVALID_MSG}, "refused our OPEN"},
		{static, StateEstablished, apiutil.PeerState{DisconnectReason: api.PeerState_DISCONNECT_REASON_INVALID_MSG}, "malformed"},
		{static, StateEstablished, apiutil.PeerState{AdminState: api.PeerState_ADMIN_STATE_PFX_CT}, "more than 100"},
		{static, StateIdle, apiutil.PeerState{DisconnectReason: api.PeerState_DISCONNECT_REASON_IDLE_TIMER_EXPIRED}, ""},
		{static, StateEstablished, apiutil.PeerState{DisconnectReason: api.PeerState_DISCONNECT_REASON_DECONFIGURED}, ""},
	} {
		got := tb.downReason(tc.p, tc.old, &tc.st)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%v from %v: %q, want %q", tc.st.DisconnectReason, tc.old, got, tc.want)
		}
	}
}

func TestDialFailedWords(t *testing.T) {
	c := &Config{AS: 65000, Password: "x", LocalAddress: netip.MustParseAddr("10.0.0.2")}
	tb := newPeerTable(c)
	n := Neighbor{Address: netip.MustParseAddr("10.0.0.1"), AS: 65000, Port: 1179}
	tb.configure(n)
	for _, tc := range []struct{ err, want string }{
		{"dial tcp 10.0.0.1:1179: connect: connection refused", "10.0.0.1:1179: connection refused"},
		{"dial tcp 10.0.0.1:1179: i/o timeout", "MD5 password differs"},
		{"dial tcp 10.0.0.1:1179: connect: no route to host", "no route"},
		{"dial tcp 10.0.0.2:0->10.0.0.1:1179: bind: cannot assign requested address", "10.0.0.2 is not one of ours"},
		{"something new", "something new"},
	} {
		tb.dialFailed("10.0.0.1", tc.err)
		if got := tb.m[n.Address].lastError; !strings.Contains(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.err, got, tc.want)
		}
	}
	tb.dialFailed("10.0.0.99", "connection refused") // not ours: ignored
	tb.dialFailed("garbage", "connection refused")
	if len(tb.m) != 1 {
		t.Errorf("entries for unknown peers: %v", tb.m)
	}
	for i := StateUnknown; i <= StateEstablished+1; i++ {
		if i.String() == "" {
			t.Errorf("State %d has no name", i)
		}
	}
}
