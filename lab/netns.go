package lab

// Named network namespaces without iproute2.
//
// A namespace is created the way `ip netns add` creates it: a thread unshares
// its network namespace and bind-mounts it (/proc/thread-self/ns/net) on
// /var/run/netns/NAME, so `ip netns exec NAME ...` and anything else that
// knows that convention sees it; deleting it unmounts and removes that file.
//
// Work inside a namespace (netlink, sysctls under /proc/sys/net, sockets)
// runs on a fresh OS thread: InNamespace starts a goroutine, locks it to its
// thread, setns(2)s the thread into the namespace and runs the function
// there. The goroutine never unlocks, so when it returns the Go runtime
// destroys the thread instead of handing it, still inside the namespace, to
// other goroutines. A socket opened there stays in the namespace for its
// whole life, whatever thread uses it later.
//
// Programs (the daemons, and the tools tests run: tcpdump, iperf3, ...) are
// started through a re-exec of the running binary: NamespaceCommand returns
// an *exec.Cmd for /proc/self/exe with the magic argv[0] netnsExecArg0. Every
// binary that links this package (dmvpn, the lab and e2e test binaries) runs
// this package's init first, which recognises that argv[0], joins the
// namespace, gives itself a private mount namespace with a /sys that shows
// the namespace's devices (what `ip netns exec` does), and execve(2)s the
// program in place. So the PID of the started command is the program's own
// PID, and callers can still set Env, Stdin/Stdout, SysProcAttr and so on
// before Start, as with any *exec.Cmd.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/var/run/netns"

// netnsExecArg0 is argv[0] of a re-exec that enters a namespace (see the top
// of this file): argv is [netnsExecArg0, NAMESPACE, PROGRAM, ARGV0, ARGS...].
const netnsExecArg0 = "dmvpn-lab-netns-exec"

func init() {
	if len(os.Args) >= 4 && os.Args[0] == netnsExecArg0 {
		os.Exit(netnsExecMain(os.Args[1], os.Args[2], os.Args[3:]))
	}
}

