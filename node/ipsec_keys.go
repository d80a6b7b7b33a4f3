package node

import (
	"errors"
	"fmt"

	ikeengine "github.com/dmvpn/dmvpn/ikev2/engine"
)

// withKeyExport asks the engine for the IKE SAs' keys in its events (for
// the key log).
func withKeyExport(c ikeengine.Config) ikeengine.Config {
	c.ExportKeys = true
	return c
}

// ike writes the ikev2_decryption_table record of an IKE SA (IKESAUp,
// IKESARekeyed). ChaCha20-Poly1305 has no name in Wireshark's table: such
// an SA is left out.
func (k *keyLog) ike(ev ikeengine.Event) {
	if ev.IKEKeys == nil {
		return
	}
	b, err := ev.IKEKeys.AppendWireshark(nil)
	if err != nil {
		return
	}
	k.write(b)
}

// rekeyChildSA asks the engine to rekey the Child SA with inbound SPI spi.
func (n *Node) rekeyChildSA(spi uint32) {
	if err := n.ipsec.ike.RekeyChild(n.clk.Now(), spi); err != nil && !errors.Is(err, ikeengine.ErrNoSA) {
		n.ipsec.log.Warn(n.clk.Now(), "cannot rekey Child SA", "spi", fmt.Sprintf("%#08x", spi), "err", err)
	}
}

// ikeChildren is how many Child SAs an IKE SA has.
func ikeChildren(sa ikeengine.SAStatus) int { return sa.NumChildren }
