package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// Action is what a notification tells a sink.
type Action string

const (
	// ActionTrigger: the alert fires (sent again while it fires, to sinks
	// that want it).
	ActionTrigger Action = "trigger"
	// ActionResolve: the alert's condition ended.
	ActionResolve Action = "resolve"
)

// How alerts resolve (alerts.resolve_by).
const (
	resolveByRevocation = "revocation"
	resolveByTimeout    = "timeout"
)

// Alert is one on-call alert: the findings of one rule about one database
// user, from the first until the condition ended.
type Alert struct {
	ID int64
	// DedupKey names the rule, database and user; it is the PagerDuty
	// dedup_key and stays the same for every notification of the alert.
	DedupKey string
	Rule     string
	Severity schemas.Severity
	Database string
	DBUser   string
	// Finding is the first finding, as the detector recorded it.
	Finding schemas.Finding
	// LastFindingID and Findings: the latest finding that joined the alert,
	// and how many did in all.
	LastFindingID   string
	Findings        int
	FirstDetectedAt time.Time
	LastDetectedAt  time.Time
	// OpenedAt is when the dispatcher raised the alert (its clock).
	OpenedAt time.Time
	// ResolvedAt is nil while the alert fires.
	ResolvedAt    *time.Time
	ResolveReason string
}

// StartsAt is when the alert began for sinks: the first finding, or the
// dispatcher's time if that lies ahead (clock skew between processes).
func (a Alert) StartsAt() time.Time {
	if a.FirstDetectedAt.After(a.OpenedAt) {
		return a.OpenedAt
	}
	return a.FirstDetectedAt
}

// maxDedupKey is PagerDuty's limit on dedup_key.
const maxDedupKey = 255

// dedupKey names a finding's alert: "leaseguard/<rule>/<database>/<user>".
// A finding that names no user (a ghost session whose former user is not
// known) has a key of its own, its finding id. Keys longer than PagerDuty
// accepts are shortened with a hash.
func dedupKey(f schemas.Finding) string {
	subject := f.DBUser
	if subject == "" {
		subject = "finding:" + f.ID
	}
	k := strings.Join([]string{"leaseguard", f.Rule, f.Database, subject}, "/")
	if len(k) <= maxDedupKey {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	return "leaseguard/" + hex.EncodeToString(sum[:])
}

// atLeast reports whether severity s reaches the threshold floor.
func atLeast(s, floor schemas.Severity) bool { return s.Rank() >= floor.Rank() }
