package e2e

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// What checkTshark reads in `tshark -V` (4.0) output.
var (
	tsFrameRE    = regexp.MustCompile(`(?m)^Frame \d+: `)
	tsProtosRE   = regexp.MustCompile(`\[Protocols in frame: ([a-z0-9:_.-]+)\]`)
	tsNHRPTypeRE = regexp.MustCompile(`NHRP Packet Type: NHRP ([A-Za-z ]+) \(\d+\)`)
	tsChecksumRE = regexp.MustCompile(`NHRP Packet Checksum: 0x[0-9a-f]{4} \[([a-z ]+)\]`)
	tsGREKeyRE   = regexp.MustCompile(`(?m)^\s+Key: 0x([0-9a-f]{8})$`)
)

// checkTshark checks `tshark -V` output of the hub's wan0 capture (GRE and
// UDP 4754 only): no frame is Malformed or carries an expert warning or
// error, every NHRP packet's checksum is correct, every GRE header has the
// lab's key, and registrations (request and reply), purges and data were
// seen over both raw GRE and GRE-in-UDP. It returns a summary.
func checkTshark(t *testing.T, out string) string {
	t.Helper()
	starts := tsFrameRE.FindAllStringIndex(out, -1)
	if len(starts) == 0 {
		t.Fatalf("tshark shows no frame:\n%.2000s", out)
	}
	seen := map[string]int{} // "<NHRP type or data> over <gre|udp>"
	bad := 0
	report := func(frame, format string, args ...any) {
		bad++
		if bad <= 5 { // the first few in full, the rest counted
			t.Errorf("%s\n%s", fmt.Sprintf(format, args...), frame)
		}
	}
	for i, s := range starts {
		end := len(out)
		if i+1 < len(starts) {
			end = starts[i+1][0]
		}
		frame := out[s[0]:end]
		head, _, _ := strings.Cut(frame, "\n")
		m := tsProtosRE.FindStringSubmatch(frame)
		if m == nil {
			report(frame, "%s: no protocol list", head)
			continue
		}
		protos := m[1]
		over := "gre"
		if strings.Contains(protos, ":udp:gre") {
			over = "udp"
		} else if !strings.Contains(protos, ":ip:gre") {
			report(frame, "%s: neither GRE nor GRE-in-UDP: %s", head, protos)
			continue
		}
		checked := frame
		if strings.Contains(protos, ":tcp") {
			// TCP's sequence analysis (D-SACK, retransmissions of the BGP
			// sessions inside the tunnel) is about the kernels' TCP, not
			// about what we encode, as in noMalformed.
			checked = strings.ReplaceAll(checked, "Expert Info (Warning/Sequence)", "")
		}
		for _, w := range []string{"Malformed", "Expert Info (Warning", "Expert Info (Error"} {
			if strings.Contains(checked, w) {
				report(frame, "%s: %q", head, w)
			}
		}
		if keys := tsGREKeyRE.FindAllStringSubmatch(frame, -1); len(keys) != 1 || keys[0][1] != fmt.Sprintf("%08x", 42) {
			report(frame, "%s: GRE keys %v, want one, 0x0000002a", head, keys)
		}
		if strings.HasSuffix(protos, ":nhrp") || strings.Contains(protos, ":nhrp:") {
			typ := tsNHRPTypeRE.FindStringSubmatch(frame)
			if typ == nil {
				report(frame, "%s: NHRP without a packet type", head)
				continue
			}
			sums := tsChecksumRE.FindAllStringSubmatch(frame, -1)
			if len(sums) == 0 {
				report(frame, "%s: NHRP without a checksum", head)
			}
			for _, c := range sums {
				if c[1] != "correct" {
					report(frame, "%s: NHRP checksum [%s]", head, c[1])
				}
			}
			seen[typ[1]+" over "+over]++
			continue
		}
		if strings.Contains(protos, ":gre:ip:") {
			seen["data (IPv4) over "+over]++
		}
	}
	for _, want := range []string{
		"Registration Request over gre", "Registration Reply over gre",
		"Registration Request over udp", "Registration Reply over udp",
		"Purge Request over gre", "Purge Request over udp",
		"data (IPv4) over gre", "data (IPv4) over udp",
	} {
		if seen[want] == 0 {
			t.Errorf("tshark saw no %s", want)
		}
	}
	var parts []string
	for k, n := range seen {
		parts = append(parts, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(parts)
	if bad > 5 {
		t.Errorf("... %d problems in all", bad)
	}
	return fmt.Sprintf("%d frames, %d problems; %s", len(starts), bad, strings.Join(parts, ", "))
}
