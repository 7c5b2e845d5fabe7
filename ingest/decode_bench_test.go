package ingest

import (
	"encoding/json"
	"testing"
)

// benchLines are representative entries: most of a real log says nothing
// about leases, a few issue and renew.
func benchLines(b *testing.B) []struct {
	name string
	line []byte
} {
	return []struct {
		name string
		line []byte
	}{
		{"token_lookup", compact(b, entryTokenLookup)},
		{"creds_issue", fixtureLine(b, 20)},
		{"renew", fixtureLine(b, 24)},
	}
}

func BenchmarkDecodeNormalize(b *testing.B) {
	for _, bl := range benchLines(b) {
		b.Run(bl.name, func(b *testing.B) {
			var d Decoder
			b.SetBytes(int64(len(bl.line)))
			b.ReportAllocs()
			for b.Loop() {
				e, err := d.Decode(bl.line)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Normalize(&e, testSource); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBaselineMapDecode is the naive reading the decoder must beat:
// json.Unmarshal into map[string]any, with no classification at all.
func BenchmarkBaselineMapDecode(b *testing.B) {
	for _, bl := range benchLines(b) {
		b.Run(bl.name, func(b *testing.B) {
			b.SetBytes(int64(len(bl.line)))
			b.ReportAllocs()
			for b.Loop() {
				var m map[string]any
				if err := json.Unmarshal(bl.line, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
