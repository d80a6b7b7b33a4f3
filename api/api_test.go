package api

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type fakeProvider struct{ cleared int }

func (f *fakeProvider) DMVPN() DMVPN {
	return DMVPN{Node: "hub", Role: "hub", Interface: "dmvpn0", Peers: []Peer{
		{PeerNBMA: "198.51.100.129:4754", PeerTunnel: "10.0.0.13", State: "UP", UpDown: "00:00:05", Attributes: "DN", NAT: true},
	}}
}
func (f *fakeProvider) NHRP() []NHRPEntry {
	return []NHRPEntry{{Protocol: "10.0.0.13", Type: "dynamic"}}
}
func (f *fakeProvider) Routes() []Route {
	return []Route{{Prefix: "10.1.2.0/24", NextHop: "10.0.0.12", Source: "nhrp", Best: true}}
}
func (f *fakeProvider) Stats() Stats   { return Stats{DataPlane: map[string]uint64{"hairpinned": 7}} }
func (f *fakeProvider) ClearNHRP() int { f.cleared++; return 3 }

func TestServeAndClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "api.sock")
	p := &fakeProvider{}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, p) }()
	c := NewClient(sock)
	var d DMVPN
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := c.Get(ctx, "dmvpn", &d); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(d.Peers) != 1 || !d.Peers[0].NAT || d.Peers[0].Attributes != "DN" {
		t.Fatalf("dmvpn %+v", d)
	}
	var st Stats
	if _, err := c.Get(ctx, "stats", &st); err != nil || st.DataPlane["hairpinned"] != 7 {
		t.Fatalf("stats %+v %v", st, err)
	}
	if r, err := c.ClearNHRP(ctx); err != nil || r.Entries != 3 || p.cleared != 1 {
		t.Fatalf("clear: %+v %v (provider cleared %d)", r, err, p.cleared)
	}
	if _, err := c.Get(ctx, "nonsense", nil); err == nil {
		t.Fatal("unknown view answered")
	}
	var out bytes.Buffer
	RenderDMVPN(&out, d)
	for _, want := range []string{"Peer NBMA Addr", "198.51.100.129:4754", "10.0.0.13", "DN", "Type:Hub"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show dmvpn lacks %q:\n%s", want, out.String())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := NewClient(sock).Get(context.Background(), "dmvpn", nil); err == nil || !strings.Contains(err.Error(), "is `dmvpn run` running") {
		t.Fatalf("stopped daemon: %v", err)
	}
}
