package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// Exec runs argv inside node's namespace (see NamespaceCommand) and returns
// its combined output. Without a deadline on ctx it is bounded by 15s.
func (l *Lab) Exec(ctx context.Context, node string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("lab: Exec in %s: empty command", node)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cmdTimeout)
		defer cancel()
	}
	cmd := l.Command(ctx, node, argv...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		msg := strings.TrimSpace(out.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		if msg != "" {
			return out.Bytes(), fmt.Errorf("%s (in %s): %w: %s", strings.Join(argv, " "), l.Namespace(node), err, msg)
		}
		return out.Bytes(), fmt.Errorf("%s (in %s): %w", strings.Join(argv, " "), l.Namespace(node), err)
	}
	return out.Bytes(), nil
}

// Command returns an unstarted command that runs argv inside node's
// namespace (NamespaceCommand), for callers that need pipes or a background
// process (e.g. a listener a test talks to, tcpdump). ctx bounds it; it gets
// WaitDelay 1s. Its PID is the program's.
func (l *Lab) Command(ctx context.Context, node string, argv ...string) *exec.Cmd {
	return NamespaceCommand(ctx, l.Namespace(node), argv...)
}

// Do runs f on an OS thread inside node's namespace (InNamespace), e.g.
// netlink calls a test makes there.
func (l *Lab) Do(node string, f func() error) error {
	return InNamespace(l.Namespace(node), f)
}

// HasLink reports whether node's namespace has the network device ifname.
func (l *Lab) HasLink(node, ifname string) (bool, error) {
	found := false
	err := l.Do(node, func() error {
		_, err := netlink.LinkByName(ifname)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		found = err == nil
		return err
	})
	return found, err
}

// Addrs returns the IPv4 addresses of the device ifname in node's
// namespace.
func (l *Lab) Addrs(node, ifname string) ([]netip.Prefix, error) {
	var v []netip.Prefix
	err := l.Do(node, func() error {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", ifname, l.Namespace(node), err)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				ones, _ := a.Mask.Size()
				v = append(v, netip.PrefixFrom(ip.Unmap(), ones))
			}
		}
		return nil
	})
	return v, err
}

// PingResult is what one ping run saw.
type PingResult struct {
	Sent, Received int
	AvgRTT         time.Duration // 0 without replies
	Output         string        // a ping(8)-like transcript
}

func (r PingResult) String() string {
	if r.Received == 0 {
		return fmt.Sprintf("%d/%d replies", r.Received, r.Sent)
	}
	return fmt.Sprintf("%d/%d replies, rtt avg %.3f ms", r.Received, r.Sent, float64(r.AvgRTT)/float64(time.Millisecond))
}

// Ping pings dst from fromNode's namespace, count echoes 200ms apart, each
// awaited up to 1s. It returns nil when at least one reply came back.
func (l *Lab) Ping(ctx context.Context, fromNode, dst string, count int) error {
	_, err := l.PingStats(ctx, fromNode, dst, count)
	return err
}

// PingStats is Ping with the counts and the average round-trip time. The
// echoes are the lab's own (ping.go: a raw ICMP socket opened in fromNode's
// namespace), not ping(8)'s.
func (l *Lab) PingStats(ctx context.Context, fromNode, dst string, count int) (PingResult, error) {
	if count < 1 {
		count = 1
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(count)*300*time.Millisecond+3*time.Second)
		defer cancel()
	}
	r, err := PingNamespace(ctx, l.Namespace(fromNode), dst, PingOptions{Count: count, Interval: 200 * time.Millisecond, Timeout: time.Second})
	if err != nil || r.Received == 0 {
		if err == nil {
			err = errors.New("no reply")
		}
		return r, fmt.Errorf("ping %s from %s: %s: %w", dst, fromNode, r, err)
	}
	return r, nil
}

// Show runs `<Binary> show <what> [--json] -c <Dir>/<node>.yaml` (in the root
// namespace: it talks to the daemon over its api-socket) and returns its
// output. Without a deadline on ctx it is bounded by 15s.
func (l *Lab) Show(ctx context.Context, node, what string, json bool) ([]byte, error) {
	if l.opts.Binary == "" {
		return nil, fmt.Errorf("lab: Options.Binary (the dmvpn executable) is not set")
	}
	args := append([]string{"show"}, strings.Fields(what)...) // "bgp routes"
	if json {
		args = append(args, "--json")
	}
	args = append(args, "-c", l.ConfigPath(node))
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cmdTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, l.opts.Binary, args...)
	cmd.Env = append(os.Environ(), l.opts.Env...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", l.opts.Binary, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// ShowJSON runs `dmvpn show WHAT --json` for node and decodes it into v.
func (l *Lab) ShowJSON(ctx context.Context, node, what string, v any) error {
	b, err := l.Show(ctx, node, what, true)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("show %s --json on %s: %w: %.300s", what, node, err, b)
	}
	return nil
}
