package node

import (
	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/capture"
)

var _ api.CaptureProvider = (*Node)(nil)

// StartCapture attaches a packet capture to the data plane (dmvpn capture,
// GET /v1/capture): its pcapng interfaces are named after the tunnel device.
func (n *Node) StartCapture(o capture.Options) (*capture.Session, error) {
	o.Device, o.Node = n.cfg.Tunnel.Device, n.cfg.Name
	return capture.Start(o, n.plane.AddTap)
}
