package localroute

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Kernel mirrors the main routing table of the current network namespace.
type Kernel struct {
	Mirror
	tunIndex int
}

// NewKernel loads the routing table now and keeps it current until ctx is
// done. tunIndex is the tunnel device's interface index: routes through it
// are not local.
func NewKernel(ctx context.Context, tunIndex int, log *slog.Logger) (*Kernel, error) {
	k := &Kernel{tunIndex: tunIndex}
	if err := k.reload(); err != nil {
		return nil, err
	}
	updates := make(chan netlink.RouteUpdate, 64)
	done := make(chan struct{})
	if err := netlink.RouteSubscribe(updates, done); err != nil {
		return nil, fmt.Errorf("localroute: subscribe: %w", err)
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-updates:
				if !ok {
					return
				}
				// Coalesce bursts (a link going down removes many
				// routes) into one reload.
				timer := time.NewTimer(20 * time.Millisecond)
			drain:
				for {
					select {
					case <-updates:
					case <-timer.C:
						break drain
					case <-ctx.Done():
						timer.Stop()
						return
					}
				}
				if err := k.reload(); err != nil {
					log.Warn("reload", "err", err)
				}
			}
		}
	}()
	return k, nil
}

func (k *Kernel) reload() error {
	var routes []Route
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("localroute: list routes: %w", err)
		}
		for _, r := range rs {
			var p netip.Prefix
			if r.Dst == nil {
				if family == netlink.FAMILY_V4 {
					p = netip.MustParsePrefix("0.0.0.0/0")
				} else {
					p = netip.MustParsePrefix("::/0")
				}
			} else {
				a, ok := netip.AddrFromSlice(r.Dst.IP)
				if !ok {
					continue
				}
				ones, _ := r.Dst.Mask.Size()
				p = netip.PrefixFrom(a.Unmap(), ones)
			}
			routes = append(routes, Route{Prefix: p, ViaTunnel: r.LinkIndex == k.tunIndex})
		}
	}
	k.Replace(routes)
	return nil
}
