package api

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Listen fails at once, with the path and the cause, when the socket cannot
// be created, so the daemon can refuse to start instead of running without
// an API.
func TestListenFails(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		filepath.Join(file, "api.sock"),              // parent is a file
		filepath.Join(dir, strings.Repeat("x", 120)), // longer than sun_path
	} {
		l, err := Listen(path)
		if err == nil {
			l.Close()
			t.Errorf("Listen(%q) succeeded", path)
			continue
		}
		if !strings.HasPrefix(err.Error(), "api: ") {
			t.Errorf("Listen(%q): %v, want an api: error", path, err)
		}
	}
}

// ServeListener serves on a listener from Listen; when ctx ends it closes
// it, which removes the socket file.
func TestListenThenServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "run", "api.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	// Requests made before Serve starts wait in the backlog.
	got := make(chan error, 1)
	go func() {
		var d DMVPN
		_, err := NewClient(sock).Get(ctx, "dmvpn", &d)
		if err == nil && d.Node != "hub" {
			err = os.ErrInvalid
		}
		got <- err
	}()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ServeListener(sctx, l, &fakeProvider{}) }()
	if err := <-got; err != nil {
		t.Fatalf("get: %v", err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("ServeListener: %v", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file after shutdown: %v, want it removed", err)
	}
}
