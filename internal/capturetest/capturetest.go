// Package capturetest reads the real-world captures the conformance tests
// decode (../shared/captures, kept outside the repository: a bare clone
// skips those tests). It is for tests only.
package capturetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Env overrides the captures directory.
const Env = "DMVPN_CAPTURES"

// Lookup returns the captures directory: $DMVPN_CAPTURES, else
// <repo>/../shared/captures with <repo> the nearest directory above the
// working directory (a test's package directory) that holds go.mod. ok is
// false when that directory does not exist: a bare clone has no ../shared.
func Lookup() (dir string, ok bool) {
	if d := os.Getenv(Env); d != "" {
		fi, err := os.Stat(d)
		return d, err == nil && fi.IsDir()
	}
	root, err := filepath.Abs(".")
	if err != nil {
		return "", false
	}
	for range 16 { // bounded: a package is never this deep
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		root = filepath.Dir(root)
	}
	d := filepath.Join(root, "..", "shared", "captures")
	fi, err := os.Stat(d)
	return d, err == nil && fi.IsDir()
}

// Dir returns the captures directory (see Lookup), or skips t when there is
// none: a bare clone has no ../shared, and the test is skipped even with
// DMVPN_E2E=1, since the captures are not part of the project. A
// $DMVPN_CAPTURES that is not a directory fails t.
func Dir(t *testing.T) string {
	t.Helper()
	d, ok := Lookup()
	if ok {
		return d
	}
	if os.Getenv(Env) != "" {
		t.Fatalf("%s=%q is not a directory", Env, d)
	}
	t.Logf("captures directory %s not found; a bare clone has none", d)
	t.Skipf("skipped: no real captures in %s (set %s to a directory holding INDEX.md's captures)", d, Env)
	return d
}

// Frame is one captured frame.
type Frame struct {
	Num             int // 1-based, as TShark numbers frames
	Link            layers.LinkType
	Data            []byte
	WireLen, CapLen int
}

// ReadFrames reads every frame of a pcap or pcapng file.
func ReadFrames(path string) ([]Frame, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	type source interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var src source
	var linkOf func(gopacket.CaptureInfo) layers.LinkType
	if strings.HasSuffix(path, ".pcapng") {
		r, err := pcapgo.NewNgReader(fh, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, err
		}
		src = r
		linkOf = func(ci gopacket.CaptureInfo) layers.LinkType {
			if ifc, err := r.Interface(ci.InterfaceIndex); err == nil {
				return ifc.LinkType
			}
			return r.LinkType()
		}
	} else {
		r, err := pcapgo.NewReader(fh)
		if err != nil {
			return nil, err
		}
		src = r
		linkOf = func(gopacket.CaptureInfo) layers.LinkType { return r.LinkType() }
	}
	var frames []Frame
	for n := 1; ; n++ {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return frames, fmt.Errorf("frame %d: %w", n, err)
		}
		frames = append(frames, Frame{Num: n, Link: linkOf(ci), Data: data, WireLen: ci.Length, CapLen: ci.CaptureLength})
	}
}

// LinkToIPv4 strips the link layer and returns the IPv4 packet the frame
// carries, or nil when it carries something else.
func LinkToIPv4(link layers.LinkType, data []byte) ([]byte, error) {
	df := gopacket.NilDecodeFeedback
	var et layers.EthernetType
	var rest []byte
	switch link {
	case layers.LinkTypeEthernet:
		var eth layers.Ethernet
		if err := eth.DecodeFromBytes(data, df); err != nil {
			return nil, fmt.Errorf("ethernet: %w", err)
		}
		et, rest = eth.EthernetType, eth.Payload
	case layers.LinkTypeLinuxSLL:
		var sll layers.LinuxSLL
		if err := sll.DecodeFromBytes(data, df); err != nil {
			return nil, fmt.Errorf("linux SLL: %w", err)
		}
		et, rest = sll.EthernetType, sll.Payload
	case layers.LinkTypeLinuxSLL2:
		var sll layers.LinuxSLL2
		if err := sll.DecodeFromBytes(data, df); err != nil {
			return nil, fmt.Errorf("linux SLL2: %w", err)
		}
		et, rest = sll.ProtocolType, sll.Payload
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		var lo layers.Loopback
		if err := lo.DecodeFromBytes(data, df); err != nil {
			return nil, fmt.Errorf("loopback: %w", err)
		}
		if lo.Family != layers.ProtocolFamilyIPv4 {
			return nil, nil
		}
		return lo.Payload, nil
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, 12, 14: // 12 and 14: raw IP on some BSDs
		if len(data) > 0 && data[0]>>4 == 4 {
			return data, nil
		}
		return nil, nil
	default:
		return nil, fmt.Errorf("unsupported link type %v (%d)", link, int(link))
	}
	for et == layers.EthernetTypeDot1Q || et == layers.EthernetTypeQinQ {
		var q layers.Dot1Q
		if err := q.DecodeFromBytes(rest, df); err != nil {
			return nil, fmt.Errorf("802.1Q: %w", err)
		}
		et, rest = q.Type, q.Payload
	}
	if et != layers.EthernetTypeIPv4 {
		return nil, nil
	}
	return rest, nil
}

// ReadTSV reads a TShark fields export (the NAME.PROTO.tsv files beside the
// captures): a header row of column names, then one row per frame, keyed
// by frame.number.
func ReadTSV(path string) (map[int]map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	cols := strings.Split(lines[0], "\t")
	rows := map[int]map[string]string{}
	for i, l := range lines[1:] {
		vals := strings.Split(l, "\t")
		if len(vals) > len(cols) {
			return nil, fmt.Errorf("%s:%d: %d fields, header has %d", path, i+2, len(vals), len(cols))
		}
		row := map[string]string{}
		for j, c := range cols {
			if j < len(vals) {
				row[c] = vals[j]
			}
		}
		n, err := strconv.Atoi(row["frame.number"])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: frame.number: %v", path, i+2, err)
		}
		rows[n] = row
	}
	return rows, nil
}

// WriteRawPcap writes packets as a classic pcap file of raw IP packets
// (LINKTYPE_RAW, 101), one second apart, for tshark to read back what an
// encoder wrote.
func WriteRawPcap(path string, packets [][]byte) error {
	var b bytes.Buffer
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4) // magic, microseconds
	binary.LittleEndian.PutUint16(h[4:], 2)          // version 2.4
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 65535) // snaplen
	binary.LittleEndian.PutUint32(h[20:], 101)   // LINKTYPE_RAW
	b.Write(h[:])
	for i, p := range packets {
		var r [16]byte
		binary.LittleEndian.PutUint32(r[0:], uint32(1700000000+i))
		binary.LittleEndian.PutUint32(r[8:], uint32(len(p)))
		binary.LittleEndian.PutUint32(r[12:], uint32(len(p)))
		b.Write(r[:])
		b.Write(p)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// Tshark runs the tshark binary with args (bounded: 60 s) and a private,
// empty configuration, so no user preference changes how it dissects; it
// fails t with tshark's stderr if it fails, and returns its stdout.
func Tshark(t *testing.T, tshark string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tshark, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+t.TempDir(), "HOME="+t.TempDir())
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}
