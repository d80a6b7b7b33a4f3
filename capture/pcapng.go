package capture

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/dmvpn/dmvpn/internal/inet"
)

// outerHeaderMax is the most a Writer puts in front of an outer packet: an
// IPv6 header and a UDP header.
const outerHeaderMax = 40 + inet.UDPHeaderLen

// Writer writes captured packets as pcapng, one interface per point, both
// of link type RAW (101: the packet starts with its IPv4 or IPv6 header):
//
//   - "<device>" (inner): the packets as they cross the TUN;
//   - "<device>-nbma" (outer, control): each GRE packet behind an IPv4
//     (IPv6) header made from the real NBMA source and destination,
//     protocol 47, or for GRE-in-UDP also a UDP header with the real ports
//     (4754), so that Wireshark decodes GRE, then IP or NHRP.
//
// Every packet carries its direction in the epb_flags option (inbound:
// from the tunnel). The Writer is for one goroutine.
type Writer struct {
	ng      *pcapgo.NgWriter
	iface   [numPoints]int // interface ID by point, -1: none
	scratch []byte
	ipid    uint16
	flags   [2]pcapgo.NgEpbFlags // by Dir
}

// WriterOptions describe a capture file's section and interfaces.
type WriterOptions struct {
	Points  Points
	Device  string // the TUN's name, which names the interfaces
	Node    string // written as the section's comment
	SnapLen int
	Filter  string
}

// NewWriter writes the section header and the interface descriptions to w.
func NewWriter(w io.Writer, o WriterOptions) (*Writer, error) {
	if o.Device == "" {
		o.Device = "dmvpn"
	}
	snap := o.SnapLen
	if snap <= 0 || snap > MaxSnapLen {
		snap = MaxSnapLen
	}
	sec := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware: runtime.GOARCH, OS: runtime.GOOS, Application: "dmvpn capture",
	}}
	if o.Node != "" {
		sec.SectionInfo.Comment = "dmvpn node " + o.Node
	}
	type ifc struct {
		point Point
		intf  pcapgo.NgInterface
	}
	var ifcs []ifc
	if o.Points&PointInner != 0 {
		ifcs = append(ifcs, ifc{Inner, pcapgo.NgInterface{Name: o.Device, LinkType: layers.LinkTypeRaw,
			Description: "dmvpn overlay: IP packets read from (out) and written to (in) the TUN",
			SnapLength:  uint32(snap)}})
	}
	if o.Points&(PointOuter|PointControl) != 0 {
		what := "GRE packets"
		if o.Points&PointOuter == 0 {
			what = "NHRP packets"
		}
		ifcs = append(ifcs, ifc{Outer, pcapgo.NgInterface{Name: o.Device + "-nbma", LinkType: layers.LinkTypeRaw,
			Description: "dmvpn underlay: " + what + " as sent (out) and received (in), behind an IP (and UDP) header made from their NBMA addresses",
			SnapLength:  uint32(snap + outerHeaderMax)}})
	}
	if len(ifcs) == 0 {
		return nil, fmt.Errorf("capture: no point to capture")
	}
	wr := &Writer{scratch: make([]byte, outerHeaderMax+MaxSnapLen), iface: [numPoints]int{-1, -1}}
	wr.flags[In].Direction = pcapgo.NgEpbFlagDirectionInbound
	wr.flags[Out].Direction = pcapgo.NgEpbFlagDirectionOutbound
	for i, c := range ifcs {
		c.intf.OS = runtime.GOOS
		c.intf.Filter = o.Filter
		c.intf.TimestampResolution = 9
		var err error
		if i == 0 {
			wr.ng, err = pcapgo.NewNgWriterInterface(w, c.intf, sec)
		} else {
			_, err = wr.ng.AddInterface(c.intf)
		}
		if err != nil {
			return nil, fmt.Errorf("capture: pcapng: %w", err)
		}
		wr.iface[c.point] = i
	}
	return wr, nil
}

