package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
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
	ns := l.Namespace(Attacker)
	if _, err := l.run(ctx, "ip", "netns", "add", ns); err != nil {
		return err
	}
	if _, err := l.run(ctx, "ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
		return err
	}
	var sh strings.Builder
	for _, s := range nsSysctls {
		// best effort: the attacker forwards nothing; rp_filter off lets
		// it receive answers to forged sources if the test routes them here
		fmt.Fprintf(&sh, "echo %s 2>/dev/null > /proc/sys/%s || true; ", s[1], s[0])
	}
	if _, err := l.run(ctx, "ip", "netns", "exec", ns, "sh", "-c", sh.String()); err != nil {
		return fmt.Errorf("sysctls in %s: %w", ns, err)
	}
	if err := l.addVeth(ctx, attackerLink); err != nil {
		return err
	}
	if _, err := l.run(ctx, "ip", "-n", ns, "route", "add", "default", "via", AttackerGateway.String()); err != nil {
		return err
	}
	return nil
}
