package node

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/localroute"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/underlay"
	"github.com/dmvpn/dmvpn/underlay/memnet"
)

type closeCountConn struct {
	underlay.Conn
	closed *atomic.Int32
}

func (c closeCountConn) Close() error { c.closed.Add(1); return c.Conn.Close() }

type closeCountTUN struct {
	tun.Device
	closed atomic.Int32
}

func (d *closeCountTUN) Close() error { d.closed.Add(1); return d.Device.Close() }

// A failing New returns its error (it used to panic in its deferred
// cleanup, which ran on the nil *Node that "return nil, err" had set) and
// closes what it had opened.
func TestNewFailureClosesWhatItOpened(t *testing.T) {
	cfg, err := config.Parse("hub.yaml", []byte(`
name: hub1
tunnel: {address: 10.0.0.1/24, source: 192.0.2.1, key: 42}
nhrp: {network-id: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	net := memnet.New(nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tt := range []struct {
		name      string
		failAt    int    // Listen call that fails (1-based); 0: none
		auth      string // an authentication engine.New refuses
		want      string
		conns     int32 // conns closed
		devClosed bool
	}{
		{name: "first listen", failAt: 1, want: "listen gre on 192.0.2.1:0: boom"},
		{name: "second listen", failAt: 2, want: "listen udp on 192.0.2.1:4754: boom", conns: 1},
		{name: "engine", auth: "123456789", want: "nhrp: authentication", conns: 2, devClosed: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := *cfg
			c.NHRP.Authentication = tt.auth
			var calls int
			var closed atomic.Int32
			dev := &closeCountTUN{Device: tuntest.NewChannelTUN().TUN()}
			n, err := New(&c, Options{
				Device: dev,
				Host:   localroute.NewStatic(),
				Log:    log,
				Listen: func(local netip.AddrPort, tr nbma.Transport) (underlay.Conn, error) {
					calls++
					if calls == tt.failAt {
						return nil, errors.New("boom")
					}
					uc, err := net.Listen(local, tr)
					if err != nil {
						return nil, err
					}
					return closeCountConn{Conn: uc, closed: &closed}, nil
				},
			})
			if err == nil || n != nil {
				t.Fatalf("New = %v, %v; want nil and an error", n, err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "node hub1: ") {
				t.Errorf("error %q, want node hub1: ...%s...", err, tt.want)
			}
			if got := closed.Load(); got != tt.conns {
				t.Errorf("%d underlay sockets closed, want %d", got, tt.conns)
			}
			if got := dev.closed.Load() > 0; got != tt.devClosed {
				t.Errorf("device closed: %v, want %v", got, tt.devClosed)
			}
		})
	}
}
