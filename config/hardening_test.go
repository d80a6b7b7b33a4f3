package config

import (
	"strings"
	"testing"
	"time"
)

const hardeningBase = `name: h1
tunnel:
  address: 10.0.0.1/24
  source: 192.0.2.1
nhrp:
  network-id: 1
`

func TestNHRPBoundsDefaultsAndValues(t *testing.T) {
	c, err := Parse("h.yaml", []byte(hardeningBase))
	if err != nil {
		t.Fatal(err)
	}
	n := c.NHRP
	if n.MaxReceive != DefaultMaxReceive || n.MaxHoldtime != DefaultMaxHoldtime || n.MaxEntries != DefaultMaxEntries ||
		n.MaxEntriesPerNBMA != DefaultMaxEntriesPerNBMA || n.AuthenticationMaxSkew != DefaultAuthMaxSkew {
		t.Fatalf("defaults %+v", n)
	}
	c, err = Parse("h.yaml", []byte(hardeningBase+`  holdtime: 9000s
  max-receive: 50/2s
  max-entries: 2000
  max-entries-per-nbma: 4
  authentication-keys:
    - id: 2
      secret: 0123456789abcdef
    - id: 3
      secret: fedcba9876543210XX
  authentication-max-skew: 30s
`))
	if err != nil {
		t.Fatal(err)
	}
	n = c.NHRP
	if n.MaxReceive != (Rate{50, 2 * time.Second}) || n.MaxHoldtime != 9000*time.Second || n.MaxEntries != 2000 || n.MaxEntriesPerNBMA != 4 {
		t.Fatalf("values %+v", n)
	}
	if len(n.AuthenticationKeys) != 2 || n.AuthenticationKeys[1].ID != 3 || n.AuthenticationMaxSkew != 30*time.Second {
		t.Fatalf("keys %+v", n.AuthenticationKeys)
	}
}

func TestNHRPAuthenticationKeyErrors(t *testing.T) {
	cases := map[string]string{
		"  authentication: lab\n  authentication-keys:\n    - id: 2\n      secret: 0123456789abcdef\n":                       "h.yaml:9:5: nhrp.authentication-keys: set together with nhrp.authentication",
		"  authentication-keys:\n    - id: 1\n      secret: 0123456789abcdef\n":                                              `h.yaml:8:11: nhrp.authentication-keys[0].id: "1" is not valid (valid: an integer 2..65535 (1 is Cisco's clear-text form))`,
		"  authentication-keys:\n    - id: 2\n      secret: short\n":                                                         "h.yaml:9:15: nhrp.authentication-keys[0].secret: is 5 bytes long (valid: a string of at least 16 bytes)",
		"  authentication-keys:\n    - id: 2\n      secret: 0123456789abcdef\n    - id: 2\n      secret: 0123456789abcdef\n": "nhrp.authentication-keys[1].id: key ID 2 appears twice",
		"  max-receive: 0/1s\n": "nhrp.max-receive: \"0/1s\" is not valid",
		"  max-entries: 3\n":    `nhrp.max-entries: "3" is not valid`,
	}
	for body, want := range cases {
		_, err := Parse("h.yaml", []byte(hardeningBase+body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q:\n got %v\nwant %s", body, err, want)
		}
	}
}
