//go:build !linux

package underlay

import (
	"errors"
	"net/netip"
	"time"
)

// The socket transports use Linux's recvmmsg/sendmmsg. Elsewhere the
// constructors fail, so the rest of the module still builds.

var errNotLinux = errors.New("underlay: socket transports need Linux")

// GREConn is raw IPv4 GRE; Linux only.
type GREConn struct{ unsupported }

// UDPConn is GRE-in-UDP; Linux only.
type UDPConn struct{ unsupported }

// ListenGRE fails: Linux only.
func ListenGRE(local netip.Addr) (*GREConn, error) { return nil, errNotLinux }

// ListenUDP fails: Linux only.
func ListenUDP(local netip.AddrPort) (*UDPConn, error) { return nil, errNotLinux }

type unsupported struct{}

func (unsupported) ReadBatch([]Datagram) (int, error)  { return 0, errNotLinux }
func (unsupported) WriteBatch([]Datagram) (int, error) { return 0, errNotLinux }
func (unsupported) BatchSize() int                     { return 1 }
func (unsupported) Transport() Transport               { return 0 }
func (unsupported) LocalAddr() netip.AddrPort          { return netip.AddrPort{} }
func (unsupported) Close() error                       { return errNotLinux }
func (unsupported) SetReadDeadline(time.Time) error    { return errNotLinux }
func (unsupported) SetWriteDeadline(time.Time) error   { return errNotLinux }
func (unsupported) Stats() ConnStats                   { return ConnStats{} }
