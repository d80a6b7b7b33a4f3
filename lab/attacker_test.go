package lab

import (
	"context"
	"slices"
	"testing"
	"time"
)

// Options.Attacker adds the attacker namespace on the inet router: it
// reaches the hub and the spokes, it is in the lab's namespace list and
// state, and a teardown that does not know about it (`dmvpn lab down`)
// removes it too, with whatever runs in it.
func TestAttackerNode(t *testing.T) {
	requireLab(t)
	prefix := testPrefix('a')
	o := Options{Prefix: prefix, Attacker: true}
	l := upLab(t, o)
	ctx := bounded(t, time.Minute)

	ns := nsName(prefix, Attacker)
	got := labNamespacesPresent(t, prefix)
	if len(got) != len(Nodes)+1 || !slices.Contains(got, ns) {
		t.Fatalf("namespaces = %v, want the %d nodes and %s", got, len(Nodes), ns)
	}
	if !slices.Contains(l.Namespaces(), ns) {
		t.Errorf("Namespaces() = %v, lacks %s", l.Namespaces(), ns)
	}
	st, err := loadState(l.Dir())
	if err != nil || !slices.Contains(st.Namespaces, ns) {
		t.Errorf("state.json namespaces = %v (%v), lack %s", st.Namespaces, err, ns)
	}
	if got, err := l.Addrs(Attacker, IfWAN); err != nil || !slices.Contains(got, AttackerWAN) {
		t.Errorf("attacker's %s: %v %v", IfWAN, got, err)
	}
	for _, dst := range []string{"192.0.2.1", "198.51.100.1", "198.51.100.65", NAT3Public.String()} {
		if err := l.Ping(ctx, Attacker, dst, 1); err != nil {
			t.Errorf("attacker -> %s: %v", dst, err)
		}
	}
	// Something left running in the attacker namespace goes with it.
	stray := l.Command(ctx, Attacker, "sleep", "60")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { _ = stray.Wait(); close(reaped) }()

	dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Teardown(dctx, Options{Prefix: prefix, Dir: l.Dir()}); err != nil {
		t.Fatalf("teardown without Options.Attacker: %v", err)
	}
	if got := labNamespacesPresent(t, prefix); len(got) != 0 {
		t.Errorf("namespaces left after teardown: %v", got)
	}
	select {
	case <-reaped:
	case <-time.After(10 * time.Second):
		t.Error("the process in the attacker namespace survived the teardown")
	}
}
