package esp_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"

	"github.com/dmvpn/dmvpn/esp"
)

// SealWith writes exactly what Seal writes (the AEAD IV is the sequence
// number, so two SAs with the same keys agree), and OpenWith opens it.
func TestSealWithMatchesSeal(t *testing.T) {
	for _, tr := range []esp.Transform{esp.GCM128, esp.GCM256, esp.ChaCha20Poly1305, esp.CBC128SHA1} {
		for _, esn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/esn=%v", tr, esn), func(t *testing.T) {
				c := testConfig(tr, esn)
				a, in := pair(t, c)
				b, err := esp.NewOutbound(c)
				if err != nil {
					t.Fatal(err)
				}
				var s esp.Scratch
				for i := range 5 {
					payload := bytes.Repeat([]byte{byte(i)}, 100+i)
					x := seal(t, a, payload, esp.NextHeaderGRE)
					buf := make([]byte, esp.MaxHeaderLen+len(payload)+esp.MaxTrailerLen)
					copy(buf[esp.MaxHeaderLen:], payload)
					start, n, err := b.SealWith(&s, buf, esp.MaxHeaderLen, len(payload), esp.NextHeaderGRE)
					if err != nil {
						t.Fatal(err)
					}
					y := buf[start : start+n]
					if tr.AEAD() != bytes.Equal(x, y) {
						t.Fatalf("packet %d: Seal %x\nSealWith %x (AEAD: equal expected)", i, x, y)
					}
					off, m, nh, err := in.OpenWith(&s, y)
					if err != nil || nh != esp.NextHeaderGRE || !bytes.Equal(y[off:off+m], payload) {
						t.Fatalf("OpenWith: %v", err)
					}
				}
				if a.Concurrent() != tr.AEAD() {
					t.Fatalf("Concurrent() = %v for %v", a.Concurrent(), tr)
				}
			})
		}
	}
}

// Many goroutines seal on one SA and many open on its peer: every
// sequence number is used once, every packet opens once and intact, a
// replay of any is refused. Run with -race.
func TestSealOpenConcurrent(t *testing.T) {
	const workers, per = 4, 500
	c := testConfig(esp.GCM128, true)
	c.ReplayWindow = 4096
	out, in := pair(t, c)
	pkts := make([][]byte, workers*per)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s esp.Scratch
			for i := range per {
				k := w*per + i
				payload := fmt.Appendf(nil, "packet %05d", k)
				buf := make([]byte, esp.MaxHeaderLen+len(payload)+esp.MaxTrailerLen)
				copy(buf[esp.MaxHeaderLen:], payload)
				start, n, err := out.SealWith(&s, buf, esp.MaxHeaderLen, len(payload), esp.NextHeaderGRE)
				if err != nil {
					t.Error(err)
					return
				}
				pkts[k] = buf[start : start+n]
			}
		}()
	}
	wg.Wait()
	seqs := map[uint32]bool{}
	for _, p := range pkts {
		seqs[binary.BigEndian.Uint32(p[4:])] = true
	}
	if len(seqs) != len(pkts) || out.Seq() != uint64(len(pkts)) {
		t.Fatalf("%d distinct sequence numbers for %d packets (Seq %d)", len(seqs), len(pkts), out.Seq())
	}
	replays := make([][]byte, len(pkts))
	for i, p := range pkts {
		replays[i] = append([]byte(nil), p...)
	}
	var mu sync.Mutex
	opened := map[string]int{}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s esp.Scratch
			for k := w; k < len(pkts); k += workers {
				off, n, _, err := in.OpenWith(&s, pkts[k])
				if err != nil {
					t.Errorf("packet %d: %v", k, err)
					continue
				}
				mu.Lock()
				opened[string(pkts[k][off:off+n])]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(opened) != len(pkts) {
		t.Fatalf("%d distinct packets opened of %d", len(opened), len(pkts))
	}
	var s esp.Scratch
	for _, p := range replays[:50] {
		if _, _, _, err := in.OpenWith(&s, p); err != esp.ErrReplayed {
			t.Fatalf("replay: %v, want ErrReplayed", err)
		}
	}
}

func TestSealWithOpenWithZeroAllocs(t *testing.T) {
	c := testConfig(esp.GCM128, false)
	out, in := pair(t, c)
	var s esp.Scratch
	payload := make([]byte, 1400)
	buf := make([]byte, esp.MaxHeaderLen+len(payload)+esp.MaxTrailerLen)
	allocs := testing.AllocsPerRun(200, func() {
		start, n, err := out.SealWith(&s, buf, esp.MaxHeaderLen, len(payload), esp.NextHeaderGRE)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := in.OpenWith(&s, buf[start:start+n]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("SealWith+OpenWith allocate %.1f times per packet", allocs)
	}
}
