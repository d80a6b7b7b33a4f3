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
