package replay_test

import (
	"encoding/binary"
	"testing"

	"github.com/dmvpn/dmvpn/ipsec/replay"
)

// model is the reference the fuzzer compares Window with: RFC 4303's rules
// written the slow, obvious way (a set of accepted numbers).
type model struct {
	size uint64
	esn  bool
	top  uint64
	seen map[uint64]bool
}

// infer: the number with low half lo among the 2^32 starting at the
// window's bottom (RFC 4303 A2.2), by arithmetic on the bottom itself.
func (m *model) infer(lo uint32) (uint64, bool) {
	if !m.esn {
		return uint64(lo), true
	}
	if m.top < m.size-1 { // the bottom is below 0
		if uint64(lo) >= (m.top-m.size+1)&(1<<32-1) {
			return 0, false
		}
		return uint64(lo), true
	}
	b := m.top - m.size + 1
	c := b&^(1<<32-1) | uint64(lo)
	if c < b {
		if b>>32 == 1<<32-1 {
			return 0, false
		}
		c += 1 << 32
	}
	return c, true
}

func (m *model) check(seq uint64) error {
	switch {
	case seq == 0:
		return replay.ErrTooOld
	case seq > m.top:
		return nil
	case m.top-seq >= m.size:
		return replay.ErrTooOld
	case m.seen[seq]:
		return replay.ErrReplayed
	}
	return nil
}

func (m *model) accept(seq uint64) {
	m.seen[seq] = true
	if seq > m.top {
		m.top = seq
		if len(m.seen) > 4*int(m.size) {
			for s := range m.seen {
				if m.top-s >= m.size {
					delete(m.seen, s)
				}
			}
		}
	}
}

// FuzzWindow drives a Window and the model with the same packets: a sender
// whose 64-bit sequence number moves by the fuzzer's deltas (forward,
// backward, far jumps), and forgers sending arbitrary low halves. Check must
// agree with the model; a packet whose inferred number is the one the
// sender used passes the "ICV" and is accepted.
func FuzzWindow(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1})
	f.Add([]byte{1, 1, 0, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0, 0x10, 1, 0, 0, 0, 0x40, 2, 0x12, 0x34, 0x56, 0x78})
	f.Add([]byte{2, 0, 0, 0x80, 0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0, 0, 0x20, 1, 0, 0, 0, 0x41})
	f.Add([]byte{3, 1, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0x00, 0, 0x10, 0, 1, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		size := 64 << (data[0] % 4)
		esn := data[1]&1 == 1
		w, err := replay.New(size, esn)
		if err != nil {
			t.Fatal(err)
		}
		m := &model{size: uint64(size), esn: esn, seen: map[uint64]bool{}}
		var cur uint64 // the sender's last sequence number
		for ops := data[2:]; len(ops) >= 5; ops = ops[5:] {
			v := binary.BigEndian.Uint32(ops[1:])
			var sent uint64 // the number the packet really carries; 0: forged
			var lo uint32
			switch ops[0] % 4 {
			case 0: // forward by v
				cur += uint64(v)
				if !esn && cur > 1<<32-1 {
					cur = 1<<32 - 1
				}
				sent, lo = cur, uint32(cur)
			case 1: // a late packet, v%(2 size) behind the sender
				d := uint64(v) % (2 * m.size)
				if d > cur {
					d = cur
				}
				sent, lo = cur-d, uint32(cur-d)
			case 2: // a forger's low half
				lo = v
			case 3: // a duplicate of the sender's last packet
				sent, lo = cur, uint32(cur)
			}
			gotSeq, gotErr := w.Check(lo)
			wantSeq, ok := m.infer(lo)
			var wantErr error = replay.ErrTooOld
			if ok {
				wantErr = m.check(wantSeq)
			}
			if gotErr != wantErr {
				t.Fatalf("Check(%#x) = %#x, %v; model %#x, %v (top %#x, size %d, esn %v)", lo, gotSeq, gotErr, wantSeq, wantErr, w.Top(), size, esn)
			}
			if gotErr != nil {
				continue
			}
			if gotSeq != wantSeq {
				t.Fatalf("Check(%#x) inferred %#x, model %#x (top %#x)", lo, gotSeq, wantSeq, w.Top())
			}
			if gotSeq != sent || sent == 0 {
				continue // the ICV (over the high half) fails
			}
			if err := w.Accept(gotSeq); err != nil {
				t.Fatalf("Accept(%#x) after Check: %v", gotSeq, err)
			}
			m.accept(gotSeq)
			if w.Top() != m.top {
				t.Fatalf("Top %#x, model %#x", w.Top(), m.top)
			}
			if _, err := w.Check(lo); err != replay.ErrReplayed {
				t.Fatalf("Check(%#x) right after Accept = %v, want ErrReplayed", lo, err)
			}
		}
	})
}
