package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// BenchmarkApply applies batches shaped like the audit stream: 500 entries,
// a fifth of them lease events (issues, renewals, revocations), the rest
// creds request and response records.
func BenchmarkApply(b *testing.B) {
	s := openStoreB(b)
	n := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var batch Batch
		for j := range 100 {
			n++
			id := fmt.Sprintf("database/creds/app/lease%019d", n)
			when := at(time.Duration(n) * time.Millisecond)
			switch j % 4 {
			case 0, 1:
				batch.Leases = append(batch.Leases, issued(id, when))
			case 2:
				batch.Leases = append(batch.Leases, event(schemas.LeaseRenewed, fmt.Sprintf("database/creds/app/lease%019d", n-2), when))
			case 3:
				batch.Leases = append(batch.Leases, event(schemas.LeaseRevoked, fmt.Sprintf("database/creds/app/lease%019d", n-3), when))
			}
		}
		for j := range 200 {
			rid := fmt.Sprintf("req-%d-%d", i, j)
			batch.Creds = append(batch.Creds,
				CredsRecord{RequestID: rid, Path: "database/creds/app", Mount: "database", Role: "app", Time: at(0)},
				CredsRecord{RequestID: rid, Path: "database/creds/app", Time: at(time.Second), Response: true})
		}
		if _, err := s.Apply(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "entries/s")
}
