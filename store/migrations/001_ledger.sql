-- The lease ledger: one row per Vault lease, folded from lease events in any
-- order (see store/merge.go for the rules), plus the applied-event history,
-- the revocations that name no single plain lease id, and the creds requests.

CREATE TABLE leases (
    -- Vault lease id: <mount>/creds/<role>/<24 base62>[.<namespace id>].
    -- "C" collation so prefix matches can use the primary key index.
    lease_id          text COLLATE "C" PRIMARY KEY,
    state             text NOT NULL DEFAULT 'active'
                      CHECK (state IN ('active', 'revoked', 'expired')),
    mount             text,
    role              text,
    namespace         text,
    -- leaseguard target that holds db_user.
    database          text,
    -- plain user name, or its audit HMAC when db_user_hmac.
    db_user           text,
    db_user_hmac      boolean NOT NULL DEFAULT false,
    issued_at         timestamptz,
    renewed_at        timestamptz,
    -- earliest time the lease is known to have existed (issue time or the
    -- time of any of its events): decides prefix revocations.
    first_seen_at     timestamptz,
    expire_at         timestamptz,
    expire_source     text CHECK (expire_source IN ('event', 'pg_valid_until', 'role_default')),
    -- event time of the event that set expire_at (expire_source 'event').
    expire_event_at   timestamptz,
    ttl_seconds       bigint,
    -- when expire_at was read from pg_roles or derived from the role default;
    -- NULL means it must be read (again).
    expire_checked_at timestamptz,
    -- last ResolveExpiry attempt, so unresolvable leases do not starve others.
    expire_attempt_at timestamptz,
    revoked_at        timestamptz,
    revoke_method     text,
    last_event        text CHECK (last_event IN ('issued', 'renewed', 'revoked', 'expired')),
    last_event_at     timestamptz,
    last_request_id   text,
    entity_id         text,
    token_accessor    text,
    display_name      text,
    remote_address    text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((expire_at IS NULL) = (expire_source IS NULL))
);

-- Active leases due to expire.
CREATE INDEX leases_due_idx ON leases (expire_at) WHERE state = 'active';
-- The leases of one database user.
CREATE INDEX leases_db_user_idx ON leases (database, db_user);
CREATE INDEX leases_entity_idx ON leases (entity_id) WHERE entity_id IS NOT NULL;
-- Active leases whose expiry must be (re)read: the ResolveExpiry queue.
CREATE INDEX leases_expiry_unresolved_idx ON leases (expire_attempt_at NULLS FIRST, lease_id)
    WHERE state = 'active'
      AND (expire_at IS NULL
           OR (expire_checked_at IS NULL AND expire_source IN ('pg_valid_until', 'role_default')));

-- Every lease event applied to the ledger, once: event_id is the hex SHA-256
-- of kind, lease id or prefix, Vault request id and event time.
CREATE TABLE lease_events (
    event_id         text PRIMARY KEY,
    lease_id         text COLLATE "C",
    lease_id_hmac    boolean NOT NULL DEFAULT false,
    lease_prefix     text COLLATE "C",
    kind             text NOT NULL CHECK (kind IN ('issued', 'renewed', 'revoked', 'expired')),
    event_time       timestamptz NOT NULL,
    vault_request_id text,
    -- the message the event came from (schemas.SourceRef).
    source           jsonb NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((lease_id IS NULL) <> (lease_prefix IS NULL))
);

CREATE INDEX lease_events_lease_idx ON lease_events (lease_id, event_time) WHERE lease_id IS NOT NULL;

-- sys/leases/revoke-prefix and revoke-force. A prefix without a trailing
-- slash matches that lease id or the ids under prefix || '/', as in Vault.
CREATE TABLE prefix_revocations (
    prefix           text COLLATE "C" NOT NULL,
    revoked_at       timestamptz NOT NULL,
    method           text NOT NULL,
    namespace        text,
    vault_request_id text,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (prefix, revoked_at)
);

-- Revocations through the API body: Vault logs only the HMAC of the lease
-- id. Kept until they can be linked to a lease.
CREATE TABLE hashed_revocations (
    lease_id_hmac    text NOT NULL,
    revoked_at       timestamptz NOT NULL,
    method           text,
    namespace        text,
    vault_request_id text,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lease_id_hmac, revoked_at)
);

-- <mount>/creds/<role> requests, joined from their request and response
-- audit entries in whichever order they arrive.
CREATE TABLE creds_requests (
    request_id     text PRIMARY KEY,
    path           text,
    mount          text,
    role           text,
    namespace      text,
    entity_id      text,
    token_accessor text,
    display_name   text,
    remote_address text,
    requested_at   timestamptz,
    responded_at   timestamptz,
    response_error boolean,
    lease_id       text COLLATE "C"
);

-- Requests still waiting for their response.
CREATE INDEX creds_requests_unanswered_idx ON creds_requests (requested_at) WHERE responded_at IS NULL;
