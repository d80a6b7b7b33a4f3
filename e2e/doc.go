// Package e2e holds the end-to-end tests of dmvpn: the real daemon binary,
// built once per test run, on the network-namespace lab of package lab (a
// hub and three spokes, spoke3 behind a NAT that only passes UDP), with real
// TUN devices, raw GRE and GRE-in-UDP sockets, and the kernel forwarding LAN
// traffic between hosts.
//
// The tests need root; the lab itself needs no tool (no ip, nft or ping:
// netlink, nftables' netlink API and its own ICMP echoes). The wire tests
// also need tcpdump and tshark, the attack suite ping(8). Without them the
// tests skip, unless DMVPN_E2E=1 (set by CI), which turns every skip into a
// failure:
//
//	sudo go test ./e2e -v -count=1
//	sudo DMVPN_E2E=1 go test ./e2e -count=1
//
// The package has no code of its own; everything is in its _test.go files.
package e2e
