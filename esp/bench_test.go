package esp_test

import (
	"testing"

	"github.com/dmvpn/dmvpn/esp"
)

const benchSize = 1400

// benchTransforms: the AEADs and the CBC+HMAC combinations Cisco peers use.
var benchTransforms = []esp.Transform{
	esp.GCM128, esp.GCM256, esp.ChaCha20Poly1305,
	esp.CBC128SHA1, esp.CBC128SHA256, esp.CBC256SHA256, esp.CBC256SHA384, esp.CBC256SHA512,
}

// BenchmarkSeal seals a 1,400-octet payload in place (b.SetBytes: the MB/s
// column is payload throughput; Gb/s = MB/s × 8 / 1000).
func BenchmarkSeal(b *testing.B) {
	for _, tr := range benchTransforms {
		b.Run(tr.String(), func(b *testing.B) {
			out, _ := pair(b, testConfig(tr, true))
			buf := make([]byte, esp.MaxHeaderLen+benchSize+esp.MaxTrailerLen)
			b.SetBytes(benchSize)
			b.ReportAllocs()
			for b.Loop() {
				// Sealing the previous ciphertext again: same cost, no copy.
				if _, _, err := out.Seal(buf, esp.MaxHeaderLen, benchSize, esp.NextHeaderGRE); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen opens 1,400-octet packets in place. Each packet can be
// opened once (replay window, in-place decryption), so batches are sealed
// beforehand with the timer stopped.
func BenchmarkOpen(b *testing.B) {
	const batch = 1024
	for _, tr := range benchTransforms {
		b.Run(tr.String(), func(b *testing.B) {
			out, in := pair(b, testConfig(tr, true))
			size := esp.MaxHeaderLen + benchSize + esp.MaxTrailerLen
			bufs := make([][]byte, batch)
			pkts := make([][]byte, batch)
			for i := range bufs {
				bufs[i] = make([]byte, size)
			}
			fill := func() {
				for i := range bufs {
					start, n, err := out.Seal(bufs[i], esp.MaxHeaderLen, benchSize, esp.NextHeaderGRE)
					if err != nil {
						b.Fatal(err)
					}
					pkts[i] = bufs[i][start : start+n]
				}
			}
			b.SetBytes(benchSize)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%batch == 0 {
					b.StopTimer()
					fill()
					b.StartTimer()
				}
				if _, _, _, err := in.Open(pkts[i%batch]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenForged is the cost of refusing a replayed packet and a
// forged one (the ICV check runs; a replay stops before it).
func BenchmarkOpenForged(b *testing.B) {
	out, in := pair(b, testConfig(esp.GCM128, false))
	buf := make([]byte, esp.MaxHeaderLen+benchSize+esp.MaxTrailerLen)
	start, n, err := out.Seal(buf, esp.MaxHeaderLen, benchSize, esp.NextHeaderGRE)
	if err != nil {
		b.Fatal(err)
	}
	forged := buf[start : start+n]
	forged[len(forged)-1] ^= 1
	b.Run("forged", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, _, err := in.Open(forged); err != esp.ErrAuth {
				b.Fatal(err)
			}
		}
	})
	start, n, _ = out.Seal(buf, esp.MaxHeaderLen, benchSize, esp.NextHeaderGRE)
	good := buf[start : start+n]
	if _, _, _, err := in.Open(good); err != nil {
		b.Fatal(err)
	}
	b.Run("replayed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, _, err := in.Open(good); err != esp.ErrReplayed {
				b.Fatal(err)
			}
		}
	})
}
