-- The audit-log rules (detectors/audit_rules.go) report each event once:
-- unaudited-issue marks the creds request it reported, mass-revocation the
-- prefix revocation. A marker is set in the transaction that records the
-- finding, under the row lock taken by the claim (FOR UPDATE SKIP LOCKED),
-- so two leaseguard processes never report the same event twice.
ALTER TABLE creds_requests ADD COLUMN unaudited_reported_at timestamptz;
ALTER TABLE prefix_revocations ADD COLUMN reported_at timestamptz;

-- The unaudited-issue queue: request entries with no response, not yet reported.
CREATE INDEX creds_requests_unaudited_idx ON creds_requests (requested_at, request_id)
    WHERE responded_at IS NULL AND requested_at IS NOT NULL AND unaudited_reported_at IS NULL;
-- The mass-revocation queue.
CREATE INDEX prefix_revocations_unreported_idx ON prefix_revocations (revoked_at, prefix)
    WHERE reported_at IS NULL;

-- What was recorded before these rules existed is history, not news.
UPDATE creds_requests SET unaudited_reported_at = now() WHERE unaudited_reported_at IS NULL;
UPDATE prefix_revocations SET reported_at = now() WHERE reported_at IS NULL;
