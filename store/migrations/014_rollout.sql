-- Safe rollout (package rollout): the enforcement policy in force, and the
-- exceptions rules hit, which the pilot report shows an owner.

-- Every version of the enforcement policy (the scope and every rule's
-- mode). The newest row is in force on every process: each detector,
-- observer and audit-rule pass reads it at its start. Version 1 is the
-- configured starting point, recorded the first time a process finds no
-- row; later versions are operator changes (expand, rollback), each with
-- who made it, why, and its evidence. Rows are never updated or deleted;
-- two changes racing for the same version conflict on the primary key.
CREATE TABLE rollout_policies (
    version                bigint      PRIMARY KEY CHECK (version > 0),
    kind                   text        NOT NULL CHECK (kind IN ('configuration', 'expand', 'rollback')),
    scope                  text        NOT NULL,
    modes                  jsonb       NOT NULL,
    actor                  text        NOT NULL CHECK (btrim(actor) <> ''),
    reason                 text        NOT NULL CHECK (btrim(reason) <> ''),
    restored_version       bigint,
    restored_configuration boolean     NOT NULL DEFAULT false,
    changed_at             timestamptz NOT NULL,
    evidence_id            text        NOT NULL
);

-- Objects a configured exception spared from a rule: a session of a
-- managed user from an address outside its lease's addresses but inside
-- LEASEGUARD_ALLOWED_CIDRS (credential-foreign-address). One row per object
-- (its session), the first time it is seen; pruned after 90 days.
CREATE TABLE exception_hits (
    rule        text        NOT NULL,
    database    text        NOT NULL,
    object_key  text        NOT NULL,
    exception   text        NOT NULL,
    value       text        NOT NULL,
    db_user     text        NOT NULL,
    mount       text        NOT NULL DEFAULT '',
    role        text        NOT NULL DEFAULT '',
    client_addr text        NOT NULL DEFAULT '',
    seen_at     timestamptz NOT NULL,
    PRIMARY KEY (rule, database, object_key)
);
CREATE INDEX exception_hits_by_time ON exception_hits (seen_at);
