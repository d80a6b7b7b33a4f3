package lab

import (
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/config"
)

// TestConfigsAcceptedByDaemon: every config the lab writes, in every phase,
// is accepted by the daemon's own strict parser.
func TestConfigsAcceptedByDaemon(t *testing.T) {
	for _, o := range []Options{
		{Dir: "/run/dmvpn-lab/dmvpn"},
		{StaticRoutes: true},
		{Phase: 2, StaticRoutes: true},
		{Phase: 2},
		{Phase: 3, Holdtime: 90 * time.Second},
		{Transport: map[string]string{Hub: "udp", Spoke1: "udp", Spoke2: "udp"}},
	} {
		o, err := o.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		l := &Lab{opts: o}
		for _, d := range Daemons {
			c, err := l.Config(d.Name)
			if err != nil {
				t.Fatal(err)
			}
			text := c.Marshal("lab test")
			pc, err := config.Parse(d.Name+".yaml", text)
			if err != nil {
				t.Errorf("phase %d %s: config.Parse: %v\n%s", o.Phase, d.Name, err, text)
				continue
			}
			if pc.IsHub() != d.IsHub() || pc.Tunnel.Transport.String() != c.Tunnel.Transport || pc.APISocket != c.APISocket ||
				pc.NHRP.Holdtime != o.Holdtime || pc.NHRP.Redirect != c.NHRP.Redirect || pc.NHRP.Shortcut != c.NHRP.Shortcut ||
				len(pc.Routes) != len(c.Routes) || pc.Tunnel.Address.String() != c.Tunnel.Address ||
				pc.BGP.Enabled() != (c.BGP != nil) || c.BGP != nil && len(pc.BGP.Networks) != len(c.BGP.Networks) {
				t.Errorf("phase %d %s: parsed %+v from\n%s", o.Phase, d.Name, pc, text)
			}
		}
	}
}
