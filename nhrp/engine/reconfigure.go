package engine

import (
	"fmt"
	"time"

	"github.com/dmvpn/dmvpn/events"
	"github.com/dmvpn/dmvpn/internal/ratelimit"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
	"github.com/dmvpn/dmvpn/nhrp/replay"
)

// AuthGrace is how long, after a reload changes the authentication secret
// or keys, packets authenticated the old way are still accepted (and the
// old keys' signatures verified), so the nodes of a cloud can be reloaded
// one after the other without dropping each other.
const AuthGrace = 60 * time.Second

// Live is the part of Config a running engine can change (Reconfigure).
type Live struct {
	Holdtime, RegistrationInterval, MaxHoldtime time.Duration
	Unique, Shortcut, Redirect                  bool
	MaxSend, MaxReceive                         Rate
	Authentication                              []byte
	HMAC                                        *nhrp.HMACKeys
	HMACMaxSkew                                 time.Duration
	// AuthChanged says the three fields above differ from the running
	// ones (the caller compares configurations: a key ring keeps no
	// secrets to compare).
	AuthChanged bool
	NHS         []NHS
	Static      []StaticMap
}

// oldAuth is the authentication a reload replaced, accepted until until.
type oldAuth struct {
	until  time.Time
	cisco  []byte
	hmac   *nhrp.HMACKeys
	filter *replay.Filter
}

// Reconfigure applies l to the running engine and returns what changed, in
// words. What did not change is left alone: an NHS in both lists keeps its
// registration, entries and shortcuts stay. A removed NHS is told (a Purge
// Request for our binding, as at shutdown) and forgotten; an added one is
// registered with at once. A changed secret or key ring takes effect at
// once for what we send; the previous one is still accepted for AuthGrace.
func (e *Engine) Reconfigure(now time.Time, l Live) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if l.RegistrationInterval == 0 {
		l.RegistrationInterval = l.Holdtime / 3
	}
	if l.MaxHoldtime == 0 {
		l.MaxHoldtime = max(l.Holdtime, DefaultMaxHoldtime)
	}
	var changed []string
	note := func(what string, args ...any) { changed = append(changed, fmt.Sprintf(what, args...)) }

	// Authentication first: what we send below (purges, registrations)
	// carries the new one.
	if err := e.reauthenticate(now, l, note); err != nil {
		return nil, err
	}
	c := &e.cfg
	if c.Holdtime != l.Holdtime || c.RegistrationInterval != l.RegistrationInterval {
		note("nhrp.holdtime %v, refresh every %v (was %v, %v)", l.Holdtime, l.RegistrationInterval, c.Holdtime, c.RegistrationInterval)
		c.Holdtime, c.RegistrationInterval = l.Holdtime, l.RegistrationInterval
		for _, n := range e.nhs {
			if at := now.Add(l.RegistrationInterval); n.State == StateUp && at.Before(n.nextAt) {
				n.nextAt = at // refresh within the new period
			}
		}
	}
	if c.MaxHoldtime != l.MaxHoldtime {
		note("nhrp.max-holdtime %v (was %v)", l.MaxHoldtime, c.MaxHoldtime)
		c.MaxHoldtime = l.MaxHoldtime
	}
	if c.Unique != l.Unique || c.Shortcut != l.Shortcut || c.Redirect != l.Redirect {
		note("nhrp.unique %v, shortcut %v, redirect %v (was %v, %v, %v)", l.Unique, l.Shortcut, l.Redirect, c.Unique, c.Shortcut, c.Redirect)
		c.Unique, c.Shortcut, c.Redirect = l.Unique, l.Shortcut, l.Redirect
	}
	if c.MaxSend != l.MaxSend {
		note("nhrp.max-send %d/%v (was %d/%v)", l.MaxSend.Packets, l.MaxSend.Interval, c.MaxSend.Packets, c.MaxSend.Interval)
		c.MaxSend, e.sendLimit = l.MaxSend, bucket{}
	}
	if c.MaxReceive != l.MaxReceive {
		note("nhrp.max-receive %d/%v (was %d/%v)", l.MaxReceive.Packets, l.MaxReceive.Interval, c.MaxReceive.Packets, c.MaxReceive.Interval)
		c.MaxReceive = l.MaxReceive
		e.recvLimit = ratelimit.NewPerSource(l.MaxReceive)
	}
	e.setStatic(now, l.Static, note)
	e.setNHS(now, l.NHS, note)
	return changed, nil
}

