-- Vault kept in agreement: the leases leaseguard revokes in Vault after it
-- dropped their users, the HMACs of database user names as Vault's audit
-- device computes them, and how each HMAC'd lease was linked to its user.

-- Durable work queue: one row per lease whose user leaseguard dropped.
-- A worker claims a due row by moving next_attempt_at ahead (a lease on
-- the work), calls Vault outside any transaction, and records the result.
CREATE TABLE vault_revocations (
    lease_id          text COLLATE "C" PRIMARY KEY,
    -- the revocation (revocations.command_id) that dropped the user.
    command_id        text        NOT NULL,
    database          text        NOT NULL,
    db_user           text        NOT NULL,
    dropped_at        timestamptz NOT NULL,
    state             text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL,
    -- how Vault let go of the lease: revoke, revoke-force (a sudo path,
    -- used only after the user was verified gone from pg_roles), or absent
    -- (Vault no longer held it when leaseguard looked).
    method            text CHECK (method IN ('revoke', 'revoke-force', 'absent')),
    last_status       integer,
    last_error        text,
    -- evidence of the first failure, and of the resolution after failures.
    failure_evidence_id text,
    evidence_id       text,
    enqueued_at       timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);
CREATE INDEX vault_revocations_due ON vault_revocations (next_attempt_at) WHERE state = 'pending';

-- How far the reconciler has read the revocations table (finished_at of
-- dropped outcomes). It re-reads a margin behind it: finished_at is set by
-- the revoker's clock before its transaction commits.
CREATE TABLE vault_reconcile_cursor (
    id          integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    finished_at timestamptz NOT NULL
);
CREATE INDEX revocations_dropped_with_lease ON revocations (finished_at)
    WHERE outcome = 'dropped' AND lease_id IS NOT NULL;

-- The HMAC of a managed role name through sys/audit-hash/<device>: what an
-- untuned database mount's audit entries carry as response.data.username.
CREATE TABLE vault_user_hmacs (
    device    text        NOT NULL,
    db_user   text        NOT NULL,
    hmac      text        NOT NULL,
    hashed_at timestamptz NOT NULL,
    PRIMARY KEY (device, db_user)
);
CREATE INDEX vault_user_hmacs_by_hmac ON vault_user_hmacs (hmac);

-- Leases whose user the audit log showed only as an HMAC, linked to their
-- plain user name. method 'hmac': Vault's audit-hash of the name equals
-- the HMAC the lease's audit entry carried (exact). The lease row then
-- holds the plain name (a plain name always beats an HMAC in the ledger).
CREATE TABLE vault_lease_links (
    lease_id  text COLLATE "C" PRIMARY KEY,
    db_user   text        NOT NULL,
    method    text        NOT NULL CHECK (method IN ('hmac')),
    device    text        NOT NULL,
    user_hmac text        NOT NULL,
    linked_at timestamptz NOT NULL
);
CREATE INDEX leases_hmac_user ON leases (db_user) WHERE db_user_hmac;
