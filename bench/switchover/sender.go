package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// senderArg, as os.Args[1], makes this program the stream sender: main
// re-executes itself with it inside host-lan1's namespace
// (`ip netns exec <prefix>-host-lan1 <self> __send ...`).
const senderArg = "__send"

// sendResult is what the sender prints (one JSON line on stdout).
type sendResult struct {
	Sent       int   `json:"sent"`
	Received   int   `json:"received"`
	SendErrors int   `json:"send_errors"`
	FirstNS    int64 `json:"first_ns"` // wall clock of the first echo request
	LastNS     int64 `json:"last_ns"`  // wall clock of the last one
}

// runSender sends count ICMP echo requests from src to dst, one every gap
// (absolute schedule; paced with nanosleep(2), which keeps sub-millisecond
// gaps where Go's timers round up to about a millisecond), counts the
// distinct replies that arrive until wait after the last request, and prints
// a sendResult.
func runSender(args []string) int {
	fs := flag.NewFlagSet(senderArg, flag.ContinueOnError)
	src := fs.String("src", "", "source address (bound)")
	dst := fs.String("dst", "", "destination address")
	count := fs.Int("count", 500, "echo requests")
	gap := fs.Duration("gap", 200*time.Microsecond, "time between requests")
	wait := fs.Duration("wait", time.Second, "how long to wait for replies after the last request")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	dstIP := net.ParseIP(*dst).To4()
	if dstIP == nil || *count < 1 || *count > 65536 {
		fmt.Fprintf(os.Stderr, "sender: bad -dst %q or -count %d\n", *dst, *count)
		return 2
	}
	conn, err := net.ListenPacket("ip4:icmp", *src)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sender: %v\n", err)
		return 1
	}
	defer conn.Close()
	id := uint16(os.Getpid())
	got := make([]atomic.Bool, *count)
	var received atomic.Int64
	all := make(chan struct{})
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFrom(buf) // the IPv4 header is stripped
			if err != nil {
				return
			}
			ip, ok := from.(*net.IPAddr)
			if !ok || !ip.IP.Equal(dstIP) || n < 8 || buf[0] != 0 || buf[1] != 0 {
				continue // not an echo reply from dst
			}
			if binary.BigEndian.Uint16(buf[4:]) != id {
				continue
			}
			seq := int(binary.BigEndian.Uint16(buf[6:]))
			if seq < len(got) && !got[seq].Swap(true) {
				if received.Add(1) == int64(*count) {
					close(all)
				}
			}
		}
	}()
	pkt := make([]byte, 64) // 8 bytes of header and 56 of data, like ping
	for i := 8; i < len(pkt); i++ {
		pkt[i] = byte(i)
	}
	to := &net.IPAddr{IP: dstIP}
	res := sendResult{}
	start := time.Now()
	res.FirstNS = start.UnixNano()
	for seq := 0; seq < *count; seq++ {
		if w := time.Until(start.Add(time.Duration(seq) * *gap)); w > 0 {
			ts := syscall.NsecToTimespec(int64(w))
			for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
			}
		}
		echoRequest(pkt, id, uint16(seq))
		if _, err := conn.WriteTo(pkt, to); err != nil {
			res.SendErrors++
			continue
		}
		res.Sent++
	}
	res.LastNS = time.Now().UnixNano()
	select {
	case <-all:
	case <-time.After(*wait):
	}
	res.Received = int(received.Load())
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return 0
}

// echoRequest writes an ICMP echo request header (and checksum) into pkt.
func echoRequest(pkt []byte, id, seq uint16) {
	pkt[0], pkt[1] = 8, 0
	pkt[2], pkt[3] = 0, 0
	binary.BigEndian.PutUint16(pkt[4:], id)
	binary.BigEndian.PutUint16(pkt[6:], seq)
	binary.BigEndian.PutUint16(pkt[2:], inetChecksum(pkt))
}

// inetChecksum is the Internet checksum (RFC 1071).
func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
