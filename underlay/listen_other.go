//go:build !linux

package underlay

import (
	"errors"
	"net/netip"
	"time"

	"github.com/dmvpn/dmvpn/nbma"
)

// The socket transports use Linux's recvmmsg/sendmmsg. Elsewhere the
// constructors fail, so the rest of the module still builds.

var errNotLinux = errors.New("underlay: socket transports need Linux")

// IPConn is a raw IPv4 socket; Linux only.
type IPConn struct{ unsupported }

// UDPConn is a UDP socket; Linux only.
type UDPConn struct{ unsupported }

// ListenIP fails: Linux only.
func ListenIP(local netip.Addr, proto int, s Spec) (*IPConn, error) { return nil, errNotLinux }

// ListenUDP fails: Linux only.
func ListenUDP(local netip.AddrPort, s Spec) (*UDPConn, error) { return nil, errNotLinux }

type unsupported struct{}

func (unsupported) ReadBatch([]Datagram) (int, error)  { return 0, errNotLinux }
func (unsupported) WriteBatch([]Datagram) (int, error) { return 0, errNotLinux }
func (unsupported) BatchSize() int                     { return 1 }
func (unsupported) Transport() nbma.Transport          { return 0 }
func (unsupported) LocalAddr() netip.AddrPort          { return netip.AddrPort{} }
func (unsupported) Close() error                       { return errNotLinux }
func (unsupported) SetReadDeadline(time.Time) error    { return errNotLinux }
func (unsupported) SetWriteDeadline(time.Time) error   { return errNotLinux }
func (unsupported) Stats() ConnStats                   { return ConnStats{} }
