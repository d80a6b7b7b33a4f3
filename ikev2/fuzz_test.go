package ikev2_test

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmvpn/dmvpn/ikev2"
	"github.com/dmvpn/dmvpn/internal/capturetest"
)

// fzCaptureSeeds returns the IKE messages of the real captures
// (../shared/captures, or $DMVPN_CAPTURES, as the conformance test finds
// them), or none when the directory is not there: a bare clone fuzzes from
// the vectors alone.
func fzCaptureSeeds(f *testing.F) [][]byte {
	dir, _ := capturetest.Lookup()
	tsvs, _ := filepath.Glob(filepath.Join(dir, "*.ike.tsv"))
	if len(tsvs) == 0 {
		f.Logf("no captures in %s: seeding from the vectors only", dir)
		return nil
	}
	var seeds [][]byte
	for _, tsv := range tsvs {
		base := strings.TrimSuffix(tsv, ".ike.tsv")
		for _, ext := range []string{".pcap", ".pcapng"} {
			frames, err := capturetest.ReadFrames(base + ext)
			if err != nil {
				continue
			}
			var r confReassembler
			for _, fr := range frames {
				if e, err := confFindIKE(fr, &r); err == nil && e != nil {
					seeds = append(seeds, e.msg)
				}
			}
		}
	}
	return seeds
}

// fzVectorSeeds are this package's own messages: the hand-written
// IKE_SA_INIT, every payload type, an SK message whose body is a valid
// inner chain, fragments.
func fzVectorSeeds(f *testing.F) [][]byte {
	seeds := [][]byte{katBytes(f, katSAInit)}

	h := ikev2.Header{InitiatorSPI: 1, ResponderSPI: 2, Exchange: ikev2.ExchangeIKEAuth, Flags: ikev2.FlagInitiator, MessageID: 1}
	b := ikev2.NewMessage(nil, &h)
	for _, it := range rtItems() {
		rtAdd(f, &b, it)
	}
	all, err := b.Finish()
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, all)

	// An SK payload whose body parses as a chain, so the fuzzer reaches
	// the inner walker from the outer message.
	c := ikev2.NewChain(nil)
	c.IDi(&ikev2.ID{Type: ikev2.IDIPv4Addr, Data: []byte{192, 0, 2, 1}})
	c.Auth(&ikev2.Auth{Method: ikev2.AuthSharedKeyMIC, Data: katSeq(0, 32)})
	c.TSi(&ikev2.TrafficSelectors{Selectors: []ikev2.TrafficSelector{ikev2.HostSelector(rtAddr("192.0.2.1"), 47)}})
	chain, err := c.Finish()
	if err != nil {
		f.Fatal(err)
	}
	b = ikev2.NewMessage(nil, &h)
	off := b.Encrypted(c.First(), len(chain))
	sk, err := b.Finish()
	if err != nil {
		f.Fatal(err)
	}
	copy(sk[off:], chain)
	seeds = append(seeds, sk)

	for _, n := range []uint16{1, 2} {
		b = ikev2.NewMessage(nil, &h)
		b.Fragment(ikev2.PayloadIDi, n, 2, 24)
		frag, err := b.Finish()
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, frag)
	}
	return seeds
}

