package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/dmvpn/dmvpn/api"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/lab"
)

// ghostNHS is a second NHS for spoke1 that does not exist: the reload
// removes it.
var ghostNHS = lab.NHSConfig{Address: "10.0.0.2", NBMA: "192.0.2.99"}

// TestReloadChangesExactlyThat: on the lab, spoke1 runs with a second
// (unreachable) NHS; its file is edited to drop that NHS and add a route,
// and `dmvpn reload` applies exactly that: the route reaches the FIB and the
// kernel, the NHS goes, and nothing else flaps (spoke1's registration with
// the hub keeps its up time, the hub keeps its binding). SIGHUP does the
// same; a change that needs a restart is refused and changes nothing.
func TestReloadChangesExactlyThat(t *testing.T) {
	testenv.RequireRoot(t)
	e := newLab(t, 'r', lab.Options{Tweak: func(node string, c *lab.NodeConfig) {
		if node == lab.Spoke1 {
			c.NHRP.NHS = append(c.NHRP.NHS, ghostNHS)
		}
	}})
	e.startAll()
	e.waitHubPeersUp(registerLimit, allSpokes...)
	if err := e.waitPing(lab.HostLAN1, "10.1.2.10", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s1, err := e.show(lab.Spoke1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := peer(s1, ghostNHS.Address); !ok {
		t.Fatalf("spoke1 does not list its second NHS: %v", tunnels(s1))
	}
	hubUp, _ := peer(s1, "10.0.0.1")
	hubView, _ := e.show(lab.Hub)
	binding, _ := peer(hubView, "10.0.0.11")

	// Edit: drop the ghost NHS, add a route.
	c, err := e.l.Config(lab.Spoke1) // with the tweak: drop the ghost
	if err != nil {
		t.Fatal(err)
	}
	if len(c.NHRP.NHS) != 2 || c.NHRP.NHS[1] != ghostNHS {
		t.Fatalf("spoke1's NHSes %+v", c.NHRP.NHS)
	}
	c.NHRP.NHS = c.NHRP.NHS[:1]
	c.Routes = append(c.Routes, lab.RouteConfig{Prefix: "172.16.9.0/24", Via: "10.0.0.1"})
	e.writeConfig(lab.Spoke1, c)
	out, err := e.reload(lab.Spoke1)
	if err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	t.Logf("dmvpn reload: %s", strings.TrimSpace(out))
	// The BGP session with the removed NHS goes with it (bgp.peer-nhs).
	for _, want := range []string{"nhrp.nhs: removed 10.0.0.2", "routes: 172.16.9.0/24 via 10.0.0.1", "bgp neighbors: 1 (were 2)"} {
		if !strings.Contains(out, want) {
			t.Errorf("reload output lacks %q", want)
		}
	}
	if n := strings.Count(out, "reloaded:"); n != 3 {
		t.Errorf("%d changes reported, want exactly 3", n)
	}
	s1, _ = e.show(lab.Spoke1)
	if _, ok := peer(s1, ghostNHS.Address); ok {
		t.Errorf("spoke1 still lists the removed NHS: %v", tunnels(s1))
	}
	if p, _ := peer(s1, "10.0.0.1"); p.State != "UP" || !p.Since.Equal(hubUp.Since) {
		t.Errorf("spoke1's registration with the hub flapped: %+v, before %+v", p, hubUp)
	}
	hubView, _ = e.show(lab.Hub)
	if p, _ := peer(hubView, "10.0.0.11"); p.State != "UP" || !p.Since.Equal(binding.Since) {
		t.Errorf("the hub's binding of spoke1 changed: %+v, before %+v", p, binding)
	}
	if r := e.route(lab.Spoke1, "172.16.9.0/24"); r == nil || r.Source != "static" || r.NextHop != "10.0.0.1" {
		t.Errorf("show routes: %+v", r)
	}
	if !e.kernelRoute(lab.Spoke1, "172.16.9.0/24") {
		t.Error("no kernel route 172.16.9.0/24 on spoke1's overlay device")
	}

	// SIGHUP: remove the route again.
	c.Routes = c.Routes[:len(c.Routes)-1]
	e.writeConfig(lab.Spoke1, c)
	if err := syscall.Kill(e.l.PID(lab.Spoke1), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := e.poll(10*time.Second, 100*time.Millisecond, func() error {
		if e.route(lab.Spoke1, "172.16.9.0/24") != nil || e.kernelRoute(lab.Spoke1, "172.16.9.0/24") {
			return fmt.Errorf("route 172.16.9.0/24 still there after SIGHUP")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if line, err := e.logHas(lab.Spoke1, 5*time.Second, "reload: routes: removed 172.16.9.0/24"); err != nil {
		t.Error(err)
	} else {
		t.Logf("spoke1 log: %s", line)
	}

	// A tunnel change is refused; the daemon keeps its configuration.
	bad := c
	bad.Tunnel.Address = "10.0.0.21/24"
	bad.Routes = append(append([]lab.RouteConfig(nil), c.Routes...), lab.RouteConfig{Prefix: "172.16.10.0/24", Via: "10.0.0.1"})
	e.writeConfig(lab.Spoke1, bad)
	out, err = e.reload(lab.Spoke1)
	if err == nil || !strings.Contains(out, "tunnel.address (10.0.0.11/24 → 10.0.0.21/24)") || !strings.Contains(out, "need a restart") {
		t.Errorf("tunnel change not refused with the reason: %v: %s", err, out)
	}
	if e.route(lab.Spoke1, "172.16.10.0/24") != nil {
		t.Error("a refused reload applied a route")
	}
	e.writeConfig(lab.Spoke1, c)
	e.requireRunning(lab.Hub, lab.Spoke1, lab.Spoke2, lab.Spoke3)
	if err := e.waitPing(lab.HostLAN1, "10.1.2.10", 10*time.Second); err != nil {
		t.Fatalf("LAN to LAN after the reloads: %v", err)
	}
}

func (e *env) writeConfig(node string, c lab.NodeConfig) {
	e.t.Helper()
	if err := os.WriteFile(e.l.ConfigPath(node), c.Marshal("edited by TestReloadChangesExactlyThat"), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) reload(node string) (string, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.l.Options().Binary, "reload", "-c", e.l.ConfigPath(node))
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// route returns node's route for prefix from `show routes`, or nil.
func (e *env) route(node, prefix string) *api.Route {
	e.t.Helper()
	var rs []api.Route
	if err := e.showJSON(node, "routes", &rs); err != nil {
		e.t.Fatal(err)
	}
	for i := range rs {
		if rs[i].Prefix == prefix {
			return &rs[i]
		}
	}
	return nil
}

// kernelRoute reports whether node's kernel routes prefix via the overlay
// device.
func (e *env) kernelRoute(node, prefix string) bool {
	e.t.Helper()
	want := netip.MustParsePrefix(prefix)
	found := false
	err := e.l.Do(node, func() error {
		link, err := netlink.LinkByName(lab.IfTunnel)
		if err != nil {
			return err
		}
		rs, err := netlink.RouteList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Dst != nil && r.Dst.String() == want.String() {
				found = true
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return found
}
