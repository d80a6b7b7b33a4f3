package main

import (
	"log/slog"

	"github.com/coreos/go-systemd/v22/daemon"
)

// sdNotify sends state (newline-separated VAR=value assignments, see
// sd_notify(3)) to the service manager through $NOTIFY_SOCKET, for the
// systemd unit's Type=notify. Without NOTIFY_SOCKET (dmvpn not started by
// systemd) it does nothing. A failure is logged, never fatal: the node runs
// whether or not systemd hears of it.
func sdNotify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("sd_notify failed", "state", state, "err", err)
	}
}
