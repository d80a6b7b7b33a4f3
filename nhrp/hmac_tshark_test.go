package nhrp_test

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/capturetest"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/nhrp"
)

// TestTsharkHMACAuthentication signs Registration Requests carrying the keyed
// authentication extension and has tshark dissect them: nothing malformed,
// the checksum good, every field as encoded, and the extension read as
// RFC 2332 §5.3.4 (reserved 0, SPI = key ID, Src Addr = the signer, then
// sequence number and MAC as authentication data).
func TestTsharkHMACAuthentication(t *testing.T) {
	tshark := testenv.RequireTool(t, "tshark")
	k := hmKeys(t, nhrp.HMACKey{ID: hmKeyB, Secret: hmSecretB}, nhrp.HMACKey{ID: hmKeyA, Secret: hmSecretA})

	var frames []tsFrame
	id := uint16(1)
	for _, tc := range []struct {
		name  string
		keyID uint16
		v6    bool
	}{
		{"registration ipv4 key A", hmKeyA, false},
		{"registration ipv6-over-ipv4 key B", hmKeyB, true},
	} {
		wire := hmSigned(t, k, tc.keyID, tc.v6, hmSeq+uint64(id))
		signer, keyID, seq, err := k.Verify(wire)
		if err != nil || keyID != tc.keyID {
			t.Fatalf("%s: Verify: %v (key %d)", tc.name, err, keyID)
		}
		// Expectations from the signed bytes as decoded, so the
		// authentication data is the real sequence number and MAC.
		var p nhrp.Packet
		if err := p.Decode(wire); err != nil {
			t.Fatalf("%s: Decode: %v", tc.name, err)
		}
		pins := map[string]string{
			"nhrp.auth_ext.reserved": "0",
			"nhrp.auth_ext.spi":      strconv.Itoa(int(tc.keyID)),
			"nhrp.hdr.chksum.status": "1",
			"_ws.malformed":          "",
		}
		if signer.Is4() {
			pins["nhrp.auth_ext.src_addr"] = signer.String()
		} else {
			pins["nhrp.auth_ext.src_addr_bytes"] = hex.EncodeToString(signer.AsSlice())
		}
		a, _ := p.Extension(nhrp.ExtAuthentication).Authentication()
		pins["nhrp.auth_ext.data"] = hex.EncodeToString(a.Data[signer.BitLen()/8:])
		if got, want := pins["nhrp.auth_ext.data"][:16], fmt.Sprintf("%016x", seq); got != want {
			t.Fatalf("%s: authentication data starts %s, want the sequence number %s", tc.name, got, want)
		}
		for _, udp := range []bool{false, true} {
			want := tsExp{}
			want.nhrp(&p, nil, nil)
			want["nhrp.hdr.chksum"] = []string{fmt.Sprintf("0x%04x", binary.BigEndian.Uint16(wire[12:]))}
			h := gre.Header{KeyPresent: true, Key: 0x000003e8, Protocol: gre.ProtoNHRP}
			data := tsGREFrame(t, wire, h, udp, id, want)
			id++
			frames = append(frames, tsFrame{name: fmt.Sprintf("%s udp=%v", tc.name, udp), data: data, want: want, pins: pins})
		}
	}

	path := filepath.Join(t.TempDir(), "nhrp-hmac.pcap")
	if err := tsWritePcap(path, frames); err != nil {
		t.Fatal(err)
	}
	perFrame := tsVerboseFrames(capturetest.Tshark(t, tshark, "-r", path, "-n", "-V"))
	if len(perFrame) != len(frames) {
		t.Fatalf("tshark -V shows %d frames, wrote %d", len(perFrame), len(frames))
	}
	for n, text := range perFrame {
		for _, bad := range []string{"Malformed", "Expert Info (Warning", "Expert Info (Error"} {
			if strings.Contains(text, bad) {
				t.Errorf("frame %d (%s): tshark -V shows %q:\n%s", n, frames[n-1].name, bad, text)
			}
		}
		i := strings.Index(text, "NHRP Authentication Extension")
		if i < 0 || !strings.Contains(text[i:], "SPI=") {
			t.Errorf("frame %d (%s): no authentication extension in tshark -V:\n%s", n, frames[n-1].name, text)
			continue
		}
		if j := strings.Index(text[i:], "Cisco NAT Address Extension"); j > 0 {
			t.Logf("frame %d (%s), as tshark shows it:\n%s", n, frames[n-1].name, text[i:i+j])
		}
	}

	args := []string{"-r", path, "-n", "-T", "fields",
		"-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|", "-E", "quote=n"}
	for _, f := range tsFields {
		args = append(args, "-e", f)
	}
	lines := strings.Split(strings.TrimSuffix(capturetest.Tshark(t, tshark, args...), "\n"), "\n")
	if len(lines) != len(frames) {
		t.Fatalf("tshark -T fields gave %d lines, wrote %d frames", len(lines), len(frames))
	}
	for i, line := range lines {
		f := &frames[i]
		cols := strings.Split(line, "\t")
		if len(cols) != len(tsFields) {
			t.Fatalf("frame %d: %d columns, want %d", i+1, len(cols), len(tsFields))
		}
		got := map[string]string{}
		for j, name := range tsFields {
			got[name] = cols[j]
		}
		want := map[string]string{"frame.number": strconv.Itoa(i + 1)}
		for name, v := range f.want {
			want[name] = strings.Join(v, "|")
		}
		for _, name := range tsFields {
			if got[name] != want[name] {
				t.Errorf("frame %d (%s): %s: tshark %q, encoded %q", i+1, f.name, name, got[name], want[name])
			}
		}
		for name, v := range f.pins {
			if got[name] != v {
				t.Errorf("frame %d (%s): %s: tshark %q, want %q", i+1, f.name, name, got[name], v)
			}
		}
	}
}
