// Package rollout makes safe rollout leaseguard's default path: the
// enforcement policy (the scope where rules may act, and every rule's
// mode) lives in the state store, versioned, and is read by every detector,
// observer and audit-rule pass of every process. Nothing enforces until a
// scope is given: a first run is a pilot that records what it would have
// done (would_drop, would_terminate). An operator reads the pilot report
// (Report), widens the scope or changes modes (Expand) and returns to an
// earlier version (Rollback); each change names its actor and reason, is
// recorded with its evidence in one transaction, and takes effect within
// one pass everywhere.
//
// The configuration (LEASEGUARD_ENFORCE_SCOPE, LEASEGUARD_RULE_MODES) is
// the starting point only: the first time a state store has no policy, the
// configured one is recorded as version 1 (actor "configuration"). A later
// start with a different configuration does not override the recorded
// policy — a restart must never silently widen (or undo) what an operator
// decided — it reports the difference (Status.Drift), and an operator
// adopts it with Rollback to the configuration.
//
// It owns the rollout_policies table.
package rollout
