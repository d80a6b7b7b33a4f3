//go:build !linux

package bgp

// shutdownSessions is Linux-only (it finds GoBGP's sockets in /proc);
// elsewhere a graceful Stop is GoBGP's own, which may withdraw routes from
// the sessions it closes last.
func shutdownSessions(*Config, []Neighbor) int { return 0 }

func shutdownListeners(*Config) int { return 0 }