// Write writes one packet as the ring holds it.
func (w *Writer) Write(m *Meta, data []byte) error {
	id := w.iface[m.Point]
	if id < 0 {
		return nil
	}
	frame, length := data, m.Len
	if m.Point == Outer {
		hl := outerHeaderLen(m)
		n := copy(w.scratch[hl:], data)
		w.outerHeader(m, w.scratch[:hl+n])
		frame, length = w.scratch[:hl+n], hl+m.Len
	}
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, m.Time), CaptureLength: len(frame), Length: length, InterfaceIndex: id}
	return w.ng.WritePacketWithOptions(ci, frame, pcapgo.NgPacketOptions{Flags: &w.flags[m.Dir]})
}

// endpoints returns an outer packet's source and destination.
func endpoints(m *Meta) (src, dst netip.AddrPort) {
	if m.Dir == In {
		return m.Peer, m.Local
	}
	return m.Local, m.Peer
}

func outerHeaderLen(m *Meta) int {
	src, dst := endpoints(m)
	hl := 40
	if src.Addr().Unmap().Is4() && dst.Addr().Unmap().Is4() {
		hl = inet.IPv4HeaderLen
	}
	if m.UDP {
		hl += inet.UDPHeaderLen
	}
	return hl
}

// outerHeader writes, in front of the GRE packet already copied into frame,
// the IP (and UDP) header it travelled behind.
func (w *Writer) outerHeader(m *Meta, frame []byte) {
	src, dst := endpoints(m)
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	payload := m.Len // on the wire, past the IP header
	proto := uint8(inet.ProtoGRE)
	if m.UDP {
		payload += inet.UDPHeaderLen
		proto = inet.ProtoUDP
	}
	b := frame
	hl := inet.IPv4HeaderLen
	if sa.Is4() && da.Is4() {
		w.ipid++
		inet.PutIPv4Header(b, sa, da, proto, min(payload, 0xffff-inet.IPv4HeaderLen), w.ipid)
	} else {
		hl = 40
		b[0], b[1], b[2], b[3] = 0x60, 0, 0, 0
		binary.BigEndian.PutUint16(b[4:], uint16(min(payload, 0xffff)))
		b[6], b[7] = proto, 64
		s16, d16 := as16(sa), as16(da)
		copy(b[8:24], s16[:])
		copy(b[24:40], d16[:])
	}
	if !m.UDP {
		return
	}
	u := b[hl:]
	inet.PutUDPHeader(u, src.Port(), dst.Port(), min(m.Len, 0xffff-inet.UDPHeaderLen))
	if hl == 40 && len(frame)-hl == payload {
		// IPv6 forbids a zero UDP checksum: compute it (when the whole
		// datagram was copied; a truncated one keeps 0).
		acc := inet.Sum(0, b[8:40])
		acc += uint32(payload) + uint32(inet.ProtoUDP)
		acc = inet.Sum(acc, u[:payload])
		sum := ^inet.Fold(acc)
		if sum == 0 {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(u[6:], sum)
	}
}

func as16(a netip.Addr) [16]byte {
	if !a.IsValid() {
		return [16]byte{}
	}
	return a.As16()
}

// Stats are a capture's counts for one interface, written at the end.
type Stats struct {
	Start, End time.Time
	Received   uint64 // packets the tap copied at this point
	Dropped    uint64 // packets not copied: the ring was full
}

// Close writes an interface statistics block for each point (the drops
// Wireshark shows in Capture File Properties) and flushes.
func (w *Writer) Close(stats [numPoints]Stats) error {
	for p, id := range w.iface {
		if id < 0 {
			continue
		}
		s := stats[p]
		if err := w.ng.WriteInterfaceStats(id, pcapgo.NgInterfaceStatistics{
			LastUpdate: s.End, StartTime: s.Start, EndTime: s.End,
			PacketsReceived: s.Received, PacketsDropped: s.Dropped,
		}); err != nil {
			return err
		}
	}
	return w.ng.Flush()
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error { return w.ng.Flush() }
