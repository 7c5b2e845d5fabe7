-- What the audit-signal rules (detectors/audit_rules_*.go) need from audit
-- entries that change no lease. Nothing here is a row per audit entry:
-- entries are counted per minute and key, the stream's liveness is one row
-- per writing connection, and only the rare audit-device changes are kept one
-- by one.

-- Per-minute counts of creds issued (issue), permission-denied errors on
-- <mount>/creds/ paths (denied_creds) and requests on database mounts made
-- with a root token (root_use), by who asked (principal: entity:<id>, else
-- accessor:<accessor as logged>, else empty) and from where. writer is the
-- state-store backend (pg_backend_pid()) that wrote the row: each connection
-- adds to its own rows, so concurrent ingest batches never wait for each
-- other on a hot counter; the rules sum over writers. bucket is the entry's
-- time (Vault's clock) truncated to the minute.
CREATE TABLE audit_counts (
    kind              text        NOT NULL CHECK (kind IN ('issue', 'denied_creds', 'root_use')),
    namespace         text        NOT NULL DEFAULT '',
    mount             text        NOT NULL DEFAULT '',
    role              text        NOT NULL DEFAULT '',
    principal         text        NOT NULL DEFAULT '',
    remote_address    text        NOT NULL DEFAULT '',
    bucket            timestamptz NOT NULL,
    writer            integer     NOT NULL,
    count             bigint      NOT NULL,
    first_at          timestamptz NOT NULL,
    last_at           timestamptz NOT NULL,
    -- one Vault request id of the bucket, and the display name, for evidence.
    sample_request_id text,
    display_name      text,
    PRIMARY KEY (kind, namespace, mount, role, principal, remote_address, bucket, writer)
);
-- The rules' scan of recent buckets, and pruning.
CREATE INDEX audit_counts_by_bucket ON audit_counts (kind, bucket);

-- The latest audit entry each state-store connection committed: the
-- audit-silence rule's view of the stream. received_at is the state store's
-- clock, last_entry_at Vault's.
CREATE TABLE audit_heartbeats (
    writer        integer     PRIMARY KEY,
    last_entry_at timestamptz NOT NULL,
    received_at   timestamptz NOT NULL
);

-- The client addresses a lease's renewals came from (the issue's is
-- leases.remote_address and creds_requests.remote_address).
-- credential-foreign-address compares sessions with all of them.
CREATE TABLE lease_addresses (
    lease_id      text COLLATE "C" NOT NULL,
    address       text        NOT NULL,
    -- issued or renewed: the first kind of request seen from this address.
    kind          text        NOT NULL,
    first_seen_at timestamptz NOT NULL,
    PRIMARY KEY (lease_id, address)
);

-- sys/audit/<path> requests that enable (update) or disable (delete) an
-- audit device, request and response entries apart: the response of a
-- disable is not written to the device being disabled, so its request entry
-- may be all this stream ever sees.
CREATE TABLE audit_device_changes (
    request_id     text        NOT NULL,
    entry          text        NOT NULL CHECK (entry IN ('request', 'response')),
    device_path    text        NOT NULL,
    operation      text        NOT NULL CHECK (operation IN ('enable', 'disable')),
    at             timestamptz NOT NULL,
    error          boolean     NOT NULL,
    namespace      text,
    entity_id      text,
    token_accessor text,
    display_name   text,
    remote_address text,
    reported_at    timestamptz,
    PRIMARY KEY (request_id, entry)
);
CREATE INDEX audit_device_changes_unreported ON audit_device_changes (at) WHERE reported_at IS NULL;

-- Windowed rules report a key once per window: until is the last window end
-- (a bucket) that the latest report covers.
CREATE TABLE rule_marks (
    rule  text        NOT NULL,
    key   text        NOT NULL,
    until timestamptz NOT NULL,
    PRIMARY KEY (rule, key)
);
