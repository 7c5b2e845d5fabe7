-- Findings and revocations: what leaseguard concluded and what it did.

CREATE TABLE findings (
    id          text PRIMARY KEY,          -- deterministic over rule and object
    rule        text NOT NULL,
    severity    text NOT NULL,
    mode        text NOT NULL,
    in_scope    boolean NOT NULL,
    database    text,
    db_user     text,
    lease_id    text,
    detected_at timestamptz NOT NULL,
    action      text NOT NULL,
    command_id  text,
    finding     jsonb NOT NULL,
    evidence_id text
);
CREATE INDEX findings_by_user ON findings (database, db_user);
CREATE INDEX findings_by_time ON findings (detected_at);

-- One row per revocation command. A command is claimed (in_progress)
-- before anything is executed; target_xid is the id of the drop transaction
-- in the target database, written before that transaction commits, so that
-- after a crash the revoker can ask the target whether its drop committed
-- (txid_status) and record exactly one "dropped".
CREATE TABLE revocations (
    command_id  text PRIMARY KEY,
    database    text NOT NULL,
    db_user     text NOT NULL,
    lease_id    text,
    rule        text NOT NULL,
    issuer      text,
    actor       text,
    emergency   boolean NOT NULL DEFAULT false,
    state       text NOT NULL CHECK (state IN ('in_progress', 'done')),
    attempts    integer NOT NULL DEFAULT 1,
    target_xid  bigint,
    outcome     text CHECK (outcome IN ('dropped', 'already_absent', 'refused', 'failed')),
    result      jsonb,
    command     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    evidence_id text
);
CREATE INDEX revocations_by_user ON revocations (database, db_user);
CREATE INDEX revocations_open ON revocations (received_at) WHERE state = 'in_progress';
