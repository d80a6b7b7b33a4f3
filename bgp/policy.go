package bgp

import (
	"fmt"
	"net/netip"

	"github.com/osrg/gobgp/v4/api"
)

// Names of what we define in GoBGP's policy tables.
const (
	policyName     = "dmvpn-export"
	setDynamic     = "dmvpn-dynamic"
	setStatic      = "dmvpn-static"
	statementStat  = "dmvpn-static-as-usual"
	setAggExact    = "dmvpn-aggregates-%d"    // per IP version
	setAggInside   = "dmvpn-more-specific-%d" // per IP version
	statementAgg   = "dmvpn-aggregate-%d"
	statementInner = "dmvpn-summary-only-%d"
	statementDyn   = "dmvpn-to-dynamic"
)

// exportPolicy builds the global export policy that makes phases 2 and 3
// work. GoBGP applies per-neighbor policies only to route-server clients,
// so everything is one global export policy whose statements match the
// destination neighbor with a neighbor set of the dynamic ranges (on
// export GoBGP evaluates a neighbor condition against the peer the route
// is sent to). Global policies also see our own routes, which is what we
// want here: the statements are about where a route goes, not where it
// came from. In order, first match wins, default accept:
//
//  0. to a static neighbor: accept as GoBGP would without us. A static
//     neighbor may sit inside a dynamic range (a second hub on the tunnel
//     subnet) and must get every route with its next hop. The set always
//     holds 0.0.0.0/32, which no neighbor has, because GoBGP treats an
//     empty neighbor set as matching everyone; SetNeighbors adds and
//     removes the others (in place: GoBGP's conditions point at the set).
//  1. an aggregate, to a dynamic neighbor: accept; next hop self (it is
//     ours anyway: originated with an unspecified next hop, GoBGP sends
//     the session's local address).
//  2. a more-specific of an aggregate, to a dynamic neighbor: reject
//     (summary-only; we keep and use the route ourselves).
//  3. anything else to a dynamic neighbor: accept with next hop self
//     (NextHopSelf, phase 3) or unchanged (phase 2: iBGP leaves it anyway,
//     eBGP would otherwise rewrite it to us and defeat NHRP resolution).
//
// With no dynamic ranges there is nothing to do: nil.
func exportPolicy(c *Config) ([]*api.DefinedSet, *api.Policy) {
	if len(c.Dynamic) == 0 {
		return nil, nil
	}
	dyn := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: setDynamic}
	for _, d := range c.Dynamic {
		dyn.List = append(dyn.List, d.Prefix.String())
	}
	static := staticSet(c.Neighbors)
	static.List = append(static.List, staticPlaceholder)
	sets := []*api.DefinedSet{dyn, static}
	toDynamic := &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: setDynamic}
	pol := &api.Policy{Name: policyName}
	pol.Statements = append(pol.Statements, &api.Statement{
		Name:       statementStat,
		Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: setStatic}},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
	})

	for _, v := range []int{4, 6} {
		var exact, inside []*api.Prefix
		for _, a := range c.Aggregates {
			if a.Addr().Is4() != (v == 4) {
				continue
			}
			bits, maxBits := uint32(a.Bits()), uint32(a.Addr().BitLen())
			exact = append(exact, &api.Prefix{IpPrefix: a.String(), MaskLengthMin: bits, MaskLengthMax: bits})
			if bits < maxBits {
				inside = append(inside, &api.Prefix{IpPrefix: a.String(), MaskLengthMin: bits + 1, MaskLengthMax: maxBits})
			}
		}
		if len(exact) > 0 {
			name := fmt.Sprintf(setAggExact, v)
			sets = append(sets, &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: name, Prefixes: exact})
			pol.Statements = append(pol.Statements, &api.Statement{
				Name: fmt.Sprintf(statementAgg, v),
				Conditions: &api.Conditions{
					PrefixSet:   &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: name},
					NeighborSet: toDynamic,
				},
				Actions: &api.Actions{
					RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
					Nexthop:     &api.NexthopAction{Self: true},
				},
			})
		}
		if len(inside) > 0 {
			name := fmt.Sprintf(setAggInside, v)
			sets = append(sets, &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: name, Prefixes: inside})
			pol.Statements = append(pol.Statements, &api.Statement{
				Name: fmt.Sprintf(statementInner, v),
				Conditions: &api.Conditions{
					PrefixSet:   &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: name},
					NeighborSet: toDynamic,
				},
				Actions: &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT},
			})
		}
	}
	nh := &api.NexthopAction{Unchanged: true}
	if c.NextHopSelf {
		nh = &api.NexthopAction{Self: true}
	}
	pol.Statements = append(pol.Statements, &api.Statement{
		Name:       statementDyn,
		Conditions: &api.Conditions{NeighborSet: toDynamic},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT, Nexthop: nh},
	})
	return sets, pol
}

const staticPlaceholder = "0.0.0.0/32"

// staticSet is the neighbor set of ns's addresses, to add to or remove from
// setStatic.
func staticSet(ns []Neighbor) *api.DefinedSet {
	d := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: setStatic}
	for _, n := range ns {
		d.List = append(d.List, netip.PrefixFrom(n.Address, n.Address.BitLen()).String())
	}
	return d
}
