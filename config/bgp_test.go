package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

const bgpHub = "name: hub\ntunnel:\n  address: 10.0.0.1/24\n  source: 192.0.2.1\nnhrp:\n  network-id: 1\n"

// TestBGPDefaults: a hub's bgp section with only as is a route reflector
// for the whole tunnel subnet in its own AS; a spoke peers with its NHSes
// in its own AS and reflects nothing.
func TestBGPDefaults(t *testing.T) {
	hub, err := Parse("hub.yaml", []byte(bgpHub+"bgp:\n  as: 65000\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := BGP{AS: 65000, RouterID: netip.MustParseAddr("10.0.0.1"), Port: 179, HoldTime: 90 * time.Second,
		Keepalive: 30 * time.Second, ConnectRetry: 5 * time.Second, RestartTime: 120 * time.Second, MaxPrefixes: 10000,
		PeerNHS: true, NHSAS: 65000, RouteReflector: true,
		DynamicNeighbors: []BGPDynamic{{Prefix: netip.MustParsePrefix("10.0.0.0/24"), AS: 65000}}}
	if !reflect.DeepEqual(hub.BGP, want) {
		t.Errorf("hub bgp = %+v\nwant %+v", hub.BGP, want)
	}
	spoke, err := Parse("spoke.yaml", []byte(base+"  nhs:\n    - address: 10.0.0.1\n      nbma: 192.0.2.1\nbgp:\n  as: 65011\n  nhs-as: 65000\n  hold-time: 9s\n  networks: [10.1.0.0/24]\n"))
	if err != nil {
		t.Fatal(err)
	}
	b := spoke.BGP
	if b.RouteReflector || b.DynamicNeighbors != nil || b.NHSAS != 65000 || b.Keepalive != 3*time.Second ||
		!reflect.DeepEqual(b.Networks, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}) {
		t.Errorf("spoke bgp = %+v", b)
	}
	none, err := Parse("none.yaml", []byte(bgpHub))
	if err != nil {
		t.Fatal(err)
	}
	if none.BGP.Enabled() || !reflect.DeepEqual(none.BGP, BGP{}) {
		t.Errorf("no bgp section: %+v", none.BGP)
	}
}

func TestBGPErrors(t *testing.T) {
	for _, tt := range []struct{ name, bgp, want string }{
		{"as missing", "bgp:\n  port: 179\n", `bgp: missing required field "as"`},
		{"as zero", "bgp:\n  as: 0\n", `bgp.as: `},
		{"router id v6", "bgp:\n  as: 1\n  router-id: 2001:db8::1\n", "bgp.router-id: 2001:db8::1 is not IPv4"},
		{"keepalive", "bgp:\n  as: 1\n  hold-time: 9s\n  keepalive: 4s\n", "bgp.keepalive: 4s is more than a third of bgp.hold-time 9s (valid: at most 3s)"},
		{"network in subnet", "bgp:\n  as: 1\n  networks: [10.0.0.0/16]\n", "bgp.networks[0]: 10.0.0.0/16 overlaps the tunnel subnet"},
		{"network host bits", "bgp:\n  as: 1\n  networks: [10.1.0.1/24]\n", `bgp.networks[0]: "10.1.0.1/24" has host bits set (valid: 10.1.0.0/24)`},
		{"network twice", "bgp:\n  as: 1\n  networks: [10.1.0.0/24, 10.1.0.0/24]\n", "bgp.networks[1]: 10.1.0.0/24 is already bgp.networks[0]"},
		{"network family", "bgp:\n  as: 1\n  networks: [2001:db8::/32]\n", "bgp.networks[0]: 2001:db8::/32 is IPv6 but tunnel.address 10.0.0.1/24 is IPv4"},
		{"networks not a list", "bgp:\n  as: 1\n  networks: 10.1.0.0/24\n", "bgp.networks: expected a list"},
		{"aggregate in subnet", "bgp:\n  as: 1\n  aggregates: [10.0.0.0/25]\n", "bgp.aggregates[0]: 10.0.0.0/25 is inside the tunnel subnet"},
		{"password long", "bgp:\n  as: 1\n  password: " + strings.Repeat("x", 81) + "\n", "bgp.password: is 81 bytes long (valid: a TCP MD5 password of 1 to 80 bytes)"},
		{"connected without prefixes", "bgp:\n  as: 1\n  redistribute:\n    connected: true\n", "bgp.redistribute.connected: is true but bgp.redistribute.prefixes is empty"},
		{"neighbor self", "bgp:\n  as: 1\n  neighbors:\n    - address: 10.0.0.1\n      as: 2\n", "bgp.neighbors[0].address: 10.0.0.1 is this node's own tunnel.address"},
		{"neighbor as missing", "bgp:\n  as: 1\n  neighbors:\n    - address: 10.0.0.9\n", `bgp.neighbors[0]: missing required field "as"`},
		{"unknown field", "bgp:\n  as: 1\n  remote-as: 2\n", `bgp: unknown field "remote-as"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(bgpHub+tt.bgp))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(tt.bgp, "password") && strings.Contains(err.Error(), "xxxx") {
				t.Errorf("the password is repeated: %v", err)
			}
		})
	}
}
