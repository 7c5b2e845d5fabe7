package evidence

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/keyid"
)

// A chain cannot show that its newest events were cut off. A checkpoint
// can: at a fixed cadence, and when the relay stops, an event is appended
// that carries the chain head just before it (its chainseq and hash), the
// time and an Ed25519 signature over them by the evidence key, which is
// separate from the command key. Whoever holds the evidence public key can
// then tell events confirmed by a checkpoint from an unconfirmed tail, and
// a tail that should have been confirmed long ago (cut off, or a stopped
// relay). docs/evidence.md, "Checkpoints", specifies it.

// TypeCheckpoint is the type of a checkpoint event.
const TypeCheckpoint = "io.leaseguard.checkpoint.v1"

// Checkpoint defaults.
const (
	DefaultCheckpointInterval = time.Minute
	// DefaultCheckpointGrace is how much later than the cadence a
	// checkpoint may come before verify calls it overdue: a relay that
	// waits for a store or a bus checkpoints late.
	DefaultCheckpointGrace = time.Minute
)

// rollbackTimeout bounds the rollback of a checkpoint that failed.
const rollbackTimeout = 5 * time.Second

// checkpointDomain is the first line of the signed bytes: a signature over
// them can be mistaken for no other message of the same key.
const checkpointDomain = "leaseguard-checkpoint-v1"

// CheckpointAlgorithm is the only signature algorithm of checkpoints.
const CheckpointAlgorithm = "ed25519"

// CheckpointSigningBytes are the bytes a checkpoint's signature covers:
// five lines joined by "\n", without a trailing newline. at is the
// checkpoint's unmapped.signed_at exactly as written in the event.
func CheckpointSigningBytes(seq int64, hash, at, keyID string) []byte {
	return []byte(checkpointDomain + "\n" + strconv.FormatInt(seq, 10) + "\n" + hash + "\n" + at + "\n" + keyID)
}

// EvidenceKeyID names an evidence public key, as command keys are named
// (package keyid).
func EvidenceKeyID(pub ed25519.PublicKey) string { return keyid.Of(pub) }

// CheckpointSigner signs checkpoints with the evidence key.
type CheckpointSigner struct {
	priv  ed25519.PrivateKey
	keyID string
}

// NewCheckpointSigner returns a signer for priv (64 bytes).
func NewCheckpointSigner(priv ed25519.PrivateKey) (*CheckpointSigner, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("evidence signing key is %d bytes, not %d", len(priv), ed25519.PrivateKeySize)
	}
	return &CheckpointSigner{priv: priv, keyID: EvidenceKeyID(priv.Public().(ed25519.PublicKey))}, nil
}

// KeyID is the id of the signer's key, as checkpoints name it.
func (s *CheckpointSigner) KeyID() string { return s.keyID }

// PublicKey verifies the signer's checkpoints.
func (s *CheckpointSigner) PublicKey() ed25519.PublicKey {
	return s.priv.Public().(ed25519.PublicKey)
}

// CheckpointData is data.unmapped of a checkpoint event.
type CheckpointData struct {
	// CoversSeq and CoversHash are the chainseq and hash of the event just
	// before the checkpoint: everything up to it is confirmed.
	CoversSeq  int64  `json:"covers_chainseq"`
	CoversHash string `json:"covers_hash"`
	// SignedAt is when it was signed, RFC 3339 UTC with nanoseconds.
	SignedAt  string `json:"signed_at"`
	KeyID     string `json:"key_id"`
	Algorithm string `json:"algorithm"`
	// Signature is standard base64 of the Ed25519 signature over
	// CheckpointSigningBytes.
	Signature string `json:"signature"`
}

// checkpointEvent is an OCSF Application Lifecycle event with activity
// Other ("Checkpoint"): leaseguard, the app, attests its evidence log.
type checkpointEvent struct {
	ocsfClass
	ocsfStatus
	ocsfOccurrence
	Message  string         `json:"message"`
	Metadata ocsfMetadata   `json:"metadata"`
	App      ocsfProduct    `json:"app"`
	Unmapped CheckpointData `json:"unmapped"`
}

