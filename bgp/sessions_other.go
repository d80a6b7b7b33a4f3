//go:build !linux

package bgp

import "time"

// shutdownSessions is Linux-only (it finds GoBGP's sockets in /proc);
// elsewhere a graceful Stop is GoBGP's own, which may withdraw routes from
// the sessions it closes last.
func shutdownSessions(*Config, []Neighbor) int { return 0 }

func shutdownListeners(*Config) int { return 0 }

func waitFINsAcked(*Config, time.Duration) bool { return true }

const finWait = 0
