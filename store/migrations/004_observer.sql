-- The database observer: what each target's pg_roles and pg_stat_activity
-- showed, pass after pass; the changes, published as RoleEvent and
-- SessionEvent documents; which process holds the duty of observing a
-- target; and the ledger's coverage watermark.

-- Since when the ledger covers the audit stream. One row, written once by
-- the first ingest or observer that runs (store.EnsureCoverage). Rules never
-- judge a role that may predate it as "never issued".
CREATE TABLE coverage (
    id    integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    since timestamptz NOT NULL
);

-- One row per observed target. The observer that holds the target's
-- advisory lock bumps epoch when it takes the duty; every pass locks the row
-- and checks the epoch is still its own, so a process that lost the lock
-- (its lock connection died) cannot commit one more pass after another
-- process took over.
CREATE TABLE observer_targets (
    database      text PRIMARY KEY,
    epoch         bigint      NOT NULL,
    holder        text        NOT NULL,
    -- the state-store backend whose session holds the advisory lock.
    holder_pid    integer,
    acquired_at   timestamptz NOT NULL,
    -- the first and the latest committed pass; NULL before the first.
    first_pass_at timestamptz,
    last_pass_at  timestamptz
);

-- Every role of a target's pg_roles, by oid, present (gone_at NULL) or gone.
-- Gone rows are the history that names the former user of a ghost session
-- (a session whose role was dropped under it); they are pruned once no
-- tracked session names them. Only managed roles (the managed pattern) are
-- published and judged; the others are kept so that a ghost of a dropped
-- unmanaged role is known as such.
CREATE TABLE db_roles (
    database      text        NOT NULL,
    oid           bigint      NOT NULL,
    rolname       text        NOT NULL,
    -- pg_roles.rolvaliduntil; NULL for no limit (NULL or infinity).
    valid_until   timestamptz,
    can_login     boolean     NOT NULL,
    superuser     boolean     NOT NULL,
    first_seen_at timestamptz NOT NULL,
    -- the observer's previous pass, at which the role did not exist: it was
    -- created after this time. NULL when it was there at the first pass.
    created_after timestamptz,
    changed_at    timestamptz NOT NULL,
    gone_at       timestamptz,
    PRIMARY KEY (database, oid)
);
CREATE INDEX db_roles_by_name ON db_roles (database, rolname);
CREATE INDEX db_roles_present ON db_roles (database) WHERE gone_at IS NULL;

-- Sessions of managed roles and ghost sessions, by (pid, backend_start): a
-- pid alone is reused by the server.
CREATE TABLE db_sessions (
    database         text        NOT NULL,
    pid              integer     NOT NULL,
    backend_start    timestamptz NOT NULL,
    -- pg_stat_activity.usesysid; it outlives the role.
    user_oid         bigint      NOT NULL,
    -- the role's name when first seen; for a session first seen as a
    -- ghost, the former name if known.
    user_name        text,
    client_addr      text,
    client_port      integer,
    application_name text,
    datname          text,
    backend_type     text,
    first_seen_at    timestamptz NOT NULL,
    -- the pass that first saw its role gone.
    ghost_since      timestamptz,
    ended_at         timestamptz,
    PRIMARY KEY (database, pid, backend_start)
);
CREATE INDEX db_sessions_open ON db_sessions (database) WHERE ended_at IS NULL;
CREATE INDEX db_sessions_ended ON db_sessions (ended_at) WHERE ended_at IS NOT NULL;

-- Outbox of RoleEvent and SessionEvent documents, written in the pass that
-- observed the change and published in seq order afterwards, with the event
-- id as JetStream message id.
CREATE TABLE db_events (
    seq          bigserial   PRIMARY KEY,
    id           text        NOT NULL UNIQUE,
    database     text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('role', 'session')),
    event        jsonb       NOT NULL,
    observed_at  timestamptz NOT NULL,
    published_at timestamptz
);
CREATE INDEX db_events_unpublished ON db_events (database, seq) WHERE published_at IS NULL;
CREATE INDEX db_events_by_time ON db_events (observed_at);

-- The observer's rules look leases up by plain user name, in any target
-- (roles are cluster-wide), and HMAC'd leases by database and issue time.
CREATE INDEX leases_by_plain_user ON leases (db_user) WHERE NOT db_user_hmac;
CREATE INDEX leases_hmac_issued ON leases (database, issued_at) WHERE db_user_hmac;