// OCSF Application Lifecycle.
const (
	ocsfCategoryApplication = 6
	ocsfClassAppLifecycle   = 6002
	ocsfActivityOther       = 99
)

// Checkpoint builds the checkpoint of the chain whose head is seq, hash,
// signed by s at time at.
func (b Builder) Checkpoint(s *CheckpointSigner, seq int64, hash string, at time.Time) (Event, error) {
	if err := b.validate(); err != nil {
		return Event{}, err
	}
	if s == nil || seq < 1 || hash == "" {
		return Event{}, fmt.Errorf("%w: a checkpoint needs a signer and a chain head", ErrInvalidInput)
	}
	signedAt := rfc3339(at)
	sig := ed25519.Sign(s.priv, CheckpointSigningBytes(seq, hash, signedAt, s.keyID))
	id := eventID("checkpoint", strconv.FormatInt(seq, 10), hash, s.keyID)
	class := classify(ocsfCategoryApplication, "Application Activity", ocsfClassAppLifecycle,
		"Application Lifecycle", ocsfActivityOther, "Checkpoint", 1)
	// activity_name of Other is free text; type_name is the class's
	// caption of the type.
	class.TypeName = "Application Lifecycle: Other"
	data := checkpointEvent{
		ocsfClass: class,
		ocsfStatus: ocsfStatus{StatusID: ocsfStatusSuccess, Status: "Success", StatusCode: "signed",
			StatusDetail: fmt.Sprintf("the evidence chain up to seq %d is signed by evidence key %s", seq, s.keyID)},
		ocsfOccurrence: occurrence(at),
		Message:        fmt.Sprintf("leaseguard checkpoint of its evidence chain at seq %d", seq),
		Metadata:       b.metadata(id, ""),
		App:            ocsfProduct{Name: productName, VendorName: productName, Version: b.Version},
		Unmapped: CheckpointData{CoversSeq: seq, CoversHash: hash, SignedAt: signedAt, KeyID: s.keyID,
			Algorithm: CheckpointAlgorithm, Signature: base64.StdEncoding.EncodeToString(sig)},
	}
	return b.event(TypeCheckpoint, id, "checkpoint/"+strconv.FormatInt(seq, 10), at, data)
}

// AppendCheckpoint appends a checkpoint of the chain head to the outbox,
// unless the chain is empty or its last event is a checkpoint already
// (nothing new to confirm). It holds the chain head lock from reading the
// head to appending, so relays in several processes never checkpoint the
// same head twice. appended reports whether it wrote one.
func AppendCheckpoint(ctx context.Context, db TxBeginner, b Builder, s *CheckpointSigner, at time.Time) (ev Event, appended bool, err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return Event{}, false, fmt.Errorf("checkpoint: begin: %w", err)
	}
	defer func() {
		// After a commit a no-op; bounded even when ctx has ended.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	var seq int64
	var hash string
	err = tx.QueryRow(ctx, `SELECT seq, hash FROM evidence_chain_head WHERE id = 1 FOR UPDATE`).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return Event{}, false, ErrNoChainHead
	}
	if err != nil {
		return Event{}, false, fmt.Errorf("checkpoint: lock evidence chain head: %w", err)
	}
	if seq == 0 {
		return Event{}, false, nil
	}
	var typ string
	if err := tx.QueryRow(ctx, `SELECT type FROM evidence_outbox WHERE seq = $1`, seq).Scan(&typ); err != nil {
		return Event{}, false, fmt.Errorf("checkpoint: read the head event: %w", err)
	}
	if typ == TypeCheckpoint {
		return Event{}, false, nil
	}
	if ev, err = b.Checkpoint(s, seq, hash, at); err != nil {
		return Event{}, false, err
	}
	if ev, err = Append(ctx, tx, ev); err != nil {
		return Event{}, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Event{}, false, fmt.Errorf("checkpoint: commit: %w", err)
	}
	return ev, true, nil
}

// checkpointOf reads a checkpoint event's data.unmapped.
func checkpointOf(ev Event) (CheckpointData, error) {
	var d struct {
		Unmapped CheckpointData `json:"unmapped"`
	}
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		return CheckpointData{}, fmt.Errorf("checkpoint data: %w", err)
	}
	return d.Unmapped, nil
}
