package engine

import (
	"bytes"
	"testing"
	"time"
)

// With ExportKeys, IKESAUp and IKESARekeyed carry the IKE SA's keys, the
// same on both sides; without it, none.
func TestExportKeys(t *testing.T) {
	n, i, r := up(t, Config{ExportKeys: true}, Config{ExportKeys: true})
	ki, kr := i.of(IKESAUp)[0].IKEKeys, r.of(IKESAUp)[0].IKEKeys
	if ki == nil || kr == nil {
		t.Fatal("no keys in IKESAUp with ExportKeys")
	}
	if ki.SPIi != kr.SPIi || ki.SPIr != kr.SPIr || !bytes.Equal(ki.SKei, kr.SKei) || !bytes.Equal(ki.SKer, kr.SKer) ||
		!bytes.Equal(ki.SKai, kr.SKai) || len(ki.SKei) == 0 || bytes.Equal(ki.SKei, ki.SKer) {
		t.Fatalf("the two sides' keys differ or are empty:\n%+v\n%+v", ki, kr)
	}
	if err := i.eng.RekeyIKE(n.now, hubEP); err != nil {
		t.Fatal(err)
	}
	n.runFor(time.Second)
	re := i.of(IKESARekeyed)
	if len(re) != 1 || re[0].IKEKeys == nil || re[0].IKEKeys.SPIi == ki.SPIi || bytes.Equal(re[0].IKEKeys.SKei, ki.SKei) {
		t.Fatalf("IKESARekeyed keys: %+v", re)
	}

	_, i2, _ := up(t, Config{}, Config{})
	if i2.of(IKESAUp)[0].IKEKeys != nil {
		t.Fatal("keys exported without ExportKeys")
	}
}

// ForceUDPEncap on either side puts IKE and ESP on UDP 4500 with no NAT:
// the other side sees a NAT in the fake hash, this side pretends to be
// behind one; the Child SAs are ESP-in-UDP and their keys work.
func TestForceUDPEncap(t *testing.T) {
	for _, side := range []string{"initiator", "responder"} {
		t.Run(side, func(t *testing.T) {
			ci, cr := Config{}, Config{}
			if side == "initiator" {
				ci.ForceUDPEncap = true
			} else {
				cr.ForceUDPEncap = true
			}
			_, i, r := up(t, ci, cr)
			for _, nd := range []*node{i, r} {
				ch := nd.liveChildren()
				if len(ch) != 1 || !ch[0].UDPEncap || ch[0].Peer.Port() != 4500 {
					t.Fatalf("%s: children %+v, want one ESP-in-UDP to port 4500", nd.addr, ch)
				}
			}
			espRoundTrip(t, i.liveChildren()[0], r.liveChildren()[0])
			_, i2, _ := up(t, Config{}, Config{})
			if i2.liveChildren()[0].UDPEncap {
				t.Fatal("without ForceUDPEncap and without a NAT, the SA is ESP-in-UDP")
			}
		})
	}
}
