// Package evidence turns what leaseguard did into evidence a SIEM can trust.
//
// Every revocation result and every finding becomes one CloudEvents 1.0 event
// in structured JSON mode whose data is an OCSF 1.8.0 event (Account Change:
// Delete for a revocation, Detection Finding: Create for a finding, Update
// for an owner's decision, Entity Management for a policy change). Events
// are sealed into one SHA-256 hash chain (chain.go), appended to a
// transactional outbox in the caller's transaction, so evidence is committed
// atomically with the outcome it records (outbox.go), and relayed in chain
// order to JetStream with a deterministic message id (relay.go, jetstream.go).
// A verifier checks the chain from the outbox, or from the lines a SIEM stored
// (verify.go); docs/evidence.md specifies the chain for verifiers written
// elsewhere. export.go gives the events as plain OCSF for SIEMs that do not
// take CloudEvents, the chain kept under unmapped.chain (the evidence/export
// package writes them as JSONL or Parquet).
//
// It owns the evidence_outbox and evidence_chain_head tables: nothing else
// writes them.
package evidence
