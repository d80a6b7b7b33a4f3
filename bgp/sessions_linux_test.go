package bgp

import (
	"net/netip"
	"testing"
)

// /proc/net/tcp writes each 32-bit word of an address in host order
// (little-endian here): 10.0.0.11:179 is 0B00000A:00B3.
func TestProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0B00000A:00B3":                         "10.0.0.11:179",
		"0100007F:D431":                         "127.0.0.1:54321",
		"B80D0120000000000000000001000000:00B3": "[2001:db8::1]:179",
		"0000000000000000FFFF00000B00000A:00B3": "10.0.0.11:179", // v4-mapped
	} {
		got, ok := procAddr(in)
		if !ok || got != netip.MustParseAddrPort(want) {
			t.Errorf("procAddr(%q) = %v, %v; want %s", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "0B00000A", "zz00000A:00B3", "0B00000A:1FFFFF", "0B0000:00B3"} {
		if got, ok := procAddr(bad); ok {
			t.Errorf("procAddr(%q) = %v, want refused", bad, got)
		}
	}
}
