// Package pidlock keeps two processes from running with the same
// configuration: the first takes an exclusive flock(2) on a lock file and
// writes its PID into it; the lock lasts as long as the process keeps the
// file open (the kernel releases it when the process dies, however it dies),
// so a stale file left behind by a killed process never blocks the next
// start. Release removes the file.
//
// flock locks belong to an open file description, so two Acquire calls in
// one process conflict just as two processes do.
package pidlock

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ErrLocked is what errors.Is finds in Acquire's error when another process
// holds the lock.
var ErrLocked = errors.New("locked by another process")

// LockedError says who holds the lock at Path.
type LockedError struct {
	Path string
	PID  int // the holder's PID as written in the file; 0 if unknown
}

func (e *LockedError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("%s is locked by PID %d", e.Path, e.PID)
	}
	return fmt.Sprintf("%s is locked by another process (PID unknown)", e.Path)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is a held lock.
type Lock struct {
	f    *os.File
	path string
}

// maxPIDText bounds what is read from a lock file: a PID and a newline.
const maxPIDText = 32

// maxAttempts bounds how often Acquire starts again because the file it
// locked was removed or replaced meanwhile (by a holder's Release).
const maxAttempts = 10

// afterLock, when set (by tests), runs between taking the flock and
// checking that the file is still the one at the path.
var afterLock func()

// Acquire takes the lock at path without waiting, creating the file (mode
// 0600) if needed, and writes this process's PID into it. If another open
// file description holds the lock it returns a *LockedError (ErrLocked)
// that names the file and, when the file says, the holder's PID. The
// directory must exist. A symbolic link at path is refused.
func Acquire(path string) (*Lock, error) {
	for range maxAttempts {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock file: %w", err)
		}
		if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			defer f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, &LockedError{Path: path, PID: readPID(f)}
			}
			return nil, fmt.Errorf("lock file: flock %s: %w", path, err)
		}
		if afterLock != nil {
			afterLock()
		}
		// The holder we waited for may have removed the file between our
		// open and our flock (Release): then we locked a file nobody else
		// sees, and the next process would lock a new one. Start again.
		if !samePath(f, path) {
			f.Close()
			continue
		}
		return hold(f, path)
	}
	return nil, fmt.Errorf("lock file: %s keeps being replaced (tried %d times)", path, maxAttempts)
}

// samePath reports whether path still names the open file f.
func samePath(f *os.File, path string) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	pi, err := os.Lstat(path)
	return err == nil && os.SameFile(fi, pi)
}

// hold writes this process's PID into the locked file f.
func hold(f *os.File, path string) (*Lock, error) {
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	err := f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock file: write PID to %s: %w", path, err)
	}
	return &Lock{f: f, path: path}, nil
}

// Path is the lock file's path.
func (l *Lock) Path() string { return l.path }

// Release removes the file and releases the lock. It removes the file
// while still holding the lock, and only if the path still names it; a
// process that opened the file just before sees, once it has the flock,
// that the file is gone and starts again (see Acquire). Release is safe to
// call more than once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	var err error
	if samePath(l.f, l.path) {
		err = os.Remove(l.path)
	}
	if cerr := l.f.Close(); err == nil { // closing the last descriptor releases the flock
		err = cerr
	}
	l.f = nil
	return err
}

func flock(f *os.File, how int) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := sc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), how)
			if ferr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}

// readPID returns the PID written in the lock file f, or 0.
func readPID(f *os.File) int {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, maxPIDText))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
