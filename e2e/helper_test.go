package e2e

// The test binary doubles as the small programs the tests run inside the
// lab's namespaces, as in os/exec's tests: the harness runs
//
//	<test binary> -test.run=^TestHelperProcess$ -- ARGS...
//
// inside namespace NS (lab.Lab.Command: what `ip netns exec NS` does, without
// ip) with DMVPN_E2E_HELPER=<role> in the environment. Every role is bounded by
// a deadline given on its command line and exits (0: success) from
// TestHelperProcess, so the testing package never prints its summary.
//
//	tcp-echo-server ADDR SECS     listen on ADDR (port 0: any), print
//	                              "ready HOST:PORT", echo one connection
//	                              back to its sender, print "echoed N"
//	tcp-echo-client ADDR N SECS   connect, send N pseudo-random bytes while
//	                              reading the echo, check it is identical,
//	                              print "ok ..."
//	hook-env DIR ARGS...          a hook (events_test.go): write its ARGS
//	                              and DMVPN_* variables to
//	                              DIR/hook-<DMVPN_SEQ>.json
//	ike-flood TARGET N SECS       send N IKE_SA_INIT requests, each a new
//	                              initiator's (own SPI, nonce, key share),
//	                              to TARGET:500 as fast as possible, print
//	                              "sent N answers M cookies C" (ipsec_test.go)

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
)

// TestHelperProcess is not a test: it is the helper programs' entry point
// (see the top of this file) and does nothing in a normal test run.
func TestHelperProcess(t *testing.T) {
	role := os.Getenv(helperEnv)
	if role == "" {
		testenv.RequireRoot(t)
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	var err error
	switch role {
	case "tcp-echo-server":
		err = echoServer(args)
	case "tcp-echo-client":
		err = echoClient(args)
	case "hook-env":
		err = hookEnv(args) // events_test.go
	case "ike-flood":
		err = ikeFlood(args) // ipsec_test.go
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func helperDeadline(s string) (time.Time, error) {
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil || secs <= 0 || secs > 600 {
		return time.Time{}, fmt.Errorf("bad seconds %q", s)
	}
	return time.Now().Add(time.Duration(secs * float64(time.Second))), nil
}

func echoServer(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: tcp-echo-server ADDR SECS")
	}
	deadline, err := helperDeadline(args[1])
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", args[0])
	if err != nil {
		return err
	}
	defer ln.Close()
	if err := ln.(*net.TCPListener).SetDeadline(deadline); err != nil {
		return err
	}
	fmt.Printf("ready %s\n", ln.Addr())
	c, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	n, err := io.Copy(c, c)
	if err != nil {
		return fmt.Errorf("echo from %s after %d bytes: %w", c.RemoteAddr(), n, err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	fmt.Printf("echoed %d bytes to %s\n", n, c.RemoteAddr())
	return nil
}

func echoClient(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: tcp-echo-client ADDR N SECS")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 1 {
		return fmt.Errorf("bad size %q", args[1])
	}
	deadline, err := helperDeadline(args[2])
	if err != nil {
		return err
	}
	data := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{'d', 'm', 'v', 'p', 'n'})
	_, _ = rng.Read(data)

	t0 := time.Now()
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp4", args[0])
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, rerr := io.ReadAll(c)
	if err := <-werr; err != nil {
		return fmt.Errorf("send: %w (received %d of %d bytes)", err, len(got), n)
	}
	if rerr != nil {
		return fmt.Errorf("receive: %w after %d of %d bytes", rerr, len(got), n)
	}
	if !bytes.Equal(got, data) {
		i := 0
		for i < len(got) && i < len(data) && got[i] == data[i] {
			i++
		}
		return fmt.Errorf("echo differs: received %d of %d bytes, first difference at offset %d", len(got), n, i)
	}
	el := time.Since(t0)
	fmt.Printf("ok %d bytes echoed intact in %v (%.1f Mbit/s each way)\n", n, el.Round(time.Millisecond), float64(n)*8/el.Seconds()/1e6)
	return nil
}

// helperCmd returns the command that runs this test binary as helper role
// inside node's namespace.
func helperCmd(ctx context.Context, l *lab.Lab, node, role string, args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// The path, found again by the lab's re-exec in the namespace.
	argv := append([]string{self, "-test.run=^TestHelperProcess$", "--"}, args...)
	cmd := l.Command(ctx, node, argv...)
	cmd.Env = append(os.Environ(), helperEnv+"="+role)
	return cmd, nil
}

// tcpEcho sends size bytes over TCP from host node from to an echo server on
// host node to and checks they come back intact, all within limit.
func tcpEcho(ctx context.Context, l *lab.Lab, from, to string, size int, limit time.Duration) (string, error) {
	dst, ok := lab.HostAddr(to)
	if !ok {
		return "", fmt.Errorf("%s is not a LAN host", to)
	}
	ctx, cancel := context.WithTimeout(ctx, limit+5*time.Second)
	defer cancel()
	secs := strconv.FormatFloat(limit.Seconds(), 'f', 1, 64)
	srv, err := helperCmd(ctx, l, to, "tcp-echo-server", dst.String()+":0", secs)
	if err != nil {
		return "", err
	}
	var srvErr bytes.Buffer
	srv.Stderr = &srvErr
	pipe, err := srv.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := srv.Start(); err != nil {
		return "", err
	}
	lines := make(chan string, 4)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	fail := func(err error) (string, error) {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		return "", fmt.Errorf("%w (server: %s)", err, strings.TrimSpace(srvErr.String()))
	}
	var addr string
	select {
	case line, ok := <-lines:
		if !ok || !strings.HasPrefix(line, "ready ") {
			return fail(fmt.Errorf("echo server in %s did not start: %q", to, line))
		}
		addr = strings.TrimPrefix(line, "ready ")
	case <-time.After(10 * time.Second):
		return fail(fmt.Errorf("echo server in %s: no ready line within 10s", to))
	}
	cli, err := helperCmd(ctx, l, from, "tcp-echo-client", addr, strconv.Itoa(size), secs)
	if err != nil {
		return fail(err)
	}
	out, cerr := cli.CombinedOutput()
	if cerr != nil {
		return fail(fmt.Errorf("%s -> %s (%s): client: %v: %s", from, to, addr, cerr, strings.TrimSpace(string(out))))
	}
	var rest []string
	for line := range lines {
		rest = append(rest, line)
	}
	if err := srv.Wait(); err != nil {
		return "", fmt.Errorf("%s -> %s: echo server: %v: %s", from, to, err, strings.TrimSpace(srvErr.String()))
	}
	return fmt.Sprintf("%s -> %s (%s): %s; server: %s", from, to, addr, strings.TrimSpace(string(out)), strings.Join(rest, "; ")), nil
}
