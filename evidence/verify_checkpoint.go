package evidence

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"time"
)

// VerifyOptions say how checkpoints are checked.
type VerifyOptions struct {
	// Keys are the evidence public keys checkpoints may be signed with.
	// With none, signatures are not checked (the report says so) and a
	// checkpoint proves nothing.
	Keys []ed25519.PublicKey
	// Interval is the checkpoint cadence and Grace how much later a
	// checkpoint may come; zero means DefaultCheckpointInterval and
	// DefaultCheckpointGrace.
	Interval, Grace time.Duration
}

// checkpointState is what the verifier tracks of checkpoints.
type checkpointState struct {
	keys     map[string]ed25519.PublicKey
	deadline time.Duration // interval + grace
	// since is the time of the last checkpoint, or of the first event
	// while there is none; newest the newest event time after it.
	since, newest time.Time
}

func newCheckpointState(opts VerifyOptions) checkpointState {
	if opts.Interval <= 0 {
		opts.Interval = DefaultCheckpointInterval
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultCheckpointGrace
	}
	keys := map[string]ed25519.PublicKey{}
	for _, k := range opts.Keys {
		keys[EvidenceKeyID(k)] = k
	}
	return checkpointState{keys: keys, deadline: opts.Interval + opts.Grace}
}

// checkpoint checks a checkpoint event at the next position of the chain
// (its hash and links already checked): it must cover the event just
// before it, and be signed by a known evidence key when keys were given.
func (v *verifier) checkpoint(ev Event) bool {
	d, err := checkpointOf(ev)
	if err != nil {
		v.fail(ev.ChainSeq, ev.ID, err.Error())
		return false
	}
	if d.CoversSeq != ev.ChainSeq-1 || d.CoversHash != ev.PrevHash {
		v.fail(ev.ChainSeq, ev.ID, fmt.Sprintf("checkpoint covers seq %d (%s), but the event before it is seq %d (%s)",
			d.CoversSeq, d.CoversHash, ev.ChainSeq-1, ev.PrevHash))
		return false
	}
	at, err := time.Parse(time.RFC3339Nano, d.SignedAt)
	if err != nil {
		v.fail(ev.ChainSeq, ev.ID, fmt.Sprintf("checkpoint signed_at %q is not an RFC 3339 time", d.SignedAt))
		return false
	}
	if reason := v.cp.badSignature(d); reason != "" {
		v.fail(ev.ChainSeq, ev.ID, reason)
		return false
	}
	r := &v.report
	r.Checkpoints++
	r.LastCheckpoint = &CheckpointReport{Seq: ev.ChainSeq, ID: ev.ID, CoversSeq: d.CoversSeq, CoversHash: d.CoversHash,
		SignedAt: d.SignedAt, KeyID: d.KeyID}
	r.UnconfirmedTail = 0
	v.cp.since, v.cp.newest = at, time.Time{}
	return true
}

// badSignature says why d's signature does not verify, or "" when it does
// (or when there are no keys to check it with).
func (s checkpointState) badSignature(d CheckpointData) string {
	if len(s.keys) == 0 {
		return ""
	}
	pub, ok := s.keys[d.KeyID]
	if !ok {
		return fmt.Sprintf("checkpoint is signed by key %s, which is not a known evidence key", d.KeyID)
	}
	if d.Algorithm != CheckpointAlgorithm {
		return fmt.Sprintf("checkpoint algorithm %q is not %s", d.Algorithm, CheckpointAlgorithm)
	}
	sig, err := base64.StdEncoding.DecodeString(d.Signature)
	if err != nil || !ed25519.Verify(pub, CheckpointSigningBytes(d.CoversSeq, d.CoversHash, d.SignedAt, d.KeyID), sig) {
		return fmt.Sprintf("checkpoint signature does not verify with evidence key %s: forged or altered", d.KeyID)
	}
	return ""
}

// seen counts an ordinary event into the unconfirmed tail.
func (v *verifier) seen(ev Event) {
	if ev.Type == TypeCheckpoint {
		return
	}
	v.report.UnconfirmedTail++
	if v.cp.since.IsZero() {
		v.cp.since = ev.Time
	}
	if ev.Time.After(v.cp.newest) {
		v.cp.newest = ev.Time
	}
}

// finish completes the report with what the checkpoints show.
func (v *verifier) finish() VerifyReport {
	r := &v.report
	r.SignaturesChecked = len(v.cp.keys) > 0
	if !r.OK() || r.Checked == 0 {
		return *r
	}
	if !r.SignaturesChecked {
		r.Warnings = append(r.Warnings, "checkpoint signatures not checked: no evidence public key given")
	}
	switch {
	case r.LastCheckpoint == nil:
		r.Warnings = append(r.Warnings, fmt.Sprintf("no checkpoint: none of the %d event(s) is confirmed by a signed checkpoint", r.UnconfirmedTail))
	case r.UnconfirmedTail > 0:
		r.Warnings = append(r.Warnings, fmt.Sprintf("unconfirmed tail: %d event(s) after the checkpoint at seq %d",
			r.UnconfirmedTail, r.LastCheckpoint.Seq))
	}
	if gap := v.cp.newest.Sub(v.cp.since); r.UnconfirmedTail > 0 && gap > v.cp.deadline {
		r.CheckpointOverdue = true
		r.Warnings = append(r.Warnings, fmt.Sprintf("checkpoint overdue: the newest event is %s after the last checkpoint (or the first event), more than interval + grace (%s): later events may have been cut off, or the relay stopped",
			gap, v.cp.deadline))
	}
	return *r
}
