package localroute

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/dmvpn/dmvpn/internal/ratelog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Error is a failure of the kernel mirror, with what it was doing.
type Error struct {
	Op  string
	Err error
}

func (e *Error) Error() string { return "localroute: " + e.Op + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// ErrOptions: OnOverlayRoute needs Subnet and OwnProtocol.
var ErrOptions = errors.New("OnOverlayRoute needs a valid Subnet and a non-zero OwnProtocol")

// KernelOptions extends the mirror with the overlay routes other routing
// daemons install.
type KernelOptions struct {
	// Subnet is the tunnel subnet: a route through the overlay device is
	// an overlay route when its gateway is inside it.
	Subnet netip.Prefix
	// OwnProtocol is the rtm_protocol of the routes dmvpn installs
	// (overlay.RouteProtocol): they are never reported, so our own BGP
	// and static routes do not come back as kernel routes.
	OwnProtocol int
	// OnOverlayRoute, if set, is told of every change of the overlay
	// routes in the main table: routes whose output device is the overlay
	// device (an ECMP route: its first live next hop through it), with a
	// gateway inside Subnet, with a protocol other than OwnProtocol, and
	// in use for the prefix (the lowest metric among TOS 0 routes).
	// present is true when r is p's overlay route now (new, or its
	// gateway, protocol or metric changed), false when p has none any
	// more (r is the one last reported). At most 100,000 are reported;
	// past that, new ones are ignored (logged, counted in Stats).
	//
	// It is called from NewKernelWithOptions for the routes there at the
	// start, before it returns, then from the mirror's goroutine, never
	// concurrently. It must not block for long: routing updates queue
	// behind it, and a kernel queue that overflows costs a full resync.
	OnOverlayRoute func(r OverlayRoute, present bool)
	// OnLocalRoute, if set, is told whenever a prefix of the main table
	// becomes local (the route the kernel uses for it does not go into the
	// overlay device: a LAN, a default route via the underlay) or stops
	// being local. Called like OnOverlayRoute: for the routes there at the
	// start before NewKernelWithOptions returns, then from the mirror's
	// goroutine, never concurrently with it or itself, and it must not
	// block. (The node announces some of them over BGP: redistribute
	// connected.)
	OnLocalRoute func(p netip.Prefix, local bool)

	// recvBuf is the subscription's socket buffer (tests make it tiny to
	// overflow it); 0: defaultRecvBufSize, capped by net.core.rmem_max.
	recvBuf int
}

// KernelStats are the mirror's counters.
type KernelStats struct {
	Prefixes      int    // prefixes of the main table mirrored
	OverlayRoutes int    // overlay routes currently reported
	Resyncs       uint64 // full reloads: the start, lost subscriptions, links going up or down
	Lost          uint64 // subscriptions lost (the kernel's queue overflowed, or an error)
	Ignored       uint64 // prefixes and overlay routes turned away by the bounds (each time seen)
}

// Kernel mirrors the main routing table of the network namespace it was
// created in, one notification at a time, and reports the overlay routes
// other daemons install (KernelOptions).
//
// Each route notification costs the same whatever the table's size: it
// changes one prefix of the mirror (a copy-on-write path of the trie) and
// at most one overlay route. The whole table is read only at the start,
// when a subscription is lost (the kernel's queue overflowed: ENOBUFS) or
// reports an error, and when a link goes up or down or disappears: IPv4
// flushes the routes of a link that goes down, and revives the next hops
// of one that comes back, without telling anyone.
type Kernel struct {
	Mirror
	tunIndex int
	opts     KernelOptions
	log      *slog.Logger
	rlog     *ratelog.Limiter

	// h reads the table (dumps) in the namespace the Kernel was created
	// in; ns is that namespace, to subscribe again from another thread.
	h  *netlink.Handle
	ns netns.NsHandle

	st    *kstate
	links map[int]bool // interface index -> up (IFF_UP)
	// local are the prefixes last reported local to OnLocalRoute.
	local map[netip.Prefix]bool

	// errs counts the subscriptions' error callbacks; handled is errs as
	// of the last resync (a resync covers every error before it).
	errs    atomic.Uint64
	handled uint64
	wake    chan struct{} // an error callback asks for a resync

	prefixes, overlay         atomic.Int64
	resyncs, lost, ignoredCtr atomic.Uint64

	done chan struct{}
}

// Bounds and timings of the subscription loop.
const (
	maxLinks      = 65536
	linkSettle    = 50 * time.Millisecond // link changes come in bursts: one resync for them
	retryMin      = time.Second
	retryMax      = 30 * time.Second
	dumpAttempts  = 3
	routeQueueLen = 1024
	linkQueueLen  = 256
)

// NewKernel loads the routing table now and keeps it current until ctx is
// done. tunIndex is the tunnel device's interface index: routes through it
// are not local.
func NewKernel(ctx context.Context, tunIndex int, log *slog.Logger) (*Kernel, error) {
	return NewKernelWithOptions(ctx, tunIndex, KernelOptions{}, log)
}

// NewKernelWithOptions is NewKernel, also reporting overlay routes as opts
// says. The mirror belongs to the calling thread's network namespace.
func NewKernelWithOptions(ctx context.Context, tunIndex int, opts KernelOptions, log *slog.Logger) (*Kernel, error) {
	if opts.OnOverlayRoute != nil && (!opts.Subnet.IsValid() || opts.OwnProtocol == 0) {
		return nil, &Error{Op: "options", Err: ErrOptions}
	}
	if log == nil {
		log = slog.Default()
	}
	subnet := opts.Subnet
	if opts.OnOverlayRoute == nil {
		subnet = netip.Prefix{} // nothing to report: do not compute it
	}
	k := &Kernel{tunIndex: tunIndex, opts: opts, log: log, rlog: ratelog.New(log, 0, 0),
		st: newKState(tunIndex, subnet, opts.OwnProtocol), links: map[int]bool{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	if err := k.open(); err != nil {
		return nil, err
	}
	sub, err := k.subscribe()
	if err != nil {
		k.release()
		return nil, err
	}
	if err := k.resync(); err != nil {
		sub.close()
		k.release()
		return nil, err
	}
	go k.run(ctx, sub)
	return k, nil
}

// open takes the calling thread's namespace and a netlink handle in it.
func (k *Kernel) open() error {
	runtime.LockOSThread() // nests: a caller's own lock stays
	defer runtime.UnlockOSThread()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return &Error{Op: "netlink", Err: err}
	}
	k.h = h
	k.ns = netns.None()
	if ns, err := netns.Get(); err == nil {
		k.ns = ns
	}
	return nil
}

func (k *Kernel) release() {
	k.h.Close()
	if k.ns.IsOpen() {
		k.ns.Close()
	}
}

// Done is closed when the mirror has stopped (its context is done) and
// released its sockets; Local keeps answering from the last table.
func (k *Kernel) Done() <-chan struct{} { return k.done }

// Stats returns the mirror's counters.
func (k *Kernel) Stats() KernelStats {
	return KernelStats{Prefixes: int(k.prefixes.Load()), OverlayRoutes: int(k.overlay.Load()),
		Resyncs: k.resyncs.Load(), Lost: k.lost.Load(), Ignored: k.ignoredCtr.Load()}
}

// subscription is one pair of netlink subscriptions: routes, and links
// (for their up/down changes, which IPv4 does not announce as routes).
type subscription struct {
	routes  chan netlink.RouteUpdate
	links   chan netlink.LinkUpdate
	done    chan struct{}
	closing atomic.Bool
}

// close shuts both sockets and waits for their readers, which may be
// blocked handing us an update, to finish.
func (s *subscription) close() {
	s.closing.Store(true)
	close(s.done)
	for range s.routes {
	}
	for range s.links {
	}
}

// subscribe opens the subscriptions in the mirror's namespace: from this
// thread when it is there (always, in a daemon: no setns, which a
// sandboxed one may not do), else by entering it (tests).
func (k *Kernel) subscribe() (*subscription, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ns *netns.NsHandle
	if k.ns.IsOpen() {
		if cur, err := netns.Get(); err == nil {
			if !cur.Equal(k.ns) {
				ns = &k.ns
			}
			cur.Close()
		}
	}
	s := &subscription{routes: make(chan netlink.RouteUpdate, routeQueueLen), links: make(chan netlink.LinkUpdate, linkQueueLen),
		done: make(chan struct{})}
	onErr := func(err error) {
		if s.closing.Load() {
			return // our own close
		}
		k.errs.Add(1)
		k.rlog.Warn(time.Now(), "routing subscription error, reloading the table", "err", err)
		select {
		case k.wake <- struct{}{}:
		default:
		}
	}
	buf := k.opts.recvBuf
	if buf == 0 {
		buf = defaultRecvBufSize
	}
	err := netlink.RouteSubscribeWithOptions(s.routes, s.done, netlink.RouteSubscribeOptions{
		Namespace: ns, ErrorCallback: onErr, ReceiveBufferSize: buf})
	if err != nil {
		close(s.done)
		return nil, &Error{Op: "subscribe to routes", Err: err}
	}
	err = netlink.LinkSubscribeWithOptions(s.links, s.done, netlink.LinkSubscribeOptions{
		Namespace: ns, ErrorCallback: onErr})
	if err != nil {
		s.closing.Store(true)
		close(s.done)
		for range s.routes {
		}
		return nil, &Error{Op: "subscribe to links", Err: err}
	}
	return s, nil
}

func (k *Kernel) run(ctx context.Context, sub *subscription) {
	defer close(k.done)
	defer k.release()
	defer func() {
		if sub != nil {
			sub.close()
		}
	}()
	var (
		timer   = time.NewTimer(time.Hour)
		pending bool // the timer is set
		dirty   bool // a link changed, or a reload failed: reload when it fires
		retry   = retryMin
	)
	timer.Stop()
	defer timer.Stop()
	schedule := func(d time.Duration) {
		if !pending {
			pending = true
			timer.Reset(d)
		}
	}
	reload := func() {
		dirty = false
		if err := k.resync(); err != nil {
			k.rlog.Warn(time.Now(), "reloading the routing table failed, retrying", "err", err)
			dirty = true
			schedule(retryMin)
		}
	}
	lost := func(what string) {
		k.lost.Add(1)
		k.rlog.Warn(time.Now(), "routing subscription lost, subscribing again and reloading the table", "subscription", what)
		sub.close()
		sub = nil
	}
	for {
		if sub == nil {
			s, err := k.subscribe()
			if err != nil {
				k.rlog.Warn(time.Now(), "cannot subscribe to routing updates, retrying", "err", err, "in", retry)
				select {
				case <-ctx.Done():
					return
				case <-time.After(retry):
				}
				retry = min(2*retry, retryMax)
				continue
			}
			sub, retry = s, retryMin
			reload()
		}
		select {
		case <-ctx.Done():
			return
		case u, ok := <-sub.routes:
			if !ok {
				lost("routes")
				continue
			}
			if p, ok := k.st.apply(u.Type, u.NlFlags, &u.Route); ok {
				k.publish(p)
			}
			k.noteIgnored()
		case u, ok := <-sub.links:
			if !ok {
				lost("links")
				continue
			}
			if k.linkChanged(u) {
				dirty = true
				schedule(linkSettle)
			}
		case <-k.wake:
			// Not at once: an error that ends the subscription (an
			// overflow) closes its channel next, and subscribing again
			// reloads anyway.
			schedule(linkSettle)
		case <-timer.C:
			pending = false
			if dirty || k.errs.Load() != k.handled {
				reload()
			}
		}
	}
}

// setLocal records p's local state as reported.
func (k *Kernel) setLocal(p netip.Prefix, local bool) {
	if k.local == nil {
		k.local = make(map[netip.Prefix]bool)
	}
	if local {
		k.local[p] = true
	} else {
		delete(k.local, p)
	}
}

// publish brings one prefix of the lookup table and of the overlay routes
// in line with the state.
func (k *Kernel) publish(p netip.Prefix) {
	e, present := k.st.entryFor(p)
	k.set(p, e, present)
	k.prefixes.Store(int64(len(k.st.routes)))
	if cb := k.opts.OnLocalRoute; cb != nil {
		if now := present && !e.viaTunnel; now != k.local[p] {
			k.setLocal(p, now)
			cb(p, now)
		}
	}
	if k.opts.OnOverlayRoute == nil {
		return
	}
	if r, present, changed := k.st.overlayChange(p); changed {
		k.overlay.Store(int64(len(k.st.reported)))
		k.opts.OnOverlayRoute(r, present)
	}
}

// noteIgnored logs (rate-limited) what the bounds turned away.
func (k *Kernel) noteIgnored() {
	n := k.st.ignoredPrefixes + k.st.ignoredOverlay
	if old := k.ignoredCtr.Load(); n != old {
		k.ignoredCtr.Store(n)
		k.rlog.Warn(time.Now(), "routing table over the mirror's bounds, routes ignored",
			"ignored_prefixes", k.st.ignoredPrefixes, "ignored_overlay_routes", k.st.ignoredOverlay,
			"max_prefixes", maxPrefixes, "max_overlay_routes", maxOverlayRoutes)
	}
}

// linkChanged records a link update and reports whether a link we knew
// went up or down, or went away.
func (k *Kernel) linkChanged(u netlink.LinkUpdate) bool {
	idx, up := int(u.Index), u.Flags&unix.IFF_UP != 0
	old, known := k.links[idx]
	switch u.Header.Type {
	case unix.RTM_DELLINK:
		delete(k.links, idx)
		return known
	case unix.RTM_NEWLINK:
		if !known && len(k.links) >= maxLinks {
			return false
		}
		k.links[idx] = up
		return known && old != up
	}
	return false
}

// resync reads the links and the whole main table and replaces the state;
// the updates queued meanwhile are applied after it (applying one that the
// dump already shows changes nothing). On failure the old state stays.
func (k *Kernel) resync() error {
	k.handled = k.errs.Load()
	// Links before routes: a link that changes after this list is seen
	// as a change (and reloaded again); one that changed before it is in
	// the routes read next.
	links, err := k.h.LinkList()
	if err != nil {
		return &Error{Op: "list links", Err: err}
	}
	clear(k.links)
	for _, l := range links {
		if a := l.Attrs(); a != nil && len(k.links) < maxLinks {
			k.links[a.Index] = a.Flags&net.FlagUp != 0
		}
	}
	st := newKState(k.st.tunIndex, k.st.subnet, k.st.ownProto)
	st.reported = k.st.reported
	st.ignoredOverlay = k.st.ignoredOverlay
	for attempt := 1; ; attempt++ {
		clear(st.routes)
		st.ignoredPrefixes = k.st.ignoredPrefixes // a count of refusals, not of routes
		err = k.h.RouteListFilteredIter(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE,
			func(r netlink.Route) bool {
				st.apply(unix.RTM_NEWROUTE, 0, &r)
				return true
			})
		if errors.Is(err, netlink.ErrDumpInterrupted) && attempt < dumpAttempts {
			continue // the table changed while we read it
		}
		break
	}
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return &Error{Op: "list routes", Err: err}
	}
	// An interrupted last attempt is still the best view there is; the
	// updates queued meanwhile complete it.
	k.st = st
	k.cur.Store(st.snapshot())
	k.prefixes.Store(int64(len(st.routes)))
	k.resyncs.Add(1)
	gone, now := st.overlayDiff()
	k.overlay.Store(int64(len(st.reported)))
	if cb := k.opts.OnOverlayRoute; cb != nil {
		for _, r := range gone {
			cb(r, false)
		}
		for _, r := range now {
			cb(r, true)
		}
	}
	if cb := k.opts.OnLocalRoute; cb != nil {
		now := make(map[netip.Prefix]bool)
		for p := range st.routes {
			if e, ok := st.entryFor(p); ok && !e.viaTunnel {
				now[p] = true
			}
		}
		for p := range k.local {
			if !now[p] {
				cb(p, false)
			}
		}
		for p := range now {
			if !k.local[p] {
				cb(p, true)
			}
		}
		k.local = now
	}
	k.noteIgnored()
	k.log.Debug("routing table loaded", "prefixes", len(st.routes), "overlay_routes", len(st.reported))
	return nil
}
