-- The leaseguard processes that share this state store, and the command
-- signing keys each signs with and accepts. A process refuses to start when
-- a live revoker would refuse its commands, or when it would refuse a live
-- process's commands: two processes that each generated a key of their own
-- would otherwise leave users in place (their commands refused for good).
CREATE TABLE nodes (
    node_id            text PRIMARY KEY,
    instance           text        NOT NULL,
    host               text        NOT NULL,
    issues_commands    boolean     NOT NULL,
    runs_revoker       boolean     NOT NULL,
    signing_key_id     text        NOT NULL,
    signing_public_key text        NOT NULL,
    accepted_key_ids   text[]      NOT NULL,
    started_at         timestamptz NOT NULL,
    last_seen_at       timestamptz NOT NULL
);
CREATE INDEX nodes_by_signing_key ON nodes (signing_key_id);

-- When the last command of a finding was issued: a command that never
-- reached the revoker's record within its lifetime (expired in a queue,
-- refused for a key not yet accepted) is issued again while its condition
-- lasts.
ALTER TABLE findings ADD COLUMN command_issued_at timestamptz;
