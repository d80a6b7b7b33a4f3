// Package node assembles one DMVPN node from its configuration: overlay
// device, underlay sockets, FIB, NHRP cache, NHRP engine and data plane. It
// owns the goroutines and the timer; it holds no protocol logic of its own.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/dmvpn/dmvpn/clock"
	"github.com/dmvpn/dmvpn/config"
	"github.com/dmvpn/dmvpn/dataplane"
	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/events/hooks"
	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/logging"
	"github.com/dmvpn/dmvpn/internal/ratelog"
	"github.com/dmvpn/dmvpn/localroute"
	"github.com/dmvpn/dmvpn/metrics"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
	"github.com/dmvpn/dmvpn/nhrp/engine"
	"github.com/dmvpn/dmvpn/overlay"
	"github.com/dmvpn/dmvpn/underlay"
)

// ListenFunc opens an underlay socket for a transport at a local endpoint.
type ListenFunc func(local netip.AddrPort, t nbma.Transport) (underlay.Conn, error)

// Options are the node's dependencies; zero values mean "the real thing".
type Options struct {
	// Device is the overlay device; nil creates and configures a real TUN.
	Device tun.Device
	// Listen opens underlay sockets; nil opens raw GRE / UDP sockets.
	Listen ListenFunc
	// Host is the host's routing view (which destinations are local);
	// nil mirrors the kernel's main routing table.
	Host  localroute.Table
	Clock clock.Clock
	Log   *slog.Logger
	// ConfigPath is the file Reload re-reads; empty: Reload is refused.
	ConfigPath string
	// ListenIPsec opens the IPsec sockets when the ipsec section is
	// present: transport GRE at port 0 is raw ESP (IP protocol 50), UDP
	// at 4500 ESP-in-UDP and at 500 IKE. Nil opens the real ones (and a
	// raw GRE socket that counts clear-text GRE).
	ListenIPsec ListenFunc
	// Levels, when set, are the levels of Log's handler
	// (internal/logging): a reload that changes log-level or log-levels
	// sets them.
	Levels *logging.Levels
}

// Node is one running DMVPN node.
type Node struct {
	cfg *config.Config // as started (the parts that cannot change)
	// live is the configuration last applied (Apply), under reloadMu.
	live     *config.Config
	reloadMu sync.Mutex
	opts     Options
	log      *slog.Logger
	clk      clock.Clock
	fib      *fib.Table
	cache    *cache.Cache
	engine   *engine.Engine
	plane    *dataplane.Plane
	dev      tun.Device
	conns    []underlay.Conn
	wake     chan struct{}
	events   chan event
	// ctl carries NHRP packets from the underlay readers to the control
	// loop: bounded, and posted to without waiting, so a flood of
	// control packets costs the data plane a copy and a counter, never
	// a stall.
	ctl        chan ctlPacket
	ctlPool    sync.Pool
	ctlDropped atomic.Uint64
	stopBg     context.CancelFunc // background helpers (kernel route mirror)
	// metrics reads the counters above at scrape time; registry holds
	// it with the Go runtime and process collectors.
	metrics  *metrics.Collector
	registry *prometheus.Registry
	// peerLimit is metrics.peer-limit (live: Apply sets it).
	peerLimit atomic.Int64
	// bus carries the node's events (engine state changes, node up and
	// down) to `dmvpn events` streams; hooks runs the commands configured
	// for them (events.go).
	bus   *events.Bus
	hooks *hooks.Runner
	// routing brings routes from BGP and other daemons into the FIB and
	// the kernel (routing.go); only the control loop touches it.
	routing routing
	// ipsec is the node's IPsec (ipsec.go), nil without an ipsec section.
	ipsec *ipsecNode
}

// ctlQueue is the control queue's depth: at the engine's per-packet cost
// (microseconds) a full queue drains in a few milliseconds.
const ctlQueue = 1024

// ctlPacket is an NHRP packet copied out of the underlay's read buffer.
type ctlPacket struct {
	from netip.AddrPort
	t    nbma.Transport
	buf  *[]byte
	n    int
}

// event is a data path observation for the control plane: a next hop to
// resolve (phase 2) or a relayed packet to redirect (phase 3). It is a
// value with the packet's start copied in, so posting one allocates nothing.
type event struct {
	miss  netip.Addr
	from  netip.AddrPort
	t     nbma.Transport
	n     int
	start [64]byte
}