func (e *Engine) reauthenticate(now time.Time, l Live, note func(string, ...any)) error {
	if !l.AuthChanged {
		return nil
	}
	prev := &oldAuth{until: now.Add(AuthGrace), hmac: e.hmac, filter: e.replay}
	if e.hmac == nil && len(e.cfg.Authentication) > 0 {
		prev.cisco = e.cfg.Authentication
	}
	if e.hmac == nil && len(e.cfg.Authentication) == 0 {
		prev = nil // there was none: nothing to be lenient about
	}
	e.cfg.Authentication, e.cfg.HMAC, e.cfg.HMACMaxSkew = l.Authentication, l.HMAC, l.HMACMaxSkew
	if err := e.useAuth(l.Authentication, l.HMAC, l.HMACMaxSkew); err != nil {
		return err
	}
	switch {
	case l.HMAC != nil:
		note("nhrp.authentication-keys: signing with key %d", l.HMAC.SigningKeyID())
	case len(l.Authentication) > 0:
		note("nhrp.authentication: new secret")
	default:
		note("nhrp: authentication off")
	}
	e.prevAuth = prev
	if prev != nil {
		note("the previous authentication is still accepted until %s", prev.until.Format(time.RFC3339))
	}
	return nil
}

// previousAuthOK reports whether b (decoded as p) passes the authentication
// a reload replaced, while its grace period lasts.
func (e *Engine) previousAuthOK(now time.Time, b []byte, p *nhrp.Packet) bool {
	a := e.prevAuth
	if a == nil {
		return false
	}
	if !now.Before(a.until) {
		e.prevAuth = nil
		return false
	}
	if a.hmac != nil {
		signer, _, seq, err := a.hmac.Verify(b)
		return err == nil && signer != e.self() && a.filter.Check(signer, seq, now) == nil
	}
	return ciscoSecretIs(p, a.cisco)
}

func (e *Engine) setStatic(now time.Time, want []StaticMap, note func(string, ...any)) {
	old := map[StaticMap]bool{}
	for _, m := range e.cfg.Static {
		old[m] = true
	}
	keep := map[StaticMap]bool{}
	for _, m := range want {
		keep[m] = true
		if !old[m] {
			_ = e.cache.Put(cache.Entry{Protocol: m.Protocol, NBMA: m.NBMA, ClaimedNBMA: m.NBMA.Addr(), Transport: m.Transport,
				Type: cache.Static, Multicast: m.Multicast, Up: true, Created: now})
			note("nhrp.map: added %v at %v", m.Protocol, m.NBMA)
		}
	}
	for _, m := range e.cfg.Static {
		if keep[m] {
			continue
		}
		if c, ok := e.cache.Get(m.Protocol); ok && c.Type == cache.Static && !c.NHS {
			e.cache.Delete(m.Protocol)
		}
		note("nhrp.map: removed %v", m.Protocol)
	}
	e.cfg.Static = append([]StaticMap(nil), want...)
}

func (e *Engine) setNHS(now time.Time, want []NHS, note func(string, ...any)) {
	have := map[NHS]*nhsState{}
	for _, n := range e.nhs {
		have[n.NHS] = n
	}
	var next []*nhsState
	kept := map[NHS]bool{}
	for _, w := range want {
		delete(e.formerNHS, w.NBMA.Addr())
		if n, ok := have[w]; ok {
			next = append(next, n) // unchanged: its registration stands
			kept[w] = true
			continue
		}
		n := &nhsState{NHSStatus: NHSStatus{NHS: w, State: StateDown, Since: now}}
		next = append(next, n)
		note("nhrp.nhs: added %v at %v", w.Protocol, w.NBMA)
	}
	for _, n := range e.nhs {
		if kept[n.NHS] {
			continue
		}
		e.deregister(now, n, "deregistering: NHS removed by a reload")
		if n.State == StateUp {
			e.emit(now, events.NHSDown, n.Protocol, n.NBMA, "", "removed from the configuration (reload)", 0)
		}
		if c, ok := e.cache.Get(n.Protocol); ok && c.Type == cache.Static && c.NHS {
			e.cache.Delete(n.Protocol)
		}
		// It will probe us before honouring the purge: we must not
		// answer, or it would take us for alive and keep the binding.
		if len(e.formerNHS) < maxProbes {
			e.formerNHS[n.NBMA.Addr()] = now.Add(e.cfg.MaxHoldtime)
		}
		note("nhrp.nhs: removed %v (deregistered)", n.Protocol)
	}
	e.nhs = next
	e.cfg.NHS = append([]NHS(nil), want...)
	if !e.started {
		return
	}
	for _, n := range next {
		if kept[n.NHS] {
			continue
		}
		_ = e.cache.Put(cache.Entry{Protocol: n.Protocol, NBMA: n.NBMA, ClaimedNBMA: n.NBMA.Addr(), Transport: n.Transport,
			Type: cache.Static, NHS: true, Multicast: true, Created: now})
		e.register(now, n)
	}
}
