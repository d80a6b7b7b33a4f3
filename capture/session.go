package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Options describe one capture.
type Options struct {
	Points   Points
	Filter   *Filter // nil: everything
	SnapLen  int     // bytes kept of each packet; 0: MaxSnapLen
	Count    int     // stop after writing this many packets; 0: no limit
	Duration time.Duration
	// Device and Node name the pcapng interfaces and section.
	Device, Node string
	// Slots and Bytes size the ring; 0: DefaultSlots, DefaultBytes.
	Slots, Bytes int
}

// AttachFunc attaches a tap to the data plane and returns the function that
// detaches it (dataplane.Plane.AddTap).
type AttachFunc func(*Tap) (detach func(), err error)

// ErrNoPoint is returned by Start when Options select no point.
var ErrNoPoint = errors.New("capture: choose what to capture: inner, outer or control")

// Session is one running capture: its tap is attached from Start until Run
// returns (or Close).
type Session struct {
	o      Options
	tap    *Tap
	detach func()
	start  time.Time
	closed bool
}

// Result is what a capture saw.
type Result struct {
	Captured uint64 // packets written (those that passed the filter)
	Seen     uint64 // packets the tap copied (before the filter)
	Dropped  uint64 // packets the tap did not copy: the ring was full
}

func (r Result) String() string {
	return fmt.Sprintf("%d packets captured, %d seen by the tap, %d dropped by buffer", r.Captured, r.Seen, r.Dropped)
}

// Start allocates the capture's ring and attaches its tap: packets are
// copied from now on.
func Start(o Options, attach AttachFunc) (*Session, error) {
	if o.Points&(PointInner|PointOuter|PointControl) == 0 {
		return nil, ErrNoPoint
	}
	if o.SnapLen <= 0 || o.SnapLen > MaxSnapLen {
		o.SnapLen = MaxSnapLen
	}
	if o.Count < 0 {
		return nil, fmt.Errorf("capture: negative count %d", o.Count)
	}
	if o.Slots == 0 {
		o.Slots = DefaultSlots
	}
	if o.Bytes == 0 {
		o.Bytes = DefaultBytes
	}
	s := &Session{o: o, tap: NewTap(o.Points, o.SnapLen, NewRing(o.Slots, o.Bytes)), start: time.Now()}
	detach, err := attach(s.tap)
	if err != nil {
		return nil, err
	}
	s.detach = detach
	return s, nil
}

// Describe says what the session captures, where: e.g. `inner on dmvpn0,
// outer on dmvpn0-nbma; filter "icmp"; snaplen 65535`.
func (s *Session) Describe() string {
	dev := s.o.Device
	if dev == "" {
		dev = "dmvpn"
	}
	var what []string
	if s.o.Points&PointInner != 0 {
		what = append(what, "inner on "+dev)
	}
	switch {
	case s.o.Points&PointOuter != 0:
		what = append(what, "outer on "+dev+"-nbma")
	case s.o.Points&PointControl != 0:
		what = append(what, "control (NHRP) on "+dev+"-nbma")
	}
	d := strings.Join(what, ", ")
	if s.o.Node != "" {
		d = s.o.Node + ": " + d
	}
	if f := s.o.Filter.String(); f != "" {
		d += fmt.Sprintf("; filter %q", f)
	}
	d += fmt.Sprintf("; snaplen %d", s.o.SnapLen)
	if s.o.Count > 0 {
		d += fmt.Sprintf("; %d packets", s.o.Count)
	}
	if s.o.Duration > 0 {
		d += "; for " + s.o.Duration.String()
	}
	return d
}

// Close detaches the tap; Run does it too. It may be called more than once.
func (s *Session) Close() {
	if !s.closed {
		s.closed = true
		s.detach()
	}
}

// Run writes the capture to w as pcapng until ctx is done, Count packets
// are written or Duration has passed, then detaches the tap, writes what
// the ring still holds, the statistics (drops), and returns. flush (nil:
// none) is called whenever the ring is empty, after w has been given
// everything so far, so that a reader sees packets as they come.
func (s *Session) Run(ctx context.Context, w io.Writer, flush func()) (Result, error) {
	defer s.Close()
	wr, err := NewWriter(w, WriterOptions{Points: s.o.Points, Device: s.o.Device, Node: s.o.Node,
		SnapLen: s.o.SnapLen, Filter: s.o.Filter.String()})
	if err != nil {
		return Result{}, err
	}
	flushAll := func() error {
		if err := wr.Flush(); err != nil {
			return err
		}
		if flush != nil {
			flush()
		}
		return nil
	}
	if err := flushAll(); err != nil {
		return Result{}, err
	}
	if s.o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.o.Duration)
		defer cancel()
	}
	ring := s.tap.ring
	var res Result
	write := func(m *Meta, data []byte) error {
		defer ring.Release()
		if !s.o.Filter.Match(m, data) {
			return nil
		}
		res.Captured++
		return wr.Write(m, data)
	}
	full := func() bool { return s.o.Count > 0 && res.Captured >= uint64(s.o.Count) }
	for !full() {
		m, data, ok := ring.TryNext()
		if !ok {
			if err := flushAll(); err != nil {
				return res, err
			}
			if m, data, ok = ring.Next(ctx.Done()); !ok {
				break
			}
		}
		if err := write(m, data); err != nil {
			return res, err
		}
	}
	s.Close()
	// What was copied before the tap came off belongs to the capture.
	for !full() {
		m, data, ok := ring.TryNext()
		if !ok {
			break
		}
		if err := write(m, data); err != nil {
			return res, err
		}
	}
	end := time.Now()
	var stats [numPoints]Stats
	for p := range numPoints {
		c, d := ring.Copied(p), ring.Dropped(p)
		stats[p] = Stats{Start: s.start, End: end, Received: c + d, Dropped: d}
		res.Seen += c
		res.Dropped += d
	}
	if err := wr.Close(stats); err != nil {
		return res, err
	}
	if flush != nil {
		flush()
	}
	return res, nil
}