// New builds a node: it opens the underlay sockets and the overlay device
// but does not start traffic (Run does).
func New(cfg *config.Config, opts Options) (n *Node, err error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Listen == nil {
		opts.Listen = listenReal
	}
	// Hooks' programs first: a missing one fails start-up before anything
	// is opened (config check says the same).
	if err := cfg.ResolveHooks(); err != nil {
		return nil, fmt.Errorf("node %s: hooks: %w", cfg.Name, err)
	}
	n = &Node{cfg: cfg, live: cfg, opts: opts, log: logging.For(opts.Log.With("node", cfg.Name), logging.Node), clk: opts.Clock,
		fib: fib.New(), wake: make(chan struct{}, 1), events: make(chan event, 256), ctl: make(chan ctlPacket, ctlQueue),
		cache: cache.NewWithLimits(cache.Limits{MaxEntries: cfg.NHRP.MaxEntries, MaxPerNBMA: cfg.NHRP.MaxEntriesPerNBMA})}
	n.ctlPool.New = func() any { b := make([]byte, 2048); return &b }
	n.peerLimit.Store(int64(cfg.Metrics.PeerLimit))
	n.metrics = metrics.New(n.metricsSnapshot)
	n.registry = metrics.NewRegistry(n.metrics)
	n.bus = events.NewBus(0, 0)
	n.hooks = hooks.New(hooks.Config{Hooks: hookSpecs(cfg), Log: n.logFor("events")})
	n.routing.log = ratelog.New(n.logFor(logging.BGP), 10*time.Second, 5)
	// The cleanup gets the node as an argument: every error return below
	// ("return nil, err") sets the named result n to nil before deferred
	// calls run, so reading n here would dereference nil.
	defer func(n *Node) {
		if err != nil {
			n.closeAll()
		}
	}(n)

	// Underlay first: with a raw GRE socket open the kernel stops answering
	// GRE with ICMP protocol-unreachable, so peers never see us half up.
	if cfg.IPsec.Enabled() {
		// The ESP layer's faces are the underlay (ipsec.go).
		if err := n.openIPsec(); err != nil {
			return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
		}
	} else if err := n.openUnderlay(); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}

	subnet := cfg.Tunnel.Subnet()
	n.fib.Add(fib.Route{Prefix: subnet, Source: fib.SourceConnected})
	var kernelRoutes []netip.Prefix
	for _, r := range cfg.Routes {
		n.fib.Add(fib.Route{Prefix: r.Prefix, NextHop: r.Via, Source: fib.SourceStatic})
		kernelRoutes = append(kernelRoutes, r.Prefix)
	}

	host := opts.Host
	if opts.Device != nil {
		n.dev = opts.Device
	} else {
		d, err := overlay.Create(cfg.Tunnel.Device, cfg.Tunnel.MTU, cfg.Tunnel.Address, kernelRoutes)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
		}
		n.dev = d
		if host == nil {
			ctx, cancel := context.WithCancel(context.Background())
			n.stopBg = cancel
			// Routes other daemons (FRR's zebra, BIRD) put on the
			// overlay device become FIB routes (source kernel), through
			// the control loop (routing.go).
			n.routing.kernel = newPendingRoutes()
			kopts := localroute.KernelOptions{Subnet: subnet, OwnProtocol: overlay.RouteProtocol,
				OnOverlayRoute: func(r localroute.OverlayRoute, present bool) {
					n.routing.kernel.put(r.Prefix, r.Gateway, present)
				}}
			if cfg.BGP.Redistribute.Connected {
				// The host's LAN routes, announced over BGP when they
				// pass bgp.redistribute.prefixes (routing.go).
				n.routing.local = newPendingRoutes()
				kopts.OnLocalRoute = func(p netip.Prefix, local bool) {
					n.routing.local.put(p, netip.Addr{}, local)
				}
			}
			k, err := localroute.NewKernelWithOptions(ctx, d.Index(), kopts, n.logFor(logging.Route))
			if err != nil {
				return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
			}
			host = k
		}
	}

	ecfg := engine.Config{
		Address:              cfg.Tunnel.Address,
		NBMA:                 cfg.Tunnel.Source,
		MTU:                  uint16(cfg.Tunnel.MTU),
		Holdtime:             cfg.NHRP.Holdtime,
		RegistrationInterval: cfg.NHRP.RegistrationTimeout,
		Authentication:       []byte(cfg.NHRP.Authentication),
		HMACMaxSkew:          cfg.NHRP.AuthenticationMaxSkew,
		Unique:               cfg.NHRP.Unique,
		Server:               cfg.IsHub(),
		MaxHoldtime:          cfg.NHRP.MaxHoldtime,
		MaxSend:              engine.Rate{Packets: cfg.NHRP.MaxSend.Packets, Interval: cfg.NHRP.MaxSend.Interval},
		MaxReceive:           engine.Rate{Packets: cfg.NHRP.MaxReceive.Packets, Interval: cfg.NHRP.MaxReceive.Interval},
		Transport:            cfg.Tunnel.Transport,
		UDPPort:              udpPort(cfg),
		Shortcut:             cfg.NHRP.Shortcut,
		Redirect:             cfg.NHRP.Redirect,
		Routes:               n.fib,
		Host:                 host,
		OnResolved:           n.metrics.ObserveResolution,
		OnEvent:              n.emit,
	}
	if ecfg.HMAC, err = hmacKeys(cfg); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	ecfg.NHS, ecfg.Static = enginePeers(cfg)
	nhsAddrs := nhsAddresses(cfg)

	dcfg := dataplane.Config{Local: cfg.Tunnel.Address.Addr(), Subnet: subnet, NHS: nhsAddrs, Host: host}
	if cfg.Tunnel.Key != nil {
		dcfg.Key, dcfg.KeyPresent = *cfg.Tunnel.Key, true
	}
	n.plane = dataplane.New(dcfg, n.dev, n.conns, n.fib, n.cache, n.handleControl, n.logFor(logging.DataPlane))
	n.engine, err = engine.New(ecfg, n.cache, n.plane, n.logFor(logging.NHRP))
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	if len(cfg.NHRP.NHS) > 0 {
		n.plane.SetMissFunc(func(nh netip.Addr) { n.post(event{miss: nh}) })
	}
	if cfg.NHRP.Redirect {
		n.plane.SetTransitFunc(func(from netip.AddrPort, t nbma.Transport, pkt []byte) {
			ev := event{from: from, t: t}
			ev.n = copy(ev.start[:], pkt)
			n.post(ev)
		})
	}
	n.routing.kernelInstalled = map[netip.Prefix]bool{}
	if opts.Device == nil {
		for _, r := range cfg.Routes {
			n.routing.kernelInstalled[r.Prefix] = true // overlay.Create put them in
		}
	}
	if err := n.startBGP(); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	return n, nil
}

