package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// The chain: event n carries chainseq n, prevhash = hash of event n-1 (the
// genesis hash for n = 1) and hash = "sha256:" + hex(SHA-256(canonical form
// of the event without its "hash" attribute)). prevhash and chainseq are
// inside what is hashed, so an event cannot be moved, and changing one
// event changes its hash and breaks the link from the next.
//
// A chain proves order and integrity of what it holds; it cannot show that
// the newest events were cut off. VerifyOutbox compares the end of the chain
// with the chain head row; a SIEM should compare the last hash it holds with
// the head leaseguard reports.

// HashPrefix names the hash function in prevhash and hash.
const HashPrefix = "sha256:"

// GenesisHash is the prevhash of the first event of a chain.
var GenesisHash = HashPrefix + strings.Repeat("0", 64)

// Seal places ev at position seq after the event whose hash is prev: it sets
// PrevHash, ChainSeq and Hash. It fails only if ev cannot be encoded.
func Seal(ev *Event, prev string, seq int64) error {
	ev.PrevHash = prev
	ev.ChainSeq = seq
	ev.Hash = ""
	raw, err := encodeJSON(ev)
	if err != nil {
		return fmt.Errorf("seal event %s: %w", ev.ID, err)
	}
	h, err := hashDocument(raw)
	if err != nil {
		return fmt.Errorf("seal event %s: %w", ev.ID, err)
	}
	ev.Hash = h
	return nil
}

// hashDocument hashes one encoded event: its canonical form without "hash".
func hashDocument(doc []byte) (string, error) { return hashParsed(parseJSON(doc)) }

// hashDecoded is hashDocument of a document json.Unmarshal has just
// accepted, so valid JSON: it is not scanned for validity again.
func hashDecoded(doc []byte) (string, error) {
	canon, err := canonicalEvent(doc)
	if err != nil {
		return "", err
	}
	return hashCanonical(canon), nil
}

// hashParsed hashes a parsed event: the canonical form of its object
// without "hash".
func hashParsed(v any, err error) (string, error) {
	obj, err := eventObject(v, err)
	if err != nil {
		return "", err
	}
	canon, err := canonicalBytes(obj)
	if err != nil {
		return "", err
	}
	return hashCanonical(canon), nil
}

// eventObject is a parsed event as its object, without its "hash".
func eventObject(v any, err error) (map[string]any, error) {
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("event is not a JSON object")
	}
	delete(obj, "hash")
	return obj, nil
}

// canonicalBytes is v's canonical form.
func canonicalBytes(v any) ([]byte, error) {
	var canon bytes.Buffer
	if err := writeCanonical(&canon, v); err != nil {
		return nil, err
	}
	return canon.Bytes(), nil
}

func hashCanonical(canon []byte) string {
	sum := sha256.Sum256(canon)
	return HashPrefix + hex.EncodeToString(sum[:])
}

// VerifyReport is the result of checking a chain.
type VerifyReport struct {
	// Checked counts the events verified before the first break (all of
	// them when the chain is intact). Duplicates are not counted.
	Checked int `json:"checked"`
	// Duplicates counts events skipped because they repeat the event just
	// before them exactly (same chainseq, id and hash): a redelivery.
	Duplicates int `json:"duplicates"`
	// LastSeq and LastHash are the end of the verified part of the chain.
	LastSeq  int64  `json:"last_seq"`
	LastHash string `json:"last_hash"`
	// FirstBreak is nil when the chain is intact.
	FirstBreak *Break `json:"first_break,omitempty"`
	// Checkpoints counts the checkpoint events verified.
	Checkpoints int `json:"checkpoints"`
	// LastCheckpoint is the newest checkpoint verified, nil if none.
	LastCheckpoint *CheckpointReport `json:"last_checkpoint,omitempty"`
	// UnconfirmedTail counts the events after the last checkpoint (all
	// of them when there is none): no signature confirms them yet.
	UnconfirmedTail int `json:"unconfirmed_tail"`
	// SignaturesChecked is false when no evidence key was given: the
	// checkpoints' signatures were not checked and prove nothing.
	SignaturesChecked bool `json:"signatures_checked"`
	// CheckpointOverdue: the newest event is later than the last
	// checkpoint (or the first event, when there is none) by more than the
	// checkpoint interval plus grace: the next checkpoint should be there.
	// The tail was cut off, or the relay stopped.
	CheckpointOverdue bool `json:"checkpoint_overdue"`
	// Warnings say what about the checkpoints is not as it should be,
	// short of a break.
	Warnings []string `json:"warnings,omitempty"`
}

