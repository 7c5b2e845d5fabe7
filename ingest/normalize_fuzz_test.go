package ingest

import (
	"errors"
	"slices"
	"testing"
)

// FuzzDecodeNormalize feeds arbitrary lines through Decode and Normalize:
// neither may panic, every error must be a *DecodeError with a reason, and
// every lease event must validate.
func FuzzDecodeNormalize(f *testing.F) {
	for _, line := range fixtureLines(f) {
		f.Add(line)
	}
	for _, tt := range normalizeCases() {
		f.Add(compact(f, tt.entry))
	}
	for _, entry := range []string{
		entryIssueEmptyLeaseID, entryIssueHashedLeaseID, entryRenewHashedLeaseID,
		entryRevokeBodyMissing, entryRevokePrefixEmpty,
	} {
		f.Add(compact(f, entry))
	}
	for _, tt := range malformedCases(f) {
		f.Add(tt.line)
	}
	kinds := AllKinds()

	f.Fuzz(func(t *testing.T, line []byte) {
		d := Decoder{MaxEntryBytes: 64 << 10}
		e, err := d.Decode(line)
		if err != nil {
			requireReason(t, err)
			return
		}
		n, err := Normalize(&e, testSource)
		if err != nil {
			requireReason(t, err)
			return
		}
		if !slices.Contains(kinds, n.Kind) {
			t.Fatalf("unknown kind %q", n.Kind)
		}
		if n.Lease != nil {
			if err := n.Lease.Validate(); err != nil {
				t.Fatalf("lease event does not validate: %v\n%+v", err, *n.Lease)
			}
		}
	})
}

func requireReason(t *testing.T, err error) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	if de.Reason == "" {
		t.Fatalf("DecodeError without reason")
	}
}
