package config

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// limitsBase is a valid hub configuration; the cases below change one line.
const limitsBase = `name: h1
tunnel:
  address: 10.0.0.1/24
  source: 192.0.2.1
nhrp:
  network-id: 1
`

func TestQuote(t *testing.T) {
	long := strings.Repeat("a", 50<<20)
	for _, tt := range []struct{ in, want string }{
		{"", `""`},
		{"tcp", `"tcp"`},
		{"a\x00b\n", `"a\x00b\n"`},
		{strings.Repeat("b", maxQuoted), strconv.Quote(strings.Repeat("b", maxQuoted))},
		{strings.Repeat("b", maxQuoted+1), `"` + strings.Repeat("b", maxQuoted) + `…" (129 bytes)`},
		{long, `"` + strings.Repeat("a", maxQuoted) + `…" (52428800 bytes)`},
		// Cut before a rune that straddles the limit, never inside it.
		{"x" + strings.Repeat("é", 100), `"x` + strings.Repeat("é", (maxQuoted-1)/2) + `…" (201 bytes)`},
	} {
		got := quote(tt.in)
		if got != tt.want {
			t.Errorf("quote(%.20q… %d bytes) = %.80s…, want %.80s…", tt.in, len(tt.in), got, tt.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("quote(%.20q…) = %q is not valid UTF-8", tt.in, got)
		}
	}
}

// A huge value is named in its error, file:line:col and field path first,
// but only its first maxQuoted bytes are repeated.
func TestLongValuesCut(t *testing.T) {
	const n = 1 << 19
	v := strings.Repeat("a", n)
	cut := `"` + strings.Repeat("a", maxQuoted) + `…"`
	withLen := cut + " (" + strconv.Itoa(n) + " bytes)"
	for _, tt := range []struct {
		name string
		yaml string
		want string // one of the errors, without "f.yaml:"
	}{
		{"name", strings.Replace(limitsBase, "name: h1", "name: "+v, 1),
			"1:7: name: " + withLen + " is not valid (valid: " + validName + ")"},
		{"source", strings.Replace(limitsBase, "source: 192.0.2.1", "source: "+v, 1),
			"4:11: tunnel.source: " + withLen + " is not valid (valid: this node's NBMA address as an IP address literal, e.g. 198.51.100.1)"},
		{"device", limitsBase[:len("name: h1\ntunnel:\n")] + "  device: " + v + "\n" + limitsBase[len("name: h1\ntunnel:\n"):],
			"3:11: tunnel.device: " + cut + " is " + strconv.Itoa(n) + " bytes long (valid: a Linux interface name of 1 to 15 bytes without '/', ':' or whitespace, e.g. dmvpn0)"},
		// An explicit key: YAML limits implicit ones to 1024 characters.
		{"unknown field", limitsBase + "? " + v + "\n: 1\n",
			"7:3: unknown field " + withLen + " (valid here: name, log-level, log-format, log-levels, api-socket, tunnel, nhrp, routes, bgp, ipsec, metrics, hooks)"},
		{"scalar for a mapping", limitsBase + "routes:\n  - " + v + "\n",
			"8:5: routes[0]: expected a mapping of fields, got the value " + withLen + " (valid here: prefix, via)"},
		{"prefix", limitsBase + "routes:\n  - prefix: " + v + "\n    via: 10.0.0.2\n",
			"8:13: routes[0].prefix: " + withLen + " is not valid (valid: a destination prefix such as 10.1.0.0/16)"},
		{"integer", strings.Replace(limitsBase, "network-id: 1", "network-id: "+strings.Repeat("9", n), 1),
			"6:15: nhrp.network-id: " + strings.ReplaceAll(withLen, "a", "9") + " is not valid (valid: an integer 1..4294967295)"},
		{"transport", strings.Replace(limitsBase, "nhrp:", "  transport: "+v+"\nnhrp:", 1),
			"5:14: tunnel.transport: " + withLen + " is not valid (valid: gre, udp)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if len(msg) > 2000 {
				t.Errorf("error message is %d bytes long: %.300s…", len(msg), msg)
			}
			found := false
			for _, line := range strings.Split(msg, "\n") {
				found = found || line == "f.yaml:"+tt.want
			}
			if !found {
				t.Errorf("errors:\n%.2000s\nwant among them:\nf.yaml:%s", msg, tt.want)
			}
		})
	}
}

