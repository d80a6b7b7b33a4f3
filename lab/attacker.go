package lab

import (
	"context"
	"net/netip"
)

// Attacker is the optional node of a lab built with Options.Attacker: a
// namespace hanging off the inet router like any other site, with nothing
// of DMVPN in it. Tests run their attacker programs there. Since the inet
// router has rp_filter=0, packets sent from it with a forged source address
// (raw sockets, IP_HDRINCL) reach the hub and the spokes.
//
//	attacker | wan0 203.0.113.66/24 -- to-attacker 203.0.113.254/24 | inet
const Attacker = "attacker"

// Addressing of the attacker node.
var (
	AttackerWAN     = netip.MustParsePrefix("203.0.113.66/24")
	AttackerGateway = netip.MustParseAddr("203.0.113.254")
)

// attackerLink hangs the attacker off the inet router.
var attackerLink = veth{Inet, "to-attacker", netip.PrefixFrom(AttackerGateway, AttackerWAN.Bits()).String(), Attacker, IfWAN, AttackerWAN.String()}

// allNodes is every node a lab may have, the optional attacker included:
// what teardown and Exists look for.
func allNodes() []string {
	return append(append([]string(nil), Nodes...), Attacker)
}

// buildAttacker adds the attacker namespace, its link to the inet router
// and its default route (Options.Attacker). The caller tears down on error.
func (l *Lab) buildAttacker(ctx context.Context) error {
	// sysctls best effort: the attacker forwards nothing; rp_filter off lets
	// it receive answers to forged sources if the test routes them here
	if err := l.addNode(ctx, Attacker, true); err != nil {
		return err
	}
	if err := l.addVeth(ctx, attackerLink); err != nil {
		return err
	}
	return l.addDefaultRoute(Attacker, AttackerGateway)
}
