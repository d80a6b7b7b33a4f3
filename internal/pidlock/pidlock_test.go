package pidlock

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestAcquireConflictRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.sock.lock")
	l, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	defer l.Release()
	if l.Path() != path {
		t.Errorf("Path() = %q, want %q", l.Path(), path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("lock file mode %v, want 0600", m)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(os.Getpid()) + "\n"; string(b) != want {
		t.Errorf("lock file holds %q, want %q", b, want)
	}

	// A second open file description conflicts, even in this process.
	l2, err := Acquire(path)
	if err == nil {
		l2.Release()
		t.Fatal("second Acquire on a held lock succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Acquire: %v, want ErrLocked", err)
	}
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second Acquire: %T %v, want *LockedError", err, err)
	}
	if le.Path != path || le.PID != os.Getpid() {
		t.Errorf("LockedError{Path: %q, PID: %d}, want {%q, %d}", le.Path, le.PID, path, os.Getpid())
	}
	want := path + " is locked by PID " + strconv.Itoa(os.Getpid())
	if err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	// The refused attempt must not have touched the holder's PID.
	if b, _ := os.ReadFile(path); string(b) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("after a refused Acquire the file holds %q", b)
	}

	if err := l.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Release: %v, want the file removed", err)
	}
	l3, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l3.Release()
}

// A stale file (its process gone, so no flock) does not block a start,
// whatever it holds.
func TestStaleFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	if err := os.WriteFile(path, []byte("99999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire over a stale file: %v", err)
	}
	defer l.Release()
	if b, _ := os.ReadFile(path); string(b) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("file holds %q after Acquire", b)
	}
}

// A holder that wrote no PID (or garbage) is still reported, without one.
func TestLockedPIDUnknown(t *testing.T) {
	for _, content := range []string{"", "not a pid\n", strings.Repeat("9", 100)} {
		path := filepath.Join(t.TempDir(), "x.lock")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			t.Fatal(err)
		}
		_, err = Acquire(path)
		f.Close()
		var le *LockedError
		if !errors.As(err, &le) || le.PID != 0 {
			t.Errorf("content %q: Acquire = %v, want a LockedError without PID", content, err)
			continue
		}
		if want := path + " is locked by another process (PID unknown)"; err.Error() != want {
			t.Errorf("content %q: message %q, want %q", content, err, want)
		}
	}
}

func TestAcquireErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Acquire(filepath.Join(dir, "missing", "x.lock")); err == nil || errors.Is(err, ErrLocked) ||
		!strings.Contains(err.Error(), "missing/x.lock") {
		t.Errorf("Acquire in a missing directory: %v, want an error naming the file", err)
	}
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link.lock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if l, err := Acquire(link); err == nil {
		l.Release()
		t.Error("Acquire through a symbolic link succeeded")
	}
	if _, err := os.Lstat(target); err == nil {
		t.Error("Acquire through a symbolic link created its target")
	}
}

// The file is removed and recreated between Acquire's open and its flock
// (a holder releasing, a third process starting): Acquire must not keep a
// lock on the removed file, which nobody else would see.
func TestAcquireFileReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	replace := func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { afterLock = nil })

	once := true
	afterLock = func() {
		if once {
			once = false
			replace()
		}
	}
	l, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	afterLock = nil
	defer l.Release()
	if b, _ := os.ReadFile(path); string(b) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("the file at the path holds %q: the lock is on another file", b)
	}
	if l2, err := Acquire(path); !errors.Is(err, ErrLocked) {
		l2.Release()
		t.Errorf("Acquire of the file at the path: %v, want ErrLocked", err)
	}

	afterLock = replace
	l.Release()
	if l3, err := Acquire(path); err == nil {
		l3.Release()
		t.Error("Acquire of a file replaced at every attempt succeeded")
	} else if !strings.Contains(err.Error(), "keeps being replaced") {
		t.Errorf("Acquire of a file replaced at every attempt: %v", err)
	}
}

// Release removes only its own file: one put at the path by somebody else
// stays.
func TestReleaseKeepsOthersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	l, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("42\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "42\n" {
		t.Errorf("after Release the other file: %q, %v", b, err)
	}
}
