-- Corroboration before destruction (issue "trust").
--
-- A revocation or an expiry seen only on the bus (the audit stream or a
-- LeaseEvent) is evidence, never proof: a lease revoked or expired per the
-- bus stays due for the expiry detector, which judges it at its expiry like
-- any other lease (a forged revoke must not hide a leaked credential). expiry_judged_at records that
-- the detector judged a lease, whatever its state; expiry_recheck_at
-- postpones a lease whose judgement could not be corroborated yet (Vault
-- unreachable).
ALTER TABLE leases
    ADD COLUMN expiry_judged_at  timestamptz,
    ADD COLUMN expiry_recheck_at timestamptz,
    -- Vault held this lease (sys/leases/lookup found it) at this time: a
    -- lease Vault never confirmed cannot corroborate its own end.
    ADD COLUMN vault_seen_at     timestamptz,
    -- The last lookup of the lease in Vault, found or not.
    ADD COLUMN vault_checked_at  timestamptz;

-- Leases the detector judged before this migration are judged.
UPDATE leases SET expiry_judged_at = updated_at WHERE state = 'expired';

ALTER TABLE leases DROP CONSTRAINT leases_expire_source_check;
ALTER TABLE leases ADD CONSTRAINT leases_expire_source_check
    CHECK (expire_source IN ('event', 'pg_valid_until', 'role_default', 'vault_lookup'));

DROP INDEX leases_due_idx;
CREATE INDEX leases_due_idx ON leases (expire_at)
    WHERE expiry_judged_at IS NULL;

DROP INDEX leases_expiry_unresolved_idx;
CREATE INDEX leases_expiry_unresolved_idx ON leases (expire_attempt_at NULLS FIRST, lease_id)
    WHERE expiry_judged_at IS NULL
      AND (expire_at IS NULL
           OR (expire_checked_at IS NULL AND expire_source IN ('pg_valid_until', 'role_default')));

-- Leases Vault has not confirmed yet, for the Vault link to look up.
CREATE INDEX leases_vault_unseen ON leases (vault_checked_at NULLS FIRST, lease_id)
    WHERE vault_seen_at IS NULL AND expiry_judged_at IS NULL;

-- Revocation commands refused before anything was recorded under their id
-- (unsigned, forged, expired, for another target, not approved): keyed by
-- the hex SHA-256 of the command, so a forged command never takes the id of
-- a real one, and a redelivered one is recorded once.
CREATE TABLE refused_commands (
    command_hash text PRIMARY KEY,
    command_id   text        NOT NULL,
    database     text        NOT NULL,
    db_user      text        NOT NULL,
    rule         text        NOT NULL,
    issuer       text        NOT NULL,
    key_id       text,
    guard        text        NOT NULL,
    reason       text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    evidence_id  text        NOT NULL
);
CREATE INDEX refused_commands_by_received ON refused_commands (received_at);

-- A pending revocation holds an unsigned proposal (never a signed command:
-- republished on the bus, the revoker refuses it). The proposal is signed
-- apart, in another signing domain, so that the approval can check this
-- installation proposed it and nobody changed it in the state store.
ALTER TABLE pending_revocations ADD COLUMN proposal_signature text;

-- Ghost sessions are ended by the revoker, through signed
-- terminate_session commands: their outcome is terminated.
ALTER TABLE revocations DROP CONSTRAINT revocations_outcome_check;
ALTER TABLE revocations ADD CONSTRAINT revocations_outcome_check
    CHECK (outcome IN ('dropped', 'terminated', 'already_absent', 'refused', 'failed'));
