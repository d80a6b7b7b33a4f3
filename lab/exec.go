package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Exec runs argv inside node's namespace (`ip netns exec`) and returns its
// combined output. Without a deadline on ctx it is bounded by 15s.
func (l *Lab) Exec(ctx context.Context, node string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("lab: Exec in %s: empty command", node)
	}
	return runCmd(ctx, nil, "ip", append([]string{"netns", "exec", l.Namespace(node)}, argv...)...)
}

// Command returns an unstarted command that runs argv inside node's
// namespace, for callers that need pipes or a background process (e.g. a
// listener a test talks to). ctx bounds it; it gets WaitDelay 1s.
func (l *Lab) Command(ctx context.Context, node string, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.Namespace(node)}, argv...)...)
	cmd.WaitDelay = time.Second
	return cmd
}

// PingResult is what one ping run saw.
type PingResult struct {
	Sent, Received int
	AvgRTT         time.Duration // 0 without replies
	Output         string
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

var (
	pingCountRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	pingRTTRE   = regexp.MustCompile(`= [\d.]+/([\d.]+)/[\d.]+`)
)

// PingStats is Ping with the counts and the average round-trip time.
func (l *Lab) PingStats(ctx context.Context, fromNode, dst string, count int) (PingResult, error) {
	if count < 1 {
		count = 1
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(count)*300*time.Millisecond+3*time.Second)
		defer cancel()
	}
	out, err := l.Exec(ctx, fromNode, "ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "1", dst)
	r := PingResult{Sent: count, Output: string(out)}
	if m := pingCountRE.FindStringSubmatch(r.Output); m != nil {
		r.Sent, _ = strconv.Atoi(m[1])
		r.Received, _ = strconv.Atoi(m[2])
	}
	if m := pingRTTRE.FindStringSubmatch(r.Output); m != nil {
		if ms, perr := strconv.ParseFloat(m[1], 64); perr == nil {
			r.AvgRTT = time.Duration(ms * float64(time.Millisecond))
		}
	}
	if err != nil || r.Received == 0 {
		return r, fmt.Errorf("ping %s from %s: %s", dst, fromNode, r)
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
	args := []string{"show", what}
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