// openUnderlay opens the clear-text sockets: one per transport the node
// listens on.
func (n *Node) openUnderlay() error {
	cfg := n.cfg
	for _, t := range transports(cfg) {
		local := netip.AddrPortFrom(cfg.Tunnel.Source, 0)
		if t == nbma.TransportUDP {
			port := cfg.Tunnel.UDPPort
			if port == 0 { // a GRE hub's extra UDP listener
				port = gre.UDPPort
			}
			local = netip.AddrPortFrom(cfg.Tunnel.Source, port)
		}
		c, err := n.opts.Listen(local, t)
		if err != nil {
			return fmt.Errorf("listen %v on %v: %w", t, local, err)
		}
		n.conns = append(n.conns, c)
	}
	return nil
}

// hmacKeys is the key ring of nhrp.authentication-keys, or nil.
func hmacKeys(cfg *config.Config) (*nhrp.HMACKeys, error) {
	if len(cfg.NHRP.AuthenticationKeys) == 0 {
		return nil, nil
	}
	keys := make([]nhrp.HMACKey, len(cfg.NHRP.AuthenticationKeys))
	for i, k := range cfg.NHRP.AuthenticationKeys {
		keys[i] = nhrp.HMACKey{ID: k.ID, Secret: []byte(k.Secret)}
	}
	k, err := nhrp.NewHMACKeys(keys)
	if err != nil {
		return nil, fmt.Errorf("nhrp.authentication-keys: %w", err)
	}
	return k, nil
}

// enginePeers is the engine's view of nhrp.nhs and nhrp.map.
func enginePeers(cfg *config.Config) (nhs []engine.NHS, static []engine.StaticMap) {
	for _, s := range cfg.NHRP.NHS {
		nhs = append(nhs, engine.NHS{Protocol: s.Address, NBMA: s.Endpoint(), Transport: cfg.Tunnel.Transport})
	}
	for _, m := range cfg.NHRP.Map {
		static = append(static, engine.StaticMap{Protocol: m.Address, NBMA: m.Endpoint(),
			Transport: cfg.Tunnel.Transport, Multicast: m.Multicast})
	}
	return nhs, static
}

