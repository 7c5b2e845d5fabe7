-- Alerts for on-call: findings at or above the alert threshold become
-- alerts, one per rule, database and user at a time; each alert is delivered
-- to every configured sink (Alertmanager, PagerDuty, Slack) with its own
-- delivery state per sink, and resolves when its condition ends.

-- Which findings the alert dispatcher has taken in (alert_seen_at NULL: not
-- yet), and the alert a finding raised or joined. Findings recorded before
-- this migration count as taken in: a first start does not page for history.
ALTER TABLE findings ADD COLUMN alert_seen_at timestamptz, ADD COLUMN alert_id bigint;
UPDATE findings SET alert_seen_at = now();
CREATE INDEX findings_alert_pending ON findings (detected_at, id) WHERE alert_seen_at IS NULL;

-- The dispatcher's intake pass takes this row FOR UPDATE SKIP LOCKED, so
-- that one process at a time turns findings into alerts and resolves them.
CREATE TABLE alert_intake_lock (
    id integer PRIMARY KEY CHECK (id = 1)
);
INSERT INTO alert_intake_lock (id) VALUES (1);

-- One row per alert. dedup_key is "leaseguard/<rule>/<database>/<user>";
-- at most one alert per key is open. finding is the first finding's
-- document; later findings with the same key only count.
CREATE TABLE alerts (
    id                bigserial   PRIMARY KEY,
    dedup_key         text        NOT NULL,
    rule              text        NOT NULL,
    severity          text        NOT NULL,
    database          text,
    db_user           text,
    -- revocation: resolves when the user is dropped (a revocation with
    -- outcome dropped or already_absent); timeout: resolves a while after
    -- its last finding.
    resolve_by        text        NOT NULL CHECK (resolve_by IN ('revocation', 'timeout')),
    finding           jsonb       NOT NULL,
    first_finding_id  text        NOT NULL,
    last_finding_id   text        NOT NULL,
    findings          integer     NOT NULL DEFAULT 1,
    first_detected_at timestamptz NOT NULL,
    last_detected_at  timestamptz NOT NULL,
    opened_at         timestamptz NOT NULL,
    resolved_at       timestamptz,
    resolve_reason    text
);
CREATE UNIQUE INDEX alerts_open_by_key ON alerts (dedup_key) WHERE resolved_at IS NULL;
CREATE INDEX alerts_by_key ON alerts (dedup_key, id);

-- One row per sink that has been configured. A sink's delivery pass takes
-- its row FOR NO KEY UPDATE SKIP LOCKED (which leaves new deliveries free to
-- reference it): one process at a time delivers to a sink, and a slow or
-- dead sink holds back nothing but itself.
CREATE TABLE alert_sinks (
    sink       text        PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- What each sink has acknowledged of each alert. A row is pending while
-- delivered lags the alert's state (none < trigger < resolve), or, for a
-- sink that wants firing alerts re-sent (Alertmanager), when last_sent_at is
-- older than the resend interval. attempts counts failures since the last
-- success; next_attempt_at holds a failing delivery back (backoff).
CREATE TABLE alert_deliveries (
    alert_id        bigint      NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    sink            text        NOT NULL REFERENCES alert_sinks (sink),
    delivered       text        NOT NULL DEFAULT 'none' CHECK (delivered IN ('none', 'trigger', 'resolve')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_sent_at    timestamptz,
    last_error      text,
    PRIMARY KEY (alert_id, sink)
);
CREATE INDEX alert_deliveries_open ON alert_deliveries (sink, next_attempt_at) WHERE delivered <> 'resolve';
