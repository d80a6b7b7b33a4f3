//go:build linux

package underlay

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/internal/testenv"
	"golang.org/x/sys/unix"
)

// inNetns runs open on a goroutine whose OS thread has been moved into a new
// network namespace containing only lo, brought up (127.0.0.0/8 and ::1 are
// then local). Sockets open creates belong to that namespace for their whole
// life, whichever thread later uses them, so the test body runs normally
// afterwards and never touches the root namespace. The goroutine exits
// without unlocking its thread, so the runtime discards the thread instead of
// reusing it; nothing needs restoring. The namespace disappears with the
// last socket in it.
func inNetns(tb testing.TB, open func() error) {
	tb.Helper()
	testenv.RequireRoot(tb)
	type result struct {
		err         error
		unavailable bool
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: see above.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			res <- result{fmt.Errorf("unshare(CLONE_NEWNET): %w", err), err == unix.EPERM}
			return
		}
		if err := linkUp("lo"); err != nil {
			res <- result{fmt.Errorf("set lo up in the new namespace: %w", err), false}
			return
		}
		res <- result{open(), false}
	}()
	select {
	case r := <-res:
		if r.unavailable {
			testenv.Unavailable(tb, r.err.Error())
		}
		if r.err != nil {
			tb.Fatal(r.err)
		}
	case <-time.After(10 * time.Second):
		tb.Fatal("timed out setting up the network namespace")
	}
}

// linkUp sets IFF_UP on an interface of the calling thread's namespace.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// linkMTU sets the MTU of an interface of the calling thread's namespace.
func linkMTU(name string, mtu uint32) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint32(mtu)
	return unix.IoctlIfreq(fd, unix.SIOCSIFMTU, ifr)
}
