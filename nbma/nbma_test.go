package nbma

import (
	"strings"
	"testing"
)

// TestTransportSpellings pins the spellings users see: the config's and the
// metrics label's (String, ParseTransport) and the log's (Name).
func TestTransportSpellings(t *testing.T) {
	for _, tc := range []struct {
		t            Transport
		config, name string
	}{
		{TransportGRE, "gre", "GRE"},
		{TransportUDP, "udp", "GRE-in-UDP"},
	} {
		if got := tc.t.String(); got != tc.config {
			t.Errorf("%d: String %q, want %q", tc.t, got, tc.config)
		}
		if got := tc.t.Name(); got != tc.name {
			t.Errorf("%d: Name %q, want %q", tc.t, got, tc.name)
		}
		if got, err := ParseTransport(tc.config); got != tc.t || err != nil {
			t.Errorf("ParseTransport(%q) = %v, %v; want %v", tc.config, got, err, tc.t)
		}
	}
	if TransportGRE == 0 || TransportUDP == 0 {
		t.Fatal("a transport is the zero value, which means none")
	}
	for _, u := range []Transport{0, 3, 255} {
		if got, want := u.String(), "transport("; !strings.HasPrefix(got, want) || u.Name() != got {
			t.Errorf("%d: String %q, Name %q; want %q... for both", u, got, u.Name(), want)
		}
	}
}

func TestParseTransportRefuses(t *testing.T) {
	for _, s := range []string{"", "GRE", "Udp", "esp", "gre ", "transport(1)"} {
		got, err := ParseTransport(s)
		if err == nil || got != 0 {
			t.Errorf("ParseTransport(%q) = %v, %v; want an error", s, got, err)
			continue
		}
		if want := `unknown transport "` + s + `" (valid: gre, udp)`; err.Error() != want {
			t.Errorf("ParseTransport(%q): %q, want %q", s, err, want)
		}
	}
}