// CheckpointReport is one checkpoint as verify saw it.
type CheckpointReport struct {
	// Seq is the checkpoint event's own chainseq.
	Seq        int64  `json:"seq"`
	ID         string `json:"id"`
	CoversSeq  int64  `json:"covers_chainseq"`
	CoversHash string `json:"covers_hash"`
	SignedAt   string `json:"signed_at"`
	KeyID      string `json:"key_id"`
}

// OK reports whether no break was found.
func (r VerifyReport) OK() bool { return r.FirstBreak == nil }

// Confirmed reports whether the chain is intact and every event is
// covered by a checkpoint whose signature was checked: nothing was cut off
// the end since the last checkpoint.
func (r VerifyReport) Confirmed() bool {
	return r.OK() && r.SignaturesChecked && r.LastCheckpoint != nil && r.UnconfirmedTail == 0
}

// Break is where a chain stops verifying.
type Break struct {
	// Seq is the chainseq of the event that failed (the position expected
	// there if the event has none).
	Seq    int64  `json:"seq"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason"`
}

func (b *Break) String() string {
	return fmt.Sprintf("chain breaks at seq %d (event %s): %s", b.Seq, b.ID, b.Reason)
}

// Verify checks that events form one intact chain from genesis, in the order
// given: every hash matches its event (else the event was altered), seqs run
// 1, 2, 3, … (else an event is missing or out of order) and every prevhash is
// the previous event's hash. It stops at the first break. The error is
// reserved for failures to verify at all; a broken chain is a report.
func Verify(events []Event, opts VerifyOptions) (VerifyReport, error) {
	v := newVerifier(opts)
	for _, ev := range events {
		raw, err := encodeJSON(ev)
		if err != nil {
			v.fail(ev.ChainSeq, ev.ID, "event cannot be encoded: "+err.Error())
			break
		}
		if !v.add(ev, raw) {
			break
		}
	}
	return v.finish(), nil
}

// verifier checks a chain one event at a time.
type verifier struct {
	report VerifyReport
	lastID string
	cp     checkpointState
}

func newVerifier(opts VerifyOptions) *verifier {
	return &verifier{report: VerifyReport{LastHash: GenesisHash}, cp: newCheckpointState(opts)}
}

func (v *verifier) fail(seq int64, id, reason string) {
	if v.report.FirstBreak == nil {
		v.report.FirstBreak = &Break{Seq: seq, ID: id, Reason: reason}
	}
}

// add checks ev, whose encoding as stored or received is doc. It returns
// false once the chain is broken.
func (v *verifier) add(ev Event, doc []byte) bool {
	if v.report.FirstBreak != nil {
		return false
	}
	r := &v.report
	if ev.ChainSeq <= 0 || ev.Hash == "" {
		v.fail(r.LastSeq+1, ev.ID, "event is not sealed (no chainseq or hash)")
		return false
	}
	h, err := hashDocument(doc)
	if err != nil {
		v.fail(ev.ChainSeq, ev.ID, "event cannot be canonicalised: "+err.Error())
		return false
	}
	if h != ev.Hash {
		v.fail(ev.ChainSeq, ev.ID, fmt.Sprintf("hash %s does not match the content (%s): the event was altered", ev.Hash, h))
		return false
	}
	if r.Checked > 0 && ev.ChainSeq == r.LastSeq && ev.ID == v.lastID && ev.Hash == r.LastHash {
		r.Duplicates++
		return true
	}
	switch want := r.LastSeq + 1; {
	case ev.ChainSeq > want:
		v.fail(ev.ChainSeq, ev.ID, fmt.Sprintf("chainseq %d where %d was expected: events are missing or out of order", ev.ChainSeq, want))
		return false
	case ev.ChainSeq < want:
		v.fail(ev.ChainSeq, ev.ID, fmt.Sprintf("chainseq %d where %d was expected: events are repeated or out of order", ev.ChainSeq, want))
		return false
	}
	if ev.PrevHash != r.LastHash {
		prev := "the genesis hash"
		if r.LastSeq > 0 {
			prev = fmt.Sprintf("the hash of seq %d", r.LastSeq)
		}
		v.fail(ev.ChainSeq, ev.ID, fmt.Sprintf("prevhash %s is not %s (%s)", ev.PrevHash, prev, r.LastHash))
		return false
	}
	if ev.Type == TypeCheckpoint && !v.checkpoint(ev) {
		return false
	}
	r.Checked++
	r.LastSeq = ev.ChainSeq
	r.LastHash = ev.Hash
	v.lastID = ev.ID
	v.seen(ev)
	return true
}
