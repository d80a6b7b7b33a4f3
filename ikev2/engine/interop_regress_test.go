package engine

// Regressions found by interop with strongSwan (e2e/ike_strongswan_test.go).

import (
	"errors"
	"testing"
	"time"
)

// An SA behind NAT moves: the initiator floats to the peer's UDP 4500, a
// responder follows the NAT's mapping of the peer's 4500 flow. Its events
// and SAs() then name the endpoint it is at now, not the one it was
// indexed by at IKE_SA_INIT; Delete with that endpoint must find it
// (found against strongSwan's kernel-libipsec, which fakes a NAT to force
// UDP encapsulation, so every SA with it floats: Delete(event.Peer)
// returned ErrNoSA and the SA could not be deleted by any name the engine
// reported).
func TestDeleteByEndpointAfterFloat(t *testing.T) {
	for _, side := range []string{"initiator", "responder"} {
		t.Run(side, func(t *testing.T) {
			n := newNet(t)
			r := n.add(hubAddr, Config{})
			i := n.add(spokeAddr, Config{})
			n.behindNAT(i, "203.0.113.7")
			if err := i.eng.Initiate(n.now, hubEP); err != nil {
				t.Fatal(err)
			}
			n.runFor(time.Second)
			checkPair(t, i, r)
			del, other := i, r
			if side == "responder" {
				del, other = r, i
			}
			up := del.of(IKESAUp)
			if len(up) != 1 || up[0].Peer.Port() == 500 && side == "initiator" {
				t.Fatalf("%s: IKESAUp %+v, want one, floated to 4500", side, up)
			}
			if got := del.eng.SAs(); len(got) != 1 || got[0].Peer != up[0].Peer {
				t.Fatalf("SAs() %+v, want the SA at %v", got, up[0].Peer)
			}
			if err := del.eng.Delete(n.now, up[0].Peer, "operator"); err != nil {
				t.Fatalf("Delete(%v), the endpoint IKESAUp named: %v", up[0].Peer, err)
			}
			n.runFor(time.Second)
			for _, nd := range []*node{del, other} {
				if len(nd.eng.SAs()) != 0 || len(nd.liveChildren()) != 0 || len(nd.of(IKESADown)) != 1 {
					t.Fatalf("%s: SAs %+v, events %s", nd.addr, nd.eng.SAs(), types(nd.events))
				}
			}
			if d := other.of(IKESADown); d[0].Reason != "deleted by the peer" {
				t.Fatalf("other side: %s", types(other.events))
			}
			// Nothing left to delete under either name.
			if err := del.eng.Delete(n.now, up[0].Peer, "again"); !errors.Is(err, ErrNoSA) {
				t.Fatalf("second Delete: %v, want ErrNoSA", err)
			}
		})
	}
}
