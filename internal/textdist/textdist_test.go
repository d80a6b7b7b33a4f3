package textdist

import "testing"

func TestLevenshtein(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"tunel", "tunnel", 1}, {"holdtim", "holdtime", 1}, {"kitten", "sitting", 3}, {"abc", "", 3}, {"", "ab", 2}} {
		if got := Levenshtein(c.a, c.b); got != c.d {
			t.Errorf("Levenshtein(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}
