package store

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// replay folds events in the given order the way Apply does, without a
// database: prefix revocations accumulate and are applied to the lease
// whenever either side changes.
func replay(leaseID string, evs []schemas.LeaseEvent) *Lease {
	var l *Lease
	var prefixes []prefixRevocation
	for i := range evs {
		e := normalize(evs[i])
		if e.LeasePrefix != "" {
			prefixes = append(prefixes, prefixRevocation{Prefix: e.LeasePrefix, RevokedAt: e.EventTime,
				Method: schemas.RevokeMethod(prefixMethod(&e)), Namespace: e.Namespace, RequestID: e.VaultRequestID})
		} else {
			if l == nil {
				l = &Lease{LeaseID: leaseID}
			}
			mergeEvent(l, &e)
		}
		if l != nil {
			for j := range prefixes {
				applyPrefix(l, &prefixes[j])
			}
		}
	}
	return l
}

func describe(l *Lease) string {
	if l == nil {
		return "<no row>"
	}
	var out string
	for i, v := range l.writeArgs() {
		switch v := v.(type) {
		case *time.Time:
			if v != nil {
				out += fmt.Sprintf("%s=%s ", leaseWriteCols[i], v.Format(time.RFC3339Nano))
				continue
			}
		case *int64:
			if v != nil {
				out += fmt.Sprintf("%s=%d ", leaseWriteCols[i], *v)
				continue
			}
		}
		out += fmt.Sprintf("%s=%v ", leaseWriteCols[i], v)
	}
	return out
}

// Every order of every subset-rich event set folds to the same row.
func TestMergeCommutes(t *testing.T) {
	t.Parallel()
	const id = "database/creds/app/AbCdEfGhIjKlMnOpQrStUv01"
	hmacUser := withUser("hmac-sha256:feed", true)
	sets := map[string][]schemas.LeaseEvent{
		"everything": {
			issued(id, at(0), withExpire(at(time.Hour), 3600), hmacUser),
			event(schemas.LeaseRenewed, id, at(20*time.Minute), withExpire(at(80*time.Minute), 3600)),
			event(schemas.LeaseRenewed, id, at(25*time.Minute), withUser("v-plain", false)),
			event(schemas.LeaseRevoked, id, at(50*time.Minute), func(e *schemas.LeaseEvent) { e.RevokeBy = schemas.RevokeByBody }),
			prefixRevoke("database/creds/app/", at(50*time.Minute)),
			event(schemas.LeaseExpired, id, at(2*time.Hour), withExpire(at(2*time.Hour), 0)),
		},
		"two issues": {
			issued(id, at(time.Minute), func(e *schemas.LeaseEvent) { e.Database, e.EntityID = "second", "ent-2" }),
			// Conflicting values: the earliest issue wins. (A field the
			// earliest issue lacks is filled first come, first served.)
			issued(id, at(0), func(e *schemas.LeaseEvent) { e.DisplayName = "first" }),
			event(schemas.LeaseRenewed, id, at(3*time.Minute), func(e *schemas.LeaseEvent) { e.Database = "renewer" }),
			event(schemas.LeaseRenewed, id, at(3*time.Minute), func(e *schemas.LeaseEvent) { e.VaultRequestID = "zzz" }),
			prefixRevoke("database/creds/app", at(-time.Minute)),
		},
		"prefix races the issue": {
			event(schemas.LeaseRenewed, id, at(11*time.Minute)),
			prefixRevoke("database/creds/app", at(10*time.Minute)),
			prefixRevoke("database/creds", at(5*time.Minute)),
			issued(id, at(0)),
			event(schemas.LeaseExpired, id, at(time.Hour)),
		},
	}
	wants := map[string][]string{
		"everything": {"state=revoked", "db_user=v-plain", "revoked_at=2026-03-01T12:50:00.123456Z",
			"revoke_method=body", "expire_at=2026-03-01T14:00:00.123456Z", "last_event=expired"},
		"two issues": {"state=active", "database=main", "entity_id=ent-1", "display_name=first",
			"issued_at=2026-03-01T12:00:00.123456Z", "last_request_id=zzz"},
		"prefix races the issue": {"state=revoked", "revoked_at=2026-03-01T12:05:00.123456Z",
			"revoke_method=revoke-prefix", "first_seen_at=2026-03-01T12:00:00.123456Z"},
	}
	for name, evs := range sets {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var want string
			defer func() {
				for _, w := range wants[name] {
					if !strings.Contains(want, w+" ") {
						t.Errorf("folded row lacks %s: %s", w, want)
					}
				}
			}()
			for _, perm := range permutations(len(evs)) {
				ordered := make([]schemas.LeaseEvent, len(evs))
				for i, j := range perm {
					ordered[i] = evs[j]
				}
				got := describe(replay(id, ordered))
				// Folding twice is folding once.
				if again := describe(replay(id, append(ordered, ordered...))); again != got {
					t.Fatalf("order %v not idempotent:\n%s\n%s", perm, got, again)
				}
				if want == "" {
					want = got
				} else if got != want {
					t.Fatalf("order %v:\n got %s\nwant %s", perm, got, want)
				}
			}
		})
	}
}

func TestPrefixMatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		prefix, id string
		want       bool
	}{
		{"database/creds/app", "database/creds/app/abc", true},
		{"database/creds/app/", "database/creds/app/abc", true},
		{"database/creds/app", "database/creds/app_ro/abc", false},
		{"database/creds/app", "database/creds/app", true},
		{"database/creds/app/abc", "database/creds/app/abc", true},
		{"database/creds/app/abc", "database/creds/app/abcd", false},
		{"database/creds/a_%", "database/creds/a_%/x", true},
		{"database/creds/a_%", "database/creds/ab%/x", false},
		{"database/", "database/creds/app/abc", true},
		{"database", "databases/creds/app/abc", false},
	} {
		if got := prefixMatches(tc.prefix, tc.id); got != tc.want {
			t.Errorf("prefixMatches(%q, %q) = %v", tc.prefix, tc.id, got)
		}
		lo, hi := prefixRange(tc.prefix)
		inRange := tc.id == tc.prefix || (tc.id >= lo && tc.id < hi)
		if tc.want && !inRange {
			t.Errorf("prefixRange(%q) = [%q, %q) misses %q", tc.prefix, lo, hi, tc.id)
		}
	}
}