// udpPort is the port of the UDP transport: GRE-in-UDP's, or with IPsec
// ESP-in-UDP's 4500.
func udpPort(cfg *config.Config) uint16 {
	if cfg.IPsec.Enabled() {
		return esp.UDPPort
	}
	return gre.UDPPort
}

// nhsAddresses are the NHSes' overlay addresses, in preference order (the
// data plane's fallback next hops).
func nhsAddresses(cfg *config.Config) []netip.Addr {
	var a []netip.Addr
	for _, s := range cfg.NHRP.NHS {
		a = append(a, s.Address)
	}
	return a
}

// logFor is the node's logger for a subsystem: the node's name, and the
// component in place of the node's own.
func (n *Node) logFor(component string) *slog.Logger {
	return logging.For(n.opts.Log.With("node", n.cfg.Name), component)
}

// transports lists the underlays a node listens on: its configured one,
// and GRE-in-UDP as well, so nodes behind NAT (which cannot use raw GRE)
// can always reach it: spokes register with a hub, and build shortcuts to
// other spokes, over UDP.
func transports(cfg *config.Config) []nbma.Transport {
	ts := []nbma.Transport{cfg.Tunnel.Transport}
	if cfg.Tunnel.Transport != nbma.TransportUDP {
		ts = append(ts, nbma.TransportUDP)
	}
	return ts
}

func listenReal(local netip.AddrPort, t nbma.Transport) (underlay.Conn, error) {
	// Both carry GRE packets, GRE header first: the sockets drop anything
	// shorter, as the data path would.
	return listenSocket(local, t, gre.IPProto, gre.MinLen)
}

// listenSocket opens the real socket of transport t at local: raw IP
// protocol proto, or UDP; datagrams shorter than minLen are dropped there.
func listenSocket(local netip.AddrPort, t nbma.Transport, proto, minLen int) (underlay.Conn, error) {
	spec := underlay.Spec{Transport: t, MinLen: minLen}
	switch t {
	case nbma.TransportGRE:
		return underlay.ListenIP(local.Addr(), proto, spec)
	case nbma.TransportUDP:
		return underlay.ListenUDP(local, spec)
	}
	return nil, fmt.Errorf("unknown transport %v", t)
}

// handleControl runs on an underlay reader: it copies the packet and
// queues it for the control loop, or drops and counts it when the queue is
// full.
func (n *Node) handleControl(peer netip.AddrPort, t nbma.Transport, pkt []byte) {
	bp, k := n.pooledCopy(pkt)
	m := ctlPacket{from: peer, t: t, buf: bp, n: k}
	select {
	case n.ctl <- m:
	default:
		n.ctlDropped.Add(1)
		n.ctlPool.Put(bp)
	}
}

// pooledCopy copies a control packet (NHRP, IKE) out of a read buffer
// into one of the pool's, for a queue to the control loop.
func (n *Node) pooledCopy(pkt []byte) (*[]byte, int) {
	bp := n.ctlPool.Get().(*[]byte)
	if cap(*bp) < len(pkt) {
		*bp = make([]byte, len(pkt))
	}
	return bp, copy((*bp)[:cap(*bp)], pkt)
}

// handleQueued hands one queued packet to the engine, then as many more as
// are waiting (bounded), before the loop recomputes its deadline.
func (n *Node) handleQueued(m ctlPacket) {
	for i := 0; ; i++ {
		n.engine.HandlePacket(n.clk.Now(), m.from, m.t, (*m.buf)[:m.n])
		if cap(*m.buf) <= 64<<10 {
			n.ctlPool.Put(m.buf)
		}
		if i == ctlQueue {
			return
		}
		select {
		case m = <-n.ctl:
		default:
			return
		}
	}
}

// post hands a data path event to the control loop, dropping it when the
// loop is behind (the data path never waits; the next packet will tell again).
func (n *Node) post(ev event) {
	select {
	case n.events <- ev:
	default:
	}
}

