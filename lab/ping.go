package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// PingOptions configures PingNamespace. Zero fields take the defaults.
type PingOptions struct {
	Count    int           // echo requests to send (default 1)
	Interval time.Duration // between two requests (default 200ms)
	Timeout  time.Duration // how long each request is awaited (default 1s)
	Size     int           // ICMP payload bytes, at least 16 (default 56, as ping(8))
}

// pingID makes the echo identifiers of concurrent pings in this process
// distinct (a random start, then one more per ping).
var pingID atomic.Uint32

func init() {
	var b [2]byte
	_, _ = rand.Read(b[:])
	pingID.Store(uint32(binary.BigEndian.Uint16(b[:])))
}

// PingNamespace sends ICMP echo requests to the IPv4 address dst from the
// named network namespace and counts the replies, like `ip netns exec ns
// ping -c Count -i Interval -W Timeout dst`, without ping(8): a raw ICMP
// socket opened in that namespace (root), replies matched by identifier,
// sequence number, source and a random nonce in the payload, so concurrent
// pings in one namespace do not count each other's replies. A reply counts
// if it comes within Timeout of its request. The error is nil unless the
// socket could not be opened, every request failed to send, or ctx ended
// before the run did; no reply at all is a result (Received 0), not an
// error.
func PingNamespace(ctx context.Context, ns, dst string, o PingOptions) (PingResult, error) {
	if o.Count < 1 {
		o.Count = 1
	}
	if o.Interval <= 0 {
		o.Interval = 200 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Size == 0 {
		o.Size = 56
	}
	o.Size = max(o.Size, 16)
	r := PingResult{}
	addr, err := netip.ParseAddr(dst)
	if err != nil || !addr.Unmap().Is4() {
		return r, fmt.Errorf("lab: ping %q: want an IPv4 address", dst)
	}
	addr = addr.Unmap()

	var conn *icmp.PacketConn
	if err := InNamespace(ns, func() error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return r, fmt.Errorf("lab: ping from %s: raw ICMP socket: %w", ns, err)
	}
	id := uint16(pingID.Add(1))
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])

	type reply struct {
		seq int
		at  time.Time
	}
	replies := make(chan reply, 64)
	stop := make(chan struct{})
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		buf := make([]byte, 65536)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			at := time.Now()
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			echo, ok := m.Body.(*icmp.Echo)
			if !ok || echo.ID != int(id) || !bytes.HasPrefix(echo.Data, nonce[:]) {
				continue
			}
			if ia, ok := from.(*net.IPAddr); !ok || !ia.IP.Equal(addr.AsSlice()) {
				continue
			}
			select {
			case replies <- reply{echo.Seq, at}:
			case <-stop:
				return
			}
		}
	}()
	defer func() {
		close(stop)
		conn.Close()
		<-recvDone
	}()

	var out strings.Builder
	fmt.Fprintf(&out, "PING %s from %s: %d data bytes, %d requests %v apart, each awaited %v\n", addr, ns, o.Size, o.Count, o.Interval, o.Timeout)
	sentAt := make([]time.Time, o.Count+1) // by sequence number 1..Count
	got := make([]bool, o.Count+1)
	var rtts []time.Duration
	var sendErrs []error
	to := &net.IPAddr{IP: addr.AsSlice()}
	payload := make([]byte, o.Size)
	copy(payload, nonce[:])
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	next := time.Now()
	var ctxErr error
loop:
	for {
		now := time.Now()
		if r.Sent < o.Count && !now.Before(next) {
			seq := r.Sent + 1
			binary.BigEndian.PutUint64(payload[8:], uint64(now.UnixNano()))
			b, err := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: int(id), Seq: seq, Data: payload}}).Marshal(nil)
			if err == nil {
				sentAt[seq] = time.Now()
				_, err = conn.WriteTo(b, to)
			}
			if err != nil {
				sendErrs = append(sendErrs, err)
				fmt.Fprintf(&out, "icmp_seq=%d: %v\n", seq, err)
			}
			r.Sent = seq
			next = next.Add(o.Interval)
			continue
		}
		var wake time.Time
		switch {
		case r.Sent < o.Count:
			wake = next
		case r.Received == r.Sent:
			break loop
		default:
			wake = sentAt[r.Sent].Add(o.Timeout)
			if !now.Before(wake) {
				break loop
			}
		}
		timer.Reset(time.Until(wake))
		select {
		case rp := <-replies:
			if rp.seq < 1 || rp.seq > r.Sent || got[rp.seq] {
				continue
			}
			rtt := rp.at.Sub(sentAt[rp.seq])
			if rtt > o.Timeout {
				fmt.Fprintf(&out, "late reply icmp_seq=%d after %v: not counted\n", rp.seq, rtt.Round(time.Microsecond))
				continue
			}
			got[rp.seq] = true
			r.Received++
			rtts = append(rtts, rtt)
			fmt.Fprintf(&out, "reply from %s: icmp_seq=%d time=%.3f ms\n", addr, rp.seq, ms(rtt))
		case <-timer.C:
		case <-ctx.Done():
			ctxErr = ctx.Err()
			break loop
		}
	}
	fmt.Fprintf(&out, "--- %s ping statistics ---\n%d packets transmitted, %d received, %.0f%% packet loss\n",
		addr, r.Sent, r.Received, 100*float64(r.Sent-r.Received)/float64(max(r.Sent, 1)))
	if len(rtts) > 0 {
		lo, hi, sum := rtts[0], rtts[0], time.Duration(0)
		for _, d := range rtts {
			lo, hi, sum = min(lo, d), max(hi, d), sum+d
		}
		r.AvgRTT = sum / time.Duration(len(rtts))
		fmt.Fprintf(&out, "rtt min/avg/max = %.3f/%.3f/%.3f ms\n", ms(lo), ms(r.AvgRTT), ms(hi))
	}
	r.Output = out.String()
	switch {
	case ctxErr != nil:
		return r, fmt.Errorf("interrupted after %d of %d requests: %w", r.Sent, o.Count, ctxErr)
	case len(sendErrs) == r.Sent && r.Sent > 0:
		return r, fmt.Errorf("sending: %w", sendErrs[0])
	}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