// netnsExecMain joins namespace ns and execs prog with argv; it returns only
// on failure, with ip netns exec's exit status (255).
func netnsExecMain(ns, prog string, argv []string) int {
	// init runs on the main thread, locked; execve replaces the whole
	// process with this thread's namespaces.
	runtime.LockOSThread()
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "dmvpn lab: in namespace %s: "+format+"\n", append([]any{ns}, args...)...)
		return 255
	}
	fd, err := unix.Open(filepath.Join(netnsDir, ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("%v", err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fail("setns: %v", err)
	}
	unix.Close(fd)
	privateSys(ns)
	if err := syscall.Exec(prog, argv, os.Environ()); err != nil {
		return fail("exec %s: %v", prog, err)
	}
	return 255
}

// privateSys gives the calling thread its own mount namespace, no mount
// propagating back, with a sysfs that describes its network namespace, as
// `ip netns exec` does. Best effort: without it (a container that may not
// mount sysfs) only /sys/class/net shows the wrong namespace.
func privateSys(ns string) {
	if unix.Unshare(unix.CLONE_NEWNS) != nil {
		return
	}
	if unix.Mount("", "/", "none", unix.MS_SLAVE|unix.MS_REC, "") != nil {
		return
	}
	var flags uintptr
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err != nil {
		var st unix.Statfs_t
		if unix.Statfs("/sys", &st) == nil && st.Flags&unix.ST_RDONLY != 0 {
			flags = unix.MS_RDONLY
		}
	}
	_ = unix.Mount(ns, "/sys", "sysfs", flags, "")
}

// NewNamespace creates the named network namespace name, with lo down, as
// `ip netns add name` does. It fails if the name is taken.
func NewNamespace(name string) error {
	if err := checkNSName(name); err != nil {
		return err
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := sharedMount(netnsDir); err != nil {
		return fmt.Errorf("lab: making %s a shared mount: %w", netnsDir, err)
	}
	path := filepath.Join(netnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if err != nil {
		return fmt.Errorf("lab: creating namespace %s: %w", name, err)
	}
	f.Close()
	err = onNewThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare(CLONE_NEWNET): %w (does the kernel have network namespaces?)", err)
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount on %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("lab: creating namespace %s: %w", name, err)
	}
	return nil
}

// sharedMount makes dir a mount point with shared propagation, so that a
// namespace mounted or unmounted there shows in every mount namespace (the
// daemons' private ones included); iproute2 does the same.
func sharedMount(dir string) error {
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil || !errors.Is(err, unix.EINVAL) {
		return err
	}
	// Not a mount point yet.
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
}

// DeleteNamespace removes the named namespace, as `ip netns del` does: the
// namespace itself lives on while a process runs in it or a file descriptor
// refers to it. It is not an error if it does not exist.
func DeleteNamespace(name string) error {
	if err := checkNSName(name); err != nil {
		return err
	}
	path := filepath.Join(netnsDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("lab: deleting namespace %s: unmount: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("lab: deleting namespace %s: %w", name, err)
	}
	return nil
}

func checkNSName(name string) error {
	if name == "" || name == "." || name == ".." || filepath.Base(name) != name {
		return fmt.Errorf("lab: bad namespace name %q", name)
	}
	return nil
}

func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// ListNamespaces returns the named network namespaces, like `ip netns list`.
func ListNamespaces() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var v []string
	for _, e := range ents {
		v = append(v, e.Name())
	}
	return v, nil
}

// InNamespace runs f on an OS thread of its own inside the named network
// namespace and returns f's error. Netlink sockets, sockets and
// /proc/sys/net opened by f belong to that namespace. f must not start
// goroutines that expect to be in the namespace.
func InNamespace(name string, f func() error) error {
	if err := checkNSName(name); err != nil {
		return err
	}
	fd, err := unix.Open(filepath.Join(netnsDir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lab: namespace %s: %w", name, err)
	}
	defer unix.Close(fd)
	return onNewThread(func() error {
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("lab: entering namespace %s: %w", name, err)
		}
		return f()
	})
}

// onNewThread runs f in a goroutine locked to its OS thread and never
// unlocked: the runtime ends the thread with the goroutine, whatever f did
// to its namespaces.
func onNewThread(f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer func() {
			if r := recover(); r != nil {
				ch <- fmt.Errorf("panic: %v", r)
			}
		}()
		ch <- f()
	}()
	return <-ch
}

// NamespaceCommand returns an unstarted command that runs argv inside the
// named network namespace, like `ip netns exec name argv...` (see the top of
// netns.go: a re-exec of this binary that joins the namespace and execs
// argv[0], found on PATH now, in place). ctx (nil: none) kills it, and it
// gets WaitDelay 1s. cmd.Args starts with the re-exec's arguments; the PID
// is the program's.
func NamespaceCommand(ctx context.Context, name string, argv ...string) *exec.Cmd {
	if ctx == nil {
		ctx = context.Background()
	}
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.WaitDelay = time.Second
	if len(argv) == 0 {
		cmd.Err = fmt.Errorf("lab: command in %s: empty command", name)
		return cmd
	}
	if err := checkNSName(name); err != nil {
		cmd.Err = err
		return cmd
	}
	prog, err := exec.LookPath(argv[0])
	if err != nil {
		cmd.Err = fmt.Errorf("lab: in namespace %s: %w", name, err)
		return cmd
	}
	if abs, err := filepath.Abs(prog); err == nil {
		prog = abs
	}
	cmd.Args = append([]string{netnsExecArg0, name, prog}, argv...)
	return cmd
}

// netnsPIDs returns the processes (not this one) whose network namespace is
// the named one, like `ip netns pids`.
func netnsPIDs(name string) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, name), &want); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
