package engine

import (
	"testing"
	"time"
)

// Simultaneous Child SA rekeys with the initiator behind a NAT (the
// bench's spoke3 -> spoke1 case): both sides end with one Child SA pair.
func TestRekeyCollisionBehindNAT(t *testing.T) {
	for seed := byte(1); seed <= 8; seed++ {
		n := newNet(t)
		r := n.add(hubAddr, Config{Rand: seeded(seed)})
		i := n.add(spokeAddr, Config{Rand: seeded(seed + 100)})
		n.behindNAT(i, "203.0.113.7")
		must(t, i.eng.Initiate(n.now, hubEP))
		n.runFor(time.Second)
		checkPair(t, i, r)
		must(t, i.eng.RekeyChild(n.now, i.liveChildren()[0].Inbound.SPI))
		must(t, r.eng.RekeyChild(n.now, r.liveChildren()[0].Inbound.SPI))
		n.runFor(2 * time.Minute)
		for _, nd := range []*node{i, r} {
			if len(nd.liveChildren()) != 1 {
				t.Fatalf("seed %d: %s has %d live Child SAs; events %s", seed, nd.addr, len(nd.liveChildren()), types(nd.events))
			}
		}
		checkRekeyed(t, i, r)
	}
}
