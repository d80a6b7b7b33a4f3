// Package nbma names the ways this node's packets travel on the NBMA
// network (the underlay) underneath the overlay.
//
// It is a value type of its own, apart from the sockets (package underlay),
// so that the control plane (config, the NHRP cache and engine), which
// records how each peer is reached, depends on a name and not on the socket
// machinery; and so that the sockets, which only carry it as a label, need
// not know what a transport carries.
package nbma

import "fmt"

// Transport says how overlay packets are carried on the NBMA network. The
// zero value is no transport.
type Transport uint8

const (
	// TransportGRE is GRE directly over IPv4, IP protocol 47.
	TransportGRE Transport = iota + 1
	// TransportUDP is GRE-in-UDP, RFC 8086, destination port 4754.
	TransportUDP
)

// String returns the config spelling ("gre", "udp"), which is also the
// transport label of metrics and the text of show commands.
func (t Transport) String() string {
	switch t {
	case TransportGRE:
		return "gre"
	case TransportUDP:
		return "udp"
	}
	return fmt.Sprintf("transport(%d)", uint8(t))
}

// Name returns the transport as prose and error messages spell it: "GRE"
// (as in "raw GRE") and "GRE-in-UDP"; String's form for anything else.
func (t Transport) Name() string {
	switch t {
	case TransportGRE:
		return "GRE"
	case TransportUDP:
		return "GRE-in-UDP"
	}
	return t.String()
}

// ParseTransport parses the config spelling of a transport.
func ParseTransport(s string) (Transport, error) {
	switch s {
	case "gre":
		return TransportGRE, nil
	case "udp":
		return TransportUDP, nil
	}
	return 0, fmt.Errorf("unknown transport %q (valid: gre, udp)", s)
}