// FuzzDecode checks that Decode never panics and never modifies its input;
// that it fails only with a *DecodeError whose offset lies in the input
// and whose notification fits its cause; and that what it accepts has
// typed accessors that cannot fail and re-encodes (raw, and from the typed
// values) to the very same bytes, which decode to the same message. The
// body of an SK payload is tried as a decrypted chain too, with the same
// properties.
//
// testdata/fuzz/FuzzDecode holds the inputs that found bugs.
func FuzzDecode(f *testing.F) {
	for _, s := range fzVectorSeeds(f) {
		f.Add(s)
		f.Add(s[:len(s)/2])
	}
	for _, s := range fzCaptureSeeds(f) {
		f.Add(s)
	}
	var reused ikev2.Message
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		var m ikev2.Message
		err := m.Decode(b)
		if !bytes.Equal(in, b) {
			t.Fatalf("Decode modified its input")
		}
		errReused := reused.Decode(b)
		if (err == nil) != (errReused == nil) || err != nil && err.Error() != errReused.Error() {
			t.Fatalf("Decode into a reused Message: %v; a fresh one: %v", errReused, err)
		}
		if err != nil {
			fzCheckError(t, b, err, false)
			return
		}
		if d := fzDiff(&m, &reused); d != "" {
			t.Fatalf("reused Message differs from a fresh one: %s", d)
		}
		raw, err := ikev2.AppendMessage(nil, &m.Header, m.Payloads)
		if err != nil || !bytes.Equal(raw, b) {
			t.Fatalf("AppendMessage of a decoded message: %v\n in  %x\n out %x", err, b, raw)
		}
		typed, err := typedReencode(&m)
		if err != nil || !bytes.Equal(typed, b) {
			t.Fatalf("typed re-encoding of a decoded message: %v\n in  %x\n out %x", err, b, typed)
		}
		var again ikev2.Message
		if err := again.Decode(typed); err != nil {
			t.Fatalf("Decode(Encode(m)): %v", err)
		}
		if d := fzDiff(&m, &again); d != "" {
			t.Fatalf("Decode(Encode(m)) != m: %s", d)
		}

		if e, ok := m.Encrypted(); ok {
			ps, err := ikev2.DecodeChain(nil, e.Body, e.First)
			if err != nil {
				fzCheckError(t, e.Body, err, true)
				return
			}
			c := ikev2.NewChain(nil)
			if err := typedChain(&c, ps); err != nil {
				t.Fatalf("typed re-encoding of a decoded chain: %v", err)
			}
			chain, err := c.Finish()
			if err != nil || !bytes.Equal(chain, e.Body) || len(ps) > 0 && c.First() != e.First {
				t.Fatalf("re-encoded chain: %v, first %v (want %v)\n in  %x\n out %x", err, c.First(), e.First, e.Body, chain)
			}
		}
	})
}

func fzCheckError(t *testing.T, b []byte, err error, inner bool) {
	t.Helper()
	var de *ikev2.DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %T %v is not a *ikev2.DecodeError", err, err)
	}
	if de.Inner != inner {
		t.Fatalf("Inner = %v for %v", de.Inner, err)
	}
	if de.Offset < 0 || de.Offset > len(b) {
		t.Fatalf("offset %d outside the %d-octet input: %v", de.Offset, len(b), err)
	}
	n := 0
	for _, s := range []error{ikev2.ErrTruncated, ikev2.ErrBadLength, ikev2.ErrVersion, ikev2.ErrCritical, ikev2.ErrTooMany, ikev2.ErrInvalid} {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %v wraps %d sentinels, want 1", err, n)
	}
	switch {
	case errors.Is(err, ikev2.ErrVersion):
		if de.Notify != ikev2.NotifyInvalidMajorVersion || de.Offset != 17 {
			t.Fatalf("version error with %v at %d", de.Notify, de.Offset)
		}
	case errors.Is(err, ikev2.ErrCritical):
		if de.Notify != ikev2.NotifyUnsupportedCriticalPayload || de.Payload.Known() || de.Payload == ikev2.PayloadNone {
			t.Fatalf("critical payload error with %v for %v", de.Notify, de.Payload)
		}
	case de.Notify == ikev2.NotifyNone:
		if inner || len(b) >= ikev2.HeaderLen {
			t.Fatalf("silent error %v on a message with a header", err)
		}
	case de.Notify != ikev2.NotifyInvalidSyntax:
		t.Fatalf("error %v with notification %v", err, de.Notify)
	}
}

// fzDiff compares two decoded messages (cmp's reflection is too slow for
// the fuzzer on multi-kilobyte messages).
func fzDiff(a, b *ikev2.Message) string {
	if a.Header != b.Header {
		return fmt.Sprintf("header %+v, %+v", a.Header, b.Header)
	}
	if !bytes.Equal(a.Raw, b.Raw) {
		return "raw bytes differ"
	}
	if len(a.Payloads) != len(b.Payloads) {
		return fmt.Sprintf("%d payloads, %d", len(a.Payloads), len(b.Payloads))
	}
	for i := range a.Payloads {
		p, q := &a.Payloads[i], &b.Payloads[i]
		if p.Type != q.Type || p.Next != q.Next || p.Critical != q.Critical || p.Reserved != q.Reserved || p.Offset != q.Offset || !bytes.Equal(p.Body, q.Body) {
			return fmt.Sprintf("payload %d: %+v, %+v", i, *p, *q)
		}
	}
	return ""
}
