-- Evidence outbox: every evidence event leaseguard emits, sealed into one
-- hash chain, written in the same transaction as the outcome it records and
-- relayed from here to JetStream in chain order (package evidence).

-- One row per event. seq is the event's position in the chain (chainseq);
-- event holds the exact bytes of the CloudEvent as sealed, so its hash
-- verifies byte for byte whatever the database encoding. Rows are never
-- updated except for the publishing columns, and never deleted: the chain
-- is verified from seq 1.
CREATE TABLE evidence_outbox (
    seq              bigint      PRIMARY KEY CHECK (seq > 0),
    id               text        NOT NULL UNIQUE,
    type             text        NOT NULL,
    subject          text        NOT NULL DEFAULT '',
    prev_hash        text        NOT NULL,
    hash             text        NOT NULL UNIQUE,
    event            bytea       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz,
    publish_attempts integer     NOT NULL DEFAULT 0,
    last_error       text
);

-- The relay reads unpublished rows in seq order.
CREATE INDEX evidence_outbox_unpublished ON evidence_outbox (seq) WHERE published_at IS NULL;

-- The end of the chain. Appenders lock this row (SELECT … FOR UPDATE) to
-- take the next seq, which serialises them across processes; seq 0 with the
-- genesis hash is the empty chain.
CREATE TABLE evidence_chain_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint  NOT NULL CHECK (seq >= 0),
    hash text    NOT NULL
);

INSERT INTO evidence_chain_head (id, seq, hash)
VALUES (1, 0, 'sha256:0000000000000000000000000000000000000000000000000000000000000000');

-- One row whose lock (FOR UPDATE SKIP LOCKED) is held by the relay that is
-- publishing, so parallel relays take turns and never publish out of order.
CREATE TABLE evidence_relay_lock (
    id integer PRIMARY KEY CHECK (id = 1)
);

INSERT INTO evidence_relay_lock (id) VALUES (1);