// poke wakes the timer loop to recompute its deadline.
func (n *Node) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Run starts traffic and NHRP and blocks until ctx is done; then it
// deregisters, closes the sockets and removes the overlay device.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, len(n.conns)+1)
	for _, c := range n.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.plane.RunUnderlay(c); err != nil {
				errc <- err
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := n.plane.RunOverlay(); err != nil {
			errc <- err
		}
	}()
	n.log.Info("dmvpn node up", "address", n.cfg.Tunnel.Address, "nbma", n.cfg.Tunnel.Source,
		"transport", n.cfg.Tunnel.Transport, "role", n.Role())
	n.hooks.Start()
	n.emit(events.Event{Time: n.clk.Now(), Type: events.NodeUp, Reason: n.Role()})
	n.engine.Start(n.clk.Now())
	if n.ipsec != nil {
		go n.runIKE500()
		if n.ipsec.clearGRE != nil {
			go n.runClearGRE()
		}
	}

	var runErr error
	var timer clock.Timer
loop:
	for {
		next := n.engine.NextDeadline()
		if n.ipsec != nil {
			if t := n.ipsecDeadline(); !t.IsZero() && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
		if timer != nil {
			timer.Stop()
			timer = nil
		}
		if !next.IsZero() {
			timer = n.clk.AfterFunc(max(next.Sub(n.clk.Now()), 0), n.poke)
		}
		select {
		case <-ctx.Done():
			break loop
		case runErr = <-errc:
			n.log.Error("data plane stopped", "err", runErr)
			n.emit(events.Event{Time: n.clk.Now(), Type: events.Error, Reason: "data plane stopped: " + runErr.Error()})
			break loop
		case <-n.wake:
			n.engine.Tick(n.clk.Now())
			if n.ipsec != nil {
				n.tickIPsec(n.clk.Now())
				n.drainIPsecRequests()
			}
		case m := <-n.ctl:
			n.handleQueued(m)
		case m := <-n.ikeChan():
			n.handleIKE(m)
		case peer := <-n.needChan():
			n.initiateFor(peer)
			n.drainIPsecRequests()
		case spi := <-n.softChan():
			n.rekeyChild(spi)
		case <-n.bgpChanges():
			n.drainBGP()
		case <-n.kernelChanges():
			n.drainKernel()
		case <-n.localChanges():
			n.drainLocal()
		case ev := <-n.events:
			if ev.miss.IsValid() {
				n.engine.Resolve(n.clk.Now(), ev.miss)
			} else {
				n.engine.Redirect(n.clk.Now(), ev.from, ev.t, ev.start[:ev.n])
			}
		}
	}
	if timer != nil {
		timer.Stop()
	}
	// BGP first: its sessions close (a Cease) while the NHRP paths they
	// run over are still there.
	n.stopBGP()
	n.engine.Shutdown(n.clk.Now())
	if n.ipsec != nil {
		n.shutdownIPsec(n.clk.Now())
	}
	n.closeAll()
	wg.Wait()
	n.emit(events.Event{Time: n.clk.Now(), Type: events.NodeDown})
	n.bus.Close() // event streams end once they have sent the last events
	n.hooks.Close(hookGrace)
	n.log.Info("dmvpn node down")
	return runErr
}

func (n *Node) closeAll() {
	n.stopBGP() // its sessions run over the device: close them first
	if n.stopBg != nil {
		n.stopBg()
	}
	var errs []error
	for _, c := range n.conns {
		errs = append(errs, c.Close())
	}
	n.closeIPsec()
	if n.dev != nil {
		errs = append(errs, n.dev.Close())
	}
	if err := errors.Join(errs...); err != nil {
		n.log.Debug("close", "err", err)
	}
}

// Role is "hub" or "spoke".
func (n *Node) Role() string {
	if n.cfg.IsHub() {
		return "hub"
	}
	return "spoke"
}

// Config returns the node's configuration.
func (n *Node) Config() *config.Config { return n.cfg }

// Cache returns the NHRP cache.
func (n *Node) Cache() *cache.Cache { return n.cache }

// FIB returns the forwarding table.
func (n *Node) FIB() *fib.Table { return n.fib }

// Engine returns the NHRP engine.
func (n *Node) Engine() *engine.Engine { return n.engine }

// Plane returns the data plane.
func (n *Node) Plane() *dataplane.Plane { return n.plane }

// Metrics returns the handler of the node's Prometheus metrics (the text
// exposition), for the API's /v1/metrics and metrics.listen's /metrics.
func (n *Node) Metrics() http.Handler {
	return promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