// The finding itself: a 50 MB scalar.
func TestFiftyMegabyteScalar(t *testing.T) {
	if testing.Short() {
		t.Skip("parses 50 MB")
	}
	_, err := Parse("f.yaml", []byte(strings.Replace(limitsBase, "name: h1", "name: "+strings.Repeat("a", 50<<20), 1)))
	if err == nil {
		t.Fatal("no error")
	}
	if len(err.Error()) > 1000 || !strings.Contains(err.Error(), `…" (52428800 bytes) is not valid`) {
		t.Errorf("error (%d bytes): %.400s", len(err.Error()), err)
	}
}

// A YAML library message that repeats text from the file (an unknown
// anchor's name) is cut too.
func TestLibraryMessageCut(t *testing.T) {
	_, err := Parse("f.yaml", []byte("name: *"+strings.Repeat("x", 1<<16)+"\n"))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if len(msg) > 400 || !strings.HasPrefix(msg, "f.yaml: YAML syntax: unknown anchor 'xxx") || !strings.Contains(msg, "…") {
		t.Errorf("error (%d bytes): %.400s", len(msg), msg)
	}
}

func writeSized(t *testing.T, size int) string {
	t.Helper()
	data := []byte(limitsBase)
	for len(data) < size {
		line := "# padding " + strings.Repeat("-", 60) + "\n"
		if rest := size - len(data); rest < len(line) {
			line = "#" + strings.Repeat("-", rest-2) + "\n"
			if rest == 1 {
				line = "\n"
			}
		}
		data = append(data, line...)
	}
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, data[:size], 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadSizeLimit(t *testing.T) {
	// Exactly at the limit: loads.
	path := writeSized(t, MaxFileSize)
	if c, err := Load(path); err != nil || c.Name != "h1" {
		t.Fatalf("Load of a %d-byte file: %v", MaxFileSize, err)
	}

	// One byte over: refused before parsing, naming the file and the limit.
	path = writeSized(t, MaxFileSize+1)
	_, err := Load(path)
	want := path + ": the file is 1048577 bytes, too large for a configuration (valid: at most 1048576 bytes, 1 MiB)"
	if err == nil || err.Error() != want {
		t.Errorf("Load of a %d-byte file: %v\nwant: %s", MaxFileSize+1, err, want)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.File != path {
		t.Errorf("Load error %T %v, want an *Error for %s", err, err, path)
	}

	// 50 MB of one scalar: refused without reading it.
	path = filepath.Join(t.TempDir(), "huge.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("name: "); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(50 << 20); err != nil { // sparse: no 50 MB written
		t.Fatal(err)
	}
	f.Close()
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "the file is 52428800 bytes, too large") {
		t.Errorf("Load of a 50 MB file: %v", err)
	}
}

// A file whose size is unknown (a pipe) is refused once it is read past
// the limit.
func TestLoadSizeLimitPipe(t *testing.T) {
	for _, size := range []int{MaxFileSize, MaxFileSize + 1} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(writeSized(t, size))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			_, _ = w.Write(data)
			w.Close()
		}()
		path := "/proc/self/fd/" + strconv.Itoa(int(r.Fd()))
		c, err := Load(path)
		r.Close()
		if size <= MaxFileSize {
			if err != nil || c.Name != "h1" {
				t.Errorf("Load of a %d-byte pipe: %v", size, err)
			}
			continue
		}
		want := path + ": the file is more than 1048576 bytes, too large for a configuration (valid: at most 1048576 bytes, 1 MiB)"
		if err == nil || err.Error() != want {
			t.Errorf("Load of a %d-byte pipe: %v\nwant: %s", size, err, want)
		}
	}
}
