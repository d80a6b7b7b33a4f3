package api

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"
)

// IPsec is `show ipsec`: the IKE SAs and the Child (ESP) SAs in one view,
// like Cisco's "show crypto ikev2 sa" and "show crypto ipsec sa".
type IPsec struct {
	Enabled bool   `json:"enabled"`
	Mode    string `json:"mode,omitempty"` // transport or tunnel (what we ask for)
	// KeyLog is the key-log file when one is written (its keys decrypt
	// everything).
	KeyLog string    `json:"key_log,omitempty"`
	IKE    []IKESA   `json:"ike_sas"`
	Child  []ChildSA `json:"child_sas"`
	// Counters are the ESP layer's and the IKE engine's counters, and the
	// clear-text GRE packets dropped.
	Counters map[string]uint64 `json:"counters"`
}

// IKESA is one IKE SA.
type IKESA struct {
	Peer      string    `json:"peer"`
	SPIi      string    `json:"spi_i"`
	SPIr      string    `json:"spi_r"`
	Initiator bool      `json:"initiator"`
	State     string    `json:"state"`
	RemoteID  string    `json:"remote_id,omitempty"`
	Suite     string    `json:"suite,omitempty"` // encryption/integrity/PRF
	Group     string    `json:"dh_group,omitempty"`
	NAT       string    `json:"nat,omitempty"` // local, remote, both
	Children  int       `json:"children"`
	Created   time.Time `json:"created"`
	Age       string    `json:"age"`
	LastRx    time.Time `json:"last_rx"`
	// RekeyIn is the time to the next planned rekey ("" when none).
	RekeyAt time.Time `json:"rekey_at,omitzero"`
	RekeyIn string    `json:"rekey_in,omitempty"`
}

// ChildSA is one ESP SA pair.
type ChildSA struct {
	Peer         string    `json:"peer"`
	Mode         string    `json:"mode"`  // transport, tunnel
	Encap        string    `json:"encap"` // esp, esp-in-udp
	Local        string    `json:"local"`
	Remote       string    `json:"remote"`
	InboundSPI   string    `json:"inbound_spi"`
	OutboundSPI  string    `json:"outbound_spi"`
	Transform    string    `json:"transform"`
	ESN          bool      `json:"esn"`
	State        string    `json:"state"` // current, standby, retiring
	Created      time.Time `json:"created"`
	Age          string    `json:"age"`
	Lifetime     string    `json:"lifetime,omitempty"`
	RekeyAt      time.Time `json:"rekey_at,omitzero"`
	RekeyIn      string    `json:"rekey_in,omitempty"`
	InPackets    uint64    `json:"in_packets"`
	InBytes      uint64    `json:"in_bytes"`
	OutPackets   uint64    `json:"out_packets"`
	OutBytes     uint64    `json:"out_bytes"`
	ReplayDrops  uint64    `json:"replay_drops"`
	AuthFailures uint64    `json:"auth_failures"`
}

// IPsecProvider is a Provider with IPsec (package node implements it):
// GET /v1/ipsec.
type IPsecProvider interface {
	Provider
	IPsec() IPsec
}

// RenderIPsec writes `show ipsec`.
func RenderIPsec(w io.Writer, x IPsec) {
	if !x.Enabled {
		fmt.Fprintln(w, "IPsec is not configured (no ipsec section): tunnel packets are not encrypted")
		return
	}
	fmt.Fprintf(w, "IPsec: %d IKE SAs, %d Child SAs, mode %s\n", len(x.IKE), len(x.Child), x.Mode)
	if x.KeyLog != "" {
		fmt.Fprintf(w, "WARNING: keys are written to %s\n", x.KeyLog)
	}
	fmt.Fprintln(w, "\nIKEv2 SAs:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Peer\tRole\tState\tSuite\tDH\tNAT\tChild\tAge\tRekey in\tRemote ID\tSPIs (i/r)\t")
	for _, s := range x.IKE {
		role := "R"
		if s.Initiator {
			role = "I"
		}
		nat := s.NAT
		if nat == "" {
			nat = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s/%s\t\n", s.Peer, role, s.State, s.Suite, s.Group, nat, s.Children, s.Age, dash(s.RekeyIn), s.RemoteID, s.SPIi, s.SPIr)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nChild SAs (ESP):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Peer\tMode\tEncap\tTransform\tSPI in\tSPI out\tState\tAge\tRekey in\tPkts in/out\tBytes in/out\tReplay\tAuth fail\t")
	for _, c := range x.Child {
		esn := ""
		if c.ESN {
			esn = "+esn"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%d/%d\t%d\t%d\t\n", c.Peer, c.Mode, c.Encap, c.Transform, esn,
			c.InboundSPI, c.OutboundSPI, c.State, c.Age, dash(c.RekeyIn), c.InPackets, c.OutPackets, c.InBytes, c.OutBytes, c.ReplayDrops, c.AuthFailures)
	}
	tw.Flush()
	if len(x.Counters) > 0 {
		fmt.Fprintln(w, "\nCounters:")
		keys := make([]string, 0, len(x.Counters))
		for k, v := range x.Counters {
			if v != 0 {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s %d\n", k, x.Counters[k])
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
