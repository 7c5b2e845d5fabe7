-- Revocations through the API body linked to their leases. Vault's audit
-- devices log the body's lease_id only as an HMAC (hashed_revocations), each
-- device with its own salt. With Vault access, leaseguard hashes the lease
-- ids of the ledger through sys/audit-hash/<device>, and a revocation whose
-- HMAC matches is applied to the ledger as the plain revocation it is.

-- The HMAC of a lease id through sys/audit-hash/<device>: lease ids are
-- plain in the issue response, and each is hashed at most once per device.
CREATE TABLE vault_lease_id_hmacs (
    lease_id  text COLLATE "C" NOT NULL,
    device    text        NOT NULL,
    hmac      text        NOT NULL,
    hashed_at timestamptz NOT NULL,
    PRIMARY KEY (lease_id, device)
);
CREATE INDEX vault_lease_id_hmacs_by_hmac ON vault_lease_id_hmacs (hmac);

-- A hashed revocation linked to its lease. method 'hmac': the device's
-- audit-hash of the lease id equals the HMAC the revocation's audit entry
-- carried (exact). event_id is the revoked lease event applied to the
-- ledger for it (lease_events.event_id).
CREATE TABLE vault_revocation_links (
    lease_id_hmac text        NOT NULL,
    revoked_at    timestamptz NOT NULL,
    lease_id      text COLLATE "C" NOT NULL,
    method        text        NOT NULL CHECK (method IN ('hmac')),
    device        text        NOT NULL,
    event_id      text        NOT NULL,
    linked_at     timestamptz NOT NULL,
    PRIMARY KEY (lease_id_hmac, revoked_at)
);
CREATE INDEX vault_revocation_links_lease ON vault_revocation_links (lease_id);

-- The leases a hashed revocation may name, newest first.
CREATE INDEX leases_unrevoked_by_first_seen ON leases (first_seen_at DESC) WHERE state <> 'revoked';
-- The recent hashed revocations.
CREATE INDEX hashed_revocations_by_time ON hashed_revocations (revoked_at);
